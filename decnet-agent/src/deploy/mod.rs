//! # deploy — `decnet deploy`, `decnet teardown`, `decnet status`
//!
//! **Input:** a fleet file ([`decnet_decoys::fleet`]).
//! **Output:** the decoy LAN — the bridge (created if missing) with the host's address, one
//! network namespace per decky with a veth on the bridge, the decky's IP and MAC and its OS
//! persona's sysctls — and the processes: one `decnet decky` per decky inside its namespace and
//! the workers (`decnet collector`, `decnet sniffer`, `decnet correlator`, `decnet profiler`,
//! `decnet retention`, `decnet web`), all
//! supervised ([`supervise`]), their command lines built in one place ([`units`]). The deckies are recorded in the repository; what was created and
//! what runs is recorded in `<run-dir>/<bridge>.json` ([`state`]), which `teardown` and
//! `status` read.
//!
//! While it runs, the fleet can change: deploy records the fleet it starts from as a generation
//! in the repository and applies every newer one that `decnet mutate` records ([`apply`]: only
//! the deckies that change are touched).
//!
//! Runs through `decnet-runtime` (`--daemon | --duration`): SIGTERM, SIGINT or SIGHUP (a closed
//! terminal) stop the deckies, then the workers, then remove the network; further signals do not
//! interrupt that teardown. A deployment record that cannot be saved stops the deployment with
//! an error (without it `teardown` could not find what to remove). `decnet
//! teardown` removes exactly what a deployment created (asking a running supervisor to stop
//! first), and is safe to run twice; `decnet deploy` cleans up after a deployment that died
//! before it starts.
pub mod apply;
pub mod fence;
pub mod netns;
pub mod state;
pub mod supervise;
pub mod units;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use decnet_core::{
    model::{Decky, DeckyService},
    repo::{Repository, hostname},
    time_fmt::now_ns,
};
use decnet_runtime::{Context, DbArgs, Report, RunArgs, Spec, Stop};
use futures::{StreamExt as _, stream};
use tokio::time::Instant;

use self::{
    state::{DEFAULT_RUN_DIR, DeckyState, DeployState, ProcState, is_decnet_process, state_path},
    supervise::{Supervisor, UnitSpec},
    units::{Child, CollectorAt},
};
use decnet_decoys::fleet::{DeckySpec, Fleet, Lan, persona};

/// The default fleet file.
pub const DEFAULT_FLEET: &str = "/etc/decnet/fleet.toml";
/// Where deckies keep their host keys and certificates (stable across restarts).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/decnet";

/// The workers `decnet deploy` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Worker {
    Collector,
    Sniffer,
    #[value(alias = "correlate")]
    Correlator,
    Profiler,
    /// `decnet retention`: old events and flows deleted (DECNET_RETENTION_* settings).
    Retention,
    /// `decnet web`: the REST API and dashboard (on --web-listen).
    Web,
    /// `decnet prober`: realism checks of every decky from a vantage namespace on the bridge
    /// (`decnet-prober.<bridge>`, created with the deckies' namespaces).
    Prober,
    /// `decnet mutate --watch`: applies fleet file edits, the operator's requests and schedules.
    Mutator,
    /// No workers: only the deckies (when systemd runs the workers; see deploy/systemd).
    None,
}

/// `decnet deploy`: bring up the decoy fleet and the workers, and supervise them.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Runs in the foreground until SIGTERM/SIGINT/SIGHUP (--daemon) or for --duration, then stops the deckies and workers \
and removes the namespaces, links and (if it created it) the bridge. A worker or decky that dies \
is restarted after 1 s, 2 s, 4 s … up to 30 s; each restart is logged and counted (see `decnet \
status`).\n\nExamples:\n  decnet deploy --daemon --fleet /etc/decnet/fleet.toml\n  \
DECNET_DB_URL=sqlite:///var/lib/decnet/decnet.db decnet deploy --daemon --fleet deploy/fleet.example.toml\n  \
decnet deploy --daemon --workers none        # deckies only; systemd runs the workers")]
pub struct DeployArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// The repository; passed to the workers by environment (never on their command lines).
    #[command(flatten)]
    pub db: DbArgs,

    /// The fleet file (TOML; see deploy/fleet.example.toml).
    #[arg(long, env = "DECNET_FLEET", default_value = DEFAULT_FLEET)]
    pub fleet: PathBuf,

    /// Workers to run and supervise, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "collector,sniffer,correlator,profiler,retention,web,prober,mutator"
    )]
    pub workers: Vec<Worker>,

    /// Where `decnet web` (the dashboard) serves, when it is among --workers. Plain HTTP: keep
    /// it on loopback, or put a TLS-terminating proxy in front.
    #[arg(
        long,
        env = "DECNET_WEB_LISTEN",
        value_name = "ADDR:PORT",
        default_value = crate::web::DEFAULT_LISTEN
    )]
    pub web_listen: std::net::SocketAddr,

    /// Directory for the deployment record and ready files.
    #[arg(long, env = "DECNET_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,

    /// Directory for the deckies' host keys and certificates (kept across restarts).
    #[arg(long, env = "DECNET_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Extra arguments for `decnet sniffer` (e.g. `--sniffer-arg=--mode=xdp`). Repeatable.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub sniffer_arg: Vec<String>,

    /// Do not fence the host off the decoy bridge (no nftables table): anyone on the decoy
    /// LAN can then reach every service of this host that listens on all interfaces.
    #[arg(long)]
    pub no_fence: bool,
}

