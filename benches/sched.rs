//! The cost of one scheduling decision (`sched::fair::Lane::place` and the start that follows)
//! with 10,000 prompts waiting over 1,000 users, written into BENCHMARKS.md between the
//! `sched:start`/`sched:end` markers. Figures only; nothing here passes or fails.
#![allow(
    clippy::indexing_slicing,
    reason = "a benchmark: a wrong index is a bug in the benchmark, shown at once"
)]
use comfy_warden::sched::fair::Lane;
use std::time::Instant;

fn main() {
    // Only `cargo bench` (which passes --bench) measures, as in benches/proxy.rs.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/sched.rs: measures only under `cargo bench`; nothing to test");
        return;
    }
    let users: Vec<String> = (0..1000).map(|i| format!("user{i:04}")).collect();
    let weight = |i: usize| 1.0 + (i % 3) as f64;
    let mut lane = Lane::default();
    let mut next_id = 0u64;
    for i in 0..10_000 {
        let u = i % users.len();
        lane.place(&format!("p{next_id}"), &users[u], weight(u), 0);
        next_id += 1;
    }
    assert_eq!(lane.len(), 10_000);
    // Steady state: the first waiting prompt starts, a new one arrives; 10,000 stay waiting.
    let rounds = 200_000;
    let ids: Vec<String> = (0..rounds).map(|i| format!("p{}", next_id + i)).collect();
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let head = lane.in_order().next().map(|w| w.prompt_id.clone());
        if let Some(h) = head {
            lane.remove(&h, true);
        }
        let u = (i * 7919) % users.len();
        lane.place(id, &users[u], weight(u), 0);
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    assert_eq!(lane.len(), 10_000);
    let reweigh_start = Instant::now();
    let changed = lane.reweigh(&|name: &str| if name.ends_with('7') { 4.0 } else { 1.0 });
    let reweigh_ms = reweigh_start.elapsed().as_secs_f64() * 1e3;
    let report = format!(
        "| scheduling, 10,000 prompts waiting over 1,000 users | result |\n|---|---|\n\
         | one decision (tag a new prompt + start the next) | {per:.2} µs |\n\
         | reload of weights (retag all 10,000; {} renumbered) | {reweigh_ms:.1} ms |\n",
        changed.len()
    );
    let section = format!("<!-- sched:start -->\n{report}<!-- sched:end -->");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let doc = match (
        doc.find("<!-- sched:start -->"),
        doc.find("<!-- sched:end -->"),
    ) {
        (Some(a), Some(b)) => format!(
            "{}{section}{}",
            &doc[..a],
            &doc[b + "<!-- sched:end -->".len()..]
        ),
        _ => format!("{doc}\n{section}\n"),
    };
    if let Err(e) = std::fs::write(path, doc) {
        eprintln!("BENCHMARKS.md: {e}");
    }
    print!("{report}");
}
