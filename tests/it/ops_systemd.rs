//! systemd integration over real sockets and signals: sd-notify messages captured on a unix
//! datagram socket (READY → RELOADING+MONOTONIC_USEC → READY on SIGHUP and on a file change →
//! STOPPING), watchdog pings, a graceful drain that lets an in-flight download finish after
//! SIGTERM, socket activation with descriptors passed at fd 3 and 4 (named), and secrets read
//! through `${CREDENTIALS_DIRECTORY}` (LoadCredential=) including `password_hash_file`.
use crate::support;
use crate::support::config::{TestConfig, phc, users_toml};
use crate::support::double::Double;
use crate::support::harness::{Warden, binary};
use crate::support::http::{bearer, cookie_header, get, login};
use crate::support::users::{alice, bob};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Datagrams received on a NOTIFY_SOCKET, in order.
struct Notify {
    _dir: tempfile::TempDir,
    path: String,
    msgs: Arc<Mutex<Vec<String>>>,
}

impl Notify {
    fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let m2 = msgs.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                m2.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Notify {
            path: path.to_str().unwrap().to_owned(),
            msgs,
            _dir: dir,
        }
    }

    fn all(&self) -> Vec<String> {
        self.msgs.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|m| m.contains(needle)).count()
    }

    /// Waits until at least `n` datagrams contain `needle`.
    fn wait(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "waited for {n} x {needle:?}; got {:?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The life-cycle states in order (watchdog pings and bare STATUS updates left out).
    fn states(&self) -> Vec<&'static str> {
        self.all()
            .iter()
            .filter_map(|m| {
                if m.contains("READY=1") {
                    Some("READY")
                } else if m.contains("RELOADING=1") {
                    assert!(
                        m.contains("MONOTONIC_USEC="),
                        "RELOADING without MONOTONIC_USEC: {m:?}"
                    );
                    Some("RELOADING")
                } else if m.contains("STOPPING=1") {
                    Some("STOPPING")
                } else {
                    None
                }
            })
            .collect()
    }
}

#[tokio::test]
async fn notifications_in_order_with_watchdog_pings() {
    let d = Double::start().await;
    let n = Notify::new();
    let dir = tempfile::tempdir().unwrap();
    TestConfig::new(&d.url()).user(alice()).write(dir.path());
    let w = Warden::start_in(
        dir,
        &[("NOTIFY_SOCKET", &n.path), ("WATCHDOG_USEC", "200000")],
    );
    n.wait("READY=1", 1);
    let ready = n.all().into_iter().find(|m| m.contains("READY=1")).unwrap();
    // No admin in this configuration: the status also says that setup is required.
    assert!(
        ready.contains("STATUS=") && ready.contains("1 users, 0 sessions, last reload ok"),
        "{ready:?}"
    );
    assert!(ready.contains("setup required"), "{ready:?}");
    n.wait("WATCHDOG=1", 3);

    // SIGHUP: RELOADING=1 + MONOTONIC_USEC, then READY=1.
    let mark = w.log_len();
    w.signal("HUP");
    n.wait("READY=1", 2);
    assert!(w.wait_log("configuration reloaded", mark), "{}", w.log());

    // A file change reloads the same way.
    let two = vec![alice(), bob()];
    w.replace_file("users.toml", &users_toml(&two));
    n.wait("READY=1", 3);
    let last = n
        .all()
        .into_iter()
        .rfind(|m| m.contains("READY=1"))
        .unwrap();
    assert!(last.contains("2 users, 0 sessions"), "{last:?}");
    assert!(!login(&w.url(""), "bob", "bob-pw").await.is_empty());

    // Pings keep coming while everything is alive.
    let pings = n.count("WATCHDOG=1");
    n.wait("WATCHDOG=1", pings + 2);

    let mut w = w;
    w.signal("TERM");
    let status = w.wait_exit();
    assert!(status.success(), "{status}");
    n.wait("STOPPING=1", 1);
    assert_eq!(
        n.states(),
        [
            "READY",
            "RELOADING",
            "READY",
            "RELOADING",
            "READY",
            "STOPPING"
        ],
        "{:?}",
        n.all()
    );
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_download() {
    const SIZE: u64 = 32 << 20;
    let d = Double::start().await;
    d.put_large_file("output", "u_alice", "big.bin", SIZE);
    let w = Warden::start(&TestConfig::new(&d.url()).user(alice()));
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);

    let req = http::Request::get(w.url("/view?filename=big.bin&type=output&subfolder="))
        .header("cookie", &alice)
        .body(support::http::full(""))
        .unwrap();
    let resp = support::http::client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut hash = Sha256::new();
    let mut len = 0u64;
    let first = next_data(&mut body).await.unwrap();
    len += first.len() as u64;
    hash.update(&first);
    assert!(len < SIZE);

    let mark = w.log_len();
    w.signal("TERM");
    assert!(
        w.wait_log("stopping: draining connections", mark),
        "{}",
        w.log()
    );
    // New connections are refused once draining has started.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(w.addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }

    while let Some(chunk) = next_data(&mut body).await {
        len += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(len, SIZE, "the in-flight download finished after SIGTERM");
    assert_eq!(
        hex::encode(hash.finalize()),
        support::http::generated_sha256(SIZE)
    );
    let mut w = w;
    let status = w.wait_exit();
    assert!(status.success(), "{}", w.log());
    assert!(w.wait_log("all connections drained", mark), "{}", w.log());
}

async fn next_data(body: &mut hyper::body::Incoming) -> Option<bytes::Bytes> {
    loop {
        match body.frame().await? {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(data);
                }
            }
            Err(e) => panic!("the download broke off: {e}"),
        }
    }
}

