//! Two users (alice, bob) and an admin (root) signed in to one daemon in front of one double:
//! the set-up of every cross-tenant test.
use super::config::TestConfig;
use super::double::Double;
use super::harness::Warden;
use super::http::{self, Resp, login_cookie};
use super::users::users;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct Tenants {
    pub d: Double,
    pub w: Warden,
    pub alice: String,
    pub bob: String,
    pub root: String,
}

pub async fn start() -> Tenants {
    start_with(|c| c).await
}

/// Like [`start`], with the configuration changed by `configure` (for `[tenancy]` settings).
pub async fn start_with(configure: impl FnOnce(TestConfig) -> TestConfig) -> Tenants {
    let d = Double::start().await;
    let w = Warden::start(&configure(TestConfig::new(&d.url()).users(users())));
    let base = w.url("");
    let alice = login_cookie(&base, "alice", "alice-pw").await;
    let bob = login_cookie(&base, "bob", "bob-pw").await;
    let root = login_cookie(&base, "root", "root-pw").await;
    Tenants {
        d,
        w,
        alice,
        bob,
        root,
    }
}

impl Tenants {
    pub async fn get(&self, who: &str, path: &str) -> Resp {
        http::get(&self.w.url(path), &[("cookie", who)]).await
    }

    pub async fn post_json(&self, who: &str, path: &str, v: &Value) -> Resp {
        http::post_json(&self.w.url(path), &[("cookie", who)], v).await
    }

    pub async fn post_raw(&self, who: &str, path: &str, body: &'static str) -> Resp {
        http::post(
            &self.w.url(path),
            &[("cookie", who), ("content-type", "application/json")],
            body,
        )
        .await
    }

    /// A multipart upload with the given text fields and one file part named `image`.
    pub async fn upload(
        &self,
        who: &str,
        path: &str,
        fields: &[(&str, &str)],
        file_name: &str,
        bytes: &[u8],
    ) -> Resp {
        let boundary = "testboundary42";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file_name}\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        http::post(
            &self.w.url(path),
            &[("cookie", who), ("content-type", &ct)],
            body,
        )
        .await
    }

    /// Queues `graph` as `who` and returns the answer.
    pub async fn queue_prompt(&self, who: &str, graph: Value) -> Resp {
        self.post_json(who, "/prompt", &json!({ "prompt": graph }))
            .await
    }

    /// Queues `graph` as `who`, waits until it is in `who`'s history, returns (prompt_id, entry).
    pub async fn run(&self, who: &str, graph: Value) -> (String, Value) {
        let r = self.queue_prompt(who, graph).await;
        assert_eq!(r.status, 200, "prompt refused: {}", r.text());
        let id = r.json()["prompt_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h = self.get(who, &format!("/history/{id}")).await.json();
            if let Some(entry) = h.get(&id) {
                return (id, entry.clone());
            }
            assert!(Instant::now() < deadline, "prompt {id} did not finish");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub const PNG: &[u8] = include_bytes!("../../fixtures/cat.png");

/// LoadImage(image) → ImageInvert → SaveImage(prefix).
pub fn invert_graph(image: &str, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["2", 0]}}
    })
}

/// EmptyImage → ZZProgress (the double's test node that reports progress: preview and text
/// frames, like a sampler) → PreviewImage. Needs `.tenancy(|t| t.pure_node(PROGRESS_NODE))`.
pub fn progress_graph() -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5}},
        "2": {"class_type": "ZZProgress", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    })
}

/// The class of the double's progress-reporting test node (see [`progress_graph`]).
pub const PROGRESS_NODE: &str = "ZZProgress";

/// EmptyImage → PreviewImage (writes a temp-root preview).
pub fn preview_graph() -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    })
}
