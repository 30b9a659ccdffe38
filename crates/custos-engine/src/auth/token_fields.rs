//! The `token_*` fields every auth method's role carries (Vault's "tokenutil"): how they are
//! parsed from a request, rendered in a role read, and turned into a [`TokenGrant`].

use custos_core::Cidr;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::kv::{parse_bool, parse_duration_seconds, parse_int};
use crate::{EngineError, TokenGrant};

/// Token types a role may ask for. Login grants issue service tokens; batch tokens are refused
/// when the role is written rather than silently issued as service tokens.
const TOKEN_TYPES: [&str; 3] = ["default", "service", "default-service"];

/// The token settings of a role, as stored. Absent fields decode to their defaults; the
/// `token_*` aliases read the flat shape userpass stored before it shared these fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TokenFields {
    #[serde(alias = "token_policies")]
    pub(crate) policies: Vec<String>,
    /// Canonical CIDR blocks (`10.0.0.0/8`), parsed when written.
    #[serde(alias = "token_bound_cidrs")]
    pub(crate) bound_cidrs: Vec<String>,
    #[serde(alias = "token_ttl")]
    pub(crate) ttl: u64,
    #[serde(alias = "token_max_ttl")]
    pub(crate) max_ttl: u64,
    #[serde(alias = "token_explicit_max_ttl")]
    pub(crate) explicit_max_ttl: u64,
    #[serde(alias = "token_period")]
    pub(crate) period: u64,
    #[serde(alias = "token_num_uses")]
    pub(crate) num_uses: u64,
    #[serde(alias = "token_no_default_policy")]
    pub(crate) no_default_policy: bool,
    pub(crate) token_type: String,
}

impl Default for TokenFields {
    fn default() -> Self {
        TokenFields {
            policies: Vec::new(),
            bound_cidrs: Vec::new(),
            ttl: 0,
            max_ttl: 0,
            explicit_max_ttl: 0,
            period: 0,
            num_uses: 0,
            no_default_policy: false,
            token_type: "default".into(),
        }
    }
}

impl TokenFields {
    /// Applies the `token_*` fields present in `data` (and the legacy `policies` and `period`
    /// aliases), leaving absent ones as they are. Nothing is changed when a field is invalid.
    pub(crate) fn update(&mut self, data: &Map<String, Value>) -> Result<(), EngineError> {
        let mut next = self.clone();
        if let Some(value) = data.get("token_policies").or_else(|| data.get("policies")) {
            next.policies = policy_list("token_policies", value)?;
        }
        if let Some(value) = data.get("token_bound_cidrs") {
            next.bound_cidrs = cidr_list("token_bound_cidrs", value)?
                .iter()
                .map(Cidr::to_string)
                .collect();
        }
        if let Some(value) = data.get("token_ttl") {
            next.ttl = seconds("token_ttl", value)?;
        }
        if let Some(value) = data.get("token_max_ttl") {
            next.max_ttl = seconds("token_max_ttl", value)?;
        }
        if let Some(value) = data.get("token_explicit_max_ttl") {
            next.explicit_max_ttl = seconds("token_explicit_max_ttl", value)?;
        }
        if let Some(value) = data.get("token_period").or_else(|| data.get("period")) {
            next.period = seconds("token_period", value)?;
        }
        if let Some(value) = data.get("token_num_uses") {
            next.num_uses = count("token_num_uses", value)?;
        }
        if let Some(value) = data.get("token_no_default_policy") {
            next.no_default_policy = parse_bool("token_no_default_policy", value)?;
        }
        if let Some(value) = data.get("token_type") {
            let Value::String(token_type) = value else {
                return Err(EngineError::InvalidRequest(format!(
                    "invalid 'token_type' value {value}"
                )));
            };
            let token_type = token_type.trim().to_ascii_lowercase();
            let token_type = if token_type.is_empty() {
                "default".to_owned()
            } else {
                token_type
            };
            if token_type == "batch" || token_type == "default-batch" {
                return Err(EngineError::InvalidRequest(format!(
                    "token_type {token_type:?} is not supported: logins issue service tokens"
                )));
            }
            if !TOKEN_TYPES.contains(&token_type.as_str()) {
                return Err(EngineError::InvalidRequest(format!(
                    "invalid 'token_type' value {token_type:?}"
                )));
            }
            next.token_type = token_type;
        }
        if let Some(value) = data.get("token_strictly_bind_ip")
            && parse_bool("token_strictly_bind_ip", value)?
        {
            return Err(EngineError::InvalidRequest(
                "token_strictly_bind_ip is not supported; use token_bound_cidrs".into(),
            ));
        }
        if next.max_ttl > 0 && next.ttl > next.max_ttl {
            return Err(EngineError::InvalidRequest(
                "'token_ttl' cannot be greater than 'token_max_ttl'".into(),
            ));
        }
        *self = next;
        Ok(())
    }