/// `decnet teardown`: remove what `decnet deploy` created.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Reads the deployment records in --run-dir; a running `decnet deploy` is asked to stop (SIGTERM) \
and given 30 s, then whatever is left — processes, namespaces, veths, the host address and the \
bridge if the deployment created it — is removed. Nothing else is touched. Safe to run twice.")]
pub struct TeardownArgs {
    /// Only the deployment on this bridge (default: all records in --run-dir).
    #[arg(long)]
    pub bridge: Option<String>,

    #[arg(long, env = "DECNET_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
}

/// `decnet status`: deckies, workers and key counters.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only the deployment on this bridge.
    #[arg(long)]
    pub bridge: Option<String>,

    #[arg(long, env = "DECNET_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,

    #[command(flatten)]
    pub db: DbArgs,

    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The namespace of a decky.
pub fn netns_name(decky: &str) -> String {
    format!("decnet-{decky}")
}

/// The host side of a decky's veth (≤ 15 characters, stable per bridge and decky).
pub fn veth_name(bridge: &str, decky: &str) -> String {
    format!("dn{:08x}", persona::fnv1a(&format!("{bridge}/{decky}")))
}

/// A decky's host keys and certificates.
fn decky_state_dir(state_dir: &Path, decky: &str) -> PathBuf {
    state_dir.join("deckies").join(decky)
}

fn ready_dir(run_dir: &Path, bridge: &str) -> PathBuf {
    run_dir.join(format!("{bridge}.d"))
}

/// The collector's Unix socket, in the deployment's run directory.
pub const COLLECTOR_SOCKET: &str = "collector.sock";
/// `decnet collector --unix-peers`: each decky and its network namespace.
pub const PEERS_FILE: &str = "deckies.peers";

/// Creates `dir` (and its parents) and makes it its owner's only (mode 0700): it holds the
/// collector's socket.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

/// Writes the collector's peers file (atomically): `NAME NETNS_FILE` per decky.
pub(crate) fn write_peers(path: &Path, fleet: &Fleet) -> anyhow::Result<()> {
    let mut text = String::from(
        "# decnet deploy: the deckies that may log to the collector's Unix socket, and their\n\
         # network namespaces (decnet collector --unix-peers)\n",
    );
    for d in &fleet.deckies {
        text.push_str(&format!(
            "{} {}\n",
            d.name,
            netns::netns_path(&netns_name(&d.name)).display()
        ));
    }
    decnet_runtime::write_atomic(path, text.as_bytes())
}

/// The worker's name: APP-NAME `decnet.deploy` (also of `teardown` and `status`).
pub const WORKER: &str = "deploy";

decnet_runtime::worker!(
    DeployArgs,
    |_args| {
        // Teardown (deckies, then workers with their own grace, then the network) must run to its
        // end: a second Ctrl-C does not cut it short.
        Spec::new(WORKER)
            .grace(Duration::from_secs(180))
            .no_hard_stop()
    },
    deploy
);

