//! The route table: every logical route the engine serves, with its operations, the access it
//! needs, and an example path. It is authoritative, not documentation:
//!
//! - **Skipping authentication.** The pipeline serves a request without a token only when the
//!   table declares its route [`Access::Public`] (or [`Access::WrappingToken`], when the request
//!   token is the wrapping token): `sys/leaks`, `sys/wrapping/lookup`, `sys/wrapping/unwrap`
//!   (`unauthenticated`), and an auth method's login paths, which must be declared Public here
//!   *and* by the method's backend (`LogicalBackend::unauthenticated_paths`, checked by
//!   `login_declared`). Nothing else can skip authentication, whatever a handler does.
//! - **Engine-owned paths.** `sys/...` and `auth/token/...` are served only when the table
//!   declares them (`check_declared`, called by the pipeline after authorisation and before
//!   routing): an undeclared path is answered "no route" (404) and an undeclared operation
//!   "unsupported operation" (405), even for root. So a route added to a dispatcher (`sys.rs`,
//!   `policy/`, `wrapping.rs`, `generate_root.rs`, `token/endpoints.rs`) but not to [`ROUTES`]
//!   is unreachable, and its first test fails; adding it here forces a choice of [`Access`],
//!   which the authorisation matrix (`crates/custos-server/tests/it/authz_matrix.rs`) then
//!   checks for every operation with no token, a token without access, a token whose policy
//!   grants exactly the example (and the same policy without `sudo`, on `Sudo` routes), and
//!   root.
//! - **Mounted backends** (auth methods, KV) are listed at example mounts
//!   ([`EXAMPLE_MOUNTS`]), so the matrix covers their paths too. Everything under a mount is
//!   authorised by the pipeline's ACL; only their login paths are special (above).
//!
//! Patterns are `/`-separated segments: a literal, `+` (exactly one segment) or `*` (one or
//! more segments). A trailing `/` on a request path (a folder, for lists) is ignored. The first
//! matching entry wins, so specific entries come before general ones; a route whose operations
//! need different access has one entry per class, with the same pattern.

use crate::logical::Operation;
use crate::logical::Operation::{Delete, List, Patch, Read, Update};

/// What a route needs from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// No token: the request carries its own proof (login credentials, a leaked credential, a
    /// wrapping token in the body). Any token sent is ignored.
    Public,
    /// The request token is a response-wrapping token, not a login token (`sys/wrapping/unwrap`
    /// without a token in the body); with a token in the body it is a [`Access::SelfToken`]
    /// route. Needs no policy, but needs a token.
    WrappingToken,
    /// Any valid token: the `default` policy grants it (a token acting on itself).
    SelfToken,
    /// A token whose policies grant the operation's capability on the path.
    Policy,
    /// As [`Access::Policy`], plus `sudo` (a root-protected path).
    Sudo,
}

/// A mount the examples of mounted backends assume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExampleMount {
    /// The mount path (`kv/`); auth methods without `auth/`.
    pub path: &'static str,
    /// The engine or method type (`kv`, `userpass`).
    pub kind: &'static str,
    /// The `version` option of a KV mount.
    pub version: Option<&'static str>,
    /// An auth method (`sys/auth/<path>`) rather than a secrets engine (`sys/mounts/<path>`).
    pub auth: bool,
}

pub const USERPASS: ExampleMount = ExampleMount {
    path: "userpass/",
    kind: "userpass",
    version: None,
    auth: true,
};
pub const APPROLE: ExampleMount = ExampleMount {
    path: "approle/",
    kind: "approle",
    version: None,
    auth: true,
};
pub const CERT: ExampleMount = ExampleMount {
    path: "cert/",
    kind: "cert",
    version: None,
    auth: true,
};
pub const KV_V1: ExampleMount = ExampleMount {
    path: "kv/",
    kind: "kv",
    version: Some("1"),
    auth: false,
};
pub const KV_V2: ExampleMount = ExampleMount {
    path: "secret/",
    kind: "kv",
    version: Some("2"),
    auth: false,
};

/// Every mount an example in [`ROUTES`] assumes.
pub const EXAMPLE_MOUNTS: &[ExampleMount] = &[USERPASS, APPROLE, CERT, KV_V1, KV_V2];

