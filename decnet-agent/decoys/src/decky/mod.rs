//! # decky — `decnet decky --name N`: serves one decky's decoy services inside its namespace.
//!
//! `decnet deploy` starts one `decnet decky` per decky, inside the decky's network namespace.
//! It loads the decky from the fleet file (or, for tests, a serialized [`DeckySpec`] with
//! `--spec-json`), binds every service on the decky's IP (or `--bind`), writes the ready file
//! (`SERVICE ADDR:PORT` per line) once all listen, and serves until stopped (`--daemon` or
//! `--duration`, through `decnet-runtime`; it takes no lease and no repository). Every
//! connection, login attempt, command and request becomes an RFC 5424 line sent to the collector
//! (see [`emit`]). Host keys and certificates are generated once per decky and kept in its state
//! directory ([`state`]), so they are stable across restarts and differ between deckies.
pub mod emit;
pub mod persona;
pub mod services;
pub mod shell;
pub mod state;

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use decnet_core::syslog::SyslogTarget;
use decnet_runtime::{Context, Report, RunArgs, Spec};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::fleet::DeckySpec;
use emit::Emitter;
use services::Ctx;

/// Where the state directories live unless `--state-dir` says otherwise.
pub const STATE_ROOT: &str = "/var/lib/decnet/deckies";
/// The collector's default address (the collector's own default listener).
pub const DEFAULT_COLLECTOR: &str = "127.0.0.1:5514";

/// `decnet decky`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  decnet decky --daemon --name web-01 --fleet /etc/decnet/fleet.toml\n  \
decnet decky --duration 60 --name web-01 --spec-json web-01.json --bind 127.0.0.1 --ready-file /tmp/r"
)]
pub struct DeckyArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// The decky's name in the fleet file.
    #[arg(long)]
    pub name: String,

    /// The fleet file (TOML) the decky is described in.
    #[arg(long, env = "DECNET_FLEET", value_name = "FILE")]
    pub fleet: Option<PathBuf>,

    /// Instead of a fleet file: the decky as a JSON-serialized `DeckySpec` (tests, tools).
    #[arg(long, value_name = "FILE", conflicts_with = "fleet")]
    pub spec_json: Option<PathBuf>,

    /// The collector's TCP listener (`decnet collect --tcp`), where the events go [default: the
    /// fleet's `host_ip:collector_port`; with --spec-json, 127.0.0.1:5514].
    #[arg(long, env = "DECNET_DECKY_COLLECTOR", value_name = "ADDR:PORT")]
    pub collector: Option<SocketAddr>,

    /// The collector's Unix socket (`decnet collect --unix`) instead of a TCP listener: what
    /// `decnet deploy` uses, so that the events never cross the decoy network.
    #[arg(long, value_name = "PATH", conflicts_with = "collector")]
    pub collector_socket: Option<PathBuf>,

    /// Host keys and certificates of this decky [default: /var/lib/decnet/deckies/<name>].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Bind the services on this address instead of the decky's IP (e.g. 0.0.0.0, or 127.0.0.1
    /// in tests).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
}

/// Stop signal for [`run_spec`]: send `true` to stop.
pub type Shutdown = watch::Receiver<bool>;

/// Waits until `shutdown` says stop (or its sender is gone).
pub async fn stopped(shutdown: &mut Shutdown) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// The worker's name: subcommand, APP-NAME `decnet.decky`.
pub const WORKER: &str = "decky";

decnet_runtime::worker!(
    DeckyArgs,
    no_db,
    |_args| Spec::new(WORKER).grace(Duration::from_secs(8)),
    run
);

/// Loads the decky and serves it until the run stops.
pub async fn run(ctx: Context, args: DeckyArgs) -> anyhow::Result<Report> {
    let (spec, fleet_collector) = load_spec(&args)?;
    let collector = match (&args.collector_socket, args.collector, fleet_collector) {
        (Some(path), _, _) => SyslogTarget::Unix(path.clone()),
        (None, Some(c), _) | (None, None, Some(c)) => SyslogTarget::Tcp(c),
        (None, None, None) => SyslogTarget::Tcp(
            DEFAULT_COLLECTOR
                .parse()
                .context("the default collector address")?,
        ),
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| Path::new(STATE_ROOT).join(&spec.name));
    let (tx, rx) = watch::channel(false);
    let mut shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        shutdown.wait().await;
        let _ = tx.send(true);
    });
    run_spec(
        spec,
        collector,
        &state_dir,
        args.run.ready_file.as_deref(),
        args.bind,
        rx,
    )
    .await?;
    Ok(Report::default())
}

