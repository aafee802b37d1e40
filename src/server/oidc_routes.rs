//! Single sign-on endpoints (`[auth.oidc]`): `GET /login/oidc?next=…` sends the browser to the
//! provider (authorization code flow with PKCE S256, `state`, `nonce`); `GET
//! /login/oidc/callback` finishes it: the sign-in under way is taken by its `state` (and must
//! belong to this browser), the code is exchanged, the ID token checked, the user decided
//! (`auth::oidc`), then comfy-warden's own session cookie is set and the browser lands on `next`.
//! Every refusal is a page saying what to do and an `oidc_refused` audit line; the provider's
//! tokens never leave this module. Also: the login page's button and where sign-out sends a
//! single sign-on user.
use super::own_routes::{safe_next, session_cookie};
use crate::app::App;
use crate::auth::identity;
use crate::auth::oidc::{self, flow::TakeError, token::TokenError};
use crate::auth::session::TokenKind;
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::config::oidc::Oidc as OidcConfig;
use crate::pages;
use crate::reject::Reject;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::time::Duration;

use super::own_routes::OIDC_START as START;
pub const CALLBACK: &str = "/login/oidc/callback";
const FLOW_COOKIE_PLAIN: &str = "comfy_warden_oidc";
const FLOW_COOKIE_TLS: &str = "__Host-comfy_warden_oidc";

pub fn owns(path: &str) -> bool {
    path == START || path == CALLBACK
}

fn flow_cookie_name(tls: bool) -> &'static str {
    if tls {
        FLOW_COOKIE_TLS
    } else {
        FLOW_COOKIE_PLAIN
    }
}

