//! `custos policy ...`: manage ACL policies (`vault policy ...`), format policy files offline, and
//! ask the server why a token may or may not do something (`explain`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use custos_client::http::Method;
use custos_client::{Client, ClientError};
use serde_json::{Value, json};

use crate::connection::ConnectionArgs;
use crate::kv_client::encode_path;
use crate::output::{self, OutputFormat};

/// `custos policy`: its subcommand and the flags every subcommand shares.
#[derive(Debug, clap::Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
    /// Output format: `table` for people, `json` for the API's answer as is, `yaml` for the same as YAML.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Store a policy from FILE (or `-` for standard input). It is checked locally first, so a
    /// mistake is reported with its line before anything is sent.
    Write {
        name: String,
        /// The policy file (HCL or JSON), or `-` for standard input.
        file: String,
    },
    /// Print a policy's text.
    Read { name: String },
    /// List the policies.
    List,
    /// Delete a policy.
    Delete { name: String },
    /// Rewrite a policy file in its canonical form, as `vault policy fmt` does (offline).
    Fmt {
        file: PathBuf,
        /// Print the formatted policy instead of rewriting the file.
        #[arg(long)]
        stdout: bool,
        /// Change nothing; exit with 1 when the file is not in canonical form.
        #[arg(long, conflicts_with = "stdout")]
        check: bool,
    },
    /// Explain which policy and rule allow or deny an operation on a path, and which condition
    /// failed (by default for the token making the request).
    Explain {
        /// The path, such as secret/data/app.
        #[arg(long)]
        path: String,
        /// read, list, create, update, patch or delete.
        #[arg(long, default_value = "read")]
        operation: String,
        /// Explain for this token instead of the one making the request (needs a token that
        /// may call sys/policies/explain).
        #[arg(long, value_name = "TOKEN", hide_env_values = true)]
        token_to_explain: Option<String>,
    },
}

fn read_policy_file(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(custos_policy::MAX_POLICY_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .context("cannot read the policy from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(Path::new(file)).with_context(|| format!("cannot read {file}"))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains('/') {
        bail!("invalid policy name {name:?}");
    }
    Ok(())
}

/// Runs `custos policy ...`.
pub(crate) async fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let format = args.format;
    match args.command {
        PolicyCommand::Fmt {
            file,
            stdout,
            check,
        } => fmt(&file, stdout, check),
        PolicyCommand::Write { name, file } => {
            check_name(&name)?;
            let text = read_policy_file(&file)?;
            custos_policy::Policy::parse(&name, &text)
                .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
            let client = args.connection.client()?;
            let path = format!("sys/policies/acl/{}", encode_path(&name));
            client
                .call::<Value>(Method::PUT, &path, Some(&json!({ "policy": text })))
                .await?;
            println!("Success! Uploaded policy: {name}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Read { name } => {
            check_name(&name)?;
            let client = args.connection.client()?;
            let path = format!("sys/policies/acl/{}", encode_path(&name));
            let Some(answer) = get(&client, &path).await? else {
                eprintln!("No policy named: {name}");
                return Ok(ExitCode::from(2));
            };
            match format {
                OutputFormat::Table => {
                    let text = answer["data"]["policy"].as_str().unwrap_or_default();
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                }
                other => output::print_structured(other, &answer)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::List => {
            let client = args.connection.client()?;
            let answer = get(&client, "sys/policies/acl?list=true")
                .await?
                .unwrap_or(Value::Null);
            match format {
                OutputFormat::Table => {
                    for name in answer["data"]["keys"].as_array().into_iter().flatten() {
                        println!("{}", output::cell(name));
                    }
                }
                other => output::print_structured(other, &answer)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Delete { name } => {
            check_name(&name)?;
            let client = args.connection.client()?;
            let path = format!("sys/policies/acl/{}", encode_path(&name));
            client
                .call::<Value>(Method::DELETE, &path, None::<&()>)
                .await?;
            println!("Success! Deleted policy: {name}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Explain {
            path,
            operation,
            token_to_explain,
        } => {
            let client = args.connection.client()?;
            let mut body = json!({ "path": path, "operation": operation });
            if let Some(token) = token_to_explain {
                body["token"] = Value::String(token);
            }
            let answer: Value = client
                .call(Method::POST, "sys/policies/explain", Some(&body))
                .await?
                .unwrap_or(Value::Null);
            match format {
                OutputFormat::Table => print_explanation(&answer["data"]),
                other => output::print_structured(other, &answer)?,
            }
            let allowed = answer["data"]["allowed"].as_bool().unwrap_or(false);
            Ok(if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

/// A GET that answers `None` for 404.
async fn get(client: &Client, path: &str) -> anyhow::Result<Option<Value>> {
    match client.call::<Value>(Method::GET, path, None::<&()>).await {
        Ok(answer) => Ok(answer),
        Err(ClientError::Api { status: 404, .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn print_explanation(data: &Value) {
    let text = |key: &str| match &data[key] {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let capabilities: Vec<String> = data["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(output::cell)
        .collect();
    let rows = [
        ("Allowed", text("allowed")),
        ("Path", text("path")),
        ("Operation", text("operation")),
        ("Policy", text("policy")),
        ("Rule", text("pattern")),
        ("Capabilities", capabilities.join(", ")),
        ("Sudo required", text("sudo_required")),
        ("Failed condition", text("failed_condition")),
        ("Reason", text("reason")),
        ("Token policies", text("policies")),
    ];
    for (key, value) in rows {
        println!("{key:<17}{value}");
    }
}

/// `custos policy fmt`: rewrite (or print, or check) a policy file in canonical form.
fn fmt(file: &Path, stdout: bool, check: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let policy = custos_policy::Policy::parse("fmt", &text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    let formatted = custos_policy::format(&policy);
    if stdout {
        print!("{formatted}");
        return Ok(ExitCode::SUCCESS);
    }
    if check {
        if formatted == text {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{} is not formatted", file.display());
        return Ok(ExitCode::FAILURE);
    }
    if formatted != text {
        std::fs::write(file, &formatted)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    println!("Success! Formatted policy: {}", file.display());
    Ok(ExitCode::SUCCESS)
}
