//! One correlator pass: the repository I/O around the pure rules of [`super::sessions`],
//! [`super::scans`] and [`super::traversal`] (credential reuse is aggregated in SQL; [`super::reuse`] is its reference).
//!
//! Three inputs, each behind its own cursor (worker `correlator`, names `events`, `credentials`,
//! `flows`; position = the last row id done), read in batches of `--batch` rows. Each batch is
//! one transaction that writes everything derived from it **and** moves its cursor, so a crash
//! loses both or neither. What a batch derives is recomputed from the stored facts for the keys
//! the batch touches (see `decnet_core::repo::IntelBatch`), so the tables after a pass do not
//! depend on how the input was batched, interrupted or replayed.
//!
//! Flows are taken only once they have settled (`first_seen` older than `--flow-settle`): the
//! sensor updates a flow row after creating it, and a probe is judged by its final flags.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt as _, TryStreamExt as _};

use decnet_core::{
    model::{AttackerUpdate, FlowRecord, Touch},
    repo::{
        CounterMode, EventFact, IntelBatch, RepoError, Repository, ScanReplace, SessionReplace,
        Write,
    },
    time_fmt::now_ns,
};

use super::{
    scans::{self, Probe, ProbeKind, ScanConfig},
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
}

/// The recorded fleet: decky by IP, service ports.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub by_ip: HashMap<IpAddr, String>,
    pub ip_of: HashMap<String, IpAddr>,
    pub ports: HashMap<(String, String), u16>,
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
        Ok(Directory {
            by_ip,
            ip_of,
            ports,
        })
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

/// Runs batches until no input is pending (or `stop` is set). Returns this pass's counters.
pub async fn run_pass(
    repo: &Repository,
    cfg: &Config,
    stop: &Arc<AtomicBool>,
) -> Result<Counters, RepoError> {
    let mut total = Counters::default();
    let dir = Directory::load(repo).await?;
    // Events first (sessions, attackers, touches), then credentials (reuse), then flows.
    for input in ["events", "credentials", "flows"] {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(total);
            }
            let position = repo
                .cursor(WORKER, &cfg.host, input)
                .await?
                .map_or(0, |c| c.position);
            let (batch, next, c) = match input {
                "events" => {
                    let facts = repo.event_facts_after(position, cfg.batch).await?;
                    let Some(last) = facts.last().map(|f| f.id) else {
                        break;
                    };
                    let (b, c) = events_batch(repo, cfg, &dir, &facts).await?;
                    (b, last, c)
                }
                "credentials" => {
                    let creds = repo.credentials_after(position, cfg.batch).await?;
                    let Some(last) = creds.last().map(|c| c.id) else {
                        break;
                    };
                    let mut c = Counters::default();
                    c.add("credentials_read", creds.len() as u64);
                    let hashes: BTreeSet<[u8; 32]> = creds.iter().map(|c| c.secret_hash).collect();
                    let ips: BTreeSet<IpAddr> = creds.iter().map(|c| c.attacker_ip).collect();
                    let mut b = IntelBatch::default();
                    reuse_for(repo, &hashes, &ips, &mut b, &mut c).await?;
                    (b, last, c)
                }
                _ => {
                    let flows = repo.flows_after(position, cfg.batch).await?;
                    let settled_before = now_ns().saturating_sub(cfg.flow_settle_ns);
                    let settled: Vec<(i64, FlowRecord)> = flows
                        .iter()
                        .take_while(|(_, f)| f.first_seen_ns <= settled_before)
                        .cloned()
                        .collect();
                    let Some(last) = settled.last().map(|(id, _)| *id) else {
                        if !flows.is_empty() {
                            total.add("flows_waiting_to_settle", 1);
                        }
                        break;
                    };
                    let (b, c) = flows_batch(repo, cfg, &dir, &settled).await?;
                    (b, last, c)
                }
            };
            let mut c = c;
            c.add("batches", 1);
            let values = c.values();
            repo.write(&[
                Write::Intel(&batch),
                Write::Cursor {
                    worker: WORKER,
                    host: &cfg.host,
                    name: input,
                    position: next,
                    state: "",
                },
                Write::Counters {
                    worker: WORKER,
                    host: &cfg.host,
                    values: &values,
                    mode: CounterMode::Add,
                },
            ])
            .await?;
            total.merge(&c);
        }
    }
    Ok(total)
}

/// The sessions of `keys` (key → the earliest new evidence), recomputed.
async fn recompute_sessions(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    keys: &BTreeMap<Key, i64>,
    c: &mut Counters,
) -> Result<Vec<SessionReplace>, RepoError> {
    // Keys are independent: read them a few at a time (the pool has several connections; on
    // SQLite, WAL readers do not block each other). Results keep the key order.
    // Owned items: a closure over borrowed items is not `Send` for every lifetime, which
    // `tokio::spawn` (embedded workers) needs.
    let owned: Vec<(Key, i64)> = keys.iter().map(|(k, at)| (k.clone(), *at)).collect();
    let out: Vec<SessionReplace> = futures::stream::iter(owned)
        .map(|(key, at)| async move { recompute_key(repo, cfg, dir, &key, at).await })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    c.add(
        "sessions_written",
        out.iter().map(|r| r.sessions.len() as u64).sum(),
    );
    Ok(out)
}

