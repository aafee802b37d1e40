//! Configuration: the TOML files of one directory, validated into an immutable [`Snapshot`].
//!
//! `warden.toml` holds the daemon settings and names the data files (users, roles, IP rules).
//! Relative paths are resolved against the configuration directory. Every decision of the
//! daemon reads one `Arc<Snapshot>`; `watch` swaps it atomically when the files change.
pub mod duration;
mod endpoints;
pub mod error;
pub mod identity;
mod limits;
pub mod paths;
pub mod raw;
pub mod store;
pub mod watch;

use crate::auth::roles::{PermSet, Permission, Roles};
pub use endpoints::{DEFAULT_HSTS, Tls};
pub use error::ConfigError;
use ipnet::IpNet;
use raw::LogFormat;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const MAIN_FILE: &str = "warden.toml";

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

/// `[lockout]`, validated (see `guard::lockout`).
#[derive(Debug, Clone)]
pub struct Lockout {
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
    /// Files named by users' `password_hash_file` (watched like the others).
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
    pub lockout: Lockout,
    pub users: HashMap<Arc<str>, Arc<User>>,
    pub roles: Roles,
    pub ip_rules: IpRules,
    pub trusted_header: Option<identity::TrustedHeader>,
    pub external_jwt: Option<identity::ExternalJwt>,
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
        v.extend(self.external_jwt.as_ref().map(|e| e.jwks_file.clone()));
        v
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read`], but a missing file is `None`.
pub fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = read(path)?;
    let value = toml::from_str(&text).map_err(|e| ConfigError::from_toml(path, &text, &e))?;
    Ok((value, text))
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Parses an address or network: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("{s:?} is not an IP address or CIDR network (like 10.0.0.0/8 or 2001:db8::/32)")
        })?,
    };
    // Client addresses are compared as IPv4 when IPv4-mapped, so mapped networks are too.
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return Ok(IpNet::V4(n));
    }
    Ok(net)
}

/// Loads and validates the configuration directory `dir`.
pub fn load(dir: &Path) -> Result<Snapshot, ConfigError> {
    let dir = std::fs::canonicalize(dir).map_err(|source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let main_path = dir.join(MAIN_FILE);
    let (w, wtext): (raw::WardenFile, String) = parse(&main_path)?;

    let endpoints = endpoints::endpoints(&dir, &main_path, &wtext, &w.server)?;
    let trusted_proxies = w
        .server
        .trusted_proxies
        .iter()
        .map(|s| {
            parse_net(s.get_ref())
                .map_err(|m| ConfigError::at_offset(&main_path, &wtext, s.span().start, m))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let upstream = {
        let u = &w.upstream.url;
        let bad =
            |m: &str| ConfigError::at_offset(&main_path, &wtext, u.span().start, m.to_string());
        let uri: http::Uri = u
            .get_ref()
            .parse()
            .map_err(|_| bad("not a URL like http://127.0.0.1:8188"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "ComfyUI is reached over plain http on a private address: use http://HOST:PORT",
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give only scheme, host and port (no path)"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("the URL needs a host"))?;
        let base = http::Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| bad("not a usable URL"))?;
        let host = http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("the host is not usable in a Host header"))?;
        Upstream {
            base,
            authority,
            host,
            connect_timeout: w.upstream.connect_timeout.0,
            response_timeout: w.upstream.response_timeout.0,
        }
    };

    let auth = Auth {
        secret_file: w
            .auth
            .secret_file
            .as_ref()
            .map(|p| {
                paths::secret_path(p.get_ref(), &dir)
                    .map_err(|m| ConfigError::at_offset(&main_path, &wtext, p.span().start, m))
            })
            .transpose()?,
        previous_secret_files: w
            .auth
            .previous_secret_files
            .iter()
            .map(|p| {
                paths::secret_path(&p.to_string_lossy(), &dir).map_err(|m| {
                    ConfigError::at(
                        &main_path,
                        None,
                        Some("auth.previous_secret_files".into()),
                        m,
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        session_ttl: w.auth.session_ttl.0,
        max_token_ttl: w.auth.max_token_ttl.0,
        basic: w.auth.basic,
        query_token_view: w.auth.query_token_view,
        hash_concurrency: w
            .auth
            .hash_concurrency
            .unwrap_or_else(|| {
                2 * std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1),
    };
    if auth.session_ttl > auth.max_token_ttl {
        return Err(ConfigError::at(
            &main_path,
            None,
            Some("auth.session_ttl".into()),
            "must not be longer than auth.max_token_ttl",
        ));
    }
    let mut files = Files {
        users: resolve(&dir, &w.files.users),
        users_writable: w.files.users_writable.as_deref().map(|p| resolve(&dir, p)),
        roles: w.files.roles.as_deref().map(|p| resolve(&dir, p)),
        ip_rules: w.files.ip_rules.as_deref().map(|p| resolve(&dir, p)),
        state_dir: resolve(&dir, &w.files.state_dir),
        password_hash_files: Vec::new(),
    };
    if tracing_subscriber::EnvFilter::try_new(&w.log.level).is_err() {
        return Err(ConfigError::at(
            &main_path,
            None,
            Some("log.level".into()),
            "not a level like info, debug or comfy_warden=debug",
        ));
    }

    let mut allow_routes = Vec::new();
    for r in &w.tenancy.allow_routes {
        let v = r.get_ref();
        let (path, prefix) = match v.strip_suffix('*') {
            Some(p) => (p, true),
            None => (v.as_str(), false),
        };
        if !path.starts_with('/') || path.contains("..") || path.contains('*') || path.len() < 2 {
            return Err(ConfigError::at_offset(
                &main_path,
                &wtext,
                r.span().start,
                format!("{v:?} is not a route like \"/my_node/status\" or \"/my_node/*\""),
            ));
        }
        allow_routes.push((path.to_owned(), prefix));
    }
    let mut node_rules = std::collections::BTreeMap::new();
    for (class, rule) in &w.tenancy.nodes {
        let at = |m: String| ConfigError::at_offset(&main_path, &wtext, rule.span().start, m);
        rule.get_ref()
            .check()
            .map_err(|m| at(format!("[tenancy.nodes.{class}]: {m}")))?;
        if !rule.get_ref().is_declared() && !rule.get_ref().denied {
            return Err(at(format!(
                "[tenancy.nodes.{class}] must say how the class touches files: pure = true, or the inputs that carry paths"
            )));
        }
        node_rules.insert(class.clone(), rule.get_ref().clone());
    }
    let tenancy = Tenancy {
        max_queued_per_user: w.tenancy.max_queued_per_user,
        max_prompt_bytes: w.tenancy.max_prompt_bytes,
        allow_routes,
        node_rules: crate::tenancy::nodes::NodeRules::with_config(&node_rules),
        free_memory_on_logout: w.tenancy.free_memory_on_logout,
    };

    let lockout = limits::lockout(&main_path, &wtext, &w.lockout)?;
    let server = limits::server(&main_path, &wtext, w.server, endpoints, trusted_proxies)?;
    let roles = load_roles(files.roles.as_deref())?;
    if files.users_writable.as_ref() == Some(&files.users) {
        return Err(ConfigError::at(
            &main_path,
            None,
            Some("files.users_writable".into()),
            "must name another file than files.users (comfy-warden never writes files.users)",
        ));
    }
    let (users, hash_files) = load_users_with(&files, &roles, None)?;
    files.password_hash_files = hash_files;
    let ip_rules = load_ip_rules(files.ip_rules.as_deref())?;
    let sources = identity::build(&w.auth, &dir, &main_path, &wtext, &roles)?;
    let namespaces = users.values().map(|u| u.namespace.clone()).collect();

    let audit_file = w.log.audit_file.map(|p| resolve(&files.state_dir, &p));
    Ok(Snapshot {
        dir,
        server,
        upstream,
        auth,
        files,
        log: Log {
            format: w.log.format,
            level: w.log.level,
            audit_file,
        },
        tenancy,
        lockout,
        users,
        roles,
        ip_rules,
        trusted_header: sources.trusted_header,
        external_jwt: sources.external_jwt,
        generation: 0,
        namespaces,
    })
}

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

pub type UserMap = HashMap<Arc<str>, Arc<User>>;

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

fn load_ip_rules(path: Option<&Path>) -> Result<IpRules, ConfigError> {
    let Some(path) = path else {
        return Ok(IpRules::default());
    };
    let (f, text): (raw::IpRulesFile, String) = parse(path)?;
    let nets = |v: &[toml::Spanned<String>]| {
        v.iter()
            .map(|s| {
                parse_net(s.get_ref())
                    .map_err(|m| ConfigError::at_offset(path, &text, s.span().start, m))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(IpRules {
        allow: nets(&f.allow)?,
        deny: nets(&f.deny)?,
        unban: nets(&f.unban)?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_net;

    #[test]
    fn nets_are_truncated_and_mapped_ones_become_v4() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_net("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            parse_net("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_net("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}