/// One logical route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The path pattern (see the module documentation).
    pub pattern: &'static str,
    /// The operations it serves. `Update` stands for `Create` too: a write is `Create` or
    /// `Update` only for the ACL (Vault's existence check); handlers take both.
    pub operations: &'static [Operation],
    pub access: Access,
    /// A concrete path the pattern matches, harmless to call with any operation and no body
    /// on a server with [`EXAMPLE_MOUNTS`] (it names nothing the matrix relies on).
    pub example: &'static str,
    /// The path a policy must grant for the example, when not the example itself
    /// (`sys/internal/ui/mounts/<path>` is allowed by any grant under the mount).
    pub grant: Option<&'static str>,
    /// The example mount serving the route; `None` for the engine's own routes.
    pub mount: Option<ExampleMount>,
}

const fn own(
    pattern: &'static str,
    operations: &'static [Operation],
    access: Access,
    example: &'static str,
) -> Route {
    Route {
        pattern,
        operations,
        access,
        example,
        grant: None,
        mount: None,
    }
}

const fn mounted(
    mount: ExampleMount,
    pattern: &'static str,
    operations: &'static [Operation],
    access: Access,
    example: &'static str,
) -> Route {
    Route {
        pattern,
        operations,
        access,
        example,
        grant: None,
        mount: Some(mount),
    }
}

use Access::{Policy, Public, SelfToken, Sudo, WrappingToken};

