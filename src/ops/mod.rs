//! Operations: systemd integration (sd-notify, socket activation, watchdog).
pub mod snapshot;
pub mod systemd;
