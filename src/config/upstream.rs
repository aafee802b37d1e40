//! `[upstream]`: the ComfyUI server comfy-warden fronts, validated (plain http, scheme, host
//! and port only) into the [`Upstream`] the proxy dials.
use super::error::ConfigError;
use super::model::Upstream;
use super::raw::RawUpstream;
use std::path::Path;

/// `[upstream]` of `warden.toml` (`main_path`, text `wtext`), validated.
pub fn upstream(main_path: &Path, wtext: &str, raw: &RawUpstream) -> Result<Upstream, ConfigError> {
    let u = &raw.url;
    let bad = |m: &str| ConfigError::at_offset(main_path, wtext, u.span().start, m.to_string());
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
    Ok(Upstream {
        base,
        authority,
        host,
        connect_timeout: raw.connect_timeout.0,
        response_timeout: raw.response_timeout.0,
    })
}
