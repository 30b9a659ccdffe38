//! The route table's own consistency, and the pipeline's use of it.

use std::sync::Arc;

use custos_storage::MemoryStorage;
use serde_json::json;

use super::*;
use crate::logical::Operation;
use crate::{Engine, EngineError, FakeClock, Request};

#[test]
fn patterns_match_segments() {
    assert!(matches("sys/mounts/*", "sys/mounts/a"));
    assert!(matches("sys/mounts/*", "sys/mounts/a/b/"));
    assert!(!matches("sys/mounts/*", "sys/mounts"));
    assert!(matches("sys/mounts/*/tune", "sys/mounts/a/b/tune"));
    assert!(!matches("sys/mounts/*/tune", "sys/mounts/tune"));
    assert!(matches("sys/policy/+", "sys/policy/a"));
    assert!(!matches("sys/policy/+", "sys/policy/a/b"));
    assert!(matches("sys/policy/*", "sys/policy/a/b"));
    assert!(matches("sys/leaks", "sys/leaks/"));
    assert!(!matches("sys/leaks", "sys/leaks/x"));
    assert!(matches("a/*/b/*/c", "a/x/y/b/z/c"));
    assert!(matches("a/*/b", "a/b/b"));
    assert!(!matches("a/*/b", "a/b"));
    assert!(matches("kv/*", "kv/a/b/c"));
    assert!(!matches("kv/+", "kv/a/b"));
    assert!(!matches("sys/leaks", "sys"));
    for bad in ["", "/", "sys//leaks", "sys/leaks//"] {
        assert!(!matches("sys/leaks", bad), "{bad:?}");
        assert!(!matches("sys/*", bad), "{bad:?}");
    }
}

#[test]
fn every_example_is_served_by_its_own_entry() {
    for route in ROUTES {
        assert!(!route.operations.is_empty(), "{}", route.pattern);
        // The first entry matching the example is the entry itself: no earlier, more general
        // entry shadows it.
        let first = ROUTES
            .iter()
            .filter(|other| other.mount == route.mount)
            .find(|other| other.matches(route.example))
            .map(|other| other.pattern);
        assert_eq!(first, Some(route.pattern), "example {}", route.example);
        if route.mount.is_none() {
            for &operation in route.operations {
                let found = find_own_for(route.example, operation).map(|other| other.access);
                assert_eq!(found, Some(route.access), "{operation:?} {}", route.pattern);
            }
        }
        assert!(crate::pipeline::validate_path(route.example).is_ok());
        assert_eq!(is_engine_owned(route.example), route.mount.is_none());
        if let Some(mount) = route.mount {
            let prefix = if mount.auth {
                format!("auth/{}", mount.path)
            } else {
                mount.path.to_owned()
            };
            assert!(route.pattern.starts_with(&prefix), "{}", route.pattern);
            assert!(EXAMPLE_MOUNTS.contains(&mount));
        }
    }
}

/// A path Vault protects with `sudo` is declared [`Access::Sudo`], so the matrix grants (and
/// checks) `sudo` for it.
#[test]
fn root_protected_paths_are_declared_sudo() {
    for route in ROUTES {
        for &operation in route.operations {
            let acl = crate::policy::acl_path(route.example, operation);
            if crate::policy::needs_sudo(&acl) {
                assert_eq!(
                    route.access,
                    Access::Sudo,
                    "{} {operation:?}",
                    route.pattern
                );
            }
        }
    }
}

/// The login paths a backend names and the ones the table declares public are the same.
#[test]
fn login_paths_agree_with_the_backends() {
    for mount in EXAMPLE_MOUNTS.iter().filter(|mount| mount.auth) {
        let backend = crate::auth::backend_for(mount.kind).expect("backend");
        for pattern in backend.unauthenticated_paths() {
            let concrete = pattern.replace('*', "example");
            assert!(
                login_declared(mount.kind, &concrete),
                "{} login path {pattern} is not declared public",
                mount.kind
            );
        }
        let prefix = format!("auth/{}", mount.path);
        for route in ROUTES.iter().filter(|route| route.mount == Some(*mount)) {
            let relative = route
                .example
                .strip_prefix(&prefix)
                .expect("under the mount");
            let backend_login = crate::auth::matches_any(backend.unauthenticated_paths(), relative);
            assert_eq!(
                route.access == Access::Public,
                backend_login,
                "{}",
                route.pattern
            );
        }
    }
    // Only auth methods' logins and the engine's own public routes are public.
    for route in ROUTES.iter().filter(|route| route.access == Access::Public) {
        assert!(
            route.mount.is_none_or(|mount| mount.auth),
            "{}",
            route.pattern
        );
    }
}

#[test]
fn undeclared_engine_paths_are_refused_before_routing() {
    assert!(check_declared("sys/mounts", Operation::Read).is_ok());
    assert!(check_declared("sys/mounts/", Operation::Read).is_ok());
    assert!(check_declared("sys/mounts/a/b/tune", Operation::Update).is_ok());
    assert!(check_declared("auth/token/create", Operation::Create).is_ok());
    assert!(check_declared("kv/anything", Operation::Patch).is_ok());
    assert!(check_declared("auth/userpass/anything", Operation::Read).is_ok());
    assert!(matches!(
        check_declared("sys/undeclared", Operation::Read),
        Err(EngineError::NoRoute(_))
    ));
    assert!(matches!(
        check_declared("auth/token/undeclared", Operation::Update),
        Err(EngineError::NoRoute(_))
    ));
    assert!(matches!(
        check_declared("sys/mounts", Operation::Delete),
        Err(EngineError::MethodNotAllowed)
    ));
    assert!(matches!(
        check_declared("sys/wrapping/wrap", Operation::Read),
        Err(EngineError::MethodNotAllowed)
    ));
    // Two entries, one route: each operation finds its own.
    assert!(check_declared("auth/token/lookup-self", Operation::Read).is_ok());
    assert!(check_declared("auth/token/lookup-self", Operation::Update).is_ok());
    assert_eq!(
        find_own_for("auth/token/lookup-self", Operation::Update).map(|route| route.access),
        Some(Access::Policy)
    );
}

