//! `custos audit verify` and `custos audit query`: reading audit files back, offline, with an
//! optional check of checkpoint signatures and the chain head by the server; and
//! `custos audit list|enable|disable`, the devices over `sys/audit`, as `vault audit` does.
//!
//! Exit codes: 0 the chain is intact (and, for `query`, the records were printed), 1 tampering
//! or a failed server check was found, 2 a usage or I/O error.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use custos_audit::query::{Filter, Outcome, Row, parse_time};
use custos_audit::verify::{self, Problem, ProblemKind, Report, Verifier, VerifyOptions};
use custos_client::http::Method;
use serde_json::{Value, json};

use crate::connection::ConnectionArgs;

/// Check and search the hash-chained audit files written by `file` audit devices.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    Verify(VerifyArgs),
    Query(QueryArgs),
    List(ListArgs),
    Enable(EnableArgs),
    Disable(DisableArgs),
}

/// List the server's audit devices (sys/audit, which needs sudo).
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Show each device's options too.
    #[arg(long, alias = "detailed")]
    detailed: bool,
    /// Output format: a table, or the devices as JSON.
    #[arg(long, value_enum, default_value = "table")]
    format: QueryFormat,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Enable an audit device over the API, as `vault audit enable file file_path=...`.
///
/// The server refuses unless its configuration sets unsafe_allow_api_audit_creation (as
/// `server --dev` does): declare devices in the configuration file (`[[audit]]`) instead.
#[derive(Debug, clap::Args)]
struct EnableArgs {
    /// The device type: file.
    kind: String,
    /// The device's options as key=value (file_path=/var/log/custos/audit.log, fsync=batched).
    #[arg(value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Its name in sys/audit (default: the type).
    #[arg(long)]
    path: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Only this node writes it (Vault's local).
    #[arg(long)]
    local: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Disable an audit device enabled over the API (not one declared in the configuration).
#[derive(Debug, clap::Args)]
struct DisableArgs {
    /// The device's path, e.g. file/.
    path: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Output of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerifyFormat {
    Text,
    Json,
}

/// Output of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Json,
}

/// Verify the hash chain of audit files.
///
/// Checks that every line parses, `seq` goes up by one, each line carries the SHA-256 of the line before it (across files too), and every file but the last
/// ends with a closing checkpoint. Reports the first problem by name (altered, removed,
/// inserted, reordered, truncated, malformed) with its file, line and seq.
///
/// Files are put in chain order by their first seq, so a glob of rotated files
/// (`audit*.log`) can be passed as it is. With --server the server checks the checkpoint
/// signatures and compares its chain head with the last line (POST sys/audit-verify/DEVICE,
/// which needs sudo). Exit code: 0 intact, 1 tampering found, 2 usage or I/O error.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The audit files (current and rotated), in any order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format: text, or a JSON report object.
    #[arg(long, value_enum, default_value = "text")]
    format: VerifyFormat,
    /// Every file, the last included, must end with a closing checkpoint (an archive).
    #[arg(long)]
    closed: bool,
    /// The last file is still being written: a torn last line and a server head past the
    /// files' end are tolerated.
    #[arg(long)]
    live: bool,
    /// Have the server check the checkpoint signatures and its chain head.
    #[arg(long)]
    server: bool,
    /// The device path on the server (default: the one the checkpoints name).
    #[arg(long, value_name = "PATH")]
    device: Option<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Print the audit records that match the filters.
///
/// The chain is verified as the files are read: the output stops at the first problem, with
/// exit code 1, unless --no-verify.
///
/// Accessors in records are HMAC'd: pass --accessor in its `hmac-sha256:…` form, or pass the
/// clear accessor with --server to have the server hash it (sys/audit-hash/DEVICE, which
/// needs sudo). Devices with log_raw hold clear accessors, which match as given.
#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The audit files, in any order (they are read in chain order).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Records at or after this time: RFC 3339, or a span ago (90s, 15m, 24h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Records before this time: RFC 3339, or a span ago.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Records whose request path starts with this.
    #[arg(long, value_name = "PREFIX")]
    path_prefix: Option<String>,
    /// Records of this token accessor (hmac-sha256:… form, or clear with --server).
    #[arg(long)]
    accessor: Option<String>,
    /// Records from this client address.
    #[arg(long, value_name = "ADDRESS")]
    remote_address: Option<String>,
    /// Records of this operation (read, create, update, delete, list, login, ...).
    #[arg(long)]
    operation: Option<String>,
    /// Records that succeeded (ok) or carry an error (error).
    #[arg(long, value_parser = ["ok", "error"])]
    outcome: Option<String>,
    /// Records of this type: request, response (or checkpoint, which are left out otherwise).
    #[arg(long = "type", value_name = "TYPE", value_parser = ["request", "response", "checkpoint"])]
    kind: Option<String>,
    /// Do not verify the chain while reading.
    #[arg(long)]
    no_verify: bool,
    /// Output format: a table, or the matching lines as they are (JSON lines).
    #[arg(long, value_enum, default_value = "table")]
    format: QueryFormat,
    /// Hash a clear --accessor with the server's sys/audit-hash/DEVICE.
    #[arg(long)]
    server: bool,
    /// The device path on the server, for --server (default: file/).
    #[arg(long, value_name = "PATH")]
    device: Option<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs `custos audit ...`; errors become exit code 2 here, as the scanner does.
pub(crate) async fn run(args: AuditArgs) -> ExitCode {
    let result = match args.command {
        AuditCommand::Verify(args) => verify_command(args).await,
        AuditCommand::Query(args) => query_command(args).await,
        AuditCommand::List(args) => list_command(args).await,
        AuditCommand::Enable(args) => enable_command(args).await,
        AuditCommand::Disable(args) => disable_command(args).await,
    };
    result.unwrap_or_else(|error| {
        eprintln!("custos: error: {error:#}");
        ExitCode::from(2)
    })
}

/// A device path as `sys/audit/<path>` takes it: no slashes around.
fn device_path(path: &str) -> anyhow::Result<&str> {
    let path = path.trim_matches('/');
    anyhow::ensure!(!path.is_empty(), "the audit device path is empty");
    Ok(path)
}

async fn list_command(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let answer = client
        .call::<Value>(Method::GET, "sys/audit", None::<&()>)
        .await
        .context("listing audit devices")?
        .unwrap_or(Value::Null);
    let devices = answer
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if args.format == QueryFormat::Json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(ExitCode::SUCCESS);
    }
    if devices.is_empty() {
        println!("No audit devices are enabled.");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |device: &Value, key: &str| {
        device
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .unwrap_or("n/a")
            .to_owned()
    };
    println!(
        "{:<16} {:<6} {:<30} {}",
        "Path",
        "Type",
        "Description",
        if args.detailed { "Options" } else { "" }
    );
    for (path, device) in &devices {
        let options = device
            .get("options")
            .and_then(Value::as_object)
            .map(|options| {
                options
                    .iter()
                    .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        println!(
            "{:<16} {:<6} {:<30} {}",
            path,
            text(device, "type"),
            text(device, "description"),
            if args.detailed { options.as_str() } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn enable_command(args: EnableArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let mut options = serde_json::Map::new();
    for option in &args.options {
        let Some((key, value)) = option.split_once('=') else {
            bail!("{option:?} is not KEY=VALUE");
        };
        options.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    let path = device_path(args.path.as_deref().unwrap_or(&args.kind))?.to_owned();
    let body = json!({
        "type": args.kind,
        "description": args.description.unwrap_or_default(),
        "options": options,
        "local": args.local,
    });
    client
        .call::<Value>(Method::PUT, &format!("sys/audit/{path}"), Some(&body))
        .await
        .with_context(|| format!("enabling the audit device {path}/"))?;
    println!(
        "Success! Enabled the {} audit device at: {path}/",
        args.kind
    );
    Ok(ExitCode::SUCCESS)
}

async fn disable_command(args: DisableArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let path = device_path(&args.path)?;
    client
        .call::<Value>(Method::DELETE, &format!("sys/audit/{path}"), None::<&()>)
        .await
        .with_context(|| format!("disabling the audit device {path}/"))?;
    println!("Success! Disabled audit device (if it was enabled) at: {path}/");
    Ok(ExitCode::SUCCESS)
}

/// The files in chain order: by the seq of their first line; files without one go last.
fn chain_order(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut keyed = Vec::with_capacity(files.len());
    for (index, path) in files.iter().enumerate() {
        let first =
            verify::first_seq(path).with_context(|| format!("reading {}", path.display()))?;
        keyed.push((first.unwrap_or(u64::MAX), index, path.clone()));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, _, path)| path).collect())
}

/// A byte counter on stderr when it is a terminal.
fn progress(files: &[PathBuf]) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let total = files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}), {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let files = chain_order(&args.files)?;
    let bar = progress(&files);
    let mut verifier = Verifier::new(VerifyOptions {
        closed: args.closed,
        live: args.live,
    });
    for path in &files {
        verify::feed_file(&mut verifier, path, &mut |bytes| bar.inc(bytes))
            .with_context(|| format!("reading {}", path.display()))?;
        if verifier.failed() {
            break;
        }
    }
    bar.finish_and_clear();
    let mut report = verifier.finish();
    let mut server = None;
    if args.server && report.problem.is_none() {
        server = Some(server_check(&args, &mut report).await?);
    }
    print_report(&report, server.as_ref(), args.format)?;
    Ok(if report.problem.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What the server said about the files.
#[derive(Debug, serde::Serialize)]
struct ServerCheck {
    device: String,
    signatures_checked: usize,
    head_seq: Option<u64>,
    head_hash: Option<String>,
}

/// Sends the checkpoints to `sys/audit-verify/DEVICE` and compares the server's head with
/// the last line. A head past the files' end means their tail is missing, unless the files are
/// the device's live output (`--live`): the server simply wrote more since.
async fn server_check(args: &VerifyArgs, report: &mut Report) -> anyhow::Result<ServerCheck> {
    let device = match &args.device {
        Some(device) => device.clone(),
        None => report
            .signed
            .first()
            .map(|checkpoint| checkpoint.device.clone())
            .context("no signed checkpoint names the device: pass --device")?,
    };
    let client = args.connection.client()?;
    let api_path = format!("sys/audit-verify/{}", device.trim_end_matches('/'));
    let mut head = None;
    let mut checked = 0;
    let batches: Vec<_> = report.signed.chunks(1000).map(<[_]>::to_vec).collect();
    let batches = if batches.is_empty() {
        vec![Vec::new()]
    } else {
        batches
    };
    for batch in batches {
        let body = json!({
            "checkpoints": batch
                .iter()
                .map(|checkpoint| json!({"payload": checkpoint.payload, "signature": checkpoint.signature}))
                .collect::<Vec<_>>()
        });
        let answer: Value = client
            .call(Method::POST, &api_path, Some(&body))
            .await
            .with_context(|| format!("POST {api_path}"))?
            .context("the server sent no answer")?;
        let valid = answer
            .pointer("/data/valid")
            .and_then(Value::as_array)
            .context("the server's answer has no data.valid")?;
        if valid.len() != batch.len() {
            bail!(
                "the server judged {} of {} checkpoints",
                valid.len(),
                batch.len()
            );
        }
        for (checkpoint, valid) in batch.iter().zip(valid) {
            checked += 1;
            if valid.as_bool() != Some(true) && report.problem.is_none() {
                report.problem = Some(Problem {
                    kind: ProblemKind::BadSignature,
                    file: checkpoint.file.clone(),
                    line: checkpoint.line,
                    seq: Some(checkpoint.seq),
                    message: "the server does not recognise this checkpoint's signature".to_owned(),
                });
            }
        }
        if let Some(answer_head) = answer.pointer("/data/head") {
            head = Some((
                answer_head.get("seq").and_then(Value::as_u64),
                answer_head
                    .get("hash")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ));
        }
    }
    let (head_seq, head_hash) = head.unwrap_or((None, None));
    if report.problem.is_none()
        && let (Some(seq), Some(hash), Some(last_seq), Some(last_hash)) = (
            head_seq,
            &head_hash,
            report.last_seq,
            report.last_hash.clone(),
        )
    {
        let (file, line) = report
            .files
            .iter()
            .rev()
            .find(|summary| summary.lines > 0)
            .map(|summary| (summary.file.clone(), summary.lines))
            .unwrap_or_default();
        let problem = |kind, message: String| Problem {
            kind,
            file: file.clone(),
            line,
            seq: Some(last_seq),
            message,
        };
        if seq == last_seq && *hash != last_hash {
            report.problem = Some(problem(
                ProblemKind::Altered,
                "the last line differs from the one the server wrote (its head hash)".to_owned(),
            ));
        } else if seq == last_seq {
            report.uncovered = 0;
            report
                .warnings
                .retain(|warning| !warning.contains("not covered by a checkpoint"));
        } else if seq < last_seq {
            report.problem = Some(problem(
                ProblemKind::Inserted,
                format!("the files go on past the server's head (seq {seq})"),
            ));
        } else if args.live {
            report.warnings.push(format!(
                "the server has written {} more records since",
                seq - last_seq
            ));
        } else {
            report.problem = Some(problem(
                ProblemKind::Truncated,
                format!(
                    "the server's head is seq {seq}: {} records after the files' end are missing (pass --live for a file still being written)",
                    seq - last_seq
                ),
            ));
        }
    }
    Ok(ServerCheck {
        device,
        signatures_checked: checked,
        head_seq,
        head_hash,
    })
}

fn print_report(
    report: &Report,
    server: Option<&ServerCheck>,
    format: VerifyFormat,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        VerifyFormat::Json => {
            let mut value = serde_json::to_value(report)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("intact".to_owned(), Value::Bool(report.problem.is_none()));
                object.insert("server".to_owned(), serde_json::to_value(server)?);
            }
            writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        VerifyFormat::Text => {
            for summary in &report.files {
                let range = match (summary.first_seq, summary.last_seq) {
                    (Some(first), Some(last)) => format!("seq {first}..{last}"),
                    _ => "no records".to_owned(),
                };
                writeln!(stdout, "{}: {} lines, {range}", summary.file, summary.lines)?;
            }
            if let Some(server) = server {
                writeln!(
                    stdout,
                    "server: {} checkpoint signatures checked on {}, head seq {}",
                    server.signatures_checked,
                    server.device,
                    server
                        .head_seq
                        .map_or_else(|| "unknown".to_owned(), |seq| seq.to_string())
                )?;
            }
            for warning in &report.warnings {
                writeln!(stdout, "warning: {warning}")?;
            }
            match &report.problem {
                Some(problem) => writeln!(stdout, "TAMPERING: {problem}")?,
                None => writeln!(
                    stdout,
                    "intact: {} lines, {} checkpoints",
                    report.lines, report.checkpoints
                )?,
            }
        }
    }
    Ok(())
}

async fn query_command(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let filter = filter_of(&args).await?;
    let files = chain_order(&args.files)?;
    let bar = progress(&files);
    let mut verifier = Verifier::new(VerifyOptions {
        closed: false,
        live: true,
    });
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut rows = Vec::new();
    let mut line = Vec::with_capacity(4096);
    'files: for path in &files {
        let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        verifier.begin_file(&path.display().to_string());
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            bar.inc(read as u64);
            let Some(complete) = line.strip_suffix(b"\n") else {
                if !args.no_verify {
                    verifier.torn(&line);
                }
                break;
            };
            if !args.no_verify && !verifier.line(complete) {
                break 'files;
            }
            let Ok(record) = serde_json::from_slice::<Value>(complete) else {
                continue;
            };
            if !filter.matches(&record) {
                continue;
            }
            match args.format {
                QueryFormat::Json => {
                    stdout.write_all(complete)?;
                    stdout.write_all(b"\n")?;
                }
                QueryFormat::Table => rows.push(Row::of(&record)),
            }
            if rows.len() >= 1000 {
                print_rows(&mut stdout, &rows)?;
                rows.clear();
            }
        }
    }
    bar.finish_and_clear();
    print_rows(&mut stdout, &rows)?;
    stdout.flush()?;
    let report = verifier.finish();
    if !args.no_verify
        && let Some(problem) = &report.problem
    {
        eprintln!("TAMPERING: {problem}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_rows(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    for row in rows {
        writeln!(
            out,
            "{:<30}  {:<8}  {:<8}  {:<40}  {:<15}  {:<20}  {}",
            row.time,
            row.kind,
            row.operation,
            row.path,
            row.remote_address,
            row.display_name,
            row.outcome
        )?;
    }
    Ok(())
}

async fn filter_of(args: &QueryArgs) -> anyhow::Result<Filter> {
    let now = jiff::Timestamp::now();
    let time = |text: &Option<String>, flag: &str| -> anyhow::Result<Option<jiff::Timestamp>> {
        text.as_deref()
            .map(|text| {
                parse_time(text, now).with_context(|| {
                    format!("{flag} {text:?} is neither RFC 3339 nor a span such as 24h")
                })
            })
            .transpose()
    };
    let mut accessor = args.accessor.clone();
    if args.server
        && let Some(clear) = accessor.as_deref()
        && !clear.starts_with("hmac-sha256:")
    {
        accessor = Some(hash_on_server(args, clear).await?);
    }
    Ok(Filter {
        since: time(&args.since, "--since")?,
        until: time(&args.until, "--until")?,
        path_prefix: args.path_prefix.clone(),
        accessor,
        remote_address: args.remote_address.clone(),
        operation: args.operation.clone(),
        outcome: args.outcome.as_deref().map(|outcome| {
            if outcome == "error" {
                Outcome::Error
            } else {
                Outcome::Ok
            }
        }),
        kind: args.kind.clone(),
    })
}

/// `sys/audit-hash/DEVICE` of `input`, as the device writes it.
async fn hash_on_server(args: &QueryArgs, input: &str) -> anyhow::Result<String> {
    let device = args
        .device
        .as_deref()
        .unwrap_or("file/")
        .trim_end_matches('/');
    let client = args.connection.client()?;
    let api_path = format!("sys/audit-hash/{device}");
    let answer: Value = client
        .call(Method::POST, &api_path, Some(&json!({ "input": input })))
        .await
        .with_context(|| format!("POST {api_path}"))?
        .context("the server sent no answer")?;
    answer
        .pointer("/data/hash")
        .or_else(|| answer.get("hash"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the server's answer has no hash")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn files_are_put_in_chain_order() {
        let directory = tempfile::tempdir().unwrap();
        let write = |name: &str, seq: u64| {
            let path = directory.path().join(name);
            std::fs::write(
                &path,
                format!(
                    "{{\"seq\":{seq},\"prev_hash\":\"{}\"}}\n",
                    custos_audit::GENESIS_HASH
                ),
            )
            .unwrap();
            path
        };
        let late = write("audit.log", 20);
        let early = write("audit-20261128T101500.123Z.log", 1);
        let empty = directory.path().join("empty.log");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(
            chain_order(&[empty.clone(), late.clone(), early.clone()]).unwrap(),
            vec![early, late, empty]
        );
        assert!(chain_order(&[Path::new("/nonexistent/audit.log").to_owned()]).is_err());
    }
}
