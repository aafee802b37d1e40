//! The second factor without a database. What a user needs after the password
//! ([`need`]: nothing, a code, or enrolment) comes from users.toml (`totp_secret_file`), from
//! the state directory (a secret enrolled through comfy-warden) and from the roles
//! (`require_totp`). Per user, `state_dir/totp/<name>.json` (0600, written atomically by
//! `ops::snapshot`) holds the enrolled secret (if any), the keyed hashes of the unused recovery
//! codes, and the last time step a code was accepted for, so a code works once, also across
//! restarts. A file that exists but cannot be read fails closed (no sign-in).
//!
//! [`Tickets`] carry "the password was right" (and, during enrolment, the new secret) from the
//! first sign-in step to the second one, signed, short-lived, and bound to the user's password
//! hash and token version, so the password is never sent twice nor kept in the page.
use super::totp::{self, Secret};
use crate::config::User;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folder of the per-user files inside the state directory.
pub const DIR: &str = "totp";

/// One user's second-factor state on disk.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The base32 secret enrolled through comfy-warden; absent when it comes from users.toml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The key of the recovery-code hashes (hex, 32 random bytes).
    #[serde(default)]
    pub recovery_salt: String,
    /// `totp::recovery_hash` of each unused recovery code.
    #[serde(default)]
    pub recovery: Vec<String>,
    /// The last time step a code was accepted for; only later ones are accepted.
    #[serde(default)]
    pub last_step: Option<u64>,
    /// When comfy-warden enrolled the secret (unix seconds; 0 when it did not).
    #[serde(default)]
    pub enrolled_at: u64,
}

/// The file of `user` (names are checked to be safe file names: `config::valid_name`).
pub fn path(state_dir: &Path, user: &str) -> PathBuf {
    state_dir.join(DIR).join(format!("{user}.json"))
}

/// The user's record; `None` when there is none. An unreadable or corrupted file is an error.
pub fn load(state_dir: &Path, user: &str) -> io::Result<Option<Record>> {
    let p = path(state_dir, user);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::other(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
    }
}

fn store(state_dir: &Path, user: &str, record: &Record) -> io::Result<()> {
    let p = path(state_dir, user);
    crate::ops::snapshot::write(&p, record)?;
    keep_state_dir_owner(state_dir, &p);
    Ok(())
}

/// Run by root (the CLI), a new file gets the state directory's owner, so the daemon's own
/// user can still read and replace it.
fn keep_state_dir_owner(state_dir: &Path, file: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return;
    }
    if let Ok(meta) = std::fs::metadata(state_dir) {
        let _ = std::os::unix::fs::chown(file, Some(meta.uid()), Some(meta.gid()));
        if let Some(dir) = file.parent() {
            let _ = std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid()));
        }
    }
}

/// Read-check-write of records is serialised within the process, so two requests carrying
/// the same code cannot both use it.
static LOCK: Mutex<()> = Mutex::new(());

/// What a user must do after the right password.
#[derive(Debug)]
pub enum Need {
    /// Nothing: sign in.
    Nothing,
    /// Give a code (or a recovery code) of this secret.
    Code(Secret),
    /// The user's role requires a second factor and the user has none yet: enrol first.
    Enrol,
}

/// Decides [`Need`] from users.toml, the state directory and the roles.
pub fn need(state_dir: &Path, user: &User) -> io::Result<Need> {
    if let Some(s) = &user.totp_secret {
        return Ok(Need::Code(s.clone()));
    }
    match load(state_dir, &user.name)?.and_then(|r| r.secret) {
        Some(b32) => Secret::from_base32(&b32)
            .map(Need::Code)
            .map_err(io::Error::other),
        None if user.require_totp => Ok(Need::Enrol),
        None => Ok(Need::Nothing),
    }
}

/// True unless the password alone signs this user in (errors count as true: fail closed).
/// HTTP Basic is refused for such users.
pub fn beyond_password(state_dir: &Path, user: &User) -> bool {
    !matches!(need(state_dir, user), Ok(Need::Nothing))
}

