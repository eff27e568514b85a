//! # decnet-mutator — `decnet mutate`: the fleet changes while it runs
//!
//! **Inputs:**
//! - the fleet file (`--fleet`), watched with `--watch` (inotify on the file's directory, so an
//!   editor that writes a new file and renames it over the old one is seen too): every saved
//!   change is validated with deploy's rules (every problem at once) and, when valid, becomes a
//!   new fleet generation; an invalid file changes nothing and is reported in the log and in
//!   the repository (a `mutations` row for decky `(fleet)`, status `invalid`, with the problems);
//! - the operator's queue (`mutation_requests`, written by the API's
//!   `POST /api/v1/deckies/{name}/actions`): `mutate` and `rotate_services` (the decky's
//!   services rotate within its archetype's pool), `restart` (a new process for the decky),
//!   `set_mutate_interval` (`{"interval": "30m"}`, or `"off"`);
//! - the schedule: a decky with `mutate_interval` rotates its services when the interval has
//!   passed since its last mutation.
//!
//! **Outputs:** fleet generations (`fleet_generations`: the effective fleet, the fleet file it
//! derives from, the cause and the actor), which `decnet deploy` applies — deploy owns the
//! network, the decky processes and the deployment record, and touches only the deckies the
//! diff names (see `decnet deploy`'s `apply` module); the outcome of each request (`applied`,
//! or `failed` with the reason); one `mutations` record per decky a generation touched (decky,
//! before, after, cause, actor, generation, time, status), and an RFC 5424 line with MSGID
//! `decky_mutated` for each (APP-NAME `decnet.mutator`).
//!
//! The mutator and deploy coordinate only through the repository. The mutator writes one
//! generation at a time and waits for deploy's outcome before the next.
//!
//! **Crash safety:** a request is claimed before it is worked on; the generation made for it
//! carries the request's id (unique), and a rotation's choice is seeded by the request id, so a
//! mutator killed at any point and started again claims the request again, finds its
//! generation if it was written (else computes the same one), and records the one mutation
//! record again (same key: decky, cause, the generation's time) — the requested state is
//! reached once, never twice. Requests queued while no mutator runs wait in the repository.
//!
//! One mutator per host: it holds the worker lease `mutator`; a second one is refused, naming
//! the first. The subcommand is `decnet mutator` (the worker's name, like every worker) with the
//! alias `decnet mutate`.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use decnet_core::{
    model::{FleetGeneration, Mutation, MutationRequest},
    repo::{LeaseHolder, MAX_FLEET_JSON, Repository, Write},
    time_fmt::now_ns,
};
use decnet_decoys::fleet::{DeckySpec, Fleet, diff, parse_interval, persona, rotate};
use decnet_runtime::{Context, DbArgs, Report, RunArgs, Spec};
use serde::Serialize;
use tokio::{sync::mpsc, time::Instant};

/// One name: subcommand `decnet mutator` (alias `mutate`), crate, systemd unit `decnet-mutator.service`, lease,
/// APP-NAME `decnet.mutator`.
pub const WORKER: &str = "mutator";

/// `decnet mutate`: apply fleet changes to a running deployment.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Needs a running `decnet deploy` of the same fleet (same bridge, same repository): the mutator records \
each change as a fleet generation, deploy applies it. Without --daemon/--duration it does what is \
pending (a changed fleet file, queued requests, due schedules) and exits.\n\nExamples:\n  \
decnet mutate --daemon --watch --fleet /etc/decnet/fleet.toml\n  \
decnet mutate --fleet /etc/decnet/fleet.toml     # apply what is pending once")]
pub struct MutateArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// The fleet file the deployment runs.
    #[arg(long, env = "DECNET_FLEET", default_value = "/etc/decnet/fleet.toml")]
    pub fleet: PathBuf,

    /// Watch the fleet file and apply every saved change.
    #[arg(long)]
    pub watch: bool,

    /// How often the operator's queue and the schedules are looked at, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,

    /// How long deploy has to apply a generation before it counts as failed, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub apply_timeout: u64,
}

decnet_runtime::worker!(
    MutateArgs,
    |_a| Spec::new(WORKER)
        .once()
        .lease(WORKER)
        .grace(Duration::from_secs(10)),
    mutate
);

/// The counters (`--summary-json`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    /// Passes over the file, the queue and the schedules (1 for a one-shot run).
    pub passes: u64,
    pub file_changes: u64,
    pub file_invalid: u64,
    pub requests: u64,
    pub scheduled: u64,
    pub generations: u64,
    pub applied: u64,
    pub failed: u64,
    pub deckies_mutated: u64,
}

