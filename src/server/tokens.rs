//! API tokens for scripts: `GET /warden/token` (page), `POST /warden/token` (form or JSON
//! `{label, ttl}`), `GET /warden/tokens` (the caller's live tokens), `DELETE /warden/tokens/{jti}`
//! (revoke one). A token is a comfy-warden JWT of type `api` with the caller's `token_version`:
//! bumping it in users.toml revokes every token of the user. Only users with the `api_tokens`
//! permission get one, with a lifetime bounded by `auth.max_token_ttl`, and only from a session
//! or a password check (HTTP Basic), never from another API token.
use crate::app::App;
use crate::auth::identity::{Identity, Source};
use crate::auth::roles::Permission;
use crate::auth::session::{ApiToken, TokenKind};
use crate::body::read_small_body;
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::pages;
use crate::reject::Reject;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 86400);

fn max_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn may_issue(id: &Identity) -> Result<(), &'static str> {
    if !id.user.can(Permission::ApiTokens) {
        return Err(
            "Your role does not allow API tokens (it needs the \"api_tokens\" permission).",
        );
    }
    if id.claims.as_ref().is_some_and(|c| c.typ == TokenKind::Api) {
        return Err(
            "An API token cannot create tokens: sign in, or use your password (HTTP Basic).",
        );
    }
    // Also single sign-on users users.toml does not list: a token names only the user, and
    // their roles exist only with the session's groups.
    if matches!(id.source, Source::External | Source::Header)
        || matches!(id.user.source, crate::config::UserSource::External)
    {
        return Err("Tokens are issued to users who sign in to comfy-warden.");
    }
    Ok(())
}

pub fn page(snap: &Snapshot, id: &Identity) -> Response<Body> {
    let error = may_issue(id).err();
    pages::page(
        StatusCode::OK,
        pages::token_page(&id.user.name, &max_text(snap.auth.max_token_ttl), error),
    )
}

/// Label and lifetime from a form or JSON body.
fn parse_request(content_type: &str, bytes: &[u8]) -> Option<(String, Option<String>)> {
    if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some((
            v.get("label")?.as_str()?.to_owned(),
            v.get("ttl").and_then(Value::as_str).map(str::to_owned),
        ))
    } else {
        let mut label = None;
        let mut ttl = None;
        for (k, v) in form_urlencoded::parse(bytes) {
            match &*k {
                "label" if label.is_none() => label = Some(v.into_owned()),
                "ttl" if ttl.is_none() => ttl = Some(v.into_owned()),
                _ => {}
            }
        }
        Some((label?, ttl.filter(|t| !t.trim().is_empty())))
    }
}

pub async fn issue(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    let ct = crate::body::content_type(req.headers());
    let json_answer = ct.starts_with("application/json");
    // JSON callers get the refusal; the form comes back with its words.
    let fail = |reject: Reject| {
        if json_answer {
            Err(reject)
        } else {
            Ok(pages::page(
                reject.status(),
                pages::token_page(
                    &id.user.name,
                    &max_text(snap.auth.max_token_ttl),
                    Some(&reject.message()),
                ),
            ))
        }
    };
    if let Err(m) = may_issue(id) {
        return fail(Reject::Forbidden(m.into()));
    }
    let (_, bytes) = read_small_body(req, snap.server.max_own_body).await?;
    let Some((label, ttl)) = parse_request(&ct, &bytes) else {
        return fail(Reject::BadRequest(
            "Give the token a label (what it is for).".into(),
        ));
    };
    let label = label.trim().to_owned();
    if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control) {
        return fail(Reject::BadRequest(
            "The label must be 1 to 64 printable characters.".into(),
        ));
    }
    let ttl = match ttl.as_deref().map(crate::config::duration::parse) {
        None => DEFAULT_TTL.min(snap.auth.max_token_ttl),
        Some(Ok(d)) if d > snap.auth.max_token_ttl => {
            return fail(Reject::BadRequest(
                format!(
                    "A token may live at most {}.",
                    max_text(snap.auth.max_token_ttl)
                )
                .into(),
            ));
        }
        Some(Ok(d)) if d.as_secs() >= 60 => d,
        Some(Ok(_)) => {
            return fail(Reject::BadRequest(
                "A token must live at least a minute.".into(),
            ));
        }
        Some(Err(m)) => return fail(Reject::BadRequest(m.into())),
    };
    let (token, claims) =
        match app
            .keys
            .issue(&id.user.name, id.user.token_version, ttl, TokenKind::Api)
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an API token");
                return fail(Reject::Internal("The token could not be created.".into()));
            }
        };
    app.sessions.issued(ApiToken {
        jti: claims.jti.clone(),
        user: claims.sub.clone(),
        label: label.clone(),
        created: claims.iat,
        expires: claims.exp,
    });
    tracing::info!(target: "audit", event = "token_issued", user = %id.user.name, client_ip = %client_ip, jti = %claims.jti, label = %label, "API token issued");
    Ok(if json_answer {
        body::json(
            StatusCode::OK,
            &json!({"token": token, "jti": claims.jti, "label": label, "expires_at": claims.exp}),
        )
    } else {
        let expires = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(claims.exp),
        )
        .to_string();
        pages::page(
            StatusCode::OK,
            pages::token_issued_page(&label, &token, &expires),
        )
    })
}

pub fn list(app: &App, id: &Identity) -> Response<Body> {
    let tokens: Vec<Value> = app
        .sessions
        .api_tokens(&id.user.name)
        .into_iter()
        .map(|t| json!({"jti": t.jti, "label": t.label, "created": t.created, "expires_at": t.expires}))
        .collect();
    body::json(StatusCode::OK, &json!({ "tokens": tokens }))
}

/// Revokes one token of the caller (admins: of anyone). Unknown or foreign ids are 404.
pub fn delete(
    app: &App,
    id: &Identity,
    jti: &str,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    match app.sessions.api_token(jti) {
        Some(t) if t.user == *id.user.name || id.user.can(Permission::Admin) => {
            app.sessions.revoke_id(&t.jti, t.expires);
            tracing::info!(target: "audit", event = "token_revoked", user = %id.user.name, client_ip = %client_ip, jti = %t.jti, owner = %t.user, "API token revoked");
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        _ => Err(Reject::NotFound("no such token".into())),
    }
}

/// Routes `/warden/token` and `/warden/tokens[/{jti}]`; the request back when the path is not
/// one of them.
pub async fn route(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Result<Response<Body>, Reject>, Request<Incoming>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (ref m, "/warden/token") if super::own_routes::is_get(m) => Ok(Ok(page(snap, id))),
        (Method::POST, "/warden/token") => Ok(issue(app, snap, id, req, client_ip).await),
        (ref m, "/warden/tokens") if super::own_routes::is_get(m) => Ok(Ok(list(app, id))),
        (Method::DELETE, p) if p.starts_with("/warden/tokens/") => {
            Ok(delete(app, id, &p["/warden/tokens/".len()..], client_ip))
        }
        _ => Err(req),
    }
}
