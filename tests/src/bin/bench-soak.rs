//! `cargo xtask bench soak`: does the database of a noisy sensor stop growing once retention
//! runs?
//!
//! A simulated week (default 7 days, 4 steps a day) of a noisy sensor at accelerated time: each
//! step stores its share of the day's events (≈210-byte decoy lines from 2,000 attackers on 10
//! deckies) and flows (both directions of connections and scan probes), stamped inside the
//! step's simulated hours, into two fresh SQLite files with the same input:
//!
//! - `retained.db`, after which the real `decnet retention` runs once (a new process each
//!   step) with `--simulated-now` at the step's end and `--events-days`/`--flows-days` set to
//!   `--retention-days` (default 2);
//! - `baseline.db`, without retention (what decnet did before).
//!
//! The correlator is taken to keep up: its cursors are moved to the newest row after each step
//! (retention never deletes beyond them). At the end of each simulated day the table shows both
//! files' sizes (the database file and its WAL), rows kept, and what retention did that day
//! (rows deleted, pages given back, wall time, the longest write-lock hold of one batch). The
//! run fails unless the retained file levelled off: its size on the last day within 15 % of the
//! day `--retention-days` + 1 (when it holds a full retention window), while the baseline grew.
//!
//! Flags: `--days N`, `--retention-days N`, `--events-per-day N` (40,000), `--flows-per-day N`
//! (40,000), `--steps-per-day N` (4), `--dir PATH`, `--keep`.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use decnet_core::{
    model::{FlowRecord, NewEvent},
    repo::{Repository, Write},
    time_fmt::{format_ts, now_ns},
};

const SEC: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SEC;

struct Args {
    days: u32,
    retention_days: u32,
    events_per_day: u64,
    flows_per_day: u64,
    steps: u32,
    dir: PathBuf,
    keep: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        days: 7,
        retention_days: 2,
        events_per_day: 40_000,
        flows_per_day: 40_000,
        steps: 4,
        dir: std::env::temp_dir().join(format!("decnet-bench-soak-{}", std::process::id())),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--days" => a.days = val()?.parse().context("--days")?,
            "--retention-days" => a.retention_days = val()?.parse().context("--retention-days")?,
            "--events-per-day" => a.events_per_day = val()?.parse().context("--events-per-day")?,
            "--flows-per-day" => a.flows_per_day = val()?.parse().context("--flows-per-day")?,
            "--steps-per-day" => a.steps = val()?.parse().context("--steps-per-day")?,
            "--dir" => a.dir = PathBuf::from(val()?),
            "--keep" => a.keep = true,
            "-h" | "--help" => {
                println!(
                    "bench-soak [--days 7] [--retention-days 2] [--events-per-day 40000] [--flows-per-day 40000] [--steps-per-day 4] [--dir PATH] [--keep]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(a.steps > 0, "--steps-per-day must be at least 1");
    ensure!(
        a.retention_days > 0 && a.days >= a.retention_days + 2,
        "--days must be at least --retention-days + 2 (and --retention-days at least 1) to see the size level off"
    );
    Ok(a)
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn attacker(n: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        203,
        (n / 65_536 % 256) as u8,
        (n / 256 % 256) as u8,
        (n % 256) as u8,
    ))
}

fn decky(n: u64) -> (String, IpAddr) {
    (
        format!("decky-{n:02}"),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 + n as u8)),
    )
}

const KINDS: [(&str, &str); 6] = [
    ("ssh", "auth_attempt"),
    ("ssh", "connect"),
    ("http", "request"),
    ("http", "disconnect"),
    ("telnet", "command"),
    ("ftp", "auth_attempt"),
];

fn event(rng: &mut Rng, ts_ns: i64, seq: u64) -> NewEvent {
    let a = attacker(rng.below(2000));
    let (decky, _) = decky(rng.below(10));
    let (service, kind) = KINDS[rng.below(KINDS.len() as u64) as usize];
    let port = 30_000 + rng.below(30_000) as u16;
    let fields = format!(
        "{{\"src_ip\":\"{a}\",\"src_port\":{port},\"user\":\"admin{}\",\"seq\":{seq}}}",
        rng.below(50)
    );
    let raw = format!(
        "<38>1 {} {decky} {service} - {kind} [relay@55555 src_ip=\"{a}\" src_port=\"{port}\" seq=\"{seq}\"] session activity from the soak benchmark",
        format_ts(ts_ns)
    );
    NewEvent {
        ts_ns,
        decky,
        service: service.into(),
        event_type: kind.into(),
        attacker_ip: Some(a),
        attacker_port: Some(port),
        fields,
        raw: raw.into_bytes(),
        dedup_key: None,
    }
}

