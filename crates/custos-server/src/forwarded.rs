//! The client's address behind trusted proxies: `X-Forwarded-For` is believed only when the
//! connection comes from an address in `listener.x_forwarded_for_authorized_addrs`, with Vault's
//! listener options and answers.
//!
//! Once proxies are configured, Vault (and custos) by default refuses a request without the
//! header (`x_forwarded_for_reject_not_present`) and a request with the header from a peer that
//! is not a configured proxy (`x_forwarded_for_reject_not_authorized`), both with 400. The
//! address used is the last one in the chain, or the one `x_forwarded_for_hop_skips` entries
//! before it (for a chain of proxies in front of custos).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use custos_core::Cidr;

use crate::error::ApiError;

/// The `X-Forwarded-For` settings of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedFor {
    /// The proxies whose `X-Forwarded-For` is believed.
    pub authorized_addrs: Vec<Cidr>,
    /// How many addresses at the end of the chain to skip (proxies of your own).
    pub hop_skips: usize,
    /// Refuse a request with the header from a peer that is not an authorised proxy (else the
    /// header is ignored and the peer's address used).
    pub reject_not_authorized: bool,
    /// Refuse a request without the header (else the peer's address is used).
    pub reject_not_present: bool,
}

impl ForwardedFor {
    /// Trusts `authorized_addrs` with Vault's defaults: no hop skipped, both refusals on.
    pub fn new(authorized_addrs: Vec<Cidr>) -> ForwardedFor {
        ForwardedFor {
            authorized_addrs,
            hop_skips: 0,
            reject_not_authorized: true,
            reject_not_present: true,
        }
    }
}

/// The address the request is served as, once `X-Forwarded-For` was weighed: a request
/// extension set by the request middleware, read by the guard, the logs and the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// One entry of the header: an address, possibly with a port or in brackets (`[::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

/// The client's address for a request from `peer` with `headers`, or Vault's refusal.
pub(crate) fn resolve(
    config: &ForwardedFor,
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, ApiError> {
    let values: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    if values.is_empty() {
        if config.reject_not_present {
            return Err(ApiError::InvalidRequest(
                "missing x-forwarded-for header and configured to reject when not present".into(),
            ));
        }
        return Ok(peer);
    }
    if !Cidr::any_contains(&config.authorized_addrs, peer) {
        if config.reject_not_authorized {
            return Err(ApiError::InvalidRequest(
                "client address not authorized for x-forwarded-for and configured to reject connection".into(),
            ));
        }
        // Not a proxy of ours: its header means nothing.
        return Ok(peer);
    }
    let mut chain = Vec::new();
    for value in values {
        let text = std::str::from_utf8(value).map_err(|_| {
            ApiError::InvalidRequest("malformed x-forwarded-for header: not ASCII".into())
        })?;
        chain.extend(text.split(',').map(str::trim));
    }
    let index = chain
        .len()
        .checked_sub(1 + config.hop_skips)
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "malformed x-forwarded-for configuration or request, hops to skip ({}) would skip before earliest chain link (chain length {})",
                config.hop_skips,
                chain.len()
            ))
        })?;
    let entry = chain.get(index).copied().unwrap_or_default();
    parse_entry(entry).ok_or_else(|| {
        ApiError::InvalidRequest(format!(
            "malformed x-forwarded-for header: {:?} is not an address",
            entry.chars().take(64).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn proxies() -> ForwardedFor {
        ForwardedFor::new(vec!["10.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let config = proxies();
        let peer = ip("10.1.2.3");
        assert_eq!(
            resolve(&config, peer, &headers(&["203.0.113.7"])).unwrap(),
            ip("203.0.113.7")
        );
        // The last entry is the one the proxy added; earlier ones came from the client.
        assert_eq!(
            resolve(&config, peer, &headers(&["198.51.100.1, 203.0.113.7"])).unwrap(),
            ip("203.0.113.7")
        );
        // Several headers read as one chain.
        assert_eq!(
            resolve(&config, peer, &headers(&["198.51.100.1", "203.0.113.7"])).unwrap(),
            ip("203.0.113.7")
        );
        assert_eq!(
            resolve(&config, peer, &headers(&["[2001:db8::1]:443"])).unwrap(),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(&config, peer, &headers(&["203.0.113.7:5000"])).unwrap(),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn hop_skips_walk_back_the_chain() {
        let config = ForwardedFor {
            hop_skips: 1,
            ..proxies()
        };
        let peer = ip("10.0.0.1");
        assert_eq!(
            resolve(&config, peer, &headers(&["203.0.113.7, 10.0.0.9"])).unwrap(),
            ip("203.0.113.7")
        );
        let error = resolve(&config, peer, &headers(&["203.0.113.7"])).unwrap_err();
        assert!(error.to_string().contains("hops to skip (1)"), "{error}");
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_refused_or_ignored() {
        let peer = ip("192.0.2.50");
        let error = resolve(&proxies(), peer, &headers(&["203.0.113.7"])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not authorized for x-forwarded-for"),
            "{error}"
        );
        let lenient = ForwardedFor {
            reject_not_authorized: false,
            ..proxies()
        };
        assert_eq!(
            resolve(&lenient, peer, &headers(&["203.0.113.7"])).unwrap(),
            peer
        );
    }

    #[test]
    fn a_missing_header_is_refused_unless_allowed() {
        let peer = ip("10.0.0.1");
        let error = resolve(&proxies(), peer, &HeaderMap::new()).unwrap_err();
        assert!(
            error.to_string().contains("missing x-forwarded-for"),
            "{error}"
        );
        let lenient = ForwardedFor {
            reject_not_present: false,
            ..proxies()
        };
        assert_eq!(resolve(&lenient, peer, &HeaderMap::new()).unwrap(), peer);
    }

    #[test]
    fn garbage_is_refused() {
        let peer = ip("10.0.0.1");
        for bad in ["", "not-an-address", "203.0.113.7, ", "999.1.1.1"] {
            assert!(
                resolve(&proxies(), peer, &headers(&[bad])).is_err(),
                "{bad:?}"
            );
        }
    }
}
