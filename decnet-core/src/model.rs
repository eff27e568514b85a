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
