//! Request extractors: JSON bodies with Vault's error messages within our limits, and tokens.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::Shared;
use crate::body::{self, SMALL_BODY_BYTES};
use crate::error::ApiError;

/// A small JSON object body for the endpoints that work without a token (`sys/init`,
/// `sys/unseal`): at most [`SMALL_BODY_BYTES`], parsed straight into `T`. An empty body decodes
/// as `{}` (Vault's CLI sends none for `PUT sys/seal`). The raw bytes are zeroized once parsed.
pub(crate) struct SmallJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Shared> for SmallJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = body::read(&parts.headers, body, SMALL_BODY_BYTES, &state.body_budget).await?;
        body::parse_object(&body).map(SmallJson)
    }
}

/// The caller's token, from `X-Vault-Token` or `Authorization: Bearer`, if any.
pub(crate) struct Token(pub(crate) Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Token(token_from_headers(&parts.headers)))
    }
}

/// The caller's token, from `X-Vault-Token` or `Authorization: Bearer`, if any.
pub(crate) fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    {
        let from_vault_header = headers
            .get(custos_api::TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        let from_bearer = || {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        from_vault_header.or_else(from_bearer).map(str::to_owned)
    }
}

impl Token {
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The connection's facts (address, client certificate), for engine calls outside the request
/// pipeline that policies still decide on (seal, rotate, key status).
pub(crate) struct Peer(pub(crate) custos_engine::Connection);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(crate::logical::connection(parts)))
    }
}

/// The client's address, when the request came over a socket (in-process tests have none).
pub(crate) struct Source(pub(crate) Option<std::net::SocketAddr>);

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => write!(f, "{}", address.ip()),
            None => f.write_str("in-process"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<crate::PeerInfo>()
            .map(|peer| peer.remote_addr);
        // Behind a trusted proxy, the client's address (with the proxy connection's port).
        let client = parts
            .extensions
            .get::<crate::forwarded::ClientAddr>()
            .map(|client| client.0);
        Ok(Source(match (peer, client) {
            (Some(peer), Some(client)) => Some(std::net::SocketAddr::new(client, peer.port())),
            (peer, _) => peer,
        }))
    }
}
