//! Fleet generations, the deploy side: `decnet deploy` records the fleet it starts from as a
//! generation (cause `deploy`) and then applies every newer generation of its bridge that
//! `decnet mutate` records in the repository — the two coordinate only through the repository
//! (`fleet_generations`).
//!
//! The design: the mutator decides (validates the fleet file, diffs, rotates, answers the
//! operator's queue, records the mutations); deploy, which owns the deployment record, the
//! network and the decky processes, applies. Applying a generation ([`Applier::apply`]) takes
//! the decky-by-decky diff ([`decnet_decoys::fleet::diff`]) from the fleet that runs to the
//! generation's and touches only the deckies in it:
//!
//! 1. the processes of removed, rebuilt (IP or OS changed) and restarted (services changed, or
//!    the operator asked) deckies are retired from the supervisor;
//! 2. the namespaces and veths of removed and rebuilt deckies are deleted, and each is struck
//!    from the deployment record once gone;
//! 3. the namespaces and veths of added and rebuilt deckies are recorded, then created (as at
//!    start); the sniffer attaches to the new bridge ports by itself;
//! 4. the collector's peers file is rewritten, each added or changed decky's spec is written
//!    (`<run-dir>/<bridge>.d/decky-<name>.json`, what its `decnet decky --spec-json` reads) and
//!    its process started; the generation is `applied` once each of them has written its ready
//!    file (30 s at most), else `failed` with the reason.
//!
//! Every other decky keeps its process (same pid), its namespace, its veth (so its sniffer
//! attachment and flow counters) and its open TCP sessions. A failure half-way (a namespace that
//! cannot be created, a port in use) leaves the deployment record describing exactly what
//! exists: a decky whose network could not be built is removed again and left out of the fleet
//! that runs, so the next generation converges (it is then added anew), and `decnet teardown`
//! still removes everything.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use decnet_core::{model::FleetGeneration, repo::Repository};
use decnet_decoys::fleet::{DeckySpec, Fleet, diff};
use decnet_runtime::{DbArgs, RunArgs};
use futures::{StreamExt as _, stream};
use tokio::time::Instant;

use super::{
    build_decky, lock, netns, netns_name, record_deckies,
    state::DeployState,
    supervise::{Changed, Supervisor, UnitSpec},
    units::{Child, CollectorAt},
    veth_name, write_peers,
};

/// How long a started decky has to write its ready file before the generation fails.
pub const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a retired decky has to stop before it is killed.
const RETIRE_GRACE: Duration = Duration::from_secs(10);

/// How deploy turns a decky into a supervised unit (at start and when applying).
#[derive(Debug, Clone)]
pub struct DeckyUnits {
    pub exe: PathBuf,
    /// `<run-dir>/<bridge>.d`: ready files and decky specs.
    pub rdir: PathBuf,
    pub collector: CollectorAt,
    pub state_dir: PathBuf,
    pub db: DbArgs,
}

impl DeckyUnits {
    /// Writes the decky's spec and returns its unit.
    pub fn unit(&self, d: &DeckySpec) -> anyhow::Result<UnitSpec> {
        let spec = self.rdir.join(format!("decky-{}.json", d.name));
        let body = serde_json::to_vec_pretty(d).context("cannot encode a decky spec")?;
        decnet_runtime::write_atomic(&spec, &body)?;
        let child = Child::Decky {
            name: d.name.clone(),
            spec,
            collector: self.collector.clone(),
            state_dir: self.state_dir.join("deckies").join(&d.name),
        };
        let name = format!("decky:{}", d.name);
        Ok(unit_spec(
            &self.exe,
            &self.rdir,
            &self.db,
            name,
            "decky",
            child,
            Some(netns_name(&d.name)),
        ))
    }
}

/// A unit: `child`'s command line and environment, its ready file in `rdir`.
pub fn unit_spec(
    exe: &Path,
    rdir: &Path,
    db: &DbArgs,
    name: String,
    kind: &'static str,
    child: Child,
    netns: Option<String>,
) -> UnitSpec {
    let ready = rdir.join(format!("{}.ready", name.replace(':', "-")));
    let run = RunArgs {
        daemon: true,
        ready_file: Some(ready.clone()),
        ..Default::default()
    };
    UnitSpec {
        kind,
        program: exe.to_path_buf(),
        args: child.args(&run),
        env: child
            .env(db)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        env_remove: match child {
            // The decky reads its spec; a DECNET_FLEET inherited from deploy's environment
            // would clash with --spec-json.
            Child::Decky { .. } => vec!["DECNET_FLEET"],
            _ => Vec::new(),
        },
        netns,
        ready_file: Some(ready),
        name,
    }
}

