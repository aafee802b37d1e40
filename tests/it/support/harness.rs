//! Runs the real `comfy-warden` binary against a configuration directory written per test,
//! on a free loopback port, with its log captured for assertions.
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A user for the test configuration.
#[derive(Clone)]
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub token_version: u64,
}

impl TestUser {
    pub fn new(name: &str, password: &str, roles: &[&str]) -> Self {
        TestUser {
            name: name.into(),
            password: password.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            disabled: false,
            token_version: 1,
        }
    }
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

/// Argon2id PHC of `password`, computed once per password per test process (cheap parameters:
/// the daemon verifies whatever parameters the PHC string names).
pub fn phc(password: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    c.entry(password.to_string())
        .or_insert_with(|| {
            use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
            let params = argon2::Params::new(1024, 1, 1, None).unwrap();
            let a =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            a.hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string()
        })
        .clone()
}

pub fn users_toml(users: &[TestUser]) -> String {
    let mut s = String::new();
    for u in users {
        s.push_str(&format!(
            "[users.{}]\npassword_hash = \"{}\"\nroles = [{}]\ndisabled = {}\ntoken_version = {}\n\n",
            u.name,
            phc(&u.password),
            u.roles.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", "),
            u.disabled,
            u.token_version
        ));
    }
    s
}

/// The configuration a test runs with; `extra` is appended to warden.toml verbatim.
pub struct TestConfig {
    /// `server.listen` (default `127.0.0.1:0`).
    pub listen: String,
    pub upstream: String,
    pub users: Vec<TestUser>,
    pub server_extra: String,
    /// Appended to `[files]` verbatim (e.g. `users_writable = "…"`).
    pub files_extra: String,
    pub extra: String,
    pub ip_rules: String,
}

impl TestConfig {
    pub fn new(upstream: &str, users: Vec<TestUser>) -> Self {
        TestConfig {
            listen: "127.0.0.1:0".into(),
            upstream: upstream.into(),
            users,
            server_extra: String::new(),
            files_extra: String::new(),
            extra: String::new(),
            ip_rules: String::new(),
        }
    }

    pub fn warden_toml(&self) -> String {
        format!(
            "[server]\nlisten = [\"{}\"]\nshutdown_grace = \"5s\"\n{}\n[upstream]\nurl = \"{}\"\nconnect_timeout = \"2s\"\nresponse_timeout = \"20s\"\n\n[files]\nusers = \"users.toml\"\nip_rules = \"ip-rules.toml\"\nstate_dir = \"state\"\n{}\n[log]\nlevel = \"info,comfy_warden=debug\"\n{}\n",
            self.listen, self.server_extra, self.upstream, self.files_extra, self.extra
        )
    }

    /// Writes the configuration directory.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("warden.toml"), self.warden_toml()).unwrap();
        std::fs::write(dir.join("users.toml"), users_toml(&self.users)).unwrap();
        std::fs::write(dir.join("ip-rules.toml"), &self.ip_rules).unwrap();
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_comfy-warden"))
}

/// A running daemon. Killed when dropped.
pub struct Warden {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

impl Warden {
    pub fn start(cfg: &TestConfig) -> Warden {
        let dir = tempfile::tempdir().unwrap();
        cfg.write(dir.path());
        Self::start_in(dir, &[])
    }

    /// Starts the binary on an existing configuration directory with extra environment.
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Warden {
        let mut cmd = Command::new(binary());
        cmd.arg("serve").arg("--config").arg(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_cmd(dir, cmd)
    }

    /// Starts a prepared command (the binary, or a wrapper that execs it) that serves `dir`;
    /// its stderr is captured and the main listener's address read from the log.
    pub fn start_cmd(dir: tempfile::TempDir, mut cmd: Command) -> Warden {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in [
            "RUST_LOG",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "CREDENTIALS_DIRECTORY",
        ] {
            if !cmd.get_envs().any(|(k, _)| k == var) {
                cmd.env_remove(var);
            }
        }
        let mut child = cmd.spawn().expect("spawn comfy-warden");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "comfy-warden did not start listening; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Warden {
            child: Some(child),
            addr,
            dir,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a configuration file atomically (write beside, rename), as GitOps tools do.
    pub fn replace_file(&self, name: &str, content: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    /// Waits until the log has grown past `from` and contains `needle`.
    pub fn wait_log(&self, needle: &str, from: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .log
                .lock()
                .unwrap()
                .get(from..)
                .is_some_and(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The address in the first log line containing `prefix` followed by an address
    /// (like "redirecting to https on 127.0.0.1:PORT"), waiting for it.
    pub fn log_addr(&self, prefix: &str) -> SocketAddr {
        assert!(
            self.wait_log(prefix, 0),
            "no {prefix:?} in the log:\n{}",
            self.log()
        );
        let log = self.log();
        let rest = log.split(prefix).nth(1).unwrap();
        let addr = rest.split_whitespace().next().unwrap();
        addr.parse()
            .unwrap_or_else(|_| panic!("{addr:?} after {prefix:?} is not an address"))
    }

    /// Waits (at most 30 s) for the daemon to exit by itself, e.g. after a signal. The log
    /// stays readable.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("comfy-warden did not exit; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Stops the daemon with SIGTERM (asserting a clean exit) and starts it again on the same
    /// configuration directory (same state directory; a new port).
    pub fn restart(mut self) -> Warden {
        let status = self.stop_child();
        assert!(status.success(), "comfy-warden exited with {status}");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Warden::start_in(dir, &[])
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.stop_child()
    }

    /// Stops the daemon with SIGTERM but keeps the configuration directory for later use.
    pub fn stop_keep_dir(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let status = self.stop_child();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, dir)
    }

    fn stop_child(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("comfy-warden did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
