//! `custos apikey ...`: keyrings and API keys of an `apikeys` secrets engine, verification and
//! analytics, over the engine's HTTP API (`docs/apikeys.md`).
//!
//! Exit codes: 0 on success, 1 on an error, 2 when a keyring or key does not exist. `verify`
//! differs, so scripts can branch on it: 0 the key is valid, 1 it is not (its code is printed),
//! 2 a usage error or a failed request.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use custos_client::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::generic_cmd::{GenericArgs, query_string};
use crate::kv_client::{Answer, NotFound, encode_path, send};
use crate::output::{self, OutputFormat};

/// How many keys one list request asks for; `list` follows `next_after` for the rest.
const PAGE: usize = 1000;

/// The verify codes in the order tables show them.
const CODES: [&str; 7] = [
    "VALID",
    "NOT_FOUND",
    "EXPIRED",
    "DISABLED",
    "USAGE_EXCEEDED",
    "RATE_LIMITED",
    "INSUFFICIENT_PERMISSIONS",
];

/// Manage API keys: keyrings, keys, verification and analytics.
///
/// Needs an `apikeys` secrets engine, enabled once with
///   custos write sys/mounts/apikeys type=apikeys
///
/// A typical session:
///   custos apikey keyring create acme --prefix acme_live --permission docs.read
///   custos apikey create acme --name ci --owner-id team-a --ratelimit requests=100/60s
///   custos apikey verify acme_live_... --permissions docs.read
///
/// Exit codes: 0 success, 1 error, 2 no such keyring or key; `verify` exits 0 when the key is
/// valid, 1 when it is not, 2 on a usage error or a failed request.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ApikeyArgs {
    #[command(subcommand)]
    command: ApikeyCommand,
    /// The path the apikeys engine is mounted at.
    #[arg(long, global = true, default_value = "apikeys", value_name = "PATH")]
    mount: String,
    #[command(flatten)]
    common: GenericArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ApikeyCommand {
    /// Create, show, list and delete keyrings: the groups keys belong to.
    Keyring {
        #[command(subcommand)]
        command: KeyringCommand,
    },
    Create(CreateArgs),
    Get(KeyRef),
    List(ListArgs),
    Update(UpdateArgs),
    Reroll(RerollArgs),
    Revoke(KeyRef),
    Verify(VerifyArgs),
    Analytics(AnalyticsArgs),
}

#[derive(Debug, clap::Subcommand)]
enum KeyringCommand {
    Create(KeyringCreateArgs),
    List,
    Get(KeyringRef),
    Delete(KeyringRef),
}

/// Create a keyring, or update one (only the flags given change).
///
/// Keys of the keyring start with its prefix, and take its permissions, rate limits, TTL and
/// environment unless they set their own. Example:
///   custos apikey keyring create acme --prefix acme_live --permission docs.read
///       --role admin=docs.read,docs.write --ratelimit requests=100/60s --default-ttl 720h
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct KeyringCreateArgs {
    /// The keyring's name.
    name: String,
    /// The start of every key: 1 to 32 of a-z, 0-9 and _, starting with a letter, not ending
    /// in _ (required when the keyring is created).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// A default permission of new keys; repeat it (or separate with commas) for more.
    #[arg(long = "permission", value_name = "PERMISSION", value_delimiter = ',')]
    permissions: Vec<String>,
    /// A role keys can name, with its permissions: NAME=PERM1,PERM2; repeat it for more.
    #[arg(long = "role", value_name = "NAME=PERMISSIONS", value_parser = parse_role)]
    roles: Vec<(String, Vec<String>)>,
    /// A default rate limit of new keys: NAME=LIMIT/DURATION (requests=100/60s); repeat it for
    /// more.
    #[arg(long = "ratelimit", value_name = "NAME=LIMIT/DURATION", value_parser = parse_ratelimit)]
    ratelimits: Vec<Value>,
    /// New keys expire this long after their creation (720h, or seconds; 0 for never).
    #[arg(long, value_name = "DURATION")]
    default_ttl: Option<String>,
    /// A free-form environment name (live, test).
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
}

#[derive(Debug, clap::Args)]
struct KeyringRef {
    /// The keyring's name.
    name: String,
}

