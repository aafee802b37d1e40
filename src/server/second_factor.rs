//! The second sign-in step. After the right password (`login::login`), [`after_password`]
//! decides: sign in, ask for a code (401 `totp_required` with a signed ticket: the login page
//! shows a second form, JSON clients may also send `totp` with the password at once), or lead
//! a user whose role requires a second factor through enrolment (QR code and key, one code to
//! confirm). `POST /login/second-factor` ([`second_step`]) takes the ticket and the code.
//! Wrong codes count for the lockout like wrong passwords; a code is accepted once.
use crate::app::App;
use crate::auth::second_factor::{self as sf, Accepted, Need, Ticket};
use crate::auth::totp::{self, Secret};
use crate::body::{self, Body};
use crate::clock::now_secs;
use crate::config::{Snapshot, User};
use crate::pages;
use crate::reject::Reject;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub const PATH: &str = "/login/second-factor";

const ASK_CODE: &str = "Enter the 6-digit code from your authenticator app (or a recovery code).";
const WRONG_CODE: &str = "Invalid code.";
const ASK_ENROL: &str = "Your account needs a second factor: add the key to an authenticator app, then confirm one code.";
const TICKET_GONE: &str = "This sign-in has expired; sign in again.";

/// How the sign-in was completed, for the answer and the audit log.
#[derive(Debug, Default)]
pub struct Done {
    /// `"totp"` or `"recovery_code"`; `None`: the password alone.
    pub second_factor: Option<&'static str>,
    /// Recovery codes left after one was used.
    pub recovery_left: Option<usize>,
    /// Fresh recovery codes (enrolment just finished): shown once.
    pub new_recovery_codes: Option<Vec<String>>,
}

impl Done {
    /// Fields added to the JSON answer of a successful sign-in.
    pub fn json_fields(&self, obj: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(how) = self.second_factor {
            obj.insert("second_factor".into(), how.into());
        }
        if let Some(left) = self.recovery_left {
            obj.insert("recovery_codes_left".into(), left.into());
        }
        if let Some(codes) = &self.new_recovery_codes {
            obj.insert("recovery_codes".into(), codes.clone().into());
        }
    }

