//! The HTTP adapter: axum routes over the engine, served by hyper over rustls.
//!
//! This crate translates HTTP to engine calls and back, and owns the listener (TLS, mTLS,
//! HTTP/1.1 and HTTP/2, graceful shutdown). It decides nothing about secrets: the engine does.

mod body;
mod error;
mod extract;
mod forwarded;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod github_leaks;
mod guard;
mod index;
mod listener;
mod logical;
mod routes;
mod sys;
mod tls;

pub use body::{
    BUDGET_WAIT, BodyBudget, LEAKS_BODY_BYTES, MAX_JSON_DEPTH, MAX_JSON_KEYS, SMALL_BODY_BYTES,
};
pub use error::{ApiError, engine_status};
pub use forwarded::ForwardedFor;
pub use guard::{RATE_LIMIT_ADDRESSES, RateLimiter};
pub use listener::{PeerInfo, ServeOptions, serve};
pub use routes::{Access, ExplicitRoute, explicit_routes};
pub use tls::{TlsError, TlsFiles, server_tls_config};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use custos_engine::Engine;
use tracing::Instrument;

use crate::error::ErrorDetail;

/// The default of [`AppState::max_request_bytes`]: the default largest secret
/// (`secrets.max_value_bytes`, 1 MiB) and 64 KiB for the rest of the request.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024 + 64 * 1024;
/// The default of the in-flight body budget: 64 MiB.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// The default per-address rate limits of `sys/unseal` and `sys/leaks`, per minute.
pub const DEFAULT_UNSEAL_RATE_LIMIT: u32 = 60;
pub const DEFAULT_LEAKS_RATE_LIMIT: u32 = 60;

/// Everything the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub engine: Engine,
    /// Bodies above this are refused with 413 (the endpoints that need no token have smaller
    /// fixed limits: [`SMALL_BODY_BYTES`], [`LEAKS_BODY_BYTES`]).
    pub max_request_bytes: usize,
    /// Request body bytes held in memory at once, across all requests.
    pub body_budget: BodyBudget,
    /// The networks `sys/init`, `sys/unseal` and `sys/generate-root/*` answer; `None` is any.
    pub seal_allowed_networks: Option<Arc<Vec<custos_core::Cidr>>>,
    /// Per source address, on `sys/unseal` and `sys/generate-root/*`.
    pub unseal_rate_limit: Arc<RateLimiter>,
    /// Per source address, on `sys/leaks` and `sys/leaks/github`.
    pub leaks_rate_limit: Arc<RateLimiter>,
    /// GitHub's public keys `sys/leaks/github` verifies reports with; empty: the endpoint is
    /// off (404).
    pub github_leak_keys: Arc<custos_engine::GithubLeakKeys>,
    /// A request that takes longer is answered with 503 and abandoned.
    pub request_timeout: Duration,
    /// The address clients use to reach this node (for `sys/leader`).
    pub api_address: String,
    /// How long a request carrying `X-Vault-Index` waits for this node to catch up before 412.
    pub index_wait: Duration,
    /// The proxies whose `X-Forwarded-For` names the client; `None`: the header is ignored.
    pub forwarded_for: Option<Arc<ForwardedFor>>,
}

impl AppState {
    pub fn new(engine: Engine) -> AppState {
        AppState {
            engine,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            body_budget: BodyBudget::new(DEFAULT_BODY_BUDGET_BYTES),
            seal_allowed_networks: None,
            unseal_rate_limit: Arc::new(RateLimiter::new(DEFAULT_UNSEAL_RATE_LIMIT)),
            leaks_rate_limit: Arc::new(RateLimiter::new(DEFAULT_LEAKS_RATE_LIMIT)),
            github_leak_keys: Arc::new(custos_engine::GithubLeakKeys::new()),
            request_timeout: Duration::from_secs(90),
            api_address: String::new(),
            index_wait: Duration::from_secs(2),
            forwarded_for: None,
        }
    }
}

/// The state as the router holds it: cloned for every handler and middleware of every request.
pub(crate) type Shared = Arc<AppState>;

/// The id of one request, generated here and returned in `X-Request-Id` and response bodies.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Builds the full router. Tests drive it with `oneshot`, without a socket.
pub fn router(state: AppState) -> Router {
    // One allocation for the whole router: handlers and middleware clone the `Arc`, not the state.
    let state: Shared = Arc::new(state);
    // The server's own routes (`routes::table`: the seal life cycle, which works while sealed and
    // without a token, and seal/rotate/key-status) have their own handlers; every other `/v1/`
    // path goes through the engine's request pipeline.
    let explicit = routes::table()
        .into_iter()
        .fold(Router::new(), |router, entry| {
            let path = entry.path;
            router.route(path, entry.method_router())
        });
    explicit
        .route("/v1/{*path}", any(logical::handle))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

/// Paths outside `/v1/`: 404 with Vault's empty error list.
async fn fallback() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Resolves the client's address behind trusted proxies (when configured) into a
/// [`forwarded::ClientAddr`] extension; requests without a [`PeerInfo`] (in-process) have none.
fn client_address(state: &AppState, request: &mut Request) -> Result<(), ApiError> {
    let Some(peer) = request
        .extensions()
        .get::<PeerInfo>()
        .map(|peer| peer.remote_addr.ip())
    else {
        return Ok(());
    };
    let address = match &state.forwarded_for {
        Some(config) => forwarded::resolve(config, peer, request.headers())?,
        None => peer,
    };
    request
        .extensions_mut()
        .insert(forwarded::ClientAddr(address));
    Ok(())
}

/// Per request: an id, a span, the source guard of the seal life cycle endpoints, a timeout,
/// read-your-writes (`X-Vault-Index`), `Cache-Control: no-store`, and one log line.
async fn request_context(
    State(state): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = custos_engine::new_request_id();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", id = %request_id, %method, %path);
    let started = Instant::now();
    let forwarded = client_address(&state, &mut request);
    let mut response = if let Err(refusal) = forwarded {
        tracing::warn!(parent: &span, error = %refusal, "refused: X-Forwarded-For");
        refusal.into_response()
    } else if let Some(refusal) = guard::check(&state, &request) {
        refusal.into_response()
    } else {
        // Read-your-writes runs here rather than as a layer of its own: one middleware per
        // request is cheaper than two.
        let handled = index::read_your_writes(&state, request, next).instrument(span.clone());
        match tokio::time::timeout(state.request_timeout, handled).await {
            Ok(response) => response,
            Err(_) => ApiError::Timeout.into_response(),
        }
    };
    let status = response.status();
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Some(ErrorDetail(detail)) = response.extensions_mut().remove::<ErrorDetail>() {
        tracing::error!(parent: &span, status = status.as_u16(), elapsed_us, error = %detail, "request failed");
    } else if method != Method::HEAD && path != "/v1/sys/health" {
        tracing::info!(parent: &span, status = status.as_u16(), elapsed_us, "request");
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(custos_api::REQUEST_ID_HEADER, value);
    }
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}
