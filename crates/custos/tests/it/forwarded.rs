//! `listener.x_forwarded_for_*` on the real binary: behind a trusted proxy (here the test itself,
//! on 127.0.0.1) the client named in `X-Forwarded-For` is the one `unseal_allowed_networks`
//! judges; without the header the request is refused, as Vault refuses it.

use std::time::Duration;

use custos_client::http::{Method, StatusCode};
use custos_client::{Client, ClientConfig};

use crate::support::{self, TestServer};

async fn unseal_reset(client: &Client, forwarded_for: Option<&str>) -> (StatusCode, String) {
    let headers: Vec<(&str, &str)> = forwarded_for
        .map(|value| vec![("x-forwarded-for", value)])
        .unwrap_or_default();
    let (status, _, body) = client
        .raw_with_headers(
            Method::PUT,
            "sys/unseal",
            &headers,
            Some(br#"{"reset": true}"#.to_vec()),
        )
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_client_behind_a_trusted_proxy_is_judged_by_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n\
             unseal_allowed_networks = [\"203.0.113.0/24\"]\n\
             x_forwarded_for_authorized_addrs = [\"127.0.0.1\"]\n{}",
            support::MEMORY_STORAGE
        ),
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let client = Client::new(ClientConfig {
        address: server.address.clone(),
        timeout: Some(Duration::from_secs(20)),
        ..ClientConfig::default()
    })
    .unwrap();
    // Every request must come through the proxy now, init included.
    let (status, _, body) = client
        .raw_with_headers(
            Method::PUT,
            "sys/init",
            &[("x-forwarded-for", "203.0.113.7")],
            Some(br#"{"secret_shares": 1, "secret_threshold": 1}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let refused = client.seal_status().await.unwrap_err().to_string();
    assert!(refused.contains("400"), "{refused}");

    let (status, body) = unseal_reset(&client, Some("203.0.113.7")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = unseal_reset(&client, Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = unseal_reset(&client, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("missing x-forwarded-for header"), "{body}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("198.51.100.1"),
        "the refusal is logged with the client's address"
    );
}
