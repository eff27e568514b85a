//! # web — `decnet web`: the REST API and dashboard (the `decnet-api` crate), optionally with the
//! sniffer and the profiler embedded.
//!
//! **Input:** the repository (read-only, except users, requested decky actions and runtime
//! settings) and HTTP requests. **Output:** the REST API under `/api/v1`, the live feed
//! (`/api/v1/stream`, SSE), Prometheus metrics (`/metrics`) and the dashboard (`/`).
//!
//! Start-up: open the repository; make sure the first admin exists (`DECNET_ADMIN_PASSWORD`, or
//! a generated one-time password printed once — weak values refused); load the JWT secret
//! (`DECNET_JWT_SECRET`, ≥ 32 bytes, or generated once into `--jwt-secret-file` with mode 0600);
//! start embedded workers (`DECNET_EMBED_SNIFFER=1`, `DECNET_EMBED_PROFILER=1`) through
//! `decnet-runtime` with typed settings (their own `DECNET_SNIFFER_*`/`DECNET_PROFILER_*`
//! variables, the web's repository and run mode) — each first checks its worker lease, so an
//! embedded copy and a standalone one can never run at once: whichever starts second refuses,
//! naming the first; bind (`--listen`, default
//! 127.0.0.1:8080; a public address without TLS is warned about loudly); write `--ready-file`.
//!
//! Shutdown (SIGTERM/SIGINT/SIGHUP, end of `--duration`, or an embedded worker failing): stop
//! accepting, end live-feed streams, let in-flight requests finish; embedded workers stop with
//! the web (they share its stop signal) and flush.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use decnet_api::{Web, WebConfig, auth};
use decnet_core::repo::{LeaseHolder, RepoError, Repository};
use decnet_intel::profiler::ProfilerArgs;
use decnet_runtime::{
    Context, DbArgs, LEASE_TTL, Report, RunArgs, Shutdown, Spec, StopSource, Worker as _, env_bool,
    positive_secs,
};
use decnet_sniffer::SnifferArgs;
use tokio::task::JoinHandle;

/// Where `decnet web` (and `decnet deploy`'s) serves unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `decnet web`: the REST API, live feed, metrics and dashboard.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Environment: DECNET_JWT_SECRET (≥ 32 bytes; else generated into \
--jwt-secret-file), DECNET_ADMIN_PASSWORD (first start only; else a one-time password is printed \
once), DECNET_EMBED_SNIFFER=1 (with DECNET_SNIFFER_BRIDGE), DECNET_EMBED_PROFILER=1.\n\n\
Examples:\n  decnet web --daemon\n  decnet web --daemon --listen 0.0.0.0:8080   # behind a TLS proxy\n  \
decnet web --duration 60 --listen 127.0.0.1:0 --ready-file /tmp/web.ready"
)]
pub struct WebArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// Address to serve on. Port 0 takes a free port (see --ready-file). decnet serves plain
    /// HTTP: on anything but loopback, put a TLS-terminating proxy in front.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "DECNET_WEB_LISTEN",
        default_value = DEFAULT_LISTEN
    )]
    pub listen: SocketAddr,

    /// Where the JWT secret is generated (mode 0600) and kept when DECNET_JWT_SECRET is unset.
    #[arg(
        long,
        value_name = "PATH",
        env = "DECNET_JWT_SECRET_FILE",
        default_value = "decnet-jwt.secret"
    )]
    pub jwt_secret_file: PathBuf,

    /// Lifetime of a login token.
    #[arg(long, value_name = "SECS", env = "DECNET_JWT_LIFETIME", default_value = "3600", value_parser = positive_secs)]
    pub token_lifetime: f64,

    /// Name of the admin created at first start.
    #[arg(
        long,
        value_name = "NAME",
        env = "DECNET_ADMIN_USER",
        default_value = "admin"
    )]
    pub admin_user: String,

    /// Failed logins per (client address, username) within --login-window before that pair
    /// is locked out for --login-window, doubled by each further failure (successes do not
    /// count).
    #[arg(long, value_name = "N", env = "DECNET_WEB_LOGIN_MAX", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_attempts: u32,

    #[arg(long, value_name = "SECS", env = "DECNET_WEB_LOGIN_WINDOW", default_value = "300", value_parser = positive_secs)]
    pub login_window: f64,

    /// Failed logins within --login-window across every address and user before all logins
    /// wait for the window to slide (bounds a distributed guessing run).
    #[arg(long, value_name = "N", env = "DECNET_WEB_LOGIN_GLOBAL_MAX", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_global_max: u32,

    /// A reverse proxy whose X-Forwarded-For is believed for the client address (repeat or
    /// comma-separate; e.g. the TLS proxy's address). Others' X-Forwarded-For is ignored.
    #[arg(
        long,
        value_name = "IP",
        env = "DECNET_WEB_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<std::net::IpAddr>,

    /// How often the live feed looks for new events and sessions.
    #[arg(long, value_name = "MS", env = "DECNET_WEB_STREAM_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub stream_poll_ms: u64,

    /// Live-feed messages a client may fall behind before it is dropped.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub stream_buffer: u64,

    /// Live-feed clients at most.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_stream_clients: u64,

    /// Live-feed connections one user may hold.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_stream_clients_per_user: u64,

    /// Largest request body, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16384, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub max_body: u64,

    /// First pages of the events and attackers listings are served from memory for this long
    /// (events pages also only until new events arrive); 0 disables.
    #[arg(long, value_name = "MS", env = "DECNET_WEB_LIST_CACHE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub list_cache_ms: u64,

    /// A static bearer token that may read /metrics (for Prometheus).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "DECNET_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// Run the sniffer inside this process (configured by its DECNET_SNIFFER_* variables).
    #[arg(long, env = "DECNET_EMBED_SNIFFER", value_parser = env_bool, default_value = "0")]
    pub embed_sniffer: bool,

    /// Run the profiler inside this process (configured by its DECNET_PROFILER_* variables).
    #[arg(long, env = "DECNET_EMBED_PROFILER", value_parser = env_bool, default_value = "0")]
    pub embed_profiler: bool,
}

