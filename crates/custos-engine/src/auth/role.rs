//! What the auth methods' roles (and userpass's users) share: the rule for role names, and how
//! a token their login issued is renewed.

use crate::EngineError;
use crate::auth::token_fields::TokenFields;
use crate::logical::{LoginRenewal, RenewalLimits, equivalent_policies};

/// The longest role name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 512;

/// Checks a role name as Vault allows them: word characters, `-`, `.` and `@`, starting and
/// ending with a word character. `kind` names the role in the error (`role`, `certificate
/// role`).
pub(crate) fn check_role_name(kind: &str, name: &str) -> Result<(), EngineError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .all(|c| word(c) || matches!(c, '-' | '.' | '@'))
        && name.starts_with(word)
        && name.ends_with(word);
    if valid {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(format!(
            "invalid {kind} name {name:?}: use at most {MAX_NAME_BYTES} letters, digits, '_', '-', '.' and '@', starting and ending with a letter, digit or '_'"
        )))
    }
}

/// What the login recorded under `key` in its token's metadata (the role or user a renewal
/// looks up), or `""` when it recorded nothing.
pub(crate) fn login_metadata<'a>(login: &'a LoginRenewal, key: &str) -> &'a str {
    login
        .metadata
        .get(key)
        .map(String::as_str)
        .unwrap_or_default()
}

/// Refuses to renew a token whose role's policies changed since the login (compared as
/// Vault does, ignoring `default`).
pub(crate) fn check_same_policies(
    token: &TokenFields,
    login: &LoginRenewal,
) -> Result<(), EngineError> {
    if equivalent_policies(&token.policies, &login.policies) {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(
            "policies have changed, not renewing".into(),
        ))
    }
}

/// A renewal follows the role's current TTLs, not those of the login.
pub(crate) fn current_limits(token: &TokenFields) -> RenewalLimits {
    RenewalLimits {
        ttl: token.ttl,
        max_ttl: token.max_ttl,
        period: token.period,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn login(policies: &[&str]) -> LoginRenewal {
        LoginRenewal {
            path: "login".into(),
            metadata: BTreeMap::from([("role_name".to_owned(), "web".to_owned())]),
            policies: policies.iter().map(|policy| (*policy).to_owned()).collect(),
        }
    }

    #[test]
    fn role_names_follow_vaults_rule() {
        for good in ["web", "a", "team.web-1@corp", "_x_"] {
            assert!(check_role_name("role", good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for bad in ["", "-web", "web.", "a b", "a/b", long.as_str()] {
            assert!(
                matches!(
                    check_role_name("role", bad),
                    Err(EngineError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
        let Err(EngineError::InvalidRequest(message)) = check_role_name("certificate role", "a/b")
        else {
            panic!("a/b should be refused");
        };
        assert!(
            message.starts_with("invalid certificate role name \"a/b\""),
            "{message}"
        );
    }

    #[test]
    fn renewal_reads_the_login_and_the_roles_current_settings() {
        let login = login(&["default", "dev"]);
        assert_eq!(login_metadata(&login, "role_name"), "web");
        assert_eq!(login_metadata(&login, "cert_name"), "");

        let mut token = TokenFields {
            policies: vec!["dev".into()],
            ttl: 60,
            max_ttl: 120,
            period: 30,
            ..TokenFields::default()
        };
        assert!(check_same_policies(&token, &login).is_ok());
        assert_eq!(
            current_limits(&token),
            RenewalLimits {
                ttl: 60,
                max_ttl: 120,
                period: 30
            }
        );

        token.policies.push("ops".into());
        assert!(matches!(
            check_same_policies(&token, &login),
            Err(EngineError::InvalidRequest(message)) if message == "policies have changed, not renewing"
        ));
    }
}
