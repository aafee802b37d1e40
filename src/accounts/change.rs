//! One change of the writable users file, shared by the CLI, the setup page and the admin API:
//! checked against both users files and the role table, applied to the TOML document, validated
//! by the configuration loader itself (so what is written is what the next reload accepts), and
//! written atomically under the file's lock. Users of the declarative file are never touched.
use super::{edit::UsersDoc, file};
use crate::config::{self, Files, UserMap, UserSource};
use std::fmt;
use std::path::PathBuf;

/// Changes to an existing user; `None` leaves a setting as it is.
#[derive(Debug, Default, Clone)]
pub struct Edit {
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// An argon2id PHC string (hash first: `auth::password::hash`).
    pub password_hash: Option<String>,
    /// Bump `token_version`: every session and token of the user ends.
    pub revoke: bool,
}

impl Edit {
    pub fn is_empty(&self) -> bool {
        self.roles.is_none()
            && self.disabled.is_none()
            && self.password_hash.is_none()
            && !self.revoke
    }
}

#[derive(Debug, Clone)]
pub enum Change {
    Add {
        name: String,
        password_hash: Option<String>,
        roles: Vec<String>,
    },
    Update {
        name: String,
        edit: Edit,
    },
    Remove {
        name: String,
    },
}

impl Change {
    pub fn name(&self) -> &str {
        match self {
            Change::Add { name, .. } | Change::Update { name, .. } | Change::Remove { name } => {
                name
            }
        }
    }
}

/// Why a change was not made. Nothing was written.
#[derive(Debug)]
pub enum Refused {
    /// `files.users_writable` is not set.
    NotConfigured,
    /// The user is defined in the declarative users file.
    Declarative {
        name: String,
        file: PathBuf,
    },
    Exists(String),
    NotFound(String),
    /// A bad name or role, or a result the loader refuses.
    Invalid(String),
    /// The change would leave no enabled user with the `admin` permission.
    LastAdmin,
    /// Reading, locking or writing failed, or the configuration cannot be read.
    Failed(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotConfigured => write!(
                f,
                "no writable users file: set files.users_writable in warden.toml (for example \"users.local.toml\", or a file in the state directory when the configuration directory is read-only)"
            ),
            Refused::Declarative { name, file } => write!(
                f,
                "user {name:?} is defined in {}, which comfy-warden never writes; change it there",
                file.display()
            ),
            Refused::Exists(name) => write!(f, "user {name:?} already exists"),
            Refused::NotFound(name) => write!(f, "no user {name:?}"),
            Refused::Invalid(m) | Refused::Failed(m) => f.write_str(m),
            Refused::LastAdmin => f.write_str(
                "refused: afterwards no enabled user would have the \"admin\" permission",
            ),
        }
    }
}

impl Refused {
    /// The HTTP status of this refusal (admin API, setup page).
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Refused::NotConfigured
            | Refused::Declarative { .. }
            | Refused::Exists(_)
            | Refused::LastAdmin => S::CONFLICT,
            Refused::NotFound(_) => S::NOT_FOUND,
            Refused::Invalid(_) => S::BAD_REQUEST,
            Refused::Failed(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The refusal an HTTP caller gets (admin API, setup page): the status of [`Refused::status`]
/// with the words of its `Display`.
impl From<&Refused> for crate::reject::Reject {
    fn from(e: &Refused) -> Self {
        use crate::reject::Reject;
        let words = e.to_string().into();
        match e.status() {
            http::StatusCode::NOT_FOUND => Reject::NotFound(words),
            http::StatusCode::BAD_REQUEST => Reject::BadRequest(words),
            http::StatusCode::CONFLICT => Reject::Conflict(words),
            _ => Reject::Internal(words),
        }
    }
}

/// What a successful change left: the users of both files as the next reload will load them.
pub struct Applied {
    pub file: PathBuf,
    pub users: UserMap,
}

/// Applies `change` to the writable users file. With `keep_an_admin`, a change that would
/// leave no enabled administrator (where there was one) is refused.
/// A user name the users file may hold ([`config::valid_name`]).
pub fn check_name(name: &str) -> Result<(), Refused> {
    if config::valid_name(name) {
        Ok(())
    } else {
        Err(Refused::Invalid(format!(
            "{name:?} is not a valid user name: {}",
            config::NAME_RULE
        )))
    }
}

pub fn apply(files: &Files, change: &Change, keep_an_admin: bool) -> Result<Applied, Refused> {
    let Some(path) = files.users_writable.clone() else {
        return Err(Refused::NotConfigured);
    };
    let name = change.name();
    check_name(name)?;
    let roles = config::load_roles(files.roles.as_deref())
        .map_err(|e| Refused::Failed(format!("cannot read the roles: {e}")))?;
    let wanted_roles = match change {
        Change::Add { roles, .. } => Some(roles),
        Change::Update { edit, .. } => edit.roles.as_ref(),
        Change::Remove { .. } => None,
    };
    for r in wanted_roles.into_iter().flatten() {
        if roles.get(r).is_none() {
            return Err(Refused::Invalid(format!(
                "unknown role {r:?}; known: {}",
                roles.names().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if let Change::Update { edit, .. } = change
        && edit.is_empty()
    {
        return Err(Refused::Invalid("nothing to change".into()));
    }

    let lock = file::lock(&path)
        .map_err(|e| Refused::Failed(format!("cannot lock {}: {e}", path.display())))?;
    let current = config::read_optional(&path)
        .map_err(|e| Refused::Failed(e.to_string()))?
        .unwrap_or_default();
    let before = config::load_users(files, &roles, Some(&current)).map_err(|e| {
        Refused::Invalid(format!(
            "the users files are not valid as they are; fix this first: {e}"
        ))
    })?;
    match (change, before.get(name)) {
        (_, Some(u)) if u.source == UserSource::Declarative => {
            return Err(Refused::Declarative {
                name: name.to_owned(),
                file: files.users.clone(),
            });
        }
        (Change::Add { .. }, Some(_)) => return Err(Refused::Exists(name.to_owned())),
        (Change::Update { .. } | Change::Remove { .. }, None) => {
            return Err(Refused::NotFound(name.to_owned()));
        }
        _ => {}
    }

    let mut doc = UsersDoc::parse(&current)
        .map_err(|e| Refused::Invalid(format!("{}: {e}", path.display())))?;
    let edited = match change {
        Change::Add {
            password_hash,
            roles,
            ..
        } => doc.add(name, password_hash.as_deref(), roles),
        Change::Remove { .. } => doc.remove(name),
        Change::Update { edit, .. } => update(&mut doc, name, edit),
    };
    edited.map_err(|e| Refused::Invalid(format!("{}: {e}", path.display())))?;
    let text = doc.to_string();
    let after = config::load_users(files, &roles, Some(&text))
        .map_err(|e| Refused::Invalid(e.to_string()))?;
    if keep_an_admin && super::has_admin(&before) && !super::has_admin(&after) {
        return Err(Refused::LastAdmin);
    }
    file::write_atomic(&path, text.as_bytes(), &lock)
        .map_err(|e| Refused::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(Applied {
        file: path,
        users: after,
    })
}

fn update(doc: &mut UsersDoc, name: &str, edit: &Edit) -> Result<(), String> {
    if let Some(roles) = &edit.roles {
        doc.set_roles(name, roles)?;
    }
    if let Some(d) = edit.disabled {
        doc.set_disabled(name, d)?;
    }
    if let Some(h) = &edit.password_hash {
        doc.set_password_hash(name, h)?;
    }
    if edit.revoke {
        doc.bump_token_version(name)?;
    }
    Ok(())
}
