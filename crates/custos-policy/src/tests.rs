//! Tests: parsing (both syntaxes, errors with lines), Vault's matching, priority and merging
//! rules as tables, custos conditions, the formatter, and properties of evaluation.

use std::net::IpAddr;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use proptest::prelude::*;
use serde_json::json;

use crate::*;

/// Test resolver: no system time zone database needed.
fn zones(name: &str) -> Option<TimeZone> {
    match name {
        // Winter time is enough for the instants the tests use.
        "Europe/Berlin" => Some(TimeZone::fixed(Offset::constant(1))),
        "America/New_York" => Some(TimeZone::fixed(Offset::constant(-5))),
        _ => None,
    }
}

fn policy(name: &str, text: &str) -> Policy {
    Policy::parse(name, text).expect("policy parses")
}

fn set(policies: &[Policy]) -> PolicySet {
    PolicySet::compile(policies, &zones)
}

fn one(text: &str) -> PolicySet {
    set(&[policy("test", text)])
}

fn now() -> Timestamp {
    // Wednesday 2025-01-15 10:00:00 UTC.
    "2025-01-15T10:00:00Z".parse().expect("timestamp")
}

fn allows(set: &PolicySet, capability: Capability, path: &str) -> bool {
    set.evaluate(path, capability, &Facts::at(now())).allowed
}

fn parse_error(text: &str) -> String {
    Policy::parse("bad", text)
        .expect_err("policy is refused")
        .to_string()
}

use Capability::{Create, Delete, List, Patch, Read, Scan, Update};

const LAYERED: &str = r#"
name = "dev"
path "dev/*" {
  policy = "sudo"
}
path "stage/*" {
  policy = "write"
}
path "stage/aws/*" {
  policy = "read"
  capabilities = ["update", "sudo"]
}
path "stage/aws/policy/*" {
  policy = "sudo"
}
path "prod/*" {
  policy = "read"
}
path "prod/aws/*" {
  policy = "deny"
}
path "foo/bar" {
  capabilities = ["read", "create", "sudo"]
}
path "baz/quux" {
  capabilities = ["read", "create", "patch"]
}
path "test/+/segment" {
  capabilities = ["read"]
}
path "+/segment/at/front" {
  capabilities = ["read"]
}
path "test/segment/at/end/+" {
  capabilities = ["read"]
}
path "test/segment/at/end/v2/+/" {
  capabilities = ["read"]
}
path "test/+/wildcard/+/*" {
  capabilities = ["read"]
}
path "1/2/*" {
  capabilities = ["create"]
}
path "1/2/+" {
  capabilities = ["read"]
}
path "1/2/+/+" {
  capabilities = ["update"]
}
path "asdf/fdsa" {
  capabilities = ["scan"]
}
"#;

#[test]
fn vault_matching_table() {
    let acl = one(LAYERED);
    // (capability, path, allowed, sudo)
    let cases = [
        (Read, "root", false, false),
        (Read, "dev/foo", true, true),
        (Update, "dev/foo", true, true),
        (Delete, "stage/foo", true, false),
        (List, "stage/aws/foo", true, true),
        (Update, "stage/aws/foo", true, true),
        (Update, "stage/aws/policy/foo", true, true),
        (Delete, "prod/foo", false, false),
        (Update, "prod/foo", false, false),
        (Read, "prod/foo", true, false),
        (List, "prod/foo", true, false),
        (Read, "prod/aws/foo", false, false),
        (Read, "foo/bar", true, true),
        (List, "foo/bar", false, true),
        (Update, "foo/bar", false, true),
        (Create, "foo/bar", true, true),
        (Read, "baz/quux", true, false),
        (Create, "baz/quux", true, false),
        (Patch, "baz/quux", true, false),
        (List, "baz/quux", false, false),
        (Update, "baz/quux", false, false),
        (Scan, "baz/quux", false, false),
        (Scan, "asdf/fdsa", true, false),
        (List, "asdf/fdsa", false, false),
        (Read, "test/foo/bar/segment", false, false),
        (Read, "test/foo/segment", true, false),
        (Read, "test/bar/segment", true, false),
        (Read, "test/segment/at/frond", false, false),
        (Read, "test/segment/at/front", true, false),
        (Read, "test/segment/at/end/foo", true, false),
        (Read, "test/segment/at/end/foo/", false, false),
        (Read, "test/segment/at/end/v2/foo/", true, false),
        (Read, "test/segment/wildcard/at/foo/", true, false),
        (Read, "test/segment/wildcard/at/end", true, false),
        (Read, "test/segment/wildcard/at/end/", true, false),
        (Read, "1/2/3/4", false, false),
        (Read, "1/2/3", true, false),
        (Update, "1/2/3", false, false),
        (Update, "1/2/3/4", true, false),
        (Create, "1/2/3/4/5", true, false),
    ];
    for (capability, path, allowed, sudo) in cases {
        let decision = acl.evaluate(path, capability, &Facts::at(now()));
        assert_eq!(
            (decision.allowed, decision.sudo),
            (allowed, sudo),
            "{capability:?} {path}: {decision:?}"
        );
    }
}

