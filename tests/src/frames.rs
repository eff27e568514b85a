//! Hand-built Ethernet frames, valid or deliberately broken, and an AF_PACKET sender that puts
//! them on a host's interface byte for byte (veth does not validate anything above Ethernet, so
//! the bridge port's ingress sees exactly these bytes).
//!
//! The builders write whatever they are told: lengths, IHL, data offset and checksums are
//! parameters, so hostile frames are as easy to make as valid ones.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_LLDP: u16 = 0x88cc;

/// A unicast MAC no host of the lab has: frames sent to it are flooded by the bridge and dropped
/// by every host (PACKET_OTHERHOST), so they cause no replies.
pub const NOBODY_MAC: [u8; 6] = [0x02, 0xdc, 0x0e, 0x2e, 0xff, 0xff];

/// Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet II frame: `dst`, `src`, then each VLAN tag (TPID, TCI) in order, then `ethertype` and
/// `payload`.
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    vlans: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for &(tpid, tci) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header fields; [`Ipv4::build`] writes them as given (checksum computed).
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub version: u8,
    /// In 32-bit words; 5 for a header without options. Options (zeros) are written when > 5.
    pub ihl: u8,
    /// `None`: header + payload length.
    pub total_len: Option<u16>,
    /// Flags (3 bits) and fragment offset (13 bits, in 8-byte units), as on the wire.
    pub flags_frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            version: 4,
            ihl: 5,
            total_len: None,
            flags_frag: 0x4000,
            ttl: 64,
            proto,
            src,
            dst,
        }
    }
    /// Header (of `max(ihl, 5) * 4` bytes, so a bogus IHL still leaves a full base header) + payload.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hlen = (self.ihl.max(5) as usize) * 4;
        let total = self.total_len.unwrap_or((hlen + payload.len()) as u16);
        let mut h = vec![0u8; hlen];
        h[0] = (self.version << 4) | (self.ihl & 0x0f);
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[6..8].copy_from_slice(&self.flags_frag.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// IPv6 header (40 bytes) + payload; `next` is the next-header field as given.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An 8-byte IPv6 hop-by-hop options header (PadN only) followed by `payload` (of type `next`).
pub fn ipv6_hop_by_hop(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(payload);
    h
}

/// UDP header (length field = 8 + payload, checksum 0 = none) + payload.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// TCP header with data offset `doff` (words; the header written is `max(doff, 5) * 4` bytes) and
/// `flags`, then payload. Checksum left 0 (nothing on the path checks it).
pub fn tcp(sport: u16, dport: u16, flags: u8, doff: u8, payload: &[u8]) -> Vec<u8> {
    let hlen = (doff.max(5) as usize) * 4;
    let mut t = vec![0u8; hlen];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = (doff & 0x0f) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&8192u16.to_be_bytes());
    t.extend_from_slice(payload);
    t
}

/// ICMP (v4) echo request/reply: type, code 0, checksum, identifier, sequence, payload.
pub fn icmp_echo(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Sends raw Ethernet frames out of `ifname` (in the calling thread's namespace) through an
/// AF_PACKET socket, one `sendto` per frame; fails if the kernel refuses or shortens one.
///
/// Note: Linux refuses frames shorter than the 14-byte Ethernet header on Ethernet devices
/// (`dev_validate_header`: EINVAL), so the shortest frame that can be put on a veth is 14 bytes.
pub fn send_frames(ifname: &str, frames: &[Vec<u8>]) -> Result<()> {
    let ifindex = crate::netns::ifindex(ifname)?;
    // Protocol 0: this socket only sends, it never receives.
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    // SAFETY: we own the fd.
    let _guard = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    for (i, f) in frames.iter().enumerate() {
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        if f.len() >= 6 {
            sll.sll_addr[..6].copy_from_slice(&f[..6]);
        }
        // SAFETY: valid buffer and address.
        let n = unsafe {
            libc::sendto(
                fd,
                f.as_ptr() as *const libc::c_void,
                f.len(),
                0,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending frame {i} ({} bytes) on {ifname}", f.len()));
        }
        if n as usize != f.len() {
            bail!("frame {i}: sent {n} of {} bytes", f.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let h = Ipv4::new(
            Ipv4Addr::new(10, 213, 0, 11),
            Ipv4Addr::new(10, 213, 0, 12),
            17,
        )
        .build(&[1, 2, 3]);
        assert_eq!(h.len(), 23);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 23);
        // A header with a correct checksum sums to zero.
        assert_eq!(checksum(&h[..20]), 0);
    }

    #[test]
    fn builders_write_what_they_are_told() {
        let mut bad = Ipv4::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6);
        bad.ihl = 3;
        bad.total_len = Some(0);
        let h = bad.build(&[]);
        assert_eq!(
            (h[0], h.len(), u16::from_be_bytes([h[2], h[3]])),
            (0x43, 20, 0)
        );
        let t = tcp(1, 2, 0x12, 2, &[9]);
        assert_eq!((t.len(), t[12] >> 4, t[13]), (21, 2, 0x12));
        let f = ethernet([1; 6], [2; 6], &[(ETH_P_8021Q, 0x0064)], ETH_P_IP, &[0xaa]);
        assert_eq!(
            f,
            [
                [1u8; 6].as_slice(),
                &[2; 6],
                &[0x81, 0, 0, 0x64, 0x08, 0, 0xaa]
            ]
            .concat()
        );
        let e = icmp_echo(8, 7, 1, &[0; 4]);
        assert_eq!(checksum(&e), 0);
    }
}
