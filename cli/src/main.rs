//! `sigma`, the operator CLI: the services' cores, offline, for people at a terminal; and the
//! workflow's executions (`runs`, `replay`) through the Workflow Executions API.

mod bucket;
mod closure;
mod executions;
mod fernet;
mod pipelines;
mod plan;
mod replay;
mod run;
mod runs;
mod selection;
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
    /// Run uploads through the chain again, each as its next attempt (by execution, object,
    /// failed runs of a window, or an entity's batch dates)
    Replay(replay::ReplayArgs),
    /// List the workflow's executions as uploads: attempt, outcome, duration, and how to replay
    Runs(runs::RunsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Closure(args) => closure::closure(args),
        Command::Decrypt(args) => fernet::decrypt(args),
        Command::Encrypt(args) => fernet::encrypt(args),
        Command::Keygen => fernet::keygen(),
        Command::Plan(args) => plan::plan(args),
        Command::Replay(args) => replay::replay(args),
        Command::Runs(args) => runs::runs(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sigma: {error:#}");
            ExitCode::FAILURE
        }
    }
}
