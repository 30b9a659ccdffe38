//! `custos login`: authenticate with a token or an auth method and keep the token in
//! `~/.custos-token`, where every later command finds it (as `vault login` does).

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::{Context, bail};
use custos_client::http::Method;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::generic_cmd::{GenericArgs, print_answer, read_stdin_value};
use crate::kv_client::{encode_path, send};
use crate::output::OutputFormat;
use crate::token_helper;

/// Log in with a token or an auth method, and store the token for later commands
///
/// With the token method (the default), TOKEN is checked with the server
/// (`auth/token/lookup-self`); without it, it is prompted for without echo (`-` reads it
/// from standard input). Other methods take their credentials as KEY=VALUE:
///
///   custos login -method=userpass username=alice   (prompts for the password)
///   custos login -method=userpass username=alice password=... totp=123456
///   custos login -method=approle role_id=... secret_id=...
///   custos login -method=cert [name=web] --client-cert cert.pem --client-key key.pem
///
/// The token is stored in ~/.custos-token (mode 0600) unless --no-store is given.
/// A token in --token, CUSTOS_TOKEN or VAULT_TOKEN still takes precedence over the stored one.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct LoginArgs {
    /// The token (token method), or the method's credentials as KEY=VALUE.
    #[arg(value_name = "TOKEN | KEY=VALUE")]
    args: Vec<String>,
    /// The auth method: token, userpass, approle or cert.
    #[arg(long, default_value = "token", value_name = "METHOD")]
    method: String,
    /// Where the auth method is mounted, if not at its name (`auth/<PATH>`).
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Do not store the token; print it only.
    #[arg(long)]
    no_store: bool,
    /// Print only the token (implies nothing about storing it).
    #[arg(long)]
    token_only: bool,
    #[command(flatten)]
    common: GenericArgs,
}

/// A secret typed at a prompt without echo, or a line of standard input when it is not a
/// terminal.
fn prompt_secret(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        let value = rpassword::prompt_password(prompt).context("cannot read from the terminal")?;
        Ok(Zeroizing::new(value))
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read from standard input")?;
        Ok(Zeroizing::new(
            line.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    }
}

/// Splits KEY=VALUE credentials; a value `-` is read from standard input.
pub(crate) fn credentials(args: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("expected KEY=VALUE, got an argument without `=`");
        };
        if key.is_empty() {
            bail!("missing key in a KEY=VALUE argument");
        }
        let value = if value == "-" {
            read_stdin_value(key)?.to_string()
        } else {
            value.to_owned()
        };
        if map.insert(key.to_owned(), Value::String(value)).is_some() {
            bail!("{key:?} is given twice");
        }
    }
    Ok(map)
}

/// The mount path of the method: `--path`, else the method's name.
fn mount(method: &str, path: Option<&str>) -> anyhow::Result<String> {
    let mount = path.unwrap_or(method).trim_matches('/');
    let mount = mount.strip_prefix("auth/").unwrap_or(mount);
    if mount.is_empty() || mount.split('/').any(|segment| segment == "..") {
        bail!("invalid --path {mount:?}");
    }
    Ok(mount.to_owned())
}

/// Where a method's login goes and what it sends: (API path, body).
pub(crate) fn login_request(
    method: &str,
    path: Option<&str>,
    mut credentials: Map<String, Value>,
    prompt: &mut dyn FnMut(&str) -> anyhow::Result<Zeroizing<String>>,
) -> anyhow::Result<(String, Map<String, Value>)> {
    let mount = mount(method, path)?;
    match method {
        "userpass" => {
            let Some(Value::String(username)) = credentials.remove("username") else {
                bail!("userpass login needs username=NAME");
            };
            if username.is_empty() {
                bail!("userpass login needs username=NAME");
            }
            if !credentials.contains_key("password") {
                let password = prompt("Password (will be hidden): ")?;
                credentials.insert("password".into(), Value::String(password.to_string()));
            }
            Ok((
                format!(
                    "auth/{mount}/login/{}",
                    encode_path(&username).replace('/', "%2F")
                ),
                credentials,
            ))
        }
        "approle" => {
            if !credentials.contains_key("role_id") {
                bail!(
                    "approle login needs role_id=ID (and secret_id=ID unless the role binds none)"
                );
            }
            Ok((format!("auth/{mount}/login"), credentials))
        }
        "cert" => Ok((format!("auth/{mount}/login"), credentials)),
        other => bail!(
            "unknown login method {other:?}: custos supports token, userpass, approle and cert"
        ),
    }
}

