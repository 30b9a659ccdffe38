//! Unit tests of `custos apikey`: flags into request bodies, and the tables.

use clap::Parser as _;
use serde_json::{Map, Value, json};

use super::*;

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: ApikeyArgs,
}

fn parse(args: &[&str]) -> ApikeyArgs {
    let mut all = vec!["apikey"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all) {
        Ok(cli) => cli.args,
        Err(error) => panic!("{args:?}: {error}"),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn key_flags_become_the_create_body() {
    let args = parse(&[
        "create",
        "acme",
        "--name",
        "ci",
        "--owner-id",
        "team-a",
        "--meta-json",
        r#"{"plan":"pro","seats":3}"#,
        "--meta",
        "region=eu",
        "--permission",
        "docs.read,docs.write",
        "--permission",
        "billing.read",
        "--role",
        "admin",
        "--ttl",
        "720h",
        "--remaining",
        "100",
        "--refill",
        "monthly:15:100",
        "--ratelimit",
        "requests=100/60s",
        "--ratelimit",
        "tokens=5000/3600",
        "--environment",
        "live",
    ]);
    let ApikeyCommand::Create(create) = args.command else {
        panic!("not create");
    };
    assert_eq!(create.keyring, "acme");
    assert!(!create.disabled);
    assert_eq!(
        Value::Object(create.attributes.body().unwrap()),
        json!({
            "name": "ci",
            "owner_id": "team-a",
            "meta": {"plan": "pro", "seats": 3, "region": "eu"},
            "permissions": ["docs.read", "docs.write", "billing.read"],
            "roles": ["admin"],
            "ttl": "720h",
            "remaining": 100,
            "refill": {"interval": "monthly", "day": 15, "amount": 100},
            "ratelimits": [
                {"name": "requests", "limit": 100, "duration": "60s"},
                {"name": "tokens", "limit": 5000, "duration": 3600},
            ],
            "environment": "live",
        })
    );
}

#[test]
fn update_sends_only_what_is_given_and_unlimited_is_null() {
    let args = parse(&[
        "update",
        "acme",
        "key_abc",
        "--remaining",
        "unlimited",
        "--expires-at",
        "1800000000",
        "--disabled",
    ]);
    let ApikeyCommand::Update(update) = args.command else {
        panic!("not update");
    };
    assert_eq!(
        Value::Object(update.attributes.body().unwrap()),
        json!({"remaining": null, "expires_at": 1_800_000_000})
    );
    assert!(update.disabled);
    let args = parse(&[
        "update",
        "acme",
        "key_abc",
        "--expires-at",
        "2027-01-01T00:00:00Z",
    ]);
    let ApikeyCommand::Update(update) = args.command else {
        panic!("not update");
    };
    assert_eq!(
        update.attributes.body().unwrap()["expires_at"],
        json!("2027-01-01T00:00:00Z")
    );
}

#[test]
fn keyring_flags_become_the_keyring_body() {
    let args = parse(&[
        "--mount",
        "keys",
        "keyring",
        "create",
        "acme",
        "--prefix",
        "acme_live",
        "--permission",
        "docs.read",
        "--role",
        "admin=docs.read, docs.write",
        "--role",
        "viewer=docs.read",
        "--ratelimit",
        "requests=10/1s",
        "--default-ttl",
        "0",
    ]);
    assert_eq!(args.mount, "keys");
    let ApikeyCommand::Keyring {
        command: KeyringCommand::Create(create),
    } = args.command
    else {
        panic!("not keyring create");
    };
    assert_eq!(
        Value::Object(create.body()),
        json!({
            "prefix": "acme_live",
            "default_ttl": "0",
            "permissions": ["docs.read"],
            "roles": {"admin": ["docs.read", "docs.write"], "viewer": ["docs.read"]},
            "ratelimits": [{"name": "requests", "limit": 10, "duration": "1s"}],
        })
    );
}

#[test]
fn malformed_flag_values_are_refused_with_the_expected_shape() {
    for (flag, value, expected) in [
        ("--ratelimit", "requests=100", "NAME=LIMIT/DURATION"),
        ("--ratelimit", "requests=x/60s", "NAME=LIMIT/DURATION"),
        ("--ratelimit", "requests=0/60s", "at least 1"),
        ("--ratelimit", "=1/60s", "NAME=LIMIT/DURATION"),
        ("--refill", "weekly:3", "daily:AMOUNT"),
        ("--refill", "monthly:32:100", "1 to 31"),
        ("--refill", "daily:-1", "daily:AMOUNT"),
        ("--remaining", "many", "unlimited"),
    ] {
        let error = Cli::try_parse_from(["apikey", "create", "acme", flag, value])
            .err()
            .unwrap_or_else(|| panic!("{flag} {value} was accepted"))
            .to_string();
        assert!(error.contains(expected), "{flag} {value}: {error}");
    }
    let args = parse(&["create", "acme", "--meta-json", "[1]"]);
    let ApikeyCommand::Create(create) = args.command else {
        panic!("not create");
    };
    assert!(create.attributes.body().is_err());
    let args = parse(&["create", "acme", "--meta", "novalue"]);
    let ApikeyCommand::Create(create) = args.command else {
        panic!("not create");
    };
    assert!(create.attributes.body().is_err());
    assert!(
        Cli::try_parse_from(["apikey", "create", "a", "--ttl", "1h", "--expires-at", "1"]).is_err()
    );
}

#[test]
fn verify_reads_the_key_from_standard_input_and_sends_the_query() {
    let args = parse(&[
        "verify",
        "-",
        "--permissions",
        "docs.read AND (billing.read OR admin)",
        "--cost",
        "0",
        "--ratelimit",
        "requests",
        "--ratelimit",
        "tokens=20",
        "--keyring",
        "acme",
    ]);
    let ApikeyCommand::Verify(verify) = args.command else {
        panic!("not verify");
    };
    let body = verify_body(&verify, &mut "acme_live_secret\n".as_bytes()).unwrap();
    assert_eq!(
        body,
        json!({
            "key": "acme_live_secret",
            "permissions": "docs.read AND (billing.read OR admin)",
            "cost": 0,
            "ratelimits": [{"name": "requests"}, {"name": "tokens", "cost": 20}],
            "keyring": "acme",
        })
    );
    assert!(verify_body(&verify, &mut "\n".as_bytes()).is_err());
}

#[test]
fn names_that_would_change_the_path_are_refused() {
    let paths = Paths::new("/apikeys/").unwrap();
    assert_eq!(paths.keyring("acme").unwrap(), "apikeys/keyrings/acme");
    assert_eq!(paths.verify(), "apikeys/verify");
    let key = KeyRef {
        keyring: "acme".into(),
        key_id: "key_1".into(),
    };
    assert_eq!(paths.key(&key).unwrap(), "apikeys/keyrings/acme/keys/key_1");
    for bad in ["", "..", "a/b"] {
        assert!(paths.keyring(bad).is_err(), "{bad:?}");
    }
    assert!(Paths::new("").is_err());
    assert!(Paths::new("a/../b").is_err());
    assert_eq!(paths.keyring("a b").unwrap(), "apikeys/keyrings/a%20b");
}

#[test]
fn a_new_key_table_puts_the_key_first_and_lists_keys_in_columns() {
    let data = object(json!({
        "created_at": "2026-11-28T12:00:00Z", "key_id": "key_1", "key": "acme_live_xyz",
        "zeta": 1, "hint": "acme_live_…3f",
    }));
    let rows = ordered_rows(&data);
    let names: Vec<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(names, ["key", "key_id", "hint", "created_at", "zeta"]);

    let info = object(json!({
        "key_1": {"name": "ci", "owner_id": "team-a", "hint": "acme_…3f", "enabled": true, "expires_at": null},
        "key_22": {"name": "deploy", "owner_id": null, "hint": "acme_…9z", "enabled": false},
    }));
    let text = keys_table(&[json!("key_1"), json!("key_22")], &info);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("KEY ID   NAME"), "{text}");
    assert!(lines[1].starts_with("key_1    ci"), "{text}");
    assert!(lines[1].ends_with("true      -"), "{text}");
    assert!(lines[2].contains("deploy   -"), "{text}");
    assert_eq!(keys_table(&[], &Map::new()), "No keys found\n");
}

#[test]
fn verify_tables_start_with_the_verdict() {
    let text = verify_table(&object(json!({
        "key_id": "key_1", "code": "INSUFFICIENT_PERMISSIONS", "valid": false, "remaining": null,
    })));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[2].starts_with("valid "), "{text}");
    assert!(lines[3].ends_with("INSUFFICIENT_PERMISSIONS"), "{text}");
    assert!(lines[4].starts_with("key_id "), "{text}");
}