/// Builds the fleet, supervises it until the run stops, removes it.
pub async fn deploy(ctx: Context, args: DeployArgs) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let fleet = Fleet::load(&args.fleet)?;
    let fleet_file = std::fs::canonicalize(&args.fleet)
        .with_context(|| format!("cannot resolve {}", args.fleet.display()))?;
    netns::require_root("decnet deploy")?;
    if !args.no_fence {
        fence::available()?;
    }
    let db = args.db.config()?;
    let repo = ctx.repo()?.clone();
    let bridge = fleet.lan.bridge.clone();

    // A previous deployment on this bridge: running → refuse; dead → clean up after it.
    let path = state_path(&args.run_dir, &bridge);
    if let Some(old) = DeployState::load(&path)? {
        if old.supervisor_pid != std::process::id() && is_decnet_process(old.supervisor_pid) {
            bail!(
                "a deployment on bridge {bridge} is already running (decnet deploy, pid {}); \
                 stop it with `decnet teardown --bridge {bridge}`",
                old.supervisor_pid
            );
        }
        tracing::warn!(
            "a previous deployment on {bridge} did not stop cleanly (pid {} is gone): removing what it left",
            old.supervisor_pid
        );
        remove_deployment(&old, &args.run_dir).await?;
    }
    for d in &fleet.deckies {
        if netns::netns_exists(&netns_name(&d.name)) {
            bail!(
                "network namespace {} already exists and is not from a decnet deployment on {bridge}; \
                 remove it (`ip netns del {}`) or rename decky {:?}",
                netns_name(&d.name),
                netns_name(&d.name),
                d.name
            );
        }
    }

    // The deckies' host-key directories (0700), before anything is created: a directory that
    // cannot be made private stops the deployment here, naming it.
    for d in &fleet.deckies {
        decnet_decoys::decky::state::ensure_dir(&decky_state_dir(&args.state_dir, &d.name))?;
    }

    let st = DeployState {
        supervisor_pid: std::process::id(),
        started_ns: now_ns(),
        fleet_file: fleet_file.clone(),
        bridge: bridge.clone(),
        ..Default::default()
    };
    st.save(&args.run_dir)?;
    let st = Arc::new(Mutex::new(st));
    // The prober's vantage: with the prober among the workers, or when systemd runs them.
    let vantage = args.workers.contains(&Worker::Prober) || args.workers.contains(&Worker::None);
    let built = build_network(&fleet, &st, &args.run_dir, !args.no_fence, vantage).await;
    if let Err(e) = built {
        let snapshot = lock(&st).clone();
        if let Err(e2) = remove_deployment(&snapshot, &args.run_dir).await {
            tracing::error!("cleaning up after a failed deploy: {e2:#}");
        }
        return Err(e);
    }
    let network_secs = t0.elapsed().as_secs_f64();
    tracing::info!(
        "network up: bridge {bridge}, {} deckies in {network_secs:.2} s",
        fleet.deckies.len()
    );

    record_deckies(&repo, &fleet, "up").await;
    if vantage {
        // Before any worker starts: the correlator must never take the prober for an attacker.
        record_vantage(&repo, &fleet).await;
    }

    let (units, decky_units) = match units(&fleet, &fleet_file, &args) {
        Ok(u) => u,
        Err(e) => {
            let snapshot = lock(&st).clone();
            if let Err(e2) = remove_deployment(&snapshot, &args.run_dir).await {
                tracing::error!("cleaning up after a failed deploy: {e2:#}");
            }
            return Err(e);
        }
    };
    let mut sup = Supervisor::new(units);
    let runs_collector =
        !args.workers.contains(&Worker::None) && args.workers.contains(&Worker::Collector);
    let mut applier = apply::Applier {
        repo: repo.clone(),
        current: fleet.clone(),
        current_id: 0,
        run_dir: args.run_dir.clone(),
        st: Arc::clone(&st),
        units: decky_units,
        peers: runs_collector.then(|| ready_dir(&args.run_dir, &bridge).join(PEERS_FILE)),
        applied: 0,
        failed: 0,
    };
    applier.record_start(&fleet).await;
    let services: usize = fleet.deckies.iter().map(|d| d.services.len()).sum();
    // Without its record a deployment cannot be torn down: failing to save it stops the fleet.
    let record_error: Arc<Mutex<Option<String>>> = Arc::default();
    let fail_record = {
        let record_error = Arc::clone(&record_error);
        let stopper = ctx.stopper();
        move |e: anyhow::Error| {
            let msg = format!("cannot save the deployment record: {e:#}");
            tracing::error!("{msg}; stopping the fleet");
            record_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(msg);
            stopper.stop(Stop::Requested);
        }
    };
    let save = |snap: &[(String, ProcState)]| {
        let mut s = lock(&st);
        for (name, p) in snap {
            s.processes.insert(name.clone(), p.clone());
        }
        if let Err(e) = s.save(&args.run_dir) {
            fail_record(e);
        }
    };
    let ready_file = args.run.ready_file.clone();
    let n_deckies = fleet.deckies.len();
    let st_ready = Arc::clone(&st);
    let run_dir = args.run_dir.clone();
    let db_shown = decnet_core::repo::redact_url(&db.url);
    let fail_ready = fail_record.clone();
    let on_ready = Box::new(move || {
        let secs = t0.elapsed().as_secs_f64();
        {
            let mut s = lock(&st_ready);
            s.ready = true;
            if let Err(e) = s.save(&run_dir) {
                fail_ready(e);
                return;
            }
        }
        tracing::info!(
            "fleet up: {n_deckies} deckies, {services} services in {secs:.2} s; data in {db_shown}; \
             stop with Ctrl-C or `decnet teardown`"
        );
        if let Err(e) = decnet_runtime::write_ready(
            ready_file.as_deref(),
            &[
                format!("deckies={n_deckies}"),
                format!("services={services}"),
                format!("seconds={secs:.3}"),
            ],
        ) {
            tracing::error!("{e:#}");
        }
    });
    let mut shutdown = ctx.shutdown.clone();
    let counters_repo = repo.clone();
    let host = hostname();
    let fence_table = lock(&st).fence.clone();
    let fence_counter = fence_table.clone().map(|table| {
        let (repo, host) = (repo.clone(), host.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FENCE_COUNTER_EVERY);
            loop {
                tick.tick().await;
                record_fence_drops(&repo, &host, &table).await;
            }
        })
    });
    let mut last_restarts = 0u64;
    {
        let mut changed = |snap: &[(String, ProcState)]| {
            save(snap);
            let total: u64 = snap.iter().map(|(_, p)| u64::from(p.restarts)).sum();
            if total != last_restarts {
                last_restarts = total;
                let r = counters_repo.clone();
                let host = host.clone();
                let per: Vec<(String, i64)> = snap
                    .iter()
                    .map(|(n, p)| (format!("restarts.{n}"), i64::from(p.restarts)))
                    .collect();
                tokio::spawn(async move {
                    let refs: Vec<(&str, i64)> =
                        per.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    if let Err(e) = r
                        .record_counters(
                            "supervisor",
                            &host,
                            &refs,
                            decnet_core::repo::CounterMode::Set,
                        )
                        .await
                    {
                        tracing::warn!("cannot record restart counters: {e:#}");
                    }
                });
            }
        };
        let mut on_ready: Option<Box<dyn FnOnce() + Send>> = Some(on_ready);
        loop {
            // Supervise until the run stops or it is time to look for a new fleet generation.
            let mut stopping = false;
            let stop = async {
                tokio::select! {
                    why = shutdown.wait() => {
                        tracing::info!("{why}: stopping the fleet");
                        stopping = true;
                    }
                    () = tokio::time::sleep(GENERATION_POLL) => {}
                }
            };
            sup.run(stop, &mut changed, &mut on_ready).await;
            if stopping {
                break;
            }
            applier.poll(&mut sup, &mut changed).await;
        }
        if !sup.all_ready() {
            tracing::warn!(
                "stopping before these were up: {}",
                sup.not_ready().join(", ")
            );
        }
        sup.stop_all(Duration::from_secs(10), &mut changed).await;
    }
    if let (Some(task), Some(table)) = (fence_counter, &fence_table) {
        task.abort();
        record_fence_drops(&repo, &host, table).await;
    }
    record_deckies(&repo, &applier.current, "down").await;
    let snapshot = lock(&st).clone();
    remove_deployment(&snapshot, &args.run_dir).await?;
    tracing::info!(
        "fleet stopped and removed ({} restarts, {} fleet generations applied and {} failed during the run)",
        sup.restarts,
        applier.applied,
        applier.failed
    );
    let record_error = record_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match record_error {
        Some(e) => bail!("{e}"),
        None => Ok(Report::default()),
    }
}

