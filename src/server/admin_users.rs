//! User administration over HTTP (the `admin` permission; 401 without identity, 403 without the
//! permission): `GET /warden/admin/users` (both users files, with active session counts),
//! `POST /warden/admin/users` `{username, password?, roles?}`, `GET|PATCH|DELETE
//! /warden/admin/users/{name}` (`{roles?, disabled?, password?, revoke?}`), and
//! `GET /warden/admin/sessions`; `GET|DELETE /warden/admin/users/{name}/totp` (the second
//! factor: `server::second_factor`). Changes go through `accounts::change` on the writable users
//! file only (declarative users: 409), are refused when they would leave no administrator, and
//! are live at once (the configuration is reloaded before the answer).
use super::own_routes;
use crate::accounts::change::{self, Change, Edit, Refused};
use crate::app::App;
use crate::auth::identity::Identity;
use crate::body::read_small_body;
use crate::body::{self, Body};
use crate::config::{Snapshot, User, UserSource};
use crate::reject::Reject;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;

pub const USERS: &str = "/warden/admin/users";
const USER_PREFIX: &str = "/warden/admin/users/";
pub const SESSIONS: &str = "/warden/admin/sessions";
/// At most this many sessions are listed.
const LIST_MAX: usize = 1000;

/// The paths this module answers.
pub fn owns(path: &str) -> bool {
    path == USERS || path == SESSIONS || path.starts_with(USER_PREFIX)
}

pub async fn handle(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    let path = req.uri().path().to_owned();
    super::admin::require_admin(id, &path, client_ip)?;
    let method = req.method().clone();
    if path == SESSIONS {
        if !own_routes::is_get(&method) {
            return Err(Reject::MethodNotAllowed { allow: "GET, HEAD" });
        }
        return Ok(sessions(app));
    }
    if path == USERS {
        return match method {
            ref m if own_routes::is_get(m) => Ok(list(app, snap)),
            Method::POST => add(app, snap, id, req, client_ip).await,
            _ => Err(Reject::MethodNotAllowed {
                allow: "GET, HEAD, POST",
            }),
        };
    }
    let raw = path.strip_prefix(USER_PREFIX).unwrap_or_default();
    if let Some(target) = raw.strip_suffix(super::second_factor::ADMIN_SUFFIX) {
        return Ok(super::second_factor::admin(snap, id, target, &method, client_ip).await);
    }
    let name = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    if name.is_empty() || name.contains('/') {
        return Err(Reject::NoSuchEndpoint);
    }
    match method {
        ref m if own_routes::is_get(m) => match snap.user(&name) {
            Some(u) => Ok(body::json(
                StatusCode::OK,
                &user_json(snap, u, &session_counts(app)),
            )),
            None => Err((&Refused::NotFound(name)).into()),
        },
        Method::PATCH => edit(app, snap, id, &name, req, client_ip).await,
        Method::DELETE => {
            let change = Change::Remove { name };
            write(app, snap, id, change, client_ip, StatusCode::OK).await
        }
        _ => Err(Reject::MethodNotAllowed {
            allow: "GET, HEAD, PATCH, DELETE",
        }),
    }
}

fn session_counts(app: &App) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in app.sessions.active() {
        *m.entry(s.user).or_insert(0) += 1;
    }
    m
}

fn user_json(snap: &Snapshot, u: &User, sessions: &HashMap<String, usize>) -> serde_json::Value {
    serde_json::json!({
        "name": &*u.name,
        "roles": u.roles,
        "permissions": u.permissions.names(),
        "disabled": u.disabled,
        "token_version": u.token_version,
        "has_password": u.password_hash.is_some(),
        "source": match u.source {
            UserSource::Declarative => "declarative",
            UserSource::Writable => "writable",
        UserSource::External => "external",
        },
        "file": crate::accounts::source_file(&snap.files, u),
        "namespace": u.namespace,
        "active_sessions": sessions.get(&*u.name).copied().unwrap_or(0),
    })
}

fn list(app: &App, snap: &Snapshot) -> Response<Body> {
    let counts = session_counts(app);
    let mut users: Vec<_> = snap.users.values().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let users: Vec<_> = users.iter().map(|u| user_json(snap, u, &counts)).collect();
    body::json(
        StatusCode::OK,
        &serde_json::json!({
            "users": users,
            "writable_file": snap.files.users_writable,
            "declarative_file": snap.files.users,
        }),
    )
}

fn sessions(app: &App) -> Response<Body> {
    let mut active = app.sessions.active();
    active.sort_by(|a, b| a.user.cmp(&b.user).then(a.created.cmp(&b.created)));
    let total = active.len();
    let list: Vec<_> = active
        .into_iter()
        .take(LIST_MAX)
        .map(|s| serde_json::json!({ "user": s.user, "created": s.created, "expires": s.expires }))
        .collect();
    body::json(
        StatusCode::OK,
        &serde_json::json!({ "sessions": list, "total": total }),
    )
}

