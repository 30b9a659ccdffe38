//! `GET sys/inventory`: the credentials the inventory knows, stored and not yet flushed, and
//! every live token (used or not), filtered and paginated.
//!
//! Query parameters (all optional): `unused_since` (RFC 3339, or a duration back from now:
//! `720h`, `30d`), `min_addresses`, `auth_method` (a mount path, `approle/`, or a type,
//! `approle`), `policy`, `kind` (`token`, `approle`, `userpass`, `cert`), `limit` (default
//! [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and `after` (the `next_after` of the previous page).
//!
//! Records of tokens that are no longer live (revoked, expired) are left out, and their stored
//! records deleted (with a compare-and-swap, so a concurrent flush wins): a revoked token is not
//! a credential any more.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::{
    Bounded, CredentialId, CredentialKind, Evicted, INVENTORY_PREFIX, Record, record_path,
};
use crate::logical::LogicalResponse;
use crate::pipeline::{Request, object};
use crate::token::TokenEntry;
use crate::{Engine, EngineError, Unsealed};

/// How many credentials a page holds when the request does not say.
pub(crate) const DEFAULT_LIMIT: usize = 1000;
/// The most credentials one page holds.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// How many keys one listing asks for.
const PAGE: usize = 128;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filters {
    /// Unix seconds: only credentials not used since then (never used included).
    pub(crate) unused_since: Option<i64>,
    pub(crate) min_addresses: usize,
    pub(crate) auth_method: Option<String>,
    pub(crate) policy: Option<String>,
    pub(crate) kind: Option<CredentialKind>,
    pub(crate) limit: usize,
    pub(crate) after: Option<String>,
}

fn invalid(message: String) -> EngineError {
    EngineError::InvalidRequest(message)
}

/// A point in time: RFC 3339, or a duration (`720h`, `30d`, seconds) back from `now`.
pub(crate) fn parse_instant(text: &str, now: jiff::Timestamp) -> Option<i64> {
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Some(instant.as_second());
    }
    let seconds = match text.strip_suffix('d') {
        Some(days) => days.parse::<u64>().ok()?.checked_mul(86_400)?,
        None => crate::sys::parse_ttl(text)?,
    };
    now.as_second().checked_sub(i64::try_from(seconds).ok()?)
}