/// The deploy side of fleet generations.
pub struct Applier {
    pub repo: Repository,
    /// The fleet that runs.
    pub current: Fleet,
    /// Its generation (0: none recorded — the repository could not take it).
    pub current_id: i64,
    pub run_dir: PathBuf,
    pub st: Arc<Mutex<DeployState>>,
    pub units: DeckyUnits,
    /// The collector's peers file, when deploy runs the collector.
    pub peers: Option<PathBuf>,
    /// Generations applied and failed during this run.
    pub applied: u64,
    pub failed: u64,
}

impl Applier {
    /// Records the fleet deploy starts from as an applied generation (cause `deploy`); older
    /// generations never applied are superseded.
    pub async fn record_start(&mut self, file: &Fleet) {
        let json = match serde_json::to_string(file) {
            Ok(j) => j,
            Err(e) => return tracing::warn!("cannot encode the fleet: {e}"),
        };
        let bridge = file.lan.bridge.clone();
        let r = async {
            let mut tx = self.repo.begin().await?;
            let id = tx
                .insert_fleet_generation(&FleetGeneration {
                    id: 0,
                    bridge: bridge.clone(),
                    fleet: json.clone(),
                    file_fleet: json,
                    restart: "[]".into(),
                    cause: "deploy".into(),
                    actor: "decnet deploy".into(),
                    request_id: None,
                    status: "pending".into(),
                    reason: String::new(),
                    created_ns: 0,
                    applied_ns: None,
                })
                .await?;
            tx.finish_fleet_generation(id, "applied", "").await?;
            tx.supersede_fleet_generations(&bridge, id).await?;
            tx.commit().await?;
            Ok::<_, decnet_core::repo::RepoError>(id)
        }
        .await;
        match r {
            Ok(id) => {
                self.current_id = id;
                tracing::info!("fleet generation {id}: the fleet file as deployed");
            }
            Err(e) => tracing::warn!(
                "cannot record the fleet generation (decnet mutate cannot change this fleet): {e:#}"
            ),
        }
    }

