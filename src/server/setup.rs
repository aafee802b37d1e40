//! `/warden/setup`: the page and form that create the first administrator with the one-time
//! token of `accounts::setup` (no identity needed; exempt from the sign-in redirect).
//! `GET ?token=…` shows the form (or, without `files.users_writable`, how to add an
//! administrator by hand); `POST` (form or JSON `{token, username, password}`) checks the token
//! in constant time, claims it, writes the user with the administrator role into the writable
//! users file, reloads, and sends the browser to /login. Wrong token: 403; setup closed: 410.
use super::own_routes;
use crate::accounts::change::{self, Change};
use crate::accounts::setup::Check;
use crate::app::App;
use crate::body::read_small_body;
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::pages;
use crate::reject::Reject;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use std::net::IpAddr;

pub const PATH: &str = "/warden/setup";
const PAGE: &str = include_str!("../pages/setup.html");

const CLOSED: &str = "Setup is closed: an administrator exists. Sign in at /login.";
const WRONG: &str = "This setup link is not valid. Use the URL from comfy-warden's log (a new one is made at every start while no administrator exists).";
const NOT_WRITABLE: &str = "comfy-warden has no writable users file, so this page cannot create the administrator. Either set files.users_writable = \"users.local.toml\" under [files] in warden.toml (in the state directory when the configuration directory is read-only) and open this link again once the configuration has reloaded (or run `comfy-warden user add NAME --role admin --config DIR`), or make a hash with `comfy-warden hash-password` and add [users.NAME] with password_hash and roles = [\"admin\"] to the users file.";

pub async fn handle(
    app: &App,
    snap: &Snapshot,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    match req.method() {
        m if own_routes::is_get(m) => Ok(get(app, snap, &req)),
        &Method::POST => post(app, snap, req, client_ip).await,
        _ => Err(Reject::MethodNotAllowed {
            allow: "GET, HEAD, POST",
        }),
    }
}

fn form_page(
    status: StatusCode,
    token: &str,
    username: &str,
    error: Option<&str>,
) -> Response<Body> {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", pages::escape(e)))
        .unwrap_or_default();
    let html = pages::render(
        PAGE,
        &[
            ("error", &error),
            ("token", &pages::escape(token)),
            ("username", &pages::escape(username)),
        ],
    );
    pages::page(status, html)
}

fn message(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    pages::page(status, pages::message_page(title, text))
}