/// The attributes a key is created or updated with.
#[derive(Debug, Default, clap::Args)]
struct KeyAttributes {
    /// A name for people (shown in lists and analytics).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Who the key belongs to (a user, team or customer id); lists filter on it.
    #[arg(long, value_name = "ID")]
    owner_id: Option<String>,
    /// Metadata as KEY=VALUE (a string); repeat it for more. Returned by verify.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Metadata as a JSON object (KEY=VALUE flags are added to it).
    #[arg(long, value_name = "JSON")]
    meta_json: Option<String>,
    /// A permission of the key; repeat it (or separate with commas) for more. On update, the
    /// list replaces the key's permissions.
    #[arg(long = "permission", value_name = "PERMISSION", value_delimiter = ',')]
    permissions: Vec<String>,
    /// A role of the keyring the key has; repeat it (or separate with commas) for more. On
    /// update, the list replaces the key's roles.
    #[arg(long = "role", value_name = "ROLE", value_delimiter = ',')]
    roles: Vec<String>,
    /// The key expires this long from now (24h, or seconds).
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    ttl: Option<String>,
    /// The key expires at this time: RFC 3339 (2027-01-01T00:00:00Z) or unix seconds.
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
    /// How many uses the key has left (each verify spends its cost); `unlimited` for no limit.
    #[arg(long, value_name = "N|unlimited", value_parser = parse_remaining)]
    remaining: Option<Remaining>,
    /// Give back uses periodically: daily:AMOUNT, or monthly:DAY:AMOUNT (monthly:AMOUNT on the
    /// 1st).
    #[arg(long, value_name = "INTERVAL:AMOUNT", value_parser = parse_refill)]
    refill: Option<Value>,
    /// A rate limit: NAME=LIMIT/DURATION (requests=100/60s: 100 per sliding minute); repeat it
    /// for more. On update, the list replaces the key's limits.
    #[arg(long = "ratelimit", value_name = "NAME=LIMIT/DURATION", value_parser = parse_ratelimit)]
    ratelimits: Vec<Value>,
    /// A free-form environment name (live, test).
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
}

/// Create a key in a keyring; its secret is printed once and cannot be shown again.
///
/// Unset attributes come from the keyring. Example:
///   custos apikey create acme --name ci --owner-id team-a --role admin
///       --ratelimit requests=100/60s --remaining 1000 --refill daily:1000 --ttl 720h
/// With --format json the whole answer's data is printed, the key in its `key` field.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct CreateArgs {
    /// The keyring.
    keyring: String,
    #[command(flatten)]
    attributes: KeyAttributes,
    /// Create the key disabled: it verifies as DISABLED until it is enabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(Debug, clap::Args)]
struct KeyRef {
    /// The keyring.
    keyring: String,
    /// The key's id (key_...), as create and list show it.
    key_id: String,
}

/// Change a key: only the attributes given change.
///
/// Examples:
///   custos apikey update acme key_... --disabled
///   custos apikey update acme key_... --remaining unlimited --add-permission billing.read
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct UpdateArgs {
    #[command(flatten)]
    key: KeyRef,
    #[command(flatten)]
    attributes: KeyAttributes,
    /// Disable the key: it verifies as DISABLED.
    #[arg(long, conflicts_with = "enabled")]
    disabled: bool,
    /// Enable a disabled key.
    #[arg(long)]
    enabled: bool,
    /// Add a permission, keeping the others; repeat it for more.
    #[arg(
        long = "add-permission",
        value_name = "PERMISSION",
        value_delimiter = ','
    )]
    add_permissions: Vec<String>,
    /// Remove a permission; repeat it for more.
    #[arg(
        long = "remove-permission",
        value_name = "PERMISSION",
        value_delimiter = ','
    )]
    remove_permissions: Vec<String>,
    /// Add a role, keeping the others; repeat it for more.
    #[arg(long = "add-role", value_name = "ROLE", value_delimiter = ',')]
    add_roles: Vec<String>,
    /// Remove a role; repeat it for more.
    #[arg(long = "remove-role", value_name = "ROLE", value_delimiter = ',')]
    remove_roles: Vec<String>,
}

/// Replace a key by a new one with the same attributes; the new key is printed once.
///
/// The old key keeps verifying for --grace (default 0: it stops at once). Example:
///   custos apikey reroll acme key_... --grace 24h
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct RerollArgs {
    #[command(flatten)]
    key: KeyRef,
    /// How long the old key keeps verifying (24h, or seconds).
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
}

/// List a keyring's keys (all of them, page after page).
///
/// Example:
///   custos apikey list acme --owner-id team-a
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct ListArgs {
    /// The keyring.
    keyring: String,
    /// Only the keys of this owner.
    #[arg(long, value_name = "ID")]
    owner_id: Option<String>,
}

