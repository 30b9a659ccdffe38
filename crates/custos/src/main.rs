//! The `custos` binary: the composition root. It alone reads the environment and files, picks a
//! storage backend, installs the log subscriber and chooses exit codes.

mod config;
mod operator;
mod scan_cmd;
mod server_cmd;

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
    /// Operate a server: init, unseal, seal, status, rotate.
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
    // The help text comes from `ScanArgs`' own doc comment.
    Scan(scan_cmd::ScanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            // The scanner is synchronous (its own thread pool) and exits 2 on errors, 1 on
            // findings, as secret scanners do.
            Command::Scan(args) => Ok(scan_cmd::run(args).unwrap_or_else(|error| {
                eprintln!("custos: error: {error:#}");
                ExitCode::from(2)
            })),
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