#[test]
fn analytics_tables_have_a_column_per_code_seen_and_the_top_keys() {
    let data = object(json!({
        "keyring": "acme", "group_by": "hour",
        "since": "2026-11-28T00:00:00Z", "until": "2026-11-28T02:00:00Z",
        "buckets": [
            {"time": "2026-11-28T00:00:00Z", "total": 3, "VALID": 2, "DISABLED": 1},
            {"time": "2026-11-28T01:00:00Z", "total": 1, "NOT_FOUND": 1},
        ],
        "totals": {"VALID": 2, "DISABLED": 1, "NOT_FOUND": 1},
        "top_keys": [{"key_id": "key_1", "name": "ci", "total": 3}],
        "last_used_at": "2026-11-28T00:59:00Z",
    }));
    let text = analytics_table(&data);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Keyring acme from 2026-11-28T00:00:00Z"),
        "{text}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["TIME", "TOTAL", "VALID", "NOT_FOUND", "DISABLED"],
        "{text}"
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["2026-11-28T00:00:00Z", "3", "2", "0", "1"],
        "{text}"
    );
    assert_eq!(
        lines[5].split_whitespace().collect::<Vec<_>>(),
        ["all", "4", "2", "1", "1"],
        "{text}"
    );
    assert!(
        text.contains("Top keys\nKEY ID   NAME   TOTAL\nkey_1    ci     3\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Last used at 2026-11-28T00:59:00Z\n"),
        "{text}"
    );
    let empty = analytics_table(&object(
        json!({"keyring": "acme", "buckets": [], "totals": {}}),
    ));
    assert!(empty.contains("No verifications in this window"), "{empty}");
}
