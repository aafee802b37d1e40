//! Header hygiene between the client and ComfyUI.
//!
//! Towards ComfyUI: hop-by-hop headers go (including those named in `Connection`); so do every
//! client-sent `comfy-user` (any case, any count), `Origin` (ComfyUI answers 403 to a loopback
//! Host with a foreign Origin; comfy-warden does its own origin checks), `Authorization`,
//! comfy-warden's session cookie, and any client-sent forwarding headers, which are replaced by
//! ones comfy-warden sets from what it knows.
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

const CLIENT_NEVER_FORWARDED: [&str; 9] = [
    "comfy-user",
    "origin",
    "authorization",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Removes hop-by-hop headers, and the headers the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// What comfy-warden knows about the client connection, for the forwarding headers.
pub struct Forwarding<'a> {
    pub client_ip: IpAddr,
    pub tls: bool,
    pub host: Option<&'a HeaderValue>,
    /// The trusted-identity header (`[auth.trusted_header]`): never forwarded, whoever sent it.
    pub identity_header: Option<&'a http::HeaderName>,
}

/// Removes comfy-warden's own cookies from the `Cookie` header(s), keeping the others.
pub fn strip_warden_cookies(headers: &mut HeaderMap) {
    let values: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    if values.is_empty() {
        return;
    }
    headers.remove(header::COOKIE);
    let kept: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| {
            let name = c.split('=').next().unwrap_or("").trim();
            name != crate::auth::session::COOKIE_PLAIN && name != crate::auth::session::COOKIE_TLS
        })
        .map(str::to_owned)
        .collect();
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Prepares client request headers for ComfyUI (see the module comment).
pub fn to_upstream(headers: &mut HeaderMap, fwd: &Forwarding<'_>) {
    remove_hop_by_hop(headers);
    for n in CLIENT_NEVER_FORWARDED {
        while headers.remove(n).is_some() {}
    }
    strip_warden_cookies(headers);
    if let Some(h) = fwd.identity_header {
        while headers.remove(h).is_some() {}
    }
    if let Ok(v) = HeaderValue::from_str(&fwd.client_ip.to_string()) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if fwd.tls { "https" } else { "http" }),
    );
    if let Some(h) = fwd.host {
        headers.insert("x-forwarded-host", h.clone());
    }
}

/// Prepares ComfyUI's response headers for the client.
pub fn to_client(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_what_must_not_pass() {
        let mut h = HeaderMap::new();
        h.append("Comfy-User", "alice".parse().unwrap());
        h.append("COMFY-USER", "bob".parse().unwrap());
        h.append("origin", "http://evil".parse().unwrap());
        h.append("authorization", "Bearer x".parse().unwrap());
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("connection", "keep-alive, x-secret".parse().unwrap());
        h.append("x-secret", "1".parse().unwrap());
        h.append(
            "cookie",
            "a=1; comfy_warden_session=tok; b=2".parse().unwrap(),
        );
        h.append("accept", "*/*".parse().unwrap());
        let host = HeaderValue::from_static("warden.example");
        to_upstream(
            &mut h,
            &Forwarding {
                client_ip: "192.0.2.1".parse().unwrap(),
                tls: true,
                host: Some(&host),
                identity_header: None,
            },
        );
        assert!(h.get("comfy-user").is_none());
        assert!(
            h.get("origin").is_none()
                && h.get("authorization").is_none()
                && h.get("x-secret").is_none()
        );
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "warden.example");
        assert_eq!(h.get("accept").unwrap(), "*/*");
    }

    #[test]
    fn only_warden_cookie_means_no_cookie_header() {
        let mut h = HeaderMap::new();
        h.append("cookie", "__Host-comfy_warden_session=tok".parse().unwrap());
        strip_warden_cookies(&mut h);
        assert!(h.get("cookie").is_none());
    }
}
