//! comfy-warden's administration endpoints (the `admin` permission; 401 without identity, 403
//! without the permission): `GET /warden/admin/guard` (password hashes computed, bans, locked
//! counters, open connections) and `DELETE /warden/admin/bans/{ip}` (lift a ban); the same
//! permission check guards `/warden/metrics`.
use crate::app::App;
use crate::auth::identity::Identity;
use crate::auth::roles::Permission;
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::guard::subject::Subject;
use http::{Method, Response, StatusCode};
use std::net::IpAddr;

pub const PREFIX: &str = "/warden/admin/";
const GUARD: &str = "/warden/admin/guard";
const BANS: &str = "/warden/admin/bans/";
/// At most this many bans and locked counters are listed.
const LIST_MAX: usize = 1000;

pub fn handle(
    app: &App,
    snap: &Snapshot,
    id: &Identity,
    method: &Method,
    path: &str,
    client_ip: IpAddr,
) -> Response<Body> {
    if let Some(refused) = require_admin(id, path, client_ip) {
        return refused;
    }
    if path == GUARD {
        if !super::own_routes::is_get(method) {
            return super::own_routes::method_not_allowed("GET, HEAD");
        }
        return guard(app, snap);
    }
    if let Some(raw) = path.strip_prefix(BANS) {
        if method != Method::DELETE {
            return super::own_routes::method_not_allowed("DELETE");
        }
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let Some(subject) = Subject::parse(&decoded) else {
            return body::error_json(
                StatusCode::BAD_REQUEST,
                "give an IP address (or an IPv6 /64)",
            );
        };
        let lifted = app.lockout.unban(subject);
        tracing::info!(target: "audit", event = "ip_unbanned", user = %id.user.name, client_ip = %client_ip, banned_ip = %subject, lifted, reason = "admin endpoint", "ban lifted by an administrator");
        return body::json(
            StatusCode::OK,
            &serde_json::json!({ "ip": subject.to_string(), "lifted": lifted }),
        );
    }
    body::error_json(StatusCode::NOT_FOUND, "no such comfy-warden endpoint")
}

/// `None` when `id` has the `admin` permission, else the 403 answer (audited).
pub fn require_admin(id: &Identity, path: &str, client_ip: IpAddr) -> Option<Response<Body>> {
    if id.user.can(Permission::Admin) {
        return None;
    }
    tracing::info!(target: "audit", event = "route_denied", user = %id.user.name, client_ip = %client_ip, route = %path, reason = "admin permission missing", "permission missing");
    Some(body::error_json(
        StatusCode::FORBIDDEN,
        "Your role does not allow this (it needs the \"admin\" permission).",
    ))
}

fn guard(app: &App, snap: &Snapshot) -> Response<Body> {
    let bans: Vec<_> = app
        .lockout
        .bans()
        .into_iter()
        .take(LIST_MAX)
        .map(|(s, until)| serde_json::json!({ "ip": s.to_string(), "until": until }))
        .collect();
    let mut locked = app.lockout.locked(&snap.lockout);
    locked.truncate(LIST_MAX);
    body::json(
        StatusCode::OK,
        &serde_json::json!({
            "password_hashes": app.passwords.computed(),
            "bans": bans,
            "locked": locked,
            "connections": app.connections.open(),
        }),
    )
}
