//! `/v1/<path>` for everything that is not a seal life cycle endpoint: turns the HTTP request into
//! an engine [`Request`] and the engine's answer into Vault's response envelope.

use std::collections::BTreeMap;

use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_engine::logical::{LogicalResponse, Operation};
use custos_engine::{EngineError, Request};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::{RequestId, Shared, body, extract};

const MERGE_PATCH: &str = "application/merge-patch+json";

/// Maps the method (and `?list=true`) to an operation, as Vault does.
fn operation(method: &Method, query: &BTreeMap<String, String>) -> Result<Operation, ApiError> {
    let list = query
        .get("list")
        .is_some_and(|value| matches!(value.as_str(), "true" | "1" | "t" | "T" | "TRUE" | "True"));
    Ok(match method.as_str() {
        "GET" if list => Operation::List,
        "GET" => Operation::Read,
        "LIST" => Operation::List,
        "PUT" | "POST" => Operation::Update,
        "PATCH" => Operation::Patch,
        "DELETE" => Operation::Delete,
        _ => return Err(ApiError::MethodNotAllowed),
    })
}

fn parse_query(raw: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(raw) = raw else {
        return Ok(BTreeMap::new());
    };
    serde_urlencoded_pairs(raw)
}

/// Decodes `a=1&b=x%20y` without another dependency: axum's `Query` does the decoding.
fn serde_urlencoded_pairs(raw: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let uri: axum::http::Uri = format!("/?{raw}")
        .parse()
        .map_err(|_| ApiError::InvalidRequest("malformed query string".into()))?;
    axum::extract::Query::<BTreeMap<String, String>>::try_from_uri(&uri)
        .map(|query| query.0)
        .map_err(|error| ApiError::InvalidRequest(format!("malformed query string: {error}")))
}

/// `/v1/*`: the logical request pipeline.
pub(crate) async fn handle(
    State(state): State<Shared>,
    request: HttpRequest,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let raw_path = parts
        .uri
        .path()
        .strip_prefix("/v1/")
        .ok_or(ApiError::NotFound)?;
    if let Some(location) = cleaned_location(raw_path, parts.uri.query()) {
        return Ok(redirect(&location));
    }
    // Decoded as Go's net/http decodes it for Vault, so `%2E%2E` is `..` (and refused) and
    // `my%20secret` is `my secret`.
    let path = percent_decode(raw_path)?;
    let query = parse_query(parts.uri.query())?;
    // `?help` (any value, any method) asks for the path's help, as in Vault; `path-help` uses it.
    if query.contains_key("help") {
        let token = extract::token_from_headers(&parts.headers);
        let help = state
            .engine
            .help(token.as_deref(), &connection(&parts), &path)
            .await?;
        return Ok((StatusCode::OK, axum::Json(Value::Object(help))).into_response());
    }
    let operation = operation(&parts.method, &query)?;
    let headers: &HeaderMap = &parts.headers;
    check_namespace(headers)?;
    let merge_patch = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                // Media types are case-insensitive (RFC 9110), as Go's mime parser treats them.
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(MERGE_PATCH))
        });
    if operation == Operation::Patch && !merge_patch {
        return Err(ApiError::UnsupportedMediaType(format!(
            "PATCH requires the Content-Type header to be {MERGE_PATCH:?}"
        )));
    }
    let token = extract::token_from_headers(headers);
    // The body's budget is held until the request is answered: the parsed value lives as long.
    let (data, _body) = match operation {
        Operation::Update | Operation::Create | Operation::Patch => {
            let limit = match path.trim_end_matches('/') {
                // These work without a token (the credential they act on is the proof) and
                // take a few small fields.
                "sys/wrapping/lookup" | "sys/wrapping/unwrap" => body::SMALL_BODY_BYTES,
                "sys/leaks" => body::LEAKS_BODY_BYTES,
                // Logins have no token to check first, and take a few small fields.
                login if is_login_path(login) => body::SMALL_BODY_BYTES,
                _ => {
                    // Everything else needs a token: unless the body is declared small (no
                    // larger than what the endpoints without a token accept anyway), check the
                    // token before reading a byte of it, so an anonymous caller cannot make us
                    // buffer a large one. Small writes, the common case, are authenticated
                    // once, by the engine.
                    if body::content_length(headers)
                        .is_none_or(|length| length > body::SMALL_BODY_BYTES as u64)
                    {
                        state
                            .engine
                            .authenticate(token.as_deref(), &connection(&parts))
                            .await?;
                    }
                    state.max_request_bytes
                }
            };
            if state.engine.is_sealed() {
                return Err(EngineError::Sealed.into());
            }
            let body = body::read(headers, body, limit, &state.body_budget).await?;
            let data = if body.is_blank() || body.is_null() {
                None
            } else {
                Some(body::parse_object(&body)?)
            };
            (data, Some(body))
        }
        // Vault ignores bodies on reads, lists and deletes, but they still count against the
        // size limit; reading them would only waste time, so they are dropped unread.
        _ => (None, None),
    };
    let wrap_ttl = match headers.get("x-vault-wrap-ttl") {
        None => None,
        Some(value) => parse_wrap_ttl(value.to_str().unwrap_or("?"))?,
    };
    let connection = connection(&parts);
    // The verify lane: a gateway verifies an API key on every call it serves.
    if operation == Operation::Update
        && wrap_ttl.is_none()
        && request_query_is_empty(&parts)
        && path.ends_with("/verify")
        && let Some(answer) = state
            .engine
            .verify_api_key(&path, token.as_deref(), data.as_ref(), &connection)
            .await?
    {
        return Ok(raw_data_answer(&request_id, &answer));
    }
    let mut request = Request::new(operation, path.clone());
    request.data = data;
    request.query = query;
    request.token = token;
    request.merge_patch = merge_patch;
    request.request_id = request_id.clone();
    request.wrap_ttl = wrap_ttl;
    request.connection = connection;
    let answer = state.engine.handle(request).await?;
    Ok(render(&request_id, &path, answer))
}

