//! `custos read`, `write`, `list` and `delete`: any API path, as `vault read/write/list/delete`
//! reach it, and the way answers with data or a token (`auth`) are printed, shared by `login`
//! and `token`.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::bail;
use custos_client::Client;
use custos_client::http::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::connection::ConnectionArgs;
use crate::kv_client::{NotFound, encode_path, send};
use crate::output::{self, OutputFormat};

/// How every generic command reaches the server and prints.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GenericArgs {
    /// Output format: `table` for people, `json` for the API's answer as is, `yaml` for the same as YAML.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// Read any path: `custos read sys/mounts`, `custos read secret/data/app`.
///
/// KEY=VALUE arguments are sent as query parameters (`custos read secret/data/app version=2`).
/// A path with nothing at it prints "No value found at PATH" and exits with 2.
#[derive(Debug, clap::Args)]
pub(crate) struct ReadArgs {
    /// The API path, without /v1/.
    path: String,
    /// Query parameters, as KEY=VALUE.
    #[arg(value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Print only this key of the answer's data, raw (non-string values as JSON).
    #[arg(long, value_name = "KEY")]
    field: Option<String>,
    #[command(flatten)]
    common: GenericArgs,
}

/// Write to any path: `custos write sys/mounts/kv type=kv`.
///
/// DATA is key=value pairs; key=@FILE takes the value from a file and key=- from standard input
/// (as is). A lone `-` reads a JSON object from standard input, and a lone `@FILE` a JSON object
/// from a file (these keep numbers, booleans, lists and objects). Without DATA, an empty body is
/// sent.
#[derive(Debug, clap::Args)]
pub(crate) struct WriteArgs {
    /// The API path, without /v1/.
    path: String,
    /// key=value, key=@FILE, key=-, or a lone - / @FILE for a JSON object.
    #[arg(value_name = "DATA")]
    data: Vec<String>,
    /// Print only this key of the answer's data, raw.
    #[arg(long, value_name = "KEY")]
    field: Option<String>,
    #[command(flatten)]
    common: GenericArgs,
}

/// List the keys under any path: `custos list secret/metadata/`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The API path, without /v1/.
    path: String,
    #[command(flatten)]
    common: GenericArgs,
}

/// Delete at any path: `custos delete secret/metadata/app`, `custos delete sys/mounts/kv`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    /// The API path, without /v1/.
    path: String,
    #[command(flatten)]
    common: GenericArgs,
}

/// Trims slashes, refuses an empty path and `..` segments.
fn clean(path: &str) -> anyhow::Result<String> {
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_prefix("v1/").unwrap_or(trimmed);
    if trimmed.trim_matches('/').is_empty() {
        bail!("missing path: give one like secret/data/app or sys/mounts");
    }
    if trimmed.split('/').any(|segment| segment == "..") {
        bail!("invalid path {path:?}: `..` is not allowed");
    }
    Ok(trimmed.to_owned())
}

/// Percent-encodes a query parameter's name or value.
fn encode_query(text: &str) -> String {
    encode_path(text).replace('/', "%2F")
}

/// `key=value` arguments as a query string.
pub(crate) fn query_string(params: &[String]) -> anyhow::Result<String> {
    let mut pairs = Vec::new();
    for param in params {
        let Some((key, value)) = param.split_once('=') else {
            bail!("expected KEY=VALUE, got {param:?}");
        };
        if key.is_empty() {
            bail!("missing key in {param:?}");
        }
        pairs.push(format!("{}={}", encode_query(key), encode_query(value)));
    }
    Ok(pairs.join("&"))
}

/// Warnings of an answer, on standard error as Vault prints them.
fn print_warnings(body: &Value) {
    let Some(warnings) = body.get("warnings").and_then(Value::as_array) else {
        return;
    };
    if warnings.is_empty() {
        return;
    }
    eprintln!("WARNING! The following warnings were returned from the server:\n");
    for warning in warnings {
        eprintln!("  * {}\n", output::cell(warning));
    }
}

/// A duration in seconds as Vault shows token and lease durations: `∞` for 0, else like `768h`,
/// `1h30m`, `45s`.
pub(crate) fn human_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "∞".into();
    }
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

