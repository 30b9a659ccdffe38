//! The server's own routes, from one table: each path with its methods, handlers and the
//! access it needs ([`Access`], the engine's vocabulary). [`crate::router`] registers exactly
//! these, and [`explicit_routes`] lists them for the authorisation matrix
//! (`tests/it/authz_matrix.rs`); an entry cannot be written without an access class.
//!
//! These routes bypass the engine's request pipeline: the seal life cycle works while sealed
//! and before any token exists, and `sys/leaks/github` takes a raw, signed body and answers in
//! GitHub's format. Those that need a token (`sys/seal`, `sys/rotate`,
//! `sys/key-status`) authorise it in the engine on the route's own path (without `/v1/`).
//! Every other `/v1/` path goes to the pipeline, whose routes are `custos_engine::routes`.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

pub use custos_engine::routes::Access;

use crate::{Shared, github_leaks, sys};

/// One of the server's own routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplicitRoute {
    /// The HTTP path (`/v1/sys/health`).
    pub path: &'static str,
    pub methods: Vec<Method>,
    pub access: Access,
}

impl ExplicitRoute {
    /// The path the engine authorises a token on: the HTTP path without `/v1/`.
    pub fn acl_path(&self) -> &'static str {
        self.path.strip_prefix("/v1/").unwrap_or(self.path)
    }
}

/// The methods the table uses; each is one axum method filter.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Get,
    Head,
    Put,
    Post,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Head => Method::HEAD,
            Verb::Put => Method::PUT,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Head => MethodFilter::HEAD,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route of the table: the access class is a required field.
pub(crate) struct Entry {
    pub(crate) path: &'static str,
    access: Access,
    handlers: Vec<(Verb, MethodRouter<Shared>)>,
}

impl Entry {
    fn new(path: &'static str, access: Access) -> Entry {
        Entry {
            path,
            access,
            handlers: Vec::new(),
        }
    }

    /// Serves `verbs` with `handler`.
    fn on<H, T>(mut self, verbs: &[Verb], handler: H) -> Entry
    where
        H: Handler<T, Shared>,
        T: 'static,
    {
        for &verb in verbs {
            self.handlers
                .push((verb, on(verb.filter(), handler.clone())));
        }
        self
    }

    /// The axum method router serving every method of the entry.
    pub(crate) fn method_router(self) -> MethodRouter<Shared> {
        self.handlers
            .into_iter()
            .fold(MethodRouter::new(), |router, (_, handler)| {
                router.merge(handler)
            })
    }

    fn describe(&self) -> ExplicitRoute {
        ExplicitRoute {
            path: self.path,
            methods: self
                .handlers
                .iter()
                .map(|(verb, _)| verb.method())
                .collect(),
            access: self.access,
        }
    }
}

/// The table [`crate::router`] registers.
pub(crate) fn table() -> Vec<Entry> {
    use Access::{Policy, Public, Sudo};
    use Verb::{Delete, Get, Head, Post, Put};
    vec![
        Entry::new("/v1/sys/health", Public).on(&[Get, Head], sys::health),
        Entry::new("/v1/sys/seal-status", Public).on(&[Get], sys::seal_status),
        Entry::new("/v1/sys/init", Public)
            .on(&[Get], sys::init_status)
            .on(&[Put, Post], sys::init),
        Entry::new("/v1/sys/unseal", Public).on(&[Put, Post], sys::unseal),
        // Vault's unauthenticated root generation: a quorum of unseal key shares is the proof.
        Entry::new("/v1/sys/generate-root/attempt", Public)
            .on(&[Get], sys::generate_root_status)
            .on(&[Put, Post], sys::generate_root_init)
            .on(&[Delete], sys::generate_root_cancel),
        Entry::new("/v1/sys/generate-root/update", Public)
            .on(&[Put, Post], sys::generate_root_update),
        Entry::new("/v1/sys/seal", Sudo).on(&[Put, Post], sys::seal),
        Entry::new("/v1/sys/rotate", Sudo).on(&[Put, Post], sys::rotate),
        Entry::new("/v1/sys/rotate/keyring", Sudo).on(&[Put, Post], sys::rotate_keyring),
        Entry::new("/v1/sys/key-status", Policy).on(&[Get], sys::key_status),
        Entry::new("/v1/sys/leader", Public).on(&[Get], sys::leader),
        // GitHub's secret-scanning reports: a raw body the signature covers, and GitHub's
        // answer rather than Vault's envelope. The signature is the proof.
        Entry::new("/v1/sys/leaks/github", Public).on(&[Post], github_leaks::report),
    ]
}

/// The server's own routes, as [`crate::router`] registers them.
pub fn explicit_routes() -> Vec<ExplicitRoute> {
    table().iter().map(Entry::describe).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `router()` registers the table and the pipeline's catch-all, nothing else: a route added
    /// there directly would have no access class.
    #[test]
    fn the_router_registers_only_the_table() {
        let source = include_str!("lib.rs");
        let routes: Vec<&str> = source
            .match_indices(".route(")
            .map(|(index, _)| source[index..].lines().next().unwrap_or_default())
            .collect();
        assert_eq!(
            routes,
            [
                ".route(path, entry.method_router())",
                ".route(\"/v1/{*path}\", any(logical::handle))"
            ],
            "register server routes in routes::table"
        );
        for other in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
            assert!(!source.contains(other), "{other} in router()");
        }
    }

    #[test]
    fn routes_are_unique_and_have_methods() {
        let routes = explicit_routes();
        for (index, route) in routes.iter().enumerate() {
            assert!(route.path.starts_with("/v1/sys/"), "{}", route.path);
            assert!(!route.methods.is_empty(), "{}", route.path);
            assert!(
                routes[..index].iter().all(|other| other.path != route.path),
                "{} twice",
                route.path
            );
            // The engine's pipeline never sees these paths, so its table must not claim them.
            assert!(
                custos_engine::routes::find_own(route.acl_path()).is_none(),
                "{}",
                route.path
            );
        }
    }
}
