//! Certificate auth (`auth/cert/...`): clients log in with the TLS client certificate of their
//! connection, verified against the certificates a role trusts.
//!
//! A role (`certs/<name>`, stored at `cert/<name>`) trusts one or more PEM certificates: a CA
//! (any client certificate it issued, through the intermediates the client presents) or a
//! client certificate itself (that exact certificate). Chains are verified with rustls-webpki
//! (signatures, validity at the engine clock's time, the client-auth key purpose); names are read
//! with x509-parser and matched against the role's `allowed_*` globs as Vault does.
//!
//! The token a certificate login asks for is bound to that certificate
//! (`TokenGrant::bound_cert_fingerprint`): the token store refuses it on a connection that does
//! not present the same certificate, so a stolen token is useless without the private key.

#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use custos_crypto::constant_time_eq;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::EngineError;
use crate::auth::role;
use crate::auth::token_fields::{TokenFields, display_prefix, string_list, strings};
use crate::kv::{decode, list_children, parse_bool, unsupported};
use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, LoginRenewal, MountContext, MountStorage,
    Operation, RenewalLimits,
};

const CERT_PREFIX: &str = "cert/";
/// Role names are storage keys: kept well below the storage key limit.
/// Vault's answers, which clients and scripts match on.
pub(crate) const NO_CERTIFICATE: &str = "no client certificate found";
pub(crate) const UNTRUSTED: &str = "invalid certificate or no client certificate supplied";
pub(crate) const NO_MATCH: &str =
    "no chain matching all constraints could be found for this login certificate";

/// The signature algorithms a chain may use (ring's, as rustls's default provider offers).
static ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// A role: the certificates it trusts, the names it admits, the token it grants.
#[derive(Clone, Serialize, Deserialize)]
struct CertRole {
    /// The PEM text as written.
    certificate: String,
    display_name: String,
    allowed_names: Vec<String>,
    allowed_common_names: Vec<String>,
    allowed_dns_sans: Vec<String>,
    allowed_email_sans: Vec<String>,
    allowed_uri_sans: Vec<String>,
    allowed_organizational_units: Vec<String>,
    token: TokenFields,
}

/// The certificate auth method.
pub(crate) struct CertAuth;

#[async_trait::async_trait]
impl LogicalBackend for CertAuth {
    /// Vault's existence check for `certs/<name>`: writing a new role needs `create`,
    /// changing one needs `update`.
    async fn exists(
        &self,
        ctx: &MountContext,
        request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        match request.path.trim_end_matches('/').split_once('/') {
            Some(("certs", name)) if !name.contains('/') && check_name(name).is_ok() => Ok(Some(
                ctx.storage
                    .get(&role_key(&name.to_lowercase()))
                    .await?
                    .is_some(),
            )),
            _ => Ok(None),
        }
    }

    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        use Operation::{Create, Delete, List, Read, Update};
        let path = request.path.trim_end_matches('/');
        // Role names are case-insensitive, as Vault's.
        let path = match path.split_once('/') {
            Some(("certs", name)) => format!("certs/{}", name.to_lowercase()),
            _ => path.to_owned(),
        };
        let path = path.as_str();
        let storage = &ctx.storage;
        match (path.split_once('/'), request.operation) {
            (None, Create | Update) if path == "login" => login(ctx, &request).await.map(Some),
            (None, List) if path == "certs" => list_children(storage, CERT_PREFIX).await,
            (Some(("certs", name)), Read) if !name.contains('/') => read_role(storage, name).await,
            (Some(("certs", name)), Create | Update) if !name.contains('/') => {
                write_role(ctx, name, &request).await
            }
            (Some(("certs", name)), Delete) if !name.contains('/') => {
                if check_name(name).is_ok() {
                    storage.delete(&role_key(name)).await?;
                }
                Ok(Some(LogicalResponse::no_content()))
            }
            (None, operation) if path == "login" || path == "certs" => {
                Err(unsupported(operation, &request.path))
            }
            (Some(("certs", name)), operation) if !name.contains('/') => {
                Err(unsupported(operation, &request.path))
            }
            _ => Ok(None),
        }
    }

    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &["login"]
    }

    /// Failed logins are counted per presented certificate (its fingerprint).
    fn login_subject(&self, request: &LogicalRequest) -> String {
        match &request.connection.client_cert {
            Some(cert) => format!("cert:{}", cert.fingerprint),
            None => "cert:none".into(),
        }
    }

    /// As Vault: a token whose role was deleted, or whose role's policies changed since the
    /// login, is not renewed; otherwise the role's current TTLs apply. (The token store already
    /// refuses the token on a connection without the certificate it logged in with.)
    async fn renew_login(
        &self,
        ctx: &MountContext,
        login: &LoginRenewal,
    ) -> Result<Option<RenewalLimits>, EngineError> {
        let name = role::login_metadata(login, "cert_name");
        let Some(role) = load_role(&ctx.storage, name).await? else {
            return Err(invalid(format!(
                "certificate role {name:?} no longer exists, not renewing"
            )));
        };
        role::check_same_policies(&role.token, login)?;
        Ok(Some(role::current_limits(&role.token)))
    }
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest(message.into())
}

