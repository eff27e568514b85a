//! Records the decnet workers produce and store.
//!
//! [`FlowRecord`] is one direction of one flow as the sniffer exports it. The same flow may be
//! exported several times (a start event, then the final sweep); exports of the same flow share a
//! [`FlowIdentity`] and combine with [`FlowRecord::merge`], which is also what the repository's
//! upsert does in SQL.

use std::net::IpAddr;

use serde::Serialize;

/// One direction of one flow seen on a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// Name of the bridge the sensor watches.
    pub bridge: String,
    /// Bridge port (interface name) where this direction entered the bridge.
    pub port: String,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IANA protocol number.
    pub proto: u8,
    /// 802.1Q VLAN id, 0 when untagged.
    pub vlan: u16,
    pub packets: u64,
    pub bytes: u64,
    /// Union of the TCP flags seen.
    pub tcp_flags: u8,
    /// Unix epoch nanoseconds, UTC.
    pub first_seen_ns: i64,
    /// Unix epoch nanoseconds, UTC.
    pub last_seen_ns: i64,
    /// TCP FIN seen both ways, or RST seen.
    pub ended: bool,
}

/// What makes two [`FlowRecord`]s exports of the same flow (the repository's unique key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowIdentity {
    pub bridge: String,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub vlan: u16,
    pub first_seen_ns: i64,
}

impl FlowRecord {
    /// Combines another export of the same flow into `self`: counters take the maximum (an export
    /// never undercounts a later one), flags are OR-ed, the time span widens, `ended` is sticky.
    /// `port` keeps `self`'s value.
    pub fn merge(&mut self, other: &FlowRecord) {
        self.packets = self.packets.max(other.packets);
        self.bytes = self.bytes.max(other.bytes);
        self.tcp_flags |= other.tcp_flags;
        self.first_seen_ns = self.first_seen_ns.min(other.first_seen_ns);
        self.last_seen_ns = self.last_seen_ns.max(other.last_seen_ns);
        self.ended |= other.ended;
    }

    /// The flow's identity: bridge, 5-tuple, VLAN and first-seen time.
    pub fn identity(&self) -> FlowIdentity {
        FlowIdentity {
            bridge: self.bridge.clone(),
            src_ip: self.src_ip,
            dst_ip: self.dst_ip,
            src_port: self.src_port,
            dst_port: self.dst_port,
            proto: self.proto,
            vlan: self.vlan,
            first_seen_ns: self.first_seen_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    fn flow() -> FlowRecord {
        FlowRecord {
            bridge: "br0".into(),
            port: "veth1".into(),
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 40000,
            dst_port: 22,
            proto: 6,
            vlan: 0,
            packets: 3,
            bytes: 180,
            tcp_flags: 0x02,
            first_seen_ns: 1_000,
            last_seen_ns: 2_000,
            ended: false,
        }
    }

    #[test]
    fn merge_takes_max_union_and_span() {
        let mut a = flow();
        let mut b = flow();
        b.port = "veth9".into();
        b.packets = 10;
        b.bytes = 100; // smaller: must not shrink
        b.tcp_flags = 0x11;
        b.last_seen_ns = 5_000;
        b.ended = true;
        a.merge(&b);
        assert_eq!(a.packets, 10);
        assert_eq!(a.bytes, 180);
        assert_eq!(a.tcp_flags, 0x13);
        assert_eq!(a.first_seen_ns, 1_000);
        assert_eq!(a.last_seen_ns, 5_000);
        assert!(a.ended);
        assert_eq!(a.port, "veth1");

        // Merging is idempotent and ended never resets.
        let snapshot = a.clone();
        a.merge(&flow());
        assert_eq!(a, snapshot);
    }

    #[test]
    fn identity_ignores_counters_and_port() {
        let a = flow();
        let mut b = flow();
        b.packets = 99;
        b.port = "other".into();
        b.last_seen_ns = 9;
        b.ended = true;
        let mut c = flow();
        c.first_seen_ns += 1;
        let set: HashSet<FlowIdentity> = [a.identity(), b.identity(), c.identity()].into();
        assert_eq!(set.len(), 2);
        assert_eq!(a.identity(), b.identity());
    }
}

// --- the rest of the data model (see `crate::repo` for how each is stored and merged) ---------

/// A decoy-service log event as ingested (the collector's output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub ts_ns: i64,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: Option<IpAddr>,
    pub attacker_port: Option<u16>,
    /// The event's fields as a JSON object (text, serialised once by the producer).
    pub fields: String,
    /// The raw line, byte for byte (bounded by the repository).
    pub raw: Vec<u8>,
    /// What makes re-ingest idempotent: by default the SHA-256 of `raw`; a producer may supply
    /// its own (e.g. a hash of source + offset when identical lines are distinct events).
    pub dedup_key: Option<[u8; 32]>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: i64,
    pub ts_ns: i64,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: Option<IpAddr>,
    pub attacker_port: Option<u16>,
    pub fields: String,
    pub raw: Vec<u8>,
}

/// Facts about an attacker to merge into its row (one row per IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackerUpdate {
    pub ip: IpAddr,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub event_count: u64,
    pub session_count: u64,
    pub credential_count: u64,
    pub flow_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attacker {
    pub id: i64,
    pub ip: IpAddr,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub event_count: u64,
    pub session_count: u64,
    pub credential_count: u64,
    pub flow_count: u64,
}

/// An attacker touched a (decky, service) pair; ordered by `first_seen` these form its
/// traversal path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Touch {
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// A fingerprint seen from an attacker (kind: tcp_syn, ja3, ja4, hassh, http_user_agent, …; see
/// `decnet_fingerprint::Kind`). One row per (kind, value, attacker, decky, port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub kind: String,
    pub value: String,
    pub attacker_ip: IpAddr,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// Sightings, derived from the facts by the producer (merged as a maximum).
    pub count: u64,
    /// The string the method hashes (JA3's decimal string, HASSH's lists, …), where it has one.
    pub raw: Option<String>,
    /// An OS / tool label (p0f's database), where the method has one.
    pub label: Option<String>,
    /// The input was cut short: the value is known to be incomplete.
    pub partial: bool,
    /// The decky and its (server) port where it was seen; "" / 0 when unknown.
    pub decky: String,
    pub port: u16,
}

