//! The supervisor: runs each unit (a worker, or a decky's `decnet decky` inside its namespace) as
//! a child process, restarts one that exits with exponential backoff (1 s, 2 s, 4 s … 30 s; back
//! to 1 s after a run of a minute), logs and counts every restart, and stops everything in order
//! (deckies first, so their last events reach the collector; then the workers).
//!
//! The unit set can change while it runs ([`Supervisor::add`], [`Supervisor::retire`]): `decnet
//! deploy` applies a new fleet generation by retiring the units of removed or changed deckies
//! and adding new ones; every other unit is left alone (same process, same pid).
//!
//! Children run in their own process group (a Ctrl-C in the terminal reaches only the
//! supervisor, which then stops them in order) and get SIGTERM if the supervisor dies
//! (`PR_SET_PDEATHSIG`), so a killed deploy leaves no orphan serving decoys. The kernel sends
//! that signal when the *thread* that forked the child exits, not the process: every child is
//! therefore forked on one dedicated thread ([`spawner`]) that never exits, never on a tokio
//! thread that may come and go. (The children also watch their parent themselves, through
//! `DECNET_PARENT_PID`.)
use std::{
    ffi::OsString,
    os::{fd::AsRawFd as _, unix::process::ExitStatusExt as _},
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{OnceLock, mpsc as std_mpsc},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{sync::mpsc, time::Instant};

use super::{netns, state::ProcState};

/// What to run.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    /// `collector`, `sniffer`, `decky:web-01`, …
    pub name: String,
    /// `worker` or `decky`.
    pub kind: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment (the repository URL goes here, not on argv).
    pub env: Vec<(String, String)>,
    /// Enter this named network namespace before exec.
    pub netns: Option<String>,
    /// The unit writes this file once it is up (removed before each start).
    pub ready_file: Option<PathBuf>,
    /// Inherited variables the child must not see.
    pub env_remove: Vec<&'static str>,
}

pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run at least this long resets the backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(60);

/// Exponential restart delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last run lasted.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE_RUN {
            self.next = BACKOFF_FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

struct Unit {
    spec: UnitSpec,
    pid: Option<u32>,
    generation: u64,
    started: Instant,
    backoff: Backoff,
    next_start: Option<Instant>,
    state: ProcState,
    /// Taken out of the set: never restarted, not in snapshots.
    retired: bool,
}

struct Exit {
    unit: usize,
    generation: u64,
    status: std::io::Result<ExitStatus>,
}

/// Describes how a child ended.
pub fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".into(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

pub struct Supervisor {
    units: Vec<Unit>,
    tx: mpsc::UnboundedSender<Exit>,
    rx: mpsc::UnboundedReceiver<Exit>,
    stopping: bool,
    /// Total restarts so far.
    pub restarts: u64,
}

/// Something the owner of the supervisor wants to know after each change (to save the
/// deployment record and the counters).
pub type Changed<'a> = &'a mut dyn FnMut(&[(String, ProcState)]);

impl Supervisor {
    pub fn new(specs: Vec<UnitSpec>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        Supervisor {
            units: specs
                .into_iter()
                .map(|spec| Unit {
                    state: ProcState {
                        kind: spec.kind.to_owned(),
                        ..Default::default()
                    },
                    spec,
                    pid: None,
                    generation: 0,
                    started: now,
                    backoff: Backoff::default(),
                    next_start: Some(now),
                    retired: false,
                })
                .collect(),
            tx,
            rx,
            stopping: false,
            restarts: 0,
        }
    }

    /// Adds a unit and starts it now.
    pub fn add(&mut self, spec: UnitSpec) {
        self.units.push(Unit {
            state: ProcState {
                kind: spec.kind.to_owned(),
                ..Default::default()
            },
            spec,
            pid: None,
            generation: 0,
            started: Instant::now(),
            backoff: Backoff::default(),
            next_start: None,
            retired: false,
        });
        self.spawn(self.units.len() - 1);
    }

    fn live(&self, name: &str) -> Option<usize> {
        self.units
            .iter()
            .position(|u| !u.retired && u.spec.name == name)
    }

