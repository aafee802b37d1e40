//! Prometheus metrics (OpenMetrics text): requests by route class and status, ComfyUI's
//! response latency, sign-ins, lockouts, bans and every audit event by name (counted by the
//! audit layer), and gauges read at scrape time (sessions, WebSockets, connections, bans, the
//! last configuration reload). One process-wide registry; labels come from fixed sets only, so
//! no client can grow the series count (and no user name or address is ever a label).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, UNIX_EPOCH};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_seconds: Histogram,
    upstream_errors: Family<ResultLabel, Counter>,
    logins: Family<ResultLabel, Counter>,
    lockouts: Counter,
    bans: Counter,
    audit: Family<EventLabel, Counter>,
    tls_reloads: Family<ResultLabel, Counter>,
    sessions: Gauge,
    websockets: Gauge,
    connections: Gauge,
    worker_connections: Family<WorkerLabel, Gauge>,
    bans_active: Gauge,
    reload_ok: Gauge,
    reload_time: Gauge<f64, AtomicU64>,
    history_waiting: Gauge,
    tasks: Gauge,
    snapshot_failures: Counter,
}

/// Audit events that are counted by name; anything else counts as "other".
const EVENTS: &[&str] = &[
    "login_ok",
    "login_failed",
    "basic_failed",
    "logout",
    "lockout",
    "ip_banned",
    "ip_unbanned",
    "ip_denied",
    "connection_refused",
    "route_denied",
    "upload_refused",
    "prompt_refused",
    "config_reloaded",
    "config_reload_failed",
    "tls_reloaded",
    "tls_reload_failed",
    "csrf_refused",
    "token_issued",
    "token_revoked",
    "totp_enrolled",
    "totp_reset",
    "recovery_code_used",
    "basic_refused",
];

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("comfy_warden");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests",
            "Requests answered, by route class and status",
            requests.clone(),
        );
        let upstream_seconds = Histogram::new(exponential_buckets(0.001, 2.5, 14));
        r.register(
            "upstream_response_seconds",
            "Time until ComfyUI sent its response headers",
            upstream_seconds.clone(),
        );
        let upstream_errors = Family::<ResultLabel, Counter>::default();
        r.register(
            "upstream_errors",
            "ComfyUI requests that failed (unreachable, timeout, status: a non-2xx answer to comfy-warden's own call, malformed: an answer it could not read)",
            upstream_errors.clone(),
        );
        let logins = Family::<ResultLabel, Counter>::default();
        r.register(
            "logins",
            "Password sign-ins (form, JSON and HTTP Basic), by result",
            logins.clone(),
        );
        let lockouts = Counter::default();
        r.register(
            "lockouts",
            "Sign-in failures that delayed further attempts",
            lockouts.clone(),
        );
        let bans = Counter::default();
        r.register("bans", "Addresses banned by the lockout", bans.clone());
        let audit = Family::<EventLabel, Counter>::default();
        r.register("audit_events", "Audit events, by name", audit.clone());
        let tls_reloads = Family::<ResultLabel, Counter>::default();
        r.register(
            "tls_reloads",
            "TLS certificate reloads, by result",
            tls_reloads.clone(),
        );
        let sessions = Gauge::default();
        r.register(
            "sessions_active",
            "Browser sessions not expired or revoked",
            sessions.clone(),
        );
        let websockets = Gauge::default();
        r.register(
            "websockets_active",
            "Relayed WebSockets open",
            websockets.clone(),
        );
        let connections = Gauge::default();
        r.register(
            "connections_open",
            "Client connections open",
            connections.clone(),
        );
        let worker_connections = Family::<WorkerLabel, Gauge>::default();
        r.register(
            "worker_connections_open",
            "Client connections (and the WebSockets they became) served by each worker",
            worker_connections.clone(),
        );
        let bans_active = Gauge::default();
        r.register("bans_active", "Bans in force", bans_active.clone());
        let reload_ok = Gauge::default();
        r.register(
            "config_last_reload_success",
            "1 when the last configuration (re)load succeeded",
            reload_ok.clone(),
        );
        let history_waiting = Gauge::default();
        r.register(
            "history_waiting",
            "GET /history requests waiting for the shared fetch of ComfyUI's history",
            history_waiting.clone(),
        );
        let snapshot_failures = Counter::default();
        r.register(
            "snapshot_write_failures",
            "State snapshots (lockout, ledger, tokens) that could not be written (disk full, read-only)",
            snapshot_failures.clone(),
        );
        let tasks = Gauge::default();
        r.register(
            "tasks_alive",
            "Tasks alive on the worker runtimes (connections, relays, upstream calls)",
            tasks.clone(),
        );
        let reload_time = Gauge::<f64, AtomicU64>::default();
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load",
            reload_time.clone(),
        );
        Metrics {
            registry: r,
            requests,
            upstream_seconds,
            upstream_errors,
            logins,
            lockouts,
            bans,
            audit,
            tls_reloads,
            sessions,
            websockets,
            connections,
            worker_connections,
            bans_active,
            reload_ok,
            reload_time,
            history_waiting,
            tasks,
            snapshot_failures,
        }
    }

    /// The open-connection count of worker `index` (kept by `server::workers`).
    pub fn worker_connections(&self, index: usize) -> Gauge {
        let worker = u32::try_from(index).unwrap_or(u32::MAX);
        self.worker_connections
            .get_or_create(&WorkerLabel { worker })
            .clone()
    }

    /// A state snapshot could not be written (the daemon keeps serving and retries).
    pub fn snapshot_failed(&self) {
        self.snapshot_failures.inc();
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// ComfyUI answered (headers) after `elapsed`.
    pub fn upstream(&self, elapsed: Duration) {
        self.upstream_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&ResultLabel { result: kind })
            .inc();
    }

    /// The configuration was loaded or reloaded successfully just now.
    pub fn config_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.reload_time.set(now);
    }

    pub fn tls_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.tls_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts an audit event by its `event` field (called by the audit layer).
    pub fn audit_event(&self, event: &str) {
        let event = EVENTS
            .iter()
            .copied()
            .find(|e| *e == event)
            .unwrap_or("other");
        self.audit.get_or_create(&EventLabel { event }).inc();
        match event {
            "login_ok" => self.login(true),
            "login_failed" | "basic_failed" => self.login(false),
            "lockout" => {
                self.lockouts.inc();
            }
            "ip_banned" => {
                self.bans.inc();
            }
            _ => {}
        }
    }

    fn login(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.logins.get_or_create(&ResultLabel { result }).inc();
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::new)
}

