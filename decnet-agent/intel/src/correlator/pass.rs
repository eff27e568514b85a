//! One correlator pass: the repository I/O around the pure rules of [`super::sessions`],
//! [`super::scans`], [`super::traversal`] and [`super::reuse`].
//!
//! Three inputs, each behind its own cursor (worker `correlator`, names `events`, `credentials`,
//! `flows`; position = the last row id done), read in batches of `--batch` rows and taken in
//! time order (the input whose next row is oldest goes first). Each batch is one transaction
//! that writes everything derived from it **and** moves its cursor, so a crash loses both or
//! neither and every row is taken in exactly once. A batch adds what it brings to what is
//! stored, using [`State`] (what the correlator knows of the stored sessions, episodes and
//! secrets) instead of re-reading history, so its cost follows its input. Input that arrives
//! late and re-cuts sessions or episodes recomputes those keys from the stored rows. The tables
//! after a pass do not depend on how the input was batched, interrupted or replayed, or in which
//! order it arrived.
//!
//! Flows are taken only once they have settled (`first_seen` older than `--flow-settle`): the
//! sensor updates a flow row after creating it, and a probe is judged by its final flags.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt as _, TryStreamExt as _};

use decnet_core::{
    model::{AttackerUpdate, Credential, CredentialReuse, FlowRecord, Scan, Session, Touch},
    repo::{
        CounterMode, EventFact, IntelBatch, LIST_MAX, RepoError, Repository, ScanReplace,
        SessionBytes, SessionReplace, Write,
    },
    time_fmt::now_ns,
};

use super::{
    scans::{self, Episode, Probe, ProbeKind, ScanConfig},
    sessions::{self, KeyEvent},
    traversal,
};
use crate::{
    passes::{Counters, READ_CONCURRENCY},
    vocab,
};

pub const WORKER: &str = "correlator";

/// Flows this close to a session's span count towards its bytes.
const FLOW_SLACK_NS: i64 = 5_000_000_000;

/// The correlator's thresholds and batch sizes.
#[derive(Debug, Clone)]
pub struct Config {
    pub idle_gap_ns: i64,
    pub scan: ScanConfig,
    pub batch: u32,
    pub flow_settle_ns: i64,
    /// Host name under which cursors and counters are kept.
    pub host: String,
    /// Decnet's own addresses besides this host's (never attackers; see [`super::own`]).
    pub own_addresses: Vec<IpAddr>,
}

/// The recorded fleet: decky by IP, service ports.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub by_ip: HashMap<IpAddr, String>,
    pub ip_of: HashMap<String, IpAddr>,
    pub ports: HashMap<(String, String), u16>,
    /// The prober's vantage addresses (`probe_vantages`): its probes are never an attacker's.
    pub vantages: HashSet<IpAddr>,
    /// Decnet's own addresses (see [`super::own`]).
    pub own: HashSet<IpAddr>,
}

/// Well-known ports of the decoy services, when the fleet records none.
const DEFAULT_PORTS: [(&str, u16); 12] = [
    ("ssh", 22),
    ("http", 80),
    ("https", 443),
    ("ftp", 21),
    ("telnet", 23),
    ("smtp", 25),
    ("redis", 6379),
    ("mysql", 3306),
    ("smb", 445),
    ("rdp", 3389),
    ("vnc", 5900),
    ("dns", 53),
];

impl Directory {
    pub async fn load(repo: &Repository) -> Result<Directory, RepoError> {
        let (by_ip, ports) = repo.decky_directory().await?;
        let ip_of = by_ip.iter().map(|(ip, n)| (n.clone(), *ip)).collect();
        let vantages = repo.probe_vantages().await?.into_iter().collect();
        Ok(Directory {
            by_ip,
            ip_of,
            ports,
            vantages,
            own: HashSet::new(),
        })
    }

    /// Whether `ip` is never an attacker: decnet's own or non-routable ([`super::own`]).
    pub fn not_attacker(&self, ip: IpAddr) -> bool {
        super::own::non_routable(ip) || self.own.contains(&ip)
    }

    fn has_services(&self, decky: &str) -> bool {
        self.ports.keys().any(|(d, _)| d == decky)
    }

    /// The port `service` of `decky` listens on.
    pub fn port(&self, decky: &str, service: &str) -> Option<u16> {
        if let Some(p) = self.ports.get(&(decky.to_owned(), service.to_owned())) {
            return Some(*p);
        }
        if self.has_services(decky) {
            return None;
        }
        DEFAULT_PORTS
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, p)| *p)
    }

    /// The service of `decky` on `port`.
    pub fn service(&self, decky: &str, port: u16) -> Option<String> {
        let mut recorded: Vec<&String> = self
            .ports
            .iter()
            .filter(|((d, _), p)| d == decky && **p == port)
            .map(|((_, s), _)| s)
            .collect();
        recorded.sort();
        if let Some(s) = recorded.first() {
            return Some((*s).clone());
        }
        if self.has_services(decky) {
            return None;
        }
        DEFAULT_PORTS
            .iter()
            .find(|(_, p)| *p == port)
            .map(|(s, _)| (*s).to_owned())
    }
}

