//! `sigma`, the operator CLI: the services' cores, offline, for people at a terminal.

mod closure;
mod fernet;
mod plan;
mod staged;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sigma",
    version,
    about = "Operator tools for the sigma file-to-warehouse chain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, offline, the Dataform actions that depend on a loaded table (what sigma-dataform runs)
    Closure(closure::ClosureArgs),
    /// Verify and decrypt a Fernet token file (streaming; nothing is written unless it verifies)
    Decrypt(fernet::DecryptArgs),
    /// Encrypt a file into a Fernet token that Python's cryptography can decrypt
    Encrypt(fernet::EncryptArgs),
    /// Print a new random Fernet key
    Keygen,
    /// Show, offline, what sigma-dataflow would launch for an uploaded object
    Plan(plan::PlanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Closure(args) => closure::closure(args),
        Command::Decrypt(args) => fernet::decrypt(args),
        Command::Encrypt(args) => fernet::encrypt(args),
        Command::Keygen => fernet::keygen(),
        Command::Plan(args) => plan::plan(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sigma: {error:#}");
            ExitCode::FAILURE
        }
    }
}
