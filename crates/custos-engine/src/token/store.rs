//! The token store's storage operations and rules: issue (with Vault's TTL, parent and policy
//! rules), authenticate (expiry, bindings, use counts), renew, and revoke a subtree.

use std::collections::BTreeMap;

use custos_storage::{Revision, Transaction};
use serde::{Deserialize, Serialize};

use super::{
    ACCESSOR_PREFIX, Caller, IssuedToken, PARENT_PREFIX, SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL,
    TOKEN_PREFIX, TokenEntry, TokenGrant, accessor_path, new_token, parent_link_path,
    token_path_for_hash,
};
use crate::pipeline::{AuditEvent, Connection, Request};
use crate::{Engine, EngineError, Unsealed};

/// How a revocation that began goes on: the whole subtree, or the token alone with its children
/// made orphans (`revoke-orphan`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Revocation {
    Tree,
    Orphan,
}

/// The accessor index's value: the accessor itself (for `auth/token/accessors`) and the keyed
/// hash of its token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AccessorIndex {
    pub(crate) accessor: String,
    pub(crate) token_hash: String,
}

/// A token that checked out for a request.
#[derive(Clone, Debug)]
pub(crate) struct Authenticated {
    pub(crate) caller: Caller,
    /// The entry as it stands after this request's use.
    pub(crate) entry: TokenEntry,
    /// The token's keyed hash.
    pub(crate) hash: String,
    /// The entry's revision after this request's use; `None` once the last use revoked it.
    pub(crate) revision: Option<Revision>,
    /// The token has (had) a use limit: it may not create children.
    pub(crate) limited: bool,
    /// The caller's policies grant `sudo` on the request's path (set once the request is
    /// authorised; root tokens have it everywhere).
    pub(crate) sudo: bool,
}

/// The most tokens one revocation deletes; a larger subtree is left marked, and revoking again
/// (or `auth/token/tidy`) goes on where this one stopped.
pub(crate) const MAX_REVOKE_PER_REQUEST: usize = 10_000;

/// How often a compare-and-swap on a token entry is retried when another request changed it.
const MAX_RETRIES: usize = 16;

/// How many keys one listing of the token store's prefixes asks for.
const PAGE: usize = 128;

/// A token to create, once the request was checked.
#[derive(Clone, Debug, Default)]
pub(crate) struct NewToken {
    /// A caller-chosen token (root/sudo only); `None`: a random one.
    pub(crate) id: Option<String>,
    /// Final, sanitised policies.
    pub(crate) policies: Vec<String>,
    pub(crate) meta: Option<BTreeMap<String, String>>,
    pub(crate) display_name: String,
    pub(crate) path: String,
    /// Seconds; 0: the default.
    pub(crate) ttl: u64,
    /// Seconds; 0: the system maximum.
    pub(crate) max_ttl: u64,
    pub(crate) explicit_max_ttl: u64,
    pub(crate) period: u64,
    pub(crate) num_uses: u64,
    pub(crate) renewable: bool,
    pub(crate) bound_cidrs: Vec<String>,
    pub(crate) bound_cert_fingerprint: Option<String>,
    pub(crate) mfa: bool,
    pub(crate) role: Option<String>,
    /// The parent; `None` for an orphan.
    pub(crate) parent: Option<ParentRef>,
    /// A cap on the TTL from the caller's policies (the ACL's `max_ttl` condition).
    pub(crate) policy_max_ttl: Option<u64>,
}

/// The parent of a token being created, as read.
#[derive(Clone, Debug)]
pub(crate) struct ParentRef {
    pub(crate) hash: String,
    pub(crate) entry: TokenEntry,
    pub(crate) revision: Revision,
}

/// A TTL decision and what the caller should be told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// Seconds; 0: never expires.
    pub(crate) ttl: u64,
    /// What renewals may not pass, from creation; 0: no limit.
    pub(crate) max_ttl: u64,
    pub(crate) renewable: bool,
    pub(crate) warnings: Vec<String>,
}

/// Formats seconds as Vault's warnings do: `768h`, `1h30m`, `45s`.
pub(crate) fn short_duration(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if secs > 0 || text.is_empty() {
        text.push_str(&format!("{secs}s"));
    }
    text
}

