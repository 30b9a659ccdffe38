//! `sys/generate-root`: a quorum of unseal key holders makes a new root token, Vault's OTP flow.
//!
//! An operator starts an attempt with a one-time password (OTP) as long as a token (or lets the
//! server generate one and show it once); key holders then submit their unseal key shares with
//! the attempt's nonce. When the threshold is reached the shares are combined, the result must
//! open the stored keyring (that is the proof of a quorum), and a new root token is created and
//! handed back XOR'd with the OTP, so only whoever holds the OTP can read it. The attempt lives in
//! this node's memory only, and dies with the unsealed state when the node seals.
//!
//! Vault's `sys/generate-root/*` endpoints need no token: the shares are the authority. The HTTP
//! layer restricts and rate-limits them like `sys/unseal`. OpenBao 2.x (and its CLI, `bao
//! operator generate-root`) use `sys/generate-root-token/*` instead, an ordinary authenticated
//! path answered under `data`: [`Engine::generate_root_logical`] serves it through the pipeline.

use base64::Engine as _;
use custos_crypto::shamir::{self, Share};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::logical::{LogicalResponse, Operation};
use crate::pipeline::AuditEvent;
use crate::token::TokenGrant;
use crate::{Engine, EngineError, Unsealed, barrier, seal};

/// The length of a custos token (`custos_token_` and 36 base62 characters), which is the length
/// an OTP must have: the token is XOR'd with it byte by byte.
pub const OTP_LENGTH: usize = custos_core::CUSTOS_TOKEN_PREFIX.len() + 1 + 36;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An attempt in progress: its nonce, the OTP the token will be XOR'd with, the shares so far.
pub(crate) struct Attempt {
    nonce: String,
    otp: Zeroizing<String>,
    shares: Vec<Share>,
}

/// What `sys/generate-root/attempt` and `sys/generate-root/update` report.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RootGenerationStatus {
    pub started: bool,
    pub nonce: String,
    pub progress: u32,
    pub required: u32,
    pub complete: bool,
    /// On completion: the new root token XOR'd with the OTP (raw bytes; the HTTP layer encodes
    /// them as unpadded base64, as Vault does).
    pub encoded_token: Vec<u8>,
    /// The OTP the server generated when the attempt was started without one, shown once.
    pub otp: Option<Zeroizing<String>>,
    /// The length an OTP must have.
    pub otp_length: u32,
}

impl std::fmt::Debug for RootGenerationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootGenerationStatus")
            .field("started", &self.started)
            .field("nonce", &self.nonce)
            .field("progress", &self.progress)
            .field("required", &self.required)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

/// A random base62 OTP of [`OTP_LENGTH`] characters (rejection sampling keeps it uniform).
fn generate_otp() -> Result<Zeroizing<String>, EngineError> {
    let mut otp = Zeroizing::new(String::with_capacity(OTP_LENGTH));
    let mut random = Zeroizing::new([0u8; 64]);
    while otp.len() < OTP_LENGTH {
        custos_crypto::fill_random(random.as_mut())
            .map_err(|error| EngineError::Internal(format!("random: {error}")))?;
        // 248 = 4 * 62: bytes below it map evenly onto the alphabet.
        for byte in random.iter().filter(|byte| **byte < 248) {
            if otp.len() == OTP_LENGTH {
                break;
            }
            otp.push(char::from(BASE62[usize::from(*byte % 62)]));
        }
    }
    Ok(otp)
}

/// XORs `token` with `otp` (both [`OTP_LENGTH`] bytes); also decodes, XOR being its own inverse.
pub fn xor_with_otp(token: &[u8], otp: &[u8]) -> Result<Vec<u8>, EngineError> {
    if token.len() != otp.len() {
        return Err(EngineError::InvalidRequest(format!(
            "the OTP is {} bytes and the token {}: they must be as long",
            otp.len(),
            token.len()
        )));
    }
    Ok(token.iter().zip(otp).map(|(a, b)| a ^ b).collect())
}

fn no_attempt() -> EngineError {
    EngineError::InvalidRequest("no root generation in progress".into())
}