type Key = (IpAddr, String, String);

/// Keys, attackers and secrets held in [`State`] before it is emptied (and reloaded as needed).
const STATE_MAX: usize = 2_000_000;

/// What the correlator knows between batches, so that a batch costs what it brings and not
/// what is stored: the newest session of each key and the touches of each attacker it has
/// seen, the newest scan episode of each (attacker, kind) with its full port and host sets,
/// and the targets and attackers of each secret. Loaded from the repository the first time a
/// batch needs them, then kept in step with what the batches write. It is a cache of rows this
/// correlator wrote (one correlator per host holds the lease): emptied when a batch fails, and
/// when it grows past [`STATE_MAX`] entries.
#[derive(Debug, Default)]
pub struct State {
    loaded: HashSet<IpAddr>,
    last: HashMap<Key, Session>,
    touches: HashMap<IpAddr, Vec<Touch>>,
    scans_loaded: HashSet<IpAddr>,
    episodes: HashMap<(IpAddr, ProbeKind), Episode>,
    secrets: HashMap<[u8; 32], Secret>,
    secret_members: usize,
}

/// What the correlator keeps of one secret: all its (decky, service) targets, and once it is
/// reused (two targets or more) its reuse record — counts, first/last seen and the first
/// attackers by text. Whether an attacker is new to a secret is asked of the repository (one
/// indexed lookup per pair of a batch), so nothing here grows with the secret's rows.
#[derive(Debug, Clone, Default)]
struct Secret {
    targets: BTreeSet<(String, String)>,
    record: Option<CredentialReuse>,
}

impl Secret {
    /// Brings the record's target fields up to date with `targets`.
    fn set_targets(&mut self) {
        let Some(r) = &mut self.record else {
            return;
        };
        let mut list: Vec<String> = self
            .targets
            .iter()
            .take(LIST_MAX)
            .map(|(d, s)| format!("{d}/{s}"))
            .collect();
        list.sort();
        r.target_count = self.targets.len() as u64;
        r.targets = list;
    }
}

/// Adds attacker `ip` to a record's first-[`LIST_MAX`] list (text order).
fn list_attacker(r: &mut CredentialReuse, ip: IpAddr) {
    let text = ip.to_string();
    if r.attackers.contains(&text) {
        return;
    }
    let at = r.attackers.partition_point(|a| *a < text);
    if at < LIST_MAX {
        r.attackers.insert(at, text);
        r.attackers.truncate(LIST_MAX);
    }
}

impl State {
    pub fn clear(&mut self) {
        *self = State::default();
    }

    fn size(&self) -> usize {
        self.loaded.len()
            + self.last.len()
            + self.scans_loaded.len()
            + self.episodes.len()
            + self.secrets.len()
            + self.secret_members
    }

    /// Loads the newest sessions and the touches of the attackers in `ips` not yet loaded.
    async fn load_attackers(
        &mut self,
        repo: &Repository,
        ips: impl IntoIterator<Item = IpAddr>,
        c: &mut Counters,
    ) -> Result<(), RepoError> {
        let missing = not_in(ips, &self.loaded);
        if missing.is_empty() {
            return Ok(());
        }
        c.add("state_attackers_loaded", missing.len() as u64);
        for s in repo.latest_sessions(&missing).await? {
            self.last
                .insert((s.attacker_ip, s.decky.clone(), s.service.clone()), s);
        }
        for ip in &missing {
            self.touches.entry(*ip).or_default();
        }
        for t in repo.touches_of(&missing).await? {
            self.touches.entry(t.attacker_ip).or_default().push(t);
        }
        self.loaded.extend(missing);
        Ok(())
    }

    /// Loads the newest scan episode of every (attacker, kind) of `ips` not yet loaded, from the
    /// flows taken in so far (ids up to `max_id`).
    async fn load_scans(
        &mut self,
        repo: &Repository,
        dir: &Directory,
        cfg: &ScanConfig,
        ips: impl IntoIterator<Item = IpAddr>,
        max_id: i64,
        c: &mut Counters,
    ) -> Result<(), RepoError> {
        let missing = not_in(ips, &self.scans_loaded);
        if missing.is_empty() {
            return Ok(());
        }
        for (ip, kind, start) in repo.latest_scan_starts(&missing).await? {
            let Some(kind) = ProbeKind::ALL.into_iter().find(|k| k.name() == kind) else {
                continue;
            };
            c.add("state_episodes_loaded", 1);
            let probes = probes_of(&repo.flows_from(ip, start, max_id).await?, kind, dir);
            if let Some(e) = scans::cut(&probes, cfg).pop() {
                self.episodes.insert((ip, kind), e);
            }
        }
        self.scans_loaded.extend(missing);
        Ok(())
    }