impl Filters {
    pub(crate) fn parse(
        query: &BTreeMap<String, String>,
        now: jiff::Timestamp,
    ) -> Result<Filters, EngineError> {
        let non_empty = |name: &str| {
            query
                .get(name)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
        };
        let number = |name: &str| -> Result<Option<usize>, EngineError> {
            non_empty(name)
                .map(|text| {
                    text.parse::<usize>().map_err(|_| {
                        invalid(format!("{name} {text:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let unused_since = non_empty("unused_since")
            .map(|text| {
                parse_instant(text, now).ok_or_else(|| {
                    invalid(format!(
                        "unused_since {text:?} is neither an RFC 3339 time nor a duration such as 720h or 30d"
                    ))
                })
            })
            .transpose()?;
        let kind = non_empty("kind")
            .map(|text| {
                CredentialKind::parse(text).ok_or_else(|| {
                    invalid(format!(
                        "kind {text:?} is not one of token, approle, userpass, cert"
                    ))
                })
            })
            .transpose()?;
        let limit = match number("limit")? {
            None => DEFAULT_LIMIT,
            Some(0) => return Err(invalid("limit must be at least 1".into())),
            Some(limit) => limit.min(MAX_LIMIT),
        };
        Ok(Filters {
            unused_since,
            min_addresses: number("min_addresses")?.unwrap_or(0),
            auth_method: non_empty("auth_method").map(str::to_owned),
            policy: non_empty("policy").map(str::to_owned),
            kind,
            limit,
            after: non_empty("after").map(str::to_owned),
        })
    }
}

/// One credential as the report shows it.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub(crate) record: Record,
    /// Whether it was ever used (a live token that never was has no usage).
    pub(crate) used: bool,
    /// The auth method's mount path (`approle/`, `token/`).
    pub(crate) auth_method: String,
    /// For tokens: when they were created and expire (unix seconds).
    pub(crate) created_time: Option<i64>,
    pub(crate) expire_time: Option<i64>,
}

impl Listed {
    /// The position in the report, and the `after` cursor.
    pub(crate) fn cursor(&self) -> String {
        let credential = &self.record.credential;
        let mut cursor = format!(
            "{}:{}{}",
            credential.kind.as_str(),
            self.auth_method,
            credential.id
        );
        if let Some(accessor) = &credential.secret_id_accessor {
            cursor.push(':');
            cursor.push_str(accessor);
        }
        cursor
    }

    pub(crate) fn matches(&self, filters: &Filters) -> bool {
        let record = &self.record;
        if filters
            .kind
            .is_some_and(|kind| kind != record.credential.kind)
        {
            return false;
        }
        if let Some(since) = filters.unused_since
            && self.used
            && record.last_seen >= since
        {
            return false;
        }
        if record.addresses.items.len() < filters.min_addresses {
            return false;
        }
        if let Some(method) = &filters.auth_method {
            let path = method.trim_end_matches('/');
            if self.auth_method.trim_end_matches('/') != path && record.auth_type != *method {
                return false;
            }
        }
        if let Some(policy) = &filters.policy
            && !record.policies.iter().any(|held| held == policy)
        {
            return false;
        }
        filters
            .after
            .as_deref()
            .is_none_or(|after| self.cursor().as_str() > after)
    }

    pub(crate) fn to_json(&self) -> Value {
        let record = &self.record;
        let time = |seconds: i64| {
            jiff::Timestamp::from_second(seconds)
                .map_or(Value::Null, |instant| Value::String(instant.to_string()))
        };
        let used = |seconds: i64| {
            if self.used {
                time(seconds)
            } else {
                Value::Null
            }
        };
        let seen = |set: &Bounded<String>, field: &str| {
            let mut items: Vec<_> = set.items.iter().collect();
            items.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.value.cmp(&b.value)));
            Value::Array(
                items
                    .into_iter()
                    .map(|seen| {
                        let mut item = Map::new();
                        item.insert(field.to_owned(), Value::String(seen.value.clone()));
                        item.insert("first_seen".into(), time(seen.first_seen));
                        item.insert("last_seen".into(), time(seen.last_seen));
                        item.insert("requests".into(), seen.requests.into());
                        Value::Object(item)
                    })
                    .collect(),
            )
        };
        let Evicted {
            addresses,
            user_agents,
            cert_fingerprints,
        } = record.evicted;
        json!({
            "kind": record.credential.kind.as_str(),
            "id": record.credential.id,
            "secret_id_accessor": record.credential.secret_id_accessor,
            "auth_method": self.auth_method,
            "auth_type": record.auth_type,
            "display_name": record.display_name,
            "policies": record.policies,
            "created_time": self.created_time.map_or(Value::Null, time),
            "expire_time": self.expire_time.map_or(Value::Null, time),
            "first_seen": used(record.first_seen),
            "last_seen": used(record.last_seen),
            "requests": record.requests,
            "addresses": seen(&record.addresses, "address"),
            "user_agents": seen(&record.user_agents, "user_agent"),
            "cert_fingerprints": seen(&record.cert_fingerprints, "fingerprint"),
            "evicted": {
                "addresses": addresses,
                "user_agents": user_agents,
                "cert_fingerprints": cert_fingerprints,
            },
        })
    }
}

/// The auth method (mount path, type) that issued a token created at `path`.
fn token_method(auths: &crate::mounts::MountTable, path: &str) -> (String, String) {
    path.strip_prefix("auth/")
        .filter(|rest| !rest.starts_with("token/"))
        .and_then(|rest| auths.route(rest))
        .map_or_else(
            || ("token/".to_owned(), "token".to_owned()),
            |entry| (entry.path.clone(), entry.kind.clone()),
        )
}

impl Engine {
    /// `GET sys/inventory`.
    pub(crate) async fn read_inventory(
        &self,
        unsealed: &Unsealed,
        request: &Request,
    ) -> Result<LogicalResponse, EngineError> {
        let now = self.now();
        let filters = Filters::parse(&request.query, now)?;
        let mut listed = self.inventory_listing(unsealed, now.as_second()).await?;
        listed.retain(|entry| entry.matches(&filters));
        listed.sort_by_cached_key(Listed::cursor);
        let more = listed.len() > filters.limit;
        listed.truncate(filters.limit);
        let next_after = if more {
            listed.last().map(|entry| Value::String(entry.cursor()))
        } else {
            None
        };
        let credentials: Vec<Value> = listed.iter().map(Listed::to_json).collect();
        Ok(object(json!({
            "credentials": credentials,
            "next_after": next_after,
        })))
    }

    /// Every credential the inventory knows, unfiltered: stored records merged with the ones
    /// not flushed yet, and every live token. The stored records are listed before the tokens,
    /// so a token whose use was flushed is live in the listing unless it was revoked since.
    pub(crate) async fn inventory_listing(
        &self,
        unsealed: &Unsealed,
        now: i64,
    ) -> Result<Vec<Listed>, EngineError> {
        let hasher = &unsealed.token_hasher;
        // Storage path → record and the revision it was read at (none: only in memory).
        let mut records: HashMap<String, (Record, Option<custos_storage::Revision>)> =
            HashMap::new();
        let mut pages = unsealed.barrier.pages(INVENTORY_PREFIX, PAGE);
        while let Some(keys) = pages.next_page().await? {
            for key in keys {
                let Some(plain) = unsealed.barrier.get(&key).await? else {
                    continue;
                };
                records.insert(key, (Record::decode(&plain.value)?, Some(plain.revision)));
            }
        }
        for record in self.inner.inventory.snapshot() {
            let path = record_path(hasher, &record.credential);
            match records.get_mut(&path) {
                Some((stored, _)) => stored.merge(record),
                None => {
                    records.insert(path, (record, None));
                }
            }
        }
        let mut live = self.live_tokens(unsealed, now).await?;
        let auths = unsealed.auths();
        let mut listed = Vec::with_capacity(records.len() + live.len());
        let mut stale = Vec::new();
        for (path, (mut record, revision)) in records {
            if record.credential.kind != CredentialKind::Token {
                listed.push(Listed {
                    auth_method: record.credential.mount.clone(),
                    record,
                    used: true,
                    created_time: None,
                    expire_time: None,
                });
                continue;
            }
            let Some(entry) = live.remove(&record.credential.id) else {
                if let Some(revision) = revision {
                    stale.push((path, revision));
                }
                continue;
            };
            let (auth_method, auth_type) = token_method(&auths, &entry.path);
            record.auth_type = auth_type;
            record.display_name = entry.display_name;
            record.policies = entry.policies;
            record.token_path = entry.path;
            listed.push(Listed {
                record,
                used: true,
                auth_method,
                created_time: Some(entry.created_time),
                expire_time: entry.expire_time,
            });
        }
        for (accessor, entry) in live {
            let (auth_method, auth_type) = token_method(&auths, &entry.path);
            listed.push(Listed {
                record: Record {
                    credential: CredentialId {
                        kind: CredentialKind::Token,
                        mount: String::new(),
                        id: accessor,
                        secret_id_accessor: None,
                    },
                    auth_type,
                    token_path: entry.path,
                    display_name: entry.display_name,
                    policies: entry.policies,
                    first_seen: 0,
                    last_seen: 0,
                    requests: 0,
                    addresses: Bounded::default(),
                    user_agents: Bounded::default(),
                    cert_fingerprints: Bounded::default(),
                    evicted: Evicted::default(),
                },
                used: false,
                auth_method,
                created_time: Some(entry.created_time),
                expire_time: entry.expire_time,
            });
        }
        drop(auths);
        for (path, revision) in stale {
            let txn = custos_storage::Transaction::new()
                .require_revision(path.clone(), revision)
                .delete(path);
            match unsealed.barrier.commit(txn).await {
                Ok(_) | Err(EngineError::Conflict) => {}
                // Housekeeping: the answer is right without it, and the next read tries again.
                Err(error) => {
                    tracing::warn!(error = %error, "deleting the inventory record of a revoked token failed");
                }
            }
        }
        Ok(listed)
    }

    /// Every token that still authenticates, by accessor.
    async fn live_tokens(
        &self,
        unsealed: &Unsealed,
        now: i64,
    ) -> Result<HashMap<String, TokenEntry>, EngineError> {
        let mut live = HashMap::new();
        let mut pages = unsealed.barrier.pages(crate::token::TOKEN_PREFIX, PAGE);
        while let Some(keys) = pages.next_page().await? {
            for key in &keys {
                let Some(hash) = key.strip_prefix(crate::token::TOKEN_PREFIX) else {
                    continue;
                };
                let Some((entry, _)) = self.load_token(unsealed, hash).await? else {
                    continue;
                };
                if entry.revoking.is_none() && !entry.is_expired(now) && !entry.accessor.is_empty()
                {
                    live.insert(entry.accessor.clone(), entry);
                }
            }
        }
        Ok(live)
    }
}