/// Check a key: exit code 0 when it is valid, 1 when it is not, 2 on a usage error or a failed
/// request.
///
/// Prints the answer: its code (VALID, NOT_FOUND, EXPIRED, DISABLED, USAGE_EXCEEDED,
/// RATE_LIMITED, INSUFFICIENT_PERMISSIONS) and the key's attributes. Each call spends --cost
/// uses and rate-limit tokens. Give the key as - to read it from standard input, which keeps it
/// out of the process list and shell history. Examples:
///   custos apikey verify acme_live_... --permissions 'docs.read AND (billing.read OR admin)'
///   printf %s "$KEY" | custos apikey verify - --cost 0
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct VerifyArgs {
    /// The key, or - to read it from standard input.
    key: String,
    /// A permission query the key must satisfy: names joined by AND and OR, with parentheses.
    #[arg(long, value_name = "QUERY")]
    permissions: Option<String>,
    /// Uses and rate-limit tokens this call spends (default 1; 0 checks without spending).
    #[arg(long, value_name = "N")]
    cost: Option<u64>,
    /// Apply only this rate limit of the key, NAME or NAME=COST; repeat it for more (default: all).
    #[arg(long = "ratelimit", value_name = "NAME[=COST]", value_parser = parse_verify_ratelimit)]
    ratelimits: Vec<Value>,
    /// Refuse (as NOT_FOUND) keys of other keyrings.
    #[arg(long, value_name = "NAME")]
    keyring: Option<String>,
}

/// Show how a keyring's keys were verified: counts per hour or day and code, and the busiest keys.
///
/// Default window: the last 24 hours, by hour. Example:
///   custos apikey analytics acme --since 168h --group-by day
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct AnalyticsArgs {
    /// The keyring.
    keyring: String,
    /// Start of the window: RFC 3339, unix seconds, or a duration back from now (as the server
    /// reads it).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// End of the window (default: now).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this key.
    #[arg(long, value_name = "KEY_ID")]
    key_id: Option<String>,
    /// Bucket size.
    #[arg(long, value_enum)]
    group_by: Option<GroupBy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GroupBy {
    Hour,
    Day,
}

/// `--remaining`: a number of uses, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remaining {
    Uses(u64),
    Unlimited,
}

fn parse_remaining(text: &str) -> Result<Remaining, String> {
    if text == "unlimited" {
        return Ok(Remaining::Unlimited);
    }
    text.parse()
        .map(Remaining::Uses)
        .map_err(|_| format!("expected a number of uses or `unlimited`, got {text:?}"))
}

/// `NAME=PERM1,PERM2`.
fn parse_role(text: &str) -> Result<(String, Vec<String>), String> {
    let Some((name, permissions)) = text.split_once('=') else {
        return Err(format!("expected NAME=PERM1,PERM2, got {text:?}"));
    };
    if name.is_empty() {
        return Err(format!("missing role name in {text:?}"));
    }
    let permissions = permissions
        .split(',')
        .map(str::trim)
        .filter(|permission| !permission.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((name.to_owned(), permissions))
}

/// `NAME=LIMIT/DURATION` as the API's `{name, limit, duration}`.
fn parse_ratelimit(text: &str) -> Result<Value, String> {
    let usage = || format!("expected NAME=LIMIT/DURATION such as requests=100/60s, got {text:?}");
    let (name, rest) = text.split_once('=').ok_or_else(usage)?;
    let (limit, duration) = rest.split_once('/').ok_or_else(usage)?;
    if name.is_empty() || duration.is_empty() {
        return Err(usage());
    }
    let limit: u64 = limit.parse().map_err(|_| usage())?;
    if limit == 0 {
        return Err(format!("the limit of {name:?} must be at least 1"));
    }
    // The server reads durations; whole seconds go as a number, anything else as written.
    let duration = match duration.parse::<u64>() {
        Ok(seconds) => json!(seconds),
        Err(_) => json!(duration),
    };
    Ok(json!({"name": name, "limit": limit, "duration": duration}))
}

/// `daily:AMOUNT`, `monthly:AMOUNT` or `monthly:DAY:AMOUNT` as the API's refill object.
fn parse_refill(text: &str) -> Result<Value, String> {
    let usage = || format!("expected daily:AMOUNT or monthly:DAY:AMOUNT, got {text:?}");
    let number = |part: &str| part.parse::<u64>().map_err(|_| usage());
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        ["daily", amount] => Ok(json!({"interval": "daily", "amount": number(amount)?})),
        ["monthly", amount] => Ok(json!({"interval": "monthly", "amount": number(amount)?})),
        ["monthly", day, amount] => {
            let day = number(day)?;
            if !(1..=31).contains(&day) {
                return Err(format!("the day of a monthly refill is 1 to 31, got {day}"));
            }
            Ok(json!({"interval": "monthly", "day": day, "amount": number(amount)?}))
        }
        _ => Err(usage()),
    }
}

