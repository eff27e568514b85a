//! Types shared by the kernel side (`decnet-ebpf`) and userspace (`decnet-agent`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of padding surprises: the kernel writes these
//! bytes into BPF maps and the ring buffer, userspace reads them back. Keep the layouts explicit
//! (`_pad` fields) so both sides agree without relying on the compiler.
#![no_std]

/// Name of the program when attached as XDP.
pub const XDP_PROGRAM: &str = "decnet_xdp";
/// Name of the program when attached as a TC classifier.
pub const TC_PROGRAM: &str = "decnet_tc";
/// Benchmark floor: an XDP program that only passes the packet (`decnet sniffer --mode xdp-empty`).
pub const XDP_EMPTY_PROGRAM: &str = "decnet_xdp_empty";
/// Benchmark floor: a TC classifier that only passes the packet (`decnet sniffer --mode tc-empty`).
pub const TC_EMPTY_PROGRAM: &str = "decnet_tc_empty";
/// Map names, as declared in `decnet-ebpf`.
pub const FLOWS_MAP: &str = "FLOWS";
pub const EVENTS_MAP: &str = "EVENTS";
pub const COUNTERS_MAP: &str = "COUNTERS";
/// The fingerprint ring buffer: the bytes fingerprints are computed from (see [`FpHeader`]).
/// Its own ring, so a burst of captured handshakes can never crowd out flow events.
pub const FP_EVENTS_MAP: &str = "FP_EVENTS";
/// Globals (`.rodata`, set by userspace at load time) that configure the capture.
/// Bytes kept from each data-bearing segment (≤ [`FP_CHUNK`]; 0 turns fingerprint capture off).
pub const FP_SNAPLEN_GLOBAL: &str = "FP_SNAPLEN";
/// Only the first this-many packets of each direction of a TCP flow are looked at.
pub const FP_PACKETS_GLOBAL: &str = "FP_PACKETS";

/// Default sizes; userspace may override them at load time.
pub const DEFAULT_FLOW_ENTRIES: u32 = 131_072;
pub const DEFAULT_RING_BYTES: u32 = 1 << 20;
/// Default size of the fingerprint ring.
pub const DEFAULT_FP_RING_BYTES: u32 = 1 << 22;

/// Largest payload one fingerprint segment event carries (the ring slot size).
pub const FP_CHUNK: usize = 4096;
/// Largest IP + TCP header block a header event carries (IPv4 60 + TCP 60; IPv6 40 + TCP 60).
pub const FP_HDR_MAX: usize = 120;
/// Default bytes kept per data-bearing segment (and per direction, by userspace).
pub const DEFAULT_FP_SNAPLEN: u32 = 2048;
/// Default number of leading packets per direction examined.
pub const DEFAULT_FP_PACKETS: u32 = 8;
/// Upper bound for `FP_PACKETS`.
pub const MAX_FP_PACKETS: u32 = 64;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Flow identity, direction-independent: endpoint `a` is the lower `(addr, port)` of the two, so both
/// directions of a conversation share one map entry (and FIN-both-ways is visible in one place).
///
/// Addresses are stored in network byte order; IPv4 uses the first 4 bytes, the rest is zero.
/// ICMP/ICMPv6 have no ports: `port` carries `type << 8 | code` on the sender's side and 0 on the
/// other, so an echo request and its reply are two one-directional entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    /// 802.1Q VLAN id (0 when untagged); of the innermost tag.
    pub vlan: u16,
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

/// Counters for one direction of a flow. Direction 0 is `a → b`, direction 1 is `b → a`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub packets: u64,
    /// Bytes on the wire, Ethernet header included (frame length without FCS).
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the first and last packet; 0 when no packet yet.
    pub first_ns: u64,
    pub last_ns: u64,
    /// ifindex of the bridge port where this direction's first packet entered.
    pub ifindex: u32,
    /// Union of TCP flags seen in this direction.
    pub tcp_flags: u8,
    pub _pad: [u8; 3],
}