async fn recompute_key(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    (ip, decky, service): &Key,
    at: i64,
) -> Result<SessionReplace, RepoError> {
    let from = repo
        .session_start_before(*ip, decky, service, at)
        .await?
        .unwrap_or(at)
        .min(at);
    let events = repo.key_events(*ip, decky, service, from).await?;
    let kes: Vec<KeyEvent> = events
        .iter()
        .map(|e| {
            let i = vocab::interpret(&e.event_type, &e.fields);
            KeyEvent {
                ts_ns: e.ts_ns,
                kind: i.kind,
                command: i.command,
            }
        })
        .collect();
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
                )
                .await?;
        }
    }
    Ok(SessionReplace {
        attacker_ip: *ip,
        decky: decky.clone(),
        service: service.clone(),
        from_ns: from,
        sessions,
    })
}

/// Credential reuse for `hashes` (secrets of new credential rows), recomputed in SQL. The
/// attackers of a secret whose target count changed go to the profiler (their "credential
/// reused" factor changed); otherwise only the new rows' attackers do.
async fn reuse_for(
    repo: &Repository,
    hashes: &BTreeSet<[u8; 32]>,
    new_rows: &BTreeSet<IpAddr>,
    b: &mut IntelBatch,
    c: &mut Counters,
) -> Result<(), RepoError> {
    if hashes.is_empty() {
        return Ok(());
    }
    let hashes: Vec<[u8; 32]> = hashes.iter().copied().collect();
    let stored = repo.reuse_target_counts(&hashes).await?;
    let records = repo.reuse_of_secrets(&hashes).await?;
    let mut ips: BTreeSet<IpAddr> = new_rows.clone();
    for r in &records {
        if stored.get(&r.secret_hash) != Some(&r.target_count) {
            ips.extend(repo.secret_attackers(&r.secret_hash, usize::MAX).await?);
        }
    }
    b.evidence = ips.into_iter().collect();
    c.add("reuse_written", records.len() as u64);
    b.reuse = records;
    Ok(())
}

