//! The request pipeline and the mount table: enable, list, tune, remount, disable, routing.

use custos_engine::logical::Operation;
use custos_engine::{EngineError, Request};
use serde_json::json;

use crate::support::{Harness, get, put, read_data};

async fn raw_keys_under(harness: &Harness, prefix: &str) -> Vec<String> {
    use custos_storage::Storage;
    harness.storage.list(prefix, None, 0).await.unwrap().keys
}

#[tokio::test]
async fn pipeline_authenticates_before_anything_else() {
    let (harness, _) = Harness::unsealed().await;
    for token in [None, Some("not-a-token")] {
        let mut request = Request::new(Operation::Read, "sys/mounts");
        request.token = token.map(str::to_owned);
        assert!(matches!(
            harness.engine.handle(request).await,
            Err(EngineError::PermissionDenied)
        ));
    }
    // Even a malformed path is 403 for an anonymous caller: nothing leaks before auth.
    assert!(matches!(
        harness
            .engine
            .handle(Request::new(Operation::Read, "a//b"))
            .await,
        Err(EngineError::PermissionDenied)
    ));
}

#[tokio::test]
async fn pipeline_is_sealed_when_sealed() {
    let (harness, token) = Harness::unsealed().await;
    harness.engine.seal(Some(&token)).await.unwrap();
    assert!(matches!(
        harness.engine.handle(get("sys/mounts", &token)).await,
        Err(EngineError::Sealed)
    ));
}

#[tokio::test]
async fn invalid_paths_are_refused() {
    let (harness, token) = Harness::unsealed().await;
    let long = "a".repeat(custos_engine::MAX_PATH_LEN + 1);
    for path in [
        "secret//x",
        "secret/../x",
        "secret/./x",
        "secret/\u{7}",
        long.as_str(),
    ] {
        let result = harness.engine.handle(get(path, &token)).await;
        assert!(
            matches!(&result, Err(EngineError::InvalidRequest(message)) if message.starts_with("invalid path")),
            "{path:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn unmounted_paths_have_no_route() {
    let (harness, token) = Harness::unsealed().await;
    assert!(matches!(
        harness.engine.handle(get("nothing/here", &token)).await,
        Err(EngineError::NoRoute(path)) if path == "nothing/here"
    ));
}

#[tokio::test]
async fn enable_list_read_and_disable_a_mount() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    let answer = engine
        .handle(put(
            "sys/mounts/kv2",
            &token,
            json!({"type": "kv", "options": {"version": "2"}, "description": "apps"}),
        ))
        .await
        .unwrap();
    // Done, nothing to say: 204, not "not found".
    assert_eq!(
        answer,
        Some(custos_engine::logical::LogicalResponse::no_content())
    );
    let listed = engine
        .handle(get("sys/mounts", &token))
        .await
        .unwrap()
        .unwrap();
    let data = listed.data.unwrap();
    let mount = &data["kv2/"];
    assert_eq!(mount["type"], "kv");
    assert_eq!(mount["options"]["version"], "2");
    assert_eq!(mount["description"], "apps");
    assert!(mount["uuid"].as_str().unwrap().len() == 36);
    assert!(data.contains_key("sys/"));

    let ui = read_data(engine, "sys/internal/ui/mounts/kv2/some/secret", &token).await;
    assert_eq!(ui["path"], "kv2/");
    assert_eq!(ui["options"]["version"], "2");

    // Data written through the mount disappears with it.
    engine
        .handle(put(
            "kv2/data/app",
            &token,
            json!({"data": {"password": "hunter2"}}),
        ))
        .await
        .unwrap();
    let raw_before = raw_keys_under(&harness, "logical/").await;
    assert!(!raw_before.is_empty());
    engine
        .handle(Request::new(Operation::Delete, "sys/mounts/kv2").token(token.as_str()))
        .await
        .unwrap();
    assert!(raw_keys_under(&harness, "logical/").await.is_empty());
    assert!(matches!(
        engine.handle(get("kv2/data/app", &token)).await,
        Err(EngineError::NoRoute(_))
    ));
    // Disabling again succeeds, as Vault.
    engine
        .handle(Request::new(Operation::Delete, "sys/mounts/kv2").token(token.as_str()))
        .await
        .unwrap();
}

#[tokio::test]
async fn mount_paths_cannot_overlap_or_take_reserved_prefixes() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine.mount(&token, "team/a", "kv", &[]).await.unwrap();
    for path in ["team/a", "team", "team/a/b", "sys", "auth/x", "cubbyhole"] {
        let result = engine
            .handle(put(
                &format!("sys/mounts/{path}"),
                &token,
                json!({"type": "kv"}),
            ))
            .await;
        assert!(
            matches!(result, Err(EngineError::InvalidRequest(_))),
            "{path}: {result:?}"
        );
    }
    engine.mount(&token, "team/b", "kv", &[]).await.unwrap();
}

