//! comfy-warden's frontend extension over HTTP (the browser side is `tests/it/browser.rs`): the
//! `/extensions` list gains the script, the script is served without an identity with sensible
//! caching, the 401 that sends a canvas back to the login page names comfy-warden, and a refused
//! address gets a page in a browser but a bare 403 elsewhere.

use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, get};
use crate::support::tenants;

const SCRIPT: &str = "/warden/ext/comfy-warden.js";

#[tokio::test]
async fn extensions_list_gains_the_script_once() {
    let t = tenants::start().await;
    let upstream = Double::recording("extensions.json")["body"].clone();
    for path in ["/extensions", "/api/extensions"] {
        for who in [&t.alice, &t.root] {
            let r = t.get(who, path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with("application/json")),
                "{path}"
            );
            let list = r.json();
            let list = list.as_array().unwrap();
            assert_eq!(list.last().and_then(|v| v.as_str()), Some(SCRIPT), "{path}");
            assert_eq!(
                list[..list.len() - 1],
                upstream.as_array().unwrap()[..],
                "ComfyUI's own entries are kept as they were ({path})"
            );
            assert_eq!(
                list.iter().filter(|v| v.as_str() == Some(SCRIPT)).count(),
                1
            );
        }
    }
}

#[tokio::test]
async fn the_script_needs_no_identity_and_revalidates() {
    let t = tenants::start().await;
    let r = get(&t.w.url(SCRIPT), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let body = r.text();
    assert!(body.contains("registerExtension"));
    assert!(body.contains("/warden/me"));
    let etag = r.header("etag").expect("an ETag");
    let again = get(&t.w.url(SCRIPT), &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let post = http::post(&t.w.url(SCRIPT), &[("cookie", &t.alice)], "x").await;
    assert_eq!(post.status, 405);
    // Served by comfy-warden itself: ComfyUI never sees comfy-warden's paths.
    assert!(
        t.d.received()
            .iter()
            .all(|r| !r.path.starts_with("/warden/"))
    );

    let icon = get(&t.w.url("/warden/assets/favicon.svg"), &[]).await;
    assert_eq!(icon.status, 200);
    assert_eq!(
        icon.header("content-type").as_deref(),
        Some("image/svg+xml")
    );
}

#[tokio::test]
async fn an_ended_session_is_a_401_naming_comfy_warden() {
    let t = tenants::start().await;
    // What the frontend's fetchApi sends: no text/html in Accept.
    let r = get(&t.w.url("/api/queue"), &[("accept", "*/*")]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.contains("comfy-warden")),
        "the extension recognises comfy-warden's 401 by this header"
    );
    let me = get(&t.w.url("/warden/me"), &[]).await;
    assert_eq!(me.status, 401);
    let me = t.get(&t.alice, "/warden/me").await.json();
    assert_eq!(me["user"], "alice");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "api_tokens"),
        "the extension offers \"API token\" by this permission: {me}"
    );
}

#[tokio::test]
async fn refused_addresses_get_a_page_in_browsers_only() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users(vec![TestUser::new("alice", "pw", &["user"])])
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]))
        .ip_rules(|r| r.deny(&["203.0.113.0/24"]));
    let w = Warden::start(&cfg);
    let from = ("x-forwarded-for", "203.0.113.9");
    let page = get(&w.url("/"), &[from, ("accept", "text/html,*/*")]).await;
    assert_eq!(page.status, 403);
    assert!(page.text().contains("Access not allowed"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'"))
    );
    let css = get(
        &w.url("/warden/assets/warden.css"),
        &[from, ("accept", "text/css")],
    )
    .await;
    assert_eq!(css.status, 403, "a refused address gets nothing else");
    let api = get(&w.url("/api/queue"), &[from]).await;
    assert_eq!(api.status, 403);
    assert_eq!(api.text(), "Forbidden\n");
}
