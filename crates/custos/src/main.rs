//! The `custos` binary. In this branch only `custos scan` is wired; the full CLI lives in
//! the main line and takes `scan_cmd` as one of its subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod scan_cmd;

/// custos: secrets manager, API-key platform and secret scanner.
#[derive(Debug, Parser)]
#[command(name = "custos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // The help text comes from `ScanArgs`' own doc comment.
    Scan(scan_cmd::ScanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(args) => match scan_cmd::run(args) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("custos: error: {error:#}");
                ExitCode::from(2)
            }
        },
    }
}
