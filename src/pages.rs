//! comfy-warden's own HTML pages: small, self-contained (no external assets), rendered from
//! templates compiled into the binary with every substituted value HTML-escaped. Rendering
//! only (no routing), so every layer may answer with a page: the routes that serve them are in
//! `server/`.
use crate::body::{self, Body};
use http::{HeaderValue, Response, StatusCode, header};

pub mod refused;

const LOGIN: &str = include_str!("pages/login.html");
const MESSAGE: &str = include_str!("pages/message.html");
const TOKEN: &str = include_str!("pages/token.html");
const TOKEN_ISSUED: &str = include_str!("pages/token-issued.html");
pub(super) const TOTP_CODE: &str = include_str!("pages/totp-code.html");
pub(super) const TOTP_ENROL: &str = include_str!("pages/totp-enrol.html");
pub(super) const RECOVERY_CODES: &str = include_str!("pages/recovery-codes.html");
pub const CSS: &str = include_str!("pages/warden.css");
const FAVICON: &str = include_str!("pages/favicon.svg");

/// The Content-Security-Policy of every comfy-warden page: no scripts, our stylesheet only.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{{key}}` placeholders in one pass, so a value can never inject another placeholder.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let key = &after[..end];
            values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (end, *v))
        }) {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn login_page(next: &str, username: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" id=\"form-error\" role=\"alert\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    render(
        LOGIN,
        &[
            ("error", &error),
            ("next", &escape(next)),
            ("username", &escape(username)),
        ],
    )
}

pub fn token_page(user: &str, max: &str, error: Option<&str>) -> String {
    let message = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    render(
        TOKEN,
        &[
            ("message", &message),
            ("user", &escape(user)),
            ("max", &escape(max)),
        ],
    )
}

pub fn token_issued_page(label: &str, token: &str, expires: &str) -> String {
    render(
        TOKEN_ISSUED,
        &[
            ("label", &escape(label)),
            ("token", &escape(token)),
            ("expires", &escape(expires)),
        ],
    )
}

/// A short page with a way back to ComfyUI.
pub fn message_page(title: &str, message: &str) -> String {
    message_page_with(title, message, Some(("/", "Back to ComfyUI")))
}

/// A short page with an optional link (`href`, text) under the message.
pub fn message_page_with(title: &str, message: &str, link: Option<(&str, &str)>) -> String {
    let link = link
        .map(|(href, text)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(text)))
        .unwrap_or_default();
    render(
        MESSAGE,
        &[
            ("title", &escape(title)),
            ("message", &escape(message)),
            ("link", &link),
        ],
    )
}

/// A page answer with the strict CSP and anti-framing headers.
pub fn page(status: StatusCode, html: String) -> Response<Body> {
    let mut r = body::html(status, html);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

pub fn stylesheet() -> Response<Body> {
    asset(CSS, "text/css; charset=utf-8")
}

/// The pages' icon (`/warden/assets/favicon.svg`).
pub fn favicon() -> Response<Body> {
    asset(FAVICON, "image/svg+xml")
}

fn asset(content: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(content));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let p = login_page("/x\"><script>", "<b>", Some("a & b"));
        assert!(p.contains("/x&quot;&gt;&lt;script&gt;"));
        assert!(p.contains("&lt;b&gt;"));
        assert!(p.contains("a &amp; b"));
        assert!(!p.contains("<script>"));
    }

    #[test]
    fn one_pass_rendering() {
        assert_eq!(
            render("a {{x}} b {{y}} {{z}}", &[("x", "{{y}}"), ("y", "2")]),
            "a {{y}} b 2 {{z}}"
        );
        // A value that looks like a placeholder stays as it is.
        let p = login_page("/", "{{next}}", Some("{{username}}"));
        assert!(p.contains("value=\"{{next}}\""), "{p}");
        assert!(p.contains(">{{username}}</p>"), "{p}");
    }

    #[test]
    fn message_links_are_optional_and_escaped() {
        let with = message_page("T", "m");
        assert!(with.contains("<a href=\"/\">Back to ComfyUI</a>"));
        let without = message_page_with("T", "<m>", None);
        assert!(!without.contains("<a "));
        assert!(without.contains("&lt;m&gt;"));
        assert!(!without.contains("{{"));
    }
}
