//! The listener and body limits against the real binary, as an attacker on the network would
//! try them: idle connections (plain, h2c, TLS), running out of file descriptors, huge bodies to
//! the endpoints that need no token, and unseal from the wrong network or too often.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{MEMORY_STORAGE, TestPki, TestServer, write_config};

/// `127.0.0.1:port` of a server address like `http://127.0.0.1:port`.
fn host_port(address: &str) -> String {
    address
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

/// A plain-HTTP server on memory storage with these extra `[listener]` lines.
fn plain_server(dir: &Path, listener: &str) -> TestServer {
    let config = write_config(
        dir,
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{listener}{MEMORY_STORAGE}"
        ),
    );
    TestServer::with_config(&config, &dir.join("server.log"))
}

const QUICK_TIMEOUTS: &str = "first_byte_timeout = \"1s\"\nidle_timeout = \"1s\"\n";

/// Reads until the server closes the connection (EOF or reset); panics after `bound`.
#[track_caller]
fn assert_closed_within(stream: &mut TcpStream, bound: Duration) -> Duration {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return started.elapsed(),
        }
        assert!(
            started.elapsed() < bound,
            "the connection was still open after {bound:?}"
        );
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status code and the body text.
fn http(address: &str, request: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(host_port(address))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> std::io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// What health answers on a fresh server.
const UNINITIALISED: u16 = 501;

fn health(address: &str) -> std::io::Result<u16> {
    http(
        address,
        "GET /v1/sys/health HTTP/1.1\r\nHost: custos\r\nConnection: close\r\n\r\n",
    )
    .map(|(status, _)| status)
}

/// The peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn idle_plain_and_h2c_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(dir.path(), QUICK_TIMEOUTS);
    let address = host_port(&server.address);
    let bound = Duration::from_secs(10);

    // Silent from the start.
    let mut silent = TcpStream::connect(&address).unwrap();
    assert_closed_within(&mut silent, bound);

    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    let mut h2c = TcpStream::connect(&address).unwrap();
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    assert_closed_within(&mut h2c, bound);

    // HTTP/1.1 keep-alive after one answered request.
    let mut kept = TcpStream::connect(&address).unwrap();
    kept.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: custos\r\n\r\n")
        .unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    // 501: the server is not initialised, which is all health needs to say here.
    assert_eq!(&first, b"HTTP/1.1 501");
    assert_closed_within(&mut kept, bound);

    // The server still answers on a fresh connection.
    assert_eq!(health(&server.address).unwrap(), UNINITIALISED);
}

/// A TLS client that trusts the test CA.
fn tls_client(pki: &TestPki) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn idle_tls_connections_are_closed() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}{QUICK_TIMEOUTS}{MEMORY_STORAGE}",
            pki.listener_section(false)
        ),
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let address = host_port(&server.address);
    let bound = Duration::from_secs(10);

    // No ClientHello at all.
    let mut silent = TcpStream::connect(&address).unwrap();
    assert_closed_within(&mut silent, bound);

    // A completed handshake, then silence.
    let mut tcp = TcpStream::connect(&address).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(tls_client(&pki), name).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).unwrap();
    }
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    loop {
        match tls.complete_io(&mut tcp) {
            Ok((0, 0)) => {
                // Nothing moved: look for EOF directly.
                let mut byte = [0u8; 1];
                match tcp.peek(&mut byte) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error)
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        assert!(
            started.elapsed() < bound,
            "the TLS connection was still open after {bound:?}"
        );
    }
}