fn role_key(name: &str) -> String {
    format!("{CERT_PREFIX}{name}")
}

fn check_name(name: &str) -> Result<(), EngineError> {
    role::check_role_name("certificate role", name)
}

async fn load_role(storage: &MountStorage, name: &str) -> Result<Option<CertRole>, EngineError> {
    if check_name(name).is_err() {
        return Ok(None);
    }
    let key = role_key(name);
    match storage.get(&key).await? {
        Some(plain) => Ok(Some(decode(&key, &plain.value)?)),
        None => Ok(None),
    }
}

/// Vault renders an unset list as `null`.
fn list_or_null(values: &[String]) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        strings(values)
    }
}

async fn read_role(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some(role) = load_role(storage, name).await? else {
        return Ok(None);
    };
    let mut data = Map::new();
    data.insert("certificate".into(), role.certificate.clone().into());
    data.insert("display_name".into(), role.display_name.clone().into());
    data.insert("allowed_names".into(), list_or_null(&role.allowed_names));
    data.insert(
        "allowed_common_names".into(),
        list_or_null(&role.allowed_common_names),
    );
    data.insert(
        "allowed_dns_sans".into(),
        list_or_null(&role.allowed_dns_sans),
    );
    data.insert(
        "allowed_email_sans".into(),
        list_or_null(&role.allowed_email_sans),
    );
    data.insert(
        "allowed_uri_sans".into(),
        list_or_null(&role.allowed_uri_sans),
    );
    data.insert(
        "allowed_organizational_units".into(),
        list_or_null(&role.allowed_organizational_units),
    );
    // Features custos does not offer, rendered as Vault renders them switched off.
    data.insert("allowed_metadata_extensions".into(), Value::Null);
    data.insert("required_extensions".into(), Value::Null);
    data.insert("ocsp_enabled".into(), false.into());
    data.insert("ocsp_ca_certificates".into(), "".into());
    data.insert("ocsp_fail_open".into(), false.into());
    data.insert("ocsp_query_all_servers".into(), false.into());
    data.insert("ocsp_servers_override".into(), Value::Null);
    role.token.render(&mut data);
    Ok(Some(LogicalResponse::data(data)))
}

/// The certificates of a PEM text, as DER; an error when it holds none or one does not parse.
fn parse_pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut certificates = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|error| format!("invalid PEM: {error}"))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|error| format!("invalid certificate: {error}"))?;
        certificates.push(pem.contents);
    }
    if certificates.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certificates)
}

/// Checks what a role is to trust: every certificate parses; a CA can anchor a chain; a client
/// certificate trusted by itself allows client authentication.
fn check_trusted(text: &str) -> Result<(), EngineError> {
    let certificates =
        parse_pem_certificates(text).map_err(|_| invalid("failed to parse certificate"))?;
    for der in &certificates {
        let (_, certificate) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| invalid("failed to parse certificate"))?;
        if certificate.is_ca() {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|_| invalid("failed to parse certificate"))?;
        } else {
            let client_auth = matches!(
                certificate.extended_key_usage(),
                Ok(Some(usage)) if usage.value.client_auth || usage.value.any
            );
            if !client_auth {
                return Err(invalid(
                    "nonCA certificates should have TLS client authentication set as an extended key usage",
                ));
            }
        }
    }
    Ok(())
}

