//! Certificate auth tests, with a test PKI made by rcgen.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use serde_json::{Value, json};

use super::{CertAuth, NO_CERTIFICATE, NO_MATCH, UNTRUSTED, glob, key_ids};
use crate::auth::approle::tests::{Harness, data_of, grant_of, invalid, request};
use crate::logical::{LogicalBackend, LogicalResponse, Operation};
use crate::{ClientCert, EngineError};

pub(crate) type Ca = CertifiedIssuer<'static, KeyPair>;

pub(crate) fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

fn intermediate(name: &str, parent: &Ca) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::signed_by(params, KeyPair::generate().expect("key"), parent)
        .expect("intermediate")
}

fn client_params(common_name: &str, dns_names: &[&str]) -> CertificateParams {
    let names: Vec<String> = dns_names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A client certificate (DER) issued by `issuer`.
fn issue(params: &CertificateParams, issuer: &Ca) -> Vec<u8> {
    params
        .signed_by(&KeyPair::generate().expect("key"), issuer)
        .expect("client certificate")
        .der()
        .to_vec()
}

fn client(common_name: &str, dns_names: &[&str], issuer: &Ca) -> Vec<u8> {
    issue(&client_params(common_name, dns_names), issuer)
}

async fn call(
    harness: &Harness,
    operation: Operation,
    path: &str,
    body: Value,
) -> Result<Option<LogicalResponse>, EngineError> {
    CertAuth
        .handle(&harness.ctx(), request(operation, path, body))
        .await
}

async fn write_role(harness: &Harness, name: &str, body: Value) {
    let answer = call(harness, Operation::Update, &format!("certs/{name}"), body)
        .await
        .expect("role written");
    assert_eq!(answer, Some(LogicalResponse::no_content()));
}

/// Logs in presenting `chain` (leaf first), optionally naming a role.
async fn login(
    harness: &Harness,
    chain: Option<Vec<Vec<u8>>>,
    name: Option<&str>,
) -> Result<Option<LogicalResponse>, EngineError> {
    let body = match name {
        Some(name) => json!({"name": name}),
        None => Value::Null,
    };
    let mut login = request(Operation::Update, "login", body);
    login.connection.client_cert = chain.and_then(ClientCert::from_chain);
    CertAuth.handle(&harness.ctx(), login).await
}

#[tokio::test]
async fn trusted_certificate_logs_in_with_a_token_bound_to_it() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    write_role(
        &harness,
        "web",
        json!({"certificate": root.pem(), "token_policies": "web", "token_ttl": "1h"}),
    )
    .await;
    let leaf = client("app.example.com", &["app.example.com"], &root);
    let grant = grant_of(login(&harness, Some(vec![leaf.clone()]), None).await);
    assert_eq!(grant.policies, ["web"]);
    assert_eq!(grant.ttl, 3600);
    assert_eq!(grant.display_name, "cert-web");
    assert_eq!(
        grant.bound_cert_fingerprint,
        Some(custos_crypto::sha256_hex(&leaf))
    );
    assert_eq!(grant.metadata["cert_name"], "web");
    assert_eq!(grant.metadata["common_name"], "app.example.com");
    let serial = &grant.metadata["serial_number"];
    assert!(
        !serial.is_empty() && serial.chars().all(|c| c.is_ascii_digit()),
        "{serial}"
    );
    // rcgen leaves the subject key id out of end-entity certificates; the authority key id
    // names the CA's subject key id, printed as Vault prints it.
    assert_eq!(grant.metadata["subject_key_id"], "");
    let (_, root_certificate) =
        x509_parser::parse_x509_certificate(root.der()).expect("CA certificate");
    let (root_subject_key_id, _) = key_ids(&root_certificate);
    let authority_key_id = &grant.metadata["authority_key_id"];
    assert_eq!(authority_key_id, &root_subject_key_id);
    assert!(
        authority_key_id.len() > 2
            && authority_key_id.split(':').all(|pair| pair.len() == 2
                && pair
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())),
        "{authority_key_id}"
    );
    assert_eq!(CertAuth.unauthenticated_paths(), ["login"]);
}