#[tokio::test]
async fn unknown_types_and_versions_are_refused() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    for body in [
        json!({"type": "nope"}),
        json!({"type": "kv", "options": {"version": "3"}}),
        json!({}),
        json!({"type": 5}),
        json!({"type": "kv", "options": "v2"}),
        json!({"type": "kv", "config": {"default_lease_ttl": "soon"}}),
    ] {
        let result = engine
            .handle(put("sys/mounts/x", &token, body.clone()))
            .await;
        assert!(
            matches!(result, Err(EngineError::InvalidRequest(_))),
            "{body}: {result:?}"
        );
    }
    let listed = engine
        .handle(get("sys/mounts", &token))
        .await
        .unwrap()
        .unwrap();
    assert!(!listed.data.unwrap().contains_key("x/"));
}

#[tokio::test]
async fn kv_v2_alias_and_default_version() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine
        .handle(put("sys/mounts/a", &token, json!({"type": "kv-v2"})))
        .await
        .unwrap();
    engine
        .handle(put("sys/mounts/b", &token, json!({"type": "kv"})))
        .await
        .unwrap();
    let data = read_data(engine, "sys/mounts", &token).await;
    assert_eq!(data["a/"]["type"], "kv");
    assert_eq!(data["a/"]["options"]["version"], "2");
    // As Vault: options `{}` when none were given, and an empty description.
    assert_eq!(data["b/"]["options"], json!({}));
    assert_eq!(data["b/"]["description"], "");
    let tune = read_data(engine, "sys/mounts/b/tune", &token).await;
    assert!(tune.get("options").is_none(), "{tune:?}");
    assert_eq!(tune["description"], "");
    let tune = read_data(engine, "sys/mounts/a/tune", &token).await;
    assert_eq!(tune["options"], json!({"version": "2"}));
}

#[tokio::test]
async fn tune_reads_and_changes_settings() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine
        .mount(&token, "kv", "kv", &[("version", "2")])
        .await
        .unwrap();
    let tune = read_data(engine, "sys/mounts/kv/tune", &token).await;
    assert_eq!(tune["default_lease_ttl"], 32 * 24 * 3600);
    engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"default_lease_ttl": "1h", "max_lease_ttl": 7200, "description": "tuned"}),
        ))
        .await
        .unwrap();
    let tune = read_data(engine, "sys/mounts/kv/tune", &token).await;
    assert_eq!(
        (
            tune["default_lease_ttl"].as_u64(),
            tune["max_lease_ttl"].as_u64()
        ),
        (Some(3600), Some(7200))
    );
    assert_eq!(tune["description"], "tuned");
    // default above max, and going back to kv v1, are refused.
    assert!(
        engine
            .handle(put(
                "sys/mounts/kv/tune",
                &token,
                json!({"default_lease_ttl": "3h"})
            ))
            .await
            .is_err()
    );
    assert!(
        engine
            .handle(put(
                "sys/mounts/kv/tune",
                &token,
                json!({"options": {"version": "1"}})
            ))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn remount_moves_a_mount_with_its_data() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine
        .mount(&token, "old", "kv", &[("version", "2")])
        .await
        .unwrap();
    engine
        .handle(put("old/data/app", &token, json!({"data": {"k": "v"}})))
        .await
        .unwrap();
    let answer = engine
        .handle(put(
            "sys/remount",
            &token,
            json!({"from": "old", "to": "new"}),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.data.unwrap()["migration_id"].is_string());
    let read = engine
        .handle(get("new/data/app", &token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.data.unwrap()["data"]["k"], "v");
    assert!(matches!(
        engine.handle(get("old/data/app", &token)).await,
        Err(EngineError::NoRoute(_))
    ));
}

#[tokio::test]
async fn mounts_survive_a_restart() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    harness
        .engine
        .mount(&token, "kept", "kv", &[("version", "2")])
        .await
        .unwrap();
    let other = harness.another_engine();
    crate::support::unseal_all(&other, &output.shares).await;
    let data = read_data(&other, "sys/mounts", &token).await;
    assert_eq!(data["kept/"]["options"]["version"], "2");
}

#[tokio::test]
async fn concurrent_mount_changes_are_all_kept() {
    let (harness, token) = Harness::unsealed().await;
    let mut tasks = Vec::new();
    for index in 0..16 {
        let engine = harness.engine.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            engine.mount(&token, &format!("m{index}"), "kv", &[]).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let data = read_data(&harness.engine, "sys/mounts", &token).await;
    for index in 0..16 {
        assert!(
            data.contains_key(&format!("m{index}/")),
            "m{index}/ missing"
        );
    }
}

#[tokio::test]
async fn wrong_methods_on_sys_paths_are_refused() {
    let (harness, token) = Harness::unsealed().await;
    assert!(matches!(
        harness
            .engine
            .handle(Request::new(Operation::Delete, "sys/mounts").token(token.as_str()))
            .await,
        Err(EngineError::MethodNotAllowed)
    ));
}

#[tokio::test]
async fn tune_with_empty_ttl_strings_keeps_the_ttls() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine.mount(&token, "kv", "kv", &[]).await.unwrap();
    engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"default_lease_ttl": "1h", "max_lease_ttl": "2h"}),
        ))
        .await
        .unwrap();
    // What `bao secrets tune -description=x kv` sends.
    engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"default_lease_ttl": "", "max_lease_ttl": "", "description": "x",
                   "audit_non_hmac_request_keys": null}),
        ))
        .await
        .unwrap();
    let tune = read_data(engine, "sys/mounts/kv/tune", &token).await;
    assert_eq!(tune["default_lease_ttl"], 3600);
    assert_eq!(tune["max_lease_ttl"], 7200);
    assert_eq!(tune["description"], "x");
    // "system" still resets to the default.
    engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"default_lease_ttl": "system"}),
        ))
        .await
        .unwrap();
    let tune = read_data(engine, "sys/mounts/kv/tune", &token).await;
    assert_eq!(tune["default_lease_ttl"], 32 * 24 * 3600);
    assert_eq!(tune["max_lease_ttl"], 7200);
}

