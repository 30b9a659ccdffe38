//! `sys/generate-root`: a quorum of unseal key holders makes a new root token, returned XOR'd with
//! the attempt's OTP; wrong nonces, repeated and foreign shares, cancelling and sealing.

use custos_engine::logical::Operation;
use custos_engine::{EngineError, Limits, OTP_LENGTH, Request, xor_with_otp};
use zeroize::Zeroizing;

use crate::support::{Harness, foreign_share};

fn otp() -> Zeroizing<String> {
    Zeroizing::new("0123456789abcdefghijABCDEFGHIJ0123456789abcdefghi".into())
}

fn invalid(result: Result<custos_engine::RootGenerationStatus, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message) | EngineError::InvalidUnsealKey(message)) => {
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn lookup_self(harness: &Harness, token: &str) -> serde_json::Map<String, serde_json::Value> {
    harness
        .engine
        .handle(Request::new(Operation::Read, "auth/token/lookup-self").token(token))
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap()
}

#[tokio::test]
async fn three_of_five_shares_generate_a_working_root_token() {
    let (harness, audit) = Harness::with(Limits::default());
    let output = harness.init_unsealed(5, 3).await;

    let idle = harness.engine.generate_root_status().await.unwrap();
    assert!(!idle.started);
    assert_eq!(idle.required, 3);
    assert_eq!(idle.progress, 0);
    assert_eq!(idle.otp_length as usize, OTP_LENGTH);
    assert!(idle.nonce.is_empty());

    let otp = otp();
    let started = harness
        .engine
        .generate_root_init(Some(otp.clone()), None)
        .await
        .unwrap();
    assert!(started.started);
    assert!(started.otp.is_none(), "an OTP given is not echoed");
    let nonce = started.nonce.clone();
    assert!(!nonce.is_empty());

    // Shares 2, 4 and 5: any three do.
    let first = harness
        .engine
        .generate_root_update(&output.shares[1], &nonce, "r1")
        .await
        .unwrap();
    assert_eq!((first.progress, first.complete), (1, false));
    assert!(first.encoded_token.is_empty());
    let status = harness.engine.generate_root_status().await.unwrap();
    assert_eq!((status.started, status.progress), (true, 1));
    assert_eq!(status.nonce, nonce);
    harness
        .engine
        .generate_root_update(&output.shares[3], &nonce, "r2")
        .await
        .unwrap();
    let done = harness
        .engine
        .generate_root_update(&output.shares[4], &nonce, "r3")
        .await
        .unwrap();
    assert!(done.complete);
    assert_eq!(done.progress, 3);
    assert_eq!(done.encoded_token.len(), OTP_LENGTH);

    let token =
        String::from_utf8(xor_with_otp(&done.encoded_token, otp.as_bytes()).unwrap()).unwrap();
    assert!(token.starts_with("custos_token_"), "{}", token.len());
    assert_ne!(token, output.root_token.as_str());
    let data = lookup_self(&harness, &token).await;
    assert_eq!(data["policies"], serde_json::json!(["root"]));
    // Like the root token of init: no expiry, no parent.
    assert_eq!(data["ttl"], 0, "{data:?}");
    assert_eq!(data["expire_time"], serde_json::Value::Null);
    assert_eq!(data["orphan"], true);
    assert_eq!(data["path"], "auth/token/root");
    // The new token can do what only root can.
    harness.engine.key_status(Some(&token)).await.unwrap();

    // The attempt is over; the old root token still works.
    assert!(!harness.engine.generate_root_status().await.unwrap().started);
    lookup_self(&harness, &output.root_token).await;

    let alerts: Vec<_> = audit
        .records()
        .into_iter()
        .filter(|record| record.path == "sys/generate-root/update")
        .collect();
    assert_eq!(alerts.len(), 2, "request and outcome: {alerts:?}");
    assert!(
        alerts[1]
            .alert
            .as_deref()
            .is_some_and(|alert| alert.contains("a new root token was generated"))
    );
    assert_eq!(alerts[1].outcome, Some(Ok(())));
}

#[tokio::test]
async fn without_an_otp_the_server_generates_one_and_shows_it_once() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let started = harness.engine.generate_root_init(None, None).await.unwrap();
    let otp = started.otp.clone().expect("generated OTP");
    assert_eq!(otp.len(), OTP_LENGTH);
    assert!(
        harness
            .engine
            .generate_root_status()
            .await
            .unwrap()
            .otp
            .is_none()
    );
    let done = harness
        .engine
        .generate_root_update(&output.shares[0], &started.nonce, "r")
        .await
        .unwrap();
    let token =
        String::from_utf8(xor_with_otp(&done.encoded_token, otp.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        lookup_self(&harness, &token).await["policies"],
        serde_json::json!(["root"])
    );
}

#[tokio::test]
async fn a_wrong_nonce_or_a_repeated_share_changes_nothing() {
    let harness = Harness::new();
    let output = harness.init_unsealed(5, 3).await;
    let started = harness
        .engine
        .generate_root_init(Some(otp()), None)
        .await
        .unwrap();
    let message = invalid(
        harness
            .engine
            .generate_root_update(&output.shares[0], "not-the-nonce", "r")
            .await,
    );
    assert!(message.contains("incorrect nonce"), "{message}");
    assert_eq!(
        harness
            .engine
            .generate_root_status()
            .await
            .unwrap()
            .progress,
        0
    );
    harness
        .engine
        .generate_root_update(&output.shares[0], &started.nonce, "r")
        .await
        .unwrap();
    let message = invalid(
        harness
            .engine
            .generate_root_update(&output.shares[0], &started.nonce, "r")
            .await,
    );
    assert!(message.contains("already been provided"), "{message}");
    assert_eq!(
        harness
            .engine
            .generate_root_status()
            .await
            .unwrap()
            .progress,
        1
    );
    // A second attempt cannot start over the first.
    let message = invalid(harness.engine.generate_root_init(Some(otp()), None).await);
    assert!(message.contains("already in progress"), "{message}");
}

#[tokio::test]
async fn foreign_shares_abort_the_round_but_keep_the_attempt() {
    let (harness, audit) = Harness::with(Limits::default());
    let output = harness.init_unsealed(3, 2).await;
    let started = harness
        .engine
        .generate_root_init(Some(otp()), None)
        .await
        .unwrap();
    let stranger = foreign_share(&[&output.shares[0], &output.shares[1], &output.shares[2]]);
    harness
        .engine
        .generate_root_update(&output.shares[0], &started.nonce, "r")
        .await
        .unwrap();
    let message = invalid(
        harness
            .engine
            .generate_root_update(&stranger, &started.nonce, "r")
            .await,
    );
    assert!(message.contains("root generation aborted"), "{message}");
    let status = harness.engine.generate_root_status().await.unwrap();
    assert_eq!((status.started, status.progress), (true, 0));
    assert!(audit.records().iter().all(|record| record.alert.is_none()));
    // The same attempt still completes with good shares.
    harness
        .engine
        .generate_root_update(&output.shares[1], &started.nonce, "r")
        .await
        .unwrap();
    let done = harness
        .engine
        .generate_root_update(&output.shares[2], &started.nonce, "r")
        .await
        .unwrap();
    assert!(done.complete);
}

#[tokio::test]
async fn bad_input_is_refused() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let message = invalid(
        harness
            .engine
            .generate_root_init(Some(Zeroizing::new("short".into())), None)
            .await,
    );
    assert!(message.contains("incorrect length"), "{message}");
    let message = invalid(
        harness
            .engine
            .generate_root_init(None, Some("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
            .await,
    );
    assert!(message.contains("PGP"), "{message}");
    let message = invalid(
        harness
            .engine
            .generate_root_update(&output.shares[0], "nonce", "r")
            .await,
    );
    assert!(
        message.contains("no root generation in progress"),
        "{message}"
    );
    let started = harness
        .engine
        .generate_root_init(Some(otp()), None)
        .await
        .unwrap();
    let message = invalid(
        harness
            .engine
            .generate_root_update(&[1, 2, 3], &started.nonce, "r")
            .await,
    );
    assert!(message.contains("shorter than minimum"), "{message}");
}

#[tokio::test]
async fn cancelling_and_sealing_drop_the_attempt() {
    let harness = Harness::new();
    let output = harness.init_unsealed(3, 2).await;
    let started = harness
        .engine
        .generate_root_init(Some(otp()), None)
        .await
        .unwrap();
    harness
        .engine
        .generate_root_update(&output.shares[0], &started.nonce, "r")
        .await
        .unwrap();
    harness.engine.generate_root_cancel().await.unwrap();
    let status = harness.engine.generate_root_status().await.unwrap();
    assert!(!status.started);
    assert_eq!(status.progress, 0);
    // Cancelling nothing succeeds.
    harness.engine.generate_root_cancel().await.unwrap();

    harness
        .engine
        .generate_root_init(Some(otp()), None)
        .await
        .unwrap();
    harness.engine.seal(Some(&output.root_token)).await.unwrap();
    assert!(matches!(
        harness.engine.generate_root_status().await,
        Err(EngineError::Sealed)
    ));
    crate::support::unseal_all(&harness.engine, &output.shares[..2]).await;
    assert!(!harness.engine.generate_root_status().await.unwrap().started);
}

#[tokio::test]
async fn openbaos_authenticated_paths_answer_under_data() {
    let harness = Harness::new();
    let output = harness.init_unsealed(3, 2).await;
    let root = output.root_token.to_string();
    let call = |operation: Operation, path: &str, token: &str, body: serde_json::Value| {
        let mut request = Request::new(operation, path).token(token);
        if !body.is_null() {
            request = request.data(body);
        }
        harness.engine.handle(request)
    };
    // A token is needed, and (today) the root policy.
    assert!(matches!(
        call(
            Operation::Read,
            "sys/generate-root-token/attempt",
            "nope",
            serde_json::Value::Null
        )
        .await,
        Err(EngineError::PermissionDenied)
    ));
    let status = call(
        Operation::Read,
        "sys/generate-root-token/attempt",
        &root,
        serde_json::Value::Null,
    )
    .await
    .unwrap()
    .unwrap()
    .data
    .unwrap();
    assert_eq!(status["started"], false);
    assert_eq!(status["otp_length"], OTP_LENGTH);
    // OpenBao's shape: no nonce before an attempt starts.
    let mut keys: Vec<&str> = status.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "complete",
            "otp",
            "otp_length",
            "progress",
            "required",
            "started"
        ]
    );
    let started = call(
        Operation::Update,
        "sys/generate-root-token/attempt",
        &root,
        serde_json::json!({}),
    )
    .await
    .unwrap()
    .unwrap()
    .data
    .unwrap();
    let otp = started["otp"].as_str().unwrap().to_owned();
    let nonce = started["nonce"].as_str().unwrap().to_owned();
    let message = invalid(
        call(
            Operation::Update,
            "sys/generate-root-token/update",
            &root,
            serde_json::json!({"nonce": nonce}),
        )
        .await
        .map(|_| custos_engine::RootGenerationStatus::default()),
    );
    assert_eq!(message, "key is required");
    let hex_share = |index: usize| {
        output.shares[index]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    for index in [0, 2] {
        let answer = call(
            Operation::Update,
            "sys/generate-root-token/update",
            &root,
            serde_json::json!({"nonce": nonce, "key": hex_share(index)}),
        )
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
        if index == 2 {
            assert_eq!(answer["complete"], true);
            let encoded = answer["encoded_token"].as_str().unwrap();
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded)
                .unwrap();
            let token = String::from_utf8(xor_with_otp(&bytes, otp.as_bytes()).unwrap()).unwrap();
            assert_eq!(
                lookup_self(&harness, &token).await["policies"],
                serde_json::json!(["root"])
            );
        }
    }
    // Cancel answers without data (204).
    let cancelled = call(
        Operation::Delete,
        "sys/generate-root-token/attempt",
        &root,
        serde_json::Value::Null,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(cancelled.data.is_none());
}