impl Engine {
    /// The attempt slot of the unsealed state; a poisoned lock is recovered (the slot is a
    /// single value, replaced whole).
    fn attempt_slot(unsealed: &Unsealed) -> std::sync::MutexGuard<'_, Option<Attempt>> {
        unsealed
            .root_generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The unsealed state and the threshold of the seal (the shares an attempt needs).
    /// Not initialised comes before sealed, as in Vault.
    async fn generation_context(&self) -> Result<(std::sync::Arc<Unsealed>, u32), EngineError> {
        let config = self
            .seal_config()
            .await?
            .ok_or(EngineError::NotInitialized)?;
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        Ok((unsealed, config.secret_threshold))
    }

    fn generation_status(unsealed: &Unsealed, required: u32) -> RootGenerationStatus {
        let slot = Self::attempt_slot(unsealed);
        let mut status = RootGenerationStatus {
            required,
            otp_length: OTP_LENGTH as u32,
            ..RootGenerationStatus::default()
        };
        if let Some(attempt) = slot.as_ref() {
            status.started = true;
            status.nonce = attempt.nonce.clone();
            status.progress = u32::try_from(attempt.shares.len()).unwrap_or(u32::MAX);
        }
        status
    }

    /// `GET sys/generate-root/attempt`.
    pub async fn generate_root_status(&self) -> Result<RootGenerationStatus, EngineError> {
        let (unsealed, required) = self.generation_context().await?;
        Ok(Self::generation_status(&unsealed, required))
    }

    /// `PUT sys/generate-root/attempt`: starts an attempt with `otp`, or with an OTP generated
    /// here (returned once in the status) when none is given. PGP keys are not supported.
    pub async fn generate_root_init(
        &self,
        otp: Option<Zeroizing<String>>,
        pgp_key: Option<&str>,
    ) -> Result<RootGenerationStatus, EngineError> {
        let (unsealed, required) = self.generation_context().await?;
        let given = otp.filter(|otp| !otp.is_empty());
        if given.is_none() && pgp_key.is_some_and(|key| !key.is_empty()) {
            return Err(EngineError::InvalidRequest(
                "PGP-encrypted root tokens are not supported by custos: start with an OTP (or none, and the server generates one)".into(),
            ));
        }
        let (otp, generated) = match given {
            Some(otp) => {
                if otp.len() != OTP_LENGTH {
                    return Err(EngineError::InvalidRequest(format!(
                        "OTP string has incorrect length: it must be {OTP_LENGTH} characters"
                    )));
                }
                (otp, false)
            }
            None => (generate_otp()?, true),
        };
        let nonce = crate::random_id()?;
        {
            let mut slot = Self::attempt_slot(&unsealed);
            if slot.is_some() {
                return Err(EngineError::InvalidRequest(
                    "root generation already in progress".into(),
                ));
            }
            *slot = Some(Attempt {
                nonce: nonce.clone(),
                otp: otp.clone(),
                shares: Vec::new(),
            });
        }
        tracing::info!(%nonce, "root generation started");
        let mut status = Self::generation_status(&unsealed, required);
        if generated {
            status.otp = Some(otp);
        }
        Ok(status)
    }

    /// `DELETE sys/generate-root/attempt`: forgets the attempt and its shares (if any).
    pub async fn generate_root_cancel(&self) -> Result<(), EngineError> {
        let (unsealed, _) = self.generation_context().await?;
        if Self::attempt_slot(&unsealed).take().is_some() {
            tracing::info!("root generation cancelled");
        }
        Ok(())
    }

