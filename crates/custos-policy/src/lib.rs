//! ACL policies: Vault's policy language (HCL and JSON), compiled once into a [`PolicySet`] that
//! answers "may this request go ahead, and why?" with a few lookups.
//!
//! The crate is pure: no I/O, no clock, no randomness. Time comes in as a [`Facts::now`], time
//! zone names are resolved by a function the caller passes to [`PolicySet::compile`].
//!
//! # Semantics
//!
//! Matching and merging follow Vault (OpenBao's `ACL.AllowOperation`):
//!
//! - A rule's path is exact, ends in `*` (a prefix: `secret/*` matches everything that starts
//!   with `secret/`, `secret/a*` everything that starts with `secret/a`), or has `+` segments
//!   (each matches exactly one whole segment; it may also end in `*`).
//! - Rules for the same path from several policies merge: capabilities add up, `deny` replaces
//!   everything, parameter lists merge (an empty list, meaning "any value", wins).
//! - Exactly one (merged) rule decides a request: an exact match if there is one; otherwise the
//!   highest-priority match among prefix and `+` rules, where a rule whose first `+` or `*`
//!   comes later wins, then a rule without a trailing `*`, then fewer `+` segments, then the
//!   longer pattern, then the lexicographically greater one. A more specific rule therefore
//!   overrides a broader one even when it grants less: that is how Vault policies narrow access.
//! - A list request on `a/b/` also accepts an exact rule for `a/b` and, when nothing matches,
//!   rules matching `a/b`.
//! - `root` allows everything; `sudo` is needed in addition for root-protected paths (the
//!   caller decides which paths those are and checks [`Decision::sudo`]).
//! - Parameter rules (`required_parameters`, `allowed_parameters`, `denied_parameters`, values
//!   with `*` globs at either end, an empty list meaning any value) are checked for read,
//!   create, update and patch, as Vault does.
//!
//! # Conditions (custos only)
//!
//! A path rule may carry conditions: `cidrs` (the request's source address must be in one of
//! the blocks; a request without an address matches none), `require_mfa`, a time window
//! (`not_before`, `not_after`, `time_zone`, `days`) and `max_ttl` (a cap for tokens created
//! through that path, reported in [`Decision::max_ttl`]).
//!
//! A rule whose condition fails **grants nothing for this request**: its capabilities do not
//! count, and a `deny` rule whose condition fails does not deny. The other rules merged into the
//! same path still count. Conditions do not change which path pattern decides: when the deciding
//! pattern's rules all fail their conditions, the request is denied; it never falls through to a
//! broader pattern. So a condition can only take access away from what the rule would grant
//! without it. [`Decision::failed_condition`] says which condition failed.

mod acl;
mod decode;
mod duration;
mod format;
mod syntax;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use acl::{Decision, Facts, MatchedRule, PolicySet};
pub use duration::parse_duration;
pub use format::format;

/// The longest policy text accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The most path rules one policy may hold.
pub const MAX_PATH_RULES: usize = 2000;

/// The name of the built-in policy that allows everything.
pub const ROOT_POLICY: &str = "root";
/// The name of the policy every token gets unless it asks not to.
pub const DEFAULT_POLICY: &str = "default";

/// The text of the `default` policy created at initialisation, as in OpenBao. Its identity
/// templated paths (`{{identity.entity.id}}`) match nothing until custos has identities.
pub const DEFAULT_POLICY_TEXT: &str = r#"
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}


# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"#;

/// Why policy text was refused. `line` (and `column`, for syntax errors) say where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(line: usize, column: Option<usize>, message: impl Into<String>) -> Self {
        ParseError {
            line: Some(line),
            column,
            message: message.into(),
        }
    }

    pub(crate) fn whole(message: impl Into<String>) -> Self {
        ParseError {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// One capability a rule grants (or `deny`, which takes all of them away).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Deny,
    Create,
    Read,
    Update,
    Delete,
    List,
    Sudo,
    Patch,
    Scan,
}

impl Capability {
    pub const ALL: [Capability; 9] = [
        Capability::Deny,
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Delete,
        Capability::List,
        Capability::Sudo,
        Capability::Patch,
        Capability::Scan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Deny => "deny",
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Patch => "patch",
            Capability::Scan => "scan",
        }
    }

    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL
            .into_iter()
            .find(|capability| capability.as_str() == name)
    }

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The old `policy = "..."` shorthand of a path rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// `deny`
    Deny,
    /// `read`: read and list.
    Read,
    /// `write`: create, read, update, delete and list.
    Write,
    /// `sudo`: `write` plus sudo.
    Sudo,
}

impl Shorthand {
    pub fn as_str(self) -> &'static str {
        match self {
            Shorthand::Deny => "deny",
            Shorthand::Read => "read",
            Shorthand::Write => "write",
            Shorthand::Sudo => "sudo",
        }
    }

    pub fn parse(name: &str) -> Option<Shorthand> {
        [
            Shorthand::Deny,
            Shorthand::Read,
            Shorthand::Write,
            Shorthand::Sudo,
        ]
        .into_iter()
        .find(|shorthand| shorthand.as_str() == name)
    }

    pub fn capabilities(self) -> &'static [Capability] {
        use Capability::{Create, Delete, Deny, List, Read, Sudo, Update};
        match self {
            Shorthand::Deny => &[Deny],
            Shorthand::Read => &[Read, List],
            Shorthand::Write => &[Create, Read, Update, Delete, List],
            Shorthand::Sudo => &[Create, Read, Update, Delete, List, Sudo],
        }
    }
}

