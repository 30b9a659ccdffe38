//! `custos export` and `custos import`: move secrets between KV and `.env` files, which is how
//! hard-coded secrets leave a repository (import them, delete the file, use `custos run`).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::connection::ConnectionArgs;
use crate::dotenv;
use crate::kv_client::{self, KvVersion};
use crate::output::{self, OutputFormat};

/// `--format` of `custos export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// `NAME="value"` lines, sorted, escaped so any `.env` reader gets the exact value back.
    Dotenv,
    /// The secret's key/value object as JSON.
    Json,
    /// The secret's key/value object as YAML.
    Yaml,
}

/// `custos export PATH`
#[derive(Debug, clap::Args)]
#[command(disable_version_flag = true)]
pub(crate) struct ExportArgs {
    /// The secret to print, such as secret/app.
    path: String,
    /// The KV mount; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    mount: Option<String>,
    /// Export this version instead of the latest (KV v2).
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    /// Output format. In dotenv output, values that are not strings are written as JSON.
    #[arg(long, value_enum, default_value_t = ExportFormat::Dotenv)]
    format: ExportFormat,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `custos import FILE PATH`
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// The .env file to read, or - for standard input.
    file: String,
    /// The secret to write, such as secret/app. Its keys are replaced by the file's variables.
    path: String,
    /// The KV mount; PATH is then relative to it.
    #[arg(long, value_name = "MOUNT")]
    mount: Option<String>,
    /// Check-and-set: write only if the current version is N (0: only if the secret does not exist).
    #[arg(long, value_name = "N")]
    cas: Option<u64>,
    /// Output format: `table` prints the version written, `json` and `yaml` the API's answer.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// The secret as `.env` text; keys must be valid variable names.
fn to_dotenv(path: &str, data: &Map<String, Value>) -> anyhow::Result<String> {
    let mut entries = BTreeMap::new();
    for (key, value) in data {
        if !dotenv::is_env_name(key) {
            bail!(
                "key {key:?} of {path} is not a valid variable name for a .env file; use --format json or yaml"
            );
        }
        let value = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        entries.insert(key.clone(), value);
    }
    Ok(dotenv::write(&entries))
}

pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let result = async {
        let path = kv_client::resolve(&client, args.mount.as_deref(), &args.path).await?;
        let (_, data) = kv_client::read(&client, &path, args.version).await?;
        match args.format {
            ExportFormat::Dotenv => print!("{}", to_dotenv(&path.data_path(), &data)?),
            ExportFormat::Json => {
                output::print_structured(OutputFormat::Json, &Value::Object(data))?;
            }
            ExportFormat::Yaml => {
                output::print_structured(OutputFormat::Yaml, &Value::Object(data))?;
            }
        }
        Ok(())
    }
    .await;
    crate::kv_cmd::exit_code(result)
}

pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let text = if args.file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file))?
    };
    let source = if args.file == "-" {
        "standard input"
    } else {
        args.file.as_str()
    };
    let entries = dotenv::parse(&text).with_context(|| format!("cannot import {source}"))?;
    if entries.is_empty() {
        bail!("{source} holds no variables; nothing was written");
    }
    let count = entries.len();
    let data: Map<String, Value> = entries
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let client = args.connection.client()?;
    let result = async {
        let path = kv_client::resolve(&client, args.mount.as_deref(), &args.path).await?;
        let answer = kv_client::write(&client, &path, data, args.cas).await?;
        let keys = if count == 1 { "key" } else { "keys" };
        match (&answer, args.format) {
            (Some(answer), OutputFormat::Json | OutputFormat::Yaml) => {
                output::print_structured(args.format, answer)?;
            }
            (_, OutputFormat::Json | OutputFormat::Yaml) => {}
            (Some(answer), OutputFormat::Table) if path.version == KvVersion::V2 => {
                let version = answer
                    .pointer("/data/version")
                    .and_then(Value::as_u64)
                    .context("the server's answer has no version")?;
                println!(
                    "Success! Wrote {count} {keys} to {} as version {version}.",
                    path.data_path()
                );
            }
            (_, OutputFormat::Table) => {
                println!("Success! Wrote {count} {keys} to {}.", path.data_path());
            }
        }
        Ok(())
    }
    .await;
    crate::kv_cmd::exit_code(result)
}