    /// The page a browser gets instead of the redirect, when there is something to show.
    pub fn page(&self, next: &str) -> Option<Response<Body>> {
        let codes = self.new_recovery_codes.as_ref()?;
        let items: String = codes
            .iter()
            .map(|c| format!("    <li><code>{}</code></li>\n", pages::escape(c)))
            .collect();
        Some(pages::page(
            StatusCode::OK,
            pages::render(
                pages::RECOVERY_CODES,
                &[
                    ("title", "Recovery codes"),
                    ("codes", &items),
                    ("next", &pages::escape(next)),
                ],
            ),
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Response<Body>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read or write the second-factor state");
            Err(unavailable())
        }
        Err(e) => {
            tracing::error!(error = %e, "second-factor task failed");
            Err(unavailable())
        }
    }
}

fn unavailable() -> Response<Body> {
    super::refusal::json(&Reject::Internal(
        "the second factor cannot be checked right now".into(),
    ))
}

/// Called once the password was right (nothing counted yet). `Ok`: sign in now. `Err`: the
/// answer to give instead (a code or enrolment is needed, or the code was wrong).
pub async fn after_password(
    app: &App,
    snap: &Snapshot,
    user: &Arc<User>,
    code: Option<&str>,
    json: bool,
    next: &str,
    client_ip: IpAddr,
) -> Result<Done, Response<Body>> {
    let state_dir = snap.files.state_dir.clone();
    let u = user.clone();
    match blocking(move || sf::need(&state_dir, &u)).await? {
        Need::Nothing => Ok(Done::default()),
        Need::Code(secret) => match code {
            None => Err(ask_code(app, user, json, next, ASK_CODE)),
            Some(c) => check_code(app, snap, user, secret, c, json, next, client_ip).await,
        },
        Need::Enrol => Err(ask_enrol(
            app,
            user,
            &Secret::generate(),
            json,
            next,
            ASK_ENROL,
        )),
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_code(
    app: &App,
    snap: &Snapshot,
    user: &Arc<User>,
    secret: Secret,
    code: &str,
    json: bool,
    next: &str,
    client_ip: IpAddr,
) -> Result<Done, Response<Body>> {
    if code.len() > 64 {
        return Err(wrong_code(app, snap, user, json, next, client_ip));
    }
    let (state_dir, name, input) = (
        snap.files.state_dir.clone(),
        user.name.to_string(),
        code.to_owned(),
    );
    let accepted =
        blocking(move || sf::verify(&state_dir, &name, &secret, &input, now_secs())).await?;
    match accepted {
        Some(Accepted::Code) => Ok(Done {
            second_factor: Some("totp"),
            ..Done::default()
        }),
        Some(Accepted::Recovery { left }) => {
            tracing::warn!(target: "audit", event = "recovery_code_used", user = %user.name, client_ip = %client_ip, left, "a recovery code was used");
            Ok(Done {
                second_factor: Some("recovery_code"),
                recovery_left: Some(left),
                ..Done::default()
            })
        }
        None => Err(wrong_code(app, snap, user, json, next, client_ip)),
    }
}

fn wrong_code(
    app: &App,
    snap: &Snapshot,
    user: &Arc<User>,
    json: bool,
    next: &str,
    client_ip: IpAddr,
) -> Response<Body> {
    tracing::warn!(target: "audit", event = "login_failed", user = %user.name, client_ip = %client_ip, route = PATH, reason = "wrong second factor", "failed sign-in");
    crate::guard::lockout::record_failure(&app.lockout, snap, &user.name, client_ip);
    ask_code(app, user, json, next, WRONG_CODE)
}

/// 401 asking for a code, with a fresh ticket for the second step.
fn ask_code(app: &App, user: &User, json: bool, next: &str, message: &str) -> Response<Body> {
    let ticket = app.tickets.issue(user, None, now_secs());
    if json {
        return body::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": message, "totp_required": true, "ticket": ticket}),
        );
    }
    let error = format!(
        "<p class=\"{}\" id=\"form-error\" role=\"alert\">{}</p>",
        if message == ASK_CODE { "note" } else { "error" },
        pages::escape(message)
    );
    pages::page(
        StatusCode::UNAUTHORIZED,
        pages::render(
            pages::TOTP_CODE,
            &[
                ("title", "Second factor"),
                ("error", &error),
                ("next", &pages::escape(next)),
                ("ticket", &pages::escape(&ticket)),
            ],
        ),
    )
}

/// 401 leading through enrolment: the new secret (QR code, key, `otpauth://` URI) and a
/// ticket that carries it to the confirmation.
fn ask_enrol(
    app: &App,
    user: &User,
    secret: &Secret,
    json: bool,
    next: &str,
    message: &str,
) -> Response<Body> {
    let ticket = app.tickets.issue(user, Some(secret), now_secs());
    let uri = totp::otpauth_uri(&user.name, secret);
    if json {
        return body::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({
                "error": message,
                "totp_required": true,
                "enrolment_required": true,
                "ticket": ticket,
                "secret": secret.to_base32(),
                "otpauth_uri": uri,
            }),
        );
    }
    let qr = totp::qr_svg(&uri).unwrap_or_default();
    let key = grouped(&secret.to_base32());
    let error = if message == ASK_ENROL {
        String::new()
    } else {
        format!(
            "<p class=\"error\" id=\"form-error\" role=\"alert\">{}</p>",
            pages::escape(message)
        )
    };
    pages::page(
        StatusCode::UNAUTHORIZED,
        pages::render(
            pages::TOTP_ENROL,
            &[
                ("title", "Set up a second factor"),
                ("error", &error),
                ("qr", &qr),
                ("key", &pages::escape(&key)),
                ("next", &pages::escape(next)),
                ("ticket", &pages::escape(&ticket)),
            ],
        ),
    )
}

/// `ABCD EFGH …`, easier to type.
fn grouped(key: &str) -> String {
    key.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize)]
struct StepForm {
    ticket: String,
    totp: String,
    #[serde(default)]
    next: Option<String>,
}