fn request_query_is_empty(parts: &axum::http::request::Parts) -> bool {
    parts.uri.query().is_none_or(str::is_empty)
}

/// Vault's envelope around a `data` object the engine wrote as JSON already (the verify lane),
/// with the keys in the order [`render`] writes them.
fn raw_data_answer(request_id: &str, data: &[u8]) -> Response {
    let mut body = Vec::with_capacity(data.len() + 160);
    body.extend_from_slice(br#"{"auth":null,"data":"#);
    body.extend_from_slice(data);
    body.extend_from_slice(br#","lease_duration":0,"lease_id":"","renewable":false,"request_id":"#);
    // A request id is hexadecimal and hyphens; written as a JSON string all the same.
    body.extend_from_slice(
        serde_json::to_string(request_id)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
    body.extend_from_slice(br#","warnings":null,"wrap_info":null}"#);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Whether `path` looks like an auth method's login (`auth/<mount>/login`, `auth/<mount>/login/<name>`):
/// a segment `login` below `auth/`, outside the token store. The engine decides whether it
/// really is one; this only picks the body limit and skips the token pre-check.
pub(crate) fn is_login_path(path: &str) -> bool {
    path.strip_prefix("auth/")
        .filter(|rest| !rest.starts_with("token/"))
        .is_some_and(|rest| rest.split('/').skip(1).any(|segment| segment == "login"))
}

/// The facts about the request's connection the engine decides on: the peer's address and
/// verified client certificate (from the listener), and the user agent.
pub(crate) fn connection(parts: &axum::http::request::Parts) -> custos_engine::Connection {
    let peer = parts.extensions.get::<crate::PeerInfo>();
    // The client's address behind a trusted proxy (`X-Forwarded-For`), else the socket's peer.
    let client = parts
        .extensions
        .get::<crate::forwarded::ClientAddr>()
        .map(|client| client.0);
    custos_engine::Connection {
        remote_addr: client.or_else(|| peer.map(|peer| peer.remote_addr.ip())),
        // The peer's port, unless a proxy named another client.
        remote_port: peer
            .filter(|peer| client.is_none_or(|client| client == peer.remote_addr.ip()))
            .map(|peer| peer.remote_addr.port()),
        client_cert: peer
            .and_then(|peer| peer.certificates.as_ref())
            .and_then(|chain| {
                custos_engine::ClientCert::from_chain(
                    chain.iter().map(|cert| cert.as_ref().to_vec()).collect(),
                )
            }),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(256).collect()),
    }
}

/// custos has only the root namespace: `X-Vault-Namespace` may be absent, empty or `root`;
/// any other value is refused as Vault refuses an unknown namespace (404), never ignored, so a
/// write meant for a namespace does not land in root.
fn check_namespace(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get("x-vault-namespace") else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    match text.trim().trim_matches('/') {
        "" | "root" => Ok(()),
        other => Err(ApiError::NamespaceNotFound(other.to_owned())),
    }
}

/// Where a path with empty (`//`) or `.` segments is redirected, as Vault (Go's `ServeMux`)
/// answers 307 to the cleaned path and Go clients follow it. A path with a `..` segment is not
/// redirected but refused later: resolving it could move the request to another mount, which a
/// client or a policy author would not expect. Cleaning only drops segments, so the redirect
/// stays in the same mount unless the mount's own path was written with `//` or `.`.
pub(crate) fn cleaned_location(raw_path: &str, query: Option<&str>) -> Option<String> {
    // Almost every path is clean: only one with an empty segment or a segment that starts with
    // a dot (or an escaped one) can need cleaning.
    let suspicious = raw_path.starts_with('/')
        || raw_path.contains("//")
        || raw_path.starts_with('.')
        || raw_path.contains("/.")
        || raw_path.contains("%2e")
        || raw_path.contains("%2E");
    if !suspicious {
        return None;
    }
    let body = raw_path.strip_suffix('/').unwrap_or(raw_path);
    if body.is_empty() {
        return None;
    }
    let is_dot = |segment: &str| dots(segment) == Some(1);
    let is_dot_dot = |segment: &str| dots(segment) == Some(2);
    let segments: Vec<&str> = body.split('/').collect();
    if segments.iter().any(|segment| is_dot_dot(segment))
        || !segments
            .iter()
            .any(|segment| segment.is_empty() || is_dot(segment))
    {
        return None;
    }
    let mut cleaned = segments
        .into_iter()
        .filter(|segment| !segment.is_empty() && !is_dot(segment))
        .collect::<Vec<_>>()
        .join("/");
    if raw_path.ends_with('/') && !cleaned.is_empty() {
        cleaned.push('/');
    }
    let mut location = format!("/v1/{cleaned}");
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    Some(location)
}

/// How many dots a path segment decodes to when it is made of nothing else (`.`, `%2E`, `%2e.`),
/// without decoding it: this runs on every request, and almost no segment starts with a dot.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut count = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b".") {
            rest = after;
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        count += 1;
    }
    (count > 0).then_some(count)
}

/// Vault's answer for a path that is not clean: 307 with an HTML link, as Go writes it.
fn redirect(location: &str) -> Response {
    let mut response = (
        StatusCode::TEMPORARY_REDIRECT,
        format!("<a href=\"{location}\">Temporary Redirect</a>.\n"),
    )
        .into_response();
    if let Ok(value) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Decodes `%XX` escapes; the result must be UTF-8.
pub(crate) fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidRequest(format!("invalid path: malformed escape in {raw:?}"));
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes.get(index + 1..index + 3).ok_or_else(invalid)?;
            let text = std::str::from_utf8(hex).map_err(|_| invalid())?;
            decoded.push(u8::from_str_radix(text, 16).map_err(|_| invalid())?);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    String::from_utf8(decoded)
        .map_err(|_| ApiError::InvalidRequest("invalid path: not UTF-8 once decoded".into()))
}

/// Vault's older `sys/` endpoints repeat their data at the top level of the answer; newer ones
/// (`sys/internal/*`, `sys/wrapping/*`) do not. Clients read both, so match exactly.
fn flattens(path: &str) -> bool {
    path.starts_with("sys/mounts")
        || path.starts_with("sys/auth")
        || (path.starts_with("sys/remount") && !path.starts_with("sys/remount/status"))
        || path == "sys/policy"
        || path.starts_with("sys/policy/")
        || path.starts_with("sys/capabilities")
        || path == "sys/audit"
        || path.starts_with("sys/audit-hash/")
}

/// `X-Vault-Wrap-TTL`: seconds (`300`) or a Go duration with Vault's `d` unit (`5m`, `1h30m`,
/// `1d`), truncated to whole seconds. Empty or zero means no wrapping, as in Vault.
pub(crate) fn parse_wrap_ttl(text: &str) -> Result<Option<u64>, ApiError> {
    let text = text.trim();
    let invalid = |reason: String| {
        ApiError::InvalidRequest(format!("error parsing X-Vault-Wrap-TTL header: {reason}"))
    };
    if text.is_empty() {
        return Ok(None);
    }
    let seconds: i128 = match text.parse::<i64>() {
        Ok(seconds) => i128::from(seconds),
        Err(_) => custos_engine::kv::parse_go_duration(text).map_err(invalid)? / 1_000_000_000,
    };
    if seconds < 0 {
        return Err(invalid("requested wrap ttl cannot be negative".into()));
    }
    if seconds == 0 {
        return Ok(None);
    }
    u64::try_from(seconds)
        .map(Some)
        .map_err(|_| invalid(format!("invalid duration {text:?}")))
}

/// Vault's response envelope.
fn render(request_id: &str, path: &str, answer: Option<LogicalResponse>) -> Response {
    let Some(answer) = answer else {
        return ApiError::Engine(EngineError::NotFound(path.to_owned())).into_response();
    };
    if let Some(wrap) = answer.wrap_info {
        let body = serde_json::json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": null,
            "wrap_info": {
                "token": wrap.token,
                "accessor": wrap.accessor,
                "ttl": wrap.ttl,
                "creation_time": wrap.creation_time,
                "creation_path": wrap.creation_path,
            },
            "warnings": null,
            "auth": null,
        });
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    if let Some(auth) = answer.auth {
        let body = serde_json::json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": answer.data,
            "wrap_info": null,
            "warnings": if answer.warnings.is_empty() { Value::Null } else { answer.warnings.into() },
            "auth": {
                "client_token": auth.client_token,
                "accessor": auth.accessor,
                "policies": auth.policies,
                "token_policies": auth.token_policies,
                "identity_policies": null,
                // Vault renders a token without metadata as `null`.
                "metadata": if auth.metadata.is_empty() { Value::Null } else { serde_json::json!(auth.metadata) },
                "lease_duration": auth.lease_duration,
                "renewable": auth.renewable,
                "entity_id": "",
                "token_type": "service",
                "orphan": auth.orphan,
                "mfa_requirement": null,
                "num_uses": auth.num_uses,
            },
        });
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let Some(data) = answer.data else {
        if answer.warnings.is_empty() {
            return if answer.missing {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::NO_CONTENT
            }
            .into_response();
        }
        // Warnings without data: Vault answers them with `"data": null` (200, or 404 for
        // something missing).
        let status = if answer.missing {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        let body = serde_json::json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": null,
            "wrap_info": null,
            "warnings": answer.warnings,
            "auth": null,
        });
        return (status, axum::Json(body)).into_response();
    };
    let mut body = Map::new();
    if flattens(path) {
        body.extend(data.clone());
    }
    body.insert("request_id".into(), Value::String(request_id.to_owned()));
    body.insert("lease_id".into(), Value::String(String::new()));
    body.insert("renewable".into(), Value::Bool(false));
    body.insert("lease_duration".into(), Value::from(answer.lease_duration));
    body.insert("data".into(), Value::Object(data));
    body.insert("wrap_info".into(), Value::Null);
    body.insert(
        "warnings".into(),
        if answer.warnings.is_empty() {
            Value::Null
        } else {
            Value::Array(answer.warnings.into_iter().map(Value::String).collect())
        },
    );
    body.insert("auth".into(), Value::Null);
    let status = if answer.missing {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (status, axum::Json(Value::Object(body))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_counted_in_any_spelling() {
        for (segment, expected) in [
            (".", Some(1)),
            ("%2E", Some(1)),
            ("%2e", Some(1)),
            ("..", Some(2)),
            ("%2E.", Some(2)),
            (".%2e", Some(2)),
            ("%2E%2E", Some(2)),
            ("...", Some(3)),
            ("", None),
            ("a", None),
            (".a", None),
            ("%2", None),
            ("%2F", None),
            ("secret", None),
        ] {
            assert_eq!(dots(segment), expected, "{segment:?}");
        }
    }

    #[test]
    fn login_paths_are_recognised() {
        for login in [
            "auth/userpass/login/alice",
            "auth/approle/login",
            "auth/cert/login",
            "auth/team/people/login/bob",
        ] {
            assert!(is_login_path(login), "{login}");
        }
        for other in [
            "auth/userpass/users/alice",
            "auth/login",
            "auth/token/login",
            "secret/login/x",
            "sys/auth/login",
        ] {
            assert!(!is_login_path(other), "{other}");
        }
    }

    #[test]
    fn the_engine_sees_the_client_behind_a_trusted_proxy() {
        let peer = crate::PeerInfo {
            remote_addr: "10.0.0.1:40000".parse().unwrap(),
            certificates: None,
        };
        let (mut parts, ()) = axum::http::Request::builder()
            .extension(peer)
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            connection(&parts).remote_addr,
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(connection(&parts).remote_port, Some(40000));
        // The middleware names the peer itself when no proxy named another client.
        parts
            .extensions
            .insert(crate::forwarded::ClientAddr("10.0.0.1".parse().unwrap()));
        assert_eq!(connection(&parts).remote_port, Some(40000));
        parts
            .extensions
            .insert(crate::forwarded::ClientAddr("203.0.113.7".parse().unwrap()));
        assert_eq!(
            connection(&parts).remote_addr,
            Some("203.0.113.7".parse().unwrap())
        );
        // The proxy's port says nothing of the client.
        assert_eq!(connection(&parts).remote_port, None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a/%2E%2E/b").unwrap(), "a/../b");
        assert_eq!(percent_decode("my%20secret").unwrap(), "my secret");
        assert_eq!(percent_decode("caf%C3%A9").unwrap(), "café");
        assert!(percent_decode("bad%2").is_err());
        assert!(percent_decode("bad%zz").is_err());
        assert!(percent_decode("bad%FF").is_err());
        assert!(percent_decode("%").is_err());
    }

    async fn rendered(answer: LogicalResponse) -> (StatusCode, Vec<u8>) {
        let response = render("req-1", "secret/foo", Some(answer));
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    #[tokio::test]
    async fn a_missing_answer_without_data_is_an_empty_404() {
        let (status, body) = rendered(LogicalResponse {
            missing: true,
            ..LogicalResponse::default()
        })
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
    }

    #[tokio::test]
    async fn a_missing_answer_with_warnings_is_a_404_with_null_data() {
        let (status, body) = rendered(LogicalResponse {
            missing: true,
            warnings: vec!["Invalid path".into()],
            ..LogicalResponse::default()
        })
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["data"], Value::Null);
        assert_eq!(body["warnings"], serde_json::json!(["Invalid path"]));
        assert_eq!(body["request_id"], "req-1");
    }

    #[tokio::test]
    async fn an_answer_without_data_is_204() {
        let (status, body) = rendered(LogicalResponse::default()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(body.is_empty());
    }

    fn encode(text: &str) -> String {
        text.bytes().map(|byte| format!("%{byte:02X}")).collect()
    }

    proptest::proptest! {
        #[test]
        fn dot_counting_agrees_with_decoding(segment in "(\\.|%2[eE]|[a%2.]){0,4}") {
            let decoded = percent_decode(&segment).ok();
            let expected = decoded
                .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte == b'.'))
                .map(|text| text.len());
            proptest::prop_assert_eq!(dots(&segment), expected);
        }

        #[test]
        fn a_cleaned_path_is_clean_and_never_gains_a_dot_segment(
            raw in "(a|/|\\.|%2e|%2E|%2F|%20){0,12}"
        ) {
            if let Some(location) = cleaned_location(&raw, None) {
                let cleaned = location.strip_prefix("/v1/").unwrap();
                let body = cleaned.strip_suffix('/').unwrap_or(cleaned);
                for segment in body.split('/') {
                    proptest::prop_assert!(!segment.is_empty() || body.is_empty(), "{location:?}");
                    // `...` is a name like any other; `.` and `..` must be gone.
                    proptest::prop_assert!(!matches!(dots(segment), Some(1 | 2)), "{location:?}");
                }
                // Cleaning only drops segments: what is left is in the original order.
                proptest::prop_assert!(raw.split('/').filter(|s| !s.is_empty() && dots(s) != Some(1))
                    .eq(body.split('/').filter(|s| !s.is_empty())), "{raw:?} -> {location:?}");
            }
        }

        #[test]
        fn percent_decoding_never_panics(raw in ".{0,64}") {
            let _ = percent_decode(&raw);
        }

        #[test]
        fn percent_decoding_inverts_encoding(text in "\\PC{0,32}") {
            proptest::prop_assert_eq!(percent_decode(&encode(&text)).unwrap(), text);
        }
    }
}
