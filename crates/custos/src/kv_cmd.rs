//! `custos kv ...`: read and write KV secrets, modelled on `vault kv ...`.
//!
//! Paths are given whole (`secret/app/db`) or split with `--mount secret app/db`. The mount and
//! its KV version are looked up first, so the same commands work on version 1 and version 2 mounts
//! (versions, patch, rollback and metadata need version 2).

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use custos_client::Client;
use custos_client::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::connection::ConnectionArgs;
use crate::kv_client::{self, KvPath, KvVersion, NotFound, encode_path, send};
use crate::output::{self, OutputFormat};

/// `custos kv`: its subcommand and the flags every subcommand shares.
#[derive(Debug, clap::Args)]
pub(crate) struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
    /// The KV mount; PATH is then relative to it (`--mount secret app/db` is `secret/app/db`).
    #[arg(long, global = true, value_name = "MOUNT")]
    mount: Option<String>,
    /// Output format: `table` for people, `json` for the API's answer as is, `yaml` for the same as YAML.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Debug, clap::Subcommand)]
enum KvCommand {
    /// Read a secret (the latest version, or --version N).
    #[command(disable_version_flag = true)]
    Get {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// Read this version instead of the latest (KV v2).
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Print only this key's value, raw (non-string values as JSON).
        #[arg(long, value_name = "KEY")]
        field: Option<String>,
    },
    /// Write a secret, replacing all of its keys (a new version on KV v2).
    ///
    /// DATA is key=value pairs; key=@FILE takes the value from a file and key=- from standard
    /// input (as is, trailing newline included). A lone `-` reads a JSON object from standard
    /// input, and a lone `@FILE` a JSON object from a file.
    Put {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// key=value, key=@FILE, key=-, or a lone - / @FILE for a JSON object.
        #[arg(required = true, value_name = "DATA")]
        data: Vec<String>,
        /// Check-and-set: write only if the current version is N (0: only if the secret does not exist).
        #[arg(long, value_name = "N")]
        cas: Option<u64>,
    },
    /// Merge keys into the latest version of a secret, keeping the others (KV v2; JSON merge
    /// patch, so a key set to JSON null is removed).
    Patch {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// key=value, key=@FILE, key=-, or a lone - / @FILE for a JSON object.
        #[arg(required = true, value_name = "DATA")]
        data: Vec<String>,
        /// Check-and-set: patch only if the current version is N.
        #[arg(long, value_name = "N")]
        cas: Option<u64>,
    },
    /// List the secrets and folders (ending in /) under a path.
    List {
        /// A folder or mount, such as secret/ or secret/app.
        path: String,
    },
    /// Delete a secret: on KV v2, soft-delete the latest version (or --versions), which
    /// `undelete` can bring back; on KV v1, remove it for good.
    Delete {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// Soft-delete these versions instead of the latest (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "N,...")]
        versions: Vec<u64>,
    },
    /// Restore soft-deleted versions of a secret (KV v2).
    Undelete {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// The versions to restore (comma-separated).
        #[arg(long, value_delimiter = ',', required = true, value_name = "N,...")]
        versions: Vec<u64>,
    },
    /// Remove versions of a secret for good; their data cannot be recovered (KV v2).
    Destroy {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// The versions to destroy (comma-separated).
        #[arg(long, value_delimiter = ',', required = true, value_name = "N,...")]
        versions: Vec<u64>,
    },
    /// Write an older version's data as a new version (KV v2), refusing if the secret changed
    /// in the meantime.
    #[command(disable_version_flag = true)]
    Rollback {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// The version whose data becomes the latest.
        #[arg(long, value_name = "N")]
        version: u64,
    },
    /// Read and change a secret's metadata: its versions and settings (KV v2).
    Metadata {
        #[command(subcommand)]
        command: MetadataCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum MetadataCommand {
    /// Show a secret's settings and the state of each of its versions.
    Get {
        /// The secret's path, such as secret/app/db.
        path: String,
    },
    /// Change a secret's settings; settings not given are left as they are.
    Put {
        /// The secret's path, such as secret/app/db.
        path: String,
        /// How many versions to keep; older ones are removed (0: the mount's setting).
        #[arg(long, value_name = "N")]
        max_versions: Option<u64>,
        /// Require --cas on every write of this secret.
        #[arg(long, value_name = "BOOL")]
        cas_required: Option<bool>,
        /// Soft-delete each version this long after it is written, as a duration (30m, 24h; 0s: never).
        #[arg(long, value_name = "DURATION")]
        delete_version_after: Option<String>,
        /// Custom metadata as key=value; repeat it for more keys. Replaces all custom metadata.
        #[arg(long, value_name = "KEY=VALUE")]
        custom_metadata: Vec<String>,
    },
    /// Delete a secret's metadata and all of its versions, for good.
    Delete {
        /// The secret's path, such as secret/app/db.
        path: String,
    },
}

/// Runs a `kv` subcommand. A missing secret prints "No value found at ..." and exits with 2.
pub(crate) async fn run(args: KvArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client()?;
    let result = match args.command {
        KvCommand::Get {
            path,
            version,
            field,
        } => {
            get(
                &client,
                args.mount.as_deref(),
                &path,
                version,
                field.as_deref(),
                args.format,
            )
            .await
        }
        KvCommand::Put { path, data, cas } => {
            let path = kv_client::resolve(&client, args.mount.as_deref(), &path).await?;
            let data = parse_data(&data, &mut std::io::stdin().lock())?;
            // No `?` here: a missing secret must reach `exit_code` below.
            kv_client::write(&client, &path, data, cas)
                .await
                .and_then(|answer| print_written(&path, answer.as_ref(), args.format))
        }
        KvCommand::Patch { path, data, cas } => {
            let path = kv_client::resolve(&client, args.mount.as_deref(), &path).await?;
            let data = parse_data(&data, &mut std::io::stdin().lock())?;
            // No `?` here: a missing secret must reach `exit_code` below.
            kv_client::patch(&client, &path, data, cas)
                .await
                .and_then(|answer| print_written(&path, answer.as_ref(), args.format))
        }
        KvCommand::List { path } => list(&client, args.mount.as_deref(), &path, args.format).await,
        KvCommand::Delete { path, versions } => {
            let path = kv_client::resolve(&client, args.mount.as_deref(), &path).await?;
            path.require_secret()?;
            if versions.is_empty() {
                let api_path = path.data_path();
                send(&client, Method::DELETE, &encode_path(&api_path), None).await?;
                success(&format!("Data deleted (if it existed) at: {api_path}"));
                Ok(())
            } else {
                path.require_v2("--versions")?;
                change_versions(&client, &path, "delete", &versions).await
            }
        }
        KvCommand::Undelete { path, versions } => {
            let path = kv_client::resolve(&client, args.mount.as_deref(), &path).await?;
            path.require_v2("undelete")?;
            change_versions(&client, &path, "undelete", &versions).await
        }
        KvCommand::Destroy { path, versions } => {
            let path = kv_client::resolve(&client, args.mount.as_deref(), &path).await?;
            path.require_v2("destroy")?;
            change_versions(&client, &path, "destroy", &versions).await
        }
        KvCommand::Rollback { path, version } => {
            let path = kv_client::resolve(&client, args.mount.as_deref(), &path).await?;
            rollback(&client, &path, version, args.format).await
        }
        KvCommand::Metadata { command } => {
            metadata(&client, args.mount.as_deref(), command, args.format).await
        }
    };
    exit_code(result)
}

/// Maps [`NotFound`] to Vault's message and exit code 2; other errors go to `main`.
pub(crate) fn exit_code(result: anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => match error.downcast_ref::<NotFound>() {
            Some(not_found) => {
                eprintln!("{not_found}");
                Ok(ExitCode::from(2))
            }
            None => Err(error),
        },
    }
}

fn success(message: &str) {
    println!("Success! {message}");
}

/// Reads the data arguments of `put` and `patch` (see `custos kv put --help`).
pub(crate) fn parse_data(
    args: &[String],
    stdin: &mut impl Read,
) -> anyhow::Result<Map<String, Value>> {
    let mut stdin_used = false;
    let mut read_stdin = |what: &str| -> anyhow::Result<String> {
        if stdin_used {
            bail!("standard input can be read only once ({what})");
        }
        stdin_used = true;
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {what} from standard input"))?;
        Ok(text)
    };
    if let [only] = args {
        let json_text = if only == "-" {
            Some(read_stdin("a JSON object")?)
        } else if let Some(file) = only.strip_prefix('@').filter(|_| !only.contains('=')) {
            Some(read_file(file)?)
        } else {
            None
        };
        if let Some(text) = json_text {
            let value: Value = serde_json::from_str(&text).context("the data is not valid JSON")?;
            let Value::Object(map) = value else {
                bail!("the data must be a JSON object");
            };
            return Ok(map);
        }
    }
    let mut data = Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("expected key=value, got {arg:?}");
        };
        if key.is_empty() {
            bail!("missing key in {arg:?}");
        }
        let value = if value == "-" {
            read_stdin(&format!("the value of {key}"))?
        } else if let Some(file) = value.strip_prefix('@') {
            read_file(file)?
        } else {
            value.to_owned()
        };
        if data.insert(key.to_owned(), Value::String(value)).is_some() {
            bail!("key {key:?} is given twice");
        }
    }
    Ok(data)
}