#[tokio::test]
async fn remount_status_reports_a_finished_move() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    let engine = &harness.engine;
    engine.mount(&token, "from", "kv", &[]).await.unwrap();
    let answer = engine
        .handle(put(
            "sys/remount",
            &token,
            json!({"from": "from", "to": "to"}),
        ))
        .await
        .unwrap()
        .unwrap();
    let id = answer.data.unwrap()["migration_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = read_data(engine, &format!("sys/remount/status/{id}"), &token).await;
    assert_eq!(status["migration_id"], id.as_str());
    assert_eq!(
        status["migration_info"],
        json!({"source_mount": "from/", "target_mount": "to/", "status": "success"})
    );
    // An unknown id is not found, as in Vault.
    assert!(
        engine
            .handle(get("sys/remount/status/unknown", &token))
            .await
            .unwrap()
            .is_none()
    );
    // The record is stored with the move: another node, or a restarted one, answers too.
    let other = harness.another_engine();
    crate::support::unseal_all(&other, &output.shares).await;
    let status = read_data(&other, &format!("sys/remount/status/{id}"), &token).await;
    assert_eq!(status["migration_info"]["status"], "success");
    // Only the latest moves are kept.
    let mut at = "to";
    for _ in 0..40 {
        let next = if at == "to" { "back" } else { "to" };
        engine
            .handle(put("sys/remount", &token, json!({"from": at, "to": next})))
            .await
            .unwrap();
        at = next;
    }
    assert!(
        engine
            .handle(get(&format!("sys/remount/status/{id}"), &token))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn remount_under_itself_and_unmounting_sys_are_refused() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine.mount(&token, "kv", "kv", &[]).await.unwrap();
    for to in ["kv/sub", "kv"] {
        let result = engine
            .handle(put("sys/remount", &token, json!({"from": "kv", "to": to})))
            .await;
        assert!(
            matches!(&result, Err(EngineError::InvalidRequest(message)) if message == "path already in use at \"kv/\""),
            "{to}: {result:?}"
        );
    }
    let mut request = get("sys/mounts/sys", &token);
    request.operation = Operation::Delete;
    let result = engine.handle(request).await;
    assert!(
        matches!(&result, Err(EngineError::InvalidRequest(message)) if message == "cannot unmount \"sys/\""),
        "{result:?}"
    );
}

#[tokio::test]
async fn audit_and_listing_settings_are_stored_and_reported() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine
        .handle(put(
            "sys/mounts/kv",
            &token,
            json!({"type": "kv", "config": {
                "listing_visibility": "hidden",
                "audit_non_hmac_request_keys": "a,b",
            }}),
        ))
        .await
        .unwrap();
    let mounts = read_data(engine, "sys/mounts", &token).await;
    assert_eq!(mounts["kv/"]["config"]["listing_visibility"], "hidden");
    assert_eq!(
        mounts["kv/"]["config"]["audit_non_hmac_request_keys"],
        json!(["a", "b"])
    );
    // Unset settings are left out, as Vault's omitempty does.
    assert!(
        mounts["kv/"]["config"]
            .get("allowed_response_headers")
            .is_none()
    );
    engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({
                "listing_visibility": "unauth",
                "audit_non_hmac_response_keys": ["c"],
                "passthrough_request_headers": ["X-A"],
                "allowed_response_headers": ["X-B"],
            }),
        ))
        .await
        .unwrap();
    let tune = read_data(engine, "sys/mounts/kv/tune", &token).await;
    assert_eq!(tune["listing_visibility"], "unauth");
    assert_eq!(tune["audit_non_hmac_request_keys"], json!(["a", "b"]));
    assert_eq!(tune["audit_non_hmac_response_keys"], json!(["c"]));
    assert_eq!(tune["passthrough_request_headers"], json!(["X-A"]));
    assert_eq!(tune["allowed_response_headers"], json!(["X-B"]));
    // An empty value clears a setting.
    engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"listing_visibility": "", "audit_non_hmac_request_keys": []}),
        ))
        .await
        .unwrap();
    let tune = read_data(engine, "sys/mounts/kv/tune", &token).await;
    assert!(tune.get("listing_visibility").is_none());
    assert!(tune.get("audit_non_hmac_request_keys").is_none());
    // Invalid values are refused with Vault's message, on tune and on enable.
    let result = engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"listing_visibility": "bogus"}),
        ))
        .await;
    assert!(
        matches!(&result, Err(EngineError::InvalidRequest(message)) if message == "invalid listing_visibility bogus"),
        "{result:?}"
    );
    let result = engine
        .handle(put(
            "sys/mounts/other",
            &token,
            json!({"type": "kv", "config": {"listing_visibility": "bogus"}}),
        ))
        .await;
    assert!(
        matches!(&result, Err(EngineError::InvalidRequest(_))),
        "{result:?}"
    );
    let result = engine
        .handle(put(
            "sys/mounts/kv/tune",
            &token,
            json!({"passthrough_request_headers": {"x": 1}}),
        ))
        .await;
    assert!(
        matches!(&result, Err(EngineError::InvalidRequest(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn kv_v1_mount_is_upgraded_to_v2_in_place_keeping_its_secrets() {
    let (harness, token) = Harness::unsealed().await;
    let engine = &harness.engine;
    engine
        .mount(&token, "old", "kv", &[("version", "1")])
        .await
        .unwrap();
    // More secrets than one listing page, some in folders.
    for index in 0..520 {
        engine
            .handle(put(
                &format!("old/team/s{index}"),
                &token,
                json!({"n": index}),
            ))
            .await
            .unwrap();
    }
    engine
        .handle(put("old/top", &token, json!({"password": "hunter2"})))
        .await
        .unwrap();
    let answer = engine
        .handle(put(
            "sys/mounts/old/tune",
            &token,
            json!({"options": {"version": "2"}}),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.warnings[0].starts_with("Upgraded mount from version 1 to version 2: 521 secrets"),
        "{:?}",
        answer.warnings
    );
    let mounts = read_data(engine, "sys/mounts", &token).await;
    assert_eq!(mounts["old/"]["options"]["version"], "2");
    let read = read_data(engine, "old/data/top", &token).await;
    assert_eq!(read["data"], json!({"password": "hunter2"}));
    assert_eq!(read["metadata"]["version"], 1);
    let read = read_data(engine, "old/data/team/s519", &token).await;
    assert_eq!(read["data"], json!({"n": 519}));
    let meta = read_data(engine, "old/metadata/top", &token).await;
    assert_eq!(meta["current_version"], 1);
    assert_eq!(meta["oldest_version"], 1);
    // The next write is version 2 on top of the converted one.
    let written = engine
        .handle(put(
            "old/data/top",
            &token,
            json!({"data": {"password": "new"}}),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.data.unwrap()["version"], 2);
    let listed = engine
        .handle(Request {
            operation: Operation::List,
            ..get("old/metadata/", &token)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.data.unwrap()["keys"], json!(["team/", "top"]));
    // No v1 key is left behind, and tuning version 2 again changes nothing.
    let mount_uuid = mounts["old/"]["uuid"].as_str().unwrap().to_owned();
    let left = raw_keys_under(&harness, &format!("logical/{mount_uuid}/data/")).await;
    assert!(left.is_empty(), "{left:?}");
    let again = engine
        .handle(put(
            "sys/mounts/old/tune",
            &token,
            json!({"options": {"version": "2"}}),
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(again.warnings.is_empty());
    // A v2 mount cannot go back to v1, as in Vault.
    let result = engine
        .handle(put(
            "sys/mounts/old/tune",
            &token,
            json!({"options": {"version": "1"}}),
        ))
        .await;
    assert!(
        matches!(&result, Err(EngineError::InvalidRequest(message)) if message == "cannot downgrade mount from version 2"),
        "{result:?}"
    );
}
