//! p0f v3 TCP signature of a SYN or SYN-ACK (`ver:ittl:olen:mss:wsize,scale:olayout:quirks:pclass`),
//! computed from the IP + TCP headers exactly as p0f 3.09b's `parse_packet` and `dump_sig` do, so
//! the string equals the `raw_sig` p0f prints for the same packet.

use crate::util::ParseError;

/// p0f's MAX_TCP_OPT: at most this many options are recorded.
pub const MAX_TCP_OPT: usize = 24;
/// p0f's MAX_DIST: the largest TTL distance treated as "near".
pub const MAX_DIST: u8 = 35;

pub const TCPOPT_EOL: u8 = 0;
pub const TCPOPT_NOP: u8 = 1;
pub const TCPOPT_MAXSEG: u8 = 2;
pub const TCPOPT_WSCALE: u8 = 3;
pub const TCPOPT_SACKOK: u8 = 4;
pub const TCPOPT_SACK: u8 = 5;
pub const TCPOPT_TSTAMP: u8 = 8;

/// p0f's quirk bits, in p0f's print order.
pub mod quirk {
    pub const ECN: u32 = 0x0000_0001;
    pub const DF: u32 = 0x0000_0002;
    pub const NZ_ID: u32 = 0x0000_0004;
    pub const ZERO_ID: u32 = 0x0000_0008;
    pub const NZ_MBZ: u32 = 0x0000_0010;
    pub const FLOW: u32 = 0x0000_0020;
    pub const ZERO_SEQ: u32 = 0x0000_1000;
    pub const NZ_ACK: u32 = 0x0000_2000;
    pub const ZERO_ACK: u32 = 0x0000_4000;
    pub const NZ_URG: u32 = 0x0000_8000;
    pub const URG: u32 = 0x0001_0000;
    pub const PUSH: u32 = 0x0002_0000;
    pub const OPT_ZERO_TS1: u32 = 0x0100_0000;
    pub const OPT_NZ_TS2: u32 = 0x0200_0000;
    pub const OPT_EOL_NZ: u32 = 0x0400_0000;
    pub const OPT_EXWS: u32 = 0x0800_0000;
    pub const OPT_BAD: u32 = 0x1000_0000;

