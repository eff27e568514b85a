//! # sniffer — the passive flow sensor (`decnet sniffer`)
//!
//! **Input:** every packet entering the decoy bridge, seen by the eBPF program (`decnet-ebpf`)
//! attached to the ingress of each bridge port (ports joining later are attached as they join).
//! **Output:** one row per flow direction in the repository's `flows` table, plus counters
//! (logged every `--stats-interval`, printed on exit, optionally written as JSON).
//!
//! Tasks: [`ports`] follows bridge membership over rtnetlink; [`events`] drains the ring buffer
//! (flow START/END events); [`sweep`] exports idle and long-running flows from the kernel table;
//! [`writer`] merges and upserts records in batched transactions. A flow exported several times
//! (start event, end event, sweep) ends as one row with its final counts.
//!
//! Runs through `decnet-runtime` (lease `sniffer@<bridge>`, `--daemon | --duration`; no
//! one-shot mode). Shutdown (SIGTERM/SIGINT/SIGHUP, or end of `--duration`): detach from every port, drain the ring,
//! export every remaining entry, commit, print the summary.
pub mod counters;
pub mod events;
pub mod flows;
pub mod fp;
pub mod loader;
pub mod ports;
pub mod sweep;
pub mod writer;

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use decnet_common::{
    DEFAULT_FLOW_ENTRIES, DEFAULT_FP_PACKETS, DEFAULT_FP_RING_BYTES, DEFAULT_FP_SNAPLEN,
    DEFAULT_RING_BYTES, FP_CHUNK, MAX_FP_PACKETS,
};
use decnet_core::model::FlowRecord;
use decnet_runtime::{Context, DbArgs, Report, RunArgs, Spec, positive_secs};
use tokio::sync::{mpsc, watch};

use self::{
    counters::{AgentCounters, KernelCounters, Summary},
    flows::{Clock, Converter, PortNames},
    fp::{FpCounters, FpSettings},
    loader::{FpConfig, Mode, Sensor},
    ports::PortEvent,
    sweep::{SweepConfig, Sweeper},
    writer::WriterConfig,
};

/// `decnet sniffer`: attach the eBPF flow sensor to every port of the decoy bridge and write
/// flows to the repository.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Run inside the network namespace that holds the bridge. Needs root (or \
CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).\n\nExamples:\n  decnet sniffer --daemon --bridge decnet0\n  \
decnet sniffer --bridge decnet0 --duration 30 --summary-json /tmp/sniffer.json"
)]
pub struct SnifferArgs {
    /// The decoy bridge; the program is attached to the ingress of each of its ports.
    #[arg(long, env = "DECNET_SNIFFER_BRIDGE")]
    pub bridge: String,

    /// Hook: `tc` (TC classifier via TCX; cheapest on veth) or `xdp` (native, else generic).
    #[arg(long, value_enum, env = "DECNET_SNIFFER_MODE", default_value_t = Mode::Tc)]
    pub mode: Mode,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// How often the kernel flow table is swept for idle flows.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub sweep_interval: f64,

    /// A flow without packets for this long is final: exported and removed from the kernel table.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = positive_secs)]
    pub idle_timeout: f64,

    /// Idle timeout for TCP flows that ended (RST, or FIN both ways).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub ended_timeout: f64,

    /// Long-running flows are re-exported with their current counts this often.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = positive_secs)]
    pub active_timeout: f64,

    /// How often counters are logged.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub stats_interval: f64,

    /// Capacity of the kernel flow table; when full, packets of new flows are counted under
    /// drop_map_full.
    #[arg(long, default_value_t = DEFAULT_FLOW_ENTRIES)]
    pub flow_entries: u32,

    /// Size of the kernel → agent ring buffer in bytes (a power of two, multiple of the page size).
    #[arg(long, default_value_t = DEFAULT_RING_BYTES, value_parser = ring_size)]
    pub ring_bytes: u32,

