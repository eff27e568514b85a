//! `bench-repo`: how many event and flow rows per second the repository inserts, batched (many
//! rows per transaction) and one row per transaction, on SQLite (a temp file) and on MariaDB (a
//! scratch database `decnet_t_bench_<pid>` under `DECNET_TEST_MYSQL_URL`, dropped at the end).
//!
//! Flows are also upserted batched through `Repository::write` (what the sniffer's writer calls:
//! on SQLite the bulk write path, `repo::sqlite_writer`), side by side with the same rows through
//! a sqlx transaction (`WriteTx::upsert_flows`, the baseline) in the same rounds.
//!
//! Every measurement starts from an empty, freshly migrated database and inserts the same
//! pre-generated rows (generation is not timed); rounds interleave backends and cases, and the
//! table reports the median of the rounds. After each measurement the stored rows are counted, so
//! a figure only counts rows that are really there. Run it with `cargo xtask bench repo`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use decnet_core::model::{FlowRecord, NewEvent};
use decnet_core::repo::{Repository, Write};
use sqlx::{Connection as _, Executor as _, mysql::MySqlConnection};

const USAGE: &str = "\
bench-repo: event and flow rows inserted per second, batched vs one row per transaction, on SQLite
(a temp file) and MariaDB (a scratch database decnet_t_bench_<pid>, dropped at the end).

Usage: bench-repo [OPTIONS]    (normally: cargo xtask bench repo [-- OPTIONS])

Options:
  --events N      events inserted batched, per measurement         [default: 200000]
  --flows N       flows upserted batched, per measurement          [default: 100000]
  --single N      events, and flows, inserted one row per transaction [default: 5000]
  --batch N       rows per transaction when batched                [default: 10000]
  --rounds N      repeat every measurement N times; report medians [default: 3]
  --sqlite-only   skip MariaDB
  -h, --help      this text

Environment:
  DECNET_TEST_MYSQL_URL   MariaDB server URL without a database, e.g.
                          mysql://decnet:decnet@127.0.0.1:3306 (cargo xtask bench repo sets it)";

/// The goal stated in the issue: batched event inserts on SQLite, on the 2-core development VM.
const GOAL_SQLITE_EVENTS_PER_S: f64 = 200_000.0;
/// The goal stated in the issue for the sniffer's flow writer: flow rows per second on SQLite.
const GOAL_SQLITE_FLOWS_PER_S: f64 = 100_000.0;
const MYSQL_URL_VAR: &str = "DECNET_TEST_MYSQL_URL";

const ATTACKERS: usize = 1_000;
const DECKIES: usize = 10;
const SERVICES: [(&str, u16); 6] = [
    ("ssh", 22),
    ("http", 80),
    ("ftp", 21),
    ("smb", 445),
    ("mysql", 3306),
    ("telnet", 23),
];
/// 2026-11-26T00:00:00Z in Unix nanoseconds.
const T0: i64 = 1_795_651_200_000_000_000;

#[derive(Debug, Clone)]
struct Opts {
    events: usize,
    flows: usize,
    single: usize,
    batch: usize,
    rounds: usize,
    sqlite_only: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Opts>> {
    let mut o = Opts {
        events: 200_000,
        flows: 100_000,
        single: 5_000,
        batch: 10_000,
        rounds: 3,
        sqlite_only: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let target = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--sqlite-only" => {
                o.sqlite_only = true;
                continue;
            }
            "--events" => &mut o.events,
            "--flows" => &mut o.flows,
            "--single" => &mut o.single,
            "--batch" => &mut o.batch,
            "--rounds" => &mut o.rounds,
            _ => bail!("unknown argument {arg:?}; see --help"),
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .with_context(|| format!("{flag} needs a number"))?,
        };
        *target = value
            .replace(['_', ','], "")
            .parse()
            .with_context(|| format!("{flag} {value:?}: not a number"))?;
    }
    if o.batch == 0 || o.rounds == 0 {
        bail!("--batch and --rounds must be at least 1");
    }
    Ok(Some(o))
}

