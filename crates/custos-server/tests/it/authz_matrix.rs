//! The authorisation matrix, generated from the route tables the router and the engine use
//! (`custos_server::explicit_routes`, `custos_engine::routes::ROUTES`): every route × every
//! operation it serves × {no token, a token with only `default`, a token whose one policy grants
//! exactly the route's example (with `sudo` where the route needs it), root} gets the status its
//! access class promises; on a [`Access::Sudo`] route, the same policy without `sudo` is refused. A route added to either table is checked here without a line of this
//! file changing; a route served without being in a table is refused (see
//! `custos_engine::routes`).
//!
//! "Allowed" means the request got past authorisation: any status but 403, and never 405, a
//! 5xx or "no handler for route" (the table promised the route and operation). 400 and 404
//! are allowed answers: the examples carry no body and name nothing that exists.

use std::fmt::Write as _;

use axum::http::{Method, StatusCode};
use custos_engine::logical::Operation;
use custos_engine::routes::{Access, EXAMPLE_MOUNTS, ROUTES};
use custos_server::explicit_routes;
use serde_json::{Value, json};

use crate::support::{Init, Reply, Server, req, unsealed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    NoToken,
    DefaultOnly,
    /// The granting policy without `sudo` (only for [`Access::Sudo`] routes).
    NoSudo,
    Granted,
    Root,
}

const KINDS: [Kind; 5] = [
    Kind::NoToken,
    Kind::DefaultOnly,
    Kind::NoSudo,
    Kind::Granted,
    Kind::Root,
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::NoToken => "none",
            Kind::DefaultOnly => "default",
            Kind::NoSudo => "no-sudo",
            Kind::Granted => "granted",
            Kind::Root => "root",
        }
    }
}

/// Whether a caller of `kind` may use a route of class `access`.
fn allowed(access: Access, kind: Kind) -> bool {
    match access {
        Access::Public => true,
        Access::WrappingToken | Access::SelfToken => kind != Kind::NoToken,
        Access::Policy | Access::Sudo => matches!(kind, Kind::Granted | Kind::Root),
    }
}

/// The capabilities a policy needs for `operation` (a write may be a `create`), and `sudo`.
fn capabilities(operation: Operation, sudo: bool) -> Vec<&'static str> {
    let mut caps = match operation {
        Operation::Create | Operation::Update => vec!["create", "update"],
        other => vec![other.capability()],
    };
    if sudo {
        caps.push("sudo");
    }
    caps
}

/// A policy of one rule: these capabilities on `path`.
fn rule(path: &str, caps: &[&str]) -> String {
    format!("path {path:?} {{ capabilities = {caps:?} }}")
}

/// The ACL path of a request: a list is about a folder.
fn acl_path(path: &str, operation: Operation) -> String {
    if operation == Operation::List && !path.ends_with('/') {
        format!("{path}/")
    } else {
        path.to_owned()
    }
}

fn operation_of(method: &Method) -> Operation {
    match *method {
        Method::GET | Method::HEAD => Operation::Read,
        Method::DELETE => Operation::Delete,
        Method::PATCH => Operation::Patch,
        _ => Operation::Update,
    }
}

struct Matrix {
    server: Server,
    init: Init,
    root: String,
    cases: usize,
    table: String,
    failures: Vec<String>,
}

impl Matrix {
    async fn new() -> Matrix {
        let (server, init) = unsealed().await;
        let root = init.root_token.clone();
        let matrix = Matrix {
            server,
            init,
            root,
            cases: 0,
            table: String::new(),
            failures: Vec::new(),
        };
        for mount in EXAMPLE_MOUNTS {
            let (path, body) = if mount.auth {
                (
                    format!("/v1/sys/auth/{}", mount.path),
                    json!({ "type": mount.kind }),
                )
            } else {
                (
                    format!("/v1/sys/mounts/{}", mount.path),
                    json!({ "type": mount.kind, "options": { "version": mount.version } }),
                )
            };
            let reply = matrix.root_put(&path, &body).await;
            assert!(reply.status.is_success(), "{path}: {}", reply.json());
        }
        matrix
    }

    async fn root_put(&self, path: &str, body: &Value) -> Reply {
        self.server
            .send(req(Method::PUT, path).token(&self.root).json(body))
            .await
    }