/// `NAME` or `NAME=COST` as the verify body's `{name, cost?}`.
fn parse_verify_ratelimit(text: &str) -> Result<Value, String> {
    match text.split_once('=') {
        None if !text.is_empty() => Ok(json!({"name": text})),
        Some((name, cost)) if !name.is_empty() => cost
            .parse::<u64>()
            .map(|cost| json!({"name": name, "cost": cost}))
            .map_err(|_| format!("expected NAME=COST with a whole number, got {text:?}")),
        _ => Err(format!("expected NAME or NAME=COST, got {text:?}")),
    }
}

/// A time as the API takes it: unix seconds as a number, anything else as written.
fn time_value(text: &str) -> Value {
    match text.parse::<u64>() {
        Ok(seconds) => json!(seconds),
        Err(_) => json!(text),
    }
}

impl KeyAttributes {
    /// The body fields these flags set (`update` sends only these).
    fn body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        let mut text = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        };
        text("name", &self.name);
        text("owner_id", &self.owner_id);
        text("ttl", &self.ttl);
        text("environment", &self.environment);
        if let Some(expires_at) = &self.expires_at {
            body.insert("expires_at".into(), time_value(expires_at));
        }
        let mut meta = match &self.meta_json {
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(meta)) => meta,
                Ok(_) => bail!("--meta-json must be a JSON object"),
                Err(error) => bail!("--meta-json is not valid JSON: {error}"),
            },
            None => Map::new(),
        };
        for pair in &self.meta {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("--meta expects KEY=VALUE, got {pair:?}");
            };
            if key.is_empty() {
                bail!("missing key in --meta {pair:?}");
            }
            meta.insert(key.into(), json!(value));
        }
        if self.meta_json.is_some() || !meta.is_empty() {
            body.insert("meta".into(), Value::Object(meta));
        }
        if !self.permissions.is_empty() {
            body.insert("permissions".into(), json!(self.permissions));
        }
        if !self.roles.is_empty() {
            body.insert("roles".into(), json!(self.roles));
        }
        match self.remaining {
            Some(Remaining::Uses(uses)) => {
                body.insert("remaining".into(), json!(uses));
            }
            Some(Remaining::Unlimited) => {
                body.insert("remaining".into(), Value::Null);
            }
            None => {}
        }
        if let Some(refill) = &self.refill {
            body.insert("refill".into(), refill.clone());
        }
        if !self.ratelimits.is_empty() {
            body.insert("ratelimits".into(), json!(self.ratelimits));
        }
        Ok(body)
    }
}

impl KeyringCreateArgs {
    fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        for (key, value) in [
            ("prefix", &self.prefix),
            ("description", &self.description),
            ("default_ttl", &self.default_ttl),
            ("environment", &self.environment),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        if !self.permissions.is_empty() {
            body.insert("permissions".into(), json!(self.permissions));
        }
        if !self.roles.is_empty() {
            let roles: Map<String, Value> = self
                .roles
                .iter()
                .map(|(name, permissions)| (name.clone(), json!(permissions)))
                .collect();
            body.insert("roles".into(), Value::Object(roles));
        }
        if !self.ratelimits.is_empty() {
            body.insert("ratelimits".into(), json!(self.ratelimits));
        }
        body
    }
}

/// Refuses names that would change the path they are put in.
fn segment(what: &str, name: &str) -> anyhow::Result<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("invalid {what} {name:?}: it must be a non-empty name without `/`");
    }
    Ok(encode_path(name))
}

/// The API paths of one mount.
struct Paths {
    mount: String,
}

impl Paths {
    fn new(mount: &str) -> anyhow::Result<Paths> {
        let mount = mount.trim_matches('/');
        if mount.is_empty() || mount.split('/').any(|part| part.is_empty() || part == "..") {
            bail!("invalid --mount {mount:?}");
        }
        Ok(Paths {
            mount: encode_path(mount),
        })
    }

