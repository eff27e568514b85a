//! # decnet-prober — realism checks of the deckies (`decnet prober`)
//!
//! **Input:** the fleet file (`--fleet`: every decky, its persona and services), the deckies
//! themselves as seen from the prober's vantage namespace on the decoy bridge
//! ([`vantage`]: its own namespace and address, created by `decnet deploy`), and p0f's
//! database (`--p0f-db`, Debian's `/etc/p0f/p0f.fp`).
//! **Output:** one row per (decky, check, subject) in `probe_results` with its current
//! outcome — passes too — (see [`checks`] for every check and its severity); the vantage's
//! address in `probe_vantages` (so the correlator never counts it as an attacker); counters in
//! `worker_counters` (worker `prober`); one log line per finding.
//!
//! A sweep probes every decky: each service of the fleet file ([`probe`]: the greeting, `GET
//! /`, a TLS handshake, an SSH key exchange up to the host key), its TCP/IP stack ([`stack`]: the
//! SYN-ACK and a closed port's RST through a raw socket, which needs CAP_NET_RAW — without it
//! the stack checks are skipped with one warning and counted under `stack_skipped_no_raw`), and
//! its MAC as the vantage's neighbour table has it; then the fleet against itself. Every probe
//! has connect, read and total timeouts and a byte limit, and every connection waits for the
//! global rate limit (`--rate` per second). Sweeps run every `--interval` (600 s), and within
//! `--settle` seconds after the fleet file or the recorded deckies change.
//!
//! Runs through `decnet-runtime`: without `--daemon`/`--duration` one sweep, then exit. One
//! per host and repository (lease `prober`).
pub mod checks;
pub mod probe;
pub mod stack;
pub mod vantage;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use decnet_core::{
    model::Severity,
    repo::{CounterMode, Repository, Write, hostname},
    time_fmt::now_ns,
};
use decnet_decoys::fleet::{DeckySpec, Fleet, ServiceKind};
use decnet_fingerprint::p0f::Database;
use decnet_runtime::{Context, DbArgs, Report, RunArgs, Spec, positive_secs};
use futures::{StreamExt as _, stream};
use serde::Serialize;

use crate::{
    checks::{DeckySeen, Observation, ServiceSeen},
    probe::{Limits, Prober, first_line},
    vantage::Vantage,
};

pub const WORKER: &str = "prober";

/// `decnet prober`: realism checks of every decky, from a vantage namespace on the bridge.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Every decky is probed as an attacker's tools would see it — service banners, HTTP headers, TLS \
certificates, SSH host keys, the TCP/IP stack's SYN-ACK and RST (against p0f's database), the MAC \
vendor — and against the rest of the fleet (shared host keys, certificates, pages). Every \
outcome, passes included, is stored in probe_results and shown in the dashboard's Realism view.\n\n\
Examples:\n  decnet prober --fleet /etc/decnet/fleet.toml            # one sweep, then exit\n  \
decnet prober --daemon --fleet /etc/decnet/fleet.toml   # a sweep every --interval (what decnet deploy runs)")]
pub struct ProberArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// The fleet file (TOML; see deploy/fleet.example.toml).
    #[arg(long, env = "DECNET_FLEET", default_value = "/etc/decnet/fleet.toml")]
    pub fleet: PathBuf,

    /// The network namespace probes are sent from (`/run/netns/NAME`): by default the one
    /// `decnet deploy` creates for the fleet's bridge (`decnet-prober.<bridge>`); `none` probes
    /// from the prober's own namespace.
    #[arg(long, env = "DECNET_PROBER_VANTAGE_NETNS", value_name = "NAME")]
    pub vantage_netns: Option<String>,

    /// Seconds between sweeps with --daemon or --duration.
    #[arg(long, value_name = "SECS", env = "DECNET_PROBER_INTERVAL", default_value = "600", value_parser = positive_secs)]
    pub interval: f64,

    /// A sweep follows this many seconds after the fleet file or the recorded deckies change.
    #[arg(long, value_name = "SECS", env = "DECNET_PROBER_SETTLE", default_value = "3", value_parser = positive_secs)]
    pub settle: f64,

    /// With --daemon or --duration: before the first sweep, wait at most this long for every
    /// service of the fleet to accept a connection (the deckies start with the prober).
    #[arg(long, value_name = "SECS", env = "DECNET_PROBER_STARTUP_WAIT", default_value = "30", value_parser = decnet_runtime::non_negative_secs)]
    pub startup_wait: f64,

    /// Connections per second at most, over all deckies.
    #[arg(long, value_name = "N", env = "DECNET_PROBER_RATE", default_value = "20", value_parser = positive_secs)]
    pub rate: f64,

    /// Deckies probed at the same time.
    #[arg(long, value_name = "N", env = "DECNET_PROBER_PARALLEL", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Connect timeout of one probe, seconds.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = positive_secs)]
    pub connect_timeout: f64,

    /// Longest wait for the next bytes of an answer, seconds.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = positive_secs)]
    pub read_timeout: f64,

    /// Longest one probe may take, seconds.
    #[arg(long, value_name = "SECS", default_value = "6", value_parser = positive_secs)]
    pub total_timeout: f64,

    /// Most bytes read from one connection.
    #[arg(long, value_name = "BYTES", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(512..=16_777_216))]
    pub max_bytes: u64,

    /// p0f's signature database (Debian package `p0f`); missing, the stack is compared by TTL
    /// alone and `tcp_stack` says so.
    #[arg(long, value_name = "FILE", env = "DECNET_PROBER_P0F_DB", default_value = decnet_fingerprint::p0f::SYSTEM_DB)]
    pub p0f_db: PathBuf,
}