#[test]
fn vault_layering_merges_policies_and_deny_wins() {
    let second = r#"
path "dev/hide/*" { policy = "deny" }
path "stage/aws/policy/*" {
  policy = "deny"
  # No effect: deny takes everything away.
  capabilities = ["read", "update", "sudo"]
}
path "prod/*" { policy = "write" }
path "foo/bar" { capabilities = ["deny"] }
path "baz/quux" { capabilities = ["deny"] }
"#;
    let acl = set(&[policy("dev", LAYERED), policy("ops", second)]);
    let cases = [
        (Read, "dev/foo", true, true),
        (Read, "dev/hide/foo", false, false),
        (Update, "stage/aws/policy/foo", false, false),
        (Delete, "prod/foo", true, false),
        (Update, "prod/foo", true, false),
        (Read, "prod/aws/foo", false, false),
        (Read, "foo/bar", false, false),
        (Create, "baz/quux", false, false),
    ];
    for (capability, path, allowed, sudo) in cases {
        let decision = acl.evaluate(path, capability, &Facts::at(now()));
        assert_eq!(
            (decision.allowed, decision.sudo),
            (allowed, sudo),
            "{capability:?} {path}: {decision:?}"
        );
    }
    let decision = acl.evaluate("foo/bar", Read, &Facts::at(now()));
    let matched = decision.matched.expect("a rule matched");
    assert_eq!(&*matched.policy, "ops");
    assert_eq!(&*matched.pattern, "foo/bar");
    assert_eq!(decision.capabilities, vec!["deny"]);
    // In either order.
    let reversed = set(&[policy("ops", second), policy("dev", LAYERED)]);
    assert!(!allows(&reversed, Read, "foo/bar"));
}

#[test]
fn vault_priority_rules_pick_the_more_specific_pattern() {
    // Each policy has a read rule and an update rule; the update rule is the more specific.
    let cases = [
        (
            r#"path "+/*" { capabilities = ["read"] } path "*" { capabilities = ["update"] }"#,
            "foo/bar/bar/baz",
        ),
        (
            r#"path "+/*" { capabilities = ["read"] } path "foo/+/*" { capabilities = ["update"] }"#,
            "foo/bar/bar/baz",
        ),
        (
            r#"path "foo/+/+/*" { capabilities = ["read"] } path "foo/+/bar/baz" { capabilities = ["update"] }"#,
            "foo/bar/bar/baz",
        ),
        (
            r#"path "foo/+/+/baz" { capabilities = ["read"] } path "foo/+/bar/baz" { capabilities = ["update"] }"#,
            "foo/bar/bar/baz",
        ),
        (
            r#"path "foo/+/(ar/baz" { capabilities = ["read"] } path "foo/(ar/+/baz" { capabilities = ["update"] }"#,
            "foo/(ar/(ar/baz",
        ),
        (
            r#"path "foo/bar/+/baz*" { capabilities = ["read"] } path "foo/bar/+/baz" { capabilities = ["update"] }"#,
            "foo/bar/bar/baz",
        ),
        (
            r#"path "foo/bar/+/b*" { capabilities = ["read"] } path "foo/bar/+/ba*" { capabilities = ["update"] }"#,
            "foo/bar/bar/baz",
        ),
        // The documented example: the exact path beats every glob.
        (
            r#"path "secret/*" { capabilities = ["read"] } path "secret/foo" { capabilities = ["update"] }"#,
            "secret/foo",
        ),
        // Longest prefix wins among globs.
        (
            r#"path "secret/*" { capabilities = ["read"] } path "secret/team-a/*" { capabilities = ["update"] }"#,
            "secret/team-a/x",
        ),
        // A later first wildcard wins over an earlier glob.
        (
            r#"path "secret/*" { capabilities = ["read"] } path "secret/+/config" { capabilities = ["update"] }"#,
            "secret/app/config",
        ),
    ];
    for (text, path) in cases {
        let acl = one(text);
        assert!(allows(&acl, Update, path), "{text} / {path}");
        assert!(!allows(&acl, Read, path), "{text} / {path}");
    }
}

