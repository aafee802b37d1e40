//! The validated configuration: [`Snapshot`] and its parts, as every decision of the daemon
//! reads them. Built by `load` from the files as written (`raw`); never changed afterwards.
use super::identity;
use super::raw::LogFormat;
use crate::auth::roles::{PermSet, Permission, Roles};
use http::HeaderValue;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const MAIN_FILE: &str = "warden.toml";

/// `[server.tls]`, validated (the files themselves are read by `ops::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `Strict-Transport-Security` on every TLS answer; `None` when configured as "".
    pub hsts: Option<HeaderValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// Sockets passed by systemd socket activation (LISTEN_FDS).
    Systemd,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Vec<Listen>,
    /// TLS on every `listen` address.
    pub tls: Option<Tls>,
    /// The plain listener that only redirects to https.
    pub http_redirect: Option<Listen>,
    /// The port written into https redirects.
    pub https_port: u16,
    /// The plain listener that serves only `/metrics`.
    pub metrics_listen: Option<Listen>,
    pub trusted_proxies: Vec<IpNet>,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_own_body: u64,
    pub max_header_bytes: usize,
    pub max_upload_bytes: u64,
    pub max_connections_per_ip: usize,
    pub max_connections: usize,
    /// Worker threads, each with its own event loop, accept loops and upstream pool
    /// (`server::listen`). Taken at start; a reload does not change it.
    pub workers: usize,
}

/// `[lockout]`, validated: the policy; the counters and bans it governs are
/// `guard::lockout::Lockout`.
#[derive(Debug, Clone)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window: Duration,
    /// The delay after the `max_failures`-th failure; doubled with each further one.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// 0 = never ban.
    pub ban_after: u32,
    pub ban_for: Duration,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http://host:port`, no path.
    pub base: http::Uri,
    pub authority: http::uri::Authority,
    /// The `Host` header of every request to ComfyUI (its authority, made once at load).
    pub host: http::HeaderValue,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub secret_file: Option<PathBuf>,
    pub previous_secret_files: Vec<PathBuf>,
    pub session_ttl: Duration,
    pub max_token_ttl: Duration,
    pub basic: bool,
    /// `?token=` is an identity on `/view` too (auth/query_token.rs).
    pub query_token_view: bool,
    pub hash_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct Files {
    pub users: PathBuf,
    /// The users file comfy-warden itself edits (`comfy-warden user …`, setup, admin API);
    /// absent on disk means no users yet.
    pub users_writable: Option<PathBuf>,
    pub roles: Option<PathBuf>,
    pub ip_rules: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// Files named by users' `password_hash_file` and `totp_secret_file` (watched like the others).
    pub password_hash_files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
    /// The audit log (JSON lines), resolved against the state directory.
    pub audit_file: Option<PathBuf>,
}

/// Which users file defines a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    /// `files.users`: never written by comfy-warden.
    Declarative,
    /// `files.users_writable`: edited by the CLI, the setup page and the admin API.
    Writable,
    /// Not in any file: vouched for by an identity provider or a trusted gateway.
    External,
}

#[derive(Debug)]
pub struct User {
    pub name: Arc<str>,
    pub source: UserSource,
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    pub permissions: PermSet,
    pub disabled: bool,
    pub token_version: u64,
    /// Directory name of the user's files inside ComfyUI's input/output/temp folders.
    pub namespace: String,
    /// The TOTP secret from `totp_secret_file` (one enrolled through comfy-warden lives in the
    /// state directory instead: `auth::second_factor`).
    pub totp_secret: Option<crate::auth::totp::Secret>,
    /// One of the user's roles has `require_totp`.
    pub require_totp: bool,
}

impl User {
    pub fn can(&self, p: Permission) -> bool {
        self.permissions.has(p)
    }
}

#[derive(Debug, Clone)]
pub struct Tenancy {
    pub max_queued_per_user: usize,
    pub max_prompt_bytes: u64,
    /// Allow-listed extra routes: `(path, is_prefix)`.
    pub allow_routes: Vec<(String, bool)>,
    /// Built-in node rules plus `[tenancy.nodes.*]`.
    pub node_rules: crate::tenancy::nodes::NodeRules,
    /// Ask ComfyUI to unload models and free memory when a user's last session ends.
    pub free_memory_on_logout: bool,
}

impl Tenancy {
    pub fn allows_route(&self, path: &str) -> bool {
        self.allow_routes.iter().any(|(p, prefix)| {
            if *prefix {
                path.starts_with(p.as_str())
            } else {
                path == p
            }
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct IpRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    /// Never banned by the lockout; bans on them are lifted on (re)load.
    pub unban: Vec<IpNet>,
}

/// One consistent view of the whole configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub server: Server,
    pub upstream: Upstream,
    pub auth: Auth,
    pub files: Files,
    pub log: Log,
    pub tenancy: Tenancy,
    pub lockout: LockoutPolicy,
    pub users: HashMap<Arc<str>, Arc<User>>,
    pub roles: Roles,
    pub ip_rules: IpRules,
    pub trusted_header: Option<identity::TrustedHeader>,
    pub external_jwt: Option<identity::ExternalJwt>,
    /// `[auth.oidc]`: browser sign-in through an OpenID provider.
    pub oidc: Option<Arc<super::oidc::Oidc>>,
    /// The namespaces of configured users (identities from outside may not take them).
    pub namespaces: std::collections::HashSet<String>,
    /// 0 for the snapshot loaded at start, then one more for each successful reload
    /// (`ConfigStore::reload`): what was derived from a snapshot is tagged with it.
    pub generation: u64,
}

impl Snapshot {
    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// Is this namespace directory already a configured user's?
    pub fn namespace_taken(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    /// Every file the snapshot was built from (the watcher reloads when one changes).
    pub fn source_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.join(MAIN_FILE), self.files.users.clone()];
        v.extend(self.files.users_writable.clone());
        v.extend(self.files.roles.clone());
        v.extend(self.files.ip_rules.clone());
        v.extend(self.files.password_hash_files.iter().cloned());
        v.extend(self.external_jwt.as_ref().and_then(|e| e.jwks_file.clone()));
        v.extend(self.oidc.iter().flat_map(|o| o.files()));
        v
    }
}

/// Users by name.
pub type UserMap = HashMap<Arc<str>, Arc<User>>;
