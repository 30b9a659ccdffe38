//! Unit tests of turning secrets into environment variables.

use serde_json::json;

use super::variables;

fn secret(
    path: &str,
    data: serde_json::Value,
) -> (String, serde_json::Map<String, serde_json::Value>) {
    let serde_json::Value::Object(map) = data else {
        panic!("not an object");
    };
    (path.to_owned(), map)
}

#[test]
fn keys_become_variables() {
    let secrets = [secret(
        "secret/app",
        json!({"db_password": "pw", "port": 5432, "tags": ["a"]}),
    )];
    let vars = variables(&secrets, "app_", true, false).unwrap();
    let pairs: Vec<(&str, &str)> = vars
        .iter()
        .map(|(name, variable)| (name.as_str(), variable.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("APP_DB_PASSWORD", "pw"),
            ("APP_PORT", "5432"),
            ("APP_TAGS", "[\"a\"]")
        ]
    );
}

#[test]
fn later_secrets_win_unless_no_override() {
    let secrets = [
        secret("secret/a", json!({"KEY": "first"})),
        secret("secret/b", json!({"KEY": "second"})),
    ];
    let vars = variables(&secrets, "", false, false).unwrap();
    assert_eq!(vars["KEY"].value, "second");
    let error = variables(&secrets, "", false, true).err().unwrap();
    assert!(
        error.to_string().contains("secret/a and secret/b"),
        "{error}"
    );
}

#[test]
fn invalid_names_are_refused() {
    let secrets = [secret("secret/a", json!({"my-key": "x"}))];
    let error = variables(&secrets, "", false, false).err().unwrap();
    assert!(error.to_string().contains("\"my-key\""), "{error}");
    let secrets = [secret("secret/a", json!({"1x": "x"}))];
    assert!(variables(&secrets, "", false, false).is_err());
    assert!(variables(&secrets, "P_", false, false).is_ok());
}
