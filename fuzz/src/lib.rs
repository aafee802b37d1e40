//! What the fuzz targets share: a configuration directory built once per process from
//! `examples/` (two users, an identity provider, a state directory of its own), the daemon state
//! made from it, a stand-in ComfyUI that answers every request with its recorded `/queue`, and a
//! single-threaded runtime for the async entry points.
use comfy_warden::fuzz_api::{self, Tenant, User};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub const ALICE_NS: &str = "u_alice";

/// The repository root (`fuzz/..`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh directory of this process under the system temp directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("comfy-warden-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Serves the recorded `/queue` of a running ComfyUI to every request, on a loopback port.
fn fake_comfyui() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in ComfyUI");
    let port = listener.local_addr().expect("its port").port();
    let body = std::fs::read(repo().join("tests/fixtures/comfyui-0.3.64/queue_while_running.json"))
        .expect("the recorded queue");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("queue JSON");
    // The recording wraps the answer: {"status": …, "body": …} or the answer itself.
    let answer = body.get("body").cloned().unwrap_or(body).to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                answer.len(),
                answer
            );
        }
    });
    port
}

/// The configuration directory: examples/ with users alice (user) and root (admin), an
/// identity provider (`tests/fixtures/idp`) and the stand-in ComfyUI as upstream.
pub fn config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("config");
        let ex = repo().join("examples");
        let port = fake_comfyui();
        let warden = std::fs::read_to_string(ex.join("warden.toml"))
            .expect("examples/warden.toml")
            .replace("http://127.0.0.1:8188", &format!("http://127.0.0.1:{port}"));
        let idp = repo().join("tests/fixtures/idp").canonicalize().expect("idp fixtures");
        let warden = format!(
            "{warden}\n[auth.external_jwt]\njwks_file = \"{}/jwks.json\"\nissuer = \"https://idp.example\"\naudience = \"comfy-warden\"\nuser_claim = \"sub\"\ndefault_roles = [\"user\"]\n",
            idp.display()
        );
        std::fs::write(dir.join("warden.toml"), warden).expect("warden.toml");
        let users = std::fs::read_to_string(ex.join("users.toml"))
            .expect("examples/users.toml")
            .replace("[users.demo]", "[users.alice]")
            .replace("[users.admin]", "[users.root]");
        std::fs::write(dir.join("users.toml"), users).expect("users.toml");
        for f in ["roles.toml", "ip-rules.toml"] {
            std::fs::copy(ex.join(f), dir.join(f)).expect("copy example");
        }
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        dir
    })
}

/// The daemon state for [`config_dir`], built once.
pub fn app() -> &'static Arc<fuzz_api::App> {
    static APP: OnceLock<Arc<fuzz_api::App>> = OnceLock::new();
    APP.get_or_init(|| {
        let snap = fuzz_api::load_config(config_dir()).expect("the fuzz configuration loads");
        fuzz_api::app(snap)
    })
}

pub fn user(name: &str) -> Arc<User> {
    app()
        .config
        .get()
        .user(name)
        .cloned()
        .expect("configured user")
}

/// alice (a plain user, namespace [`ALICE_NS`]) or root (an admin who sees everything).
pub fn tenant(admin: bool) -> Tenant {
    Tenant::new(&app().tenancy, &user(if admin { "root" } else { "alice" }))
}

/// One single-threaded runtime per process, with I/O and timers.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}
