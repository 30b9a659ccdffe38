//! `POST <mount>/verify`: the hot path. A key is checked against the in-memory index only:
//! checksum, keyed hash, one shard lookup, then the key's own counters under the key's own
//! lock. Nothing is written to storage here; usage and analytics are written behind
//! (`usage.rs`).

use std::sync::Arc;

use custos_core::ApiKeyError;
use custos_core::permission::Query;
use serde_json::{Map, Value};

use super::model::{self, invalid, time_json};
use super::state::{Code, Compiled, Entry, Index, count, hour_of};
use crate::EngineError;

/// Longer strings cannot be a key of ours, nor a sensible imported one.
const MAX_KEY_LEN: usize = 512;

/// A parsed verification request.
pub(crate) struct VerifyRequest {
    pub(crate) key: String,
    pub(crate) query: Option<Query>,
    pub(crate) cost: u64,
    /// Which of the key's limits apply, with their own cost (`None`: all, at `cost`).
    pub(crate) ratelimits: Option<Vec<(String, Option<u64>)>>,
    pub(crate) keyring: Option<String>,
}

impl VerifyRequest {
    pub(crate) fn parse(data: Option<&Map<String, Value>>) -> Result<VerifyRequest, EngineError> {
        let empty = Map::new();
        let data = data.unwrap_or(&empty);
        model::reject_unknown(
            data,
            &["key", "permissions", "cost", "ratelimits", "keyring"],
        )?;
        let key = match data.get("key") {
            Some(Value::String(key)) if !key.is_empty() => key.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(invalid("key is missing"));
            }
            Some(_) => return Err(invalid("key must be a string")),
        };
        let query = match data.get("permissions") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let query = query_from_json(value, 0)?;
                query
                    .check()
                    .map_err(|error| invalid(format!("permissions: {error}")))?;
                Some(query)
            }
        };
        let cost = model::unsigned(data, "cost")?.unwrap_or(1);
        let ratelimits = match data.get("ratelimits") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                if items.len() > model::MAX_RATELIMITS {
                    return Err(invalid(format!(
                        "ratelimits lists more than {} limits",
                        model::MAX_RATELIMITS
                    )));
                }
                let mut limits = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let (name, cost) = match item {
                        Value::String(name) => (name.clone(), None),
                        Value::Object(item) => (
                            model::text(item, "name")?.ok_or_else(|| {
                                invalid(format!("ratelimits[{index}].name is missing"))
                            })?,
                            model::unsigned(item, "cost")?,
                        ),
                        _ => {
                            return Err(invalid(format!(
                                "ratelimits[{index}] must be a name or {{name, cost}}"
                            )));
                        }
                    };
                    limits.push((name, cost));
                }
                Some(limits)
            }
            Some(_) => return Err(invalid("ratelimits must be a list")),
        };
        let keyring = model::text(data, "keyring")?;
        Ok(VerifyRequest {
            key,
            query,
            cost,
            ratelimits,
            keyring,
        })
    }
}

