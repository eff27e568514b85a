//! # profiler — attackers with new evidence → behaviour class, tools, explainable threat score,
//! ATT&CK techniques (`decnet profiler`)
//!
//! **Input**: `attacker_evidence` (the correlator's queue: attackers whose evidence changed, by
//! sequence number; the profiler keeps a cursor `profiler/evidence` on it), and for each such
//! attacker its row, newest events (at most `--max-events`), touches, Σ credential attempts,
//! Σ session commands, detected scans, the widest reuse of its secrets and fingerprints.
//! **Output**: one `attacker_profiles` row per attacker — [`behaviour`] class, [`tools`]
//! guesses, [`score`] (0–100 with its factors and weights), [`attack`] technique ids — and
//! counters in `worker_counters` (worker `profiler`).
//!
//! The profile is a pure function of the evidence ([`profile`]); `computed_at` is the only
//! wall-clock field. A profile built on older evidence never replaces a newer one. Runs through
//! `decnet-runtime` and [`crate::passes`]: without `--daemon`/`--duration` it profiles
//! everything queued and exits; with either, every `--interval` until stopped. One profiler per
//! host (lease `profiler`). Cost per pass grows with the
//! number of attackers with new evidence, not with history.
pub mod attack;
pub mod behaviour;
pub mod score;
pub mod tools;

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use decnet_core::{
    model::{Attacker, AttackerProfile, Fingerprint, Scan, Touch},
    repo::{CounterMode, EventFact, RepoError, Repository, Write, hostname},
    time_fmt::now_ns,
};
use decnet_runtime::{Context, DbArgs, Report, RunArgs, positive_secs};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::{
    passes::{Counters, READ_CONCURRENCY},
    vocab::{self, Kind},
};

use self::{
    behaviour::{BehaviourConfig, Facts, Seen},
    score::Signals,
};

pub const WORKER: &str = "profiler";

/// `decnet profiler`: behaviour, tools, threat score and ATT&CK techniques for every attacker
/// with new evidence.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  decnet profiler                  # everything queued, then exit\n  \
decnet profiler --daemon --interval 10\n  \
decnet profiler --brute-min-attempts 20 --beacon-max-cv 0.1"
)]
pub struct ProfilerArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// Seconds between passes with --daemon or --duration.
    #[arg(long, value_name = "SECS", env = "DECNET_PROFILER_INTERVAL", default_value = "10", value_parser = positive_secs)]
    pub interval: f64,

    /// Attackers per transaction.
    #[arg(long, value_name = "N", env = "DECNET_PROFILER_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,

    /// Newest events of an attacker read for timing and content.
    #[arg(long, value_name = "N", env = "DECNET_PROFILER_MAX_EVENTS", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_events: u32,

    /// Fewer events than this (and no detected scan) is `unknown`.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub min_events: u64,

    /// Credential attempts that make a brute force.
    #[arg(
        long,
        value_name = "N",
        env = "DECNET_PROFILER_BRUTE_MIN_ATTEMPTS",
        default_value_t = 10
    )]
    pub brute_min_attempts: u64,

    /// Callbacks needed to call a beacon.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub beacon_min_callbacks: usize,

    /// Largest coefficient of variation (jitter) of a beacon's periods.
    #[arg(long, value_name = "RATIO", default_value_t = 0.2)]
    pub beacon_max_cv: f64,

    /// Shortest mean beacon period, seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub beacon_min_period: f64,

    /// Events closer than this (seconds) are one callback.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = positive_secs)]
    pub callback_burst: f64,

    /// Commands that make an attacker interactive.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub interactive_min_commands: u64,

    /// A scan at most this many probes per minute is a slow scan.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub slow_scan_max_rate: u64,

    /// Distinct (decky, service) pairs touched without engaging that make a scan seen in events.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub scan_min_targets: usize,
}

/// The profiler's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub behaviour: BehaviourConfig,
    pub batch: u32,
    pub max_events: u32,
    pub host: String,
}