#[test]
fn health_keeps_answering_with_few_file_descriptors_and_many_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{QUICK_TIMEOUTS}{MEMORY_STORAGE}"
        ),
    );
    let log = dir.path().join("server.log");
    let server =
        TestServer::start_with_open_files(64, &["--config", config.to_str().unwrap()], &log);
    let address = host_port(&server.address);
    // More idle sockets than the server has file descriptors.
    let idle: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    assert!(idle.len() > 64, "only {} connections opened", idle.len());
    let started = Instant::now();
    let answered = loop {
        if let Ok(status) = health(&server.address) {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health did not answer within 30 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(answered, UNINITIALISED);
    drop(idle);
    // Accept errors are logged a few times, not dozens of times a second.
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.matches("accept failed").count();
    assert!(warnings <= 5, "{warnings} accept warnings:\n{text}");
    assert!(
        text.contains("capping it") || text.contains("connection limit reached") || warnings > 0,
        "the low limit left no trace in the log:\n{text}"
    );
}

#[test]
fn the_connection_cap_closes_extra_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(
        dir.path(),
        "max_connections = 4\nfirst_byte_timeout = \"30s\"\nidle_timeout = \"30s\"\n",
    );
    let address = host_port(&server.address);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // Past the cap, a connection waits about a second for a slot and is then closed.
    let mut extra = TcpStream::connect(&address).unwrap();
    let waited = assert_closed_within(&mut extra, Duration::from_secs(10));
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
    drop(held);
    let started = Instant::now();
    while health(&server.address).ok() != Some(UNINITIALISED) {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(text.contains("connection limit reached"), "{text}");
}

/// Sends `length` bytes of body to `path` without a token, declared or chunked; returns the
/// status. The body is written from another thread so the answer can come before its end.
fn send_big_body(address: &str, path: &str, length: usize, chunked: bool) -> u16 {
    let mut stream = TcpStream::connect(host_port(address)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = if chunked {
        format!("PUT {path} HTTP/1.1\r\nHost: custos\r\nTransfer-Encoding: chunked\r\n\r\n")
    } else {
        format!("PUT {path} HTTP/1.1\r\nHost: custos\r\nContent-Length: {length}\r\n\r\n")
    };
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < length {
            let result = if chunked {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|()| writer.write_all(&chunk))
                    .and_then(|()| writer.write_all(b"\r\n"))
            } else {
                writer.write_all(&chunk)
            };
            if result.is_err() {
                return;
            }
            sent += chunk.len();
        }
        if chunked {
            let _ = writer.write_all(b"0\r\n\r\n");
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    parse_answer(&answer).unwrap().0
}

#[test]
fn huge_bodies_to_endpoints_without_a_token_are_413_without_memory_growth() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::dev("root", &dir.path().join("server.log"));
    let before = peak_rss_kib(server.pid());
    for path in [
        "/v1/sys/init",
        "/v1/sys/unseal",
        "/v1/sys/leaks",
        "/v1/sys/wrapping/unwrap",
        "/v1/sys/wrapping/lookup",
    ] {
        for chunked in [false, true] {
            let status = send_big_body(&server.address, path, 32 * 1024 * 1024, chunked);
            assert_eq!(status, 413, "{path} (chunked: {chunked})");
        }
    }
    let after = peak_rss_kib(server.pid());
    eprintln!("peak RSS before {before} KiB, after {after} KiB");
    assert!(
        after <= before + 8 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn a_write_without_a_valid_token_is_refused_before_its_body_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::dev("root", &dir.path().join("server.log"));
    for token in ["", "X-Vault-Token: custos_token_wrong\r\n"] {
        let mut stream = TcpStream::connect(host_port(&server.address)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        stream
            .write_all(
                format!(
                    "PUT /v1/secret/data/app HTTP/1.1\r\nHost: custos\r\n{token}Content-Length: 33554432\r\n\r\n{{\"data\""
                )
                .as_bytes(),
            )
            .unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
        }
        let (status, _) = parse_answer(&answer).unwrap();
        assert_eq!(status, 403, "{token:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn unseal_from_outside_the_allowed_networks_is_403() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(dir.path(), "unseal_allowed_networks = [\"10.0.0.0/8\"]\n");
    for (path, body) in [
        ("/v1/sys/unseal", r#"{"reset": true}"#),
        (
            "/v1/sys/init",
            r#"{"secret_shares": 1, "secret_threshold": 1}"#,
        ),
    ] {
        let (status, text) = http(
            &server.address,
            &format!(
                "PUT {path} HTTP/1.1\r\nHost: custos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .unwrap();
        assert_eq!(status, 403, "{path}: {text}");
        assert!(
            text.contains("not reachable from your network address"),
            "{text}"
        );
    }
    // Status stays readable from anywhere.
    let (status, _) = http(
        &server.address,
        "GET /v1/sys/seal-status HTTP/1.1\r\nHost: custos\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_ne!(status, 403, "seal-status is not restricted");
}

#[test]
fn unseal_is_rate_limited_and_resets_are_logged_with_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(
        dir.path(),
        "unseal_allowed_networks = [\"127.0.0.0/8\"]\nunseal_rate_limit = 3\n",
    );
    let unseal = |body: &str| {
        http(
            &server.address,
            &format!(
                "PUT /v1/sys/unseal HTTP/1.1\r\nHost: custos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .unwrap()
    };
    let init = r#"{"secret_shares": 3, "secret_threshold": 2}"#;
    let (status, _) = http(
        &server.address,
        &format!(
            "PUT /v1/sys/init HTTP/1.1\r\nHost: custos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{init}",
            init.len()
        ),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(unseal(r#"{"reset": true}"#).0, 200);
    assert_eq!(unseal(r#"{"key": "00"}"#).0, 400);
    assert_eq!(unseal(r#"{"reset": true}"#).0, 200);
    let (status, text) = unseal(r#"{"reset": true}"#);
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("too many requests"), "{text}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let resets: Vec<&str> = log
        .lines()
        // The server's line names the source; the engine logs the reset too, without it.
        .filter(|line| line.contains("unseal progress reset") && line.contains("source="))
        .collect();
    assert_eq!(resets.len(), 2, "{log}");
    assert!(
        resets.iter().all(|line| line.contains("127.0.0.1")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("unseal attempt failed") && line.contains("127.0.0.1")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("rate limit") && line.contains("127.0.0.1")),
        "{log}"
    );
}

#[test]
fn a_request_in_flight_is_not_cut_by_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(dir.path(), QUICK_TIMEOUTS);
    let mut stream = TcpStream::connect(host_port(&server.address)).unwrap();
    let body = br#"{"reset": true}"#;
    stream
        .write_all(
            format!(
                "PUT /v1/sys/unseal HTTP/1.1\r\nHost: custos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    // The body takes about three idle timeouts to arrive.
    for byte in body {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let (status, text) = parse_answer(&answer).unwrap();
    // Not initialised, but answered: the connection was not closed under the request.
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not initialized"), "{text}");
}
