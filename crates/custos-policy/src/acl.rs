//! Compiled policies: the merged rules of a set of policies, indexed so that deciding a request
//! is a few hash lookups and comparisons, and the decision itself ([`Decision`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde_json::{Map, Value};

use crate::format::day_name;
use crate::{Capability, Conditions, PathRule, Policy, ROOT_POLICY, TimeOfDay};

/// Resolves a time zone name (`Europe/Berlin`) to a zone; the engine passes
/// `|name| jiff::tz::db().get(name).ok()`.
pub type ZoneResolver<'a> = dyn Fn(&str) -> Option<TimeZone> + 'a;

/// `UTC`, a fixed offset (`+02:00`, `-0530`, `+02`), or whatever `resolve` knows.
pub(crate) fn resolve_zone(name: &str, resolve: &ZoneResolver<'_>) -> Option<TimeZone> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Some(TimeZone::UTC);
    }
    if let Some(sign) = name
        .strip_prefix('+')
        .map(|rest| (1, rest))
        .or_else(|| name.strip_prefix('-').map(|rest| (-1, rest)))
    {
        let (sign, rest) = sign;
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4)
        {
            return None;
        }
        let hours: i32 = digits.get(..2)?.parse().ok()?;
        let minutes: i32 = digits
            .get(2..)
            .filter(|m| !m.is_empty())
            .map_or(Some(0), |m| m.parse().ok())?;
        if hours > 18 || minutes > 59 {
            return None;
        }
        let offset = Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()?;
        return Some(TimeZone::fixed(offset));
    }
    resolve(name)
}

/// What a decision may depend on besides the path and the capability.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The request's source address (`None`: unknown, which no `cidrs` condition admits).
    pub remote_addr: Option<IpAddr>,
    /// The caller's token comes from a login that passed MFA.
    pub mfa: bool,
    pub now: Timestamp,
    /// The request body, for parameter rules.
    pub parameters: Option<&'a Map<String, Value>>,
    /// The response-wrapping TTL the request asked for, in seconds.
    pub wrap_ttl: Option<u64>,
}

impl Facts<'_> {
    /// Facts with no address, no MFA, no parameters, at `now`.
    pub fn at(now: Timestamp) -> Facts<'static> {
        Facts {
            remote_addr: None,
            mfa: false,
            now,
            parameters: None,
            wrap_ttl: None,
        }
    }
}

/// The rule pattern that decided a request, and the policies behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    /// The pattern as written: `secret/data/*`, `secret/+/config`.
    pub pattern: Arc<str>,
    /// The policy that decided: the one that denies, or the first that grants the capability
    /// (for a denied request without a deny rule: the first policy with a rule at this pattern).
    pub policy: Arc<str>,
    /// Every policy with a rule at this pattern, in compile order.
    pub policies: Vec<Arc<str>>,
}

/// The answer to "may this request go ahead?", with what `explain` and `sys/capabilities` need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The `root` policy decided (everything is allowed).
    pub root: bool,
    /// The matched rules grant `sudo` (needed, besides the capability, on root-protected paths).
    pub sudo: bool,
    /// What the matched rules grant for this request: `["root"]` for root, `["deny"]` when
    /// nothing; in Vault's order (sudo, read, list, update, delete, create, patch, scan).
    pub capabilities: Vec<&'static str>,
    pub matched: Option<MatchedRule>,
    /// The first condition that failed on a rule at the matched pattern, e.g.
    /// `policy "ops", path "secret/*": source address 192.0.2.7 is not in cidrs [10.0.0.0/8]`.
    pub failed_condition: Option<String>,
    /// The smallest `max_ttl` among the rules that counted (seconds).
    pub max_ttl: Option<u64>,
    /// Why the request was denied, for logs and `explain` (never sent as the error itself).
    pub denied_reason: Option<String>,
}

impl Decision {
    fn root() -> Decision {
        Decision {
            allowed: true,
            root: true,
            sudo: true,
            capabilities: vec!["root"],
            matched: Some(MatchedRule {
                pattern: Arc::from("*"),
                policy: Arc::from(ROOT_POLICY),
                policies: vec![Arc::from(ROOT_POLICY)],
            }),
            failed_condition: None,
            max_ttl: None,
            denied_reason: None,
        }
    }
}