    /// Loads the secrets in `hashes` not yet loaded: a reused one from its stored reuse record
    /// (its targets are listed there whole up to [`LIST_MAX`]), the others from their targets in
    /// the credential rows up to `max_id`.
    async fn load_secrets(
        &mut self,
        repo: &Repository,
        hashes: &BTreeSet<[u8; 32]>,
        max_id: i64,
        c: &mut Counters,
    ) -> Result<(), RepoError> {
        let missing: Vec<[u8; 32]> = hashes
            .iter()
            .filter(|h| !self.secrets.contains_key(*h))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        c.add("state_secrets_loaded", missing.len() as u64);
        let mut complete: HashSet<[u8; 32]> = HashSet::new();
        for r in repo.reuse_records(&missing).await? {
            let mut s = Secret::default();
            let targets: Vec<(String, String)> = r
                .targets
                .iter()
                .filter_map(|t| t.rsplit_once('/'))
                .map(|(d, s)| (d.to_owned(), s.to_owned()))
                .collect();
            if targets.len() as u64 == r.target_count {
                complete.insert(r.secret_hash);
                s.targets.extend(targets);
            }
            self.secret_members += 1 + s.targets.len();
            let hash = r.secret_hash;
            s.record = Some(r);
            self.secrets.insert(hash, s);
        }
        let rest: Vec<[u8; 32]> = missing
            .iter()
            .filter(|h| !complete.contains(*h))
            .copied()
            .collect();
        for (h, decky, service) in repo.secret_targets(&rest, max_id).await? {
            let s = self.secrets.entry(h).or_default();
            if s.targets.insert((decky, service)) {
                self.secret_members += 1;
            }
        }
        for h in missing {
            if let std::collections::hash_map::Entry::Vacant(e) = self.secrets.entry(h) {
                e.insert(Secret::default());
                self.secret_members += 1;
            }
        }
        Ok(())
    }
}

/// The distinct addresses of `ips` that `loaded` does not hold, in order.
fn not_in(ips: impl IntoIterator<Item = IpAddr>, loaded: &HashSet<IpAddr>) -> Vec<IpAddr> {
    let missing: BTreeSet<IpAddr> = ips.into_iter().filter(|ip| !loaded.contains(ip)).collect();
    missing.into_iter().collect()
}

/// The probes of `kind` among `flows`.
fn probes_of(flows: &[FlowRecord], kind: ProbeKind, dir: &Directory) -> Vec<Probe> {
    flows
        .iter()
        .filter(|f| scans::probe_kind(f) == Some(kind))
        .map(|f| probe(f, dir))
        .collect()
}

fn probe(f: &FlowRecord, dir: &Directory) -> Probe {
    Probe {
        first_seen_ns: f.first_seen_ns,
        last_seen_ns: f.last_seen_ns,
        host: scans::host_name(f.dst_ip, &dir.by_ip),
        port: f.dst_port,
    }
}

/// The session key whose bytes a flow counts toward: an attacker's flow to a decky's service,
/// or that service's reply to the attacker.
fn flow_key(f: &FlowRecord, dir: &Directory) -> Option<Key> {
    match (dir.by_ip.get(&f.src_ip), dir.by_ip.get(&f.dst_ip)) {
        (None, _) if dir.not_attacker(f.src_ip) => None,
        (Some(_), None) if dir.not_attacker(f.dst_ip) => None,
        (None, Some(decky)) => {
            let service = dir.service(decky, f.dst_port)?;
            Some((f.src_ip, decky.clone(), service))
        }
        (Some(decky), None) => {
            let service = dir.service(decky, f.src_port)?;
            Some((f.dst_ip, decky.clone(), service))
        }
        _ => None,
    }
}

/// Runs batches until no input is pending (or `stop` is set), with a fresh [`State`].
pub async fn run_pass(
    repo: &Repository,
    cfg: &Config,
    stop: &Arc<AtomicBool>,
) -> Result<Counters, RepoError> {
    run_pass_with(repo, cfg, stop, &mut State::default()).await
}

/// Runs batches until no input is pending (or `stop` is set), keeping `state` between them
/// (and between passes). Returns this pass's counters.
pub async fn run_pass_with(
    repo: &Repository,
    cfg: &Config,
    stop: &Arc<AtomicBool>,
    state: &mut State,
) -> Result<Counters, RepoError> {
    let r = pass(repo, cfg, stop, state).await;
    if r.is_err() {
        state.clear();
    }
    r
}

async fn position(repo: &Repository, cfg: &Config, input: &str) -> Result<i64, RepoError> {
    Ok(repo
        .cursor(WORKER, &cfg.host, input)
        .await?
        .map_or(0, |c| c.position))
}

/// The inputs, by cursor name, in the order [`Pending::read_next`] numbers them.
const INPUTS: [&str; 3] = ["events", "credentials", "flows"];

/// Input read but not yet taken in: at most one batch of each kind.
#[derive(Default)]
struct Pending {
    events: Option<Vec<EventFact>>,
    credentials: Option<Vec<Credential>>,
    flows: Option<(Vec<(i64, FlowRecord)>, bool)>,
}