/// True when a role requires a second factor the user does not have yet: their sessions and
/// tokens are refused until they enrol.
pub fn missing_required(state_dir: &Path, user: &User) -> bool {
    user.require_totp && !matches!(need(state_dir, user), Ok(Need::Code(_)))
}

/// How a second factor was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Code,
    /// A recovery code; so many are left.
    Recovery {
        left: usize,
    },
}

/// Checks `input` (a 6-digit code, or a recovery code) for `user` and records its use: the
/// code's step becomes the last one used, a recovery code is struck off. `Ok(None)`: wrong.
pub fn verify(
    state_dir: &Path,
    user: &str,
    secret: &Secret,
    input: &str,
    now_secs: u64,
) -> io::Result<Option<Accepted>> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut record = load(state_dir, user)?.unwrap_or_default();
    if let Some(step) = secret.matching_step(input, now_secs, record.last_step) {
        record.last_step = Some(step);
        store(state_dir, user, &record)?;
        return Ok(Some(Accepted::Code));
    }
    let Some(normalised) = totp::normalise_recovery_code(input) else {
        return Ok(None);
    };
    let Ok(salt) = hex::decode(&record.recovery_salt) else {
        return Ok(None);
    };
    let hash = totp::recovery_hash(&salt, &normalised);
    let mut found = None;
    for (i, stored) in record.recovery.iter().enumerate() {
        let same: bool = subtle::ConstantTimeEq::ct_eq(stored.as_bytes(), hash.as_bytes()).into();
        if same && found.is_none() {
            found = Some(i);
        }
    }
    let Some(i) = found else { return Ok(None) };
    record.recovery.remove(i);
    store(state_dir, user, &record)?;
    Ok(Some(Accepted::Recovery {
        left: record.recovery.len(),
    }))
}

/// Enrolment refused: the user already has a second factor.
#[derive(Debug)]
pub struct AlreadyEnrolled;

/// Takes `secret` into effect for `user` (the code of `step` was just confirmed, so it counts
/// as used) and returns ten fresh recovery codes (only their hashes are kept).
pub fn enrol(
    state_dir: &Path,
    user: &str,
    secret: &Secret,
    step: u64,
) -> io::Result<Result<Vec<String>, AlreadyEnrolled>> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if load(state_dir, user)?.is_some_and(|r| r.secret.is_some()) {
        return Ok(Err(AlreadyEnrolled));
    }
    let (record, codes) = new_record(Some(secret), Some(step));
    store(state_dir, user, &record)?;
    Ok(Ok(codes))
}

/// Replaces the recovery codes of `user` (keeping the secret and the last used step).
pub fn new_recovery_codes(state_dir: &Path, user: &str) -> io::Result<Vec<String>> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let old = load(state_dir, user)?.unwrap_or_default();
    let (mut record, codes) = new_record(None, old.last_step);
    record.secret = old.secret;
    record.enrolled_at = old.enrolled_at;
    store(state_dir, user, &record)?;
    Ok(codes)
}

fn new_record(secret: Option<&Secret>, last_step: Option<u64>) -> (Record, Vec<String>) {
    use rand::RngCore;
    let mut salt = [0u8; 32];
    rand::rng().fill_bytes(&mut salt);
    let codes = totp::new_recovery_codes();
    let recovery = codes
        .iter()
        .filter_map(|c| totp::normalise_recovery_code(c))
        .map(|n| totp::recovery_hash(&salt, &n))
        .collect();
    let record = Record {
        secret: secret.map(Secret::to_base32),
        recovery_salt: hex::encode(salt),
        recovery,
        last_step,
        enrolled_at: if secret.is_some() {
            crate::clock::now_secs()
        } else {
            0
        },
    };
    (record, codes)
}

