//! Loading the configuration directory: reads `warden.toml`, then hands each part to the module
//! that validates it (`endpoints`, `limits`, `upstream`, `identity`, `users`, `ip_rules`) and
//! assembles the [`Snapshot`]. The orchestrator only: each rule lives with its part.
use super::error::ConfigError;
use super::model::{Auth, Files, Log, MAIN_FILE, Snapshot, Tenancy};
use super::read::{parse, parse_net, resolve};
use super::users::{load_roles, load_users_with};
use super::{endpoints, identity, ip_rules, limits, oidc, paths, raw, upstream};
use std::path::Path;
use std::sync::Arc;

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

    let upstream = upstream::upstream(&main_path, &wtext, &w.upstream)?;

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
    let ip_rules = ip_rules::load(files.ip_rules.as_deref())?;
    let sources = identity::build(&w.auth, &dir, &main_path, &wtext, &roles)?;
    let oidc = (w.auth.oidc.as_ref())
        .map(|o| oidc::build(o, &dir, &main_path, &wtext, &roles).map(Arc::new))
        .transpose()?;
    identity::check_external_jwt(sources.external_jwt.as_ref(), oidc.as_deref(), &main_path)?;
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
        oidc,
        generation: 0,
        namespaces,
    })
}