/// Vault's TTL rules for a new token, with custos's parent cap: a periodic token lives one
/// period; a root-policy token without a TTL never expires; anything else gets the requested
/// TTL (else the default), capped by the maximum and the explicit maximum. A policy's `max_ttl`
/// caps it further, and a child never outlives its (non-orphan) parent.
pub(crate) fn lifetime(spec: &NewToken, now: i64) -> Result<Lifetime, EngineError> {
    let mut warnings = Vec::new();
    let explicit = spec.explicit_max_ttl;
    let system_max = if spec.max_ttl == 0 {
        SYSTEM_MAX_TTL
    } else {
        spec.max_ttl.min(SYSTEM_MAX_TTL)
    };
    let is_root = spec.policies.iter().any(|policy| policy == "root");
    let (mut ttl, mut max_ttl) = if spec.period > 0 {
        let ttl = if explicit > 0 {
            spec.period.min(explicit)
        } else {
            spec.period
        };
        (ttl, 0)
    } else if spec.ttl == 0 && is_root {
        (explicit, 0)
    } else {
        let requested = if spec.ttl == 0 {
            SYSTEM_DEFAULT_TTL
        } else {
            spec.ttl
        };
        let max = if explicit > 0 {
            explicit.min(system_max)
        } else {
            system_max
        };
        if requested > max && spec.ttl > 0 {
            warnings.push(format!(
                "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
                short_duration(requested),
                short_duration(max)
            ));
        }
        (requested.min(max), system_max)
    };
    if let Some(cap) = spec.policy_max_ttl.filter(|cap| *cap > 0) {
        if ttl == 0 || ttl > cap {
            warnings.push(format!(
                "TTL capped to {:?} by the max_ttl of the caller's policy",
                short_duration(cap)
            ));
            ttl = cap;
        }
        max_ttl = if max_ttl == 0 { cap } else { max_ttl.min(cap) };
    }
    if let Some(parent) = &spec.parent
        && let Some(expire) = parent.entry.expire_time
    {
        if ttl == 0 {
            return Err(EngineError::InvalidRequest(
                "expiring root tokens cannot create non-expiring root tokens".into(),
            ));
        }
        let remaining = u64::try_from(expire.saturating_sub(now)).unwrap_or(0);
        if ttl > remaining {
            warnings.push(format!(
                "TTL capped to {:?}, the parent token's remaining lifetime: a child never outlives its parent",
                short_duration(remaining)
            ));
            ttl = remaining;
        }
    }
    if ttl == 0 && !(is_root && spec.period == 0 && spec.policy_max_ttl.is_none()) {
        return Err(EngineError::InvalidRequest(
            "the token would expire at once: its parent has no lifetime left".into(),
        ));
    }
    Ok(Lifetime {
        ttl,
        max_ttl,
        renewable: spec.renewable && ttl > 0,
        warnings,
    })
}

/// Checks a token's bindings against the connection; the error says which failed (for the log
/// and the audit alert, never for the client).
pub(crate) fn check_bindings(
    entry: &TokenEntry,
    connection: &Connection,
) -> Result<(), &'static str> {
    if !entry.bound_cidrs.is_empty() {
        let Some(address) = connection.remote_addr else {
            return Err(
                "the token is bound to addresses (bound_cidrs) and the request has no source address",
            );
        };
        // A stored block that no longer parses admits nothing: fail closed.
        let blocks: Vec<custos_core::Cidr> = entry
            .bound_cidrs
            .iter()
            .filter_map(|block| block.parse().ok())
            .collect();
        if !custos_core::Cidr::any_contains(&blocks, address) {
            return Err("the request's source address is outside the token's bound_cidrs");
        }
    }
    if let Some(expected) = &entry.bound_cert_fingerprint {
        match &connection.client_cert {
            None => {
                return Err(
                    "the token is bound to a client certificate and the request presented none",
                );
            }
            Some(cert) if !cert.fingerprint.eq_ignore_ascii_case(expected) => {
                return Err(
                    "the request's client certificate is not the one the token is bound to",
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks a CIDR list from a request and returns it in canonical text form.
pub(crate) fn parse_cidrs(blocks: &[String], field: &str) -> Result<Vec<String>, EngineError> {
    blocks
        .iter()
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .trim()
                .parse::<custos_core::Cidr>()
                .map(|cidr| cidr.to_string())
                .map_err(|error| EngineError::InvalidRequest(format!("invalid {field}: {error}")))
        })
        .collect()
}

/// Checks a certificate fingerprint: 64 hex digits (SHA-256), colons allowed; lower-cased.
pub(crate) fn parse_fingerprint(text: &str) -> Result<String, EngineError> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(EngineError::InvalidRequest(
            "bound_cert_fingerprint must be the SHA-256 of the client certificate: 64 hex digits"
                .into(),
        ));
    }
    Ok(hex)
}

/// Vault's policy sanitising: trimmed, lower-cased, no empty names, sorted, no duplicates.
pub(crate) fn sanitize_policies(policies: &[String], add_default: bool) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .map(|policy| policy.trim().to_lowercase())
        .filter(|policy| !policy.is_empty())
        .collect();
    // Root is every policy at once: Vault keeps it alone.
    if out.iter().any(|policy| policy == "root") {
        return vec!["root".into()];
    }
    if add_default {
        out.push("default".into());
    }
    out.sort();
    out.dedup();
    out
}