/// Removes the user's second factor kept by comfy-warden (secret, recovery codes, last step).
/// `Ok(false)`: there was none.
pub fn reset(state_dir: &Path, user: &str) -> io::Result<bool> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    match std::fs::remove_file(path(state_dir, user)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How long the second sign-in step may follow the password.
pub const CODE_TICKET_TTL: u64 = 5 * 60;
/// How long enrolment may take (installing an app, scanning the code).
pub const ENROL_TICKET_TTL: u64 = 15 * 60;

/// What a ticket says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    pub sub: String,
    pub exp: u64,
    /// The user's token_version when the password was checked.
    pub ver: u64,
    /// A keyed fingerprint of the password hash the password was checked against.
    pub pw: String,
    /// During enrolment: the new secret (base32), also shown on the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrol: Option<String>,
}

/// Signs and checks tickets with a key derived from the daemon's signing secret.
pub struct Tickets {
    key: Vec<u8>,
}

impl Tickets {
    pub fn new(secret: &[u8]) -> Tickets {
        let mut key = b"comfy-warden second factor ticket\0".to_vec();
        key.extend_from_slice(secret);
        Tickets { key }
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        Hmac::<Sha256>::new_from_slice(&self.key).ok()
    }

    fn password_fingerprint(&self, user: &User) -> String {
        let Some(mut mac) = self.mac() else {
            return String::new();
        };
        mac.update(b"password\0");
        mac.update(user.password_hash.as_deref().unwrap_or("").as_bytes());
        hex::encode(mac.finalize().into_bytes().get(..16).unwrap_or_default())
    }

