//! Header hygiene between the client and ComfyUI.
//!
//! Towards ComfyUI: hop-by-hop headers go (including those named in `Connection`); so do every
//! client-sent `comfy-user` (any case, any count), `Origin` (ComfyUI answers 403 to a loopback
//! Host with a foreign Origin; comfy-warden does its own origin checks), `Authorization`,
//! comfy-warden's session cookie, and any client-sent forwarding headers, which are replaced by
//! ones comfy-warden sets from what it knows.
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
    )
}

fn client_never_forwarded(name: &str) -> bool {
    matches!(
        name,
        "comfy-user"
            | "origin"
            | "authorization"
            | "proxy-authorization"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-real-ip"
    )
}

/// Removes, in one pass over the names present, every header for which `drop` is true, the
/// hop-by-hop ones, and those the `Connection` header names. (Names are lower case in a
/// `HeaderMap`; `remove` takes every value of a name.)
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str()) || named.contains(n) || drop(n))
        .cloned()
        .collect();
    for n in doomed {
        headers.remove(n);
    }
}

/// Removes hop-by-hop headers, and the headers the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, |_| false);
}

/// What comfy-warden knows about the client connection, for the forwarding headers.
pub struct Forwarding<'a> {
    pub client_ip: IpAddr,
    pub tls: bool,
    pub host: Option<&'a HeaderValue>,
    /// The trusted-identity header (`[auth.trusted_header]`): never forwarded, whoever sent it.
    pub identity_header: Option<&'a http::HeaderName>,
}

/// Removes comfy-warden's own cookies from the `Cookie` header(s), keeping the others (joined
/// into one header). A value that is not visible ASCII is dropped with them.
pub fn strip_warden_cookies(headers: &mut HeaderMap) {
    let header::Entry::Occupied(entry) = headers.entry(header::COOKIE) else {
        return;
    };
    let (_, values) = entry.remove_entry_mult();
    let mut kept = String::new();
    for v in values {
        let Ok(v) = v.to_str() else { continue };
        for c in v.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let name = c.split('=').next().unwrap_or("").trim();
            if name == crate::auth::session::COOKIE_PLAIN
                || name == crate::auth::session::COOKIE_TLS
            {
                continue;
            }
            if !kept.is_empty() {
                kept.push_str("; ");
            }
            kept.push_str(c);
        }
    }
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept)
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Prepares client request headers for ComfyUI (see the module comment).
pub fn to_upstream(headers: &mut HeaderMap, fwd: &Forwarding<'_>) {
    remove_where(headers, |n| {
        client_never_forwarded(n.as_str()) || fwd.identity_header == Some(n)
    });
    strip_warden_cookies(headers);
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
        h.append("cookie", "c=3".parse().unwrap());
        h.append("x-remote-user", "admin".parse().unwrap());
        h.append("X-Remote-User", "root".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        let host = HeaderValue::from_static("warden.example");
        let identity = HeaderName::from_static("x-remote-user");
        to_upstream(
            &mut h,
            &Forwarding {
                client_ip: "192.0.2.1".parse().unwrap(),
                tls: true,
                host: Some(&host),
                identity_header: Some(&identity),
            },
        );
        assert!(h.get("x-remote-user").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("comfy-user").is_none());
        assert!(
            h.get("origin").is_none()
                && h.get("authorization").is_none()
                && h.get("x-secret").is_none()
        );
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2; c=3");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "warden.example");
        assert_eq!(h.get("accept").unwrap(), "*/*");
    }

    #[test]
    fn answers_lose_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.append("connection", "close, x-internal".parse().unwrap());
        h.append("x-internal", "1".parse().unwrap());
        h.append("keep-alive", "timeout=5".parse().unwrap());
        h.append("transfer-encoding", "chunked".parse().unwrap());
        h.append("content-type", "application/json".parse().unwrap());
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        to_client(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "set-cookie"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn only_warden_cookie_means_no_cookie_header() {
        let mut h = HeaderMap::new();
        h.append("cookie", "__Host-comfy_warden_session=tok".parse().unwrap());
        strip_warden_cookies(&mut h);
        assert!(h.get("cookie").is_none());
    }
}
