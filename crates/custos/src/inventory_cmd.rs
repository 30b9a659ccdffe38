//! `custos inventory`: who uses which credential, from where, through `GET sys/inventory`
//! (`docs/inventory.md`).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use custos_client::http::Method;
use serde_json::{Map, Value, json};

use crate::generic_cmd::{GenericArgs, query_string};
use crate::kv_client::send;
use crate::output::{self, OutputFormat};

/// How many credentials one request asks for; the command follows `next_after` for the rest.
const PAGE: usize = 1000;

/// Show which credentials are used, when, and from where.
///
/// For every credential (token accessor, AppRole role and secret id, userpass user, client
/// certificate) the server keeps when it was first and last used, how many requests it made, and
/// the source addresses, user agents and client-certificate fingerprints it came with. It
/// answers three questions:
///
///   which machines use this token?        custos inventory --kind token   (see ADDRESSES)
///
///   which credentials have not been used for 30 days (never used included)?
///                                         custos inventory --unused-since 30d
///
///   which credential is used from more than one place?
///                                         custos inventory --min-addresses 2
///
/// Needs a token whose policies grant `read` on `sys/inventory`.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct InventoryArgs {
    /// Only credentials not used since then: an RFC 3339 time, or a duration back from now
    /// (`720h`, `30d`). Tokens that were never used are included.
    #[arg(long, value_name = "TIME|DURATION")]
    unused_since: Option<String>,
    /// Only credentials seen from at least this many source addresses.
    #[arg(long, value_name = "N")]
    min_addresses: Option<u64>,
    /// Only credentials of this auth method: a mount path (`approle/`) or a type (`approle`).
    #[arg(long, value_name = "METHOD")]
    auth_method: Option<String>,
    /// Only credentials whose policies include this one.
    #[arg(long, value_name = "POLICY")]
    policy: Option<String>,
    /// Only credentials of this kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// At most this many credentials (default: all).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    common: GenericArgs,
}

/// The kinds of credential the inventory knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Token,
    Approle,
    Userpass,
    Cert,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Approle => "approle",
            Kind::Userpass => "userpass",
            Kind::Cert => "cert",
        }
    }
}

impl InventoryArgs {
    /// The query parameters of every page but `limit` and `after`.
    fn filters(&self) -> Vec<String> {
        let mut params = Vec::new();
        let mut add = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                params.push(format!("{key}={value}"));
            }
        };
        add("unused_since", self.unused_since.clone());
        add("min_addresses", self.min_addresses.map(|n| n.to_string()));
        add("auth_method", self.auth_method.clone());
        add("policy", self.policy.clone());
        add("kind", self.kind.map(|kind| kind.as_str().to_owned()));
        params
    }
}

pub(crate) async fn run(args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let client = args.common.connection.client()?;
    let wanted = args.limit.unwrap_or(usize::MAX);
    if wanted == 0 {
        bail!("--limit must be at least 1");
    }
    let mut credentials = Vec::new();
    let mut after: Option<String> = None;
    while credentials.len() < wanted {
        let mut params = args.filters();
        params.push(format!("limit={}", PAGE.min(wanted - credentials.len())));
        if let Some(after) = &after {
            params.push(format!("after={after}"));
        }
        let path = format!("sys/inventory?{}", query_string(&params)?);
        let answer = send(&client, Method::GET, &path, None).await?;
        let data = answer
            .data()
            .context("the server's answer to sys/inventory has no data")?;
        let page = data
            .get("credentials")
            .and_then(Value::as_array)
            .context("the server's answer to sys/inventory has no credentials")?;
        credentials.extend(page.iter().cloned());
        match data.get("next_after") {
            Some(Value::String(next)) if !page.is_empty() => after = Some(next.clone()),
            _ => break,
        }
    }
    match args.common.format {
        OutputFormat::Table => print!("{}", table(&credentials)),
        format => output::print_structured(format, &json!({ "credentials": credentials }))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The values of one bounded set (`addresses`, `user_agents`), most recent first, and `+N` when
/// the server had to forget N of them.
fn set_cell(credential: &Map<String, Value>, set: &str, field: &str) -> String {
    let mut values: Vec<String> = credential
        .get(set)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get(field).map(output::cell))
                .collect()
        })
        .unwrap_or_default();
    let evicted = credential
        .get("evicted")
        .and_then(|evicted| evicted.get(set))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if evicted > 0 {
        values.push(format!("+{evicted}"));
    }
    if values.is_empty() {
        "-".into()
    } else {
        values.join(",")
    }
}