/// A small deterministic generator (SplitMix64): the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// 1,000 attacker addresses: public-looking IPv4, one in ten IPv6.
fn attackers() -> Vec<IpAddr> {
    let mut rng = Rng(7);
    (0..ATTACKERS)
        .map(|i| {
            if i % 10 == 9 {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    rng.next() as u16,
                    0,
                    0,
                    0,
                    0,
                    i as u16,
                ))
            } else {
                let r = rng.next();
                IpAddr::V4(Ipv4Addr::new(
                    [45, 61, 89, 103, 141, 185, 193, 218][i % 8],
                    (r >> 8) as u8,
                    (r >> 16) as u8,
                    1 + (r >> 24) as u8 % 254,
                ))
            }
        })
        .collect()
}

fn decky_ip(d: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 13, 0, 10 + d as u8))
}

/// RFC 3339 UTC with microseconds, for the raw lines (the repository formats `ts` itself).
fn rfc3339(ns: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// `n` realistic decoy-service events: an RFC 5424 line of ≈200 bytes, a JSON object of 4–6
/// fields, 1,000 attackers, 10 deckies, 6 services. Every raw line is distinct (its timestamp).
fn events(n: usize, ips: &[IpAddr]) -> Vec<NewEvent> {
    const USERS: [&str; 8] = [
        "root", "admin", "ubuntu", "test", "oracle", "pi", "user", "postgres",
    ];
    const PASSWORDS: [&str; 8] = [
        "123456", "password", "admin", "root", "qwerty", "12345678", "P@ssw0rd", "toor",
    ];
    const PATHS: [&str; 6] = [
        "/",
        "/wp-login.php",
        "/.env",
        "/admin/config.php",
        "/cgi-bin/luci",
        "/phpmyadmin/index.php",
    ];
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "curl/7.88.1",
        "python-requests/2.31.0",
        "zgrab/0.x",
    ];
    let mut rng = Rng(42);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ts_ns = T0 + i as i64 * 1_000_000 + (rng.next() % 1_000_000) as i64;
        let ip = ips[rng.below(ips.len())];
        let port = 1024 + rng.below(64_000) as u16;
        let d = rng.below(DECKIES);
        let decky = format!("decky-{:02}", d + 1);
        let (service, dst_port) = SERVICES[rng.below(SERVICES.len())];
        let pid = 1000 + rng.below(30_000);
        let (event_type, fields, msg) = match service {
            "ssh" | "telnet" | "ftp" | "mysql" => {
                let user = rng.pick(&USERS);
                let pass = rng.pick(&PASSWORDS);
                let fields = format!(
                    r#"{{"username":"{user}","password":"{pass}","auth_method":"password","success":false,"session_id":"{:016x}"}}"#,
                    rng.next()
                );
                let msg = format!("Failed password for {user} from {ip} port {port}");
                ("login_attempt", fields, msg)
            }
            "http" => {
                let path = rng.pick(&PATHS);
                let agent = rng.pick(&AGENTS);
                let status = [200, 301, 403, 404][rng.below(4)];
                let fields = format!(
                    r#"{{"method":"GET","path":"{path}","status":{status},"user_agent":"{agent}","bytes":{},"host":"{}"}}"#,
                    rng.below(20_000),
                    decky_ip(d)
                );
                let msg = format!("GET {path} HTTP/1.1 {status}");
                ("request", fields, msg)
            }
            _ => {
                let share = ["IPC$", "ADMIN$", "C$", "public"][rng.below(4)];
                let fields = format!(
                    r#"{{"share":"{share}","dialect":"SMB 3.1.1","username":"{}","signing":false}}"#,
                    rng.pick(&USERS)
                );
                let msg = format!("tree connect {share} from {ip}");
                ("tree_connect", fields, msg)
            }
        };
        let raw = format!(
            "<38>1 {} {decky} decnet.{service} {pid} {event_type} [decnet@55555 src_ip=\"{ip}\" \
             src_port=\"{port}\" dst_ip=\"{}\" dst_port=\"{dst_port}\"] {msg}",
            rfc3339(ts_ns),
            decky_ip(d)
        );
        out.push(NewEvent {
            ts_ns,
            decky,
            service: service.to_string(),
            event_type: event_type.to_string(),
            attacker_ip: Some(ip),
            attacker_port: Some(port),
            fields,
            raw: raw.into_bytes(),
            dedup_key: None,
        });
    }
    out
}

