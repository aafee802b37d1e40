//! The request pipeline: client IP → IP rules → bans → comfy-warden's own routes → identity →
//! (no identity: 302 to /login for browser navigations, 401 JSON otherwise) → WebSocket relay
//! or the tenancy route table (`tenancy::handle`), which forwards to ComfyUI. Every answer is
//! counted in the metrics (route class, status) and, over TLS, carries HSTS.
use super::routes;
use crate::app::App;
use crate::auth::identity;
use crate::body::{self, Body};
use crate::guard::{client_ip, ip_rules};
use crate::proxy::upgrade;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the accept loop knows about a connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

pub async fn handle(
    app: Arc<App>,
    conn: Conn,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let route = crate::ops::metrics::route_class(req.uri().path());
    let Ok(mut resp) = route_request(app.clone(), conn, req).await;
    crate::ops::metrics::global().request(route, resp.status().as_u16());
    if conn.tls
        && let Some(hsts) = app
            .config
            .get()
            .server
            .tls
            .as_ref()
            .and_then(|t| t.hsts.clone())
    {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    Ok(resp)
}

async fn route_request(
    app: Arc<App>,
    conn: Conn,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let snap = app.config.get();
    let ip = client_ip::resolve(conn.peer, req.headers(), &snap.server.trusted_proxies);
    if !ip_rules::admits(&snap.ip_rules, ip) {
        tracing::info!(target: "audit", event = "ip_denied", client_ip = %ip, "request from a denied address");
        return Ok(super::pages::address_refused(req.headers()));
    }
    if app.lockout.is_banned(ip) {
        tracing::debug!(client_ip = %ip, "request from a banned address");
        return Ok(super::pages::address_refused(req.headers()));
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if !path.starts_with('/') {
        // Authority form (`GET host:port`) or `*`: not a resource comfy-warden serves.
        return Ok(body::error_json(
            StatusCode::BAD_REQUEST,
            "the request target must be a path starting with '/'",
        ));
    }
    if crate::tenancy::paths::has_encoded_unreserved(&path) {
        return Ok(body::error_json(
            StatusCode::BAD_REQUEST,
            "the request path percent-encodes a letter, digit or one of '-._~'",
        ));
    }
    if crate::tenancy::paths::is_ambiguous_request_path(&path) {
        return Ok(body::error_json(
            StatusCode::BAD_REQUEST,
            "the request path contains '.', '..' or empty segments",
        ));
    }

    // comfy-warden's own routes that need no identity.
    match path.as_str() {
        "/login" => {
            return Ok(match method {
                ref m if routes::is_get(m) => routes::login_page(&req),
                Method::POST if cross_site(&conn, &snap, &req) => {
                    refuse_cross_site(None, ip, &path)
                }
                Method::POST => routes::login(&app, &snap, req, ip, conn.tls).await,
                _ => routes::method_not_allowed("GET, HEAD, POST"),
            });
        }
        "/warden/health" => return Ok(routes::health()),
        super::setup::PATH => return Ok(super::setup::handle(&app, &snap, req, ip).await),
        "/warden/assets/warden.css" => return Ok(super::pages::stylesheet()),
        "/warden/assets/favicon.svg" => return Ok(super::pages::favicon()),
        super::extension::SCRIPT_PATH => {
            return Ok(super::extension::script(&method, req.headers()));
        }
        _ => {}
    }

    let ident = match identity::authenticate(
        &app,
        &snap,
        req.headers(),
        conn.tls,
        conn.peer.ip(),
        ip,
    )
    .await
    {
        Ok(i) => i,
        Err(identity::Refusal::Locked(wait)) => {
            let mut r = body::error_json(
                StatusCode::TOO_MANY_REQUESTS,
                &crate::guard::lockout::locked_message(wait),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return Ok(r);
        }
        Err(identity::Refusal::Busy) => {
            let mut r = body::error_json(
                StatusCode::TOO_MANY_REQUESTS,
                "too many sign-in attempts are being checked; try again shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(r);
        }
    };

    if let Some(id) = &ident
        && id.source.browser_attached()
        && cross_site(&conn, &snap, &req)
    {
        return Ok(refuse_cross_site(Some(&id.user.name), ip, &path));
    }

    match path.as_str() {
        "/logout" => {
            return Ok(if method == Method::POST {
                routes::logout(&app, ident.as_ref(), &req, ip, conn.tls)
            } else {
                routes::method_not_allowed("POST")
            });
        }
        "/warden/me" => {
            return Ok(match &ident {
                Some(id) => routes::me(id),
                None => unauthenticated(&req),
            });
        }
        "/warden/metrics" => {
            return Ok(match &ident {
                Some(id) => super::admin::require_admin(id, &path, ip)
                    .unwrap_or_else(|| super::conn::metrics_response(&app)),
                None => unauthenticated(&req),
            });
        }
        p if super::admin_users::owns(p) => {
            return Ok(match ident {
                Some(id) => super::admin_users::handle(&app, &snap, &id, req, ip).await,
                None => unauthenticated(&req),
            });
        }
        p if p.starts_with(super::admin::PREFIX) => {
            return Ok(match &ident {
                Some(id) => super::admin::handle(&app, &snap, id, &method, p, ip),
                None => unauthenticated(&req),
            });
        }
        "/warden/token" | "/warden/tokens" => {}
        p if p.starts_with("/warden/tokens/") => {}
        p if p.starts_with("/warden/") => {
            return Ok(body::error_json(
                StatusCode::NOT_FOUND,
                "no such comfy-warden endpoint",
            ));
        }
        _ => {}
    }

    let Some(ident) = ident else {
        return Ok(unauthenticated(&req));
    };
    let req = if path.starts_with("/warden/token") {
        match super::tokens::route(&app, &snap, &ident, req, ip).await {
            Ok(resp) => return Ok(resp),
            Err(req) => req,
        }
    } else {
        req
    };
    if path.starts_with("/warden/") {
        return Ok(body::error_json(
            StatusCode::NOT_FOUND,
            "no such comfy-warden endpoint",
        ));
    }

    if upgrade::is_websocket_upgrade(&req) {
        if path == "/ws" || path == "/api/ws" {
            return Ok(upgrade::relay(app.clone(), &snap, ident, req, ip, conn.tls).await);
        }
        return Ok(body::error_json(
            StatusCode::NOT_FOUND,
            "no WebSocket endpoint here",
        ));
    }
    Ok(crate::tenancy::handle::handle(&app, &snap, &ident, req, ip, conn.tls).await)
}

/// Is this a cross-site request a browser made on someone else's behalf (see `auth::csrf`)?
fn cross_site(conn: &Conn, snap: &crate::config::Snapshot, req: &Request<Incoming>) -> bool {
    let headers = req.headers();
    let mut hosts: Vec<&str> = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .collect();
    if client_ip::in_nets(conn.peer.ip(), &snap.server.trusted_proxies) {
        hosts.extend(
            headers
                .get("x-forwarded-host")
                .and_then(|v| v.to_str().ok()),
        );
    }
    crate::auth::csrf::is_cross_site(
        req.method(),
        upgrade::is_websocket_upgrade(req),
        headers,
        &hosts,
        conn.tls,
    )
}

fn refuse_cross_site(user: Option<&str>, ip: std::net::IpAddr, path: &str) -> Response<Body> {
    tracing::warn!(target: "audit", event = "csrf_refused", user = user.unwrap_or("-"), client_ip = %ip, route = %path, reason = "cross-site request", "cross-site request refused");
    body::error_json(
        StatusCode::FORBIDDEN,
        "This request came from another site and was refused. Reload ComfyUI and try again.",
    )
}

/// Browser navigations go to the login page (coming back here afterwards); anything else gets
/// a 401 JSON answer.
fn unauthenticated(req: &Request<Incoming>) -> Response<Body> {
    if routes::is_get(req.method()) && body::wants_html(req.headers()) {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let next = routes::safe_next(Some(target));
        let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        return body::redirect(StatusCode::FOUND, &format!("/login?next={encoded}"));
    }
    let mut r = body::error_json(
        StatusCode::UNAUTHORIZED,
        "authentication required: sign in at /login or send a token",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"comfy-warden\""),
    );
    r
}
