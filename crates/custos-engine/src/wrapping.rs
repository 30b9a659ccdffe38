//! Response wrapping: a response stored behind a single-use token with a time to live.
//!
//! `X-Vault-Wrap-TTL` on any request that answers with data stores that answer and returns only
//! `wrap_info` (token, accessor, TTL, creation time and path). Whoever holds the token can read
//! the answer exactly once, before the TTL passes: the safe way to hand a secret to a new machine,
//! since an intercepted token that was already used, or a token used by an intruder first, shows.
//! Tokens are stored only as keyed hashes, like every token.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::logical::{LogicalResponse, WrapInfo};
use crate::{Engine, EngineError, Unsealed};

pub(crate) const WRAP_PREFIX: &str = "sys/wrapping/token/";
/// The longest a wrapped response may live: Vault's default system maximum TTL of 768h (32 days),
/// so `31d` and `721h` work as in Vault. OpenBao takes any TTL; custos bounds how long a stored
/// response outlives its purpose.
pub(crate) const MAX_WRAP_TTL: u64 = 768 * 3600;
const INVALID: &str = "wrapping token is not valid or does not exist";

/// What is stored for one wrapping token.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WrapRecord {
    data: Map<String, Value>,
    #[serde(default)]
    warnings: Vec<String>,
    accessor: String,
    ttl: u64,
    creation_unix_nanos: i128,
    creation_path: String,
    /// A wrapped `auth` block: the token a login or `auth/token/create` issued
    /// (`bao token create -wrap-ttl=...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<crate::IssuedToken>,
}

/// The answer a wrapping record unwraps to: its data (none for a wrapped token without data),
/// warnings and `auth` block.
fn unwrapped(record: WrapRecord) -> LogicalResponse {
    let data = if record.data.is_empty() && record.auth.is_some() {
        None
    } else {
        Some(record.data)
    };
    LogicalResponse {
        data,
        warnings: record.warnings,
        auth: record.auth,
        ..LogicalResponse::default()
    }
}

impl WrapRecord {
    fn created(&self) -> Timestamp {
        Timestamp::from_nanosecond(self.creation_unix_nanos).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn expired(&self, now: Timestamp) -> bool {
        let ttl = i64::try_from(self.ttl).unwrap_or(i64::MAX);
        now.as_second().saturating_sub(self.created().as_second()) >= ttl
    }

    fn info(&self, token: String) -> WrapInfo {
        WrapInfo {
            token,
            accessor: self.accessor.clone(),
            ttl: self.ttl,
            creation_time: self.created().to_string(),
            creation_path: self.creation_path.clone(),
        }
    }
}

/// Checks a requested wrap TTL.
/// Where the wrapped response of the token whose keyed hash is `hash_hex` is stored.
pub(crate) fn record_path_for_hash(hash_hex: &str) -> String {
    format!("{WRAP_PREFIX}{hash_hex}")
}

pub(crate) fn check_ttl(ttl: u64) -> Result<u64, EngineError> {
    if ttl == 0 {
        return Err(EngineError::InvalidRequest(
            "wrap TTL must be greater than zero".into(),
        ));
    }
    if ttl > MAX_WRAP_TTL {
        return Err(EngineError::InvalidRequest(format!(
            "wrap TTL of {ttl}s is longer than the maximum of {MAX_WRAP_TTL}s"
        )));
    }
    Ok(ttl)
}

fn token_field(data: Option<&Map<String, Value>>) -> Result<Option<String>, EngineError> {
    match data.and_then(|data| data.get("token")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) if token.is_empty() => Ok(None),
        Some(Value::String(token)) => Ok(Some(token.clone())),
        Some(_) => Err(EngineError::InvalidRequest("token must be a string".into())),
    }
}

impl Engine {
    /// Stores `response` behind a new wrapping token and returns the response to send instead.
    pub(crate) async fn wrap(
        &self,
        unsealed: &Unsealed,
        response: LogicalResponse,
        ttl: u64,
        creation_path: &str,
    ) -> Result<LogicalResponse, EngineError> {
        let ttl = check_ttl(ttl)?;
        let token = crate::token::new_token()?;
        let record = WrapRecord {
            data: response.data.unwrap_or_default(),
            warnings: response.warnings,
            accessor: crate::random_id()?,
            ttl,
            creation_unix_nanos: self.now().as_nanosecond(),
            creation_path: creation_path.to_owned(),
            auth: response.auth,
        };
        let bytes = serde_json::to_vec(&record).map_err(|error| {
            EngineError::Internal(format!("encoding wrapped response: {error}"))
        })?;
        let key = record_path_for_hash(&unsealed.token_hasher.hash_hex(token.as_bytes()));
        unsealed.barrier.put(&key, bytes).await?;
        Ok(LogicalResponse {
            wrap_info: Some(record.info(token)),
            ..LogicalResponse::default()
        })
    }

