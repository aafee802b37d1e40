//! TLS over real sockets: handshake against a test CA (ALPN h2 and http/1.1), HSTS, the
//! `__Host-` Secure cookie, a WebSocket over TLS, certificate reload (new handshakes see the
//! new certificate, open connections keep theirs, a broken file keeps the last good one), the
//! redirect-only plain listener, and the configuration rules around TLS.
use crate::support;
use crate::support::config::{Server, TestConfig};
use crate::support::double::Double;
use crate::support::harness::{Warden, binary};
use crate::support::http::Resp;
use crate::support::tls::{self, H1, TestCa};
use crate::support::users::alice;
use http::Method;

/// Starts a daemon with TLS on its listener, using `leaf` from `ca`.
/// `server` adds to the `[server]` table (`[server.tls]` names the installed files).
fn start_tls(upstream: &str, leaf: &tls::Leaf, server: impl FnOnce(Server) -> Server) -> Warden {
    let dir = tempfile::tempdir().unwrap();
    TestConfig::new(upstream)
        .user(alice())
        .server(|s| server(s.tls(|t| t.installed())))
        .write(dir.path());
    leaf.install(dir.path());
    let w = Warden::start_in(dir, &[]);
    assert!(w.wait_log("TLS is on for", 0), "{}", w.log());
    w
}

async fn h1(w: &Warden, ca: &TestCa) -> (H1, rustls::pki_types::CertificateDer<'static>) {
    let s = tls::connect(w.addr, tls::client_config(ca, &[b"http/1.1"]))
        .await
        .expect("TLS handshake");
    let cert = tls::peer_cert(&s);
    (H1::over(s).await, cert)
}

async fn login(c: &mut H1) -> Resp {
    c.send(
        Method::POST,
        "/login",
        &[("content-type", "application/json")],
        r#"{"username":"alice","password":"alice-pw"}"#,
    )
    .await
}