/// State bits in [`FlowValue::state`].
pub const STATE_FIN_A: u32 = 1; // FIN seen a → b
pub const STATE_FIN_B: u32 = 2; // FIN seen b → a
pub const STATE_RST: u32 = 4;
/// The end event has been sent.
pub const STATE_ENDED: u32 = 8;
/// The flow's START event (a snapshot of the value as first stored) went into the ring buffer:
/// userspace has that snapshot. While [`FlowValue::updated`] is 0 the value is still exactly that
/// snapshot, so exporting it again would write the same row twice.
pub const STATE_START_SENT: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub dir: [DirStats; 2],
    pub state: u32,
    /// 0 until a packet is accounted to the entry after the one that created it; then 1. (Its
    /// own field, not a `state` bit: a plain store that cannot race with the state's updates.)
    pub updated: u32,
}

impl FlowValue {
    /// The most recent packet of either direction.
    pub fn last_ns(&self) -> u64 {
        let (a, b) = (self.dir[0].last_ns, self.dir[1].last_ns);
        if a > b { a } else { b }
    }
    pub fn packets(&self) -> u64 {
        self.dir[0].packets + self.dir[1].packets
    }
    /// The value is still the snapshot its START event carried (and that event reached the
    /// ring), and the flow has not ended: exporting it again would repeat that row exactly.
    pub fn unchanged_since_start(&self) -> bool {
        self.state & STATE_START_SENT != 0 && self.updated == 0 && self.state & STATE_ENDED == 0
    }
}

/// Ring-buffer event kinds.
pub const EVENT_START: u32 = 1;
/// Flow ended (FIN both ways, or RST), or an ended flow's entry was reused by a new SYN: the
/// snapshot is final for that flow.
pub const EVENT_END: u32 = 2;

/// Fingerprint ring events (in `FP_EVENTS`; the `kind` is the first `u32` of every record).
/// A client SYN or server SYN-ACK: [`FpHeaderEvent`] with the raw IP + TCP headers.
pub const FP_EVENT_HEADER: u32 = 3;
/// A data-bearing segment among the first `FP_PACKETS` of its direction: [`FpDataEvent`].
pub const FP_EVENT_DATA: u32 = 4;

/// What every fingerprint event starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpHeader {
    /// [`FP_EVENT_HEADER`] or [`FP_EVENT_DATA`].
    pub kind: u32,
    /// Bytes captured in `bytes`.
    pub len: u32,
    /// Header event: the length of the IP + TCP headers on the wire (captured in full when ≤
    /// [`FP_HDR_MAX`]). Data event: the segment's payload length on the wire (for a GSO packet,
    /// all its segments' payload); more than `len` means the segment was cut.
    pub wire_len: u32,
    /// TCP sequence number of the segment (host order).
    pub seq: u32,
    /// `bpf_ktime_get_ns()` of the packet.
    pub ts_ns: u64,
    /// ifindex of the bridge port the packet entered on.
    pub ifindex: u32,
    /// 0: the packet went `key.a → key.b`; 1: `b → a`.
    pub dir: u8,
    /// The packet's TCP flags.
    pub tcp_flags: u8,
    pub _pad: [u8; 2],
    pub key: FlowKey,
}

/// A client SYN or server SYN-ACK: the IP header and TCP header with options, as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpHeaderEvent {
    pub h: FpHeader,
    pub bytes: [u8; FP_HDR_MAX],
}

/// The leading payload bytes of one data-bearing segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpDataEvent {
    pub h: FpHeader,
    pub bytes: [u8; FP_CHUNK],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    pub kind: u32,
    pub _pad: u32,
    pub key: FlowKey,
    pub value: FlowValue,
}