    /// Adds the fields to a role read, shaped as Vault renders them.
    pub(crate) fn render(&self, out: &mut Map<String, Value>) {
        out.insert("token_policies".into(), strings(&self.policies));
        out.insert("token_bound_cidrs".into(), strings(&self.bound_cidrs));
        out.insert("token_ttl".into(), self.ttl.into());
        out.insert("token_max_ttl".into(), self.max_ttl.into());
        out.insert(
            "token_explicit_max_ttl".into(),
            self.explicit_max_ttl.into(),
        );
        out.insert("token_period".into(), self.period.into());
        out.insert("token_num_uses".into(), self.num_uses.into());
        out.insert(
            "token_no_default_policy".into(),
            self.no_default_policy.into(),
        );
        out.insert("token_strictly_bind_ip".into(), false.into());
        out.insert("token_type".into(), self.token_type.clone().into());
    }

    /// The token a login with these settings asks for.
    pub(crate) fn grant(&self, display_name: String) -> Result<TokenGrant, EngineError> {
        Ok(TokenGrant {
            policies: self.policies.clone(),
            no_default_policy: self.no_default_policy,
            display_name,
            ttl: self.ttl,
            max_ttl: self.max_ttl,
            period: self.period,
            explicit_max_ttl: self.explicit_max_ttl,
            num_uses: self.num_uses,
            renewable: true,
            bound_cidrs: stored_cidrs(&self.bound_cidrs)?,
            ..TokenGrant::default()
        })
    }
}