fn issued(token: String, entry: &TokenEntry) -> IssuedToken {
    IssuedToken {
        client_token: token,
        accessor: entry.accessor.clone(),
        policies: entry.policies.clone(),
        token_policies: entry.policies.clone(),
        metadata: entry.meta.clone().unwrap_or_default(),
        lease_duration: entry.ttl,
        renewable: entry.renewable,
        orphan: entry.parent.is_none(),
        num_uses: entry.num_uses,
        mfa: entry.mfa,
    }
}

/// Vault's `auth` block for a renewed token: what is left of it.
pub(crate) fn renewed(token: String, entry: &TokenEntry, now: i64) -> IssuedToken {
    let mut auth = issued(token, entry);
    auth.lease_duration = remaining(entry, now);
    auth
}

/// Seconds until `entry` expires (0 for a token that never does).
pub(crate) fn remaining(entry: &TokenEntry, now: i64) -> u64 {
    entry.expire_time.map_or(0, |expire| {
        u64::try_from(expire.saturating_sub(now)).unwrap_or(0)
    })
}

impl Engine {
    /// Reads the entry stored under `hash`, with its revision.
    pub(crate) async fn load_token(
        &self,
        unsealed: &Unsealed,
        hash: &str,
    ) -> Result<Option<(TokenEntry, Revision)>, EngineError> {
        Ok(self
            .load_decoded(unsealed, hash)
            .await?
            .map(|decoded| (TokenEntry::clone(&decoded.entry), decoded.revision)))
    }

    /// The entry stored for a token hash, shared: every authenticated request reads its token,
    /// so what was decoded is kept by revision (`token::decoded`), and an unchanged entry is
    /// neither decrypted nor parsed again.
    pub(crate) async fn load_decoded(
        &self,
        unsealed: &Unsealed,
        hash: &str,
    ) -> Result<Option<super::decoded::Decoded>, EngineError> {
        let known = unsealed.decoded_tokens.get(hash);
        let read = unsealed
            .barrier
            .get_if_changed(
                &token_path_for_hash(hash),
                known.as_ref().map(|known| known.revision),
            )
            .await?;
        match (read, known) {
            (None, _) => {
                unsealed.decoded_tokens.remove(hash);
                Ok(None)
            }
            (Some(crate::barrier::Fresh::Unchanged(_)), Some(known)) => Ok(Some(known)),
            (Some(crate::barrier::Fresh::Unchanged(_)), None) => Err(EngineError::Internal(
                "token entry reported unchanged without a known revision".into(),
            )),
            (Some(crate::barrier::Fresh::Changed(plain)), _) => {
                let decoded =
                    super::decoded::Decoded::new(plain.revision, TokenEntry::decode(&plain.value)?);
                unsealed.decoded_tokens.put(hash, decoded.clone());
                Ok(Some(decoded))
            }
        }
    }

    /// [`Engine::check_token`] without copying the entry: the live token's decoded entry and
    /// caller, shared with the cache (the verify lane's authentication). `None` for any
    /// refusal; the pipeline then refuses the request again, and logs and audits why.
    pub(crate) async fn check_token_shared(
        &self,
        unsealed: &Unsealed,
        token: Option<&str>,
        connection: &Connection,
    ) -> Result<Option<super::decoded::Decoded>, EngineError> {
        let Some(token) = token.filter(|token| !token.is_empty()) else {
            return Ok(None);
        };
        let hash = unsealed.token_hasher.hash_hex(token.as_bytes());
        let now = self.now().as_second();
        let Some(decoded) = self.load_decoded(unsealed, &hash).await? else {
            return Ok(None);
        };
        if decoded.entry.revoking.is_some()
            || decoded.entry.is_expired(now)
            || check_bindings(&decoded.entry, connection).is_err()
        {
            return Ok(None);
        }
        Ok(Some(decoded))
    }

    /// The entry of a live token (not expired, not being revoked), by the token itself.
    pub(crate) async fn live_token(
        &self,
        unsealed: &Unsealed,
        token: &str,
    ) -> Result<Option<(String, TokenEntry, Revision)>, EngineError> {
        if token.is_empty() {
            return Ok(None);
        }
        let hash = unsealed.token_hasher.hash_hex(token.as_bytes());
        let now = self.now().as_second();
        Ok(self
            .load_token(unsealed, &hash)
            .await?
            .filter(|(entry, _)| entry.revoking.is_none() && !entry.is_expired(now))
            .map(|(entry, revision)| (hash, entry, revision)))
    }

