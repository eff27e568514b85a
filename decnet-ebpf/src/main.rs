//! decnet's passive flow sensor.
//!
//! One parser, two entry points: [`decnet_xdp`] (XDP, native or generic) and [`decnet_tc`] (TC
//! classifier), attached to the ingress of every port of the decoy bridge, so each bridged packet
//! is seen exactly once, where it enters the bridge. Both always pass the packet untouched.
//!
//! Every frame ends in exactly one place: accounted to a flow in `FLOWS`, or counted under a drop
//! reason in `COUNTERS` (see `decnet_common::DROP_REASONS`). A flow entry is created on its first
//! packet (ring-buffer START event) and reported once more when it ends (END event: RST, or FIN
//! seen both ways). Userspace exports idle entries by sweeping the map. A failed ring-buffer
//! reservation is counted in `C_EVENTS_LOST`; the flow itself stays in the map for the sweep.
//!
//! Fingerprints (issue 14): among the first `FP_PACKETS` packets of each direction of a TCP
//! flow, a SYN or SYN-ACK ships its raw IP + TCP headers and every data-bearing segment ships its
//! first `FP_SNAPLEN` payload bytes to the separate `FP_EVENTS` ring. Nothing else is sent per
//! packet; later packets of a flow cost one comparison. Cut segments are counted
//! (`C_FP_TRUNCATED`), lost events too (`C_FP_LOST`).
#![no_std]
#![no_main]
// The only unstable bit: `atomic_xadd`, which LLVM lowers to BPF's atomic add. The bpf target has
// no `AtomicU64::fetch_add`. Enabled for this crate only by RUSTC_BOOTSTRAP in .cargo/config.toml.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, TC_ACT_OK, xdp_action, xdp_md},
    cty::c_void,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    macros::{classifier, map, xdp},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use decnet_common::*;

#[map]
static FLOWS: HashMap<FlowKey, FlowValue> = HashMap::with_max_entries(DEFAULT_FLOW_ENTRIES, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Per-CPU scratch space for the key being built and a new flow's value: keeps them off the
/// 512-byte BPF stack.
#[repr(C)]
struct Scratch {
    key: FlowKey,
    value: FlowValue,
}

/// Fingerprint capture: its own ring, so handshakes never crowd out flow events.
#[map]
static FP_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_FP_RING_BYTES, 0);

/// Bytes kept per data-bearing segment (0: capture off). Set at load time by userspace
/// (`decnet sniffer --fp-snaplen`); read-only to the program, so the verifier sees a constant.
#[unsafe(no_mangle)]
static FP_SNAPLEN: u32 = DEFAULT_FP_SNAPLEN;

/// Leading packets per direction examined for fingerprints (`--fp-packets`).
#[unsafe(no_mangle)]
static FP_PACKETS: u32 = DEFAULT_FP_PACKETS;

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const EEXIST: i64 = 17;
/// How much of a TC skb we want in the linear area: Ethernet + 2 VLAN tags + IPv4 with options
/// (60) + TCP with options (60) fits.
const TC_PULL: u32 = 14 + 8 + 60 + 60;

/// What the kernel tells us about the frame, independent of the hook.
struct Frame {
    /// The program's context (`xdp_md` or `__sk_buff`), for the load-bytes helpers.
    ctx: *mut c_void,
    xdp: bool,
    data: usize,
    end: usize,
    /// Bytes this frame stands for (for a GSO skb: all its segments' payload plus one header).
    len: u64,
    /// Wire packets this frame stands for (GSO segments; 1 otherwise).
    segs: u64,
    ifindex: u32,
    /// TC only: the kernel already took the outermost VLAN tag out of the packet data
    /// (`skb_vlan_untag`); its VLAN id. It still counts as a tag (and as 4 bytes on the wire).
    outer_vlan: Option<u16>,
}

