//! `custos run`: runs a command with secrets in its environment, so they never need to be in a
//! file. Each secret's top-level keys become variables; the child's exit status is passed through,
//! and SIGINT, SIGTERM and SIGHUP sent to `custos run` are forwarded to the child.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use tokio::signal::unix::{SignalKind, signal};

use crate::connection::ConnectionArgs;
use crate::dotenv::is_env_name;
use crate::kv_client;

/// `custos run --secret PATH [--secret PATH ...] -- COMMAND [ARGS...]`
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// A secret whose keys become environment variables, such as secret/app (its latest version).
    /// Repeat it for more; when two secrets have the same key, the later one wins, with a warning.
    #[arg(long = "secret", required = true, value_name = "PATH")]
    secrets: Vec<String>,
    /// Put this before every variable name (APP_ turns `password` into APP_password).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    prefix: String,
    /// Uppercase variable names, prefix included (`db_password` becomes DB_PASSWORD).
    #[arg(long)]
    uppercase: bool,
    /// Fail instead of warning when two secrets set the same variable.
    #[arg(long)]
    no_override: bool,
    /// The command to run and its arguments, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// A variable's value and the secret it came from.
struct Variable {
    value: String,
    source: String,
}

/// Turns secrets (path, data) into environment variables, in order, checking names and conflicts.
fn variables(
    secrets: &[(String, Map<String, Value>)],
    prefix: &str,
    uppercase: bool,
    no_override: bool,
) -> anyhow::Result<BTreeMap<String, Variable>> {
    let mut variables: BTreeMap<String, Variable> = BTreeMap::new();
    for (source, data) in secrets {
        for (key, value) in data {
            let mut name = format!("{prefix}{key}");
            if uppercase {
                name = name.to_ascii_uppercase();
            }
            if !is_env_name(&name) {
                bail!(
                    "key {key:?} of {source} gives {name:?}, which is not a valid environment variable name (letters, digits and _, not starting with a digit)"
                );
            }
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if value.contains('\0') {
                bail!(
                    "the value of key {key:?} of {source} contains a NUL byte, which an environment variable cannot hold"
                );
            }
            if let Some(previous) = variables.get(&name) {
                if no_override {
                    bail!(
                        "{name} is set by both {} and {source} (--no-override)",
                        previous.source
                    );
                }
                eprintln!(
                    "warning: {name} from {source} replaces the value from {}",
                    previous.source
                );
            }
            variables.insert(
                name,
                Variable {
                    value,
                    source: source.clone(),
                },
            );
        }
    }
    Ok(variables)
}

/// Reads the secrets, runs the command and returns its exit code (128 + N when killed by signal N).
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let mut secrets = Vec::with_capacity(args.secrets.len());
    for secret in &args.secrets {
        let path = kv_client::resolve(&client, None, secret).await?;
        let (_, data) = kv_client::read(&client, &path, None).await?;
        secrets.push((secret.clone(), data));
    }
    let variables = variables(&secrets, &args.prefix, args.uppercase, args.no_override)?;
    drop(secrets);

    let Some((program, program_args)) = args.command.split_first() else {
        bail!("no command given");
    };
    // Handlers are installed before the child starts, so no signal meant for it is missed.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    let mut command = tokio::process::Command::new(program);
    command.args(program_args);
    for (name, variable) in &variables {
        command.env(name, &variable.value);
    }
    let spawned = command.spawn();
    drop(command);
    drop(variables);
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            // The shell's codes: 127 for a command that is not found, 126 for one that cannot run.
            eprintln!("error: cannot run {program:?}: {error}");
            let code = if error.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(ExitCode::from(code));
        }
    };
    let pid = child
        .id()
        .context("the child exited before its process id was known")?
        .to_string();
    let status = loop {
        let name = tokio::select! {
            status = child.wait() => break status.context("cannot wait for the command")?,
            _ = interrupt.recv() => "INT",
            _ = terminate.recv() => "TERM",
            _ = hangup.recv() => "HUP",
        };
        forward(name, &pid).await;
    };
    Ok(exit_code(status))
}

/// Sends signal `name` to the child with `kill(1)`; the child may already be gone, so failures
/// are reported and otherwise ignored.
async fn forward(name: &str, pid: &str) {
    let result = tokio::process::Command::new("kill")
        .args(["-s", name, pid])
        .status()
        .await;
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("warning: forwarding SIG{name} to {pid}: kill exited with {status}")
        }
        Err(error) => eprintln!("warning: forwarding SIG{name} to {pid}: {error}"),
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed the process.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests;
