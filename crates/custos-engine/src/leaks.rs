//! `sys/leaks`: the leak endpoint. Whoever found a custos credential in the wild (`custos scan
//! --revoke-with`, a CI job, a partner's scanner) posts it here and the server revokes it at once.
//!
//! Holding a credential is the authority to kill it, as with `sys/wrapping/unwrap`, so the
//! endpoint needs no token of its own: a leaked credential can already be used by anyone, and
//! revoking it takes nothing from its legitimate owner that the leak had not taken already.
//! Guessing is hopeless (30 base62 characters, about 178 random bits per credential), and each
//! report is bounded in count ([`MAX_LEAKS_PER_REPORT`]).
//!
//! Root tokens are the exception: an anonymous report never revokes one, since that would lock
//! the operators out of everything, `sys/seal` included, with no way back. A reported root token
//! is marked leaked in its entry (`leaked`/`leaked_at` in `auth/token/lookup-self`), the report
//! is recorded as an audit event with an alert and logged as a warning, and the answer says
//! `not_revoked` and why. Revoking a root token takes a token (or, later, a `generate-root`
//! quorum).
//!
//! The items have the shape of GitHub's secret-scanning partner programme (`token`, `type`,
//! `url`, `source`) and so do the answers (`token_hash`, `token_type`, `label`), so a report
//! can be forwarded unchanged. Credentials are never echoed back: results name them by their
//! SHA-256. `type`, `url` and `source` come from an anonymous caller and are logged only through
//! [`crate::Untrusted`]. The server's credentials are tokens, wrapping tokens and the keys of
//! every `apikeys` mount.

use serde_json::{Map, Value, json};

use crate::pipeline::AuditEvent;
use crate::token::TokenEntry;
use crate::{Engine, EngineError, Unsealed, Untrusted, logical::LogicalResponse};

mod github;

pub use github::{
    GITHUB_LEAKS_PATH, GithubLeakKeys, GithubLeakReport, GithubLeakVerdict,
    MAX_GITHUB_LEAKS_PER_REPORT,
};

/// The most credentials one report may carry: each costs a few storage reads, and the endpoint
/// is anonymous.
pub const MAX_LEAKS_PER_REPORT: usize = 100;

/// Why a reported root token was not revoked, as the answer says it.
pub(crate) const ROOT_NOT_REVOKED: &str = "root token: revoke it with a token";

/// The longest credential considered; longer strings cannot be one of ours.
const MAX_CREDENTIAL_LEN: usize = 256;

/// What became of one reported credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// It was live here and is now revoked.
    Revoked(Kind),
    /// It is live here and stays live, for the reason given; it is marked leaked.
    NotRevoked(Kind, &'static str),
    /// Its checksum is valid but this server does not know it (never issued here, already
    /// revoked or expired, or a kind of key this server does not hold yet).
    Unknown,
    /// Not a custos credential: the checksum does not match.
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Token,
    WrappingToken,
    ApiKey,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::WrappingToken => "wrapping_token",
            Kind::ApiKey => "api_key",
        }
    }
}

/// One item of a report, as given.
struct Leak {
    token: String,
    kind: String,
    url: String,
    source: String,
}

impl Leak {
    /// One item of a report (`{token, type, url, source}`); `name` says how to name a field of
    /// it in an error (`leaks[3].token`, `item 3: token`).
    fn from_item(
        item: &Map<String, Value>,
        name: impl Fn(&str) -> String,
    ) -> Result<Leak, EngineError> {
        let text = |field: &str| -> Result<String, EngineError> {
            match item.get(field) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(text)) => Ok(text.clone()),
                Some(_) => Err(EngineError::InvalidRequest(format!(
                    "{} must be a string",
                    name(field)
                ))),
            }
        };
        let token = text("token")?;
        if token.is_empty() {
            return Err(EngineError::InvalidRequest(format!(
                "{} is missing",
                name("token")
            )));
        }
        Ok(Leak {
            token,
            kind: text("type")?,
            url: text("url")?,
            source: text("source")?,
        })
    }
}

