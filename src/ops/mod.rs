//! Operations: systemd integration (sd-notify, socket activation, watchdog), atomic snapshot
//! files and the pid file in the state directory.
pub mod pidfile;
pub mod snapshot;
pub mod systemd;
