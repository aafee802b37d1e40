//! Users and roles: `roles.toml` over the built-in roles, the users of `files.users` and
//! `files.users_writable` (a name in both is an error), their names and password hashes.
use super::error::ConfigError;
use super::model::{Files, User, UserMap, UserSource};
use super::paths;
use super::raw;
use super::read::{parse, read, read_optional};
use crate::auth::roles::{PermSet, Permission, Roles};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The built-in roles plus roles.toml (when given).
pub fn load_roles(path: Option<&Path>) -> Result<Roles, ConfigError> {
    let mut roles = Roles::default();
    let Some(path) = path else { return Ok(roles) };
    let (f, text): (raw::RolesFile, String) = parse(path)?;
    for (name, role) in f.roles {
        if !valid_name(name.get_ref()) {
            return Err(ConfigError::at_offset(
                path,
                &text,
                name.span().start,
                "role names use letters, digits, '_' and '-'",
            ));
        }
        let mut set = PermSet::EMPTY;
        for p in &role.permissions {
            let perm = Permission::parse(p.get_ref()).ok_or_else(|| {
                let known: Vec<_> = Permission::ALL.iter().map(|p| p.name()).collect();
                ConfigError::at_offset(
                    path,
                    &text,
                    p.span().start,
                    format!(
                        "unknown permission {:?}; known: {}",
                        p.get_ref(),
                        known.join(", ")
                    ),
                )
            })?;
            set = set.with(perm);
        }
        if role.require_totp {
            roles.require_totp(name.get_ref());
        }
        roles.insert(name.into_inner(), set);
    }
    Ok(roles)
}

/// [`valid_name`]'s rule, as error messages say it.
pub const NAME_RULE: &str = "use 1-64 of A-Z a-z 0-9 . _ @ -, not starting with . or -";

/// User and role names: 1–64 of `A-Z a-z 0-9 . _ @ -`, not starting with `.` or `-`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(['.', '-'])
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// The users of `files.users` and, when configured, `files.users_writable` (a missing writable
/// file has no users). `writable_text` stands in for the writable file's content, so an edit
/// can be validated exactly as the next reload will see it before it is written. A name in both
/// files is an error naming both.
pub fn load_users(
    files: &Files,
    roles: &Roles,
    writable_text: Option<&str>,
) -> Result<UserMap, ConfigError> {
    load_users_with(files, roles, writable_text).map(|(users, _)| users)
}

/// [`load_users`], and the `password_hash_file`s the users name (watched for changes).
pub fn load_users_with(
    files: &Files,
    roles: &Roles,
    writable_text: Option<&str>,
) -> Result<(UserMap, Vec<PathBuf>), ConfigError> {
    let mut users = HashMap::new();
    let mut hash_files = Vec::new();
    let mut namespaces = HashMap::new();
    let text = read(&files.users)?;
    let mut acc = UsersAcc {
        users: &mut users,
        namespaces: &mut namespaces,
        roles,
        first_file: &files.users,
        hash_files: &mut hash_files,
    };
    add_users(&mut acc, &files.users, &text, UserSource::Declarative)?;
    if let Some(path) = &files.users_writable {
        let text = match writable_text {
            Some(t) => Some(t.to_owned()),
            None => read_optional(path)?,
        };
        if let Some(text) = text {
            add_users(&mut acc, path, &text, UserSource::Writable)?;
        }
    }
    Ok((users, hash_files))
}

struct UsersAcc<'a> {
    users: &'a mut UserMap,
    /// namespace → (user, file)
    namespaces: &'a mut HashMap<String, (String, PathBuf)>,
    roles: &'a Roles,
    first_file: &'a Path,
    /// `password_hash_file`s named so far (relative ones resolved against the users file's folder).
    hash_files: &'a mut Vec<PathBuf>,
}

