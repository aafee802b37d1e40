//! The command line: `serve`, `check`, `hash-password`.
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "comfy-warden",
    version,
    about = "A hardened multi-user gateway in front of ComfyUI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon with the configuration directory DIR.
    Serve {
        #[arg(long, short, env = "COMFY_WARDEN_CONFIG", value_name = "DIR")]
        config: PathBuf,
    },
    /// Validate a configuration directory and print what would run; exit 1 on any error.
    Check {
        #[arg(long, short, env = "COMFY_WARDEN_CONFIG", value_name = "DIR")]
        config: PathBuf,
    },
    /// Read a password (prompted without echo on a terminal, else one line of stdin) and print
    /// its argon2id PHC string for users.toml.
    HashPassword,
}
