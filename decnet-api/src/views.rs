//! What the API returns: the repository's records as JSON for people and browsers. Times are
//! RFC 3339 text (UTC, nanoseconds); attacker-supplied bytes are decoded lossily as UTF-8 (the
//! dashboard renders every string as text, never as HTML).
use decnet_core::{
    model::{Credential, Decky, Event, Fingerprint, Touch},
    repo::{AttackerRow, FlowRow, SessionRow},
    time_fmt::format_ts,
};
use serde::Serialize;

pub fn ts(ns: i64) -> String {
    format_ts(ns)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub ts: String,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: Option<String>,
    pub attacker_port: Option<u16>,
    /// The event's fields (the JSON object as stored, passed through; a string if it is not
    /// JSON).
    #[schema(value_type = Object)]
    pub fields: Box<serde_json::value::RawValue>,
    /// The raw line (listings include it only when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            id: e.id,
            ts: ts(e.ts_ns),
            decky: e.decky.clone(),
            service: e.service.clone(),
            event_type: e.event_type.clone(),
            attacker_ip: e.attacker_ip.map(|i| i.to_string()),
            attacker_port: e.attacker_port,
            fields: serde_json::value::RawValue::from_string(e.fields.clone())
                .or_else(|_| {
                    serde_json::value::to_raw_value(&serde_json::Value::String(e.fields.clone()))
                })
                .unwrap_or_else(|_| {
                    serde_json::value::RawValue::from_string("null".into()).unwrap_or_default()
                }),
            raw: Some(String::from_utf8_lossy(&e.raw).into_owned()),
        }
    }
}

