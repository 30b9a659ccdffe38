//! Several real custos nodes on one PostgreSQL database: what one node changes, the others serve.
//!
//! [`Cluster::start`] creates a fresh database, starts N `custos server` processes on it,
//! initialises through the first node and unseals every node. Requests are then spread over the
//! nodes with [`Cluster::root`] (a client holding the root token for node `i`), and
//! [`eventually`] polls a condition on a node, prints how long it took to hold and fails after a
//! generous bound (the machine is noisy: 10 s, where the goal is well under 1 s).
//!
//! To add a scenario (e.g. for a new in-memory table such as policies): write a test like
//! `mounts_follow_between_nodes` below: `let Some(mut cluster) = Cluster::start("name", 2).await
//! else { return };`, change something through `cluster.root(0)`, `eventually(...)` see it
//! through `cluster.root(1)`, then `cluster.finish().await`. Tests run only when
//! `CUSTOS_TEST_POSTGRES_URL` is set.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use custos_client::Client;
use custos_client::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::outage::{relay, upstream_of, via_relay};
use crate::support::{self, TestDatabase, TestPki, TestServer};

/// How long a change may take to show on another node before the test fails.
pub(crate) const BOUND: Duration = Duration::from_secs(10);

/// One node: its directory, config file and (while running) process.
struct Node {
    dir: tempfile::TempDir,
    config: PathBuf,
    server: Option<TestServer>,
}

impl Node {
    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn address(&self) -> &str {
        &self
            .server
            .as_ref()
            .expect("the node is not running")
            .address
    }
}

/// N custos nodes on one fresh PostgreSQL database, initialised and unsealed.
pub(crate) struct Cluster {
    database: TestDatabase,
    pki: TestPki,
    nodes: Vec<Node>,
    keys: Vec<String>,
    token: String,
}

impl Cluster {
    /// `None` (the test is skipped) when `CUSTOS_TEST_POSTGRES_URL` is not set.
    pub(crate) async fn start(test: &str, n: usize) -> Option<Cluster> {
        Cluster::start_with(test, n, |_, storage| storage.to_owned()).await
    }

    /// Like [`Cluster::start`], with node `i`'s `[storage]` section rewritten by `storage_for(i,
    /// section)` (e.g. to route its LISTEN connection through a relay).
    pub(crate) async fn start_with(
        test: &str,
        n: usize,
        mut storage_for: impl FnMut(usize, &str) -> String,
    ) -> Option<Cluster> {
        let database = TestDatabase::create(test).await?;
        let pki = TestPki::new();
        let storage = support::postgres_storage(&database.url);
        let mut nodes = Vec::with_capacity(n);
        for index in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let config = pki.write_config(dir.path(), false, &storage_for(index, &storage));
            let server = TestServer::with_config(&config, &dir.path().join("server.log"));
            nodes.push(Node {
                dir,
                config,
                server: Some(server),
            });
        }
        let first = pki.client(nodes[0].address(), None, false);
        let (keys, token) = support::init(&first, 3, 2).await;
        for node in &nodes {
            support::unseal(&pki.client(node.address(), None, false), &keys).await;
        }
        Some(Cluster {
            database,
            pki,
            nodes,
            keys,
            token,
        })
    }

    /// Two nodes whose second one's LISTEN connection goes through a relay the test cuts with
    /// the switch it is given (`send_replace(false)`; `true` restores it); its queries go to
    /// PostgreSQL directly.
    pub(crate) async fn start_with_cuttable_feed(
        test: &str,
    ) -> Option<(Cluster, watch::Sender<bool>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_address = listener.local_addr().unwrap();
        let (switch, up) = watch::channel(true);
        let mut upstream = None;
        let cluster = Cluster::start_with(test, 2, |i, storage| {
            let url = storage
                .lines()
                .find_map(|line| line.strip_prefix("url = "))
                .expect("the storage section holds the URL")
                .trim_matches('"')
                .to_owned();
            upstream = Some(upstream_of(&url));
            if i == 1 {
                format!(
                    "{storage}listen_url = {:?}\n",
                    via_relay(&url, relay_address)
                )
            } else {
                storage.to_owned()
            }
        })
        .await?;
        tokio::spawn(relay(listener, upstream.unwrap(), up));
        Some((cluster, switch))
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// A client for node `i` holding the root token.
    pub(crate) fn root(&self, i: usize) -> Client {
        self.pki
            .client(self.nodes[i].address(), Some(&self.token), false)
    }

    /// A client for node `i` holding `token`.
    pub(crate) fn client(&self, i: usize, token: Option<&str>) -> Client {
        self.pki.client(self.nodes[i].address(), token, false)
    }

    /// A client for node `i` without a token.
    pub(crate) fn anonymous(&self, i: usize) -> Client {
        self.pki.client(self.nodes[i].address(), None, false)
    }

    /// SIGKILL node `i`.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut server) = self.nodes[i].server.take() {
            server.kill();
        }
    }

    /// Starts node `i` again (after [`Cluster::kill`]) and unseals it.
    pub(crate) async fn restart(&mut self, i: usize) {
        self.kill(i);
        let node = &mut self.nodes[i];
        node.server = Some(TestServer::with_config(&node.config, &node.log()));
        support::unseal(&self.anonymous(i), &self.keys).await;
    }

    /// Stops every node and drops the database.
    pub(crate) async fn finish(mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        self.database.drop_database().await;
    }
}