    /// The token hash an accessor names, from the index.
    pub(crate) async fn hash_for_accessor(
        &self,
        unsealed: &Unsealed,
        accessor: &str,
    ) -> Result<Option<String>, EngineError> {
        if accessor.is_empty() {
            return Ok(None);
        }
        let path = accessor_path(&unsealed.token_hasher, accessor);
        let Some(plain) = unsealed.barrier.get(&path).await? else {
            return Ok(None);
        };
        let index: AccessorIndex = serde_json::from_slice(&plain.value).map_err(|error| {
            EngineError::Internal(format!("accessor index entry is corrupt: {error}"))
        })?;
        // The index is keyed by a hash of the accessor: check it names this accessor.
        Ok((index.accessor == accessor).then_some(index.token_hash))
    }

    /// Creates a token: its entry, its accessor index and (unless an orphan) the link under its
    /// parent, in one transaction that also requires the parent unchanged since it was read (a
    /// parent revoked meanwhile cannot gain a child its revocation would miss).
    pub(crate) async fn create_token(
        &self,
        unsealed: &Unsealed,
        spec: NewToken,
    ) -> Result<(IssuedToken, Vec<String>), EngineError> {
        let now = self.now();
        let life = lifetime(&spec, now.as_second())?;
        let token = match &spec.id {
            Some(id) => id.clone(),
            None => new_token()?,
        };
        let hash = unsealed.token_hasher.hash_hex(token.as_bytes());
        let accessor = crate::random_id()?;
        let entry = TokenEntry {
            policies: spec.policies.clone(),
            display_name: spec.display_name.clone(),
            created_time: now.as_second(),
            accessor: accessor.clone(),
            issue_time_nanos: now.as_nanosecond(),
            leaked_at: None,
            mfa: spec.mfa,
            parent: spec.parent.as_ref().map(|parent| parent.hash.clone()),
            meta: spec.meta.clone(),
            path: spec.path.clone(),
            ttl: life.ttl,
            expire_time: (life.ttl > 0).then(|| now.as_second().saturating_add_unsigned(life.ttl)),
            explicit_max_ttl: spec.explicit_max_ttl,
            period: spec.period,
            max_ttl: life.max_ttl,
            num_uses: spec.num_uses,
            renewable: life.renewable,
            bound_cidrs: spec.bound_cidrs.clone(),
            bound_cert_fingerprint: spec.bound_cert_fingerprint.clone(),
            role: spec.role.clone(),
            last_renewal_time: None,
            last_increment: 0,
            revoking: None,
        };
        let id_path = token_path_for_hash(&hash);
        let index = serde_json::to_vec(&AccessorIndex {
            accessor: accessor.clone(),
            token_hash: hash.clone(),
        })
        .map_err(|error| EngineError::Internal(format!("encoding accessor index: {error}")))?;
        let mut txn = Transaction::new()
            .require_absent(&id_path)
            .put(&id_path, entry.encode()?)
            .put(accessor_path(&unsealed.token_hasher, &accessor), index);
        if let Some(parent) = &spec.parent {
            txn = txn
                .require_revision(token_path_for_hash(&parent.hash), parent.revision)
                .put(parent_link_path(&parent.hash, &hash), Vec::new());
        }
        unsealed.barrier.commit(txn).await?;
        Ok((issued(token, &entry), life.warnings))
    }

    /// Creates a token for `grant`. The seam between auth methods and the token store: logins
    /// hand their grant here (through the pipeline). Login tokens are orphans.
    pub(crate) async fn issue_token(
        &self,
        unsealed: &Unsealed,
        grant: TokenGrant,
    ) -> Result<IssuedToken, EngineError> {
        let mut policies = sanitize_policies(&grant.policies, !grant.no_default_policy);
        if grant.no_default_policy {
            policies.retain(|policy| policy != "default");
        }
        let bound_cert_fingerprint = grant
            .bound_cert_fingerprint
            .as_deref()
            .map(parse_fingerprint)
            .transpose()?;
        let spec = NewToken {
            id: None,
            policies,
            meta: (!grant.metadata.is_empty()).then_some(grant.metadata),
            display_name: grant.display_name,
            path: grant.path,
            ttl: grant.ttl,
            max_ttl: grant.max_ttl,
            explicit_max_ttl: grant.explicit_max_ttl,
            period: grant.period,
            num_uses: grant.num_uses,
            renewable: grant.renewable,
            bound_cidrs: grant.bound_cidrs.iter().map(ToString::to_string).collect(),
            bound_cert_fingerprint,
            mfa: grant.mfa,
            role: None,
            parent: None,
            policy_max_ttl: None,
        };
        Ok(self.create_token(unsealed, spec).await?.0)
    }

