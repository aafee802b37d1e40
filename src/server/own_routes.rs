//! comfy-warden's own endpoints: `/login` (page and form/JSON sign-in), `/logout`,
//! `/warden/me`, `/warden/health` and the stylesheet of the pages.
use crate::app::App;
use crate::auth::identity::{self, Identity};
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::pages;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::net::IpAddr;

/// The one answer for every failed sign-in (see [`Reject::LoginFailed`]).
pub use crate::reject::LOGIN_FAILED;

/// Keeps only same-site relative paths (`/x?y`), so `next` cannot send anyone elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains('\\')
                && n.len() <= 2048
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn login_page(snap: &Snapshot, req: &Request<Incoming>) -> Response<Body> {
    let next = safe_next(query_param(req, "next").as_deref());
    let html = pages::login_page(&next, "", None);
    pages::page(StatusCode::OK, add_button(html, snap, &next))
}

pub fn session_cookie(
    name: &'static str,
    value: String,
    tls: bool,
    max_age: std::time::Duration,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let c = cookie::Cookie::build((name, value))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .secure(tls)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    HeaderValue::from_str(&c.to_string())
}

pub fn logout(
    app: &std::sync::Arc<App>,
    ident: Option<&Identity>,
    req: &Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    if let Some(id) = ident
        && let Some(claims) = &id.claims
    {
        let left = app.sessions.revoke(claims);
        tracing::info!(target: "audit", event = "logout", user = %id.user.name, client_ip = %client_ip, sessions_left = left, "signed out");
        if left == 0 {
            super::free_memory::after_last_session(app, &id.user.name, client_ip);
        }
    }
    let clear = match session_cookie(
        identity::cookie_name(tls),
        String::new(),
        tls,
        std::time::Duration::ZERO,
    ) {
        Ok(c) => c,
        Err(e) => {
            // The session is revoked all the same; the browser keeps a dead cookie.
            tracing::error!(error = %e, "cannot encode the cookie that clears the session");
            return super::refusal::json(&crate::reject::Reject::Internal(
                "signed out, but the session cookie could not be cleared".into(),
            ));
        }
    };
    let provider_logout = end_session_url(app, &app.config.get(), ident);
    let mut resp = if body::wants_html(req.headers()) || is_form(req) {
        body::redirect(
            StatusCode::SEE_OTHER,
            provider_logout.as_deref().unwrap_or("/login"),
        )
    } else {
        body::json(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "redirect": provider_logout }),
        )
    };
    resp.headers_mut().append(header::SET_COOKIE, clear);
    resp
}

fn is_form(req: &Request<Incoming>) -> bool {
    crate::body::content_type(req.headers()).starts_with("application/x-www-form-urlencoded")
}

pub fn me(id: &Identity) -> Response<Body> {
    body::json(
        StatusCode::OK,
        &serde_json::json!({
            "user": &*id.user.name,
            "roles": id.user.roles,
            "permissions": id.user.permissions.names(),
            "auth": id.source.name(),
            "expires_at": id.claims.as_ref().map(|c| c.exp),
        }),
    )
}

pub fn health() -> Response<Body> {
    body::text(StatusCode::OK, "ok\n")
}

pub fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// Where the single sign-on button starts (`server/oidc_routes.rs` serves it).
pub const OIDC_START: &str = "/login/oidc";

/// The login page's "Sign in with …" button, when single sign-on is configured.
pub fn add_button(html: String, snap: &Snapshot, next: &str) -> String {
    let Some(cfg) = &snap.oidc else {
        return html;
    };
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let button = format!(
        "<p class=\"sso\"><a class=\"button\" id=\"sso\" href=\"{OIDC_START}?next={}\">Sign in with {}</a></p>",
        pages::escape(&next),
        pages::escape(&cfg.display_name)
    );
    html.replacen("<!--sso-->", &button, 1)
}

/// Where sign-out sends a single sign-on user: the provider's `end_session_endpoint` when
/// `end_session_redirect` is set and the provider offers one.
pub fn end_session_url(app: &App, snap: &Snapshot, id: Option<&Identity>) -> Option<String> {
    let cfg = snap.oidc.as_ref().filter(|c| c.end_session_redirect)?;
    id?.claims.as_ref()?.oidc.as_ref()?;
    let endpoint = app
        .oidc
        .provider
        .cached_discovery(cfg)?
        .end_session_endpoint
        .clone()?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", &cfg.client_id);
    if let Some(u) = &cfg.post_logout_redirect_uri {
        q.append_pair("post_logout_redirect_uri", u);
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    Some(format!("{endpoint}{sep}{}", q.finish()))
}

#[cfg(test)]
mod tests {
    use super::session_cookie;
    use std::time::Duration;

    #[test]
    fn a_cookie_that_cannot_be_encoded_is_an_error() {
        let c = session_cookie("comfy_warden_session", "ok".into(), true, Duration::ZERO).unwrap();
        assert!(c.to_str().unwrap().starts_with("comfy_warden_session=ok;"));
        // A value a header cannot carry is an error, never an empty Set-Cookie.
        for bad in ["line\nbreak", "nul\0"] {
            assert!(
                session_cookie("comfy_warden_session", bad.into(), false, Duration::ZERO).is_err(),
                "{bad:?}"
            );
        }
    }
}