/// The decky, and the fleet's collector address when it came from a fleet file.
fn load_spec(args: &DeckyArgs) -> anyhow::Result<(DeckySpec, Option<SocketAddr>)> {
    let (spec, collector) = if let Some(path) = &args.spec_json {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let spec: DeckySpec = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a decky spec", path.display()))?;
        (spec, None)
    } else if let Some(path) = &args.fleet {
        let fleet = crate::fleet::Fleet::load(path)?;
        let spec = fleet.decky(&args.name)?.clone();
        (spec, Some(fleet.lan.collector()))
    } else {
        bail!("say where the decky is described: --fleet FILE or --spec-json FILE");
    };
    if spec.name != args.name {
        bail!(
            "the spec describes decky {:?}, not {:?}",
            spec.name,
            args.name
        );
    }
    Ok((spec, collector))
}

/// Serves `spec`'s services until `shutdown`: binds every service on the decky's IP (or
/// `bind`), writes `ready_file` (`SERVICE ADDR:PORT` per line) once all listen, sends events to
/// `collector`, keeps keys and certificates in `state_dir`. Returns after a clean stop (open
/// connections closed, queued events flushed, 3 s at most).
pub async fn run_spec(
    spec: DeckySpec,
    collector: SyslogTarget,
    state_dir: &Path,
    ready_file: Option<&Path>,
    bind: Option<IpAddr>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if spec.services.is_empty() {
        bail!("decky {} has no services", spec.name);
    }
    let emitter = Emitter::new(collector.clone(), &spec.name);
    let ip = bind.unwrap_or(IpAddr::V4(spec.ip));
    let ctx = Arc::new(Ctx::new(
        spec.clone(),
        emitter.clone(),
        state_dir.to_path_buf(),
    ));

    // Everything that can fail does so before anything listens: keys, certificates, ports.
    let mut bound = Vec::with_capacity(spec.services.len());
    for svc in &spec.services {
        let prepared = services::prepare(&ctx, svc)
            .with_context(|| format!("{} on port {}", svc.kind.name(), svc.port))?;
        let listener = bind_retrying(SocketAddr::new(ip, svc.port))
            .await
            .with_context(|| format!("{}: cannot listen on {ip}:{}", svc.kind.name(), svc.port))?;
        bound.push((svc.clone(), listener, prepared));
    }
    let mut ready = Vec::with_capacity(bound.len());
    for (svc, l, _) in &bound {
        let addr = l.local_addr().context("local address")?;
        ready.push(format!("{} {addr}", svc.kind.name()));
    }
    tracing::info!(
        decky = %spec.name, collector = %collector, state_dir = %state_dir.display(),
        "serving {}", ready.join(", ")
    );

    let mut tasks = JoinSet::new();
    for (svc, listener, prepared) in bound {
        tasks.spawn(services::serve(
            listener,
            ctx.clone(),
            svc,
            prepared,
            shutdown.clone(),
        ));
    }
    decnet_runtime::write_ready(ready_file, &ready)?;

    let mut sd = shutdown.clone();
    tokio::select! {
        _ = stopped(&mut sd) => {}
        Some(res) = tasks.join_next() => {
            // A service's accept loop only ends on shutdown; anything else is fatal.
            if let Ok(Err(e)) = res {
                return Err(e);
            }
        }
    }
    tracing::info!(decky = %spec.name, "stopping");
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let flushed = emitter.flush(Duration::from_secs(3)).await;
    let st = emitter.stats();
    tracing::info!(
        decky = %spec.name,
        connections = ctx.connections.load(Ordering::Relaxed),
        events = st.queued.load(Ordering::Relaxed),
        sent = st.sent.load(Ordering::Relaxed),
        lost = st.lost.load(Ordering::Relaxed),
        flushed,
        "stopped"
    );
    Ok(())
}

/// Binds `addr`, retrying for 5 s while the address is not there yet (deploy may still be
/// configuring the namespace).
async fn bind_retrying(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrNotAvailable
                    && tokio::time::Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A linux web server decky without services (unit tests).
#[cfg(test)]
pub(crate) fn test_spec() -> DeckySpec {
    DeckySpec {
        mutate_interval: None,
        name: "web-01".into(),
        ip: std::net::Ipv4Addr::new(10, 0, 0, 5),
        hostname: "web01".into(),
        os: crate::fleet::OsFamily::Linux,
        archetype: Some("web-server".into()),
        services: vec![],
    }
}