    /// (bit, name) in the order p0f prints them.
    pub const NAMES: [(u32, &str); 17] = [
        (DF, "df"),
        (NZ_ID, "id+"),
        (ZERO_ID, "id-"),
        (ECN, "ecn"),
        (NZ_MBZ, "0+"),
        (FLOW, "flow"),
        (ZERO_SEQ, "seq-"),
        (NZ_ACK, "ack+"),
        (ZERO_ACK, "ack-"),
        (NZ_URG, "uptr+"),
        (URG, "urgf+"),
        (PUSH, "pushf+"),
        (OPT_ZERO_TS1, "ts1-"),
        (OPT_NZ_TS2, "ts2+"),
        (OPT_EOL_NZ, "opt+"),
        (OPT_EXWS, "exws"),
        (OPT_BAD, "bad"),
    ];
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PUSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_ECE: u8 = 0x40;
const TCP_CWR: u8 = 0x80;

/// Everything p0f's matcher looks at in one SYN or SYN-ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSig {
    /// 4 or 6.
    pub ip_ver: u8,
    /// The TTL / hop limit as observed.
    pub ttl: u8,
    /// IPv4 option bytes (0 for IPv6).
    pub ip_opt_len: u8,
    /// TOS / traffic class without the ECN bits.
    pub tos: u8,
    /// MSS option value (0 when absent).
    pub mss: u16,
    pub win: u16,
    /// Window scale option value (0 when absent).
    pub wscale: u8,
    /// Option kinds in order (at most [`MAX_TCP_OPT`]).
    pub opt_layout: Vec<u8>,
    /// Bytes after an EOL option.
    pub opt_eol_pad: u8,
    /// p0f quirk bits ([`quirk`]).
    pub quirks: u32,
    /// The segment carried payload (p0f's pclass `+`).
    pub has_payload: bool,
    /// IP header + TCP header length (p0f's tot_hdr).
    pub tot_hdr: u16,
    /// First timestamp value (0 when absent).
    pub ts1: u32,
    /// SYN+ACK rather than SYN.
    pub syn_ack: bool,
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses an IPv4/IPv6 + TCP header of a SYN or SYN-ACK, as p0f does. `packet` may stop after the
/// TCP options (the sensor does not ship payload): the payload class comes from the IP length.
pub fn parse_syn(packet: &[u8]) -> Result<TcpSig, ParseError> {
    let first = *packet.first().ok_or(ParseError::Truncated)?;
    let mut quirks = 0u32;
    let (ip_ver, ttl, ip_opt_len, tos, ip_hdr, ip_total): (u8, u8, u8, u8, usize, usize) =
        match first >> 4 {
            4 => {
                if packet.len() < 20 {
                    return Err(ParseError::Truncated);
                }
                let hl = usize::from(first & 0x0f) * 4;
                if hl < 20 {
                    return Err(ParseError::Malformed("IPv4 header length below 20"));
                }
                let tot = usize::from(rd16(packet, 2));
                if packet[9] != 6 {
                    return Err(ParseError::Malformed("IPv4 packet is not TCP"));
                }
                let flags_off = rd16(packet, 6);
                if flags_off & !(0x4000 | 0x8000) != 0 {
                    return Err(ParseError::Malformed("IPv4 fragment"));
                }
                let tos_ecn = packet[1];
                if tos_ecn & 0x03 != 0 {
                    quirks |= quirk::ECN;
                }
                if flags_off & 0x8000 != 0 {
                    quirks |= quirk::NZ_MBZ;
                }
                let id = rd16(packet, 4);
                if flags_off & 0x4000 != 0 {
                    quirks |= quirk::DF;
                    if id != 0 {
                        quirks |= quirk::NZ_ID;
                    }
                } else if id == 0 {
                    quirks |= quirk::ZERO_ID;
                }
                if tot < hl + 20 {
                    return Err(ParseError::Malformed(
                        "IPv4 total length leaves no room for TCP",
                    ));
                }
                (4, packet[8], (hl - 20) as u8, tos_ecn >> 2, hl, tot)
            }
            6 => {
                if packet.len() < 40 {
                    return Err(ParseError::Truncated);
                }
                let ver_tos = rd32(packet, 0);
                if packet[6] != 6 {
                    return Err(ParseError::Malformed("IPv6 next header is not TCP"));
                }
                if ver_tos & 0xfffff != 0 {
                    quirks |= quirk::FLOW;
                }
                if (ver_tos >> 20) & 0x03 != 0 {
                    quirks |= quirk::ECN;
                }
                let tot = usize::from(rd16(packet, 4)) + 40;
                if tot < 60 {
                    return Err(ParseError::Malformed(
                        "IPv6 payload length leaves no room for TCP",
                    ));
                }
                (6, packet[7], 0, ((ver_tos >> 22) & 0x3f) as u8, 40, tot)
            }
            _ => return Err(ParseError::NotThis),
        };
    let tcp = packet.get(ip_hdr..).ok_or(ParseError::Truncated)?;
    if tcp.len() < 20 {
        return Err(ParseError::Truncated);
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 {
        return Err(ParseError::Malformed("TCP data offset below 20"));
    }
    if ip_hdr + doff > ip_total {
        return Err(ParseError::Malformed("TCP header past the IP length"));
    }
    if tcp.len() < doff {
        return Err(ParseError::Truncated);
    }
    let flags = tcp[13];
    let ty = flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST);
    if ty != TCP_SYN && ty != (TCP_SYN | TCP_ACK) {
        return Err(ParseError::Malformed("not a SYN or SYN-ACK"));
    }
    let syn_ack = ty == (TCP_SYN | TCP_ACK);
    if flags & (TCP_ECE | TCP_CWR) != 0 || tcp[12] & 0x01 != 0 {
        // p0f: ECE/CWR or the NS bit (TCP_NS_RES = 0x01 of doff_rsvd).
        quirks |= quirk::ECN;
    }
    let seq = rd32(tcp, 4);
    let ack = rd32(tcp, 8);
    if seq == 0 {
        quirks |= quirk::ZERO_SEQ;
    }
    if flags & TCP_ACK != 0 {
        if ack == 0 {
            quirks |= quirk::ZERO_ACK;
        }
    } else if tcp[8] & 1 != 0 {
        // p0f 3.09b tests `RD32(tcp->ack) & !(flags & RST)`: a bitwise AND with 1 of the raw
        // (little-endian host) load, i.e. the low bit of the ack's first wire byte. Reproduced
        // as is, so the signature equals p0f's.
        quirks |= quirk::NZ_ACK;
    }
    if flags & TCP_URG != 0 {
        quirks |= quirk::URG;
    } else if rd16(tcp, 18) != 0 {
        quirks |= quirk::NZ_URG;
    }
    if flags & TCP_PUSH != 0 {
        quirks |= quirk::PUSH;
    }
    let win = rd16(tcp, 14);
    let has_payload = ip_total > ip_hdr + doff;

    // Options, exactly as p0f walks them.
    let opts = &tcp[20..doff];
    let end = opts.len();
    let mut i = 0usize;
    let mut layout = Vec::with_capacity(8);
    let (mut mss, mut wscale, mut ts1, mut eol_pad) = (0u16, 0u8, 0u32, 0u8);
    let mut aborted = false;
    while i < end && layout.len() < MAX_TCP_OPT {
        let kind = opts[i];
        layout.push(kind);
        i += 1;
        match kind {
            TCPOPT_EOL => {
                eol_pad = (end - i) as u8;
                // p0f: `while (data < opt_end && !*data++);` then non-zero padding unless the
                // walk reached the end (a non-zero last byte is not flagged, as in p0f).
                while i < end {
                    let b = opts[i];
                    i += 1;
                    if b != 0 {
                        break;
                    }
                }
                if i != end {
                    quirks |= quirk::OPT_EOL_NZ;
                }
                i = end;
            }
            TCPOPT_NOP => {}
            TCPOPT_MAXSEG => {
                if i + 3 > end {
                    aborted = true;
                    break;
                }
                if opts[i] != 4 {
                    quirks |= quirk::OPT_BAD;
                }
                mss = rd16(opts, i + 1);
                i += 3;
            }
            TCPOPT_WSCALE => {
                if i + 2 > end {
                    aborted = true;
                    break;
                }
                if opts[i] != 3 {
                    quirks |= quirk::OPT_BAD;
                }
                wscale = opts[i + 1];
                if wscale > 14 {
                    quirks |= quirk::OPT_EXWS;
                }
                i += 2;
            }
            TCPOPT_SACKOK => {
                if i + 1 > end {
                    aborted = true;
                    break;
                }
                if opts[i] != 2 {
                    quirks |= quirk::OPT_BAD;
                }
                i += 1;
            }
            TCPOPT_SACK => {
                if i == end {
                    aborted = true;
                    break;
                }
                let l = usize::from(opts[i]);
                if !(10..=34).contains(&l) || i - 1 + l > end {
                    aborted = true;
                    break;
                }
                i += l - 1;
            }
            TCPOPT_TSTAMP => {
                if i + 9 > end {
                    aborted = true;
                    break;
                }
                if opts[i] != 10 {
                    quirks |= quirk::OPT_BAD;
                }
                ts1 = rd32(opts, i + 1);
                if ts1 == 0 {
                    quirks |= quirk::OPT_ZERO_TS1;
                }
                if !syn_ack && rd32(opts, i + 5) != 0 {
                    quirks |= quirk::OPT_NZ_TS2;
                }
                i += 9;
            }
            _ => {
                if i == end {
                    aborted = true;
                    break;
                }
                let l = usize::from(opts[i]);
                if !(2..=40).contains(&l) || i - 1 + l > end {
                    aborted = true;
                    break;
                }
                i += l - 1;
            }
        }
    }
    if aborted || i != end {
        quirks |= quirk::OPT_BAD;
    }
    Ok(TcpSig {
        ip_ver,
        ttl,
        ip_opt_len,
        tos,
        mss,
        win,
        wscale,
        opt_layout: layout,
        opt_eol_pad: eol_pad,
        quirks,
        has_payload,
        tot_hdr: (ip_hdr + doff) as u16,
        ts1,
        syn_ack,
    })
}

/// p0f's guess of the TTL distance for an unknown signature.
pub fn guess_dist(ttl: u8) -> u8 {
    match ttl {
        0..=32 => 32 - ttl,
        33..=64 => 64 - ttl,
        65..=128 => 128 - ttl,
        _ => 255 - ttl,
    }
}

/// p0f's `detect_win_multi`: `Some((multiplier, use_mtu))` when the window is a multiple of the
/// MSS or MTU (p0f's order of checks), else `None`.
pub fn win_multi(sig: &TcpSig, syn_mss: u16) -> Option<(u16, bool)> {
    let win = i32::from(sig.win);
    let mss = i32::from(sig.mss);
    if win == 0 || mss < 100 {
        return None;
    }
    let div = |d: i32, mtu: bool| -> Option<(u16, bool)> {
        (d != 0 && win % d == 0).then(|| ((win / d) as u16, mtu))
    };
    const MIN_TCP4: i32 = 40;
    const MIN_TCP6: i32 = 60;
    let v6 = sig.ip_ver == 6;
    div(mss, false)
        .or_else(|| {
            if sig.ts1 != 0 {
                div(mss - 12, false)
            } else {
                None
            }
        })
        .or_else(|| div(1500 - MIN_TCP4, false))
        .or_else(|| div(1500 - MIN_TCP4 - 12, false))
        .or_else(|| {
            if v6 {
                div(1500 - MIN_TCP6, false)
            } else {
                None
            }
        })
        .or_else(|| {
            if v6 {
                div(1500 - MIN_TCP6 - 12, false)
            } else {
                None
            }
        })
        .or_else(|| div(mss + MIN_TCP4, true))
        .or_else(|| div(mss + i32::from(sig.tot_hdr), true))
        .or_else(|| if v6 { div(mss + MIN_TCP6, true) } else { None })
        .or_else(|| div(1500, true))
        .or_else(|| {
            if syn_mss != 0 {
                div(i32::from(syn_mss), false)
            } else {
                None
            }
        })
        .or_else(|| {
            if syn_mss != 0 {
                div(i32::from(syn_mss) - 12, false)
            } else {
                None
            }
        })
}

/// p0f option-layout names (`mss`, `nop`, `ws`, `sok`, `sack`, `ts`, `eol+N`, `?N`).
pub fn layout_string(layout: &[u8], eol_pad: u8) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(layout.len() * 4);
    for (i, &k) in layout.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match k {
            TCPOPT_EOL => {
                let _ = write!(s, "eol+{eol_pad}");
            }
            TCPOPT_NOP => s.push_str("nop"),
            TCPOPT_MAXSEG => s.push_str("mss"),
            TCPOPT_WSCALE => s.push_str("ws"),
            TCPOPT_SACKOK => s.push_str("sok"),
            TCPOPT_SACK => s.push_str("sack"),
            TCPOPT_TSTAMP => s.push_str("ts"),
            other => {
                let _ = write!(s, "?{other}");
            }
        }
    }
    s
}

