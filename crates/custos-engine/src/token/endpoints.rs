//! `auth/token/*`: the token store's endpoints, with Vault's paths, fields and answers.
//!
//! The token store is always mounted at `auth/token/` and cannot be disabled. Authorisation
//! happens before these handlers (the pipeline's ACL policies); what they check themselves is
//! what Vault's token store checks: a child's policies against its parent's, root/sudo for
//! orphans, periodic tokens and chosen ids, and the rules of a token role.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::store::{
    Authenticated, NewToken, ParentRef, Revocation, parse_cidrs, parse_fingerprint, remaining,
    renewed, sanitize_policies,
};
use super::{ROLE_PREFIX, TokenEntry};
use crate::kv::{parse_bool, parse_duration_seconds, parse_int};
use crate::logical::{LogicalResponse, Operation};
use crate::pipeline::{Request, object};
use crate::{Engine, EngineError, Unsealed};

/// The token store's mount.
pub(crate) const MOUNT: &str = "auth/token/";

/// Whether `path` is served by the token store.
pub(crate) fn is_token_store_path(path: &str) -> bool {
    path.starts_with(MOUNT) || path.trim_end_matches('/') == "auth/token"
}

/// Whether the caller has root, or `sudo` on the request's path (as Vault's token store asks
/// its ACL).
fn has_sudo(auth: &Authenticated) -> bool {
    auth.sudo || auth.caller.is_root()
}

/// A token role (`auth/token/roles/<name>`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Role {
    name: String,
    #[serde(default)]
    allowed_policies: Vec<String>,
    #[serde(default)]
    disallowed_policies: Vec<String>,
    #[serde(default)]
    orphan: bool,
    #[serde(default = "yes")]
    renewable: bool,
    #[serde(default)]
    path_suffix: String,
    #[serde(default)]
    token_period: u64,
    #[serde(default)]
    token_explicit_max_ttl: u64,
    #[serde(default)]
    token_bound_cidrs: Vec<String>,
    #[serde(default)]
    token_no_default_policy: bool,
    #[serde(default)]
    token_num_uses: u64,
}

fn yes() -> bool {
    true
}

/// A field of the body (or the query string), `null` counting as absent.
fn field<'a>(data: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    data.get(name).filter(|value| !value.is_null())
}

fn string_field(data: &Map<String, Value>, name: &str) -> Result<Option<String>, EngineError> {
    match field(data, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name} must be a string"
        ))),
    }
}