    /// Fingerprints (issue 14): payload bytes kept per direction of a TCP flow, from its first
    /// data-bearing segments (at most 4096 per segment). 0 turns fingerprinting off. The default
    /// holds every handshake measured (README, "Fingerprints").
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_FP_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(0..=FP_CHUNK as i64))]
    pub fp_snaplen: u32,

    /// Fingerprints: only the first this-many packets of each direction are looked at.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FP_PACKETS,
          value_parser = clap::value_parser!(u32).range(1..=MAX_FP_PACKETS as i64))]
    pub fp_packets: u32,

    /// Size of the kernel → agent fingerprint ring in bytes (a power of two ≥ 4096).
    #[arg(long, default_value_t = DEFAULT_FP_RING_BYTES, value_parser = ring_size)]
    pub fp_ring_bytes: u32,

    /// A flow's fingerprints are computed this long after its last captured packet.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = positive_secs)]
    pub fp_settle: f64,

    /// Flows assembled at once (the oldest is fingerprinted early when full; counted).
    #[arg(long, default_value_t = 16_384)]
    pub fp_flows: usize,

    /// Client addresses whose flows are never attacker fingerprints (besides this host's own
    /// addresses and the deckies'), e.g. a prober on another host. Repeatable.
    #[arg(long, value_name = "IP")]
    pub fp_exclude: Vec<std::net::IpAddr>,

    /// Also compute JA4S and JA4H. These two methods are under the FoxIO License 1.1 (patent
    /// pending; free for internal and academic use, NOT for resale or inclusion in a commercial
    /// product without FoxIO's licence). Takes effect only in a build with the cargo feature
    /// `decnet-fingerprint/ja4-plus`; otherwise ignored with a warning.
    #[arg(long, env = "DECNET_FP_JA4_PLUS")]
    pub fp_ja4_plus: bool,

    /// Appends every assembled flow sample (the captured bytes, hex) as a JSON line to this file.
    #[arg(long, value_name = "PATH", hide = true)]
    pub fp_dump: Option<std::path::PathBuf>,
}

fn ring_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if v.is_power_of_two() && v >= 4096 => Ok(v),
        _ => Err(format!(
            "{s:?} must be a power of two ≥ 4096 (e.g. 1048576)"
        )),
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

/// The worker's name: subcommand, unit and APP-NAME `decnet.sniffer`; its lease is
/// `sniffer@<bridge>`.
pub const WORKER: &str = "sniffer";

decnet_runtime::worker!(
    SnifferArgs,
    |args| {
        // One sniffer per bridge per host: a second one would count every packet twice.
        Spec::new(WORKER)
            .lease(format!("{WORKER}@{}", args.bridge))
            .grace(Duration::from_secs(30))
    },
    run
);

