//! The `comfy-warden` binary: a synchronous `main` that parses the command line and hands over
//! to `daemon::run` (which builds the runtime) or to the offline commands.
use clap::Parser;
use comfy_warden::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => comfy_warden::daemon::run(&config),
        Command::Check { config } => comfy_warden::daemon::check(&config),
        Command::HashPassword => comfy_warden::daemon::hash_password(),
        Command::Bans { config } => comfy_warden::daemon::bans(&config),
        Command::Unban { ip, config } => comfy_warden::daemon::unban(&config, &ip),
        Command::User { command } => comfy_warden::accounts::cli::run(command),
    }
}