/// A list of strings given as a JSON array or a comma-separated string (Vault's
/// `TypeCommaStringSlice`).
fn list_field(data: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, EngineError> {
    let invalid = || EngineError::InvalidRequest(format!("{name} must be a list of strings"));
    match field(data, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(
            text.split(',')
                .map(|part| part.trim().to_owned())
                .filter(|part| !part.is_empty())
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                _ => Err(invalid()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

fn bool_field(data: &Map<String, Value>, name: &str) -> Result<Option<bool>, EngineError> {
    field(data, name)
        .map(|value| parse_bool(name, value))
        .transpose()
}

/// A duration in seconds (`"1h"`, `3600`, `"3600"`); negative is refused with Vault's message.
fn seconds_field(data: &Map<String, Value>, name: &str) -> Result<Option<u64>, EngineError> {
    let Some(value) = field(data, name) else {
        return Ok(None);
    };
    let seconds = parse_duration_seconds(name, value)?;
    u64::try_from(seconds)
        .map(Some)
        .map_err(|_| EngineError::InvalidRequest(format!("{name} must be positive")))
}

fn meta_field(data: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>, EngineError> {
    match field(data, "meta") {
        None => Ok(None),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                Value::Number(number) => Ok((key.clone(), number.to_string())),
                Value::Bool(flag) => Ok((key.clone(), flag.to_string())),
                _ => Err(EngineError::InvalidRequest(format!(
                    "meta.{key} must be a string"
                ))),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        Some(_) => Err(EngineError::InvalidRequest(
            "meta must be an object of strings".into(),
        )),
    }
}

/// Vault's display name for created tokens: `token-<name>`, with anything but letters, digits
/// and `-` replaced by `-`.
fn display_name(requested: &str) -> String {
    if requested.is_empty() {
        return "token".into();
    }
    let full: String = format!("token-{requested}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    full.trim_end_matches('-').to_owned()
}

fn check_role_name(name: &str) -> Result<(), EngineError> {
    if name.is_empty() {
        return Err(EngineError::InvalidRequest(
            "role name cannot be empty".into(),
        ));
    }
    if name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(EngineError::InvalidRequest(
            "role names may contain only letters, digits, '-', '_' and '.' (at most 128)".into(),
        ));
    }
    Ok(())
}

fn role_path(name: &str) -> String {
    format!("{ROLE_PREFIX}{name}")
}

/// A token's lookup answer, as Vault's, plus custos's own fields (`leaked`, `leaked_at`,
/// `bound_cidrs`, `bound_cert_fingerprint`, `mfa`). `id` is the token itself when the caller
/// named it (or for the caller's own token), empty otherwise.
pub(crate) fn lookup_data(entry: &TokenEntry, id: &str, now: i64) -> Map<String, Value> {
    let time = |seconds: i64| {
        jiff::Timestamp::from_second(seconds)
            .map(crate::kv::format_time)
            .ok()
    };
    let issue_time = jiff::Timestamp::from_nanosecond(entry.issue_time_nanos)
        .map(crate::kv::format_time)
        .unwrap_or_default();
    let mut data = match json!({
        "accessor": entry.accessor,
        "creation_time": entry.created_time,
        "creation_ttl": entry.ttl,
        "display_name": entry.display_name,
        "entity_id": "",
        "expire_time": entry.expire_time.and_then(time),
        "explicit_max_ttl": entry.explicit_max_ttl,
        "id": id,
        "issue_time": issue_time,
        "meta": entry.meta,
        "num_uses": entry.num_uses,
        "orphan": entry.parent.is_none(),
        "path": if entry.path.is_empty() { "auth/token/root" } else { entry.path.as_str() },
        "policies": entry.policies,
        "renewable": entry.renewable,
        "ttl": remaining(entry, now),
        "type": "service",
        // custos's own: a leak report named this token (a root token is marked, not revoked).
        "leaked": entry.leaked_at.is_some(),
        "leaked_at": entry.leaked_at.and_then(time),
        "bound_cidrs": entry.bound_cidrs,
        "bound_cert_fingerprint": entry.bound_cert_fingerprint,
        "mfa": entry.mfa,
    }) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    if entry.period > 0 {
        data.insert("period".into(), entry.period.into());
    }
    if let Some(role) = &entry.role {
        data.insert("role".into(), role.clone().into());
    }
    if let Some(renewal) = entry.last_renewal_time {
        data.insert("last_renewal_time".into(), renewal.into());
        data.insert("last_renewal".into(), time(renewal).into());
    }
    data
}

fn role_data(role: &Role) -> Map<String, Value> {
    match json!({
        "allowed_entity_aliases": null,
        "allowed_policies": role.allowed_policies,
        "allowed_policies_glob": [],
        "disallowed_policies": role.disallowed_policies,
        "disallowed_policies_glob": [],
        // The deprecated names, which Vault reports as 0 once the `token_` ones are used.
        "explicit_max_ttl": 0,
        "name": role.name,
        "orphan": role.orphan,
        "path_suffix": role.path_suffix,
        "period": 0,
        "renewable": role.renewable,
        "token_explicit_max_ttl": role.token_explicit_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
        "token_period": role.token_period,
        "token_type": "default-service",
    }) {
        Value::Object(mut map) => {
            // Vault shows these only when set.
            if !role.token_bound_cidrs.is_empty() {
                map.insert("token_bound_cidrs".into(), json!(role.token_bound_cidrs));
            }
            if role.token_num_uses > 0 {
                map.insert("token_num_uses".into(), role.token_num_uses.into());
            }
            map
        }
        _ => Map::new(),
    }
}

/// A list as Go's `%q` prints a `[]string` (Vault's error messages use it): `["a" "b"]`.
fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// The data of a request, body and query string together (the body wins).
fn request_data(request: &Request) -> Map<String, Value> {
    let mut data: Map<String, Value> = request
        .query
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    if let Some(body) = &request.data {
        for (key, value) in body {
            data.insert(key.clone(), value.clone());
        }
    }
    data
}

fn is_write(operation: Operation) -> bool {
    matches!(operation, Operation::Create | Operation::Update)
}

impl Engine {
    /// Serves `auth/token/*` for an authenticated (and authorised) caller. `policy_max_ttl` is
    /// the cap the caller's policies put on the TTL of tokens it creates (the ACL's `max_ttl`
    /// condition); `None`: no cap.
    pub(crate) async fn handle_token_store(
        &self,
        unsealed: &Unsealed,
        request: Request,
        auth: &Authenticated,
        policy_max_ttl: Option<u64>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let rest = request
            .path
            .strip_prefix(MOUNT)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let operation = request.operation;
        let data = request_data(&request);
        let own_token = request.token.clone().unwrap_or_default();
        let now = self.now().as_second();
        let not_allowed = || Err(EngineError::MethodNotAllowed);
        match rest.as_str() {
            "create" | "create-orphan" => {
                if !is_write(operation) {
                    return not_allowed();
                }
                let orphan = rest == "create-orphan";
                self.create_endpoint(unsealed, &rest, &data, auth, orphan, None, policy_max_ttl)
                    .await
                    .map(Some)
            }
            "lookup-self" => match operation {
                Operation::Read | Operation::Update => Ok(Some(LogicalResponse::data(
                    lookup_data(&auth.entry, &own_token, now),
                ))),
                _ => not_allowed(),
            },
            "lookup" => {
                if !matches!(operation, Operation::Read | Operation::Update) {
                    return not_allowed();
                }
                let token = string_field(&data, "token")?.unwrap_or_default();
                if token.is_empty() {
                    // Vault answers for the caller's own token when none is named.
                    return Ok(Some(LogicalResponse::data(lookup_data(
                        &auth.entry,
                        &own_token,
                        now,
                    ))));
                }
                // Vault answers "bad token" with 403 for a token it does not know.
                let (_, entry, _) = self
                    .live_token(unsealed, &token)
                    .await?
                    .ok_or(EngineError::PermissionDenied)?;
                Ok(Some(LogicalResponse::data(lookup_data(
                    &entry, &token, now,
                ))))
            }
            "lookup-accessor" => {
                if !matches!(operation, Operation::Read | Operation::Update) {
                    return not_allowed();
                }
                let accessor = string_field(&data, "accessor")?.unwrap_or_default();
                let entry = self.live_by_accessor(unsealed, &accessor).await?;
                Ok(Some(LogicalResponse::data(lookup_data(&entry.1, "", now))))
            }
            "renew-self" | "renew" | "renew-accessor" => {
                if !is_write(operation) {
                    return not_allowed();
                }
                let increment = seconds_field(&data, "increment")?.unwrap_or(0);
                let (hash, token) = match rest.as_str() {
                    "renew-self" => (auth.hash.clone(), own_token.clone()),
                    "renew" => {
                        let token = string_field(&data, "token")?.unwrap_or_default();
                        if token.is_empty() {
                            return Err(EngineError::InvalidRequest("missing token ID".into()));
                        }
                        let (hash, _, _) = self
                            .live_token(unsealed, &token)
                            .await?
                            .ok_or_else(|| EngineError::InvalidRequest("token not found".into()))?;
                        (hash, token)
                    }
                    _ => {
                        let accessor = string_field(&data, "accessor")?.unwrap_or_default();
                        let (hash, _) = self.live_by_accessor(unsealed, &accessor).await?;
                        (hash, String::new())
                    }
                };
                let (entry, warnings) = self.renew_token(unsealed, &hash, increment).await?;
                let mut answer = LogicalResponse::no_content();
                answer.auth = Some(renewed(token, &entry, self.now().as_second()));
                answer.warnings = warnings;
                Ok(Some(answer))
            }
            "revoke-self" | "revoke" | "revoke-accessor" | "revoke-orphan" => {
                if !is_write(operation) {
                    return not_allowed();
                }
                self.revoke_endpoint(unsealed, &rest, &data, auth).await
            }
            "accessors" => {
                if operation != Operation::List {
                    return not_allowed();
                }
                // Vault requires `sudo` as well as `list`: listing every accessor is a
                // denial-of-service lever.
                if !has_sudo(auth) {
                    return Err(EngineError::PermissionDenied);
                }
                Ok(Some(LogicalResponse::list(
                    self.list_accessors(unsealed).await?,
                )))
            }
            "tidy" => {
                if !is_write(operation) {
                    return not_allowed();
                }
                let counts = self.tidy_tokens(unsealed).await?;
                let mut answer = object(json!(counts));
                answer.warnings.push(
                    "Tidy operation finished: expired tokens and interrupted revocations are cleaned up."
                        .into(),
                );
                Ok(Some(answer))
            }
            "roles" => {
                if operation != Operation::List {
                    return not_allowed();
                }
                let page = unsealed.barrier.list(ROLE_PREFIX, None, 0).await?;
                let names = page
                    .keys
                    .iter()
                    .filter_map(|key| key.strip_prefix(ROLE_PREFIX))
                    .map(str::to_owned)
                    .collect();
                Ok(Some(LogicalResponse::list(names)))
            }
            other => {
                if let Some(name) = other.strip_prefix("roles/") {
                    return self.role_endpoint(unsealed, operation, name, &data).await;
                }
                if let Some(role) = other.strip_prefix("create/") {
                    if !is_write(operation) {
                        return not_allowed();
                    }
                    check_role_name(role)?;
                    let Some(role) = self.load_role(unsealed, role).await? else {
                        return Err(EngineError::InvalidRequest(format!("unknown role {role}")));
                    };
                    return self
                        .create_endpoint(
                            unsealed,
                            "create",
                            &data,
                            auth,
                            false,
                            Some(role),
                            policy_max_ttl,
                        )
                        .await
                        .map(Some);
                }
                Ok(None)
            }
        }
    }

    /// A live token by accessor, or Vault's "invalid accessor".
    async fn live_by_accessor(
        &self,
        unsealed: &Unsealed,
        accessor: &str,
    ) -> Result<(String, TokenEntry), EngineError> {
        let invalid = || EngineError::InvalidRequest("invalid accessor".into());
        let hash = self
            .hash_for_accessor(unsealed, accessor)
            .await?
            .ok_or_else(invalid)?;
        let (entry, _) = self
            .load_token(unsealed, &hash)
            .await?
            .ok_or_else(invalid)?;
        if entry.revoking.is_some() || entry.is_expired(self.now().as_second()) {
            return Err(invalid());
        }
        Ok((hash, entry))
    }

    async fn revoke_endpoint(
        &self,
        unsealed: &Unsealed,
        rest: &str,
        data: &Map<String, Value>,
        auth: &Authenticated,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        match rest {
            "revoke-self" => {
                self.revoke_token(unsealed, &auth.hash, Revocation::Tree)
                    .await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            "revoke" | "revoke-orphan" => {
                let token = string_field(data, "token")?.unwrap_or_default();
                if token.is_empty() {
                    return Err(EngineError::InvalidRequest("missing token ID".into()));
                }
                let hash = unsealed.token_hasher.hash_hex(token.as_bytes());
                if rest == "revoke" {
                    // Revoking a token that is not there succeeds, as in Vault.
                    self.revoke_token(unsealed, &hash, Revocation::Tree).await?;
                    return Ok(Some(LogicalResponse::no_content()));
                }
                if !has_sudo(auth) {
                    return Err(EngineError::InvalidRequest(
                        "root or sudo privileges required to revoke and orphan".into(),
                    ));
                }
                if self
                    .revoke_token(unsealed, &hash, Revocation::Orphan)
                    .await?
                {
                    Ok(Some(LogicalResponse::no_content()))
                } else {
                    Err(EngineError::InvalidRequest(
                        "token to revoke not found".into(),
                    ))
                }
            }
            _ => {
                let accessor = string_field(data, "accessor")?.unwrap_or_default();
                if accessor.is_empty() {
                    return Err(EngineError::InvalidRequest("missing accessor".into()));
                }
                match self.hash_for_accessor(unsealed, &accessor).await? {
                    Some(hash) => {
                        self.revoke_token(unsealed, &hash, Revocation::Tree).await?;
                        Ok(Some(LogicalResponse::no_content()))
                    }
                    None => {
                        // Vault answers 200 with a warning, not an error.
                        let mut answer = LogicalResponse::data(Map::new());
                        answer
                            .warnings
                            .push("No token found with this accessor".into());
                        Ok(Some(answer))
                    }
                }
            }
        }
    }

    /// `auth/token/create`, `create-orphan` and `create/<role>`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the three create paths differ in these; a struct would only rename them"
    )]
    async fn create_endpoint(
        &self,
        unsealed: &Unsealed,
        rest: &str,
        data: &Map<String, Value>,
        auth: &Authenticated,
        orphan: bool,
        role: Option<Role>,
        policy_max_ttl: Option<u64>,
    ) -> Result<LogicalResponse, EngineError> {
        let invalid = |message: &str| Err(EngineError::InvalidRequest(message.to_owned()));
        let parent = &auth.entry;
        if auth.limited {
            return invalid("restricted use token cannot generate child tokens");
        }
        let sudo = has_sudo(auth);
        match string_field(data, "type")?.as_deref() {
            None | Some("" | "service" | "default" | "default-service") => {}
            Some("batch") => return invalid("batch tokens are not supported by custos"),
            Some(_) => return invalid("invalid 'token_type' value"),
        }
        if string_field(data, "entity_alias")?.is_some_and(|alias| !alias.is_empty()) {
            return invalid("entity aliases are not supported by custos");
        }
        let num_uses = match field(data, "num_uses") {
            None => 0,
            Some(value) => u64::try_from(parse_int("num_uses", value)?).map_err(|_| {
                EngineError::InvalidRequest("number of uses cannot be negative".into())
            })?,
        };
        let mut renewable = bool_field(data, "renewable")?.unwrap_or(true);
        let no_default_policy = bool_field(data, "no_default_policy")?.unwrap_or(false);
        let mut explicit_max_ttl = seconds_field(data, "explicit_max_ttl")?.unwrap_or(0);
        let mut period = seconds_field(data, "period")?.unwrap_or(0);
        if period > 0 && !sudo && role.is_none() {
            return invalid("root or sudo privileges required to create periodic token");
        }
        let ttl = match seconds_field(data, "ttl")? {
            Some(ttl) => ttl,
            None => seconds_field(data, "lease")?.unwrap_or(0),
        };
        let id = string_field(data, "id")?.filter(|id| !id.is_empty());
        if id.is_some() && !sudo {
            return invalid("root or sudo privileges required to specify token id");
        }
        if let Some(id) = &id {
            let hash = unsealed.token_hasher.hash_hex(id.as_bytes());
            if self.load_token(unsealed, &hash).await?.is_some() {
                return invalid("a token with this id already exists");
            }
        }
        let mut warnings = Vec::new();
        let requested = list_field(data, "policies")?.unwrap_or_default();
        let policies =
            resolve_policies(&requested, no_default_policy, role.as_ref(), parent, sudo)?;
        if policies.iter().any(|policy| policy == "root") && !parent.is_root() {
            return invalid("root tokens may not be created without parent token being root");
        }
        let mut num_uses = num_uses;
        let mut path = format!("{MOUNT}{rest}");
        let mut orphan = orphan;
        let mut bound_cidrs = Vec::new();
        if let Some(role) = &role {
            path = format!("{MOUNT}create/{}", role.name);
            if !role.path_suffix.is_empty() {
                path = format!("{path}/{}", role.path_suffix);
            }
            if !role.renewable {
                renewable = false;
            }
            if role.token_num_uses > 0 && (num_uses == 0 || role.token_num_uses < num_uses) {
                num_uses = role.token_num_uses;
            }
            if role.orphan {
                orphan = true;
            }
            bound_cidrs = role.token_bound_cidrs.clone();
            if role.token_explicit_max_ttl > 0 {
                if explicit_max_ttl > 0 {
                    warnings.push(format!(
                        "Explicit max TTL specified both during creation call and in role; using the lesser value of {} seconds",
                        explicit_max_ttl.min(role.token_explicit_max_ttl)
                    ));
                    explicit_max_ttl = explicit_max_ttl.min(role.token_explicit_max_ttl);
                } else {
                    explicit_max_ttl = role.token_explicit_max_ttl;
                }
            }
            if role.token_period > 0 {
                if period > 0 {
                    warnings.push(format!(
                        "Period specified both during creation call and in role; using the lesser value of {} seconds",
                        period.min(role.token_period)
                    ));
                    period = period.min(role.token_period);
                } else {
                    period = role.token_period;
                }
            }
        } else if bool_field(data, "no_parent")?.unwrap_or(false) {
            if !sudo {
                return invalid("root or sudo privileges required to create orphan token");
            }
            orphan = true;
        }
        // A child keeps its parent's bindings (unless a role sets the addresses, as in Vault):
        // creating a child must not be a way out of them.
        let mut bound_cert_fingerprint = None;
        if !orphan {
            if role.is_none() {
                bound_cidrs = parent.bound_cidrs.clone();
            }
            bound_cert_fingerprint = parent.bound_cert_fingerprint.clone();
        }
        if let Some(requested) = list_field(data, "bound_cidrs")? {
            let requested = parse_cidrs(&requested, "bound_cidrs")?;
            if !bound_cidrs.is_empty() && !sudo && requested != bound_cidrs {
                return invalid("a child of an address-bound token keeps its parent's bound_cidrs");
            }
            bound_cidrs = requested;
        }
        if let Some(requested) = string_field(data, "bound_cert_fingerprint")?
            .filter(|fingerprint| !fingerprint.is_empty())
        {
            let requested = parse_fingerprint(&requested)?;
            if bound_cert_fingerprint
                .as_ref()
                .is_some_and(|inherited| *inherited != requested)
                && !sudo
            {
                return invalid(
                    "a child of a certificate-bound token keeps its parent's bound_cert_fingerprint",
                );
            }
            bound_cert_fingerprint = Some(requested);
        }
        let spec = NewToken {
            id,
            policies,
            meta: meta_field(data)?,
            display_name: display_name(&string_field(data, "display_name")?.unwrap_or_default()),
            path,
            ttl,
            max_ttl: 0,
            explicit_max_ttl,
            period,
            num_uses,
            renewable,
            bound_cidrs,
            bound_cert_fingerprint,
            mfa: false,
            role: role.as_ref().map(|role| role.name.clone()),
            parent: match (orphan, auth.revision) {
                (true, _) => None,
                (false, Some(revision)) => Some(ParentRef {
                    hash: auth.hash.clone(),
                    entry: parent.clone(),
                    revision,
                }),
                (false, None) => return Err(EngineError::PermissionDenied),
            },
            policy_max_ttl,
        };
        let (issued, more) = match self.create_token(unsealed, spec.clone()).await {
            // The parent changed since it was read (renewed, say): read it again, once.
            Err(EngineError::Conflict) if spec.parent.is_some() => {
                let (entry, revision) = self
                    .load_token(unsealed, &auth.hash)
                    .await?
                    .filter(|(entry, _)| entry.revoking.is_none())
                    .ok_or(EngineError::PermissionDenied)?;
                let mut spec = spec;
                spec.parent = Some(ParentRef {
                    hash: auth.hash.clone(),
                    entry,
                    revision,
                });
                self.create_token(unsealed, spec).await?
            }
            other => other?,
        };
        warnings.extend(more);
        let mut answer = LogicalResponse::no_content();
        answer.auth = Some(issued);
        answer.warnings = warnings;
        Ok(answer)
    }

    async fn load_role(
        &self,
        unsealed: &Unsealed,
        name: &str,
    ) -> Result<Option<Role>, EngineError> {
        let Some(plain) = unsealed.barrier.get(&role_path(name)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&plain.value)
            .map(Some)
            .map_err(|error| EngineError::Internal(format!("token role is corrupt: {error}")))
    }

    async fn role_endpoint(
        &self,
        unsealed: &Unsealed,
        operation: Operation,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        check_role_name(name)?;
        match operation {
            Operation::Read => Ok(self
                .load_role(unsealed, name)
                .await?
                .map(|role| LogicalResponse::data(role_data(&role)))),
            Operation::Delete => {
                unsealed.barrier.delete(&role_path(name)).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            Operation::Create | Operation::Update => {
                let mut role = self.load_role(unsealed, name).await?.unwrap_or(Role {
                    name: name.to_owned(),
                    renewable: true,
                    ..Role::default()
                });
                update_role(&mut role, data)?;
                let bytes = serde_json::to_vec(&role)
                    .map_err(|error| EngineError::Internal(format!("encoding role: {error}")))?;
                unsealed.barrier.put(&role_path(name), bytes).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            _ => Err(EngineError::MethodNotAllowed),
        }
    }
}

/// Applies a role write's fields (Vault's names, and the old ones they replaced).
fn update_role(role: &mut Role, data: &Map<String, Value>) -> Result<(), EngineError> {
    if let Some(policies) = list_field(data, "allowed_policies")? {
        role.allowed_policies = sanitize_policies(&policies, false);
    }
    if let Some(policies) = list_field(data, "disallowed_policies")? {
        role.disallowed_policies = sanitize_policies(&policies, false);
    }
    for glob in ["allowed_policies_glob", "disallowed_policies_glob"] {
        if list_field(data, glob)?.is_some_and(|globs| !globs.is_empty()) {
            return Err(EngineError::InvalidRequest(format!(
                "{glob} is not supported by custos"
            )));
        }
    }
    if let Some(orphan) = bool_field(data, "orphan")? {
        role.orphan = orphan;
    }
    if let Some(renewable) = bool_field(data, "renewable")? {
        role.renewable = renewable;
    }
    if let Some(suffix) = string_field(data, "path_suffix")? {
        if suffix.contains("..") || suffix.starts_with('/') || suffix.chars().any(char::is_control)
        {
            return Err(EngineError::InvalidRequest(
                "error registering path suffix: path cannot contain parent references".into(),
            ));
        }
        role.path_suffix = suffix;
    }
    for (new, old) in [("token_period", "period")] {
        if let Some(seconds) = seconds_field(data, new)?.or(seconds_field(data, old)?) {
            role.token_period = seconds;
        }
    }
    if let Some(seconds) =
        seconds_field(data, "token_explicit_max_ttl")?.or(seconds_field(data, "explicit_max_ttl")?)
    {
        role.token_explicit_max_ttl = seconds;
    }
    if let Some(blocks) =
        list_field(data, "token_bound_cidrs")?.or(list_field(data, "bound_cidrs")?)
    {
        role.token_bound_cidrs = parse_cidrs(&blocks, "token_bound_cidrs")?;
    }
    if let Some(flag) = bool_field(data, "token_no_default_policy")? {
        role.token_no_default_policy = flag;
    }
    if let Some(value) = field(data, "token_num_uses") {
        role.token_num_uses = u64::try_from(parse_int("token_num_uses", value)?)
            .map_err(|_| EngineError::InvalidRequest("token_num_uses cannot be negative".into()))?;
    }
    match string_field(data, "token_type")?.as_deref() {
        None | Some("" | "service" | "default" | "default-service") => {}
        Some(other) => {
            return Err(EngineError::InvalidRequest(format!(
                "invalid 'token_type' value {other:?}: custos has service tokens only"
            )));
        }
    }
    Ok(())
}

/// Vault's policy rules for a created token: a role's allowed/disallowed lists when it has
/// them; else the parent's policies when none are asked for; else (without sudo) a subset of
/// the parent's. `default` is added unless `no_default_policy`.
fn resolve_policies(
    requested: &[String],
    no_default_policy: bool,
    role: Option<&Role>,
    parent: &TokenEntry,
    sudo: bool,
) -> Result<Vec<String>, EngineError> {
    let mut add_default = false;
    let policies = match role {
        Some(role) if !role.allowed_policies.is_empty() || !role.disallowed_policies.is_empty() => {
            let local_default = !no_default_policy
                && !role.token_no_default_policy
                && !role.disallowed_policies.iter().any(|p| p == "default");
            let mut chosen = if requested.is_empty() {
                Vec::new()
            } else {
                sanitize_policies(requested, local_default)
            };
            if !role.allowed_policies.is_empty() {
                let allowed = sanitize_policies(&role.allowed_policies, local_default);
                if chosen.is_empty() {
                    chosen = allowed;
                } else if let Some(_outside) = chosen.iter().find(|p| !allowed.contains(p)) {
                    return Err(EngineError::InvalidRequest(format!(
                        "token policies ({}) must be subset of the role's allowed policies ({}) or glob policies ([])",
                        go_quoted(&chosen),
                        go_quoted(&allowed)
                    )));
                }
            } else if chosen.is_empty() {
                chosen = sanitize_policies(&parent.policies, local_default);
            }
            if let Some(denied) = chosen.iter().find(|p| role.disallowed_policies.contains(p)) {
                return Err(EngineError::InvalidRequest(format!(
                    "token policy {denied:?} is disallowed by this role"
                )));
            }
            chosen
        }
        _ if requested.is_empty() => sanitize_policies(&parent.policies, false),
        _ if !sudo => {
            let wanted = sanitize_policies(requested, false);
            let held = sanitize_policies(&parent.policies, false);
            if wanted.iter().any(|policy| !held.contains(policy)) {
                return Err(EngineError::InvalidRequest(
                    "child policies must be subset of parent".into(),
                ));
            }
            add_default = !no_default_policy && held.iter().any(|p| p == "default");
            wanted
        }
        _ => {
            add_default = !no_default_policy;
            sanitize_policies(requested, false)
        }
    };
    let mut policies = sanitize_policies(&policies, add_default);
    if no_default_policy {
        policies.retain(|policy| policy != "default");
    }
    Ok(policies)
}