fn parse_form(bytes: &[u8]) -> Option<StepForm> {
    let (mut ticket, mut totp, mut next) = (None, None, None);
    for (k, v) in form_urlencoded::parse(bytes) {
        match &*k {
            "ticket" if ticket.is_none() => ticket = Some(v.into_owned()),
            "totp" if totp.is_none() => totp = Some(v.into_owned()),
            "next" if next.is_none() => next = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(StepForm {
        ticket: ticket?,
        totp: totp?,
        next,
    })
}

/// `POST /login/second-factor`: `{"ticket", "totp", "next"}` as JSON or a form.
pub async fn second_step(
    app: &App,
    snap: &Snapshot,
    req: Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
) -> Response<Body> {
    let content_type = body::content_type(req.headers());
    let json = content_type.starts_with("application/json");
    if !json && !content_type.starts_with("application/x-www-form-urlencoded") {
        return super::refusal::json(&Reject::UnsupportedMediaType(
            "send JSON {\"ticket\", \"totp\"} or a form".into(),
        ));
    }
    let (_, bytes) = match crate::body::read_small_body(req, snap.server.max_own_body).await {
        Ok(b) => b,
        Err(r) => return super::refusal::json(&r),
    };
    let form = if json {
        serde_json::from_slice::<StepForm>(&bytes).ok()
    } else {
        parse_form(&bytes)
    };
    let Some(form) = form else {
        return super::refusal::json(&Reject::BadRequest("send a ticket and a code".into()));
    };
    let next = super::own_routes::safe_next(form.next.as_deref());
    let Some((user, ticket)) = open_ticket(app, snap, &form.ticket) else {
        return if json {
            super::refusal::json(&Reject::Unauthorized(TICKET_GONE.into()))
        } else {
            pages::page(
                StatusCode::UNAUTHORIZED,
                pages::login_page(&next, "", Some(TICKET_GONE)),
            )
        };
    };
    if let Some(wait) = app.lockout.check(&snap.lockout, &user.name, client_ip) {
        let message = crate::reject::locked_message(wait);
        let mut r = if json {
            super::refusal::json(&Reject::Locked { retry_after: wait })
        } else {
            pages::page(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login_page(&next, &user.name, Some(&message)),
            )
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    let done = match &ticket.enrol {
        Some(b32) => {
            match confirm_enrolment(app, snap, &user, b32, &form.totp, json, &next, client_ip).await
            {
                Ok(d) => d,
                Err(r) => return r,
            }
        }
        None => {
            match after_password(app, snap, &user, Some(&form.totp), json, &next, client_ip).await {
                Ok(d) => d,
                Err(r) => return r,
            }
        }
    };
    sign_in(app, snap, &user, json, &next, tls, client_ip, &done)
        .unwrap_or_else(|r| super::refusal::render(&r, !json))
}

fn open_ticket(app: &App, snap: &Snapshot, raw: &str) -> Option<(Arc<User>, Ticket)> {
    let ticket = app.tickets.open(raw, now_secs())?;
    let user = snap.user(&ticket.sub)?.clone();
    app.tickets
        .still_holds(&ticket, &user)
        .then_some((user, ticket))
}

#[allow(clippy::too_many_arguments)]
async fn confirm_enrolment(
    app: &App,
    snap: &Snapshot,
    user: &Arc<User>,
    secret_b32: &str,
    code: &str,
    json: bool,
    next: &str,
    client_ip: IpAddr,
) -> Result<Done, Response<Body>> {
    let Ok(secret) = Secret::from_base32(secret_b32) else {
        return Err(super::refusal::json(&Reject::BadRequest(
            TICKET_GONE.into(),
        )));
    };
    let Some(step) = secret.matching_step(code, now_secs(), None) else {
        tracing::warn!(target: "audit", event = "login_failed", user = %user.name, client_ip = %client_ip, route = PATH, reason = "wrong enrolment code", "failed sign-in");
        crate::guard::lockout::record_failure(&app.lockout, snap, &user.name, client_ip);
        return Err(ask_enrol(app, user, &secret, json, next, WRONG_CODE));
    };
    let state_dir: PathBuf = snap.files.state_dir.clone();
    let name = user.name.to_string();
    let enrolled = blocking(move || sf::enrol(&state_dir, &name, &secret, step)).await?;
    match enrolled {
        Ok(codes) => {
            tracing::info!(target: "audit", event = "totp_enrolled", user = %user.name, client_ip = %client_ip, via = "browser", "second factor set up");
            Ok(Done {
                second_factor: Some("totp"),
                recovery_left: None,
                new_recovery_codes: Some(codes),
            })
        }
        Err(sf::AlreadyEnrolled) => Err(if json {
            super::refusal::json(&Reject::Conflict(
                "a second factor is already set up; sign in again".into(),
            ))
        } else {
            pages::page(
                StatusCode::CONFLICT,
                pages::login_page(
                    next,
                    &user.name,
                    Some("A second factor is already set up; sign in again."),
                ),
            )
        }),
    }
}

/// `/warden/admin/users/{name}` + this: the user's second factor.
pub const ADMIN_SUFFIX: &str = "/totp";

/// `GET /warden/admin/users/{name}/totp` (what the user has) and `DELETE` (remove the second
/// factor kept in the state directory; audited). The caller checked the `admin` permission.
pub async fn admin(
    snap: &Snapshot,
    id: &crate::auth::identity::Identity,
    raw_name: &str,
    method: &http::Method,
    client_ip: IpAddr,
) -> Response<Body> {
    let name = percent_encoding::percent_decode_str(raw_name)
        .decode_utf8_lossy()
        .into_owned();
    let Some(user) = snap.user(&name).cloned() else {
        return super::refusal::json(&Reject::NotFound(format!("no user {name:?}").into()));
    };
    let state_dir = snap.files.state_dir.clone();
    if super::own_routes::is_get(method) {
        let u = user.clone();
        let record = match blocking(move || sf::load(&state_dir, &u.name)).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let enrolled = record.as_ref().is_some_and(|r| r.secret.is_some());
        return body::json(
            StatusCode::OK,
            &serde_json::json!({
                "user": &*user.name,
                "required": user.require_totp,
                "secret": if user.totp_secret.is_some() { "totp_secret_file" } else if enrolled { "state_dir" } else { "none" },
                "recovery_codes_left": record.map(|r| r.recovery.len()).unwrap_or(0),
            }),
        );
    }
    if method != http::Method::DELETE {
        return super::refusal::json(&Reject::MethodNotAllowed {
            allow: "GET, HEAD, DELETE",
        });
    }
    let n = user.name.to_string();
    let removed = match blocking(move || sf::reset(&state_dir, &n)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if removed {
        tracing::warn!(target: "audit", event = "totp_reset", user = %id.user.name, client_ip = %client_ip, target_user = %user.name, reason = "admin API", "second factor removed by an administrator");
    }
    body::json(
        StatusCode::OK,
        &serde_json::json!({
            "user": &*user.name,
            "removed": removed,
            "still_from_users_file": user.totp_secret.is_some(),
        }),
    )
}

/// Every factor was right: a session cookie (and, for JSON, the token) for `user`.
#[allow(clippy::too_many_arguments)]
pub fn sign_in(
    app: &App,
    snap: &Snapshot,
    user: &crate::config::User,
    json: bool,
    next: &str,
    tls: bool,
    client_ip: IpAddr,
    done: &Done,
) -> Result<Response<Body>, Reject> {
    app.lockout.success(&user.name, client_ip);
    let (token, claims) = match app.keys.issue(
        &user.name,
        user.token_version,
        snap.auth.session_ttl,
        crate::auth::session::TokenKind::Session,
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a session");
            return Err(Reject::Internal("cannot create a session right now".into()));
        }
    };
    app.sessions.started(&claims);
    tracing::info!(target: "audit", event = "login_ok", user = %user.name, client_ip = %client_ip, second_factor = done.second_factor, "signed in");
    let cookie = match super::own_routes::session_cookie(
        crate::auth::identity::cookie_name(tls),
        token.clone(),
        tls,
        snap.auth.session_ttl,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the session cookie");
            return Err(Reject::Internal("cannot create a session right now".into()));
        }
    };
    let mut resp = if json {
        let mut answer = serde_json::json!({
            "jwt_token": token,
            "token_type": "Bearer",
            "expires_in": snap.auth.session_ttl.as_secs(),
            "user": &*user.name,
        });
        if let Some(obj) = answer.as_object_mut() {
            done.json_fields(obj);
        }
        body::json(StatusCode::OK, &answer)
    } else {
        done.page(next)
            .unwrap_or_else(|| body::redirect(StatusCode::SEE_OTHER, next))
    };
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_grouped_for_typing() {
        assert_eq!(super::grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }

    #[test]
    fn forms_need_ticket_and_code() {
        let f = super::parse_form(b"ticket=t&totp=123456&next=%2Fx").unwrap();
        assert_eq!((f.ticket.as_str(), f.totp.as_str()), ("t", "123456"));
        assert_eq!(f.next.as_deref(), Some("/x"));
        assert!(super::parse_form(b"ticket=t").is_none());
    }
}