    /// A child of root with these policies.
    async fn token(&self, policies: &[&str]) -> String {
        let reply = self
            .root_put("/v1/auth/token/create", &json!({ "policies": policies }))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        reply.json()["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned()
    }

    /// The token of `kind` for one case; `rule` is the granting policy's one rule.
    async fn token_for(&mut self, kind: Kind, rule: &str) -> Option<String> {
        match kind {
            Kind::NoToken => None,
            Kind::DefaultOnly => Some(self.token(&["default"]).await),
            Kind::NoSudo | Kind::Granted => {
                self.cases += 1;
                let name = format!("matrix-{}", self.cases);
                let reply = self
                    .root_put(
                        &format!("/v1/sys/policies/acl/{name}"),
                        &json!({ "policy": rule }),
                    )
                    .await;
                assert!(reply.status.is_success(), "{rule}: {}", reply.json());
                Some(self.token(&[&name]).await)
            }
            // A fresh root token per case: `auth/token/revoke-self` must not end the run.
            Kind::Root => Some(self.token(&["root"]).await),
        }
    }

    async fn send(&self, method: &Method, path: &str, token: Option<&str>) -> Reply {
        let (method, uri) = if method.as_str() == "LIST" {
            (Method::GET, format!("{path}?list=true"))
        } else {
            (method.clone(), path.to_owned())
        };
        let mut request = req(method.clone(), &uri);
        if let Some(token) = token {
            request = request.token(token);
        }
        if method == Method::PATCH {
            request = request
                .header("content-type", "application/merge-patch+json")
                .raw("{}");
        }
        let reply = self.server.send(request).await;
        // `sys/seal` worked: unseal again for the next case.
        if self.server.state.engine.is_sealed() {
            for key in &self.init.keys[..2] {
                let unseal = self.server.unseal(key).await;
                assert_eq!(unseal.status, StatusCode::OK, "{}", unseal.json());
            }
        }
        reply
    }

    /// Runs one route and method for every kind of caller and records the row.
    async fn check(
        &mut self,
        method: &Method,
        path: &str,
        access: Access,
        operation: Operation,
        grant: &str,
    ) {
        let acl = acl_path(grant, operation);
        let sudo = access == Access::Sudo;
        let granting = rule(&acl, &capabilities(operation, sudo));
        let without_sudo = rule(&acl, &capabilities(operation, false));
        let mut row = format!("{:<6} {path:<55} {access:<13?}", method.as_str());
        let mut wrong = Vec::new();
        for kind in KINDS {
            if kind == Kind::NoSudo && !sudo {
                row.push_str(" no-sudo:-  ");
                continue;
            }
            let policy = if kind == Kind::NoSudo {
                &without_sudo
            } else {
                &granting
            };
            let token = self.token_for(kind, policy).await;
            let reply = self.send(method, path, token.as_deref()).await;
            let status = reply.status;
            let no_route = String::from_utf8_lossy(&reply.bytes).contains("no handler for route");
            let ok = if kind == Kind::NoSudo {
                // The ACL refuses a root-protected path without `sudo`; elsewhere the handler
                // does, with Vault's 400 ("root or sudo privileges required").
                if custos_engine::routes::root_protected(&acl) {
                    status == StatusCode::FORBIDDEN
                } else {
                    status.is_client_error()
                }
            } else if allowed(access, kind) {
                status != StatusCode::FORBIDDEN
                    && status != StatusCode::METHOD_NOT_ALLOWED
                    && !status.is_server_error()
                    && !no_route
            } else {
                status == StatusCode::FORBIDDEN
            };
            let mark = if ok { "" } else { "!" };
            let _ = write!(row, " {}:{}{mark}", kind.label(), status.as_u16());
            if !ok {
                wrong.push(format!(
                    "{method} {path} ({access:?}) as {}: {status} {}",
                    kind.label(),
                    String::from_utf8_lossy(&reply.bytes)
                ));
            }
        }
        let _ = writeln!(self.table, "{row}");
        self.failures.extend(wrong);
    }

    fn finish(self) {
        // Shown with `--nocapture`.
        eprintln!("{}", self.table);
        assert!(
            self.failures.is_empty(),
            "authorisation matrix (! marks a wrong status):\n{}\nwrong:\n{}",
            self.table,
            self.failures.join("\n")
        );
    }
}

fn method_for(operation: Operation) -> Method {
    match operation {
        Operation::Read => Method::GET,
        Operation::List => Method::from_bytes(b"LIST").expect("LIST"),
        Operation::Create | Operation::Update => Method::PUT,
        Operation::Patch => Method::PATCH,
        Operation::Delete => Method::DELETE,
    }
}

#[tokio::test]
async fn every_engine_route_authorises_as_its_table_says() {
    let mut matrix = Matrix::new().await;
    let mut rows = 0;
    for route in ROUTES {
        for &operation in route.operations {
            let path = format!("/v1/{}", route.example);
            matrix
                .check(
                    &method_for(operation),
                    &path,
                    route.access,
                    operation,
                    route.grant_path(),
                )
                .await;
            rows += 1;
        }
    }
    assert!(rows >= ROUTES.len());
    matrix.finish();
}

#[tokio::test]
async fn every_server_route_authorises_as_its_table_says() {
    let mut matrix = Matrix::new().await;
    for route in explicit_routes() {
        for method in &route.methods {
            matrix
                .check(
                    method,
                    route.path,
                    route.access,
                    operation_of(method),
                    route.acl_path(),
                )
                .await;
        }
    }
    matrix.finish();
}
