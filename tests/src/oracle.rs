//! The ground truth: what entered the bridge, per bridge port, per unidirectional 5-tuple.
//!
//! One AF_PACKET `SOCK_RAW` socket per bridge port, opened in the switch namespace and bound
//! (protocol ETH_P_ALL) to that port's ifindex. Frames whose `sll_pkttype` is not
//! `PACKET_OUTGOING` are the ones that entered the bridge from that port — exactly what a sensor
//! hooked at the port's ingress sees. Each is parsed with `etherparse` (not with anything of the
//! sensor's) and counted:
//!
//! - frames of IPv4/IPv6 TCP, UDP, ICMP, ICMPv6 (and other IP protocols, ports 0) → a flow keyed by
//!   `(src ip, dst ip, src port, dst port, proto)`; ICMP's "ports" are `type << 8 | code` and 0,
//!   as the sensor keys them; bytes are whole frames, Ethernet header (and VLAN tags) included;
//! - everything else by kind, per port: not IP, IPv4 non-first fragment, IPv6 with extension
//!   headers (the sensor does not parse those), more than two VLAN tags, unparsable.
//!
//! The kernel moves a frame's outermost VLAN tag into metadata before packet taps see it; the
//! oracle reads it back (PACKET_AUXDATA) and puts it back in place, so lengths and VLAN ids are
//! those of the frame on the wire.
//!
//! [`Oracle::stop`] fails if the kernel dropped any frame for a socket (PACKET_STATISTICS).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use etherparse::{LinkExtSlice, NetSlice, SlicedPacket, TransportSlice};

use crate::netns::Lab;

/// One direction of a conversation, as the sensor keys its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl FlowKey {
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }
    /// The other direction.
    pub fn reverse(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} -> {}:{} proto {}",
            self.src, self.sport, self.dst, self.dport, self.proto
        )
    }
}

/// One frame of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Frame length on the wire (Ethernet header and VLAN tags included, no FCS).
    pub len: u32,
    pub tcp_flags: u8,
    /// Transport payload bytes: TCP/UDP data; ICMP/ICMPv6: what follows the 8-byte header.
    pub payload: u32,
}

#[derive(Clone, Debug, Default)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
    /// Union of TCP flags.
    pub tcp_flags: u8,
    /// Innermost VLAN id (0: untagged).
    pub vlan: u16,
    /// Bridge ports this direction entered through (one, normally).
    pub ports: BTreeSet<String>,
    /// Every frame, in arrival order.
    pub frames: Vec<FrameInfo>,
}

/// Frames of one port that are not part of a flow, by kind, plus totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames that entered the bridge here (all kinds) and their bytes.
    pub frames: u64,
    pub bytes: u64,
    /// Frames the port sent (PACKET_OUTGOING: left the bridge here); not counted anywhere else.
    pub outgoing: u64,
    pub non_ip: u64,
    pub fragments: u64,
    pub ipv6_ext: u64,
    pub vlan_over_2: u64,
    /// IP frames etherparse rejects (bad or cut headers), by ethertype of the IP layer.
    pub unparsed: u64,
}

/// What the oracle saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub flows: BTreeMap<FlowKey, FlowStats>,
    pub ports: BTreeMap<String, PortStats>,
}

impl Report {
    pub fn flow(&self, k: &FlowKey) -> Option<&FlowStats> {
        self.flows.get(k)
    }
    /// Frames that entered the bridge, all ports.
    pub fn total_frames(&self) -> u64 {
        self.ports.values().map(|p| p.frames).sum()
    }
}

/// Running capture on a set of bridge ports.
pub struct Oracle {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    threads: Vec<(String, JoinHandle<Result<Capture>>)>,
}

#[derive(Default)]
struct Capture {
    flows: BTreeMap<FlowKey, FlowStats>,
    port: PortStats,
}

const SOL_PACKET: libc::c_int = 263;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

fn setsockopt<T>(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
    what: &str,
) -> Result<()> {
    // SAFETY: `v` is a valid T for the option.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setsockopt {what}"));
    }
    Ok(())
}

/// Opens the capture socket for `ifindex` in the calling thread's namespace.
pub(crate) fn open_port_socket(ifindex: u32) -> Result<OwnedFd> {
    // Protocol 0 until bound: an ETH_P_ALL socket would see every interface's frames between
    // socket() and bind().
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    // SAFETY: we own the new fd.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, "PACKET_AUXDATA")?;
    let rcvbuf: libc::c_int = 32 << 20;
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &rcvbuf,
        "SO_RCVBUFFORCE",
    )?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
    // SAFETY: zeroed sockaddr_ll is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid address of the right size.
    let r = unsafe {
        libc::bind(
            fd,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("binding to ifindex {ifindex}"));
    }
    // Reset the statistics (reading them clears them).
    packet_stats(fd)?;
    Ok(owned)
}

fn packet_stats(fd: libc::c_int) -> Result<TpacketStats> {
    let mut st = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the right size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("PACKET_STATISTICS");
    }
    Ok(st)
}