pub fn event_json(e: &Event) -> String {
    serde_json::to_string(&EventView::from(e)).unwrap_or_default()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttackerView {
    pub id: i64,
    pub ip: String,
    pub first_seen: String,
    pub last_seen: String,
    pub event_count: u64,
    pub session_count: u64,
    pub credential_count: u64,
    pub flow_count: u64,
    pub score: Option<u8>,
    pub behaviour: Option<String>,
}

impl From<&AttackerRow> for AttackerView {
    fn from(r: &AttackerRow) -> Self {
        let a = &r.attacker;
        AttackerView {
            id: a.id,
            ip: a.ip.to_string(),
            first_seen: ts(a.first_seen_ns),
            last_seen: ts(a.last_seen_ns),
            event_count: a.event_count,
            session_count: a.session_count,
            credential_count: a.credential_count,
            flow_count: a.flow_count,
            score: r.score,
            behaviour: r.behaviour.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: i64,
    pub attacker_ip: String,
    pub decky: String,
    pub service: String,
    pub started: String,
    pub ended: String,
    pub event_count: u64,
    pub bytes: u64,
    pub commands: Vec<String>,
    pub closed: bool,
}

impl From<&SessionRow> for SessionView {
    fn from(r: &SessionRow) -> Self {
        let s = &r.session;
        SessionView {
            id: r.id,
            attacker_ip: s.attacker_ip.to_string(),
            decky: s.decky.clone(),
            service: s.service.clone(),
            started: ts(s.started_ns),
            ended: ts(s.ended_ns),
            event_count: s.event_count,
            bytes: s.bytes,
            commands: s.commands.clone(),
            closed: s.closed,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    pub id: i64,
    pub attacker_ip: String,
    pub decky: String,
    pub service: String,
    pub principal: String,
    pub secret_kind: String,
    pub secret: String,
    pub secret_sha256: String,
    pub attempts: u64,
    pub first_seen: String,
    pub last_seen: String,
}

impl From<&Credential> for CredentialView {
    fn from(c: &Credential) -> Self {
        CredentialView {
            id: c.id,
            attacker_ip: c.attacker_ip.to_string(),
            decky: c.decky.clone(),
            service: c.service.clone(),
            principal: String::from_utf8_lossy(&c.principal).into_owned(),
            secret_kind: c.secret_kind.clone(),
            secret: c.secret_printable.clone(),
            secret_sha256: c.secret_hash.iter().map(|b| format!("{b:02x}")).collect(),
            attempts: c.attempts,
            first_seen: ts(c.first_seen_ns),
            last_seen: ts(c.last_seen_ns),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowView {
    pub id: i64,
    pub bridge: String,
    pub port: String,
    pub src_ip: String,
    pub dst_ip: String,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub vlan: u16,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_flags: u8,
    pub first_seen: String,
    pub last_seen: String,
    pub ended: bool,
}

impl From<&FlowRow> for FlowView {
    fn from(r: &FlowRow) -> Self {
        let f = &r.flow;
        FlowView {
            id: r.id,
            bridge: f.bridge.clone(),
            port: f.port.clone(),
            src_ip: f.src_ip.to_string(),
            dst_ip: f.dst_ip.to_string(),
            src_port: f.src_port,
            dst_port: f.dst_port,
            proto: f.proto,
            vlan: f.vlan,
            packets: f.packets,
            bytes: f.bytes,
            tcp_flags: f.tcp_flags,
            first_seen: ts(f.first_seen_ns),
            last_seen: ts(f.last_seen_ns),
            ended: f.ended,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TouchView {
    pub decky: String,
    pub service: String,
    pub first_seen: String,
    pub last_seen: String,
}

impl From<&Touch> for TouchView {
    fn from(t: &Touch) -> Self {
        TouchView {
            decky: t.decky.clone(),
            service: t.service.clone(),
            first_seen: ts(t.first_seen_ns),
            last_seen: ts(t.last_seen_ns),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FingerprintView {
    pub kind: String,
    pub value: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    /// The string the method hashes (JA3's decimal string, HASSH's lists, …), if any.
    pub raw: Option<String>,
    /// p0f's OS label of a `tcp_syn`, if any.
    pub label: Option<String>,
    /// The capture was cut short: the value is known to be incomplete.
    pub partial: bool,
    /// Where it was seen.
    pub decky: String,
    pub port: u16,
}

impl From<&Fingerprint> for FingerprintView {
    fn from(f: &Fingerprint) -> Self {
        FingerprintView {
            kind: f.kind.clone(),
            value: f.value.clone(),
            first_seen: ts(f.first_seen_ns),
            last_seen: ts(f.last_seen_ns),
            count: f.count,
            raw: f.raw.clone(),
            label: f.label.clone(),
            partial: f.partial,
            decky: f.decky.clone(),
            port: f.port,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeckyView {
    pub name: String,
    pub ip: String,
    pub hostname: String,
    pub os_family: String,
    pub archetype: String,
    pub status: String,
    pub services: Vec<DeckyServiceView>,
    pub events_24h: u64,
    pub attackers_24h: u64,
    pub last_event: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeckyServiceView {
    pub service: String,
    pub port: u16,
}

impl DeckyView {
    pub fn new(d: &Decky) -> Self {
        DeckyView {
            name: d.name.clone(),
            ip: d.ip.to_string(),
            hostname: d.hostname.clone(),
            os_family: d.os_family.clone(),
            archetype: d.archetype.clone(),
            status: d.status.clone(),
            services: d
                .services
                .iter()
                .map(|s| DeckyServiceView {
                    service: s.service.clone(),
                    port: s.port,
                })
                .collect(),
            events_24h: 0,
            attackers_24h: 0,
            last_event: None,
        }
    }
}

/// A detected scan episode, as the correlator computed it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanView {
    pub attacker_ip: String,
    /// `tcp_syn`, `tcp_connect`, `udp` or `ping_sweep`.
    pub kind: String,
    pub started: String,
    pub ended: String,
    /// Probe flows in the episode.
    pub probes: u64,
    /// Distinct destination ports (`ports` lists at most the first few hundred).
    pub port_count: u64,
    pub ports: Vec<u16>,
    /// Distinct destination hosts (decky names where known, else IPs; bounded).
    pub host_count: u64,
    pub hosts: Vec<String>,
    pub rate_per_min: u64,
}

impl From<&decnet_core::model::Scan> for ScanView {
    fn from(s: &decnet_core::model::Scan) -> Self {
        ScanView {
            attacker_ip: s.attacker_ip.to_string(),
            kind: s.kind.clone(),
            started: ts(s.started_ns),
            ended: ts(s.ended_ns),
            probes: s.probes,
            port_count: s.port_count,
            ports: s.ports.clone(),
            host_count: s.host_count,
            hosts: s.hosts.clone(),
            rate_per_min: s.rate_per_min,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HopView {
    pub decky: String,
    pub first_seen: String,
}

/// An attacker's path through two or more deckies, hops in time order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TraversalView {
    pub attacker_ip: String,
    pub hops: Vec<HopView>,
    pub first_seen: String,
    pub last_seen: String,
}

impl From<&decnet_core::model::Traversal> for TraversalView {
    fn from(t: &decnet_core::model::Traversal) -> Self {
        TraversalView {
            attacker_ip: t.attacker_ip.to_string(),
            hops: t
                .hops
                .iter()
                .map(|h| HopView {
                    decky: h.decky.clone(),
                    first_seen: ts(h.first_seen_ns),
                })
                .collect(),
            first_seen: ts(t.first_seen_ns),
            last_seen: ts(t.last_seen_ns),
        }
    }
}

/// A decky that opened connections to another decky.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PivotView {
    pub src_decky: String,
    pub dst_decky: String,
    pub dst_port: u16,
    /// IP protocol number.
    pub proto: u8,
    pub first_seen: String,
    pub last_seen: String,
}

impl From<&decnet_core::model::Pivot> for PivotView {
    fn from(p: &decnet_core::model::Pivot) -> Self {
        PivotView {
            src_decky: p.src_decky.clone(),
            dst_decky: p.dst_decky.clone(),
            dst_port: p.dst_port,
            proto: p.proto,
            first_seen: ts(p.first_seen_ns),
            last_seen: ts(p.last_seen_ns),
        }
    }
}

/// One secret tried against two or more (decky, service) targets.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialReuseView {
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    pub secret_kind: String,
    /// The secret as printable text (escaped where not printable).
    pub secret: String,
    pub target_count: u64,
    /// `decky/service`, bounded.
    pub targets: Vec<String>,
    pub attacker_count: u64,
    /// Attacker IPs, bounded.
    pub attackers: Vec<String>,
    pub credential_rows: u64,
    pub first_seen: String,
    pub last_seen: String,
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

impl From<&decnet_core::model::CredentialReuse> for CredentialReuseView {
    fn from(r: &decnet_core::model::CredentialReuse) -> Self {
        CredentialReuseView {
            secret_sha256: hex(&r.secret_hash),
            secret_kind: r.secret_kind.clone(),
            secret: r.secret_printable.clone(),
            target_count: r.target_count,
            targets: r.targets.clone(),
            attacker_count: r.attacker_count,
            attackers: r.attackers.clone(),
            credential_rows: r.credential_rows,
            first_seen: ts(r.first_seen_ns),
            last_seen: ts(r.last_seen_ns),
        }
    }
}
