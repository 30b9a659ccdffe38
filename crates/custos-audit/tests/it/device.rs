//! The file device: group commit under concurrency, rotation, reopening, restarts and torn
//! tails, each checked by verifying what was written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custos_audit::verify::{ProblemKind, Report, VerifyOptions, first_seq, verify_files};
use custos_audit::{FileDevice, FileOptions, Signer};

/// Longer than the device's interval between checks of its path.
const IDENTITY_CHECK: std::time::Duration = std::time::Duration::from_millis(150);

fn options(path: &Path, extra: &[(&str, &str)]) -> FileOptions {
    let mut map = BTreeMap::from([("file_path".to_owned(), path.display().to_string())]);
    for (key, value) in extra {
        map.insert((*key).to_owned(), (*value).to_owned());
    }
    FileOptions::from_options("file/", &map).unwrap()
}

fn record(n: usize) -> Vec<u8> {
    format!(r#"{{"time":"2026-11-28T10:00:00Z","type":"request","request":{{"path":"secret/data/{n}","operation":"read"}}}}"#)
        .into_bytes()
}

/// Every file in `directory`, in chain order.
fn files_in(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| (first_seq(&path).unwrap().unwrap_or(u64::MAX), path))
        .collect();
    files.sort();
    files.into_iter().map(|(_, path)| path).collect()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn intact(files: &[PathBuf]) -> Report {
    let report = verify_files(
        files,
        VerifyOptions {
            closed: true,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    report
}

fn test_signer() -> Signer {
    Arc::new(|payload: &[u8]| format!("hmac-sha256:{}", custos_crypto::sha256_hex(payload)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_keeps_the_chain_and_each_callers_order() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    let device = Arc::new(
        FileDevice::open(
            "file/",
            options(&path, &[("checkpoint_records", "100")]),
            Some(test_signer()),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for task in 0..64 {
        let device = Arc::clone(&device);
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                device.append(record(task * 1000 + n)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let head = device.head().unwrap();
    device.close().await;
    device.close().await;
    assert!(device.append(record(0)).await.is_err());

    let report = intact(std::slice::from_ref(&path));
    let written = lines(&path);
    let records: Vec<&serde_json::Value> = written
        .iter()
        .filter(|line| line["type"] == "request")
        .collect();
    assert_eq!(records.len(), 64 * 50);
    assert_eq!(report.checkpoints, 64 * 50 / 100 + 1);
    // The head was the line before the closing checkpoint.
    assert_eq!(head.0 + 1, report.last_seq.unwrap());
    // Each task awaited its appends one by one, so its records are in its order.
    let mut last_per_task = BTreeMap::new();
    for line in records {
        let path = line["request"]["path"].as_str().unwrap();
        let n: usize = path.trim_start_matches("secret/data/").parse().unwrap();
        if let Some(previous) = last_per_task.insert(n / 1000, n % 1000) {
            assert_eq!(previous + 1, n % 1000);
        }
    }
    // Signatures are the signer's over the canonical payload.
    for checkpoint in &report.signed {
        assert_eq!(
            checkpoint.signature,
            format!(
                "hmac-sha256:{}",
                custos_crypto::sha256_hex(checkpoint.payload.as_bytes())
            )
        );
    }
}

#[tokio::test]
async fn rotation_keeps_one_chain_across_files() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    let device =
        FileDevice::open("file/", options(&path, &[("max_file_size", "4KiB")]), None).unwrap();
    for n in 0..100 {
        device.append(record(n)).await.unwrap();
    }
    device.close().await;
    let files = files_in(directory.path());
    assert!(files.len() >= 3, "{files:?}");
    for rotated in &files[..files.len() - 1] {
        let name = rotated.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            // A counter follows the time when two rotations fall in one millisecond.
            name.starts_with("audit-") && name.contains('Z') && name.ends_with(".log"),
            "{name}"
        );
        assert_eq!(lines(rotated).last().unwrap()["reason"], "rotate");
    }
    assert_eq!(files.last().unwrap(), &path);
    let report = intact(&files);
    assert_eq!(report.first_seq, Some(1));

    // A restart continues from the newest rotated file when the current one is gone.
    std::fs::remove_file(&path).unwrap();
    let device = FileDevice::open("file/", options(&path, &[]), None).unwrap();
    device.append(record(0)).await.unwrap();
    device.close().await;
    let newest_rotated = lines(&files[files.len() - 2]).last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(lines(&path)[0]["seq"].as_u64(), Some(newest_rotated + 1));
    let mut files = files;
    *files.last_mut().unwrap() = path;
    intact(&files);
}

#[tokio::test]
async fn a_restart_continues_the_chain() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    for round in 0..3 {
        let device = FileDevice::open("file/", options(&path, &[]), None).unwrap();
        device.append(record(round)).await.unwrap();
        device.append(record(round + 10)).await.unwrap();
        drop(device); // Drop closes too.
    }
    let report = intact(std::slice::from_ref(&path));
    assert_eq!(report.last_seq, Some(9));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn a_torn_tail_is_closed_and_reported_never_merged() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    let device = FileDevice::open("file/", options(&path, &[]), None).unwrap();
    device.append(record(1)).await.unwrap();
    drop(device);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"seq":3,"prev_hash":"sha2"#);
    std::fs::write(&path, &bytes).unwrap();
    let device = FileDevice::open("file/", options(&path, &[]), None).unwrap();
    assert_eq!(device.head().unwrap().0, 2);
    device.append(record(2)).await.unwrap();
    device.close().await;
    let problem = verify_files(std::slice::from_ref(&path), VerifyOptions::default())
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(
        (problem.kind, problem.line),
        (ProblemKind::Malformed, 3),
        "{problem}"
    );
    // The record after the torn bytes links to the last good line.
    let text = std::fs::read_to_string(&path).unwrap();
    let fourth: serde_json::Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
    assert_eq!(fourth["seq"], 3);
}

#[tokio::test]
async fn a_file_that_is_not_a_chain_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    std::fs::write(&path, "{\"time\":\"x\"}\n").unwrap();
    let error = FileDevice::open("file/", options(&path, &[]), None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not end with a custos audit record"),
        "{error}"
    );
}

#[tokio::test]
async fn a_moved_file_is_closed_and_the_path_opened_again() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    let moved = directory.path().join("audit.log.1");
    let device = FileDevice::open("file/", options(&path, &[]), None).unwrap();
    device.append(record(1)).await.unwrap();
    std::fs::rename(&path, &moved).unwrap();
    // The device looks at its path a few times a second.
    tokio::time::sleep(IDENTITY_CHECK).await;
    device.append(record(2)).await.unwrap();
    device.reopen().unwrap();
    device.append(record(3)).await.unwrap();
    device.close().await;
    assert_eq!(lines(&moved).last().unwrap()["reason"], "reopen");
    let reasons: Vec<String> = lines(&path)
        .iter()
        .filter_map(|line| line["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasons, ["reopen", "close"]);
    intact(&[moved, path]);
}

#[tokio::test]
async fn a_replaced_directory_fails_closed_then_recovers_without_a_hole() {
    let root = tempfile::tempdir().unwrap();
    let directory = root.path().join("logs");
    let aside = root.path().join("logs.aside");
    std::fs::create_dir(&directory).unwrap();
    let path = directory.join("audit.log");
    let device =
        FileDevice::open("file/", options(&path, &[("fsync", "every_write")]), None).unwrap();
    device.append(record(1)).await.unwrap();

    std::fs::rename(&directory, &aside).unwrap();
    std::fs::write(&directory, "not a directory").unwrap();
    tokio::time::sleep(IDENTITY_CHECK).await;
    for n in 0..3 {
        assert!(device.append(record(100 + n)).await.is_err());
    }
    assert!(device.reopen().is_err());

    std::fs::remove_file(&directory).unwrap();
    std::fs::rename(&aside, &directory).unwrap();
    device.append(record(2)).await.unwrap();
    device.close().await;
    let report = intact(std::slice::from_ref(&path));
    let paths: Vec<String> = lines(&path)
        .iter()
        .filter_map(|line| line["request"]["path"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(paths, ["secret/data/1", "secret/data/2"]);
    assert_eq!(report.last_seq, Some(4));
}

#[tokio::test]
async fn records_that_are_not_objects_fail_alone() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    let device =
        FileDevice::open("file/", options(&path, &[("fsync", "os_buffered")]), None).unwrap();
    let (bad, good) = tokio::join!(device.append(b"[1]".to_vec()), device.append(record(1)));
    assert!(bad.is_err());
    good.unwrap();
    device.close().await;
    let report = intact(&[path]);
    assert_eq!(report.last_seq, Some(2));
}

#[tokio::test]
async fn interval_checkpoints_cover_quiet_devices() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("audit.log");
    let device = FileDevice::open(
        "file/",
        options(
            &path,
            &[("checkpoint_interval", "50ms"), ("checkpoint_records", "0")],
        ),
        Some(test_signer()),
    )
    .unwrap();
    device.append(record(1)).await.unwrap();
    // The writer wakes by itself once the interval has passed; a loaded machine may be slow.
    let mut written = lines(&path);
    for _ in 0..100 {
        if written.len() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        written = lines(&path);
    }
    // Only one: a quiet device writes no further checkpoints.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let written = lines(&path);
    assert_eq!(written.len(), 2, "{written:?}");
    assert_eq!(written[1]["reason"], "interval");
    device.close().await;
}

/// A request cancelled while it leads (its future dropped while it yields to let others queue)
/// must not leave the queue without a leader: its record and later ones are still written.
#[tokio::test]
async fn a_leader_dropped_while_yielding_hands_the_queue_on() {
    for fsync in ["batched", "every_write"] {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let device = FileDevice::open("file/", options(&path, &[("fsync", fsync)]), None).unwrap();
        let mut first = Box::pin(device.append(record(1)));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut context).is_pending());
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(10), device.append(record(2)))
            .await
            .expect("a later record waited for a leader that is gone")
            .unwrap();
        device.close().await;
        let paths: Vec<String> = lines(&path)
            .iter()
            .filter_map(|line| line["request"]["path"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(paths, ["secret/data/1", "secret/data/2"], "{fsync}");
    }
}