impl Oracle {
    /// Captures on every current port of `lab`.
    pub fn start(lab: &Lab) -> Result<Oracle> {
        let ports = lab.ports();
        Self::start_ports(lab, &ports)
    }

    /// Captures on the given `(port name, ifindex)` pairs of `lab`'s switch namespace. Returns once
    /// every socket is bound: frames from then on are counted.
    pub fn start_ports(lab: &Lab, ports: &[(String, u32)]) -> Result<Oracle> {
        let fds = lab.in_switch(|| {
            ports
                .iter()
                .map(|(_, idx)| open_port_socket(*idx))
                .collect::<Result<Vec<_>>>()
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for ((name, _), fd) in ports.iter().zip(fds) {
            let (stop, seen, port) = (stop.clone(), seen.clone(), name.clone());
            let h = std::thread::Builder::new()
                .name(format!("oracle-{name}"))
                .spawn(move || capture(fd, &port, &stop, &seen))?;
            threads.push((name.clone(), h));
        }
        Ok(Oracle {
            stop,
            seen,
            threads,
        })
    }

    /// Frames received so far on all ports (any direction).
    pub fn frames_seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits until no frame has arrived for `quiet`; an error if that takes longer than `max`.
    pub fn wait_quiet(&self, quiet: Duration, max: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = self.frames_seen();
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.frames_seen();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
            if start.elapsed() > max {
                bail!("traffic did not stop within {max:?} ({now} frames seen)");
            }
        }
    }

    /// Stops capturing and returns what was seen; an error if the kernel dropped frames.
    pub fn stop(mut self) -> Result<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        let mut errors = Vec::new();
        for (name, h) in self.threads.drain(..) {
            match h.join() {
                Ok(Ok(c)) => {
                    for (k, s) in c.flows {
                        let e = report.flows.entry(k).or_default();
                        e.packets += s.packets;
                        e.bytes += s.bytes;
                        e.tcp_flags |= s.tcp_flags;
                        e.vlan = s.vlan;
                        e.ports.extend(s.ports);
                        e.frames.extend(s.frames);
                    }
                    report.ports.insert(name, c.port);
                }
                Ok(Err(e)) => errors.push(format!("{name}: {e:#}")),
                Err(_) => errors.push(format!("{name}: capture thread panicked")),
            }
        }
        if !errors.is_empty() {
            bail!("oracle failed: {}", errors.join("; "));
        }
        Ok(report)
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, h) in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn capture(fd: OwnedFd, port: &str, stop: &AtomicBool, seen: &AtomicU64) -> Result<Capture> {
    let raw = fd.as_raw_fd();
    let mut cap = Capture::default();
    let mut buf = vec![0u8; 65536 + 4];
    let mut cmsg = [0u64; 16];
    loop {
        // SAFETY: zeroed sockaddr_ll / msghdr are valid; pointers set below outlive the call.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // Leave 4 bytes in front to put a VLAN tag back.
        let mut iov = libc::iovec {
            iov_base: buf[4..].as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len() - 4,
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        // SAFETY: valid msghdr.
        let n = unsafe { libc::recvmsg(raw, &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    continue;
                }
                _ => return Err(e).with_context(|| format!("recvmsg on {port}")),
            }
        }
        seen.fetch_add(1, Ordering::Relaxed);
        let n = n as usize;
        if n > buf.len() - 4 {
            bail!("{port}: a {n}-byte frame (larger than the buffer: offloads on?)");
        }
        if sll.sll_pkttype == PACKET_OUTGOING {
            cap.port.outgoing += 1;
            continue;
        }
        let aux = auxdata(&msg);
        let frame: &[u8] = match aux {
            Some(a) if a.tp_status & TP_STATUS_VLAN_VALID != 0 && n >= 12 => {
                let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    a.tp_vlan_tpid
                } else {
                    0x8100
                };
                buf.copy_within(4..16, 0);
                buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                buf[14..16].copy_from_slice(&a.tp_vlan_tci.to_be_bytes());
                &buf[..n + 4]
            }
            _ => &buf[4..4 + n],
        };
        account(&mut cap, port, frame);
    }
    let st = packet_stats(raw)?;
    if st.tp_drops != 0 {
        bail!(
            "{port}: the kernel dropped {} of {} frames for the oracle's socket",
            st.tp_drops,
            st.tp_packets
        );
    }
    Ok(cap)
}

fn auxdata(msg: &libc::msghdr) -> Option<TpacketAuxdata> {
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                return Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c) as *const TpacketAuxdata
                ));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// How a frame is counted.
#[derive(Debug, PartialEq, Eq)]
pub enum Class {
    Flow {
        key: FlowKey,
        vlan: u16,
        info: FrameInfo,
    },
    NonIp,
    Fragment,
    Ipv6Ext,
    VlanOver2,
    Unparsed,
}

