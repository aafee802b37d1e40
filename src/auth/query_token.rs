//! `?token=` on URLs, for clients that cannot set headers: a browser's WebSocket, plain image
//! links (`<img src="/view?…&token=…">`, only where `auth.query_token_view` allows it), and the
//! login plugins some clients were written for (ComfyUI-Login, @stable-canvas's
//! `LoginAuthPlugin`). The parameter is taken out of the request URI before anything else
//! reads it, so ComfyUI never sees it and no log line or redirect carries it.
use http::Uri;

/// Routes on which a `token` parameter is always removed (ComfyUI reads none there).
pub fn strips(path: &str) -> bool {
    matches!(path, "/ws" | "/api/ws" | "/view" | "/api/view")
}

/// Routes on which a `token` parameter is an identity: the WebSocket always, `/view` when the
/// operator allowed it.
pub fn accepted(path: &str, view_allowed: bool) -> bool {
    matches!(path, "/ws" | "/api/ws") || (view_allowed && matches!(path, "/view" | "/api/view"))
}

/// Removes every `token` parameter from the query (the others stay byte for byte) and returns
/// the first one's value.
pub fn take(uri: &mut Uri) -> Option<String> {
    let query = uri.query()?;
    let mut token = None;
    let mut kept: Vec<&str> = Vec::new();
    let mut found = false;
    for pair in query.split('&') {
        let key = form_urlencoded::parse(pair.as_bytes()).next();
        match key {
            Some((k, v)) if k == "token" => {
                found = true;
                if token.is_none() {
                    token = Some(v.into_owned());
                }
            }
            _ => kept.push(pair),
        }
    }
    if !found {
        return None;
    }
    let pq = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = pq.parse().ok();
    *uri = Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"));
    token.filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_and_the_rest_kept() {
        let mut u: Uri = "/ws?clientId=a-1&token=eyJ.x%2By&token=second"
            .parse()
            .unwrap();
        assert_eq!(take(&mut u).as_deref(), Some("eyJ.x+y"));
        assert_eq!(u.to_string(), "/ws?clientId=a-1");
        let mut u: Uri = "/view?token=t".parse().unwrap();
        assert_eq!(take(&mut u).as_deref(), Some("t"));
        assert_eq!(u.to_string(), "/view");
        let mut u: Uri = "/view?filename=a%20b.png&tokens=1".parse().unwrap();
        assert_eq!(take(&mut u), None);
        assert_eq!(u.to_string(), "/view?filename=a%20b.png&tokens=1");
        let mut u: Uri = "/ws?%74oken=t&x=1".parse().unwrap();
        assert_eq!(
            take(&mut u).as_deref(),
            Some("t"),
            "an encoded name is the same name"
        );
        assert_eq!(u.to_string(), "/ws?x=1");
        let mut u: Uri = "/ws?token=".parse().unwrap();
        assert_eq!(take(&mut u), None);
        assert_eq!(u.to_string(), "/ws");
    }

    #[test]
    fn where_it_applies() {
        assert!(accepted("/ws", false) && accepted("/api/ws", false));
        assert!(!accepted("/view", false) && accepted("/api/view", true));
        assert!(!accepted("/prompt", true) && !strips("/prompt"));
    }
}