    /// A ticket for `user`, whose password was just right; `enrol` carries a new secret.
    pub fn issue(&self, user: &User, enrol: Option<&Secret>, now_secs: u64) -> String {
        let ttl = if enrol.is_some() {
            ENROL_TICKET_TTL
        } else {
            CODE_TICKET_TTL
        };
        let ticket = Ticket {
            sub: user.name.to_string(),
            exp: now_secs + ttl,
            ver: user.token_version,
            pw: self.password_fingerprint(user),
            enrol: enrol.map(Secret::to_base32),
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(serde_json::to_vec(&ticket).unwrap_or_default());
        let Some(mut mac) = self.mac() else {
            return String::new();
        };
        mac.update(b"ticket\0");
        mac.update(body.as_bytes());
        format!("{body}.{}", b64.encode(mac.finalize().into_bytes()))
    }

    /// The ticket's content when the signature is right and it has not expired. The caller
    /// checks it against the live user with [`Tickets::still_holds`].
    pub fn open(&self, ticket: &str, now_secs: u64) -> Option<Ticket> {
        if ticket.len() > 2048 {
            return None;
        }
        let (body, sig) = ticket.split_once('.')?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = b64.decode(sig).ok()?;
        let mut mac = self.mac()?;
        mac.update(b"ticket\0");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let t: Ticket = serde_json::from_slice(&b64.decode(body).ok()?).ok()?;
        (t.exp > now_secs).then_some(t)
    }

    /// Does the ticket still describe `user` as configured now (same password hash, same
    /// token version, enabled)?
    pub fn still_holds(&self, ticket: &Ticket, user: &User) -> bool {
        let fp = self.password_fingerprint(user);
        let same: bool = subtle::ConstantTimeEq::ct_eq(fp.as_bytes(), ticket.pw.as_bytes()).into();
        same && !user.disabled && user.token_version == ticket.ver && *user.name == *ticket.sub
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::PermSet;
    use std::sync::Arc;

    fn user(name: &str, require: bool, secret: Option<Secret>) -> User {
        User {
            name: Arc::from(name),
            source: crate::config::UserSource::Writable,
            password_hash: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into()),
            roles: vec![],
            permissions: PermSet::EMPTY,
            disabled: false,
            token_version: 1,
            namespace: format!("u_{name}"),
            totp_secret: secret,
            require_totp: require,
        }
    }

    #[test]
    fn need_follows_config_state_and_roles() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(matches!(
            need(d, &user("a", false, None)).unwrap(),
            Need::Nothing
        ));
        assert!(matches!(
            need(d, &user("a", true, None)).unwrap(),
            Need::Enrol
        ));
        assert!(missing_required(d, &user("a", true, None)));
        let s = Secret::generate();
        assert!(matches!(
            need(d, &user("a", false, Some(s.clone()))).unwrap(),
            Need::Code(_)
        ));
        let codes = enrol(d, "a", &s, 5).unwrap().unwrap();
        assert_eq!(codes.len(), 10);
        assert!(matches!(
            enrol(d, "a", &s, 6).unwrap(),
            Err(AlreadyEnrolled)
        ));
        match need(d, &user("a", true, None)).unwrap() {
            Need::Code(got) => assert_eq!(got, s),
            other => panic!("{other:?}"),
        }
        assert!(!missing_required(d, &user("a", true, None)));
        assert!(beyond_password(d, &user("a", false, None)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(d, "a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(path(d, "a")).unwrap();
        for c in &codes {
            assert!(
                !text.contains(c.as_str()),
                "recovery codes are stored hashed"
            );
        }
        assert!(reset(d, "a").unwrap());
        assert!(!reset(d, "a").unwrap());
        assert!(matches!(
            need(d, &user("a", false, None)).unwrap(),
            Need::Nothing
        ));
    }

    #[test]
    fn corrupted_state_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "a");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{not json").unwrap();
        assert!(need(dir.path(), &user("a", false, None)).is_err());
        assert!(beyond_password(dir.path(), &user("a", false, None)));
    }

    #[test]
    fn codes_once_and_recovery_codes_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s = Secret::generate();
        let now = 1_800_000_000;
        let step = now / totp::STEP;
        let codes = enrol(d, "a", &s, step - 5).unwrap().unwrap();
        let code = s.code_at_step(step);
        assert_eq!(
            verify(d, "a", &s, &code, now).unwrap(),
            Some(Accepted::Code)
        );
        assert_eq!(verify(d, "a", &s, &code, now).unwrap(), None, "replay");
        assert_eq!(
            verify(d, "a", &s, &codes[3].to_uppercase(), now).unwrap(),
            Some(Accepted::Recovery { left: 9 })
        );
        assert_eq!(verify(d, "a", &s, &codes[3], now).unwrap(), None);
        assert_eq!(
            verify(d, "a", &s, "aaaa-bbbb-cccc-dddd", now).unwrap(),
            None
        );
        let fresh = new_recovery_codes(d, "a").unwrap();
        assert_eq!(
            verify(d, "a", &s, &codes[4], now).unwrap(),
            None,
            "old codes are gone"
        );
        assert_eq!(
            verify(d, "a", &s, &fresh[0], now).unwrap(),
            Some(Accepted::Recovery { left: 9 })
        );
        assert_eq!(load(d, "a").unwrap().unwrap().last_step, Some(step));
    }

    #[test]
    fn tickets_are_signed_short_lived_and_bound_to_the_password() {
        let t = Tickets::new(b"secret");
        let u = user("a", false, None);
        let s = Secret::generate();
        let ticket = t.issue(&u, Some(&s), 1000);
        let opened = t.open(&ticket, 1001).unwrap();
        assert!(t.still_holds(&opened, &u));
        assert_eq!(opened.enrol.as_deref(), Some(s.to_base32().as_str()));
        assert!(
            t.open(&ticket, 1000 + ENROL_TICKET_TTL).is_none(),
            "expired"
        );
        assert!(Tickets::new(b"other").open(&ticket, 1001).is_none());
        let mut forged = ticket.clone();
        forged.insert(3, 'x');
        assert!(t.open(&forged, 1001).is_none());
        let mut changed = user("a", false, None);
        changed.password_hash = Some("$argon2id$v=19$m=8,t=1,p=1$b3RoZXJzYWx0$aGFzaA".into());
        assert!(
            !t.still_holds(&opened, &changed),
            "a new password voids the ticket"
        );
        let mut revoked = user("a", false, None);
        revoked.token_version = 2;
        assert!(!t.still_holds(&opened, &revoked));
        assert!(!t.still_holds(&opened, &user("b", false, None)));
    }
}
