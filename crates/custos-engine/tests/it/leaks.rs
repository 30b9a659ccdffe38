//! `sys/leaks`: reported credentials that are live here are revoked (root tokens only marked
//! leaked), the rest are named; untrusted fields reach the log escaped.

use std::sync::{Arc, Mutex};

use custos_engine::logical::{LogicalResponse, Operation};
use custos_engine::{EngineError, Limits, MAX_LEAKS_PER_REPORT, Request};
use serde_json::{Value, json};

use crate::support::{Harness, START_UNIX};

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
async fn a_reported_root_token_is_marked_leaked_and_audited_but_not_revoked() {
    let (harness, audit) = Harness::with(Limits::default());
    let root = harness.init_unsealed(1, 1).await.root_token.to_string();
    let before = harness
        .engine
        .handle(lookup_self(&root))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.data.unwrap()["leaked"], false);

    let answer = report(
        &harness,
        json!([{"token": root, "type": "custos_token", "url": "file:///repo/.env:3", "source": "custos scan"}]),
    )
    .await
    .unwrap();
    assert_eq!(answer["revoked"], 0);
    assert_eq!(answer["not_revoked"], 1);
    let result = &answer["results"][0];
    assert_eq!(result["status"], "not_revoked");
    assert_eq!(result["reason"], "root token: revoke it with a token");
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

    // The root token still works, and says it was reported.
    let lookup = harness
        .engine
        .handle(lookup_self(&root))
        .await
        .unwrap()
        .unwrap();
    let data = lookup.data.unwrap();
    assert_eq!(data["leaked"], true);
    let first_marked = jiff::Timestamp::from_second(START_UNIX)
        .unwrap()
        .to_string();
    assert_eq!(data["leaked_at"], first_marked.as_str());
    // The report was audited with an alert naming the token's accessor, never the token.
    let alerts: Vec<String> = audit
        .records()
        .into_iter()
        .filter_map(|record| record.alert)
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("root token"), "{alerts:?}");
    assert!(
        alerts[0].contains(data["accessor"].as_str().unwrap()),
        "{alerts:?}"
    );
    assert!(!alerts[0].contains(&root));

    // A second report changes nothing but is audited again; leaked_at keeps the first report.
    harness.clock.advance(jiff::SignedDuration::from_secs(60));
    let again = report(&harness, json!([{"token": root}])).await.unwrap();
    assert_eq!(again["results"][0]["status"], "not_revoked");
    let data = harness
        .engine
        .handle(lookup_self(&root))
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data["leaked_at"], first_marked.as_str());
    assert_eq!(
        audit
            .records()
            .iter()
            .filter(|record| record.alert.is_some())
            .count(),
        2
    );

    // Everything that needs the root token still works, sealing included.
    harness.engine.rotate(Some(&root)).await.unwrap();
    harness.engine.seal(Some(&root)).await.unwrap();
    assert!(harness.engine.is_sealed());
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
    let lookup = harness
        .engine
        .handle(lookup_self(&root))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lookup.data.unwrap()["leaked"], false);
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
    let wrapped = wrapping_token(&harness, &root).await;
    let answer = report(&harness, json!([{"token": wrapped}, {"token": wrapped}]))
        .await
        .unwrap();
    assert_eq!(answer["revoked"], 1);
    assert_eq!(answer["results"][1]["status"], "revoked");
}

#[tokio::test]
async fn concurrent_reports_revoke_once_and_never_the_root_token() {
    let (harness, root) = setup().await;
    let wrapped = wrapping_token(&harness, &root).await;
    let harness = std::sync::Arc::new(harness);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let harness = harness.clone();
            let leaks = json!([{"token": wrapped}, {"token": root}]);
            tokio::spawn(async move { report(&harness, leaks).await })
        })
        .collect();
    let mut revoked = 0;
    for task in tasks {
        let answer = task.await.unwrap().unwrap();
        revoked += answer["revoked"].as_u64().unwrap();
        assert_eq!(answer["results"][1]["status"], "not_revoked");
    }
    assert_eq!(revoked, 1);
    assert!(harness.engine.handle(lookup_self(&root)).await.is_ok());
}