/// The result of parsing; the flow key itself is written to the scratch slot.
struct Parsed {
    /// 0: packet goes a → b; 1: b → a.
    dir: usize,
    proto: u8,
    tcp_flags: u8,
    /// Length of all headers up to and including L4: repeated once per extra GSO segment.
    hdr_len: u64,
    /// Offset of the IP header in the frame.
    l3_off: u32,
    /// Transport payload length per the IP header (TCP only; 0 otherwise).
    payload_len: u32,
    /// TCP sequence number (host order; TCP only).
    seq: u32,
}

#[xdp]
pub fn decnet_xdp(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let frame = Frame {
        ctx: ctx.ctx as *mut c_void,
        xdp: true,
        data,
        end,
        len: (end - data) as u64,
        segs: 1,
        ifindex: ctx.ingress_ifindex() as u32,
        outer_vlan: None,
    };
    observe(&frame);
    xdp_action::XDP_PASS
}

#[classifier]
pub fn decnet_tc(ctx: TcContext) -> i32 {
    let len = ctx.len();
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < TC_PULL && len > linear {
        // Headers of a non-linear skb: bring them into the linear area (no change to the packet).
        let _ = ctx.pull_data(if len < TC_PULL { len } else { TC_PULL });
    }
    // SAFETY: the context pointer is valid for the duration of the program.
    let (segs, ifindex, vlan_present, vlan_tci) = unsafe {
        let skb = ctx.skb.skb;
        (
            (*skb).gso_segs,
            (*skb).ifindex,
            (*skb).vlan_present,
            (*skb).vlan_tci,
        )
    };
    let outer_vlan = if vlan_present != 0 {
        Some((vlan_tci & 0x0fff) as u16)
    } else {
        None
    };
    let frame = Frame {
        ctx: ctx.skb.skb as *mut c_void,
        xdp: false,
        data: ctx.data(),
        end: ctx.data_end(),
        len: len as u64 + if outer_vlan.is_some() { 4 } else { 0 },
        segs: if segs > 1 { segs as u64 } else { 1 },
        ifindex,
        outer_vlan,
    };
    observe(&frame);
    TC_ACT_OK
}

/// The floor no sensor can beat: the same hook, nothing done. Only `cargo xtask bench sensor`
/// attaches it (`decnet sniffer --mode xdp-empty`), to measure what the hook itself costs.
#[xdp]
pub fn decnet_xdp_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// TC counterpart of [`decnet_xdp_empty`] (`--mode tc-empty`).
#[classifier]
pub fn decnet_tc_empty(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

#[inline(always)]
fn observe(f: &Frame) {
    let Some(sc) = SCRATCH.get_ptr_mut(0) else {
        count(C_PACKETS, f.segs);
        count(C_BYTES, f.len);
        count(C_UNSUPPORTED, f.segs);
        return;
    };
    // SAFETY: this CPU's scratch slot; programs do not nest on one CPU for these hooks.
    let key = unsafe { &mut (*sc).key };
    match parse(f, key) {
        Ok(p) => {
            // Each extra GSO segment repeats the headers (and the stripped VLAN tag) on the wire.
            let hdr = p.hdr_len + if f.outer_vlan.is_some() { 4 } else { 0 };
            let bytes = f.len + (f.segs - 1) * hdr;
            count(C_PACKETS, f.segs);
            count(C_BYTES, bytes);
            // SAFETY: as above.
            account(&p, key, unsafe { &mut (*sc).value }, f, bytes);
        }
        Err(reason) => {
            count(C_PACKETS, f.segs);
            count(C_BYTES, f.len);
            count(reason, f.segs);
        }
    }
}

#[inline(always)]
fn count(idx: u32, n: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot of this CPU; programs do not nest on one CPU for these hooks.
        unsafe { *c += n };
    }
}

/// Bounds-checked pointer into the packet: `Some` only if `size_of::<T>()` bytes at `off` exist.
#[inline(always)]
fn ptr_at<T>(f: &Frame, off: usize) -> Option<*const T> {
    let start = f.data + off;
    if start + core::mem::size_of::<T>() > f.end {
        return None;
    }
    Some(start as *const T)
}