decnet_runtime::worker!(
    ProberArgs,
    |_args| Spec::new(WORKER)
        .once()
        .lease(WORKER)
        .grace(Duration::from_secs(10)),
    run
);

impl ProberArgs {
    fn limits(&self) -> Limits {
        Limits {
            connect: Duration::from_secs_f64(self.connect_timeout),
            read: Duration::from_secs_f64(self.read_timeout),
            total: Duration::from_secs_f64(self.total_timeout),
            max_bytes: self.max_bytes as usize,
        }
    }
}

/// Named counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    pub fn add(&mut self, name: &str, n: u64) {
        *self.0.entry(name.to_owned()).or_insert(0) += n;
    }
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
    fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }
    fn line(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A port of the decky that none of its services uses (for the RST).
fn closed_port(d: &DeckySpec) -> u16 {
    [1u16, 7, 9, 13, 37, 79, 113]
        .into_iter()
        .find(|p| d.services.iter().all(|s| s.port != *p))
        .unwrap_or(65_000)
}

/// Probes one service.
async fn probe_service(p: &Prober, ip: IpAddr, kind: ServiceKind, port: u16) -> ServiceSeen {
    let addr = SocketAddr::new(ip, port);
    let result = match kind {
        ServiceKind::Ssh => match p.greeting(addr).await {
            Ok(raw) => {
                let banner = first_line(&raw);
                let host_key = p.ssh_host_key(addr).await.ok();
                Ok(Observation::Ssh { banner, host_key })
            }
            Err(e) => Err(e),
        },
        ServiceKind::Http => p.http(addr).await.map(Observation::Http),
        ServiceKind::Https => p.https(addr).await.map(|(t, h)| Observation::Https(t, h)),
        ServiceKind::Redis => p
            .exchange(addr, Some(b"PING\r\n"), Duration::from_millis(300))
            .await
            .map(|raw| Observation::Greeting(first_line(&raw))),
        ServiceKind::Ftp | ServiceKind::Smtp | ServiceKind::Telnet | ServiceKind::Mysql => p
            .greeting(addr)
            .await
            .map(|raw| Observation::Greeting(first_line(&raw))),
    };
    // A service that sent nothing at all did not answer its protocol.
    let result = match result {
        Ok(Observation::Greeting(g)) if g.is_empty() && kind != ServiceKind::Telnet => Err(
            probe::ProbeError::Protocol("connected, but the service sent nothing".into()),
        ),
        other => other,
    };
    ServiceSeen { kind, port, result }
}

/// Everything one sweep sees of one decky.
async fn probe_decky(
    p: &Prober,
    d: &DeckySpec,
    raw_ok: &std::sync::atomic::AtomicBool,
) -> DeckySeen {
    let ip = IpAddr::V4(d.ip);
    let mut services = Vec::new();
    for s in &d.services {
        services.push(probe_service(p, ip, s.kind, s.port).await);
    }
    let mut stack = None;
    if let Some(open) = d.services.first().map(|s| s.port)
        && raw_ok.load(Ordering::Relaxed)
    {
        match stack::probe(p, d.ip, open, closed_port(d)).await {
            Ok(s) => stack = Some(s),
            Err(stack::StackError::NoRawSocket(e)) => {
                if raw_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "no raw socket in the vantage ({e}): the TCP/IP stack checks are skipped \
                         (the prober needs CAP_NET_RAW); the other checks still run"
                    );
                }
            }
        }
    }
    let mac = p
        .vantage
        .arp_table()
        .ok()
        .and_then(|t| t.into_iter().find(|(a, _)| *a == d.ip).map(|(_, m)| m));
    DeckySeen {
        spec: d.clone(),
        services,
        stack,
        mac,
    }
}

