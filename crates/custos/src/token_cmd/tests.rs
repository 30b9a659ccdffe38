//! Tests of `custos token`: argument parsing and request bodies.

use clap::Parser as _;

use super::*;

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(subcommand)]
    command: TokenCommand,
}

fn parse(args: &[&str]) -> TokenCommand {
    let mut argv = vec!["token"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("parse").command
}

#[test]
fn create_flags_become_the_api_body() {
    let TokenCommand::Create(create) = parse(&[
        "create",
        "--policy",
        "dev",
        "--policy=ops,audit",
        "--ttl",
        "1h",
        "--period",
        "24h",
        "--use-limit",
        "3",
        "--display-name",
        "ci",
        "--bound-cidr",
        "10.0.0.0/8",
        "--metadata",
        "team=platform",
        "--no-default-policy",
    ]) else {
        panic!("not create");
    };
    let body = Value::Object(create_body(&create).expect("body"));
    assert_eq!(
        body,
        json!({
            "policies": ["dev", "ops", "audit"],
            "ttl": "1h",
            "period": "24h",
            "num_uses": 3,
            "display_name": "ci",
            "bound_cidrs": ["10.0.0.0/8"],
            "meta": {"team": "platform"},
            "no_default_policy": true,
        })
    );
    let TokenCommand::Create(bare) = parse(&["create"]) else {
        panic!("not create");
    };
    assert_eq!(create_body(&bare).expect("body"), Map::new());
    let TokenCommand::Create(bad) = parse(&["create", "--metadata", "novalue"]) else {
        panic!("not create");
    };
    assert!(create_body(&bad).is_err());
}

#[test]
fn revoke_picks_the_endpoint() {
    let token = || Some("custos_token_x".to_owned());
    assert_eq!(
        revoke_request(token(), None, false, None).expect("revoke"),
        (
            "auth/token/revoke",
            Some(json!({"token": "custos_token_x"}))
        )
    );
    assert_eq!(
        revoke_request(token(), None, false, Some("orphan"))
            .expect("revoke")
            .0,
        "auth/token/revoke-orphan"
    );
    assert_eq!(
        revoke_request(None, Some("acc".into()), false, None).expect("revoke"),
        (
            "auth/token/revoke-accessor",
            Some(json!({"accessor": "acc"}))
        )
    );
    assert_eq!(
        revoke_request(None, None, true, None).expect("revoke"),
        ("auth/token/revoke-self", None)
    );
    assert!(revoke_request(None, None, false, None).is_err());
    assert!(revoke_request(None, Some("acc".into()), false, Some("orphan")).is_err());
    // Clap refuses contradictions before any request; `--token` stays the connection's flag.
    let TokenCommand::Lookup { target, .. } = parse(&["lookup", "custos_token_x"]) else {
        panic!("not lookup");
    };
    assert_eq!(target.as_deref(), Some("custos_token_x"));
    let mut argv = vec!["token", "revoke", "--self", "custos_token_x"];
    assert!(Cli::try_parse_from(&argv).is_err());
    argv = vec!["token", "revoke", "--mode", "path", "custos_token_x"];
    assert!(Cli::try_parse_from(&argv).is_err());
}

#[test]
fn capabilities_take_an_optional_token_and_read_either_answer_shape() {
    let TokenCommand::Capabilities { args } = parse(&["capabilities", "secret/data/app"]) else {
        panic!("not capabilities");
    };
    assert_eq!(args, ["secret/data/app"]);
    let TokenCommand::Capabilities { args } = parse(&["capabilities", "tok", "secret/x"]) else {
        panic!("not capabilities");
    };
    assert_eq!(args, ["tok", "secret/x"]);
    assert!(Cli::try_parse_from(["token", "capabilities"]).is_err());

    let answer = json!({
        "capabilities": ["update", "read"],
        "secret/x": ["update", "read"],
        "data": {"capabilities": ["update", "read"], "secret/x": ["update", "read"]},
    });
    assert_eq!(capabilities_of(&answer, "secret/x"), ["read", "update"]);
    assert_eq!(
        capabilities_of(&json!({"secret/x": ["deny"]}), "secret/x"),
        ["deny"]
    );
    assert!(capabilities_of(&Value::Null, "secret/x").is_empty());
}