fn token_param(req: &Request<Incoming>) -> String {
    req.uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

fn get(app: &App, snap: &Snapshot, req: &Request<Incoming>) -> Response<Body> {
    let token = token_param(req);
    match app.setup.check(&token) {
        Check::Closed => message(StatusCode::GONE, "Setup is closed", CLOSED),
        Check::Wrong => message(StatusCode::FORBIDDEN, "Invalid setup link", WRONG),
        Check::Valid if snap.files.users_writable.is_none() => {
            message(StatusCode::OK, "Add an administrator", NOT_WRITABLE)
        }
        Check::Valid => form_page(StatusCode::OK, &token, "", None),
    }
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// The repetition on the form; JSON callers may leave it out.
    #[serde(default)]
    password2: Option<String>,
}

fn parse_form(bytes: &[u8]) -> SetupForm {
    let mut f = SetupForm {
        token: String::new(),
        username: String::new(),
        password: String::new(),
        password2: None,
    };
    for (k, v) in form_urlencoded::parse(bytes) {
        match &*k {
            "token" => f.token = v.into_owned(),
            "username" => f.username = v.into_owned(),
            "password" => f.password = v.into_owned(),
            "password2" => f.password2 = Some(v.into_owned()),
            _ => {}
        }
    }
    f
}

async fn post(
    app: &App,
    snap: &Snapshot,
    req: Request<Incoming>,
    client_ip: IpAddr,
) -> Result<Response<Body>, Reject> {
    let content_type = crate::body::content_type(req.headers());
    let json = content_type.starts_with("application/json");
    if !json && !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(Reject::UnsupportedMediaType(
            "send JSON {\"token\", \"username\", \"password\"} or the form".into(),
        ));
    }
    let (_, bytes) = read_small_body(req, snap.server.max_own_body).await?;
    let form = if json {
        serde_json::from_slice::<SetupForm>(&bytes).map_err(|_| {
            Reject::BadRequest("send JSON {\"token\", \"username\", \"password\"}".into())
        })?
    } else {
        parse_form(&bytes)
    };
    // Answers in the caller's format: the refusal for JSON, or the page (the form again, or a
    // message) with its words.
    let answer = |reject: Reject, with_form: bool| {
        if json {
            return Err(reject);
        }
        let (status, text) = (reject.status(), reject.message());
        Ok(if with_form {
            form_page(status, &form.token, &form.username, Some(&text))
        } else {
            let title = match status {
                StatusCode::GONE => "Setup is closed",
                StatusCode::FORBIDDEN => "Invalid setup link",
                _ => "Setup failed",
            };
            message(status, title, &text)
        })
    };
    match app.setup.check(&form.token) {
        Check::Closed => return answer(Reject::Gone(CLOSED.into()), false),
        Check::Wrong => {
            tracing::warn!(target: "audit", event = "setup_refused", client_ip = %client_ip, reason = "wrong setup token", "setup attempt with a wrong token");
            return answer(Reject::Forbidden(WRONG.into()), false);
        }
        Check::Valid => {}
    }
    if snap.files.users_writable.is_none() {
        return answer(Reject::Conflict(NOT_WRITABLE.into()), false);
    }
    let invalid = if !crate::config::valid_name(&form.username) {
        Some("Use 1-64 of A-Z a-z 0-9 . _ @ - for the user name, not starting with . or -.")
    } else if let Err(e) = crate::accounts::check_password(&form.password) {
        Some(e)
    } else if form.password2.as_ref().is_some_and(|p| *p != form.password) {
        Some("The passwords differ.")
    } else {
        None
    };
    if let Some(m) = invalid {
        return answer(Reject::BadRequest(m.into()), true);
    }
    let Some(role) = crate::accounts::admin_role(&snap.roles) else {
        return answer(
            Reject::Conflict(
                "No role has the \"admin\" permission (roles.toml redefines admin): fix roles.toml first.".into(),
            ),
            false,
        );
    };
    // From here on no other request can use the token.
    let claim = match app.setup.claim(&form.token) {
        Ok(c) => c,
        Err(Check::Wrong) => return answer(Reject::Forbidden(WRONG.into()), false),
        Err(_) => return answer(Reject::Gone(CLOSED.into()), false),
    };
    let files = snap.files.clone();
    let name = form.username.clone();
    let role2 = role.clone();
    let result = match app.passwords.hash(&form.password).await {
        Err(e) => Err(change::Refused::Failed(e)),
        Ok(hash) => tokio::task::spawn_blocking(move || {
            change::apply(
                &files,
                &Change::Add {
                    name,
                    password_hash: Some(hash),
                    roles: vec![role2],
                },
                false,
            )
        })
        .await
        .unwrap_or_else(|e| Err(change::Refused::Failed(format!("setup task failed: {e}")))),
    };
    let applied = match result {
        Ok(a) => a,
        Err(e) => {
            app.setup.release(claim);
            tracing::warn!(client_ip = %client_ip, error = %e, "setup could not create the administrator");
            return answer((&e).into(), e.status().is_client_error());
        }
    };
    drop(claim);
    tracing::warn!(target: "audit", event = "setup_admin_created", user = %form.username, client_ip = %client_ip, reason = "setup token", file = %applied.file.display(), "first administrator created through the setup page");
    if let Err(e) = app.reload_now().await {
        return answer(
            Reject::Internal(
                format!(
                    "The administrator was saved in {}, but the configuration did not reload: {e}",
                    applied.file.display()
                )
                .into(),
            ),
            false,
        );
    }
    Ok(if json {
        body::json(
            StatusCode::CREATED,
            &serde_json::json!({ "user": form.username, "roles": [role], "file": applied.file }),
        )
    } else {
        body::redirect(StatusCode::SEE_OTHER, "/login")
    })
}