    /// Checks a token without spending a use: it exists, has not expired, is not being revoked,
    /// and its bindings admit `connection`. A binding failure is logged (by accessor, never the
    /// token) and returned as `Err(Some(reason))`; anything else that refuses it as `Err(None)`.
    pub(crate) async fn check_token(
        &self,
        unsealed: &Unsealed,
        token: Option<&str>,
        connection: &Connection,
    ) -> Result<Result<(String, TokenEntry, Revision), Option<&'static str>>, EngineError> {
        let Some(token) = token.filter(|token| !token.is_empty()) else {
            return Ok(Err(None));
        };
        let Some((hash, entry, revision)) = self.live_token(unsealed, token).await? else {
            return Ok(Err(None));
        };
        if let Err(reason) = check_bindings(&entry, connection) {
            tracing::warn!(
                accessor = %entry.accessor,
                remote_addr = ?connection.remote_addr,
                reason,
                "token binding check failed: request refused"
            );
            return Ok(Err(Some(reason)));
        }
        Ok(Ok((hash, entry, revision)))
    }

    /// Checks a token and returns who it belongs to, without spending one of its uses (the
    /// pipeline does that once the request is authorised). A token that expired, is being
    /// revoked, or whose bindings (`bound_cidrs`, `bound_cert_fingerprint`) do not admit
    /// `connection` is refused.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        connection: &Connection,
    ) -> Result<Caller, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        match self.check_token(&unsealed, token, connection).await? {
            Ok((_, entry, _)) => Ok(entry.into()),
            Err(_) => Err(EngineError::PermissionDenied),
        }
    }

    /// The pipeline's authentication: [`Engine::authenticate`], with a binding failure also
    /// recorded as an audit event with an alert.
    pub(crate) async fn authenticate_request(
        &self,
        unsealed: &Unsealed,
        request: &Request,
    ) -> Result<Authenticated, EngineError> {
        match self
            .check_token(unsealed, request.token.as_deref(), &request.connection)
            .await?
        {
            Ok((hash, entry, revision)) => Ok(Authenticated {
                caller: entry.clone().into(),
                limited: entry.num_uses > 0,
                sudo: false,
                entry,
                hash,
                revision: Some(revision),
            }),
            Err(None) => Err(EngineError::PermissionDenied),
            Err(Some(reason)) => {
                let alert = format!("token binding check failed: {reason}");
                self.inner
                    .audit
                    .record(&AuditEvent {
                        outcome: Some(Err(EngineError::PermissionDenied.to_string())),
                        alert: Some(alert),
                        ..AuditEvent::new(
                            &request.request_id,
                            request.operation,
                            &request.path,
                            "token-binding-failure",
                        )
                    })
                    .await?;
                Err(EngineError::PermissionDenied)
            }
        }
    }

    /// Spends one use of a token with a use limit (a compare-and-swap on its entry, retried when
    /// another request spent one meanwhile); the last use revokes it. Tokens without a limit
    /// cost no write.
    pub(crate) async fn spend_use(
        &self,
        unsealed: &Unsealed,
        auth: &mut Authenticated,
    ) -> Result<(), EngineError> {
        if auth.entry.num_uses == 0 {
            return Ok(());
        }
        let path = token_path_for_hash(&auth.hash);
        for _ in 0..MAX_RETRIES {
            let Some((entry, revision)) = self.load_token(unsealed, &auth.hash).await? else {
                return Err(EngineError::PermissionDenied);
            };
            if entry.revoking.is_some() || entry.is_expired(self.now().as_second()) {
                return Err(EngineError::PermissionDenied);
            }
            if entry.num_uses == 0 {
                // The limit was lifted meanwhile (it cannot be today); nothing to spend.
                auth.entry = entry;
                auth.revision = Some(revision);
                return Ok(());
            }
            let mut spent = entry.clone();
            spent.num_uses -= 1;
            let txn = Transaction::new().require_revision(&path, revision);
            let txn = if spent.num_uses == 0 {
                // The last use: the token goes now (a token with a use limit has no children).
                let mut txn = txn
                    .delete(&path)
                    .delete(accessor_path(&unsealed.token_hasher, &entry.accessor));
                if let Some(parent) = &entry.parent {
                    txn = txn.delete(parent_link_path(parent, &auth.hash));
                }
                txn
            } else {
                txn.put(&path, spent.encode()?)
            };
            match unsealed.barrier.commit(txn).await {
                Ok(new_revision) => {
                    auth.revision = (spent.num_uses > 0).then_some(new_revision);
                    auth.entry = spent;
                    return Ok(());
                }
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(EngineError::Conflict)
    }

    /// Renews the token stored under `hash` by `increment` seconds (0: its creation TTL), within
    /// its limits: a periodic token to one period; others up to their maximum from creation;
    /// all within their explicit maximum and their parent's expiry.
    pub(crate) async fn renew_token(
        &self,
        unsealed: &Unsealed,
        hash: &str,
        increment: u64,
    ) -> Result<(TokenEntry, Vec<String>), EngineError> {
        let path = token_path_for_hash(hash);
        for _ in 0..MAX_RETRIES {
            let now = self.now().as_second();
            let Some((mut entry, revision)) = self.load_token(unsealed, hash).await? else {
                return Err(EngineError::InvalidRequest("token not found".into()));
            };
            if entry.revoking.is_some() || entry.is_expired(now) {
                return Err(EngineError::InvalidRequest("token not found".into()));
            }
            if !entry.renewable || entry.expire_time.is_none() {
                return Err(EngineError::InvalidRequest("lease is not renewable".into()));
            }
            // The auth method that issued it may refuse (its role is gone, its policies
            // changed) or bring the role's current TTLs, as Vault's login renewal does.
            let limits = self
                .login_renewal(unsealed, &entry)
                .await?
                .unwrap_or_default();
            let mut warnings = Vec::new();
            let mut ttl = if limits.period > 0 {
                limits.period
            } else if entry.period > 0 {
                entry.period
            } else if increment > 0 {
                increment
            } else if limits.ttl > 0 {
                limits.ttl
            } else if entry.last_increment > 0 {
                entry.last_increment
            } else {
                entry.ttl
            };
            let since_creation = u64::try_from(now.saturating_sub(entry.created_time)).unwrap_or(0);
            // The role's maximum applies as well as the one the token was issued with.
            let max_ttl = match (entry.max_ttl, limits.max_ttl) {
                (0, only) | (only, 0) => only,
                (own, role) => own.min(role),
            };
            if max_ttl > 0 {
                let limit = max_ttl.saturating_sub(since_creation);
                if ttl > limit {
                    warnings.push(format!(
                        "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
                        short_duration(ttl),
                        short_duration(limit)
                    ));
                    ttl = limit;
                }
            }
            if entry.explicit_max_ttl > 0 {
                ttl = ttl.min(entry.explicit_max_ttl.saturating_sub(since_creation));
            }
            if let Some(parent) = &entry.parent
                && let Some((parent_entry, _)) = self.load_token(unsealed, parent).await?
                && let Some(expire) = parent_entry.expire_time
            {
                let left = u64::try_from(expire.saturating_sub(now)).unwrap_or(0);
                if ttl > left {
                    warnings.push(
                        "TTL capped to the parent token's remaining lifetime: a child never outlives its parent"
                            .into(),
                    );
                    ttl = left;
                }
            }
            entry.expire_time = Some(now.saturating_add_unsigned(ttl));
            entry.last_renewal_time = Some(now);
            entry.last_increment = ttl;
            match unsealed
                .barrier
                .commit(
                    Transaction::new()
                        .require_revision(&path, revision)
                        .put(&path, entry.encode()?),
                )
                .await
            {
                Ok(_) => return Ok((entry, warnings)),
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(EngineError::Conflict)
    }

    /// Marks the token at `hash` for revocation (it stops authenticating at once) and then
    /// carries the revocation out. Answers whether there was such a token. A token already
    /// marked finishes the revocation it was marked for.
    pub(crate) async fn revoke_token(
        &self,
        unsealed: &Unsealed,
        hash: &str,
        mode: Revocation,
    ) -> Result<bool, EngineError> {
        let mut marked = None;
        for _ in 0..MAX_RETRIES {
            let Some((entry, revision)) = self.load_token(unsealed, hash).await? else {
                return Ok(false);
            };
            if let Some(existing) = entry.revoking {
                marked = Some(existing);
                break;
            }
            match self
                .mark_revoking(unsealed, hash, entry, revision, mode)
                .await
            {
                Ok(()) => {
                    marked = Some(mode);
                    break;
                }
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        let mode = marked.ok_or(EngineError::Conflict)?;
        self.finish_revocation(unsealed, hash, mode).await?;
        Ok(true)
    }

    /// Marks a token as being revoked, if it is still at `revision`.
    pub(crate) async fn mark_revoking(
        &self,
        unsealed: &Unsealed,
        hash: &str,
        mut entry: TokenEntry,
        revision: Revision,
        mode: Revocation,
    ) -> Result<(), EngineError> {
        let path = token_path_for_hash(hash);
        entry.revoking = Some(mode);
        unsealed
            .barrier
            .commit(
                Transaction::new()
                    .require_revision(&path, revision)
                    .put(&path, entry.encode()?),
            )
            .await
            .map(drop)
    }

    /// Carries out a revocation that was marked: idempotent, so an interrupted one is finished
    /// by running it again.
    pub(crate) async fn finish_revocation(
        &self,
        unsealed: &Unsealed,
        hash: &str,
        mode: Revocation,
    ) -> Result<(), EngineError> {
        match mode {
            Revocation::Tree => self.delete_tree(unsealed, hash).await,
            Revocation::Orphan => {
                self.orphan_children(unsealed, hash).await?;
                self.delete_one(unsealed, hash, None).await
            }
        }
    }

    /// Deletes the subtree under `root` (and `root`), leaves first, one token per transaction:
    /// whatever an interruption leaves is still linked to the marked root.
    async fn delete_tree(&self, unsealed: &Unsealed, root: &str) -> Result<(), EngineError> {
        // (token hash, the parent it was listed under)
        let mut stack: Vec<(String, Option<String>)> = vec![(root.to_owned(), None)];
        let mut marked = std::collections::HashSet::new();
        let mut deleted = 0usize;
        while let Some((top, listed_under)) = stack.last().cloned() {
            // Each token is marked before its children are listed: creating a child needs the
            // parent's entry unchanged since it was read (and not marked), so no child can slip
            // in between the listing and the deletion.
            if marked.insert(top.clone()) {
                self.ensure_marked(unsealed, &top).await?;
            }
            if stack.len() > MAX_REVOKE_PER_REQUEST {
                return Err(EngineError::InvalidRequest(format!(
                    "revocation stopped: more than {MAX_REVOKE_PER_REQUEST} tokens pending; revoke it again (or run auth/token/tidy) to finish"
                )));
            }
            let children = unsealed
                .barrier
                .list(&format!("{PARENT_PREFIX}{top}/"), None, PAGE)
                .await?;
            if children.keys.is_empty() {
                self.delete_one(unsealed, &top, listed_under.as_deref())
                    .await?;
                stack.pop();
                deleted += 1;
                if deleted >= MAX_REVOKE_PER_REQUEST && !stack.is_empty() {
                    return Err(EngineError::InvalidRequest(format!(
                        "revocation stopped after {deleted} tokens; the rest of the tree no longer authenticates at its root: revoke it again (or run auth/token/tidy) to finish"
                    )));
                }
            } else {
                for key in children.keys {
                    if let Some(child) = key.rsplit('/').next().filter(|child| !child.is_empty()) {
                        stack.push((child.to_owned(), Some(top.clone())));
                    }
                }
            }
        }
        Ok(())
    }

    /// Marks the token at `hash` for revocation unless it is gone or marked already.
    async fn ensure_marked(&self, unsealed: &Unsealed, hash: &str) -> Result<(), EngineError> {
        for _ in 0..MAX_RETRIES {
            let Some((entry, revision)) = self.load_token(unsealed, hash).await? else {
                return Ok(());
            };
            if entry.revoking.is_some() {
                return Ok(());
            }
            match self
                .mark_revoking(unsealed, hash, entry, revision, Revocation::Tree)
                .await
            {
                Err(EngineError::Conflict) => continue,
                other => return other,
            }
        }
        Err(EngineError::Conflict)
    }

    /// Makes every child of `hash` an orphan (entry and link in one transaction each).
    async fn orphan_children(&self, unsealed: &Unsealed, hash: &str) -> Result<(), EngineError> {
        let mut done = 0usize;
        loop {
            let children = unsealed
                .barrier
                .list(&format!("{PARENT_PREFIX}{hash}/"), None, PAGE)
                .await?;
            if children.keys.is_empty() {
                return Ok(());
            }
            for key in children.keys {
                let Some(child) = key.rsplit('/').next() else {
                    continue;
                };
                self.make_orphan(unsealed, hash, child).await?;
                done += 1;
                if done >= MAX_REVOKE_PER_REQUEST {
                    return Err(EngineError::InvalidRequest(format!(
                        "stopped after making {done} children orphans; revoke-orphan again (or run auth/token/tidy) to finish"
                    )));
                }
            }
        }
    }

    async fn make_orphan(
        &self,
        unsealed: &Unsealed,
        parent: &str,
        child: &str,
    ) -> Result<(), EngineError> {
        let link = parent_link_path(parent, child);
        let path = token_path_for_hash(child);
        for _ in 0..MAX_RETRIES {
            let txn = match self.load_token(unsealed, child).await? {
                None => Transaction::new().delete(&link),
                Some((mut entry, revision)) => {
                    entry.parent = None;
                    Transaction::new()
                        .require_revision(&path, revision)
                        .put(&path, entry.encode()?)
                        .delete(&link)
                }
            };
            match unsealed.barrier.commit(txn).await {
                Ok(_) => return Ok(()),
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(EngineError::Conflict)
    }

    /// Deletes one token: its entry, accessor index and parent link, in one transaction.
    /// `listed_under` names a parent it was found under, whose link goes too (even when the
    /// entry itself is already gone).
    async fn delete_one(
        &self,
        unsealed: &Unsealed,
        hash: &str,
        listed_under: Option<&str>,
    ) -> Result<(), EngineError> {
        let mut txn = Transaction::new().delete(token_path_for_hash(hash));
        if let Some((entry, _)) = self.load_token(unsealed, hash).await? {
            if !entry.accessor.is_empty() {
                txn = txn.delete(accessor_path(&unsealed.token_hasher, &entry.accessor));
            }
            if let Some(parent) = entry.parent.as_deref() {
                txn = txn.delete(parent_link_path(parent, hash));
            }
            tracing::info!(accessor = %entry.accessor, "token revoked");
        }
        if let Some(parent) = listed_under {
            txn = txn.delete(parent_link_path(parent, hash));
        }
        unsealed.barrier.commit(txn).await.map(drop)
    }

    /// `auth/token/tidy`: finishes interrupted revocations, revokes expired tokens (and their
    /// subtrees), and removes index entries and links that point at nothing.
    pub(crate) async fn tidy_tokens(
        &self,
        unsealed: &Unsealed,
    ) -> Result<BTreeMap<&'static str, u64>, EngineError> {
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let now = self.now().as_second();
        let mut pages = unsealed.barrier.pages(TOKEN_PREFIX, PAGE);
        while let Some(keys) = pages.next_page().await? {
            for key in &keys {
                let Some(hash) = key.strip_prefix(TOKEN_PREFIX) else {
                    continue;
                };
                let Some((entry, _)) = self.load_token(unsealed, hash).await? else {
                    continue;
                };
                if let Some(mode) = entry.revoking {
                    self.finish_revocation(unsealed, hash, mode).await?;
                    *counts.entry("revocations_finished").or_default() += 1;
                } else if entry.is_expired(now) {
                    self.revoke_token(unsealed, hash, Revocation::Tree).await?;
                    *counts.entry("expired_revoked").or_default() += 1;
                }
            }
        }
        let mut pages = unsealed.barrier.pages(ACCESSOR_PREFIX, PAGE);
        while let Some(keys) = pages.next_page().await? {
            for key in &keys {
                let Some(plain) = unsealed.barrier.get(key).await? else {
                    continue;
                };
                let dangling = match serde_json::from_slice::<AccessorIndex>(&plain.value) {
                    Ok(index) => self
                        .load_token(unsealed, &index.token_hash)
                        .await?
                        .is_none(),
                    Err(_) => true,
                };
                if dangling {
                    unsealed
                        .barrier
                        .commit(
                            Transaction::new()
                                .require_revision(key, plain.revision)
                                .delete(key),
                        )
                        .await
                        .or_else(|error| match error {
                            EngineError::Conflict => Ok(Revision(0)),
                            other => Err(other),
                        })?;
                    *counts.entry("accessor_indexes_removed").or_default() += 1;
                }
            }
        }
        let mut pages = unsealed.barrier.pages(PARENT_PREFIX, PAGE);
        while let Some(keys) = pages.next_page().await? {
            for key in &keys {
                let Some((parent, child)) = key
                    .strip_prefix(PARENT_PREFIX)
                    .and_then(|rest| rest.split_once('/'))
                else {
                    continue;
                };
                if self.load_token(unsealed, parent).await?.is_some() {
                    // A link and its child's entry are written and deleted together: a link
                    // without its child is left over from something older, and goes.
                    if self.load_token(unsealed, child).await?.is_none() {
                        unsealed
                            .barrier
                            .commit(Transaction::new().delete(key.as_str()))
                            .await?;
                        *counts.entry("dangling_links_removed").or_default() += 1;
                    }
                    continue;
                }
                // A child never outlives its parent: one whose parent is gone goes too.
                self.revoke_token(unsealed, child, Revocation::Tree).await?;
                unsealed
                    .barrier
                    .commit(Transaction::new().delete(key.as_str()))
                    .await?;
                *counts.entry("orphaned_links_removed").or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// Every accessor in the index, sorted.
    pub(crate) async fn list_accessors(
        &self,
        unsealed: &Unsealed,
    ) -> Result<Vec<String>, EngineError> {
        let mut accessors = Vec::new();
        let mut pages = unsealed.barrier.pages(ACCESSOR_PREFIX, PAGE);
        while let Some(keys) = pages.next_page().await? {
            for key in &keys {
                if let Some(plain) = unsealed.barrier.get(key).await?
                    && let Ok(index) = serde_json::from_slice::<AccessorIndex>(&plain.value)
                {
                    accessors.push(index.accessor);
                }
            }
        }
        accessors.sort();
        Ok(accessors)
    }
}