/// Every logical route the engine serves (the seal life cycle endpoints and `sys/seal`,
/// `sys/rotate`, `sys/key-status` are the server's own routes, listed by
/// `custos_server::explicit_routes`).
pub const ROUTES: &[Route] = &[
    // Unauthenticated `sys/` endpoints.
    own("sys/leaks", &[Update], Public, "sys/leaks"),
    own(
        "sys/wrapping/lookup",
        &[Read, Update],
        Public,
        "sys/wrapping/lookup",
    ),
    own(
        "sys/wrapping/unwrap",
        &[Update],
        WrappingToken,
        "sys/wrapping/unwrap",
    ),
    own(
        "sys/wrapping/wrap",
        &[Update],
        SelfToken,
        "sys/wrapping/wrap",
    ),
    own(
        "sys/wrapping/rewrap",
        &[Update],
        Policy,
        "sys/wrapping/rewrap",
    ),
    // Policies (`policy/`).
    own("sys/policy", &[Read, List], Policy, "sys/policy"),
    own(
        "sys/policy/*",
        &[Read, Update, Delete],
        Policy,
        "sys/policy/example",
    ),
    own("sys/policies/acl", &[List], Policy, "sys/policies/acl"),
    own(
        "sys/policies/acl/*",
        &[Read, Update, Delete],
        Policy,
        "sys/policies/acl/example",
    ),
    own(
        "sys/policies/explain",
        &[Update],
        Policy,
        "sys/policies/explain",
    ),
    own("sys/capabilities", &[Update], Policy, "sys/capabilities"),
    own(
        "sys/capabilities-self",
        &[Update],
        SelfToken,
        "sys/capabilities-self",
    ),
    own(
        "sys/capabilities-accessor",
        &[Update],
        Policy,
        "sys/capabilities-accessor",
    ),
    // Auth methods (`auth/mod.rs`).
    own("sys/auth", &[Read], Policy, "sys/auth"),
    own(
        "sys/auth/*/tune",
        &[Read, Update],
        Sudo,
        "sys/auth/userpass/tune",
    ),
    own(
        "sys/auth/*",
        &[Read, Update, Delete],
        Sudo,
        "sys/auth/scratch",
    ),
    // Audit devices (`audit/endpoints.rs`).
    own("sys/audit", &[Read], Sudo, "sys/audit"),
    own("sys/audit/*", &[Update, Delete], Sudo, "sys/audit/example"),
    own(
        "sys/audit-hash/*",
        &[Update],
        Sudo,
        "sys/audit-hash/example",
    ),
    own(
        "sys/audit-verify/*",
        &[Update],
        Sudo,
        "sys/audit-verify/example",
    ),
    // Secrets engines (`sys.rs`).
    own("sys/mounts", &[Read], Policy, "sys/mounts"),
    own(
        "sys/mounts/*/tune",
        &[Read, Update],
        Policy,
        "sys/mounts/kv/tune",
    ),
    own(
        "sys/mounts/*",
        &[Read, Update, Delete],
        Policy,
        "sys/mounts/scratch",
    ),
    own("sys/remount", &[Update], Sudo, "sys/remount"),
    own(
        "sys/remount/status/*",
        &[Read],
        Policy,
        "sys/remount/status/example",
    ),
    own("sys/inventory", &[Read], Policy, "sys/inventory"),
    own(
        "sys/posture/secrets",
        &[Read],
        Policy,
        "sys/posture/secrets",
    ),
    Route {
        grant: Some("kv/example"),
        ..own(
            "sys/internal/ui/mounts/*",
            &[Read],
            Policy,
            "sys/internal/ui/mounts/kv",
        )
    },
    // OpenBao's authenticated root generation (`generate_root.rs`).
    own(
        "sys/generate-root-token/attempt",
        &[Read, Update, Delete],
        Policy,
        "sys/generate-root-token/attempt",
    ),
    own(
        "sys/generate-root-token/update",
        &[Update],
        Policy,
        "sys/generate-root-token/update",
    ),
    // The token store (`token/endpoints.rs`).
    own("auth/token/create", &[Update], Policy, "auth/token/create"),
    own(
        "auth/token/create-orphan",
        &[Update],
        Policy,
        "auth/token/create-orphan",
    ),
    own(
        "auth/token/create/*",
        &[Update],
        Policy,
        "auth/token/create/example",
    ),
    own(
        "auth/token/lookup-self",
        &[Read],
        SelfToken,
        "auth/token/lookup-self",
    ),
    // The `default` policy grants only `read`, as Vault's.
    own(
        "auth/token/lookup-self",
        &[Update],
        Policy,
        "auth/token/lookup-self",
    ),
    own(
        "auth/token/lookup",
        &[Read, Update],
        Policy,
        "auth/token/lookup",
    ),
    own(
        "auth/token/lookup-accessor",
        &[Read, Update],
        Policy,
        "auth/token/lookup-accessor",
    ),
    own(
        "auth/token/renew-self",
        &[Update],
        SelfToken,
        "auth/token/renew-self",
    ),
    own("auth/token/renew", &[Update], Policy, "auth/token/renew"),
    own(
        "auth/token/renew-accessor",
        &[Update],
        Policy,
        "auth/token/renew-accessor",
    ),
    own(
        "auth/token/revoke-self",
        &[Update],
        SelfToken,
        "auth/token/revoke-self",
    ),
    own("auth/token/revoke", &[Update], Policy, "auth/token/revoke"),
    own(
        "auth/token/revoke-accessor",
        &[Update],
        Policy,
        "auth/token/revoke-accessor",
    ),
    // The token store asks for sudo itself (Vault protects only `revoke-orphan/*` in its ACL).
    own(
        "auth/token/revoke-orphan",
        &[Update],
        Sudo,
        "auth/token/revoke-orphan",
    ),
    own(
        "auth/token/accessors",
        &[List],
        Sudo,
        "auth/token/accessors",
    ),
    own("auth/token/tidy", &[Update], Policy, "auth/token/tidy"),
    own("auth/token/roles", &[List], Policy, "auth/token/roles"),
    own(
        "auth/token/roles/*",
        &[Read, Update, Delete],
        Policy,
        "auth/token/roles/example",
    ),
    // userpass at `auth/userpass/`.
    mounted(
        USERPASS,
        "auth/userpass/login/+",
        &[Update],
        Public,
        "auth/userpass/login/example",
    ),
    mounted(
        USERPASS,
        "auth/userpass/users",
        &[List],
        Policy,
        "auth/userpass/users",
    ),
    mounted(
        USERPASS,
        "auth/userpass/users/+/password",
        &[Update],
        Policy,
        "auth/userpass/users/example/password",
    ),
    mounted(
        USERPASS,
        "auth/userpass/users/+/policies",
        &[Update],
        Policy,
        "auth/userpass/users/example/policies",
    ),
    mounted(
        USERPASS,
        "auth/userpass/users/+/totp",
        &[Read, Update, Delete],
        Policy,
        "auth/userpass/users/example/totp",
    ),
    mounted(
        USERPASS,
        "auth/userpass/users/+",
        &[Read, Update, Delete],
        Policy,
        "auth/userpass/users/example",
    ),
    // AppRole at `auth/approle/`.
    mounted(
        APPROLE,
        "auth/approle/login",
        &[Update],
        Public,
        "auth/approle/login",
    ),
    mounted(
        APPROLE,
        "auth/approle/role",
        &[List],
        Policy,
        "auth/approle/role",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/secret-id/lookup",
        &[Update],
        Policy,
        "auth/approle/role/example/secret-id/lookup",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/secret-id/destroy",
        &[Update, Delete],
        Policy,
        "auth/approle/role/example/secret-id/destroy",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/secret-id-accessor/lookup",
        &[Update],
        Policy,
        "auth/approle/role/example/secret-id-accessor/lookup",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/secret-id-accessor/destroy",
        &[Update, Delete],
        Policy,
        "auth/approle/role/example/secret-id-accessor/destroy",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/secret-id",
        &[Update, List],
        Policy,
        "auth/approle/role/example/secret-id",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/custom-secret-id",
        &[Update],
        Policy,
        "auth/approle/role/example/custom-secret-id",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+/role-id",
        &[Read, Update],
        Policy,
        "auth/approle/role/example/role-id",
    ),
    // The role's field endpoints (`policies`, `token-ttl`, ...).
    mounted(
        APPROLE,
        "auth/approle/role/+/+",
        &[Read, Update, Delete],
        Policy,
        "auth/approle/role/example/token-ttl",
    ),
    mounted(
        APPROLE,
        "auth/approle/role/+",
        &[Read, Update, Delete],
        Policy,
        "auth/approle/role/example",
    ),
    mounted(
        APPROLE,
        "auth/approle/tidy/secret-id",
        &[Update],
        Policy,
        "auth/approle/tidy/secret-id",
    ),
    // Certificate auth at `auth/cert/`.
    mounted(
        CERT,
        "auth/cert/login",
        &[Update],
        Public,
        "auth/cert/login",
    ),
    mounted(CERT, "auth/cert/certs", &[List], Policy, "auth/cert/certs"),
    mounted(
        CERT,
        "auth/cert/certs/+",
        &[Read, Update, Delete],
        Policy,
        "auth/cert/certs/example",
    ),
    // KV version 1 at `kv/`.
    mounted(
        KV_V1,
        "kv/*",
        &[Read, List, Update, Delete],
        Policy,
        "kv/example",
    ),
    // KV version 2 at `secret/`.
    mounted(
        KV_V2,
        "secret/config",
        &[Read, Update, Patch],
        Policy,
        "secret/config",
    ),
    mounted(
        KV_V2,
        "secret/data/*",
        &[Read, Update, Patch, Delete],
        Policy,
        "secret/data/example",
    ),
    mounted(
        KV_V2,
        "secret/metadata/*",
        &[Read, List, Update, Patch, Delete],
        Policy,
        "secret/metadata/example",
    ),
    mounted(
        KV_V2,
        "secret/delete/*",
        &[Update],
        Policy,
        "secret/delete/example",
    ),
    mounted(
        KV_V2,
        "secret/undelete/*",
        &[Update],
        Policy,
        "secret/undelete/example",
    ),
    mounted(
        KV_V2,
        "secret/destroy/*",
        &[Update],
        Policy,
        "secret/destroy/example",
    ),
    mounted(
        KV_V2,
        "secret/subkeys/*",
        &[Read],
        Policy,
        "secret/subkeys/example",
    ),
];

