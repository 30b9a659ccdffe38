//! Handlers for the Vault-compatible `sys/*` endpoints of the seal life cycle.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use custos_api::sys::{
    GenerateRootInitRequest, GenerateRootStatusResponse, GenerateRootUpdateRequest, HealthQuery,
    HealthResponse, InitRequest, InitResponse, InitStatusResponse, KeyStatus, LeaderResponse,
    SealStatusResponse, UnsealRequest,
};
use custos_engine::{InitParams, KeyInfo, SealStatus, UnsealInput};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::ApiError;
use crate::extract::{Peer, SmallJson, Source, Token};
use crate::{RequestId, Shared};

fn seal_status_body(status: SealStatus) -> SealStatusResponse {
    SealStatusResponse {
        seal_type: "shamir".into(),
        initialized: status.initialized,
        sealed: status.sealed,
        t: status.threshold,
        n: status.shares,
        progress: status.progress,
        nonce: status.nonce,
        recovery_seal: false,
        version: custos_api::VAULT_COMPATIBLE_VERSION.into(),
        custos_version: custos_api::VERSION.into(),
        build_date: String::new(),
        migration: false,
        cluster_name: status.cluster_name,
        cluster_id: status.cluster_id,
        storage_type: status.storage_type.into(),
    }
}

fn rfc3339(timestamp: jiff::Timestamp) -> String {
    format!("{timestamp:.9}")
}

/// Parses one of health's `*code` parameters: a status code Vault's way. Vault also takes codes
/// below 100 and then fails to answer at all; custos refuses them with 400.
fn code_param(
    name: &str,
    value: Option<&String>,
    default: StatusCode,
) -> Result<StatusCode, ApiError> {
    match value {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!(
                    "invalid status code {raw:?} for {name}: expected 100 to 999"
                ))
            }),
    }
}

