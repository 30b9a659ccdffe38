//! `custos token ...`: create, look up, renew and revoke tokens, and ask what a token may do, as
//! `vault token ...` does, over the token store's Vault-compatible endpoints (`auth/token/*`,
//! `sys/capabilities*`).

use std::process::ExitCode;

use anyhow::bail;
use custos_client::http::Method;
use serde_json::{Map, Value, json};

use crate::generic_cmd::{GenericArgs, print_answer};
use crate::kv_client::send;
use crate::output::{self, OutputFormat};

/// `custos token`: its subcommand and the flags every subcommand shares.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// Print only this field, raw: `token`, `token_accessor`, ... of a new or renewed token, or
    /// a key of a lookup (`-field=token` prints just the new token).
    #[arg(long, global = true, value_name = "FIELD")]
    field: Option<String>,
    #[command(flatten)]
    common: GenericArgs,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token, a child of the calling token (or an orphan with --orphan).
    Create(CreateArgs),
    /// Show a token's properties: the calling token, TOKEN, or the token of --accessor.
    Lookup {
        /// The token to look up (default: the calling token).
        #[arg(value_name = "TOKEN")]
        target: Option<String>,
        /// Look up the token with this accessor instead.
        #[arg(long, value_name = "ACCESSOR", conflicts_with = "target")]
        accessor: Option<String>,
    },
    /// Extend a token's lease: the calling token, or TOKEN.
    Renew {
        /// The token to renew (default: the calling token).
        #[arg(value_name = "TOKEN")]
        target: Option<String>,
        /// The new time to live from now, as a duration (30m, 24h) or seconds.
        #[arg(long, value_name = "DURATION")]
        increment: Option<String>,
    },
    /// Revoke a token and its children (or, with --mode orphan, the token alone).
    Revoke {
        /// The token to revoke.
        #[arg(value_name = "TOKEN")]
        target: Option<String>,
        /// Revoke the token with this accessor instead.
        #[arg(long, value_name = "ACCESSOR", conflicts_with = "target")]
        accessor: Option<String>,
        /// Revoke the calling token.
        #[arg(long = "self", conflicts_with_all = ["target", "accessor"])]
        revoke_self: bool,
        /// `orphan`: revoke only the token; its children become orphans.
        #[arg(long, value_name = "MODE", value_parser = ["orphan"])]
        mode: Option<String>,
    },
    /// Show what a token may do on a path: TOKEN PATH, or PATH for the calling token.
    Capabilities {
        /// The token (optional), then the path.
        #[arg(num_args = 1..=2, required = true, value_name = "[TOKEN] PATH")]
        args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// A policy to attach; repeat it (or separate with commas) for more.
    #[arg(long = "policy", value_name = "NAME", value_delimiter = ',')]
    policies: Vec<String>,
    /// Time to live, as a duration (30m, 24h) or seconds.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Hard limit past which the token cannot be renewed.
    #[arg(long, value_name = "DURATION")]
    explicit_max_ttl: Option<String>,
    /// Make a periodic token: each renewal gives it this period again, without a maximum.
    #[arg(long, value_name = "DURATION")]
    period: Option<String>,
    /// Create a token without a parent, which outlives the calling token.
    #[arg(long)]
    orphan: bool,
    /// How many requests the token may make (0: unlimited).
    #[arg(long, value_name = "N")]
    use_limit: Option<u64>,
    /// A name shown in lookups and audit records.
    #[arg(long, value_name = "NAME")]
    display_name: Option<String>,
    /// Addresses the token may be used from (CIDR); repeat it for more.
    #[arg(long = "bound-cidr", value_name = "CIDR", value_delimiter = ',')]
    bound_cidrs: Vec<String>,
    /// Whether the token can be renewed.
    #[arg(long, value_name = "BOOL")]
    renewable: Option<bool>,
    /// Do not attach the `default` policy.
    #[arg(long)]
    no_default_policy: bool,
    /// Metadata as KEY=VALUE; repeat it for more keys.
    #[arg(long, value_name = "KEY=VALUE")]
    metadata: Vec<String>,
}

/// The body of `auth/token/create` for these flags.
fn create_body(args: &CreateArgs) -> anyhow::Result<Map<String, Value>> {
    let mut body = Map::new();
    let policies: Vec<&str> = args
        .policies
        .iter()
        .map(|policy| policy.trim())
        .filter(|policy| !policy.is_empty())
        .collect();
    if !policies.is_empty() {
        body.insert("policies".into(), json!(policies));
    }
    for (key, value) in [
        ("ttl", &args.ttl),
        ("explicit_max_ttl", &args.explicit_max_ttl),
        ("period", &args.period),
        ("display_name", &args.display_name),
    ] {
        if let Some(value) = value {
            body.insert(key.into(), Value::String(value.clone()));
        }
    }
    if let Some(uses) = args.use_limit {
        body.insert("num_uses".into(), json!(uses));
    }
    if !args.bound_cidrs.is_empty() {
        body.insert("bound_cidrs".into(), json!(args.bound_cidrs));
    }
    if let Some(renewable) = args.renewable {
        body.insert("renewable".into(), json!(renewable));
    }
    if args.no_default_policy {
        body.insert("no_default_policy".into(), json!(true));
    }
    if !args.metadata.is_empty() {
        let mut meta = Map::new();
        for pair in &args.metadata {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("--metadata takes KEY=VALUE, got {pair:?}");
            };
            if key.is_empty() {
                bail!("--metadata takes KEY=VALUE, got {pair:?}");
            }
            meta.insert(key.into(), Value::String(value.into()));
        }
        body.insert("meta".into(), Value::Object(meta));
    }
    Ok(body)
}

