//! Process life cycle: systemd's environment (taken before any thread exists), logging and the
//! audit trail, the tokio runtime, start-up order (config → secret → TLS → listeners →
//! watchers → READY), signals (SIGHUP reloads configuration and certificate, SIGTERM/SIGINT
//! drain and stop), the watchdog, and the offline commands `check`, `hash-password`, `bans` and
//! `unban`.
use crate::app::{App, Counters, HASH_QUEUE_WAIT};
use crate::auth::{keys, password::Passwords, session::Keys, session::SessionTable};
use crate::config::{self, Listen, Snapshot, store::ConfigStore};
use crate::ops::tls::TlsStore;
use crate::ops::watchdog::Heartbeats;
use crate::ops::{metrics, systemd};
use crate::server::listen::{self, Serving};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// `comfy-warden serve`. Synchronous up to the runtime: systemd's variables are captured
/// (and removed from the environment) while this is the only thread.
pub fn run(dir: &Path) -> ExitCode {
    systemd::capture_environment();
    let snap = match config::load(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("comfy-warden: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::ops::logging::init(&snap.log) {
        eprintln!("comfy-warden: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("comfy-warden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(snap))
}

async fn serve(snap: Snapshot) -> ExitCode {
    // Before anything can be served or READY=1 sent: an early SIGHUP (`systemctl reload` right
    // after start) must reload, not kill the process with the default action.
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let secret = match keys::load_or_create(snap.auth.secret_file.as_deref(), &snap.files.state_dir)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let previous = match snap
        .auth
        .previous_secret_files
        .iter()
        .map(|p| keys::read(p))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("auth.previous_secret_files: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match &snap.server.tls {
        Some(files) => match TlsStore::load(files) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                tracing::error!("TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let listeners = match listen::bind(&snap).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if snap.users.is_empty() {
        tracing::warn!(file = %snap.files.users.display(), "no users are configured: nobody can sign in");
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let passwords = match Passwords::new(snap.auth.hash_concurrency, HASH_QUEUE_WAIT) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let lockout = crate::guard::lockout::Lockout::open(&snap.files.state_dir);
    let store = Arc::new(ConfigStore::new(snap));
    let app = Arc::new(App {
        config: store.clone(),
        keys: Keys::new(&secret, &previous),
        passwords,
        basic_cache: crate::auth::basic::BasicCache::new(&secret.bytes),
        tickets: crate::auth::second_factor::Tickets::new(&secret.bytes),
        sessions: SessionTable::open(&store.get().files.state_dir),
        counters: Counters::default(),
        tenancy: Arc::new(crate::tenancy::Tenancy::new(&store.get().files.state_dir)),
        lockout,
        connections: Default::default(),
        setup: Default::default(),
        oidc: Default::default(),
        shutdown: shutdown_rx,
    });
    app.setup.start(
        listeners
            .iter()
            .find(|b| b.role == crate::server::conn::Role::Main)
            .and_then(|b| b.listener.local_addr().ok()),
        &store.get(),
    );
    crate::guard::tick::lift_unban_list(&app.lockout, &store.get());
    app.save_state();
    let state_dir = store.get().files.state_dir.clone();
    if let Err(e) = crate::ops::pidfile::write(&state_dir) {
        tracing::warn!(error = %e, "cannot write the pid file; `comfy-warden unban` will edit the snapshot directly");
    }

    metrics::global().config_loaded();

    let watchdog = systemd::watchdog_interval();
    let beats = Arc::new(Heartbeats::new(watchdog));
    let app_for_watch = app.clone();
    let _watch_guard = match config::watch::spawn(
        store.clone(),
        beats.register("configuration watcher"),
        beats.period(),
        systemd::reloading,
        move |result| app_for_watch.after_reload(result),
    ) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the configuration files; reload with SIGHUP");
            None
        }
    };
    let _tls_guard = match &tls {
        Some(t) => {
            let t2 = t.clone();
            match config::watch::watch_files(
                t.files(),
                beats.register("certificate watcher"),
                beats.period(),
                move || t2.reload_logged(),
            ) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch the TLS files; reload with SIGHUP");
                    None
                }
            }
        }
        None => None,
    };
    let (dispatch, workers) =
        match crate::server::workers::start(&app, &beats, app.config.get().server.workers) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("cannot start the workers: {e}");
                return ExitCode::FAILURE;
            }
        };
    let serving = Arc::new(Serving {
        tls: tls.clone(),
        beats: beats.clone(),
        workers: dispatch,
    });
    let server = tokio::spawn(listen::serve(app.clone(), listeners, serving));
    spawn_housekeeping(app.clone());
    spawn_state_round(app.clone());
    if let Some(interval) = watchdog {
        crate::ops::watchdog::spawn(beats.clone(), interval, app.shutdown.clone());
    }
    systemd::ready(&app.status_line());
    tracing::info!(upstream = %app.config.get().upstream.base, "comfy-warden is ready");

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                systemd::reloading();
                let s = store.clone();
                let t = tls.clone();
                let result = tokio::task::spawn_blocking(move || {
                    if let Some(t) = t {
                        t.reload_logged();
                    }
                    s.reload().map(|_| ()).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                app.after_reload(&result);
            }
        }
    }
    tracing::info!("stopping: draining connections");
    systemd::stopping();
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    workers.join().await;
    app.save_state();
    crate::ops::pidfile::remove(&state_dir);
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The state round every [`crate::guard::tick::INTERVAL`] (`App::save_state`, off the
/// runtime's threads): unban requests, pruning, snapshots.
fn spawn_state_round(app: Arc<App>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(crate::guard::tick::INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = app.shutdown.clone();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = crate::shutdown::shutting_down(&mut shutdown) => break,
            }
            let a = app.clone();
            let _ = tokio::task::spawn_blocking(move || a.save_state()).await;
        }
    });
}