#[tokio::test]
async fn certificates_from_another_ca_are_refused() {
    let harness = Harness::at("auth/cert/");
    let trusted = ca("trusted CA");
    let rogue = ca("trusted CA");
    write_role(&harness, "web", json!({"certificate": trusted.pem()})).await;
    let leaf = client("app.example.com", &[], &rogue);
    assert_eq!(
        invalid(login(&harness, Some(vec![leaf]), None).await),
        UNTRUSTED
    );
}

#[tokio::test]
async fn no_certificate_or_no_role_is_refused() {
    let harness = Harness::at("auth/cert/");
    assert_eq!(invalid(login(&harness, None, None).await), NO_CERTIFICATE);
    let root = ca("test CA");
    let leaf = client("app", &[], &root);
    // No role trusts anything yet.
    assert_eq!(
        invalid(login(&harness, Some(vec![leaf.clone()]), None).await),
        UNTRUSTED
    );
    // A chain whose leaf is not a certificate.
    assert_eq!(
        invalid(login(&harness, Some(vec![b"garbage".to_vec()]), None).await),
        UNTRUSTED
    );
    let bad_name = CertAuth
        .handle(
            &harness.ctx(),
            request(Operation::Update, "login", json!({"name": 3})),
        )
        .await;
    assert_eq!(invalid(bad_name), "name must be a string");
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    write_role(&harness, "web", json!({"certificate": root.pem()})).await;
    let mut expired = client_params("app", &[]);
    expired.not_before = date_time_ymd(2019, 1, 1);
    expired.not_after = date_time_ymd(2020, 1, 1);
    assert_eq!(
        invalid(login(&harness, Some(vec![issue(&expired, &root)]), None).await),
        UNTRUSTED
    );
    let mut early = client_params("app", &[]);
    early.not_before = date_time_ymd(2030, 1, 1);
    early.not_after = date_time_ymd(2031, 1, 1);
    assert_eq!(
        invalid(login(&harness, Some(vec![issue(&early, &root)]), None).await),
        UNTRUSTED
    );
}

#[tokio::test]
async fn server_only_certificates_are_refused() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    write_role(&harness, "web", json!({"certificate": root.pem()})).await;
    let mut server = client_params("app", &[]);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    assert_eq!(
        invalid(login(&harness, Some(vec![issue(&server, &root)]), None).await),
        UNTRUSTED
    );
}

#[tokio::test]
async fn names_must_match_the_role_globs() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    write_role(
        &harness,
        "web",
        json!({"certificate": root.pem(), "allowed_common_names": "*.example.com"}),
    )
    .await;
    let allowed = client("app.example.com", &[], &root);
    grant_of(login(&harness, Some(vec![allowed]), None).await);
    let refused = client("app.example.org", &[], &root);
    assert_eq!(
        invalid(login(&harness, Some(vec![refused]), None).await),
        NO_MATCH
    );
    write_role(
        &harness,
        "web",
        json!({"allowed_common_names": "", "allowed_dns_sans": ["db.internal", "*.svc.cluster.local"]}),
    )
    .await;
    let by_san = client("anything", &["web.ns.svc.cluster.local"], &root);
    grant_of(login(&harness, Some(vec![by_san]), None).await);
    let wrong_san = client("anything", &["web.example.com"], &root);
    assert_eq!(
        invalid(login(&harness, Some(vec![wrong_san]), None).await),
        NO_MATCH
    );
    let no_san = client("db.internal", &[], &root);
    assert_eq!(
        invalid(login(&harness, Some(vec![no_san]), None).await),
        NO_MATCH
    );
    // allowed_names matches the common name or a SAN.
    write_role(
        &harness,
        "web",
        json!({"allowed_dns_sans": "", "allowed_names": "db.internal"}),
    )
    .await;
    let by_name = client("db.internal", &[], &root);
    grant_of(login(&harness, Some(vec![by_name]), None).await);
}

#[tokio::test]
async fn a_login_can_name_its_role() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    write_role(
        &harness,
        "alpha",
        json!({"certificate": root.pem(), "token_policies": "alpha"}),
    )
    .await;
    write_role(
        &harness,
        "beta",
        json!({"certificate": root.pem(), "token_policies": "beta", "display_name": "b"}),
    )
    .await;
    let leaf = client("app", &[], &root);
    let first = grant_of(login(&harness, Some(vec![leaf.clone()]), None).await);
    assert_eq!(first.policies, ["alpha"]);
    // Names are case-insensitive, as Vault's.
    let named = grant_of(login(&harness, Some(vec![leaf.clone()]), Some("BETA")).await);
    assert_eq!(named.policies, ["beta"]);
    assert_eq!(named.display_name, "cert-b");
    assert_eq!(named.metadata["cert_name"], "beta");
    assert_eq!(
        invalid(login(&harness, Some(vec![leaf]), Some("gamma")).await),
        UNTRUSTED
    );
}

