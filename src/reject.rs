//! One typed refusal: every answer comfy-warden gives instead of doing what was asked (or
//! instead of ComfyUI's answer), with its status and the words a user reads kept beside each
//! variant. Handlers return a `Reject`; the server renders it in one place
//! (`server::refusal::render`: `{"error": "…"}` for programs, the styled page where a browser
//! navigates to something ComfyUI could not answer). This module knows no server and no `App`.
//!
//! ComfyUI's own answers (a `/prompt` 400 with `node_errors`, a 404 from `/view`) are not
//! refusals: they pass through as ComfyUI sent them.
use http::StatusCode;
use std::borrow::Cow;

/// Words chosen where the refusal is made (a validation message, a file name rule).
pub type Text = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// 400: something in the request is wrong; the text says what.
    BadRequest(Text),
    /// 400: the path has `.`, `..` or empty segments (read differently by different servers).
    AmbiguousPath,
    /// 400: the path (or the path and query) cannot be sent on.
    InvalidPath,
    /// 400 + `Sec-WebSocket-Version: 13`: a WebSocket version other than 13.
    WebSocketVersion,
    /// 401 with `WWW-Authenticate`: no identity (browser navigations are sent to /login instead).
    Unauthenticated,
    /// 401: a failed sign-in, whatever the reason (unknown user, disabled, wrong password), so
    /// nothing tells an attacker which names exist.
    LoginFailed,
    /// 401: HTTP Basic for a user who signs in with a second factor, which Basic cannot carry.
    BasicNeedsToken,
    /// 401 with words of its own (a sign-in step that must start again).
    Unauthorized(Text),
    /// 403 before anything else: the client's address is denied or banned. Programs get a
    /// bare `Forbidden`, browsers a self-contained page; neither says which rule applied.
    AddressRefused,
    /// 403 for anything this user may not do; the text says why.
    Forbidden(Text),
    /// 403: the user's role lacks this permission (its name).
    MissingPermission(&'static str),
    /// 403: a browser sent a state change (or a WebSocket) from another site.
    CrossSite,
    /// 403: a ComfyUI route outside the isolation table.
    RouteNotAllowed,
    /// 404 below `/warden/`.
    NoSuchEndpoint,
    /// 404 for anything else that does not exist (a token, a user); the text says what.
    NotFound(Text),
    /// 405 on comfy-warden's own endpoints, with the methods they take.
    MethodNotAllowed { allow: &'static str },
    /// 405 on a ComfyUI route whose method the isolation table refuses.
    MethodNotAllowedOnRoute,
    /// 410: something that existed is closed for good (the setup link once used).
    Gone(Text),
    /// 409: the change conflicts with the current state; the text says how.
    Conflict(Text),
    /// 413 for comfy-warden's own small bodies (sign-in, admin, queue edits, prompts).
    BodyTooLarge,
    /// 413 for an upload over `server.max_upload_bytes`.
    UploadTooLarge { limit: u64 },
    /// 415; the text says what to send.
    UnsupportedMediaType(Text),
    /// 429 + `Retry-After`: too many failed sign-ins from here.
    Locked { retry_after: u64 },
    /// 429 + `Retry-After: 1`: every password-checking thread is busy.
    Busy,
    /// 429: the user's queue limit (`tenancy.max_queued_per_user`) is reached.
    QueueFull { limit: usize },
    /// 500: something in comfy-warden failed; the text says what, without detail.
    Internal(Text),
    /// 503: ComfyUI runs in a way comfy-warden cannot isolate users in (the text says how).
    ComfyMisconfigured(Text),
    /// 502: ComfyUI cannot be reached (connection refused, reset, closed).
    UpstreamUnreachable,
    /// 504: ComfyUI did not send its answer within `upstream.response_timeout`.
    UpstreamTimeout,
    /// 502: ComfyUI answered a call comfy-warden made with this non-2xx status. `route` is a
    /// route class such as `/queue` (never a user's id or file name).
    UpstreamStatus { status: u16, route: Text },
    /// 502: ComfyUI's answer to a route comfy-warden filters was not what it can read (not
    /// JSON, not the expected shape). Nothing of it is passed on.
    UpstreamMalformed { route: Text },
}

impl Reject {
    pub fn status(&self) -> StatusCode {
        use Reject as R;
        match self {
            R::BadRequest(_) | R::AmbiguousPath | R::InvalidPath | R::WebSocketVersion => {
                StatusCode::BAD_REQUEST
            }
            R::Unauthenticated | R::LoginFailed | R::BasicNeedsToken | R::Unauthorized(_) => {
                StatusCode::UNAUTHORIZED
            }
            R::AddressRefused
            | R::Forbidden(_)
            | R::MissingPermission(_)
            | R::CrossSite
            | R::RouteNotAllowed => StatusCode::FORBIDDEN,
            R::NoSuchEndpoint | R::NotFound(_) => StatusCode::NOT_FOUND,
            R::MethodNotAllowed { .. } | R::MethodNotAllowedOnRoute => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            R::Conflict(_) => StatusCode::CONFLICT,
            R::Gone(_) => StatusCode::GONE,
            R::BodyTooLarge | R::UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            R::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            R::Locked { .. } | R::Busy | R::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            R::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            R::ComfyMisconfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            R::UpstreamUnreachable | R::UpstreamStatus { .. } | R::UpstreamMalformed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            R::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The words the user reads (the `error` of the JSON answer, the text of the page).
    pub fn message(&self) -> Cow<'_, str> {
        use Reject as R;
        match self {
            R::BadRequest(t)
            | R::Forbidden(t)
            | R::NotFound(t)
            | R::Conflict(t)
            | R::Gone(t)
            | R::Unauthorized(t)
            | R::UnsupportedMediaType(t)
            | R::Internal(t)
            | R::ComfyMisconfigured(t) => Cow::Borrowed(t),
            R::AmbiguousPath => "the request path contains '.', '..' or empty segments".into(),
            R::InvalidPath => "the request path is not valid".into(),
            R::WebSocketVersion => "only WebSocket version 13 is supported".into(),
            R::LoginFailed => LOGIN_FAILED.into(),
            R::BasicNeedsToken => BASIC_SECOND_FACTOR.into(),
            R::Unauthenticated => "authentication required: sign in at /login or send a token".into(),
            R::MissingPermission(p) => {
                format!("Your role does not allow this (it needs the \"{p}\" permission).").into()
            }
            R::CrossSite => "This request came from another site and was refused. Reload ComfyUI and try again.".into(),
            R::RouteNotAllowed => "This ComfyUI route is not available through comfy-warden (an operator can allow it with tenancy.allow_routes).".into(),
            R::AddressRefused => "This ComfyUI cannot be used from your network address. If you think this is a mistake, ask its administrator.".into(),
            R::NoSuchEndpoint => "no such comfy-warden endpoint".into(),
            R::MethodNotAllowed { .. } => "method not allowed".into(),
            R::MethodNotAllowedOnRoute => "method not allowed on this route".into(),
            R::BodyTooLarge => "the request body is too large".into(),
            R::UploadTooLarge { limit } => {
                format!("the upload is larger than the limit of {limit} bytes").into()
            }
            R::Locked { retry_after } => locked_message(*retry_after).into(),
            R::Busy => "too many sign-in attempts are being checked; try again shortly".into(),
            R::QueueFull { limit } => format!(
                "You already have {limit} prompts queued or running, the most allowed. Wait for one to finish."
            )
            .into(),
            R::UpstreamUnreachable => "ComfyUI is unreachable right now. It may be starting or restarting; please try again shortly.".into(),
            R::UpstreamTimeout => "ComfyUI did not answer in time. Please try again.".into(),
            R::UpstreamStatus { status, route } => {
                format!("ComfyUI answered {status} to {route}. Please try again; if it keeps happening, ComfyUI's log says why.").into()
            }
            R::UpstreamMalformed { .. } => "ComfyUI sent an answer comfy-warden could not read. Please try again; if it keeps happening, ComfyUI's log says why.".into(),
        }
    }

    /// Seconds for `Retry-After`, where waiting helps and the wait is known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Reject::Locked { retry_after } => Some(*retry_after),
            Reject::Busy => Some(1),
            _ => None,
        }
    }

    /// The methods for `Allow`.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Reject::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }

    /// The title of the page a browser navigation gets instead of JSON; `None`: JSON for all.
    /// Pages are for what stands between a user and ComfyUI itself (ComfyUI down, slow,
    /// broken or misconfigured); every other refusal answers a program's request.
    pub fn page_title(&self) -> Option<&'static str> {
        match self {
            Reject::UpstreamUnreachable
            | Reject::UpstreamTimeout
            | Reject::UpstreamStatus { .. }
            | Reject::UpstreamMalformed { .. } => Some("ComfyUI is unavailable"),
            Reject::ComfyMisconfigured(_) => Some("ComfyUI is misconfigured"),
            _ => None,
        }
    }
}