async fn pass(
    repo: &Repository,
    cfg: &Config,
    stop: &Arc<AtomicBool>,
    state: &mut State,
) -> Result<Counters, RepoError> {
    let mut total = Counters::default();
    let mut dir = Directory::load(repo).await?;
    dir.own = super::own::local_addresses();
    dir.own.extend(cfg.own_addresses.iter().copied());
    let mut p = Pending::default();
    // Where each input's cursor stands: read once, then moved here as each batch commits (this
    // correlator, holding the lease, is the only one moving them).
    let mut at = [0i64; 3];
    for (i, input) in INPUTS.iter().enumerate() {
        at[i] = position(repo, cfg, input).await?;
    }
    // The three inputs are taken in time order, batch by batch: the one whose next row is the
    // oldest goes first. Flows then mostly meet the session they belong to as the newest of
    // its key (no older rows to update), and every batch reads only what is recent.
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(total);
        }
        if state.size() > STATE_MAX {
            state.clear();
            total.add("state_resets", 1);
        }
        if p.events.as_ref().is_none_or(Vec::is_empty) {
            p.read_next(repo, cfg, 0, at[0]).await?;
        }
        if p.credentials.as_ref().is_none_or(Vec::is_empty) {
            p.read_next(repo, cfg, 1, at[1]).await?;
        }
        if p.flows.as_ref().is_none_or(|(f, _)| f.is_empty()) {
            p.read_next(repo, cfg, 2, at[2]).await?;
        }
        let heads = [
            p.events.as_ref().and_then(|v| v.first()).map(|e| e.ts_ns),
            p.credentials
                .as_ref()
                .and_then(|v| v.first())
                .map(|c| c.first_seen_ns),
            p.flows
                .as_ref()
                .and_then(|(v, _)| v.first())
                .map(|(_, f)| f.first_seen_ns),
        ];
        let Some(pick) = (0..3)
            .filter(|i| heads[*i].is_some())
            .min_by_key(|i| heads[*i])
        else {
            if p.flows.as_ref().is_some_and(|(_, waiting)| *waiting) {
                total.add("flows_waiting_to_settle", 1);
            }
            break;
        };
        let (batch, next, c) = match pick {
            0 => {
                let facts = p.events.take().unwrap_or_default();
                let last = facts.last().map_or(0, |f| f.id);
                let (b, c) = events_batch(repo, cfg, &dir, &facts, last, at[2], state).await?;
                (b, last, c)
            }
            1 => {
                let creds = p.credentials.take().unwrap_or_default();
                let last = creds.last().map_or(0, |c| c.id);
                let (b, c) = credentials_batch(repo, &dir, &creds, at[1], state).await?;
                (b, last, c)
            }
            _ => {
                let (settled, _) = p.flows.take().unwrap_or_default();
                let last = settled.last().map_or(0, |(id, _)| *id);
                let (b, c) = flows_batch(repo, cfg, &dir, &settled, at[2], last, state).await?;
                (b, last, c)
            }
        };
        let mut c = c;
        c.add("batches", 1);
        let values = c.values();
        let writes = [
            Write::Intel(&batch),
            Write::Cursor {
                worker: WORKER,
                host: &cfg.host,
                name: INPUTS[pick],
                position: next,
                state: "",
            },
            Write::Counters {
                worker: WORKER,
                host: &cfg.host,
                values: &values,
                mode: CounterMode::Add,
            },
        ];
        let write = repo.write(&writes);
        // The next batch of the same input is read while this one is written (WAL readers do
        // not wait for the writer): it starts after this batch whether or not the write
        // succeeds, and a failed write ends the pass anyway.
        let (written, read) = tokio::join!(write, p.read_next(repo, cfg, pick, next));
        written?;
        at[pick] = next;
        read?;
        total.merge(&c);
    }
    Ok(total)
}

impl Pending {
    /// Reads the batch of input `pick` (0 events, 1 credentials, 2 flows) after row `after`.
    async fn read_next(
        &mut self,
        repo: &Repository,
        cfg: &Config,
        pick: usize,
        after: i64,
    ) -> Result<(), RepoError> {
        match pick {
            0 => self.events = Some(repo.event_facts_after(after, cfg.batch).await?),
            1 => self.credentials = Some(repo.credentials_after(after, cfg.batch).await?),
            _ => self.flows = Some(settled_flows(repo, cfg, after).await?),
        }
        Ok(())
    }
}

/// The settled flows after row `after` (at most a batch), and whether unsettled ones follow.
async fn settled_flows(
    repo: &Repository,
    cfg: &Config,
    after: i64,
) -> Result<(Vec<(i64, FlowRecord)>, bool), RepoError> {
    let flows = repo.flows_after(after, cfg.batch).await?;
    let settled_before = now_ns().saturating_sub(cfg.flow_settle_ns);
    let waiting = flows.iter().any(|(_, f)| f.first_seen_ns > settled_before);
    let settled: Vec<(i64, FlowRecord)> = flows
        .into_iter()
        .take_while(|(_, f)| f.first_seen_ns <= settled_before)
        .collect();
    Ok((settled, waiting))
}

