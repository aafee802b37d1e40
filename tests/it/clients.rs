//! Third-party ComfyUI clients, unchanged, against comfy-warden and the test double:
//! comfy-api-simplified (PyPI) and @stable-canvas/comfyui-client (npm), both pinned and
//! installed by `scripts/client-deps` (target/client-deps/venv, tests/clients/node_modules).
//! Each uploads, runs a workflow, waits for it, downloads, and checks that a second user sees
//! none of it (tests/clients/run_python.py, run_node.mjs). Skipped, saying so, when the clients
//! are not installed, unless COMFY_WARDEN_CLIENTS=required (scripts/test sets it once
//! client-deps succeeded).
use crate::support::http::post_json;
use crate::support::tenants::{self, Tenants};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn installed(python: &Path) -> bool {
    let ok = python.exists()
        && root()
            .join("tests/clients/node_modules/@stable-canvas/comfyui-client/package.json")
            .exists()
        && root()
            .join("tests/clients/node_modules/ws/package.json")
            .exists();
    if !ok {
        assert!(
            std::env::var("COMFY_WARDEN_CLIENTS").as_deref() != Ok("required"),
            "the client libraries are required but not installed: run scripts/client-deps"
        );
        eprintln!("SKIP: third-party clients not installed (run scripts/client-deps)");
    }
    ok
}

async fn api_token(t: &Tenants, cookie: &str) -> String {
    let r = post_json(
        &t.w.url("/warden/token"),
        &[("cookie", cookie)],
        &json!({"label": "client test", "ttl": "1h"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

fn run(t: &Tenants, mut cmd: Command, what: &str) {
    let cat = root().join("tests/fixtures/cat.png");
    let out = cmd
        .current_dir(root().join("tests/clients"))
        .env("CAT_PNG", cat)
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}\ncomfy-warden log:\n{}",
        out.status,
        t.w.log()
    );
    assert!(stdout.contains(": ok"), "{what}:\n{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_clients_run_workflows_and_stay_isolated() {
    let python = root().join("target/client-deps/venv/bin/python");
    if !installed(&python) {
        return;
    }
    let t = tenants::start().await;
    let alice_token = api_token(&t, &t.alice).await;
    let bob_token = api_token(&t, &t.bob).await;

    let mut py = Command::new(&python);
    py.arg("run_python.py")
        .env("WARDEN_URL", t.w.url(""))
        .env("ALICE_TOKEN", &alice_token)
        .env("BOB_PASSWORD", "bob-pw");
    let w = &t;
    tokio::task::block_in_place(|| run(w, py, "comfy-api-simplified"));

    let mut node = Command::new("node");
    node.arg("run_node.mjs")
        .env("WARDEN_HOST", t.w.addr.to_string())
        .env("ALICE_TOKEN", &alice_token)
        .env("BOB_TOKEN", &bob_token);
    tokio::task::block_in_place(|| run(w, node, "@stable-canvas/comfyui-client"));

    // Neither client's credentials reached ComfyUI.
    for r in t.d.received() {
        let all = format!("{} {:?} {:?}", r.path, r.query, r.headers);
        assert!(
            !all.contains(&alice_token) && !all.contains(&bob_token),
            "{all}"
        );
    }
}
