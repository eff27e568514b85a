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
//! start embedded workers (`DECNET_EMBED_SNIFFER=1`, `DECNET_EMBED_PROFILER=1`) — each first
//! checks its worker lease, so an embedded copy and a standalone one can never run at once:
//! whichever starts second refuses, naming the first; bind (`--listen`, default
//! 127.0.0.1:8080; a public address without TLS is warned about loudly); write `--ready-file`.
//!
//! Shutdown (SIGTERM/SIGINT, end of `--duration`, or an embedded worker failing): stop
//! accepting, end live-feed streams, let in-flight requests finish, stop embedded workers.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use decnet_api::{Web, WebConfig, auth};
use decnet_core::repo::{DbConfig, LeaseHolder, RepoError, Repository};
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    common::{LEASE_TTL, positive_secs, write_ready},
    profiler, sniffer,
};

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
    /// Run until SIGTERM/SIGINT (also the behaviour when neither --daemon nor --duration is given).
    #[arg(long, conflicts_with = "duration")]
    pub daemon: bool,

    /// Run for SECS seconds, then stop (for scripts and tests).
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,

    /// Address to serve on. Port 0 takes a free port (see --ready-file). decnet serves plain
    /// HTTP: on anything but loopback, put a TLS-terminating proxy in front.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "DECNET_WEB_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Repository backend: `sqlite` (default, embedded file) or `mysql`.
    #[arg(long, env = "DECNET_DB_TYPE", value_name = "sqlite|mysql")]
    pub db_type: Option<String>,

    /// Repository URL (sqlx): `sqlite://PATH` (default `sqlite://decnet.db`) or
    /// `mysql://user:password@host/database`.
    #[arg(long, env = "DECNET_DB_URL", value_name = "URL")]
    pub db_url: Option<String>,

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

    /// Login attempts per client address and per username within --login-window.
    #[arg(long, value_name = "N", env = "DECNET_WEB_LOGIN_MAX", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_attempts: u32,

    #[arg(long, value_name = "SECS", env = "DECNET_WEB_LOGIN_WINDOW", default_value = "300", value_parser = positive_secs)]
    pub login_window: f64,

    /// How often the live feed looks for new events and sessions.
    #[arg(long, value_name = "MS", env = "DECNET_WEB_STREAM_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub stream_poll_ms: u64,

    /// Live-feed messages a client may fall behind before it is dropped.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub stream_buffer: u64,

    /// Live-feed clients at most.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_stream_clients: u64,

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

    /// Written (atomically) once serving: `http ADDR:PORT` with the actual port.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

fn env_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?}: expected 1/0, true/false, yes/no, on/off")),
    }
}

#[derive(clap::Parser)]
struct EmbeddedSniffer {
    #[command(flatten)]
    args: sniffer::SnifferArgs,
}

#[derive(clap::Parser)]
struct EmbeddedProfiler {
    #[command(flatten)]
    args: profiler::ProfilerArgs,
}

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

type Worker = (&'static str, JoinHandle<anyhow::Result<()>>);

async fn start_embedded(args: &WebArgs, repo: &Repository) -> anyhow::Result<Vec<Worker>> {
    // The embedded workers use the web's repository.
    let mut db: Vec<String> = Vec::new();
    if let Some(t) = &args.db_type {
        db.extend(["--db-type".into(), t.clone()]);
    }
    if let Some(u) = &args.db_url {
        db.extend(["--db-url".into(), u.clone()]);
    }
    let mut how: Vec<String> = match args.duration {
        Some(d) => vec!["--duration".into(), d.to_string()],
        None => vec!["--daemon".into()],
    };
    how.extend(db.iter().cloned());
    let mut workers = Vec::new();
    if args.embed_sniffer {
        let a = EmbeddedSniffer::try_parse_from(
            std::iter::once("sniffer".to_string()).chain(how.iter().cloned()),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "DECNET_EMBED_SNIFFER=1: the sniffer's settings are invalid (set DECNET_SNIFFER_BRIDGE): {e}"
            )
        })?
        .args;
        check_lease(repo, &format!("sniffer@{}", a.bridge)).await?;
        tracing::info!(bridge = %a.bridge, "starting the embedded sniffer");
        workers.push(("sniffer", tokio::spawn(sniffer::run(a))));
    }
    if args.embed_profiler {
        // Always a daemon (the profiler has no --duration): stopped by SIGTERM, which the web
        // sends itself when its --duration ends.
        let a = EmbeddedProfiler::try_parse_from(
            ["profiler".to_string(), "--daemon".into()]
                .into_iter()
                .chain(db.iter().cloned()),
        )
        .map_err(|e| {
            anyhow::anyhow!("DECNET_EMBED_PROFILER=1: the profiler's settings are invalid: {e}")
        })?
        .args;
        check_lease(repo, "profiler").await?;
        tracing::info!("starting the embedded profiler");
        // The profiler's future is not `Send`: it gets its own thread and runtime.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("embedded-profiler".into())
            .spawn(move || {
                let r = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| rt.block_on(profiler::run(a)));
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

pub async fn run(args: WebArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let secret = auth::load_or_create_secret(
        std::env::var(auth::JWT_SECRET_VAR).ok().as_deref(),
        &args.jwt_secret_file,
    )?;
    let repo = Repository::open(&DbConfig::new(
        args.db_type.as_deref(),
        args.db_url.as_deref(),
    )?)
    .await?;
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
    let workers = start_embedded(&args, &repo).await?;

    let cfg = WebConfig {
        token_lifetime: Duration::from_secs_f64(args.token_lifetime),
        login_max_attempts: args.login_max_attempts,
        login_window: Duration::from_secs_f64(args.login_window),
        stream_poll: Duration::from_millis(args.stream_poll_ms),
        stream_buffer: usize::try_from(args.stream_buffer).unwrap_or(1024),
        max_stream_clients: usize::try_from(args.max_stream_clients).unwrap_or(256),
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
    write_ready(args.ready_file.as_deref(), &[format!("http {bound}")])?;
    tracing::info!(listen = %bound, embedded = workers.len(), "decnet web running");

    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
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
        _ = sigterm.recv() => tracing::info!("SIGTERM: stopping"),
        _ = sigint.recv() => tracing::info!("SIGINT: stopping"),
        _ = until_deadline => {
            tracing::info!("duration reached: stopping");
            if !workers.is_empty() {
                // Embedded workers stop (and flush) on SIGTERM, like standalone ones.
                // SAFETY: kill(2) on our own pid.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            }
        }
        name = worker_done => {
            failure = Some(anyhow::anyhow!("the embedded {name} stopped"));
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!("the HTTP server failed: {e}"),
        Ok(Err(e)) => tracing::error!("the HTTP server panicked: {e}"),
        Err(_) => tracing::warn!("in-flight requests did not finish within 30 s"),
    }
    // Embedded workers got the same SIGTERM/SIGINT (or run for the same --duration); wait for
    // them to flush, or stop them if the web is stopping for another reason.
    for (name, h) in workers {
        let res = if h.is_finished() || failure.is_none() {
            tokio::time::timeout(Duration::from_secs(30), h).await
        } else {
            h.abort();
            Ok(h.await)
        };
        match res {
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
    repo.close().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
