//! How many records per second a file device takes: 64 tasks append 200,000 Vault-sized
//! records (about 500 bytes each) to a temporary file, then the chain is verified.
//!
//! `cargo run -p custos-audit --example append_rate [fsync policy] [directory]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use custos_audit::verify::{VerifyOptions, verify_files};
use custos_audit::{FileDevice, FileOptions};

const TASKS: usize = 64;
const RECORDS: usize = 200_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let fsync = arguments.next().unwrap_or_else(|| "batched".to_owned());
    let directory = match arguments.next() {
        Some(directory) => tempfile::tempdir_in(directory)?,
        None => tempfile::tempdir()?,
    };
    let path = directory.path().join("audit.log");
    let options = FileOptions::from_options(
        "file/",
        &BTreeMap::from([
            ("file_path".to_owned(), path.display().to_string()),
            ("fsync".to_owned(), fsync.clone()),
        ]),
    )?;
    let signer: custos_audit::Signer =
        Arc::new(|payload: &[u8]| format!("hmac-sha256:{}", custos_crypto::sha256_hex(payload)));
    let device = Arc::new(FileDevice::open("file/", options, Some(signer))?);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let device = Arc::clone(&device);
        tasks.push(tokio::spawn(async move {
            for n in 0..RECORDS / TASKS {
                let record = format!(
                    r#"{{"time":"2026-11-28T10:15:00.123456789Z","type":"response","auth":{{"client_token":"hmac-sha256:5b1f1e0c8d3a47a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081920","accessor":"hmac-sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9","display_name":"token-ci","policies":["default","app"]}},"request":{{"id":"6f1c1a4e-1d2b-4c3d-8e9f-{task:04}{n:08}","operation":"read","path":"secret/data/app/{n}","remote_address":"10.0.0.7"}},"response":{{"mount_type":"kv","data":{{"password":"hmac-sha256:8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"}}}}}}"#
                );
                if let Err(error) = device.append(record.into_bytes()).await {
                    eprintln!("append failed: {error}");
                    return;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    device.close().await;
    let bytes = std::fs::metadata(&path)?.len();
    let report = verify_files(&[path], VerifyOptions::default())?;
    println!(
        "fsync={fsync}: {RECORDS} records from {TASKS} tasks in {:.3}s: {:.0} records/s, {} bytes per line, chain {}",
        elapsed.as_secs_f64(),
        RECORDS as f64 / elapsed.as_secs_f64(),
        bytes / report.lines,
        if report.problem.is_none() {
            "intact"
        } else {
            "BROKEN"
        }
    );
    Ok(())
}
