//! Scan detection from flows.
//!
//! A flow from an attacker (its source is not a decky) is a *probe* when it looks like one
//! ([`probe_kind`]):
//! - `tcp_syn`: TCP whose sender never acknowledged (SYN, possibly RST: half-open), ≤ 3 packets;
//! - `tcp_connect`: TCP with SYN and ACK but no PSH (no data pushed), ≤ 4 packets (a full
//!   handshake, then RST/FIN);
//! - `udp`: UDP with ≤ 2 packets;
//! - `ping_sweep`: ICMP / ICMPv6.
//!
//! Probes of one kind from one attacker form an *episode* while each starts within the scan gap
//! (`--scan-gap`, default 60 s) of the previous one. An episode is a **detected scan** when it
//! reaches `--scan-min-ports` distinct destination ports (default 10) or `--scan-min-hosts`
//! distinct destination hosts (default 5; the only criterion for ping sweeps). Its rate is
//! probes per minute over its span (at least one second). Episodes below the thresholds are
//! stored too (`detected = false`), so that an episode's start is known when more probes come.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use decnet_core::model::{FlowRecord, Scan};

/// Scan thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanConfig {
    pub gap_ns: i64,
    pub min_ports: u64,
    pub min_hosts: u64,
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    TcpSyn,
    TcpConnect,
    Udp,
    Ping,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 4] = [Self::TcpSyn, Self::TcpConnect, Self::Udp, Self::Ping];

    pub fn name(self) -> &'static str {
        match self {
            Self::TcpSyn => "tcp_syn",
            Self::TcpConnect => "tcp_connect",
            Self::Udp => "udp",
            Self::Ping => "ping_sweep",
        }
    }
}

/// The probe kind of a flow sent by an attacker, if it looks like a probe.
pub fn probe_kind(f: &FlowRecord) -> Option<ProbeKind> {
    match f.proto {
        TCP if f.tcp_flags & SYN != 0 => {
            if f.tcp_flags & ACK == 0 && f.packets <= 3 {
                Some(ProbeKind::TcpSyn)
            } else if f.tcp_flags & ACK != 0 && f.tcp_flags & PSH == 0 && f.packets <= 4 {
                Some(ProbeKind::TcpConnect)
            } else {
                None
            }
        }
        UDP if f.packets <= 2 => Some(ProbeKind::Udp),
        ICMP | ICMPV6 => Some(ProbeKind::Ping),
        _ => None,
    }
}

/// One probe: when, to which host (decky name or IP) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub host: String,
    pub port: u16,
}

/// Cuts the probes of one (attacker, kind), sorted by `first_seen_ns`, into episodes.
pub fn episodes(ip: IpAddr, kind: ProbeKind, probes: &[Probe], cfg: &ScanConfig) -> Vec<Scan> {
    cut(probes, cfg)
        .iter()
        .map(|e| e.scan(ip, kind, cfg))
        .collect()
}

/// [`episodes`] as accumulators (which can take more probes).
pub fn cut(probes: &[Probe], cfg: &ScanConfig) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    for p in probes {
        match out.last_mut() {
            Some(e) if e.continues(p, cfg) => e.add(p),
            _ => out.push(Episode::new(p)),
        }
    }
    out
}

/// One episode as it grows: what its [`Scan`] row is computed from, with the full sets of
/// ports and hosts (the row keeps only the first few hundred).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub started_ns: i64,
    pub ended_ns: i64,
    /// The latest probe start (the gap rule measures from it).
    pub last_start_ns: i64,
    pub probes: u64,
    pub ports: BTreeSet<u16>,
    pub hosts: BTreeSet<String>,
}

impl Episode {
    pub fn new(p: &Probe) -> Episode {
        let mut e = Episode {
            started_ns: p.first_seen_ns,
            ended_ns: p.first_seen_ns,
            last_start_ns: p.first_seen_ns,
            probes: 0,
            ports: BTreeSet::new(),
            hosts: BTreeSet::new(),
        };
        e.add(p);
        e
    }

    /// Whether `p` (no earlier than this episode's start) belongs to this episode: it starts
    /// inside it, or within the gap after its latest probe.
    pub fn continues(&self, p: &Probe, cfg: &ScanConfig) -> bool {
        p.first_seen_ns >= self.started_ns
            && p.first_seen_ns.saturating_sub(self.last_start_ns) <= cfg.gap_ns
    }

    pub fn add(&mut self, p: &Probe) {
        self.started_ns = self.started_ns.min(p.first_seen_ns);
        self.last_start_ns = self.last_start_ns.max(p.first_seen_ns);
        self.ended_ns = self.ended_ns.max(p.last_seen_ns.max(p.first_seen_ns));
        self.probes += 1;
        self.ports.insert(p.port);
        if !self.hosts.contains(&p.host) {
            self.hosts.insert(p.host.clone());
        }
    }