/// One sweep over the fleet: probes, checks, stores. Returns its counters.
async fn sweep(
    repo: &Repository,
    fleet: &Fleet,
    prober: &Prober,
    db: Option<&Database>,
    parallel: usize,
) -> anyhow::Result<Counters> {
    let started = Instant::now();
    let before = (
        prober.traffic.probes.load(Ordering::Relaxed),
        prober.traffic.bytes_sent.load(Ordering::Relaxed),
        prober.traffic.bytes_received.load(Ordering::Relaxed),
        prober.traffic.failures.load(Ordering::Relaxed),
        prober.traffic.timeouts.load(Ordering::Relaxed),
    );
    let raw_ok = std::sync::atomic::AtomicBool::new(true);
    let mut seen: Vec<DeckySeen> = stream::iter(fleet.deckies.iter())
        .map(|d| probe_decky(prober, d, &raw_ok))
        .buffer_unordered(parallel)
        .collect()
        .await;
    seen.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let outcomes = checks::evaluate(&seen, db);
    let mut c = Counters::default();
    if !raw_ok.load(Ordering::Relaxed) {
        c.add("stack_skipped_no_raw", 1);
    }
    for o in &outcomes {
        if o.severity == Severity::Pass {
            c.add("passes", 1);
        } else {
            c.add("findings", 1);
            c.add(&format!("findings_{}", o.severity.as_str()), 1);
            tracing::warn!(
                decky = %o.decky,
                check = %o.check,
                subject = %o.subject,
                severity = o.severity.as_str(),
                "realism finding: expected {}; seen {}",
                o.expected,
                o.seen
            );
        }
    }
    let now = now_ns();
    let tally = async {
        let mut tx = repo.begin().await?;
        let t = tx.record_probe_results(&outcomes, now).await?;
        tx.commit().await?;
        Ok::<_, decnet_core::repo::RepoError>(t)
    }
    .await
    .context("cannot store the sweep's results")?;
    c.add("results_new", tally.inserted);
    c.add("results_resolved", tally.resolved);
    c.add("results_regressed", tally.regressed);
    c.add("sweeps", 1);
    c.add("deckies", fleet.deckies.len() as u64);
    let t = &prober.traffic;
    c.add("probes", t.probes.load(Ordering::Relaxed) - before.0);
    c.add(
        "bytes_sent",
        t.bytes_sent.load(Ordering::Relaxed) - before.1,
    );
    c.add(
        "bytes_received",
        t.bytes_received.load(Ordering::Relaxed) - before.2,
    );
    c.add(
        "probe_failures",
        t.failures.load(Ordering::Relaxed) - before.3,
    );
    c.add(
        "probe_timeouts",
        t.timeouts.load(Ordering::Relaxed) - before.4,
    );
    c.add("sweep_ms", started.elapsed().as_millis() as u64);
    Ok(c)
}

/// Waits (at most `timeout`) until every service of the fleet accepts a connection from the
/// vantage: the deckies start with or after the prober, and a sweep of a decky still starting
/// would report its services as missing.
async fn wait_for_fleet(
    p: &Prober,
    fleet: &Fleet,
    timeout: Duration,
    shutdown: &mut decnet_runtime::Shutdown,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pending: Vec<SocketAddr> = fleet
        .deckies
        .iter()
        .flat_map(|d| {
            d.services
                .iter()
                .map(|s| SocketAddr::new(IpAddr::V4(d.ip), s.port))
        })
        .collect();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline && !shutdown.is_stopping() {
        let mut still = Vec::new();
        for a in pending {
            if p.vantage
                .connect(a, Duration::from_millis(500))
                .await
                .is_err()
            {
                still.push(a);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait() => break,
            }
        }
    }
    if !pending.is_empty() {
        tracing::info!(
            "{} services not answering yet: sweeping anyway",
            pending.len()
        );
    }
}