/// A decky's own fingerprint (its SYN-ACK, TLS/SSH server hello): what the prober compares with
/// the persona. Stored apart from attackers' fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeckyFingerprint {
    pub decky: String,
    pub port: u16,
    pub kind: String,
    pub value: String,
    pub raw: Option<String>,
    pub label: Option<String>,
    pub partial: bool,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// Sightings (merged as a maximum, like [`Fingerprint::count`]).
    pub count: u64,
}

/// A credential attempt (or several of the same), as captured by a decoy service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialAttempt {
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    /// The login name, byte for byte.
    pub principal: Vec<u8>,
    /// password, public_key, hash, …
    pub secret_kind: String,
    /// The secret, byte for byte; stored as its SHA-256 and a printable form.
    pub secret: Vec<u8>,
    /// Attempts with this exact credential, derived from the facts (merged as a maximum).
    pub attempts: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub id: i64,
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub principal: Vec<u8>,
    pub secret_kind: String,
    pub secret_hash: [u8; 32],
    pub secret_printable: String,
    pub attempts: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// An attacker × decky × service session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub started_ns: i64,
    pub ended_ns: i64,
    pub event_count: u64,
    pub bytes: u64,
    pub commands: Vec<String>,
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ScoreFactor {
    pub factor: String,
    pub weight: i32,
}

/// The profiler's verdict on an attacker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttackerProfile {
    pub attacker_ip: IpAddr,
    pub behaviour: String,
    /// 0–100.
    pub score: u8,
    pub factors: Vec<ScoreFactor>,
    pub tools: Vec<String>,
    pub techniques: Vec<String>,
    /// The newest evidence the profile covers; an older profile never replaces a newer one.
    pub evidence_until_ns: i64,
    pub computed_at_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeckyService {
    pub service: String,
    pub port: u16,
    /// JSON object.
    pub settings: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decky {
    pub name: String,
    pub ip: IpAddr,
    pub hostname: String,
    pub os_family: String,
    pub archetype: String,
    /// JSON object.
    pub persona: String,
    pub status: String,
    pub services: Vec<DeckyService>,
}

/// How bad a realism finding is; `Pass` for a check that passed (stored too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Pass,
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Pass,
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Pass => "pass",
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One check of the prober as it is now: what it expected of the decky, what it saw, and
/// since when (the outcome's first and last sweep; when a finding turned into a pass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub decky: String,
    /// The check's name (`ssh_banner`, `tcp_stack`, `fleet_ssh_host_key` …).
    pub check: String,
    /// What was probed: `ssh/22`, `stack`, `fleet`.
    pub subject: String,
    pub severity: Severity,
    pub expected: String,
    pub seen: String,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub resolved_at_ns: Option<i64>,
}

