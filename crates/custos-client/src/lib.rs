//! A typed HTTP client for custos's (Vault-compatible) API, used by the CLI and the agent.
//!
//! Speaks HTTP/1.1 and HTTP/2 over rustls (ring provider). Trust comes from `ca_cert` when given,
//! else from the operating system's roots; a client certificate can be presented for mTLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use custos_api::sys::{
    GenerateRootInitRequest, GenerateRootStatusResponse, GenerateRootUpdateRequest, HealthResponse,
    InitRequest, InitResponse, KeyStatus, SealStatusResponse, UnsealRequest,
};
use custos_api::{ERROR_CODE_HEADER, ErrorResponse, TOKEN_HEADER};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The method and status types of [`Client::raw`], so callers need no `hyper` dependency.
pub mod http {
    pub use hyper::{HeaderMap, Method, StatusCode};
}

/// How to reach and authenticate to a server.
#[derive(Clone, Default)]
pub struct ClientConfig {
    /// `https://host:port` or `http://host:port`.
    pub address: String,
    pub token: Option<String>,
    /// PEM bundle of CAs to trust instead of the system roots.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and key for mTLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Overall timeout of one request.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{}", api_message(*.status, .errors))]
    Api {
        status: u16,
        errors: Vec<String>,
        code: Option<String>,
    },
    #[error("invalid client configuration: {0}")]
    Config(String),
    #[error("cannot reach {address}: {message}")]
    Transport { address: String, message: String },
    #[error("request timed out")]
    Timeout,
    #[error("unexpected response from server: {0}")]
    Decode(String),
}

fn api_message(status: u16, errors: &[String]) -> String {
    if errors.is_empty() {
        format!("server answered {status}")
    } else {
        format!("server answered {status}: {}", errors.join("; "))
    }
}

