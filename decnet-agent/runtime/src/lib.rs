//! # decnet-runtime — the one runtime every worker starts through
//!
//! **In:** a worker's [`Spec`] (its name, whether it has a one-shot mode, its lease, how long it
//! may take to stop), the flags every worker shares ([`RunArgs`]: `--daemon | --duration SECS |
//! once`, `--ready-file`, `--summary-json`; [`DbArgs`]: `--db-type`, `--db-url`) and the
//! worker's body, `async fn(Context) -> Result<Report>`.
//! **Out:** the worker runs with a [`Context`] — the repository, its lease held and
//! heartbeated, one [`Shutdown`] that fires on SIGTERM/SIGINT/SIGHUP, at the end of
//! `--duration`, when the lease is lost, when the supervising parent is gone, or when an
//! embedding process says so — and at the end the runtime prints the worker's summary line,
//! writes `--summary-json`, releases the lease and closes the repository, the same way for
//! every worker.
//!
//! The run modes mean the same for every worker:
//! - `--daemon`: run until stopped (SIGTERM, SIGINT or SIGHUP; what systemd and `decnet deploy`
//!   use).
//! - `--duration SECS`: run until SECS have passed (or until stopped), then finish cleanly: flush,
//!   drain, commit, summarise.
//! - neither (once): do the work that is pending and exit. Workers whose input waits in the
//!   repository (correlator, profiler) have such work; listeners and sensors (sniffer,
//!   collector, web, decky, deploy) have none and refuse, saying how to run them.
//!
//! A second stop signal (a second or more after the first: the signals of one stop arrive in a
//! burst), or a worker that has not finished [`Spec::grace`] after the first, ends the run at
//! once: the body is dropped (an uncommitted transaction rolls back) and the process reports
//! it. Giving the lease back and closing the repository then take at most a few seconds.
//! Nothing here panics on a closed stdout or stderr.
use std::{
    ffi::OsString,
    future::Future,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use decnet_core::repo::{DbConfig, LeaseHolder, LeaseKeeper, Repository};
use tokio::sync::watch;

/// A worker whose heartbeats stop (it died) loses its lease after this long.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// Stop signals within this long of the first are the same request (see [`run_with_grace`]);
/// one after it ends a worker at once.
const SAME_STOP_WITHIN: Duration = Duration::from_secs(1);

/// How long giving the lease back and closing the repository may take at exit.
const CLEANUP_LIMIT: Duration = Duration::from_secs(3);

/// The environment variable through which a supervisor names itself to its children: a worker
/// started with it stops on its own when that process is gone (also after a `kill -9` of the
/// supervisor, whatever `PR_SET_PDEATHSIG` did).
pub const PARENT_PID_VAR: &str = "DECNET_PARENT_PID";

/// How often the parent is looked for.
const PARENT_POLL: Duration = Duration::from_millis(500);

/// clap value parser: a positive, finite number of seconds.
pub fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// clap value parser: a finite number of seconds ≥ 0.
pub fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds ≥ 0")),
    }
}

/// clap value parser: an integer > 0.
pub fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive integer")),
    }
}

/// clap value parser for switches set by environment: 1/0, true/false, yes/no, on/off.
pub fn env_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?}: expected 1/0, true/false, yes/no, on/off")),
    }
}

/// Writes `lines` to `path` atomically (a temporary file renamed over it), one per line. Tests
/// and scripts poll it to know a worker is up.
pub fn write_ready(path: Option<&Path>, lines: &[String]) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let mut body = lines.join("\n");
    body.push('\n');
    write_atomic(path, body.as_bytes())
}

