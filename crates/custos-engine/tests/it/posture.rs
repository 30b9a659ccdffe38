//! `sys/posture/secrets`: expired, expiring and rotation-due secrets across KV v2 mounts.

use custos_engine::logical::Operation;
use custos_engine::{EngineError, Request};
use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::{Harness, START_UNIX, get, put, read_data};

fn at(offset_hours: i64) -> String {
    jiff::Timestamp::from_second(START_UNIX + offset_hours * 3600)
        .unwrap()
        .to_string()
}

/// An unsealed harness with a KV v2 mount at `apps/`, and its root token.
async fn with_apps_mount() -> (Harness, String) {
    let (harness, token) = Harness::unsealed().await;
    harness
        .engine
        .mount(&token, "apps", "kv", &[("version", "2")])
        .await
        .unwrap();
    (harness, token)
}

#[tokio::test]
async fn posture_lists_expired_expiring_and_rotation_due_secrets() {
    let (harness, token) = with_apps_mount().await;
    let engine = &harness.engine;
    engine.mount(&token, "legacy", "kv", &[]).await.unwrap();
    let write = |path: &str, custom: Value| {
        let engine = engine.clone();
        let token = token.clone();
        let path = path.to_owned();
        async move {
            engine
                .handle(put(
                    &format!("apps/data/{path}"),
                    &token,
                    json!({"data": {"k": "v"}}),
                ))
                .await
                .unwrap();
            engine
                .handle(put(
                    &format!("apps/metadata/{path}"),
                    &token,
                    json!({"custom_metadata": custom}),
                ))
                .await
                .unwrap();
        }
    };
    write("expired", json!({"expires_at": at(-1)})).await;
    write("soon", json!({"expires_at": at(48)})).await;
    write("later", json!({"expires_at": at(24 * 30)})).await;
    write("rotate", json!({"rotation_period": "24h"})).await;
    write("fine", json!({})).await;
    harness.clock.advance(SignedDuration::from_hours(25));

    let answer = read_data(engine, "sys/posture/secrets", &token).await;
    let findings: Vec<(String, String)> = answer["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        findings.contains(&("apps/expired".into(), "expired".into())),
        "{findings:?}"
    );
    assert!(
        findings.contains(&("apps/soon".into(), "expired".into()))
            || findings.contains(&("apps/soon".into(), "expiring".into())),
        "{findings:?}"
    );
    assert!(
        findings.contains(&("apps/rotate".into(), "rotation_due".into())),
        "{findings:?}"
    );
    assert!(
        !findings
            .iter()
            .any(|(path, _)| path == "apps/fine" || path == "apps/later"),
        "{findings:?}"
    );

    // A wider window brings the later one in; a bad window is refused.
    let wide = engine
        .handle(
            Request::new(Operation::Read, "sys/posture/secrets")
                .token(token.as_str())
                .query("within", "1000h"),
        )
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    assert!(
        wide["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "apps/later")
    );
    assert!(matches!(
        engine
            .handle(
                Request::new(Operation::Read, "sys/posture/secrets")
                    .token(token.as_str())
                    .query("within", "soon")
            )
            .await,
        Err(EngineError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn reading_an_expired_secret_needs_allow_expired() {
    let (harness, token) = with_apps_mount().await;
    let engine = &harness.engine;
    engine
        .handle(put("apps/data/db", &token, json!({"data": {"pw": "x"}})))
        .await
        .unwrap();
    engine
        .handle(put(
            "apps/metadata/db",
            &token,
            json!({"custom_metadata": {"expires_at": at(1)}}),
        ))
        .await
        .unwrap();
    assert!(engine.handle(get("apps/data/db", &token)).await.is_ok());
    harness.clock.advance(SignedDuration::from_hours(2));
    assert!(matches!(
        engine.handle(get("apps/data/db", &token)).await,
        Err(EngineError::Expired(message)) if message.contains("expired")
    ));
    let read = engine
        .handle(
            Request::new(Operation::Read, "apps/data/db")
                .token(token.as_str())
                .query("allow_expired", "true"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.data.unwrap()["data"]["pw"], "x");
}