    /// `PUT sys/generate-root/update`: one unseal key share (decoded) for the attempt `nonce`.
    /// At the threshold the shares are combined (and forgotten, whatever happens next); when
    /// they open the keyring a root token is created, audited with an alert, and returned XOR'd
    /// with the OTP. Shares that do not open the keyring fail the round; the attempt stays, with
    /// no progress.
    pub async fn generate_root_update(
        &self,
        key: &[u8],
        nonce: &str,
        request_id: &str,
    ) -> Result<RootGenerationStatus, EngineError> {
        let (unsealed, required) = self.generation_context().await?;
        let share = seal::parse_unseal_key(key)?;
        // Synchronous: no guard lives across an await.
        let (otp, shares) = {
            let mut slot = Self::attempt_slot(&unsealed);
            let attempt = slot.as_mut().ok_or_else(no_attempt)?;
            if nonce != attempt.nonce {
                return Err(EngineError::InvalidRequest(format!(
                    "incorrect nonce supplied; nonce for this root generation operation is {:?}",
                    attempt.nonce
                )));
            }
            if attempt
                .shares
                .iter()
                .any(|seen| custos_crypto::constant_time_eq(seen.as_bytes(), share.as_bytes()))
            {
                return Err(EngineError::InvalidRequest(
                    "given key has already been provided during this generation operation".into(),
                ));
            }
            attempt.shares.push(share);
            let progress = u32::try_from(attempt.shares.len()).unwrap_or(u32::MAX);
            if progress < required {
                return Ok(RootGenerationStatus {
                    started: true,
                    nonce: attempt.nonce.clone(),
                    progress,
                    required,
                    otp_length: OTP_LENGTH as u32,
                    ..RootGenerationStatus::default()
                });
            }
            (attempt.otp.clone(), std::mem::take(&mut attempt.shares))
        };
        let event = AuditEvent::new(
            request_id,
            Operation::Update,
            "sys/generate-root/update",
            "generate-root-quorum",
        );
        let trail = self.audit_request(&unsealed, &event).await?;
        let result = self.complete_generation(&unsealed, &shares, &otp).await;
        let mut outcome = event;
        let answer = match &result {
            Ok((_, accessor)) => {
                outcome.alert = Some(format!(
                    "a new root token was generated by a quorum of unseal key holders (accessor {accessor})"
                ));
                tracing::warn!(%accessor, "a new root token was generated by a quorum of unseal key holders");
                // The attempt is over.
                let mut slot = Self::attempt_slot(&unsealed);
                if slot.as_ref().is_some_and(|attempt| attempt.nonce == nonce) {
                    *slot = None;
                }
                let mut data = serde_json::Map::new();
                data.insert("complete".into(), serde_json::Value::Bool(true));
                data.insert(
                    "accessor".into(),
                    serde_json::Value::String(accessor.clone()),
                );
                Ok(Some(crate::logical::LogicalResponse::data(data)))
            }
            Err(error) => {
                tracing::warn!(%error, "root generation failed: the shares do not open the keyring");
                Err(error)
            }
        };
        let recorded = match &answer {
            Ok(answer) => crate::audit::Outcome::Answer(answer.as_ref()),
            Err(error) => crate::audit::Outcome::Failed(error),
        };
        self.audit_response(&unsealed, trail, &outcome, recorded)
            .await?;
        let (encoded_token, _) = result?;
        Ok(RootGenerationStatus {
            started: true,
            nonce: nonce.to_owned(),
            progress: required,
            required,
            complete: true,
            encoded_token,
            otp: None,
            otp_length: OTP_LENGTH as u32,
        })
    }

    /// Combines the shares, checks them against the stored keyring, creates the root token and
    /// returns it XOR'd with the OTP, and its accessor.
    async fn complete_generation(
        &self,
        unsealed: &Unsealed,
        shares: &[Share],
        otp: &str,
    ) -> Result<(Vec<u8>, String), EngineError> {
        let combined: Zeroizing<Vec<u8>> = shamir::combine(shares).map_err(|error| {
            EngineError::InvalidUnsealKey(format!("root generation aborted: invalid key: {error}"))
        })?;
        let root_key = custos_crypto::RootKey::from_bytes(&combined).map_err(|error| {
            EngineError::InvalidUnsealKey(format!("root generation aborted: invalid key: {error}"))
        })?;
        let entry = self
            .inner
            .storage
            .get(barrier::KEYRING_KEY)
            .await?
            .ok_or_else(|| EngineError::Internal("keyring missing from storage".into()))?;
        if root_key.open_keyring(&entry.value).is_err() {
            return Err(EngineError::InvalidUnsealKey(
                "root generation aborted: the combined unseal keys do not open the keyring".into(),
            ));
        }
        let issued = self
            .issue_token(
                unsealed,
                TokenGrant {
                    policies: vec!["root".into()],
                    no_default_policy: true,
                    display_name: "root".into(),
                    path: "auth/token/root".into(),
                    ..TokenGrant::default()
                },
            )
            .await?;
        let token = Zeroizing::new(issued.client_token.clone());
        let encoded = xor_with_otp(token.as_bytes(), otp.as_bytes())?;
        Ok((encoded, issued.accessor.clone()))
    }
}

/// A status as OpenBao's `sys/generate-root-token/attempt` answers it: `nonce` and
/// `pgp_fingerprint` only once an attempt is started.
fn attempt_json(status: &RootGenerationStatus) -> Value {
    let mut body = json!({
        "started": status.started,
        "complete": status.complete,
        "progress": status.progress,
        "required": status.required,
        "otp": status.otp.as_ref().map(|otp| otp.as_str()).unwrap_or_default(),
        "otp_length": status.otp_length,
    });
    if status.started {
        body["nonce"] = json!(status.nonce);
        body["pgp_fingerprint"] = json!("");
    }
    body
}