/// Runs the binary with `fds` at 3, 4, … (as systemd passes them), LISTEN_FDS and LISTEN_PID
/// set by a shell that then execs the daemon (LISTEN_PID must be the daemon's own pid).
fn activated(dir: tempfile::TempDir, fds: &[i32], names: &str) -> Warden {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" serve --config "$1""#)
        .arg(binary())
        .arg(dir.path())
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names);
    let fds = fds.to_vec();
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = Vec::new();
            for fd in &fds {
                let h = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*h);
            }
            Ok(())
        });
    }
    Warden::start_cmd(dir, cmd)
}

#[tokio::test]
async fn socket_activation_serves_the_passed_sockets() {
    let d = Double::start().await;
    let main = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .listen("systemd")
        .server(|s| s.metrics_listen("systemd"));
    cfg.write(dir.path());
    let w = activated(
        dir,
        &[main.as_raw_fd(), metrics.as_raw_fd()],
        "comfy-warden:metrics",
    );
    assert_eq!(
        w.addr,
        main.local_addr().unwrap(),
        "serves the socket at fd 3"
    );
    assert_eq!(
        w.log_addr("serving metrics on "),
        metrics.local_addr().unwrap()
    );
    drop((main, metrics)); // the daemon holds its own copies

    assert_eq!(get(&w.url("/warden/health"), &[]).await.status, 200);
    let token = login(&w.url(""), "alice", "alice-pw").await;
    assert!(!token.is_empty());
    let m = get(
        &format!("http://{}/metrics", w.log_addr("serving metrics on ")),
        &[],
    )
    .await;
    assert_eq!(m.status, 200);
    assert!(
        m.text()
            .contains("comfy_warden_logins_total{result=\"ok\"} 1"),
        "{}",
        m.text()
    );
    assert!(w.stop().success());
}

#[test]
fn socket_activation_without_sockets_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new("http://127.0.0.1:9")
        .user(alice())
        .listen("systemd");
    cfg.write(dir.path());
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(dir.path())
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a daemon without its sockets must exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("systemd passed no usable sockets"), "{err}");
}

#[tokio::test]
async fn secrets_come_from_the_credentials_directory() {
    let d = Double::start().await;
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("secret"), "s".repeat(48)).unwrap();
    std::fs::write(
        creds.path().join("alice.hash"),
        format!("{}\n", phc("alice-pw")),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(&d.url()).auth(|a| a.secret_file("${CREDENTIALS_DIRECTORY}/secret"));
    cfg.write(dir.path());
    std::fs::write(
        dir.path().join("users.toml"),
        "[users.alice]\npassword_hash_file = \"${CREDENTIALS_DIRECTORY}/alice.hash\"\nroles = [\"user\"]\n",
    )
    .unwrap();
    let w = Warden::start_in(
        dir,
        &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())],
    );
    let token = login(&w.url(""), "alice", "alice-pw").await;
    assert!(
        !w.path("state/secret.key").exists(),
        "the configured secret is used, none generated"
    );
    let me = get(&w.url("/warden/me"), &[("authorization", &bearer(&token))]).await;
    assert_eq!(me.status, 200);

    // A password_hash_file holding something else than a PHC string is refused on reload,
    // naming the key and the file but not the content.
    std::fs::write(creds.path().join("alice.hash"), "hunter2\n").unwrap();
    let mark = w.log_len();
    w.signal("HUP");
    assert!(w.wait_log("NOT reloaded", mark), "{}", w.log());
    let log = w.log()[mark..].to_string();
    assert!(
        log.contains("users.alice.password_hash_file") && log.contains("alice.hash"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
    assert!(
        !login(&w.url(""), "alice", "alice-pw").await.is_empty(),
        "the last good configuration stays"
    );
}