/// Writes `body` to `path` through a temporary file renamed over it.
pub fn write_atomic(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A line on stdout that never panics (a closed pipe is ignored: the worker must still stop
/// cleanly when whoever read its output is gone).
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A line on stderr that never panics.
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// How long to run: the flags every worker shares.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct RunArgs {
    /// Run until SIGTERM, SIGINT or SIGHUP (what systemd and `decnet deploy` use).
    #[arg(long, conflicts_with = "duration")]
    pub daemon: bool,

    /// Run for SECS seconds (or until stopped), then finish cleanly and exit. Without --daemon
    /// or --duration a worker does the work that is pending and exits, if it has any.
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,

    /// Written (atomically, replaced whole) once the worker is up; what it lists is the
    /// worker's own (bound addresses, attached ports, its name).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Write the exit summary (the worker's counters) as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

impl RunArgs {
    pub fn mode(&self) -> RunMode {
        match (self.daemon, self.duration) {
            (true, _) => RunMode::Daemon,
            (false, Some(s)) => RunMode::For(Duration::from_secs_f64(s)),
            (false, None) => RunMode::Once,
        }
    }

    /// The same run mode for a worker embedded in this one (no files of its own).
    pub fn embedded(&self) -> RunArgs {
        RunArgs {
            daemon: self.daemon || self.duration.is_none(),
            duration: if self.daemon { None } else { self.duration },
            ready_file: None,
            summary_json: None,
        }
    }

    /// These flags as command-line arguments (what `decnet deploy` passes its children).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if self.daemon {
            v.push("--daemon".into());
        }
        if let Some(d) = self.duration {
            v.push("--duration".into());
            v.push(d.to_string().into());
        }
        if let Some(p) = &self.ready_file {
            v.push("--ready-file".into());
            v.push(p.into());
        }
        if let Some(p) = &self.summary_json {
            v.push("--summary-json".into());
            v.push(p.into());
        }
        v
    }
}

/// The repository: the flags every worker that uses it shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct DbArgs {
    /// Repository backend: `sqlite` (default, embedded file) or `mysql` (MariaDB).
    #[arg(long, env = "DECNET_DB_TYPE", value_name = "sqlite|mysql")]
    pub db_type: Option<String>,

    /// Repository URL (sqlx): `sqlite://PATH` (default `sqlite://decnet.db` in the working
    /// directory) or `mysql://user:password@host/database`. Prefer the environment variable for
    /// a URL with a password: arguments are visible to every user in `ps`.
    #[arg(
        long,
        env = "DECNET_DB_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub db_url: Option<String>,
}

impl DbArgs {
    pub fn config(&self) -> anyhow::Result<DbConfig> {
        Ok(DbConfig::new(
            self.db_type.as_deref(),
            self.db_url.as_deref(),
        )?)
    }

    /// These settings as environment variables, for a child process (never on its argv).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(t) = &self.db_type {
            v.push(("DECNET_DB_TYPE", t.clone()));
        }
        if let Some(u) = &self.db_url {
            v.push(("DECNET_DB_URL", u.clone()));
        }
        v
    }
}

/// What a run was asked to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunMode {
    Daemon,
    For(Duration),
    Once,
}

/// Why a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal(&'static str),
    Deadline,
    LeaseLost,
    ParentGone,
    /// The embedding process (or the worker itself) asked.
    Requested,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Signal(s) => write!(f, "{s}"),
            Stop::Deadline => f.write_str("--duration reached"),
            Stop::LeaseLost => f.write_str("the worker lease was taken over by another instance"),
            Stop::ParentGone => f.write_str("the supervising process is gone"),
            Stop::Requested => f.write_str("stop requested"),
        }
    }
}

/// The stop signal of one run: cheap to clone, for every task of the worker.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<Option<Stop>>,
    flag: Arc<AtomicBool>,
}

/// The sending side of a [`Shutdown`].
#[derive(Debug, Clone)]
pub struct Stopper {
    tx: Arc<watch::Sender<Option<Stop>>>,
    flag: Arc<AtomicBool>,
}

/// A new, untriggered stop signal.
pub fn shutdown_pair() -> (Stopper, Shutdown) {
    let (tx, rx) = watch::channel(None);
    let flag = Arc::new(AtomicBool::new(false));
    (
        Stopper {
            tx: Arc::new(tx),
            flag: flag.clone(),
        },
        Shutdown { rx, flag },
    )
}

impl Stopper {
    /// Triggers the stop (the first reason wins).
    pub fn stop(&self, why: Stop) {
        self.flag.store(true, Ordering::Relaxed);
        self.tx.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(why);
                true
            } else {
                false
            }
        });
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
            flag: self.flag.clone(),
        }
    }
}

impl Shutdown {
    /// The reason, once stopping.
    pub fn reason(&self) -> Option<Stop> {
        *self.rx.borrow()
    }