/// Indices into the per-CPU `COUNTERS` array.
///
/// Invariant (checked by the tests): `PACKETS == FLOW_PACKETS + sum(drop reasons)`, where the drop
/// reasons are every index from [`C_TRUNCATED`] to [`C_MAP_FULL`] inclusive. Nothing vanishes.
pub const C_PACKETS: u32 = 0;
pub const C_BYTES: u32 = 1;
/// Packets accounted to a flow entry.
pub const C_FLOW_PACKETS: u32 = 2;
pub const C_FLOWS_STARTED: u32 = 3;
pub const C_FLOWS_ENDED: u32 = 4;
/// Frame shorter than the headers it announces (Ethernet, VLAN, IP, TCP/UDP/ICMP).
pub const C_TRUNCATED: u32 = 5;
/// Not IPv4/IPv6 (ARP, LLDP, STP, …).
pub const C_NON_IP: u32 = 6;
/// A header that cannot be right: IP version mismatch, IHL < 5, IP total length shorter than the
/// headers, TCP data offset < 5.
pub const C_BAD_HEADER: u32 = 7;
/// IPv4 fragment other than the first (no transport header to key on).
pub const C_FRAGMENT: u32 = 8;
/// IPv6 with extension headers before the transport header (not parsed).
pub const C_IPV6_EXT: u32 = 9;
/// More VLAN tags than we parse (QinQ beyond two), or other frames we cannot key.
pub const C_UNSUPPORTED: u32 = 10;
/// The flow table was full: the packet could not be accounted to a flow.
pub const C_MAP_FULL: u32 = 11;
/// Ring-buffer reservation failed: a start/end event was lost (the flow itself is still in the
/// table and will be exported by the sweep).
pub const C_EVENTS_LOST: u32 = 12;
/// Fingerprint header events (SYN, SYN-ACK) sent.
pub const C_FP_HEADERS: u32 = 13;
/// Fingerprint data-segment events sent.
pub const C_FP_SEGMENTS: u32 = 14;
/// Data segments cut at the snap length (the event carries the first `FP_SNAPLEN` bytes).
pub const C_FP_TRUNCATED: u32 = 15;
/// Fingerprint events lost: the fingerprint ring was full, or the bytes could not be read.
pub const C_FP_LOST: u32 = 16;
pub const COUNTER_COUNT: u32 = 17;

/// Human names of the counters, indexed like the constants above.
pub const COUNTER_NAMES: [&str; COUNTER_COUNT as usize] = [
    "packets",
    "bytes",
    "flow_packets",
    "flows_started",
    "flows_ended",
    "drop_truncated",
    "drop_non_ip",
    "drop_bad_header",
    "drop_fragment",
    "drop_ipv6_ext",
    "drop_unsupported",
    "drop_map_full",
    "events_lost",
    "fp_headers",
    "fp_segments",
    "fp_truncated",
    "fp_lost",
];

/// The counters that account a packet which is not in a flow.
pub const DROP_REASONS: core::ops::RangeInclusive<u32> = C_TRUNCATED..=C_MAP_FULL;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, `#[repr(C)]`, every bit pattern valid, no implicit padding.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::DirStats {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::FpHeader {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 2 + 1 + 1);
        assert_eq!(size_of::<DirStats>(), 8 * 4 + 4 + 1 + 3);
        assert_eq!(size_of::<FlowValue>(), 2 * size_of::<DirStats>() + 8);
        assert_eq!(
            size_of::<FlowEvent>(),
            8 + size_of::<FlowKey>() + size_of::<FlowValue>()
        );
    }

    #[test]
    fn fingerprint_layouts_have_no_implicit_padding() {
        assert_eq!(
            size_of::<FpHeader>(),
            4 * 4 + 8 + 4 + 4 + size_of::<FlowKey>()
        );
        assert_eq!(size_of::<FpHeader>() % 8, 0);
        assert_eq!(
            size_of::<FpHeaderEvent>(),
            size_of::<FpHeader>() + FP_HDR_MAX
        );
        assert_eq!(size_of::<FpDataEvent>(), size_of::<FpHeader>() + FP_CHUNK);
        assert!(DEFAULT_FP_SNAPLEN as usize <= FP_CHUNK);
    }

    #[test]
    fn counter_names_cover_every_index() {
        assert_eq!(COUNTER_NAMES.len(), COUNTER_COUNT as usize);
        assert_eq!(COUNTER_NAMES[C_EVENTS_LOST as usize], "events_lost");
        assert!(
            DROP_REASONS
                .clone()
                .all(|i| COUNTER_NAMES[i as usize].starts_with("drop_"))
        );
    }

    #[test]
    fn value_totals() {
        let mut v = FlowValue::default();
        v.dir[0].packets = 3;
        v.dir[0].last_ns = 10;
        v.dir[1].packets = 2;
        v.dir[1].last_ns = 20;
        assert_eq!(v.packets(), 5);
        assert_eq!(v.last_ns(), 20);
    }
}