#[inline(always)]
fn be16(f: &Frame, off: usize) -> Option<u16> {
    // SAFETY: ptr_at checked the bounds; packet data may be unaligned.
    ptr_at::<[u8; 2]>(f, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn parse(f: &Frame, key: &mut FlowKey) -> Result<Parsed, u32> {
    let mut ethertype = be16(f, 12).ok_or(C_TRUNCATED)?;
    let mut off = ETH_HLEN;
    // Up to two 802.1Q / 802.1ad tags (QinQ), counting one the kernel already stripped; the
    // innermost VLAN id is kept.
    let mut tags = 0u32;
    key.vlan = 0;
    if let Some(vid) = f.outer_vlan {
        key.vlan = vid;
        tags = 1;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        key.vlan = be16(f, off).ok_or(C_TRUNCATED)? & 0x0fff;
        ethertype = be16(f, off + 2).ok_or(C_TRUNCATED)?;
        off += 4;
        tags += 1;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            if tags >= 2 {
                return Err(C_UNSUPPORTED);
            }
            key.vlan = be16(f, off).ok_or(C_TRUNCATED)? & 0x0fff;
            ethertype = be16(f, off + 2).ok_or(C_TRUNCATED)?;
            off += 4;
            if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
                return Err(C_UNSUPPORTED);
            }
        }
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(f, off, key),
        ETH_P_IPV6 => parse_ipv6(f, off, key),
        _ => Err(C_NON_IP),
    }
}

