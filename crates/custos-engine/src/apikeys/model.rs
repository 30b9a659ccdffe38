//! What the API-key engine stores, and how request fields become stored values.
//!
//! Everything lives in the mount's own storage (`logical/<uuid>/`):
//!
//! | key | value |
//! | --- | --- |
//! | `hmac-key` | the 32-byte key of the keyed hash every API key is stored as |
//! | `config` | [`Config`] |
//! | `keyrings/<name>` | [`Keyring`] |
//! | `keys/<key_id>` | [`KeyRecord`]: the key's attributes, its hash and hint, never the key |
//! | `hashes/<hash>` | the key id a hash belongs to: makes a hash unique, finds a key without the index |
//! | `usage/<key_id>` | [`UsageRecord`]: uses left, last refill, last use; written behind, in batches |
//! | `analytics/<ring>/<hour>` | verification counts per key and outcome for one hour |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EngineError;

pub(crate) const HMAC_KEY: &str = "hmac-key";
pub(crate) const CONFIG_KEY: &str = "config";
pub(crate) const KEYRINGS: &str = "keyrings/";
pub(crate) const KEYS: &str = "keys/";
pub(crate) const HASHES: &str = "hashes/";
pub(crate) const USAGE: &str = "usage/";
pub(crate) const ANALYTICS: &str = "analytics/";

/// The most rate limits one key may carry.
pub(crate) const MAX_RATELIMITS: usize = 16;
/// The most permissions or roles one key or keyring lists.
pub(crate) const MAX_PERMISSIONS: usize = 1000;
/// The most roles a keyring defines.
pub(crate) const MAX_ROLES: usize = 256;
/// The largest `meta` object, encoded.
pub(crate) const MAX_META_BYTES: usize = 16 * 1024;
/// The longest name, owner id, environment or description.
pub(crate) const MAX_TEXT: usize = 1024;

/// One rate limit: at most `limit` tokens per sliding window of `duration_ms`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) name: String,
    pub(crate) limit: u64,
    pub(crate) duration_ms: u64,
}

impl RateLimit {
    pub(crate) fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "limit": self.limit,
            "duration": format_duration_ms(self.duration_ms),
        })
    }
}

/// Uses given back to a key: `amount` every day, or every month on `day`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Refill {
    pub(crate) amount: u64,
    /// `daily` or `monthly`.
    pub(crate) interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) day: Option<u8>,
}

impl Refill {
    pub(crate) fn interval(&self) -> custos_core::refill::Interval {
        match (self.interval.as_str(), self.day) {
            ("monthly", Some(day)) => custos_core::refill::Interval::monthly(day)
                .unwrap_or(custos_core::refill::Interval::Daily),
            _ => custos_core::refill::Interval::Daily,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut out = serde_json::json!({"amount": self.amount, "interval": self.interval});
        if let (Some(day), Some(map)) = (self.day, out.as_object_mut()) {
            map.insert("day".into(), day.into());
        }
        out
    }
}

/// A keyring (Unkey's "API"): the prefix of its keys and the defaults new keys take.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Keyring {
    pub(crate) name: String,
    pub(crate) prefix: String,
    #[serde(default)]
    pub(crate) description: String,
    /// Permissions new keys get when the request names none.
    #[serde(default)]
    pub(crate) permissions: Vec<String>,
    /// Named permission sets keys may hold.
    #[serde(default)]
    pub(crate) roles: BTreeMap<String, Vec<String>>,
    /// Rate limits new keys get when the request names none.
    #[serde(default)]
    pub(crate) ratelimits: Vec<RateLimit>,
    /// Seconds after creation new keys expire (0: never).
    #[serde(default)]
    pub(crate) default_ttl: u64,
    #[serde(default)]
    pub(crate) environment: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl Keyring {
    pub(crate) fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        out.insert("prefix".into(), self.prefix.clone().into());
        out.insert("description".into(), self.description.clone().into());
        out.insert("permissions".into(), serde_json::json!(self.permissions));
        out.insert("roles".into(), serde_json::json!(self.roles));
        out.insert(
            "ratelimits".into(),
            Value::Array(self.ratelimits.iter().map(RateLimit::to_json).collect()),
        );
        out.insert("default_ttl".into(), self.default_ttl.into());
        out.insert("environment".into(), self.environment.clone().into());
        out.insert("created_at".into(), time_json(self.created_at));
        out.insert("updated_at".into(), time_json(self.updated_at));
        out
    }
}

