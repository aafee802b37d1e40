//! comfy-warden's benchmark (run with `bench/run.sh`): one run measures the proxy against direct
//! access and nginx with wrk, streaming of 200 MB bodies, idle WebSockets, a login flood, the
//! filtering of big ComfyUI answers and the reload of a 10,000-user file, and writes the table
//! into BENCHMARKS.md. Figures only; nothing here passes or fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unsafe_code
)]
// The integration tests' kit (tests/it/support), of which the benchmark uses a part.
#[allow(dead_code, reason = "the benchmark uses a part of the test kit")]
#[path = "../tests/it/support/config.rs"]
mod config;
#[allow(dead_code, reason = "the benchmark uses a part of the test kit")]
#[path = "../tests/it/support/harness.rs"]
mod harness;
#[allow(dead_code, reason = "the benchmark uses a part of the test kit")]
#[path = "../tests/it/support/http.rs"]
mod http_client;
#[path = "support/upstream.rs"]
mod upstream;
#[allow(dead_code, reason = "the benchmark uses a part of the test kit")]
#[path = "../tests/it/support/ws.rs"]
mod ws;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECS: u64 = 8;

#[derive(Clone, Copy, Default)]
struct Wrk {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn parse_latency(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

fn wrk(url: &str, conns: u32, secs: u64, headers: &[String]) -> Wrk {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        if conns == 1 { "1" } else { "2" },
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut r = Wrk::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            r.p50_us = parse_latency(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            r.p99_us = parse_latency(v);
        }
    }
    if text.contains("Non-2xx") {
        eprintln!("warning: non-2xx answers from {url}:\n{text}");
    }
    r
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (VmRSS, VmHWM) in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of the processes `pids`, in seconds.
fn cpu_secs(pids: &[u32]) -> f64 {
    let tick = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state is field 3, utime 14.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / tick
        })
        .sum()
}

/// The nginx master and its workers.
fn nginx_pids(master: u32) -> Vec<u32> {
    let mut pids = vec![master];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(master) {
            pids.push(pid);
        }
    }
    pids
}

/// Runs wrk while measuring the CPU the proxy `pids` use: (result, µs of proxy CPU per request).
fn wrk_cpu(url: &str, conns: u32, secs: u64, headers: &[String], pids: &[u32]) -> (Wrk, f64) {
    let before = cpu_secs(pids);
    let r = wrk(url, conns, secs, headers);
    let used = cpu_secs(pids) - before;
    let per = used * 1e6 / (r.rps * secs as f64).max(1.0);
    (r, per)
}

