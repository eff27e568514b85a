//! A decky's TCP/IP stack as a remote fingerprinting tool sees it: the SYN-ACK it answers a
//! SYN to an open port with (parsed by `decnet-fingerprint` into p0f v3's signature and
//! matched against p0f's database), and the RST it answers a SYN to a closed port with (its
//! TTL). Seen through a raw socket in the vantage namespace (CAP_NET_RAW), while an ordinary
//! connect sends the SYN — the prober sends nothing a plain TCP client would not.
use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use decnet_fingerprint::tcp::{TcpSig, parse_syn};
use socket2::Socket;

use crate::probe::Prober;

/// The MSS of the vantage's SYNs (a 1500-byte MTU): p0f reads SYN-ACK windows against it.
pub const SYN_MSS: u16 = 1460;

/// What the stack showed.
#[derive(Debug, Clone, Default)]
pub struct StackSeen {
    pub syn_ack: Option<TcpSig>,
    /// Why no SYN-ACK signature was taken.
    pub syn_ack_error: Option<String>,
    /// TTL and DF of the RST to a closed port.
    pub rst: Option<(u8, bool)>,
    pub rst_port: u16,
}

/// Why the stack could not be seen at all.
#[derive(Debug)]
pub enum StackError {
    /// No CAP_NET_RAW (or no raw sockets): skipped, counted, warned about once.
    NoRawSocket(io::Error),
}

/// Sends a SYN to `open` and one to `closed` on `ip` and reads the answers.
pub async fn probe(
    prober: &Prober,
    ip: Ipv4Addr,
    open: u16,
    closed: u16,
) -> Result<StackSeen, StackError> {
    let raw = prober.vantage.raw_tcp().map_err(StackError::NoRawSocket)?;
    let mut seen = StackSeen {
        rst_port: closed,
        ..Default::default()
    };
    // The SYN-ACK: an ordinary connect; the raw socket sees the answer.
    let addr = SocketAddr::V4(SocketAddrV4::new(ip, open));
    prober.pace().await;
    let conn = prober.vantage.connect(addr, prober.limits.connect).await;
    prober.traffic.count_probe();
    let local_port = match &conn {
        Ok(s) => s.local_addr().map(|a| a.port()).ok(),
        Err(e) => {
            seen.syn_ack_error = Some(format!("no connection to port {open}: {e}"));
            None
        }
    };
    drop(conn);
    // The RST: a connect to a closed port (refused).
    prober.pace().await;
    let refused = prober
        .vantage
        .connect(
            SocketAddr::V4(SocketAddrV4::new(ip, closed)),
            prober.limits.connect,
        )
        .await;
    prober.traffic.count_probe();
    if refused.is_ok() {
        seen.syn_ack_error
            .get_or_insert_with(|| format!("port {closed} was expected closed but accepted"));
    }
    let wait = prober.limits.read.min(Duration::from_secs(1));
    let (syn_ack, rst) =
        tokio::task::spawn_blocking(move || capture(&raw, ip, open, local_port, closed, wait))
            .await
            .unwrap_or((None, None));
    match syn_ack {
        Some(bytes) => match parse_syn(&bytes) {
            Ok(sig) => seen.syn_ack = Some(sig),
            Err(e) => seen.syn_ack_error = Some(format!("unparsable SYN-ACK: {e:?}")),
        },
        None if seen.syn_ack_error.is_none() => {
            seen.syn_ack_error = Some(format!("no SYN-ACK seen from port {open}"))
        }
        None => {}
    }
    seen.rst = rst;
    Ok(seen)
}

/// Reads segments from `raw` until both answers were seen or `wait` passed: the SYN-ACK from
/// `ip:open` to `local_port` (its IPv4 + TCP header bytes), and the RST from `ip:closed`
/// (TTL, DF).
fn capture(
    raw: &Socket,
    ip: Ipv4Addr,
    open: u16,
    local_port: Option<u16>,
    closed: u16,
    wait: Duration,
) -> (Option<Vec<u8>>, Option<(u8, bool)>) {
    let deadline = Instant::now() + wait;
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let (mut syn_ack, mut rst) = (None, None);
    while Instant::now() < deadline && (syn_ack.is_none() || rst.is_none()) {
        let n = match raw.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue, // the 100 ms read timeout
        };
        // SAFETY: recv initialised the first n bytes.
        let pkt: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let Some((src, sport, dport, flags, ttl, df)) = segment(&pkt) else {
            continue;
        };
        if src != ip {
            continue;
        }
        if sport == open && flags & 0x12 == 0x12 && local_port.is_none_or(|p| p == dport) {
            syn_ack = Some(pkt);
        } else if sport == closed && flags & 0x04 != 0 {
            rst = Some((ttl, df));
        }
    }
    (syn_ack, rst)
}

/// Source, ports, TCP flags, TTL and DF of an IPv4 TCP segment (`None` for anything else).
fn segment(p: &[u8]) -> Option<(Ipv4Addr, u16, u16, u8, u8, bool)> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 6 {
        return None;
    }
    let hl = usize::from(p[0] & 0x0f) * 4;
    let tcp = p.get(hl..hl + 14)?;
    Some((
        Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        u16::from_be_bytes([tcp[0], tcp[1]]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
        tcp[13],
        p[8],
        p[6] & 0x40 != 0,
    ))
}

/// The initial TTL a packet most likely left with (the next of 32, 64, 128, 255).
pub fn initial_ttl(seen: u8) -> u8 {
    match seen {
        0..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_read_only_when_whole() {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[6] = 0x40;
        p[8] = 128;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 5]);
        p[20..22].copy_from_slice(&22u16.to_be_bytes());
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        p[33] = 0x12;
        assert_eq!(
            segment(&p),
            Some((Ipv4Addr::new(10, 0, 0, 5), 22, 40000, 0x12, 128, true))
        );
        assert_eq!(segment(&p[..30]), None, "truncated TCP header");
        p[9] = 17;
        assert_eq!(segment(&p), None, "not TCP");
        assert_eq!(initial_ttl(57), 64);
        assert_eq!(initial_ttl(120), 128);
        assert_eq!(initial_ttl(250), 255);
    }
}