async fn write_role(
    ctx: &MountContext,
    name: &str,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    check_name(name)?;
    let storage = &ctx.storage;
    let empty = Map::new();
    let data = request.data.as_ref().unwrap_or(&empty);
    let existing = load_role(storage, name).await?;
    let creating = existing.is_none();
    let mut role = existing.unwrap_or_else(|| CertRole {
        certificate: String::new(),
        display_name: name.to_owned(),
        allowed_names: Vec::new(),
        allowed_common_names: Vec::new(),
        allowed_dns_sans: Vec::new(),
        allowed_email_sans: Vec::new(),
        allowed_uri_sans: Vec::new(),
        allowed_organizational_units: Vec::new(),
        token: TokenFields::default(),
    });
    match data.get("certificate") {
        Some(Value::String(text)) => {
            check_trusted(text)?;
            role.certificate = text.clone();
        }
        Some(_) => return Err(invalid("certificate must be a PEM string")),
        None if creating => return Err(invalid("missing certificate")),
        None => {}
    }
    match data.get("display_name") {
        Some(Value::String(display_name)) => {
            role.display_name = if display_name.is_empty() {
                name.to_owned()
            } else {
                display_name.clone()
            };
        }
        Some(_) => return Err(invalid("display_name must be a string")),
        None => {}
    }
    for (field, target) in [
        ("allowed_names", &mut role.allowed_names),
        ("allowed_common_names", &mut role.allowed_common_names),
        ("allowed_dns_sans", &mut role.allowed_dns_sans),
        ("allowed_email_sans", &mut role.allowed_email_sans),
        ("allowed_uri_sans", &mut role.allowed_uri_sans),
        (
            "allowed_organizational_units",
            &mut role.allowed_organizational_units,
        ),
    ] {
        if let Some(value) = data.get(field) {
            *target = string_list(field, value)?;
        }
    }
    // Refused rather than ignored: a role that silently skipped a check it was given would admit
    // certificates its author meant to refuse.
    for field in ["required_extensions", "allowed_metadata_extensions"] {
        if let Some(value) = data.get(field)
            && !string_list(field, value)?.is_empty()
        {
            return Err(invalid(format!("{field} is not supported")));
        }
    }
    if let Some(value) = data.get("ocsp_enabled")
        && parse_bool("ocsp_enabled", value)?
    {
        return Err(invalid("ocsp_enabled is not supported"));
    }
    role.token.update(data)?;
    let bytes = serde_json::to_vec(&role)
        .map_err(|error| EngineError::Internal(format!("cert role: {error}")))?;
    if bytes.len() > ctx.max_value_bytes {
        return Err(invalid(format!(
            "the role is too large: {} bytes once encoded, the limit is {} bytes",
            bytes.len(),
            ctx.max_value_bytes
        )));
    }
    storage.put(&role_key(name), bytes).await?;
    Ok(Some(LogicalResponse::no_content()))
}

/// The roles a login may match: the one named, or all of them in name order.
async fn candidate_roles(
    storage: &MountStorage,
    name: Option<&str>,
) -> Result<Vec<(String, CertRole)>, EngineError> {
    if let Some(name) = name {
        return Ok(load_role(storage, name)
            .await?
            .map(|role| (name.to_owned(), role))
            .into_iter()
            .collect());
    }
    let mut roles = Vec::new();
    let Some(listing) = list_children(storage, CERT_PREFIX).await? else {
        return Ok(roles);
    };
    let keys = listing
        .data
        .and_then(|data| data.get("keys").cloned())
        .and_then(|keys| match keys {
            Value::Array(keys) => Some(keys),
            _ => None,
        })
        .unwrap_or_default();
    for key in keys {
        if let Value::String(name) = key
            && let Some(role) = load_role(storage, &name).await?
        {
            roles.push((name, role));
        }
    }
    Ok(roles)
}

/// Whether the presented chain (leaf first) is trusted by one of `trusted`: the leaf itself, or
/// a path from the leaf through the presented intermediates to a trusted CA, valid at `now`,
/// for client authentication.
fn chain_trusted(
    trusted: &[Vec<u8>],
    chain: &[Vec<u8>],
    leaf: &X509Certificate<'_>,
    now: i64,
) -> bool {
    let Some(leaf_der) = chain.first() else {
        return false;
    };
    let mut anchors_der = Vec::new();
    for der in trusted {
        let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        if certificate.is_ca() {
            anchors_der.push(CertificateDer::from(der.as_slice()));
        } else if constant_time_eq(der, leaf_der) {
            let validity = leaf.validity();
            if validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp() {
                return true;
            }
        }
    }
    let anchors: Vec<TrustAnchor<'_>> = anchors_der
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect();
    if anchors.is_empty() {
        return false;
    }
    let leaf_der = CertificateDer::from(leaf_der.as_slice());
    let Ok(end_entity) = webpki::EndEntityCert::try_from(&leaf_der) else {
        return false;
    };
    let intermediates: Vec<CertificateDer<'_>> = chain
        .iter()
        .skip(1)
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    end_entity
        .verify_for_usage(
            ALGORITHMS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
}

/// Vault's glob: `*` matches any run of characters (dots included); nothing else is special.
pub(crate) fn glob(pattern: &str, subject: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == subject;
    };
    let Some(mut rest) = subject.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.split_once(part) {
            Some((_, after)) => rest = after,
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The names of a client certificate that roles match on.
struct Names {
    common_name: String,
    dns: Vec<String>,
    email: Vec<String>,
    uri: Vec<String>,
    organizational_units: Vec<String>,
}

fn names_of(certificate: &X509Certificate<'_>) -> Names {
    let subject = certificate.subject();
    // As Go's crypto/x509, the last common name attribute counts.
    let common_name = subject
        .iter_common_name()
        .filter_map(|attribute| attribute.as_str().ok())
        .last()
        .unwrap_or_default()
        .to_owned();
    let organizational_units = subject
        .iter_organizational_unit()
        .filter_map(|attribute| attribute.as_str().ok().map(str::to_owned))
        .collect();
    let mut names = Names {
        common_name,
        dns: Vec::new(),
        email: Vec::new(),
        uri: Vec::new(),
        organizational_units,
    };
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
                GeneralName::RFC822Name(email) => names.email.push((*email).to_owned()),
                GeneralName::URI(uri) => names.uri.push((*uri).to_owned()),
                _ => {}
            }
        }
    }
    names
}

