//! `comfy-warden user add|passwd|disable|enable|revoke|remove|list|show` (and `totp`,
//! `totp-reset`, `recovery-codes` in `totp_cli`): offline edits of the
//! writable users file through [`change::apply`] (a running daemon sees the file change and
//! reloads). Passwords are prompted twice without echo on a terminal, or read as one line of
//! stdin with `--password-stdin`, and hashed here; they never appear on the command line.
use super::change::{self, Change, Edit, Refused};
use crate::config::{self, Snapshot, UserSource};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ConfigDir {
    /// The configuration directory (holding warden.toml).
    #[arg(long, short, env = "COMFY_WARDEN_CONFIG", value_name = "DIR")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user to the writable users file (files.users_writable).
    Add {
        name: String,
        /// A role (repeat for several); default: user.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password as one line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Set a new password (open sessions stay; `user revoke` ends them).
    Passwd {
        name: String,
        /// Read the password as one line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Disable a user: no sign-in, open sessions and sockets end at once.
    Disable {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Enable a disabled user again.
    Enable {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// End every session and token of a user (bumps token_version).
    Revoke {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Remove a user from the writable users file (their files in ComfyUI stay).
    Remove {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// List the users of both users files.
    List {
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Show one user: roles, state, token version, file, and the directories of their files.
    Show {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Set up a second factor (TOTP): shows a QR code and a key, then asks for one code.
    Totp {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Remove a user's second factor (secret and recovery codes in the state directory).
    TotpReset {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Replace a user's recovery codes with ten new ones.
    RecoveryCodes {
        name: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

pub fn run(cmd: UserCommand) -> ExitCode {
    let dir = match &cmd {
        UserCommand::Add { dir, .. }
        | UserCommand::Passwd { dir, .. }
        | UserCommand::Disable { dir, .. }
        | UserCommand::Enable { dir, .. }
        | UserCommand::Revoke { dir, .. }
        | UserCommand::Remove { dir, .. }
        | UserCommand::List { dir }
        | UserCommand::Show { dir, .. }
        | UserCommand::Totp { dir, .. }
        | UserCommand::TotpReset { dir, .. }
        | UserCommand::RecoveryCodes { dir, .. } => dir.config.clone(),
    };
    let snap = match config::load(&dir) {
        Ok(s) => s,
        Err(e) => return fail(format_args!("the configuration is not valid: {e}")),
    };
    match cmd {
        UserCommand::List { .. } => list(&snap),
        UserCommand::Show { name, .. } => show(&snap, &name),
        UserCommand::Totp { name, .. } => super::totp_cli::enrol(&snap, &name),
        UserCommand::TotpReset { name, .. } => super::totp_cli::reset(&snap, &name),
        UserCommand::RecoveryCodes { name, .. } => super::totp_cli::recovery_codes(&snap, &name),
        UserCommand::Add {
            name,
            roles,
            password_stdin,
            ..
        } => {
            let roles = if roles.is_empty() {
                vec!["user".to_string()]
            } else {
                roles
            };
            if let Err(e) = precheck(&snap, &name, true) {
                return fail(e);
            }
            if let Some(r) = roles.iter().find(|r| snap.roles.get(r).is_none()) {
                return fail(format_args!(
                    "unknown role {r:?}; known: {}",
                    snap.roles.names().collect::<Vec<_>>().join(", ")
                ));
            }
            let hash = match new_password_hash(password_stdin) {
                Ok(h) => h,
                Err(e) => return fail(e),
            };
            let summary = format!("added {name} (roles: {})", roles.join(", "));
            finish(
                &snap,
                Change::Add {
                    name,
                    password_hash: Some(hash),
                    roles,
                },
                &summary,
            )
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            ..
        } => {
            if let Err(e) = precheck(&snap, &name, false) {
                return fail(e);
            }
            let hash = match new_password_hash(password_stdin) {
                Ok(h) => h,
                Err(e) => return fail(e),
            };
            let edit = Edit {
                password_hash: Some(hash),
                ..Edit::default()
            };
            finish(
                &snap,
                Change::Update {
                    name: name.clone(),
                    edit,
                },
                &format!("changed the password of {name}"),
            )
        }
        UserCommand::Disable { name, .. } => set_disabled(&snap, name, true),
        UserCommand::Enable { name, .. } => set_disabled(&snap, name, false),
        UserCommand::Revoke { name, .. } => {
            let edit = Edit {
                revoke: true,
                ..Edit::default()
            };
            finish(
                &snap,
                Change::Update {
                    name: name.clone(),
                    edit,
                },
                &format!("revoked every session and token of {name}"),
            )
        }
        UserCommand::Remove { name, .. } => finish(
            &snap,
            Change::Remove { name: name.clone() },
            &format!("removed {name}"),
        ),
    }
}

fn set_disabled(snap: &Snapshot, name: String, disabled: bool) -> ExitCode {
    let edit = Edit {
        disabled: Some(disabled),
        ..Edit::default()
    };
    let what = if disabled { "disabled" } else { "enabled" };
    let summary = format!("{what} {name}");
    finish(snap, Change::Update { name, edit }, &summary)
}

/// Refuses early (before a password is typed) what `change::apply` would refuse anyway.
fn precheck(snap: &Snapshot, name: &str, adding: bool) -> Result<(), Refused> {
    if snap.files.users_writable.is_none() {
        return Err(Refused::NotConfigured);
    }
    super::change::check_name(name)?;
    match snap.user(name) {
        Some(u) if u.source == UserSource::Declarative => Err(Refused::Declarative {
            name: name.to_owned(),
            file: snap.files.users.clone(),
        }),
        Some(_) if adding => Err(Refused::Exists(name.to_owned())),
        None if !adding => Err(Refused::NotFound(name.to_owned())),
        _ => Ok(()),
    }
}

fn finish(snap: &Snapshot, change: Change, summary: &str) -> ExitCode {
    match change::apply(&snap.files, &change, false) {
        Ok(applied) => {
            println!("{summary} in {}", applied.file.display());
            if let Change::Update { edit, name } = &change
                && edit.revoke
                && let Some(u) = applied.users.get(name.as_str())
            {
                println!("token_version is now {}", u.token_version);
            }
            if !super::has_admin(&applied.users) {
                println!("note: no enabled user has the \"admin\" permission now");
            }
            println!("a running comfy-warden applies this within a second (it watches the file)");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn new_password_hash(from_stdin: bool) -> Result<String, String> {
    let password = read_password(from_stdin)?;
    super::check_password(&password)?;
    crate::auth::password::hash(&password).map_err(|e| format!("cannot hash the password: {e}"))
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    use std::io::IsTerminal;
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "stdin is not a terminal: pass --password-stdin to read the password from it".into(),
        );
    }
    let first = rpassword::prompt_password("New password: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let second = rpassword::prompt_password("Again: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if first != second {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

fn list(snap: &Snapshot) -> ExitCode {
    let mut users: Vec<_> = snap.users.values().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    if users.is_empty() {
        println!("no users");
    }
    for u in users {
        let mut flags = Vec::new();
        if u.disabled {
            flags.push("disabled");
        }
        if u.password_hash.is_none() {
            flags.push("no password");
        }
        let origin = match u.source {
            UserSource::Declarative => "declarative",
            UserSource::Writable => "writable",
            UserSource::External => "external",
        };
        println!(
            "{:<24} {:<24} {:<12} {origin} ({})",
            &*u.name,
            u.roles.join(","),
            flags.join(","),
            super::source_file(&snap.files, u).display()
        );
    }
    ExitCode::SUCCESS
}

fn show(snap: &Snapshot, name: &str) -> ExitCode {
    let Some(u) = snap.user(name) else {
        return fail(Refused::NotFound(name.to_owned()));
    };
    let origin = match u.source {
        UserSource::Declarative => "declarative, never written by comfy-warden",
        UserSource::Writable => "writable",
        UserSource::External => "external",
    };
    println!("user           {}", u.name);
    println!(
        "file           {} ({origin})",
        super::source_file(&snap.files, u).display()
    );
    println!("roles          {}", u.roles.join(", "));
    println!("permissions    {}", u.permissions.names().join(", "));
    println!("disabled       {}", if u.disabled { "yes" } else { "no" });
    println!("token_version  {}", u.token_version);
    println!(
        "password       {}",
        if u.password_hash.is_some() {
            "set"
        } else {
            "none (identity provider only)"
        }
    );
    println!(
        "second factor  {}",
        super::totp_cli::describe(&snap.files.state_dir, u)
    );
    println!("namespace      {}", u.namespace);
    println!(
        "files          {} (inside ComfyUI's input, output and temp directories)",
        super::namespace_dirs(u).join(", ")
    );
    ExitCode::SUCCESS
}