/// Load, attach, run until stopped, flush.
pub async fn run(ctx: Context, args: SnifferArgs) -> anyhow::Result<Report> {
    let args = &args;
    let repo = ctx.repo()?;
    let mut shutdown = ctx.shutdown.clone();
    let fp_config = FpConfig {
        snaplen: args.fp_snaplen,
        packets: args.fp_packets,
        ring_bytes: args.fp_ring_bytes,
    };
    let (mut sensor, maps) =
        Sensor::load_with(args.mode, args.flow_entries, args.ring_bytes, fp_config)?;
    let (_bridge_idx, mut port_events) = ports::watch(&args.bridge).await?;

    let port_names = PortNames::default();
    let conv = Converter {
        bridge: args.bridge.clone(),
        clock: Clock::new(),
        ports: port_names.clone(),
    };
    let agent = Arc::new(AgentCounters::default());
    let kernel_counters: Arc<PerCpuArray<MapData, u64>> =
        Arc::new(PerCpuArray::try_from(maps.counters).context("COUNTERS is not a per-CPU array")?);
    let ring: RingBuf<MapData> =
        RingBuf::try_from(maps.events).context("EVENTS is not a ring buffer")?;

    let (tx, rx) = mpsc::channel::<Vec<FlowRecord>>(256);
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(writer::run(
        repo.clone(),
        rx,
        WriterConfig::default(),
        agent.clone(),
    ));
    let reader = tokio::spawn(events::run(
        ring,
        conv.clone(),
        tx.clone(),
        agent.clone(),
        stop_rx.clone(),
    ));
    let sweep_cfg = SweepConfig {
        idle_timeout: secs(args.idle_timeout),
        ended_timeout: secs(args.ended_timeout),
        active_timeout: secs(args.active_timeout),
    };
    let sweeper = Sweeper::new(maps.flows, conv.clone(), sweep_cfg, Clock::mono_now());
    let sweeper = tokio::spawn(sweep_loop(
        sweeper,
        secs(args.sweep_interval),
        tx.clone(),
        agent.clone(),
        stop_rx.clone(),
    ));
    let fp_counters = Arc::new(FpCounters::default());
    let fp_task = if args.fp_snaplen > 0 {
        if args.fp_ja4_plus && !decnet_fingerprint::JA4_PLUS_BUILT {
            tracing::warn!(
                "--fp-ja4-plus ignored: this build has no JA4S/JA4H (cargo feature \
                 decnet-fingerprint/ja4-plus, FoxIO License 1.1)"
            );
        }
        let p0f = match decnet_fingerprint::p0f::Database::load_system() {
            Ok(db) => db.map(Arc::new),
            Err(e) => {
                tracing::warn!("p0f's database could not be read ({e}); SYN signatures only");
                None
            }
        };
        let mut own = fp::local_addresses();
        own.extend(args.fp_exclude.iter().copied());
        let settings = FpSettings {
            snaplen: args.fp_snaplen as usize,
            settle: secs(args.fp_settle),
            max_flows: args.fp_flows,
            max_keys: 65_536,
            flush_every: Duration::from_secs(1),
            config: decnet_fingerprint::Config {
                p0f,
                ja4_plus: args.fp_ja4_plus,
            },
            own,
            dump: args.fp_dump.clone(),
        };
        let fp_ring: RingBuf<MapData> =
            RingBuf::try_from(maps.fp_events).context("FP_EVENTS is not a ring buffer")?;
        Some(tokio::spawn(fp::run(
            fp_ring,
            repo.clone(),
            settings,
            conv.clock,
            fp_counters.clone(),
            stop_rx.clone(),
        )))
    } else {
        None
    };
    let stats = tokio::spawn(stats_loop(
        kernel_counters.clone(),
        agent.clone(),
        secs(args.stats_interval),
        stop_rx,
    ));

    // Ports present now arrive first on the channel.
    while let Ok(ev) = port_events.try_recv() {
        on_port_event(&mut sensor, &port_names, ev);
    }
    let attached = sensor.attached_names();
    if attached.is_empty() {
        tracing::warn!(bridge = %args.bridge, "the bridge has no ports yet; waiting for ports to join");
    }
    tracing::info!(bridge = %args.bridge, mode = %sensor.mode(), ports = attached.len(), "sniffer running");
    ctx.ready(&attached)?;

    loop {
        tokio::select! {
            ev = port_events.recv() => match ev {
                Some(ev) => {
                    let before = sensor.attached_names();
                    on_port_event(&mut sensor, &port_names, ev);
                    let after = sensor.attached_names();
                    if after != before {
                        ctx.ready(&after)?;
                    }
                }
                None => bail!("lost the netlink link-event stream"),
            },
            why = shutdown.wait() => { tracing::info!("{why}: stopping"); break; }
        }
    }

    // Shutdown: no new packets, then everything out of the kernel and into the repository.
    let ports = sensor.detach_all();
    tracing::info!(ports = ports.len(), "detached from all ports");
    let _ = stop_tx.send(true);
    let mut ring = reader.await.context("ring-buffer reader panicked")??;
    let mut sweeper = sweeper.await.context("sweeper panicked")?;
    let _ = stats.await;
    if let Some(t) = fp_task {
        t.await.context("fingerprint task panicked")??;
    }
    let mut last = Vec::new();
    let n = events::drain(&mut ring, &conv, &mut last);
    AgentCounters::add(&agent.events, n);
    let all = sweeper.export_all()?;
    last.extend(all.records);
    if !last.is_empty() {
        tx.send(last).await.context("flow writer stopped")?;
    }
    drop(tx);
    writer.await.context("flow writer panicked")??;

    let kernel = KernelCounters::read(&kernel_counters)?;
    let summary = Summary {
        bridge: args.bridge.clone(),
        mode: sensor.mode().to_string(),
        ports,
        duration_secs: ctx.started.elapsed().as_secs_f64(),
        counters: kernel.named(),
        events: AgentCounters::load(&agent.events),
        flows_written: AgentCounters::load(&agent.flows_written),
        batches: AgentCounters::load(&agent.batches),
        swept: AgentCounters::load(&agent.swept),
        db_errors: AgentCounters::load(&agent.db_errors),
        balanced: kernel.balanced(),
        fingerprints: fp_counters.named(),
    };
    log_counters(&kernel, &agent, "final");
    Ok(Report::new(summary.human(), &summary))
}