#[inline(always)]
fn parse_ipv4(f: &Frame, off: usize, key: &mut FlowKey) -> Result<Parsed, u32> {
    let h = ptr_at::<[u8; 20]>(f, off).ok_or(C_TRUNCATED)?;
    // SAFETY: 20 bytes at `h` are inside the packet.
    let (vihl, total, frag, proto) = unsafe {
        (
            (*h)[0],
            u16::from_be_bytes([(*h)[2], (*h)[3]]),
            u16::from_be_bytes([(*h)[6], (*h)[7]]),
            (*h)[9],
        )
    };
    if vihl >> 4 != 4 {
        return Err(C_BAD_HEADER);
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 || (total as usize) < ihl {
        return Err(C_BAD_HEADER);
    }
    if frag & 0x1fff != 0 {
        return Err(C_FRAGMENT);
    }
    // The options must be in the frame too.
    if f.data + off + ihl > f.end {
        return Err(C_TRUNCATED);
    }
    key.family = FAMILY_V4;
    key.proto = proto;
    // SAFETY: bytes 12..20 of the header are inside the packet (checked above).
    unsafe {
        key.addr_a = [0; 16];
        key.addr_b = [0; 16];
        core::ptr::copy_nonoverlapping((h as *const u8).add(12), key.addr_a.as_mut_ptr(), 4);
        core::ptr::copy_nonoverlapping((h as *const u8).add(16), key.addr_b.as_mut_ptr(), 4);
    }
    parse_l4(f, off, off + ihl, total as usize - ihl, key)
}

#[inline(always)]
fn parse_ipv6(f: &Frame, off: usize, key: &mut FlowKey) -> Result<Parsed, u32> {
    let h = ptr_at::<[u8; 40]>(f, off).ok_or(C_TRUNCATED)?;
    // SAFETY: 40 bytes at `h` are inside the packet.
    let (ver, payload, next) = unsafe {
        (
            (*h)[0] >> 4,
            u16::from_be_bytes([(*h)[4], (*h)[5]]),
            (*h)[6],
        )
    };
    if ver != 6 {
        return Err(C_BAD_HEADER);
    }
    // Hop-by-hop, routing, fragment, destination options, AH, mobility, HIP, shim6, experimental.
    if matches!(next, 0 | 43 | 44 | 60 | 51 | 135 | 139 | 140 | 253 | 254) {
        return Err(C_IPV6_EXT);
    }
    key.family = FAMILY_V6;
    key.proto = next;
    // SAFETY: bytes 8..40 of the header are inside the packet.
    unsafe {
        core::ptr::copy_nonoverlapping((h as *const u8).add(8), key.addr_a.as_mut_ptr(), 16);
        core::ptr::copy_nonoverlapping((h as *const u8).add(24), key.addr_b.as_mut_ptr(), 16);
    }
    parse_l4(f, off, off + 40, payload as usize, key)
}

/// Parses the transport header at `off` and puts `key` (holding src in `a`, dst in `b`) into
/// canonical order.
#[inline(always)]
fn parse_l4(
    f: &Frame,
    l3_off: usize,
    off: usize,
    ip_payload: usize,
    key: &mut FlowKey,
) -> Result<Parsed, u32> {
    let mut seq = 0u32;
    let (sport, dport, flags, l4_len) = match key.proto {
        IPPROTO_TCP => {
            if ip_payload < 20 {
                return Err(C_TRUNCATED);
            }
            let h = ptr_at::<[u8; 20]>(f, off).ok_or(C_TRUNCATED)?;
            // SAFETY: 20 bytes at `h` are inside the packet.
            let (sport, dport, doff, flags) = unsafe {
                seq = u32::from_be_bytes([(*h)[4], (*h)[5], (*h)[6], (*h)[7]]);
                (
                    u16::from_be_bytes([(*h)[0], (*h)[1]]),
                    u16::from_be_bytes([(*h)[2], (*h)[3]]),
                    (*h)[12] >> 4,
                    (*h)[13],
                )
            };
            if doff < 5 {
                return Err(C_BAD_HEADER);
            }
            (sport, dport, flags, (doff as usize) * 4)
        }
        IPPROTO_UDP => {
            if ip_payload < 8 {
                return Err(C_TRUNCATED);
            }
            // One bounds check on one pointer: the verifier tracks ranges per pointer.
            let h = ptr_at::<[u8; 8]>(f, off).ok_or(C_TRUNCATED)?;
            // SAFETY: 8 bytes at `h` are inside the packet.
            let (sport, dport) = unsafe {
                (
                    u16::from_be_bytes([(*h)[0], (*h)[1]]),
                    u16::from_be_bytes([(*h)[2], (*h)[3]]),
                )
            };
            (sport, dport, 0, 8)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if ip_payload < 4 {
                return Err(C_TRUNCATED);
            }
            let h = ptr_at::<[u8; 4]>(f, off).ok_or(C_TRUNCATED)?;
            // SAFETY: 4 bytes at `h` are inside the packet.
            let type_code = unsafe { u16::from_be_bytes([(*h)[0], (*h)[1]]) };
            (type_code, 0, 0, 4)
        }
        _ => (0, 0, 0, 0),
    };

    // Canonical order: endpoint a is the lower (address, port).
    let order = cmp_addr(&key.addr_a, &key.addr_b);
    let dir = if order < 0 || (order == 0 && sport <= dport) {
        key.port_a = sport;
        key.port_b = dport;
        0
    } else {
        core::mem::swap(&mut key.addr_a, &mut key.addr_b);
        key.port_a = dport;
        key.port_b = sport;
        1
    };
    let payload_len = if key.proto == IPPROTO_TCP && ip_payload > l4_len {
        (ip_payload - l4_len) as u32
    } else {
        0
    };
    Ok(Parsed {
        dir,
        proto: key.proto,
        tcp_flags: flags,
        hdr_len: (off + l4_len) as u64,
        l3_off: l3_off as u32,
        payload_len,
        seq,
    })
}

/// Orders two addresses (any consistent total order will do: it only picks endpoint a).
#[inline(always)]
fn cmp_addr(a: &[u8; 16], b: &[u8; 16]) -> i32 {
    let (a0, a1) = halves(a);
    let (b0, b1) = halves(b);
    if a0 != b0 {
        return if a0 < b0 { -1 } else { 1 };
    }
    if a1 != b1 {
        return if a1 < b1 { -1 } else { 1 };
    }
    0
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    // SAFETY: 16 readable bytes; unaligned reads of plain integers.
    unsafe {
        (
            core::ptr::read_unaligned(a.as_ptr() as *const u64),
            core::ptr::read_unaligned(a.as_ptr().add(8) as *const u64),
        )
    }
}

/// Builds, in `nv` (the scratch slot), the value of a flow whose first packet is `p`.
#[inline(always)]
fn fresh(nv: &mut FlowValue, p: &Parsed, f: &Frame, bytes: u64, now: u64) {
    // SAFETY: `nv` is a valid, exclusive reference.
    unsafe { core::ptr::write_bytes(nv as *mut FlowValue, 0, 1) };
    let d = if p.dir == 0 {
        &mut nv.dir[0]
    } else {
        &mut nv.dir[1]
    };
    d.packets = f.segs;
    d.bytes = bytes;
    d.first_ns = now;
    d.last_ns = now;
    d.ifindex = f.ifindex;
    d.tcp_flags = p.tcp_flags;
    if p.proto == IPPROTO_TCP {
        nv.state = tcp_state(0, p.tcp_flags, p.dir);
    }
}

/// TCP end-of-flow bits after seeing `flags` in direction `dir`.
#[inline(always)]
fn tcp_state(state: u32, flags: u8, dir: usize) -> u32 {
    let mut s = state;
    if flags & TCP_RST != 0 {
        s |= STATE_RST;
    }
    if flags & TCP_FIN != 0 {
        s |= if dir == 0 { STATE_FIN_A } else { STATE_FIN_B };
    }
    s
}

#[inline(always)]
fn is_over(state: u32) -> bool {
    state & STATE_RST != 0 || state & (STATE_FIN_A | STATE_FIN_B) == (STATE_FIN_A | STATE_FIN_B)
}

#[inline(always)]
fn account(p: &Parsed, key: &FlowKey, nv: &mut FlowValue, f: &Frame, bytes: u64) {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(v) = FLOWS.get_ptr_mut(key) {
        update(v, p, key, nv, f, bytes, now);
        return;
    }
    if p.proto == IPPROTO_TCP {
        fingerprint(f, p, key, 0, now);
    }
    fresh(nv, p, f, bytes, now);
    // The START event's slot is reserved before the entry is stored, so the stored value can
    // say whether userspace gets its snapshot (STATE_START_SENT).
    let slot = EVENTS.reserve::<FlowEvent>(0);
    if slot.is_some() {
        nv.state |= STATE_START_SENT;
    }
    match FLOWS.insert(key, &*nv, BPF_NOEXIST as u64) {
        Ok(()) => started(key, nv, f, slot),
        Err(e) if i64::from(e) == -EEXIST => {
            if let Some(s) = slot {
                s.discard(0);
            }
            match FLOWS.get_ptr_mut(key) {
                // Another CPU created it between our lookup and insert.
                Some(v) => update(v, p, key, nv, f, bytes, now),
                None => count(C_MAP_FULL, f.segs),
            }
        }
        Err(_) => {
            if let Some(s) = slot {
                s.discard(0);
            }
            count(C_MAP_FULL, f.segs)
        }
    }
}

/// Bookkeeping after the new value `nv` was stored for `key`; `slot` is the START event's
/// reserved ring-buffer entry (`None`: the ring was full, counted as a lost event).
#[inline(always)]
fn started(
    key: &FlowKey,
    nv: &mut FlowValue,
    f: &Frame,
    slot: Option<aya_ebpf::maps::ring_buf::RingBufEntry<FlowEvent>>,
) {
    count(C_FLOW_PACKETS, f.segs);
    count(C_FLOWS_STARTED, 1);
    match slot {
        Some(entry) => fill(entry, EVENT_START, key, nv),
        None => count(C_EVENTS_LOST, 1),
    }
    if is_over(nv.state) {
        // A lone RST: the flow starts and ends with this packet.
        if let Some(stored) = FLOWS.get_ptr_mut(key) {
            // SAFETY: map value pointer from the lookup.
            unsafe { (*stored).state |= STATE_ENDED };
        }
        count(C_FLOWS_ENDED, 1);
        nv.state |= STATE_ENDED;
        emit(EVENT_END, key, nv);
    }
}

#[inline(always)]
fn update(
    v: *mut FlowValue,
    p: &Parsed,
    key: &FlowKey,
    nv: &mut FlowValue,
    f: &Frame,
    bytes: u64,
    now: u64,
) {
    // SAFETY: `v` points to a live map value; concurrent updates of the counters use atomics,
    // the rest are single stores whose races can only lose a timestamp by nanoseconds.
    unsafe {
        let state = (*v).state;
        if p.proto == IPPROTO_TCP
            && state & STATE_ENDED != 0
            && p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        {
            // A new connection on the 5-tuple of an ended one: report the old flow's final
            // counts, then start over in the same entry.
            emit(EVENT_END, key, v);
            fingerprint(f, p, key, 0, now);
            fresh(nv, p, f, bytes, now);
            let slot = EVENTS.reserve::<FlowEvent>(0);
            if slot.is_some() {
                nv.state |= STATE_START_SENT;
            }
            if FLOWS.insert(key, &*nv, BPF_ANY as u64).is_ok() {
                started(key, nv, f, slot);
            } else {
                if let Some(s) = slot {
                    s.discard(0);
                }
                count(C_MAP_FULL, f.segs);
            }
            return;
        }
        if (*v).updated == 0 {
            // The value departs from its START snapshot (one plain store, once per flow).
            (*v).updated = 1;
        }

        let d = if p.dir == 0 {
            &mut (*v).dir[0]
        } else {
            &mut (*v).dir[1]
        };
        if d.packets == 0 {
            d.first_ns = now;
            d.ifindex = f.ifindex;
        }
        // A plain read: BPF's generic CPU cannot use the atomic add's return value, and a race
        // here only shifts which packets count as "leading" by one.
        let before = d.packets;
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut d.packets, f.segs);
        if p.proto == IPPROTO_TCP {
            fingerprint(f, p, key, before, now);
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut d.bytes, bytes);
        d.last_ns = now;
        if p.tcp_flags & !d.tcp_flags != 0 {
            d.tcp_flags |= p.tcp_flags;
        }
        count(C_FLOW_PACKETS, f.segs);

        if p.proto == IPPROTO_TCP && p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            let next = tcp_state(state, p.tcp_flags, p.dir);
            if next != state {
                if state & STATE_ENDED == 0 && is_over(next) {
                    (*v).state = next | STATE_ENDED;
                    count(C_FLOWS_ENDED, 1);
                    emit(EVENT_END, key, v);
                } else {
                    (*v).state = next;
                }
            }
        }
    }
}

