//! `sys/leaks/github`: leak reports in GitHub's secret-scanning partner programme format, signed
//! by GitHub.
//!
//! GitHub posts a JSON array of `{"token", "type", "url", "source"}` objects with two headers:
//! `Github-Public-Key-Identifier` names one of GitHub's keys and `Github-Public-Key-Signature`
//! is the base64 of an ECDSA P-256 SHA-256 signature (ASN.1 DER) over the raw body. The keys
//! come from the server's configuration only (`[[leaks.github_keys]]`; the server never fetches
//! them), so the operator decides which keys to trust and when to rotate them.
//!
//! The signature is checked before the body is parsed. A missing header, an unknown key
//! identifier or a signature that does not verify is refused ([`EngineError::InvalidSignature`])
//! and revokes nothing; a body that is not such an array is refused as invalid. A verified report
//! goes through the same revocation as `sys/leaks` (a root token is only marked leaked), and the
//! answer is GitHub's: one [`GithubLeakVerdict`] per item, `true_positive` when the credential
//! was ours and live. Both the refusals and the reports are audited, with path
//! [`GITHUB_LEAKS_PATH`].

use serde_json::{Map, Value, json};

use super::{Leak, Outcome};
use crate::audit::Outcome as AuditOutcome;
use crate::logical::Operation;
use crate::{AuditEvent, Connection, Engine, EngineError, Request};

/// The path the endpoint is audited (and authorised) as.
pub const GITHUB_LEAKS_PATH: &str = "sys/leaks/github";

/// The most items one signed report may carry. Larger than `sys/leaks`'s limit: the report
/// is signed by GitHub, which may batch many matches, and refusing one would lose them all.
/// The body limit (256 KiB) bounds it first in practice.
pub const MAX_GITHUB_LEAKS_PER_REPORT: usize = 1000;

/// The caller audit records name for a GitHub report.
const CALLER: &str = "github-leak-report";

/// GitHub's public keys this server trusts, by key identifier.
#[derive(Clone, Debug, Default)]
pub struct GithubLeakKeys {
    keys: Vec<(String, custos_crypto::EcdsaP256PublicKey)>,
}

impl GithubLeakKeys {
    pub fn new() -> GithubLeakKeys {
        GithubLeakKeys::default()
    }

    /// Adds a key given as a PEM `PUBLIC KEY` block. An empty or repeated identifier, or a
    /// key that is not a P-256 public key, is refused with a message for the operator.
    pub fn add_pem(&mut self, key_identifier: &str, pem: &str) -> Result<(), String> {
        let key_identifier = key_identifier.trim();
        if key_identifier.is_empty() {
            return Err("key_identifier is empty".into());
        }
        if self.find(key_identifier).is_some() {
            return Err(format!("key_identifier {key_identifier:?} is listed twice"));
        }
        let key = custos_crypto::EcdsaP256PublicKey::from_pem(pem).map_err(|error| {
            format!("key {key_identifier:?} is not a P-256 public key: {error}")
        })?;
        self.keys.push((key_identifier.to_owned(), key));
        Ok(())
    }

    /// No key configured: the endpoint is off.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn find(&self, key_identifier: &str) -> Option<&custos_crypto::EcdsaP256PublicKey> {
        self.keys
            .iter()
            .find(|(id, _)| id == key_identifier)
            .map(|(_, key)| key)
    }
}

/// One signed report as it arrived: the raw body (the signature covers these exact bytes) and
/// the two headers, if present.
#[derive(Clone, Copy, Debug)]
pub struct GithubLeakReport<'a> {
    pub key_identifier: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
    pub request_id: &'a str,
    pub connection: &'a Connection,
}

/// What became of one reported item, as GitHub wants to hear it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubLeakVerdict {
    /// SHA-256 of the reported string, lower-case hex: the answer never echoes it.
    pub token_hash: String,
    /// The item's `type`, as given.
    pub token_type: String,
    /// The string was a live credential of this server: it is revoked now (or, for a root
    /// token, marked leaked). Otherwise a false positive.
    pub true_positive: bool,
}

impl GithubLeakVerdict {
    /// GitHub's `label`.
    pub fn label(&self) -> &'static str {
        if self.true_positive {
            "true_positive"
        } else {
            "false_positive"
        }
    }
}

/// Checks the headers and the signature over the raw body.
fn verify(keys: &GithubLeakKeys, report: &GithubLeakReport<'_>) -> Result<(), EngineError> {
    let refused = |why: &str| EngineError::InvalidSignature(why.to_owned());
    let key_identifier = report
        .key_identifier
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refused("missing Github-Public-Key-Identifier header"))?;
    let signature = report
        .signature
        .filter(|signature| !signature.trim().is_empty())
        .ok_or_else(|| refused("missing Github-Public-Key-Signature header"))?;
    let key = keys.find(key_identifier).ok_or_else(|| {
        refused("unknown Github-Public-Key-Identifier: no key in leaks.github_keys has it")
    })?;
    key.verify_base64(report.body, signature)
        .map_err(|error| match error {
            custos_crypto::CryptoError::BadSignature => {
                refused("Github-Public-Key-Signature does not verify for this body and key")
            }
            _ => refused("Github-Public-Key-Signature is not a base64 ECDSA signature"),
        })
}