/// The rows of an `auth` block, as Vault prints a login or a new token.
pub(crate) fn auth_rows(auth: &Map<String, Value>) -> Vec<(String, String)> {
    let text = |key: &str| auth.get(key).map(output::cell).unwrap_or_default();
    let list = |key: &str| match auth.get(key) {
        Some(Value::Array(items)) => Value::Array(items.clone()).to_string(),
        _ => "[]".into(),
    };
    let mut rows = vec![
        ("token".to_owned(), text("client_token")),
        ("token_accessor".to_owned(), text("accessor")),
        (
            "token_duration".to_owned(),
            human_duration(
                auth.get("lease_duration")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            ),
        ),
        ("token_renewable".to_owned(), text("renewable")),
        ("token_policies".to_owned(), list("token_policies")),
        ("identity_policies".to_owned(), list("identity_policies")),
        ("policies".to_owned(), list("policies")),
    ];
    if let Some(Value::Object(metadata)) = auth.get("metadata") {
        let mut meta: Vec<_> = metadata
            .iter()
            .map(|(key, value)| (format!("token_meta_{key}"), output::cell(value)))
            .collect();
        meta.sort();
        rows.extend(meta);
    }
    rows
}

/// The rows of an answer with `data`: lease facts when it has a lease, then the data, sorted.
fn data_rows(body: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let lease = body
        .get("lease_duration")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if lease > 0 {
        let lease_id = body.get("lease_id").map(output::cell).unwrap_or_default();
        if !lease_id.is_empty() {
            rows.push(("lease_id".to_owned(), lease_id));
        }
        rows.push(("lease_duration".to_owned(), human_duration(lease)));
        rows.push((
            "lease_renewable".to_owned(),
            body.get("renewable")
                .map(output::cell)
                .unwrap_or_else(|| "false".into()),
        ));
    }
    if let Some(Value::Object(data)) = body.get("data") {
        rows.extend(output::data_rows(data));
    }
    rows
}

/// Prints an answer: its `auth` block, or its data (or wrapping info), as a table, JSON or
/// YAML. `field` prints one key of the data (or of the auth block, Vault's names) alone.
pub(crate) fn print_answer(
    body: &Value,
    format: OutputFormat,
    field: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(field) = field {
        let value = if let Some(Value::Object(auth)) = body.get("auth") {
            auth_rows(auth)
                .into_iter()
                .find(|(key, _)| key == field)
                .map(|(_, value)| Value::String(value))
        } else {
            body.get("data").and_then(|data| data.get(field)).cloned()
        };
        let Some(value) = value else {
            bail!("field {field:?} not present in the answer");
        };
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        // Raw for pipes and `$(...)`; a newline only for a person at a terminal, as Vault does.
        if std::io::stdout().is_terminal() {
            println!("{text}");
        } else {
            print!("{text}");
        }
        return Ok(());
    }
    match format {
        OutputFormat::Json | OutputFormat::Yaml => output::print_structured(format, body),
        OutputFormat::Table => {
            print_warnings(body);
            if let Some(Value::Object(auth)) = body.get("auth") {
                print!("{}", output::table(None, &auth_rows(auth)));
            } else if let Some(Value::Object(wrap)) = body.get("wrap_info") {
                let rows = [
                    ("wrapping_token:", "token"),
                    ("wrapping_accessor:", "accessor"),
                    ("wrapping_token_ttl:", "ttl"),
                    ("wrapping_token_creation_time:", "creation_time"),
                    ("wrapping_token_creation_path:", "creation_path"),
                ]
                .iter()
                .map(|(label, key)| {
                    let value = match (*key, wrap.get(*key)) {
                        ("ttl", Some(ttl)) => human_duration(ttl.as_u64().unwrap_or(0)),
                        (_, value) => value.map(output::cell).unwrap_or_default(),
                    };
                    ((*label).to_owned(), value)
                })
                .collect::<Vec<_>>();
                print!("{}", output::table(None, &rows));
            } else {
                print!("{}", output::table(None, &data_rows(body)));
            }
            Ok(())
        }
    }
}