#[inline(always)]
fn emit(kind: u32, key: &FlowKey, value: *const FlowValue) {
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(entry) => fill(entry, kind, key, value),
        None => count(C_EVENTS_LOST, 1),
    }
}

/// Writes the event into its reserved ring-buffer entry and submits it.
#[inline(always)]
fn fill(
    mut entry: aya_ebpf::maps::ring_buf::RingBufEntry<FlowEvent>,
    kind: u32,
    key: &FlowKey,
    value: *const FlowValue,
) {
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is reserved ring-buffer memory of the right size; `value` points to a map
    // value or the scratch slot. Copied in place, to keep it off the stack.
    unsafe {
        (*e).kind = kind;
        (*e)._pad = 0;
        core::ptr::copy_nonoverlapping(key, &mut (*e).key, 1);
        core::ptr::copy_nonoverlapping(value, &mut (*e).value, 1);
    }
    entry.submit(0);
}

/// Reads a load-time constant (the verifier knows its value: `.rodata` is frozen).
#[inline(always)]
fn global(v: &u32) -> u32 {
    // SAFETY: a valid static; volatile so the compiler does not fold the default value in.
    unsafe { core::ptr::read_volatile(v) }
}

/// Fingerprint capture for a TCP packet that was the `before`-th (0-based) of its direction.
#[inline(always)]
fn fingerprint(f: &Frame, p: &Parsed, key: &FlowKey, before: u64, now: u64) {
    let snaplen = global(&FP_SNAPLEN);
    if snaplen == 0 || before >= global(&FP_PACKETS) as u64 {
        return;
    }
    if p.tcp_flags & (TCP_SYN | TCP_RST) == TCP_SYN {
        fp_header(f, p, key, now);
    }
    if p.payload_len > 0 {
        fp_data(f, p, key, now, snaplen);
    }
}