/// Parses the body: a JSON array of objects with a string `token` and optional string `type`,
/// `url` and `source`; other fields are ignored (GitHub may add some). Messages never quote
/// the body, which holds credentials.
fn parse(body: &[u8]) -> Result<Vec<Leak>, EngineError> {
    let invalid = |why: String| EngineError::InvalidRequest(why);
    // A `Value` first: serde's messages for a typed parse can quote the offending string.
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        invalid(format!(
            "the body is not JSON (line {}, column {})",
            error.line(),
            error.column()
        ))
    })?;
    let Value::Array(items) = value else {
        return Err(invalid(
            "the body must be a JSON array of {\"token\": ...} objects".into(),
        ));
    };
    if items.len() > MAX_GITHUB_LEAKS_PER_REPORT {
        return Err(invalid(format!(
            "{} items in one report is more than the limit of {MAX_GITHUB_LEAKS_PER_REPORT}",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let Value::Object(item) = item else {
                return Err(invalid(format!("item {index} must be an object")));
            };
            Leak::from_item(&item, |field| format!("item {index}: {field}"))
        })
        .collect()
}

/// The report as audit records show it (every string hashed there), shaped like a `sys/leaks`
/// body.
fn audit_data(leaks: &[Leak]) -> Map<String, Value> {
    let items: Vec<Value> = leaks
        .iter()
        .map(|leak| {
            json!({
                "token": leak.token,
                "type": leak.kind,
                "url": leak.url,
                "source": leak.source,
            })
        })
        .collect();
    let mut data = Map::new();
    data.insert("leaks".into(), Value::Array(items));
    data
}

impl Engine {
    /// `POST sys/leaks/github`: verifies a report signed by GitHub with one of `keys`, then
    /// revokes every reported credential that is live here, as `sys/leaks` does. Audited,
    /// refusals included.
    #[tracing::instrument(skip_all, fields(request_id = %report.request_id))]
    pub async fn report_github_leaks(
        &self,
        keys: &GithubLeakKeys,
        report: GithubLeakReport<'_>,
    ) -> Result<Vec<GithubLeakVerdict>, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        self.refresh_tables(&unsealed).await?;
        let mut request = Request::new(Operation::Update, GITHUB_LEAKS_PATH);
        request.request_id = report.request_id.to_owned();
        request.connection = report.connection.clone();
        let leaks = match verify(keys, &report).and_then(|()| parse(report.body)) {
            Ok(leaks) => leaks,
            Err(error) => {
                tracing::warn!(error = %error, "GitHub leak report refused");
                return Err(Box::pin(self.audit_refused(&unsealed, &request, error)).await);
            }
        };
        request.data = Some(audit_data(&leaks));
        let event = AuditEvent::of_request(&request, CALLER);
        // Recorded before anything is revoked; a record no device wrote stops it here.
        let trail = self.audit_request(&unsealed, &event).await?;
        let result = self
            .revoke_reported(&unsealed, report.request_id, &leaks)
            .await
            .map(|outcomes| {
                leaks
                    .iter()
                    .zip(outcomes)
                    .map(|(leak, (token_hash, outcome))| GithubLeakVerdict {
                        token_hash,
                        token_type: leak.kind.clone(),
                        true_positive: matches!(
                            outcome,
                            Outcome::Revoked(_) | Outcome::NotRevoked(..)
                        ),
                    })
                    .collect::<Vec<_>>()
            });
        let answer = result.as_ref().ok().map(|verdicts| {
            let results: Vec<Value> = verdicts
                .iter()
                .map(|verdict| {
                    json!({
                        "token_hash": verdict.token_hash,
                        "token_type": verdict.token_type,
                        "label": verdict.label(),
                    })
                })
                .collect();
            crate::pipeline::object(json!({ "results": results }))
        });
        let outcome = match (&result, &answer) {
            (Err(error), _) => AuditOutcome::Failed(error),
            (Ok(_), answer) => AuditOutcome::Answer(answer.as_ref()),
        };
        self.audit_response(&unsealed, trail, &event, outcome)
            .await?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_without_quoting_them() {
        for bad in [
            &b"not json custos_secret"[..],
            b"{\"token\": \"custos_secret\"}",
            b"[\"custos_secret\"]",
            b"[{}]",
            b"[{\"token\": \"\"}]",
            b"[{\"token\": 7}]",
            b"[{\"token\": \"custos_secret\", \"url\": 3}]",
        ] {
            match parse(bad) {
                Err(EngineError::InvalidRequest(message)) => {
                    assert!(!message.contains("custos_secret"), "{message}");
                }
                other => panic!("{}: {:?}", String::from_utf8_lossy(bad), other.is_ok()),
            }
        }
        let many = format!("[{}]", vec!["{\"token\":\"a\"}"; 1001].join(","));
        assert!(parse(many.as_bytes()).is_err());
        let leaks = parse(
            br#"[{"token":"a","type":"custos_token","url":"https://github.com/x","source":"content","extra":1},
                {"token":"b"}]"#,
        )
        .unwrap();
        assert_eq!(leaks.len(), 2);
        assert_eq!(leaks[0].kind, "custos_token");
        assert_eq!(leaks[0].source, "content");
        assert_eq!(leaks[1].kind, "");
        assert!(parse(b"[]").unwrap().is_empty());
    }

    #[test]
    fn keys_are_checked_when_added() {
        let mut keys = GithubLeakKeys::new();
        assert!(keys.is_empty());
        assert!(keys.add_pem("", "x").is_err());
        let error = keys.add_pem("id", "not a key").unwrap_err();
        assert!(error.contains("not a P-256 public key"), "{error}");
        assert!(keys.is_empty());
    }
}