/// `n` distinct flow directions from the same attackers to the deckies' services.
fn flows(n: usize, ips: &[IpAddr]) -> Vec<FlowRecord> {
    let mut rng = Rng(4242);
    (0..n)
        .map(|i| {
            let d = rng.below(DECKIES);
            let (_, dst_port) = SERVICES[rng.below(SERVICES.len())];
            let first = T0 + i as i64 * 100_000;
            let packets = 1 + rng.below(40) as u64;
            let src_ip = ips[rng.below(ips.len())];
            // Different families on one flow are impossible; keep the pair consistent.
            let dst_ip = match src_ip {
                IpAddr::V4(_) => decky_ip(d),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfd00, 13, 0, 0, 0, 0, 0, d as u16)),
            };
            FlowRecord {
                bridge: "decnet0".into(),
                port: format!("vdecky{:02}", d + 1),
                src_ip,
                dst_ip,
                src_port: 1024 + rng.below(64_000) as u16,
                dst_port,
                proto: 6,
                vlan: 0,
                packets,
                bytes: packets * (60 + rng.below(1400) as u64),
                tcp_flags: [0x02, 0x12, 0x1b, 0x14][rng.below(4)],
                first_seen_ns: first,
                last_seen_ns: first + rng.below(30_000_000_000) as i64,
                ended: rng.below(3) == 0,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    MariaDb,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::MariaDb => "MariaDB",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Events,
    Flows,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Flows => "flows",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `batch` rows per sqlx transaction (`Repository::begin`, `WriteTx`).
    Batched,
    /// One row per sqlx transaction.
    Single,
    /// `batch` rows per `Repository::write` (the writers' path; SQLite: the bulk write path).
    Write,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Batched => "batched",
            Mode::Single => "single",
            Mode::Write => "write",
        }
    }
}

/// Where fresh databases come from.
struct Databases {
    dir: PathBuf,
    seq: u32,
    mysql: Option<MySql>,
}

struct MySql {
    admin: MySqlConnection,
    server_url: String,
    db: String,
}

impl Databases {
    /// A freshly created, migrated, empty database of `backend`.
    async fn fresh(&mut self, backend: Backend) -> Result<Repository> {
        match backend {
            Backend::Sqlite => {
                self.seq += 1;
                let path = self.dir.join(format!("bench-{}.db", self.seq));
                let repo = Repository::connect(&format!("sqlite://{}", path.display())).await?;
                Ok(repo)
            }
            Backend::MariaDb => {
                let m = self.mysql.as_mut().context("MariaDB is not configured")?;
                m.admin
                    .execute(format!("DROP DATABASE IF EXISTS `{}`", m.db).as_str())
                    .await?;
                m.admin
                    .execute(format!("CREATE DATABASE `{}`", m.db).as_str())
                    .await?;
                Ok(Repository::connect(&with_database(&m.server_url, &m.db)).await?)
            }
        }
    }