/// A day of the week, for the `days` condition.
pub type Weekday = jiff::civil::Weekday;

/// A time of day (`"09:00"`, `"17:30:15"`), in seconds since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(pub u32);

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (hours, minutes, seconds) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if seconds == 0 {
            write!(f, "{hours:02}:{minutes:02}")
        } else {
            write!(f, "{hours:02}:{minutes:02}:{seconds:02}")
        }
    }
}

/// The custos-only conditions of a path rule. The default holds no condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The request must come from one of these blocks (empty: no address condition).
    pub cidrs: Vec<custos_core::Cidr>,
    pub require_mfa: bool,
    pub not_before: Option<TimeOfDay>,
    pub not_after: Option<TimeOfDay>,
    /// An IANA name (`Europe/Berlin`), `UTC`, or a fixed offset (`+02:00`); UTC when absent.
    pub time_zone: Option<String>,
    /// Allowed days (empty: every day).
    pub days: Vec<Weekday>,
    /// Seconds: a cap for tokens created through this path.
    pub max_ttl: Option<u64>,
}

impl Conditions {
    /// Whether the rule has a condition that can fail (`max_ttl` never fails).
    pub fn restricts(&self) -> bool {
        !self.cidrs.is_empty()
            || self.require_mfa
            || self.not_before.is_some()
            || self.not_after.is_some()
            || !self.days.is_empty()
    }
}

/// One `path "..." { ... }` block, as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathRule {
    /// The pattern as written, without a leading `/`: `secret/data/*`, `secret/+/config`.
    pub path: String,
    /// The line the block starts on (0 when built in code).
    pub line: usize,
    /// Capabilities as listed (the shorthand's are not added here).
    pub capabilities: Vec<Capability>,
    /// The old `policy = "read"` shorthand.
    pub policy: Option<Shorthand>,
    /// Parameter name (lower case) → allowed values (empty: any).
    pub allowed_parameters: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    pub denied_parameters: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    pub required_parameters: Vec<String>,
    /// Seconds.
    pub min_wrapping_ttl: Option<u64>,
    pub max_wrapping_ttl: Option<u64>,
    /// Vault's free-text `comment` key.
    pub comment: Option<String>,
    pub conditions: Conditions,
    /// Comments written before the block (kept by the formatter).
    pub comments: Vec<String>,
    /// Comments written inside the block (the formatter puts them at its top).
    pub inner_comments: Vec<String>,
}

impl PathRule {
    /// A rule granting `capabilities` on `path`, with nothing else.
    pub fn new(path: impl Into<String>, capabilities: &[Capability]) -> PathRule {
        PathRule {
            path: path.into(),
            capabilities: capabilities.to_vec(),
            ..PathRule::default()
        }
    }

    /// Every capability the rule grants (`deny` alone when it denies).
    pub fn effective_capabilities(&self) -> u16 {
        let mut bits = 0;
        let shorthand = self.policy.map(Shorthand::capabilities).unwrap_or_default();
        for capability in self.capabilities.iter().chain(shorthand) {
            if *capability == Capability::Deny {
                return Capability::Deny.bit();
            }
            bits |= capability.bit();
        }
        bits
    }

    /// Identity-templated paths (`{{identity.entity.id}}`) cannot match until custos has
    /// identities; they are kept, and skipped when compiling.
    pub fn is_templated(&self) -> bool {
        self.path.contains("{{")
    }
}

/// A parsed policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub name: String,
    pub rules: Vec<PathRule>,
    /// Comments after the last rule.
    pub trailing_comments: Vec<String>,
}

impl Policy {
    /// Parses Vault's HCL or JSON policy syntax (text starting with `{` is JSON).
    pub fn parse(name: &str, text: &str) -> Result<Policy, ParseError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(ParseError::whole(format!(
                "policy is {} bytes, more than the limit of {MAX_POLICY_BYTES}",
                text.len()
            )));
        }
        let object = syntax::parse(text)?;
        decode::policy(name, object)
    }

    /// Checks what parsing cannot: that every `time_zone` names a zone `resolve` knows.
    pub fn check_time_zones(&self, resolve: &acl::ZoneResolver<'_>) -> Result<(), ParseError> {
        for rule in &self.rules {
            if let Some(zone) = &rule.conditions.time_zone
                && acl::resolve_zone(zone, resolve).is_none()
            {
                return Err(ParseError {
                    line: (rule.line > 0).then_some(rule.line),
                    column: None,
                    message: format!("path {:?}: unknown time zone {zone:?}", rule.path),
                });
            }
        }
        Ok(())
    }
}

pub use acl::ZoneResolver;