impl ProfilerArgs {
    pub fn config(&self) -> Config {
        Config {
            behaviour: BehaviourConfig {
                min_events: self.min_events,
                brute_min_attempts: self.brute_min_attempts,
                beacon_min_callbacks: self.beacon_min_callbacks,
                beacon_max_cv: self.beacon_max_cv,
                beacon_min_period_s: self.beacon_min_period,
                callback_burst_s: self.callback_burst,
                interactive_min_commands: self.interactive_min_commands,
                slow_scan_max_rate: self.slow_scan_max_rate,
                scan_min_targets: self.scan_min_targets,
            },
            batch: self.batch,
            max_events: self.max_events,
            host: hostname(),
        }
    }
}

/// Everything a profile is computed from.
#[derive(Debug, Clone)]
pub struct Input {
    pub attacker: Attacker,
    /// Newest events, in time order.
    pub events: Vec<EventFact>,
    pub touches: Vec<Touch>,
    /// Σ attempts over the attacker's credentials.
    pub credential_attempts: u64,
    /// Σ commands over the attacker's sessions.
    pub session_commands: u64,
    pub scans: Vec<Scan>,
    /// The most (decky, service) targets any secret this attacker tried was reused across.
    pub reuse_targets: u64,
    pub fingerprints: Vec<Fingerprint>,
}

/// The profile of one attacker: a pure function of `input` (and `computed_at_ns`, stored as is).
pub fn profile(input: &Input, cfg: &BehaviourConfig, computed_at_ns: i64) -> AttackerProfile {
    let mut seen = Vec::with_capacity(input.events.len());
    let mut uas: BTreeSet<String> = BTreeSet::new();
    let mut ssh: BTreeSet<String> = BTreeSet::new();
    let (mut auth_events, mut logins) = (0u64, 0u64);
    for e in &input.events {
        let i = vocab::interpret(&e.event_type, &e.fields);
        match i.kind {
            Kind::Auth(Some(true)) => {
                auth_events += 1;
                logins += 1;
            }
            Kind::Auth(_) => auth_events += 1,
            Kind::Login => logins += 1,
            _ => {}
        }
        uas.extend(i.user_agent);
        ssh.extend(i.ssh_client);
        seen.push(Seen {
            ts_ns: e.ts_ns,
            kind: i.kind,
            decky: e.decky.clone(),
            service: e.service.clone(),
        });
    }
    for f in &input.fingerprints {
        match f.kind.as_str() {
            "http_ua" | "user_agent" => {
                uas.insert(f.value.clone());
            }
            "ssh_client" | "ssh_banner" => {
                ssh.insert(f.value.clone());
            }
            _ => {}
        }
    }
    let commands = input.session_commands;
    let auth_attempts = input.credential_attempts.max(auth_events);
    let facts = Facts {
        event_count: input.attacker.event_count.max(input.events.len() as u64),
        events: seen,
        auth_attempts,
        commands,
        scans: input.scans.iter().filter(|s| s.detected).cloned().collect(),
    };
    let verdict = behaviour::classify(&facts, cfg);
    let uas: Vec<String> = uas.into_iter().collect();
    let ssh: Vec<String> = ssh.into_iter().collect();
    let guesses = tools::guess(&uas, &ssh, verdict.beacon.map(|b| b.period_s));
    let mut scan_kinds: BTreeSet<String> = facts.scans.iter().map(|s| s.kind.clone()).collect();
    if facts.scans.is_empty()
        && verdict
            .matched
            .iter()
            .any(|m| *m == "scanning" || *m == "slow_scan")
    {
        scan_kinds.insert("service_sweep".into());
    }
    let deckies: BTreeSet<&str> = input.touches.iter().map(|t| t.decky.as_str()).collect();
    let signals = Signals {
        deckies: deckies.len(),
        logins,
        commands,
        auth_attempts,
        brute_force: verdict.matched.contains(&"brute_force"),
        scan_kinds: scan_kinds.into_iter().collect(),
        beacon: verdict.beacon,
        reuse_targets: input.reuse_targets,
        tools: guesses.clone(),
    };
    let (score, factors) = score::score(&signals);
    AttackerProfile {
        attacker_ip: input.attacker.ip,
        behaviour: verdict.class.to_owned(),
        score,
        factors,
        tools: guesses.into_iter().map(|g| g.tool).collect(),
        techniques: attack::techniques(&signals),
        evidence_until_ns: input
            .attacker
            .last_seen_ns
            .max(input.events.last().map_or(i64::MIN, |e| e.ts_ns)),
        computed_at_ns,
    }
}