    fn keyrings(&self) -> String {
        format!("{}/keyrings", self.mount)
    }

    fn keyring(&self, name: &str) -> anyhow::Result<String> {
        Ok(format!(
            "{}/keyrings/{}",
            self.mount,
            segment("keyring", name)?
        ))
    }

    fn keys(&self, keyring: &str) -> anyhow::Result<String> {
        Ok(format!("{}/keys", self.keyring(keyring)?))
    }

    fn key(&self, key: &KeyRef) -> anyhow::Result<String> {
        Ok(format!(
            "{}/{}",
            self.keys(&key.keyring)?,
            segment("key id", &key.key_id)?
        ))
    }

    fn verify(&self) -> String {
        format!("{}/verify", self.mount)
    }
}

/// The `data` of a successful answer; a 404 is [`NotFound`] for `shown` unless the server said
/// why (no mount there, for one), then an error with its words.
fn data_of(answer: Answer, shown: &str) -> anyhow::Result<Map<String, Value>> {
    if answer.status == StatusCode::NOT_FOUND {
        let errors: Vec<String> = answer
            .body
            .as_ref()
            .and_then(|body| body.get("errors"))
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(output::cell).collect())
            .unwrap_or_default();
        if !errors.is_empty() {
            bail!("server answered 404 for {shown}: {}", errors.join("; "));
        }
        return Err(NotFound {
            path: shown.to_owned(),
            deleted: None,
        }
        .into());
    }
    Ok(answer.data().cloned().unwrap_or_default())
}