/// The request a revoke makes: (path, body).
fn revoke_request(
    token: Option<String>,
    accessor: Option<String>,
    revoke_self: bool,
    mode: Option<&str>,
) -> anyhow::Result<(&'static str, Option<Value>)> {
    let orphan = mode == Some("orphan");
    match (token, accessor, revoke_self) {
        (_, _, true) if orphan => bail!("--self cannot be combined with --mode orphan"),
        (_, _, true) => Ok(("auth/token/revoke-self", None)),
        (None, Some(_), _) if orphan => bail!("--accessor cannot be combined with --mode orphan"),
        (None, Some(accessor), _) => Ok((
            "auth/token/revoke-accessor",
            Some(json!({ "accessor": accessor })),
        )),
        (Some(token), None, _) if orphan => {
            Ok(("auth/token/revoke-orphan", Some(json!({ "token": token }))))
        }
        (Some(token), None, _) => Ok(("auth/token/revoke", Some(json!({ "token": token })))),
        _ => bail!("give the token to revoke, --accessor ACCESSOR, or --self"),
    }
}

/// Sends a request and fails on a 404 (the token store answers them for unknown paths only).
async fn call(
    client: &custos_client::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Option<Value>> {
    let answer = send(client, method, path, body.as_ref()).await?;
    if answer.status == custos_client::http::StatusCode::NOT_FOUND {
        bail!("the server has no {path} endpoint (or nothing there)");
    }
    Ok(answer.body)
}

/// The capabilities in an answer of `sys/capabilities(-self)`: `capabilities`, at the top or
/// under `data`, or the path's own entry.
fn capabilities_of(body: &Value, path: &str) -> Vec<String> {
    let candidates = [
        body.pointer("/data/capabilities"),
        body.get("capabilities"),
        body.get("data").and_then(|data| data.get(path)),
        body.get(path),
    ];
    let list = candidates
        .into_iter()
        .flatten()
        .find_map(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = list.iter().map(output::cell).collect();
    names.sort();
    names
}

pub(crate) async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let client = args.common.connection.client()?;
    let format = args.common.format;
    match args.command {
        TokenCommand::Create(create) => {
            let path = if create.orphan {
                "auth/token/create-orphan"
            } else {
                "auth/token/create"
            };
            let body = Value::Object(create_body(&create)?);
            let answer = call(&client, Method::PUT, path, Some(body)).await?;
            let Some(answer) = answer else {
                bail!("the server answered {path} without a token");
            };
            print_answer(&answer, format, args.field.as_deref())?;
        }
        TokenCommand::Lookup { target, accessor } => {
            let answer = match (target, accessor) {
                (Some(token), _) => {
                    call(
                        &client,
                        Method::PUT,
                        "auth/token/lookup",
                        Some(json!({ "token": token })),
                    )
                    .await?
                }
                (None, Some(accessor)) => {
                    call(
                        &client,
                        Method::PUT,
                        "auth/token/lookup-accessor",
                        Some(json!({ "accessor": accessor })),
                    )
                    .await?
                }
                (None, None) => call(&client, Method::GET, "auth/token/lookup-self", None).await?,
            };
            let Some(answer) = answer else {
                bail!("the server answered the lookup without data");
            };
            print_answer(&answer, format, args.field.as_deref())?;
        }
        TokenCommand::Renew { target, increment } => {
            let mut body = Map::new();
            if let Some(increment) = increment {
                body.insert("increment".into(), Value::String(increment));
            }
            let path = match target {
                Some(token) => {
                    body.insert("token".into(), Value::String(token));
                    "auth/token/renew"
                }
                None => "auth/token/renew-self",
            };
            let answer = call(&client, Method::PUT, path, Some(Value::Object(body))).await?;
            let Some(answer) = answer else {
                bail!("the server answered the renewal without the token's lease");
            };
            print_answer(&answer, format, args.field.as_deref())?;
        }
        TokenCommand::Revoke {
            target,
            accessor,
            revoke_self,
            mode,
        } => {
            let (path, body) = revoke_request(target, accessor, revoke_self, mode.as_deref())?;
            call(&client, Method::PUT, path, body).await?;
            if format == OutputFormat::Table {
                println!("Success! Revoked token (if it existed)");
            }
        }
        TokenCommand::Capabilities { args: positional } => {
            let (token, path) = match positional.as_slice() {
                [path] => (None, path.clone()),
                [token, path] => (Some(token.clone()), path.clone()),
                _ => bail!("give [TOKEN] PATH"),
            };
            let path = path.trim_start_matches('/').to_owned();
            let (endpoint, body) = match token {
                Some(token) => (
                    "sys/capabilities",
                    json!({ "token": token, "paths": [path] }),
                ),
                None => ("sys/capabilities-self", json!({ "paths": [path] })),
            };
            let answer = call(&client, Method::PUT, endpoint, Some(body))
                .await?
                .unwrap_or(Value::Null);
            let capabilities = capabilities_of(&answer, &path);
            match format {
                OutputFormat::Table => println!("{}", capabilities.join(", ")),
                other => output::print_structured(other, &json!(capabilities))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