/// Traversals of `ips` from their stored touches plus `new` ones.
async fn traversals_for(
    repo: &Repository,
    ips: &BTreeSet<IpAddr>,
    new: &[Touch],
    b: &mut IntelBatch,
    c: &mut Counters,
) -> Result<(), RepoError> {
    let found: Vec<Option<decnet_core::model::Traversal>> =
        futures::stream::iter(ips.iter().copied().collect::<Vec<IpAddr>>())
            .map(|ip| async move {
                let mut touches = repo.touches(ip).await?;
                touches.extend(new.iter().filter(|t| t.attacker_ip == ip).cloned());
                Ok::<_, RepoError>(traversal::traversal(ip, &touches))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
    b.traversals.extend(found.into_iter().flatten());
    c.add("traversals_written", b.traversals.len() as u64);
    Ok(())
}

/// What a batch of new events changes.
async fn events_batch(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    facts: &[EventFact],
) -> Result<(IntelBatch, Counters), RepoError> {
    let mut c = Counters::default();
    c.add("events_read", facts.len() as u64);
    let mut keys: BTreeMap<Key, i64> = BTreeMap::new();
    let mut touches: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    let mut attackers: BTreeMap<IpAddr, (i64, i64)> = BTreeMap::new();
    for f in facts {
        let Some(ip) = f.attacker_ip else {
            c.add("events_without_attacker", 1);
            continue;
        };
        let i = vocab::interpret(&f.event_type, &f.fields);
        if i.bad_fields {
            c.add("events_bad_fields", 1);
        }
        let key = (ip, f.decky.clone(), f.service.clone());
        let k = keys.entry(key.clone()).or_insert(f.ts_ns);
        *k = (*k).min(f.ts_ns);
        let t = touches.entry(key).or_insert((f.ts_ns, f.ts_ns));
        *t = (t.0.min(f.ts_ns), t.1.max(f.ts_ns));
        let a = attackers.entry(ip).or_insert((f.ts_ns, f.ts_ns));
        *a = (a.0.min(f.ts_ns), a.1.max(f.ts_ns));
    }
    let mut b = IntelBatch {
        sessions: recompute_sessions(repo, cfg, dir, &keys, &mut c).await?,
        touches: touches
            .into_iter()
            .map(|((ip, decky, service), (first, last))| Touch {
                attacker_ip: ip,
                decky,
                service,
                first_seen_ns: first,
                last_seen_ns: last,
            })
            .collect(),
        ..IntelBatch::default()
    };
    let ips: BTreeSet<IpAddr> = attackers.keys().copied().collect();
    let new_touches = b.touches.clone();
    traversals_for(repo, &ips, &new_touches, &mut b, &mut c).await?;
    b.attackers = attackers
        .iter()
        .map(|(ip, (first, last))| AttackerUpdate {
            ip: *ip,
            first_seen_ns: *first,
            last_seen_ns: *last,
            event_count: 0,
            session_count: 0,
            credential_count: 0,
            flow_count: 0,
        })
        .collect();
    b.refresh = ips.iter().copied().collect();
    b.evidence = ips.iter().copied().collect();
    c.add("attackers_updated", ips.len() as u64);
    Ok((b, c))
}

/// A flow that is a server's reply (only used when the fleet is not recorded).
fn looks_like_reply(f: &FlowRecord) -> bool {
    matches!(f.proto, scans::TCP | scans::UDP)
        && f.src_port != 0
        && f.src_port < 1024
        && f.dst_port >= 1024
}

/// What a batch of settled new flows changes.
async fn flows_batch(
    repo: &Repository,
    cfg: &Config,
    dir: &Directory,
    flows: &[(i64, FlowRecord)],
) -> Result<(IntelBatch, Counters), RepoError> {
    let mut c = Counters::default();
    c.add("flows_read", flows.len() as u64);
    let mut b = IntelBatch::default();
    let mut attackers: BTreeMap<IpAddr, (i64, i64)> = BTreeMap::new();
    let mut scan_keys: BTreeMap<IpAddr, BTreeMap<ProbeKind, i64>> = BTreeMap::new();
    let mut session_keys: BTreeMap<Key, i64> = BTreeMap::new();
    for (_, f) in flows {
        if let Some(p) = traversal::pivot(f, &dir.by_ip, &dir.ports) {
            b.pivots.push(p);
            continue;
        }
        if dir.by_ip.contains_key(&f.src_ip) || (dir.by_ip.is_empty() && looks_like_reply(f)) {
            continue; // a decky's reply
        }
        let a = attackers
            .entry(f.src_ip)
            .or_insert((f.first_seen_ns, f.last_seen_ns));
        *a = (a.0.min(f.first_seen_ns), a.1.max(f.last_seen_ns));
        if let Some(kind) = scans::probe_kind(f) {
            c.add("probe_flows", 1);
            let k = scan_keys
                .entry(f.src_ip)
                .or_default()
                .entry(kind)
                .or_insert(f.first_seen_ns);
            *k = (*k).min(f.first_seen_ns);
        } else if let Some(decky) = dir.by_ip.get(&f.dst_ip)
            && let Some(service) = dir.service(decky, f.dst_port)
        {
            let k = session_keys
                .entry((f.src_ip, decky.clone(), service))
                .or_insert(f.first_seen_ns);
            *k = (*k).min(f.first_seen_ns);
        }
    }
    c.add("pivots_written", b.pivots.len() as u64);
    b.sessions = recompute_sessions(repo, cfg, dir, &session_keys, &mut c).await?;
    for (ip, kinds) in &scan_keys {
        let mut froms: Vec<(ProbeKind, i64)> = Vec::new();
        for (kind, at) in kinds {
            let from = repo
                .scan_start_before(*ip, kind.name(), *at)
                .await?
                .unwrap_or(*at)
                .min(*at);
            froms.push((*kind, from));
        }
        let min_from = froms.iter().map(|(_, f)| *f).min().unwrap_or(0);
        let stored = repo.flows_from(*ip, min_from).await?;
        for (kind, from) in froms {
            let probes: Vec<Probe> = stored
                .iter()
                .filter(|f| f.first_seen_ns >= from && scans::probe_kind(f) == Some(kind))
                .map(|f| Probe {
                    first_seen_ns: f.first_seen_ns,
                    last_seen_ns: f.last_seen_ns,
                    host: scans::host_name(f.dst_ip, &dir.by_ip),
                    port: f.dst_port,
                })
                .collect();
            let episodes = scans::episodes(*ip, kind, &probes, &cfg.scan);
            c.add(
                "scans_detected_recomputed",
                episodes.iter().filter(|e| e.detected).count() as u64,
            );
            b.scans.push(ScanReplace {
                attacker_ip: *ip,
                kind: kind.name().to_owned(),
                from_ns: from,
                scans: episodes,
            });
        }
    }
    b.attackers = attackers
        .iter()
        .map(|(ip, (first, last))| AttackerUpdate {
            ip: *ip,
            first_seen_ns: *first,
            last_seen_ns: *last,
            event_count: 0,
            session_count: 0,
            credential_count: 0,
            flow_count: 0,
        })
        .collect();
    let mut ips: BTreeSet<IpAddr> = attackers.keys().copied().collect();
    ips.extend(session_keys.keys().map(|(ip, _, _)| *ip));
    b.refresh = ips.iter().copied().collect();
    b.evidence = ips.into_iter().collect();
    c.add("attackers_updated", attackers.len() as u64);
    Ok((b, c))
}