/// The `errors` of an answer's body, if any.
fn errors_of(body: Option<&Value>) -> Vec<String> {
    body.and_then(|body| body.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| errors.iter().map(output::cell).collect())
        .unwrap_or_default()
}

/// Sends a request. A 404 with errors (no mount serves the path) is an error with the server's
/// message; a bare 404 is [`NotFound`] for `shown` (Vault's "No value found", exit code 2).
async fn request(
    client: &Client,
    method: Method,
    api_path: &str,
    shown: &str,
    body: Option<&Value>,
) -> anyhow::Result<Option<Value>> {
    let answer = send(client, method, api_path, body).await?;
    if answer.status == StatusCode::NOT_FOUND {
        let errors = errors_of(answer.body.as_ref());
        if !errors.is_empty() {
            bail!("server answered 404: {}", errors.join("; "));
        }
        return Err(NotFound {
            path: shown.to_owned(),
            deleted: None,
        }
        .into());
    }
    Ok(answer.body)
}

pub(crate) async fn read(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let client = args.common.connection.client()?;
    let path = clean(&args.path)?;
    let mut api_path = encode_path(&path);
    let query = query_string(&args.params)?;
    if !query.is_empty() {
        api_path.push('?');
        api_path.push_str(&query);
    }
    let result = async {
        let body = request(&client, Method::GET, &api_path, &path, None)
            .await?
            .ok_or_else(|| NotFound {
                path: path.clone(),
                deleted: None,
            })?;
        print_answer(&body, args.common.format, args.field.as_deref())
    }
    .await;
    crate::kv_cmd::exit_code(result)
}

pub(crate) async fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    let client = args.common.connection.client()?;
    let path = clean(&args.path)?;
    let data = crate::kv_cmd::parse_data(&args.data, &mut std::io::stdin().lock())?;
    let result = async {
        let body = Value::Object(data);
        match request(
            &client,
            Method::PUT,
            &encode_path(&path),
            &path,
            Some(&body),
        )
        .await?
        {
            Some(answer) => print_answer(&answer, args.common.format, args.field.as_deref()),
            None => {
                if args.common.format == OutputFormat::Table {
                    println!("Success! Data written to: {path}");
                }
                Ok(())
            }
        }
    }
    .await;
    crate::kv_cmd::exit_code(result)
}

pub(crate) async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.common.connection.client()?;
    let path = clean(&args.path)?;
    let folder = format!("{}/", path.trim_end_matches('/'));
    let result = async {
        let body = request(
            &client,
            Method::GET,
            &format!("{}?list=true", encode_path(&folder)),
            &folder,
            None,
        )
        .await?;
        let keys = body
            .as_ref()
            .and_then(|body| body.pointer("/data/keys"))
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| NotFound {
                path: folder.clone(),
                deleted: None,
            })?;
        match args.common.format {
            OutputFormat::Json | OutputFormat::Yaml => {
                output::print_structured(args.common.format, &Value::Array(keys))?;
            }
            OutputFormat::Table => {
                println!("Keys\n----");
                for key in &keys {
                    println!("{}", output::cell(key));
                }
            }
        }
        Ok(())
    }
    .await;
    crate::kv_cmd::exit_code(result)
}

pub(crate) async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = args.common.connection.client()?;
    let path = clean(&args.path)?;
    // A delete of something absent succeeds, as in Vault; a path no mount serves fails.
    let result = async {
        let body = request(&client, Method::DELETE, &encode_path(&path), &path, None).await?;
        match (body, args.common.format) {
            (Some(body), format) => print_answer(&body, format, None)?,
            (None, OutputFormat::Table) => {
                println!("Success! Data deleted (if it existed) at: {path}");
            }
            (None, _) => {}
        }
        Ok(())
    }
    .await;
    crate::kv_cmd::exit_code(result)
}

/// Reads all of standard input (for `-` arguments of `login` and `token`).
pub(crate) fn read_stdin_value(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|error| anyhow::anyhow!("cannot read the {what} from standard input: {error}"))?;
    Ok(zeroize::Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

#[cfg(test)]
mod tests;
