//! `custos auth enable|disable|list|tune`: auth methods over `sys/auth`, as `vault auth` does.

use std::process::ExitCode;

use anyhow::Context;
use custos_client::http::Method;
use serde_json::{Map, Value, json};

use crate::operator::{ClientArgs, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AuthCommand {
    /// Enable an auth method (`userpass`) at its type's name or at `--path`.
    Enable {
        /// The method's type, e.g. `userpass`.
        kind: String,
        /// Where to enable it below `auth/` (default: the type's name).
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Default TTL of the tokens its logins issue (`1h`, `30m`).
        #[arg(long)]
        default_lease_ttl: Option<String>,
        /// Maximum TTL of the tokens its logins issue.
        #[arg(long)]
        max_lease_ttl: Option<String>,
    },
    /// Disable the auth method at PATH and delete its data (users, ...).
    Disable {
        /// The method's path, e.g. `userpass/`.
        path: String,
    },
    /// List the enabled auth methods.
    List,
    /// Change an auth method's TTLs or description.
    Tune {
        /// The method's path, e.g. `userpass/`.
        path: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        default_lease_ttl: Option<String>,
        #[arg(long)]
        max_lease_ttl: Option<String>,
    },
}

/// A method path as `sys/auth/<path>` takes it: no slashes around.
fn clean(path: &str) -> anyhow::Result<&str> {
    let path = path.trim_matches('/');
    anyhow::ensure!(!path.is_empty(), "the auth method path is empty");
    Ok(path)
}

fn ttls(default_lease_ttl: Option<String>, max_lease_ttl: Option<String>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(ttl) = default_lease_ttl {
        out.insert("default_lease_ttl".into(), Value::String(ttl));
    }
    if let Some(ttl) = max_lease_ttl {
        out.insert("max_lease_ttl".into(), Value::String(ttl));
    }
    out
}

pub(crate) async fn run(args: AuthArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    match args.command {
        AuthCommand::Enable {
            kind,
            path,
            description,
            default_lease_ttl,
            max_lease_ttl,
        } => {
            let path = clean(path.as_deref().unwrap_or(&kind))?.to_owned();
            let mut body = json!({
                "type": kind,
                "config": ttls(default_lease_ttl, max_lease_ttl),
            });
            if let Some(description) = description {
                body["description"] = Value::String(description);
            }
            client
                .call::<Value>(Method::POST, &format!("sys/auth/{path}"), Some(&body))
                .await
                .with_context(|| format!("enabling {kind} at auth/{path}/"))?;
            println!("Success! Enabled {kind} auth method at: {path}/");
        }
        AuthCommand::Disable { path } => {
            let path = clean(&path)?;
            client
                .call::<Value>(Method::DELETE, &format!("sys/auth/{path}"), None::<&()>)
                .await
                .with_context(|| format!("disabling auth/{path}/"))?;
            println!("Success! Disabled the auth method (if it existed) at: {path}/");
        }
        AuthCommand::List => {
            let answer = client
                .call::<Value>(Method::GET, "sys/auth", None::<&()>)
                .await
                .context("listing auth methods")?
                .unwrap_or(Value::Null);
            let methods = answer
                .get("data")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            match args.client.format() {
                Format::Json => println!("{}", serde_json::to_string_pretty(&methods)?),
                Format::Table => print_methods(&methods),
            }
        }
        AuthCommand::Tune {
            path,
            description,
            default_lease_ttl,
            max_lease_ttl,
        } => {
            let path = clean(&path)?;
            let mut body = ttls(default_lease_ttl, max_lease_ttl);
            if let Some(description) = description {
                body.insert("description".into(), Value::String(description));
            }
            client
                .call::<Value>(
                    Method::POST,
                    &format!("sys/auth/{path}/tune"),
                    Some(&Value::Object(body)),
                )
                .await
                .with_context(|| format!("tuning auth/{path}/"))?;
            println!("Success! Tuned the auth method at: {path}/");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_methods(methods: &Map<String, Value>) {
    let text = |entry: &Value, key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let rows: Vec<[String; 4]> = methods
        .iter()
        .map(|(path, entry)| {
            [
                path.clone(),
                text(entry, "type"),
                text(entry, "accessor"),
                text(entry, "description"),
            ]
        })
        .collect();
    let header = ["Path", "Type", "Accessor", "Description"];
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].len())
            .chain([header[column].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |cells: [&str; 4]| {
        println!(
            "{:w0$}    {:w1$}    {:w2$}    {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
    };
    line(header);
    line(["----", "----", "--------", "-----------"]);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
}