fn read_file(file: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(Path::new(file)).with_context(|| format!("cannot read {file}"))
}

async fn get(
    client: &Client,
    mount: Option<&str>,
    path: &str,
    version: Option<u64>,
    field: Option<&str>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let path = kv_client::resolve(client, mount, path).await?;
    let (answer, data) = match kv_client::read(client, &path, version).await {
        Ok((answer, data)) => (answer, Some(data)),
        Err(error) => match error.downcast::<NotFound>() {
            // As Vault's CLI, a deleted or destroyed version shows its metadata, without data.
            Ok(NotFound {
                deleted: Some(answer),
                ..
            }) if field.is_none() => (answer, None),
            Ok(not_found) => return Err(not_found.into()),
            Err(error) => return Err(error),
        },
    };
    if let (Some(field), Some(data)) = (field, &data) {
        let Some(value) = data.get(field) else {
            bail!("field {field:?} is not present in the secret");
        };
        let text = match (format, value) {
            (OutputFormat::Json, value) => serde_json::to_string_pretty(value)?,
            (OutputFormat::Yaml, value) => crate::yaml::to_yaml(value).trim_end().to_owned(),
            (OutputFormat::Table, Value::String(text)) => text.clone(),
            (OutputFormat::Table, value) => value.to_string(),
        };
        // Raw for pipes and `$(...)`; a newline only for a person at a terminal, as Vault does.
        if std::io::stdout().is_terminal() {
            println!("{text}");
        } else {
            print!("{text}");
        }
        return Ok(());
    }
    if format != OutputFormat::Table {
        return output::print_structured(format, &answer);
    }
    match (path.version, &data) {
        (KvVersion::V1, Some(data)) => print!("{}", output::table(None, &output::data_rows(data))),
        _ => {
            let metadata = answer
                .get("data")
                .and_then(|data| data.get("metadata"))
                .and_then(Value::as_object);
            print_v2_secret(&path, metadata, data.as_ref());
        }
    }
    Ok(())
}