/// How a key's hash was made.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HashKind {
    /// HMAC-SHA256 under the mount's key: every key custos generated.
    Hmac,
    /// Plain SHA-256: a key imported from another system by its hash.
    Sha256,
}

/// One API key as stored: its attributes and its hash, never the key itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct KeyRecord {
    pub(crate) id: String,
    pub(crate) keyring: String,
    /// Hex of the hash.
    pub(crate) hash: String,
    pub(crate) hash_kind: HashKind,
    /// The prefix and the last four characters (`acme_live_…Xy3f`); empty for imported hashes.
    #[serde(default)]
    pub(crate) hint: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) owner_id: String,
    #[serde(default)]
    pub(crate) meta: Map<String, Value>,
    #[serde(default)]
    pub(crate) permissions: Vec<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) expires_at: Option<i64>,
    /// Uses left as last set by a create or update (`None`: unlimited); what is left now is
    /// in the usage record of the same `remaining_epoch`.
    #[serde(default)]
    pub(crate) remaining: Option<i64>,
    /// Bumped whenever `remaining` is set, so usage counted against an older setting is ignored.
    #[serde(default)]
    pub(crate) remaining_epoch: u64,
    #[serde(default)]
    pub(crate) refill: Option<Refill>,
    #[serde(default)]
    pub(crate) ratelimits: Vec<RateLimit>,
    pub(crate) enabled: bool,
    #[serde(default)]
    pub(crate) environment: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// Set on a key that was rerolled: it stops working at this time.
    #[serde(default)]
    pub(crate) grace_until: Option<i64>,
    /// The key that replaced this one.
    #[serde(default)]
    pub(crate) rerolled_to: Option<String>,
}

impl KeyRecord {
    /// The attributes a client sees (never the hash).
    pub(crate) fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("key_id".into(), self.id.clone().into());
        out.insert("keyring".into(), self.keyring.clone().into());
        out.insert("hint".into(), self.hint.clone().into());
        out.insert("name".into(), self.name.clone().into());
        out.insert("owner_id".into(), self.owner_id.clone().into());
        out.insert("meta".into(), Value::Object(self.meta.clone()));
        out.insert("permissions".into(), serde_json::json!(self.permissions));
        out.insert("roles".into(), serde_json::json!(self.roles));
        out.insert(
            "expires_at".into(),
            self.expires_at.map_or(Value::Null, time_json),
        );
        out.insert("remaining".into(), serde_json::json!(self.remaining));
        out.insert(
            "refill".into(),
            self.refill.as_ref().map_or(Value::Null, Refill::to_json),
        );
        out.insert(
            "ratelimits".into(),
            Value::Array(self.ratelimits.iter().map(RateLimit::to_json).collect()),
        );
        out.insert("enabled".into(), self.enabled.into());
        out.insert("environment".into(), self.environment.clone().into());
        out.insert(
            "imported".into(),
            (self.hash_kind == HashKind::Sha256).into(),
        );
        out.insert("created_at".into(), time_json(self.created_at));
        out.insert("updated_at".into(), time_json(self.updated_at));
        if let Some(grace_until) = self.grace_until {
            out.insert("grace_until".into(), time_json(grace_until));
        }
        if let Some(next) = &self.rerolled_to {
            out.insert("rerolled_to".into(), next.clone().into());
        }
        out
    }

    /// The storage key of the hash pointer.
    pub(crate) fn hash_key(&self) -> String {
        hash_key(self.hash_kind, &self.hash)
    }
}

/// `hashes/<hex>` for custos keys, `hashes/sha256-<hex>` for imported ones.
pub(crate) fn hash_key(kind: HashKind, hex: &str) -> String {
    match kind {
        HashKind::Hmac => format!("{HASHES}{hex}"),
        HashKind::Sha256 => format!("{HASHES}sha256-{hex}"),
    }
}

/// The pointer stored at `hashes/<hash>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HashPointer {
    pub(crate) id: String,
}

/// A key's usage, written behind the verifications that spent it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct UsageRecord {
    /// The `remaining_epoch` of the key record this count belongs to.
    #[serde(default)]
    pub(crate) epoch: u64,
    #[serde(default)]
    pub(crate) remaining: Option<i64>,
    /// The refill boundary (unix seconds) last applied.
    #[serde(default)]
    pub(crate) last_refill_at: i64,
    #[serde(default)]
    pub(crate) last_used_at: Option<i64>,
}

/// The engine's settings (`<mount>/config`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Config {
    /// How long hourly analytics are kept, in seconds.
    pub(crate) analytics_retention: u64,
}

/// 90 days.
pub(crate) const DEFAULT_ANALYTICS_RETENTION: u64 = 90 * 24 * 3600;