fn parse_report(data: Option<&Map<String, Value>>) -> Result<Vec<Leak>, EngineError> {
    let invalid = |why: String| EngineError::InvalidRequest(why);
    let items = data
        .and_then(|data| data.get("leaks"))
        .ok_or_else(|| invalid("missing \"leaks\": a list of {\"token\": ...} objects".into()))?
        .as_array()
        .ok_or_else(|| invalid("\"leaks\" must be a list".into()))?;
    if items.is_empty() {
        return Err(invalid("\"leaks\" is empty".into()));
    }
    if items.len() > MAX_LEAKS_PER_REPORT {
        return Err(invalid(format!(
            "{} leaks in one report is more than the limit of {MAX_LEAKS_PER_REPORT}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item = item
                .as_object()
                .ok_or_else(|| invalid(format!("leaks[{index}] must be an object")))?;
            Leak::from_item(item, |field| format!("leaks[{index}].{field}"))
        })
        .collect()
}

impl Engine {
    /// `POST sys/leaks`: revokes every reported credential that is live on this server and
    /// says, for each, what happened. Repeating a report is harmless.
    pub(crate) async fn report_leaks(
        &self,
        unsealed: &Unsealed,
        request_id: &str,
        data: Option<&Map<String, Value>>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let leaks = parse_report(data)?;
        let outcomes = self.revoke_reported(unsealed, request_id, &leaks).await?;
        let mut results = Vec::with_capacity(leaks.len());
        let mut revoked = 0usize;
        let mut not_revoked = 0usize;
        let mut counted = std::collections::HashSet::new();
        for (leak, (token_hash, outcome)) in leaks.iter().zip(outcomes) {
            // The same credential twice in one report is counted once.
            if counted.insert(token_hash.clone()) {
                match outcome {
                    Outcome::Revoked(_) => revoked += 1,
                    Outcome::NotRevoked(..) => not_revoked += 1,
                    Outcome::Unknown | Outcome::Invalid => {}
                }
            }
            let (label, status, kind, reason) = match outcome {
                Outcome::Revoked(kind) => ("true_positive", "revoked", Some(kind.name()), None),
                Outcome::NotRevoked(kind, reason) => (
                    "true_positive",
                    "not_revoked",
                    Some(kind.name()),
                    Some(reason),
                ),
                Outcome::Unknown => ("false_positive", "unknown", None, None),
                Outcome::Invalid => ("false_positive", "invalid", None, None),
            };
            let mut result = json!({
                "token_hash": token_hash,
                "token_type": leak.kind,
                "label": label,
                "status": status,
                "kind": kind,
            });
            if let (Some(reason), Some(result)) = (reason, result.as_object_mut()) {
                result.insert("reason".into(), reason.into());
            }
            results.push(result);
        }
        Ok(Some(crate::pipeline::object(json!({
            "results": results,
            "revoked": revoked,
            "not_revoked": not_revoked,
        }))))
    }

    /// Revokes every credential of a parsed report that is live here (`sys/leaks` and
    /// `sys/leaks/github` alike): each item's SHA-256 and outcome, in the report's order.
    async fn revoke_reported(
        &self,
        unsealed: &Unsealed,
        request_id: &str,
        leaks: &[Leak],
    ) -> Result<Vec<(String, Outcome)>, EngineError> {
        let mut outcomes = Vec::with_capacity(leaks.len());
        let mut seen: std::collections::HashMap<String, Outcome> = Default::default();
        for leak in leaks {
            let token_hash = custos_crypto::sha256_hex(leak.token.as_bytes());
            let outcome = match seen.get(&token_hash) {
                // The same credential twice in one report: the second sees the first's result.
                Some(outcome) => *outcome,
                None => {
                    let outcome = self.revoke_leaked(unsealed, request_id, leak).await?;
                    seen.insert(token_hash.clone(), outcome);
                    outcome
                }
            };
            outcomes.push((token_hash, outcome));
        }
        Ok(outcomes)
    }

    /// Revokes one credential if it is live here (a root token is only marked leaked).
    async fn revoke_leaked(
        &self,
        unsealed: &Unsealed,
        request_id: &str,
        leak: &Leak,
    ) -> Result<Outcome, EngineError> {
        if leak.token.len() > MAX_CREDENTIAL_LEN {
            return Ok(Outcome::Invalid);
        }
        let Ok(key) = custos_core::ApiKey::parse(&leak.token) else {
            return Ok(Outcome::Invalid);
        };
        if !key.is_custos_token() {
            // An API key of one of the `apikeys` mounts, or nothing of ours.
            return Ok(
                match self.revoke_leaked_api_key(unsealed, &leak.token).await? {
                    Some(key_id) => {
                        tracing::warn!(
                            key_id = %key_id,
                            token_sha256 = %custos_crypto::sha256_hex(leak.token.as_bytes()),
                            reported_type = %Untrusted(&leak.kind),
                            url = %Untrusted(&leak.url),
                            source = %Untrusted(&leak.source),
                            "leaked API key revoked"
                        );
                        Outcome::Revoked(Kind::ApiKey)
                    }
                    None => Outcome::Unknown,
                },
            );
        }
        let hash = unsealed.token_hasher.hash_hex(leak.token.as_bytes());
        for (kind, path) in [
            (Kind::Token, crate::token::token_path_for_hash(&hash)),
            (
                Kind::WrappingToken,
                crate::wrapping::record_path_for_hash(&hash),
            ),
        ] {
            let Some(plain) = unsealed.barrier.get(&path).await? else {
                continue;
            };
            let entry = match kind {
                Kind::Token => Some(serde_json::from_slice::<TokenEntry>(&plain.value).map_err(
                    |error| EngineError::Internal(format!("token entry is corrupt: {error}")),
                )?),
                Kind::WrappingToken | Kind::ApiKey => None,
            };
            if let Some(entry) = entry.as_ref().filter(|entry| is_root(entry)) {
                self.mark_root_leaked(unsealed, request_id, &path, plain.revision, entry, leak)
                    .await?;
                return Ok(Outcome::NotRevoked(kind, ROOT_NOT_REVOKED));
            }
            let accessor = entry
                .as_ref()
                .map(|entry| entry.accessor.clone())
                .unwrap_or_default();
            // Conditional on the revision read, so two reports racing revoke it once.
            let claimed = match entry {
                // A token goes with its whole subtree: marked first (it stops working at once),
                // then deleted leaves first; an interruption is finished by a retry or tidy.
                Some(entry) => {
                    if entry.revoking.is_some() {
                        return Ok(Outcome::Unknown);
                    }
                    self.mark_revoking(
                        unsealed,
                        &hash,
                        entry,
                        plain.revision,
                        crate::token::Revocation::Tree,
                    )
                    .await
                }
                None => unsealed
                    .barrier
                    .commit(
                        custos_storage::Transaction::new()
                            .require_revision(&path, plain.revision)
                            .delete(&path),
                    )
                    .await
                    .map(drop),
            };
            match claimed {
                Ok(()) => {}
                Err(EngineError::Conflict) => return Ok(Outcome::Unknown),
                Err(error) => return Err(error),
            }
            if kind == Kind::Token {
                self.finish_revocation(unsealed, &hash, crate::token::Revocation::Tree)
                    .await?;
            }
            tracing::warn!(
                kind = kind.name(),
                accessor = %accessor,
                token_sha256 = %custos_crypto::sha256_hex(leak.token.as_bytes()),
                reported_type = %Untrusted(&leak.kind),
                url = %Untrusted(&leak.url),
                source = %Untrusted(&leak.source),
                "leaked credential revoked"
            );
            return Ok(Outcome::Revoked(kind));
        }
        Ok(Outcome::Unknown)
    }

    /// A reported root token stays valid: it is marked leaked (once; later reports leave the
    /// entry alone), and every report is audited with an alert and logged as a warning.
    async fn mark_root_leaked(
        &self,
        unsealed: &Unsealed,
        request_id: &str,
        path: &str,
        revision: custos_storage::Revision,
        entry: &TokenEntry,
        leak: &Leak,
    ) -> Result<(), EngineError> {
        if entry.leaked_at.is_none() {
            let mut marked = entry.clone();
            marked.leaked_at = Some(self.now().as_second());
            let bytes = serde_json::to_vec(&marked)
                .map_err(|error| EngineError::Internal(format!("encoding token: {error}")))?;
            // Conditional on the revision read: of two racing reports one marks it, and the
            // other finds it marked already, which is all it wanted.
            match unsealed
                .barrier
                .commit(
                    custos_storage::Transaction::new()
                        .require_revision(path, revision)
                        .put(path, bytes),
                )
                .await
            {
                Ok(_) | Err(EngineError::Conflict) => {}
                Err(error) => return Err(error),
            }
        }
        let alert = format!(
            "root token (accessor {}) reported as leaked; not revoked: revoke it with a token",
            entry.accessor
        );
        self.inner
            .audit
            .record(&AuditEvent {
                outcome: Some(Ok(())),
                alert: Some(alert),
                ..AuditEvent::new(
                    request_id,
                    crate::logical::Operation::Update,
                    "sys/leaks",
                    "leak-report",
                )
            })
            .await?;
        tracing::warn!(
            accessor = %entry.accessor,
            token_sha256 = %custos_crypto::sha256_hex(leak.token.as_bytes()),
            reported_type = %Untrusted(&leak.kind),
            url = %Untrusted(&leak.url),
            source = %Untrusted(&leak.source),
            "root token reported as leaked: NOT revoked (an anonymous report never revokes a root token); revoke it with a token"
        );
        Ok(())
    }
}

fn is_root(entry: &TokenEntry) -> bool {
    entry.is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(value: Value) -> Result<Vec<Leak>, EngineError> {
        match value {
            Value::Object(map) => parse_report(Some(&map)),
            _ => parse_report(None),
        }
    }

    #[test]
    fn reports_are_checked() {
        for bad in [
            json!({}),
            json!({"leaks": "x"}),
            json!({"leaks": []}),
            json!({"leaks": [1]}),
            json!({"leaks": [{}]}),
            json!({"leaks": [{"token": ""}]}),
            json!({"leaks": [{"token": 7}]}),
            json!({"leaks": [{"token": "a", "url": 3}]}),
        ] {
            assert!(
                matches!(report(bad.clone()), Err(EngineError::InvalidRequest(_))),
                "{bad}"
            );
        }
        let many: Vec<Value> = (0..=MAX_LEAKS_PER_REPORT)
            .map(|_| json!({"token": "a"}))
            .collect();
        assert!(report(json!({ "leaks": many })).is_err());
        let leaks = report(json!({"leaks": [
            {"token": "a", "type": "custos_token", "url": "https://x/y", "source": "git"},
            {"token": "b", "type": null}
        ]}))
        .unwrap();
        assert_eq!(leaks.len(), 2);
        assert_eq!(leaks[0].kind, "custos_token");
        assert_eq!(leaks[0].url, "https://x/y");
        assert_eq!(leaks[1].kind, "");
    }
}