fn on_port_event(sensor: &mut Sensor, names: &PortNames, ev: PortEvent) {
    match ev {
        PortEvent::Joined { ifindex, name } => {
            if sensor.is_attached(ifindex) {
                return;
            }
            names.insert(ifindex, &name);
            match sensor.attach(ifindex, &name) {
                Ok(how) => tracing::info!(port = %name, ifindex, how, "attached"),
                Err(e) => tracing::error!(port = %name, ifindex, "cannot attach: {e:#}"),
            }
        }
        PortEvent::Left { ifindex } => {
            if let Some(name) = sensor.forget(ifindex) {
                tracing::info!(port = %name, ifindex, "port left the bridge; detached");
            }
        }
    }
}

async fn sweep_loop(
    mut sweeper: Sweeper,
    every: Duration,
    tx: mpsc::Sender<Vec<FlowRecord>>,
    agent: Arc<AgentCounters>,
    mut stop: watch::Receiver<bool>,
) -> Sweeper {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let (back, res) = match tokio::task::spawn_blocking(move || {
            let res = sweeper.sweep(Clock::mono_now());
            (sweeper, res)
        })
        .await
        {
            Ok(v) => v,
            Err(e) => panic!("sweep task failed: {e}"),
        };
        sweeper = back;
        match res {
            Ok(res) => {
                AgentCounters::add(&agent.swept, res.removed);
                if !res.records.is_empty() && tx.send(res.records).await.is_err() {
                    break;
                }
            }
            Err(e) => tracing::error!("sweeping the flow table failed: {e:#}"),
        }
    }
    sweeper
}

async fn stats_loop(
    kernel: Arc<PerCpuArray<MapData, u64>>,
    agent: Arc<AgentCounters>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match KernelCounters::read(&kernel) {
            Ok(k) => log_counters(&k, &agent, "stats"),
            Err(e) => tracing::warn!("cannot read the kernel counters: {e:#}"),
        }
    }
}

fn log_counters(k: &KernelCounters, agent: &AgentCounters, what: &str) {
    use decnet_common::{C_BYTES, C_FLOWS_ENDED, C_FLOWS_STARTED, C_PACKETS};
    let lost = k.events_lost();
    let args = (
        k.get(C_PACKETS),
        k.get(C_BYTES),
        k.get(C_FLOWS_STARTED),
        k.get(C_FLOWS_ENDED),
        AgentCounters::load(&agent.events),
        AgentCounters::load(&agent.flows_written),
    );
    if lost > 0 {
        tracing::warn!(
            packets = args.0, bytes = args.1, flows_started = args.2, flows_ended = args.3,
            events = args.4, flows_written = args.5, events_lost = lost, drops = %k.drop_summary(),
            "{what} (ring-buffer events were lost: the sweep still exports those flows; raise --ring-bytes)"
        );
    } else {
        tracing::info!(
            packets = args.0, bytes = args.1, flows_started = args.2, flows_ended = args.3,
            events = args.4, flows_written = args.5, events_lost = lost, drops = %k.drop_summary(),
            "{what}"
        );
    }
}