impl Default for Config {
    fn default() -> Self {
        Config {
            analytics_retention: DEFAULT_ANALYTICS_RETENTION,
        }
    }
}

/// Counts of one hour for one keyring, as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HourRecord {
    /// Key id → outcome code → count. Verifications of no known key are under `""`.
    #[serde(default)]
    pub(crate) keys: BTreeMap<String, BTreeMap<String, u64>>,
}

pub(crate) fn time_json(unix: i64) -> Value {
    jiff::Timestamp::from_second(unix)
        .map(|time| Value::String(time.to_string()))
        .unwrap_or(Value::Null)
}

pub(crate) fn format_duration_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest(message.into())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|error| EngineError::Internal(format!("encoding: {error}")))
}

pub(crate) fn decode<T: for<'a> Deserialize<'a>>(
    bytes: &[u8],
    what: &str,
) -> Result<T, EngineError> {
    serde_json::from_slice(bytes)
        .map_err(|error| EngineError::Internal(format!("stored {what} is corrupt: {error}")))
}

/// Keyring names and role names: 1-128 characters of `[A-Za-z0-9_.-]`, starting with a letter
/// or digit (they are path segments).
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid {what} {name:?}: use 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )))
    }
}

/// A text field: absent → `None`; not a string, or too long → an error.
pub(crate) fn text(data: &Map<String, Value>, name: &str) -> Result<Option<String>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) if value.len() <= MAX_TEXT => Ok(Some(value.clone())),
        Some(Value::String(_)) => Err(invalid(format!("{name} is longer than {MAX_TEXT} bytes"))),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

/// A boolean field (`true`, `"true"`).
pub(crate) fn boolean(data: &Map<String, Value>, name: &str) -> Result<Option<bool>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(Value::String(value)) => match value.as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(invalid(format!("{name} must be a boolean"))),
        },
        Some(_) => Err(invalid(format!("{name} must be a boolean"))),
    }
}

/// A non-negative integer field (`5`, `"5"`).
pub(crate) fn unsigned(data: &Map<String, Value>, name: &str) -> Result<Option<u64>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => unsigned_value(name, value).map(Some),
    }
}

pub(crate) fn unsigned_value(name: &str, value: &Value) -> Result<u64, EngineError> {
    let parsed = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    // Kept within i64 so that every count fits the stored signed fields.
    parsed
        .filter(|number| i64::try_from(*number).is_ok())
        .ok_or_else(|| invalid(format!("{name} must be a non-negative integer")))
}

/// A list of strings (a JSON list, or one comma-separated string as the CLI sends).
pub(crate) fn string_list(
    data: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, EngineError> {
    let list = match data.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(invalid(format!("{name} must be a list of strings"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid(format!("{name} must be a list of strings"))),
    };
    if list.len() > MAX_PERMISSIONS {
        return Err(invalid(format!(
            "{name} lists more than {MAX_PERMISSIONS} entries"
        )));
    }
    Ok(Some(list))
}

/// Permission grants: validated, sorted, without duplicates.
pub(crate) fn grants(
    data: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, EngineError> {
    let Some(list) = string_list(data, name)? else {
        return Ok(None);
    };
    normalize_grants(list).map(Some)
}

pub(crate) fn normalize_grants(list: Vec<String>) -> Result<Vec<String>, EngineError> {
    for grant in &list {
        custos_core::permission::validate_grant(grant)
            .map_err(|error| invalid(format!("invalid permission {grant:?}: {error}")))?;
    }
    let mut list = list;
    list.sort();
    list.dedup();
    Ok(list)
}

/// A time: RFC 3339, or unix seconds (number or digits).
pub(crate) fn time(data: &Map<String, Value>, name: &str) -> Result<Option<i64>, EngineError> {
    let bad = || invalid(format!("{name} must be an RFC 3339 time or unix seconds"));
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => {
            if let Ok(seconds) = text.parse::<i64>() {
                return Ok(Some(seconds));
            }
            text.parse::<jiff::Timestamp>()
                .map(|time| Some(time.as_second()))
                .map_err(|_| bad())
        }
        Some(_) => Err(bad()),
    }
}

/// A duration in seconds: `"1h"`, `"90s"`, `3600`.
pub(crate) fn seconds(data: &Map<String, Value>, name: &str) -> Result<Option<u64>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let seconds = crate::kv::parse_duration_seconds(name, value)?;
            u64::try_from(seconds)
                .map(Some)
                .map_err(|_| invalid(format!("{name} must not be negative")))
        }
    }
}

