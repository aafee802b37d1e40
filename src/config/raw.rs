//! Raw TOML shapes, exactly as written by operators. Every struct refuses unknown keys; values
//! that can be checked alone (durations, PHC strings, addresses) are checked while parsing so the
//! error carries the line. `mod.rs` turns these into the validated `Snapshot`.
use super::duration::Dur;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

// ---------------------------------------------------------------- warden.toml

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WardenFile {
    pub server: RawServer,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub files: RawFiles,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub tenancy: RawTenancy,
    #[serde(default)]
    pub lockout: RawLockout,
}

/// `[lockout]`: brute-force protection of password sign-ins. Absent keys take the defaults
/// documented in docs/configuration.md (applied in `mod.rs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLockout {
    /// Failures (per client address and user, in `window`) before attempts are delayed.
    pub max_failures: Option<Spanned<u32>>,
    /// The sliding window failures are counted in.
    pub window: Option<Spanned<Dur>>,
    /// The delay after the `max_failures`-th failure; it doubles with each further failure.
    pub first_delay: Option<Spanned<Dur>>,
    /// The longest delay between attempts once locked.
    pub max_delay: Option<Spanned<Dur>>,
    /// Failures of one address (in `window`) after which it is banned; 0 = never.
    pub ban_after: Option<Spanned<u32>>,
    /// How long a ban lasts.
    pub ban_for: Option<Spanned<Dur>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenancy {
    /// Queued + running prompts one user may have at once (0 = no limit).
    #[serde(default = "default_max_queued")]
    pub max_queued_per_user: usize,
    /// Largest `POST /prompt` body in bytes.
    #[serde(default = "default_max_prompt_bytes")]
    pub max_prompt_bytes: u64,
    /// Extra ComfyUI routes (custom nodes' own endpoints) every signed-in user may use:
    /// exact paths, or prefixes ending in `*`.
    #[serde(default)]
    pub allow_routes: Vec<Spanned<String>>,
    /// Rules for custom and API node classes: `[tenancy.nodes.<Class>]`. Listing a class is what
    /// allows non-admins to use it.
    #[serde(default)]
    pub nodes: BTreeMap<String, Spanned<crate::tenancy::nodes::NodeRule>>,
    /// Ask ComfyUI to unload models and free memory when a user's last session ends.
    #[serde(default)]
    pub free_memory_on_logout: bool,
}

impl Default for RawTenancy {
    fn default() -> Self {
        RawTenancy {
            max_queued_per_user: default_max_queued(),
            max_prompt_bytes: default_max_prompt_bytes(),
            allow_routes: Vec::new(),
            nodes: BTreeMap::new(),
            free_memory_on_logout: false,
        }
    }
}

fn default_max_queued() -> usize {
    8
}
fn default_max_prompt_bytes() -> u64 {
    32 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Vec<Spanned<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Serve plain HTTP on a non-loopback address (only behind something that adds TLS).
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Dur,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Dur,
    /// The largest body accepted by comfy-warden's own endpoints (login, tokens, admin).
    #[serde(default = "default_max_own_body")]
    pub max_own_body: u64,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: Option<Spanned<usize>>,
    /// Largest proxied upload (`POST /upload/image`, `/upload/mask`) in bytes.
    pub max_upload_bytes: Option<Spanned<u64>>,
    /// Open connections one client address may hold.
    pub max_connections_per_ip: Option<Spanned<usize>>,
    /// Open connections in total.
    pub max_connections: Option<Spanned<usize>>,
    /// Worker threads serving connections (default: one per CPU); read at start only.
    pub workers: Option<Spanned<usize>>,
    /// `[server.tls]`: every `listen` address speaks TLS.
    pub tls: Option<RawTls>,
    /// A plain-HTTP listener that answers every request with a redirect to https.
    pub http_redirect: Option<Spanned<String>>,
    /// The port written into those redirects (default: the port of the first listen address).
    pub https_port: Option<Spanned<u16>>,
    /// A plain-HTTP listener serving only Prometheus metrics, without authentication.
    pub metrics_listen: Option<Spanned<String>>,
}

/// `[server.tls]`: PEM files, reloaded when they change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain (leaf first).
    pub cert: Spanned<String>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<String>,
    /// The Strict-Transport-Security value on TLS answers; "" sends none.
    pub hsts: Option<Spanned<String>>,
}

fn default_header_read_timeout() -> Dur {
    Dur::secs(10)
}
fn default_shutdown_grace() -> Dur {
    Dur::secs(20)
}
fn default_max_own_body() -> u64 {
    64 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Spanned<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time allowed until ComfyUI has sent the response headers.
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Dur,
}