#[test]
fn list_uses_trailing_slash_fallbacks() {
    let acl = one(r#"path "secret/metadata/app" { capabilities = ["list"] }"#);
    assert!(allows(&acl, List, "secret/metadata/app/"));
    assert!(!allows(&acl, Read, "secret/metadata/app/"));
    let glob = one(r#"path "secret/metadata/ap*" { capabilities = ["list"] }"#);
    assert!(allows(&glob, List, "secret/metadata/app/"));
    let segment = one(r#"path "secret/+/app" { capabilities = ["list"] }"#);
    assert!(allows(&segment, List, "secret/metadata/app/"));
    assert!(!allows(&segment, Read, "secret/metadata/app/"));
}

#[test]
fn capabilities_report_like_vault() {
    let acl = one(r#"
path "secret/*" { capabilities = ["create", "read", "sudo", "list"] }
path "secret/locked" { capabilities = ["deny"] }
"#);
    let facts = Facts::at(now());
    assert_eq!(
        acl.capabilities("secret/a", &facts),
        vec!["sudo", "read", "list", "create"]
    );
    assert_eq!(acl.capabilities("secret/locked", &facts), vec!["deny"]);
    assert_eq!(acl.capabilities("other", &facts), vec!["deny"]);
    assert_eq!(
        PolicySet::root().capabilities("anything", &facts),
        vec!["root"]
    );
}

#[test]
fn root_allows_everything() {
    let acl = set(&[Policy {
        name: ROOT_POLICY.into(),
        ..Policy::default()
    }]);
    assert!(acl.is_root());
    let decision = acl.evaluate("sys/seal", Update, &Facts::at(now()));
    assert!(decision.allowed && decision.sudo && decision.root);
}

#[test]
fn default_policy_parses_and_grants_self_service() {
    let default = policy(DEFAULT_POLICY, DEFAULT_POLICY_TEXT);
    let acl = set(&[default]);
    assert!(allows(&acl, Read, "auth/token/lookup-self"));
    assert!(allows(&acl, Update, "sys/capabilities-self"));
    assert!(allows(&acl, Update, "sys/wrapping/unwrap"));
    assert!(allows(&acl, Create, "cubbyhole/x"));
    assert!(allows(&acl, Read, "identity/oidc/provider/p/authorize"));
    assert!(!allows(&acl, Read, "secret/data/x"));
    assert!(!allows(&acl, Update, "sys/policies/acl/x"));
    // Templated paths match nothing yet.
    assert!(!allows(
        &acl,
        Read,
        "identity/entity/id/{{identity.entity.id}}"
    ));
}

#[test]
fn parameter_rules_follow_vault() {
    let acl = one(r#"
path "kv/allowed" {
  capabilities = ["create", "update", "read"]
  allowed_parameters = {
    "zip" = []
    "color" = ["red", "gr*", "*lue"]
  }
}
path "kv/denied" {
  capabilities = ["update"]
  denied_parameters = { "secret" = [] , "mode" = ["*admin*"] }
}
path "kv/required" {
  capabilities = ["update"]
  required_parameters = ["owner"]
}
path "kv/deny-all" {
  capabilities = ["update"]
  denied_parameters = { "*" = [] }
}
path "kv/allow-all" {
  capabilities = ["update"]
  allowed_parameters = { "*" = [] }
}
path "kv/mixed" {
  capabilities = ["update"]
  allowed_parameters = { "*" = [], "size" = [1, 2] }
}
"#);
    let check = |path: &str, body: serde_json::Value| {
        let map = body.as_object().cloned().unwrap_or_default();
        let facts = Facts {
            parameters: Some(&map),
            ..Facts::at(now())
        };
        acl.evaluate(path, Update, &facts).allowed
    };
    assert!(check(
        "kv/allowed",
        json!({"zip": "anything", "color": "red"})
    ));
    assert!(check("kv/allowed", json!({"color": "green"})));
    assert!(check("kv/allowed", json!({"color": "blue"})));
    assert!(!check("kv/allowed", json!({"color": "purple"})));
    assert!(!check("kv/allowed", json!({"other": 1})));
    assert!(check("kv/allowed", json!({})));
    assert!(
        check("kv/allowed", json!({"ZIP": 1})),
        "names are compared in lower case"
    );
    assert!(!check("kv/denied", json!({"secret": "x"})));
    assert!(!check("kv/denied", json!({"mode": "superadmin1"})));
    assert!(check("kv/denied", json!({"mode": "user", "other": 1})));
    assert!(!check("kv/required", json!({"x": 1})));
    assert!(check("kv/required", json!({"owner": "me"})));
    assert!(!check("kv/deny-all", json!({"a": 1})));
    assert!(check("kv/deny-all", json!({})));
    assert!(check("kv/allow-all", json!({"anything": true})));
    assert!(check("kv/mixed", json!({"anything": true, "size": 2})));
    assert!(!check("kv/mixed", json!({"size": 3})));
    // Parameters are not checked for delete or list.
    let map = json!({"other": 1}).as_object().cloned().unwrap_or_default();
    let on_delete =
        one(r#"path "a" { capabilities = ["delete"] allowed_parameters = { "x" = [] } }"#);
    let facts = Facts {
        parameters: Some(&map),
        ..Facts::at(now())
    };
    assert!(on_delete.evaluate("a", Delete, &facts).allowed);
}

#[test]
fn parameter_lists_merge_across_policies() {
    let first = policy(
        "a",
        r#"path "kv/x" { capabilities = ["update"] allowed_parameters = { "color" = ["red"] } }"#,
    );
    let second = policy(
        "b",
        r#"path "kv/x" { capabilities = ["update"] allowed_parameters = { "color" = ["blue"], "size" = [] } }"#,
    );
    let acl = set(&[first.clone(), second]);
    let check = |acl: &PolicySet, body: serde_json::Value| {
        let map = body.as_object().cloned().unwrap_or_default();
        let facts = Facts {
            parameters: Some(&map),
            ..Facts::at(now())
        };
        acl.evaluate("kv/x", Update, &facts).allowed
    };
    assert!(check(&acl, json!({"color": "red"})));
    assert!(check(&acl, json!({"color": "blue", "size": 9})));
    assert!(!check(&acl, json!({"color": "green"})));
    let any = policy(
        "c",
        r#"path "kv/x" { capabilities = ["update"] allowed_parameters = { "color" = [] } }"#,
    );
    let acl = set(&[first, any]);
    assert!(check(&acl, json!({"color": "green"})), "an empty list wins");
}

#[test]
fn wrapping_ttl_bounds_need_a_wrapped_request() {
    let acl = one(
        r#"path "secret/x" { capabilities = ["read"] min_wrapping_ttl = "1m" max_wrapping_ttl = 3600 }"#,
    );
    let with = |ttl: Option<u64>| {
        acl.evaluate(
            "secret/x",
            Read,
            &Facts {
                wrap_ttl: ttl,
                ..Facts::at(now())
            },
        )
        .allowed
    };
    assert!(!with(None));
    assert!(!with(Some(30)));
    assert!(with(Some(60)));
    assert!(with(Some(3600)));
    assert!(!with(Some(3601)));
    assert!(
        Policy::parse(
            "x",
            r#"path "a" { min_wrapping_ttl = "2h" max_wrapping_ttl = "1h" }"#
        )
        .is_err()
    );
}

fn address(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("address"))
}

#[test]
fn cidr_condition_needs_a_matching_source_address() {
    let acl =
        one(r#"path "secret/*" { capabilities = ["read"] cidrs = ["10.0.0.0/8", "192.0.2.7"] }"#);
    let from = |remote_addr: Option<IpAddr>| {
        acl.evaluate(
            "secret/a",
            Read,
            &Facts {
                remote_addr,
                ..Facts::at(now())
            },
        )
    };
    assert!(from(address("10.1.2.3")).allowed);
    assert!(from(address("192.0.2.7")).allowed);
    assert!(from(address("::ffff:10.0.0.1")).allowed);
    let outside = from(address("192.0.2.8"));
    assert!(!outside.allowed);
    let failed = outside.failed_condition.expect("the condition is named");
    assert!(
        failed.contains("192.0.2.8") && failed.contains("cidrs"),
        "{failed}"
    );
    assert!(
        failed.contains("\"test\"") && failed.contains("secret/*"),
        "{failed}"
    );
    assert!(!from(None).allowed, "no address matches no block");
}

#[test]
fn mfa_condition() {
    let acl = one(r#"path "secret/*" { capabilities = ["read"] require_mfa = true }"#);
    let with = |mfa: bool| {
        acl.evaluate(
            "secret/a",
            Read,
            &Facts {
                mfa,
                ..Facts::at(now())
            },
        )
    };
    assert!(with(true).allowed);
    let without = with(false);
    assert!(!without.allowed);
    assert!(
        without
            .failed_condition
            .expect("named")
            .contains("require_mfa")
    );
}

#[test]
fn time_window_condition_uses_the_rule_time_zone() {
    let acl = one(r#"
path "secret/*" {
  capabilities = ["read"]
  not_before = "09:00"
  not_after = "17:30"
  time_zone = "Europe/Berlin"
  days = ["mon", "tue", "wed", "thu", "fri"]
}
"#);
    let at = |instant: &str| {
        acl.evaluate(
            "secret/a",
            Read,
            &Facts::at(instant.parse().expect("timestamp")),
        )
    };
    // Wednesday: 08:30 UTC is 09:30 in Berlin.
    assert!(at("2025-01-15T08:30:00Z").allowed);
    // 07:59 UTC is 08:59 in Berlin.
    let early = at("2025-01-15T07:59:00Z");
    assert!(!early.allowed);
    assert!(
        early
            .failed_condition
            .expect("named")
            .contains("outside the window 09:00-17:30")
    );
    // 16:29 UTC is 17:29, 16:30 UTC is 17:30 (the end is excluded).
    assert!(at("2025-01-15T16:29:59Z").allowed);
    assert!(!at("2025-01-15T16:30:00Z").allowed);
    // Saturday.
    let weekend = at("2025-01-18T10:00:00Z");
    assert!(!weekend.allowed);
    assert!(weekend.failed_condition.expect("named").contains("sat"));
    // A fixed offset and a window across midnight.
    let night = one(
        r#"path "ops/*" { capabilities = ["update"] not_before = "22:00" not_after = "06:00" time_zone = "-05:00" }"#,
    );
    let at_night = |instant: &str| {
        night
            .evaluate(
                "ops/x",
                Update,
                &Facts::at(instant.parse().expect("timestamp")),
            )
            .allowed
    };
    assert!(at_night("2025-01-15T04:00:00Z"), "23:00 at -05:00");
    assert!(at_night("2025-01-15T10:59:00Z"), "05:59 at -05:00");
    assert!(!at_night("2025-01-15T12:00:00Z"), "07:00 at -05:00");
}

#[test]
fn unknown_time_zone_fails_closed() {
    let rules = policy(
        "x",
        r#"path "a" { capabilities = ["read"] days = ["mon"] time_zone = "Mars/Olympus" }"#,
    );
    assert!(rules.check_time_zones(&zones).is_err());
    let acl = set(&[rules]);
    let decision = acl.evaluate("a", Read, &Facts::at(now()));
    assert!(!decision.allowed);
    assert!(
        decision
            .failed_condition
            .expect("named")
            .contains("unknown time zone")
    );
}

#[test]
fn failing_condition_grants_nothing_and_does_not_fall_through() {
    let acl = set(&[
        policy(
            "broad",
            r#"path "secret/*" { capabilities = ["read", "update"] }"#,
        ),
        policy(
            "office",
            r#"path "secret/prod/*" { capabilities = ["read"] cidrs = ["10.0.0.0/8"] }"#,
        ),
        policy(
            "guard",
            r#"path "secret/prod/*" { capabilities = ["deny"] cidrs = ["192.0.2.0/24"] }"#,
        ),
    ]);
    let from = |ip: &str, capability| {
        acl.evaluate(
            "secret/prod/db",
            capability,
            &Facts {
                remote_addr: address(ip),
                ..Facts::at(now())
            },
        )
    };
    assert!(
        from("10.0.0.1", Read).allowed,
        "the office rule counts, the guard's deny does not"
    );
    assert!(
        !from("10.0.0.1", Update).allowed,
        "the more specific pattern decides"
    );
    assert!(
        !from("198.51.100.1", Read).allowed,
        "no fall-through to secret/*"
    );
    let guarded = from("192.0.2.1", Read);
    assert!(
        !guarded.allowed,
        "the guard's deny applies from its network"
    );
    assert_eq!(&*guarded.matched.expect("matched").policy, "guard");
}

#[test]
fn max_ttl_is_the_smallest_of_the_counted_rules() {
    let acl = set(&[
        policy(
            "a",
            r#"path "auth/token/create" { capabilities = ["update"] max_ttl = "8h" }"#,
        ),
        policy(
            "b",
            r#"path "auth/token/create" { capabilities = ["update"] max_ttl = "1h30m" }"#,
        ),
    ]);
    let decision = acl.evaluate("auth/token/create", Update, &Facts::at(now()));
    assert!(decision.allowed);
    assert_eq!(decision.max_ttl, Some(5400));
}

#[test]
fn hcl_and_json_syntax_give_the_same_policy() {
    let hcl = policy(
        "p",
        r#"
path "secret/data/*" {
  capabilities = ["read", "list"]
  allowed_parameters = { "key" = ["a", "b"] }
  required_parameters = ["key"]
}
path "/sys/mounts" { policy = "read" }
"#,
    );
    let json_text = r#"{
  "path": {
    "secret/data/*": {
      "capabilities": ["read", "list"],
      "allowed_parameters": {"key": ["a", "b"]},
      "required_parameters": ["key"]
    },
    "/sys/mounts": {"policy": "read"}
  }
}"#;
    let from_json = policy("p", json_text);
    let strip = |mut policy: Policy| {
        for rule in &mut policy.rules {
            rule.line = 0;
        }
        policy
    };
    assert_eq!(strip(hcl.clone()), strip(from_json));
    assert_eq!(
        hcl.rules[1].path, "sys/mounts",
        "a leading slash is dropped"
    );
}

#[test]
fn json_accepts_lists_of_blocks() {
    let parsed = policy(
        "p",
        r#"{"path": [{"a/*": [{"capabilities": ["read"]}, {"capabilities": ["list"]}]}, {"b": {"policy": "deny"}}]}"#,
    );
    let paths: Vec<&str> = parsed.rules.iter().map(|rule| rule.path.as_str()).collect();
    assert_eq!(paths, ["a/*", "a/*", "b"]);
    let acl = set(&[parsed]);
    assert!(allows(&acl, Read, "a/x") && allows(&acl, List, "a/x"));
}

#[test]
fn strings_take_escapes_and_comments_of_every_kind() {
    let parsed = policy(
        "p",
        "# hash\n// slashes\n/* block\n comment */\npath \"a\\\"b\\u00e9\" { capabilities = [\"read\",] }\n",
    );
    assert_eq!(parsed.rules[0].path, "a\"b\u{e9}");
    assert_eq!(parsed.rules[0].comments.len(), 3);
}

#[test]
fn errors_name_the_line() {
    let unknown = parse_error(
        "path \"a\" {\n  capabilities = [\"read\"]\n}\npath \"b\" {\n  capabilities = [\"reed\"]\n}\n",
    );
    assert_eq!(unknown, "line 5: unknown capability \"reed\"");
    assert!(parse_error("path \"a\" {\n  capabilitys = []\n}").starts_with("line 2: "));
    assert!(
        parse_error("path \"a\" {\n  capabilitys = []\n}").contains("unknown key \"capabilitys\"")
    );
    assert!(parse_error("path \"a\" {\n  mfa_methods = [\"x\"]\n}").contains("not supported"));
    assert!(parse_error("paths \"a\" {}").contains("unknown key \"paths\""));
    assert!(parse_error("path \"a\" {\n  capabilities = [\"read\"\n").starts_with("line 3"));
    assert!(parse_error("path \"a {}").starts_with("line 1, column 6: string is not closed"));
    assert!(parse_error("path \"a\" { policy = \"admin\" }").contains("invalid policy"));
    assert!(parse_error("path \"a/+*\" { policy = \"read\" }").contains("'+*' is forbidden"));
    assert!(
        parse_error("path \"a/*/b\" { policy = \"read\" }").contains("only allowed at the end")
    );
    assert!(
        parse_error("path \"a\" { capabilities = \"read\" }").contains("must be a list of strings")
    );
    assert!(parse_error("path \"a\" { cidrs = [\"10.0.0.0/33\"] }").contains("cidrs"));
    assert!(parse_error("path \"a\" { not_before = \"9am\" }").contains("time of day"));
    assert!(parse_error("path \"a\" { days = [\"someday\"] }").contains("unknown day"));
    assert!(parse_error("path \"a\" { max_ttl = \"8 hours\" }").contains("invalid duration"));
    assert!(parse_error("path \"a\" { time_zone = \"UTC\" }").contains("needs not_before"));
    assert!(
        parse_error("path \"a\" { capabilities = [] capabilities = [] }").contains("set twice")
    );
    assert!(parse_error("{\"path\": {\"a\": {\"capabilities\": [\"read\"]}}").contains("expected"));
    assert!(parse_error("path \"a\" { x = <<EOF\nEOF\n}").contains("heredoc"));
}

#[test]
fn oversize_input_is_refused() {
    let big = format!("# {}\n", "x".repeat(MAX_POLICY_BYTES));
    assert!(parse_error(&big).contains("limit"));
    let many: String = (0..=MAX_PATH_RULES)
        .map(|i| format!("path \"{i}\" {{}}\n"))
        .collect();
    assert!(parse_error(&many).contains("path rules"));
    let deep = format!(
        "path \"a\" {{ allowed_parameters = {{ \"x\" = {}1{} }} }}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(
        parse_error(&deep).contains("nested too deeply") || parse_error(&deep).contains("must be")
    );
}

#[test]
fn durations_follow_vault_syntax() {
    assert_eq!(parse_duration("30m"), Ok(1800));
    assert_eq!(parse_duration("8h"), Ok(28_800));
    assert_eq!(parse_duration("3600"), Ok(3600));
    assert_eq!(parse_duration("1h30m"), Ok(5400));
    assert_eq!(parse_duration("2d"), Ok(172_800));
    assert!(parse_duration("").is_err());
    assert!(parse_duration("h").is_err());
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("99999999999999h").is_err());
}

#[test]
fn a_pattern_that_keeps_a_leading_slash_formats_back_to_itself() {
    // Parsing drops one leading slash, so `//x` is the pattern `/x`; formatting must not turn
    // it into `x` (found by the policy_parse fuzz target).
    let parsed = policy("p", r#"path "//x/*" { capabilities = ["read"] }"#);
    assert_eq!(parsed.rules[0].path, "/x/*");
    let formatted = format(&parsed);
    let again = policy("p", &formatted);
    assert_eq!(again.rules[0].path, "/x/*", "{formatted}");
    assert_eq!(format(&again), formatted);
}

#[test]
fn formatter_is_canonical_and_keeps_comments() {
    let text = r#"
# Team A's secrets
path "secret/data/team-a/*" {
    capabilities = [ "read","list" ]   # inline
    allowed_parameters = { "Key" = ["a", 1, true] }
    cidrs = ["10.0.0.0/8"]
    not_before = "09:00"
    time_zone = "Europe/Berlin"
    days = ["mon"]
    max_ttl = "5400"
}
path "sys/*" { policy = "deny" }
// the end
"#;
    let parsed = policy("p", text);
    let formatted = format(&parsed);
    assert_eq!(
        formatted,
        r#"# Team A's secrets
path "secret/data/team-a/*" {
  # inline
  capabilities = ["read", "list"]
  allowed_parameters = {
    "key" = ["a", 1, true]
  }
  cidrs = ["10.0.0.0/8"]
  not_before = "09:00"
  time_zone = "Europe/Berlin"
  days = ["mon"]
  max_ttl = "1h30m"
}

path "sys/*" {
  policy = "deny"
}

// the end
"#
    );
    assert_eq!(format(&policy("p", &formatted)), formatted);
}

fn without_lines(mut policy: Policy) -> Policy {
    for rule in &mut policy.rules {
        rule.line = 0;
    }
    policy
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just("c".to_owned()),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(prop_oneof![4 => segment(), 1 => Just("+".to_owned())], 1..4),
        prop_oneof![Just(""), Just("*"), Just("/*")],
    )
        .prop_map(|(segments, tail)| {
            let mut path = segments.join("/");
            if tail == "*" && path.ends_with('+') {
                path.push('/');
            }
            path.push_str(tail);
            path
        })
}

fn request_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..5).prop_map(|segments| segments.join("/"))
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        Just(Create),
        Just(Read),
        Just(Update),
        Just(Delete),
        Just(List),
        Just(Capability::Sudo),
    ]
}

fn rule() -> impl Strategy<Value = PathRule> {
    (pattern(), proptest::collection::vec(capability(), 0..4))
        .prop_map(|(path, capabilities)| PathRule::new(path, &capabilities))
}

fn rules() -> impl Strategy<Value = Vec<PathRule>> {
    proptest::collection::vec(rule(), 0..6)
}

fn named(name: &str, rules: Vec<PathRule>) -> Policy {
    Policy {
        name: name.into(),
        rules,
        trailing_comments: Vec::new(),
    }
}

fn any_rule() -> impl Strategy<Value = PathRule> {
    (
        rule(),
        any::<bool>(),
        proptest::option::of(0u64..100_000),
        proptest::collection::vec("[a-z]{1,4}", 0..3),
        proptest::option::of(("[a-z]{1,3}", proptest::collection::vec("[a-z*]{0,3}", 0..3))),
        "[ -~]{0,12}",
    )
        .prop_map(|(mut rule, mfa, ttl, required, allowed, comment)| {
            rule.conditions.require_mfa = mfa;
            rule.conditions.max_ttl = ttl;
            rule.required_parameters = required;
            rule.allowed_parameters = allowed.map(|(key, values)| {
                [(
                    key,
                    values.into_iter().map(serde_json::Value::String).collect(),
                )]
                .into_iter()
                .collect()
            });
            if !comment.is_empty() {
                rule.comment = Some(comment);
            }
            rule
        })
}

proptest! {
    #[test]
    fn adding_a_deny_rule_never_widens_access(
        base in rules(),
        deny_path in pattern(),
        path in request_path(),
        capability in capability(),
    ) {
        let before = set(&[named("p", base.clone())]);
        let mut with_deny = base;
        with_deny.push(PathRule::new(deny_path, &[Capability::Deny]));
        let after = set(&[named("p", with_deny)]);
        let facts = Facts::at(now());
        prop_assert!(!after.evaluate(&path, capability, &facts).allowed
            || before.evaluate(&path, capability, &facts).allowed);
    }

    #[test]
    fn adding_a_policy_narrows_only_through_deny_or_a_more_specific_pattern(
        base in rules(),
        extra in rules(),
        path in request_path(),
        capability in capability(),
    ) {
        let before = set(&[named("a", base.clone())]);
        let after = set(&[named("a", base), named("b", extra.clone())]);
        let facts = Facts::at(now());
        let old = before.evaluate(&path, capability, &facts);
        let new = after.evaluate(&path, capability, &facts);
        if old.allowed && !new.allowed {
            let old_pattern = old.matched.map(|m| m.pattern);
            let new_pattern = new.matched.map(|m| m.pattern);
            let denies = extra.iter().any(|rule| rule.effective_capabilities() & Capability::Deny.bit() != 0);
            prop_assert!(denies || old_pattern != new_pattern,
                "narrowed without deny at the same pattern {old_pattern:?}");
        }
    }

    #[test]
    fn a_rule_whose_condition_fails_never_widens_access(
        base in rules(),
        conditional in rule(),
        path in request_path(),
        capability in capability(),
    ) {
        let before = set(&[named("p", base.clone())]);
        let mut rule = conditional;
        rule.conditions.cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
        let after = set(&[named("p", base), named("q", vec![rule])]);
        let facts = Facts {
            remote_addr: Some("192.0.2.1".parse().expect("address")),
            ..Facts::at(now())
        };
        prop_assert!(!after.evaluate(&path, capability, &facts).allowed
            || before.evaluate(&path, capability, &facts).allowed);
    }

    #[test]
    fn plus_matches_exactly_one_segment(
        prefix in proptest::collection::vec(segment(), 0..3),
        middle in proptest::collection::vec(segment(), 0..3),
        suffix in segment(),
    ) {
        let mut parts = prefix.clone();
        parts.push("+".into());
        parts.push(suffix.clone());
        let acl = one(&format!("path {:?} {{ capabilities = [\"read\"] }}", parts.join("/")));
        let mut request = prefix;
        request.extend(middle.iter().cloned());
        request.push(suffix);
        let path = request.join("/");
        prop_assert_eq!(allows(&acl, Read, &path), middle.len() == 1, "{}", path);
    }

    #[test]
    fn star_is_a_plain_prefix_match(glob in "[a-c/]{0,6}", path in "[a-c/]{1,10}") {
        let acl = one(&format!("path {:?} {{ capabilities = [\"read\"] }}", format!("{glob}*")));
        // One leading slash of a pattern is dropped, as are the request's.
        let glob = glob.strip_prefix('/').unwrap_or(&glob);
        prop_assert_eq!(allows(&acl, Read, &path), path.trim_start_matches('/').starts_with(glob));
    }

    #[test]
    fn format_then_parse_gives_the_policy_back(rules in proptest::collection::vec(any_rule(), 0..5)) {
        let policy = named("p", rules);
        let text = format(&policy);
        let parsed = Policy::parse("p", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(without_lines(parsed.clone()), policy);
        prop_assert_eq!(format(&parsed), text);
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Policy::parse("p", &text);
    }

    #[test]
    fn parsing_hcl_like_noise_never_panics(text in "[a-z\"{}\\[\\]=,#/*+ \n0-9.-]{0,200}") {
        if let Ok(policy) = Policy::parse("p", &text) {
            let _ = set(&[policy]);
        }
    }
}

#[test]
fn mount_access_sees_any_grant_below_the_mount() {
    let acl = one(r#"
path "secret/data/app" { capabilities = ["read"] }
path "team/*" { capabilities = ["list"] }
path "ops/+/config" { capabilities = ["read"] }
path "shut/*" { capabilities = ["deny"] }
path "sca*" { capabilities = ["scan"] }
"#);
    assert!(acl.has_mount_access("secret/"));
    assert!(acl.has_mount_access("team/"));
    assert!(acl.has_mount_access("ops/"));
    assert!(acl.has_mount_access("ops/x/"));
    assert!(!acl.has_mount_access("shut/"));
    assert!(!acl.has_mount_access("other/"));
    assert!(!acl.has_mount_access("scan/"), "scan alone shows nothing");
    assert!(one(r#"path "*" { capabilities = ["read"] }"#).has_mount_access("anything/"));
    assert!(PolicySet::root().has_mount_access("x/"));
}