    /// Takes unit `name` out of the set: SIGTERM, SIGKILL after `grace`, never restarted.
    /// Exits of other units that arrive meanwhile are handled as usual.
    pub async fn retire(&mut self, name: &str, grace: Duration, changed: Changed<'_>) {
        let Some(i) = self.live(name) else { return };
        self.units[i].retired = true;
        self.units[i].next_start = None;
        let Some(pid) = self.units[i].pid else { return };
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut killed = false;
        while self.units[i].pid.is_some() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(exit)) => {
                    self.on_exit(exit);
                    changed(&self.snapshot());
                }
                Ok(None) => break,
                Err(_) if !killed => {
                    tracing::warn!(unit = %name, "{name} did not stop within {:.0} s: killing it", grace.as_secs_f64());
                    signal(pid, libc::SIGKILL);
                    killed = true;
                }
                Err(_) => break,
            }
            if killed && Instant::now() > deadline + Duration::from_secs(5) {
                break;
            }
        }
        tracing::info!(unit = %name, "{name} retired");
    }

    /// Waits until every unit in `names` runs and has written its ready file. An exit of one
    /// of them, or `timeout`, is an error naming it (it stays supervised: restarted with
    /// backoff).
    pub async fn wait_ready(
        &mut self,
        names: &[String],
        timeout: Duration,
        changed: Changed<'_>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut failed: Vec<String> = Vec::new();
        loop {
            let not_ready: Vec<&String> = names
                .iter()
                .filter(|n| {
                    self.live(n).is_none_or(|i| {
                        let u = &self.units[i];
                        u.pid.is_none() || u.spec.ready_file.as_ref().is_some_and(|f| !f.exists())
                    })
                })
                .collect();
            if not_ready.is_empty() && failed.is_empty() {
                return Ok(());
            }
            if !failed.is_empty() {
                return Err(failed.join("; "));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "not up within {:.0} s: {}",
                    timeout.as_secs_f64(),
                    not_ready
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let step = (deadline - now).min(Duration::from_millis(20));
            if let Ok(Some(exit)) = tokio::time::timeout(step, self.rx.recv()).await {
                let unit = exit.unit;
                let current = exit.generation == self.units[unit].generation;
                let how = describe(&exit.status);
                self.on_exit(exit);
                changed(&self.snapshot());
                let u = &self.units[unit];
                if current && !u.retired && names.contains(&u.spec.name) {
                    failed.push(format!("{} {how}", u.spec.name));
                }
            }
        }
    }

    /// (unit name, state) of every unit.
    pub fn snapshot(&self) -> Vec<(String, ProcState)> {
        self.units
            .iter()
            .filter(|u| !u.retired)
            .map(|u| (u.spec.name.clone(), u.state.clone()))
            .collect()
    }

    pub fn pids(&self) -> Vec<(String, Option<u32>)> {
        self.units
            .iter()
            .filter(|u| !u.retired)
            .map(|u| (u.spec.name.clone(), u.pid))
            .collect()
    }

    /// Whether every unit with a ready file has written it in its current run.
    pub fn all_ready(&self) -> bool {
        self.units.iter().filter(|u| !u.retired).all(|u| {
            u.spec
                .ready_file
                .as_ref()
                .is_none_or(|f| u.pid.is_some() && f.exists())
        })
    }

    /// Names of units not (yet) ready.
    pub fn not_ready(&self) -> Vec<String> {
        self.units
            .iter()
            .filter(|u| !u.retired)
            .filter(|u| {
                u.spec
                    .ready_file
                    .as_ref()
                    .is_some_and(|f| u.pid.is_none() || !f.exists())
            })
            .map(|u| u.spec.name.clone())
            .collect()
    }

    fn spawn(&mut self, i: usize) {
        let tx = self.tx.clone();
        let unit = &mut self.units[i];
        unit.next_start = None;
        unit.generation += 1;
        if let Some(f) = &unit.spec.ready_file {
            let _ = std::fs::remove_file(f);
        }
        match spawn(&unit.spec) {
            Ok(mut child) => {
                let pid = child.id();
                unit.pid = pid;
                unit.started = Instant::now();
                unit.state.pid = pid;
                unit.state.started_ns = decnet_core::time_fmt::now_ns();
                let generation = unit.generation;
                tokio::spawn(async move {
                    let status = child.wait().await;
                    let _ = tx.send(Exit {
                        unit: i,
                        generation,
                        status,
                    });
                });
                tracing::info!(
                    unit = %unit.spec.name,
                    pid = pid.unwrap_or(0),
                    restarts = unit.state.restarts,
                    "started {}",
                    unit.spec.name
                );
            }
            Err(e) => {
                let delay = unit.backoff.after_run(Duration::ZERO);
                unit.state.last_exit = Some(format!("could not start: {e:#}"));
                unit.next_start = Some(Instant::now() + delay);
                tracing::error!(
                    unit = %unit.spec.name,
                    "cannot start {}: {e:#}; retrying in {:.0} s",
                    unit.spec.name,
                    delay.as_secs_f64()
                );
            }
        }
    }

    fn on_exit(&mut self, exit: Exit) {
        let stopping = self.stopping;
        let unit = &mut self.units[exit.unit];
        if exit.generation != unit.generation {
            return;
        }
        let ran = unit.started.elapsed();
        let how = describe(&exit.status);
        unit.pid = None;
        unit.state.pid = None;
        unit.state.last_exit = Some(how.clone());
        if stopping || unit.retired {
            tracing::info!(unit = %unit.spec.name, "{} stopped ({how})", unit.spec.name);
            return;
        }
        let delay = unit.backoff.after_run(ran);
        unit.state.restarts += 1;
        self.restarts += 1;
        unit.next_start = Some(Instant::now() + delay);
        tracing::warn!(
            unit = %unit.spec.name,
            restarts = unit.state.restarts,
            "{} {how} after {:.1} s; restart #{} in {:.0} s",
            unit.spec.name,
            ran.as_secs_f64(),
            unit.state.restarts,
            delay.as_secs_f64()
        );
    }

    /// Starts due units and handles exits until `stop` resolves. `changed` is called after
    /// every start or exit; `ready` once, the first time every unit is ready.
    pub async fn run(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
        changed: Changed<'_>,
        ready: &mut Option<Box<dyn FnOnce() + Send + '_>>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            let due: Vec<usize> = self
                .units
                .iter()
                .enumerate()
                .filter(|(_, u)| u.next_start.is_some_and(|t| t <= Instant::now()))
                .map(|(i, _)| i)
                .collect();
            if !due.is_empty() {
                for i in due {
                    self.spawn(i);
                }
                changed(&self.snapshot());
            }
            if ready.is_some()
                && self.all_ready()
                && let Some(f) = ready.take()
            {
                f();
            }
            tokio::select! {
                () = &mut stop => return,
                Some(exit) = self.rx.recv() => {
                    self.on_exit(exit);
                    changed(&self.snapshot());
                }
                _ = tick.tick() => {}
            }
        }
    }

    /// Stops every unit: deckies first, then workers in reverse start order; SIGTERM, then
    /// SIGKILL after `grace`.
    pub async fn stop_all(&mut self, grace: Duration, changed: Changed<'_>) {
        self.stopping = true;
        for u in &mut self.units {
            u.next_start = None;
        }
        let mut order: Vec<usize> = (0..self.units.len())
            .filter(|&i| self.units[i].spec.kind == "decky")
            .collect();
        order.extend(
            (0..self.units.len())
                .rev()
                .filter(|&i| self.units[i].spec.kind != "decky"),
        );
        // Deckies as one group, then each worker on its own.
        let mut groups: Vec<Vec<usize>> = vec![
            order
                .iter()
                .copied()
                .filter(|&i| self.units[i].spec.kind == "decky")
                .collect(),
        ];
        groups.extend(
            order
                .iter()
                .copied()
                .filter(|&i| self.units[i].spec.kind != "decky")
                .map(|i| vec![i]),
        );
        for group in groups {
            for &i in &group {
                if let Some(pid) = self.units[i].pid {
                    signal(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + grace;
            while group.iter().any(|&i| self.units[i].pid.is_some()) {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(exit)) => {
                        self.on_exit(exit);
                        changed(&self.snapshot());
                    }
                    Ok(None) => break,
                    Err(_) => {
                        for &i in &group {
                            if let Some(pid) = self.units[i].pid {
                                tracing::warn!(
                                    unit = %self.units[i].spec.name,
                                    "{} did not stop within {:.0} s: killing it",
                                    self.units[i].spec.name,
                                    grace.as_secs_f64()
                                );
                                signal(pid, libc::SIGKILL);
                            }
                        }
                        // Collect the kills.
                        while group.iter().any(|&i| self.units[i].pid.is_some()) {
                            match tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await
                            {
                                Ok(Some(exit)) => self.on_exit(exit),
                                _ => break,
                            }
                        }
                        changed(&self.snapshot());
                        break;
                    }
                }
            }
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a pid we started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A request to the spawner thread: what to start, in which tokio runtime (the child is
/// registered with that runtime's process driver), and where to send the result.
struct SpawnRequest {
    spec: UnitSpec,
    runtime: tokio::runtime::Handle,
    reply: std_mpsc::SyncSender<anyhow::Result<tokio::process::Child>>,
}

/// The spawner thread's queue. The thread is started on first use and never exits (its queue's
/// sender lives in this static), so `PR_SET_PDEATHSIG` in its children means "the supervisor
/// process died" — not "the tokio thread that happened to fork the child was retired".
fn spawner() -> anyhow::Result<&'static std_mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<std_mpsc::Sender<SpawnRequest>> = OnceLock::new();
    if let Some(tx) = SPAWNER.get() {
        return Ok(tx);
    }
    let (tx, rx) = std_mpsc::channel::<SpawnRequest>();
    let mut started = false;
    let tx = SPAWNER.get_or_init(|| {
        started = true;
        tx
    });
    if started {
        std::thread::Builder::new()
            .name("decnet-spawner".into())
            .spawn(move || {
                for req in rx {
                    let _entered = req.runtime.enter();
                    let _ = req.reply.send(spawn_child(&req.spec));
                }
            })
            .context("cannot start the process spawner thread")?;
    }
    Ok(tx)
}

/// Starts `spec` on the spawner thread (see [`spawner`]) and hands back its child, registered
/// with the calling tokio runtime.
fn spawn(spec: &UnitSpec) -> anyhow::Result<tokio::process::Child> {
    let (reply, result) = std_mpsc::sync_channel(1);
    spawner()?
        .send(SpawnRequest {
            spec: spec.clone(),
            runtime: tokio::runtime::Handle::current(),
            reply,
        })
        .map_err(|_| anyhow::anyhow!("the process spawner thread is gone"))?;
    // A fork and exec: as long as the fork on this thread used to take.
    result
        .recv()
        .map_err(|_| anyhow::anyhow!("the process spawner thread is gone"))?
}

/// Forks and execs `spec` (on the spawner thread).
fn spawn_child(spec: &UnitSpec) -> anyhow::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    let ns = match &spec.netns {
        Some(name) => Some(netns::open_netns(name)?),
        None => None,
    };
    let ns_fd = ns.as_ref().map(|f| f.as_raw_fd());
    // The supervisor, as the child will see it before exec.
    // SAFETY: getpid(2) has no preconditions.
    let supervisor = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // syscalls (setns, prctl, getppid, setpgid) on values captured by copy.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = ns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor died between the fork and the prctl: no signal will come.
            if libc::getppid() != supervisor {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", spec.program.display()))?;
    drop(ns);
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..7).map(|_| b.after_run(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after_run(STABLE_RUN).as_secs(), 1);
        assert_eq!(b.after_run(quick).as_secs(), 2);
    }

    /// `PR_SET_PDEATHSIG` fires when the thread that forked exits: a child asked for from a
    /// thread that then ends (as a tokio thread may) must keep running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_outlives_the_thread_that_asked_for_it() {
        let spec = UnitSpec {
            name: "sleeper".into(),
            kind: "worker",
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
            env: Vec::new(),
            netns: None,
            ready_file: None,
            env_remove: Vec::new(),
        };
        let handle = tokio::runtime::Handle::current();
        let mut child = std::thread::spawn(move || {
            let _entered = handle.enter();
            spawn(&spec).unwrap()
        })
        .join()
        .unwrap();
        // The asking thread is gone; a death signal would have been sent at its exit.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child died with the thread that asked for it"
        );
        child.kill().await.unwrap();
    }

    #[tokio::test]
    async fn a_unit_that_dies_is_restarted_and_counted_and_stop_ends_it() {
        let dir = std::env::temp_dir().join(format!("decnet-sup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("ready");
        // Writes its ready file, then sleeps: a well-behaved long-running unit.
        let spec = UnitSpec {
            name: "sleeper".into(),
            kind: "worker",
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                format!("touch {}; exec sleep 30", ready.display()).into(),
            ],
            env: Vec::new(),
            netns: None,
            ready_file: Some(ready.clone()),
            env_remove: Vec::new(),
        };
        let mut sup = Supervisor::new(vec![spec]);
        let mut changes = 0;
        let mut became_ready = false;
        {
            let flag = &mut became_ready;
            sup.run(
                tokio::time::sleep(Duration::from_millis(600)),
                &mut |_| changes += 1,
                &mut Some(Box::new(move || *flag = true)),
            )
            .await;
        }
        assert!(became_ready);
        let first = sup.pids()[0].1.expect("running");
        signal(first, libc::SIGKILL);
        // Restarted after the 1 s backoff.
        sup.run(
            tokio::time::sleep(Duration::from_millis(1600)),
            &mut |_| {},
            &mut None,
        )
        .await;
        let snap = sup.snapshot();
        assert_eq!(snap[0].1.restarts, 1);
        assert_eq!(snap[0].1.last_exit.as_deref(), Some("killed by signal 9"));
        let second = sup.pids()[0].1.expect("restarted");
        assert_ne!(first, second);
        assert_eq!(sup.restarts, 1);
        sup.stop_all(Duration::from_secs(5), &mut |_| {}).await;
        assert_eq!(sup.pids()[0].1, None);
        assert!(!std::path::Path::new(&format!("/proc/{second}")).exists());
        assert!(changes >= 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Retiring one unit and adding another leaves every other unit's process alone.
    #[tokio::test]
    async fn retire_and_add_touch_only_their_units() {
        let dir = std::env::temp_dir().join(format!("decnet-sup-mu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unit = |name: &str| {
            let ready = dir.join(format!("{name}.ready"));
            UnitSpec {
                name: name.into(),
                kind: "decky",
                program: "/bin/sh".into(),
                args: vec![
                    "-c".into(),
                    format!("touch {}; exec sleep 30", ready.display()).into(),
                ],
                env: Vec::new(),
                netns: None,
                ready_file: Some(ready),
                env_remove: Vec::new(),
            }
        };
        let mut sup = Supervisor::new(vec![unit("a"), unit("b")]);
        let mut ready = None;
        sup.run(
            tokio::time::sleep(Duration::from_millis(300)),
            &mut |_| {},
            &mut ready,
        )
        .await;
        sup.wait_ready(
            &["a".into(), "b".into()],
            Duration::from_secs(5),
            &mut |_| {},
        )
        .await
        .unwrap();
        let pid_a = sup.pids()[0].1.unwrap();
        let pid_b = sup.pids()[1].1.unwrap();
        sup.retire("b", Duration::from_secs(5), &mut |_| {}).await;
        assert!(
            !std::path::Path::new(&format!("/proc/{pid_b}")).exists() || {
                let stat =
                    std::fs::read_to_string(format!("/proc/{pid_b}/stat")).unwrap_or_default();
                stat.contains(") Z")
            }
        );
        sup.add(unit("c"));
        sup.wait_ready(&["c".into()], Duration::from_secs(5), &mut |_| {})
            .await
            .unwrap();
        // b is not restarted, a kept its process.
        sup.run(
            tokio::time::sleep(Duration::from_millis(1500)),
            &mut |_| {},
            &mut ready,
        )
        .await;
        let names: Vec<String> = sup.pids().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(sup.pids()[0].1, Some(pid_a));
        // A unit that exits before it is ready fails the wait, naming it.
        let mut bad = unit("bad");
        bad.args = vec!["-c".into(), "exit 3".into()];
        sup.add(bad);
        let e = sup
            .wait_ready(&["bad".into()], Duration::from_secs(5), &mut |_| {})
            .await
            .unwrap_err();
        assert!(e.contains("bad exited with code 3"), "{e}");
        sup.stop_all(Duration::from_secs(5), &mut |_| {}).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