/// A connection pool to one server.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    address: String,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn read_pem_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| ClientError::Config(format!("{}: {error}", path.display())))?;
    if certs.is_empty() {
        return Err(ClientError::Config(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn tls_config(config: &ClientConfig) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_cert {
        Some(path) => {
            for cert in read_pem_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|error| ClientError::Config(format!("{}: {error}", path.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A malformed system certificate is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Config(error.to_string()))?
        .with_root_certificates(roots);
    let tls = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|error| ClientError::Config(format!("{}: {error}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| ClientError::Config(format!("client certificate: {error}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ClientError::Config(
                "a client certificate needs both --client-cert and --client-key".into(),
            ));
        }
    };
    Ok(tls)
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let address = config.address.trim_end_matches('/').to_owned();
        if !(address.starts_with("https://") || address.starts_with("http://")) {
            return Err(ClientError::Config(format!(
                "address {address:?} must start with https:// or http://"
            )));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&config)?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Client {
            http,
            address,
            token: config.token,
            timeout: config.timeout.unwrap_or(Duration::from_secs(60)),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends one request to `/v1/<path>` and returns the status and body, whatever the status.
    /// A body is sent as JSON.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        let content_type = body.as_ref().map(|_| "application/json");
        self.send(method, path, content_type, body.unwrap_or_default())
            .await
    }

    /// Like [`Client::raw`], with the body's `Content-Type` chosen by the caller (PATCH requests
    /// need `application/merge-patch+json`).
    pub async fn raw_with_content_type(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        self.send(method, path, Some(content_type), body).await
    }

    /// Like [`Client::raw`], with extra request headers, returning the response headers too
    /// (e.g. to pass `X-Vault-Index` from one node's answer to another node).
    pub async fn raw_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ClientError> {
        let content_type = body.as_ref().map(|_| "application/json");
        let (status, headers, body) = self
            .exchange(
                method,
                path,
                content_type,
                headers,
                body.unwrap_or_default(),
            )
            .await?;
        Ok((status, headers, body))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        let (status, headers, body) = self.exchange(method, path, content_type, &[], body).await?;
        let code = headers
            .get(ERROR_CODE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok((status, code, body))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        extra_headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ClientError> {
        let uri = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let mut request = Request::builder().method(method).uri(&uri);
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token);
        }
        if let Some(content_type) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
        }
        for (name, value) in extra_headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| ClientError::Config(format!("bad request for {uri}: {error}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|error| {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(inner) = source {
                    message = format!("{message}: {inner}");
                    source = inner.source();
                }
                ClientError::Transport {
                    address: self.address.clone(),
                    message,
                }
            })?;
            let status = response.status();
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| ClientError::Transport {
                    address: self.address.clone(),
                    message: error.to_string(),
                })?
                .to_bytes();
            Ok((status, parts.headers, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends a request and decodes a successful JSON answer; error statuses become `Api` errors.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Option<T>, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|error| ClientError::Config(error.to_string()))?;
        let (status, code, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            let errors = serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|body| body.errors)
                .unwrap_or_default();
            return Err(ClientError::Api {
                status: status.as_u16(),
                errors,
                code,
            });
        }
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        self.call(method, path, body)
            .await?
            .ok_or_else(|| ClientError::Decode(format!("empty answer from {path}")))
    }

    pub async fn seal_status(&self) -> Result<SealStatusResponse, ClientError> {
        self.expect(Method::GET, "sys/seal-status", None::<&()>)
            .await
    }

    /// `sys/health` answers with a body on 200, 429, 501 and 503 alike.
    pub async fn health(&self) -> Result<(u16, HealthResponse), ClientError> {
        let (status, _, bytes) = self.raw(Method::GET, "sys/health", None).await?;
        let health = serde_json::from_slice(&bytes).map_err(|error| {
            ClientError::Decode(format!("sys/health answered {status}: {error}"))
        })?;
        Ok((status.as_u16(), health))
    }

    pub async fn init(&self, request: &InitRequest) -> Result<InitResponse, ClientError> {
        self.expect(Method::PUT, "sys/init", Some(request)).await
    }

    pub async fn unseal(&self, key: &str) -> Result<SealStatusResponse, ClientError> {
        self.unseal_with(&UnsealRequest {
            key: Some(key.to_owned()),
            ..UnsealRequest::default()
        })
        .await
    }

    pub async fn unseal_reset(&self) -> Result<SealStatusResponse, ClientError> {
        self.unseal_with(&UnsealRequest {
            reset: true,
            ..UnsealRequest::default()
        })
        .await
    }

    /// Any `sys/unseal` submission, e.g. one naming its round's `nonce`.
    pub async fn unseal_with(
        &self,
        request: &UnsealRequest,
    ) -> Result<SealStatusResponse, ClientError> {
        self.expect(Method::PUT, "sys/unseal", Some(request)).await
    }

    pub async fn seal(&self) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::PUT, "sys/seal", None::<&()>)
            .await
            .map(drop)
    }

    pub async fn rotate(&self) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::PUT, "sys/rotate", None::<&()>)
            .await
            .map(drop)
    }

    pub async fn key_status(&self) -> Result<KeyStatus, ClientError> {
        let envelope: custos_api::Envelope<KeyStatus> = self
            .expect(Method::GET, "sys/key-status", None::<&()>)
            .await?;
        envelope
            .data
            .ok_or_else(|| ClientError::Decode("key-status without data".into()))
    }

    /// `GET sys/generate-root/attempt`.
    pub async fn generate_root_status(&self) -> Result<GenerateRootStatusResponse, ClientError> {
        self.expect(Method::GET, "sys/generate-root/attempt", None::<&()>)
            .await
    }

    /// `PUT sys/generate-root/attempt`: an empty `otp` lets the server generate one.
    pub async fn generate_root_init(
        &self,
        otp: &str,
    ) -> Result<GenerateRootStatusResponse, ClientError> {
        let request = GenerateRootInitRequest {
            otp: otp.to_owned(),
            pgp_key: String::new(),
        };
        self.expect(Method::PUT, "sys/generate-root/attempt", Some(&request))
            .await
    }

    /// `DELETE sys/generate-root/attempt`.
    pub async fn generate_root_cancel(&self) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::DELETE, "sys/generate-root/attempt", None::<&()>)
            .await
            .map(drop)
    }

    /// `PUT sys/generate-root/update`.
    pub async fn generate_root_update(
        &self,
        key: &str,
        nonce: &str,
    ) -> Result<GenerateRootStatusResponse, ClientError> {
        let request = GenerateRootUpdateRequest {
            key: key.to_owned(),
            nonce: nonce.to_owned(),
        };
        self.expect(Method::PUT, "sys/generate-root/update", Some(&request))
            .await
    }
}