/// The credentials as aligned columns, one line each.
pub(crate) fn table(credentials: &[Value]) -> String {
    const HEADINGS: [&str; 8] = [
        "KIND",
        "ID",
        "AUTH METHOD",
        "DISPLAY NAME",
        "REQUESTS",
        "LAST SEEN",
        "ADDRESSES",
        "USER AGENTS",
    ];
    if credentials.is_empty() {
        return "No credentials found\n".into();
    }
    let empty = Map::new();
    let rows: Vec<[String; 8]> = credentials
        .iter()
        .map(|credential| {
            let credential = credential.as_object().unwrap_or(&empty);
            let text = |key: &str| credential.get(key).map(output::cell).unwrap_or_default();
            let mut id = text("id");
            if let Some(Value::String(accessor)) = credential.get("secret_id_accessor") {
                id = format!("{id} (secret id {accessor})");
            }
            let last_seen = match credential.get("last_seen") {
                Some(Value::String(time)) => time.clone(),
                _ => "never".into(),
            };
            [
                text("kind"),
                id,
                text("auth_method"),
                text("display_name"),
                text("requests"),
                last_seen,
                set_cell(credential, "addresses", "address"),
                set_cell(credential, "user_agents", "user_agent"),
            ]
        })
        .collect();
    let mut widths = HEADINGS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - cell.chars().count() + 3));
            }
        }
        line.push('\n');
        line
    };
    let mut out = line(&HEADINGS);
    for row in &rows {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_addresses_agents_and_never_used_credentials() {
        let credentials = [
            json!({
                "kind": "token", "id": "acc-1", "auth_method": "token/", "display_name": "token",
                "requests": 3, "last_seen": "2026-01-01T00:00:05Z",
                "addresses": [{"address": "127.0.0.3"}, {"address": "127.0.0.2"}],
                "user_agents": [{"user_agent": "b"}, {"user_agent": "a"}],
                "evicted": {"addresses": 2, "user_agents": 0},
            }),
            json!({
                "kind": "approle", "id": "web", "secret_id_accessor": "sid-1",
                "auth_method": "approle/", "display_name": "approle", "requests": 0,
                "last_seen": null, "addresses": [], "user_agents": [],
            }),
        ];
        let text = table(&credentials);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("KIND "), "{text}");
        assert!(lines[1].contains("127.0.0.3,127.0.0.2,+2"), "{text}");
        assert!(lines[1].ends_with("b,a"), "{text}");
        assert!(lines[2].contains("web (secret id sid-1)"), "{text}");
        assert!(lines[2].contains("never"), "{text}");
        // Columns line up: every row's second column starts where the heading's does.
        let column = lines[0].find("ID").expect("ID heading");
        assert!(
            lines
                .iter()
                .all(|line| line[column..].starts_with(|c: char| c != ' '))
        );
        assert_eq!(table(&[]), "No credentials found\n");
    }

    #[test]
    fn filters_become_query_parameters() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: InventoryArgs,
        }
        let cli = Cli::try_parse_from([
            "inventory",
            "--unused-since",
            "30d",
            "--min-addresses",
            "2",
            "--auth-method",
            "approle/",
            "--kind",
            "token",
            "--policy",
            "ops",
        ])
        .expect("arguments");
        assert_eq!(
            query_string(&cli.args.filters()).expect("query"),
            "unused_since=30d&min_addresses=2&auth_method=approle%2F&policy=ops&kind=token"
        );
    }
}
