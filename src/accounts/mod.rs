//! Users without a database: the writable users file (`files.users_writable`) that comfy-warden
//! edits itself, beside the declarative `files.users` it never writes. `change` is the one way
//! a user is added, edited or removed (used by the `comfy-warden user` commands in `cli`, the
//! admin API and the first-administrator setup in `setup`); `edit` and `file` are its TOML and
//! disk halves. The running daemon picks every change up by reloading.
pub mod change;
pub mod cli;
pub mod edit;
pub mod file;
pub mod setup;
pub mod totp_cli;

use crate::auth::roles::{Permission, Roles};
use crate::config::{Files, User, UserMap, UserSource};
use std::path::Path;

/// True when an enabled user has the `admin` permission.
pub fn has_admin(users: &UserMap) -> bool {
    users
        .values()
        .any(|u| !u.disabled && u.can(Permission::Admin))
}

/// The role the first administrator gets: `admin` when it carries the `admin` permission (it
/// does unless roles.toml redefines it), else the first role that does.
pub fn admin_role(roles: &Roles) -> Option<String> {
    let is_admin = |r: &str| roles.get(r).is_some_and(|p| p.has(Permission::Admin));
    if is_admin("admin") {
        return Some("admin".into());
    }
    roles.names().find(|r| is_admin(r)).map(str::to_owned)
}

/// The file that defines `user`.
pub fn source_file<'a>(files: &'a Files, user: &User) -> &'a Path {
    match (user.source, &files.users_writable) {
        (UserSource::Writable, Some(p)) => p,
        _ => &files.users,
    }
}

/// The user's directories inside ComfyUI's folders (`input/u_alice`, ...).
pub fn namespace_dirs(user: &User) -> Vec<String> {
    ["input", "output", "temp"]
        .iter()
        .map(|k| format!("{k}/{}", user.namespace))
        .collect()
}

/// Passwords accepted by the CLI, the setup page and the admin API: not empty, at most 1024
/// bytes (longer ones are never checked at sign-in).
pub fn check_password(password: &str) -> Result<(), &'static str> {
    if password.is_empty() {
        return Err("the password must not be empty");
    }
    // The message names the limit: keep them together.
    const _: () = assert!(crate::auth::password::MAX_LEN == 1024);
    if password.len() > crate::auth::password::MAX_LEN {
        return Err("the password must be at most 1024 bytes long");
    }
    Ok(())
}
