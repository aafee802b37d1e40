//! The plain-HTTP listener of `server.http_redirect`: it serves nothing, and answers every
//! request with `301 Moved Permanently` to the same host and path over https (on
//! `server.https_port`). A request without a usable Host gets 400.
use crate::app::App;
use crate::body::{self, Body};
use http::uri::Authority;
use http::{Request, Response, StatusCode, header};

/// The https URL for a request that arrived with `host` (a Host header or URI authority).
pub fn location(host: &str, https_port: u16, path_and_query: &str) -> Option<String> {
    let authority: Authority = host.trim().parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let name = authority.host();
    if name.is_empty() {
        return None;
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    Some(format!("https://{name}{port}{path}"))
}

pub fn answer<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let port = app.config.get().server.https_port;
    match host.and_then(|h| location(&h, port, path)) {
        Some(url) => body::redirect(StatusCode::MOVED_PERMANENTLY, &url),
        None => body::text(StatusCode::BAD_REQUEST, "a Host header is needed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn same_host_other_port_same_path() {
        assert_eq!(
            location("example.org:8080", 443, "/a/b?c=d").as_deref(),
            Some("https://example.org/a/b?c=d")
        );
        assert_eq!(
            location("example.org", 8443, "/").as_deref(),
            Some("https://example.org:8443/")
        );
        assert_eq!(
            location("[2001:db8::1]:80", 443, "/x").as_deref(),
            Some("https://[2001:db8::1]/x")
        );
    }

    #[test]
    fn odd_hosts_are_refused() {
        assert_eq!(location("user@evil.example", 443, "/"), None);
        assert_eq!(location("", 443, "/"), None);
        assert_eq!(location("a b", 443, "/"), None);
    }
}