/// An update's answer as OpenBao's `sys/generate-root-token/update` gives it; the encoded token
/// as unpadded base64.
fn update_json(status: &RootGenerationStatus) -> Value {
    let encoded = if status.encoded_token.is_empty() {
        String::new()
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&status.encoded_token)
    };
    json!({
        "started": status.started,
        "complete": status.complete,
        "progress": status.progress,
        "required": status.required,
        "nonce": status.nonce,
        "encoded_token": encoded,
        "pgp_fingerprint": "",
    })
}

/// A string field of a request body; absent or null is empty.
fn field(data: Option<&serde_json::Map<String, Value>>, name: &str) -> Result<String, EngineError> {
    match data.and_then(|data| data.get(name)) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name:?} must be a string"
        ))),
    }
}

/// An unseal key share as the API takes it (`sys/unseal`, `sys/generate-root/update`): hex,
/// else standard base64, as Vault decodes it.
pub fn decode_unseal_key(key: &str) -> Result<Zeroizing<Vec<u8>>, EngineError> {
    let key = key.trim();
    if let Ok(bytes) = hex::decode(key) {
        return Ok(Zeroizing::new(bytes));
    }
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .map(Zeroizing::new)
        .map_err(|_| {
            EngineError::InvalidRequest("'key' must be a valid hex or base64 string".into())
        })
}

impl Engine {
    /// `sys/generate-root-token/attempt` (GET, PUT, DELETE) and `sys/generate-root-token/update`
    /// (PUT): OpenBao 2.x's authenticated form of `sys/generate-root/*`, reached through the
    /// pipeline (so the caller's token and policies were checked and the request audited).
    pub(crate) async fn generate_root_logical(
        &self,
        rest: &str,
        operation: Operation,
        data: Option<&serde_json::Map<String, Value>>,
        request_id: &str,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let answer = match (rest.trim_end_matches('/'), operation) {
            ("attempt", Operation::Read) => attempt_json(&self.generate_root_status().await?),
            ("attempt", Operation::Update | Operation::Create) => {
                let otp = Zeroizing::new(field(data, "otp")?);
                let pgp_key = field(data, "pgp_key")?;
                let status = self
                    .generate_root_init(
                        Some(otp).filter(|otp| !otp.is_empty()),
                        Some(pgp_key.as_str()).filter(|key| !key.is_empty()),
                    )
                    .await?;
                attempt_json(&status)
            }
            ("attempt", Operation::Delete) => {
                self.generate_root_cancel().await?;
                return Ok(Some(LogicalResponse::default()));
            }
            ("update", Operation::Update | Operation::Create) => {
                let nonce = field(data, "nonce")?;
                if nonce.is_empty() {
                    return Err(EngineError::InvalidRequest("nonce is required".into()));
                }
                let key = Zeroizing::new(field(data, "key")?);
                if key.is_empty() {
                    return Err(EngineError::InvalidRequest("key is required".into()));
                }
                let share = decode_unseal_key(&key)?;
                update_json(
                    &self
                        .generate_root_update(&share, &nonce, request_id)
                        .await?,
                )
            }
            ("attempt" | "update", _) => return Err(EngineError::MethodNotAllowed),
            _ => return Ok(None),
        };
        Ok(Some(crate::pipeline::object(answer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_otps_are_base62_of_token_length() {
        let otp = generate_otp().expect("otp");
        assert_eq!(otp.len(), OTP_LENGTH);
        assert!(otp.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert_ne!(*otp, *generate_otp().expect("otp"));
    }

    #[test]
    fn otp_length_is_a_token_length() {
        let token = crate::token::new_token().expect("token");
        assert_eq!(token.len(), OTP_LENGTH);
    }

    #[test]
    fn xor_is_its_own_inverse_and_refuses_mismatched_lengths() {
        let token = b"custos_token_abc";
        let otp = b"0123456789ABCDEF";
        let encoded = xor_with_otp(token, otp).expect("xor");
        assert_ne!(encoded, token);
        assert_eq!(xor_with_otp(&encoded, otp).expect("xor"), token);
        assert!(xor_with_otp(token, b"short").is_err());
    }
}