/// Vault's order of capabilities in `sys/capabilities` answers.
const REPORT_ORDER: [Capability; 8] = [
    Capability::Sudo,
    Capability::Read,
    Capability::List,
    Capability::Update,
    Capability::Delete,
    Capability::Create,
    Capability::Patch,
    Capability::Scan,
];

fn capability_names(bits: u16) -> Vec<&'static str> {
    if bits & Capability::Deny.bit() != 0 {
        return vec!["deny"];
    }
    let names: Vec<&'static str> = REPORT_ORDER
        .iter()
        .filter(|capability| bits & capability.bit() != 0)
        .map(|capability| capability.as_str())
        .collect();
    if names.is_empty() {
        vec!["deny"]
    } else {
        names
    }
}

type Parameters = BTreeMap<String, Vec<Value>>;

/// A rule's conditions, ready to check.
#[derive(Clone, Debug)]
struct Checks {
    cidrs: Vec<custos_core::Cidr>,
    require_mfa: bool,
    not_before: Option<TimeOfDay>,
    not_after: Option<TimeOfDay>,
    /// `Err(name)`: the zone could not be resolved, so the time condition always fails.
    zone: Result<TimeZone, String>,
    zone_name: String,
    days: Vec<jiff::civil::Weekday>,
    restricts: bool,
}

impl Checks {
    fn new(conditions: &Conditions, resolve: &ZoneResolver<'_>) -> Checks {
        let zone_name = conditions.time_zone.clone().unwrap_or_else(|| "UTC".into());
        let zone = resolve_zone(&zone_name, resolve).ok_or_else(|| zone_name.clone());
        Checks {
            cidrs: conditions.cidrs.clone(),
            require_mfa: conditions.require_mfa,
            not_before: conditions.not_before,
            not_after: conditions.not_after,
            zone,
            zone_name,
            days: conditions.days.clone(),
            restricts: conditions.restricts(),
        }
    }