fn add_users(
    acc: &mut UsersAcc<'_>,
    path: &Path,
    text: &str,
    source: UserSource,
) -> Result<(), ConfigError> {
    let f: raw::UsersFile =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
    let roles = acc.roles;
    for (name, u) in f.users {
        let at = |off: usize, m: String| ConfigError::at_offset(path, text, off, m);
        if !valid_name(name.get_ref()) {
            return Err(at(
                name.span().start,
                format!("{:?} is not a valid user name: {NAME_RULE}", name.get_ref()),
            ));
        }
        if acc.users.contains_key(name.get_ref().as_str()) {
            // Only possible across files: the first one read is files.users.
            return Err(at(
                name.span().start,
                format!(
                    "user {:?} is defined in both {} and {}; a user may be defined in only one of the users files",
                    name.get_ref(),
                    acc.first_file.display(),
                    path.display()
                ),
            ));
        }
        let mut perms = PermSet::EMPTY;
        for r in &u.roles {
            let set = roles.get(r.get_ref()).ok_or_else(|| {
                at(
                    r.span().start,
                    format!(
                        "unknown role {:?}; known: {}",
                        r.get_ref(),
                        roles.names().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            perms = perms.union(set);
        }
        let namespace = match &u.namespace {
            Some(ns) => {
                let v = ns.get_ref();
                if !crate::tenancy::namespace::valid_override(v) {
                    return Err(at(
                        ns.span().start,
                        format!("namespace {v:?} must be u_ followed by 1-60 of a-z 0-9 _ -"),
                    ));
                }
                v.clone()
            }
            None => crate::tenancy::namespace::derive(name.get_ref()),
        };
        if let Some((other, file)) = acc.namespaces.insert(
            namespace.clone(),
            (name.get_ref().clone(), path.to_path_buf()),
        ) {
            return Err(at(
                name.span().start,
                format!(
                    "namespace {namespace:?} is already used by user {other:?} ({})",
                    file.display()
                ),
            ));
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        let password_hash = password_hash(
            folder,
            u.password_hash,
            u.password_hash_file,
            acc.hash_files,
        )
        .map_err(|(off, m)| at(off.unwrap_or(name.span().start), m))?;
        let totp_secret = totp_secret(folder, u.totp_secret_file, acc.hash_files)
            .map_err(|(off, m)| at(off, m))?;
        let require_totp = u.roles.iter().any(|r| roles.requires_totp(r.get_ref()));
        let name: Arc<str> = Arc::from(name.into_inner());
        acc.users.insert(
            name.clone(),
            Arc::new(User {
                name,
                source,
                password_hash,
                roles: u.roles.into_iter().map(|r| r.into_inner()).collect(),
                permissions: perms,
                disabled: u.disabled,
                token_version: u.token_version,
                namespace,
                totp_secret,
                require_totp,
            }),
        );
    }
    Ok(())
}

/// The user's PHC string: written inline, or read from `password_hash_file` (one PHC string,
/// checked like an inline one). Errors carry the offset of the key to blame.
fn password_hash(
    dir: &Path,
    inline: Option<raw::PhcHash>,
    file: Option<toml::Spanned<String>>,
    hash_files: &mut Vec<PathBuf>,
) -> Result<Option<String>, (Option<usize>, String)> {
    let file = match (inline, file) {
        (Some(_), Some(f)) => {
            return Err((
                Some(f.span().start),
                "give password_hash or password_hash_file, not both".into(),
            ));
        }
        (Some(h), None) => return Ok(Some(h.0)),
        (None, None) => return Ok(None),
        (None, Some(f)) => f,
    };
    let off = Some(file.span().start);
    let p = paths::secret_path(file.get_ref(), dir).map_err(|m| (off, m))?;
    let text = std::fs::read_to_string(&p)
        .map_err(|e| (off, format!("cannot read {}: {e}", p.display())))?;
    let phc = text.trim();
    raw::check_phc(phc).map_err(|m| (off, format!("{}: {m}", p.display())))?;
    hash_files.push(p);
    Ok(Some(phc.to_owned()))
}

/// The user's TOTP secret from `totp_secret_file` (base32; watched like a password hash file).
/// Errors carry the offset of the key and never the file's content.
fn totp_secret(
    dir: &Path,
    file: Option<toml::Spanned<String>>,
    watched: &mut Vec<PathBuf>,
) -> Result<Option<crate::auth::totp::Secret>, (usize, String)> {
    let Some(file) = file else { return Ok(None) };
    let off = file.span().start;
    let p = super::paths::secret_path(file.get_ref(), dir).map_err(|m| (off, m))?;
    let text = std::fs::read_to_string(&p)
        .map_err(|e| (off, format!("cannot read {}: {e}", p.display())))?;
    let secret = crate::auth::totp::Secret::from_base32(&text)
        .map_err(|m| (off, format!("{}: {m}", p.display())))?;
    watched.push(p);
    Ok(Some(secret))
}