    /// The episode's row.
    pub fn scan(&self, ip: IpAddr, kind: ProbeKind, cfg: &ScanConfig) -> Scan {
        let (port_count, ports): (u64, Vec<u16>) = if kind == ProbeKind::Ping {
            (0, Vec::new())
        } else {
            (
                self.ports.len() as u64,
                self.ports
                    .iter()
                    .copied()
                    .take(decnet_core::repo::LIST_MAX)
                    .collect(),
            )
        };
        let span = u128::try_from(self.ended_ns.saturating_sub(self.started_ns))
            .unwrap_or(0)
            .max(1_000_000_000);
        let rate =
            u64::try_from(u128::from(self.probes) * 60_000_000_000 / span).unwrap_or(u64::MAX);
        let host_count = self.hosts.len() as u64;
        let detected =
            host_count >= cfg.min_hosts || (kind != ProbeKind::Ping && port_count >= cfg.min_ports);
        Scan {
            attacker_ip: ip,
            kind: kind.name().to_owned(),
            started_ns: self.started_ns,
            ended_ns: self.ended_ns,
            probes: self.probes,
            port_count,
            ports,
            host_count,
            hosts: self
                .hosts
                .iter()
                .take(decnet_core::repo::LIST_MAX)
                .cloned()
                .collect(),
            rate_per_min: rate,
            detected,
        }
    }
}

/// The host name of an address: its decky's name, else the address.
pub fn host_name(ip: IpAddr, deckies: &HashMap<IpAddr, String>) -> String {
    deckies.get(&ip).cloned().unwrap_or_else(|| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: i64 = 1_000_000_000;
    const FIN: u8 = 0x01;
    const CFG: ScanConfig = ScanConfig {
        gap_ns: 60 * S,
        min_ports: 10,
        min_hosts: 5,
    };

    fn flow(proto: u8, flags: u8, packets: u64) -> FlowRecord {
        FlowRecord {
            bridge: "br".into(),
            port: "p".into(),
            src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            dst_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 40000,
            dst_port: 22,
            proto,
            vlan: 0,
            packets,
            bytes: 60 * packets,
            tcp_flags: flags,
            first_seen_ns: 0,
            last_seen_ns: 0,
            ended: false,
        }
    }

    #[test]
    fn probe_kinds() {
        assert_eq!(probe_kind(&flow(TCP, SYN, 1)), Some(ProbeKind::TcpSyn));
        assert_eq!(
            probe_kind(&flow(TCP, SYN | 0x04, 2)),
            Some(ProbeKind::TcpSyn)
        );
        assert_eq!(
            probe_kind(&flow(TCP, SYN | ACK | 0x04, 3)),
            Some(ProbeKind::TcpConnect)
        );
        // A real connection pushes data.
        assert_eq!(probe_kind(&flow(TCP, SYN | ACK | PSH | FIN, 12)), None);
        // A mid-flow export without SYN is not a probe.
        assert_eq!(probe_kind(&flow(TCP, ACK, 1)), None);
        assert_eq!(probe_kind(&flow(UDP, 0, 1)), Some(ProbeKind::Udp));
        assert_eq!(probe_kind(&flow(UDP, 0, 40)), None);
        assert_eq!(probe_kind(&flow(ICMP, 0, 1)), Some(ProbeKind::Ping));
    }

    fn probe(t: i64, host: &str, port: u16) -> Probe {
        Probe {
            first_seen_ns: t * S,
            last_seen_ns: t * S,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn episodes_split_on_the_gap_and_detect_on_thresholds() {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
        // 20 ports on one host in 19 s, then 3 ports 10 min later.
        let mut probes: Vec<Probe> = (0..20)
            .map(|i| probe(i, "web-01", 1000 + i as u16))
            .collect();
        probes.extend((0..3).map(|i| probe(600 + i, "web-01", 22)));
        let e = episodes(ip, ProbeKind::TcpSyn, &probes, &CFG);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (
                e[0].probes,
                e[0].port_count,
                e[0].host_count,
                e[0].rate_per_min,
                e[0].detected
            ),
            (20, 20, 1, 63, true)
        );
        assert_eq!(e[0].ports.first(), Some(&1000));
        assert_eq!(
            (e[1].probes, e[1].port_count, e[1].detected, e[1].started_ns),
            (3, 1, false, 600 * S)
        );
        // Ping sweep: hosts only.
        let pings: Vec<Probe> = (0..5).map(|i| probe(i, &format!("h{i}"), 0)).collect();
        let p = episodes(ip, ProbeKind::Ping, &pings, &CFG);
        assert_eq!(
            (p[0].host_count, p[0].port_count, p[0].detected),
            (5, 0, true)
        );
        let p4 = episodes(ip, ProbeKind::Ping, &pings[..4], &CFG);
        assert!(!p4[0].detected);
    }
}
