//! `cargo xtask bench lag`: does the intelligence keep up with the sensors under a sustained
//! attack?
//!
//! A `decnet collect` (SQLite, one TCP listener on loopback) is fed decoy lines at a fixed rate
//! (default 20,000 lines/s for 60 s) while `decnet correlator --daemon` and `decnet profiler
//! --daemon` run on its database. The stream: one brute-forcer (default 500,000 password
//! attempts on one SSH decky, each password new — a wordlist), 30 % of all lines login attempts
//! from 1,000 other attackers (a 200-word list, so secrets are reused across deckies), the rest
//! HTTP requests, connects, disconnects and shell commands from the same attackers. Every line
//! carries the wall-clock time it was sent.
//!
//! The sender keeps to the rate unless the collector pushes back (its queue full, TCP stops
//! reading): then it falls behind and the end says how long the lines took to send.
//!
//! Every second it samples the database (read-only) and prints, every `--every` seconds:
//! lines sent, events stored, events correlated (the correlator's cursor), and the **intel lag**
//! — the newest stored event's time minus the time of the newest correlated one. After the
//! stream ends it keeps sampling until the correlator has taken in everything (or `--drain`
//! seconds pass). The end: lag at the end of the stream, the largest lag seen, how long the
//! correlator needed after the stream to catch up, and the collector's and correlator's own
//! counts (every line sent must be stored, and every stored event correlated).
//!
//! Flags: `--rate N`, `--seconds S`, `--attackers N`, `--brute N`, `--every S`, `--drain S`,
//! `--correlator-interval S`, `--keep`.
use std::{
    io::Write as _,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use decnet_core::time_fmt::format_ts_micros;
use decnet_e2e::collector::{self, Collector, CollectorOptions, Framing};

struct Args {
    rate: u64,
    seconds: u64,
    attackers: u64,
    brute: u64,
    every: u64,
    drain: u64,
    correlator_interval: f64,
    keep: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        rate: 20_000,
        seconds: 60,
        attackers: 1_000,
        brute: 500_000,
        every: 5,
        drain: 300,
        correlator_interval: 1.0,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rate" => a.rate = val()?.parse().context("--rate: lines per second")?,
            "--seconds" => a.seconds = val()?.parse().context("--seconds")?,
            "--attackers" => a.attackers = val()?.parse().context("--attackers")?,
            "--brute" => a.brute = val()?.parse().context("--brute: attempts")?,
            "--every" => a.every = val()?.parse().context("--every: seconds")?,
            "--drain" => a.drain = val()?.parse().context("--drain: seconds")?,
            "--correlator-interval" => {
                a.correlator_interval = val()?.parse().context("--correlator-interval")?
            }
            "--keep" => a.keep = true,
            "-h" | "--help" => {
                println!(
                    "bench-lag [--rate 20000] [--seconds 60] [--attackers 1000] [--brute 500000] \
                     [--every 5] [--drain 300] [--correlator-interval 1] [--keep]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(
        a.rate > 0 && a.seconds > 0 && a.attackers > 0 && a.every > 0,
        "rate, seconds, attackers and every must be positive"
    );
    ensure!(
        a.brute <= a.rate * a.seconds,
        "--brute {} is more than the {} lines sent",
        a.brute,
        a.rate * a.seconds
    );
    Ok(a)
}

const DECKIES: [&str; 10] = [
    "web-01", "web-02", "db-01", "db-02", "mail-01", "files-01", "dc-01", "vpn-01", "dev-01",
    "cam-01",
];
const WORDS: usize = 200;

/// Line `i` of the stream (`brute_every`: every how many lines the brute-forcer's).
fn line(i: u64, a: &Args, brute_every: Option<u64>, ts: &str) -> String {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
    let port = 1024 + (i % 60_000);
    if let Some(k) = brute_every
        && i.is_multiple_of(k)
    {
        let n = i / k;
        return format!(
            "<134>1 {ts} db-01 ssh - auth_attempt [relay@55555 src_ip=\"198.51.100.7\" \
             src_port=\"{port}\" principal=\"root\" secret_kind=\"password\" \
             secret_printable=\"wordlist-{n}\"]"
        );
    }
    let decky = DECKIES[(h % 10) as usize];
    let who = (h >> 8) % a.attackers;
    let ip = format!("203.0.{}.{}", 113 + who / 250, who % 250 + 1);
    match (h >> 20) % 10 {
        // 30 % of the other lines are login attempts.
        0..=2 => format!(
            "<134>1 {ts} {decky} ssh - auth_attempt [relay@55555 src_ip=\"{ip}\" \
             src_port=\"{port}\" principal=\"admin\" secret_kind=\"password\" \
             secret_printable=\"word{}\"]",
            (h >> 28) % WORDS as u64
        ),
        3..=5 => format!(
            "<134>1 {ts} {decky} http - request [relay@55555 src_ip=\"{ip}\" src_port=\"{port}\" \
             method=\"GET\" path=\"/admin/{}\" user_agent=\"Mozilla/5.0\"]",
            (h >> 28) % 50
        ),
        6 => format!(
            "<134>1 {ts} {decky} ftp - connect [relay@55555 src_ip=\"{ip}\" src_port=\"{port}\"]"
        ),
        7 => format!(
            "<134>1 {ts} {decky} ftp - disconnect [relay@55555 src_ip=\"{ip}\" \
             src_port=\"{port}\"]"
        ),
        _ => format!(
            "<134>1 {ts} {decky} ssh - command [relay@55555 src_ip=\"{ip}\" src_port=\"{port}\" \
             cmd=\"cat /etc/passwd\"]"
        ),
    }
}

fn decnet_bin() -> Result<std::path::PathBuf> {
    collector::collect_bin()
}

fn daemon(db: &Path, dir: &Path, args: &[&str]) -> Result<Child> {
    let name = args[0];
    let out = std::fs::File::create(dir.join(format!("{name}.out")))?;
    let err = std::fs::File::create(dir.join(format!("{name}.err")))?;
    Command::new(decnet_bin()?)
        .args(args)
        .args(["--db-url", &format!("sqlite://{}", db.display())])
        .env_remove("DECNET_DB_URL")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting decnet {name}"))
}

fn stop(mut child: Child, name: &str, dir: &Path) -> Result<String> {
    // SAFETY: our child, still running (or a zombie we have not reaped).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default();
            ensure!(
                status.success(),
                "decnet {name} exited with {status}: {}",
                std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
            );
            return Ok(out.trim().to_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("decnet {name} did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One look at the database.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    stored: i64,
    correlated: i64,
    newest_ns: i64,
    correlated_ns: i64,
}

impl Sample {
    fn lag_s(&self) -> f64 {
        if self.correlated >= self.stored {
            return 0.0;
        }
        (self.newest_ns - self.correlated_ns).max(0) as f64 / 1e9
    }
}

fn sample(db: &Path) -> Result<Sample> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let ts_of = |id: i64| -> Result<i64> {
        if id == 0 {
            return Ok(0);
        }
        // Unix epoch nanoseconds.
        Ok(conn.query_row("SELECT ts FROM events WHERE id = ?", [id], |r| r.get(0))?)
    };
    let stored: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    // Nothing correlated yet: the lag runs from the oldest stored event.
    let first: i64 = conn.query_row("SELECT COALESCE(MIN(id), 0) FROM events", [], |r| r.get(0))?;
    let correlated: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(position), 0) FROM worker_cursors \
             WHERE worker = 'correlator' AND name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    Ok(Sample {
        stored,
        correlated,
        newest_ns: ts_of(stored)?,
        correlated_ns: ts_of(if correlated == 0 { first } else { correlated })?,
    })
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let total = a.rate * a.seconds;
    let brute_every = (a.brute > 0).then(|| (total / a.brute).max(1));
    let mut c = Collector::start(&CollectorOptions {
        udp: 0,
        tcp: 1,
        ..Default::default()
    })?;
    let db = c.db.clone();
    let dir = c.dir.clone();
    let interval = format!("{}", a.correlator_interval);
    let correlator = daemon(
        &db,
        &dir,
        &["correlator", "--daemon", "--interval", &interval],
    )?;
    let profiler = daemon(&db, &dir, &["profiler", "--daemon", "--interval", "2"])?;
    println!(
        "[bench-lag] {} lines/s for {} s ({total} lines; brute-forcer {} attempts, 1 line in {}), \
         {} attackers; correlator every {} s, profiler every 2 s; DB {}",
        a.rate,
        a.seconds,
        a.brute,
        brute_every.unwrap_or(0),
        a.attackers,
        a.correlator_interval,
        db.display()
    );

    // The sender: one TCP connection, paced in 10 ms slices.
    let addr = c.tcp_addr();
    let rate = a.rate;
    let sender_args = Args { ..a };
    let sent_count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent_by_sender = std::sync::Arc::clone(&sent_count);
    let sender = std::thread::spawn(move || -> Result<u64> {
        let mut s = TcpStream::connect(addr).context("connecting to the collector")?;
        s.set_nodelay(true)?;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut buf = Vec::with_capacity(1 << 20);
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            if due > sent {
                let ts = format_ts_micros(time::OffsetDateTime::now_utc());
                buf.clear();
                for i in sent..due {
                    let l = line(i, &sender_args, brute_every, &ts);
                    collector::frame_into(&mut buf, l.as_bytes(), Framing::OctetCounting);
                }
                s.write_all(&buf).context("sending")?;
                sent = due;
                sent_by_sender.store(sent, std::sync::atomic::Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(sent)
    });

    println!("| t s | sent | stored | correlated | intel lag s |");
    println!("|---|---|---|---|---|");
    let t0 = Instant::now();
    let mut max_lag = 0f64;
    let mut end_of_stream: Option<(f64, Sample)> = None;
    let mut caught_up: Option<f64> = None;
    let mut tick = 0u64;
    loop {
        tick += 1;
        let next = t0 + Duration::from_secs(tick);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = t0.elapsed().as_secs_f64();
        let s = sample(&db)?;
        max_lag = max_lag.max(s.lag_s());
        let sent = sent_count.load(std::sync::atomic::Ordering::Relaxed);
        if tick.is_multiple_of(a.every) || (end_of_stream.is_some() && s.correlated >= s.stored) {
            println!(
                "| {t:.0} | {sent} | {} | {} | {:.2} |",
                s.stored,
                s.correlated,
                s.lag_s()
            );
        }
        if end_of_stream.is_none() && sender.is_finished() {
            end_of_stream = Some((t, s));
        }
        if let Some((t_end, _)) = end_of_stream
            && s.stored as u64 >= total
            && s.correlated >= s.stored
        {
            caught_up = Some(t - t_end);
            break;
        }
        if let Some((t_end, _)) = end_of_stream
            && t - t_end > a.drain as f64
        {
            break;
        }
    }
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    let corr_summary = stop(correlator, "correlator", &dir)?;
    let prof_summary = stop(profiler, "profiler", &dir)?;
    let out = c.stop_within(Duration::from_secs(120))?;
    let (t_end, at_end) = end_of_stream.unwrap_or_default();
    println!();
    println!(
        "[bench-lag] sent {sent} lines in {t_end:.1} s; collector stored {} duplicates {} \
         rejected {} batches {} queue_depth_max {}",
        out.summary.stored,
        out.summary.duplicates,
        out.summary.rejected_total(),
        out.summary.batches,
        out.summary.queue_depth_max
    );
    println!("[bench-lag] {corr_summary}");
    println!("[bench-lag] {prof_summary}");
    println!(
        "[bench-lag] intel lag at the end of the stream {:.2} s; largest {max_lag:.2} s; {}",
        at_end.lag_s(),
        match caught_up {
            Some(s) => format!("everything correlated {s:.1} s after the stream ended"),
            None => format!("NOT caught up {} s after the stream ended", a.drain),
        }
    );
    ensure!(
        out.summary.stored + out.summary.duplicates == sent,
        "the collector stored {} (+{} duplicates) of {sent} lines",
        out.summary.stored,
        out.summary.duplicates
    );
    if a.keep {
        println!("[bench-lag] kept {}", dir.display());
        std::mem::forget(c);
    }
    ensure!(caught_up.is_some(), "the correlator did not catch up");
    Ok(())
}
