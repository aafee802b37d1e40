//! `[auth.oidc]`: browser sign-in through an OpenID Connect provider, validated. The client
//! secret and the optional extra certificate authority are read from files (part of the
//! hot-reloaded file set; `${CREDENTIALS_DIRECTORY}` is expanded); groups in `role_map` and
//! `default_roles` must name existing roles.
use super::error::ConfigError;
use crate::auth::roles::Roles;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<String>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    pub roles_claim: Option<String>,
    #[serde(default)]
    pub role_map: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub default_roles: Vec<Spanned<String>>,
    pub display_name: Option<String>,
    pub ca_file: Option<String>,
    /// Scopes asked for besides `openid` (default: `profile`).
    pub scopes: Option<Vec<String>>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth: Option<Spanned<String>>,
    /// The exact redirect URI registered at the provider; default: this request's origin +
    /// `/login/oidc/callback`.
    pub redirect_uri: Option<String>,
    /// Sign-out also ends the session at the provider (its `end_session_endpoint`).
    #[serde(default)]
    pub end_session_redirect: bool,
    /// Where the provider sends the person after its sign-out (registered there).
    pub post_logout_redirect_uri: Option<String>,
}

fn default_user_claim() -> String {
    "preferred_username".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

#[derive(Clone)]
pub struct Oidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub user_claim: String,
    pub roles_claim: Option<String>,
    /// Provider group → comfy-warden role.
    pub role_map: BTreeMap<String, String>,
    pub default_roles: Vec<String>,
    pub display_name: String,
    pub ca_file: Option<PathBuf>,
    pub ca_certs: Vec<CertificateDer<'static>>,
    pub secret_file: Option<PathBuf>,
    /// Every scope asked for, `openid` first.
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
    pub redirect_uri: Option<String>,
    pub end_session_redirect: bool,
    pub post_logout_redirect_uri: Option<String>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// The files whose change reloads the configuration.
    pub fn files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.secret_file.iter().chain(self.ca_file.iter()).cloned()
    }
}