/// Sessions of `keys` (key → the earliest late evidence) recomputed from stored events (ids up
/// to `max_event`) and flows taken in (ids up to `max_flow`): the path for late events that
/// change where sessions are cut. Returns the replacements and the sessions each key gained.
async fn recompute_sessions(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    keys: &BTreeMap<Key, i64>,
    (max_event, max_flow): (i64, i64),
    c: &mut Counters,
) -> Result<Vec<(SessionReplace, u64)>, RepoError> {
    // Keys are independent: read them a few at a time (the pool has several connections; on
    // SQLite, WAL readers do not block each other). Results keep the key order.
    // Owned items: a closure over borrowed items is not `Send` for every lifetime, which
    // `tokio::spawn` (embedded workers) needs.
    let owned: Vec<(Key, i64)> = keys.iter().map(|(k, at)| (k.clone(), *at)).collect();
    let out: Vec<(SessionReplace, u64)> = futures::stream::iter(owned)
        .map(|(key, at)| async move {
            recompute_key(repo, cfg, dir, &key, at, max_event, max_flow).await
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    c.add("sessions_recomputed", out.len() as u64);
    Ok(out)
}

async fn recompute_key(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    (ip, decky, service): &Key,
    at: i64,
    max_event: i64,
    max_flow: i64,
) -> Result<(SessionReplace, u64), RepoError> {
    let from = repo
        .session_start_before(*ip, decky, service, at)
        .await?
        .unwrap_or(at)
        .min(at);
    let before = repo.count_sessions_from(*ip, decky, service, from).await?;
    let events = repo
        .key_events(*ip, decky, service, from, max_event)
        .await?;
    let kes: Vec<KeyEvent> = events.iter().map(key_event).collect();
    let mut sessions = sessions::sessionize(*ip, decky, service, &kes, cfg.idle_gap_ns);
    if let (Some(dip), Some(port)) = (dir.ip_of.get(decky), dir.port(decky, service)) {
        for s in &mut sessions {
            s.bytes = repo
                .flow_bytes(
                    *ip,
                    *dip,
                    port,
                    s.started_ns.saturating_sub(FLOW_SLACK_NS),
                    s.ended_ns.saturating_add(FLOW_SLACK_NS),
                    max_flow,
                )
                .await?;
        }
    }
    let gained = (sessions.len() as u64).saturating_sub(before);
    Ok((
        SessionReplace {
            attacker_ip: *ip,
            decky: decky.clone(),
            service: service.clone(),
            from_ns: from,
            sessions,
        },
        gained,
    ))
}

fn key_event(e: &EventFact) -> KeyEvent {
    let i = vocab::interpret(&e.event_type, &e.fields);
    KeyEvent {
        ts_ns: e.ts_ns,
        kind: i.kind,
        command: i.command,
    }
}

/// A part of a session's span (widened by the flow slack) that no flow has been counted for
/// yet: `(lo, hi]`, or `[lo, hi]` when `from_lo`.
#[derive(Debug, Clone, Copy)]
struct Window {
    row: usize,
    lo: i64,
    hi: i64,
    from_lo: bool,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        (t > self.lo || (self.from_lo && t == self.lo)) && t <= self.hi
    }
}

/// Attacker facts a batch adds.
fn add_fact(
    map: &mut BTreeMap<IpAddr, AttackerUpdate>,
    ip: IpAddr,
    first: i64,
    last: i64,
) -> &mut AttackerUpdate {
    let a = map.entry(ip).or_insert(AttackerUpdate {
        ip,
        first_seen_ns: first,
        last_seen_ns: last,
        event_count: 0,
        session_count: 0,
        credential_count: 0,
        flow_count: 0,
    });
    a.first_seen_ns = a.first_seen_ns.min(first);
    a.last_seen_ns = a.last_seen_ns.max(last);
    a
}

/// What a batch of new events (ids up to `last_id`) changes. `flows_done`: the flows cursor
/// (flows up to it have been counted into sessions).
async fn events_batch(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    facts: &[EventFact],
    last_id: i64,
    flows_done: i64,
    state: &mut State,
) -> Result<(IntelBatch, Counters), RepoError> {
    let mut c = Counters::default();
    c.add("events_read", facts.len() as u64);
    let mut by_key: BTreeMap<Key, Vec<KeyEvent>> = BTreeMap::new();
    let mut touches: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    let mut attackers: BTreeMap<IpAddr, AttackerUpdate> = BTreeMap::new();
    for f in facts {
        let Some(ip) = f.attacker_ip else {
            c.add("events_without_attacker", 1);
            continue;
        };
        if dir.vantages.contains(&ip) {
            c.add("events_of_prober", 1);
            continue;
        }
        if dir.not_attacker(ip) {
            c.add("events_not_attacker", 1);
            continue;
        }
        let i = vocab::interpret(&f.event_type, &f.fields);
        if i.bad_fields {
            c.add("events_bad_fields", 1);
        }
        let key = (ip, f.decky.clone(), f.service.clone());
        let t = touches.entry(key.clone()).or_insert((f.ts_ns, f.ts_ns));
        *t = (t.0.min(f.ts_ns), t.1.max(f.ts_ns));
        add_fact(&mut attackers, ip, f.ts_ns, f.ts_ns).event_count += 1;
        by_key.entry(key).or_default().push(KeyEvent {
            ts_ns: f.ts_ns,
            kind: i.kind,
            command: i.command,
        });
    }
    state
        .load_attackers(repo, attackers.keys().copied(), &mut c)
        .await?;

    let mut b = IntelBatch::default();
    let mut late: BTreeMap<Key, i64> = BTreeMap::new();
    let mut extended: Vec<(Key, Vec<Session>)> = Vec::new();
    let mut windows: HashMap<Key, Vec<Window>> = HashMap::new();
    for (key, mut evs) in by_key {
        // Facts come in id order: a stable sort by time keeps arrival order among equal times.
        evs.sort_by_key(|e| e.ts_ns);
        let stored = state.last.get(&key).cloned();
        let (mut before, after): (Vec<KeyEvent>, Vec<KeyEvent>) = match &stored {
            Some(s) => evs.into_iter().partition(|e| e.ts_ns < s.ended_ns),
            None => (Vec::new(), evs),
        };
        if let Some(s) = &stored
            && !before.iter().all(|e| sessions::absorbs(s, e))
        {
            before.sort_by_key(|e| e.ts_ns);
            late.insert(key, before[0].ts_ns);
            continue;
        }
        let mut last = stored.clone();
        if let Some(s) = &mut last {
            s.event_count += before.len() as u64;
            c.add("late_events_absorbed", before.len() as u64);
        }
        let rows = sessions::extend(key.0, &key.1, &key.2, last, &after, cfg.idle_gap_ns);
        let kept = usize::from(stored.is_some());
        let w = windows.entry(key.clone()).or_default();
        if let (Some(old), Some(now)) = (&stored, rows.first())
            && now.ended_ns > old.ended_ns
        {
            w.push(Window {
                row: 0,
                lo: old.ended_ns.saturating_add(FLOW_SLACK_NS),
                hi: now.ended_ns.saturating_add(FLOW_SLACK_NS),
                from_lo: false,
            });
        }
        for (row, s) in rows.iter().enumerate().skip(kept) {
            w.push(Window {
                row,
                lo: s.started_ns.saturating_sub(FLOW_SLACK_NS),
                hi: s.ended_ns.saturating_add(FLOW_SLACK_NS),
                from_lo: true,
            });
        }
        add_fact(&mut attackers, key.0, i64::MAX, i64::MIN).session_count +=
            (rows.len() - kept) as u64;
        extended.push((key, rows));
    }

    // Flows already taken in that the sessions' new spans now cover.
    let spans = windows.values().flatten();
    let (lo, hi) = spans.fold((i64::MAX, i64::MIN), |(lo, hi), w| {
        (lo.min(w.lo), hi.max(w.hi))
    });
    if flows_done > 0 && lo <= hi {
        let flows = repo.flows_between(lo, hi, flows_done).await?;
        c.add("flows_reread", flows.len() as u64);
        let index: HashMap<&Key, usize> = extended
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k, i))
            .collect();
        let mut adds: Vec<(usize, usize, u64)> = Vec::new();
        for f in &flows {
            let Some(key) = flow_key(f, dir) else {
                continue;
            };
            let (Some(ws), Some(i)) = (windows.get(&key), index.get(&key)) else {
                continue;
            };
            for w in ws.iter().filter(|w| w.contains(f.first_seen_ns)) {
                adds.push((*i, w.row, f.bytes));
            }
        }
        for (i, row, bytes) in adds {
            let s = &mut extended[i].1[row];
            s.bytes = s.bytes.saturating_add(bytes);
        }
    }
    for (key, rows) in extended {
        if let Some(s) = rows.last() {
            state.last.insert(key, s.clone());
        }
        b.session_rows.extend(rows);
    }
    for (replace, gained) in
        recompute_sessions(repo, cfg, dir, &late, (last_id, flows_done), &mut c).await?
    {
        let key = (
            replace.attacker_ip,
            replace.decky.clone(),
            replace.service.clone(),
        );
        if let Some(s) = replace.sessions.last() {
            state.last.insert(key, s.clone());
        }
        add_fact(&mut attackers, replace.attacker_ip, i64::MAX, i64::MIN).session_count += gained;
        b.sessions.push(replace);
    }
    c.add(
        "sessions_written",
        (b.session_rows.len() + b.sessions.iter().map(|r| r.sessions.len()).sum::<usize>()) as u64,
    );

    b.touches = touches
        .into_iter()
        .map(|((ip, decky, service), (first, last))| Touch {
            attacker_ip: ip,
            decky,
            service,
            first_seen_ns: first,
            last_seen_ns: last,
        })
        .collect();
    for t in &b.touches {
        let list = state.touches.entry(t.attacker_ip).or_default();
        match list
            .iter_mut()
            .find(|s| s.decky == t.decky && s.service == t.service)
        {
            Some(s) => {
                s.first_seen_ns = s.first_seen_ns.min(t.first_seen_ns);
                s.last_seen_ns = s.last_seen_ns.max(t.last_seen_ns);
            }
            None => list.push(t.clone()),
        }
    }
    for ip in attackers.keys() {
        if let Some(t) = state
            .touches
            .get(ip)
            .and_then(|ts| traversal::traversal(*ip, ts))
        {
            b.traversals.push(t);
        }
    }
    c.add("traversals_written", b.traversals.len() as u64);
    c.add("attackers_updated", attackers.len() as u64);
    b.evidence = attackers.keys().copied().collect();
    b.attacker_adds = attackers.into_values().collect();
    Ok((b, c))
}

