//! Sources that are never attackers: decnet's own addresses (the host's address on the decoy
//! bridge, from which the status probes and the collector's replies come; every address of the
//! host the correlator runs on; any given with `--own-address`) and addresses that cannot be a
//! remote peer (unspecified `::`/`0.0.0.0`, loopback, link-local v4/v6, multicast, broadcast —
//! an IPv6 host on the bridge sends duplicate-address and multicast-listener probes from `::`
//! and `fe80::…` the moment its interface comes up). Their events, credentials and flows are
//! counted (`*_not_attacker`) and otherwise ignored.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// An address that is never a remote attacker's.
pub fn non_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => non_routable_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_routable_v4(v4);
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn non_routable_v4(v4: Ipv4Addr) -> bool {
    v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.octets()[0] == 0
}

/// Every address of this host (in the correlator's network namespace): IPv4 from the kernel's
/// local routing table (`/proc/net/fib_trie`), IPv6 from `/proc/net/if_inet6`. Unreadable files
/// give nothing (the caller logs how many it found).
pub fn local_addresses() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    if let Ok(t) = std::fs::read_to_string("/proc/net/fib_trie") {
        out.extend(fib_local(&t));
    }
    if let Ok(t) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(if_inet6(&t));
    }
    out
}

/// The `/32 host LOCAL` entries of a `/proc/net/fib_trie` text.
fn fib_local(text: &str) -> impl Iterator<Item = IpAddr> + '_ {
    let mut last: Option<Ipv4Addr> = None;
    text.lines().filter_map(move |l| {
        let t = l.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
            None
        } else if t.starts_with("/32 host LOCAL") {
            last.take().map(IpAddr::V4)
        } else {
            None
        }
    })
}

/// The addresses of a `/proc/net/if_inet6` text (32 hex digits first on each line).
fn if_inet6(text: &str) -> impl Iterator<Item = IpAddr> + '_ {
    text.lines().filter_map(|l| {
        let hex = l.split_whitespace().next()?;
        let n = u128::from_str_radix(hex, 16).ok()?;
        (hex.len() == 32).then_some(IpAddr::V6(Ipv6Addr::from(n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_routable_sources() {
        for s in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "ff02::1:ff00:1",
            "0.0.0.0",
            "127.0.0.1",
            "169.254.3.4",
            "224.0.0.251",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "0.1.2.3",
        ] {
            assert!(non_routable(s.parse().unwrap()), "{s}");
        }
        for s in [
            "203.0.113.5",
            "10.0.0.7",
            "2001:db8::5",
            "fec0::1",
            "::ffff:198.51.100.1",
        ] {
            assert!(!non_routable(s.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn proc_files_parse() {
        let fib = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.77.0.1\n        /32 host LOCAL\n     |-- 10.77.0.255\n        /32 link BROADCAST\n";
        assert_eq!(
            fib_local(fib).collect::<Vec<_>>(),
            ["10.77.0.1".parse::<IpAddr>().unwrap()]
        );
        let v6 = "fe800000000000000000000000000001 02 40 20 80 eth0\n00000000000000000000000000000001 01 80 10 80 lo\n";
        assert_eq!(
            if_inet6(v6).collect::<Vec<_>>(),
            [
                "fe80::1".parse::<IpAddr>().unwrap(),
                "::1".parse::<IpAddr>().unwrap()
            ]
        );
        assert!(
            local_addresses().contains(&"127.0.0.1".parse::<IpAddr>().unwrap()),
            "this host's loopback address is one of its own"
        );
    }
}
