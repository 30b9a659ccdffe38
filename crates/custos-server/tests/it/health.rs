//! `GET|HEAD /v1/sys/health`: Vault's status codes, their overrides, and the body.

use axum::http::{Method, StatusCode};

use crate::support::{fresh, req, sealed, sorted, unsealed};

const HEALTH_FIELDS: &[&str] = &[
    "initialized",
    "sealed",
    "standby",
    "performance_standby",
    "replication_performance_mode",
    "replication_dr_mode",
    "server_time_utc",
    "version",
    "custos_version",
];

#[tokio::test]
async fn health_is_501_before_init() {
    let server = fresh();
    let reply = server.get("/v1/sys/health").await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    let body = reply.json();
    assert_eq!(reply.keys(), sorted(HEALTH_FIELDS));
    assert_eq!(body["initialized"], false);
    assert_eq!(body["sealed"], true);
    assert_eq!(body["standby"], true);
    assert_eq!(body["version"], "1.15.0+custos.0.1.0");
    assert_eq!(body["custos_version"], custos_api::VERSION);
    assert_eq!(body["replication_performance_mode"], "disabled");
    assert_eq!(body["replication_dr_mode"], "disabled");
}

#[tokio::test]
async fn health_is_503_when_sealed() {
    let (server, _) = sealed().await;
    let reply = server.get("/v1/sys/health").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.keys(), sorted(HEALTH_FIELDS));
    let body = reply.json();
    assert_eq!(body["initialized"], true);
    assert_eq!(body["sealed"], true);
    assert_eq!(body["standby"], true);
}

#[tokio::test]
async fn health_is_200_when_unsealed_with_the_cluster_and_the_time() {
    let (server, _) = unsealed().await;
    let reply = server.get("/v1/sys/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut fields = HEALTH_FIELDS.to_vec();
    fields.extend(["cluster_name", "cluster_id"]);
    assert_eq!(reply.keys(), sorted(&fields));
    let body = reply.json();
    assert_eq!(body["initialized"], true);
    assert_eq!(body["sealed"], false);
    assert_eq!(body["standby"], false);
    assert!(
        body["cluster_name"]
            .as_str()
            .unwrap()
            .starts_with("custos-cluster-")
    );
    assert_eq!(body["cluster_id"].as_str().unwrap().len(), 36);
    let now = jiff::Timestamp::now().as_second();
    let reported = body["server_time_utc"].as_i64().unwrap();
    assert!((now - reported).abs() <= 5, "{reported} vs {now}");
}

#[tokio::test]
async fn health_codes_can_be_overridden_per_state() {
    let server = fresh();
    let reply = server.get("/v1/sys/health?uninitcode=200").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["initialized"], false);
    // Only the parameter for the current state matters.
    let reply = server
        .get("/v1/sys/health?sealedcode=200&activecode=299")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);

    server.init(1, 1).await;
    let reply = server.get("/v1/sys/health?sealedcode=200").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["sealed"], true);
    let reply = server.get("/v1/sys/health?uninitcode=200").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn health_activecode_overrides_the_unsealed_code() {
    let (server, _) = unsealed().await;
    let reply = server.get("/v1/sys/health?activecode=299").await;
    assert_eq!(reply.status.as_u16(), 299);
    assert_eq!(reply.json()["sealed"], false);
    // standbyok and friends are accepted and change nothing on an active node.
    let reply = server
        .get("/v1/sys/health?standbyok=true&perfstandbyok=true")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn an_invalid_health_code_is_400() {
    let (server, _) = sealed().await;
    for query in [
        "sealedcode=abc",
        "sealedcode=99",
        "sealedcode=1000",
        "sealedcode=-1",
    ] {
        let reply = server.get(&format!("/v1/sys/health?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        let body = reply.json();
        assert_eq!(
            body["errors"].as_array().unwrap().len(),
            1,
            "{query}: {body}"
        );
        assert!(
            body["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("invalid status code")
        );
        assert_eq!(reply.header("x-custos-error-code"), Some("invalid_request"));
    }
}

#[tokio::test]
async fn every_health_parameter_is_checked_whatever_the_state_like_vault() {
    let (server, _) = unsealed().await;
    for query in [
        "sealedcode=abc",
        "standbycode=abc",
        "uninitcode=x",
        "activecode=x",
        "activecode=",
        "activecode=%20200",
        "activecode=99",
        "standbyok=yes",
    ] {
        let reply = server.get(&format!("/v1/sys/health?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.header("x-custos-error-code"), Some("invalid_request"));
    }
    // What Vault ignores or accepts stays accepted.
    for query in [
        "standbyok=",
        "standbyok=T",
        "standbyok=1",
        "perfstandbyok=x",
        "drsecondarycode=x",
        "performancestandbycode=x",
        "foo=bar",
        "sealedcode=503&standbycode=429&uninitcode=501",
    ] {
        let reply = server.get(&format!("/v1/sys/health?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
    }
    let reply = server.get("/v1/sys/health?activecode=204").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn head_health_answers_the_status_without_a_body() {
    let server = fresh();
    let reply = server.send(req(Method::HEAD, "/v1/sys/health")).await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert!(reply.bytes.is_empty());

    server.init(1, 1).await;
    let reply = server.send(req(Method::HEAD, "/v1/sys/health")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.bytes.is_empty());

    let reply = server
        .send(req(Method::HEAD, "/v1/sys/health?sealedcode=204"))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.bytes.is_empty());
}

#[tokio::test]
async fn head_health_is_200_when_unsealed() {
    let (server, _) = unsealed().await;
    let reply = server.send(req(Method::HEAD, "/v1/sys/health")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.bytes.is_empty());
}

#[tokio::test]
async fn health_and_seal_status_report_a_vault_version_clients_parse_and_custos_own() {
    let (server, _) = unsealed().await;
    for path in ["/v1/sys/health", "/v1/sys/seal-status"] {
        let body = server.get(path).await.json();
        let version = body["version"].as_str().unwrap();
        assert_eq!(version, custos_api::VAULT_COMPATIBLE_VERSION, "{path}");
        // A plain semver with build metadata, as go-version (Terraform) and hvac parse it.
        let (core, build) = version.split_once('+').unwrap();
        let parts: Vec<u64> = core.split('.').map(|part| part.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0] >= 1, "{version}");
        assert!(
            build
                .split('.')
                .all(|id| !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
            "{version}"
        );
        assert_eq!(build, format!("custos.{}", custos_api::VERSION));
        assert_eq!(body["custos_version"], custos_api::VERSION, "{path}");
    }
}