/// What a batch of new credential rows (ids after `position`, up to `last_id`) changes: the
/// reuse of their secrets. A secret that reaches two targets gets its record aggregated from its
/// stored rows once; after that each batch adds to it. The attackers of a secret whose target
/// count changed go to the profiler (their "credential reused" factor changed); otherwise only
/// the new rows' attackers do.
async fn credentials_batch(
    repo: &Repository,
    dir: &Directory,
    creds: &[Credential],
    position: i64,
    state: &mut State,
) -> Result<(IntelBatch, Counters), RepoError> {
    let mut c = Counters::default();
    c.add("credentials_read", creds.len() as u64);
    let last_id = creds.last().map_or(position, |c| c.id);
    let mut by_secret: BTreeMap<[u8; 32], Vec<&Credential>> = BTreeMap::new();
    let mut attackers: BTreeMap<IpAddr, AttackerUpdate> = BTreeMap::new();
    for cred in creds {
        if dir.not_attacker(cred.attacker_ip) {
            c.add("credentials_not_attacker", 1);
            continue;
        }
        by_secret.entry(cred.secret_hash).or_default().push(cred);
        add_fact(
            &mut attackers,
            cred.attacker_ip,
            cred.first_seen_ns,
            cred.last_seen_ns,
        )
        .credential_count += 1;
    }
    let hashes: BTreeSet<[u8; 32]> = by_secret.keys().copied().collect();
    state.load_secrets(repo, &hashes, position, &mut c).await?;
    // Which attackers of the batch already tried a reused secret before it.
    let mut pairs: BTreeSet<([u8; 32], IpAddr)> = BTreeSet::new();
    for (h, rows) in &by_secret {
        if state.secrets.get(h).is_some_and(|s| s.record.is_some()) {
            pairs.extend(rows.iter().map(|r| (*h, r.attacker_ip)));
        }
    }
    let pairs: Vec<([u8; 32], IpAddr)> = pairs.into_iter().collect();
    let known = repo.known_secret_attackers(&pairs, position).await?;

    let mut b = IntelBatch::default();
    let mut evidence: BTreeSet<IpAddr> = attackers.keys().copied().collect();
    for (h, rows) in by_secret {
        let s = state.secrets.entry(h).or_default();
        let before = s.targets.len();
        for r in &rows {
            if s.targets.insert((r.decky.clone(), r.service.clone())) {
                state.secret_members += 1;
            }
        }
        if s.targets.len() < 2 {
            continue;
        }
        match &mut s.record {
            None => {
                c.add("reuse_aggregated", 1);
                s.record = repo.reuse_of_secrets(&[h], last_id).await?.pop();
                evidence.extend(repo.secret_attackers(&h, usize::MAX, last_id).await?);
            }
            Some(rec) => {
                let new: BTreeSet<IpAddr> = rows
                    .iter()
                    .map(|r| r.attacker_ip)
                    .filter(|ip| !known.contains(&(h, *ip)))
                    .collect();
                rec.attacker_count += new.len() as u64;
                for ip in new {
                    list_attacker(rec, ip);
                }
                rec.credential_rows += rows.len() as u64;
                for r in &rows {
                    rec.first_seen_ns = rec.first_seen_ns.min(r.first_seen_ns);
                    rec.last_seen_ns = rec.last_seen_ns.max(r.last_seen_ns);
                }
                s.set_targets();
                if s.targets.len() != before {
                    evidence.extend(repo.secret_attackers(&h, usize::MAX, last_id).await?);
                }
            }
        }
        if let Some(r) = &s.record {
            b.reuse.push(r.clone());
        }
    }
    c.add("reuse_written", b.reuse.len() as u64);
    b.evidence = evidence.into_iter().collect();
    b.attacker_adds = attackers.into_values().collect();
    Ok((b, c))
}

