//! The one place a [`Reject`] becomes an answer: `{"error": "…"}` with its status for
//! programs, or, for a browser asking for a page where the refusal has one (ComfyUI down,
//! slow, broken, misconfigured), the styled message page. `Retry-After`, `Allow` and
//! `WWW-Authenticate` come from the refusal itself. A refused address is the one exception to
//! the JSON shape (`pages::address_refused`: a bare `Forbidden`, or a page with its stylesheet
//! inline).
use crate::body::{self, Body};
use crate::pages;
use crate::reject::Reject;
use http::{HeaderValue, Response, header};

/// Renders `reject`; `wants_html`: the request asked for a page (`body::wants_html`).
pub fn render(reject: &Reject, wants_html: bool) -> Response<Body> {
    if *reject == Reject::AddressRefused {
        return pages::refused::address_refused(wants_html);
    }
    let status = reject.status();
    let message = reject.message();
    let mut r = match reject.page_title() {
        Some(title) if wants_html => pages::page(status, pages::message_page(title, &message)),
        _ => body::json(status, &serde_json::json!({ "error": message })),
    };
    let h = r.headers_mut();
    if let Some(secs) = reject.retry_after() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = reject.allow() {
        h.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if *reject == Reject::WebSocketVersion {
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    if *reject == Reject::Unauthenticated {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"comfy-warden\""),
        );
    }
    r
}

/// Renders a refusal for a program (JSON, whatever the client accepts).
pub fn json(reject: &Reject) -> Response<Body> {
    render(reject, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(r: Response<Body>) -> String {
        let b = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn programs_get_the_error_json_shape() {
        let r = render(&Reject::NoSuchEndpoint, true);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "no such comfy-warden endpoint"})
        );
    }

    #[tokio::test]
    async fn browsers_get_a_page_where_comfyui_failed() {
        let reject = Reject::UpstreamStatus {
            status: 500,
            route: "/queue".into(),
        };
        let page = render(&reject, true);
        assert_eq!(page.status(), 502);
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = text(page).await;
        assert!(html.contains("ComfyUI is unavailable"), "{html}");
        assert!(html.contains("ComfyUI answered 500 to /queue."), "{html}");
        let api = render(&reject, false);
        assert_eq!(api.status(), 502);
        let v: serde_json::Value = serde_json::from_str(&text(api).await).unwrap();
        assert_eq!(v["error"], reject.message().as_ref());
        assert_eq!(
            render(&Reject::UpstreamTimeout, true).status(),
            504,
            "a page keeps the status"
        );
    }

    #[test]
    fn headers_ride_with_the_refusal() {
        let busy = json(&Reject::Busy);
        assert_eq!(busy.status(), 429);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let locked = json(&Reject::Locked { retry_after: 30 });
        assert_eq!(locked.headers()[header::RETRY_AFTER], "30");
        assert!(
            json(&Reject::QueueFull { limit: 1 })
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
        let m = json(&Reject::MethodNotAllowed { allow: "POST" });
        assert_eq!(m.status(), 405);
        assert_eq!(m.headers()[header::ALLOW], "POST");
        let u = render(&Reject::Unauthenticated, true);
        assert_eq!(u.status(), 401);
        assert_eq!(
            u.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"comfy-warden\""
        );
        assert_eq!(u.headers()[header::CONTENT_TYPE], "application/json");
    }
}