/// The JSON form of a permission query: a string (itself in the string form), or
/// `{"and": [...]}` / `{"or": [...]}`.
fn query_from_json(value: &Value, depth: usize) -> Result<Query, EngineError> {
    if depth > custos_core::permission::MAX_QUERY_DEPTH {
        return Err(invalid("permissions: the query is nested too deeply"));
    }
    match value {
        Value::String(text) => {
            Query::parse(text).map_err(|error| invalid(format!("permissions: {error}")))
        }
        Value::Object(map) if map.len() == 1 => {
            let (operator, operands) = map
                .iter()
                .next()
                .ok_or_else(|| invalid("permissions: empty object"))?;
            let operands = operands
                .as_array()
                .ok_or_else(|| invalid(format!("permissions: {operator:?} takes a list")))?;
            if operands.len() > custos_core::permission::MAX_QUERY_TERMS {
                return Err(invalid("permissions: the query has too many terms"));
            }
            let operands = operands
                .iter()
                .map(|operand| query_from_json(operand, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            match operator.to_ascii_lowercase().as_str() {
                "and" => Ok(Query::And(operands)),
                "or" => Ok(Query::Or(operands)),
                _ => Err(invalid(format!(
                    "permissions: unknown operator {operator:?} (use \"and\" or \"or\")"
                ))),
            }
        }
        _ => Err(invalid(
            "permissions must be a query string or {\"and\": [...]} / {\"or\": [...]}",
        )),
    }
}

/// The rate limit an answer reports.
pub(crate) struct LimitReport {
    pub(crate) name: String,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset_ms: u64,
}

/// What a verification found.
pub(crate) struct Verdict {
    pub(crate) code: Code,
    pub(crate) compiled: Option<Arc<Compiled>>,
    pub(crate) remaining: Option<i64>,
    pub(crate) ratelimit: Option<LimitReport>,
}

impl Verdict {
    fn not_found() -> Verdict {
        Verdict {
            code: Code::NotFound,
            compiled: None,
            remaining: None,
            ratelimit: None,
        }
    }
}

/// What the key string says before any lookup.
pub(crate) enum Lookup {
    /// Not a key of ours at all, or one whose checksum fails: nothing to look up.
    Nothing,
    /// Our format: look its HMAC up (and its SHA-256 among imported keys, if any).
    Ours([u8; 32]),
    /// Another format: only imported keys can match.
    Foreign,
}

pub(crate) fn classify(index: &Index, key: &str) -> Lookup {
    if key.len() > MAX_KEY_LEN {
        return Lookup::Nothing;
    }
    match custos_core::ApiKey::check(key) {
        Ok(_) => Lookup::Ours(index.hasher.sign(key.as_bytes())),
        // Our shape with a wrong checksum: a typo or a made-up key; no lookup at all.
        Err(ApiKeyError::BadChecksum) => Lookup::Nothing,
        Err(_) => Lookup::Foreign,
    }
}

/// SHA-256 of a key, for imported keys.
pub(crate) fn sha256(key: &str) -> [u8; 32] {
    custos_crypto::sha256(key.as_bytes())
}

/// Finds the key's entry in the index.
pub(crate) fn find(index: &Index, key: &str) -> Option<Arc<Entry>> {
    let found = match classify(index, key) {
        Lookup::Nothing => return None,
        Lookup::Ours(hash) => index.find(&hash),
        Lookup::Foreign => None,
    };
    found.or_else(|| {
        if index.has_imported() {
            index.find_imported(&sha256(key))
        } else {
            None
        }
    })
}

/// Checks one key at `now_ms` and spends what the request costs when it is valid.
pub(crate) fn check(
    index: &Index,
    entry: Option<&Arc<Entry>>,
    request: &VerifyRequest,
    now_ms: i64,
) -> Verdict {
    let now = now_ms.div_euclid(1000);
    let Some(entry) = entry else {
        index.count_unattributed(request.keyring.as_deref().unwrap_or(""), &request.key, now);
        return Verdict::not_found();
    };
    let mut live = entry.lock();
    let compiled = live.compiled.clone();
    let record = &compiled.record;
    let wrong_ring = request
        .keyring
        .as_deref()
        .is_some_and(|ring| ring != record.keyring);
    if live.removed || wrong_ring {
        drop(live);
        index.count_unattributed(request.keyring.as_deref().unwrap_or(""), &request.key, now);
        return Verdict::not_found();
    }
    let mut ratelimit = None;
    let code = if !record.enabled {
        Code::Disabled
    } else if record.expires_at.is_some_and(|at| at <= now)
        || record.grace_until.is_some_and(|at| at <= now)
    {
        Code::Expired
    } else if request
        .query
        .as_ref()
        .is_some_and(|query| !query.evaluate(&compiled.grants))
    {
        Code::InsufficientPermissions
    } else {
        refill(&mut live, now);
        if live
            .remaining
            .is_some_and(|left| left < i64::try_from(request.cost).unwrap_or(i64::MAX))
        {
            Code::UsageExceeded
        } else {
            let (allowed, report) = take_limits(&mut live, request, now_ms);
            ratelimit = report;
            if allowed {
                if let Some(left) = live.remaining.as_mut() {
                    *left -= i64::try_from(request.cost).unwrap_or(i64::MAX);
                    live.unflushed = live.unflushed.saturating_add(request.cost);
                }
                Code::Valid
            } else {
                Code::RateLimited
            }
        }
    };
    count(&mut live.counts, hour_of(now), code);
    live.last_used_at = Some(now);
    live.used = true;
    let remaining = live.remaining;
    drop(live);
    index.mark_dirty(entry);
    Verdict {
        code,
        compiled: Some(compiled),
        remaining,
        ratelimit,
    }
}

/// Gives a key its uses back when a refill boundary passed since the last one.
fn refill(live: &mut super::state::Live, now: i64) {
    let Some(refill) = live.compiled.record.refill.clone() else {
        return;
    };
    if live.remaining.is_none() {
        return;
    }
    let interval = refill.interval();
    if !custos_core::refill::refill_due(interval, live.last_refill_at, now) {
        return;
    }
    // The latest boundary at or before now (searched from at most ~40 days back).
    let mut boundary =
        custos_core::refill::next_refill(interval, live.last_refill_at.max(now - 40 * 86_400));
    loop {
        let next = custos_core::refill::next_refill(interval, boundary);
        if next > now {
            break;
        }
        boundary = next;
    }
    live.remaining = Some(i64::try_from(refill.amount).unwrap_or(i64::MAX));
    live.last_refill_at = boundary;
    live.refilled = true;
    live.unflushed = 0;
}

/// Takes the request's tokens from every applicable limit, all or none. Reports the limit
/// that refused, or else the one with the fewest tokens left.
fn take_limits(
    live: &mut super::state::Live,
    request: &VerifyRequest,
    now_ms: i64,
) -> (bool, Option<LimitReport>) {
    let limits = &live.compiled.record.ratelimits;
    if limits.is_empty() {
        return (true, None);
    }
    let now_ms = u64::try_from(now_ms).unwrap_or(0);
    let mut windows = live.windows.clone();
    let mut report: Option<LimitReport> = None;
    let mut allowed = true;
    for (position, limit) in limits.iter().enumerate() {
        let cost = match &request.ratelimits {
            None => request.cost,
            Some(named) => match named.iter().find(|(name, _)| *name == limit.name) {
                Some((_, cost)) => cost.unwrap_or(request.cost),
                None => continue,
            },
        };
        let Some(window) = windows.get_mut(position) else {
            continue;
        };
        let outcome = window.take(now_ms, limit.limit, limit.duration_ms, cost);
        let this = LimitReport {
            name: limit.name.clone(),
            limit: limit.limit,
            remaining: outcome.remaining,
            reset_ms: outcome.reset_ms,
        };
        if !outcome.allowed {
            allowed = false;
            report = Some(this);
            break;
        }
        if report
            .as_ref()
            .is_none_or(|best| this.remaining < best.remaining)
        {
            report = Some(this);
        }
    }
    if allowed {
        live.windows = windows;
    }
    (allowed, report)
}

/// The answer's fields, in the order of their names (as a JSON object of the generic path
/// prints them), borrowed from the verdict.
#[derive(serde::Serialize)]
struct Answer<'a> {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimit: Option<Limit<'a>>,
    /// `null` (unlimited) is written, so it is an option of an option.
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [String]>,
    valid: bool,
}

#[derive(serde::Serialize)]
struct Limit<'a> {
    limit: u64,
    name: &'a str,
    remaining: u64,
    reset: Value,
}