/// A flow that is a server's reply (only used when the fleet is not recorded).
fn looks_like_reply(f: &FlowRecord) -> bool {
    matches!(f.proto, scans::TCP | scans::UDP)
        && f.src_port != 0
        && f.src_port < 1024
        && f.dst_port >= 1024
}

/// What a batch of settled new flows (ids after `position`, up to `last_id`) changes.
async fn flows_batch(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    flows: &[(i64, FlowRecord)],
    position: i64,
    last_id: i64,
    state: &mut State,
) -> Result<(IntelBatch, Counters), RepoError> {
    let mut c = Counters::default();
    c.add("flows_read", flows.len() as u64);
    let mut b = IntelBatch::default();
    let mut attackers: BTreeMap<IpAddr, AttackerUpdate> = BTreeMap::new();
    let mut probes: BTreeMap<(IpAddr, ProbeKind), Vec<Probe>> = BTreeMap::new();
    let mut counted: Vec<(Key, i64, u64)> = Vec::new();
    for (_, f) in flows {
        if dir.vantages.contains(&f.src_ip) || dir.vantages.contains(&f.dst_ip) {
            c.add("flows_of_prober", 1);
            continue;
        }
        if let Some(p) = traversal::pivot(f, &dir.by_ip, &dir.ports) {
            b.pivots.push(p);
            continue;
        }
        if dir.by_ip.contains_key(&f.src_ip) {
            // A decky's reply: its bytes count toward the attacker's session.
            if let Some(key) = flow_key(f, dir) {
                counted.push((key, f.first_seen_ns, f.bytes));
            }
            continue;
        }
        if dir.by_ip.is_empty() && looks_like_reply(f) {
            continue;
        }
        if dir.not_attacker(f.src_ip) {
            c.add("flows_not_attacker", 1);
            continue;
        }
        add_fact(&mut attackers, f.src_ip, f.first_seen_ns, f.last_seen_ns).flow_count += 1;
        if let Some(kind) = scans::probe_kind(f) {
            c.add("probe_flows", 1);
            probes
                .entry((f.src_ip, kind))
                .or_default()
                .push(probe(f, dir));
        } else if let Some(key) = flow_key(f, dir) {
            counted.push((key, f.first_seen_ns, f.bytes));
        }
    }
    c.add("pivots_written", b.pivots.len() as u64);

    // Bytes: into the sessions whose span (widened by the slack) covers the flow's start. A
    // session that does not cover it yet counts it when its span grows to it.
    let mut ips: BTreeSet<IpAddr> = attackers.keys().copied().collect();
    ips.extend(counted.iter().map(|(k, _, _)| k.0));
    state
        .load_attackers(repo, ips.iter().copied(), &mut c)
        .await?;
    let mut dirty: BTreeSet<Key> = BTreeSet::new();
    for (key, at, bytes) in counted {
        let Some(s) = state.last.get_mut(&key) else {
            continue;
        };
        if at >= s.started_ns.saturating_sub(FLOW_SLACK_NS)
            && at <= s.ended_ns.saturating_add(FLOW_SLACK_NS)
        {
            s.bytes = s.bytes.saturating_add(bytes);
            dirty.insert(key.clone());
        }
        if at <= s.started_ns.saturating_add(FLOW_SLACK_NS) {
            b.session_bytes.push(SessionBytes {
                attacker_ip: key.0,
                decky: key.1.clone(),
                service: key.2.clone(),
                at_ns: at,
                slack_ns: FLOW_SLACK_NS,
                before_ns: s.started_ns,
                bytes,
            });
        }
    }
    b.session_rows = dirty
        .iter()
        .filter_map(|k| state.last.get(k).cloned())
        .collect();
    c.add("sessions_written", b.session_rows.len() as u64);

    // Scan episodes: extend the newest of each (attacker, kind); probes that start before it
    // recompute the key from the stored flows.
    state
        .load_scans(
            repo,
            dir,
            &cfg.scan,
            probes.keys().map(|(ip, _)| *ip),
            position,
            &mut c,
        )
        .await?;
    for ((ip, kind), mut ps) in probes {
        ps.sort_by_key(|p| p.first_seen_ns);
        let stored = state.episodes.get(&(ip, kind)).cloned();
        let (from, rows) = match stored {
            Some(e) if ps[0].first_seen_ns < e.started_ns => {
                c.add("scans_recomputed", 1);
                let at = ps[0].first_seen_ns;
                let from = repo
                    .scan_start_before(ip, kind.name(), at)
                    .await?
                    .unwrap_or(at)
                    .min(at);
                let all = probes_of(&repo.flows_from(ip, from, last_id).await?, kind, dir);
                (from, scans::cut(&all, &cfg.scan))
            }
            stored => {
                let mut rows: Vec<Episode> = stored.into_iter().collect();
                for p in &ps {
                    match rows.last_mut() {
                        Some(e) if e.continues(p, &cfg.scan) => e.add(p),
                        _ => rows.push(Episode::new(p)),
                    }
                }
                (rows.first().map_or(0, |e| e.started_ns), rows)
            }
        };
        let episodes: Vec<Scan> = rows.iter().map(|e| e.scan(ip, kind, &cfg.scan)).collect();
        c.add(
            "scans_detected_written",
            episodes.iter().filter(|e| e.detected).count() as u64,
        );
        if let Some(e) = rows.into_iter().next_back() {
            state.episodes.insert((ip, kind), e);
        }
        b.scans.push(ScanReplace {
            attacker_ip: ip,
            kind: kind.name().to_owned(),
            from_ns: from,
            scans: episodes,
        });
    }
    c.add("attackers_updated", attackers.len() as u64);
    b.evidence = ips.into_iter().collect();
    b.attacker_adds = attackers.into_values().collect();
    Ok((b, c))
}
