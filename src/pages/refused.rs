//! The answer to a client refused by its address (IP rules or a ban). Programs get a bare
//! `Forbidden`; a browser gets a short page saying that its network address is not allowed,
//! without saying which rule applied (a deny entry, a missing allow entry and a ban look the
//! same). The page carries its stylesheet inline (allowed by hash), because a refused address
//! cannot fetch `/warden/assets/warden.css` either.
use super::{CSS, message_page_with};
use crate::body::{self, Body};
use base64::Engine;
#[cfg(test)]
use http::StatusCode;
use http::{HeaderValue, Response, header};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const LINKS: &str = "<link rel=\"icon\" href=\"/warden/assets/favicon.svg\" type=\"image/svg+xml\">\n<link rel=\"stylesheet\" href=\"/warden/assets/warden.css\">";

fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// The answer to [`Reject::AddressRefused`](crate::reject::Reject::AddressRefused) (rendered
/// by `server::refusal`); `wants_html`: the client asked for a page.
pub fn address_refused(wants_html: bool) -> Response<Body> {
    let reject = crate::reject::Reject::AddressRefused;
    if !wants_html {
        return body::text(reject.status(), "Forbidden\n");
    }
    let html = message_page_with("Access not allowed", &reject.message(), None)
        .replace(LINKS, &format!("<style>{CSS}</style>"));
    let mut r = body::html(reject.status(), html);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn programs_get_a_bare_403_browsers_a_styled_page() {
        let r = address_refused(false);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(header::CONTENT_SECURITY_POLICY).is_none());
        let r = address_refused(true);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        let page = r.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8_lossy(&page);
        assert!(page.contains("<style>"), "the stylesheet is inline");
        assert!(
            !page.contains("/warden/assets/"),
            "nothing a refused address cannot fetch"
        );
        assert!(page.contains("Access not allowed"));
    }
}