/// The `auth` block for a token checked with `lookup-self`, as Vault's CLI shows a token login.
fn auth_from_lookup(token: &str, lookup: &Value) -> Value {
    let data = lookup.get("data").cloned().unwrap_or(Value::Null);
    let policies = data.get("policies").cloned().unwrap_or(json!([]));
    json!({
        "client_token": token,
        "accessor": data.get("accessor").cloned().unwrap_or(Value::Null),
        "policies": policies,
        "token_policies": policies,
        "identity_policies": data.get("identity_policies").cloned().unwrap_or(json!([])),
        "metadata": data.get("meta").cloned().unwrap_or(Value::Null),
        "lease_duration": data.get("ttl").cloned().unwrap_or(json!(0)),
        "renewable": data.get("renewable").cloned().unwrap_or(json!(false)),
    })
}

pub(crate) async fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let connection = &args.common.connection;
    let format = args.common.format;
    let method = args.method.trim().to_ascii_lowercase();
    let answer = if method == "token" {
        let given = match args.args.as_slice() {
            [] => None,
            [only] => Some(only.strip_prefix("token=").unwrap_or(only).to_owned()),
            _ => bail!("the token method takes one argument, the token"),
        };
        let token = match given.as_deref() {
            Some("-") => read_stdin_value("token")?,
            Some(token) => Zeroizing::new(token.to_owned()),
            None => prompt_secret("Token (will be hidden): ")?,
        };
        let token = Zeroizing::new(token.trim().to_owned());
        if token.is_empty() {
            bail!("no token given");
        }
        let client = connection.client_with_token(Some(token.to_string()))?;
        let lookup = send(&client, Method::GET, "auth/token/lookup-self", None)
            .await
            .context("the token was refused")?;
        let mut body = lookup
            .body
            .filter(|_| lookup.status.is_success())
            .context("the token was refused: the server found no such token")?;
        body["auth"] = auth_from_lookup(&token, &body);
        body
    } else {
        let credentials = credentials(&args.args)?;
        let (api_path, body) = login_request(
            &method,
            args.path.as_deref(),
            credentials,
            &mut prompt_secret,
        )?;
        // A login carries no token: it is how one is obtained.
        let client = connection.client_with_token(None)?;
        let answer = send(&client, Method::PUT, &api_path, Some(&Value::Object(body)))
            .await
            .context("login failed")?;
        if !answer.status.is_success() {
            bail!(
                "login failed: nothing answers at {api_path} (is the auth method enabled there?)"
            );
        }
        answer
            .body
            .context("login failed: the server answered without a token")?
    };
    let token = answer
        .pointer("/auth/client_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .context("login failed: the server answered without a token")?
        .to_owned();
    let token = Zeroizing::new(token);

    let stored = if args.no_store {
        None
    } else {
        let home = token_helper::home_dir()
            .context("HOME is not set, so the token cannot be stored: use --no-store")?;
        Some(token_helper::store(&home, &token)?)
    };
    if args.token_only {
        println!("{}", token.as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let overridden = connection.token_flag().is_some()
        || ["CUSTOS_TOKEN", "VAULT_TOKEN"]
            .iter()
            .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()));
    if overridden && stored.is_some() {
        eprintln!(
            "WARNING! A token is set with --token, CUSTOS_TOKEN or VAULT_TOKEN: it takes precedence\n\
             over the stored one; unset it if later commands should use this login.\n"
        );
    }
    if format == OutputFormat::Table {
        match &stored {
            Some(path) => println!(
                "Success! You are now authenticated. The token information displayed below is\n\
                 already stored in {}. You do NOT need to run \"custos login\" again:\n\
                 future commands use this token.\n",
                path.display()
            ),
            None => println!(
                "Success! You are now authenticated. The token is NOT stored: give it to later\n\
                 commands with --token or CUSTOS_TOKEN.\n"
            ),
        }
    }
    print_answer(&answer, format, None)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
