//! TOTP as a second factor for `userpass` (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps,
//! one step of clock skew either way).
//!
//! `users/<name>/totp` enrols (a fresh 20-byte secret, shown once as base32 and as an
//! `otpauth://` URL for authenticator apps), reports whether a user is enrolled, or removes the
//! enrolment. Once enrolled, a login needs a code besides the password. A code is accepted once:
//! the time step it belongs to is stored, and codes of that step or earlier are refused.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{load_user, store_user};
use crate::EngineError;
use crate::logical::{LogicalResponse, MountContext};
use crate::pipeline::object;

/// Seconds per code.
const PERIOD: u64 = 30;
/// Steps of clock skew accepted either way.
const SKEW: u64 = 1;
/// Bytes of a secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;
/// The issuer authenticator apps show.
const ISSUER: &str = "custos";

/// A user's TOTP enrolment, as stored (behind the barrier).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TotpEnrolment {
    /// The shared secret, hex.
    secret: String,
    /// When the user enrolled (unix seconds).
    created_time: i64,
    /// The last time step a code was accepted for; codes of this step or earlier are refused.
    #[serde(default)]
    last_step: Option<u64>,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolment")
            .field("created_time", &self.created_time)
            .finish_non_exhaustive()
    }
}

impl TotpEnrolment {
    /// Whether `code` is valid at `now` (unix seconds) and not used before; if so, records its
    /// step (the caller stores the entry).
    pub(crate) fn accept(&mut self, code: u32, now: i64) -> bool {
        let Ok(secret) = hex::decode(&self.secret).map(Zeroizing::new) else {
            return false;
        };
        let step = custos_crypto::otp::totp_step(now, PERIOD);
        match custos_crypto::otp::totp_match(&secret, code, step, SKEW) {
            Some(matched) if self.last_step.is_none_or(|last| matched > last) => {
                self.last_step = Some(matched);
                true
            }
            _ => false,
        }
    }
}

/// The `totp` field of a login: absent, or exactly six digits.
pub(crate) fn code_field(data: &Map<String, Value>) -> Result<Option<u32>, EngineError> {
    let invalid = || EngineError::InvalidRequest("totp must be a code of 6 digits".into());
    match data.get("totp") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => {
            if text.len() != 6 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(invalid());
            }
            text.parse().map(Some).map_err(|_| invalid())
        }
        Some(_) => Err(invalid()),
    }
}

/// `POST users/<name>/totp`: a new secret, replacing any earlier one. The answer is the only
/// time the secret is shown.
pub(crate) async fn enrol(ctx: &MountContext, name: &str) -> Result<LogicalResponse, EngineError> {
    let Some((mut entry, revision)) = load_user(ctx, name).await? else {
        return Err(EngineError::InvalidRequest(
            "username does not exist".into(),
        ));
    };
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    custos_crypto::fill_random(secret.as_mut())
        .map_err(|error| EngineError::Internal(format!("random: {error}")))?;
    let encoded = custos_crypto::otp::base32_encode(secret.as_ref());
    entry.totp = Some(TotpEnrolment {
        secret: hex::encode(secret.as_ref()),
        created_time: ctx.now.as_second(),
        last_step: None,
    });
    store_user(ctx, name, &entry, Some(revision)).await?;
    let url = format!(
        "otpauth://totp/{ISSUER}:{name}?secret={encoded}&issuer={ISSUER}&algorithm=SHA1&digits=6&period={PERIOD}"
    );
    Ok(object(json!({
        "url": url,
        "secret": encoded,
        "algorithm": "SHA1",
        "digits": 6,
        "period": PERIOD,
    })))
}

/// `GET users/<name>/totp`: whether the user is enrolled, never the secret.
pub(crate) async fn status(
    ctx: &MountContext,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some((entry, _)) = load_user(ctx, name).await? else {
        return Ok(None);
    };
    let created = entry
        .totp
        .as_ref()
        .and_then(|totp| jiff::Timestamp::from_second(totp.created_time).ok())
        .map(|time| time.to_string());
    Ok(Some(object(json!({
        "enrolled": entry.totp.is_some(),
        "created_time": created,
    }))))
}

/// `DELETE users/<name>/totp`: logins need only the password again.
pub(crate) async fn remove(ctx: &MountContext, name: &str) -> Result<LogicalResponse, EngineError> {
    let Some((mut entry, revision)) = load_user(ctx, name).await? else {
        return Ok(LogicalResponse::no_content());
    };
    if entry.totp.take().is_some() {
        store_user(ctx, name, &entry, Some(revision)).await?;
    }
    Ok(LogicalResponse::no_content())
}