/// One outcome of a sweep, before it is stored (see `WriteTx::record_probe_results`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeOutcome {
    pub decky: String,
    pub check: String,
    pub subject: String,
    pub severity: Severity,
    pub expected: String,
    pub seen: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mutation {
    pub ts_ns: i64,
    pub decky: String,
    pub kind: String,
    /// JSON.
    pub detail: String,
    pub status: String,
}

/// One desired state of a deployment's fleet (`fleet_generations`; the generation is `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetGeneration {
    pub id: i64,
    pub bridge: String,
    /// JSON: the effective fleet (what should run).
    pub fleet: String,
    /// JSON: the fleet file it derives from (a file edit is diffed against this).
    pub file_fleet: String,
    /// JSON array: decky names whose processes are to be restarted.
    pub restart: String,
    /// `deploy`, `file`, `operator`, `schedule`.
    pub cause: String,
    pub actor: String,
    pub request_id: Option<i64>,
    /// `pending`, `applied`, `failed`, `superseded`.
    pub status: String,
    pub reason: String,
    pub created_ns: i64,
    pub applied_ns: Option<i64>,
}

/// An operator's request for a decky (`mutation_requests`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MutationRequest {
    pub id: i64,
    pub decky: String,
    /// `mutate`, `rotate_services`, `restart`, `set_mutate_interval`.
    pub action: String,
    /// JSON object (e.g. `{"interval":"30m"}`).
    pub args: String,
    pub requested_by: String,
    pub requested_ns: i64,
    /// `pending`, `claimed`, `applied`, `failed`.
    pub status: String,
    pub claimed_by: String,
    pub reason: String,
    pub updated_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    /// argon2 PHC string.
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub must_change_password: bool,
    /// Tokens issued at an older generation are refused (bumped by a password change or reset,
    /// a role change and deletion).
    #[serde(skip)]
    pub token_generation: i64,
}

/// Who holds a worker lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub kind: String,
    pub host: String,
    pub holder: String,
    pub pid: u32,
    pub acquired_at_ns: i64,
    pub heartbeat_at_ns: i64,
}

/// A worker's resume point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub position: i64,
    pub state: String,
}

// --- what the correlator derives (migration 0004; see `crate::repo::IntelBatch`) ----------

/// A probe episode from flows: probe flows of one kind from one attacker, each within the scan
/// gap of the previous one. `detected` says whether it passed the scan thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    pub attacker_ip: IpAddr,
    /// `tcp_syn`, `tcp_connect`, `udp` or `ping_sweep`.
    pub kind: String,
    pub started_ns: i64,
    pub ended_ns: i64,
    /// Probe flows in the episode.
    pub probes: u64,
    /// Distinct destination ports (`ports` lists at most the first few hundred, sorted).
    pub port_count: u64,
    pub ports: Vec<u16>,
    /// Distinct destination hosts (decky names where known, else IPs; bounded, sorted).
    pub host_count: u64,
    pub hosts: Vec<String>,
    /// Probes per minute over the episode (a one-instant episode counts as one second).
    pub rate_per_min: u64,
    pub detected: bool,
}

/// One hop of a traversal: the first time the attacker touched a decky.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hop {
    pub decky: String,
    pub first_seen_ns: i64,
}

/// Lateral movement: an attacker that touched at least two deckies, hops in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Traversal {
    pub attacker_ip: IpAddr,
    pub hops: Vec<Hop>,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// A decky that opened connections to another decky: someone pivots from a compromised decky.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pivot {
    pub src_decky: String,
    pub dst_decky: String,
    pub dst_port: u16,
    pub proto: u8,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// The same secret tried against at least two (decky, service) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialReuse {
    pub secret_hash: [u8; 32],
    pub secret_kind: String,
    pub secret_printable: String,
    pub target_count: u64,
    /// `decky/service`, sorted, bounded.
    pub targets: Vec<String>,
    pub attacker_count: u64,
    /// Attacker IPs, sorted, bounded.
    pub attackers: Vec<String>,
    /// Credential rows (distinct attacker × target × principal) with this secret.
    pub credential_rows: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}
