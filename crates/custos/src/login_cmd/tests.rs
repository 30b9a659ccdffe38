//! Tests of `custos login`: methods, their key=value arguments and what is stored.

use super::*;

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn no_prompt(_: &str) -> anyhow::Result<Zeroizing<String>> {
    panic!("no prompt expected")
}

#[test]
fn userpass_logs_in_at_its_user_and_prompts_for_a_missing_password() {
    let creds = credentials(&args(&["username=alice", "password=s3cret", "totp=123456"]))
        .expect("credentials");
    let (path, body) = login_request("userpass", None, creds, &mut no_prompt).expect("request");
    assert_eq!(path, "auth/userpass/login/alice");
    assert_eq!(
        Value::Object(body),
        json!({"password": "s3cret", "totp": "123456"})
    );

    let mut prompted = Vec::new();
    let mut prompt = |text: &str| {
        prompted.push(text.to_owned());
        Ok(Zeroizing::new("typed".to_owned()))
    };
    let creds = credentials(&args(&["username=bob smith"])).expect("credentials");
    let (path, body) =
        login_request("userpass", Some("auth/people/"), creds, &mut prompt).expect("request");
    assert_eq!(path, "auth/people/login/bob%20smith");
    assert_eq!(Value::Object(body), json!({"password": "typed"}));
    assert_eq!(prompted, ["Password (will be hidden): "]);

    let creds = credentials(&args(&["password=x"])).expect("credentials");
    assert!(login_request("userpass", None, creds, &mut no_prompt).is_err());
}

#[test]
fn approle_and_cert_post_their_credentials() {
    let creds = credentials(&args(&["role_id=r", "secret_id=s"])).expect("credentials");
    let (path, body) = login_request("approle", None, creds, &mut no_prompt).expect("request");
    assert_eq!(path, "auth/approle/login");
    assert_eq!(
        Value::Object(body),
        json!({"role_id": "r", "secret_id": "s"})
    );
    assert!(login_request("approle", None, Map::new(), &mut no_prompt).is_err());

    let (path, body) =
        login_request("cert", Some("mtls"), Map::new(), &mut no_prompt).expect("request");
    assert_eq!(path, "auth/mtls/login");
    assert!(body.is_empty());
    let creds = credentials(&args(&["name=web"])).expect("credentials");
    let (_, body) = login_request("cert", None, creds, &mut no_prompt).expect("request");
    assert_eq!(Value::Object(body), json!({"name": "web"}));
}

#[test]
fn bad_credentials_and_methods_are_refused() {
    assert!(credentials(&args(&["novalue"])).is_err());
    assert!(credentials(&args(&["=x"])).is_err());
    assert!(credentials(&args(&["a=1", "a=2"])).is_err());
    // Values may contain `=`.
    let creds = credentials(&args(&["password=a=b"])).expect("credentials");
    assert_eq!(creds["password"], "a=b");
    assert!(login_request("ldap", None, Map::new(), &mut no_prompt).is_err());
    assert!(login_request("cert", Some("../sys"), Map::new(), &mut no_prompt).is_err());
}

#[test]
fn a_token_login_is_shown_as_an_auth_block() {
    let lookup = json!({"data": {
        "accessor": "acc", "policies": ["root"], "ttl": 0, "renewable": false, "meta": null,
    }});
    let auth = auth_from_lookup("custos_token_x", &lookup);
    assert_eq!(auth["client_token"], "custos_token_x");
    assert_eq!(auth["accessor"], "acc");
    assert_eq!(auth["token_policies"], json!(["root"]));
    assert_eq!(auth["lease_duration"], 0);
}
