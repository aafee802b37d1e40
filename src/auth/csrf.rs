//! Cross-site request checks for identities a browser attaches by itself (session cookie,
//! cached HTTP Basic credentials, a gateway's header identity: `Source::browser_attached`).
//! A browser sends those with requests other sites make it send; such requests are recognised
//! by Fetch Metadata (`Sec-Fetch-Site`) or, from browsers without it, by an `Origin` that is
//! not this site. Applies to state-changing methods and to WebSocket upgrades (cross-site
//! WebSocket hijacking); Bearer tokens and identity-provider JWTs are exempt (a browser never
//! adds those by itself).
//! Requests with neither header are not from a browser and pass.
use http::{HeaderMap, Method, header};

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `scheme://host[:port]` → `host[:port]` (lowercase), `None` for `null` or garbage.
fn origin_authority(origin: &str) -> Option<String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    let authority = rest.split('/').next().unwrap_or("");
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

/// Strips the default port so `host:443` (https) or `host:80` (http) equals `host`.
fn normalise_host(host: &str, tls: bool) -> String {
    let h = host.to_ascii_lowercase();
    let default = if tls { ":443" } else { ":80" };
    h.strip_suffix(default).map(str::to_owned).unwrap_or(h)
}

/// True when the request must be refused as cross-site. `hosts` are the names this site is
/// reached under (the `Host` header, and `X-Forwarded-Host` from a trusted proxy).
pub fn is_cross_site(
    method: &Method,
    upgrade: bool,
    headers: &HeaderMap,
    hosts: &[&str],
    tls: bool,
) -> bool {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !upgrade {
        return false;
    }
    if let Some(site) = header_str(headers, "sec-fetch-site") {
        return !matches!(site.trim(), "same-origin" | "none");
    }
    if let Some(origin) = header_str(headers, header::ORIGIN.as_str()) {
        let Some(from) = origin_authority(origin.trim()) else {
            return true;
        };
        let from = normalise_host(&from, origin.starts_with("https://"));
        return !hosts.iter().any(|h| normalise_host(h, tls) == from);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn fetch_metadata() {
        let hosts = ["warden.example"];
        assert!(is_cross_site(
            &Method::POST,
            false,
            &h(&[("sec-fetch-site", "cross-site")]),
            &hosts,
            true
        ));
        assert!(is_cross_site(
            &Method::POST,
            false,
            &h(&[("sec-fetch-site", "same-site")]),
            &hosts,
            true
        ));
        assert!(!is_cross_site(
            &Method::POST,
            false,
            &h(&[("sec-fetch-site", "same-origin")]),
            &hosts,
            true
        ));
        assert!(!is_cross_site(
            &Method::POST,
            false,
            &h(&[("sec-fetch-site", "none")]),
            &hosts,
            true
        ));
        assert!(!is_cross_site(
            &Method::GET,
            false,
            &h(&[("sec-fetch-site", "cross-site")]),
            &hosts,
            true
        ));
        assert!(
            is_cross_site(
                &Method::GET,
                true,
                &h(&[("sec-fetch-site", "cross-site")]),
                &hosts,
                true
            ),
            "WebSocket hijacking"
        );
    }

    #[test]
    fn origin_fallback() {
        let hosts = ["warden.example"];
        assert!(!is_cross_site(
            &Method::POST,
            false,
            &h(&[("origin", "https://warden.example")]),
            &hosts,
            true
        ));
        assert!(!is_cross_site(
            &Method::POST,
            false,
            &h(&[("origin", "https://warden.example:443")]),
            &hosts,
            true
        ));
        assert!(is_cross_site(
            &Method::POST,
            false,
            &h(&[("origin", "https://evil.example")]),
            &hosts,
            true
        ));
        assert!(is_cross_site(
            &Method::POST,
            false,
            &h(&[("origin", "null")]),
            &hosts,
            true
        ));
        assert!(is_cross_site(
            &Method::POST,
            false,
            &h(&[("origin", "https://warden.example.evil.example")]),
            &hosts,
            true
        ));
        assert!(
            !is_cross_site(&Method::POST, false, &h(&[]), &hosts, true),
            "not a browser"
        );
    }
}