#[tokio::test]
async fn intermediates_come_from_the_presented_chain() {
    let harness = Harness::at("auth/cert/");
    let root = ca("root CA");
    let issuing = intermediate("issuing CA", &root);
    write_role(&harness, "web", json!({"certificate": root.pem()})).await;
    let leaf = client("app", &[], &issuing);
    grant_of(
        login(
            &harness,
            Some(vec![leaf.clone(), issuing.der().to_vec()]),
            None,
        )
        .await,
    );
    assert_eq!(
        invalid(login(&harness, Some(vec![leaf]), None).await),
        UNTRUSTED
    );
}

#[tokio::test]
async fn a_role_may_trust_one_client_certificate() {
    let harness = Harness::at("auth/cert/");
    let params = client_params("pinned", &[]);
    let key = KeyPair::generate().expect("key");
    let pinned = params.self_signed(&key).expect("self-signed");
    write_role(&harness, "pinned", json!({"certificate": pinned.pem()})).await;
    grant_of(login(&harness, Some(vec![pinned.der().to_vec()]), None).await);
    let other = client_params("pinned", &[])
        .self_signed(&KeyPair::generate().expect("key"))
        .expect("self-signed");
    assert_eq!(
        invalid(login(&harness, Some(vec![other.der().to_vec()]), None).await),
        UNTRUSTED
    );
    // A certificate without the client-auth purpose cannot be trusted by itself.
    let mut server = client_params("server", &[]);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server
        .self_signed(&KeyPair::generate().expect("key"))
        .expect("self-signed");
    let refused = call(
        &harness,
        Operation::Update,
        "certs/server",
        json!({"certificate": server.pem()}),
    )
    .await;
    assert_eq!(
        invalid(refused),
        "nonCA certificates should have TLS client authentication set as an extended key usage"
    );
}

#[tokio::test]
async fn role_crud_and_bad_input() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    write_role(
        &harness,
        "web",
        json!({"certificate": root.pem(), "allowed_common_names": "*.example.com",
               "token_policies": ["web"], "display_name": "web"}),
    )
    .await;
    let data = data_of(
        call(&harness, Operation::Read, "certs/WEB", Value::Null)
            .await
            .expect("read"),
    );
    assert_eq!(data["certificate"], json!(root.pem()));
    assert_eq!(data["allowed_common_names"], json!(["*.example.com"]));
    assert_eq!(data["allowed_dns_sans"], Value::Null);
    assert_eq!(data["token_policies"], json!(["web"]));
    assert_eq!(data["token_bound_cidrs"], json!([]));
    assert_eq!(data["ocsp_enabled"], json!(false));
    assert_eq!(data["display_name"], json!("web"));
    let list = data_of(
        call(&harness, Operation::List, "certs", Value::Null)
            .await
            .expect("list"),
    );
    assert_eq!(list["keys"], json!(["web"]));
    for (body, expected) in [
        (json!({"certificate": "bad"}), "failed to parse certificate"),
        (json!({}), "missing certificate"),
        (
            json!({"certificate": 5}),
            "certificate must be a PEM string",
        ),
        (
            json!({"certificate": root.pem(), "ocsp_enabled": true}),
            "ocsp_enabled is not supported",
        ),
        (
            json!({"certificate": root.pem(), "required_extensions": "1.2.3:x"}),
            "required_extensions is not supported",
        ),
        (
            json!({"certificate": root.pem(), "token_ttl": "soon"}),
            "token_ttl",
        ),
        (
            json!({"certificate": root.pem(), "allowed_common_names": {"a": 1}}),
            "allowed_common_names",
        ),
    ] {
        let message = invalid(call(&harness, Operation::Update, "certs/other", body.clone()).await);
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(
        call(&harness, Operation::Read, "certs/other", Value::Null)
            .await
            .expect("read"),
        None
    );
    call(&harness, Operation::Delete, "certs/web", Value::Null)
        .await
        .expect("delete");
    assert_eq!(
        call(&harness, Operation::Read, "certs/web", Value::Null)
            .await
            .expect("read"),
        None
    );
    let wrong = call(&harness, Operation::Read, "login", Value::Null).await;
    assert!(
        matches!(wrong, Err(EngineError::UnsupportedOperation(_))),
        "{wrong:?}"
    );
}

