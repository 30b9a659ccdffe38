//! The shared harness: a router over an engine on `MemoryStorage`, and request helpers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use custos_engine::{Engine, SystemClock};
use custos_server::AppState;
use custos_storage::MemoryStorage;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// The text of the sealed error. Vault's wording: the `vault`/`bao` CLI matches on it.
pub(crate) const SEALED: &str = "Vault is sealed";

pub(crate) fn state() -> AppState {
    AppState::new(Engine::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(SystemClock),
    ))
}

/// A router over a fresh, uninitialised engine.
pub(crate) fn fresh() -> Server {
    Server::new(state())
}

pub(crate) struct Server {
    pub(crate) state: AppState,
    pub(crate) router: Router,
}

/// One answer, fully read.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) bytes: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|error| {
            panic!(
                "{} body is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Asserts an error answer: this status, this `errors` list, and the error-code header.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str, errors: &[&str]) {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert_eq!(self.json(), serde_json::json!({ "errors": errors }));
        assert_eq!(self.header("x-custos-error-code"), Some(code));
    }

    /// Asserts a 400 whose single error message starts with `prefix`.
    #[track_caller]
    pub(crate) fn assert_bad_request_starting(&self, code: &str, prefix: &str) {
        assert_eq!(
            self.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(&self.bytes)
        );
        let body = self.json();
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{body}");
        let message = errors[0].as_str().unwrap();
        assert!(
            message.starts_with(prefix),
            "{message:?} does not start with {prefix:?}"
        );
        assert_eq!(self.header("x-custos-error-code"), Some(code));
    }

    /// The sorted top-level keys of a JSON object body.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.json().as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// Sorted owned strings, to compare with [`Reply::keys`].
pub(crate) fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    keys.sort();
    keys
}

/// A request under construction.
pub(crate) struct Req {
    builder: axum::http::request::Builder,
    body: Body,
}

pub(crate) fn req(method: Method, uri: &str) -> Req {
    Req {
        builder: Request::builder().method(method).uri(uri),
        body: Body::empty(),
    }
}

impl Req {
    pub(crate) fn token(self, token: &str) -> Req {
        self.header("x-vault-token", token)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Req {
        self.builder = self.builder.header(name, value);
        self
    }

    pub(crate) fn json(mut self, body: &Value) -> Req {
        self.builder = self.builder.header("content-type", "application/json");
        self.body = Body::from(serde_json::to_vec(body).unwrap());
        self
    }

    /// Adds a request extension, e.g. the `PeerInfo` a socket would have set.
    pub(crate) fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Req {
        self.builder = self.builder.extension(value);
        self
    }

    pub(crate) fn raw(mut self, body: impl Into<Body>) -> Req {
        self.body = body.into();
        self
    }
}

impl Server {
    pub(crate) fn new(state: AppState) -> Server {
        Server {
            router: custos_server::router(state.clone()),
            state,
        }
    }

    pub(crate) async fn send(&self, request: Req) -> Reply {
        let request = request.builder.body(request.body).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let reply = Reply {
            status,
            headers,
            bytes,
        };
        // Every answer, success or error, carries these two headers.
        let id = reply
            .header("x-request-id")
            .expect("x-request-id on every response");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        reply
    }

    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.send(req(Method::GET, uri)).await
    }

    pub(crate) async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.send(req(Method::PUT, uri).json(body)).await
    }

    /// `PUT /v1/sys/init` with this split; returns the (checked) answer body.
    pub(crate) async fn init(&self, shares: u32, threshold: u32) -> Init {
        let reply = self
            .put(
                "/v1/sys/init",
                &serde_json::json!({ "secret_shares": shares, "secret_threshold": threshold }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        serde_json::from_value(reply.json()).unwrap()
    }

    pub(crate) async fn unseal(&self, key: &str) -> Reply {
        self.put("/v1/sys/unseal", &serde_json::json!({ "key": key }))
            .await
    }

    /// Initialises and unseals; returns the keys and the root token.
    pub(crate) async fn init_unsealed(&self, shares: u32, threshold: u32) -> Init {
        let init = self.init(shares, threshold).await;
        for key in &init.keys[..threshold as usize] {
            let reply = self.unseal(key).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        }
        assert!(!self.state.engine.is_sealed());
        init
    }
}

/// An initialised, sealed server.
pub(crate) async fn sealed() -> (Server, Init) {
    let server = fresh();
    let init = server.init(3, 2).await;
    (server, init)
}

/// An initialised, unsealed server.
pub(crate) async fn unsealed() -> (Server, Init) {
    let server = fresh();
    let init = server.init_unsealed(3, 2).await;
    (server, init)
}

#[derive(serde::Deserialize)]
pub(crate) struct Init {
    pub(crate) keys: Vec<String>,
    pub(crate) keys_base64: Vec<String>,
    pub(crate) root_token: String,
}
