//! Test harness: a throw-away CA, config files, and a `TestServer` that runs the binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use custos_client::{Client, ClientConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM files of a test PKI, written into a temporary directory.
pub(crate) struct TestPki {
    pub(crate) dir: tempfile::TempDir,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl TestPki {
    /// A CA, a server certificate for 127.0.0.1/localhost, a client certificate from the same CA
    /// and a client certificate from another ("rogue") CA.
    pub(crate) fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            // The server refuses a private key that other users can read.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };

        let ca =
            CertifiedIssuer::self_signed(ca_params("custos test CA"), KeyPair::generate().unwrap())
                .unwrap();
        write("ca.pem", ca.pem());

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "custos server");
        let server_cert = server.signed_by(&server_key, &ca).unwrap();
        write("server.pem", server_cert.pem());
        write("server-key.pem", server_key.serialize_pem());

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "custos client");
        let client_cert = client.signed_by(&client_key, &ca).unwrap();
        write("client.pem", client_cert.pem());
        write("client-key.pem", client_key.serialize_pem());

        let rogue_ca =
            CertifiedIssuer::self_signed(ca_params("rogue CA"), KeyPair::generate().unwrap())
                .unwrap();
        let rogue_key = KeyPair::generate().unwrap();
        let mut rogue = CertificateParams::new(Vec::<String>::new()).unwrap();
        rogue
            .distinguished_name
            .push(DnType::CommonName, "custos client");
        let rogue_cert = rogue.signed_by(&rogue_key, &rogue_ca).unwrap();
        write("rogue.pem", rogue_cert.pem());
        write("rogue-key.pem", rogue_key.serialize_pem());
        TestPki { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[listener]` section for TLS, optionally requiring client certificates.
    pub(crate) fn listener_section(&self, require_client_cert: bool) -> String {
        let mut section = format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            self.path("server.pem"),
            self.path("server-key.pem"),
        );
        if require_client_cert {
            section.push_str(&format!(
                "tls_client_ca_file = {:?}\ntls_require_client_cert = true\n",
                self.path("ca.pem")
            ));
        }
        section
    }

    /// Writes a config file into `dir`: this PKI's TLS listener (requiring client certificates
    /// when asked), then `storage`, the `[storage]` section and anything after it.
    pub(crate) fn write_config(
        &self,
        dir: &Path,
        require_client_cert: bool,
        storage: &str,
    ) -> PathBuf {
        write_config(
            dir,
            &format!("{}{storage}", self.listener_section(require_client_cert)),
        )
    }

    /// A client that trusts the test CA, with the valid client certificate when asked.
    pub(crate) fn client(&self, address: &str, token: Option<&str>, with_cert: bool) -> Client {
        let mut config = ClientConfig {
            address: address.to_owned(),
            token: token.map(str::to_owned),
            ca_cert: Some(self.path("ca.pem")),
            timeout: Some(Duration::from_secs(20)),
            ..ClientConfig::default()
        };
        if with_cert {
            config.client_cert = Some(self.path("client.pem"));
            config.client_key = Some(self.path("client-key.pem"));
        }
        Client::new(config).unwrap()
    }

    /// Unseals the server at `address` with `keys` and returns a client holding `token`.
    pub(crate) async fn unsealed_client(
        &self,
        address: &str,
        keys: &[String],
        token: &str,
    ) -> Client {
        unseal(&self.client(address, None, false), keys).await;
        self.client(address, Some(token), false)
    }
}

/// A running `custos server` process, killed on drop.
pub(crate) struct TestServer {
    child: Child,
    pub(crate) address: String,
    /// Every line the server wrote to stdout so far.
    stdout: Arc<Mutex<String>>,
}

pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_custos")
}

impl TestServer {
    /// Starts `custos server` with these arguments and waits for its ready line.
    pub(crate) fn start(args: &[&str], log: &Path) -> TestServer {
        let mut command = Command::new(binary());
        command.arg("server").args(args);
        TestServer::spawn(command, log)
    }

    /// Starts `custos server` with a hard and soft open-file limit of `open_files`.
    pub(crate) fn start_with_open_files(open_files: u32, args: &[&str], log: &Path) -> TestServer {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
            .arg(binary())
            .arg("server")
            .args(args);
        TestServer::spawn(command, log)
    }

    /// The process id (the server's own, also when started through `sh -c 'exec ...'`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(command: Command, log: &Path) -> TestServer {
        TestServer::spawn_logging(command, log, "info")
    }

    /// Starts the server with a config file, logging at `level` (`CUSTOS_LOG_LEVEL`).
    pub(crate) fn with_config_logging(config: &Path, log: &Path, level: &str) -> TestServer {
        let mut command = Command::new(binary());
        command
            .arg("server")
            .args(["--config", config.to_str().unwrap()]);
        TestServer::spawn_logging(command, log, level)
    }

    /// What the server wrote to stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn spawn_logging(mut command: Command, log: &Path, level: &str) -> TestServer {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = command
            .env("CUSTOS_LOG_LEVEL", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        let captured = Arc::new(Mutex::new(String::new()));
        let capture = captured.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut text = capture
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    text.push_str(&line);
                    text.push('\n');
                }
                if let Some(address) = line.strip_prefix("custos: listening on ") {
                    let _ = sender.send(address.to_owned());
                }
            }
        });
        let address = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        TestServer {
            child,
            address,
            stdout: captured,
        }
    }

    /// Starts `custos server --dev` on a free port with this root token.
    pub(crate) fn dev(root_token: &str, log: &Path) -> TestServer {
        TestServer::start(
            &[
                "--dev",
                "--dev-listen-address",
                "127.0.0.1:0",
                "--dev-root-token-id",
                root_token,
            ],
            log,
        )
    }

    /// Starts the server with a config file.
    pub(crate) fn with_config(config: &Path, log: &Path) -> TestServer {
        TestServer::start(&["--config", config.to_str().unwrap()], log)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop within 10 s of SIGTERM");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dev server with root token `root`, and the directory holding its log.
pub(crate) fn dev_server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::dev("root", &dir.path().join("server.log"));
    (dir, server)
}

/// The `[storage]` section for the in-memory backend.
pub(crate) const MEMORY_STORAGE: &str = "[storage]\nbackend = \"memory\"\n";

/// The `[storage]` section for a SQLite database in `dir`.
pub(crate) fn sqlite_storage(dir: &Path) -> String {
    format!(
        "[storage]\nbackend = \"sqlite\"\npath = {:?}\n",
        dir.join("custos.db")
    )
}

/// The `[storage]` section for the PostgreSQL database at `url`.
pub(crate) fn postgres_storage(url: &str) -> String {
    format!("[storage]\nbackend = \"postgres\"\nurl = {url:?}\n")
}

/// Writes a config file into `dir` and returns its path.
pub(crate) fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("custos.toml");
    std::fs::write(&path, format!("version = 1\n{body}")).unwrap();
    path
}

/// Initialises with `n` shares and threshold `t`, returning (hex shares, root token).
pub(crate) async fn init(client: &Client, n: u32, t: u32) -> (Vec<String>, String) {
    let response = client
        .init(&custos_api::sys::InitRequest {
            secret_shares: n,
            secret_threshold: t,
            ..Default::default()
        })
        .await
        .unwrap();
    (response.keys, response.root_token)
}

/// Submits shares until unsealed.
pub(crate) async fn unseal(client: &Client, keys: &[String]) {
    for key in keys {
        let status = client.unseal(key).await.unwrap();
        if !status.sealed {
            return;
        }
    }
    panic!("still sealed after {} keys", keys.len());
}

/// A PostgreSQL database created for one test and dropped afterwards.
pub(crate) struct TestDatabase {
    admin_url: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    /// `None` (and a note on stderr) when `CUSTOS_TEST_POSTGRES_URL` is not set.
    pub(crate) async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var("CUSTOS_TEST_POSTGRES_URL") else {
            eprintln!("skipped {test}: CUSTOS_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!(
            "custos_e2e_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = replace_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    pub(crate) async fn drop_database(self) {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
    }
}

/// Swaps the database name of a `postgres://` URL.
pub(crate) fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A cheap source of varied delays without a random number generator dependency.
pub(crate) fn jitter_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % max
}

/// A client of `address` (plain HTTP or TLS as the address says) with `token`.
pub(crate) fn http_client(address: &str, token: Option<&str>) -> Client {
    Client::new(ClientConfig {
        address: address.to_owned(),
        token: token.map(str::to_owned),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Sends `body` (unless it is null) to `/v1/<path>` with extra `headers`; answers the status and
/// the JSON answer (`null` when it is empty or not JSON).
pub(crate) async fn call(
    client: &Client,
    method: custos_client::http::Method,
    path: &str,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let body = (!body.is_null()).then(|| serde_json::to_vec(&body).unwrap());
    let (status, _, bytes) = client
        .raw_with_headers(method, path, headers, body)
        .await
        .unwrap();
    (
        status.as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
