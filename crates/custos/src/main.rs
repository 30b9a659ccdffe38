//! The `custos` binary: the composition root. It alone reads the environment and files, picks a
//! storage backend, installs the log subscriber and chooses exit codes.

mod apikey_cmd;
mod audit_cmd;
mod audit_devices;
mod auth_cmd;
mod config;
mod connection;
mod dotenv;
mod dotenv_cmd;
mod generate_root_cmd;
mod generic_cmd;
mod inventory_cmd;
mod kv_client;
mod kv_cmd;
mod login_cmd;
mod operator;
mod output;
mod policy_cmd;
mod run_cmd;
mod scan_cmd;
mod scan_revoke;
mod server_cmd;
mod token_cmd;
mod token_helper;
mod vault_args;
mod yaml;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// custos: secrets manager, API-key platform and secret scanner, speaking Vault's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "custos", version = custos_api::VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (`custos server --dev` for a throw-away development server).
    Server(server_cmd::ServerArgs),
    /// Operate a server: init, unseal, seal, status, rotate, generate-root.
    Operator {
        #[command(subcommand)]
        command: operator::OperatorCommand,
        #[command(flatten)]
        client: operator::ClientArgs,
    },
    /// Show the server's seal status (exit code 0 unsealed, 2 sealed, 1 on error).
    Status {
        #[command(flatten)]
        client: operator::ClientArgs,
    },
    /// Enable, disable, list and tune auth methods, as `vault auth` does.
    Auth(auth_cmd::AuthArgs),
    // The help texts of these come from their arguments' doc comments.
    Login(login_cmd::LoginArgs),
    /// Create, look up, renew and revoke tokens, and show what a token may do.
    Token(token_cmd::TokenArgs),
    Read(generic_cmd::ReadArgs),
    Write(generic_cmd::WriteArgs),
    List(generic_cmd::ListArgs),
    Delete(generic_cmd::DeleteArgs),
    /// Read and write KV secrets, as `vault kv` does (exit code 2 when a secret is missing).
    Kv(kv_cmd::KvArgs),
    // The help text comes from `InventoryArgs`' own doc comment.
    Inventory(inventory_cmd::InventoryArgs),
    /// Manage ACL policies: write, read, list, delete, fmt (offline), explain.
    Policy(policy_cmd::PolicyArgs),
    /// Run a command with secrets as environment variables; they are never written to disk.
    Run(run_cmd::RunArgs),
    /// Print a secret as a .env file, JSON or YAML.
    Export(dotenv_cmd::ExportArgs),
    /// Write the variables of a .env file into a secret, as one new version.
    Import(dotenv_cmd::ImportArgs),
    // The help text comes from `ScanArgs`' own doc comment.
    Scan(scan_cmd::ScanArgs),
    // The help text comes from `ApikeyArgs`' own doc comment.
    Apikey(Box<apikey_cmd::ApikeyArgs>),
    /// Audit devices (list, enable, disable) and their files (verify, query; exit code 0 intact, 1 tampering found, 2 error).
    Audit(audit_cmd::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(vault_args::normalize(std::env::args_os().collect()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Operator { command, client } => operator::run(command, &client).await,
            Command::Status { client } => operator::status(&client).await,
            Command::Auth(args) => auth_cmd::run(args).await,
            Command::Login(args) => login_cmd::run(args).await,
            Command::Token(args) => token_cmd::run(args).await,
            Command::Read(args) => generic_cmd::read(args).await,
            Command::Write(args) => generic_cmd::write(args).await,
            Command::List(args) => generic_cmd::list(args).await,
            Command::Delete(args) => generic_cmd::delete(args).await,
            Command::Kv(args) => kv_cmd::run(args).await,
            Command::Inventory(args) => inventory_cmd::run(args).await,
            Command::Policy(args) => policy_cmd::run(args).await,
            Command::Run(args) => run_cmd::run(args).await,
            Command::Export(args) => dotenv_cmd::export(args).await,
            Command::Import(args) => dotenv_cmd::import(args).await,
            // The scanner runs on its own thread pool; it exits 2 on errors, 1 on findings, as
            // secret scanners do.
            Command::Scan(args) => Ok(scan_cmd::run(args).await.unwrap_or_else(|error| {
                eprintln!("custos: error: {error:#}");
                ExitCode::from(2)
            })),
            Command::Audit(args) => Ok(audit_cmd::run(args).await),
            // `verify` exits 1 for a key that is not valid, so its errors exit 2.
            Command::Apikey(args) => Ok(apikey_cmd::run(*args).await),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