pub(crate) async fn run(args: ApikeyArgs) -> ExitCode {
    let verifying = matches!(args.command, ApikeyCommand::Verify(_));
    match dispatch(args).await {
        Ok(code) => code,
        Err(error) => {
            if let Some(not_found) = error.downcast_ref::<NotFound>() {
                eprintln!("{not_found}");
                return ExitCode::from(2);
            }
            eprintln!("error: {error:#}");
            if verifying {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(args: ApikeyArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::new(&args.mount)?;
    let format = args.common.format;
    let client = args.common.connection.client()?;
    match args.command {
        ApikeyCommand::Keyring { command } => match command {
            KeyringCommand::Create(create) => {
                let path = paths.keyring(&create.name)?;
                let data = data_of(post(&client, &path, create.body()).await?, &path)?;
                print_object(format, &data, "Keyring")?;
            }
            KeyringCommand::Get(keyring) => {
                let path = paths.keyring(&keyring.name)?;
                let data = data_of(send(&client, Method::GET, &path, None).await?, &path)?;
                print_object(format, &data, "Keyring")?;
            }
            KeyringCommand::List => {
                let path = format!("{}?list=true", paths.keyrings());
                let answer = send(&client, Method::GET, &path, None).await?;
                // Vault answers an empty list with a bare 404.
                let keys = match data_of(answer, &paths.keyrings()) {
                    Ok(data) => data.get("keys").cloned().unwrap_or_else(|| json!([])),
                    Err(error) if error.is::<NotFound>() => json!([]),
                    Err(error) => return Err(error),
                };
                match format {
                    OutputFormat::Table => {
                        println!("Keyrings\n--------");
                        for name in keys.as_array().into_iter().flatten() {
                            println!("{}", output::cell(name));
                        }
                    }
                    format => output::print_structured(format, &keys)?,
                }
            }
            KeyringCommand::Delete(keyring) => {
                let path = paths.keyring(&keyring.name)?;
                send(&client, Method::DELETE, &path, None).await?;
                if format == OutputFormat::Table {
                    println!(
                        "Success! Deleted keyring {} and revoked its keys",
                        keyring.name
                    );
                }
            }
        },
        ApikeyCommand::Create(create) => {
            let path = paths.keys(&create.keyring)?;
            let mut body = create.attributes.body()?;
            if create.disabled {
                body.insert("enabled".into(), json!(false));
            }
            let data = data_of(post(&client, &path, body).await?, &path)?;
            print_new_key(format, &data)?;
        }
        ApikeyCommand::Get(key) => {
            let path = paths.key(&key)?;
            let data = data_of(send(&client, Method::GET, &path, None).await?, &path)?;
            print_object(format, &data, "Key")?;
        }
        ApikeyCommand::List(list) => {
            let keyring = paths.keyring(&list.keyring)?;
            let (keys, key_info) = list_keys(&client, &keyring, list.owner_id.as_deref()).await?;
            match format {
                OutputFormat::Table => print!("{}", keys_table(&keys, &key_info)),
                format => {
                    output::print_structured(format, &json!({"keys": keys, "key_info": key_info}))?
                }
            }
        }
        ApikeyCommand::Update(update) => {
            let path = paths.key(&update.key)?;
            let mut body = update.attributes.body()?;
            if update.disabled {
                body.insert("enabled".into(), json!(false));
            }
            if update.enabled {
                body.insert("enabled".into(), json!(true));
            }
            let edits = [
                (
                    "permissions",
                    &update.add_permissions,
                    &update.remove_permissions,
                ),
                ("roles", &update.add_roles, &update.remove_roles),
            ];
            if body.is_empty()
                && edits
                    .iter()
                    .all(|(_, add, remove)| add.is_empty() && remove.is_empty())
            {
                bail!("nothing to update: give at least one attribute flag (see --help)");
            }
            let mut data = None;
            if !body.is_empty() {
                data = Some(data_of(post(&client, &path, body).await?, &path)?);
            }
            for (list, add, remove) in edits {
                if add.is_empty() && remove.is_empty() {
                    continue;
                }
                let mut edit = Map::new();
                if !add.is_empty() {
                    edit.insert("add".into(), json!(add));
                }
                if !remove.is_empty() {
                    edit.insert("remove".into(), json!(remove));
                }
                let list_path = format!("{path}/{list}");
                data = Some(data_of(post(&client, &list_path, edit).await?, &path)?);
            }
            print_object(format, &data.unwrap_or_default(), "Key")?;
        }
        ApikeyCommand::Reroll(reroll) => {
            let path = format!("{}/reroll", paths.key(&reroll.key)?);
            let mut body = Map::new();
            if let Some(grace) = &reroll.grace {
                body.insert("grace".into(), json!(grace));
            }
            let data = data_of(post(&client, &path, body).await?, &paths.key(&reroll.key)?)?;
            print_new_key(format, &data)?;
        }
        ApikeyCommand::Revoke(key) => {
            let path = paths.key(&key)?;
            send(&client, Method::DELETE, &path, None).await?;
            if format == OutputFormat::Table {
                println!("Success! Revoked key {}", key.key_id);
            }
        }
        ApikeyCommand::Verify(verify) => {
            let body = verify_body(&verify, &mut std::io::stdin().lock())?;
            let answer = send(&client, Method::POST, &paths.verify(), Some(&body)).await?;
            let data = data_of(answer, &paths.verify())?;
            let valid = data.get("valid") == Some(&Value::Bool(true));
            match format {
                OutputFormat::Table => print!("{}", verify_table(&data)),
                format => output::print_structured(format, &Value::Object(data))?,
            }
            return Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        ApikeyCommand::Analytics(analytics) => {
            let mut params = Vec::new();
            for (key, value) in [
                ("since", &analytics.since),
                ("until", &analytics.until),
                ("key_id", &analytics.key_id),
            ] {
                if let Some(value) = value {
                    params.push(format!("{key}={value}"));
                }
            }
            if let Some(group_by) = analytics.group_by {
                let group_by = match group_by {
                    GroupBy::Hour => "hour",
                    GroupBy::Day => "day",
                };
                params.push(format!("group_by={group_by}"));
            }
            let mut path = format!("{}/analytics", paths.keyring(&analytics.keyring)?);
            if !params.is_empty() {
                path = format!("{path}?{}", query_string(&params)?);
            }
            let data = data_of(
                send(&client, Method::GET, &path, None).await?,
                &paths.keyring(&analytics.keyring)?,
            )?;
            match format {
                OutputFormat::Table => print!("{}", analytics_table(&data)),
                format => output::print_structured(format, &Value::Object(data))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn post(
    client: &custos_client::Client,
    path: &str,
    body: Map<String, Value>,
) -> anyhow::Result<Answer> {
    send(client, Method::POST, path, Some(&Value::Object(body))).await
}

/// The verify request's body; a key of `-` is read from `stdin` (trailing newlines dropped).
fn verify_body(args: &VerifyArgs, stdin: &mut impl std::io::Read) -> anyhow::Result<Value> {
    let key = if args.key == "-" {
        let mut text = zeroize::Zeroizing::new(String::new());
        stdin
            .read_to_string(&mut text)
            .context("cannot read the key from standard input")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        args.key.clone()
    };
    if key.is_empty() {
        bail!("the key is empty");
    }
    let mut body = json!({ "key": key });
    if let Some(query) = &args.permissions {
        body["permissions"] = json!(query);
    }
    if let Some(cost) = args.cost {
        body["cost"] = json!(cost);
    }
    if !args.ratelimits.is_empty() {
        body["ratelimits"] = json!(args.ratelimits);
    }
    if let Some(keyring) = &args.keyring {
        body["keyring"] = json!(keyring);
    }
    Ok(body)
}

/// Every key of a keyring (of one owner), following `next_after`: the ids in order, and their
/// `key_info`.
async fn list_keys(
    client: &custos_client::Client,
    keyring_path: &str,
    owner_id: Option<&str>,
) -> anyhow::Result<(Vec<Value>, Map<String, Value>)> {
    let path = format!("{keyring_path}/keys");
    let mut keys = Vec::new();
    let mut key_info = Map::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = vec![format!("limit={PAGE}")];
        if let Some(owner_id) = owner_id {
            params.push(format!("owner_id={owner_id}"));
        }
        if let Some(after) = &after {
            params.push(format!("after={after}"));
        }
        let url = format!("{path}?list=true&{}", query_string(&params)?);
        let answer = send(client, Method::GET, &url, None).await?;
        let data = match data_of(answer, &path) {
            Ok(data) => data,
            // Vault answers an empty list with a bare 404, and so may an absent keyring: the
            // keyring itself tells them apart.
            Err(error) if error.is::<NotFound>() => {
                if after.is_none() {
                    data_of(
                        send(client, Method::GET, keyring_path, None).await?,
                        keyring_path,
                    )?;
                }
                break;
            }
            Err(error) => return Err(error),
        };
        let page = data
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Object(info)) = data.get("key_info") {
            key_info.extend(info.clone());
        }
        let last = page.last().and_then(Value::as_str).map(str::to_owned);
        keys.extend(page);
        match (data.get("next_after"), last) {
            (Some(Value::String(next)), Some(_)) if after.as_deref() != Some(next.as_str()) => {
                after = Some(next.clone());
            }
            _ => break,
        }
    }
    Ok((keys, key_info))
}

/// Fields shown first, in this order; the rest follow sorted.
const KEY_ORDER: [&str; 22] = [
    "key",
    "key_id",
    "keyring",
    "hint",
    "name",
    "owner_id",
    "enabled",
    "environment",
    "permissions",
    "roles",
    "ratelimits",
    "remaining",
    "refill",
    "expires_at",
    "grace_until",
    "meta",
    "created_at",
    "updated_at",
    "last_used_at",
    "prefix",
    "description",
    "default_ttl",
];

/// An answer's data as Key/Value rows, the known fields first.
fn ordered_rows(data: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = KEY_ORDER
        .iter()
        .filter_map(|key| {
            data.get(*key)
                .map(|value| ((*key).to_owned(), output::cell(value)))
        })
        .collect();
    let mut rest: Vec<(String, String)> = data
        .iter()
        .filter(|(key, _)| !KEY_ORDER.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), output::cell(value)))
        .collect();
    rest.sort();
    rows.extend(rest);
    rows
}

/// A keyring or key: a Key/Value table, or the data as JSON or YAML.
fn print_object(
    format: OutputFormat,
    data: &Map<String, Value>,
    title: &str,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => print!("{}", output::table(Some(title), &ordered_rows(data))),
        format => output::print_structured(format, &Value::Object(data.clone()))?,
    }
    Ok(())
}

/// The warning above a new key; the key itself is in the table below it.
const SHOWN_ONCE: &str = "WARNING! The key below is shown only this once: store it now. \
     custos keeps only its HMAC and cannot show it again.";

/// A new key (create, reroll): the warning and the table, or the whole data as JSON or YAML.
fn print_new_key(format: OutputFormat, data: &Map<String, Value>) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            if data.contains_key("key") {
                println!("{SHOWN_ONCE}\n");
            }
            print!("{}", output::table(Some("API Key"), &ordered_rows(data)));
        }
        format => output::print_structured(format, &Value::Object(data.clone()))?,
    }
    Ok(())
}

/// Aligned columns under `headings`, three spaces apart.
fn columns(headings: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headings
        .iter()
        .map(|heading| heading.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if index + 1 < cells.len() {
                line.push_str(&" ".repeat(width - cell.chars().count() + 3));
            }
        }
        line.push('\n');
        line
    };
    let mut out = line(headings);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

/// The keys of a list, one line each.
fn keys_table(keys: &[Value], key_info: &Map<String, Value>) -> String {
    if keys.is_empty() {
        return "No keys found\n".into();
    }
    let empty = Map::new();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key_id| {
            let key_id = output::cell(key_id);
            let info = key_info
                .get(&key_id)
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let text = |field: &str| match info.get(field) {
                None | Some(Value::Null) => "-".to_owned(),
                Some(value) => output::cell(value),
            };
            vec![
                key_id.clone(),
                text("name"),
                text("owner_id"),
                text("hint"),
                text("enabled"),
                text("expires_at"),
            ]
        })
        .collect();
    columns(
        &["KEY ID", "NAME", "OWNER", "HINT", "ENABLED", "EXPIRES"],
        &rows,
    )
}

