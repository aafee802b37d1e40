//! systemd integration: READY/RELOADING(+MONOTONIC_USEC)/STOPPING/STATUS notifications, the
//! watchdog, and sockets passed by socket activation. Outside systemd (no NOTIFY_SOCKET) every
//! call is a no-op.
use sd_notify::NotifyState;
use std::os::fd::FromRawFd;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

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

/// The watchdog interval requested by systemd (`WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled()
}

/// Listening sockets passed by systemd (`LISTEN_FDS`), as tokio listeners.
pub fn listeners() -> Result<Vec<tokio::net::TcpListener>, String> {
    let fds = sd_notify::listen_fds().map_err(|e| e.to_string())?;
    if fds.len() == 0 {
        return Err("LISTEN_FDS is 0 or unset".into());
    }
    let mut out = Vec::new();
    for fd in fds {
        // SAFETY: systemd hands these descriptors to this process for its exclusive use; each
        // is wrapped exactly once.
        let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        out.push(tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