#[tokio::test]
async fn tls_handshake_hsts_secure_cookie_and_alpn() {
    let d = Double::start().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("first");
    let w = start_tls(&d.url(), &leaf, |s| s);
    assert!(
        w.log().contains(&format!(
            "setup URL: https://{}/warden/setup?token=",
            w.addr
        )),
        "the first-administrator link speaks TLS too: {}",
        w.log()
    );

    let (mut c, cert) = h1(&w, &ca).await;
    assert_eq!(cert, leaf.der);
    let r = c.send(Method::GET, "/warden/health", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );

    let r = login(&mut c).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("__Host-comfy_warden_session="),
        "{cookie}"
    );
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = c
        .send(Method::GET, "/warden/me", &[("cookie", &pair)], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"], "alice");
    // ComfyUI is told the client came over https.
    let r = c
        .send(Method::GET, "/api/embeddings", &[("cookie", &pair)], "")
        .await;
    assert_eq!(r.status, 200);
    let q = d.received_path("/api/embeddings").pop().unwrap();
    assert_eq!(q.header("x-forwarded-proto"), Some("https"));

    // TLS 1.3 by default, TLS 1.2 for clients that offer nothing newer.
    let s = tls::connect(w.addr, tls::client_config(&ca, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls::version(&s), Some(rustls::ProtocolVersion::TLSv1_3));
    let s = tls::connect(
        w.addr,
        tls::client_config_versions(&ca, &[b"http/1.1"], &[&rustls::version::TLS12]),
    )
    .await
    .unwrap();
    assert_eq!(tls::version(&s), Some(rustls::ProtocolVersion::TLSv1_2));
    let mut c12 = H1::over(s).await;
    assert_eq!(
        c12.send(Method::GET, "/warden/health", &[], "")
            .await
            .status,
        200
    );

    // ALPN: h2 when offered first, and HTTP/2 works.
    let s = tls::connect(w.addr, tls::client_config(&ca, &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls::alpn(&s).as_deref(), Some(&b"h2"[..]));
    let r = tls::h2_get(s, "/warden/health").await;
    assert_eq!(r.status, 200);
    assert!(r.header("strict-transport-security").is_some());

    // A WebSocket over TLS (HTTP/1.1 upgrade) with the __Host- cookie.
    let s = tls::connect(w.addr, tls::client_config(&ca, &[b"http/1.1"]))
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = "wss://localhost/ws".into_client_request().unwrap();
    req.headers_mut().insert("cookie", pair.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, s).await.unwrap();
    assert_eq!(resp.status(), 101);
    use futures_util::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "status");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = support::http::try_get(&w.url("/warden/health"), &[]).await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be served: {:?}",
        plain.map(|r| r.status)
    );
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections_and_the_last_good_pair() {
    let d = Double::start().await;
    let ca = TestCa::new();
    let first = ca.leaf("first");
    let w = start_tls(&d.url(), &first, |s| s.tls(|t| t.hsts("")));

    let (mut old, cert) = h1(&w, &ca).await;
    assert_eq!(cert, first.der);
    let r = old.send(Method::GET, "/warden/health", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("strict-transport-security").is_none(),
        "hsts = \"\" disables HSTS"
    );

    let second = ca.leaf("second");
    let mark = w.log_len();
    second.install(w.dir.path());
    assert!(
        w.wait_log("TLS certificate reloaded", mark),
        "no certificate reload:\n{}",
        w.log()
    );
    let (_new, cert) = h1(&w, &ca).await;
    assert_eq!(
        cert, second.der,
        "new handshakes present the new certificate"
    );
    let r = old.send(Method::GET, "/warden/health", &[], "").await;
    assert_eq!(
        r.status, 200,
        "the connection opened before the reload still works"
    );

    let mark = w.log_len();
    std::fs::write(
        w.dir.path().join("tls/cert.pem"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .unwrap();
    assert!(
        w.wait_log("TLS certificate NOT reloaded", mark),
        "no failed reload logged:\n{}",
        w.log()
    );
    assert!(
        w.log()[mark..].contains("cert.pem"),
        "the error names the file"
    );
    let (mut c, cert) = h1(&w, &ca).await;
    assert_eq!(
        cert, second.der,
        "a broken certificate keeps the last good one"
    );
    assert_eq!(
        c.send(Method::GET, "/warden/health", &[], "").await.status,
        200
    );

    // A good pair again, through SIGHUP this time as well.
    let third = ca.leaf("third");
    third.install(w.dir.path());
    let mark = w.log_len();
    w.signal("HUP");
    assert!(w.wait_log("TLS certificate reloaded", mark), "{}", w.log());
    let (_c, cert) = h1(&w, &ca).await;
    assert_eq!(cert, third.der);
}

#[tokio::test]
async fn plain_listener_only_redirects_to_https() {
    let d = Double::start().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("first");
    let w = start_tls(&d.url(), &leaf, |s| {
        s.http_redirect("127.0.0.1:0").https_port(8443)
    });
    let plain = w.log_addr("redirecting to https on ");
    for (method, path) in [
        (Method::GET, "/some/path?x=1&y=%20"),
        (Method::GET, "/warden/health"),
        (Method::POST, "/login"),
        (Method::GET, "/queue"),
    ] {
        let r = support::http::send(
            method.clone(),
            &format!("http://{plain}{path}"),
            &[("host", "comfy.example:80")],
            support::http::full(""),
        )
        .await;
        assert_eq!(r.status, 301, "{method} {path}");
        assert_eq!(
            r.header("location").as_deref(),
            Some(&*format!("https://comfy.example:8443{path}")),
        );
        assert!(r.header("strict-transport-security").is_none());
        assert!(r.header("set-cookie").is_none());
    }
    assert!(
        d.received().is_empty(),
        "the redirect listener never reaches ComfyUI"
    );
    // TLS still works on the main listener.
    let (mut c, _) = h1(&w, &ca).await;
    assert_eq!(
        c.send(Method::GET, "/warden/health", &[], "").await.status,
        200
    );
}

fn check(dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(dir)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn tls_allows_public_addresses_and_broken_files_fail_the_check() {
    let ca = TestCa::new();
    let leaf = ca.leaf("first");
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new("http://127.0.0.1:8188")
        .user(alice())
        .listen("0.0.0.0:8443");
    cfg.write(dir.path());
    let (ok, out) = check(dir.path());
    assert!(!ok && out.contains("[server.tls]"), "{out}");

    let with_tls = cfg.clone().server(|s| s.tls(|t| t.installed()));
    with_tls.write(dir.path());
    leaf.install(dir.path());
    let (ok, out) = check(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("https://0.0.0.0:8443"), "{out}");

    std::fs::write(dir.path().join("tls/key.pem"), "not a key").unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("key.pem"), "{out}");

    with_tls
        .server(|s| s.tls(|t| t.hsts("forever")))
        .write(dir.path());
    let (ok, out) = check(dir.path());
    assert!(!ok && out.contains("server.tls.hsts"), "{out}");

    cfg.server(|s| s.tls(|t| t.cert("${CREDENTIALS_DIRECTORY}/cert.pem").key("k")))
        .write(dir.path());
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains("server.tls.cert") && out.contains("CREDENTIALS_DIRECTORY"),
        "{out}"
    );
}