/// One decky a generation touched: name, change (`added`, `removed`, `changed`, `restarted`),
/// before, after, what changed.
type Record<'a> = (
    String,
    &'static str,
    Option<&'a DeckySpec>,
    Option<&'a DeckySpec>,
    Vec<&'static str>,
);

/// What caused a change.
#[derive(Debug, Clone)]
struct Cause {
    /// `file`, `operator`, `schedule`.
    kind: &'static str,
    actor: String,
    request: Option<i64>,
    /// The action of a request (`rotate_services`, …) or the file edit (`edit`).
    action: String,
}

struct Mutator {
    repo: Repository,
    fleet_path: PathBuf,
    bridge: String,
    holder: String,
    apply_timeout: Duration,
    /// When each scheduled decky last changed (ns).
    last_change: HashMap<String, i64>,
    counters: Counters,
}

/// Runs `decnet mutate`.
pub async fn mutate(ctx: Context, args: MutateArgs) -> anyhow::Result<Report> {
    let repo = ctx.repo()?.clone();
    let fleet_path = std::fs::canonicalize(&args.fleet)
        .with_context(|| format!("cannot resolve the fleet file {}", args.fleet.display()))?;
    let file = Fleet::load(&fleet_path)?;
    let mut m = Mutator {
        repo,
        bridge: file.lan.bridge.clone(),
        fleet_path: fleet_path.clone(),
        holder: LeaseHolder::this_process(WORKER).holder,
        apply_timeout: Duration::from_secs(args.apply_timeout),
        last_change: HashMap::new(),
        counters: Counters::default(),
    };
    let mut shutdown = ctx.shutdown.clone();
    // Up: the lease is held. (A deployment to change may come later.)
    ctx.ready(&[WORKER.to_owned()])?;

    // Deploy records the generation it starts from; nothing can change before it has.
    let start = loop {
        match m.repo.latest_fleet_generation(&m.bridge).await? {
            Some(g) => break g,
            None if ctx.once() => {
                tracing::warn!(
                    "nothing to do: no deployment of bridge {} is recorded in the repository (start `decnet deploy`)",
                    m.bridge
                );
                m.counters.passes += 1;
                return Ok(m.report());
            }
            None => {}
        }
        tokio::select! {
            _ = shutdown.wait() => return Ok(m.report()),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };

    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let _watcher = if args.watch {
        Some(watch(&fleet_path, tx)?)
    } else {
        None
    };
    tracing::info!(
        "mutating the fleet on {} from generation {} ({}){}",
        m.bridge,
        start.id,
        fleet_path.display(),
        if args.watch {
            ", watching the file"
        } else {
            ""
        }
    );

    m.file_changed().await;
    m.queue().await;
    m.schedules().await;
    m.counters.passes += 1;
    if ctx.once() {
        return Ok(m.report());
    }
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(()) = rx.recv() => {
                // An editor's save is several events (write, close, rename): take them as one.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
                m.file_changed().await;
            }
            _ = tick.tick() => {
                m.queue().await;
                m.schedules().await;
                m.counters.passes += 1;
            }
        }
    }
    Ok(m.report())
}

/// Watches the directory of `path` (so a file replaced by rename is seen) and sends a tick for
/// every event that names the file.
fn watch(path: &Path, tx: mpsc::UnboundedSender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?
        .to_path_buf();
    let name = path.file_name().map(|n| n.to_os_string());
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("watching the fleet file: {e}"),
    })
    .context("cannot start inotify")?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(w)
}

fn decode_fleet(json: &str, what: &str) -> anyhow::Result<Fleet> {
    serde_json::from_str(json).with_context(|| format!("the stored {what} does not decode"))
}

/// FNV-1a of a decky name: mixed into rotation seeds.
fn name_seed(name: &str) -> u64 {
    u64::from(persona::fnv1a(name))
}

impl Mutator {
    fn report(&self) -> Report {
        let c = &self.counters;
        Report::new(
            format!(
                "mutator: {} passes, {} file changes ({} invalid), {} requests, {} scheduled; {} generations: {} applied, {} failed; {} decky mutations",
                c.passes,
                c.file_changes,
                c.file_invalid,
                c.requests,
                c.scheduled,
                c.generations,
                c.applied,
                c.failed,
                c.deckies_mutated
            ),
            c,
        )
    }

