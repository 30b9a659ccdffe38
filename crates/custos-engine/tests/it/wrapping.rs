//! Response wrapping: single-use tokens with a TTL, lookup, rewrap, wrap.

use custos_engine::logical::{LogicalResponse, Operation};
use custos_engine::{EngineError, Request};
use jiff::SignedDuration;
use serde_json::json;

use crate::support::{Harness, put};

async fn setup() -> (Harness, String) {
    let (harness, token) = Harness::unsealed().await;
    harness
        .engine
        .mount(&token, "secret", "kv", &[("version", "2")])
        .await
        .unwrap();
    harness
        .engine
        .handle(put(
            "secret/data/app",
            &token,
            json!({"data": {"password": "hunter2"}}),
        ))
        .await
        .unwrap();
    (harness, token)
}

async fn wrapped_read(harness: &Harness, token: &str, ttl: u64) -> LogicalResponse {
    let mut request = Request::new(Operation::Read, "secret/data/app").token(token);
    request.wrap_ttl = Some(ttl);
    harness.engine.handle(request).await.unwrap().unwrap()
}

fn unwrap_request(wrapping_token: &str) -> Request {
    Request::new(Operation::Update, "sys/wrapping/unwrap").token(wrapping_token)
}

fn invalid(result: Result<Option<LogicalResponse>, EngineError>) -> bool {
    matches!(result, Err(EngineError::InvalidRequest(message)) if message.contains("wrapping token is not valid"))
}

#[tokio::test]
async fn a_wrapped_read_returns_only_wrap_info() {
    let (harness, token) = setup().await;
    let answer = wrapped_read(&harness, &token, 300).await;
    assert!(answer.data.is_none());
    let info = answer.wrap_info.unwrap();
    assert_eq!(info.ttl, 300);
    assert_eq!(info.creation_path, "secret/data/app");
    assert!(!info.token.is_empty() && info.token != token);
    assert_eq!(info.accessor.len(), 36);
}

