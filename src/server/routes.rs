//! comfy-warden's own endpoints: `/login` (page and form/JSON sign-in), `/logout`,
//! `/warden/me`, `/warden/health` and the stylesheet of the pages.
use super::pages;
use crate::app::App;
use crate::auth::identity::{self, Identity};
use crate::auth::session::TokenKind;
use crate::body::{self, Body};
use crate::config::Snapshot;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use std::net::IpAddr;

/// The one answer for every failed sign-in, whatever the reason (unknown user, disabled user,
/// wrong password): nothing here tells an attacker which names exist.
pub const LOGIN_FAILED: &str = "Invalid user name or password.";

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

pub fn login_page(req: &Request<Incoming>) -> Response<Body> {
    let next = safe_next(query_param(req, "next").as_deref());
    pages::page(StatusCode::OK, pages::login_page(&next, "", None))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

enum Format {
    Json,
    Form,
}

/// Reads a small body (comfy-warden's own endpoints only), at most `limit` bytes.
pub async fn read_small_body(
    req: Request<Incoming>,
    limit: u64,
) -> Result<(http::request::Parts, bytes::Bytes), Response<Body>> {
    let (parts, incoming) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(body::error_json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        ));
    }
    match Limited::new(incoming, limit as usize).collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(_) => Err(body::error_json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        )),
    }
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

pub async fn login(
    app: &App,
    snap: &Snapshot,
    req: Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    let content_type = crate::body::content_type(req.headers());
    let format = if content_type.starts_with("application/json") {
        Format::Json
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        Format::Form
    } else {
        return body::error_json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON {\"username\", \"password\"} or a form",
        );
    };
    let (_, bytes) = match read_small_body(req, snap.server.max_own_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let parsed: Option<LoginForm> = match format {
        Format::Json => serde_json::from_slice(&bytes).ok(),
        Format::Form => serde_urlencoded_form(&bytes),
    };
    let Some(form) = parsed else {
        return body::error_json(StatusCode::BAD_REQUEST, "send a username and a password");
    };
    let next = safe_next(form.next.as_deref());
    // The lockout is decided before anything is hashed.
    if let Some(wait) = app.lockout.check(&snap.lockout, &form.username, client_ip) {
        tracing::debug!(client_ip = %client_ip, wait, "sign-in refused: locked out");
        let message = crate::guard::lockout::locked_message(wait);
        let mut r = match format {
            Format::Json => body::error_json(StatusCode::TOO_MANY_REQUESTS, &message),
            Format::Form => pages::page(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login_page(&next, "", Some(&message)),
            ),
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    let user = snap.user(&form.username).cloned();
    let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let verified = if form.password.len() > crate::auth::password::MAX_LEN {
        Ok(false)
    } else if let Some(wait) = app.lockout.spacing.reserve(client_ip) {
        tokio::time::sleep(wait).await;
        app.passwords.verify(stored, &form.password).await
    } else {
        tracing::debug!(client_ip = %client_ip, "sign-in refused: too many password checks from this address");
        Err(crate::auth::password::Busy)
    };
    let ok = match verified {
        Ok(ok) => ok,
        Err(busy) => {
            let mut r = match format {
                Format::Json => body::error_json(StatusCode::TOO_MANY_REQUESTS, &busy.to_string()),
                Format::Form => pages::page(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::login_page(&next, "", Some(&busy.to_string())),
                ),
            };
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            // Only configured names are logged: a password typed into the name field must not be.
            let known = snap.user(&form.username).map(|u| &*u.name);
            tracing::warn!(target: "audit", event = "login_failed", user = known, client_ip = %client_ip, route = "/login", reason = "invalid credentials", "failed sign-in");
            crate::guard::lockout::record_failure(app, snap, &form.username, client_ip);
            return match format {
                Format::Json => body::error_json(StatusCode::UNAUTHORIZED, LOGIN_FAILED),
                Format::Form => pages::page(
                    StatusCode::UNAUTHORIZED,
                    pages::login_page(&next, "", Some(LOGIN_FAILED)),
                ),
            };
        }
    };
    app.lockout.success(&user.name, client_ip);
    let (token, claims) = match app.keys.issue(
        &user.name,
        user.token_version,
        snap.auth.session_ttl,
        TokenKind::Session,
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a session");
            return body::error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot create a session right now",
            );
        }
    };
    app.sessions.started(&claims);
    tracing::info!(target: "audit", event = "login_ok", user = %user.name, client_ip = %client_ip, "signed in");
    let cookie = match session_cookie(
        identity::cookie_name(tls),
        token.clone(),
        tls,
        snap.auth.session_ttl,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the session cookie");
            return body::error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot create a session right now",
            );
        }
    };
    let mut resp = match format {
        Format::Json => body::json(
            StatusCode::OK,
            &serde_json::json!({
                "jwt_token": token,
                "token_type": "Bearer",
                "expires_in": snap.auth.session_ttl.as_secs(),
                "user": &*user.name,
            }),
        ),
        Format::Form => body::redirect(StatusCode::SEE_OTHER, &next),
    };
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

fn serde_urlencoded_form(bytes: &[u8]) -> Option<LoginForm> {
    let mut username = None;
    let mut password = None;
    let mut next = None;
    for (k, v) in form_urlencoded::parse(bytes) {
        match &*k {
            "username" if username.is_none() => username = Some(v.into_owned()),
            "password" if password.is_none() => password = Some(v.into_owned()),
            "next" if next.is_none() => next = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(LoginForm {
        username: username?,
        password: password?,
        next,
    })
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
            return body::error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "signed out, but the session cookie could not be cleared",
            );
        }
    };
    let mut resp = if body::wants_html(req.headers()) || is_form(req) {
        body::redirect(StatusCode::SEE_OTHER, "/login")
    } else {
        body::json(StatusCode::OK, &serde_json::json!({ "ok": true }))
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

pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = body::error_json(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

pub fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
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
