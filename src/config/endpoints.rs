//! Where and how comfy-warden listens, validated: `server.listen` (addresses or systemd
//! sockets), `[server.tls]` (PEM paths and the HSTS value), the redirect-only plain listener
//! `server.http_redirect` with `server.https_port`, and the metrics listener
//! `server.metrics_listen`. Plain HTTP on a non-loopback address is refused unless TLS is
//! configured or `allow_plain_http` asserts that something in front provides it.
use super::error::ConfigError;
use super::model::{Listen, Tls};
use super::{paths, raw};
use http::HeaderValue;
use std::net::SocketAddr;
use std::path::Path;
use toml::Spanned;

pub const DEFAULT_HSTS: &str = "max-age=31536000";

pub(super) struct Endpoints {
    pub listen: Vec<Listen>,
    pub tls: Option<Tls>,
    pub http_redirect: Option<Listen>,
    pub https_port: u16,
    pub metrics_listen: Option<Listen>,
}

fn address(file: &Path, text: &str, v: &Spanned<String>) -> Result<Listen, ConfigError> {
    let s = v.get_ref().trim();
    if s == "systemd" {
        return Ok(Listen::Systemd);
    }
    s.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
        ConfigError::at_offset(
            file,
            text,
            v.span().start,
            format!("{s:?} is not an address like 0.0.0.0:8443 or [::]:8443, nor \"systemd\""),
        )
    })
}

fn tls(dir: &Path, file: &Path, text: &str, t: &raw::RawTls) -> Result<Tls, ConfigError> {
    let path = |v: &Spanned<String>| {
        paths::secret_path(v.get_ref(), dir)
            .map_err(|m| ConfigError::at_offset(file, text, v.span().start, m))
    };
    let hsts = match &t.hsts {
        None => Some(HeaderValue::from_static(DEFAULT_HSTS)),
        Some(v) if v.get_ref().trim().is_empty() => None,
        Some(v) => {
            let s = v.get_ref().trim();
            let ok = s.to_ascii_lowercase().contains("max-age=");
            match HeaderValue::from_str(s) {
                Ok(h) if ok => Some(h),
                _ => {
                    return Err(ConfigError::at_offset(
                        file,
                        text,
                        v.span().start,
                        "not a Strict-Transport-Security value like \"max-age=31536000\" (or \"\" for none)",
                    ));
                }
            }
        }
    };
    Ok(Tls {
        cert: path(&t.cert)?,
        key: path(&t.key)?,
        hsts,
    })
}

pub(super) fn endpoints(
    dir: &Path,
    file: &Path,
    text: &str,
    s: &raw::RawServer,
) -> Result<Endpoints, ConfigError> {
    if s.listen.is_empty() {
        return Err(ConfigError::at(
            file,
            None,
            Some("server.listen".into()),
            "at least one address is needed",
        ));
    }
    let tls = s
        .tls
        .as_ref()
        .map(|t| tls(dir, file, text, t))
        .transpose()?;
    let mut listen = Vec::new();
    for l in &s.listen {
        let parsed = address(file, text, l)?;
        if let Listen::Tcp(addr) = parsed
            && !addr.ip().is_loopback()
            && tls.is_none()
            && !s.allow_plain_http
        {
            return Err(ConfigError::at_offset(
                file,
                text,
                l.span().start,
                format!(
                    "{addr} is not a loopback address: plain HTTP would expose passwords and sessions; configure [server.tls], or put TLS in front and set server.allow_plain_http = true"
                ),
            ));
        }
        listen.push(parsed);
    }
    let http_redirect = s
        .http_redirect
        .as_ref()
        .map(|v| address(file, text, v))
        .transpose()?;
    let metrics_listen = s
        .metrics_listen
        .as_ref()
        .map(|v| address(file, text, v))
        .transpose()?;
    let https_port = match &s.https_port {
        Some(p) if *p.get_ref() == 0 => {
            return Err(ConfigError::at_offset(
                file,
                text,
                p.span().start,
                "must be a port between 1 and 65535",
            ));
        }
        Some(p) => *p.get_ref(),
        None => listen
            .iter()
            .find_map(|l| match l {
                Listen::Tcp(a) if a.port() != 0 => Some(a.port()),
                _ => None,
            })
            .unwrap_or(443),
    };
    Ok(Endpoints {
        listen,
        tls,
        http_redirect,
        https_port,
        metrics_listen,
    })
}
