//! The OpenID provider of the single sign-on tests: the `oidc-provider` npm package
//! (tests/oidc/provider.mjs, installed by scripts/oidc-deps) on loopback over HTTPS, with a
//! certificate from a fresh test CA (written as `ca_file` for comfy-warden to trust). Its users
//! and their groups are [`users`]; its clients redirect to a comfy-warden on `warden_port`.
use super::tls::TestCa;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc");

/// The test provider, killed when dropped.
pub struct Provider {
    child: Child,
    pub issuer: String,
    pub ca: TestCa,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn users() -> serde_json::Value {
    json!({
        "alice": { "groups": ["comfy-users", "unrelated"] },
        "bob": { "groups": ["comfy-admins"] },
        "carol": { "groups": ["comfy-admins"] },
        "dave": { "groups": ["strangers"] },
        "eve": { "username": "eve smith", "groups": ["comfy-users"] },
        "frank": { "groups": ["comfy-users"] }
    })
}

impl Provider {
    pub fn start(warden_port: u16) -> Provider {
        assert!(
            std::path::Path::new(PROVIDER_DIR)
                .join("node_modules/oidc-provider/package.json")
                .exists(),
            "the test provider is not installed: run scripts/oidc-deps"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let leaf = ca.leaf("test provider");
        std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, pem_certificate(&ca.der)).unwrap();
        let base = format!("http://127.0.0.1:{warden_port}");
        let config = json!({
            "cert": dir.path().join("cert.pem"),
            "key": dir.path().join("key.pem"),
            "clients": [
                {
                    "client_id": "comfy-warden",
                    "client_secret": "test-client-secret",
                    "redirect_uris": [format!("{base}/login/oidc/callback")],
                    "post_logout_redirect_uris": [format!("{base}/login")],
                },
                {
                    "client_id": "comfy-warden-post",
                    "client_secret": "test-post-secret",
                    "token_endpoint_auth_method": "client_secret_post",
                    "redirect_uris": [format!("{base}/login/oidc/callback")],
                }
            ],
            "users": users(),
        });
        let cfg_file = dir.path().join("provider.json");
        std::fs::write(&cfg_file, config.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(format!("{PROVIDER_DIR}/provider.mjs"))
            .arg(&cfg_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("listening ") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(i) => i,
            Err(_) => {
                let _ = child.kill();
                panic!("the test provider did not start");
            }
        };
        Provider {
            child,
            issuer,
            ca,
            ca_file,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.issuer.trim_start_matches("https://").parse().unwrap()
    }
}

pub fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
