//! systemd integration: READY/RELOADING(+MONOTONIC_USEC)/STOPPING/STATUS/WATCHDOG
//! notifications and the sockets passed by socket activation.
//!
//! [`capture_environment`] runs in the synchronous `main`, before the runtime starts any thread:
//! it takes `NOTIFY_SOCKET`, `WATCHDOG_USEC`/`WATCHDOG_PID` and `LISTEN_FDS`/`LISTEN_PID`/
//! `LISTEN_FDNAMES` out of the environment (so nothing started later inherits them) and keeps
//! them here. Outside systemd (no NOTIFY_SOCKET) every notification is a no-op.
use sd_notify::NotifyState;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Default)]
struct Captured {
    notify_socket: Option<OsString>,
    watchdog: Option<Duration>,
    /// Descriptors from socket activation with their names (`FileDescriptorName=`).
    fds: Mutex<Option<Vec<(RawFd, String)>>>,
    listen_error: Option<String>,
}

static CAPTURED: OnceLock<Captured> = OnceLock::new();

const VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Reads and removes systemd's variables. Call once, before any thread is started.
pub fn capture_environment() {
    let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
    let (fds, listen_error) = match sd_notify::listen_fds() {
        Ok(fds) => {
            let fds: Vec<RawFd> = fds.collect();
            let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
                .map(|n| n.split(':').map(str::to_owned).collect())
                .unwrap_or_default();
            let named = fds
                .iter()
                .enumerate()
                .map(|(i, fd)| (*fd, names.get(i).cloned().unwrap_or_default()))
                .collect();
            (Some(named), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let captured = Captured {
        notify_socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
        watchdog,
        fds: Mutex::new(fds),
        listen_error,
    };
    for v in VARS {
        // SAFETY: called from the synchronous `main` path before the runtime (or any other
        // thread) exists, so nothing reads the environment concurrently.
        #[allow(unsafe_code, clippy::disallowed_methods)]
        unsafe {
            std::env::remove_var(v)
        };
    }
    let _ = CAPTURED.set(captured);
}

fn captured() -> Option<&'static Captured> {
    CAPTURED.get()
}

fn send(states: &[NotifyState]) {
    let Some(path) = captured().and_then(|c| c.notify_socket.as_ref()) else {
        return;
    };
    let mut msg = String::new();
    for s in states {
        let _ = writeln!(msg, "{s}");
    }
    if let Err(e) = send_to(path, msg.as_bytes()) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn send_to(path: &OsString, msg: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg, &addr)?;
    } else {
        sock.send_to(msg, std::path::Path::new(path))?;
    }
    Ok(())
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd wants for notify-reload services.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining connections"),
    ]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog interval requested by systemd (`WATCHDOG_USEC`, for this pid), if any.
pub fn watchdog_interval() -> Option<Duration> {
    captured().and_then(|c| c.watchdog)
}

/// Listening sockets passed by systemd (`LISTEN_FDS`) with their `FileDescriptorName=`s.
/// They can be taken once.
pub fn listeners() -> Result<Vec<(String, std::net::TcpListener)>, String> {
    let c = captured().ok_or("the systemd environment was not captured")?;
    if let Some(e) = &c.listen_error {
        return Err(e.clone());
    }
    let fds = c
        .fds
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_default();
    if fds.is_empty() {
        return Err("LISTEN_FDS is 0 or unset, or LISTEN_PID is not this process".into());
    }
    let mut out = Vec::new();
    for (fd, name) in fds {
        // SAFETY: systemd hands these descriptors to this process for its exclusive use; they
        // were taken out of the shared state above, so each is wrapped exactly once.
        #[allow(unsafe_code)]
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        l.local_addr()
            .map_err(|e| format!("descriptor {fd} is not a listening TCP socket: {e}"))?;
        out.push((name, l));
    }
    Ok(out)
}
