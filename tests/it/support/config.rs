//! The configuration a test runs the daemon with, built with typed setters over `toml::Table`s
//! (never by appending strings): `warden.toml`, `users.toml`, `ip-rules.toml` and, when a test
//! names roles, `roles.toml`.
//!
//! ```ignore
//! let cfg = TestConfig::new(&d.url())
//!     .users(users())
//!     .server(|s| s.trusted_proxies(&["127.0.0.1/32"]).workers(2))
//!     .lockout(|l| l.max_failures(3).ban_for("1h"))
//!     .ip_rules(|r| r.deny(&["203.0.113.0/24"]));
//! ```
//!
//! Each section type has a setter for every key the tests use (add one when a test needs a new
//! key). A configuration the daemon must refuse for an unknown key or a wrong type is made with
//! the escape hatch [`TestConfig::unchecked_key`]; text that is not TOML at all is written by the
//! test itself.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use toml::{Table, Value};

/// A user for the test configuration.
#[derive(Clone)]
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub token_version: u64,
}

impl TestUser {
    pub fn new(name: &str, password: &str, roles: &[&str]) -> Self {
        TestUser {
            name: name.into(),
            password: password.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            disabled: false,
            token_version: 1,
        }
    }

    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

/// Argon2id PHC of `password`, computed once per password per test process (cheap parameters:
/// the daemon verifies whatever parameters the PHC string names).
pub fn phc(password: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    c.entry(password.to_string())
        .or_insert_with(|| {
            use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
            let params = argon2::Params::new(1024, 1, 1, None).unwrap();
            let a =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            a.hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string()
        })
        .clone()
}

/// The text of a `users.toml` naming `users` (with their hashed passwords).
pub fn users_toml(users: &[TestUser]) -> String {
    let mut all = Table::new();
    for u in users {
        let mut t = Table::new();
        t.insert("password_hash".into(), phc(&u.password).into());
        t.insert("roles".into(), strings(&u.roles));
        t.insert("disabled".into(), u.disabled.into());
        t.insert("token_version".into(), int(u.token_version));
        all.insert(u.name.clone(), t.into());
    }
    let mut file = Table::new();
    file.insert("users".into(), all.into());
    render(&file)
}

fn render(t: &Table) -> String {
    toml::to_string(t).unwrap()
}

fn strings<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(items.iter().map(|s| s.as_ref().into()).collect())
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap())
}

/// A value a setter accepts: strings (durations are strings like `"5s"`), numbers, booleans and
/// lists of strings.
pub trait ToToml {
    fn to_toml(self) -> Value;
}

impl ToToml for &str {
    fn to_toml(self) -> Value {
        self.into()
    }
}

impl ToToml for u64 {
    fn to_toml(self) -> Value {
        int(self)
    }
}

impl ToToml for bool {
    fn to_toml(self) -> Value {
        self.into()
    }
}

impl ToToml for &[&str] {
    fn to_toml(self) -> Value {
        strings(self)
    }
}

