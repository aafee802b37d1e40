//! ComfyUI misbehaving on routes comfy-warden filters: a server error, cut-off JSON, an answer
//! slower than `upstream.response_timeout`. Each gives an accurate 502/504 that says which
//! (never "unreachable"), nothing of ComfyUI's faulty body (here: another user's prompt id)
//! reaches the client, and the daemon serves normally once ComfyUI does.
use crate::support::config::TestConfig;
use crate::support::double::{Double, Fault};
use crate::support::harness::Warden;
use crate::support::http::{self, Resp, cookie_header, login};
use crate::support::users::{alice, bob};
use serde_json::json;
use std::time::{Duration, Instant};

/// A prompt that needs no input file.
fn graph() -> serde_json::Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 1}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    })
}

struct Setup {
    d: Double,
    w: Warden,
    alice: String,
    /// One of bob's prompt ids: what the faulty bodies name.
    leak: String,
}

/// alice and bob signed in, bob with a queued prompt, ComfyUI given `response_timeout`.
async fn start(response_timeout: &str) -> Setup {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users([alice(), bob()])
        .server(|s| s.metrics_listen("127.0.0.1:0"))
        .upstream(|u| u.response_timeout(response_timeout));
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    let w = Warden::start_in(dir, &[]);
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let bob = cookie_header(&login(&w.url(""), "bob", "bob-pw").await);
    let r = http::post_json(
        &w.url("/prompt"),
        &[("cookie", &bob)],
        &json!({ "prompt": graph() }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let leak = r.json()["prompt_id"].as_str().unwrap().to_string();
    Setup { d, w, alice, leak }
}

impl Setup {
    /// `comfy_warden_upstream_errors_total{result="…"}`.
    async fn upstream_errors(&self, result: &str) -> u64 {
        let addr = self.w.log_addr("serving metrics on ");
        let m = http::get(&format!("http://{addr}/metrics"), &[])
            .await
            .text();
        let series = format!("comfy_warden_upstream_errors_total{{result=\"{result}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    async fn get(&self, path: &str) -> Resp {
        http::get(&self.w.url(path), &[("cookie", &self.alice)]).await
    }

    /// `GET path` until it answers `status` (a shared copy of `/queue` may still be fresh).
    async fn get_until(&self, path: &str, status: u16) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(path).await;
            if r.status == status || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The answer is `status` with `{"error": …}` containing `words`, and names nothing of
    /// ComfyUI's faulty body.
    fn assert_refused(&self, what: &str, r: &Resp, status: u16, words: &str) {
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(words), "{what}: {error:?}");
        assert!(!error.contains("unreachable"), "{what}: {error:?}");
        assert!(
            !r.text().contains(&self.leak),
            "{what} leaked: {}",
            r.text()
        );
        assert!(
            !r.text().contains("Traceback"),
            "{what} leaked: {}",
            r.text()
        );
    }
}

/// (client path, the ComfyUI call it makes, the route class named in the answer).
const FILTERED: &[(&str, &str, &str)] = &[
    ("/api/queue", "/queue", "/queue"),
    ("/history", "/history", "/history"),
    ("/api/object_info", "/object_info", "/object_info"),
    ("/system_stats", "/system_stats", "/system_stats"),
    ("/experiment/models", "/experiment/models", "/experiment"),
    ("/prompt", "/queue", "/queue"),
];

#[tokio::test]
async fn server_errors_are_a_502_naming_status_and_route() {
    let s = start("20s").await;
    assert_eq!(s.upstream_errors("status").await, 0);
    for (path, upstream, route) in FILTERED {
        s.d.set_fault("GET", upstream, Fault::Status(500), &s.leak);
        let r = s.get_until(path, 502).await;
        s.assert_refused(path, &r, 502, &format!("ComfyUI answered 500 to {route}."));
        s.d.clear_faults();
        assert_eq!(
            s.get_until(path, 200).await.status,
            200,
            "{path} afterwards"
        );
    }

    // A browser navigation gets the page, with the same words.
    s.d.set_fault("GET", "/queue", Fault::Status(503), &s.leak);
    let page = http::get(
        &s.w.url("/queue"),
        &[("cookie", &s.alice), ("accept", "text/html")],
    )
    .await;
    assert_eq!(page.status, 502);
    let html = page.text();
    assert!(html.contains("ComfyUI is unavailable"), "{html}");
    assert!(html.contains("ComfyUI answered 503 to /queue."), "{html}");
    assert!(!html.contains(&s.leak));
    s.d.clear_faults();

    // comfy-warden's own POSTs: the prompt, and a queue edit rebuilt from alice's ids.
    s.d.set_fault("POST", "/prompt", Fault::Status(500), &s.leak);
    let r = http::post_json(
        &s.w.url("/prompt"),
        &[("cookie", &s.alice)],
        &json!({ "prompt": graph() }),
    )
    .await;
    s.assert_refused("POST /prompt", &r, 502, "ComfyUI answered 500 to /prompt.");
    s.d.clear_faults();
    let own = http::post_json(
        &s.w.url("/prompt"),
        &[("cookie", &s.alice)],
        &json!({ "prompt": graph() }),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.text());
    let own = own.json()["prompt_id"].as_str().unwrap().to_string();
    s.d.set_fault("POST", "/history", Fault::Status(500), &s.leak);
    let r = http::post_json(
        &s.w.url("/history"),
        &[("cookie", &s.alice)],
        &json!({ "delete": [own] }),
    )
    .await;
    s.assert_refused(
        "POST /history",
        &r,
        502,
        "ComfyUI answered 500 to /history.",
    );
    s.d.clear_faults();
    let r = http::post_json(
        &s.w.url("/history"),
        &[("cookie", &s.alice)],
        &json!({ "delete": [own] }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/warden/health").await.status, 200);
    assert!(s.upstream_errors("status").await >= FILTERED.len() as u64 + 3);
}

#[tokio::test]
async fn malformed_json_is_a_502_that_passes_nothing_on() {
    let s = start("20s").await;
    for (path, upstream, _) in FILTERED {
        s.d.set_fault("GET", upstream, Fault::Malformed, &s.leak);
        let r = s.get_until(path, 502).await;
        s.assert_refused(path, &r, 502, "could not read");
        s.d.clear_faults();
        assert_eq!(
            s.get_until(path, 200).await.status,
            200,
            "{path} afterwards"
        );
    }
    s.d.set_fault("POST", "/prompt", Fault::Malformed, &s.leak);
    let r = http::post_json(
        &s.w.url("/prompt"),
        &[("cookie", &s.alice)],
        &json!({ "prompt": graph() }),
    )
    .await;
    s.assert_refused("POST /prompt", &r, 502, "could not read");
    s.d.clear_faults();
    let r = http::post_json(
        &s.w.url("/prompt"),
        &[("cookie", &s.alice)],
        &json!({ "prompt": graph() }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.upstream_errors("malformed").await > FILTERED.len() as u64);
}

#[tokio::test]
async fn a_slow_comfyui_is_a_504_and_others_are_served_meanwhile() {
    let s = start("2s").await;
    for (path, upstream) in [("/api/queue", "/queue"), ("/history", "/history")] {
        s.d.set_fault("GET", upstream, Fault::Slow, &s.leak);
        let r = s.get(path).await;
        s.assert_refused(path, &r, 504, "did not answer in time");
        // Another route answers while ComfyUI still sits on the slow request.
        assert_eq!(s.get("/system_stats").await.status, 200);
        s.d.clear_faults();
        assert_eq!(
            s.get_until(path, 200).await.status,
            200,
            "{path} afterwards"
        );
    }
    // A forwarded route (the user's own data) times out the same way.
    s.d.set_fault("GET", "/userdata", Fault::Slow, &s.leak);
    let r = s.get("/userdata?dir=workflows").await;
    s.assert_refused("/userdata", &r, 504, "did not answer in time");
    s.d.clear_faults();
    assert_eq!(s.get("/warden/health").await.status, 200);
}