    /// Drops the MariaDB scratch database and removes the SQLite files.
    async fn cleanup(mut self) {
        if let Some(m) = self.mysql.as_mut() {
            match m
                .admin
                .execute(format!("DROP DATABASE IF EXISTS `{}`", m.db).as_str())
                .await
            {
                Ok(_) => println!("dropped the MariaDB database {}", m.db),
                Err(e) => eprintln!("warning: could not drop the MariaDB database {}: {e}", m.db),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// `server_url` (no database) with `/db` added before any query string.
fn with_database(server_url: &str, db: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let mut url = format!("{}/{db}", base.trim_end_matches('/'));
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// The pre-generated rows every measurement draws from.
struct Data {
    events: Vec<NewEvent>,
    flows: Vec<FlowRecord>,
    /// Rows per transaction when batched.
    batch: usize,
}

/// CPU time of this process so far: the sum of its threads' run time from
/// `/proc/self/task/*/schedstat` (nanoseconds, first field). Threads that exit in between are
/// not counted; the measured writes keep their threads (the pool closes after the count).
fn process_cpu() -> Result<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let path = task?.path().join("schedstat");
        // A thread may exit between listing and reading.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{}: unexpected {text:?}", path.display()))?;
    }
    Ok(Duration::from_nanos(ns))
}

/// Inserts the first `n` events or flows into a fresh database; returns the time it took and
/// the CPU time this process spent meanwhile (MariaDB's server time is not in it).
async fn measure(
    dbs: &mut Databases,
    backend: Backend,
    (table, mode, n): (Table, Mode, usize),
    data: &Data,
) -> Result<(Duration, Duration)> {
    let repo = dbs.fresh(backend).await?;
    let per_tx = match mode {
        Mode::Batched | Mode::Write => data.batch,
        Mode::Single => 1,
    };
    let cpu0 = process_cpu()?;
    let started = Instant::now();
    match table {
        Table::Events if mode == Mode::Write => {
            for chunk in data.events[..n].chunks(per_tx) {
                repo.write(&[Write::Events(chunk)]).await?;
            }
        }
        Table::Flows if mode == Mode::Write => {
            for chunk in data.flows[..n].chunks(per_tx) {
                repo.write(&[Write::Flows(chunk)]).await?;
            }
        }
        Table::Events => {
            for chunk in data.events[..n].chunks(per_tx) {
                let mut tx = repo.begin().await?;
                tx.insert_events(chunk).await?;
                tx.commit().await?;
            }
        }
        Table::Flows => {
            for chunk in data.flows[..n].chunks(per_tx) {
                let mut tx = repo.begin().await?;
                tx.upsert_flows(chunk).await?;
                tx.commit().await?;
            }
        }
    }
    let took = started.elapsed();
    let cpu = process_cpu()?.saturating_sub(cpu0);
    let stored = match table {
        Table::Events => repo.count_events().await?,
        Table::Flows => repo.count_flows().await?,
    };
    repo.close().await;
    if stored != n as u64 {
        bail!(
            "{} {}: inserted {n} rows but {stored} are stored",
            backend.name(),
            table.name()
        );
    }
    Ok((took, cpu))
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

/// `1234567.8` → `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn run(o: Opts) -> Result<()> {
    let mut backends = vec![Backend::Sqlite];
    let mysql = if o.sqlite_only {
        println!("--sqlite-only: skipping MariaDB");
        None
    } else {
        let Some(server_url) = std::env::var(MYSQL_URL_VAR).ok().filter(|u| !u.is_empty()) else {
            bail!(
                "{MYSQL_URL_VAR} is not set: run `cargo xtask bench repo` (it starts MariaDB and \
                 sets it), set it to a server URL such as mysql://decnet:decnet@127.0.0.1:3306, \
                 or pass --sqlite-only"
            );
        };
        let server_url = server_url.trim_end_matches('/').to_string();
        let admin = MySqlConnection::connect(&server_url).await.with_context(|| {
            format!(
                "cannot connect to {MYSQL_URL_VAR}={}; `cargo xtask setup` starts the server and \
                 creates the account",
                decnet_core::repo::redact_url(&server_url)
            )
        })?;
        backends.push(Backend::MariaDb);
        Some(MySql {
            admin,
            server_url,
            db: format!("decnet_t_bench_{}", std::process::id()),
        })
    };
    let dir = std::env::temp_dir().join(format!("decnet-bench-repo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut dbs = Databases { dir, seq: 0, mysql };
    let result = run_rounds(&o, &backends, &mut dbs).await;
    dbs.cleanup().await;
    result
}

async fn run_rounds(o: &Opts, backends: &[Backend], dbs: &mut Databases) -> Result<()> {
    let ips = attackers();
    let data = Data {
        events: events(o.events.max(o.single), &ips),
        flows: flows(o.flows.max(o.single), &ips),
        batch: o.batch,
    };
    let (events, flows) = (&data.events, &data.flows);
    let avg_raw = events.iter().map(|e| e.raw.len()).sum::<usize>() / events.len().max(1);
    let avg_fields = events.iter().map(|e| e.fields.len()).sum::<usize>() / events.len().max(1);
    println!(
        "data: {} events (raw line ≈{avg_raw} B, fields JSON ≈{avg_fields} B), {} flows; {ATTACKERS} \
         attackers, {DECKIES} deckies, {} services",
        thousands(events.len() as f64),
        thousands(flows.len() as f64),
        SERVICES.len()
    );
    println!(
        "batched: {} rows per transaction; single: one row per transaction; {} round(s), each \
         measurement on a fresh database",
        thousands(o.batch as f64),
        o.rounds
    );
    if let Some(m) = &dbs.mysql {
        println!("MariaDB scratch database: {}", m.db);
    }

    let cases = [
        (Table::Events, Mode::Batched, o.events),
        (Table::Events, Mode::Single, o.single),
        (Table::Flows, Mode::Batched, o.flows),
        (Table::Flows, Mode::Single, o.single),
        (Table::Flows, Mode::Write, o.flows),
    ];
    // rates[backend][case] = rows/s of each round.
    let mut rates = vec![vec![Vec::new(); cases.len()]; backends.len()];
    // cpu_rates[backend][case] = rows per CPU-second of this process, each round.
    let mut cpu_rates = vec![vec![Vec::new(); cases.len()]; backends.len()];
    for round in 1..=o.rounds {
        for (b, &backend) in backends.iter().enumerate() {
            for (c, &(table, mode, n)) in cases.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let (took, cpu) = measure(dbs, backend, (table, mode, n), &data).await?;
                let rate = n as f64 / took.as_secs_f64().max(1e-9);
                let cpu_rate = n as f64 / cpu.as_secs_f64().max(1e-9);
                println!(
                    "round {round}/{}: {:<7} {:<6} {:<7} {:>9} rows in {:>7.3} s = {:>9} rows/s \
                     ({:>9} rows/CPU-s)",
                    o.rounds,
                    backend.name(),
                    table.name(),
                    mode.name(),
                    thousands(n as f64),
                    took.as_secs_f64(),
                    thousands(rate),
                    thousands(cpu_rate)
                );
                rates[b][c].push(rate);
                cpu_rates[b][c].push(cpu_rate);
            }
        }
    }

    println!();
    println!(
        "rows inserted per second (median of {} round(s); batched = {} rows/transaction, single = 1):",
        o.rounds,
        thousands(o.batch as f64)
    );
    println!();
    println!(
        "| backend | table  | batched rows | batched rows/s | single rows | single rows/s | batched/single |"
    );
    println!(
        "|---------|--------|-------------:|---------------:|------------:|--------------:|---------------:|"
    );
    let mut sqlite_events = None;
    for (b, &backend) in backends.iter().enumerate() {
        for (table, (bi, si)) in [(Table::Events, (0, 1)), (Table::Flows, (2, 3))] {
            let batched = (!rates[b][bi].is_empty()).then(|| median(rates[b][bi].clone()));
            let single = (!rates[b][si].is_empty()).then(|| median(rates[b][si].clone()));
            if backend == Backend::Sqlite && table == Table::Events {
                sqlite_events = batched;
            }
            let show = |r: Option<f64>| r.map_or_else(|| "–".to_string(), thousands);
            let ratio = match (batched, single) {
                (Some(b), Some(s)) if s > 0.0 => format!("{:.0}×", b / s),
                _ => "–".to_string(),
            };
            println!(
                "| {:<7} | {:<6} | {:>12} | {:>14} | {:>11} | {:>13} | {:>14} |",
                backend.name(),
                table.name(),
                thousands(cases[bi].2 as f64),
                show(batched),
                thousands(cases[si].2 as f64),
                show(single),
                ratio
            );
        }
    }
    println!();
    println!(
        "flows batched ({} rows each) through Repository::write (the sniffer writer's path; on \
         SQLite the bulk write path) vs through a sqlx transaction (WriteTx, the baseline), same \
         rows, same rounds:",
        thousands(o.batch as f64)
    );
    let mut sqlite_flows = None;
    for (b, &backend) in backends.iter().enumerate() {
        let (tx, write) = (&rates[b][2], &rates[b][4]);
        if tx.is_empty() || write.is_empty() {
            continue;
        }
        let (tx, write) = (median(tx.clone()), median(write.clone()));
        let (tx_cpu, write_cpu) = (
            median(cpu_rates[b][2].clone()),
            median(cpu_rates[b][4].clone()),
        );
        if backend == Backend::Sqlite {
            sqlite_flows = Some(write);
        }
        println!(
            "  {:<7} write {:>9} rows/s, sqlx transaction {:>9} rows/s ({:.2}×); per CPU-second \
             of this process: {:>9} vs {:>9} ({:.2}×)",
            backend.name(),
            thousands(write),
            thousands(tx),
            write / tx.max(1e-9),
            thousands(write_cpu),
            thousands(tx_cpu),
            write_cpu / tx_cpu.max(1e-9)
        );
    }
    println!();
    if let Some(rate) = sqlite_flows {
        println!(
            "goal (≥{} flow rows/s on SQLite through the writer's path): {} ({} rows/s)",
            thousands(GOAL_SQLITE_FLOWS_PER_S),
            if rate >= GOAL_SQLITE_FLOWS_PER_S {
                "met"
            } else {
                "NOT met"
            },
            thousands(rate)
        );
    }
    match sqlite_events {
        Some(rate) => println!(
            "goal (≥{} event rows/s batched on SQLite): {} ({} rows/s)",
            thousands(GOAL_SQLITE_EVENTS_PER_S),
            if rate >= GOAL_SQLITE_EVENTS_PER_S {
                "met"
            } else {
                "NOT met"
            },
            thousands(rate)
        ),
        None => println!("goal not measured (--events 0)"),
    }
    if o.sqlite_only {
        println!("MariaDB skipped (--sqlite-only)");
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-repo: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-repo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-repo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_with_defaults_and_overrides() {
        let o = parse_args(Vec::<String>::new()).unwrap().unwrap();
        assert_eq!(
            (o.events, o.single, o.flows, o.rounds),
            (200_000, 5_000, 100_000, 3)
        );
        let o = parse_args(
            [
                "--events",
                "1000",
                "--single=10",
                "--flows",
                "2_000",
                "--sqlite-only",
            ]
            .map(String::from),
        )
        .unwrap()
        .unwrap();
        assert_eq!((o.events, o.single, o.flows), (1000, 10, 2000));
        assert!(o.sqlite_only);
        assert!(parse_args(["--help".to_string()]).unwrap().is_none());
        assert!(parse_args(["--nope".to_string()]).is_err());
        assert!(parse_args(["--events".to_string()]).is_err());
    }

    #[test]
    fn events_look_like_the_real_thing_and_are_distinct() {
        let ips = attackers();
        assert_eq!(ips.len(), ATTACKERS);
        let ev = events(5_000, &ips);
        let raws: std::collections::HashSet<&[u8]> = ev.iter().map(|e| &e.raw[..]).collect();
        assert_eq!(raws.len(), ev.len(), "every raw line distinct (dedup key)");
        let avg = ev.iter().map(|e| e.raw.len()).sum::<usize>() / ev.len();
        assert!(
            (150..=260).contains(&avg),
            "raw lines ≈200 bytes, got {avg}"
        );
        for e in &ev {
            let keys = e.fields.matches("\":").count();
            assert!((4..=6).contains(&keys), "{}", e.fields);
            assert!(e.raw.starts_with(b"<38>1 2026-"));
        }
        let fl = flows(5_000, &ips);
        let ids: std::collections::HashSet<_> = fl.iter().map(FlowRecord::identity).collect();
        assert_eq!(ids.len(), fl.len());
    }

    #[test]
    fn database_goes_before_the_query_string() {
        assert_eq!(with_database("mysql://u:p@h:1", "d"), "mysql://u:p@h:1/d");
        assert_eq!(with_database("mysql://u:p@h:1/", "d"), "mysql://u:p@h:1/d");
        assert_eq!(
            with_database("mysql://u:p@h?ssl-mode=disabled", "d"),
            "mysql://u:p@h/d?ssl-mode=disabled"
        );
    }

    #[test]
    fn medians_and_thousands() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1_234_567.6), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }
}
