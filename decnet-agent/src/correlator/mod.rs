//! # correlator — events and flows → sessions, attackers, traversal, credential reuse, scans
//! (`decnet correlate`)
//!
//! **Input** (from the repository, each behind a cursor of worker `correlator`): `events` (the
//! collector's decoy-service events), `credentials` (the attempts they carry) and `flows` (the
//! sensor's flow directions), plus the recorded fleet (`deckies`, `decky_services`) to map
//! addresses to deckies and ports to services.
//! **Output**: `sessions` ([`sessions`]), `attackers` (one per source IP: first/last seen,
//! counters re-derived from the facts) and `attacker_touches` (the (decky, service) pairs each
//! touched), `traversals` and `pivots` ([`traversal`]), `credential_reuse` ([`reuse`]), `scans`
//! ([`scans`]), `attacker_evidence` (the profiler's queue), and counters in `worker_counters`.
//! [`vocab`] says how an event is read; [`pass`] does the repository I/O.
//!
//! Without `--daemon` it processes everything pending and exits; with it, it does that every
//! `--interval` until SIGTERM/SIGINT. One correlator per host (lease `correlator`). Every batch
//! is one transaction with its cursor; results are recomputed from stored facts, so a restart,
//! a replay or a second pass changes nothing, and no count ever shrinks.
pub mod pass;
pub mod reuse;
pub mod scans;
pub mod sessions;
pub mod traversal;
pub mod vocab;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use decnet_core::repo::{DbConfig, LeaseHolder, Repository, hostname};
use tokio::signal::unix::{SignalKind, signal};

use crate::common::{LEASE_TTL, positive_secs, write_ready};

use self::{
    pass::{Config, Counters},
    scans::ScanConfig,
};

/// `decnet correlate`: turn stored events and flows into sessions, attackers, traversal paths,
/// credential reuse and scans.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  decnet correlate                      # everything pending, then exit\n  \
decnet correlate --daemon --interval 5\n  \
decnet correlate --session-idle-gap 600 --scan-min-ports 20 --summary-json /tmp/correlate.json"
)]
pub struct CorrelateArgs {
    /// Run until SIGTERM/SIGINT, a pass every --interval, instead of processing what is pending
    /// and exiting.
    #[arg(long)]
    pub daemon: bool,

    /// Seconds between passes with --daemon.
    #[arg(long, value_name = "SECS", env = "DECNET_CORRELATOR_INTERVAL", default_value = "5", value_parser = positive_secs)]
    pub interval: f64,

    /// A session ends after this many seconds without events (or at a disconnect).
    #[arg(long, value_name = "SECS", env = "DECNET_CORRELATOR_SESSION_IDLE_GAP", default_value = "300", value_parser = positive_secs)]
    pub session_idle_gap: f64,

    /// Probes of a scan episode are at most this many seconds apart.
    #[arg(long, value_name = "SECS", env = "DECNET_CORRELATOR_SCAN_GAP", default_value = "60", value_parser = positive_secs)]
    pub scan_gap: f64,

    /// An episode probing this many distinct ports is a scan.
    #[arg(long, value_name = "N", env = "DECNET_CORRELATOR_SCAN_MIN_PORTS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub scan_min_ports: u64,

    /// An episode probing this many distinct hosts is a scan (a sweep).
    #[arg(long, value_name = "N", env = "DECNET_CORRELATOR_SCAN_MIN_HOSTS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub scan_min_hosts: u64,

    /// Flows are taken once their first packet is this many seconds old (the sensor updates a
    /// flow's row until it ends). 0 takes every flow at once.
    #[arg(long, value_name = "SECS", env = "DECNET_CORRELATOR_FLOW_SETTLE", default_value = "10", value_parser = non_negative_secs)]
    pub flow_settle: f64,

    /// Input rows per transaction.
    #[arg(long, value_name = "N", env = "DECNET_CORRELATOR_BATCH", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,

    /// Repository backend: `sqlite` (default, embedded file) or `mysql`.
    #[arg(long, env = "DECNET_DB_TYPE", value_name = "sqlite|mysql")]
    pub db_type: Option<String>,

    /// Repository URL (sqlx): `sqlite://PATH` (default `sqlite://decnet.db`) or
    /// `mysql://user:password@host/database`.
    #[arg(long, env = "DECNET_DB_URL", value_name = "URL")]
    pub db_url: Option<String>,

    /// Written once the lease is held and the first pass starts (one line: `correlator`).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Write the exit counters as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

/// clap value parser: a finite number of seconds ≥ 0.
pub fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds ≥ 0")),
    }
}

fn ns(secs: f64) -> i64 {
    (secs * 1e9) as i64
}

impl CorrelateArgs {
    pub fn config(&self) -> Config {
        Config {
            idle_gap_ns: ns(self.session_idle_gap),
            scan: ScanConfig {
                gap_ns: ns(self.scan_gap),
                min_ports: self.scan_min_ports,
                min_hosts: self.scan_min_hosts,
            },
            batch: self.batch,
            flow_settle_ns: ns(self.flow_settle),
            host: hostname(),
        }
    }
}

/// Sets `flag` on SIGTERM/SIGINT (and wakes `notify`).
pub(crate) fn stop_on_signals(
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping after the current batch"),
            _ = int.recv() => tracing::info!("SIGINT: stopping after the current batch"),
        }
        flag.store(true, Ordering::Relaxed);
        notify.notify_waiters();
    });
    Ok(())
}

pub async fn run(args: CorrelateArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    stop_on_signals(stop.clone(), wake.clone())?;
    let repo = Repository::open(&DbConfig::new(
        args.db_type.as_deref(),
        args.db_url.as_deref(),
    )?)
    .await?;
    let mut lease = match repo
        .hold_lease(LeaseHolder::this_process(pass::WORKER), LEASE_TTL)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            repo.close().await;
            return Err(e.into());
        }
    };
    let cfg = args.config();
    let started = std::time::Instant::now();
    let mut totals = Counters::default();
    let result = async {
        write_ready(args.ready_file.as_deref(), &["correlator".to_owned()])?;
        loop {
            let outcome = tokio::select! {
                r = pass::run_pass(&repo, &cfg, &stop) => Some(r),
                _ = lease.lost() => None,
            };
            match outcome {
                None => bail!("stopped: the correlator lease was taken over by another instance"),
                Some(Ok(c)) => {
                    if !c.0.is_empty() {
                        tracing::info!("pass: {}", c.line());
                    }
                    for (k, v) in c.0 {
                        totals.add(k, v);
                    }
                    totals.add("passes", 1);
                }
                Some(Err(e)) if args.daemon => {
                    totals.add("db_errors", 1);
                    tracing::error!("pass failed, retrying next interval: {e}");
                }
                Some(Err(e)) => {
                    return Err(anyhow::Error::from(e).context("correlation pass failed"));
                }
            }
            if !args.daemon || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => {}
                _ = wake.notified() => {}
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }
    .await;
    totals
        .finish(
            "correlator",
            lease,
            repo,
            started,
            args.summary_json.as_deref(),
        )
        .await?;
    result
}
