//! `POST /login`: a user name and password (JSON or the login form), checked after the lockout
//! and before anything else; then the second factor where the user has one
//! (`second_factor::after_password`) and the session (`second_factor::sign_in`). A refused
//! sign-in answers JSON callers with the refusal and gives the form back with its words.
use super::own_routes::safe_next;
use crate::app::App;
use crate::body::Body;
use crate::body::read_small_body;
use crate::config::Snapshot;
use crate::pages;
use crate::reject::Reject;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    /// A TOTP or recovery code, for users with a second factor (`second_factor`).
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

enum Format {
    Json,
    Form,
}

pub async fn login(
    app: &App,
    snap: &Snapshot,
    req: Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
) -> Result<Response<Body>, Reject> {
    let content_type = crate::body::content_type(req.headers());
    let format = if content_type.starts_with("application/json") {
        Format::Json
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        Format::Form
    } else {
        return Err(Reject::UnsupportedMediaType(
            "send JSON {\"username\", \"password\"} or a form".into(),
        ));
    };
    let (_, bytes) = read_small_body(req, snap.server.max_own_body).await?;
    let parsed: Option<LoginForm> = match format {
        Format::Json => serde_json::from_slice(&bytes).ok(),
        Format::Form => serde_urlencoded_form(&bytes),
    };
    let Some(form) = parsed else {
        return Err(Reject::BadRequest("send a username and a password".into()));
    };
    let next = safe_next(form.next.as_deref());
    // A refused sign-in: JSON callers get the refusal, the form comes back with its words.
    let refuse = |reject: Reject| match format {
        Format::Json => Err(reject),
        Format::Form => {
            let mut r = pages::page(
                reject.status(),
                pages::login_page(&next, "", Some(&reject.message())),
            );
            if let Some(secs) = reject.retry_after() {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Ok(r)
        }
    };
    // The lockout is decided before anything is hashed.
    if let Some(wait) = app.lockout.check(&snap.lockout, &form.username, client_ip) {
        tracing::debug!(client_ip = %client_ip, wait, "sign-in refused: locked out");
        return refuse(Reject::Locked { retry_after: wait });
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
        Err(crate::auth::password::Busy) => return refuse(Reject::Busy),
    };
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            // Only configured names are logged: a password typed into the name field must not be.
            let known = snap.user(&form.username).map(|u| &*u.name);
            tracing::warn!(target: "audit", event = "login_failed", user = known, client_ip = %client_ip, route = "/login", reason = "invalid credentials", "failed sign-in");
            crate::guard::lockout::record_failure(&app.lockout, snap, &form.username, client_ip);
            return refuse(Reject::LoginFailed);
        }
    };
    let json = matches!(format, Format::Json);
    let done = match super::second_factor::after_password(
        app,
        snap,
        &user,
        form.totp.as_deref(),
        json,
        &next,
        client_ip,
    )
    .await
    {
        Ok(done) => done,
        Err(answer) => return Ok(answer),
    };
    super::second_factor::sign_in(app, snap, &user, json, &next, tls, client_ip, &done)
}

fn serde_urlencoded_form(bytes: &[u8]) -> Option<LoginForm> {
    let mut username = None;
    let mut password = None;
    let mut totp = None;
    let mut next = None;
    for (k, v) in form_urlencoded::parse(bytes) {
        match &*k {
            "username" if username.is_none() => username = Some(v.into_owned()),
            "password" if password.is_none() => password = Some(v.into_owned()),
            "totp" if totp.is_none() => totp = Some(v.into_owned()).filter(|t| !t.is_empty()),
            "next" if next.is_none() => next = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(LoginForm {
        username: username?,
        password: password?,
        totp,
        next,
    })
}
