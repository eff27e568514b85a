//! Fingerprints from the wire (issue 14): reads the kernel's `FP_EVENTS` ring (SYN / SYN-ACK
//! headers and the leading payload of each direction's first packets), assembles one
//! [`FlowSample`] per TCP flow, has `decnet_fingerprint` compute its fingerprints, and stores them:
//! client-side kinds under the attacker, server-side kinds under the decky.
//!
//! Bounded everywhere: at most `max_flows` flows are being assembled (the oldest is finished
//! early when the table is full — counted as `evicted`), each direction keeps at most `snaplen`
//! bytes, and at most `max_keys` distinct fingerprints are aggregated between writes. A flow is
//! finished `settle` after its last captured packet (capture stops after the first packets of
//! each direction, so nothing more comes), and at shutdown.
//!
//! Attribution: the side that sent the SYN is the client. Only flows whose server is a known
//! decky and whose client is neither a decky nor one of this host's own addresses (decnet's own
//! traffic: the prober, the host) give attacker fingerprints; the server-side kinds of a flow to
//! a decky are the decky's own. A flow whose SYN and SYN-ACK were both missed cannot be oriented
//! and is counted (`unoriented`), never guessed.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use decnet_common::{
    FP_EVENT_DATA, FP_EVENT_HEADER, FlowKey, FpDataEvent, FpHeader, FpHeaderEvent, TCP_ACK, TCP_SYN,
};
use decnet_core::{
    model::{DeckyFingerprint, Fingerprint},
    repo::Repository,
};
use decnet_fingerprint::{Config, FlowSample, Kind, Payload, fingerprints_of};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::watch,
};

use super::flows::{Clock, addr};

/// One decoded fingerprint ring record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpRecord {
    pub h: FpHeader,
    /// The captured bytes (`h.len` of them).
    pub bytes: Vec<u8>,
}

/// Why a ring record was refused (a kernel/agent mismatch; counted as `bad_records`).
pub fn decode(raw: &[u8]) -> Option<FpRecord> {
    let hsize = size_of::<FpHeader>();
    if raw.len() < hsize {
        return None;
    }
    // SAFETY: length checked; FpHeader is plain old data valid for any bit pattern.
    let h = unsafe { std::ptr::read_unaligned(raw.as_ptr() as *const FpHeader) };
    let cap = match h.kind {
        FP_EVENT_HEADER if raw.len() == size_of::<FpHeaderEvent>() => {
            size_of::<FpHeaderEvent>() - hsize
        }
        FP_EVENT_DATA if raw.len() == size_of::<FpDataEvent>() => size_of::<FpDataEvent>() - hsize,
        _ => return None,
    };
    let len = h.len as usize;
    if len > cap || h.dir > 1 {
        return None;
    }
    Some(FpRecord {
        bytes: raw[hsize..hsize + len].to_vec(),
        h,
    })
}

/// The agent's fingerprint counters (`fingerprints` in the summary).
#[derive(Debug, Default)]
pub struct FpCounters {
    /// Ring records read.
    pub records: AtomicU64,
    /// Ring records of the wrong size or shape (ignored).
    pub bad_records: AtomicU64,
    /// Flows assembled into a sample and fingerprinted.
    pub samples: AtomicU64,
    /// Flows finished early because the assembly table was full.
    pub evicted: AtomicU64,
    /// Flows whose SYN and SYN-ACK were both missed: client and server unknown, not used.
    pub unoriented: AtomicU64,
    /// Flows not from an attacker to a decky (decky-originated, decnet's own, or to a non-decky).
    pub not_attacker: AtomicU64,
    /// Fingerprints computed (attacker + decky side), before aggregation.
    pub fingerprints: AtomicU64,
    /// Of those, marked partial (the capture limit cut their input).
    pub partial: AtomicU64,
    /// Malformed protocol data seen by the parsers (TCP/TLS/SSH/HTTP), as `decnet_fingerprint`
    /// counts it.
    pub malformed: AtomicU64,
    /// Structures that ended early without the capture limit being the cause.
    pub incomplete: AtomicU64,
    /// Distinct fingerprints dropped from the aggregation when it was full (their counts restart).
    pub aggregate_evicted: AtomicU64,
    /// Sightings not aggregated because every entry was still waiting for its write.
    pub aggregate_dropped: AtomicU64,
    /// Rows upserted (attacker + decky).
    pub rows_written: AtomicU64,
    /// Repository errors (the batch is kept and retried).
    pub db_errors: AtomicU64,
}

