//! Lateral movement.
//!
//! - **Traversal**: an attacker whose touches (the (decky, service) pairs it sent events to)
//!   span at least two deckies gets a hop path: each decky once, at the first time it was
//!   touched, in time order (ties by name).
//! - **Pivot**: a flow from one decky to another decky (both in the recorded fleet) in the
//!   initiating direction: the destination port is a recorded service port of the destination
//!   decky, or (no such record) the destination port is below the source port (ephemeral source).
//!   A decky opening connections means someone controls it.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use decnet_core::model::{FlowRecord, Hop, Pivot, Touch, Traversal};

/// The traversal of `ip` from its touches, if it touched at least two deckies.
pub fn traversal(ip: IpAddr, touches: &[Touch]) -> Option<Traversal> {
    let mut first: BTreeMap<&str, i64> = BTreeMap::new();
    for t in touches.iter().filter(|t| t.attacker_ip == ip) {
        let e = first.entry(t.decky.as_str()).or_insert(t.first_seen_ns);
        *e = (*e).min(t.first_seen_ns);
    }
    if first.len() < 2 {
        return None;
    }
    let mut hops: Vec<Hop> = first
        .into_iter()
        .map(|(d, t)| Hop {
            decky: d.to_owned(),
            first_seen_ns: t,
        })
        .collect();
    hops.sort_by(|a, b| (a.first_seen_ns, &a.decky).cmp(&(b.first_seen_ns, &b.decky)));
    let last = touches
        .iter()
        .filter(|t| t.attacker_ip == ip)
        .map(|t| t.last_seen_ns)
        .max()
        .unwrap_or(0);
    Some(Traversal {
        attacker_ip: ip,
        first_seen_ns: hops[0].first_seen_ns,
        last_seen_ns: last,
        hops,
    })
}

/// The pivot a flow shows, if it is a decky-to-decky connection in its initiating direction.
/// `ports`: recorded (decky, service) → port.
pub fn pivot(
    f: &FlowRecord,
    deckies: &HashMap<IpAddr, String>,
    ports: &HashMap<(String, String), u16>,
) -> Option<Pivot> {
    let src = deckies.get(&f.src_ip)?;
    let dst = deckies.get(&f.dst_ip)?;
    if src == dst {
        return None;
    }
    let dst_ports: Vec<u16> = ports
        .iter()
        .filter(|((d, _), _)| d == dst)
        .map(|(_, p)| *p)
        .collect();
    let src_ports: Vec<u16> = ports
        .iter()
        .filter(|((d, _), _)| d == src)
        .map(|(_, p)| *p)
        .collect();
    let initiating = if dst_ports.contains(&f.dst_port) {
        true
    } else if src_ports.contains(&f.src_port) {
        false // a reply from src's service
    } else {
        f.dst_port < f.src_port
    };
    initiating.then(|| Pivot {
        src_decky: src.clone(),
        dst_decky: dst.clone(),
        dst_port: f.dst_port,
        proto: f.proto,
        first_seen_ns: f.first_seen_ns,
        last_seen_ns: f.last_seen_ns.max(f.first_seen_ns),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    fn touch(decky: &str, service: &str, first: i64, last: i64) -> Touch {
        Touch {
            attacker_ip: ip(99),
            decky: decky.into(),
            service: service.into(),
            first_seen_ns: first,
            last_seen_ns: last,
        }
    }

    #[test]
    fn hop_path_in_first_seen_order() {
        let t = [
            touch("db-01", "mysql", 300, 400),
            touch("web-01", "http", 100, 150),
            touch("web-01", "ssh", 50, 500),
            touch("files", "smb", 300, 310),
        ];
        let tr = traversal(ip(99), &t).unwrap();
        let path: Vec<(&str, i64)> = tr
            .hops
            .iter()
            .map(|h| (h.decky.as_str(), h.first_seen_ns))
            .collect();
        assert_eq!(path, vec![("web-01", 50), ("db-01", 300), ("files", 300)]);
        assert_eq!((tr.first_seen_ns, tr.last_seen_ns), (50, 500));
        assert_eq!(
            traversal(ip(99), &t[1..3]),
            None,
            "one decky is no traversal"
        );
    }

    #[test]
    fn pivots_only_in_the_initiating_direction() {
        let deckies: HashMap<IpAddr, String> =
            [(ip(1), "web-01".to_string()), (ip(2), "db-01".to_string())].into();
        let ports: HashMap<(String, String), u16> =
            [(("db-01".to_string(), "mysql".to_string()), 3306)].into();
        let mut f = FlowRecord {
            bridge: "br".into(),
            port: "p".into(),
            src_ip: ip(1),
            dst_ip: ip(2),
            src_port: 45000,
            dst_port: 3306,
            proto: 6,
            vlan: 0,
            packets: 10,
            bytes: 900,
            tcp_flags: 0x1b,
            first_seen_ns: 7,
            last_seen_ns: 9,
            ended: true,
        };
        let p = pivot(&f, &deckies, &ports).unwrap();
        assert_eq!(
            (p.src_decky.as_str(), p.dst_decky.as_str(), p.dst_port),
            ("web-01", "db-01", 3306)
        );
        // The reply direction is not a pivot.
        let mut r = f.clone();
        std::mem::swap(&mut r.src_ip, &mut r.dst_ip);
        std::mem::swap(&mut r.src_port, &mut r.dst_port);
        assert_eq!(pivot(&r, &deckies, &ports), None);
        // An attacker → decky flow is not a pivot.
        f.src_ip = ip(77);
        assert_eq!(pivot(&f, &deckies, &ports), None);
    }
}