fn flow(rng: &mut Rng, ts_ns: i64) -> FlowRecord {
    let a = attacker(rng.below(2000));
    let (_, d) = decky(rng.below(10));
    let reply = rng.below(2) == 1;
    let (src, dst) = if reply { (d, a) } else { (a, d) };
    let (sport, dport) = (
        30_000 + rng.below(30_000) as u16,
        1 + rng.below(1024) as u16,
    );
    FlowRecord {
        bridge: "soak0".into(),
        port: format!("soak-{}", rng.below(10)),
        src_ip: src,
        dst_ip: dst,
        src_port: if reply { dport } else { sport },
        dst_port: if reply { sport } else { dport },
        proto: 6,
        vlan: 0,
        packets: 1 + rng.below(20),
        bytes: 60 + rng.below(20_000),
        tcp_flags: 0x12,
        first_seen_ns: ts_ns,
        last_seen_ns: ts_ns + rng.below(30) as i64 * SEC,
        ended: true,
    }
}

fn decnet_bin() -> PathBuf {
    std::env::var_os("DECNET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/decnet")
        })
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn wal(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// One `decnet retention` run; its summary counters and wall time.
fn retention(
    url: &str,
    now_ns: i64,
    days: u32,
    summary: &Path,
) -> Result<(serde_json::Value, f64)> {
    let t = Instant::now();
    let days = days.to_string();
    let out = Command::new(decnet_bin())
        .args(["retention", "--db-url", url, "--simulated-now"])
        .arg(format_ts(now_ns))
        .args([
            "--events-days",
            &days,
            "--flows-days",
            &days,
            "--summary-json",
        ])
        .arg(summary)
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_DB_URL")
        .output()
        .with_context(|| format!("cannot run {}", decnet_bin().display()))?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "decnet retention failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&std::fs::read(summary).context("retention summary")?)
        .context("retention summary JSON")?;
    Ok((v, secs))
}

fn get(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

struct Day {
    day: u32,
    retained_db: u64,
    retained_wal: u64,
    baseline_db: u64,
    baseline_wal: u64,
    rows_kept: u64,
    rows_baseline: u64,
    deleted: u64,
    pages: u64,
    retention_s: f64,
    hold_max_us: u64,
    batches: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = parse_args()?;
    ensure!(
        decnet_bin().exists(),
        "{} not found: build it (cargo build --release -p decnet-agent) or set DECNET_BIN",
        decnet_bin().display()
    );
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let paths = [a.dir.join("retained.db"), a.dir.join("baseline.db")];
    for p in &paths {
        for f in [p.clone(), wal(p)] {
            let _ = std::fs::remove_file(f);
        }
    }
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("sqlite://{}", p.display()))
        .collect();
    let repos = [
        Repository::connect(&urls[0]).await?,
        Repository::connect(&urls[1]).await?,
    ];
    let summary = a.dir.join("retention.json");
    // Simulated day 0 starts this many days ago (all input lies in the past, as a replayed
    // sensor's would).
    let t0 = (now_ns() / DAY - i64::from(a.days) - 1) * DAY;
    println!(
        "soak: {} simulated days, {} steps a day, {} events + {} flows a day, retention {} days; files in {}",
        a.days,
        a.steps,
        a.events_per_day,
        a.flows_per_day,
        a.retention_days,
        a.dir.display()
    );
    let mut rng = Rng(0x50A4);
    let mut seq = 0u64;
    let mut days = Vec::new();
    let started = Instant::now();
    let step_ns = DAY / i64::from(a.steps);
    for day in 0..a.days {
        let mut d = Day {
            day: day + 1,
            retained_db: 0,
            retained_wal: 0,
            baseline_db: 0,
            baseline_wal: 0,
            rows_kept: 0,
            rows_baseline: 0,
            deleted: 0,
            pages: 0,
            retention_s: 0.0,
            hold_max_us: 0,
            batches: 0,
        };
        for step in 0..a.steps {
            let from = t0 + i64::from(day) * DAY + i64::from(step) * step_ns;
            let n_events = a.events_per_day / u64::from(a.steps);
            let n_flows = a.flows_per_day / u64::from(a.steps);
            let mut events: Vec<NewEvent> = (0..n_events)
                .map(|i| {
                    seq += 1;
                    let ts = from + (i as i64 * step_ns) / n_events.max(1) as i64;
                    event(&mut rng, ts, seq)
                })
                .collect();
            events.sort_by_key(|e| e.ts_ns);
            let mut flows: Vec<FlowRecord> = (0..n_flows)
                .map(|i| {
                    flow(
                        &mut rng,
                        from + (i as i64 * step_ns) / n_flows.max(1) as i64,
                    )
                })
                .collect();
            flows.sort_by_key(|f| f.first_seen_ns);
            for repo in &repos {
                for chunk in events.chunks(5000) {
                    repo.write(&[Write::Events(chunk)]).await?;
                }
                for chunk in flows.chunks(5000) {
                    repo.write(&[Write::Flows(chunk)]).await?;
                }
                // The correlator keeps up: it has taken in everything stored.
                let (e, f) = (repo.max_event_id().await?, repo.max_flow_id().await?);
                repo.write(&[
                    Write::Cursor {
                        worker: "correlator",
                        host: "soak",
                        name: "events",
                        position: e,
                        state: "",
                    },
                    Write::Cursor {
                        worker: "correlator",
                        host: "soak",
                        name: "flows",
                        position: f,
                        state: "",
                    },
                ])
                .await?;
            }
            let (s, secs) = retention(&urls[0], from + step_ns, a.retention_days, &summary)?;
            d.deleted += get(&s, "events_deleted") + get(&s, "flows_deleted");
            d.pages += get(&s, "vacuum_pages_freed");
            d.batches += get(&s, "batches") + get(&s, "vacuum_steps");
            d.hold_max_us = d.hold_max_us.max(get(&s, "lock_hold_max_us"));
            d.retention_s += secs;
        }
        d.retained_db = size(&paths[0]);
        d.retained_wal = size(&wal(&paths[0]));
        d.baseline_db = size(&paths[1]);
        d.baseline_wal = size(&wal(&paths[1]));
        let c0 = repos[0].counts().await?;
        let c1 = repos[1].counts().await?;
        d.rows_kept = c0.events + c0.flows;
        d.rows_baseline = c1.events + c1.flows;
        println!(
            "day {}: retained {:.1} MiB (+{:.1} WAL), {} rows; baseline {:.1} MiB (+{:.1} WAL), {} rows; retention deleted {} rows, freed {} pages, {:.2} s, longest lock hold {:.2} ms",
            d.day,
            mib(d.retained_db),
            mib(d.retained_wal),
            d.rows_kept,
            mib(d.baseline_db),
            mib(d.baseline_wal),
            d.rows_baseline,
            d.deleted,
            d.pages,
            d.retention_s,
            d.hold_max_us as f64 / 1000.0
        );
        days.push(d);
    }
    for r in &repos {
        r.close().await;
    }
    println!();
    println!(
        "| simulated day | retained: file MiB | retained: rows | baseline: file MiB | baseline: rows | retention: rows deleted | pages freed | wall s | transactions | longest lock hold ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for d in &days {
        println!(
            "| {} | {:.1} | {} | {:.1} | {} | {} | {} | {:.2} | {} | {:.2} |",
            d.day,
            mib(d.retained_db),
            d.rows_kept,
            mib(d.baseline_db),
            d.rows_baseline,
            d.deleted,
            d.pages,
            d.retention_s,
            d.batches,
            d.hold_max_us as f64 / 1000.0
        );
    }
    println!(
        "(file sizes without the WAL; total run {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let full = &days[a.retention_days as usize];
    let last = &days[days.len() - 1];
    let ratio = last.retained_db as f64 / full.retained_db.max(1) as f64;
    let grew = last.baseline_db as f64 / full.baseline_db.max(1) as f64;
    println!(
        "retained file: day {} → day {}: ×{ratio:.2}; baseline: ×{grew:.2}",
        full.day, last.day
    );
    if !a.keep {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    ensure!(
        (0.85..=1.15).contains(&ratio),
        "the retained database did not level off (×{ratio:.2} between day {} and day {})",
        full.day,
        last.day
    );
    ensure!(
        grew > 1.3,
        "the baseline did not grow (×{grew:.2}): the input is too small to show anything"
    );
    println!("levelled off: yes");
    Ok(())
}
