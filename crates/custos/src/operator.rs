//! Client commands over the HTTP API: `custos operator ...` and `custos status`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use custos_api::sys::{InitRequest, SealStatusResponse};
use custos_client::Client;

use crate::connection::ConnectionArgs;
use serde::Serialize;

/// How to reach the server, and how to print: shared by `custos operator` and `custos status`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

impl ClientArgs {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.connection.client()
    }

    pub(crate) fn format(&self) -> Format {
        self.format
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum OperatorCommand {
    /// Initialise a new server: creates the root key, splits it into unseal key shares and
    /// prints them with the initial root token. Store the shares apart; they are shown once.
    Init {
        /// Number of unseal key shares to create.
        #[arg(long, default_value_t = 5)]
        key_shares: u32,
        /// Number of shares needed to unseal.
        #[arg(long, default_value_t = 3)]
        key_threshold: u32,
    },
    /// Submit one unseal key share. Without KEY, prompts for it without echo (or reads a line
    /// from standard input when it is not a terminal).
    Unseal {
        /// The key share, hex or base64.
        key: Option<String>,
        /// Discard the shares submitted so far.
        #[arg(long, conflicts_with = "key")]
        reset: bool,
        /// The round this share (or reset) belongs to, as `Unseal Nonce` showed it: refused if
        /// someone reset the progress since.
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Seal the server: key material is dropped from memory until it is unsealed again.
    Seal,
    /// Show whether the server is initialised and sealed (exit code 0 unsealed, 2 sealed).
    Status,
    /// Install a new data encryption key; older keys keep decrypting.
    Rotate,
    /// Show the active data key term.
    KeyStatus,
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_table(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    println!("{:width$}    Value", "Key");
    println!("{:width$}    -----", "---");
    for (key, value) in rows {
        println!("{key:width$}    {value}");
    }
}

fn print_seal_status(status: &SealStatusResponse, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(status),
        Format::Table => {
            let mut rows = vec![
                ("Seal Type", status.seal_type.clone()),
                ("Initialized", status.initialized.to_string()),
                ("Sealed", status.sealed.to_string()),
                ("Total Shares", status.n.to_string()),
                ("Threshold", status.t.to_string()),
            ];
            if status.sealed {
                rows.push((
                    "Unseal Progress",
                    format!("{}/{}", status.progress, status.t),
                ));
                rows.push(("Unseal Nonce", status.nonce.clone()));
            }
            rows.push(("Version", status.version.clone()));
            if !status.custos_version.is_empty() {
                rows.push(("Custos Version", status.custos_version.clone()));
            }
            rows.push(("Storage Type", status.storage_type.clone()));
            if let Some(name) = &status.cluster_name {
                rows.push(("Cluster Name", name.clone()));
            }
            if let Some(id) = &status.cluster_id {
                rows.push(("Cluster ID", id.clone()));
            }
            print_table(&rows);
            Ok(())
        }
    }
}

fn read_key_from_user() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let key = rpassword::prompt_password("Unseal Key (will be hidden): ")
            .context("cannot read the unseal key")?;
        Ok(key)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the unseal key from standard input")?;
        Ok(line.trim().to_owned())
    }
}

/// `custos status` / `custos operator status`: exit 0 unsealed, 2 sealed, 1 on error (as Vault).
pub(crate) async fn status(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let status = args.client()?.seal_status().await?;
    print_seal_status(&status, args.format)?;
    Ok(if status.sealed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) async fn run(command: OperatorCommand, args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    match command {
        OperatorCommand::Init {
            key_shares,
            key_threshold,
        } => {
            let response = client
                .init(&InitRequest {
                    secret_shares: key_shares,
                    secret_threshold: key_threshold,
                    ..InitRequest::default()
                })
                .await?;
            match args.format {
                Format::Json => print_json(&response)?,
                Format::Table => {
                    for (index, key) in response.keys_base64.iter().enumerate() {
                        println!("Unseal Key {}: {key}", index + 1);
                    }
                    println!("\nInitial Root Token: {}\n", response.root_token);
                    println!(
                        "custos initialised with {key_shares} key shares and a key threshold of {key_threshold}.\n\
                         Give the shares to different people and keep them apart: any {key_threshold} of them\n\
                         unseal the server, and they are never shown again.\n\
                         The server is sealed until {key_threshold} shares are submitted with `custos operator unseal`."
                    );
                }
            }
        }
        OperatorCommand::Unseal { key, reset, nonce } => {
            let request = if reset {
                custos_api::sys::UnsealRequest {
                    reset: true,
                    nonce,
                    ..custos_api::sys::UnsealRequest::default()
                }
            } else {
                let key = match key {
                    Some(key) => key,
                    None => read_key_from_user()?,
                };
                if key.is_empty() {
                    bail!("no unseal key given");
                }
                custos_api::sys::UnsealRequest {
                    key: Some(key),
                    nonce,
                    ..custos_api::sys::UnsealRequest::default()
                }
            };
            let status = client.unseal_with(&request).await?;
            print_seal_status(&status, args.format)?;
        }
        OperatorCommand::Seal => {
            client.seal().await?;
            if args.format == Format::Json {
                print_json(&serde_json::json!({"sealed": true}))?;
            } else {
                println!("Success! custos is sealed.");
            }
        }
        OperatorCommand::Status => return status(args).await,
        OperatorCommand::Rotate => {
            client.rotate().await?;
            let key = client.key_status().await?;
            match args.format {
                Format::Json => print_json(&key)?,
                Format::Table => println!(
                    "Success! Rotated key\n\nKey Term        {}\nInstall Time    {}",
                    key.term, key.install_time
                ),
            }
        }
        OperatorCommand::KeyStatus => {
            let key = client.key_status().await?;
            match args.format {
                Format::Json => print_json(&key)?,
                Format::Table => print_table(&[
                    ("Key Term", key.term.to_string()),
                    ("Install Time", key.install_time),
                    ("Encryption Count", key.encryptions.to_string()),
                ]),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