#[inline(always)]
fn fp_fill_header(h: &mut FpHeader, kind: u32, f: &Frame, p: &Parsed, key: &FlowKey, now: u64) {
    h.kind = kind;
    h.seq = p.seq;
    h.ts_ns = now;
    h.ifindex = f.ifindex;
    h.dir = p.dir as u8;
    h.tcp_flags = p.tcp_flags;
    h._pad = [0; 2];
    h.key = *key;
}

/// Copies `len` bytes at frame offset `off` to `dst` with the hook's load-bytes helper (which
/// also reads paged skb data). Returns false if the helper failed.
#[inline(always)]
fn load(f: &Frame, off: u32, dst: *mut u8, len: u32) -> bool {
    // SAFETY: `dst` has room for `len` bytes (the caller bounds it); the context is the program's.
    let r = unsafe {
        if f.xdp {
            bpf_xdp_load_bytes(f.ctx as *mut xdp_md, off, dst as *mut c_void, len)
        } else {
            bpf_skb_load_bytes(f.ctx as *const c_void, off, dst as *mut c_void, len)
        }
    };
    r == 0
}

/// A SYN or SYN-ACK: its IP + TCP headers.
#[inline(always)]
fn fp_header(f: &Frame, p: &Parsed, key: &FlowKey, now: u64) {
    let wire = (p.hdr_len as u32).wrapping_sub(p.l3_off);
    let mut n = wire;
    if n > FP_HDR_MAX as u32 {
        n = FP_HDR_MAX as u32;
    }
    if n == 0 {
        return;
    }
    let Some(mut entry) = FP_EVENTS.reserve::<FpHeaderEvent>(0) else {
        count(C_FP_LOST, 1);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is reserved ring memory of the right size; `n` ≤ FP_HDR_MAX.
    let ok = unsafe {
        fp_fill_header(&mut (*e).h, FP_EVENT_HEADER, f, p, key, now);
        (*e).h.len = n;
        (*e).h.wire_len = wire;
        load(f, p.l3_off, (*e).bytes.as_mut_ptr(), n)
    };
    if ok {
        entry.submit(0);
        count(C_FP_HEADERS, 1);
    } else {
        entry.discard(0);
        count(C_FP_LOST, 1);
    }
}

/// A data-bearing segment: its first `snaplen` payload bytes.
#[inline(always)]
fn fp_data(f: &Frame, p: &Parsed, key: &FlowKey, now: u64, snaplen: u32) {
    let off = p.hdr_len as u32;
    let wire = p.payload_len;
    let mut n = wire;
    if n > snaplen {
        n = snaplen;
    }
    if n > FP_CHUNK as u32 {
        n = FP_CHUNK as u32;
    }
    if n == 0 {
        return;
    }
    let Some(mut entry) = FP_EVENTS.reserve::<FpDataEvent>(0) else {
        count(C_FP_LOST, 1);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is reserved ring memory of the right size; 0 < `n` ≤ FP_CHUNK.
    let ok = unsafe {
        fp_fill_header(&mut (*e).h, FP_EVENT_DATA, f, p, key, now);
        (*e).h.len = n;
        (*e).h.wire_len = wire;
        load(f, off, (*e).bytes.as_mut_ptr(), n)
    };
    if ok {
        entry.submit(0);
        count(C_FP_SEGMENTS, 1);
        if wire > n {
            count(C_FP_TRUNCATED, 1);
        }
    } else {
        entry.discard(0);
        count(C_FP_LOST, 1);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path; this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
