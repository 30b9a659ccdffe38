//! ACL policies end to end: `custos policy` against a dev server over HTTP (write, read, list,
//! delete, explain), `fmt` offline, and Vault's answers for the built-in policies.
//! Tokens limited by a policy come from `auth/token/create`.

use std::process::Output;

use serde_json::Value;

use crate::kv_cli::{custos, custos_with_input, dev_server, ok};
use crate::support;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const TEAM: &str = r#"# Team A
path "secret/data/team-a/+/config" {
  capabilities = ["read", "update"]
}
path "secret/data/team-a/*" { capabilities = ["read", "list"] cidrs = ["10.0.0.0/8"] }
"#;

#[test]
fn policy_fmt_rewrites_checks_and_reports_lines_offline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("team.hcl");
    std::fs::write(&file, TEAM).unwrap();
    let file_arg = file.to_str().unwrap();
    // Nothing to connect to: fmt never talks to a server.
    let run = |args: &[&str]| {
        std::process::Command::new(support::binary())
            .args(args)
            .env("CUSTOS_ADDR", "http://127.0.0.1:1")
            .output()
            .unwrap()
    };
    let check = run(&["policy", "fmt", "--check", file_arg]);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let printed = ok(run(&["policy", "fmt", "--stdout", file_arg]));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        TEAM,
        "--stdout changes nothing"
    );
    assert!(printed.starts_with("# Team A\npath \"secret/data/team-a/+/config\" {\n  capabilities = [\"read\", \"update\"]\n}\n"));
    ok(run(&["policy", "fmt", file_arg]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    assert_eq!(
        run(&["policy", "fmt", "--check", file_arg]).status.code(),
        Some(0)
    );
    std::fs::write(&file, "path \"a\" {\n  capabilities = [\"reed\"]\n}\n").unwrap();
    let bad = run(&["policy", "fmt", file_arg]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        stderr(&bad).contains("line 2: unknown capability \"reed\""),
        "{bad:?}"
    );
}

#[test]
fn policy_commands_manage_policies_over_http() {
    let (dir, server) = dev_server();
    let file = dir.path().join("team.hcl");
    std::fs::write(&file, TEAM).unwrap();
    let written = ok(custos(
        &server,
        &["policy", "write", "team-a", file.to_str().unwrap()],
    ));
    assert_eq!(written.trim(), "Success! Uploaded policy: team-a");
    // The text is stored as written.
    assert_eq!(ok(custos(&server, &["policy", "read", "team-a"])), TEAM);
    let answer: Value = serde_json::from_str(&ok(custos(
        &server,
        &["policy", "read", "team-a", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(answer["data"]["name"], "team-a");
    assert_eq!(answer["data"]["policy"], TEAM);
    let listed = ok(custos(&server, &["policy", "list"]));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["default", "team-a", "root"]
    );
    // From standard input; a mistake is caught with its line before anything is sent.
    let bad = custos_with_input(
        &server,
        &["policy", "write", "broken", "-"],
        "path \"a\" {\n  capabilities = [\"read\"]\n  colour = \"blue\"\n}\n",
    );
    assert_ne!(bad.status.code(), Some(0));
    assert!(stderr(&bad).contains("line 3"), "{bad:?}");
    ok(custos_with_input(
        &server,
        &["policy", "write", "from-stdin", "-"],
        r#"{"path": {"secret/*": {"capabilities": ["read"]}}}"#,
    ));
    // Built-in policies answer with Vault's errors.
    let root = custos_with_input(
        &server,
        &["policy", "write", "root", "-"],
        "path \"a\" { policy = \"read\" }",
    );
    assert!(
        stderr(&root).contains("cannot update \"root\" policy"),
        "{root:?}"
    );
    let default = custos(&server, &["policy", "delete", "default"]);
    assert!(
        stderr(&default).contains("cannot delete default policy"),
        "{default:?}"
    );
    // Explain: the root token may do anything, sudo included.
    let explained = ok(custos(
        &server,
        &[
            "policy",
            "explain",
            "--path",
            "sys/seal",
            "--operation",
            "update",
        ],
    ));
    assert!(explained.contains("Allowed          true"), "{explained}");
    assert!(explained.contains("Sudo required    true"), "{explained}");
    let unknown = custos(
        &server,
        &["policy", "explain", "--path", "x", "--operation", "fly"],
    );
    assert!(
        stderr(&unknown).contains("unknown operation"),
        "{unknown:?}"
    );
    // Delete; a read then exits 2.
    let deleted = ok(custos(&server, &["policy", "delete", "team-a"]));
    assert_eq!(deleted.trim(), "Success! Deleted policy: team-a");
    assert_eq!(
        custos(&server, &["policy", "read", "team-a"]).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn policy_endpoints_answer_with_vault_shapes() {
    let (_dir, server) = dev_server();
    let client = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.clone(),
        token: Some("root".into()),
        ..custos_client::ClientConfig::default()
    })
    .unwrap();
    let call = |method, path: &'static str, body: Option<Value>| {
        let client = client.clone();
        async move {
            let (status, _, bytes) = client
                .raw(method, path, body.map(|body| body.to_string().into_bytes()))
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status.as_u16(), body)
        }
    };
    use custos_client::http::Method;
    // The deprecated `rules` field: 200, a warning, and data null.
    let (status, body) = call(
        Method::PUT,
        "sys/policy/legacy",
        Some(serde_json::json!({"rules": "path \"secret/*\" { capabilities = [\"read\", \"sudo\"] }"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(
        body["warnings"][0],
        "'rules' is deprecated, please use 'policy' instead"
    );
    // The legacy endpoints repeat their data at the top level.
    let (status, body) = call(Method::GET, "sys/policy", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["keys"],
        serde_json::json!(["default", "legacy", "root"])
    );
    assert_eq!(body["data"]["policies"], body["policies"]);
    let (_, body) = call(Method::GET, "sys/policy/legacy", None).await;
    assert_eq!(body["name"], "legacy");
    assert!(body["rules"].as_str().unwrap().contains("secret/*"));
    // Capabilities: per path and, for one path, `capabilities`, also at the top level.
    let (status, body) = call(
        Method::POST,
        "sys/capabilities-self",
        Some(serde_json::json!({"path": "secret/foo"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["capabilities"], serde_json::json!(["root"]));
    assert_eq!(body["data"]["secret/foo"], serde_json::json!(["root"]));
    let (status, body) = call(Method::GET, "sys/policies/acl/missing", None).await;
    assert_eq!((status, body), (404, serde_json::json!({"errors": []})));
}

#[tokio::test]
async fn a_token_is_limited_by_its_policies_over_http() {
    use custos_client::http::Method;
    let (dir, server) = dev_server();
    let client = |token: &str| {
        custos_client::Client::new(custos_client::ClientConfig {
            address: server.address.clone(),
            token: Some(token.to_owned()),
            ..custos_client::ClientConfig::default()
        })
        .unwrap()
    };
    let root = client("root");
    let call = |client: custos_client::Client,
                method: Method,
                path: String,
                body: Option<Value>| async move {
        let (status, _, bytes) = client
            .raw(
                method,
                &path,
                body.map(|body| body.to_string().into_bytes()),
            )
            .await
            .unwrap();
        (
            status.as_u16(),
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    };
    let policy = r#"
path "secret/data/apps/+/config" { capabilities = ["create", "read", "update"] }
path "secret/data/shared/*" { capabilities = ["read"] }
path "secret/metadata/shared/*" { capabilities = ["list"] }
"#;
    let file = dir.path().join("apps.hcl");
    std::fs::write(&file, policy).unwrap();
    ok(custos(
        &server,
        &["policy", "write", "apps", file.to_str().unwrap()],
    ));
    for path in [
        "secret/data/apps/web/config",
        "secret/data/shared/a",
        "secret/data/other",
    ] {
        let (status, body) = call(
            root.clone(),
            Method::POST,
            path.into(),
            Some(serde_json::json!({"data": {"k": "v"}})),
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = call(
        root.clone(),
        Method::POST,
        "auth/token/create".into(),
        Some(serde_json::json!({"policies": ["apps"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["auth"]["client_token"].as_str().unwrap().to_owned();
    let limited = client(&token);
    let status_of = |method: Method, path: &'static str, body: Option<Value>| {
        let limited = limited.clone();
        async move { call(limited, method, path.into(), body).await.0 }
    };
    assert_eq!(
        status_of(Method::GET, "secret/data/apps/web/config", None).await,
        200
    );
    assert_eq!(
        status_of(
            Method::POST,
            "secret/data/apps/api/config",
            Some(serde_json::json!({"data": {"k": "v"}}))
        )
        .await,
        200
    );
    assert_eq!(
        status_of(Method::GET, "secret/data/apps/web/extra/config", None).await,
        403
    );
    assert_eq!(
        status_of(Method::GET, "secret/data/shared/a", None).await,
        200
    );
    assert_eq!(
        status_of(
            Method::POST,
            "secret/data/shared/a",
            Some(serde_json::json!({"data": {}}))
        )
        .await,
        403
    );
    assert_eq!(status_of(Method::GET, "secret/data/other", None).await, 403);
    assert_eq!(
        status_of(Method::GET, "secret/metadata/shared/?list=true", None).await,
        200
    );
    assert_eq!(status_of(Method::GET, "sys/mounts", None).await, 403);
    assert_eq!(
        status_of(Method::GET, "auth/token/lookup-self", None).await,
        200
    );
    // The kv CLI works with the limited token (its mount lookup is allowed by the grants).
    let output = crate::kv_cli::command(
        &server,
        &token,
        &["kv", "get", "--field", "k", "secret/apps/web/config"],
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "v", "{output:?}");
    // explain, as root, for the limited token.
    let explained = custos(
        &server,
        &[
            "policy",
            "explain",
            "--token-to-explain",
            &token,
            "--path",
            "secret/data/shared/a",
            "--operation",
            "update",
            "--format",
            "json",
        ],
    );
    assert_eq!(explained.status.code(), Some(2), "{explained:?}");
    let answer: Value = serde_json::from_slice(&explained.stdout).unwrap();
    assert_eq!(answer["data"]["policy"], "apps");
    assert_eq!(answer["data"]["pattern"], "secret/data/shared/*");
    assert_eq!(answer["data"]["capabilities"], serde_json::json!(["read"]));
}