    /// Reads a live wrapping record (expired ones are deleted on sight).
    async fn wrap_record(
        &self,
        unsealed: &Unsealed,
        token: &str,
    ) -> Result<(String, WrapRecord, custos_storage::Revision), EngineError> {
        let key = record_path_for_hash(&unsealed.token_hasher.hash_hex(token.as_bytes()));
        let plain = unsealed
            .barrier
            .get(&key)
            .await?
            .ok_or_else(|| EngineError::InvalidRequest(INVALID.into()))?;
        let record: WrapRecord = serde_json::from_slice(&plain.value).map_err(|error| {
            EngineError::Internal(format!("wrapped response is corrupt: {error}"))
        })?;
        if record.expired(self.now()) {
            let _ = unsealed
                .barrier
                .commit(
                    custos_storage::Transaction::new()
                        .require_revision(&key, plain.revision)
                        .delete(&key),
                )
                .await;
            return Err(EngineError::InvalidRequest(INVALID.into()));
        }
        Ok((key, record, plain.revision))
    }

    /// Takes a wrapped response out, exactly once: the delete is conditional on the revision
    /// read, so of two concurrent unwraps one wins and the other sees an invalid token.
    async fn take_wrapped(
        &self,
        unsealed: &Unsealed,
        token: &str,
    ) -> Result<WrapRecord, EngineError> {
        let (key, record, revision) = self.wrap_record(unsealed, token).await?;
        match unsealed
            .barrier
            .commit(
                custos_storage::Transaction::new()
                    .require_revision(&key, revision)
                    .delete(&key),
            )
            .await
        {
            Ok(_) => Ok(record),
            Err(EngineError::Conflict) => Err(EngineError::InvalidRequest(INVALID.into())),
            Err(error) => Err(error),
        }
    }

    /// `sys/wrapping/unwrap` with the wrapping token as the request token: no other
    /// authentication is needed, holding the token is the authority.
    pub(crate) async fn unwrap_with_token(
        &self,
        unsealed: &Unsealed,
        token: &str,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let record = self.take_wrapped(unsealed, token).await?;
        Ok(Some(unwrapped(record)))
    }

    /// `sys/wrapping/lookup`: unauthenticated, as Vault's; says what a token wraps, not the data.
    pub(crate) async fn wrapping_lookup(
        &self,
        unsealed: &Unsealed,
        data: Option<&Map<String, Value>>,
        header_token: Option<&str>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let token = token_field(data)?
            .or_else(|| header_token.map(str::to_owned))
            .ok_or_else(|| EngineError::InvalidRequest("missing token".into()))?;
        let (_, record, _) = self.wrap_record(unsealed, &token).await?;
        Ok(Some(crate::pipeline::object(json!({
            "creation_path": record.creation_path,
            "creation_time": record.created().to_string(),
            "creation_ttl": record.ttl,
        }))))
    }

    /// The authenticated `sys/wrapping/*` operations: wrap, unwrap (token in the body), rewrap.
    pub(crate) async fn handle_wrapping(
        &self,
        unsealed: &Unsealed,
        operation: &str,
        data: Option<&Map<String, Value>>,
        wrap_ttl: Option<u64>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        match operation {
            "wrap" => {
                let ttl = wrap_ttl.ok_or_else(|| {
                    EngineError::InvalidRequest(
                        "sys/wrapping/wrap needs a wrap TTL (the X-Vault-Wrap-TTL header)".into(),
                    )
                })?;
                let data = data.cloned().unwrap_or_default();
                if data.is_empty() {
                    return Err(EngineError::InvalidRequest("no data to wrap".into()));
                }
                self.wrap(
                    unsealed,
                    LogicalResponse::data(data),
                    ttl,
                    "sys/wrapping/wrap",
                )
                .await
                .map(Some)
            }
            "unwrap" => {
                let token = token_field(data)?
                    .ok_or_else(|| EngineError::InvalidRequest("missing token".into()))?;
                self.unwrap_with_token(unsealed, &token).await
            }
            "rewrap" => {
                let token = token_field(data)?
                    .ok_or_else(|| EngineError::InvalidRequest("missing token".into()))?;
                let record = self.take_wrapped(unsealed, &token).await?;
                let ttl = record.ttl;
                let path = record.creation_path.clone();
                self.wrap(unsealed, unwrapped(record), ttl, &path)
                    .await
                    .map(Some)
            }
            "lookup" => self.wrapping_lookup(unsealed, data, None).await,
            other => Err(EngineError::NoRoute(format!("sys/wrapping/{other}"))),
        }
    }
}