pub async fn handle(
    app: &App,
    snap: &Snapshot,
    req: Request<Incoming>,
    ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    if !super::own_routes::is_get(req.method()) {
        return super::refusal::json(&Reject::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let Some(cfg) = snap.oidc.clone() else {
        return super::refusal::json(&Reject::NotFound("single sign-on is not configured".into()));
    };
    if req.uri().path() == START {
        start(app, &cfg, &req, ip, tls).await
    } else {
        callback(app, snap, &cfg, &req, ip, tls).await
    }
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The exact redirect URI: the configured one, else this request's origin.
fn redirect_uri(cfg: &OidcConfig, req: &Request<Incoming>, tls: bool) -> Option<String> {
    if let Some(u) = &cfg.redirect_uri {
        return Some(u.clone());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| format!("{}://{host}{CALLBACK}", if tls { "https" } else { "http" }))
}

fn message(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let mut r = pages::page(
        status,
        pages::message_page_with(title, text, Some(("/login", "Back to the sign-in page"))),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn unreachable(cfg: &OidcConfig, ip: IpAddr, error: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(target: "audit", event = "oidc_unavailable", client_ip = %ip, issuer = %cfg.issuer, error = %error, "the OpenID provider cannot be reached");
    message(
        StatusCode::BAD_GATEWAY,
        "Sign-in service unavailable",
        &format!(
            "{} cannot be reached right now. Try again in a few minutes; if you have a comfy-warden password or token, you can still use it.",
            cfg.display_name
        ),
    )
}

/// A refused sign-in: the audit line and a page saying what to do.
fn refused(
    status: StatusCode,
    ip: IpAddr,
    user: Option<&str>,
    reason: &str,
    text: &str,
) -> Response<Body> {
    tracing::warn!(target: "audit", event = "oidc_refused", user = user.unwrap_or("-"), client_ip = %ip, route = CALLBACK, reason = %reason, "single sign-on refused");
    message(status, "Sign-in refused", text)
}

async fn start(
    app: &App,
    cfg: &OidcConfig,
    req: &Request<Incoming>,
    ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    let q = query(req);
    let next = safe_next(param(&q, "next"));
    let d = match app.oidc.provider.discovery(cfg).await {
        Ok(d) => d,
        Err(e) => return unreachable(cfg, ip, &e),
    };
    let Some(redirect) = redirect_uri(cfg, req, tls) else {
        return super::refusal::json(&Reject::BadRequest("the request has no usable Host".into()));
    };
    let Some(flow) = app.oidc.flows.start(next, redirect.clone()) else {
        let mut r = message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins",
            "Too many sign-ins are under way right now. Try again in a few minutes.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    };
    let mut url = form_urlencoded::Serializer::new(String::new());
    url.append_pair("response_type", "code")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", &cfg.scopes.join(" "))
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &flow.challenge)
        .append_pair("code_challenge_method", "S256");
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{sep}{}", d.authorization_endpoint, url.finish());
    let mut r = body::redirect(StatusCode::FOUND, &location);
    match session_cookie(
        flow_cookie_name(tls),
        flow.binding,
        tls,
        oidc::flow::PENDING_FOR,
    ) {
        Ok(c) => {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the sign-in cookie");
            return super::refusal::json(&Reject::Internal(
                "cannot start the sign-in right now".into(),
            ));
        }
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn flow_cookie(req: &Request<Incoming>, tls: bool) -> Option<String> {
    identity::cookie_value(req.headers(), flow_cookie_name(tls))
}

/// Short, printable, or nothing: what the provider says is shown and logged only like this.
fn printable(s: &str) -> Option<&str> {
    (s.len() <= 64 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

const START_AGAIN: &str = "Start again from the sign-in page.";

async fn callback(
    app: &App,
    snap: &Snapshot,
    cfg: &OidcConfig,
    req: &Request<Incoming>,
    ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    let q = query(req);
    let binding = flow_cookie(req, tls);
    let pending = match app
        .oidc
        .flows
        .take(param(&q, "state").unwrap_or(""), binding.as_deref())
    {
        Ok(p) => p,
        Err(e) => {
            let reason = match e {
                TakeError::Unknown => "unknown, expired or used state",
                TakeError::OtherBrowser => "state of another browser",
            };
            return refused(
                StatusCode::BAD_REQUEST,
                ip,
                None,
                reason,
                &format!(
                    "This sign-in cannot be finished: it was already used, it took too long, or the link was changed. {START_AGAIN}"
                ),
            );
        }
    };
    let mut resp = finish(app, snap, cfg, &q, pending, ip, tls).await;
    // The sign-in is over either way: the browser's half of it goes too.
    if let Ok(c) = session_cookie(flow_cookie_name(tls), String::new(), tls, Duration::ZERO) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

async fn finish(
    app: &App,
    snap: &Snapshot,
    cfg: &OidcConfig,
    q: &[(String, String)],
    pending: oidc::flow::Pending,
    ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    if let Some(error) = param(q, "error") {
        let error = printable(error).unwrap_or("error");
        return refused(
            StatusCode::FORBIDDEN,
            ip,
            None,
            &format!("provider error {error}"),
            &format!(
                "{} did not sign you in ({error}). If you cancelled, {}; if you were refused, ask your administrator for access.",
                cfg.display_name,
                START_AGAIN.to_lowercase().trim_end_matches('.')
            ),
        );
    }
    if let Some(iss) = param(q, "iss")
        && iss.trim_end_matches('/') != cfg.issuer
    {
        return refused(
            StatusCode::BAD_REQUEST,
            ip,
            None,
            "wrong iss in the callback",
            &format!("The answer came from another sign-in service. {START_AGAIN}"),
        );
    }
    let Some(code) = param(q, "code").filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return refused(
            StatusCode::BAD_REQUEST,
            ip,
            None,
            "no code",
            &format!("The sign-in service sent no authorization code. {START_AGAIN}"),
        );
    };
    let d = match app.oidc.provider.discovery(cfg).await {
        Ok(d) => d,
        Err(e) => return unreachable(cfg, ip, &e),
    };
    let checked = match oidc::token::exchange(cfg, &d, code, &pending).await {
        Ok(id_token) => {
            oidc::token::verify_id_token(cfg, &app.oidc.provider, &id_token, &pending.nonce).await
        }
        Err(e) => Err(e),
    };
    let claims = match checked {
        Ok(c) => c,
        Err(TokenError::Provider(e)) => return unreachable(cfg, ip, &e),
        Err(TokenError::Refused(error)) => {
            return refused(
                StatusCode::FORBIDDEN,
                ip,
                None,
                &format!("code refused: {error}"),
                &format!(
                    "{} did not accept this sign-in ({error}): it may have been used already or taken too long. {START_AGAIN}",
                    cfg.display_name
                ),
            );
        }
        Err(TokenError::Invalid(why)) => {
            return refused(
                StatusCode::FORBIDDEN,
                ip,
                None,
                &format!("ID token: {why}"),
                &format!(
                    "The sign-in could not be verified. {START_AGAIN} If it keeps happening, tell your administrator."
                ),
            );
        }
    };
    let name = match oidc::user_name(cfg, &claims) {
        Ok(n) => n,
        Err(r) => {
            return refused(
                StatusCode::FORBIDDEN,
                ip,
                None,
                r.reason(),
                &format!(
                    "Your account at {} has no name comfy-warden can use (its {:?} must be 1–64 letters, digits, '.', '_', '@' or '-'). Ask your administrator.",
                    cfg.display_name, cfg.user_claim
                ),
            );
        }
    };
    let groups = oidc::mapped_groups(cfg, &claims);
    let user = match oidc::session_user(snap, &name, &groups) {
        Ok(u) => u,
        Err(r) => {
            let text = match r {
                oidc::Refusal::NoRole => format!(
                    "You signed in as {name}, but that account has no access to ComfyUI here. Ask your administrator to add you to a group that does."
                ),
                oidc::Refusal::Disabled => {
                    format!("The account {name} is disabled here. Ask your administrator.")
                }
                oidc::Refusal::SecondFactor => format!(
                    "The account {name} signs in here with a password and a second factor. Use the sign-in form instead of {}.",
                    cfg.display_name
                ),
                _ => format!(
                    "The account {name} cannot sign in here with {}. Ask your administrator.",
                    cfg.display_name
                ),
            };
            return refused(StatusCode::FORBIDDEN, ip, Some(&name), r.reason(), &text);
        }
    };
    let (token, session) = match app.keys.issue_with(
        &user.name,
        user.token_version,
        snap.auth.session_ttl,
        TokenKind::Session,
        Some(groups),
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a session");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                "comfy-warden cannot create a session right now. Try again shortly.",
            );
        }
    };
    app.sessions.started(&session);
    tracing::info!(target: "audit", event = "login_ok", user = %user.name, client_ip = %ip, method = "oidc", roles = ?user.roles, "signed in");
    let mut r = body::redirect(StatusCode::SEE_OTHER, &pending.next);
    match session_cookie(
        identity::cookie_name(tls),
        token,
        tls,
        snap.auth.session_ttl,
    ) {
        Ok(c) => {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the session cookie");
            return super::refusal::json(&Reject::Internal(
                "cannot create a session right now".into(),
            ));
        }
    }
    r
}