/// Reads the evidence of `ip`; `None` if it has no attacker row.
pub async fn gather(
    repo: &Repository,
    ip: IpAddr,
    max_events: u32,
) -> Result<Option<Input>, RepoError> {
    let Some(attacker) = repo.attacker(ip).await? else {
        return Ok(None);
    };
    let credential_attempts = repo.credential_attempts(ip).await?;
    Ok(Some(Input {
        attacker,
        events: repo.recent_events(ip, max_events).await?,
        touches: repo.touches(ip).await?,
        credential_attempts,
        session_commands: repo.session_commands(ip).await?,
        scans: repo.scan_episodes(ip, true).await?,
        reuse_targets: repo.reuse_targets_of(ip).await?,
        fingerprints: repo.fingerprints(ip, u32::MAX).await?,
    }))
}

/// Credential rows above which an attacker's reuse is read per reuse record.
const HEAVY_CREDENTIALS: u64 = 10_000;

/// [`gather`] for a batch of attackers, in a few statements per table instead of several per
/// attacker: the inputs of `ips`, in order (`None`: no attacker row). Attackers whose stored
/// event count (the correlator's, which may lag the events table) reaches half of
/// `max_events` read their newest events on their own (bounded by `max_events`); the others'
/// events are read together, whole, and cut to the newest `max_events` here — the same events
/// either way.
pub async fn gather_batch(
    repo: &Repository,
    ips: &[IpAddr],
    max_events: u32,
) -> Result<Vec<Option<Input>>, RepoError> {
    let attackers: HashMap<IpAddr, Attacker> = repo
        .attackers_of(ips)
        .await?
        .into_iter()
        .map(|a| (a.ip, a))
        .collect();
    let present: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| attackers.contains_key(ip))
        .collect();
    let busy = |ip: &IpAddr| {
        attackers
            .get(ip)
            .is_some_and(|a| a.event_count.saturating_mul(2) >= u64::from(max_events))
    };
    let (alone, together): (Vec<IpAddr>, Vec<IpAddr>) = present.iter().partition(|ip| busy(ip));
    let mut events: HashMap<IpAddr, Vec<EventFact>> = HashMap::new();
    for e in repo.events_of(&together).await? {
        if let Some(ip) = e.attacker_ip {
            events.entry(ip).or_default().push(e);
        }
    }
    let limit = max_events as usize;
    for v in events.values_mut() {
        if v.len() > limit {
            v.drain(..v.len() - limit);
        }
    }
    let own: Vec<(IpAddr, Vec<EventFact>)> = futures::stream::iter(alone)
        .map(
            |ip| async move { Ok::<_, RepoError>((ip, repo.recent_events(ip, max_events).await?)) },
        )
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    events.extend(own);
    let mut touches: HashMap<IpAddr, Vec<Touch>> = HashMap::new();
    for t in repo.touches_of(&present).await? {
        touches.entry(t.attacker_ip).or_default().push(t);
    }
    for v in touches.values_mut() {
        // The order of [`Repository::touches`].
        v.sort_by(|a, b| {
            (a.first_seen_ns, &a.decky, &a.service).cmp(&(b.first_seen_ns, &b.decky, &b.service))
        });
    }
    let attempts = repo.credential_attempts_of(&present).await?;
    let commands = repo.session_commands_of(&present).await?;
    let mut scans: HashMap<IpAddr, Vec<Scan>> = HashMap::new();
    for s in repo.detected_scans_of(&present).await? {
        scans.entry(s.attacker_ip).or_default().push(s);
    }
    // An attacker with many credential rows (a brute-forcer) has its reuse read from the reuse
    // records' side: its own rows would be read whole at every profile.
    let heavy = |ip: &IpAddr| {
        attackers
            .get(ip)
            .is_some_and(|a| a.credential_count > HEAVY_CREDENTIALS)
    };
    let (heavy, light): (Vec<IpAddr>, Vec<IpAddr>) = present.iter().partition(|ip| heavy(ip));
    let mut reuse = repo.reuse_targets_of_many(&light).await?;
    for ip in heavy {
        reuse.insert(ip, repo.reuse_targets_by_records(ip).await?);
    }
    let mut fingerprints: HashMap<IpAddr, Vec<Fingerprint>> = HashMap::new();
    for f in repo.fingerprints_of(&present).await? {
        fingerprints.entry(f.attacker_ip).or_default().push(f);
    }
    let mut attackers = attackers;
    Ok(ips
        .iter()
        .map(|ip| {
            let attacker = attackers.remove(ip)?;
            Some(Input {
                attacker,
                events: events.remove(ip).unwrap_or_default(),
                touches: touches.remove(ip).unwrap_or_default(),
                credential_attempts: attempts.get(ip).copied().unwrap_or(0),
                session_commands: commands.get(ip).copied().unwrap_or(0),
                scans: scans.remove(ip).unwrap_or_default(),
                reuse_targets: reuse.get(ip).copied().unwrap_or(0),
                fingerprints: fingerprints.remove(ip).unwrap_or_default(),
            })
        })
        .collect())
}