/// The one answer for every failed sign-in.
pub const LOGIN_FAILED: &str = "Invalid user name or password.";

/// The answer to HTTP Basic for a user who signs in with a second factor.
pub const BASIC_SECOND_FACTOR: &str = "this account signs in with a second factor, which HTTP Basic cannot carry: create an API token at /warden/token and send it as \"Authorization: Bearer <token>\"";

/// The words of a sign-in lockout (the login page shows them too).
pub fn locked_message(secs: u64) -> String {
    format!("Too many failed sign-ins. Try again in {secs} seconds.")
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_say_what_happened() {
        assert_eq!(Reject::UpstreamUnreachable.status(), 502);
        assert!(
            Reject::UpstreamUnreachable
                .message()
                .contains("unreachable")
        );
        assert_eq!(Reject::UpstreamTimeout.status(), 504);
        assert!(
            Reject::UpstreamTimeout
                .message()
                .contains("did not answer in time")
        );
        let s = Reject::UpstreamStatus {
            status: 500,
            route: "/queue".into(),
        };
        assert_eq!(s.status(), 502);
        assert!(
            s.message().starts_with("ComfyUI answered 500 to /queue."),
            "{}",
            s.message()
        );
        let m = Reject::UpstreamMalformed {
            route: "/history".into(),
        };
        assert_eq!(m.status(), 502);
        assert!(m.message().contains("could not read"));
        for r in [Reject::UpstreamUnreachable, Reject::UpstreamTimeout, s, m] {
            assert_eq!(r.page_title(), Some("ComfyUI is unavailable"));
            assert!(!r.message().contains("unreachable") || r == Reject::UpstreamUnreachable);
        }
    }

    #[test]
    fn headers_beside_the_variants_that_need_them() {
        assert_eq!(Reject::Busy.retry_after(), Some(1));
        assert_eq!(Reject::Locked { retry_after: 7 }.retry_after(), Some(7));
        assert!(
            Reject::Locked { retry_after: 7 }
                .message()
                .contains("7 seconds")
        );
        assert_eq!(Reject::QueueFull { limit: 2 }.retry_after(), None);
        assert_eq!(Reject::QueueFull { limit: 2 }.status(), 429);
        let m = Reject::MethodNotAllowed { allow: "GET, HEAD" };
        assert_eq!((m.status().as_u16(), m.allow()), (405, Some("GET, HEAD")));
        assert_eq!(Reject::MethodNotAllowedOnRoute.allow(), None);
        assert_eq!(Reject::NoSuchEndpoint.page_title(), None);
    }

    #[test]
    fn display_is_status_and_words() {
        assert_eq!(
            Reject::MissingPermission("admin").to_string(),
            "403 Your role does not allow this (it needs the \"admin\" permission)."
        );
    }
}