fn start_nginx(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
) -> (std::process::Child, u16) {
    let port = free_port();
    let conf = format!(
        "worker_processes auto;\nerror_log {d}/nginx-error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n upstream comfy {{ server {upstream}; keepalive 64; }}\n server {{\n  listen 127.0.0.1:{port};\n  location / {{ proxy_pass http://comfy; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }}\n }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .args(["-g", "daemon off;"])
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo test --all-targets` runs harness-less benches too: only `cargo bench` (which passes
    // --bench) measures, so a test run never overwrites BENCHMARKS.md with debug-build figures.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "benches/proxy.rs: measures only under `cargo bench` (bench/run.sh); nothing to test"
        );
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err()
        || Command::new("nginx").arg("-v").output().is_err()
    {
        eprintln!("wrk and nginx are needed: run bench/run.sh");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let object_info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/comfyui-0.3.64/object_info.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let object_info = bytes::Bytes::from(serde_json::to_vec(&object_info["body"]).unwrap());
    let up = upstream::start(upstream::Data {
        object_info: object_info.clone(),
        history: upstream::history(10_000),
    });
    let (mut nginx, nginx_port) = start_nginx(work.path(), up);

    // comfy-warden with one user, quiet logs, limits opened for the WebSocket row.
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nmax_connections_per_ip = 20000\nmax_connections = 40000\nmax_upload_bytes = 314572800\n\n[upstream]\nurl = \"http://{up}\"\nresponse_timeout = \"60s\"\n\n[server.upload]\n"
    );
    let toml = toml.replace("\n[server.upload]\n", "");
    std::fs::write(dir.path().join("warden.toml"), format!("{toml}\n[files]\nusers = \"users.toml\"\nstate_dir = \"state\"\n\n[log]\nlevel = \"warn,comfy_warden::server::listen=info\"\n\n[tenancy]\nmax_prompt_bytes = 1048576\n")).unwrap();
    std::fs::write(
        dir.path().join("users.toml"),
        config::users_toml(&[config::TestUser::new("bench", "bench-pw", &["user"])]),
    )
    .unwrap();
    let warden = harness::Warden::start_in(dir, &[]);
    let wpid = warden.pid();
    let token = rt.block_on(http_client::login(&warden.url(""), "bench", "bench-pw"));
    let cookie = format!("Cookie: comfy_warden_session={token}");
    let route = "/api/embeddings";
    // Provision the ComfyUI user before measuring.
    rt.block_on(http_client::get(
        &warden.url(route),
        &[("cookie", &cookie[8..])],
    ));

    let mut report = String::new();
    let mut rows = Vec::new();
    let mut cpu = Vec::new();
    let ngx_pids = nginx_pids(nginx.id());
    for conns in [1u32, 64] {
        let direct = wrk(&format!("http://{up}{route}"), conns, SECS, &[]);
        let (ngx, ngx_cpu) = wrk_cpu(
            &format!("http://127.0.0.1:{nginx_port}{route}"),
            conns,
            SECS,
            &[],
            &ngx_pids,
        );
        let (wd, wd_cpu) = wrk_cpu(
            &warden.url(route),
            conns,
            SECS,
            std::slice::from_ref(&cookie),
            &[wpid],
        );
        rows.push((conns, direct, ngx, wd));
        cpu.push((conns, ngx_cpu, wd_cpu));
    }
    writeln!(
        report,
        "### Proxying a cheap route (`GET {route}`, wrk, {SECS} s each)\n"
    )
    .unwrap();
    writeln!(
        report,
        "| concurrency | target | req/s | p50 | p99 |\n|---|---|---|---|---|"
    )
    .unwrap();
    for (c, d, n, w) in &rows {
        for (name, r) in [
            ("direct", d),
            ("nginx", n),
            ("comfy-warden (cookie, route table, tenancy)", w),
        ] {
            writeln!(
                report,
                "| {c} | {name} | {:.0} | {:.0} µs | {:.0} µs |",
                r.rps, r.p50_us, r.p99_us
            )
            .unwrap();
        }
    }
    writeln!(report).unwrap();
    for (c, n, w) in &cpu {
        writeln!(
            report,
            "- concurrency {c}: CPU time (user + system) per proxied request: nginx **{n:.1} µs**, comfy-warden **{w:.1} µs**"
        )
        .unwrap();
    }
    for (c, d, n, w) in &rows {
        writeln!(
            report,
            "- concurrency {c}: comfy-warden/nginx throughput **{:.2}×**, comfy-warden/direct **{:.2}×**; added latency over direct p50 **{:+.0} µs**, p99 **{:+.0} µs**",
            w.rps / n.rps,
            w.rps / d.rps,
            w.p50_us - d.p50_us,
            w.p99_us - d.p99_us
        )
        .unwrap();
    }

    // 200 MB download and upload through comfy-warden.
    let (rss0, _) = rss(wpid);
    let t = Instant::now();
    let (status, len, _) = rt.block_on(http_client::get_streamed(
        &warden.url("/view?filename=big.bin&type=output"),
        &[("cookie", &cookie[8..])],
    ));
    let down = t.elapsed();
    assert_eq!((status.as_u16(), len), (200, upstream::BIG));
    let (rss1, _) = rss(wpid);
    let boundary = "benchboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = {
        use futures_util::StreamExt;
        use http_body_util::{BodyExt, BodyStream, StreamBody};
        let parts = futures_util::stream::iter([
            http_client::full(head),
            http_client::generated(upstream::BIG),
            http_client::full(tail),
        ])
        .flat_map(BodyStream::new);
        BodyExt::boxed(StreamBody::new(parts))
    };
    let ct = format!("multipart/form-data; boundary={boundary}");
    let t = Instant::now();
    let r = rt.block_on(http_client::send(
        http::Method::POST,
        &warden.url("/upload/image"),
        &[("cookie", &cookie[8..]), ("content-type", &ct)],
        body,
    ));
    let upl = t.elapsed();
    let (rss2, hwm) = rss(wpid);
    let mib = upstream::BIG as f64 / (1024.0 * 1024.0);
    writeln!(report, "\n### Streaming 200 MB through comfy-warden\n\n| transfer | status | time | throughput | RSS before → after |\n|---|---|---|---|---|").unwrap();
    writeln!(
        report,
        "| download `/view` | {} | {:.2} s | {:.0} MiB/s | {} → {} KiB |",
        status.as_u16(),
        down.as_secs_f64(),
        mib / down.as_secs_f64(),
        rss0,
        rss1
    )
    .unwrap();
    writeln!(
        report,
        "| upload `/upload/image` (rebuilt multipart) | {} | {:.2} s | {:.0} MiB/s | {} → {} KiB |",
        r.status.as_u16(),
        upl.as_secs_f64(),
        mib / upl.as_secs_f64(),
        rss1,
        rss2
    )
    .unwrap();
    writeln!(report, "\nPeak RSS of the daemon so far (VmHWM): {hwm} KiB; growth over the start of the transfers: {} KiB.", hwm.saturating_sub(rss0)).unwrap();

    // 1,000 idle WebSockets.
    let (before, _) = rss(wpid);
    let sockets = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..1000 {
            let mut s = ws::connect(warden.addr, "/ws", &[("cookie", &cookie[8..])])
                .await
                .expect("ws");
            ws::next_json(&mut s, 10).await.expect("status frame");
            v.push(s);
        }
        v
    });
    std::thread::sleep(Duration::from_millis(500));
    let (after, _) = rss(wpid);
    writeln!(report, "\n### 1,000 idle WebSockets\n\nDaemon RSS {before} KiB → {after} KiB: **{:.1} MiB** for 1,000 relayed sockets ({:.1} KiB each, client and upstream side).", (after.saturating_sub(before)) as f64 / 1024.0, after.saturating_sub(before) as f64 / 1000.0).unwrap();
    drop(sockets);

    // Login flood at ~300/s while another client is served.
    let quiet = wrk(&warden.url(route), 8, SECS, std::slice::from_ref(&cookie));
    let url = warden.url("/login");
    let flood = rt.spawn(async move {
        let mut sent = 0u32;
        let mut statuses = std::collections::BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_micros(3333));
        let end = Instant::now() + Duration::from_secs(SECS);
        while Instant::now() < end {
            tick.tick().await;
            let url = url.clone();
            let r = tokio::spawn(async move {
                http_client::post_json(
                    &url,
                    &[],
                    &serde_json::json!({"username": "bench", "password": "wrong"}),
                )
                .await
                .status
                .as_u16()
            });
            sent += 1;
            if let Ok(s) = r.await {
                *statuses.entry(s).or_insert(0u32) += 1;
            }
        }
        (sent, statuses)
    });
    let loud = wrk(&warden.url(route), 8, SECS, std::slice::from_ref(&cookie));
    let (sent, statuses) = rt.block_on(flood).unwrap();
    writeln!(report, "\n### Wrong-password flood (~300/s, one address) while another client is proxied (wrk, 8 connections)\n\n| | req/s | p50 | p99 |\n|---|---|---|---|").unwrap();
    writeln!(report, "| without flood | {:.0} | {:.0} µs | {:.0} µs |\n| during flood | {:.0} | {:.0} µs | {:.0} µs |", quiet.rps, quiet.p50_us, quiet.p99_us, loud.rps, loud.p50_us, loud.p99_us).unwrap();
    writeln!(report, "\nFlood: {sent} attempts in {SECS} s, answers {statuses:?} (401 = checked, 429 = refused by the lockout before hashing). p99 ratio during/without: **{:.2}×**.", loud.p99_us / quiet.p99_us).unwrap();

    // Filtering big answers: /object_info (714 KB) and /history (10,000 entries).
    let time_get = |url: String, header: Option<String>, n: usize| -> f64 {
        median(
            (0..n)
                .map(|_| {
                    let h: Vec<(&str, &str)> = header
                        .as_deref()
                        .map(|c| vec![("cookie", c)])
                        .unwrap_or_default();
                    let t = Instant::now();
                    let r = rt.block_on(http_client::get(&url, &h));
                    assert_eq!(r.status, 200, "{url}");
                    ms(t.elapsed())
                })
                .collect(),
        )
    };
    let c = Some(cookie[8..].to_string());
    let oi_direct = time_get(format!("http://{up}/object_info"), None, 30);
    let oi_warden = time_get(warden.url("/object_info"), c.clone(), 30);
    let h_direct = time_get(format!("http://{up}/history"), None, 10);
    let h_warden = time_get(warden.url("/history"), c.clone(), 10);
    let h200_warden = time_get(warden.url("/history?max_items=200"), c.clone(), 10);
    writeln!(report, "\n### Filtering big ComfyUI answers (median request time)\n\n| answer | direct | through comfy-warden | added by filtering |\n|---|---|---|---|").unwrap();
    writeln!(
        report,
        "| `/object_info` ({} KB) | {oi_direct:.1} ms | {oi_warden:.1} ms | {:.1} ms |",
        object_info.len() / 1000,
        oi_warden - oi_direct
    )
    .unwrap();
    writeln!(report, "| `/history`, 10,000 entries (5,000 the user's) | {h_direct:.1} ms | {h_warden:.1} ms | {:.1} ms |", h_warden - h_direct).unwrap();
    writeln!(report, "| `/history?max_items=200` (the frontend's request) of the same | {h_direct:.1} ms (whole answer) | {h200_warden:.1} ms | {:.1} ms |", h200_warden - h_direct).unwrap();

    // Reload of a 10,000-user users.toml (the library's loader, as the watcher runs it).
    let big = tempfile::tempdir().unwrap();
    std::fs::write(big.path().join("warden.toml"), "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[files]\nusers = \"users.toml\"\nstate_dir = \"state\"\n").unwrap();
    let phc = config::phc("x");
    let mut users = String::new();
    for i in 0..10_000 {
        writeln!(
            users,
            "[users.user{i}]\npassword_hash = \"{phc}\"\nroles = [\"user\"]\n"
        )
        .unwrap();
    }
    std::fs::write(big.path().join("users.toml"), users).unwrap();
    let reload = median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                let s = comfy_warden::config::load(big.path()).expect("load");
                assert_eq!(s.users.len(), 10_000);
                ms(t.elapsed())
            })
            .collect(),
    );
    writeln!(report, "\n### Reload\n\nValidating and building the snapshot of a 10,000-user users.toml: **{reload:.0} ms** (median of 7).").unwrap();

    // SIGQUIT: the master stops its workers (SIGKILL would leave them running, orphaned).
    let _ = Command::new("kill")
        .args(["-QUIT", &nginx.id().to_string()])
        .status();
    let _ = nginx.wait();
    drop(warden);

    let machine = format!(
        "{} cores, {}; {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default(),
        String::from_utf8_lossy(
            &Command::new("uname")
                .arg("-sr")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim()
    );
    let section = format!(
        "<!-- results:start -->\nRun of {} on {machine}.\n\n{report}<!-- results:end -->",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let doc = match (
        doc.find("<!-- results:start -->"),
        doc.find("<!-- results:end -->"),
    ) {
        (Some(a), Some(b)) => format!(
            "{}{section}{}",
            &doc[..a],
            &doc[b + "<!-- results:end -->".len()..]
        ),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, doc).unwrap();
    println!("{report}");
}