/// The start of a login token's display name, from the auth mount's path as Vault builds it:
/// `auth/approle/` gives `approle`, `auth/team/cert/` gives `team-cert`.
pub(crate) fn display_prefix(mount_path: &str) -> String {
    let path = mount_path.strip_prefix("auth/").unwrap_or(mount_path);
    path.trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A JSON array of strings.
pub(crate) fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

/// Parses a field Vault types as `TypeCommaStringSlice`: a JSON array of strings (or numbers),
/// or one comma-separated string. Entries are trimmed; empty ones are dropped.
pub(crate) fn string_list(field: &str, value: &Value) -> Result<Vec<String>, EngineError> {
    let invalid = || {
        EngineError::InvalidRequest(format!(
            "error converting input {value} for field {field:?}: expected a list of strings or a comma-separated string"
        ))
    };
    let items: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::String(text) => text.split(',').map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid()),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// Policy names: a string list, lower-cased, sorted, without duplicates.
pub(crate) fn policy_list(field: &str, value: &Value) -> Result<Vec<String>, EngineError> {
    let mut policies: Vec<String> = string_list(field, value)?
        .into_iter()
        .map(|policy| policy.to_lowercase())
        .collect();
    policies.sort();
    policies.dedup();
    Ok(policies)
}

/// CIDR blocks (or bare addresses) from a string list.
pub(crate) fn cidr_list(field: &str, value: &Value) -> Result<Vec<Cidr>, EngineError> {
    string_list(field, value)?
        .iter()
        .map(|block| {
            // The parse error names the block: "invalid CIDR block \"10.0.0.0/99\"".
            block
                .parse::<Cidr>()
                .map_err(|error| EngineError::InvalidRequest(format!("{error} in {field}")))
        })
        .collect()
}

/// Blocks that were validated when written; one that no longer parses is corrupt data.
pub(crate) fn stored_cidrs(blocks: &[String]) -> Result<Vec<Cidr>, EngineError> {
    blocks
        .iter()
        .map(|block| {
            block
                .parse::<Cidr>()
                .map_err(|error| EngineError::Internal(format!("stored CIDR block: {error}")))
        })
        .collect()
}

/// Whether every block of `inner` lies inside some block of `outer` (an empty `outer` holds
/// everything).
pub(crate) fn cidrs_within(inner: &[Cidr], outer: &[Cidr]) -> bool {
    outer.is_empty()
        || inner.iter().all(|block| {
            outer
                .iter()
                .any(|bound| bound.prefix() <= block.prefix() && bound.contains(block.network()))
        })
}

/// A duration in whole seconds that may not be negative.
pub(crate) fn seconds(field: &str, value: &Value) -> Result<u64, EngineError> {
    let seconds = parse_duration_seconds(field, value)?;
    u64::try_from(seconds)
        .map_err(|_| EngineError::InvalidRequest(format!("{field} cannot be negative")))
}

/// A count that may not be negative.
pub(crate) fn count(field: &str, value: &Value) -> Result<u64, EngineError> {
    let number = parse_int(field, value)?;
    u64::try_from(number)
        .map_err(|_| EngineError::InvalidRequest(format!("{field} cannot be negative")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn fields_parse_with_vault_types_and_aliases() {
        let mut fields = TokenFields::default();
        fields
            .update(&object(json!({
                "policies": "B, a,,a",
                "token_bound_cidrs": ["10.0.0.1/8", "192.168.1.7"],
                "token_ttl": "1h",
                "token_max_ttl": 7200,
                "period": "30m",
                "token_num_uses": "3",
                "token_no_default_policy": "true",
                "token_type": "service",
            })))
            .expect("valid fields");
        assert_eq!(fields.policies, ["a", "b"]);
        assert_eq!(fields.bound_cidrs, ["10.0.0.0/8", "192.168.1.7/32"]);
        assert_eq!(
            (fields.ttl, fields.max_ttl, fields.period),
            (3600, 7200, 1800)
        );
        assert_eq!(fields.num_uses, 3);
        assert!(fields.no_default_policy);
        let grant = fields.grant("approle".into()).expect("grant");
        assert_eq!(grant.bound_cidrs.len(), 2);
        assert!(grant.renewable);
        assert_eq!(grant.display_name, "approle");
    }

    #[test]
    fn bad_fields_are_refused_and_change_nothing() {
        let mut fields = TokenFields::default();
        for bad in [
            json!({"token_ttl": "soon"}),
            json!({"token_ttl": -5}),
            json!({"token_num_uses": -1}),
            json!({"token_bound_cidrs": "1.2.3.4/33"}),
            json!({"token_policies": {"a": 1}}),
            json!({"token_type": "weird"}),
            json!({"token_type": "batch"}),
            json!({"token_ttl": "2h", "token_max_ttl": "1h"}),
            json!({"token_strictly_bind_ip": true}),
        ] {
            let result = fields.update(&object(bad.clone()));
            assert!(
                matches!(result, Err(EngineError::InvalidRequest(_))),
                "{bad} should be refused"
            );
            assert_eq!(fields, TokenFields::default(), "{bad} changed the fields");
        }
    }

    #[test]
    fn display_names_start_with_the_mount_path() {
        assert_eq!(display_prefix("auth/approle/"), "approle");
        assert_eq!(display_prefix("auth/team/cert/"), "team-cert");
        assert_eq!(display_prefix("cert/"), "cert");
    }

    #[test]
    fn cidr_subsets() {
        let outer = vec!["10.0.0.0/8".parse::<Cidr>().expect("cidr")];
        let inside = vec!["10.1.0.0/16".parse::<Cidr>().expect("cidr")];
        let wider = vec!["0.0.0.0/0".parse::<Cidr>().expect("cidr")];
        let elsewhere = vec!["192.168.0.1".parse::<Cidr>().expect("cidr")];
        assert!(cidrs_within(&inside, &outer));
        assert!(!cidrs_within(&wider, &outer));
        assert!(!cidrs_within(&elsewhere, &outer));
        assert!(cidrs_within(&elsewhere, &[]));
    }
}