pub(crate) fn lock(st: &Mutex<DeployState>) -> std::sync::MutexGuard<'_, DeployState> {
    st.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often deploy looks for a new fleet generation (one indexed read).
const GENERATION_POLL: Duration = Duration::from_millis(200);

/// How often the fence's drop counter goes to the repository.
const FENCE_COUNTER_EVERY: Duration = Duration::from_secs(5);

/// Records the fence's drops as the supervisor's counter `fence.dropped`.
async fn record_fence_drops(repo: &Repository, host: &str, table: &str) {
    let t = table.to_owned();
    let n = match tokio::task::spawn_blocking(move || fence::dropped(&t)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return tracing::warn!("cannot read the fence's counter: {e:#}"),
        Err(e) => return tracing::warn!("cannot read the fence's counter: {e}"),
    };
    let v = i64::try_from(n).unwrap_or(i64::MAX);
    if let Err(e) = repo
        .record_counters(
            "supervisor",
            host,
            &[("fence.dropped", v)],
            decnet_core::repo::CounterMode::Set,
        )
        .await
    {
        tracing::warn!("cannot record the fence's counter: {e:#}");
    }
}

/// Bridge, host address, fence, uplink, then every decky's namespace, veth and persona — each
/// step recorded before it is taken.
async fn build_network(
    fleet: &Fleet,
    st: &Arc<Mutex<DeployState>>,
    run_dir: &Path,
    fenced: bool,
    vantage: bool,
) -> anyhow::Result<()> {
    let lan = &fleet.lan;
    let h = netns::netlink()?;
    if netns::link_index(&h, &lan.bridge).await?.is_none() {
        lock(st).bridge_created = true;
        lock(st).save(run_dir)?;
    }
    let (bridge_idx, _) = netns::ensure_bridge(&h, &lan.bridge).await?;
    lock(st).host_addr = Some((lan.host_ip, lan.prefix));
    lock(st).save(run_dir)?;
    if !netns::add_address(&h, bridge_idx, lan.host_ip, lan.prefix).await? {
        // It was there before us: not ours to remove.
        lock(st).host_addr = None;
        lock(st).save(run_dir)?;
    }
    if fenced {
        let table = fence::table_name(&lan.bridge);
        lock(st).fence = Some(table.clone());
        lock(st).save(run_dir)?;
        fence::create(&table, &lan.bridge)?;
    }
    if let Some(uplink) = &lan.uplink {
        lock(st).uplink = Some(uplink.clone());
        lock(st).save(run_dir)?;
        netns::set_controller(&h, uplink, Some(bridge_idx))
            .await
            .with_context(|| format!("lan.uplink {uplink}"))?;
    }
    // Record every namespace and veth before creating any, then build them concurrently.
    {
        let mut s = lock(st);
        for d in &fleet.deckies {
            s.namespaces.push(netns_name(&d.name));
            s.veths.push(veth_name(&lan.bridge, &d.name));
        }
        s.save(run_dir)?;
    }
    let results: Vec<anyhow::Result<DeckyState>> = stream::iter(fleet.deckies.iter())
        .map(|d| build_decky(&h, lan, bridge_idx, d))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut deckies = Vec::new();
    for r in results {
        deckies.push(r?);
    }
    if vantage {
        build_vantage(&h, fleet, bridge_idx, st, run_dir).await?;
    }
    deckies.sort_by(|a, b| a.name.cmp(&b.name));
    let mut s = lock(st);
    s.deckies = deckies;
    s.save(run_dir)
}