#[tokio::test]
async fn unwrapping_works_exactly_once() {
    let (harness, token) = setup().await;
    let info = wrapped_read(&harness, &token, 300).await.wrap_info.unwrap();
    let answer = harness
        .engine
        .handle(unwrap_request(&info.token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.data.unwrap()["data"]["password"], "hunter2");
    assert!(invalid(
        harness.engine.handle(unwrap_request(&info.token)).await
    ));
}

#[tokio::test]
async fn concurrent_unwraps_have_one_winner() {
    let (harness, token) = setup().await;
    let info = wrapped_read(&harness, &token, 300).await.wrap_info.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let engine = harness.engine.clone();
        let wrapping_token = info.token.clone();
        tasks.push(tokio::spawn(async move {
            engine.handle(unwrap_request(&wrapping_token)).await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Some(_)) => winners += 1,
            other => assert!(invalid(other)),
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn wrapping_tokens_expire() {
    let (harness, token) = setup().await;
    let info = wrapped_read(&harness, &token, 60).await.wrap_info.unwrap();
    harness.clock.advance(SignedDuration::from_secs(61));
    assert!(invalid(
        harness.engine.handle(unwrap_request(&info.token)).await
    ));
}

#[tokio::test]
async fn lookup_needs_no_token_and_reveals_no_data() {
    let (harness, token) = setup().await;
    let info = wrapped_read(&harness, &token, 300).await.wrap_info.unwrap();
    let lookup = harness
        .engine
        .handle(
            Request::new(Operation::Update, "sys/wrapping/lookup")
                .data(json!({"token": info.token})),
        )
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    assert_eq!(lookup["creation_path"], "secret/data/app");
    assert_eq!(lookup["creation_ttl"], 300);
    assert!(lookup.get("data").is_none());
    // Looking up does not use the token up.
    assert!(
        harness
            .engine
            .handle(unwrap_request(&info.token))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn unwrap_with_the_token_in_the_body_needs_a_valid_caller() {
    let (harness, token) = setup().await;
    let info = wrapped_read(&harness, &token, 300).await.wrap_info.unwrap();
    let body = json!({"token": info.token});
    let anonymous = Request::new(Operation::Update, "sys/wrapping/unwrap").data(body.clone());
    assert!(matches!(
        harness.engine.handle(anonymous).await,
        Err(EngineError::PermissionDenied)
    ));
    let with_caller = Request::new(Operation::Update, "sys/wrapping/unwrap")
        .token(token.as_str())
        .data(body);
    let answer = harness.engine.handle(with_caller).await.unwrap().unwrap();
    assert_eq!(answer.data.unwrap()["data"]["password"], "hunter2");
}

#[tokio::test]
async fn rewrap_replaces_the_token() {
    let (harness, token) = setup().await;
    let old = wrapped_read(&harness, &token, 300).await.wrap_info.unwrap();
    let rewrapped = harness
        .engine
        .handle(
            Request::new(Operation::Update, "sys/wrapping/rewrap")
                .token(token.as_str())
                .data(json!({"token": old.token})),
        )
        .await
        .unwrap()
        .unwrap()
        .wrap_info
        .unwrap();
    assert_ne!(rewrapped.token, old.token);
    assert_eq!(rewrapped.creation_path, "secret/data/app");
    assert!(invalid(
        harness.engine.handle(unwrap_request(&old.token)).await
    ));
    assert!(
        harness
            .engine
            .handle(unwrap_request(&rewrapped.token))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn wrap_stores_arbitrary_data_and_needs_a_ttl() {
    let (harness, token) = setup().await;
    let request = Request::new(Operation::Update, "sys/wrapping/wrap")
        .token(token.as_str())
        .data(json!({"api_key": "abc"}));
    assert!(matches!(
        harness.engine.handle(request.clone()).await,
        Err(EngineError::InvalidRequest(message)) if message.contains("wrap TTL")
    ));
    let mut request = request;
    request.wrap_ttl = Some(120);
    let info = harness
        .engine
        .handle(request)
        .await
        .unwrap()
        .unwrap()
        .wrap_info
        .unwrap();
    assert_eq!(info.creation_path, "sys/wrapping/wrap");
    let answer = harness
        .engine
        .handle(unwrap_request(&info.token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.data.unwrap()["api_key"], "abc");
}

#[tokio::test]
async fn bad_wrap_ttls_are_refused() {
    let (harness, token) = setup().await;
    // Over 768h, Vault's default maximum TTL (31 days still fits).
    for ttl in [0, 768 * 3600 + 1] {
        let mut request = Request::new(Operation::Read, "secret/data/app").token(token.as_str());
        request.wrap_ttl = Some(ttl);
        assert!(
            matches!(
                harness.engine.handle(request).await,
                Err(EngineError::InvalidRequest(_))
            ),
            "{ttl}"
        );
    }
}

#[tokio::test]
async fn the_wrapped_secret_is_not_stored_in_the_clear() {
    use custos_storage::Storage;
    let (harness, token) = setup().await;
    let info = wrapped_read(&harness, &token, 300).await.wrap_info.unwrap();
    let keys = harness.storage.list("", None, 0).await.unwrap().keys;
    for key in keys {
        assert!(!key.contains(&info.token), "token in a key: {key}");
        let value = harness.storage.get(&key).await.unwrap().unwrap().value;
        assert!(
            !value.windows(7).any(|w| w == b"hunter2"),
            "plaintext under {key}"
        );
    }
}

#[tokio::test]
async fn unwrapping_and_looking_up_with_the_wrapping_token_are_audited() {
    let (harness, audit) = crate::support::Harness::with(custos_engine::Limits::default());
    let root = harness.init_unsealed(1, 1).await.root_token.to_string();
    let mut request = Request::new(Operation::Update, "sys/wrapping/wrap")
        .token(root.as_str())
        .data(json!({"password": "hunter2"}));
    request.wrap_ttl = Some(300);
    let token = harness
        .engine
        .handle(request)
        .await
        .unwrap()
        .unwrap()
        .wrap_info
        .unwrap()
        .token;
    let records_before = audit.records().len();

    harness
        .engine
        .handle(
            Request::new(Operation::Update, "sys/wrapping/lookup").data(json!({ "token": token })),
        )
        .await
        .unwrap();
    harness
        .engine
        .handle(Request::new(Operation::Update, "sys/wrapping/unwrap").token(token.as_str()))
        .await
        .unwrap();
    let refused = harness
        .engine
        .handle(Request::new(Operation::Update, "sys/wrapping/unwrap").token(token.as_str()))
        .await;
    assert!(refused.is_err());

    let records = audit.records().split_off(records_before);
    let seen: Vec<(&str, &str, Option<bool>)> = records
        .iter()
        .map(|record| {
            (
                record.path.as_str(),
                record.caller.as_str(),
                record.outcome.as_ref().map(Result::is_ok),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("sys/wrapping/lookup", "wrapping-token", None),
            ("sys/wrapping/lookup", "wrapping-token", Some(true)),
            ("sys/wrapping/unwrap", "wrapping-token", None),
            ("sys/wrapping/unwrap", "wrapping-token", Some(true)),
            ("sys/wrapping/unwrap", "wrapping-token", None),
            ("sys/wrapping/unwrap", "wrapping-token", Some(false)),
        ]
    );
    for record in &records {
        assert!(
            !format!("{record:?}").contains(&token),
            "no token in the audit record"
        );
    }
}