/// Housekeeping that is not the guard's (`guard::tick` writes the snapshots): pruning expired
/// sessions and keeping systemd's STATUS= current. (The watchdog has its own task, fed by the
/// heartbeats of the loops it vouches for: `ops::watchdog`.)
fn spawn_housekeeping(app: Arc<App>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(10));
        let mut last = String::new();
        loop {
            interval.tick().await;
            app.sessions.prune();
            let status = app.status_line();
            if status != last && !*app.shutdown.borrow() {
                systemd::status(&status);
                last = status;
            }
        }
    });
}

/// `comfy-warden check`.
pub fn check(dir: &Path) -> ExitCode {
    let snap = match config::load(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Written without panicking when the reader goes away (`check | head`).
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut lines = vec![format!("configuration in {} is valid", snap.dir.display())];
    let scheme = if snap.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for l in &snap.server.listen {
        lines.push(match l {
            Listen::Tcp(a) => format!("  listen      {scheme}://{a}"),
            Listen::Systemd => format!("  listen      sockets from systemd ({scheme})"),
        });
    }
    if let Some(t) = &snap.server.tls {
        if let Err(e) = crate::ops::tls::server_config(&t.cert, &t.key) {
            eprintln!("error: TLS: {e}");
            return ExitCode::FAILURE;
        }
        lines.push(format!(
            "  tls         {} ({})",
            t.cert.display(),
            t.key.display()
        ));
    }
    let shown = |l: &Listen| match l {
        Listen::Tcp(a) => a.to_string(),
        Listen::Systemd => "a socket from systemd".into(),
    };
    if let Some(l) = &snap.server.http_redirect {
        lines.push(format!(
            "  redirect    http://{} -> https (port {})",
            shown(l),
            snap.server.https_port
        ));
    }
    if let Some(l) = &snap.server.metrics_listen {
        lines.push(format!("  metrics     http://{}/metrics", shown(l)));
    }
    if let Some(a) = &snap.log.audit_file {
        lines.push(format!("  audit log   {}", a.display()));
    }
    lines.push(format!("  workers     {}", snap.server.workers));
    lines.push(format!("  upstream    {}", snap.upstream.base));
    lines.push(format!("  state dir   {}", snap.files.state_dir.display()));
    let mut users: Vec<_> = snap.users.values().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    lines.push(format!("  users       {}", users.len()));
    for u in users {
        let flag = if u.disabled { " (disabled)" } else { "" };
        lines.push(format!(
            "    {:<20} roles: {:<16} files: {}/{flag}",
            &*u.name,
            u.roles.join(", "),
            u.namespace
        ));
    }
    lines.push(format!(
        "  roles       {}",
        snap.roles.names().collect::<Vec<_>>().join(", ")
    ));
    lines.push(format!(
        "  ip rules    {} allowed, {} denied, {} never banned networks",
        snap.ip_rules.allow.len(),
        snap.ip_rules.deny.len(),
        snap.ip_rules.unban.len()
    ));
    let l = &snap.lockout;
    let bans = if l.ban_after == 0 {
        "no bans".to_string()
    } else {
        format!(
            "ban after {} failures for {}",
            l.ban_after,
            humantime::format_duration(l.ban_for)
        )
    };
    lines.push(format!(
        "  lockout     {} failures in {}, delays from {} up to {}, {bans}",
        l.max_failures,
        humantime::format_duration(l.window),
        humantime::format_duration(l.first_delay),
        humantime::format_duration(l.max_delay)
    ));
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// `comfy-warden hash-password`.
pub fn hash_password() -> ExitCode {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ");
        let second = rpassword::prompt_password("Again: ");
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("the passwords differ");
                return ExitCode::FAILURE;
            }
            _ => {
                eprintln!("cannot read the password");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            eprintln!("cannot read the password from stdin");
            return ExitCode::FAILURE;
        }
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        eprintln!("refusing an empty password");
        return ExitCode::FAILURE;
    }
    match crate::auth::password::hash(&password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot hash: {e}");
            ExitCode::FAILURE
        }
    }
}