/// The Secret Path, Metadata and Data sections of a v2 secret.
fn print_v2_secret(
    path: &KvPath,
    metadata: Option<&Map<String, Value>>,
    data: Option<&Map<String, Value>>,
) {
    let mut out = output::path_section("Secret Path", &path.data_path());
    if let Some(metadata) = metadata {
        out.push('\n');
        out.push_str(&output::table(
            Some("Metadata"),
            &output::metadata_rows(metadata, &[]),
        ));
    }
    if let Some(data) = data {
        out.push('\n');
        out.push_str(&output::table(Some("Data"), &output::data_rows(data)));
    }
    print!("{out}");
}

/// The answer to a write: the new version's metadata on v2, a success line on v1.
fn print_written(
    path: &KvPath,
    answer: Option<&Value>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    match answer {
        Some(answer) if format != OutputFormat::Table => output::print_structured(format, answer),
        Some(answer) => {
            let metadata = answer.get("data").and_then(Value::as_object);
            print_v2_secret(path, metadata, None);
            Ok(())
        }
        None => {
            if format == OutputFormat::Table {
                success(&format!("Data written to: {}", path.data_path()));
            }
            Ok(())
        }
    }
}

async fn list(
    client: &Client,
    mount: Option<&str>,
    path: &str,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let path = kv_client::resolve(client, mount, path).await?;
    let folder = match path.version {
        KvVersion::V2 => path.endpoint("metadata"),
        KvVersion::V1 => path.data_path(),
    };
    let folder = format!("{}/", folder.trim_end_matches('/'));
    let answer = send(
        client,
        Method::GET,
        &format!("{}?list=true", encode_path(&folder)),
        None,
    )
    .await?;
    let keys = answer
        .data()
        .and_then(|data| data.get("keys"))
        .and_then(Value::as_array)
        .filter(|_| answer.status != StatusCode::NOT_FOUND);
    let Some(keys) = keys else {
        return Err(NotFound {
            path: folder,
            deleted: None,
        }
        .into());
    };
    match format {
        // As Vault, the JSON and YAML forms are the list of keys alone, ready for `jq -r '.[]'`.
        OutputFormat::Json | OutputFormat::Yaml => {
            output::print_structured(format, &Value::Array(keys.clone()))?;
        }
        OutputFormat::Table => {
            println!("Keys\n----");
            for key in keys {
                println!("{}", output::cell(key));
            }
        }
    }
    Ok(())
}