/// Whether a pattern list admits one of `values` (an empty list admits everything).
fn admits(patterns: &[String], values: &[&str]) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|pattern| values.iter().any(|value| glob(pattern, value)))
}

fn matches_constraints(role: &CertRole, names: &Names) -> bool {
    let common_name = [names.common_name.as_str()];
    let dns: Vec<&str> = names.dns.iter().map(String::as_str).collect();
    let email: Vec<&str> = names.email.iter().map(String::as_str).collect();
    let uri: Vec<&str> = names.uri.iter().map(String::as_str).collect();
    let units: Vec<&str> = names
        .organizational_units
        .iter()
        .map(String::as_str)
        .collect();
    let any_name: Vec<&str> = common_name
        .iter()
        .chain(&dns)
        .chain(&email)
        .copied()
        .collect();
    admits(&role.allowed_names, &any_name)
        && admits(&role.allowed_common_names, &common_name)
        && admits(&role.allowed_dns_sans, &dns)
        && admits(&role.allowed_email_sans, &email)
        && admits(&role.allowed_uri_sans, &uri)
        && admits(&role.allowed_organizational_units, &units)
}

/// Bytes as Vault prints key identifiers: lower-case hex pairs joined by `:`.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The subject and authority key identifiers of a certificate (empty when absent).
fn key_ids(certificate: &X509Certificate<'_>) -> (String, String) {
    let mut subject_key_id = String::new();
    let mut authority_key_id = String::new();
    for extension in certificate.iter_extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = colon_hex(id.0),
            ParsedExtension::AuthorityKeyIdentifier(authority) => {
                if let Some(id) = &authority.key_identifier {
                    authority_key_id = colon_hex(id.0);
                }
            }
            _ => {}
        }
    }
    (subject_key_id, authority_key_id)
}

async fn login(
    ctx: &MountContext,
    request: &LogicalRequest,
) -> Result<LogicalResponse, EngineError> {
    let name = match request.field("name") {
        Some(Value::String(name)) if !name.is_empty() => Some(name.to_lowercase()),
        Some(Value::String(_) | Value::Null) | None => None,
        Some(_) => return Err(invalid("name must be a string")),
    };
    let Some(client_cert) = &request.connection.client_cert else {
        return Err(invalid(NO_CERTIFICATE));
    };
    let chain = client_cert.chain.as_slice();
    let Some(leaf_der) = chain.first() else {
        return Err(invalid(NO_CERTIFICATE));
    };
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return Err(invalid(UNTRUSTED));
    };
    let now = ctx.now.as_second();
    let mut chain_verified = false;
    for (role_name, role) in candidate_roles(&ctx.storage, name.as_deref()).await? {
        let trusted = parse_pem_certificates(&role.certificate).map_err(|error| {
            EngineError::Internal(format!("stored certificate of role {role_name:?}: {error}"))
        })?;
        if !chain_trusted(&trusted, chain, &leaf, now) {
            continue;
        }
        chain_verified = true;
        let names = names_of(&leaf);
        if !matches_constraints(&role, &names) {
            continue;
        }
        let (subject_key_id, authority_key_id) = key_ids(&leaf);
        let mut grant = role.token.grant(format!(
            "{}-{}",
            display_prefix(&ctx.mount_path),
            role.display_name
        ))?;
        grant.metadata = [
            ("cert_name", role_name),
            ("common_name", names.common_name),
            ("serial_number", leaf.serial.to_string()),
            ("subject_key_id", subject_key_id),
            ("authority_key_id", authority_key_id),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        // Recomputed from the chain rather than taken from the connection's summary, so the
        // binding always names the certificate that was verified.
        grant.bound_cert_fingerprint = Some(custos_crypto::sha256_hex(leaf_der));
        return Ok(LogicalResponse::login(grant));
    }
    Err(invalid(if chain_verified { NO_MATCH } else { UNTRUSTED }))
}
