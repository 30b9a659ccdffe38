//! `custos run` against a dev server: variables reach the child, exit codes and signals pass
//! through, nothing lands on disk, and bad variable names are refused.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::kv_cli::{command, custos, custos_with_input, dev_server, ok};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_child_sees_the_secrets_as_variables() {
    let (_dir, server) = dev_server();
    ok(custos(
        &server,
        &[
            "kv",
            "put",
            "secret/app",
            "DB_PASSWORD=p@ss word $x",
            "port=5432",
        ],
    ));
    ok(custos_with_input(
        &server,
        &["kv", "put", "secret/extra", "-"],
        r#"{"port": 6543, "flags": {"debug": true}}"#,
    ));

    let output = custos(
        &server,
        &[
            "run",
            "--secret",
            "secret/app",
            "--",
            "sh",
            "-c",
            r#"printf %s "$DB_PASSWORD""#,
        ],
    );
    assert_eq!(ok(output), "p@ss word $x");

    // Later secrets win, with a warning; non-strings arrive as JSON.
    let output = custos(
        &server,
        &[
            "run",
            "--secret",
            "secret/app",
            "--secret",
            "secret/extra",
            "--",
            "sh",
            "-c",
            r#"printf '%s|%s' "$port" "$flags""#,
        ],
    );
    assert!(
        stderr(&output)
            .contains("warning: port from secret/extra replaces the value from secret/app"),
        "{output:?}"
    );
    assert_eq!(ok(output), r#"6543|{"debug":true}"#);

    // --no-override makes the conflict an error, before anything runs.
    let output = custos(
        &server,
        &[
            "run",
            "--no-override",
            "--secret",
            "secret/app",
            "--secret",
            "secret/extra",
            "--",
            "echo",
            "ran",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("port is set by both secret/app and secret/extra"),
        "{output:?}"
    );

    let output = custos(
        &server,
        &[
            "run",
            "--secret",
            "secret/app",
            "--prefix",
            "app_",
            "--uppercase",
            "--",
            "sh",
            "-c",
            r#"printf '%s|%s' "$APP_DB_PASSWORD" "$APP_PORT""#,
        ],
    );
    assert_eq!(ok(output), "p@ss word $x|5432");

    let output = custos(
        &server,
        &["run", "--secret", "secret/missing", "--", "echo", "ran"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("No value found at secret/data/missing"),
        "{output:?}"
    );
}

#[test]
fn exit_codes_pass_through() {
    let (_dir, server) = dev_server();
    ok(custos(&server, &["kv", "put", "secret/app", "a=1"]));
    let run = |script: &str| {
        custos(
            &server,
            &["run", "--secret", "secret/app", "--", "sh", "-c", script],
        )
    };
    assert_eq!(run("exit 7").status.code(), Some(7));
    assert_eq!(run("exit 0").status.code(), Some(0));
    // Killed by SIGKILL (9): 128 + 9, as a shell reports it.
    assert_eq!(run("kill -9 $$").status.code(), Some(137));
    let output = custos(
        &server,
        &[
            "run",
            "--secret",
            "secret/app",
            "--",
            "/nonexistent/program",
        ],
    );
    assert_eq!(output.status.code(), Some(127), "{output:?}");
}

#[test]
fn signals_are_forwarded_to_the_child() {
    let (_dir, server) = dev_server();
    ok(custos(&server, &["kv", "put", "secret/app", "a=1"]));
    // The child says when its trap is set, then waits; SIGTERM makes it exit with 42. The
    // background sleep has its own output so it does not hold the pipe open.
    let mut child = command(
        &server,
        "root",
        &[
            "run",
            "--secret",
            "secret/app",
            "--",
            "sh",
            "-c",
            r#"trap "exit 42" TERM; echo ready; sleep 10 </dev/null >/dev/null 2>&1 & wait"#,
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(42));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("custos run did not exit within 5 s of SIGTERM");
}

#[test]
fn nothing_is_written_to_disk() {
    let (_dir, server) = dev_server();
    ok(custos(
        &server,
        &["kv", "put", "secret/app", "DB_PASSWORD=hunter2"],
    ));
    let work = tempfile::tempdir().unwrap();
    let output = command(
        &server,
        "root",
        &[
            "run",
            "--secret",
            "secret/app",
            "--",
            "sh",
            "-c",
            r#"printf %s "$DB_PASSWORD""#,
        ],
    )
    .current_dir(work.path())
    .env("TMPDIR", work.path())
    .env("HOME", work.path())
    .output()
    .unwrap();
    assert_eq!(ok(output), "hunter2");
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn invalid_variable_names_are_refused() {
    let (_dir, server) = dev_server();
    ok(custos(
        &server,
        &["kv", "put", "secret/app", "my-key=x", "GOOD=1"],
    ));
    let output = custos(
        &server,
        &["run", "--secret", "secret/app", "--", "echo", "ran"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "the command ran: {output:?}");
    assert!(stderr(&output).contains("\"my-key\""), "{output:?}");

    ok(custos(&server, &["kv", "put", "secret/digit", "1st=x"]));
    let output = custos(
        &server,
        &["run", "--secret", "secret/digit", "--", "echo", "ran"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // A prefix can make such a key valid.
    let output = custos(
        &server,
        &[
            "run",
            "--secret",
            "secret/digit",
            "--prefix",
            "K_",
            "--",
            "sh",
            "-c",
            r#"printf %s "$K_1st""#,
        ],
    );
    assert_eq!(ok(output), "x");
}
