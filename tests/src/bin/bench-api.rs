//! `cargo xtask bench api`: how fast `decnet web` answers the two listings analysts hit all day,
//! on a big repository. Seeds a SQLite database (default 100,000 attackers and 1,000,000 events,
//! bulk-inserted straight into the schema `decnet web` migrated), starts `decnet web` (the
//! release binary in DECNET_BIN), logs in (changing the first admin's password like a person
//! would), then runs wrk against `/api/v1/attackers` and `/api/v1/events` with the token at 64
//! and 256 connections and prints requests/s, p50 and p99. The aim: p99 under 50 ms at 256
//! connections.
//!
//! Flags: `--attackers N`, `--events N`, `--seconds S` (per wrk run, default 10),
//! `--connections 64,256`, `--quick` (10,000 attackers, 100,000 events, 3 s runs),
//! `--keep DIR` (keep the database there).
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

const ADMIN_PW: &str = "Bench-Initial-Passw0rd!";
const ADMIN_PW2: &str = "Bench-Changed-Passw0rd!";

struct Args {
    attackers: u64,
    events: u64,
    seconds: u64,
    connections: Vec<u32>,
    keep: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        attackers: 100_000,
        events: 1_000_000,
        seconds: 10,
        connections: vec![64, 256],
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let mut val = || it.next().with_context(|| format!("{f} needs a value"));
        match f.as_str() {
            "--attackers" => a.attackers = val()?.parse()?,
            "--events" => a.events = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--connections" => {
                a.connections = val()?
                    .split(',')
                    .map(|c| c.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--keep" => a.keep = Some(val()?.into()),
            "--quick" => {
                a.attackers = 10_000;
                a.events = 100_000;
                a.seconds = 3;
            }
            "-h" | "--help" => {
                println!(
                    "bench-api [--attackers N] [--events N] [--seconds S] [--connections 64,256] [--quick] [--keep DIR]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other} (see --help)"),
        }
    }
    if a.attackers == 0 || a.events == 0 || a.seconds == 0 || a.connections.is_empty() {
        bail!("--attackers, --events, --seconds and --connections must be positive");
    }
    Ok(a)
}

/// decnet's stored time form: RFC 3339 UTC, 9 fraction digits, `Z`.
fn ts(ns: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

fn ip(i: u64) -> String {
    let n = 0x0a00_0000u32 + u32::try_from(i).unwrap_or(0);
    std::net::Ipv4Addr::from(n).to_string()
}

fn seed(db: &Path, attackers: u64, events: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut c = rusqlite::Connection::open(db)?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let span: i64 = 7 * 86_400 * 1_000_000_000; // a week of history
    let services = ["ssh", "http", "https", "smb", "telnet", "mysql"];
    let tx = c.transaction()?;
    {
        let mut ins = tx.prepare(
            "INSERT INTO events (ts, decky, service, event_type, attacker_ip, attacker_port, fields, raw, dedup_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for i in 0..events {
            let t = now - span + (i as i64) * (span / events as i64);
            let a = (i * 2_654_435_761) % attackers;
            let svc = services[(i % 6) as usize];
            let fields = format!(
                "{{\"username\":\"root\",\"password\":\"pw{}\",\"src_port\":\"{}\",\"n\":{i}}}",
                i % 1000,
                40000 + i % 20000
            );
            let raw = format!(
                "<134>1 {} decky-{} {svc} - auth_attempt [relay@55555 principal=\"root\" secret_printable=\"pw{}\" src_ip=\"{}\"]",
                ts(t),
                i % 10,
                i % 1000,
                ip(a)
            );
            ins.execute(rusqlite::params![
                t,
                format!("decky-{}", i % 10),
                svc,
                "auth_attempt",
                ip(a),
                40000 + (i % 20000) as i64,
                fields,
                raw.as_bytes(),
                i as i64 ^ 0x5bd1_e995_1234_5678
            ])?;
        }
        let per = events / attackers;
        let mut ins = tx.prepare(
            "INSERT INTO attackers (ip, first_seen, last_seen, event_count, session_count, credential_count, flow_count, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for a in 0..attackers {
            let first = now - span + (a as i64 % 1000) * 1_000_000_000;
            let last = now - (a as i64 * 7919 % span);
            ins.execute(rusqlite::params![
                ip(a),
                ts(first),
                ts(last.max(first)),
                (per + a % 7) as i64,
                (a % 5) as i64,
                (a % 3) as i64,
                (a % 11) as i64,
                ts(now)
            ])?;
        }
    }
    tx.commit()?;
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    println!(
        "[bench-api] seeded {attackers} attackers and {events} events in {:.1} s ({:.0} MB)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(db).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
    Ok(())
}

struct Web(Child);

impl Drop for Web {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start_web(
    bin: &Path,
    dir: &Path,
    db: &Path,
    duration: Option<f64>,
    cache_ms: u64,
) -> anyhow::Result<(Web, String)> {
    let ready = dir.join("web.ready");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .args(["web", "--daemon", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .args(["--db-url", &format!("sqlite://{}", db.display())])
        .env("DECNET_ADMIN_PASSWORD", ADMIN_PW)
        .env("DECNET_WEB_LIST_CACHE_MS", cache_ms.to_string())
        .env("DECNET_LOG_FORMAT", "text")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match duration {
        Some(d) => cmd.args(["--duration", &d.to_string()]),
        None => cmd.arg("--daemon"),
    };
    let child = Web(cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(&ready)
            && let Some(addr) = s.trim().strip_prefix("http ")
        {
            return Ok((child, addr.to_owned()));
        }
        if Instant::now() > deadline {
            bail!("decnet web did not write its ready file within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn token_of(body: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(body)?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the login answer")
}

fn login(addr: &str) -> anyhow::Result<String> {
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        &serde_json::json!({"username": "admin", "password": ADMIN_PW2}).to_string(),
    )?;
    if st == 200 {
        return token_of(&body);
    }
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        &serde_json::json!({"username": "admin", "password": ADMIN_PW}).to_string(),
    )?;
    if st != 200 {
        bail!("login failed: {st} {body}");
    }
    let first = token_of(&body)?;
    let (st, body) = http(
        addr,
        "POST",
        "/api/v1/auth/password",
        Some(&first),
        &serde_json::json!({"current_password": ADMIN_PW, "new_password": ADMIN_PW2}).to_string(),
    )?;
    if st != 200 {
        bail!("password change failed: {st} {body}");
    }
    token_of(&body)
}

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

fn ms(v: &str) -> Option<f64> {
    let v = v.trim();
    for (suffix, f) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] {
        if let Some(n) = v.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|x| x * f);
        }
    }
    None
}

fn wrk(url: &str, token: &str, conns: u32, seconds: u64) -> anyhow::Result<Wrk> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{seconds}s"),
            "--latency",
            "--timeout",
            "10s",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(url)
        .output()
        .context("cannot run wrk: install it (`apt install wrk`, or `cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut w = Wrk {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: String::new(),
    };
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            w.p50_ms = ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("99%") {
            w.p99_ms = ms(v).unwrap_or(f64::NAN);
        } else if l.starts_with("Non-2xx") || l.starts_with("Socket errors") {
            w.errors.push_str(l);
            w.errors.push(' ');
        }
    }
    Ok(w)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bin = PathBuf::from(std::env::var("DECNET_BIN").context(
        "DECNET_BIN is not set: run through `cargo xtask bench api` (it builds decnet and sets it)",
    )?);
    let tmp;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("decnet-bench-api-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            tmp.clone()
        }
    };
    let db = dir.join("bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let _ = std::fs::remove_file(dir.join("decnet-jwt.secret"));
    // Let decnet web create and migrate the schema (and the first admin), then stop.
    drop(start_web(&bin, &dir, &db, Some(0.5), 0)?);
    seed(&db, args.attackers, args.events)?;
    let mut worst_p99_256: f64 = 0.0;
    println!(
        "{:<40} {:>6} {:>6} {:>10} {:>9} {:>9}  errors",
        "endpoint", "cache", "conns", "req/s", "p50 ms", "p99 ms"
    );
    // Uncached (every request queries the database), then with the default first-page cache.
    for cache_ms in [0u64, 1000] {
        let (web, addr) = start_web(&bin, &dir, &db, None, cache_ms)?;
        let token = login(&addr)?;
        for path in ["/api/v1/attackers?limit=50", "/api/v1/events?limit=50"] {
            for &c in &args.connections {
                let w = wrk(&format!("http://{addr}{path}"), &token, c, args.seconds)?;
                let cache = if cache_ms == 0 { "off" } else { "1 s" };
                println!(
                    "{path:<40} {cache:>6} {c:>6} {:>10.0} {:>9.2} {:>9.2}  {}",
                    w.rps, w.p50_ms, w.p99_ms, w.errors
                );
                if c == 256 && cache_ms == 0 {
                    worst_p99_256 = worst_p99_256.max(w.p99_ms);
                }
                if !w.errors.is_empty() {
                    bail!("wrk saw errors: {}", w.errors);
                }
            }
        }
        drop(web);
    }
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.connections.contains(&256) {
        println!(
            "[bench-api] worst p99 at 256 connections: {worst_p99_256:.1} ms (aim: < 50 ms) {}",
            if worst_p99_256 < 50.0 {
                "OK"
            } else {
                "ABOVE AIM"
            }
        );
    }
    Ok(())
}