/// The worker's name: subcommand, unit and APP-NAME `decnet.web`.
pub const WORKER: &str = "web";

decnet_runtime::worker!(
    WebArgs,
    |_args| {
        // In-flight requests get 30 s, then embedded workers flush.
        Spec::new(WORKER).grace(Duration::from_secs(65))
    },
    run
);

/// Refuses when another live instance holds `kind`'s lease on this host (naming it); the
/// embedded worker takes the lease itself right after.
async fn check_lease(repo: &Repository, kind: &str) -> anyhow::Result<()> {
    let probe = LeaseHolder::this_process(kind);
    match repo.acquire_lease(&probe, LEASE_TTL).await {
        Ok(_) => {
            repo.release_lease(&probe).await?;
            Ok(())
        }
        Err(RepoError::LeaseHeld(m)) => bail!("cannot embed {kind}: {m}"),
        Err(e) => Err(e.into()),
    }
}

type Embedded = (&'static str, JoinHandle<anyhow::Result<()>>);

/// The sniffer and profiler settings from their own environment variables, with the web's
/// repository and run mode.
pub fn embedded_sniffer(args: &WebArgs) -> anyhow::Result<SnifferArgs> {
    let mut a: SnifferArgs = decnet_runtime::from_env("sniffer").map_err(|e| {
        anyhow::anyhow!(
            "DECNET_EMBED_SNIFFER=1: the sniffer's settings are invalid (set DECNET_SNIFFER_BRIDGE): {e}"
        )
    })?;
    a.run = args.run.embedded();
    a.db = args.db.clone();
    Ok(a)
}

pub fn embedded_profiler(args: &WebArgs) -> anyhow::Result<ProfilerArgs> {
    let mut a: ProfilerArgs = decnet_runtime::from_env("profiler").map_err(|e| {
        anyhow::anyhow!("DECNET_EMBED_PROFILER=1: the profiler's settings are invalid: {e}")
    })?;
    a.run = args.run.embedded();
    a.db = args.db.clone();
    Ok(a)
}

async fn start_embedded(
    args: &WebArgs,
    repo: &Repository,
    stop: &Shutdown,
) -> anyhow::Result<Vec<Embedded>> {
    let mut workers = Vec::new();
    if args.embed_sniffer {
        let a = embedded_sniffer(args)?;
        check_lease(repo, &format!("sniffer@{}", a.bridge)).await?;
        tracing::info!(bridge = %a.bridge, "starting the embedded sniffer");
        let source = StopSource::Embedded(stop.clone());
        workers.push(("sniffer", tokio::spawn(decnet_runtime::start(a, source))));
    }
    if args.embed_profiler {
        let a = embedded_profiler(args)?;
        check_lease(repo, &a.spec().lease.unwrap_or_default()).await?;
        tracing::info!("starting the embedded profiler");
        // The profiler's future is not `Send`: it gets its own thread and runtime.
        let source = StopSource::Embedded(stop.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("embedded-profiler".into())
            .spawn(move || {
                let r = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| rt.block_on(decnet_runtime::start(a, source)));
                let _ = tx.send(r);
            })
            .context("cannot start the embedded profiler's thread")?;
        workers.push((
            "profiler",
            tokio::spawn(async move {
                rx.await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the profiler thread panicked")))
            }),
        ));
    }
    Ok(workers)
}

/// Serve until the run stops.
pub async fn run(ctx: Context, args: WebArgs) -> anyhow::Result<Report> {
    let mut shutdown = ctx.shutdown.clone();
    let secret = auth::load_or_create_secret(
        std::env::var(auth::JWT_SECRET_VAR).ok().as_deref(),
        &args.jwt_secret_file,
    )?;
    let repo = ctx.repo()?.clone();
    let admin_pw = std::env::var(auth::ADMIN_PASSWORD_VAR)
        .ok()
        .filter(|p| !p.is_empty());
    if let Some(otp) = auth::bootstrap_admin(&repo, &args.admin_user, admin_pw.as_deref()).await? {
        // Printed once, on stderr only (not to syslog): the operator logs in with it and must
        // change it.
        eprintln!(
            "decnet web: created the admin user {:?} with the one-time password: {otp}\n\
             decnet web: it is shown only now; you must change it at first login",
            args.admin_user
        );
    }
    let workers = start_embedded(&args, &repo, &ctx.shutdown).await?;

    let cfg = WebConfig {
        token_lifetime: Duration::from_secs_f64(args.token_lifetime),
        login_max_attempts: args.login_max_attempts,
        login_window: Duration::from_secs_f64(args.login_window),
        login_global_max: args.login_global_max,
        trusted_proxies: args.trusted_proxy.clone(),
        stream_poll: Duration::from_millis(args.stream_poll_ms),
        stream_buffer: usize::try_from(args.stream_buffer).unwrap_or(1024),
        max_stream_clients: usize::try_from(args.max_stream_clients).unwrap_or(256),
        max_stream_clients_per_user: usize::try_from(args.max_stream_clients_per_user).unwrap_or(8),
        max_body: usize::try_from(args.max_body).unwrap_or(16384),
        metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
        list_cache: Duration::from_millis(args.list_cache_ms),
    };
    if cfg.metrics_token.as_deref().is_some_and(|t| t.len() < 16) {
        bail!("DECNET_METRICS_TOKEN must be at least 16 characters");
    }
    let web = Web::new(repo.clone(), &secret, cfg).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            listen = %bound,
            "!!! decnet web is serving PLAIN HTTP on a non-loopback address: passwords and tokens \
             cross the network in clear text. Put a TLS-terminating reverse proxy in front, or \
             bind 127.0.0.1 !!!"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    ctx.ready(&[format!("http {bound}")])?;
    tracing::info!(listen = %bound, embedded = workers.len(), "decnet web running");

    let worker_done = async {
        if workers.is_empty() {
            std::future::pending::<()>().await;
        }
        loop {
            for (name, h) in &workers {
                if h.is_finished() {
                    return *name;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut failure: Option<anyhow::Error> = None;
    tokio::select! {
        why = shutdown.wait() => tracing::info!("{why}: stopping"),
        name = worker_done => {
            failure = Some(anyhow::anyhow!("the embedded {name} stopped"));
            // The other embedded workers stop (and flush) with the web.
            ctx.stopper().stop(decnet_runtime::Stop::Requested);
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!("the HTTP server failed: {e}"),
        Ok(Err(e)) => tracing::error!("the HTTP server panicked: {e}"),
        Err(_) => tracing::warn!("in-flight requests did not finish within 30 s"),
    }
    // Embedded workers share the web's stop signal: wait for them to flush (each within its own
    // grace).
    for (name, h) in workers {
        match tokio::time::timeout(Duration::from_secs(30), h).await {
            Ok(Ok(Ok(()))) => tracing::info!("embedded {name} stopped"),
            Ok(Ok(Err(e))) => {
                let e = e.context(format!("embedded {name}"));
                tracing::error!("{e:#}");
                failure.get_or_insert(e);
            }
            Ok(Err(e)) if e.is_cancelled() => {}
            Ok(Err(e)) => tracing::error!("embedded {name} panicked: {e}"),
            Err(_) => tracing::warn!("embedded {name} did not stop within 30 s"),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Report::default()),
    }
}
