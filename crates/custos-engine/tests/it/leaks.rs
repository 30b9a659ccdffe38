//! `sys/leaks`: reported credentials that are live here are revoked, the rest are named.

use custos_engine::logical::{LogicalResponse, Operation};
use custos_engine::{EngineError, Request};
use serde_json::{Value, json};

use crate::support::Harness;

async fn setup() -> (Harness, String) {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    (harness, output.root_token.to_string())
}

async fn report(harness: &Harness, leaks: Value) -> Result<Value, EngineError> {
    let answer = harness
        .engine
        .handle(Request::new(Operation::Update, "sys/leaks").data(json!({ "leaks": leaks })))
        .await?
        .unwrap();
    Ok(Value::Object(answer.data.unwrap()))
}

async fn wrapping_token(harness: &Harness, root: &str) -> String {
    let mut request = Request::new(Operation::Update, "sys/wrapping/wrap")
        .token(root)
        .data(json!({"password": "hunter2"}));
    request.wrap_ttl = Some(300);
    let answer: LogicalResponse = harness.engine.handle(request).await.unwrap().unwrap();
    answer.wrap_info.unwrap().token
}

fn lookup_self(token: &str) -> Request {
    Request::new(Operation::Read, "auth/token/lookup-self").token(token)
}

#[tokio::test]
async fn a_leaked_token_is_revoked_without_any_other_credential() {
    let (harness, root) = setup().await;
    assert!(harness.engine.handle(lookup_self(&root)).await.is_ok());

    let answer = report(
        &harness,
        json!([{"token": root, "type": "custos_token", "url": "file:///repo/.env:3", "source": "custos scan"}]),
    )
    .await
    .unwrap();
    assert_eq!(answer["revoked"], 1);
    let result = &answer["results"][0];
    assert_eq!(result["status"], "revoked");
    assert_eq!(result["label"], "true_positive");
    assert_eq!(result["kind"], "token");
    assert_eq!(result["token_type"], "custos_token");
    assert_eq!(
        result["token_hash"],
        custos_crypto::sha256_hex(root.as_bytes())
    );
    assert!(
        !answer.to_string().contains(&root),
        "the answer must never echo the credential"
    );

    assert!(matches!(
        harness.engine.handle(lookup_self(&root)).await,
        Err(EngineError::PermissionDenied)
    ));
    // A second report of the same credential changes nothing and says so.
    let again = report(&harness, json!([{"token": root}])).await.unwrap();
    assert_eq!(again["revoked"], 0);
    assert_eq!(again["results"][0]["status"], "unknown");
}

#[tokio::test]
async fn a_leaked_wrapping_token_can_no_longer_unwrap() {
    let (harness, root) = setup().await;
    let wrapped = wrapping_token(&harness, &root).await;
    let answer = report(&harness, json!([{"token": wrapped}])).await.unwrap();
    assert_eq!(answer["results"][0]["status"], "revoked");
    assert_eq!(answer["results"][0]["kind"], "wrapping_token");
    let unwrap = harness
        .engine
        .handle(Request::new(Operation::Update, "sys/wrapping/unwrap").token(wrapped.as_str()))
        .await;
    assert!(
        matches!(unwrap, Err(EngineError::InvalidRequest(_))),
        "{unwrap:?}"
    );
    // The root token was not touched.
    assert!(harness.engine.handle(lookup_self(&root)).await.is_ok());
}

#[tokio::test]
async fn look_alikes_and_unknown_credentials_are_named_not_revoked() {
    let (harness, root) = setup().await;
    // A valid checksum for a token this server never issued.
    let stranger = custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &[7; 30])
        .unwrap()
        .as_str()
        .to_owned();
    // The root token with its last character changed: the checksum no longer matches.
    let mut forged = root.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let api_key = custos_core::ApiKey::from_random("acme_live", &[9; 30])
        .unwrap()
        .as_str()
        .to_owned();
    let answer = report(
        &harness,
        json!([
            {"token": stranger},
            {"token": forged},
            {"token": api_key, "type": "custos_api_key"},
            {"token": "x".repeat(10_000)},
            {"token": stranger},
        ]),
    )
    .await
    .unwrap();
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["unknown", "invalid", "unknown", "invalid", "unknown"]
    );
    assert_eq!(answer["revoked"], 0);
    assert!(harness.engine.handle(lookup_self(&root)).await.is_ok());
}

#[tokio::test]
async fn the_same_credential_twice_in_one_report_is_revoked_once() {
    let (harness, root) = setup().await;
    let answer = report(&harness, json!([{"token": root}, {"token": root}]))
        .await
        .unwrap();
    assert_eq!(answer["revoked"], 1);
    assert_eq!(answer["results"][1]["status"], "revoked");
}

#[tokio::test]
async fn concurrent_reports_revoke_once() {
    let (harness, root) = setup().await;
    let harness = std::sync::Arc::new(harness);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let harness = harness.clone();
            let root = root.clone();
            tokio::spawn(async move { report(&harness, json!([{"token": root}])).await })
        })
        .collect();
    let mut revoked = 0;
    for task in tasks {
        let answer = task.await.unwrap().unwrap();
        revoked += answer["revoked"].as_u64().unwrap();
    }
    assert_eq!(revoked, 1);
}

#[tokio::test]
async fn bad_reports_and_methods_are_refused() {
    let (harness, _) = setup().await;
    for leaks in [json!([]), json!("x"), json!([{"token": 1}]), json!([{}])] {
        assert!(
            matches!(
                report(&harness, leaks.clone()).await,
                Err(EngineError::InvalidRequest(_))
            ),
            "{leaks}"
        );
    }
    let read = harness
        .engine
        .handle(Request::new(Operation::Read, "sys/leaks"))
        .await;
    assert!(
        matches!(read, Err(EngineError::MethodNotAllowed)),
        "{read:?}"
    );
}

#[tokio::test]
async fn a_sealed_server_refuses_reports() {
    let (harness, root) = setup().await;
    harness.engine.seal(Some(&root)).await.unwrap();
    assert!(matches!(
        report(&harness, json!([{"token": root}])).await,
        Err(EngineError::Sealed)
    ));
}