impl Route {
    /// Whether the route serves `operation` (`Create` counts as `Update`).
    pub fn serves(&self, operation: Operation) -> bool {
        let operation = match operation {
            Operation::Create => Operation::Update,
            other => other,
        };
        self.operations.contains(&operation)
    }

    /// Whether `path` is this route's.
    pub fn matches(&self, path: &str) -> bool {
        matches(self.pattern, path)
    }

    /// The path a policy must grant to allow the example.
    pub fn grant_path(&self) -> &'static str {
        self.grant.unwrap_or(self.example)
    }
}

/// Whether `path` matches `pattern` (see the module documentation). Allocates nothing: the
/// pipeline asks for every request.
pub fn matches(pattern: &str, path: &str) -> bool {
    /// The first segment and the rest, if any.
    fn split(text: &str) -> (&str, Option<&str>) {
        match text.split_once('/') {
            Some((head, rest)) => (head, Some(rest)),
            None => (text, None),
        }
    }
    fn walk(pattern: Option<&str>, path: Option<&str>) -> bool {
        let (Some(pattern), Some(path)) = (pattern, path) else {
            return pattern.is_none() && path.is_none();
        };
        let (head, rest) = split(pattern);
        if head == "*" {
            // One or more segments: try every end of a segment.
            let mut from = 0;
            while let Some(slash) = path[from..].find('/').map(|index| from + index) {
                if walk(rest, Some(&path[slash + 1..])) {
                    return true;
                }
                from = slash + 1;
            }
            return walk(rest, None);
        }
        let (segment, tail) = split(path);
        (head == "+" || head == segment) && walk(rest, tail)
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return false;
    }
    walk(Some(pattern), Some(path))
}