/// `standbyok`: Go's `strconv.ParseBool`, and an empty value counts as true, as in Vault.
fn bool_param(name: &str, value: Option<&String>) -> Result<(), ApiError> {
    match value.map(String::as_str) {
        None | Some("" | "1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(()),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(()),
        Some(raw) => Err(ApiError::InvalidRequest(format!(
            "invalid {name} {raw:?}: expected a boolean"
        ))),
    }
}

/// `GET|HEAD /v1/sys/health`: 200 active, 501 not initialised, 503 sealed; codes overridable.
/// As in Vault, every code parameter and `standbyok` is checked whatever the node's state, so a
/// typo shows at once and not only when the node is sealed.
pub(crate) async fn health(
    State(state): State<Shared>,
    method: Method,
    Query(query): Query<HealthQuery>,
) -> Result<Response, ApiError> {
    let active = code_param("activecode", query.activecode.as_ref(), StatusCode::OK)?;
    // custos has no standby nodes; the parameter is still checked.
    code_param(
        "standbycode",
        query.standbycode.as_ref(),
        StatusCode::TOO_MANY_REQUESTS,
    )?;
    let sealed = code_param(
        "sealedcode",
        query.sealedcode.as_ref(),
        StatusCode::SERVICE_UNAVAILABLE,
    )?;
    let uninit = code_param(
        "uninitcode",
        query.uninitcode.as_ref(),
        StatusCode::NOT_IMPLEMENTED,
    )?;
    bool_param("standbyok", query.standbyok.as_ref())?;
    let status = state.engine.seal_status().await?;
    let code = if !status.initialized {
        uninit
    } else if status.sealed {
        sealed
    } else {
        // Every unsealed custos node is active: nodes share storage and have no standby mode.
        active
    };
    if method == Method::HEAD {
        return Ok(code.into_response());
    }
    let body = HealthResponse {
        initialized: status.initialized,
        sealed: status.sealed,
        standby: status.sealed,
        performance_standby: false,
        replication_performance_mode: "disabled".into(),
        replication_dr_mode: "disabled".into(),
        server_time_utc: state.engine.now().as_second(),
        version: custos_api::VAULT_COMPATIBLE_VERSION.into(),
        custos_version: custos_api::VERSION.into(),
        cluster_name: status.cluster_name,
        cluster_id: status.cluster_id,
    };
    Ok((code, Json(body)).into_response())
}

/// `GET /v1/sys/seal-status`.
pub(crate) async fn seal_status(
    State(state): State<Shared>,
) -> Result<Json<SealStatusResponse>, ApiError> {
    Ok(Json(seal_status_body(state.engine.seal_status().await?)))
}

/// `GET /v1/sys/init`.
pub(crate) async fn init_status(
    State(state): State<Shared>,
) -> Result<Json<InitStatusResponse>, ApiError> {
    Ok(Json(InitStatusResponse {
        initialized: state.engine.is_initialized().await?,
    }))
}

/// `PUT /v1/sys/init`.
pub(crate) async fn init(
    State(state): State<Shared>,
    source: Source,
    SmallJson(request): SmallJson<InitRequest>,
) -> Result<Response, ApiError> {
    if !request.pgp_keys.is_empty() || !request.root_token_pgp_key.is_empty() {
        return Err(ApiError::InvalidRequest(
            "PGP-encrypted key shares are not supported by custos".into(),
        ));
    }
    if request.recovery_shares.unwrap_or(0) > 0 || request.recovery_threshold.unwrap_or(0) > 0 {
        return Err(ApiError::InvalidRequest(
            "recovery shares only apply to auto-unseal, which this server does not use".into(),
        ));
    }
    if request.stored_shares.unwrap_or(0) > 0 {
        return Err(ApiError::InvalidRequest(
            "stored shares only apply to auto-unseal, which this server does not use".into(),
        ));
    }
    let output = state
        .engine
        .init(InitParams {
            secret_shares: request.secret_shares,
            secret_threshold: request.secret_threshold,
            root_token: None,
        })
        .await?;
    tracing::warn!(%source, "custos initialised");
    let mut answer = InitResponse {
        keys: output.shares.iter().map(hex::encode).collect(),
        keys_base64: output
            .shares
            .iter()
            .map(|share| base64::engine::general_purpose::STANDARD.encode(share))
            .collect(),
        root_token: output.root_token.to_string(),
    };
    let body = serde_json::to_vec(&answer);
    // The shares and the root token leave through the response body only; our copies go.
    answer.keys.zeroize();
    answer.keys_base64.zeroize();
    answer.root_token.zeroize();
    let body = body.map_err(|error| custos_engine::EngineError::Internal(error.to_string()))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// `PUT /v1/sys/unseal`. Resets and failures are logged with the source address.
pub(crate) async fn unseal(
    State(state): State<Shared>,
    source: Source,
    SmallJson(mut request): SmallJson<UnsealRequest>,
) -> Result<Json<SealStatusResponse>, ApiError> {
    let key = Zeroizing::new(request.key.take());
    let input = if request.reset {
        tracing::warn!(%source, "unseal progress reset");
        UnsealInput::Reset
    } else {
        match key.as_deref() {
            Some(key) if !key.is_empty() => match custos_engine::decode_unseal_key(key) {
                Ok(bytes) => UnsealInput::Key(bytes),
                Err(error) => {
                    tracing::warn!(%source, %error, "unseal key refused");
                    return Err(error.into());
                }
            },
            _ => {
                return Err(ApiError::InvalidRequest(
                    "'key' must be specified in request body as JSON, or 'reset' set to true"
                        .into(),
                ));
            }
        }
    };
    let nonce = request.nonce.as_deref();
    match state.engine.unseal_in_round(input, nonce).await {
        Ok(status) => Ok(Json(seal_status_body(status))),
        Err(error) => {
            tracing::warn!(%source, %error, "unseal attempt failed");
            Err(error.into())
        }
    }
}

/// Vault's shape of a root generation status; the encoded token is unpadded base64.
fn generate_root_body(status: custos_engine::RootGenerationStatus) -> GenerateRootStatusResponse {
    let encoded = if status.encoded_token.is_empty() {
        String::new()
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&status.encoded_token)
    };
    GenerateRootStatusResponse {
        nonce: status.nonce,
        started: status.started,
        progress: status.progress,
        required: status.required,
        complete: status.complete,
        encoded_root_token: encoded.clone(),
        encoded_token: encoded,
        pgp_fingerprint: String::new(),
        otp: status.otp.map(|otp| otp.to_string()).unwrap_or_default(),
        otp_length: status.otp_length,
    }
}

/// `GET /v1/sys/generate-root/attempt`: the attempt in progress, if any.
pub(crate) async fn generate_root_status(
    State(state): State<Shared>,
) -> Result<Json<GenerateRootStatusResponse>, ApiError> {
    Ok(Json(generate_root_body(
        state.engine.generate_root_status().await?,
    )))
}

/// `PUT /v1/sys/generate-root/attempt`: starts an attempt (with a generated OTP when none is
/// given, answered once).
pub(crate) async fn generate_root_init(
    State(state): State<Shared>,
    source: Source,
    SmallJson(request): SmallJson<GenerateRootInitRequest>,
) -> Result<Json<GenerateRootStatusResponse>, ApiError> {
    let otp = Zeroizing::new(request.otp);
    let status = state
        .engine
        .generate_root_init(
            Some(otp).filter(|otp| !otp.is_empty()),
            Some(request.pgp_key.as_str()).filter(|key| !key.is_empty()),
        )
        .await?;
    tracing::warn!(%source, nonce = %status.nonce, "root token generation started");
    Ok(Json(generate_root_body(status)))
}

/// `DELETE /v1/sys/generate-root/attempt`: cancels the attempt, if any.
pub(crate) async fn generate_root_cancel(
    State(state): State<Shared>,
    source: Source,
) -> Result<StatusCode, ApiError> {
    state.engine.generate_root_cancel().await?;
    tracing::warn!(%source, "root token generation cancelled");
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/sys/generate-root/update`: one unseal key share for the attempt. Failures are
/// logged with the source address.
pub(crate) async fn generate_root_update(
    State(state): State<Shared>,
    source: Source,
    axum::Extension(request_id): axum::Extension<RequestId>,
    SmallJson(mut request): SmallJson<GenerateRootUpdateRequest>,
) -> Result<Json<GenerateRootStatusResponse>, ApiError> {
    let key = Zeroizing::new(std::mem::take(&mut request.key));
    if key.trim().is_empty() {
        return Err(ApiError::InvalidRequest(
            "'key' must be specified in request body as JSON".into(),
        ));
    }
    let bytes = custos_engine::decode_unseal_key(&key).inspect_err(|error| {
        tracing::warn!(%source, %error, "root generation key refused");
    })?;
    match state
        .engine
        .generate_root_update(&bytes, &request.nonce, &request_id.0)
        .await
    {
        Ok(status) => {
            if status.complete {
                tracing::warn!(%source, "a new root token was generated");
            }
            Ok(Json(generate_root_body(status)))
        }
        Err(error) => {
            tracing::warn!(%source, %error, "root generation submission failed");
            Err(error.into())
        }
    }
}

/// `PUT /v1/sys/seal`.
pub(crate) async fn seal(
    State(state): State<Shared>,
    token: Token,
    Peer(connection): Peer,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .seal_from(token.as_deref(), &connection)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/sys/rotate`.
pub(crate) async fn rotate(
    State(state): State<Shared>,
    token: Token,
    Peer(connection): Peer,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .rotate_at("sys/rotate", token.as_deref(), &connection)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/sys/rotate/keyring`: `sys/rotate` under the name OpenBao 2 uses, authorised on
/// its own path.
pub(crate) async fn rotate_keyring(
    State(state): State<Shared>,
    token: Token,
    Peer(connection): Peer,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .rotate_at("sys/rotate/keyring", token.as_deref(), &connection)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sys/key-status`: Vault puts the fields both at the top level and under `data`.
pub(crate) async fn key_status(
    State(state): State<Shared>,
    token: Token,
    Peer(connection): Peer,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Response, ApiError> {
    let info: KeyInfo = state
        .engine
        .key_status_from(token.as_deref(), &connection)
        .await?;
    let install_time = jiff::Timestamp::from_second(info.installed_at)
        .map(rfc3339)
        .unwrap_or_default();
    let status = KeyStatus {
        term: info.term,
        install_time,
        encryptions: info.encryptions,
    };
    let envelope = custos_api::Envelope::data(request_id.0, status.clone());
    let mut body = serde_json::to_value(&envelope)
        .map_err(|error| custos_engine::EngineError::Internal(error.to_string()))?;
    if let (Some(object), Ok(serde_json::Value::Object(fields))) =
        (body.as_object_mut(), serde_json::to_value(&status))
    {
        object.extend(fields);
    }
    Ok(Json(body).into_response())
}

/// `GET /v1/sys/leader`: every unsealed custos node serves requests itself, so each answers for
/// itself (`is_self`); `ha_enabled` says whether other nodes share its storage.
pub(crate) async fn leader(State(state): State<Shared>) -> Result<Json<LeaderResponse>, ApiError> {
    let status = state.engine.seal_status().await?;
    if status.sealed {
        return Err(custos_engine::EngineError::Sealed.into());
    }
    Ok(Json(LeaderResponse {
        ha_enabled: state.engine.is_clustered(),
        is_self: true,
        active_time: status.active_since.map(rfc3339).unwrap_or_default(),
        leader_address: state.api_address.clone(),
        leader_cluster_address: String::new(),
    }))
}
