//! Tests of `custos read|write|list|delete`: arguments and output.

use serde_json::json;

use super::*;

#[test]
fn paths_are_cleaned_and_checked() {
    assert_eq!(
        clean("/v1/secret/data/app").expect("path"),
        "secret/data/app"
    );
    assert_eq!(clean("sys/mounts/").expect("path"), "sys/mounts/");
    assert!(clean("").is_err());
    assert!(clean("/").is_err());
    assert!(clean("secret/../sys").is_err());
}

#[test]
fn query_parameters_are_encoded() {
    let params = vec!["version=2".to_owned(), "a b=c/d&e".to_owned()];
    assert_eq!(
        query_string(&params).expect("query"),
        "version=2&a%20b=c%2Fd%26e"
    );
    assert!(query_string(&["novalue".to_owned()]).is_err());
    assert!(query_string(&["=x".to_owned()]).is_err());
}

#[test]
fn durations_read_as_vault_shows_them() {
    assert_eq!(human_duration(0), "∞");
    assert_eq!(human_duration(45), "45s");
    assert_eq!(human_duration(3600), "1h");
    assert_eq!(human_duration(5400), "1h30m");
    assert_eq!(human_duration(2_764_800), "768h");
    assert_eq!(human_duration(3661), "1h1m1s");
}

#[test]
fn auth_blocks_have_vaults_rows() {
    let auth = json!({
        "client_token": "custos_token_x",
        "accessor": "acc",
        "policies": ["default", "dev"],
        "token_policies": ["default", "dev"],
        "metadata": {"username": "alice"},
        "lease_duration": 3600,
        "renewable": true,
    });
    let rows = auth_rows(auth.as_object().expect("object"));
    let keys: Vec<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "token",
            "token_accessor",
            "token_duration",
            "token_renewable",
            "token_policies",
            "identity_policies",
            "policies",
            "token_meta_username",
        ]
    );
    assert_eq!(rows[0].1, "custos_token_x");
    assert_eq!(rows[2].1, "1h");
    assert_eq!(rows[3].1, "true");
    assert_eq!(rows[4].1, r#"["default","dev"]"#);
    assert_eq!(rows[5].1, "[]");
    assert_eq!(rows[7].1, "alice");
}

#[test]
fn data_rows_show_a_lease_only_when_there_is_one() {
    let body = json!({"lease_duration": 0, "data": {"b": 2, "a": "x"}});
    assert_eq!(
        data_rows(&body),
        [
            ("a".to_owned(), "x".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ]
    );
    let leased = json!({"lease_id": "id", "lease_duration": 60, "renewable": true, "data": {}});
    let rows = data_rows(&leased);
    assert_eq!(rows[0], ("lease_id".to_owned(), "id".to_owned()));
    assert_eq!(rows[1], ("lease_duration".to_owned(), "1m".to_owned()));
}