impl FpCounters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn named(&self) -> BTreeMap<&'static str, u64> {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BTreeMap::from([
            ("records", l(&self.records)),
            ("bad_records", l(&self.bad_records)),
            ("samples", l(&self.samples)),
            ("evicted", l(&self.evicted)),
            ("unoriented", l(&self.unoriented)),
            ("not_attacker", l(&self.not_attacker)),
            ("fingerprints", l(&self.fingerprints)),
            ("partial", l(&self.partial)),
            ("malformed", l(&self.malformed)),
            ("incomplete", l(&self.incomplete)),
            ("aggregate_evicted", l(&self.aggregate_evicted)),
            ("aggregate_dropped", l(&self.aggregate_dropped)),
            ("rows_written", l(&self.rows_written)),
            ("db_errors", l(&self.db_errors)),
        ])
    }
}

/// Settings of the userspace side.
#[derive(Debug, Clone)]
pub struct FpSettings {
    /// Bytes kept per direction (the kernel's snap length).
    pub snaplen: usize,
    pub settle: Duration,
    pub max_flows: usize,
    pub max_keys: usize,
    pub flush_every: Duration,
    pub config: Config,
    /// Client addresses that are never attackers (this host's own; `--fp-exclude`).
    pub own: HashSet<IpAddr>,
    /// `--fp-dump`: every assembled sample as a JSON line (tests, debugging).
    pub dump: Option<std::path::PathBuf>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One JSON line describing a sample, byte for byte (hex).
pub fn dump_line(o: &Oriented) -> String {
    let s = &o.sample;
    let opt = |b: &Option<Vec<u8>>| b.as_deref().map(hex);
    let pay = |p: &Option<Payload>| p.as_ref().map(|p| (hex(&p.bytes), p.truncated));
    serde_json::json!({
        "client": o.client.to_string(),
        "server": o.server.to_string(),
        "server_port": o.server_port,
        "client_port": o.client_port,
        "client_syn": opt(&s.client_syn),
        "server_synack": opt(&s.server_synack),
        "client_payload": pay(&s.client_payload),
        "server_payload": pay(&s.server_payload),
    })
    .to_string()
}

/// One data chunk of a direction.
#[derive(Debug, Clone)]
struct Chunk {
    seq: u32,
    bytes: Vec<u8>,
    /// The segment carried more than was captured.
    cut: bool,
}

#[derive(Debug, Default)]
struct Dir {
    /// The SYN (dir's flags SYN, no ACK) or SYN-ACK headers, first seen.
    header: Option<(u8, u32, Vec<u8>)>,
    chunks: Vec<Chunk>,
    ifindex: u32,
}

#[derive(Debug)]
struct Pending {
    first_ns: u64,
    last_ns: u64,
    touched: Instant,
    dirs: [Dir; 2],
}

/// A flow's sample, oriented, with where it was seen.
#[derive(Debug, Clone)]
pub struct Oriented {
    pub sample: FlowSample,
    pub client: IpAddr,
    pub server: IpAddr,
    pub server_port: u16,
    pub client_port: u16,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// The bounded table of flows being assembled.
pub struct Assembler {
    flows: HashMap<FlowKey, Pending>,
    snaplen: usize,
    max_flows: usize,
    /// Bound on the chunks kept per direction (the kernel sends at most FP_PACKETS of them;
    /// duplicates from a racing CPU or a retransmission included).
    max_chunks: usize,
}

impl Assembler {
    pub fn new(snaplen: usize, max_flows: usize) -> Self {
        Self {
            flows: HashMap::new(),
            snaplen,
            max_flows: max_flows.max(1),
            max_chunks: decnet_common::MAX_FP_PACKETS as usize * 2,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Adds one record; returns the samples of flows finished early to make room.
    pub fn add(&mut self, r: FpRecord, now: Instant, c: &FpCounters) -> Vec<Oriented> {
        let mut out = Vec::new();
        if !self.flows.contains_key(&r.h.key) && self.flows.len() >= self.max_flows {
            // Finish the least recently touched flow with what it has.
            if let Some(k) = self
                .flows
                .iter()
                .min_by_key(|(_, p)| p.touched)
                .map(|(k, _)| *k)
                && let Some(p) = self.flows.remove(&k)
            {
                FpCounters::add(&c.evicted, 1);
                out.extend(self.finish(&k, p, c));
            }
        }
        let p = self.flows.entry(r.h.key).or_insert_with(|| Pending {
            first_ns: r.h.ts_ns,
            last_ns: r.h.ts_ns,
            touched: now,
            dirs: Default::default(),
        });
        p.touched = now;
        p.first_ns = p.first_ns.min(r.h.ts_ns);
        p.last_ns = p.last_ns.max(r.h.ts_ns);
        let d = &mut p.dirs[usize::from(r.h.dir & 1)];
        if d.ifindex == 0 {
            d.ifindex = r.h.ifindex;
        }
        match r.h.kind {
            FP_EVENT_HEADER => {
                if d.header.is_none() {
                    d.header = Some((r.h.tcp_flags, r.h.seq, r.bytes));
                }
            }
            _ => {
                if d.chunks.len() < self.max_chunks {
                    d.chunks.push(Chunk {
                        seq: r.h.seq,
                        cut: r.h.wire_len > r.h.len,
                        bytes: r.bytes,
                    });
                }
            }
        }
        out
    }

    /// Finishes flows untouched for `settle` (all of them with `Duration::ZERO`).
    pub fn settle(&mut self, now: Instant, settle: Duration, c: &FpCounters) -> Vec<Oriented> {
        let done: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.touched) >= settle)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in done {
            if let Some(p) = self.flows.remove(&k) {
                out.extend(self.finish(&k, p, c));
            }
        }
        out
    }

