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
use crate::reject::Reject;
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
) -> Result<Response<Body>, Reject> {
    require_admin(id, path, client_ip)?;
    if path == GUARD {
        if !super::own_routes::is_get(method) {
            return Err(Reject::MethodNotAllowed { allow: "GET, HEAD" });
        }
        return Ok(guard(app, snap));
    }
    if let Some(raw) = path.strip_prefix(BANS) {
        if method != Method::DELETE {
            return Err(Reject::MethodNotAllowed { allow: "DELETE" });
        }
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let Some(subject) = Subject::parse(&decoded) else {
            return Err(Reject::BadRequest(
                "give an IP address (or an IPv6 /64)".into(),
            ));
        };
        let lifted = app.lockout.unban(subject);
        tracing::info!(target: "audit", event = "ip_unbanned", user = %id.user.name, client_ip = %client_ip, banned_ip = %subject, lifted, reason = "admin endpoint", "ban lifted by an administrator");
        return Ok(body::json(
            StatusCode::OK,
            &serde_json::json!({ "ip": subject.to_string(), "lifted": lifted }),
        ));
    }
    Err(Reject::NoSuchEndpoint)
}

/// `Ok` when `id` has the `admin` permission, else the 403 refusal (audited).
pub fn require_admin(id: &Identity, path: &str, client_ip: IpAddr) -> Result<(), Reject> {
    if id.user.can(Permission::Admin) {
        return Ok(());
    }
    tracing::info!(target: "audit", event = "route_denied", user = %id.user.name, client_ip = %client_ip, route = %path, reason = "admin permission missing", "permission missing");
    Err(Reject::MissingPermission(Permission::Admin.name()))
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