/// A section type: a table with typed setters, one per key (`$key: $type`).
macro_rules! section {
    ($(#[$doc:meta])* $name:ident { $($(#[$kdoc:meta])* $key:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Default)]
        pub struct $name(Table);

        impl $name {
            $(
                $(#[$kdoc])*
                pub fn $key(mut self, value: $ty) -> Self {
                    self.0.insert(stringify!($key).into(), value.to_toml());
                    self
                }
            )*
        }

        impl From<Table> for $name {
            fn from(t: Table) -> Self {
                $name(t)
            }
        }

        impl From<$name> for Table {
            fn from(s: $name) -> Table {
                s.0
            }
        }
    };
}

/// Applies `f` to the sub-table `key` of `table` (created empty when missing).
fn edit<S: From<Table> + Into<Table>>(table: &mut Table, key: &str, f: impl FnOnce(S) -> S) {
    let current = match table.remove(key) {
        Some(Value::Table(t)) => t,
        _ => Table::new(),
    };
    table.insert(key.into(), Value::Table(f(S::from(current)).into()));
}

section!(
    /// `[server]`.
    Server {
        listen: &[&str],
        shutdown_grace: &str,
        trusted_proxies: &[&str],
        workers: u64,
        max_header_bytes: u64,
        header_read_timeout: &str,
        max_upload_bytes: u64,
        max_connections: u64,
        max_connections_per_ip: u64,
        /// An address, or `"systemd"` for a socket passed by systemd.
        metrics_listen: &str,
        http_redirect: &str,
        https_port: u64,
    }
);

impl Server {
    /// `[server.tls]`.
    pub fn tls(mut self, f: impl FnOnce(Tls) -> Tls) -> Self {
        edit(&mut self.0, "tls", f);
        self
    }
}

section!(
    /// `[server.tls]`; [`Tls::installed`] names the files [`super::tls::Leaf::install`] writes.
    Tls {
        cert: &str,
        key: &str,
        hsts: &str,
    }
);

impl Tls {
    /// `cert = "tls/cert.pem"`, `key = "tls/key.pem"`.
    pub fn installed(self) -> Self {
        self.cert("tls/cert.pem").key("tls/key.pem")
    }
}

section!(
    /// `[upstream]`.
    Upstream {
        url: &str,
        connect_timeout: &str,
        response_timeout: &str,
    }
);

section!(
    /// `[files]`.
    Files {
        users: &str,
        users_writable: &str,
        ip_rules: &str,
        state_dir: &str,
        roles: &str,
    }
);

section!(
    /// `[log]`.
    Log {
        level: &str,
        audit_file: &str,
    }
);

section!(
    /// `[lockout]`.
    Lockout {
        max_failures: u64,
        window: &str,
        first_delay: &str,
        max_delay: &str,
        ban_after: u64,
        ban_for: &str,
    }
);

section!(
    /// `[auth]`.
    Auth {
        session_ttl: &str,
        max_token_ttl: &str,
        secret_file: &str,
        previous_secret_files: &[&str],
        query_token_view: bool,
    }
);

impl Auth {
    /// `[auth.external_jwt]`.
    pub fn external_jwt(mut self, f: impl FnOnce(ExternalJwt) -> ExternalJwt) -> Self {
        edit(&mut self.0, "external_jwt", f);
        self
    }

    /// `[auth.trusted_header]`.
    pub fn trusted_header(mut self, f: impl FnOnce(TrustedHeader) -> TrustedHeader) -> Self {
        edit(&mut self.0, "trusted_header", f);
        self
    }

    /// `[auth.oidc]`.
    pub fn oidc(mut self, f: impl FnOnce(Oidc) -> Oidc) -> Self {
        edit(&mut self.0, "oidc", f);
        self
    }
}

section!(
    /// `[auth.oidc]`.
    Oidc {
        issuer: &str,
        client_id: &str,
        client_secret_file: &str,
        roles_claim: &str,
        scopes: &[&str],
        ca_file: &str,
        display_name: &str,
        default_roles: &[&str],
        end_session_redirect: bool,
        token_endpoint_auth: &str,
    }
);

impl Oidc {
    /// `role_map = { group = role, … }`.
    pub fn role_map(mut self, map: &[(&str, &str)]) -> Self {
        let table: Table = map
            .iter()
            .map(|(g, r)| (g.to_string(), Value::String(r.to_string())))
            .collect();
        self.0.insert("role_map".into(), Value::Table(table));
        self
    }
}

section!(
    /// `[auth.external_jwt]`.
    ExternalJwt {
        jwks_file: &str,
        issuer: &str,
        audience: &str,
        user_claim: &str,
        default_roles: &[&str],
    }
);

section!(
    /// `[auth.trusted_header]`.
    TrustedHeader {
        name: &str,
        from: &[&str],
        default_roles: &[&str],
    }
);

section!(
    /// `[tenancy]`.
    Tenancy {
        max_queued_per_user: u64,
        allow_routes: &[&str],
        free_memory_on_logout: bool,
    }
);

impl Tenancy {
    /// `[tenancy.nodes.CLASS] pure = true`: allows a custom node whose outputs depend only on
    /// its inputs.
    pub fn pure_node(mut self, class: &str) -> Self {
        let mut rule = Table::new();
        rule.insert("pure".into(), true.into());
        match self.0.get_mut("nodes") {
            Some(Value::Table(nodes)) => {
                nodes.insert(class.into(), rule.into());
            }
            _ => {
                let mut nodes = Table::new();
                nodes.insert(class.into(), rule.into());
                self.0.insert("nodes".into(), nodes.into());
            }
        }
        self
    }
}

section!(
    /// `ip-rules.toml`.
    IpRules {
        allow: &[&str],
        deny: &[&str],
        unban: &[&str],
    }
);

/// The configuration directory a test runs with (see the module documentation).
#[derive(Clone)]
pub struct TestConfig {
    warden: Table,
    users: Vec<TestUser>,
    ip_rules: IpRules,
    roles: Table,
}

impl TestConfig {
    /// A daemon on `127.0.0.1:0` in front of `upstream`, with no users, logging at debug level.
    pub fn new(upstream: &str) -> Self {
        let cfg = TestConfig {
            warden: Table::new(),
            users: Vec::new(),
            ip_rules: IpRules::default(),
            roles: Table::new(),
        };
        cfg.server(|s| s.listen(&["127.0.0.1:0"]).shutdown_grace("5s"))
            .upstream(|u| {
                u.url(upstream)
                    .connect_timeout("2s")
                    .response_timeout("20s")
            })
            .files(|f| {
                f.users("users.toml")
                    .ip_rules("ip-rules.toml")
                    .state_dir("state")
            })
            .log(|l| l.level("info,comfy_warden=debug"))
    }

    /// Adds one user to `users.toml`.
    pub fn user(mut self, user: TestUser) -> Self {
        self.users.push(user);
        self
    }

    /// Adds users to `users.toml`.
    pub fn users(mut self, users: impl IntoIterator<Item = TestUser>) -> Self {
        self.users.extend(users);
        self
    }

    /// `server.listen = [addr]` (default `127.0.0.1:0`; `"systemd"` for socket activation).
    pub fn listen(self, addr: &str) -> Self {
        self.server(|s| s.listen(&[addr]))
    }

    pub fn server(mut self, f: impl FnOnce(Server) -> Server) -> Self {
        edit(&mut self.warden, "server", f);
        self
    }

    pub fn upstream(mut self, f: impl FnOnce(Upstream) -> Upstream) -> Self {
        edit(&mut self.warden, "upstream", f);
        self
    }

    pub fn files(mut self, f: impl FnOnce(Files) -> Files) -> Self {
        edit(&mut self.warden, "files", f);
        self
    }

    pub fn log(mut self, f: impl FnOnce(Log) -> Log) -> Self {
        edit(&mut self.warden, "log", f);
        self
    }

    pub fn lockout(mut self, f: impl FnOnce(Lockout) -> Lockout) -> Self {
        edit(&mut self.warden, "lockout", f);
        self
    }

    pub fn auth(mut self, f: impl FnOnce(Auth) -> Auth) -> Self {
        edit(&mut self.warden, "auth", f);
        self
    }

    pub fn tenancy(mut self, f: impl FnOnce(Tenancy) -> Tenancy) -> Self {
        edit(&mut self.warden, "tenancy", f);
        self
    }

    /// The contents of `ip-rules.toml` (empty by default).
    pub fn ip_rules(mut self, f: impl FnOnce(IpRules) -> IpRules) -> Self {
        self.ip_rules = f(self.ip_rules);
        self
    }

    /// A role in `roles.toml` with `permissions` (and `files.roles = "roles.toml"`).
    pub fn role(mut self, name: &str, permissions: &[&str]) -> Self {
        let mut role = Table::new();
        role.insert("permissions".into(), strings(permissions));
        self.roles.insert(name.into(), role.into());
        self.files(|f| f.roles("roles.toml"))
    }

    /// A role in roles.toml whose users must sign in with a second factor (`require_totp`).
    pub fn totp_role(self, name: &str, permissions: &[&str]) -> Self {
        let mut cfg = self.role(name, permissions);
        if let Some(Value::Table(role)) = cfg.roles.get_mut(name) {
            role.insert("require_totp".into(), Value::Boolean(true));
        }
        cfg
    }

    /// Escape hatch for configurations the daemon must refuse: sets `dotted_key` (like
    /// `"lockout.bans_after"`) in `warden.toml` to any value, bypassing the typed setters.
    pub fn unchecked_key(mut self, dotted_key: &str, value: impl ToToml) -> Self {
        let mut parts: Vec<&str> = dotted_key.split('.').collect();
        let last = parts.pop().unwrap();
        let mut table = &mut self.warden;
        for part in parts {
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| Table::new().into());
            table = entry.as_table_mut().unwrap();
        }
        table.insert(last.into(), value.to_toml());
        self
    }

    /// The text of `warden.toml`.
    pub fn warden_toml(&self) -> String {
        render(&self.warden)
    }

    /// Writes the configuration directory.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("warden.toml"), self.warden_toml()).unwrap();
        std::fs::write(dir.join("users.toml"), users_toml(&self.users)).unwrap();
        std::fs::write(dir.join("ip-rules.toml"), render(&self.ip_rules.0)).unwrap();
        if !self.roles.is_empty() {
            let mut file = Table::new();
            file.insert("roles".into(), self.roles.clone().into());
            std::fs::write(dir.join("roles.toml"), render(&file)).unwrap();
        }
    }
}