/// Reads a JSON body (other content types are refused, which also keeps plain HTML forms of
/// other sites out).
async fn json_body<T: serde::de::DeserializeOwned>(
    snap: &Snapshot,
    req: Request<Incoming>,
    shape: &str,
) -> Result<T, Reject> {
    let is_json = crate::body::content_type(req.headers()).starts_with("application/json");
    if !is_json {
        return Err(Reject::UnsupportedMediaType(
            format!("send JSON {shape}").into(),
        ));
    }
    let (_, bytes) = read_small_body(req, snap.server.max_own_body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Reject::BadRequest(format!("send JSON {shape}: {e}").into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    username: String,
    /// Absent: the user can only come through an identity provider.
    password: Option<String>,
    /// Default: `["user"]`.
    roles: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
    password: Option<String>,
    #[serde(default)]
    revoke: bool,
}

async fn hash(app: &App, password: Option<String>) -> Result<Option<String>, Refused> {
    let Some(p) = password else { return Ok(None) };
    crate::accounts::check_password(&p).map_err(|e| Refused::Invalid(e.into()))?;
    app.passwords
        .hash(&p)
        .await
        .map(Some)
        .map_err(Refused::Failed)
}

async fn add(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    let b: AddBody = json_body(snap, req, "{\"username\", \"password\", \"roles\": [...]}").await?;
    if snap.files.users_writable.is_none() {
        return Err((&Refused::NotConfigured).into());
    }
    let password_hash = hash(app, b.password).await.map_err(|e| Reject::from(&e))?;
    let change = Change::Add {
        name: b.username,
        password_hash,
        roles: b.roles.unwrap_or_else(|| vec!["user".into()]),
    };
    write(app, snap, id, change, client_ip, StatusCode::CREATED).await
}

async fn edit(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    name: &str,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    let b: PatchBody = json_body(
        snap,
        req,
        "{\"roles\"?, \"disabled\"?, \"password\"?, \"revoke\"?: true}",
    )
    .await?;
    if snap.files.users_writable.is_none() {
        return Err((&Refused::NotConfigured).into());
    }
    let password_hash = hash(app, b.password).await.map_err(|e| Reject::from(&e))?;
    let edit = Edit {
        roles: b.roles,
        disabled: b.disabled,
        password_hash,
        revoke: b.revoke,
    };
    let change = Change::Update {
        name: name.to_owned(),
        edit,
    };
    write(app, snap, id, change, client_ip, StatusCode::OK).await
}

/// Applies a change on the blocking pool, reloads, and answers with the user as now loaded.
async fn write(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    change: Change,
    client_ip: IpAddr,
    ok: StatusCode,
) -> Result<Response<Body>, Reject> {
    let files = snap.files.clone();
    let c = change.clone();
    let result = tokio::task::spawn_blocking(move || change::apply(&files, &c, true))
        .await
        .unwrap_or_else(|e| Err(Refused::Failed(format!("change task failed: {e}"))));
    let name = change.name().to_owned();
    let applied = match result {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(target: "audit", event = "user_change_refused", user = %id.user.name, client_ip = %client_ip, target_user = %name, reason = %e, "user change refused");
            return Err((&e).into());
        }
    };
    let (event, what) = match &change {
        Change::Add { .. } => ("user_added", "added".to_string()),
        Change::Remove { .. } => ("user_removed", "removed".to_string()),
        Change::Update { edit, .. } => ("user_changed", describe(edit)),
    };
    tracing::info!(target: "audit", event, user = %id.user.name, client_ip = %client_ip, target_user = %name, reason = "admin API", change = %what, "user {what} by an administrator");
    let reload = app.reload_now().await;
    let live = app.config.get();
    let mut answer = match applied.users.get(name.as_str()) {
        Some(u) => user_json(&live, u, &session_counts(app)),
        None => serde_json::json!({ "name": name, "removed": true }),
    };
    if let Some(obj) = answer.as_object_mut() {
        obj.insert("live".into(), serde_json::Value::Bool(reload.is_ok()));
        if let Err(e) = reload {
            obj.insert(
                "warning".into(),
                serde_json::Value::String(format!(
                    "saved in {}, but the configuration did not reload: {e}",
                    applied.file.display()
                )),
            );
        }
    }
    Ok(body::json(ok, &answer))
}

/// What an edit changed, for the audit log (never the password).
fn describe(edit: &Edit) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &edit.roles {
        parts.push(format!("roles={}", r.join(",")));
    }
    if let Some(d) = edit.disabled {
        parts.push(format!("disabled={d}"));
    }
    if edit.password_hash.is_some() {
        parts.push("password".into());
    }
    if edit.revoke {
        parts.push("revoked".into());
    }
    format!("changed ({})", parts.join(", "))
}