fn gauge(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The gauges of the running daemon, read when `/metrics` is asked (`App::gauges`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub sessions: usize,
    pub websockets: usize,
    pub connections: usize,
    pub bans_active: usize,
    pub reload_ok: bool,
    /// `GET /history` requests waiting for the shared fetch.
    pub history_waiting: usize,
    /// Connection and relay tasks alive on the worker threads (`server::workers`).
    pub tasks: usize,
}

/// Sets the gauges and encodes everything.
pub fn render(gauges: Gauges) -> String {
    let m = global();
    m.sessions.set(gauge(gauges.sessions));
    m.websockets.set(gauge(gauges.websockets));
    m.connections.set(gauge(gauges.connections));
    m.bans_active.set(gauge(gauges.bans_active));
    m.reload_ok.set(i64::from(gauges.reload_ok));
    m.history_waiting.set(gauge(gauges.history_waiting));
    m.tasks.set(gauge(gauges.tasks));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &m.registry).is_err() {
        out.clear();
    }
    out
}

/// The route class of a request path (a fixed set: the `route` label).
pub fn route_class(path: &str) -> &'static str {
    if path == "/ws" || path == "/api/ws" {
        return "websocket";
    }
    match path {
        "/login" => return "login",
        "/logout" => return "logout",
        "/warden/health" => return "health",
        "/warden/metrics" => return "metrics",
        _ => {}
    }
    if path.starts_with("/warden/admin/") {
        return "admin";
    }
    if path.starts_with("/warden/") {
        return "warden";
    }
    let p = path
        .strip_prefix("/api")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    let first = p.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "prompt" => "prompt",
        "queue" => "queue",
        "history" | "history_v2" => "history",
        "interrupt" | "free" => "control",
        "view" | "view_metadata" => "view",
        "upload" => "upload",
        "userdata" | "v2" | "users" | "settings" => "userdata",
        "object_info" | "models" | "embeddings" | "extensions" | "system_stats" | "features" => {
            "info"
        }
        "internal" => "internal",
        "" => "static",
        _ => "other",
    }
}

/// The worker runtimes, for the task gauge (`server::workers` registers each one it starts).
static RUNTIMES: std::sync::Mutex<Vec<tokio::runtime::Handle>> = std::sync::Mutex::new(Vec::new());

pub fn register_runtime(handle: tokio::runtime::Handle) {
    RUNTIMES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(handle);
}

/// Tasks alive on every worker runtime (the `tasks_alive` gauge: a leak shows as growth).
pub fn tasks_alive() -> usize {
    RUNTIMES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|h| h.metrics().num_alive_tasks())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_classes_are_a_fixed_set() {
        assert_eq!(route_class("/api/prompt"), "prompt");
        assert_eq!(route_class("/prompt"), "prompt");
        assert_eq!(route_class("/view"), "view");
        assert_eq!(route_class("/api/ws"), "websocket");
        assert_eq!(route_class("/warden/admin/guard"), "admin");
        assert_eq!(route_class("/"), "static");
        assert_eq!(route_class("/apix/whatever"), "other");
        assert_eq!(route_class("/some/random/path"), "other");
    }

    #[test]
    fn unknown_audit_events_count_as_other() {
        let m = Metrics::new();
        m.audit_event("login_failed");
        m.audit_event("made_up");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("comfy_warden_logins_total{result=\"failed\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("comfy_warden_audit_events_total{event=\"other\"} 1"),
            "{out}"
        );
    }
}