/// `delete`, `undelete` or `destroy` of listed versions.
async fn change_versions(
    client: &Client,
    path: &KvPath,
    endpoint: &str,
    versions: &[u64],
) -> anyhow::Result<()> {
    path.require_secret()?;
    if versions.is_empty() {
        bail!("no versions given: use --versions 1,2");
    }
    let api_path = path.endpoint(endpoint);
    let body = json!({ "versions": versions });
    send(client, Method::POST, &encode_path(&api_path), Some(&body)).await?;
    if endpoint == "delete" {
        success(&format!("Data deleted (if it existed) at: {api_path}"));
    } else {
        success(&format!("Data written to: {api_path}"));
    }
    Ok(())
}

/// Reads the secret's metadata; a secret without metadata is [`NotFound`].
async fn read_metadata(client: &Client, path: &KvPath) -> anyhow::Result<Value> {
    path.require_secret()?;
    path.require_v2("metadata")?;
    let api_path = path.endpoint("metadata");
    let answer = send(client, Method::GET, &encode_path(&api_path), None).await?;
    match answer.body {
        Some(body) if answer.status != StatusCode::NOT_FOUND => Ok(body),
        _ => Err(NotFound {
            path: api_path,
            deleted: None,
        }
        .into()),
    }
}

async fn rollback(
    client: &Client,
    path: &KvPath,
    version: u64,
    format: OutputFormat,
) -> anyhow::Result<()> {
    path.require_v2("rollback")?;
    let metadata = read_metadata(client, path).await?;
    let current = metadata
        .pointer("/data/current_version")
        .and_then(Value::as_u64)
        .context("the secret's metadata has no current_version")?;
    let Some(target) = metadata.pointer(&format!("/data/versions/{version}")) else {
        bail!("version {version} of {} does not exist", path.data_path());
    };
    if target.get("destroyed").and_then(Value::as_bool) == Some(true) {
        bail!("version {version} is destroyed; its data cannot be restored");
    }
    if target
        .get("deletion_time")
        .and_then(Value::as_str)
        .is_some_and(|time| !time.is_empty())
    {
        bail!(
            "version {version} is deleted; undelete it first with `custos kv undelete --versions {version}`"
        );
    }
    let (_, data) = kv_client::read(client, path, Some(version)).await?;
    let answer = kv_client::write(client, path, data, Some(current))
        .await
        .with_context(|| {
            format!("cannot write version {version}'s data on top of version {current}")
        })?;
    print_written(path, answer.as_ref(), format)
}

