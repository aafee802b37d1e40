//! Operations: logging and the audit trail, Prometheus metrics, TLS certificates, systemd
//! integration (sd-notify, watchdog with heartbeats, socket activation), atomic snapshot files
//! and the pid file in the state directory.
pub mod audit;
pub mod logging;
pub mod metrics;
pub mod pidfile;
pub mod snapshot;
pub mod systemd;
pub mod tls;
pub mod watchdog;