/// The prober's vantage: a namespace of its own on the bridge (`decnet-prober.<bridge>`) with
/// the highest free address of the subnet, a locally administered MAC, and none of the
/// personas' sysctls. Recorded like a decky's namespace, removed with them.
async fn build_vantage(
    h: &rtnetlink::Handle,
    fleet: &Fleet,
    bridge_idx: u32,
    st: &Arc<Mutex<DeployState>>,
    run_dir: &Path,
) -> anyhow::Result<()> {
    let lan = &fleet.lan;
    let ns = decnet_prober::vantage::netns_name(&lan.bridge);
    let veth = veth_name(&lan.bridge, decnet_prober::vantage::VETH_KEY);
    let ip = decnet_prober::vantage::address(fleet)?;
    {
        let mut s = lock(st);
        s.namespaces.push(ns.clone());
        s.veths.push(veth.clone());
        s.save(run_dir)?;
    }
    netns::create_netns(&ns)?;
    let fd = netns::open_netns(&ns)?;
    let h32 = persona::fnv1a(&ns).to_be_bytes();
    let mac = [0x02, 0x00, h32[0], h32[1], h32[2], h32[3]];
    netns::create_veth(h, &veth, bridge_idx, &fd, mac).await?;
    let (prefix, gw) = (lan.prefix, lan.host_ip);
    tokio::task::spawn_blocking(move || netns::configure_inside(&fd, ip, prefix, gw, &[]))
        .await
        .context("namespace setup task failed")?
        .with_context(|| format!("the prober's vantage {ns}"))?;
    tracing::info!("prober vantage {ns} at {ip}");
    Ok(())
}

pub(crate) async fn build_decky(
    h: &rtnetlink::Handle,
    lan: &Lan,
    bridge_idx: u32,
    d: &DeckySpec,
) -> anyhow::Result<DeckyState> {
    let ns = netns_name(&d.name);
    let veth = veth_name(&lan.bridge, &d.name);
    netns::create_netns(&ns)?;
    let fd = netns::open_netns(&ns)?;
    let mac = persona::mac(d);
    netns::create_veth(h, &veth, bridge_idx, &fd, mac).await?;
    let (ip, prefix, gw) = (d.ip, lan.prefix, lan.host_ip);
    let sysctls = persona::sysctls(d.os);
    tokio::task::spawn_blocking(move || netns::configure_inside(&fd, ip, prefix, gw, sysctls))
        .await
        .context("namespace setup task failed")?
        .with_context(|| format!("decky {}", d.name))?;
    Ok(DeckyState {
        name: d.name.clone(),
        ip: d.ip,
        netns: ns,
        veth,
        mac: persona::mac_string(mac),
        os: d.os.name().to_owned(),
        services: d
            .services
            .iter()
            .map(|s| (s.kind.name().to_owned(), s.port))
            .collect(),
    })
}