pub fn build(
    raw: &Spanned<RawOidc>,
    dir: &Path,
    main: &Path,
    text: &str,
    roles: &Roles,
) -> Result<Oidc, ConfigError> {
    let at = raw.span().start;
    let r = raw.get_ref();
    let err = |offset: usize, m: String| ConfigError::at_offset(main, text, offset, m);
    let issuer = r.issuer.trim_end_matches('/').to_owned();
    let Some(rest) = issuer.strip_prefix("https://") else {
        return Err(err(at, "issuer must be an https:// URL".into()));
    };
    if rest.is_empty() || issuer.parse::<http::Uri>().is_err() {
        return Err(err(at, "issuer is not a URL".into()));
    }
    if r.client_id.is_empty() || r.user_claim.is_empty() {
        return Err(err(at, "client_id and user_claim must not be empty".into()));
    }
    let path = |p: &str| super::paths::secret_path(p, dir).map_err(|m| err(at, m));
    let (client_secret, secret_file) = match &r.client_secret_file {
        Some(p) => {
            let file = path(p)?;
            let s = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
                path: file.clone(),
                source,
            })?;
            let s = s.trim().to_owned();
            if s.is_empty() {
                return Err(ConfigError::at(
                    &file,
                    None,
                    None,
                    "the client secret is empty",
                ));
            }
            (s, Some(file))
        }
        None => (String::new(), None),
    };
    let (ca_file, ca_certs) = match &r.ca_file {
        Some(p) => {
            let file = path(p)?;
            let certs = CertificateDer::pem_file_iter(&file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ConfigError::at(&file, None, None, format!("not PEM certificates: {e}"))
                })?;
            if certs.is_empty() {
                return Err(ConfigError::at(
                    &file,
                    None,
                    None,
                    "no certificate in the file",
                ));
            }
            (Some(file), certs)
        }
        None => (None, Vec::new()),
    };
    let mut role_map = BTreeMap::new();
    for (group, role) in &r.role_map {
        if roles.get(role.get_ref()).is_none() {
            return Err(err(
                role.span().start,
                format!("unknown role {:?}", role.get_ref()),
            ));
        }
        role_map.insert(group.clone(), role.get_ref().clone());
    }
    let mut default_roles = Vec::new();
    for role in &r.default_roles {
        if roles.get(role.get_ref()).is_none() {
            return Err(err(
                role.span().start,
                format!("unknown role {:?}", role.get_ref()),
            ));
        }
        default_roles.push(role.get_ref().clone());
    }
    let client_auth = match r
        .token_endpoint_auth
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span().start))
    {
        None | Some(("client_secret_basic", _)) => ClientAuth::Basic,
        Some(("client_secret_post", _)) => ClientAuth::Post,
        Some((_, offset)) => {
            return Err(err(
                offset,
                "token_endpoint_auth is client_secret_basic or client_secret_post".into(),
            ));
        }
    };
    let mut scopes = vec!["openid".to_owned()];
    for s in r.scopes.clone().unwrap_or_else(|| vec!["profile".into()]) {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(err(at, format!("{s:?} is not a scope")));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    for uri in [&r.redirect_uri, &r.post_logout_redirect_uri]
        .into_iter()
        .flatten()
    {
        if !(uri.starts_with("https://") || uri.starts_with("http://"))
            || uri.parse::<http::Uri>().is_err()
        {
            return Err(err(at, format!("{uri:?} is not an absolute URL")));
        }
    }
    Ok(Oidc {
        issuer,
        client_id: r.client_id.clone(),
        client_secret,
        user_claim: r.user_claim.clone(),
        roles_claim: r.roles_claim.clone().filter(|c| !c.is_empty()),
        role_map,
        default_roles,
        display_name: r
            .display_name
            .clone()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| "single sign-on".into()),
        ca_file,
        ca_certs,
        secret_file,
        scopes,
        client_auth,
        redirect_uri: r.redirect_uri.clone(),
        end_session_redirect: r.end_session_redirect,
        post_logout_redirect_uri: r.post_logout_redirect_uri.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        oidc: Spanned<RawOidc>,
    }

    fn build_text(text: &str) -> Result<Oidc, ConfigError> {
        let w: Wrapper = toml::from_str(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        build(
            &w.oidc,
            dir.path(),
            &dir.path().join("warden.toml"),
            text,
            &Roles::default(),
        )
    }

    #[test]
    fn defaults() {
        let o = build_text("[oidc]\nissuer = \"https://id.example/realm/\"\nclient_id = \"c\"\n")
            .unwrap();
        assert_eq!(o.issuer, "https://id.example/realm");
        assert_eq!(o.user_claim, "preferred_username");
        assert_eq!(o.scopes, ["openid", "profile"]);
        assert_eq!(o.client_auth, ClientAuth::Basic);
        assert_eq!(o.display_name, "single sign-on");
        assert!(o.client_secret.is_empty() && o.roles_claim.is_none());
    }

    #[test]
    fn refusals() {
        for (text, words) in [
            (
                "issuer = \"http://id.example\"\nclient_id = \"c\"",
                "https://",
            ),
            (
                "issuer = \"https://id.example\"\nclient_id = \"c\"\nrole_map = { g = \"nope\" }",
                "unknown role \"nope\"",
            ),
            (
                "issuer = \"https://id.example\"\nclient_id = \"c\"\ndefault_roles = [\"nope\"]",
                "unknown role",
            ),
            (
                "issuer = \"https://id.example\"\nclient_id = \"c\"\ntoken_endpoint_auth = \"private_key_jwt\"",
                "client_secret_basic or client_secret_post",
            ),
            (
                "issuer = \"https://id.example\"\nclient_id = \"c\"\nclient_secret_file = \"missing\"",
                "missing",
            ),
        ] {
            let err = build_text(&format!("[oidc]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "{text}: {err}");
        }
    }
}