/// Comma-separated quirk names in p0f's order.
pub fn quirks_string(q: u32) -> String {
    let mut s = String::new();
    for (bit, name) in quirk::NAMES {
        if q & bit != 0 {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(name);
        }
    }
    s
}

impl TcpSig {
    /// The signature exactly as p0f prints it in `raw_sig`. `syn_mss` is the MSS of the SYN this
    /// SYN-ACK answers (0 for a SYN, or when the SYN was not seen): p0f uses it to spot windows
    /// that are multiples of the peer's MSS.
    pub fn raw_sig(&self, syn_mss: u16) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(96);
        let dist = guess_dist(self.ttl);
        if dist > MAX_DIST {
            let _ = write!(s, "{}:{}+?:{}:", self.ip_ver, self.ttl, self.ip_opt_len);
        } else {
            let _ = write!(
                s,
                "{}:{}+{}:{}:",
                self.ip_ver, self.ttl, dist, self.ip_opt_len
            );
        }
        // p0f-sendsyn's special MSS echoed back in a SYN-ACK is printed as a wildcard.
        if self.mss == 1331 && self.syn_ack {
            s.push_str("*:");
        } else {
            let _ = write!(s, "{}:", self.mss);
        }
        match win_multi(self, syn_mss) {
            Some((m, mtu)) if m > 0 => {
                let _ = write!(s, "{}*{m}", if mtu { "mtu" } else { "mss" });
            }
            _ => {
                let _ = write!(s, "{}", self.win);
            }
        }
        let _ = write!(s, ",{}:", self.wscale);
        s.push_str(&layout_string(&self.opt_layout, self.opt_eol_pad));
        s.push(':');
        s.push_str(&quirks_string(self.quirks));
        s.push_str(if self.has_payload { ":+" } else { ":0" });
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Linux 6.x SYN over loopback as the kernel builds it (bytes from a capture):
    /// ttl 64, DF, id≠0, win 65495, mss 65495, sok, ts, nop, ws 7.
    pub(crate) fn linux_syn() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x3c, 0x8a, 0x1f, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 127, 0, 0, 1,
            127, 0, 0, 1,
        ];
        p.extend_from_slice(&[
            0xd4, 0x31, 0x01, 0xbb, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xd7,
            0x00, 0x00, 0x00, 0x00, // options:
            0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0,
            0x01, 0x03, 0x03, 0x07,
        ]);
        p
    }

    #[test]
    fn linux_syn_gives_p0fs_raw_sig() {
        let s = parse_syn(&linux_syn()).unwrap();
        assert_eq!(
            s.raw_sig(0),
            "4:64+0:0:65495:mss*1,7:mss,sok,ts,nop,ws:df,id+:0"
        );
    }

    #[test]
    fn hostile_headers_never_panic() {
        let good = linux_syn();
        for n in 0..good.len() {
            assert!(parse_syn(&good[..n]).is_err(), "cut at {n}");
        }
        // Option lengths that lie: the walk stops and the `bad` quirk is set, like p0f.
        let mut lie = good.clone();
        lie[40 + 1] = 0xff; // MSS length byte... not checked by length (p0f sets bad)
        let s = parse_syn(&lie).unwrap();
        assert!(s.quirks & quirk::OPT_BAD != 0);
        let mut unk = good.clone();
        unk[40] = 0x22;
        unk[41] = 0x30; // unknown option claiming 48 bytes
        let s = parse_syn(&unk).unwrap();
        assert!(s.quirks & quirk::OPT_BAD != 0);
        assert_eq!(s.opt_layout, vec![0x22]);
        let mut ack = good;
        ack[33] = 0x10; // ACK only
        assert!(matches!(parse_syn(&ack), Err(ParseError::Malformed(_))));
    }
}
