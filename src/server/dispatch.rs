//! The request pipeline: client IP → IP rules → bans → comfy-warden's own routes → identity →
//! (no identity: 302 to /login for browser navigations, 401 JSON otherwise) → WebSocket relay
//! or the tenancy route table (`tenancy::http::handle`), which forwards to ComfyUI. Every answer is
//! counted in the metrics (route class, status) and, over TLS, carries HSTS.
use super::own_routes;
use crate::app::App;
use crate::auth::{identity, query_token};
use crate::body::{self, Body};
use crate::guard::{client_ip, ip_rules};
use crate::reject::Reject;
use crate::tenancy::http::websocket;
use http::{Method, Request, Response, StatusCode, header};
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
    let wants_html = body::wants_html(req.headers());
    let mut resp = match route_request(app.clone(), conn, req).await {
        Ok(resp) => resp,
        Err(reject) => super::refusal::render(&reject, wants_html),
    };
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
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Reject> {
    let snap = app.config.get();
    let ip = client_ip::resolve(conn.peer, req.headers(), &snap.server.trusted_proxies);
    if !ip_rules::admits(&snap.ip_rules, ip) {
        tracing::info!(target: "audit", event = "ip_denied", client_ip = %ip, "request from a denied address");
        return Err(Reject::AddressRefused);
    }
    if app.lockout.is_banned(ip) {
        tracing::debug!(client_ip = %ip, "request from a banned address");
        return Err(Reject::AddressRefused);
    }
    let path = req.uri().path().to_owned();
    // Out of the URI before anything reads it (ComfyUI, logs, redirects): auth/query_token.rs.
    let query_token = if query_token::strips(&path) {
        query_token::take(req.uri_mut())
            .filter(|_| query_token::accepted(&path, snap.auth.query_token_view))
    } else {
        None
    };
    let method = req.method().clone();
    if !path.starts_with('/') {
        // Authority form (`GET host:port`) or `*`: not a resource comfy-warden serves.
        return Err(Reject::BadRequest(
            "the request target must be a path starting with '/'".into(),
        ));
    }
    if crate::tenancy::paths::has_encoded_unreserved(&path) {
        return Err(Reject::BadRequest(
            "the request path percent-encodes a letter, digit or one of '-._~'".into(),
        ));
    }
    if crate::tenancy::paths::is_ambiguous_request_path(&path) {
        return Err(Reject::AmbiguousPath);
    }

    // comfy-warden's own routes that need no identity.
    match path.as_str() {
        "/login" => {
            return match method {
                ref m if own_routes::is_get(m) => Ok(own_routes::login_page(&snap, &req)),
                Method::POST if cross_site(&conn, &snap, &req) => {
                    Err(refuse_cross_site(None, ip, &path))
                }
                Method::POST => super::login::login(&app, &snap, req, ip, conn.tls).await,
                _ => Err(Reject::MethodNotAllowed {
                    allow: "GET, HEAD, POST",
                }),
            };
        }
        p if super::oidc_routes::owns(p) => {
            return Ok(super::oidc_routes::handle(&app, &snap, req, ip, conn.tls).await);
        }
        super::second_factor::PATH => {
            return match method {
                Method::POST if cross_site(&conn, &snap, &req) => {
                    Err(refuse_cross_site(None, ip, &path))
                }
                Method::POST => {
                    Ok(super::second_factor::second_step(&app, &snap, req, ip, conn.tls).await)
                }
                _ => Err(Reject::MethodNotAllowed { allow: "POST" }),
            };
        }
        "/warden/health" => return Ok(own_routes::health()),
        super::setup::PATH => return super::setup::handle(&app, &snap, req, ip).await,
        "/warden/assets/warden.css" => return Ok(crate::pages::stylesheet()),
        "/warden/assets/favicon.svg" => return Ok(crate::pages::favicon()),
        super::extension::SCRIPT_PATH => {
            return super::extension::script(&method, req.headers());
        }
        _ => {}
    }

    let ident = match query_token {
        // An Authorization header wins; else the query token is the credential (an invalid
        // one does not fall back to the cookie).
        Some(t) if !req.headers().contains_key(header::AUTHORIZATION) => {
            identity::query_token_identity(app.verifiers(), &snap, &t)
        }
        _ => {
            identity::authenticate(
                app.verifiers(),
                &snap,
                req.headers(),
                conn.tls,
                conn.peer.ip(),
                ip,
            )
            .await?
        }
    };

    if let Some(id) = &ident
        && id.source.browser_attached()
        && cross_site(&conn, &snap, &req)
    {
        return Err(refuse_cross_site(Some(&id.user.name), ip, &path));
    }

    match path.as_str() {
        "/logout" => {
            return if method == Method::POST {
                Ok(own_routes::logout(&app, ident.as_ref(), &req, ip, conn.tls))
            } else {
                Err(Reject::MethodNotAllowed { allow: "POST" })
            };
        }
        "/warden/me" => {
            return match &ident {
                Some(id) => Ok(own_routes::me(id)),
                None => unauthenticated(&req),
            };
        }
        "/warden/metrics" => {
            return match &ident {
                Some(id) => super::admin::require_admin(id, &path, ip)
                    .map(|()| super::exposition::metrics_response(&app)),
                None => unauthenticated(&req),
            };
        }
        p if super::admin_users::owns(p) => {
            return match ident {
                Some(id) => super::admin_users::handle(&app, &snap, &id, req, ip).await,
                None => unauthenticated(&req),
            };
        }
        p if p.starts_with(super::admin::PREFIX) => {
            return match &ident {
                Some(id) => super::admin::handle(&app, &snap, id, &method, p, ip),
                None => unauthenticated(&req),
            };
        }
        "/warden/token" | "/warden/tokens" => {}
        p if p.starts_with("/warden/tokens/") => {}
        p if p.starts_with("/warden/") => return Err(Reject::NoSuchEndpoint),
        _ => {}
    }

    let Some(ident) = ident else {
        return unauthenticated(&req);
    };
    let req = if path.starts_with("/warden/token") {
        match super::tokens::route(&app, &snap, &ident, req, ip).await {
            Ok(answer) => return answer,
            Err(req) => req,
        }
    } else {
        req
    };
    if path.starts_with("/warden/") {
        return Err(Reject::NoSuchEndpoint);
    }

    if websocket::is_websocket_upgrade(&req) {
        if path == "/ws" || path == "/api/ws" {
            return websocket::relay(app.clone(), &snap, ident, req, ip, conn.tls).await;
        }
        return Err(Reject::NotFound("no WebSocket endpoint here".into()));
    }
    crate::tenancy::http::handle::handle(&app, &snap, &ident, req, ip, conn.tls).await
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
        websocket::is_websocket_upgrade(req),
        headers,
        &hosts,
        conn.tls,
    )
}

fn refuse_cross_site(user: Option<&str>, ip: std::net::IpAddr, path: &str) -> Reject {
    tracing::warn!(target: "audit", event = "csrf_refused", user = user.unwrap_or("-"), client_ip = %ip, route = %path, reason = "cross-site request", "cross-site request refused");
    Reject::CrossSite
}

/// Browser navigations go to the login page (coming back here afterwards); anything else gets
/// a 401 JSON answer.
fn unauthenticated(req: &Request<Incoming>) -> Result<Response<Body>, Reject> {
    if own_routes::is_get(req.method()) && body::wants_html(req.headers()) {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let next = own_routes::safe_next(Some(target));
        let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        return Ok(body::redirect(
            StatusCode::FOUND,
            &format!("/login?next={encoded}"),
        ));
    }
    Err(Reject::Unauthenticated)
}