    /// The newest generation (the basis of a change), once deploy has answered it.
    async fn base(&self) -> anyhow::Result<FleetGeneration> {
        let g = self
            .repo
            .latest_fleet_generation(&self.bridge)
            .await?
            .with_context(|| format!("no fleet generation of {}", self.bridge))?;
        if g.status == "pending" {
            self.wait_outcome(g.id).await?;
            return self
                .repo
                .fleet_generation(g.id)
                .await?
                .context("generation vanished");
        }
        Ok(g)
    }

    /// Waits until deploy has applied (or failed) generation `id`; its status and reason.
    async fn wait_outcome(&self, id: i64) -> anyhow::Result<(String, String)> {
        let deadline = Instant::now() + self.apply_timeout;
        loop {
            let g = self
                .repo
                .fleet_generation(id)
                .await?
                .with_context(|| format!("fleet generation {id} vanished"))?;
            if g.status != "pending" {
                return Ok((g.status, g.reason));
            }
            if Instant::now() >= deadline {
                return Ok((
                    "failed".into(),
                    format!(
                        "decnet deploy did not apply generation {id} within {} s (is it running?)",
                        self.apply_timeout.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The fleet file, if it changed since the newest generation's: a new generation.
    async fn file_changed(&mut self) {
        let text = match std::fs::read_to_string(&self.fleet_path) {
            Ok(t) => t,
            // Between an editor's unlink and rename: the rename event follows.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => return tracing::error!("cannot read {}: {e}", self.fleet_path.display()),
        };
        let source = self.fleet_path.display().to_string();
        let base = match self.base().await {
            Ok(b) => b,
            Err(e) => return tracing::error!("{e:#}"),
        };
        let file_new = match Fleet::parse(&text, &source) {
            Ok(f) => f,
            Err(e) => {
                self.counters.file_invalid += 1;
                return self.refuse(&e.problems, &format!("{e}")).await;
            }
        };
        let (file_old, effective) = match (
            decode_fleet(&base.file_fleet, "fleet file"),
            decode_fleet(&base.fleet, "fleet"),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return tracing::error!("generation {}: {e:#}", base.id),
        };
        if file_new == file_old {
            return;
        }
        self.counters.file_changes += 1;
        if let Some(why) = diff::lan_change(&file_old, &file_new) {
            self.counters.file_invalid += 1;
            return self
                .refuse(std::slice::from_ref(&why), &format!("{source}: {why}"))
                .await;
        }
        let next = diff::rebase(&file_old, &file_new, &effective);
        if let Err(e) = next.check() {
            self.counters.file_invalid += 1;
            return self.refuse(&e.problems, &format!("{e}")).await;
        }
        let cause = Cause {
            kind: "file",
            actor: format!("fleet file {source}"),
            request: None,
            action: "edit".into(),
        };
        if let Err(e) = self
            .submit(&effective, next, &file_new, Vec::new(), cause)
            .await
        {
            tracing::error!("cannot apply the fleet file change: {e:#}");
        }
    }

    /// An invalid fleet file: nothing changes; the log and the repository say why.
    async fn refuse(&self, problems: &[String], text: &str) {
        tracing::error!(target: "fleet_invalid", "fleet file change refused, nothing changed: {text}");
        let m = Mutation {
            ts_ns: now_ns(),
            decky: "(fleet)".into(),
            kind: "file".into(),
            detail: serde_json::json!({
                "file": self.fleet_path.display().to_string(),
                "problems": problems,
            })
            .to_string(),
            status: "invalid".into(),
        };
        if let Err(e) = self
            .repo
            .write(&[Write::Mutations(std::slice::from_ref(&m))])
            .await
        {
            tracing::warn!("cannot record the refused fleet file change: {e:#}");
        }
    }

    /// Records `next` as a generation, waits for deploy's outcome, records the mutations.
    async fn submit(
        &mut self,
        before: &Fleet,
        next: Fleet,
        file_fleet: &Fleet,
        restart: Vec<String>,
        cause: Cause,
    ) -> anyhow::Result<(String, String)> {
        let fleet = serde_json::to_string(&next)?;
        let file_fleet = serde_json::to_string(file_fleet)?;
        anyhow::ensure!(
            fleet.len() <= MAX_FLEET_JSON && file_fleet.len() <= MAX_FLEET_JSON,
            "the fleet is larger than {MAX_FLEET_JSON} bytes of JSON"
        );
        let mut tx = self.repo.begin().await?;
        let id = tx
            .insert_fleet_generation(&FleetGeneration {
                id: 0,
                bridge: self.bridge.clone(),
                fleet,
                file_fleet,
                restart: serde_json::to_string(&restart)?,
                cause: cause.kind.into(),
                actor: cause.actor.clone(),
                request_id: cause.request,
                status: "pending".into(),
                reason: String::new(),
                created_ns: 0,
                applied_ns: None,
            })
            .await?;
        tx.commit().await?;
        self.counters.generations += 1;
        let d = diff::diff(before, &next);
        tracing::info!(
            "fleet generation {id} ({}, {}): {}",
            cause.kind,
            cause.actor,
            d.summary()
        );
        self.finish(id, before, &next, &restart, &cause).await
    }

    /// Waits for generation `id`'s outcome and records one mutation per decky it touched
    /// (again, idempotently, when a restarted mutator finishes an earlier one's work).
    async fn finish(
        &mut self,
        id: i64,
        before: &Fleet,
        next: &Fleet,
        restart: &[String],
        cause: &Cause,
    ) -> anyhow::Result<(String, String)> {
        let (status, reason) = self.wait_outcome(id).await?;
        let g = self
            .repo
            .fleet_generation(id)
            .await?
            .with_context(|| format!("fleet generation {id} vanished"))?;
        if status == "applied" {
            self.counters.applied += 1;
        } else {
            self.counters.failed += 1;
        }
        let d = diff::diff(before, next);
        let mut records: Vec<Record<'_>> = Vec::new();
        for x in &d.added {
            records.push((x.name.clone(), "added", None, Some(x), Vec::new()));
        }
        for x in &d.removed {
            records.push((x.name.clone(), "removed", Some(x), None, Vec::new()));
        }
        for c in &d.changed {
            records.push((
                c.after.name.clone(),
                "changed",
                Some(&c.before),
                Some(&c.after),
                c.what.clone(),
            ));
        }
        for name in restart {
            if !records.iter().any(|r| r.0 == *name) {
                let x = next.deckies.iter().find(|x| x.name == *name);
                records.push((name.clone(), "restarted", x, x, Vec::new()));
            }
        }
        let now = now_ns();
        let mutations: Vec<Mutation> = records
            .iter()
            .map(|(name, change, b, a, what)| Mutation {
                ts_ns: g.created_ns,
                decky: name.clone(),
                kind: cause.kind.into(),
                detail: serde_json::json!({
                    "generation": id,
                    "actor": cause.actor,
                    "action": cause.action,
                    "request": cause.request,
                    "change": change,
                    "what": what,
                    "before": b,
                    "after": a,
                    "reason": reason,
                })
                .to_string(),
                status: status.clone(),
            })
            .collect();
        self.repo.write(&[Write::Mutations(&mutations)]).await?;
        for (name, change, b, a, what) in &records {
            self.last_change.insert(name.clone(), now);
            self.counters.deckies_mutated += 1;
            let services = |x: &Option<&DeckySpec>| {
                x.map(|x| {
                    x.services
                        .iter()
                        .map(|s| format!("{}/{}", s.kind.name(), s.port))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
            };
            tracing::info!(
                target: "decky_mutated",
                decky = %name,
                change = %change,
                what = %what.join(","),
                cause = cause.kind,
                actor = %cause.actor,
                generation = id,
                status = %status,
                before = %services(b),
                after = %services(a),
                "decky {name} {change} ({}) by {}: {status}{}",
                cause.kind,
                cause.actor,
                if reason.is_empty() { String::new() } else { format!(": {reason}") }
            );
        }
        Ok((status, reason))
    }

    /// Claims and carries out the queued requests, oldest first.
    async fn queue(&mut self) {
        loop {
            let req = match self.repo.claim_mutation_request(&self.holder).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => return tracing::warn!("cannot read the request queue: {e:#}"),
            };
            self.counters.requests += 1;
            let (status, reason) = match self.request(&req).await {
                Ok(outcome) => outcome,
                Err(e) => ("failed".into(), format!("{e:#}")),
            };
            tracing::info!(
                decky = %req.decky,
                request = req.id,
                "request {} ({} on {} by {}): {status}{}",
                req.id,
                req.action,
                req.decky,
                req.requested_by,
                if reason.is_empty() { String::new() } else { format!(": {reason}") }
            );
            if let Err(e) = self
                .repo
                .finish_mutation_request(req.id, &status, &reason)
                .await
            {
                tracing::warn!("cannot record the outcome of request {}: {e:#}", req.id);
                return;
            }
        }
    }

    async fn request(&mut self, req: &MutationRequest) -> anyhow::Result<(String, String)> {
        let cause = Cause {
            kind: "operator",
            actor: req.requested_by.clone(),
            request: Some(req.id),
            action: req.action.clone(),
        };
        // Claimed before by a mutator that died: its generation may already exist.
        if let Some(g) = self.repo.fleet_generation_of_request(req.id).await? {
            let before = self.generation_before(&g).await?;
            let next = decode_fleet(&g.fleet, "fleet")?;
            let restart: Vec<String> = serde_json::from_str(&g.restart).unwrap_or_default();
            return self.finish(g.id, &before, &next, &restart, &cause).await;
        }
        let base = self.base().await?;
        let effective = decode_fleet(&base.fleet, "fleet")?;
        let file_fleet = decode_fleet(&base.file_fleet, "fleet file")?;
        let Some(i) = effective.deckies.iter().position(|x| x.name == req.decky) else {
            anyhow::bail!("no decky named {:?} in the running fleet", req.decky);
        };
        let mut next = effective.clone();
        let mut restart = Vec::new();
        match req.action.as_str() {
            "mutate" | "rotate_services" => {
                let seed =
                    (req.id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name_seed(&req.decky);
                next.deckies[i] =
                    rotate::rotate(&effective.deckies[i], seed).map_err(anyhow::Error::msg)?;
            }
            "restart" => restart.push(req.decky.clone()),
            "set_mutate_interval" => {
                let args: serde_json::Value =
                    serde_json::from_str(&req.args).context("the request's args are not JSON")?;
                let interval = args.get("interval").and_then(|v| v.as_str()).unwrap_or("");
                next.deckies[i].mutate_interval = match interval {
                    "off" | "none" => None,
                    s => {
                        if next.deckies[i].archetype.is_none() {
                            anyhow::bail!(
                                "decky {:?} has no archetype: there is no pool to rotate its services within",
                                req.decky
                            );
                        }
                        Some(parse_interval(s).map_err(|e| anyhow::anyhow!("interval: {e}"))?)
                    }
                };
            }
            other => anyhow::bail!(
                "unknown action {other:?} (mutate, rotate_services, restart, set_mutate_interval)"
            ),
        }
        next.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        self.submit(&effective, next, &file_fleet, restart, cause)
            .await
    }

    /// The fleet of the generation before `g` (what `g` changed from).
    async fn generation_before(&self, g: &FleetGeneration) -> anyhow::Result<Fleet> {
        let all = self.repo.fleet_generations(&g.bridge).await?;
        let prev = all
            .iter()
            .rev()
            .find(|x| x.id < g.id && x.status == "applied")
            .with_context(|| format!("no generation before {}", g.id))?;
        decode_fleet(&prev.fleet, "fleet")
    }

    /// Rotates the deckies whose `mutate_interval` has passed since their last change.
    async fn schedules(&mut self) {
        let base = match self.base().await {
            Ok(b) => b,
            Err(e) => return tracing::warn!("{e:#}"),
        };
        let (effective, file_fleet) = match (
            decode_fleet(&base.fleet, "fleet"),
            decode_fleet(&base.file_fleet, "fleet file"),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return tracing::warn!("{e:#}"),
        };
        let now = now_ns();
        for (i, d) in effective.deckies.iter().enumerate() {
            let Some(secs) = d.mutate_interval else {
                continue;
            };
            let last = match self.last_change.get(&d.name) {
                Some(t) => *t,
                None => {
                    let t = self
                        .repo
                        .mutations(&d.name)
                        .await
                        .ok()
                        .and_then(|m| m.iter().map(|m| m.ts_ns).max())
                        .unwrap_or(now)
                        .max(base.created_ns);
                    self.last_change.insert(d.name.clone(), t);
                    t
                }
            };
            let interval_ns = i64::try_from(secs)
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1_000_000_000);
            if now.saturating_sub(last) < interval_ns {
                continue;
            }
            let seed = (base.id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name_seed(&d.name);
            let mut next = effective.clone();
            match rotate::rotate(d, seed) {
                Ok(r) => next.deckies[i] = r,
                Err(e) => {
                    self.last_change.insert(d.name.clone(), now);
                    tracing::warn!("schedule of decky {}: {e}", d.name);
                    continue;
                }
            }
            self.counters.scheduled += 1;
            let cause = Cause {
                kind: "schedule",
                actor: format!("mutate_interval {secs}s"),
                request: None,
                action: "rotate_services".into(),
            };
            if let Err(e) = self
                .submit(&effective, next, &file_fleet, Vec::new(), cause)
                .await
            {
                tracing::error!("scheduled rotation of {}: {e:#}", d.name);
            }
            self.last_change.insert(d.name.clone(), now_ns());
            // One change per pass: the next pass starts from the generation just applied.
            return;
        }
    }
}