#[tokio::test]
async fn a_report_is_capped_at_the_item_limit() {
    let (harness, _) = setup().await;
    assert_eq!(MAX_LEAKS_PER_REPORT, 100);
    let item = json!({"token": "custos_token_x"});
    let full = vec![item.clone(); MAX_LEAKS_PER_REPORT];
    let answer = report(&harness, Value::Array(full)).await.unwrap();
    assert_eq!(
        answer["results"].as_array().unwrap().len(),
        MAX_LEAKS_PER_REPORT
    );
    let over = vec![item; MAX_LEAKS_PER_REPORT + 1];
    let refused = report(&harness, Value::Array(over)).await;
    assert!(
        matches!(&refused, Err(EngineError::InvalidRequest(message)) if message.contains("limit of 100")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn reports_of_random_tokens_do_not_fill_the_read_cache() {
    let cached = Arc::new(
        custos_storage::CachedStorage::new(Arc::new(custos_storage::MemoryStorage::new()), 1 << 20)
            .without_caching_misses_under(custos_engine::CREDENTIAL_PREFIXES),
    );
    let clock = Arc::new(custos_engine::FakeClock::new(
        jiff::Timestamp::from_second(START_UNIX).unwrap(),
    ));
    let engine = custos_engine::Engine::new(cached.clone(), clock);
    engine.dev_init(None).await.unwrap();
    // The first request after unsealing reloads the mirrored tables (mounts, auth methods,
    // keyring) into the cache; count from after that.
    let _ = engine
        .handle(Request::new(Operation::Read, "sys/mounts"))
        .await;
    let before = cached.stats().entries;
    let strangers: Vec<Value> = (0..MAX_LEAKS_PER_REPORT as u8)
        .map(|seed| {
            let token =
                custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &[seed; 30])
                    .unwrap();
            json!({"token": token.as_str()})
        })
        .collect();
    let answer = engine
        .handle(Request::new(Operation::Update, "sys/leaks").data(json!({ "leaks": strangers })))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.data.unwrap()["results"][99]["status"], "unknown");
    // Made-up tokens in the request header do not fill it either.
    for seed in 0..20u8 {
        let token = custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &[seed; 30])
            .unwrap();
        let _ = engine.handle(lookup_self(token.as_str())).await;
    }
    assert_eq!(cached.stats().entries, before);
}

/// A `tracing` writer that keeps everything written, for tests that read the log.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> CapturedLog {
        self.clone()
    }
}

#[tokio::test]
async fn newlines_and_escape_codes_in_a_report_reach_the_log_escaped() {
    let (harness, root) = setup().await;
    let wrapped = wrapping_token(&harness, &root).await;
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    // The test runs on one thread, so the engine's events go to this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let forged =
        "https://x\n2026-01-01T00:00:00.000000Z  INFO custos: custos sealed\x1b[2J\x1b]0;pwned\x07";
    let answer = report(
        &harness,
        json!([
            {"token": wrapped, "url": forged, "source": "a\rb", "type": "t\u{202e}x"},
            {"token": root, "url": forged, "source": "x".repeat(5000)},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(answer["results"][0]["status"], "revoked");
    assert_eq!(answer["results"][1]["status"], "not_revoked");
    let text = log.text();
    assert_eq!(text.lines().count(), 2, "one line per event: {text}");
    assert!(text.lines().all(|line| line.contains("WARN")), "{text}");
    assert!(
        !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
        "{text:?}"
    );
    assert!(!text.contains('\u{202e}'), "{text:?}");
    assert!(
        text.contains(
            r#"url="https://x\n2026-01-01T00:00:00.000000Z  INFO custos: custos sealed\u{1b}[2J"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"source="a\rb""#), "{text}");
    assert!(
        text.contains(&format!(
            "source=\"{}…\"",
            "x".repeat(custos_engine::MAX_LOGGED_CHARS)
        )),
        "{text}"
    );
    assert!(!text.contains(&"x".repeat(custos_engine::MAX_LOGGED_CHARS + 1)));
    assert!(
        !text.contains(&root) && !text.contains(&wrapped),
        "no credential in the log"
    );
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