/// Profiles every queued attacker (until `stop`). Returns this pass's counters.
pub async fn run_pass(
    repo: &Repository,
    cfg: &Config,
    stop: &Arc<AtomicBool>,
) -> Result<Counters, RepoError> {
    let mut total = Counters::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(total);
        }
        let (seq, after_ip) = match repo.cursor(WORKER, &cfg.host, "evidence").await? {
            Some(c) => (c.position, c.state),
            None => (0, String::new()),
        };
        let queued = repo.evidence_after(seq, &after_ip, cfg.batch).await?;
        let Some((last_seq, last_ip)) = queued.last().copied() else {
            return Ok(total);
        };
        let mut c = Counters::default();
        let mut profiles = Vec::with_capacity(queued.len());
        let now = now_ns();
        let ips: Vec<IpAddr> = queued.iter().map(|(_, ip)| *ip).collect();
        let inputs = gather_batch(repo, &ips, cfg.max_events).await?;
        for input in inputs {
            match input {
                Some(input) => profiles.push(profile(&input, &cfg.behaviour, now)),
                None => c.add("attackers_missing", 1),
            }
        }
        c.add("attackers_profiled", profiles.len() as u64);
        c.add("batches", 1);
        let values = c.values();
        let state = last_ip.to_string();
        repo.write(&[
            Write::Profiles(&profiles),
            Write::Cursor {
                worker: WORKER,
                host: &cfg.host,
                name: "evidence",
                position: last_seq,
                state: &state,
            },
            Write::Counters {
                worker: WORKER,
                host: &cfg.host,
                values: &values,
                mode: CounterMode::Add,
            },
        ])
        .await?;
        for (k, v) in c.0 {
            total.add(k, v);
        }
    }
}

decnet_runtime::worker!(ProfilerArgs, |args| crate::passes::spec(WORKER, args), run);

/// Passes until the run stops (or one, once).
pub async fn run(ctx: Context, args: ProfilerArgs) -> anyhow::Result<Report> {
    let cfg = args.config();
    let repo = ctx.repo()?;
    let stop = ctx.shutdown.flag();
    crate::passes::run_passes(&ctx, Duration::from_secs_f64(args.interval), || {
        run_pass(repo, &cfg, &stop)
    })
    .await
}