/// Whether the ACL itself asks for `sudo` on `path` (an ACL path: a list's ends in `/`), as
/// for Vault's root-protected paths. Other [`Access::Sudo`] routes are checked by their handler
/// (`auth/token/revoke-orphan`, as in Vault).
pub fn root_protected(path: &str) -> bool {
    crate::policy::needs_sudo(path)
}

/// Whether the engine itself (not a mount) serves `path`: `sys/...` and `auth/token/...`.
pub fn is_engine_owned(path: &str) -> bool {
    path.starts_with("sys/")
        || path.trim_end_matches('/') == "sys"
        || crate::token::is_token_store_path(path)
}

/// The engine's own route at `path` (the first entry matching it), if the table declares one.
pub fn find_own(path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .filter(|route| route.mount.is_none())
        .find(|route| route.matches(path))
}

/// The entry declaring `operation` on the engine's own route at `path`: a route whose
/// operations need different access (`auth/token/lookup-self`: any token may read itself, but
/// a write needs a policy) has one entry per access class, with the same pattern.
pub fn find_own_for(path: &str, operation: Operation) -> Option<&'static Route> {
    let first = find_own(path)?;
    ROUTES
        .iter()
        .filter(|route| route.mount == first.mount && route.pattern == first.pattern)
        .find(|route| route.serves(operation))
}

/// The pipeline's gate for engine-owned paths: an undeclared path is no route, an undeclared
/// operation unsupported. Paths under mounts pass (their backends answer for them).
pub(crate) fn check_declared(path: &str, operation: Operation) -> Result<(), crate::EngineError> {
    if !is_engine_owned(path) {
        return Ok(());
    }
    if find_own_for(path, operation).is_some() {
        Ok(())
    } else if find_own(path).is_some() {
        Err(crate::EngineError::MethodNotAllowed)
    } else {
        Err(crate::EngineError::NoRoute(path.to_owned()))
    }
}

/// The route of a request the pipeline serves without authenticating its token: a
/// [`Access::Public`] route, or an [`Access::WrappingToken`] one when the body names no token.
/// An operation a public route does not serve is still its (answered "unsupported").
pub(crate) fn unauthenticated(
    path: &str,
    operation: Operation,
    body_token: bool,
) -> Option<&'static Route> {
    if !is_engine_owned(path) {
        return None;
    }
    let route = find_own_for(path, operation).or_else(|| find_own(path))?;
    match route.access {
        Access::Public => Some(route),
        Access::WrappingToken if !body_token => Some(route),
        _ => None,
    }
}

/// Whether the table declares `relative` (a path below a method's mount) a login path of auth
/// methods of type `kind`.
pub(crate) fn login_declared(kind: &str, relative: &str) -> bool {
    ROUTES.iter().any(|route| {
        route.access == Access::Public
            && route.mount.is_some_and(|mount| {
                mount.auth
                    && mount.kind == kind
                    && route
                        .pattern
                        .strip_prefix("auth/")
                        .and_then(|pattern| pattern.strip_prefix(mount.path))
                        .is_some_and(|pattern| matches(pattern, relative))
            })
    })
}

#[cfg(test)]
mod tests;