fn units(
    fleet: &Fleet,
    fleet_file: &Path,
    args: &DeployArgs,
) -> anyhow::Result<(Vec<UnitSpec>, apply::DeckyUnits)> {
    let exe = std::env::current_exe().context("cannot find the decnet binary")?;
    let rdir = ready_dir(&args.run_dir, &fleet.lan.bridge);
    private_dir(&rdir)?;
    // The deckies log over a Unix socket in the run directory: nothing of the collector listens
    // on the decoy network, where attackers are.
    let socket = rdir.join(COLLECTOR_SOCKET);
    let peers = rdir.join(PEERS_FILE);
    let runs_collector =
        !args.workers.contains(&Worker::None) && args.workers.contains(&Worker::Collector);
    let collector = if runs_collector {
        write_peers(&peers, fleet)?;
        CollectorAt::Socket(socket.clone())
    } else {
        CollectorAt::Tcp(fleet.lan.collector())
    };
    let mut children: Vec<(String, &'static str, Child, Option<String>)> = Vec::new();
    if !args.workers.contains(&Worker::None) {
        for w in &args.workers {
            let child = match w {
                Worker::Collector => Child::Collector {
                    socket: socket.clone(),
                    peers: peers.clone(),
                },
                Worker::Sniffer => Child::Sniffer {
                    bridge: fleet.lan.bridge.clone(),
                    extra: args.sniffer_arg.clone(),
                },
                Worker::Correlator => Child::Correlator,
                Worker::Profiler => Child::Profiler,
                Worker::Retention => Child::Retention,
                Worker::Prober => Child::Prober {
                    fleet: fleet_file.to_path_buf(),
                },
                Worker::Web => {
                    // Its JWT secret stays across restarts, next to the deckies' keys.
                    let dir = args.state_dir.join("web");
                    private_dir(&dir)?;
                    Child::Web {
                        listen: args.web_listen,
                        jwt_secret_file: dir.join("jwt.secret"),
                    }
                }
                Worker::Mutator => Child::Mutator {
                    fleet: fleet_file.to_path_buf(),
                },
                Worker::None => continue,
            };
            children.push((child.worker().to_owned(), "worker", child, None));
        }
    }
    let decky_units = apply::DeckyUnits {
        exe: exe.clone(),
        rdir: rdir.clone(),
        collector,
        state_dir: args.state_dir.clone(),
        db: args.db.clone(),
    };
    let mut specs: Vec<UnitSpec> = children
        .into_iter()
        .map(|(name, kind, child, netns)| {
            apply::unit_spec(&exe, &rdir, &args.db, name, kind, child, netns)
        })
        .collect();
    for d in &fleet.deckies {
        specs.push(decky_units.unit(d)?);
    }
    Ok((specs, decky_units))
}

pub(crate) async fn record_deckies(repo: &Repository, fleet: &Fleet, status: &str) {
    let deckies: Vec<Decky> = fleet
        .deckies
        .iter()
        .map(|d| Decky {
            name: d.name.clone(),
            ip: d.ip.into(),
            hostname: d.hostname.clone(),
            os_family: d.os.name().to_owned(),
            archetype: d.archetype.clone().unwrap_or_default(),
            persona: serde_json::json!({
                "mac": persona::mac_string(persona::mac(d)),
                "initial_ttl": persona::initial_ttl(d.os),
                "sysctls": persona::sysctls(d.os)
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                "bridge": fleet.lan.bridge,
            })
            .to_string(),
            status: status.to_owned(),
            services: d
                .services
                .iter()
                .map(|s| DeckyService {
                    service: s.kind.name().to_owned(),
                    port: s.port,
                    settings: serde_json::json!({
                        "banner": s.banner,
                        "accepts_logins": s.accept.len(),
                    })
                    .to_string(),
                })
                .collect(),
        })
        .collect();
    let r = async {
        let mut tx = repo.begin().await?;
        tx.upsert_deckies(&deckies).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = r {
        tracing::warn!("cannot record the deckies as {status} in the repository: {e:#}");
    }
}

async fn record_vantage(repo: &Repository, fleet: &Fleet) {
    let r = async {
        let ip = decnet_prober::vantage::address(fleet)?;
        let name = decnet_prober::vantage::netns_name(&fleet.lan.bridge);
        let mut tx = repo.begin().await?;
        tx.record_probe_vantage(std::net::IpAddr::V4(ip), &name, now_ns())
            .await?;
        tx.commit().await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!("cannot record the prober's vantage in the repository: {e:#}");
    }
}

/// Removes what a deployment record lists: processes (if still alive), veths, namespaces,
/// uplink enslavement, host address, bridge (if created), ready files, the record.
async fn remove_deployment(st: &DeployState, run_dir: &Path) -> anyhow::Result<()> {
    for (name, p) in &st.processes {
        if let Some(pid) = p.pid
            && pid != std::process::id()
            && is_decnet_process(pid)
        {
            tracing::info!("killing leftover {name} (pid {pid})");
            supervise::signal(pid, libc::SIGKILL);
        }
    }
    let h = netns::netlink()?;
    let mut problems = Vec::new();
    for veth in &st.veths {
        if let Err(e) = netns::delete_link(&h, veth).await {
            problems.push(format!("{e:#}"));
        }
    }
    for ns in &st.namespaces {
        if let Err(e) = netns::delete_netns(ns) {
            problems.push(format!("{e:#}"));
        }
    }
    if let Some(uplink) = &st.uplink
        && netns::link_index(&h, uplink).await?.is_some()
        && let Err(e) = netns::set_controller(&h, uplink, None).await
    {
        problems.push(format!("{e:#}"));
    }
    if let Some(table) = &st.fence
        && let Err(e) = fence::delete(table)
    {
        problems.push(format!("{e:#}"));
    }
    if st.bridge_created {
        if let Err(e) = netns::delete_link(&h, &st.bridge).await {
            problems.push(format!("{e:#}"));
        }
    } else if let Some((ip, prefix)) = st.host_addr
        && let Err(e) = netns::del_address(&h, &st.bridge, ip, prefix).await
    {
        problems.push(format!("{e:#}"));
    }
    if !problems.is_empty() {
        bail!(
            "could not remove everything of the deployment on {} (its record is kept, run \
             `decnet teardown` again):\n  {}",
            st.bridge,
            problems.join("\n  ")
        );
    }
    let _ = std::fs::remove_dir_all(ready_dir(run_dir, &st.bridge));
    match std::fs::remove_file(state_path(run_dir, &st.bridge)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("cannot remove the deployment record"),
    }
}

pub async fn teardown(args: TeardownArgs) -> anyhow::Result<()> {
    netns::require_root("decnet teardown")?;
    let records = DeployState::load_all(&args.run_dir)?;
    let records: Vec<_> = records
        .into_iter()
        .filter(|(_, s)| args.bridge.as_ref().is_none_or(|b| *b == s.bridge))
        .collect();
    if records.is_empty() {
        println!(
            "nothing to tear down: no deployment{} recorded in {}",
            args.bridge
                .as_ref()
                .map(|b| format!(" on bridge {b}"))
                .unwrap_or_default(),
            args.run_dir.display()
        );
        return Ok(());
    }
    for (path, st) in records {
        let pid = st.supervisor_pid;
        if pid != std::process::id() && is_decnet_process(pid) {
            println!("{}: asking decnet deploy (pid {pid}) to stop", st.bridge);
            supervise::signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while is_decnet_process(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if is_decnet_process(pid) {
                println!("{}: pid {pid} did not stop in 30 s: killing it", st.bridge);
                supervise::signal(pid, libc::SIGKILL);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        // The supervisor removes its own record when it stops cleanly; otherwise do it here.
        match DeployState::load(&path)? {
            Some(left) => {
                remove_deployment(&left, &args.run_dir).await?;
                println!(
                    "{}: removed {} namespaces, {} links{}",
                    left.bridge,
                    left.namespaces.len(),
                    left.veths.len(),
                    if left.bridge_created {
                        " and the bridge"
                    } else {
                        ""
                    }
                );
            }
            None => println!("{}: stopped and removed by decnet deploy", st.bridge),
        }
    }
    Ok(())
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let records: Vec<_> = DeployState::load_all(&args.run_dir)?
        .into_iter()
        .filter(|(_, s)| args.bridge.as_ref().is_none_or(|b| *b == s.bridge))
        .collect();
    let repo = match args.db.config() {
        Ok(db) => Repository::open(&db).await.ok(),
        Err(_) => None,
    };
    let leases = match &repo {
        Some(r) => r.leases().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let counters = match &repo {
        Some(r) => r.counters().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let now = now_ns();
    let mut out = Vec::new();
    for (_, st) in &records {
        let supervisor_up = is_decnet_process(st.supervisor_pid);
        let mut deckies = Vec::new();
        for d in &st.deckies {
            let proc_up = st
                .processes
                .get(&format!("decky:{}", d.name))
                .and_then(|p| p.pid)
                .is_some_and(is_decnet_process);
            let mut services = Vec::new();
            for (svc, port) in &d.services {
                let up = tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect((d.ip, *port)),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                services.push(serde_json::json!({"service": svc, "port": port, "up": up}));
            }
            let all_up = proc_up && services.iter().all(|s| s["up"] == true);
            deckies.push(serde_json::json!({
                "name": d.name, "ip": d.ip.to_string(), "os": d.os, "mac": d.mac,
                "netns": d.netns, "up": all_up, "process_up": proc_up, "services": services,
            }));
        }
        let mut workers = Vec::new();
        for (name, p) in &st.processes {
            if p.kind != "worker" {
                continue;
            }
            let alive = p.pid.is_some_and(is_decnet_process);
            let kind = if name == "sniffer" {
                format!("sniffer@{}", st.bridge)
            } else {
                name.clone()
            };
            let lease = leases
                .iter()
                .find(|l| l.kind == kind && l.host == hostname());
            workers.push(serde_json::json!({
                "name": name,
                "pid": p.pid,
                "up": alive,
                "uptime_s": if alive { Some((now - p.started_ns) / 1_000_000_000) } else { None },
                "restarts": p.restarts,
                "last_exit": p.last_exit,
                "lease_holder_pid": lease.map(|l| l.pid),
                "lease_heartbeat_age_s": lease.map(|l| (now - l.heartbeat_at_ns) as f64 / 1e9),
            }));
        }
        out.push(serde_json::json!({
            "bridge": st.bridge,
            "fleet": st.fleet_file,
            "supervisor_pid": st.supervisor_pid,
            "supervisor_up": supervisor_up,
            "ready": st.ready,
            "deckies": deckies,
            "workers": workers,
        }));
    }
    let key_counters: Vec<serde_json::Value> = counters
        .iter()
        .filter(|(_, _, name, _)| {
            [
                "received",
                "stored",
                "rejected",
                "duplicates",
                "dropped_udp",
                "udp_kernel_drops",
                "db_errors",
                "events_lost",
                "events_read",
                "flows_read",
                "sessions_written",
                "attackers_updated",
                "attackers_profiled",
            ]
            .contains(&name.as_str())
                || name.starts_with("restarts.")
        })
        .map(|(w, h, n, v)| serde_json::json!({"worker": w, "host": h, "counter": n, "value": v}))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "deployments": out, "counters": key_counters
            }))?
        );
        return Ok(());
    }
    if out.is_empty() {
        println!(
            "nothing deployed (no deployment records in {})",
            args.run_dir.display()
        );
    }
    for dep in &out {
        println!(
            "deployment on {} — decnet deploy pid {} ({}), fleet {}",
            dep["bridge"].as_str().unwrap_or(""),
            dep["supervisor_pid"],
            if dep["supervisor_up"] == true {
                "running"
            } else {
                "NOT RUNNING — run `decnet teardown`"
            },
            dep["fleet"].as_str().unwrap_or("")
        );
        println!(
            "\n  {:<20} {:<15} {:<15} {:<5} services",
            "DECKY", "IP", "OS", "STATE"
        );
        for d in dep["deckies"].as_array().into_iter().flatten() {
            let svcs: Vec<String> = d["services"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{}/{}{}",
                        s["service"].as_str().unwrap_or(""),
                        s["port"],
                        if s["up"] == true { "" } else { "(down)" }
                    )
                })
                .collect();
            println!(
                "  {:<20} {:<15} {:<15} {:<5} {}",
                d["name"].as_str().unwrap_or(""),
                d["ip"].as_str().unwrap_or(""),
                d["os"].as_str().unwrap_or(""),
                if d["up"] == true { "up" } else { "DOWN" },
                svcs.join(" ")
            );
        }
        println!(
            "\n  {:<12} {:<8} {:<5} {:>9} {:>8}  lease",
            "WORKER", "PID", "STATE", "UPTIME", "RESTARTS"
        );
        for w in dep["workers"].as_array().into_iter().flatten() {
            println!(
                "  {:<12} {:<8} {:<5} {:>9} {:>8}  {}",
                w["name"].as_str().unwrap_or(""),
                w["pid"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or("-".into()),
                if w["up"] == true { "up" } else { "DOWN" },
                w["uptime_s"]
                    .as_i64()
                    .map(|s| format!("{s}s"))
                    .unwrap_or("-".into()),
                w["restarts"],
                match (
                    w["lease_holder_pid"].as_u64(),
                    w["lease_heartbeat_age_s"].as_f64()
                ) {
                    (Some(p), Some(age)) => format!("pid {p}, heartbeat {age:.1}s ago"),
                    _ => "-".into(),
                }
            );
        }
        println!();
    }
    if !key_counters.is_empty() {
        println!("  {:<12} {:<28} {:>12}", "WORKER", "COUNTER", "VALUE");
        for c in &key_counters {
            println!(
                "  {:<12} {:<28} {:>12}",
                c["worker"].as_str().unwrap_or(""),
                c["counter"].as_str().unwrap_or(""),
                c["value"]
            );
        }
    }
    Ok(())
}
