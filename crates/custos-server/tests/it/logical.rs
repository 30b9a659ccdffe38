//! `/v1/<path>` through the engine pipeline: methods, envelopes, statuses and body handling.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{req, unsealed};

#[tokio::test]
async fn mounting_and_listing_mounts_over_http() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/mounts/kv")
                .token(token)
                .json(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.bytes.is_empty());

    let reply = server
        .send(req(Method::GET, "/v1/sys/mounts").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    // Vault's envelope, and for sys/ paths the data also at the top level.
    for field in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["request_id"], reply.header("x-request-id").unwrap());
    assert_eq!(body["data"]["kv/"]["type"], "kv");
    assert_eq!(body["kv/"]["options"]["version"], "2");
}

#[tokio::test]
async fn kv_v1_round_trip_with_list_method_and_query() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    server
        .send(
            req(Method::POST, "/v1/sys/mounts/kv1")
                .token(token)
                .json(&json!({"type": "kv"})),
        )
        .await;
    let reply = server
        .send(
            req(Method::PUT, "/v1/kv1/app/db")
                .token(token)
                .json(&json!({"password": "hunter2"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    let reply = server
        .send(req(Method::GET, "/v1/kv1/app/db").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["data"]["password"], "hunter2");
    // Not a sys/ path: data only under `data`.
    assert!(body.get("password").is_none());

    let method = Method::from_bytes(b"LIST").unwrap();
    let listed = server.send(req(method, "/v1/kv1/app").token(token)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["data"]["keys"], json!(["db"]));
    let listed = server
        .send(req(Method::GET, "/v1/kv1/?list=true").token(token))
        .await;
    assert_eq!(listed.json()["data"]["keys"], json!(["app/"]));

    let reply = server
        .send(req(Method::DELETE, "/v1/kv1/app/db").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = server
        .send(req(Method::GET, "/v1/kv1/app/db").token(token))
        .await;
    reply.assert_error(StatusCode::NOT_FOUND, "not_found", &[]);
}

#[tokio::test]
async fn bodies_must_be_json_objects_within_the_limit() {
    let (mut server, init) = unsealed().await;
    let token = init.root_token.clone();
    server
        .send(
            req(Method::POST, "/v1/sys/mounts/kv1")
                .token(&token)
                .json(&json!({"type": "kv"})),
        )
        .await;
    for body in ["{bad", "[1,2]", "\"text\"", "5"] {
        let reply = server
            .send(req(Method::PUT, "/v1/kv1/x").token(&token).raw(body))
            .await;
        reply.assert_bad_request_starting("invalid_json", "failed to decode JSON input");
    }
    server.state.max_request_bytes = 1024;
    server = crate::support::Server::new(server.state.clone());
    let big = json!({"blob": "x".repeat(4096)});
    let reply = server
        .send(req(Method::PUT, "/v1/kv1/x").token(&token).json(&big))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply.header("x-custos-error-code"),
        Some("payload_too_large")
    );
}

#[tokio::test]
async fn patch_needs_the_merge_patch_content_type() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    let reply = server
        .send(
            req(Method::PATCH, "/v1/secret/data/x")
                .token(token)
                .json(&json!({"data": {}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        reply.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("merge-patch+json")
    );
}

#[tokio::test]
async fn unmounted_paths_are_404_naming_the_route() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(req(Method::GET, "/v1/nothing/here").token(&init.root_token))
        .await;
    reply.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &["no handler for route \"nothing/here\". route entry not found."],
    );
    let reply = server
        .send(req(Method::GET, "/v1/nothing/../here").token(&init.root_token))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unclean_paths_redirect_to_the_cleaned_path_like_vault_but_dot_dot_is_refused() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    for (path, location) in [
        ("/v1/secret//data/x", "/v1/secret/data/x"),
        ("/v1/secret/data/./x", "/v1/secret/data/x"),
        ("/v1/secret/data/%2E/x", "/v1/secret/data/x"),
        (
            "/v1/secret/data//x/?list=true",
            "/v1/secret/data/x/?list=true",
        ),
        ("/v1//sys/mounts", "/v1/sys/mounts"),
    ] {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let reply = server.send(req(method.clone(), path).token(token)).await;
            assert_eq!(
                reply.status,
                StatusCode::TEMPORARY_REDIRECT,
                "{method} {path}"
            );
            assert_eq!(reply.header("location"), Some(location), "{path}");
        }
    }
    // `..` could move a request to another mount: refused, never resolved.
    for path in [
        "/v1/secret/data/a/../../../sys/mounts",
        "/v1/secret/data/%2E%2E/x",
        "/v1/secret//data/../x",
    ] {
        let reply = server.send(req(Method::GET, path).token(token)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
    }
    // The root of the API does not redirect to itself.
    let reply = server.send(req(Method::GET, "/v1//").token(token)).await;
    assert_ne!(reply.status, StatusCode::TEMPORARY_REDIRECT);
}

#[tokio::test]
async fn unknown_methods_are_405() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(
            req(Method::from_bytes(b"BREW").unwrap(), "/v1/secret/data/x").token(&init.root_token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn leak_reports_need_no_token_and_revoke_the_credential_but_not_a_root_token() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/wrapping/wrap")
                .token(token)
                .header("x-vault-wrap-ttl", "300")
                .json(&json!({"password": "hunter2"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    let wrapped = reply.json()["wrap_info"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = server
        .send(req(Method::POST, "/v1/sys/leaks").json(&json!({"leaks": [
            {"token": wrapped, "type": "custos_token"},
            {"token": token, "type": "custos_token"},
        ]})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    let body = reply.json();
    assert_eq!(body["data"]["revoked"], 1);
    assert_eq!(body["data"]["not_revoked"], 1);
    assert_eq!(body["data"]["results"][0]["status"], "revoked");
    assert_eq!(body["data"]["results"][1]["status"], "not_revoked");
    assert_eq!(
        body["data"]["results"][1]["reason"],
        "root token: revoke it with a token"
    );
    assert!(!String::from_utf8_lossy(&reply.bytes).contains(token));
    assert!(!String::from_utf8_lossy(&reply.bytes).contains(&wrapped));

    let reply = server
        .send(req(Method::GET, "/v1/auth/token/lookup-self").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["data"]["leaked"], true);
    let reply = server
        .send(req(Method::POST, "/v1/sys/wrapping/unwrap").token(&wrapped))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let reply = server
        .send(req(Method::POST, "/v1/sys/leaks").json(&json!({"leaks": "nope"})))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = server
        .send(req(Method::POST, "/v1/sys/leaks").raw("{"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = server.send(req(Method::GET, "/v1/sys/leaks")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn wrap_ttl_header_takes_vaults_durations_and_zero_or_empty_means_no_wrapping() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    mount(&server, token, "secret", json!({"version": "2"})).await;
    let reply = server
        .send(
            req(Method::POST, "/v1/secret/data/w")
                .token(token)
                .json(&json!({"data": {"a": "1"}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    for (header, ttl) in [
        ("1d", 86_400),
        ("31d", 2_678_400),
        ("721h", 2_595_600),
        ("30", 30),
        (" 5m ", 300),
    ] {
        let reply = server
            .send(
                req(Method::GET, "/v1/secret/data/w")
                    .token(token)
                    .header("x-vault-wrap-ttl", header),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{header}: {}", reply.json());
        assert_eq!(reply.json()["wrap_info"]["ttl"], ttl, "{header}");
        assert_eq!(reply.json()["data"], Value::Null, "{header}");
    }
    for header in ["0", "", "0s"] {
        let reply = server
            .send(
                req(Method::GET, "/v1/secret/data/w")
                    .token(token)
                    .header("x-vault-wrap-ttl", header),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{header:?}: {}", reply.json());
        assert_eq!(reply.json()["wrap_info"], Value::Null, "{header:?}");
        assert_eq!(reply.json()["data"]["data"]["a"], "1", "{header:?}");
    }
    for (header, message) in [
        ("-5", "requested wrap ttl cannot be negative"),
        ("abc", "error parsing X-Vault-Wrap-TTL header"),
        ("1y", "error parsing X-Vault-Wrap-TTL header"),
        ("769h", "longer than the maximum"),
    ] {
        let reply = server
            .send(
                req(Method::GET, "/v1/secret/data/w")
                    .token(token)
                    .header("x-vault-wrap-ttl", header),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{header}");
        let body = reply.json().to_string();
        assert!(body.contains(message), "{header}: {body}");
    }
}

#[tokio::test]
async fn invalid_wrapping_tokens_are_400_on_unwrap_lookup_and_rewrap_like_vault() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    for endpoint in ["unwrap", "lookup", "rewrap"] {
        let reply = server
            .send(
                req(Method::POST, &format!("/v1/sys/wrapping/{endpoint}"))
                    .token(token)
                    .json(&json!({"token": "s.bogus"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{endpoint}");
        assert_eq!(
            reply.json()["errors"][0],
            "wrapping token is not valid or does not exist",
            "{endpoint}"
        );
    }
    let reply = server
        .send(req(Method::POST, "/v1/sys/wrapping/unwrap").token("s.bogus"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

/// Mounts a kv engine with `options` at `path`.
async fn mount(server: &crate::support::Server, token: &str, path: &str, options: Value) {
    let reply = server
        .send(
            req(Method::POST, &format!("/v1/sys/mounts/{path}"))
                .token(token)
                .json(&json!({ "type": "kv", "options": options })),
        )
        .await;
    assert!(
        reply.status.is_success(),
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
}

#[tokio::test]
async fn secret_paths_up_to_the_documented_2048_bytes_work_and_longer_ones_are_400() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    mount(&server, token, "secret", json!({"version": "2"})).await;
    mount(&server, token, "kv1", json!({"version": "1"})).await;
    let longest = "a/".repeat(1023) + "bc";
    assert_eq!(longest.len(), 2048);
    for (write, read) in [
        (
            format!("/v1/secret/data/{longest}"),
            format!("/v1/secret/data/{longest}"),
        ),
        (format!("/v1/kv1/{longest}"), format!("/v1/kv1/{longest}")),
    ] {
        let reply = server
            .send(
                req(Method::POST, &write)
                    .token(token)
                    .json(&json!({"data": {"a": "1"}, "a": "1"})),
            )
            .await;
        assert!(
            reply.status.is_success(),
            "{}",
            String::from_utf8_lossy(&reply.bytes)
        );
        let reply = server.send(req(Method::GET, &read).token(token)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let reply = server
        .send(req(Method::GET, &format!("/v1/secret/metadata/{longest}")).token(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    for path in [
        format!("/v1/secret/data/{longest}x"),
        format!("/v1/kv1/{longest}x"),
        format!("/v1/secret/data/{}", "a".repeat(4096)),
    ] {
        let reply = server
            .send(
                req(Method::POST, &path)
                    .token(token)
                    .json(&json!({"data": {"a": "1"}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(
            reply.json().to_string().contains("bytes"),
            "{}",
            reply.json()
        );
    }
}

#[tokio::test]
async fn kv_v1_reads_answer_the_secrets_ttl_or_the_mounts_default_lease() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    mount(&server, token, "kv1", json!({"version": "1"})).await;
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/mounts/kv1d")
                .token(token)
                .json(&json!({"type": "kv", "options": {"version": "1"}, "config": {"default_lease_ttl": "1h"}})),
        )
        .await;
    assert!(
        reply.status.is_success(),
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    for (mount, plain) in [("kv1", 2_764_800), ("kv1d", 3600)] {
        for (path, body, lease) in [
            ("plain", json!({"x": "1"}), plain),
            ("ttl", json!({"x": "1", "ttl": "30m"}), 1800),
        ] {
            let url = format!("/v1/{mount}/{path}");
            let reply = server
                .send(req(Method::POST, &url).token(token).json(&body))
                .await;
            assert!(reply.status.is_success());
            let reply = server.send(req(Method::GET, &url).token(token)).await;
            assert_eq!(reply.json()["lease_duration"], lease, "{url}");
        }
    }
}

#[tokio::test]
async fn patch_accepts_the_merge_patch_media_type_in_any_case() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    mount(&server, token, "secret", json!({"version": "2"})).await;
    let reply = server
        .send(
            req(Method::POST, "/v1/secret/data/p")
                .token(token)
                .json(&json!({"data": {"a": "1"}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    for content_type in [
        "Application/Merge-Patch+JSON",
        "APPLICATION/MERGE-PATCH+JSON; charset=utf-8",
    ] {
        let reply = server
            .send(
                req(Method::PATCH, "/v1/secret/data/p")
                    .token(token)
                    .raw(r#"{"data": {"b": "2"}}"#)
                    .header("content-type", content_type),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{content_type}: {}",
            reply.json()
        );
    }
}

#[tokio::test]
async fn help_query_answers_vaults_help_shape_for_kv_and_sys_paths() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    mount(&server, token, "secret", json!({"version": "2"})).await;
    mount(&server, token, "kv1", json!({"version": "1"})).await;
    for (method, path, route) in [
        (
            Method::GET,
            "/v1/secret/data/x?help=1",
            "^data/(?P<path>.*)$",
        ),
        (
            Method::GET,
            "/v1/secret/metadata/x?help=0",
            "^metadata/(?P<path>.*)$",
        ),
        (Method::POST, "/v1/secret/config?help=1", "^config$"),
        (Method::GET, "/v1/kv1/a/b?help=1", "^.*$"),
        (
            Method::GET,
            "/v1/sys/mounts?help=1",
            "^mounts(?:/(?P<path>.+?))?$",
        ),
        (Method::GET, "/v1/sys/wrapping/lookup?help=1", "^wrapping/"),
    ] {
        let reply = server.send(req(method, path).token(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let body = reply.json();
        let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["help", "openapi", "see_also"], "{path}");
        let help = body["help"].as_str().unwrap();
        assert!(help.starts_with("Request:        "), "{help}");
        assert!(
            help.contains(&format!("Matching Route: {route}")),
            "{path}: {help}"
        );
        assert_eq!(body["see_also"], Value::Null);
        assert_eq!(body["openapi"]["openapi"], "3.0.2");
    }
    // A help request reads and writes nothing: the secret was never created.
    let reply = server
        .send(req(Method::GET, "/v1/secret/data/x").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Like Vault: a token is needed, and an unmounted path is 404.
    let reply = server
        .send(req(Method::GET, "/v1/secret/data/x?help=1"))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = server
        .send(req(Method::GET, "/v1/nothing/x?help=1").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_namespace_other_than_root_is_refused_not_ignored() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    server
        .send(
            req(Method::POST, "/v1/sys/mounts/kv1")
                .token(token)
                .json(&json!({"type": "kv"})),
        )
        .await;
    let reply = server
        .send(
            req(Method::PUT, "/v1/kv1/app")
                .token(token)
                .header("x-vault-namespace", "team1")
                .json(&json!({"k": "v"})),
        )
        .await;
    reply.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &["namespace not found: \"team1\" (custos has only the root namespace)"],
    );
    // Nothing was written in root.
    let reply = server
        .send(req(Method::GET, "/v1/kv1/app").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Root, spelled any way Vault accepts, is fine.
    for namespace in ["", "root", "root/", "/"] {
        let reply = server
            .send(
                req(Method::PUT, "/v1/kv1/app")
                    .token(token)
                    .header("x-vault-namespace", namespace)
                    .json(&json!({"k": "v"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{namespace:?}");
    }
}

#[tokio::test]
async fn remount_status_is_not_flattened() {
    let (server, init) = unsealed().await;
    let token = init.root_token.as_str();
    server
        .send(
            req(Method::POST, "/v1/sys/mounts/a")
                .token(token)
                .json(&json!({"type": "kv"})),
        )
        .await;
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/remount")
                .token(token)
                .json(&json!({"from": "a", "to": "b"})),
        )
        .await;
    let id = reply.json()["migration_id"].as_str().unwrap().to_owned();
    let reply = server
        .send(req(Method::GET, &format!("/v1/sys/remount/status/{id}")).token(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["data"]["migration_info"]["status"], "success");
    assert!(body.get("migration_info").is_none(), "{body}");
    let reply = server
        .send(req(Method::GET, "/v1/sys/remount/status/unknown").token(token))
        .await;
    reply.assert_error(StatusCode::NOT_FOUND, "not_found", &[]);
}