/// A verify answer as Key/Value rows, `valid` and `code` first.
fn verify_table(data: &Map<String, Value>) -> String {
    let mut rows = Vec::new();
    for key in ["valid", "code"] {
        if let Some(value) = data.get(key) {
            rows.push((key.to_owned(), output::cell(value)));
        }
    }
    rows.extend(
        ordered_rows(data)
            .into_iter()
            .filter(|(key, _)| key != "valid" && key != "code"),
    );
    output::table(None, &rows)
}

/// Analytics: one line per bucket with a column per code seen, the totals, then the top keys.
fn analytics_table(data: &Map<String, Value>) -> String {
    let buckets: &[Value] = data
        .get("buckets")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let totals = data.get("totals").and_then(Value::as_object);
    // Known codes in their usual order, then any code this client does not know yet.
    let mut codes: Vec<String> = Vec::new();
    let seen = buckets
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|bucket| bucket.keys())
        .chain(totals.into_iter().flat_map(|totals| totals.keys()))
        .filter(|key| *key != "time" && *key != "total")
        .cloned()
        .collect::<std::collections::BTreeSet<String>>();
    codes.extend(
        CODES
            .iter()
            .filter(|code| seen.contains(**code))
            .map(|code| (*code).to_owned()),
    );
    codes.extend(
        seen.iter()
            .filter(|code| !CODES.contains(&code.as_str()))
            .cloned(),
    );

    let count = |object: Option<&Map<String, Value>>, key: &str| {
        object
            .and_then(|object| object.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .to_string()
    };
    let mut out = String::new();
    let text = |key: &str| {
        data.get(key)
            .map(output::cell)
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "Keyring {} from {} to {} by {}\n\n",
        text("keyring"),
        text("since"),
        text("until"),
        text("group_by")
    ));
    let mut headings = vec!["TIME", "TOTAL"];
    headings.extend(codes.iter().map(String::as_str));
    let mut rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|bucket| {
            let bucket = bucket.as_object();
            let mut row = vec![
                bucket
                    .and_then(|bucket| bucket.get("time"))
                    .map(output::cell)
                    .unwrap_or_default(),
                count(bucket, "total"),
            ];
            row.extend(codes.iter().map(|code| count(bucket, code)));
            row
        })
        .collect();
    if let Some(totals) = totals {
        let total: u64 = totals.values().filter_map(Value::as_u64).sum();
        let mut row = vec!["all".to_owned(), total.to_string()];
        row.extend(codes.iter().map(|code| count(Some(totals), code)));
        rows.push(row);
    }
    if buckets.is_empty() && totals.is_none_or(Map::is_empty) {
        out.push_str("No verifications in this window\n");
    } else {
        out.push_str(&columns(&headings, &rows));
    }
    let top: Vec<Vec<String>> = data
        .get("top_keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|key| {
            let cell = |field: &str| match key.get(field) {
                None | Some(Value::Null) => "-".to_owned(),
                Some(value) => output::cell(value),
            };
            vec![cell("key_id"), cell("name"), cell("total")]
        })
        .collect();
    if !top.is_empty() {
        out.push_str("\nTop keys\n");
        out.push_str(&columns(&["KEY ID", "NAME", "TOTAL"], &top));
    }
    if let Some(last) = data.get("last_used_at").filter(|value| !value.is_null()) {
        out.push_str(&format!("\nLast used at {}\n", output::cell(last)));
    }
    out
}

#[cfg(test)]
mod tests;