#[test]
fn globs_match_as_vault() {
    assert!(glob("*", "anything"));
    assert!(glob("*.example.com", "a.b.example.com"));
    assert!(!glob("*.example.com", "example.com"));
    assert!(glob("web-*-prod", "web-1-prod"));
    assert!(!glob("web-*-prod", "web-1-dev"));
    assert!(glob("a*b*c", "aXbYc"));
    assert!(!glob("a*b*c", "acb"));
    assert!(glob("exact", "exact"));
    assert!(!glob("exact", "exactly"));
    assert!(!glob("", "x"));
    assert!(glob("", ""));
    // The parts may not overlap.
    assert!(!glob("xy*yx", "xyx"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// A pattern without `*` matches only itself; `*x*` matches whatever contains `x`.
    #[test]
    fn globs_agree_with_plain_string_rules(literal in "[a-z.]{0,8}", subject in "[a-z.]{0,12}") {
        proptest::prop_assert_eq!(glob(&literal, &subject), literal == subject);
        proptest::prop_assert_eq!(glob(&format!("*{literal}*"), &subject), subject.contains(&literal));
        proptest::prop_assert_eq!(glob(&format!("{literal}*"), &subject), subject.starts_with(&literal));
    }

    /// Whatever bytes a client presents as its chain, login refuses them cleanly.
    #[test]
    fn garbage_chains_never_log_in(chain in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..4)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let harness = Harness::at("auth/cert/");
        let root = ca("test CA");
        runtime.block_on(write_role(&harness, "web", json!({"certificate": root.pem()})));
        let result = runtime.block_on(login(&harness, Some(chain), None));
        proptest::prop_assert!(matches!(result, Err(EngineError::InvalidRequest(_))), "{result:?}");
    }
}

/// What the token store tells the method when a login's token is to be renewed.
fn renewal(grant: &crate::TokenGrant, policies: &[&str]) -> crate::logical::LoginRenewal {
    crate::logical::LoginRenewal {
        path: "login".into(),
        metadata: grant.metadata.clone(),
        policies: policies.iter().map(|policy| (*policy).to_owned()).collect(),
    }
}

#[tokio::test]
async fn renewal_needs_the_role_with_the_same_policies_and_takes_its_current_ttls() {
    let harness = Harness::at("auth/cert/");
    let root = ca("test CA");
    let role = json!({"certificate": root.pem(), "token_policies": "web,ops", "token_ttl": "1h"});
    write_role(&harness, "web", role.clone()).await;
    let leaf = client("app.example.com", &[], &root);
    let grant = grant_of(login(&harness, Some(vec![leaf]), None).await);
    // The token has `default` too: still the same policies.
    let token = renewal(&grant, &["default", "ops", "web"]);
    let limits = CertAuth
        .renew_login(&harness.ctx(), &token)
        .await
        .expect("renewal allowed");
    assert_eq!(
        limits,
        Some(crate::logical::RenewalLimits {
            ttl: 3600,
            max_ttl: 0,
            period: 0
        })
    );
    write_role(
        &harness,
        "web",
        json!({"token_policies": "web,ops", "token_ttl": "10m", "token_max_ttl": "2h"}),
    )
    .await;
    let limits = CertAuth
        .renew_login(&harness.ctx(), &token)
        .await
        .expect("renewal allowed");
    assert_eq!(limits.map(|l| (l.ttl, l.max_ttl)), Some((600, 7200)));

    write_role(&harness, "web", json!({"token_policies": "web"})).await;
    assert_eq!(
        invalid(CertAuth.renew_login(&harness.ctx(), &token).await),
        "policies have changed, not renewing"
    );
    call(&harness, Operation::Delete, "certs/web", Value::Null)
        .await
        .expect("delete");
    assert_eq!(
        invalid(CertAuth.renew_login(&harness.ctx(), &token).await),
        "certificate role \"web\" no longer exists, not renewing"
    );
}