    /// `Err(what failed)` when a condition fails.
    fn check(&self, facts: &Facts<'_>) -> Result<(), String> {
        if !self.restricts {
            return Ok(());
        }
        if !self.cidrs.is_empty() {
            let blocks: Vec<String> = self.cidrs.iter().map(ToString::to_string).collect();
            match facts.remote_addr {
                None => {
                    return Err(format!(
                        "the request has no source address, and cidrs [{}] needs one",
                        blocks.join(", ")
                    ));
                }
                Some(address) if !custos_core::Cidr::any_contains(&self.cidrs, address) => {
                    return Err(format!(
                        "source address {address} is not in cidrs [{}]",
                        blocks.join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        if self.require_mfa && !facts.mfa {
            return Err("require_mfa: the token does not come from a login that passed MFA".into());
        }
        if self.not_before.is_none() && self.not_after.is_none() && self.days.is_empty() {
            return Ok(());
        }
        let zone = self
            .zone
            .as_ref()
            .map_err(|name| format!("unknown time zone {name:?}"))?;
        let local = facts.now.to_zoned(zone.clone());
        let day = local.weekday();
        if !self.days.is_empty() && !self.days.contains(&day) {
            let days: Vec<&str> = self.days.iter().map(|day| day_name(*day)).collect();
            return Err(format!(
                "{} is a {} in {}, not one of days [{}]",
                local.date(),
                day_name(day),
                self.zone_name,
                days.join(", ")
            ));
        }
        let seconds = (i32::from(local.hour()) * 3600
            + i32::from(local.minute()) * 60
            + i32::from(local.second())) as u32;
        let inside = match (self.not_before, self.not_after) {
            (Some(start), Some(end)) if start <= end => start.0 <= seconds && seconds < end.0,
            // A window across midnight: 22:00 to 06:00.
            (Some(start), Some(end)) => seconds >= start.0 || seconds < end.0,
            (Some(start), None) => seconds >= start.0,
            (None, Some(end)) => seconds < end.0,
            (None, None) => true,
        };
        if !inside {
            let bound = |time: Option<TimeOfDay>| time.map(|t| t.to_string()).unwrap_or_default();
            return Err(format!(
                "{} in {} is outside the window {}-{}",
                TimeOfDay(seconds),
                self.zone_name,
                bound(self.not_before),
                bound(self.not_after)
            ));
        }
        Ok(())
    }
}

/// One rule as compiled: its policy, its grants and its conditions.
#[derive(Clone, Debug)]
struct Compiled {
    policy: Arc<str>,
    capabilities: u16,
    allowed: Parameters,
    denied: Parameters,
    required: Vec<String>,
    min_wrapping_ttl: Option<u64>,
    max_wrapping_ttl: Option<u64>,
    max_ttl: Option<u64>,
    checks: Checks,
}

/// The rules at one pattern merged, as Vault merges them.
#[derive(Clone, Debug, Default)]
struct Merged {
    capabilities: u16,
    allowed: Parameters,
    denied: Parameters,
    required: Vec<String>,
    min_wrapping_ttl: Option<u64>,
    max_wrapping_ttl: Option<u64>,
    max_ttl: Option<u64>,
    /// The policy that denies, if one does.
    denied_by: Option<Arc<str>>,
    /// Which policy granted which capabilities, in order.
    granted_by: Vec<(Arc<str>, u16)>,
    /// At least one rule counted.
    any: bool,
}

fn merge_parameters(into: &mut Parameters, from: &Parameters) {
    for (key, values) in from {
        match into.get_mut(key) {
            // An empty list (any value) wins over a list of values.
            Some(existing) if existing.is_empty() || values.is_empty() => existing.clear(),
            Some(existing) => existing.extend(values.iter().cloned()),
            None => {
                into.insert(key.clone(), values.clone());
            }
        }
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Merged {
    fn add(&mut self, rule: &Compiled) {
        let deny = Capability::Deny.bit();
        if !self.any {
            self.any = true;
            self.capabilities = rule.capabilities;
            if rule.capabilities & deny != 0 {
                self.denied_by = Some(rule.policy.clone());
            } else {
                self.allowed = rule.allowed.clone();
                self.denied = rule.denied.clone();
                self.required = rule.required.clone();
                self.min_wrapping_ttl = rule.min_wrapping_ttl;
                self.max_wrapping_ttl = rule.max_wrapping_ttl;
                self.granted_by
                    .push((rule.policy.clone(), rule.capabilities));
            }
            self.max_ttl = rule.max_ttl;
            return;
        }
        if self.capabilities & deny != 0 {
            return;
        }
        if rule.capabilities & deny != 0 {
            self.capabilities = deny;
            self.allowed.clear();
            self.denied.clear();
            self.denied_by = Some(rule.policy.clone());
            return;
        }
        self.capabilities |= rule.capabilities;
        self.granted_by
            .push((rule.policy.clone(), rule.capabilities));
        // Vault prefers the shorter lifetime for both wrapping bounds.
        self.max_wrapping_ttl = min_some(self.max_wrapping_ttl, rule.max_wrapping_ttl);
        self.min_wrapping_ttl = min_some(self.min_wrapping_ttl, rule.min_wrapping_ttl);
        self.max_ttl = min_some(self.max_ttl, rule.max_ttl);
        merge_parameters(&mut self.allowed, &rule.allowed);
        merge_parameters(&mut self.denied, &rule.denied);
        for name in &rule.required {
            if !self.required.contains(name) {
                self.required.push(name.clone());
            }
        }
    }
}

/// Every rule at one pattern.
#[derive(Clone, Debug)]
struct Entry {
    pattern: Arc<str>,
    rules: Vec<Compiled>,
    /// The merge of every rule, when none has a condition that can fail (the usual case).
    unconditional: Option<Merged>,
    /// Every policy with a rule here, in compile order.
    policies: Vec<Arc<str>>,
}

impl Entry {
    fn finish(&mut self) {
        for rule in &self.rules {
            if !self.policies.contains(&rule.policy) {
                self.policies.push(rule.policy.clone());
            }
        }
        if self.rules.iter().all(|rule| !rule.checks.restricts) {
            let mut merged = Merged::default();
            for rule in &self.rules {
                merged.add(rule);
            }
            self.unconditional = Some(merged);
        }
    }

    /// The rules that pass their conditions, merged, and the first condition that failed.
    fn merged(&self, facts: &Facts<'_>) -> (std::borrow::Cow<'_, Merged>, Option<String>) {
        if let Some(merged) = &self.unconditional {
            return (std::borrow::Cow::Borrowed(merged), None);
        }
        let mut merged = Merged::default();
        let mut failed = None;
        for rule in &self.rules {
            match rule.checks.check(facts) {
                Ok(()) => merged.add(rule),
                Err(why) => {
                    if failed.is_none() {
                        failed = Some(format!(
                            "policy {:?}, path {:?}: {why}",
                            &*rule.policy, &*self.pattern
                        ));
                    }
                }
            }
        }
        (std::borrow::Cow::Owned(merged), failed)
    }
}

/// A `+` pattern.
#[derive(Clone, Debug)]
struct Segmented {
    /// Without the trailing `*`.
    segments: Vec<String>,
    without_glob: String,
    is_prefix: bool,
    first_wildcard: usize,
    wildcards: usize,
    entry: Entry,
}

/// How a non-exact match ranks (Vault's priority rules); greater wins.
struct Rank<'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    path: &'a str,
}

fn compare(a: &Rank<'_>, b: &Rank<'_>) -> Ordering {
    a.first_wildcard
        .cmp(&b.first_wildcard)
        .then_with(|| b.is_prefix.cmp(&a.is_prefix))
        .then_with(|| b.wildcards.cmp(&a.wildcards))
        .then_with(|| a.path.len().cmp(&b.path.len()))
        .then_with(|| a.path.cmp(b.path))
}

/// The merged ACL of a set of policies. Build it once per set ([`PolicySet::compile`]), then
/// decide any number of requests with [`PolicySet::evaluate`].
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    root: bool,
    exact: HashMap<String, Entry>,
    prefix: HashMap<String, Entry>,
    /// The distinct lengths of the prefix patterns, longest first.
    prefix_lengths: Vec<usize>,
    segmented: Vec<Segmented>,
    names: Vec<String>,
}

fn compile_rule(policy: &Arc<str>, rule: &PathRule, resolve: &ZoneResolver<'_>) -> Compiled {
    let capabilities = rule.effective_capabilities();
    let denies = capabilities & Capability::Deny.bit() != 0;
    // As in Vault, a deny rule keeps no parameter rules.
    let parameters = |map: &Option<Parameters>| {
        if denies {
            Parameters::new()
        } else {
            map.clone().unwrap_or_default()
        }
    };
    Compiled {
        policy: policy.clone(),
        capabilities,
        allowed: parameters(&rule.allowed_parameters),
        denied: parameters(&rule.denied_parameters),
        required: if denies {
            Vec::new()
        } else {
            rule.required_parameters.clone()
        },
        min_wrapping_ttl: rule.min_wrapping_ttl.filter(|ttl| *ttl > 0),
        max_wrapping_ttl: rule.max_wrapping_ttl.filter(|ttl| *ttl > 0),
        max_ttl: rule.conditions.max_ttl,
        checks: Checks::new(&rule.conditions, resolve),
    }
}

impl PolicySet {
    /// The set for the `root` policy: everything is allowed.
    pub fn root() -> PolicySet {
        PolicySet {
            root: true,
            names: vec![ROOT_POLICY.into()],
            ..PolicySet::default()
        }
    }

    /// Compiles `policies` into one ACL. A policy named `root` makes the set allow everything.
    /// Time zones are resolved through `resolve` now; a zone it does not know makes that rule's
    /// time condition fail (closed).
    pub fn compile(policies: &[Policy], resolve: &ZoneResolver<'_>) -> PolicySet {
        if policies.iter().any(|policy| policy.name == ROOT_POLICY) {
            return PolicySet::root();
        }
        let mut set = PolicySet {
            names: policies.iter().map(|policy| policy.name.clone()).collect(),
            ..PolicySet::default()
        };
        let mut segmented: HashMap<String, Segmented> = HashMap::new();
        let mut segmented_order: Vec<String> = Vec::new();
        for policy in policies {
            let name: Arc<str> = Arc::from(policy.name.as_str());
            for rule in &policy.rules {
                if rule.is_templated() {
                    continue;
                }
                let compiled = compile_rule(&name, rule, resolve);
                let path = rule.path.as_str();
                let has_wildcards = path == "+" || path.contains("/+") || path.starts_with("+/");
                let new_entry = || Entry {
                    pattern: Arc::from(path),
                    rules: Vec::new(),
                    unconditional: None,
                    policies: Vec::new(),
                };
                if has_wildcards {
                    let slot = segmented.entry(path.to_owned()).or_insert_with(|| {
                        segmented_order.push(path.to_owned());
                        let (without_glob, is_prefix) = match path.strip_suffix('*') {
                            Some(stripped) => (stripped.to_owned(), true),
                            None => (path.to_owned(), false),
                        };
                        let segments: Vec<String> =
                            without_glob.split('/').map(str::to_owned).collect();
                        Segmented {
                            wildcards: segments.iter().filter(|s| *s == "+").count(),
                            first_wildcard: path.find('+').unwrap_or(0),
                            segments,
                            without_glob,
                            is_prefix,
                            entry: new_entry(),
                        }
                    });
                    slot.entry.rules.push(compiled);
                } else if let Some(prefix) = path.strip_suffix('*') {
                    set.prefix
                        .entry(prefix.to_owned())
                        .or_insert_with(new_entry)
                        .rules
                        .push(compiled);
                } else {
                    set.exact
                        .entry(path.to_owned())
                        .or_insert_with(new_entry)
                        .rules
                        .push(compiled);
                }
            }
        }
        for entry in set.exact.values_mut().chain(set.prefix.values_mut()) {
            entry.finish();
        }
        let mut lengths: Vec<usize> = set.prefix.keys().map(String::len).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        set.prefix_lengths = lengths;
        for path in segmented_order {
            if let Some(mut pattern) = segmented.remove(&path) {
                pattern.entry.finish();
                set.segmented.push(pattern);
            }
        }
        set
    }

    /// Whether this is the root set.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The names of the compiled policies.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn longest_prefix(&self, path: &str) -> Option<(&str, &Entry)> {
        for &length in &self.prefix_lengths {
            if let Some(candidate) = path.get(..length)
                && let Some((key, entry)) = self.prefix.get_key_value(candidate)
            {
                return Some((key.as_str(), entry));
            }
        }
        None
    }

    /// Vault's `CheckAllowedFromNonExactPaths`: the best prefix or `+` match.
    fn non_exact(&self, path: &str) -> Option<&Entry> {
        let prefix = self.longest_prefix(path);
        if self.segmented.is_empty() {
            return prefix.map(|(_, entry)| entry);
        }
        let mut best: Option<(Rank<'_>, &Entry)> = prefix.map(|(key, entry)| {
            (
                Rank {
                    first_wildcard: key.len(),
                    is_prefix: true,
                    wildcards: 0,
                    path: key,
                },
                entry,
            )
        });
        let parts: Vec<&str> = path.split('/').collect();
        'patterns: for pattern in &self.segmented {
            // Everything before the first `+` is literal: a cheap first filter.
            let literal = pattern
                .without_glob
                .get(..pattern.first_wildcard)
                .unwrap_or_default();
            if !path.starts_with(literal) {
                continue;
            }
            let count = pattern.segments.len();
            if parts.len() < count || (!pattern.is_prefix && parts.len() != count) {
                continue;
            }
            for (index, (segment, part)) in pattern.segments.iter().zip(&parts).enumerate() {
                let last = index + 1 == count;
                let matches = segment == "+"
                    || segment == part
                    || (pattern.is_prefix && last && part.starts_with(segment.as_str()));
                if !matches {
                    continue 'patterns;
                }
            }
            let rank = Rank {
                first_wildcard: pattern.first_wildcard,
                is_prefix: pattern.is_prefix,
                wildcards: pattern.wildcards,
                path: &pattern.without_glob,
            };
            let better = match &best {
                None => true,
                Some((current, _)) => compare(&rank, current) == Ordering::Greater,
            };
            if better {
                best = Some((rank, &pattern.entry));
            }
        }
        best.map(|(_, entry)| entry)
    }

    /// The rule pattern that decides requests for `capability` on `path`.
    fn find(&self, path: &str, capability: Capability) -> Option<&Entry> {
        let path = path.trim_start_matches('/');
        let listing = matches!(capability, Capability::List | Capability::Scan);
        if let Some(entry) = self.exact.get(path) {
            return Some(entry);
        }
        if listing && let Some(entry) = self.exact.get(path.trim_end_matches('/')) {
            return Some(entry);
        }
        if let Some(entry) = self.non_exact(path) {
            return Some(entry);
        }
        if listing && let Some(stripped) = path.strip_suffix('/') {
            return self.non_exact(stripped);
        }
        None
    }

    /// Decides a request that needs `capability` on `path` (a list request's path ends in `/`).
    pub fn evaluate(&self, path: &str, capability: Capability, facts: &Facts<'_>) -> Decision {
        if self.root {
            return Decision::root();
        }
        let Some(entry) = self.find(path, capability) else {
            return Decision {
                allowed: false,
                root: false,
                sudo: false,
                capabilities: vec!["deny"],
                matched: None,
                failed_condition: None,
                max_ttl: None,
                denied_reason: Some(format!(
                    "no rule of the policies [{}] matches this path",
                    self.names.join(", ")
                )),
            };
        };
        let (merged, failed_condition) = entry.merged(facts);
        let bits = merged.capabilities;
        let deny = bits & Capability::Deny.bit() != 0;
        let deciding = if deny {
            merged.denied_by.clone()
        } else {
            merged
                .granted_by
                .iter()
                .find(|(_, granted)| granted & capability.bit() != 0)
                .map(|(policy, _)| policy.clone())
        };
        let policies = entry.policies.clone();
        let policy = deciding
            .or_else(|| policies.first().cloned())
            .unwrap_or_else(|| Arc::from(""));
        let mut decision = Decision {
            allowed: false,
            root: false,
            sudo: !deny && bits & Capability::Sudo.bit() != 0,
            capabilities: capability_names(bits),
            matched: Some(MatchedRule {
                pattern: entry.pattern.clone(),
                policy,
                policies,
            }),
            failed_condition,
            max_ttl: merged.max_ttl,
            denied_reason: None,
        };
        match check_grant(&merged, capability, facts) {
            Ok(()) => decision.allowed = true,
            Err(why) => decision.denied_reason = Some(why),
        }
        if decision.denied_reason.is_some() && decision.failed_condition.is_some() {
            decision.denied_reason = Some(format!(
                "{} (a condition failed: {})",
                decision.denied_reason.as_deref().unwrap_or_default(),
                decision.failed_condition.as_deref().unwrap_or_default()
            ));
        }
        decision
    }

    /// Whether any rule grants something at or below the mount at `mount_path` (`secret/`):
    /// Vault's `hasMountAccess`, which decides whether `sys/internal/ui/mounts/<path>` shows a
    /// mount to a token. Conditions are not checked here (the answer is about the mount's
    /// existence, not its data).
    pub fn has_mount_access(&self, mount_path: &str) -> bool {
        if self.root {
            return true;
        }
        let grants = |entry: &Entry| {
            let mut bits = 0;
            for rule in &entry.rules {
                if rule.capabilities & Capability::Deny.bit() != 0 {
                    return false;
                }
                bits |= rule.capabilities;
            }
            bits & !Capability::Scan.bit() != 0
        };
        if let Some(entry) = self.find(mount_path, Capability::List)
            && grants(entry)
        {
            return true;
        }
        if self
            .exact
            .iter()
            .chain(&self.prefix)
            .any(|(key, entry)| key.starts_with(mount_path) && grants(entry))
        {
            return true;
        }
        // A `+` pattern that some path below the mount can match.
        let mount_parts: Vec<&str> = mount_path.trim_end_matches('/').split('/').collect();
        self.segmented.iter().any(|pattern| {
            let count = pattern.segments.len();
            let comparable = mount_parts.len().min(count);
            let matches = (0..comparable).all(|index| {
                let (Some(segment), Some(part)) =
                    (pattern.segments.get(index), mount_parts.get(index))
                else {
                    return false;
                };
                segment == "+"
                    || segment == part
                    || (pattern.is_prefix
                        && index + 1 == count
                        && part.starts_with(segment.as_str()))
            });
            matches && grants(&pattern.entry)
        })
    }

    /// What `sys/capabilities` reports for `path`: `["root"]`, `["deny"]`, or the capabilities
    /// the deciding rules grant (conditions checked against `facts`).
    pub fn capabilities(&self, path: &str, facts: &Facts<'_>) -> Vec<&'static str> {
        self.evaluate(path, Capability::List, facts).capabilities
    }
}

/// The capability, wrapping and parameter checks of one merged rule (Vault's `AllowOperation`
/// after the match).
fn check_grant(merged: &Merged, capability: Capability, facts: &Facts<'_>) -> Result<(), String> {
    let bits = merged.capabilities;
    if !merged.any {
        return Err("every rule at this path failed a condition".into());
    }
    if bits & Capability::Deny.bit() != 0 {
        return Err("a deny rule matches this path".into());
    }
    if bits & capability.bit() == 0 {
        return Err(format!(
            "the matching rules do not grant {:?}",
            capability.as_str()
        ));
    }
    if let Some(max) = merged.max_wrapping_ttl
        && facts.wrap_ttl.is_none_or(|ttl| ttl > max)
    {
        return Err(format!(
            "the response must be wrapped with a TTL of at most {max}s"
        ));
    }
    if let Some(min) = merged.min_wrapping_ttl
        && facts.wrap_ttl.is_none_or(|ttl| ttl < min)
    {
        return Err(format!(
            "the response must be wrapped with a TTL of at least {min}s"
        ));
    }
    if let (Some(min), Some(max)) = (merged.min_wrapping_ttl, merged.max_wrapping_ttl)
        && max < min
    {
        return Err("the merged wrapping TTL bounds cannot be met".into());
    }
    if !matches!(
        capability,
        Capability::Read | Capability::Update | Capability::Create | Capability::Patch
    ) {
        return Ok(());
    }
    check_parameters(merged, facts.parameters)
}

fn check_parameters(merged: &Merged, data: Option<&Map<String, Value>>) -> Result<(), String> {
    let empty = Map::new();
    let data = data.unwrap_or(&empty);
    for name in &merged.required {
        if !data.contains_key(&name.to_lowercase()) {
            return Err(format!("required parameter {name:?} is missing"));
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    if !merged.denied.is_empty() {
        if merged.denied.contains_key("*") {
            return Err("every parameter is denied".into());
        }
        for (name, value) in data {
            if let Some(values) = merged.denied.get(&name.to_lowercase())
                && value_in_list(value, values)
            {
                return Err(format!("parameter {name:?} is denied"));
            }
        }
    }
    if merged.allowed.is_empty() {
        return Ok(());
    }
    let allow_all = merged.allowed.contains_key("*");
    if allow_all && merged.allowed.len() == 1 {
        return Ok(());
    }
    for (name, value) in data {
        match merged.allowed.get(&name.to_lowercase()) {
            None if !allow_all => return Err(format!("parameter {name:?} is not allowed")),
            Some(values) if !value_in_list(value, values) => {
                return Err(format!("this value of parameter {name:?} is not allowed"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// An empty list holds every value; strings match with `*` globs at either end.
fn value_in_list(value: &Value, list: &[Value]) -> bool {
    list.is_empty()
        || list.iter().any(|item| match (item, value) {
            (Value::String(pattern), Value::String(text)) => glob_match(pattern, text),
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        })
}

/// Vault's `GlobbedStringsMatch`: `*x*` contains, `*x` ends with, `x*` starts with.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.len() < 2 {
        return pattern == text;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(_), Some(_)) => text.contains(&pattern[1..pattern.len() - 1]),
        (Some(suffix), None) => text.ends_with(suffix),
        (None, Some(prefix)) => text.starts_with(prefix),
        (None, None) => pattern == text,
    }
}
