//! # correlator — events and flows → sessions, attackers, traversal, credential reuse, scans
//! (`decnet correlator`, alias `correlate`)
//!
//! **Input** (from the repository, each behind a cursor of worker `correlator`): `events` (the
//! collector's decoy-service events), `credentials` (the attempts they carry) and `flows` (the
//! sensor's flow directions), plus the recorded fleet (`deckies`, `decky_services`) to map
//! addresses to deckies and ports to services.
//! **Output**: `sessions` ([`sessions`]), `attackers` (one per source IP: first/last seen,
//! counters re-derived from the facts) and `attacker_touches` (the (decky, service) pairs each
//! touched), `traversals` and `pivots` ([`traversal`]), `credential_reuse` ([`reuse`]), `scans`
//! ([`scans`]), `attacker_evidence` (the profiler's queue), and counters in `worker_counters`.
//! [`crate::vocab`] says how an event is read; [`pass`] does the repository I/O. Decnet's own
//! addresses and non-routable sources are never attackers ([`own`]).
//!
//! Runs through `decnet-runtime` and [`crate::passes`]: without `--daemon`/`--duration` it
//! processes everything pending and exits; with either, it does that every `--interval` until
//! stopped. One correlator per host (lease `correlator`). Every batch
//! is one transaction with its cursor, so each input row is taken in exactly once: a batch adds
//! what it brings to what is stored (its cost follows its input, not the history — see
//! [`pass::State`]), and a crash, a restart or a second pass changes nothing.
pub mod own;
pub mod pass;
pub mod reuse;
pub mod scans;
pub mod sessions;
pub mod traversal;

use std::time::Duration;

use decnet_core::repo::hostname;
use decnet_runtime::{Context, DbArgs, Report, RunArgs, non_negative_secs, positive_secs};

use self::{pass::Config, scans::ScanConfig};

pub use self::pass::WORKER;

/// `decnet correlator`: turn stored events and flows into sessions, attackers, traversal paths,
/// credential reuse and scans.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  decnet correlator                      # everything pending, then exit\n  \
decnet correlator --daemon --interval 5\n  \
decnet correlator --session-idle-gap 600 --scan-min-ports 20 --summary-json /tmp/correlate.json"
)]
pub struct CorrelateArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// Seconds between passes with --daemon or --duration.
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

    /// Decnet's own address (never an attacker), besides this host's addresses, which are
    /// always excluded: repeat or comma-separate (e.g. the decoy host's bridge address when the
    /// correlator runs elsewhere).
    #[arg(
        long,
        value_name = "IP",
        env = "DECNET_OWN_ADDRESSES",
        value_delimiter = ','
    )]
    pub own_address: Vec<std::net::IpAddr>,

    /// Input rows per transaction.
    #[arg(long, value_name = "N", env = "DECNET_CORRELATOR_BATCH", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,
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
            own_addresses: self.own_address.clone(),
        }
    }
}

decnet_runtime::worker!(CorrelateArgs, |args| crate::passes::spec(WORKER, args), run);

/// Passes until the run stops (or one, once).
pub async fn run(ctx: Context, args: CorrelateArgs) -> anyhow::Result<Report> {
    let cfg = args.config();
    let repo = ctx.repo()?;
    let stop = ctx.shutdown.flag();
    // What the batches know of stored sessions, episodes and secrets, kept between passes.
    let state = tokio::sync::Mutex::new(pass::State::default());
    crate::passes::run_passes(&ctx, Duration::from_secs_f64(args.interval), || {
        let (state, cfg, stop) = (&state, &cfg, &stop);
        async move {
            let mut state = state.lock().await;
            pass::run_pass_with(repo, cfg, stop, &mut state).await
        }
    })
    .await
}
