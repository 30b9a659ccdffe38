//! Who may reach the endpoints that work without a token, and how often: source networks for
//! the seal life cycle (`sys/init`, `sys/unseal`, `sys/generate-root/*`), and per-address rate
//! limits on `sys/unseal` (shared with `sys/generate-root/*`) and `sys/leaks` (shared with
//! `sys/leaks/github`).
//!
//! The rate limiter is a token bucket per source IP in a bounded map: when the map is full, the
//! buckets that are full again (idle long enough to have forgotten their caller) are dropped,
//! and if none is, the oldest one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::Request;
use axum::http::Method;

use crate::error::ApiError;
use crate::{AppState, PeerInfo};

/// A token bucket per source address: `per_minute` requests, refilled evenly over a minute.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    capacity: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Source addresses remembered at once by one limiter.
pub const RATE_LIMIT_ADDRESSES: usize = 4096;

impl RateLimiter {
    /// `per_minute = 0` turns the limit off.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter::with_capacity(per_minute, RATE_LIMIT_ADDRESSES)
    }

    pub fn with_capacity(per_minute: u32, capacity: usize) -> RateLimiter {
        RateLimiter {
            per_minute,
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `address`'s bucket; `false` when it is empty.
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let full = f64::from(self.per_minute);
        let per_second = full / 60.0;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&address) && buckets.len() >= self.capacity {
            let refill = |bucket: &Bucket| {
                bucket.tokens
                    + now.saturating_duration_since(bucket.updated).as_secs_f64() * per_second
            };
            buckets.retain(|_, bucket| refill(bucket) < full);
            if buckets.len() >= self.capacity
                && let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.updated)
                    .map(|(address, _)| *address)
            {
                buckets.remove(&oldest);
            }
        }
        let bucket = buckets.entry(address).or_insert(Bucket {
            tokens: full,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(full);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.buckets
            .lock()
            .map(|buckets| buckets.len())
            .unwrap_or(0)
    }
}

/// Which guarded endpoint a request is for, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Guarded {
    Init,
    Unseal,
    GenerateRoot,
    Leaks,
}

fn guarded(method: &Method, path: &str) -> Option<Guarded> {
    let rest = path.strip_prefix("/v1/sys/")?;
    let rest = rest.trim_end_matches('/');
    match rest {
        // Reading whether the node is initialised is harmless; initialising is not.
        "init" if method != Method::GET && method != Method::HEAD => Some(Guarded::Init),
        "unseal" => Some(Guarded::Unseal),
        // GitHub's reports share the budget of the anonymous ones.
        "leaks" | "leaks/github" => Some(Guarded::Leaks),
        // Vault's unauthenticated endpoints and OpenBao 2's authenticated ones alike.
        _ if rest == "generate-root"
            || rest.starts_with("generate-root/")
            || rest == "generate-root-token"
            || rest.starts_with("generate-root-token/") =>
        {
            Some(Guarded::GenerateRoot)
        }
        _ => None,
    }
}

/// Source networks for the seal life cycle and rate limits for unseal and leaks: the refusal,
/// if any. Requests without a [`PeerInfo`] (in-process tests) are not restricted. Called by the
/// request middleware; costs one prefix comparison on every other path.
pub(crate) fn check(state: &AppState, request: &Request) -> Option<ApiError> {
    let endpoint = guarded(request.method(), request.uri().path())?;
    // The client's address behind a trusted proxy, else the socket's peer.
    let source = match request.extensions().get::<crate::forwarded::ClientAddr>() {
        Some(client) => client.0,
        None => request.extensions().get::<PeerInfo>()?.remote_addr.ip(),
    };
    let path = request.uri().path();
    if endpoint != Guarded::Leaks
        && let Some(networks) = &state.seal_allowed_networks
        && !networks.iter().any(|network| network.contains(source))
    {
        tracing::warn!(%source, %path, "refused: source address outside listener.unseal_allowed_networks");
        return Some(ApiError::ForbiddenNetwork);
    }
    let limiter = match endpoint {
        // Submitting shares for a new root token is as sensitive as unsealing: one budget.
        Guarded::Unseal | Guarded::GenerateRoot => Some(&state.unseal_rate_limit),
        Guarded::Leaks => Some(&state.leaks_rate_limit),
        Guarded::Init => None,
    };
    if let Some(limiter) = limiter
        && !limiter.allow(source, Instant::now())
    {
        tracing::warn!(%source, %path, "refused: rate limit of this source address reached");
        return Some(ApiError::RateLimited);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_bucket_empties_and_refills() {
        let limiter = RateLimiter::new(60);
        let start = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..60 {
            assert!(limiter.allow(a, start));
        }
        assert!(!limiter.allow(a, start));
        assert!(
            limiter.allow(ip("192.0.2.2"), start),
            "other addresses have their own bucket"
        );
        assert!(limiter.allow(a, start + Duration::from_secs(1)));
        assert!(!limiter.allow(a, start + Duration::from_secs(1)));
    }

    #[test]
    fn a_zero_limit_allows_everything() {
        let limiter = RateLimiter::new(0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.allow(ip("192.0.2.1"), now));
        }
    }

    #[test]
    fn the_map_of_addresses_stays_bounded() {
        let limiter = RateLimiter::with_capacity(10, 8);
        let now = Instant::now();
        for index in 0..100u8 {
            limiter.allow(IpAddr::from([192, 0, 2, index]), now);
            assert!(limiter.remembered() <= 8);
        }
    }

    #[test]
    fn guarded_paths() {
        assert_eq!(guarded(&Method::PUT, "/v1/sys/init"), Some(Guarded::Init));
        assert_eq!(guarded(&Method::GET, "/v1/sys/init"), None);
        assert_eq!(
            guarded(&Method::PUT, "/v1/sys/unseal"),
            Some(Guarded::Unseal)
        );
        assert_eq!(
            guarded(&Method::PUT, "/v1/sys/generate-root/attempt"),
            Some(Guarded::GenerateRoot)
        );
        assert_eq!(
            guarded(&Method::GET, "/v1/sys/generate-root-token/attempt"),
            Some(Guarded::GenerateRoot)
        );
        assert_eq!(guarded(&Method::GET, "/v1/sys/generate-rootx"), None);
        assert_eq!(
            guarded(&Method::POST, "/v1/sys/leaks/"),
            Some(Guarded::Leaks)
        );
        assert_eq!(
            guarded(&Method::POST, "/v1/sys/leaks/github"),
            Some(Guarded::Leaks)
        );
        assert_eq!(guarded(&Method::POST, "/v1/sys/leaks/other"), None);
        assert_eq!(guarded(&Method::GET, "/v1/secret/data/unseal"), None);
        assert_eq!(guarded(&Method::GET, "/v1/sys/seal-status"), None);
    }
}