/// What a change of the fleet looks like: the fleet file's bytes and the recorded deckies.
async fn fleet_state(repo: &Repository, path: &std::path::Path) -> String {
    let file = std::fs::read(path).unwrap_or_default();
    let recorded = repo
        .deckies()
        .await
        .map(|ds| {
            ds.iter()
                .map(|d| format!("{}|{}|{}|{:?};", d.name, d.ip, d.status, d.services))
                .collect::<String>()
        })
        .unwrap_or_default();
    format!("{}:{recorded}", file.len()) + &String::from_utf8_lossy(&file)
}

/// Sweeps until the run stops (or one, once).
pub async fn run(ctx: Context, args: ProberArgs) -> anyhow::Result<Report> {
    let repo = ctx.repo()?;
    let host = hostname();
    let mut fleet = Fleet::load(&args.fleet)?;
    let vantage = match args.vantage_netns.as_deref() {
        Some("none") => Vantage::here(),
        Some(name) => Vantage::open(name)?,
        None => Vantage::open(&vantage::netns_name(&fleet.lan.bridge))?,
    };
    if args.vantage_netns.as_deref() != Some("none") {
        let ip = vantage::address(&fleet)?;
        let mut tx = repo.begin().await?;
        tx.record_probe_vantage(IpAddr::V4(ip), &vantage.name, now_ns())
            .await?;
        tx.commit().await?;
        tracing::info!("probing from {} ({ip})", vantage.name);
    }
    let db = match Database::load(&args.p0f_db) {
        Ok(db) => Some(db),
        Err(e) => {
            tracing::warn!(
                "cannot read p0f's database {} ({e}): install Debian's p0f package; the stack is \
                 compared by TTL alone",
                args.p0f_db.display()
            );
            None
        }
    };
    let prober = Prober::new(vantage, args.limits(), args.rate)?;
    ctx.ready(&[ctx.name.to_owned()])?;
    let mut totals = Counters::default();
    let mut shutdown = ctx.shutdown.clone();
    if !ctx.once() {
        // Started with (or before) the deckies: give their services a moment to listen.
        wait_for_fleet(
            &prober,
            &fleet,
            Duration::from_secs_f64(args.startup_wait),
            &mut shutdown,
        )
        .await;
    }
    loop {
        let state = fleet_state(repo, &args.fleet).await;
        let c = tokio::select! {
            r = sweep(repo, &fleet, &prober, db.as_ref(), usize::from(args.parallel)) => r,
            _ = shutdown.wait() => break,
        };
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                if ctx.once() {
                    return Err(e);
                }
                tracing::error!("{e:#}");
                let mut c = Counters::default();
                c.add("db_errors", 1);
                c
            }
        };
        tracing::info!("sweep: {}", c.line());
        let values: Vec<(&str, i64)> =
            c.0.iter()
                .filter(|(k, _)| k.as_str() != "sweep_ms")
                .map(|(k, v)| (k.as_str(), i64::try_from(*v).unwrap_or(i64::MAX)))
                .collect();
        let last: Vec<(&str, i64)> = vec![(
            "last_sweep_ms",
            i64::try_from(c.get("sweep_ms")).unwrap_or(i64::MAX),
        )];
        if let Err(e) = repo
            .write(&[
                Write::Counters {
                    worker: WORKER,
                    host: &host,
                    values: &values,
                    mode: CounterMode::Add,
                },
                Write::Counters {
                    worker: WORKER,
                    host: &host,
                    values: &last,
                    mode: CounterMode::Set,
                },
            ])
            .await
        {
            tracing::warn!("could not record the prober's counters: {e}");
        }
        totals.merge(&c);
        if ctx.once() || shutdown.is_stopping() {
            break;
        }
        // Until the interval is over, or the fleet changed (then after --settle).
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.interval);
        loop {
            let tick = tokio::time::sleep(
                Duration::from_secs(5)
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            );
            tokio::select! {
                _ = tick => {}
                _ = shutdown.wait() => break,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if fleet_state(repo, &args.fleet).await != state {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(args.settle)) => {}
                    _ = shutdown.wait() => break,
                }
                tracing::info!("the fleet changed: sweeping");
                totals.add("sweeps_on_change", 1);
                break;
            }
        }
        if shutdown.is_stopping() {
            break;
        }
        match Fleet::load(&args.fleet) {
            Ok(f) => fleet = f,
            Err(e) => {
                tracing::error!("the fleet file is unusable, probing the last good one: {e:#}")
            }
        }
    }
    Ok(Report::new(
        format!(
            "{}: {:.1} s, {}",
            ctx.name,
            ctx.started.elapsed().as_secs_f64(),
            totals.line()
        ),
        &totals,
    ))
}