#[test]
fn only_declared_routes_skip_authentication() {
    let update = Operation::Update;
    assert!(unauthenticated("sys/leaks", update, false).is_some());
    assert!(unauthenticated("sys/leaks/", update, true).is_some());
    // Public with an operation it does not serve: answered "unsupported" without a token.
    assert!(unauthenticated("sys/leaks", Operation::Read, false).is_some());
    assert!(unauthenticated("sys/wrapping/lookup", update, true).is_some());
    assert!(unauthenticated("sys/wrapping/unwrap", update, false).is_some());
    assert!(unauthenticated("sys/wrapping/unwrap", update, true).is_none());
    for path in [
        "sys/wrapping/wrap",
        "sys/mounts",
        "auth/token/lookup-self",
        "sys/leaks/x",
    ] {
        for operation in [Operation::Read, update] {
            assert!(unauthenticated(path, operation, false).is_none(), "{path}");
        }
    }
    assert!(login_declared("userpass", "login/alice"));
    assert!(!login_declared("userpass", "users/alice"));
    assert!(login_declared("approle", "login"));
    assert!(!login_declared("approle", "login/x"));
    assert!(!login_declared("kv", "login"));
}

async fn engine() -> (Engine, String) {
    let engine = Engine::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(FakeClock::new(
            "2025-01-15T10:00:00Z".parse().expect("time"),
        )),
    );
    let output = engine.dev_init(None).await.expect("dev init");
    let root = output.root_token.to_string();
    for mount in EXAMPLE_MOUNTS {
        if mount.auth {
            engine
                .enable_auth_method(&root, mount.path, mount.kind)
                .await
                .expect("auth method");
        } else {
            let options: Vec<(&str, &str)> = mount
                .version
                .map(|version| ("version", version))
                .into_iter()
                .collect();
            engine
                .mount(&root, mount.path, mount.kind, &options)
                .await
                .expect("mount");
        }
    }
    (engine, root)
}

/// Every declared engine route and operation reaches a handler that knows it (root is never
/// told "no route" or "unsupported operation"): the table lists nothing the dispatchers lack.
#[tokio::test]
async fn every_declared_route_is_served() {
    let (engine, root) = engine().await;
    for route in ROUTES {
        for &operation in route.operations {
            // The root token's own revocation would end the walk.
            if route.pattern == "auth/token/revoke-self" {
                continue;
            }
            let request = Request::new(operation, route.example).token(root.as_str());
            let result = engine.handle(request).await;
            assert!(
                !matches!(
                    result,
                    Err(EngineError::NoRoute(_)
                        | EngineError::MethodNotAllowed
                        | EngineError::UnsupportedOperation(_)
                        | EngineError::PermissionDenied)
                ),
                "{operation:?} {}: {result:?}",
                route.example
            );
        }
    }
}

/// A route the dispatchers serve but the table does not declare is refused, even for root; the
/// same request on a declared route is served.
#[tokio::test]
async fn the_pipeline_serves_only_declared_engine_routes() {
    let (engine, root) = engine().await;
    // `sys/wrapping/wrap` with a read: `handle_wrapping` does not look at the operation, the
    // table does.
    let read_wrap = Request::new(Operation::Read, "sys/wrapping/wrap").token(root.as_str());
    assert!(matches!(
        engine.handle(read_wrap).await,
        Err(EngineError::MethodNotAllowed)
    ));
    for path in [
        "sys/undeclared",
        "sys/wrapping/nothing",
        "auth/token/nothing",
    ] {
        let request = Request::new(Operation::Update, path).token(root.as_str());
        assert!(
            matches!(engine.handle(request).await, Err(EngineError::NoRoute(_))),
            "{path}"
        );
    }
    // Without a token an undeclared path is denied, not revealed.
    let anonymous = Request::new(Operation::Read, "sys/undeclared");
    assert!(matches!(
        engine.handle(anonymous).await,
        Err(EngineError::PermissionDenied)
    ));
    // A public route still needs no token, and takes only its declared operations.
    let leaks = Request::new(Operation::Update, "sys/leaks").data(json!({"leaks": []}));
    assert!(!matches!(
        engine.handle(leaks).await,
        Err(EngineError::PermissionDenied)
    ));
    let lookup = Request::new(Operation::Delete, "sys/wrapping/lookup");
    assert!(matches!(
        engine.handle(lookup).await,
        Err(EngineError::MethodNotAllowed)
    ));
}

proptest::proptest! {
    #[test]
    fn matching_never_panics(pattern in "[a+*/\u{e9}]{0,12}", path in "[ab/\u{e9}]{0,16}") {
        let _ = matches(&pattern, &path);
    }

    /// A `*` segment takes one or more whole segments, like `+` repeated.
    #[test]
    fn star_is_one_or_more_plus(segments in 1usize..5) {
        let path = format!("kv/{}", vec!["s"; segments].join("/"));
        let plus = format!("kv/{}", vec!["+"; segments].join("/"));
        proptest::prop_assert!(matches("kv/*", &path));
        proptest::prop_assert!(matches(&plus, &path));
        let longer = format!("{plus}/+");
        proptest::prop_assert!(!matches(&longer, &path));
    }
}