    /// Applies the newest pending generation of the bridge, if there is one newer than what
    /// runs.
    pub async fn poll(&mut self, sup: &mut Supervisor, changed: Changed<'_>) {
        if self.current_id == 0 {
            return;
        }
        let latest = match self
            .repo
            .latest_fleet_generation(&self.current.lan.bridge)
            .await
        {
            Ok(Some(g)) if g.id > self.current_id && g.status == "pending" => g,
            Ok(_) => return,
            Err(e) => return tracing::warn!("cannot read the fleet generations: {e:#}"),
        };
        let t0 = Instant::now();
        let id = latest.id;
        let result = self.apply(&latest, sup, changed).await;
        let (status, reason) = match &result {
            Ok(summary) => {
                self.applied += 1;
                tracing::info!(
                    "fleet generation {id} ({}) applied in {:.3} s: {summary}",
                    latest.cause,
                    t0.elapsed().as_secs_f64()
                );
                ("applied", String::new())
            }
            Err(e) => {
                self.failed += 1;
                tracing::error!("fleet generation {id} ({}) failed: {e:#}", latest.cause);
                ("failed", format!("{e:#}"))
            }
        };
        let r = async {
            let mut tx = self.repo.begin().await?;
            tx.finish_fleet_generation(id, status, &reason).await?;
            tx.supersede_fleet_generations(&self.current.lan.bridge, id)
                .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = r {
            tracing::error!("cannot record the outcome of fleet generation {id}: {e:#}");
        }
        self.current_id = id;
    }

    fn save(&self) -> anyhow::Result<()> {
        lock(&self.st).save(&self.run_dir)
    }

    /// Applies generation `g` (see the module doc); the summary of what changed.
    pub async fn apply(
        &mut self,
        g: &FleetGeneration,
        sup: &mut Supervisor,
        changed: Changed<'_>,
    ) -> anyhow::Result<String> {
        let new: Fleet = serde_json::from_str(&g.fleet)
            .with_context(|| format!("generation {}: the stored fleet does not decode", g.id))?;
        if let Some(why) = diff::lan_change(&self.current, &new) {
            bail!("{why}");
        }
        new.check().map_err(|e| anyhow!("{e}"))?;
        let restart: Vec<String> = serde_json::from_str(&g.restart).unwrap_or_default();
        let d = diff::diff(&self.current, &new);
        let lan = new.lan.clone();

        // 1. Retire the processes that go or change.
        let mut retire: Vec<String> = d.removed.iter().map(|x| x.name.clone()).collect();
        retire.extend(
            d.changed
                .iter()
                .filter(|c| c.restart)
                .map(|c| c.after.name.clone()),
        );
        let restart_only: Vec<&DeckySpec> = new
            .deckies
            .iter()
            .filter(|x| restart.contains(&x.name) && !d.touched().contains(&x.name.as_str()))
            .collect();
        retire.extend(restart_only.iter().map(|x| x.name.clone()));
        for name in &retire {
            let unit = format!("decky:{name}");
            sup.retire(&unit, RETIRE_GRACE, changed).await;
            lock(&self.st).processes.remove(&unit);
        }
        self.save()?;

        // 2. Remove the network of removed and rebuilt deckies.
        let h = netns::netlink()?;
        let gone: Vec<&DeckySpec> = d
            .removed
            .iter()
            .chain(d.changed.iter().filter(|c| c.rebuild).map(|c| &c.before))
            .collect();
        for old in &gone {
            self.remove_network(&h, &lan.bridge, &old.name).await?;
        }

        // 3. Build the network of added and rebuilt deckies (recorded first).
        let build: Vec<&DeckySpec> = d
            .added
            .iter()
            .chain(d.changed.iter().filter(|c| c.rebuild).map(|c| &c.after))
            .collect();
        let mut problems = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        if !build.is_empty() {
            {
                let mut s = lock(&self.st);
                for x in &build {
                    s.namespaces.push(netns_name(&x.name));
                    s.veths.push(veth_name(&lan.bridge, &x.name));
                }
            }
            self.save()?;
            for x in &build {
                decnet_decoys::decky::state::ensure_dir(
                    &self.units.state_dir.join("deckies").join(&x.name),
                )?;
            }
            let bridge_idx = netns::link_index(&h, &lan.bridge)
                .await?
                .with_context(|| format!("the bridge {} is gone", lan.bridge))?;
            let results: Vec<(String, anyhow::Result<super::state::DeckyState>)> =
                stream::iter(build.iter())
                    .map(|x| {
                        let (h, lan) = (&h, &lan);
                        async move { (x.name.clone(), build_decky(h, lan, bridge_idx, x).await) }
                    })
                    .buffer_unordered(8)
                    .collect()
                    .await;
            for (name, r) in results {
                match r {
                    Ok(ds) => {
                        let mut s = lock(&self.st);
                        s.deckies.retain(|x| x.name != name);
                        s.deckies.push(ds);
                        s.deckies.sort_by(|a, b| a.name.cmp(&b.name));
                    }
                    Err(e) => {
                        problems.push(format!("decky {name}: {e:#}"));
                        failed.push(name);
                    }
                }
            }
            self.save()?;
            for name in &failed {
                if let Err(e) = self.remove_network(&h, &lan.bridge, name).await {
                    problems.push(format!("decky {name}: cleaning up: {e:#}"));
                }
            }
        }

        // The fleet that now runs: the new one, less the deckies whose network failed.
        let running = Fleet {
            lan: new.lan.clone(),
            deckies: new
                .deckies
                .iter()
                .filter(|x| !failed.contains(&x.name))
                .cloned()
                .collect(),
        };

        // 4. Peers, specs, processes.
        if let Some(peers) = &self.peers {
            write_peers(peers, &running)?;
        }
        let start: Vec<&DeckySpec> = d
            .added
            .iter()
            .chain(d.changed.iter().filter(|c| c.restart).map(|c| &c.after))
            .chain(restart_only.iter().copied())
            .filter(|x| !failed.contains(&x.name))
            .collect();
        let mut names = Vec::new();
        for x in &start {
            sup.add(self.units.unit(x)?);
            names.push(format!("decky:{}", x.name));
        }
        changed(&sup.snapshot());
        if let Err(e) = sup.wait_ready(&names, READY_WITHIN, changed).await {
            problems.push(e);
        }
        {
            let mut s = lock(&self.st);
            for x in &running.deckies {
                if let Some(ds) = s.deckies.iter_mut().find(|ds| ds.name == x.name) {
                    ds.services = x
                        .services
                        .iter()
                        .map(|sv| (sv.kind.name().to_owned(), sv.port))
                        .collect();
                }
            }
        }
        self.save()?;
        record_deckies(&self.repo, &running, "up").await;
        for x in &d.removed {
            let r = async {
                let mut tx = self.repo.begin().await?;
                tx.set_decky_status(&x.name, "removed").await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = r {
                tracing::warn!("cannot record decky {} as removed: {e:#}", x.name);
            }
        }
        self.current = running;
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(format!(
            "{}{}",
            d.summary(),
            if restart_only.is_empty() {
                String::new()
            } else {
                format!(
                    " restarted {}",
                    restart_only
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        ))
    }

    /// Deletes a decky's veth and namespace, and strikes them (and the decky) from the record.
    async fn remove_network(
        &self,
        h: &rtnetlink::Handle,
        bridge: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let (ns, veth) = (netns_name(name), veth_name(bridge, name));
        netns::delete_link(h, &veth).await?;
        netns::delete_netns(&ns)?;
        let _ = std::fs::remove_file(self.units.rdir.join(format!("decky-{name}.json")));
        let mut s = lock(&self.st);
        s.namespaces.retain(|x| *x != ns);
        s.veths.retain(|x| *x != veth);
        s.deckies.retain(|x| x.name != name);
        s.save(&self.run_dir)
    }
}