/// A duration in milliseconds: `"60s"`, `"500ms"`, or a number of seconds.
fn duration_ms(name: &str, value: &Value) -> Result<u64, EngineError> {
    let bad = || {
        invalid(format!(
            "{name} must be a duration such as \"60s\" or a number of seconds"
        ))
    };
    let ms = match value {
        Value::Number(number) => number
            .as_u64()
            .and_then(|seconds| seconds.checked_mul(1000))
            .ok_or_else(bad)?,
        Value::String(text) => {
            if let Ok(seconds) = text.trim().parse::<u64>() {
                seconds.checked_mul(1000).ok_or_else(bad)?
            } else {
                let nanos = crate::kv::parse_go_duration(text).map_err(|_| bad())?;
                u64::try_from(nanos / 1_000_000).map_err(|_| bad())?
            }
        }
        _ => return Err(bad()),
    };
    if ms == 0 {
        return Err(invalid(format!("{name} must be at least 1ms")));
    }
    Ok(ms)
}

/// `ratelimits`: a list of `{name, limit, duration}`.
pub(crate) fn ratelimits(
    data: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<RateLimit>>, EngineError> {
    let items = match data.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(format!(
                "{name} must be a list of {{name, limit, duration}}"
            )));
        }
    };
    if items.len() > MAX_RATELIMITS {
        return Err(invalid(format!(
            "{name} lists more than {MAX_RATELIMITS} limits"
        )));
    }
    let mut limits: Vec<RateLimit> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let item = item
            .as_object()
            .ok_or_else(|| invalid(format!("{name}[{index}] must be an object")))?;
        let limit_name = text(item, "name")?.unwrap_or_else(|| "default".into());
        validate_name("rate limit name", &limit_name)?;
        if limits.iter().any(|other| other.name == limit_name) {
            return Err(invalid(format!(
                "{name} names the limit {limit_name:?} twice"
            )));
        }
        let limit = unsigned(item, "limit")?
            .ok_or_else(|| invalid(format!("{name}[{index}].limit is missing")))?;
        let duration = item
            .get("duration")
            .filter(|value| !value.is_null())
            .ok_or_else(|| invalid(format!("{name}[{index}].duration is missing")))?;
        limits.push(RateLimit {
            name: limit_name,
            limit,
            duration_ms: duration_ms(&format!("{name}[{index}].duration"), duration)?,
        });
    }
    Ok(Some(limits))
}

/// `refill`: `{amount, interval: daily|monthly, day}`, or null to remove it.
pub(crate) fn refill(data: &Map<String, Value>) -> Result<Option<Option<Refill>>, EngineError> {
    let item = match data.get("refill") {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(None)),
        Some(Value::Object(item)) => item,
        Some(_) => return Err(invalid("refill must be an object {amount, interval, day}")),
    };
    let amount = unsigned(item, "amount")?.ok_or_else(|| invalid("refill.amount is missing"))?;
    let interval = text(item, "interval")?.unwrap_or_else(|| "daily".into());
    let day = unsigned(item, "day")?;
    let day = match (interval.as_str(), day) {
        ("daily", None) => None,
        ("daily", Some(_)) => return Err(invalid("refill.day applies only to a monthly refill")),
        ("monthly", day) => {
            let day = u8::try_from(day.unwrap_or(1)).unwrap_or(0);
            custos_core::refill::Interval::monthly(day)
                .map_err(|_| invalid("refill.day must be between 1 and 31"))?;
            Some(day)
        }
        _ => return Err(invalid("refill.interval must be \"daily\" or \"monthly\"")),
    };
    Ok(Some(Some(Refill {
        amount,
        interval,
        day,
    })))
}

/// `meta`: a JSON object (or a JSON string holding one), at most [`MAX_META_BYTES`] encoded.
pub(crate) fn meta(data: &Map<String, Value>) -> Result<Option<Map<String, Value>>, EngineError> {
    let meta = match data.get("meta") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(meta)) => meta.clone(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(meta)) => meta,
            _ => return Err(invalid("meta must be a JSON object")),
        },
        Some(_) => return Err(invalid("meta must be a JSON object")),
    };
    if encode(&meta)?.len() > MAX_META_BYTES {
        return Err(invalid(format!(
            "meta is larger than {MAX_META_BYTES} bytes"
        )));
    }
    Ok(Some(meta))
}

/// Refuses fields a request may not carry: a typo must not pass silently.
pub(crate) fn reject_unknown(
    data: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), EngineError> {
    match data.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(invalid(format!(
            "unknown field {key:?}; expected one of: {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}