/// Classifies one frame (as on the wire).
pub fn classify(frame: &[u8]) -> Class {
    // The VLAN tags and ethertype, read by hand: etherparse stops at 3 tags and errors on frames
    // it cannot take apart, and the kind of a broken frame still matters.
    let mut off = 12;
    let mut tags = 0;
    let ethertype = loop {
        let Some(t) = frame.get(off..off + 2) else {
            return Class::Unparsed;
        };
        let t = u16::from_be_bytes([t[0], t[1]]);
        if t == 0x8100 || t == 0x88a8 {
            tags += 1;
            off += 4;
        } else {
            break t;
        }
    };
    if tags > 2 {
        return Class::VlanOver2;
    }
    if ethertype != 0x0800 && ethertype != 0x86dd {
        return Class::NonIp;
    }
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return Class::Unparsed;
    };
    let vlan = p
        .link_exts
        .iter()
        .filter_map(|e| match e {
            LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
            _ => None,
        })
        .next_back()
        .unwrap_or(0);
    let (src, dst, proto) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if h.fragments_offset().value() != 0 {
                return Class::Fragment;
            }
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.protocol().0,
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            if !v6.extensions().is_empty() {
                return Class::Ipv6Ext;
            }
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.next_header().0,
            )
        }
        _ => return Class::Unparsed,
    };
    let (sport, dport, tcp_flags, payload) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (
            t.source_port(),
            t.destination_port(),
            t.slice()[13],
            t.payload().len(),
        ),
        Some(TransportSlice::Udp(u)) => {
            (u.source_port(), u.destination_port(), 0, u.payload().len())
        }
        Some(TransportSlice::Icmpv4(i)) => (
            ((i.type_u8() as u16) << 8) | i.code_u8() as u16,
            0,
            0,
            i.payload().len(),
        ),
        Some(TransportSlice::Icmpv6(i)) => (
            ((i.type_u8() as u16) << 8) | i.code_u8() as u16,
            0,
            0,
            i.payload().len(),
        ),
        _ if matches!(proto, 1 | 6 | 17 | 58) => return Class::Unparsed,
        _ => (0, 0, 0, 0),
    };
    Class::Flow {
        key: FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
        },
        vlan,
        info: FrameInfo {
            len: frame.len() as u32,
            tcp_flags,
            payload: payload as u32,
        },
    }
}

fn account(cap: &mut Capture, port: &str, frame: &[u8]) {
    cap.port.frames += 1;
    cap.port.bytes += frame.len() as u64;
    match classify(frame) {
        Class::Flow { key, vlan, info } => {
            let s = cap.flows.entry(key).or_default();
            s.packets += 1;
            s.bytes += info.len as u64;
            s.tcp_flags |= info.tcp_flags;
            s.vlan = vlan;
            if !s.ports.contains(port) {
                s.ports.insert(port.to_owned());
            }
            s.frames.push(info);
        }
        Class::NonIp => cap.port.non_ip += 1,
        Class::Fragment => cap.port.fragments += 1,
        Class::Ipv6Ext => cap.port.ipv6_ext += 1,
        Class::VlanOver2 => cap.port.vlan_over_2 += 1,
        Class::Unparsed => cap.port.unparsed += 1,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::frames::{self, Ipv4};

    const A: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 11);
    const B: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 12);

    #[test]
    fn classifies_like_the_sensor_keys() {
        let udp = Ipv4::new(A, B, 17).build(&frames::udp(1000, 53, &[0; 5]));
        let f = frames::ethernet([1; 6], [2; 6], &[], frames::ETH_P_IP, &udp);
        let want = FlowKey::new(A.into(), 1000, B.into(), 53, 17);
        assert_eq!(
            classify(&f),
            Class::Flow {
                key: want,
                vlan: 0,
                info: FrameInfo {
                    len: 47,
                    tcp_flags: 0,
                    payload: 5
                }
            }
        );
        let echo = Ipv4::new(A, B, 1).build(&frames::icmp_echo(8, 1, 1, &[0; 8]));
        let f = frames::ethernet([1; 6], [2; 6], &[(0x8100, 7)], frames::ETH_P_IP, &echo);
        match classify(&f) {
            Class::Flow { key, vlan, info } => {
                assert_eq!(
                    (key.sport, key.dport, key.proto, vlan, info.len),
                    (0x0800, 0, 1, 7, 18 + 20 + 16)
                );
            }
            c => panic!("{c:?}"),
        }
        let v6 = frames::ipv6(
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::LOCALHOST,
            0,
            &frames::ipv6_hop_by_hop(17, &[0; 8]),
        );
        assert_eq!(
            classify(&frames::ethernet(
                [1; 6],
                [2; 6],
                &[],
                frames::ETH_P_IPV6,
                &v6
            )),
            Class::Ipv6Ext
        );
        assert_eq!(
            classify(&frames::ethernet(
                [1; 6],
                [2; 6],
                &[],
                frames::ETH_P_ARP,
                &[0; 28]
            )),
            Class::NonIp
        );
        assert_eq!(
            classify(&frames::ethernet(
                [1; 6],
                [2; 6],
                &[],
                frames::ETH_P_IP,
                &[]
            )),
            Class::Unparsed
        );
        assert_eq!(want.reverse().reverse(), want);
    }
}
