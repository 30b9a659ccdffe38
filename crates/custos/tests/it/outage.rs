//! Storage outages: with PostgreSQL unreachable, requests fail closed with 503 and a clear
//! message; when it comes back, the server recovers by itself.
//!
//! The outage is made by a TCP relay between custos and PostgreSQL that the test cuts and
//! restores, so the shared PostgreSQL server itself is never stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use custos_client::ClientError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::{self, TestPki, TestServer};

/// Relays connections from a local port to `upstream` while `up` is true; when it turns false,
/// drops every relayed connection and refuses new ones.
pub(crate) async fn relay(listener: TcpListener, upstream: SocketAddr, up: watch::Receiver<bool>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        if !*up.borrow() {
            drop(inbound);
            continue;
        }
        let mut up = up.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = up.wait_for(|up| !*up) => {}
            }
        });
    }
}

pub(crate) fn upstream_of(url: &str) -> SocketAddr {
    let after_scheme = url.split("://").nth(1).unwrap();
    let authority = after_scheme.split(['/', '?']).next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().unwrap()
}

pub(crate) fn via_relay(url: &str, relay: SocketAddr) -> String {
    let upstream = upstream_of(url);
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (credentials, _) = authority
        .rsplit_once('@')
        .map_or((None, authority), |(c, h)| (Some(c), h));
    let _ = upstream;
    let authority = match credentials {
        Some(credentials) => format!("{credentials}@{relay}"),
        None => relay.to_string(),
    };
    format!("{scheme}://{authority}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_closed_and_recovers() {
    let Some(database) =
        support::TestDatabase::create("postgres_outage_fails_closed_and_recovers").await
    else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_address = listener.local_addr().unwrap();
    let (switch, up) = watch::channel(true);
    let switch = Arc::new(switch);
    tokio::spawn(relay(listener, upstream_of(&database.url), up));

    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let storage = support::postgres_storage(&via_relay(&database.url, relay_address));
    let config = pki.write_config(
        dir.path(),
        false,
        &format!("{storage}connect_timeout = \"2s\"\n"),
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let (keys, token) = support::init(&pki.client(&server.address, None, false), 1, 1).await;
    let root = pki.unsealed_client(&server.address, &keys, &token).await;
    assert_eq!(root.key_status().await.unwrap().term, 1);

    // Cut PostgreSQL off: authenticated requests fail closed with 503, never 403 or 404.
    switch.send_replace(false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        match root.key_status().await.unwrap_err() {
            ClientError::Api {
                status,
                errors,
                code,
            } => {
                assert_eq!(status, 503, "{errors:?}");
                assert_eq!(code.as_deref(), Some("storage_unavailable"));
                assert!(errors[0].contains("storage is unavailable"), "{errors:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(root.rotate().await.is_err());

    // Bring it back: the server recovers without a restart.
    switch.send_replace(true);
    let mut recovered = false;
    for _ in 0..50 {
        if root.key_status().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "server did not recover after PostgreSQL came back"
    );
    root.rotate().await.unwrap();
    assert_eq!(root.key_status().await.unwrap().term, 2);
    drop(server);
    database.drop_database().await;
}