/// The answer as the JSON bytes of an object: `{valid, code, ...}`; for `NOT_FOUND` only those
/// two. Nothing in it is the key.
pub(crate) fn answer_json(verdict: &Verdict) -> Vec<u8> {
    let mut answer = Answer {
        code: verdict.code.as_str(),
        enabled: None,
        environment: None,
        expires_at: None,
        key_id: None,
        keyring: None,
        meta: None,
        name: None,
        owner_id: None,
        permissions: None,
        ratelimit: None,
        remaining: None,
        roles: None,
        valid: verdict.code == Code::Valid,
    };
    if let Some(compiled) = &verdict.compiled {
        let record = &compiled.record;
        answer.enabled = Some(record.enabled);
        answer.environment = Some(&record.environment);
        answer.expires_at = Some(record.expires_at.map_or(Value::Null, time_json));
        answer.key_id = Some(&record.id);
        answer.keyring = Some(&record.keyring);
        answer.meta = Some(&record.meta);
        answer.name = Some(&record.name);
        answer.owner_id = Some(&record.owner_id);
        answer.permissions = Some(&record.permissions);
        answer.remaining = Some(verdict.remaining);
        answer.roles = Some(&record.roles);
        answer.ratelimit = verdict.ratelimit.as_ref().map(|limit| Limit {
            limit: limit.limit,
            name: &limit.name,
            remaining: limit.remaining,
            reset: i64::try_from(limit.reset_ms)
                .ok()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map_or(Value::Null, |time| Value::String(time.to_string())),
        });
    }
    // Serialising borrowed strings, numbers and a JSON object cannot fail.
    serde_json::to_vec(&answer)
        .unwrap_or_else(|_| br#"{"valid":false,"code":"NOT_FOUND"}"#.to_vec())
}

/// The answer as a JSON object, for the generic request path (and its audit record).
pub(crate) fn answer(verdict: &Verdict) -> Map<String, Value> {
    serde_json::from_slice(&answer_json(verdict)).unwrap_or_default()
}
