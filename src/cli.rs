//! The command line: `serve`, `check`, `hash-password`, `bans`, `unban`, `user …`.
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
    /// List the addresses banned by the lockout (from the state directory's snapshot).
    Bans {
        #[arg(long, short, env = "COMFY_WARDEN_CONFIG", value_name = "DIR")]
        config: PathBuf,
    },
    /// Lift the ban on IP: the running daemon applies it within a few seconds; without a
    /// running daemon the snapshot is edited directly.
    Unban {
        /// An address (IPv6 addresses are banned per /64; either form is accepted).
        ip: String,
        #[arg(long, short, env = "COMFY_WARDEN_CONFIG", value_name = "DIR")]
        config: PathBuf,
    },
    /// Manage the users of the writable users file (files.users_writable); a running daemon
    /// picks every change up at once.
    User {
        #[command(subcommand)]
        command: crate::accounts::cli::UserCommand,
    },
}
