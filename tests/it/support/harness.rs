//! Runs the real `comfy-warden` binary against a configuration directory written per test,
//! on a free loopback port, with its log captured for assertions.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::TestConfig;

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