fn state_dir_of(dir: &Path) -> Result<std::path::PathBuf, ExitCode> {
    match config::load(dir) {
        Ok(s) => Ok(s.files.state_dir.clone()),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `comfy-warden bans`: the bans in force, from the state directory's snapshot (the running
/// daemon writes it every few seconds).
pub fn bans(dir: &Path) -> ExitCode {
    let state_dir = match state_dir_of(dir) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let now = crate::clock::now_secs();
    let bans = match crate::guard::lockout_file::bans_in_force(&state_dir, now) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if bans.is_empty() {
        println!("no bans");
        return ExitCode::SUCCESS;
    }
    for b in bans {
        let left = humantime::format_duration(Duration::from_secs(b.until.saturating_sub(now)));
        println!("{:<40} until {} ({left} left)", b.ip, b.until);
    }
    ExitCode::SUCCESS
}

/// `comfy-warden unban IP`: asks the running daemon to lift a ban (it does within a few seconds),
/// or edits the snapshot directly when no daemon runs on this state directory.
pub fn unban(dir: &Path, ip: &str) -> ExitCode {
    let Some(subject) = crate::guard::subject::Subject::parse(ip) else {
        eprintln!("error: {ip:?} is not an IP address (or an IPv6 /64)");
        return ExitCode::FAILURE;
    };
    let state_dir = match state_dir_of(dir) {
        Ok(d) => d,
        Err(c) => return c,
    };
    if let Some(pid) = crate::ops::pidfile::running(&state_dir) {
        return match crate::guard::lockout_file::request_unban(&state_dir, subject) {
            Ok(()) => {
                println!(
                    "requested: unban {subject}; the running comfy-warden (pid {pid}) lifts it within {} seconds",
                    crate::guard::tick::INTERVAL.as_secs() + 1
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write the unban request: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match crate::guard::lockout_file::unban_offline(&state_dir, subject) {
        Ok(true) => {
            println!("unbanned {subject} (no daemon running; lockout.json updated)");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!(
                "{subject} was not banned (no daemon running; its failure counters were cleared)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