    pub fn is_stopping(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// A flag that turns true when stopping (for synchronous loops).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Resolves when stopping; returns why.
    pub async fn wait(&mut self) -> Stop {
        loop {
            if let Some(s) = *self.rx.borrow_and_update() {
                return s;
            }
            if self.rx.changed().await.is_err() {
                // Every sender is gone: nobody can stop us any more, nobody will.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What a worker is, to the runtime.
#[derive(Debug, Clone)]
pub struct Spec {
    /// One name across subcommand, module, systemd unit, lease and APP-NAME (`decnet.<name>`).
    pub name: &'static str,
    /// Whether "once" (neither --daemon nor --duration) has work to do.
    pub once: bool,
    /// The worker lease to hold while running (`None`: this worker takes none).
    pub lease: Option<String>,
    /// How long after the stop request the worker may take to finish (flush, drain, commit)
    /// before the runtime ends it.
    pub grace: Duration,
    /// Whether a second stop signal ends the run at once (not for `decnet deploy`, whose
    /// teardown must finish).
    pub hard_stop: bool,
}

impl Spec {
    pub fn new(name: &'static str) -> Spec {
        Spec {
            name,
            once: false,
            lease: None,
            grace: Duration::from_secs(10),
            hard_stop: true,
        }
    }
    pub fn once(mut self) -> Spec {
        self.once = true;
        self
    }
    pub fn lease(mut self, key: impl Into<String>) -> Spec {
        self.lease = Some(key.into());
        self
    }
    pub fn grace(mut self, grace: Duration) -> Spec {
        self.grace = grace;
        self
    }
    pub fn no_hard_stop(mut self) -> Spec {
        self.hard_stop = false;
        self
    }
    /// `decnet.<name>`, the APP-NAME of this worker's own log lines.
    pub fn app_name(&self) -> String {
        app_name(self.name)
    }
}

/// `decnet.<worker>`.
pub fn app_name(worker: &str) -> String {
    format!("decnet.{worker}")
}

/// What a worker hands back at the end: one human line and its counters.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Printed on stdout at exit.
    pub human: String,
    /// Written to `--summary-json`.
    pub json: serde_json::Value,
}

impl Report {
    pub fn new(human: impl Into<String>, json: impl serde::Serialize) -> Report {
        Report {
            human: human.into(),
            json: serde_json::to_value(json).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Everything a worker's body gets.
#[derive(Debug)]
pub struct Context {
    pub name: &'static str,
    pub mode: RunMode,
    pub started: Instant,
    pub shutdown: Shutdown,
    stopper: Stopper,
    repo: Option<Repository>,
    ready_file: Option<PathBuf>,
}

impl Context {
    /// The repository (for workers started with [`DbArgs`]).
    pub fn repo(&self) -> anyhow::Result<&Repository> {
        self.repo
            .as_ref()
            .with_context(|| format!("decnet {} was started without a repository", self.name))
    }

    /// Writes the ready file (replacing it whole; call again when what it lists changes).
    pub fn ready(&self, lines: &[String]) -> anyhow::Result<()> {
        write_ready(self.ready_file.as_deref(), lines)
    }

    /// True for a one-shot run: do the pending work, then return.
    pub fn once(&self) -> bool {
        self.mode == RunMode::Once
    }

    /// Lets the worker stop itself (e.g. a part of it failed) the same way a signal does.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// A context for a part of this worker started as another worker inside this process
    /// (`decnet web`'s embedded sniffer): it stops when this one does.
    pub fn child_shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }
}

/// Where a run's stop requests come from, besides the worker itself.
#[derive(Debug, Clone)]
pub enum StopSource {
    /// A process of its own: signals (SIGTERM, SIGINT, SIGHUP) and, under a supervisor that set
    /// [`PARENT_PID_VAR`], the parent's death.
    Process,
    /// Embedded in another worker: it stops when that one does.
    Embedded(Shutdown),
}

/// Runs one worker start to end: checks the run mode, opens the repository (with `db`), takes
/// the lease, wires every stop source, runs `body`, then prints the summary, writes
/// `--summary-json`, releases the lease and closes the repository.
pub async fn launch<F, Fut>(
    spec: Spec,
    run: &RunArgs,
    db: Option<&DbArgs>,
    source: StopSource,
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Report>>,
{
    let started = Instant::now();
    let mode = run.mode();
    if mode == RunMode::Once && !spec.once {
        bail!(
            "decnet {} runs until it is stopped: say how long, with --daemon (until SIGTERM, SIGINT \
             or SIGHUP) or --duration SECS",
            spec.name
        );
    }
    let (stopper, shutdown) = shutdown_pair();
    let mut aux = Vec::new();
    match &source {
        StopSource::Process => {
            aux.push(tokio::spawn(stop_on_signals(stopper.clone())?));
            if let Some(parent) = supervising_parent() {
                aux.push(tokio::spawn(stop_when_parent_gone(parent, stopper.clone())));
            }
        }
        StopSource::Embedded(parent) => {
            let (mut parent, s) = (parent.clone(), stopper.clone());
            aux.push(tokio::spawn(async move {
                parent.wait().await;
                s.stop(Stop::Requested);
            }));
        }
    }
    if let RunMode::For(d) = mode {
        let s = stopper.clone();
        aux.push(tokio::spawn(async move {
            tokio::time::sleep(d).await;
            s.stop(Stop::Deadline);
        }));
    }
    let result = async {
        let repo = match db {
            Some(db) => Some(Repository::open(&db.config()?).await?),
            None => None,
        };
        let lease = match (&repo, &spec.lease) {
            (Some(repo), Some(key)) => {
                match repo
                    .hold_lease(LeaseHolder::this_process(key), LEASE_TTL)
                    .await
                {
                    Ok(l) => Some(l),
                    Err(e) => {
                        repo.close().await;
                        return Err(anyhow::Error::from(e));
                    }
                }
            }
            _ => None,
        };
        let lease_watch = lease.map(|l| watch_lease(l, stopper.clone()));
        let ctx = Context {
            name: spec.name,
            mode,
            started,
            shutdown: shutdown.clone(),
            stopper: stopper.clone(),
            repo: repo.clone(),
            ready_file: run.ready_file.clone(),
        };
        let outcome = run_with_grace(body(ctx), shutdown.clone(), spec.grace, spec.hard_stop).await;
        // The lease goes back unless it was lost (then it is someone else's). Bounded: a
        // database that does not answer must not keep a stopping worker alive (the lease then
        // expires by itself, or is taken over at once by a restart on this host).
        let cleanup = async {
            if let Some((task, give_back)) = lease_watch {
                let _ = give_back.send(());
                if let Ok(Some(lease)) = task.await
                    && let Err(e) = lease.release().await
                {
                    tracing::warn!("could not release the {} lease: {e}", spec.name);
                }
            }
            if let Some(repo) = &repo {
                repo.close().await;
            }
        };
        if tokio::time::timeout(CLEANUP_LIMIT, cleanup).await.is_err() {
            tracing::warn!(
                "the repository did not answer within {} s at exit: the {} lease is left to expire",
                CLEANUP_LIMIT.as_secs(),
                spec.name
            );
        }
        outcome
    }
    .await;
    for t in aux {
        t.abort();
    }
    let report = result?;
    if !report.human.is_empty() {
        print_line(&report.human);
    }
    if let Some(path) = &run.summary_json {
        let json = serde_json::to_vec_pretty(&report.json)?;
        write_atomic(path, &json)?;
    }
    match shutdown.reason() {
        Some(Stop::LeaseLost) => bail!(
            "stopped: the {} lease was taken over by another instance",
            spec.lease.as_deref().unwrap_or(spec.name)
        ),
        _ => Ok(()),
    }
}

/// Runs `body`; once stopping, gives it `grace` (a second signal ends it at once).
async fn run_with_grace<Fut>(
    body: Fut,
    mut shutdown: Shutdown,
    grace: Duration,
    hard_stop: bool,
) -> anyhow::Result<Report>
where
    Fut: Future<Output = anyhow::Result<Report>>,
{
    let mut body = std::pin::pin!(body);
    tokio::select! {
        r = &mut body => return r,
        _ = shutdown.wait() => {}
    }
    let stopping_since = Instant::now();
    let second = async {
        match Signals::new() {
            Ok(mut sigs) if hard_stop => loop {
                let name = sigs.recv().await;
                // Signals right after the first are the same request, not someone asking
                // twice: a supervisor killed outright sends its parent-death signal once per
                // thread as they exit (the kernel re-parents the child to the next one), and
                // a terminal's Ctrl-C reaches the whole process group while the supervisor
                // passes its own SIGTERM on.
                if stopping_since.elapsed() >= SAME_STOP_WITHIN {
                    break name;
                }
                tracing::debug!("{name} right after the stop request: the same request");
            },
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        r = &mut body => r,
        _ = tokio::time::sleep(grace) => {
            bail!("did not finish within {} s of the stop request: ended", grace.as_secs_f64())
        }
        name = second => bail!("a second stop signal ({name}): ended at once"),
    }
}

/// SIGTERM, SIGINT and SIGHUP, merged.
struct Signals(Vec<(tokio::signal::unix::Signal, &'static str)>);

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut v = Vec::new();
        for (kind, name) in [
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::hangup(), "SIGHUP"),
        ] {
            v.push((
                signal(kind).with_context(|| format!("cannot install the {name} handler"))?,
                name,
            ));
        }
        Ok(Signals(v))
    }

    async fn recv(&mut self) -> &'static str {
        let [a, b, c] = &mut self.0[..] else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = a.0.recv() => a.1,
            _ = b.0.recv() => b.1,
            _ = c.0.recv() => c.1,
        }
    }
}

/// A task that stops the run on the first of SIGTERM, SIGINT, SIGHUP.
fn stop_on_signals(stopper: Stopper) -> anyhow::Result<impl Future<Output = ()>> {
    let mut sigs = Signals::new()?;
    Ok(async move {
        let name = sigs.recv().await;
        // Stop first: logging must not be able to keep the run going.
        stopper.stop(Stop::Signal(name));
        tracing::info!("{name}: stopping");
    })
}

/// The supervisor named by [`PARENT_PID_VAR`], if it is our parent.
fn supervising_parent() -> Option<i32> {
    let pid: i32 = std::env::var(PARENT_PID_VAR).ok()?.trim().parse().ok()?;
    // SAFETY: getppid(2) has no preconditions.
    let ppid = unsafe { libc::getppid() };
    (pid > 1 && ppid == pid).then_some(pid)
}

async fn stop_when_parent_gone(parent: i32, stopper: Stopper) {
    let mut tick = tokio::time::interval(PARENT_POLL);
    loop {
        tick.tick().await;
        // SAFETY: getppid(2) has no preconditions.
        if unsafe { libc::getppid() } != parent {
            stopper.stop(Stop::ParentGone);
            tracing::warn!(parent, "the supervising process is gone: stopping");
            return;
        }
    }
}

/// Watches the lease: a lost lease stops the run. The task hands the lease back (for release)
/// when told to, or `None` if it was lost.
fn watch_lease(
    mut lease: LeaseKeeper,
    stopper: Stopper,
) -> (
    tokio::task::JoinHandle<Option<LeaseKeeper>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = lease.lost() => {
                tracing::error!(lease = %lease.holder().kind, "another instance took over this worker's lease: stopping");
                stopper.stop(Stop::LeaseLost);
                None
            }
            _ = &mut rx => Some(lease),
        }
    });
    (task, tx)
}

/// A worker: its typed settings (the clap args of its subcommand, with [`RunArgs`] as `run`
/// and, if it uses the repository, [`DbArgs`] as `db` flattened in) and its body. The CLI,
/// `decnet web`'s embedding and the tests all start it through [`start`]. Implemented with
/// [`worker!`].
pub trait Worker: Sized {
    fn spec(&self) -> Spec;
    /// The shared flags: the run mode, and the repository (`None` for a worker without one).
    fn flags(&self) -> (&RunArgs, Option<&DbArgs>);
    fn run(self, ctx: Context) -> impl Future<Output = anyhow::Result<Report>>;
}

/// `worker!(Args, |args| spec, body)` implements [`Worker`] for a clap args type with fields
/// `run: RunArgs` and `db: DbArgs` (`worker!(Args, no_db, |args| spec, body)`: without `db`);
/// `body` is `async fn(Context, Args) -> anyhow::Result<Report>`.
#[macro_export]
macro_rules! worker {
    ($ty:ty, |$a:ident| $spec:expr, $body:path) => {
        impl $crate::Worker for $ty {
            fn spec(&self) -> $crate::Spec {
                let $a = self;
                $spec
            }
            fn flags(&self) -> (&$crate::RunArgs, Option<&$crate::DbArgs>) {
                (&self.run, Some(&self.db))
            }
            async fn run(self, ctx: $crate::Context) -> anyhow::Result<$crate::Report> {
                $body(ctx, self).await
            }
        }
    };
    ($ty:ty, no_db, |$a:ident| $spec:expr, $body:path) => {
        impl $crate::Worker for $ty {
            fn spec(&self) -> $crate::Spec {
                let $a = self;
                $spec
            }
            fn flags(&self) -> (&$crate::RunArgs, Option<&$crate::DbArgs>) {
                (&self.run, None)
            }
            async fn run(self, ctx: $crate::Context) -> anyhow::Result<$crate::Report> {
                $body(ctx, self).await
            }
        }
    };
}

/// Starts `worker` and runs it to the end (see [`launch`]).
pub async fn start<W: Worker>(worker: W, source: StopSource) -> anyhow::Result<()> {
    let spec = worker.spec();
    let (run, db) = worker.flags();
    let (run, db) = (run.clone(), db.cloned());
    launch(spec, &run, db.as_ref(), source, move |ctx| worker.run(ctx)).await
}

/// Builds a worker's typed settings from its environment variables and defaults alone (how
/// `decnet web` configures the workers it embeds): no command line is built or parsed.
pub fn from_env<T: clap::Args + clap::FromArgMatches>(name: &'static str) -> anyhow::Result<T> {
    let cmd = T::augment_args(clap::Command::new(name).no_binary_name(true));
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<OsString>())
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    T::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{}", e.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_positive_and_finite() {
        assert_eq!(positive_secs("2.5"), Ok(2.5));
        for bad in ["0", "-1", "nan", "inf", "x", "1e10"] {
            assert!(positive_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative_secs("0"), Ok(0.0));
        assert!(non_negative_secs("-0.5").is_err());
    }

    #[test]
    fn ready_file_is_replaced_whole() {
        let path = std::env::temp_dir().join(format!("decnet-ready-{}", std::process::id()));
        write_ready(Some(&path), &["a".into(), "b".into()]).unwrap();
        write_ready(Some(&path), &["c".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
        write_ready(None, &[]).unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn run_modes() {
        let mut a = RunArgs::default();
        assert_eq!(a.mode(), RunMode::Once);
        a.duration = Some(1.5);
        assert_eq!(a.mode(), RunMode::For(Duration::from_millis(1500)));
        assert_eq!(
            a.embedded().mode(),
            RunMode::For(Duration::from_millis(1500))
        );
        a.duration = None;
        a.daemon = true;
        assert_eq!(a.mode(), RunMode::Daemon);
        assert_eq!(a.to_args(), vec![OsString::from("--daemon")]);
        assert_eq!(RunArgs::default().embedded().mode(), RunMode::Daemon);
    }

    #[tokio::test]
    async fn once_is_refused_by_a_worker_without_pending_work() {
        let err = launch(
            Spec::new("listener"),
            &RunArgs::default(),
            None,
            StopSource::Embedded(shutdown_pair().1),
            |_ctx| async { Ok(Report::default()) },
        )
        .await
        .unwrap_err();
        assert!(format!("{err}").contains("--daemon"), "{err}");
    }

    #[tokio::test]
    async fn duration_stops_the_body_and_the_summary_is_written() {
        let summary = std::env::temp_dir().join(format!("decnet-sum-{}.json", std::process::id()));
        let run = RunArgs {
            duration: Some(0.2),
            summary_json: Some(summary.clone()),
            ..Default::default()
        };
        let t = Instant::now();
        launch(
            Spec::new("w"),
            &run,
            None,
            StopSource::Embedded(shutdown_pair().1),
            |mut ctx| async move {
                let why = ctx.shutdown.wait().await;
                Ok(Report::new(
                    "done",
                    serde_json::json!({ "why": why.to_string() }),
                ))
            },
        )
        .await
        .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(200));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_eq!(v["why"], "--duration reached");
        let _ = std::fs::remove_file(&summary);
    }

    #[tokio::test]
    async fn a_body_that_ignores_the_stop_is_ended_after_its_grace() {
        let (stopper, parent) = shutdown_pair();
        let t = Instant::now();
        let run = RunArgs {
            daemon: true,
            ..Default::default()
        };
        let task = tokio::spawn(async move {
            launch(
                Spec::new("stuck").grace(Duration::from_millis(300)),
                &run,
                None,
                StopSource::Embedded(parent),
                |_ctx| async {
                    std::future::pending::<()>().await;
                    Ok(Report::default())
                },
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.stop(Stop::Requested);
        let err = task.await.unwrap().unwrap_err();
        assert!(format!("{err}").contains("did not finish"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn settings_from_the_environment_alone() {
        #[derive(Debug, clap::Args)]
        struct A {
            #[arg(long, env = "DECNET_RUNTIME_TEST_X", default_value_t = 3)]
            x: u32,
        }
        let a: A = from_env("t").unwrap();
        assert_eq!(a.x, 3);
    }
}