async fn metadata(
    client: &Client,
    mount: Option<&str>,
    command: MetadataCommand,
    format: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        MetadataCommand::Get { path } => {
            let path = kv_client::resolve(client, mount, &path).await?;
            let answer = read_metadata(client, &path).await?;
            if format != OutputFormat::Table {
                return output::print_structured(format, &answer);
            }
            let empty = Map::new();
            let data = answer
                .get("data")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let mut out = output::path_section("Metadata Path", &path.endpoint("metadata"));
            out.push('\n');
            out.push_str(&output::table(
                Some("Metadata"),
                &output::metadata_rows(data, &["versions"]),
            ));
            if let Some(versions) = data.get("versions").and_then(Value::as_object) {
                let mut numbered: Vec<(u64, &Map<String, Value>)> = versions
                    .iter()
                    .filter_map(|(number, meta)| Some((number.parse().ok()?, meta.as_object()?)))
                    .collect();
                numbered.sort_by_key(|(number, _)| *number);
                for (number, meta) in numbered {
                    out.push('\n');
                    out.push_str(&output::table(
                        Some(&format!("Version {number}")),
                        &output::metadata_rows(meta, &[]),
                    ));
                }
            }
            print!("{out}");
            Ok(())
        }
        MetadataCommand::Put {
            path,
            max_versions,
            cas_required,
            delete_version_after,
            custom_metadata,
        } => {
            let path = kv_client::resolve(client, mount, &path).await?;
            path.require_secret()?;
            path.require_v2("metadata")?;
            let mut body = Map::new();
            if let Some(max_versions) = max_versions {
                body.insert("max_versions".into(), json!(max_versions));
            }
            if let Some(cas_required) = cas_required {
                body.insert("cas_required".into(), json!(cas_required));
            }
            if let Some(after) = delete_version_after {
                body.insert("delete_version_after".into(), json!(after));
            }
            if !custom_metadata.is_empty() {
                let mut custom = Map::new();
                for pair in &custom_metadata {
                    let Some((key, value)) = pair.split_once('=') else {
                        bail!("--custom-metadata expects key=value, got {pair:?}");
                    };
                    custom.insert(key.to_owned(), json!(value));
                }
                body.insert("custom_metadata".into(), Value::Object(custom));
            }
            if body.is_empty() {
                bail!(
                    "nothing to change: give --max-versions, --cas-required, --delete-version-after or --custom-metadata"
                );
            }
            let api_path = path.endpoint("metadata");
            send(
                client,
                Method::POST,
                &encode_path(&api_path),
                Some(&Value::Object(body)),
            )
            .await?;
            success(&format!("Data written to: {api_path}"));
            Ok(())
        }
        MetadataCommand::Delete { path } => {
            let path = kv_client::resolve(client, mount, &path).await?;
            path.require_secret()?;
            path.require_v2("metadata")?;
            let api_path = path.endpoint("metadata");
            send(client, Method::DELETE, &encode_path(&api_path), None).await?;
            success(&format!("Data deleted (if it existed) at: {api_path}"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