    fn finish(&self, key: &FlowKey, p: Pending, c: &FpCounters) -> Option<Oriented> {
        let is = |d: &Dir, want: u8| {
            d.header
                .as_ref()
                .is_some_and(|(f, _, _)| f & (TCP_SYN | TCP_ACK) == want)
        };
        // The client is the side that sent the SYN; else the other side of the SYN-ACK.
        let client = if is(&p.dirs[0], TCP_SYN) || is(&p.dirs[1], TCP_SYN | TCP_ACK) {
            0
        } else if is(&p.dirs[1], TCP_SYN) || is(&p.dirs[0], TCP_SYN | TCP_ACK) {
            1
        } else {
            FpCounters::add(&c.unoriented, 1);
            return None;
        };
        let server = 1 - client;
        let (a, b) = (addr(key.family, &key.addr_a), addr(key.family, &key.addr_b));
        let (client_ip, server_ip, client_port, server_port) = if client == 0 {
            (a, b, key.port_a, key.port_b)
        } else {
            (b, a, key.port_b, key.port_a)
        };
        let header = |d: &Dir, want: u8| match &d.header {
            Some((f, _, bytes)) if f & (TCP_SYN | TCP_ACK) == want => Some(bytes.clone()),
            _ => None,
        };
        let sample = FlowSample {
            proto: key.proto,
            server_port,
            client_syn: header(&p.dirs[client], TCP_SYN),
            server_synack: header(&p.dirs[server], TCP_SYN | TCP_ACK),
            client_payload: reassemble(&p.dirs[client], self.snaplen),
            server_payload: reassemble(&p.dirs[server], self.snaplen),
        };
        Some(Oriented {
            sample,
            client: client_ip,
            server: server_ip,
            server_port,
            client_port,
            first_ns: p.first_ns,
            last_ns: p.last_ns,
        })
    }
}

/// The contiguous leading bytes of one direction, from its chunks placed by TCP sequence number
/// (the SYN's ISN + 1 is offset 0 when the SYN was seen; else the lowest sequence captured).
/// Duplicates (retransmissions) are skipped; a gap, a cut segment or the snap length ends it, and
/// marks it truncated when bytes are known to be missing.
fn reassemble(d: &Dir, snaplen: usize) -> Option<Payload> {
    if d.chunks.is_empty() {
        return None;
    }
    let base = match &d.header {
        Some((_, isn, _)) => isn.wrapping_add(1),
        None => {
            // The lowest sequence in modular order relative to the first chunk.
            let first = d.chunks[0].seq;
            d.chunks
                .iter()
                .map(|ch| ch.seq)
                .min_by_key(|s| s.wrapping_sub(first) as i32)
                .unwrap_or(first)
        }
    };
    let mut chunks: Vec<(u32, &Chunk)> = d
        .chunks
        .iter()
        .map(|ch| (ch.seq.wrapping_sub(base), ch))
        // Data before the base (a SYN with data is offset 0 only after the ISN) or absurdly far.
        .filter(|(off, _)| (*off as usize) < (1 << 30))
        .collect();
    chunks.sort_by_key(|(off, ch)| (*off, std::cmp::Reverse(ch.bytes.len())));
    let mut out: Vec<u8> = Vec::new();
    let mut truncated = false;
    for (off, ch) in chunks {
        let off = off as usize;
        let end = off + ch.bytes.len();
        if off > out.len() {
            truncated = true; // a gap: a segment in between was not captured
            break;
        }
        if end <= out.len() {
            continue; // a duplicate
        }
        out.extend_from_slice(&ch.bytes[out.len() - off..]);
        if ch.cut {
            truncated = true;
            break;
        }
    }
    if out.len() > snaplen {
        out.truncate(snaplen);
        truncated = true;
    }
    if out.is_empty() {
        return None;
    }
    Some(Payload {
        bytes: out,
        truncated,
    })
}

/// True for the kinds that describe the server (the decky).
pub fn server_side(k: Kind) -> bool {
    matches!(
        k,
        Kind::TcpSynAck | Kind::Ja3s | Kind::Ja4s | Kind::HasshServer | Kind::SshServerBanner
    )
}

/// Decky addresses → names, refreshed from the repository.
#[derive(Debug, Clone, Default)]
pub struct Deckies(Arc<RwLock<HashMap<IpAddr, String>>>);

impl Deckies {
    pub fn set(&self, m: HashMap<IpAddr, String>) {
        if let Ok(mut g) = self.0.write() {
            *g = m;
        }
    }
    pub fn name(&self, ip: &IpAddr) -> Option<String> {
        self.0.read().ok().and_then(|g| g.get(ip).cloned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AggKey {
    Attacker {
        kind: Kind,
        value: String,
        ip: IpAddr,
        decky: String,
        port: u16,
    },
    Decky {
        kind: Kind,
        value: String,
        decky: String,
        port: u16,
    },
}

#[derive(Debug, Clone)]
struct Agg {
    count: u64,
    first_ns: i64,
    last_ns: i64,
    raw: Option<String>,
    label: Option<String>,
    partial: bool,
    dirty: bool,
}

/// Running totals per distinct fingerprint: the count written is the total since this process
/// (or this entry) started, merged as a maximum by the repository, so rewriting is idempotent.
#[derive(Default)]
pub struct Aggregate {
    map: HashMap<AggKey, Agg>,
}

impl Aggregate {
    /// Adds the fingerprints of one oriented sample.
    pub fn add(
        &mut self,
        o: &Oriented,
        s: &FpSettings,
        deckies: &Deckies,
        clock: Clock,
        c: &FpCounters,
    ) {
        if let Some(path) = &s.dump {
            use std::io::Write as _;
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{}", dump_line(o)));
            if let Err(e) = res {
                tracing::warn!(path = %path.display(), "--fp-dump: {e}");
            }
        }
        let out = fingerprints_of(&o.sample, &s.config);
        FpCounters::add(&c.samples, 1);
        FpCounters::add(&c.malformed, out.counters.malformed());
        FpCounters::add(&c.incomplete, out.counters.incomplete);
        let Some(decky) = deckies.name(&o.server) else {
            FpCounters::add(&c.not_attacker, 1);
            return;
        };
        let attacker = deckies.name(&o.client).is_none() && !s.own.contains(&o.client);
        if !attacker {
            FpCounters::add(&c.not_attacker, 1);
        }
        let (first, last) = (clock.to_unix_ns(o.first_ns), clock.to_unix_ns(o.last_ns));
        for f in out.fingerprints {
            let key = if server_side(f.kind) {
                AggKey::Decky {
                    kind: f.kind,
                    value: f.value,
                    decky: decky.clone(),
                    port: o.server_port,
                }
            } else if attacker {
                AggKey::Attacker {
                    kind: f.kind,
                    value: f.value,
                    ip: o.client,
                    decky: decky.clone(),
                    port: o.server_port,
                }
            } else {
                continue;
            };
            FpCounters::add(&c.fingerprints, 1);
            if f.partial {
                FpCounters::add(&c.partial, 1);
            }
            if !self.map.contains_key(&key) && self.map.len() >= s.max_keys {
                // Keep memory bounded: forget the clean entries (already written).
                let before = self.map.len();
                self.map.retain(|_, a| a.dirty);
                FpCounters::add(&c.aggregate_evicted, (before - self.map.len()) as u64);
                if self.map.len() >= s.max_keys {
                    // Every entry awaits its write (the repository is failing): counted.
                    FpCounters::add(&c.aggregate_dropped, 1);
                    continue;
                }
            }
            let a = self.map.entry(key).or_insert(Agg {
                count: 0,
                first_ns: first,
                last_ns: last,
                raw: None,
                label: None,
                partial: true,
                dirty: true,
            });
            a.count += 1;
            a.first_ns = a.first_ns.min(first);
            a.last_ns = a.last_ns.max(last);
            if f.raw.is_some() {
                a.raw = f.raw;
            }
            if f.label.is_some() {
                a.label = f.label;
            }
            a.partial &= f.partial;
            a.dirty = true;
        }
    }

    /// The rows changed since the last successful write.
    pub fn dirty(&self) -> (Vec<Fingerprint>, Vec<DeckyFingerprint>) {
        let (mut att, mut dec) = (Vec::new(), Vec::new());
        for (k, a) in self.map.iter().filter(|(_, a)| a.dirty) {
            match k {
                AggKey::Attacker {
                    kind,
                    value,
                    ip,
                    decky,
                    port,
                } => att.push(Fingerprint {
                    kind: kind.as_str().to_string(),
                    value: value.clone(),
                    attacker_ip: *ip,
                    first_seen_ns: a.first_ns,
                    last_seen_ns: a.last_ns,
                    count: a.count,
                    raw: a.raw.clone(),
                    label: a.label.clone(),
                    partial: a.partial,
                    decky: decky.clone(),
                    port: *port,
                }),
                AggKey::Decky {
                    kind,
                    value,
                    decky,
                    port,
                } => dec.push(DeckyFingerprint {
                    decky: decky.clone(),
                    port: *port,
                    kind: kind.as_str().to_string(),
                    value: value.clone(),
                    raw: a.raw.clone(),
                    label: a.label.clone(),
                    partial: a.partial,
                    first_seen_ns: a.first_ns,
                    last_seen_ns: a.last_ns,
                    count: a.count,
                }),
            }
        }
        (att, dec)
    }

    pub fn mark_clean(&mut self) {
        for a in self.map.values_mut() {
            a.dirty = false;
        }
    }
}

/// This host's own addresses (every interface of the sniffer's network namespace).
pub fn local_addresses() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below; we only read it.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it announces.
            unsafe {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        out.insert(IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.insert(IpAddr::from(sa.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// Loads the decky addresses from the repository.
pub async fn refresh_deckies(repo: &Repository, deckies: &Deckies) {
    match repo.deckies().await {
        Ok(list) => deckies.set(list.into_iter().map(|d| (d.ip, d.name)).collect()),
        Err(e) => tracing::warn!("cannot read the deckies for fingerprint attribution: {e:#}"),
    }
}

/// Drains the fingerprint ring into the assembler.
pub fn drain(ring: &mut RingBuf<MapData>, asm: &mut Assembler, c: &FpCounters) -> Vec<Oriented> {
    let now = Instant::now();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        FpCounters::add(&c.records, 1);
        match decode(&item) {
            Some(r) => out.extend(asm.add(r, now, c)),
            None => FpCounters::add(&c.bad_records, 1),
        }
    }
    out
}

async fn write(repo: &Repository, agg: &mut Aggregate, c: &FpCounters) {
    let (att, dec) = agg.dirty();
    if att.is_empty() && dec.is_empty() {
        return;
    }
    match repo.record_fingerprints(&att, &dec).await {
        Ok(_) => {
            FpCounters::add(&c.rows_written, (att.len() + dec.len()) as u64);
            agg.mark_clean();
        }
        Err(e) => {
            FpCounters::add(&c.db_errors, 1);
            tracing::error!("writing fingerprints failed (kept, retried): {e:#}");
        }
    }
}

/// Runs until `stop`; then drains the ring once more (the program is detached by then),
/// finishes every flow and writes everything.
pub async fn run(
    ring: RingBuf<MapData>,
    repo: Repository,
    settings: FpSettings,
    clock: Clock,
    counters: Arc<FpCounters>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // SAFETY: the ring owns its map fd, open while the AsyncFd holds it.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll the fingerprint ring: {}", e.into_parts().1))?;
    let deckies = Deckies::default();
    refresh_deckies(&repo, &deckies).await;
    let mut asm = Assembler::new(settings.snaplen, settings.max_flows);
    let mut agg = Aggregate::default();
    let mut tick = tokio::time::interval(settings.flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let done = drain(guard.get_inner_mut(), &mut asm, &counters);
                guard.clear_ready();
                for o in &done {
                    agg.add(o, &settings, &deckies, clock, &counters);
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(5) {
                    refresh_deckies(&repo, &deckies).await;
                }
                for o in asm.settle(Instant::now(), settings.settle, &counters) {
                    agg.add(&o, &settings, &deckies, clock, &counters);
                }
                write(&repo, &mut agg, &counters).await;
            }
            _ = stop.changed() => break,
        }
    }
    let mut ring = fd.into_inner();
    refresh_deckies(&repo, &deckies).await;
    let mut done = drain(&mut ring, &mut asm, &counters);
    done.extend(asm.settle(Instant::now(), Duration::ZERO, &counters));
    for o in &done {
        agg.add(o, &settings, &deckies, clock, &counters);
    }
    write(&repo, &mut agg, &counters).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(isn: Option<u32>, chunks: &[(u32, &[u8], bool)]) -> Dir {
        Dir {
            header: isn.map(|i| (TCP_SYN, i, vec![0x45])),
            chunks: chunks
                .iter()
                .map(|(s, b, cut)| Chunk {
                    seq: *s,
                    bytes: b.to_vec(),
                    cut: *cut,
                })
                .collect(),
            ifindex: 1,
        }
    }

    #[test]
    fn reassembly_orders_dedups_and_marks_truncation() {
        // Out of order, with a retransmission, across the sequence wrap.
        let isn = u32::MAX - 2;
        let d = dir(
            Some(isn),
            &[
                (isn.wrapping_add(4), b"def", false),
                (isn.wrapping_add(1), b"abc", false),
                (isn.wrapping_add(4), b"def", false),
            ],
        );
        let p = reassemble(&d, 100).unwrap();
        assert_eq!((p.bytes.as_slice(), p.truncated), (&b"abcdef"[..], false));
        // A gap ends it, truncated.
        let d = dir(Some(0), &[(1, b"abc", false), (10, b"zzz", false)]);
        let p = reassemble(&d, 100).unwrap();
        assert_eq!((p.bytes.as_slice(), p.truncated), (&b"abc"[..], true));
        // A cut segment ends it, truncated.
        let d = dir(Some(0), &[(1, b"abc", true), (4, b"def", false)]);
        assert!(reassemble(&d, 100).unwrap().truncated);
        // The snap length.
        let d = dir(None, &[(50, b"abcdef", false)]);
        let p = reassemble(&d, 4).unwrap();
        assert_eq!((p.bytes.as_slice(), p.truncated), (&b"abcd"[..], true));
        // Nothing captured.
        assert_eq!(reassemble(&dir(Some(0), &[]), 4), None);
    }

    fn rec(port: u16, kind: u32, dir: u8, flags: u8, seq: u32, bytes: &[u8]) -> FpRecord {
        let mut key = FlowKey {
            proto: 6,
            family: decnet_common::FAMILY_V4,
            port_a: 443,
            port_b: port,
            ..Default::default()
        };
        key.addr_a[..4].copy_from_slice(&[10, 0, 0, 1]);
        key.addr_b[..4].copy_from_slice(&[10, 0, 0, 2]);
        FpRecord {
            h: FpHeader {
                kind,
                len: bytes.len() as u32,
                wire_len: bytes.len() as u32,
                seq,
                dir,
                tcp_flags: flags,
                key,
                ..Default::default()
            },
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn assembler_orients_bounds_and_counts() {
        let c = FpCounters::default();
        let mut asm = Assembler::new(64, 2);
        let t = Instant::now();
        // Flow 1: the client (b, dir 1) sends the SYN; the server answers and sends data.
        assert!(
            asm.add(rec(5000, FP_EVENT_HEADER, 1, TCP_SYN, 99, &[0x45]), t, &c)
                .is_empty()
        );
        asm.add(
            rec(5000, FP_EVENT_HEADER, 0, TCP_SYN | TCP_ACK, 9, &[0x45, 1]),
            t,
            &c,
        );
        asm.add(rec(5000, FP_EVENT_DATA, 1, TCP_ACK, 100, b"hello"), t, &c);
        // Flow 2: no SYN, no SYN-ACK seen: cannot be oriented.
        asm.add(
            rec(5001, FP_EVENT_DATA, 1, TCP_ACK, 7, b"x"),
            t + Duration::from_micros(500),
            &c,
        );
        // Flow 3 does not fit: the least recently touched (flow 1) is finished early.
        let early = asm.add(
            rec(5002, FP_EVENT_DATA, 1, TCP_ACK, 7, b"y"),
            t + Duration::from_millis(1),
            &c,
        );
        assert_eq!(asm.len(), 2);
        assert_eq!(c.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(early.len(), 1);
        let o = &early[0];
        assert_eq!(o.client.to_string(), "10.0.0.2");
        assert_eq!((o.client_port, o.server_port), (5000, 443));
        assert_eq!(o.sample.client_syn.as_deref(), Some(&[0x45][..]));
        assert_eq!(o.sample.server_synack.as_deref(), Some(&[0x45, 1][..]));
        assert_eq!(o.sample.client_payload.as_ref().unwrap().bytes, b"hello");
        assert_eq!(o.sample.server_payload, None);
        // Settling finishes the rest; neither can be oriented.
        let rest = asm.settle(t + Duration::from_secs(10), Duration::from_secs(1), &c);
        assert!(rest.is_empty() && asm.is_empty());
        assert_eq!(c.unoriented.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn decode_refuses_wrong_shapes() {
        let mut ev = FpHeaderEvent {
            h: FpHeader {
                kind: FP_EVENT_HEADER,
                len: 3,
                ..Default::default()
            },
            bytes: [7; decnet_common::FP_HDR_MAX],
        };
        // SAFETY: reading the bytes of a POD value.
        let raw = |e: &FpHeaderEvent| unsafe {
            std::slice::from_raw_parts(e as *const _ as *const u8, size_of::<FpHeaderEvent>())
                .to_vec()
        };
        assert_eq!(decode(&raw(&ev)).unwrap().bytes, vec![7, 7, 7]);
        ev.h.len = 1000; // lies about its length
        assert!(decode(&raw(&ev)).is_none());
        ev.h.len = 3;
        ev.h.kind = FP_EVENT_DATA; // a data record must be the data size
        assert!(decode(&raw(&ev)).is_none());
        assert!(decode(&[0; 8]).is_none());
    }
}
