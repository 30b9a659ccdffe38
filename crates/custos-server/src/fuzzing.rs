//! The parsers of untrusted request bytes, exposed (feature `fuzzing`) to the fuzz targets in
//! `fuzz/`: each takes what a client sends and answers without the HTTP machinery around it.

/// The JSON shape pre-scan every body goes through: `true` when it is within the depth and key
/// limits.
pub fn body_shape_ok(bytes: &[u8]) -> bool {
    crate::body::check_shape(bytes).is_ok()
}

/// An `X-Vault-Index` value, decoded to the revision it names.
pub fn decode_index(value: &str) -> Option<u64> {
    crate::index::decode(value).map(|revision| revision.0)
}

/// Encodes a revision as this node would answer it.
pub fn encode_index(cluster_id: &str, revision: u64) -> String {
    crate::index::encode(cluster_id, custos_engine::Revision(revision))
}

/// Where a `/v1/` path (without `/v1/`) with `//` or `.` segments is redirected, if anywhere.
pub fn cleaned_location(raw_path: &str) -> Option<String> {
    crate::logical::cleaned_location(raw_path, None)
}

/// A path's `%XX` escapes decoded, as the engine sees the path.
pub fn percent_decode(raw_path: &str) -> Option<String> {
    crate::logical::percent_decode(raw_path).ok()
}

/// An `X-Vault-Wrap-TTL` value in seconds (`Some(None)`: no wrapping).
pub fn wrap_ttl(value: &str) -> Option<Option<u64>> {
    crate::logical::parse_wrap_ttl(value).ok()
}

/// The client address an `X-Forwarded-For` header names, as a trusted proxy at 10.0.0.1 sends
/// it with `hop_skips` proxies of our own to skip (`None`: the request is refused).
pub fn forwarded_client(header: &[u8], hop_skips: usize) -> Option<std::net::IpAddr> {
    let value = axum::http::HeaderValue::from_bytes(header).ok()?;
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", value);
    let mut config = crate::ForwardedFor::new(vec!["10.0.0.0/8".parse().ok()?]);
    config.hop_skips = hop_skips;
    crate::forwarded::resolve(&config, [10, 0, 0, 1].into(), &headers).ok()
}