/// Polls `check` until it holds; prints and returns how long that took; panics after [`BOUND`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            let elapsed = started.elapsed();
            eprintln!("{what}: visible after {} ms", elapsed.as_millis());
            return elapsed;
        }
        assert!(
            started.elapsed() < BOUND,
            "{what}: not visible after {} s",
            BOUND.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends a JSON request and returns the status and the JSON body (`Null` when empty).
pub(crate) async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = client
        .raw(method, path, body.map(|body| body.to_string().into_bytes()))
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    (status, json)
}

/// Enables a KV v2 engine at `path`.
pub(crate) async fn enable_kv2(client: &Client, path: &str) {
    let (status, body) = call(
        client,
        Method::POST,
        &format!("sys/mounts/{path}"),
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// Writes `{"value": value}` at `<mount>/data/<key>`; returns the response's `X-Vault-Index`.
pub(crate) async fn kv_put(client: &Client, mount: &str, key: &str, value: &str) -> String {
    let (status, headers, body) = client
        .raw_with_headers(
            Method::POST,
            &format!("{mount}/data/{key}"),
            &[],
            Some(json!({"data": {"value": value}}).to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    headers
        .get("x-vault-index")
        .expect("a write answers with X-Vault-Index")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Reads `<mount>/data/<key>`: the status and the stored `value`, if any.
pub(crate) async fn kv_get(
    client: &Client,
    mount: &str,
    key: &str,
) -> (StatusCode, Option<String>) {
    let (status, body) = call(client, Method::GET, &format!("{mount}/data/{key}"), None).await;
    let value = body["data"]["data"]["value"].as_str().map(str::to_owned);
    (status, value)
}

async fn mounts_of(client: &Client) -> Value {
    let (status, body) = call(client, Method::GET, "sys/mounts", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

fn is_no_route(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::NOT_FOUND
        && body["errors"][0]
            .as_str()
            .is_some_and(|error| error.contains("no handler for route"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_follow_between_nodes() {
    let Some(cluster) = Cluster::start("mounts_follow_between_nodes", 2).await else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));

    // Enabled on A, used on B.
    enable_kv2(&a, "team").await;
    eventually("mount enabled on A, usable on B", || async {
        call(
            &b,
            Method::POST,
            "team/data/x",
            Some(json!({"data": {"value": "1"}})),
        )
        .await
        .0 == StatusCode::OK
    })
    .await;
    assert_eq!(kv_get(&a, "team", "x").await.1.as_deref(), Some("1"));

    // Tuned on B, seen on A.
    let (status, body) = call(
        &b,
        Method::POST,
        "sys/mounts/team/tune",
        Some(json!({"description": "tuned on B", "max_lease_ttl": 3600})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("mount tuned on B, seen on A", || async {
        let mounts = mounts_of(&a).await;
        mounts["team/"]["description"] == "tuned on B"
            && mounts["team/"]["config"]["max_lease_ttl"] == 3600
    })
    .await;

    // Remounted on A, served at the new path on B with its data, and gone from the old path.
    let (status, body) = call(
        &a,
        Method::POST,
        "sys/remount",
        Some(json!({"from": "team", "to": "moved"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("mount remounted on A, moved on B", || async {
        kv_get(&b, "moved", "x").await.1.as_deref() == Some("1")
    })
    .await;
    let (status, body) = call(&b, Method::GET, "team/data/x", None).await;
    assert!(is_no_route(status, &body), "{status} {body}");

    // Disabled on B: A stops serving it.
    let (status, body) = call(&b, Method::DELETE, "sys/mounts/moved", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("mount disabled on B, gone on A", || async {
        let (status, body) = call(&a, Method::GET, "moved/data/x", None).await;
        is_no_route(status, &body)
    })
    .await;
    assert!(mounts_of(&a).await.get("moved/").is_none());
    cluster.finish().await;
}

/// The policy text of `name` as node `client` answers it (from its in-memory table).
async fn policy_text(client: &Client, name: &str) -> Option<String> {
    let (status, body) = call(
        client,
        Method::GET,
        &format!("sys/policies/acl/{name}"),
        None,
    )
    .await;
    (status == StatusCode::OK).then(|| {
        body["data"]["policy"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_follow_between_nodes() {
    let Some(cluster) = Cluster::start("policies_follow_between_nodes", 2).await else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));
    enable_kv2(&a, "apps").await;
    let first = r#"path "apps/data/*" { capabilities = ["read"] }"#;
    let (status, body) = call(
        &a,
        Method::PUT,
        "sys/policies/acl/apps",
        Some(json!({"policy": first})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("policy written on A, seen on B", || async {
        policy_text(&b, "apps").await.as_deref() == Some(first)
    })
    .await;
    // A token limited by the policy, created on A, reads on B.
    kv_put(&a, "apps", "x", "1").await;
    let (status, body) = call(
        &a,
        Method::POST,
        "auth/token/create",
        Some(json!({"policies": ["apps"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["auth"]["client_token"].as_str().unwrap().to_owned();
    let limited_b = cluster.client(1, Some(&token));
    eventually("a token limited by the policy reads on B", || async {
        kv_get(&limited_b, "apps", "x").await.0 == StatusCode::OK
    })
    .await;
    // Rewritten on B, seen on A; the capabilities A computes follow.
    let second = r#"path "apps/data/*" { capabilities = ["deny"] }"#;
    let (status, body) = call(
        &b,
        Method::PUT,
        "sys/policies/acl/apps",
        Some(json!({"policy": second})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("policy rewritten on B, seen on A", || async {
        policy_text(&a, "apps").await.as_deref() == Some(second)
    })
    .await;
    // Denied on B at once (B made the change), and on A once it follows.
    assert_eq!(
        kv_get(&limited_b, "apps", "x").await.0,
        StatusCode::FORBIDDEN
    );
    let limited_a = cluster.client(0, Some(&token));
    eventually("the denying policy applies on A", || async {
        kv_get(&limited_a, "apps", "x").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    // Deleted on A, gone on B.
    let (status, body) = call(&a, Method::DELETE, "sys/policies/acl/apps", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("policy deleted on A, gone on B", || async {
        policy_text(&b, "apps").await.is_none()
    })
    .await;
    let (status, body) = call(&b, Method::GET, "sys/policies/acl?list=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["keys"], json!(["default", "root"]));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_methods_follow_between_nodes() {
    let Some(cluster) = Cluster::start("auth_methods_follow_between_nodes", 2).await else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));
    let anonymous_b = cluster.anonymous(1);

    // Enabled on A, with a user created on A: B serves the login.
    let (status, body) = call(
        &a,
        Method::POST,
        "sys/auth/people",
        Some(json!({"type": "userpass"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(
        &a,
        Method::POST,
        "auth/people/users/alice",
        Some(json!({"password": "correct horse", "token_policies": "dev"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("auth method enabled on A, login served on B", || async {
        let (status, body) = call(
            &anonymous_b,
            Method::POST,
            "auth/people/login/alice",
            Some(json!({"password": "correct horse"})),
        )
        .await;
        status == StatusCode::OK && body["auth"]["policies"] == json!(["default", "dev"])
    })
    .await;

    // Tuned on B, seen on A.
    let (status, body) = call(
        &b,
        Method::POST,
        "sys/auth/people/tune",
        Some(json!({"default_lease_ttl": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("auth method tuned on B, seen on A", || async {
        let (_, body) = call(&a, Method::GET, "sys/auth", None).await;
        body["data"]["people/"]["config"]["default_lease_ttl"] == 3600
    })
    .await;

    // Disabled on A: B no longer logs anyone in there.
    let (status, body) = call(&a, Method::DELETE, "sys/auth/people", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("auth method disabled on A, gone on B", || async {
        let (_, body) = call(&b, Method::GET, "sys/auth", None).await;
        body["data"].get("people/").is_none()
    })
    .await;
    let (status, _) = call(
        &anonymous_b,
        Method::POST,
        "auth/people/login/alice",
        Some(json!({"password": "correct horse"})),
    )
    .await;
    assert_ne!(status, StatusCode::OK);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_writes_and_reads_alternate_between_nodes() {
    let Some(cluster) = Cluster::start("kv_writes_and_reads_alternate_between_nodes", 2).await
    else {
        return;
    };
    enable_kv2(&cluster.root(0), "kv").await;
    eventually("mount on node 1", || async {
        kv_get(&cluster.root(1), "kv", "none").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let mut worst = Duration::ZERO;
    for round in 0..20 {
        let writer = cluster.root(round % 2);
        let reader = cluster.root((round + 1) % 2);
        let value = format!("v{round}");
        kv_put(&writer, "kv", "shared", &value).await;
        let took = eventually(
            &format!("round {round}: write read on the other node"),
            || async { kv_get(&reader, "kv", "shared").await.1.as_deref() == Some(value.as_str()) },
        )
        .await;
        worst = worst.max(took);
    }
    eprintln!(
        "kv write to read on the other node: worst {} ms",
        worst.as_millis()
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_across_nodes_with_x_vault_index() {
    let Some(cluster) = Cluster::start("read_your_writes_across_nodes_with_x_vault_index", 2).await
    else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));
    enable_kv2(&a, "kv").await;
    for round in 0..20 {
        let value = format!("v{round}");
        let index = kv_put(&a, "kv", "ryw", &value).await;
        // Sent straight back to the other node: it waits until it has applied the write.
        let (status, _, body) = b
            .raw_with_headers(
                Method::GET,
                "kv/data/ryw",
                &[("x-vault-index", &index)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "round {round}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["data"]["data"]["value"],
            value.as_str(),
            "round {round}"
        );
    }
    // A mount enabled on A is routable on B at once with the index of the enabling write.
    let (status, headers, body) = a
        .raw_with_headers(
            Method::POST,
            "sys/mounts/fresh",
            &[],
            Some(
                json!({"type": "kv", "options": {"version": "2"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let index = headers["x-vault-index"].to_str().unwrap().to_owned();
    let (status, _, body) = b
        .raw_with_headers(
            Method::GET,
            "fresh/data/none",
            &[("x-vault-index", &index)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(!String::from_utf8_lossy(&body).contains("no handler"));

    // An index no node has reached: 412 after the bounded wait, as Vault answers.
    use base64::Engine as _;
    let future = base64::engine::general_purpose::STANDARD.encode("v1:x:999999999:0:");
    let started = Instant::now();
    let (status, headers, _) = b
        .raw_with_headers(
            Method::GET,
            "kv/data/ryw",
            &[("x-vault-index", &future)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(headers["x-custos-error-code"], "index_not_reached");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A malformed one is the client's error.
    let (status, _, _) = b
        .raw_with_headers(
            Method::GET,
            "kv/data/ryw",
            &[("x-vault-index", "garbage!")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_key_rotation_reaches_the_other_node() {
    let Some(cluster) = Cluster::start("data_key_rotation_reaches_the_other_node", 2).await else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));
    enable_kv2(&a, "kv").await;
    for term in 2..=4u32 {
        a.rotate().await.unwrap();
        eventually(
            &format!("rotation to term {term} on A, seen on B"),
            || async { b.key_status().await.unwrap().term == term },
        )
        .await;
        // B encrypts with the new term; A reads it back.
        let value = format!("term{term}");
        kv_put(&b, "kv", "k", &value).await;
        eventually("B's write read on A", || async {
            kv_get(&a, "kv", "k").await.1.as_deref() == Some(value.as_str())
        })
        .await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_leaves_the_others_serving_and_catches_up_on_restart() {
    let Some(mut cluster) = Cluster::start(
        "a_node_killed_under_load_leaves_the_others_serving_and_catches_up_on_restart",
        3,
    )
    .await
    else {
        return;
    };
    enable_kv2(&cluster.root(0), "kv").await;
    for i in 1..cluster.len() {
        let client = cluster.root(i);
        eventually(&format!("mount on node {i}"), || async {
            kv_get(&client, "kv", "none").await.0 == StatusCode::NOT_FOUND
        })
        .await;
    }

    // Load on the two survivors while node 0 is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 1..cluster.len() {
        let client = cluster.root(i);
        let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("load-{i}-{n}");
                let (status, _) = call(
                    &client,
                    Method::POST,
                    &format!("kv/data/{key}"),
                    Some(json!({"data": {"value": "x"}})),
                )
                .await;
                let (read, value) = kv_get(&client, "kv", &key).await;
                if status != StatusCode::OK
                    || read != StatusCode::OK
                    || value.as_deref() != Some("x")
                {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(0);
    let before = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_kill = done.load(Ordering::SeqCst) - before;
    assert!(
        after_kill > 0,
        "the survivors stopped serving after the kill"
    );

    // While node 0 is down: a mount and a secret it has never seen.
    enable_kv2(&cluster.root(1), "late").await;
    kv_put(&cluster.root(2), "kv", "while-down", "yes").await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "a survivor failed a request"
    );
    eprintln!(
        "survivors served {} write+read pairs, {after_kill} in the 1.5 s after the kill",
        done.load(Ordering::SeqCst)
    );

    // Restarted, node 0 serves what changed while it was down.
    cluster.restart(0).await;
    let restarted = cluster.root(0);
    assert_eq!(
        kv_get(&restarted, "kv", "while-down").await.1.as_deref(),
        Some("yes")
    );
    assert_eq!(
        kv_get(&restarted, "late", "none").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        kv_get(&restarted, "kv", "load-1-0").await.1.as_deref(),
        Some("x")
    );
    // And it follows again: a change on node 2 reaches it.
    enable_kv2(&cluster.root(2), "after").await;
    eventually(
        "mount enabled after the restart, seen on node 0",
        || async { kv_get(&restarted, "after", "none").await.0 == StatusCode::NOT_FOUND },
    )
    .await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_notifications_are_cut_never_serves_a_mount_disabled_elsewhere() {
    let Some((cluster, switch)) = Cluster::start_with_cuttable_feed(
        "a_node_whose_notifications_are_cut_never_serves_a_mount_disabled_elsewhere",
    )
    .await
    else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));
    for mount in ["one", "two"] {
        enable_kv2(&a, mount).await;
        kv_put(&a, mount, "k", mount).await;
        eventually(&format!("mount {mount} on node 1"), || async {
            kv_get(&b, mount, "k").await.1.as_deref() == Some(mount)
        })
        .await;
    }

    // Cut node 1's notifications: it must not trust its copies any more.
    switch.send_replace(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = call(&a, Method::DELETE, "sys/mounts/one", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Not eventually: at once.
    let (status, body) = call(&b, Method::GET, "one/data/k", None).await;
    assert!(
        is_no_route(status, &body),
        "node 1 served a disabled mount: {status} {body}"
    );
    // Writes made meanwhile are read fresh too (the read cache is off while deaf).
    kv_put(&a, "two", "k", "changed").await;
    assert_eq!(kv_get(&b, "two", "k").await.1.as_deref(), Some("changed"));
    enable_kv2(&a, "three").await;
    assert_eq!(kv_get(&b, "three", "none").await.0, StatusCode::NOT_FOUND);

    // Notifications back: node 1 follows again.
    switch.send_replace(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = call(&a, Method::DELETE, "sys/mounts/two", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually(
        "mount disabled after the feed came back, gone on node 1",
        || async {
            let (status, body) = call(&b, Method::GET, "two/data/k", None).await;
            is_no_route(status, &body)
        },
    )
    .await;
    drop(switch);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_and_health_are_per_node() {
    let Some(cluster) = Cluster::start("seal_and_health_are_per_node", 2).await else {
        return;
    };
    let (a, b) = (cluster.root(0), cluster.root(1));
    let (status, health) = b.health().await.unwrap();
    assert_eq!(status, 200);
    assert!(!health.sealed);
    a.seal().await.unwrap();
    // A is sealed and says so; B serves on and reports itself unsealed.
    let (status, health) = cluster.anonymous(0).health().await.unwrap();
    assert_eq!(status, 503);
    assert!(health.sealed);
    let (status, health) = cluster.anonymous(1).health().await.unwrap();
    assert_eq!(status, 200);
    assert!(!health.sealed);
    enable_kv2(&b, "kv").await;
    let (status, leader) = call(&b, Method::GET, "sys/leader", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(leader["ha_enabled"], true);
    assert_eq!(leader["is_self"], true);
    assert_eq!(leader["leader_address"], cluster.root(1).address());
    cluster.finish().await;
}