fn default_connect_timeout() -> Dur {
    Dur::secs(5)
}
fn default_response_timeout() -> Dur {
    Dur::secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// HMAC key file; when absent, one is generated into the state directory.
    /// `${CREDENTIALS_DIRECTORY}` is expanded (systemd's LoadCredential=).
    pub secret_file: Option<Spanned<String>>,
    #[serde(default = "default_session_ttl")]
    pub session_ttl: Dur,
    #[serde(default = "default_max_token_ttl")]
    pub max_token_ttl: Dur,
    /// Accept HTTP Basic credentials (for scripts).
    #[serde(default = "default_true")]
    pub basic: bool,
    /// Accept `?token=` on `/view` (it is always accepted on the WebSocket).
    #[serde(default)]
    pub query_token_view: bool,
    /// How many password verifications may run at once (default: 2 × CPU cores).
    pub hash_concurrency: Option<usize>,
    /// Earlier signing keys, accepted for verification only (key rotation).
    #[serde(default)]
    pub previous_secret_files: Vec<PathBuf>,
    /// Identity set by a gateway in front, believed only from the given networks.
    pub trusted_header: Option<Spanned<RawTrustedHeader>>,
    /// Tokens from an external identity provider, verified against a JWKS file.
    pub external_jwt: Option<Spanned<RawExternalJwt>>,
    /// Browser sign-in through an OpenID Connect provider (`config/oidc.rs`).
    pub oidc: Option<Spanned<super::oidc::RawOidc>>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            secret_file: None,
            session_ttl: default_session_ttl(),
            max_token_ttl: default_max_token_ttl(),
            basic: true,
            query_token_view: false,
            hash_concurrency: None,
            previous_secret_files: Vec::new(),
            trusted_header: None,
            external_jwt: None,
            oidc: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedHeader {
    pub name: String,
    pub from: Vec<Spanned<String>>,
    /// Roles for names that users.toml does not know (empty: only known users are accepted).
    #[serde(default)]
    pub default_roles: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExternalJwt {
    /// The provider's keys; absent: the keys `[auth.oidc]` discovers (same `issuer`).
    pub jwks_file: Option<PathBuf>,
    pub issuer: String,
    pub audience: String,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default)]
    pub default_roles: Vec<Spanned<String>>,
    #[serde(default = "default_jwt_algorithms")]
    pub algorithms: Vec<Spanned<String>>,
}

fn default_user_claim() -> String {
    "sub".into()
}
fn default_jwt_algorithms() -> Vec<Spanned<String>> {
    ["RS256", "ES256", "EdDSA"]
        .iter()
        .map(|a| Spanned::new(0..0, a.to_string()))
        .collect()
}

fn default_session_ttl() -> Dur {
    Dur::secs(12 * 3600)
}
fn default_max_token_ttl() -> Dur {
    Dur::secs(365 * 86400)
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    #[serde(default = "default_users_file")]
    pub users: PathBuf,
    /// The users file comfy-warden edits itself (CLI, setup page, admin API); `users` never is.
    pub users_writable: Option<PathBuf>,
    pub roles: Option<PathBuf>,
    pub ip_rules: Option<PathBuf>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

impl Default for RawFiles {
    fn default() -> Self {
        RawFiles {
            users: default_users_file(),
            users_writable: None,
            roles: None,
            ip_rules: None,
            state_dir: default_state_dir(),
        }
    }
}

fn default_users_file() -> PathBuf {
    PathBuf::from("users.toml")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/comfy-warden")
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub format: LogFormat,
    #[serde(default = "default_log_level")]
    pub level: String,
    /// The audit log: one JSON object per security event (relative to `files.state_dir`).
    pub audit_file: Option<PathBuf>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: LogFormat::Text,
            level: default_log_level(),
            audit_file: None,
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

// ---------------------------------------------------------------- users.toml

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: BTreeMap<Spanned<String>, RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub password_hash: Option<PhcHash>,
    /// A file holding the PHC string (read at load time; for secrets kept out of the config).
    pub password_hash_file: Option<Spanned<String>>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default = "default_token_version")]
    pub token_version: u64,
    /// Overrides the derived namespace directory name.
    pub namespace: Option<Spanned<String>>,
    /// A file holding the user's TOTP secret (base32), read at load time like
    /// `password_hash_file`.
    pub totp_secret_file: Option<Spanned<String>>,
}

fn default_token_version() -> u64 {
    1
}

/// An argon2id PHC string. Anything else (plaintext above all) is refused while parsing, and the
/// refused value is never repeated in the message.
#[derive(Debug, Clone)]
pub struct PhcHash(pub String);

impl<'de> Deserialize<'de> for PhcHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_phc(&s)
            .map(|()| PhcHash(s))
            .map_err(serde::de::Error::custom)
    }
}

pub fn check_phc(s: &str) -> Result<(), String> {
    const HELP: &str = "password_hash must be an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash); \
         plaintext passwords are refused. Make one with `comfy-warden hash-password`";
    let parsed = argon2::password_hash::PasswordHash::new(s).map_err(|_| HELP.to_string())?;
    if parsed.algorithm.as_str() != "argon2id" || parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(HELP.into());
    }
    argon2::Params::try_from(&parsed)
        .map_err(|e| format!("password_hash has unusable argon2 parameters: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------- roles.toml

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    #[serde(default)]
    pub roles: BTreeMap<Spanned<String>, RawRole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub permissions: Vec<Spanned<String>>,
    /// Users of this role must sign in with a second factor (TOTP); those without one enrol
    /// right after their password.
    #[serde(default)]
    pub require_totp: bool,
}

// ---------------------------------------------------------------- ip-rules.toml

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRulesFile {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// Addresses that are never banned; bans on them are lifted when the file is (re)loaded.
    #[serde(default)]
    pub unban: Vec<Spanned<String>>,
}
