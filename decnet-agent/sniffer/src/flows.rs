//! Turns kernel flow entries ([`FlowKey`] + [`FlowValue`]) into [`FlowRecord`]s: one record per
//! direction that carried packets, with kernel monotonic timestamps converted to UTC.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, RwLock},
};

use decnet_common::{FAMILY_V4, FlowKey, FlowValue, STATE_ENDED};
use decnet_core::model::FlowRecord;

/// Converts `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to unix nanoseconds. The offset is taken once,
/// so every export of the same flow maps to the same `first_seen` (the flow's identity).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i64,
}

impl Clock {
    pub fn new() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    #[cfg(test)]
    pub fn with_offset(offset_ns: i64) -> Self {
        Self { offset_ns }
    }

    pub fn to_unix_ns(self, mono_ns: u64) -> i64 {
        (mono_ns as i64).saturating_add(self.offset_ns)
    }

    /// Current CLOCK_MONOTONIC, the kernel's time base.
    pub fn mono_now() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// ifindex → bridge-port name, kept up to date as ports are attached.
#[derive(Debug, Clone, Default)]
pub struct PortNames(Arc<RwLock<HashMap<u32, String>>>);

impl PortNames {
    pub fn insert(&self, ifindex: u32, name: &str) {
        if let Ok(mut m) = self.0.write() {
            m.insert(ifindex, name.to_string());
        }
    }

    pub fn get(&self, ifindex: u32) -> String {
        self.0
            .read()
            .ok()
            .and_then(|m| m.get(&ifindex).cloned())
            .unwrap_or_else(|| format!("if{ifindex}"))
    }
}

/// Everything needed to turn kernel entries into records.
#[derive(Debug, Clone)]
pub struct Converter {
    pub bridge: String,
    pub clock: Clock,
    pub ports: PortNames,
}

impl Converter {
    /// One record per direction with packets (0, 1 or 2 records).
    pub fn records(&self, key: &FlowKey, value: &FlowValue, out: &mut Vec<FlowRecord>) {
        let a = addr(key.family, &key.addr_a);
        let b = addr(key.family, &key.addr_b);
        let ended = value.state & STATE_ENDED != 0;
        for (i, d) in value.dir.iter().enumerate() {
            if d.packets == 0 {
                continue;
            }
            let (src_ip, dst_ip, src_port, dst_port) = if i == 0 {
                (a, b, key.port_a, key.port_b)
            } else {
                (b, a, key.port_b, key.port_a)
            };
            out.push(FlowRecord {
                bridge: self.bridge.clone(),
                port: self.ports.get(d.ifindex),
                src_ip,
                dst_ip,
                src_port,
                dst_port,
                proto: key.proto,
                vlan: key.vlan,
                packets: d.packets,
                bytes: d.bytes,
                tcp_flags: d.tcp_flags,
                first_seen_ns: self.clock.to_unix_ns(d.first_ns),
                last_seen_ns: self.clock.to_unix_ns(d.last_ns),
                ended,
            });
        }
    }
}

pub fn addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use decnet_common::{DirStats, FAMILY_V6, IPPROTO_TCP, IPPROTO_UDP};

    use super::*;

    fn conv() -> Converter {
        let ports = PortNames::default();
        ports.insert(7, "vd1");
        Converter {
            bridge: "br0".into(),
            clock: Clock::with_offset(1_000),
            ports,
        }
    }

    fn dir(packets: u64, ifindex: u32) -> DirStats {
        DirStats {
            packets,
            bytes: packets * 100,
            first_ns: 10,
            last_ns: 20,
            ifindex,
            tcp_flags: 0x12,
            _pad: [0; 3],
        }
    }

    #[test]
    fn one_record_per_direction_with_packets() {
        let mut key = FlowKey {
            proto: IPPROTO_UDP,
            family: FAMILY_V4,
            port_a: 53,
            port_b: 4000,
            ..Default::default()
        };
        key.addr_a[..4].copy_from_slice(&[10, 0, 0, 1]);
        key.addr_b[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut v = FlowValue::default();
        v.dir[1] = dir(3, 7);
        let mut out = Vec::new();
        conv().records(&key, &v, &mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        // Direction 1 is b → a.
        assert_eq!(r.src_ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((r.src_port, r.dst_port), (4000, 53));
        assert_eq!((r.packets, r.bytes), (3, 300));
        assert_eq!(r.port, "vd1");
        assert_eq!((r.first_seen_ns, r.last_seen_ns), (1_010, 1_020));
        assert!(!r.ended);
    }

    #[test]
    fn both_directions_v6_and_unknown_port() {
        let mut key = FlowKey {
            proto: IPPROTO_TCP,
            family: FAMILY_V6,
            port_a: 1,
            port_b: 2,
            ..Default::default()
        };
        key.addr_a = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        key.addr_b = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let mut v = FlowValue {
            state: STATE_ENDED,
            ..Default::default()
        };
        v.dir[0] = dir(1, 7);
        v.dir[1] = dir(2, 9);
        let mut out = Vec::new();
        conv().records(&key, &v, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].src_ip.to_string(), "fd00::1");
        assert_eq!(out[1].src_ip.to_string(), "fd00::2");
        assert_eq!(out[1].port, "if9");
        assert!(out.iter().all(|r| r.ended));
    }

    #[test]
    fn clock_is_stable() {
        let c = Clock::new();
        assert_eq!(c.to_unix_ns(5), c.to_unix_ns(5));
        let now = c.to_unix_ns(Clock::mono_now());
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((now - real).abs() < 1_000_000_000);
    }
}
