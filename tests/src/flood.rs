//! Raw-frame floods for the sensor's benchmark and tests: an AF_PACKET socket bound to a host's
//! `eth0` with PACKET_QDISC_BYPASS, frames handed to the kernel with `sendmmsg` in batches of
//! [`BATCH`], the sending thread pinned to one core.
//!
//! - [`RawSender::flood`]: the same prebuilt frames over and over, as fast as the socket takes
//!   them (the datapath benchmark).
//! - [`scan`]: a scan-style flood of *new* flows: `count` distinct UDP 5-tuples, one frame each,
//!   paced at a given rate (the flow-table and flow-writer benchmark, and the accounting test).
use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};

use crate::{
    frames::{self, Ipv4},
    netns::Host,
};

/// Frames per `sendmmsg` call.
pub const BATCH: usize = 64;

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: plain libc calls on owned, initialised values.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// An AF_PACKET socket that sends whole Ethernet frames out of one interface, bypassing the qdisc.
/// Create it inside the interface's namespace.
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    pub fn open(ifindex: u32) -> Result<Self> {
        // SAFETY: socket creation; the fd is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        ensure!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: we own raw.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: valid pointer and length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        // SAFETY: valid option pointer and length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const _ as *const libc::c_void,
                4,
            )
        };
        ensure!(
            rc == 0,
            "PACKET_QDISC_BYPASS: {}",
            std::io::Error::last_os_error()
        );
        Ok(Self { fd })
    }

    /// Sends `frames` (at most [`BATCH`]) in one `sendmmsg`; returns how many the kernel took.
    /// A full device queue (ENOBUFS/EAGAIN) takes 0.
    pub fn send(&self, frames: &[&[u8]]) -> Result<usize> {
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: zeroed mmsghdr is valid; iov pointers set below.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let n = frames.len().min(BATCH);
        for k in 0..n {
            iovs[k] = libc::iovec {
                iov_base: frames[k].as_ptr() as *mut libc::c_void,
                iov_len: frames[k].len(),
            };
            msgs[k].msg_hdr.msg_iov = &mut iovs[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs point at live iovecs, which point at live frames.
        let r = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Ok(0),
                _ => Err(anyhow::anyhow!("sendmmsg: {e}")),
            };
        }
        Ok(r as usize)
    }

    /// Sends `frames` round-robin for `dur`, as fast as the socket takes them; returns frames sent.
    pub fn flood(&self, frames: &[Vec<u8>], dur: Duration) -> Result<u64> {
        ensure!(!frames.is_empty(), "nothing to flood");
        let ring: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let mut batch: Vec<&[u8]> = Vec::with_capacity(BATCH);
        let (mut sent, mut next) = (0u64, 0usize);
        let end = Instant::now() + dur;
        while Instant::now() < end {
            batch.clear();
            batch.extend((0..BATCH).map(|k| ring[(next + k) % ring.len()]));
            let r = self.send(&batch)?;
            sent += r as u64;
            next = (next + r) % ring.len();
        }
        Ok(sent)
    }
}

/// The `i`-th 5-tuple of a scan: source port 1024 + i mod 64,000, destination port
/// 1 + i / 64,000 (so up to 4 billion distinct tuples between one pair of addresses).
pub fn scan_ports(i: u64) -> (u16, u16) {
    ((1024 + i % 64_000) as u16, (1 + i / 64_000) as u16)
}

/// The address a scan targets: unassigned in the lab's /24, so the sink (whose MAC the frames
/// carry) drops them without answering, and the only flows are the scan's.
pub const SCAN_TARGET: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 250);

/// What [`scan`] did.
#[derive(Debug, Clone, Copy)]
pub struct ScanResult {
    /// Distinct 5-tuples sent (one frame each): tuples `0..sent` of [`scan_ports`].
    pub sent: u64,
    pub secs: f64,
}

/// Sends `count` UDP frames from `from` to [`SCAN_TARGET`] behind `to`'s MAC, each a new 5-tuple
/// ([`scan_ports`]), paced at `rate` frames per second (batches of [`BATCH`]); the sending thread
/// is pinned to CPU 0. Returns once every frame was taken by the socket.
pub fn scan(from: &Host, to: &Host, count: u64, rate: f64) -> Result<ScanResult> {
    ensure!(rate > 0.0, "scan rate must be positive");
    ensure!(
        count <= 64_000 * 65_535,
        "scan of {count} tuples is too large"
    );
    let (ifindex, src, src_mac, dst_mac) = (from.ifindex, from.ipv4, from.mac, to.mac);
    from.run(move || -> Result<ScanResult> {
        pin_to_cpu(0);
        let sock = RawSender::open(ifindex)?;
        let udp = frames::udp(0, 0, &[0x5a; 18]);
        let ip = Ipv4::new(src, SCAN_TARGET, 17).build(&udp);
        let template = frames::ethernet(dst_mac, src_mac, &[], frames::ETH_P_IP, &ip);
        // UDP ports at 14 (Ethernet) + 20 (IPv4): the IPv4 checksum does not cover them and the
        // UDP checksum is 0 (none).
        const SPORT: usize = 34;
        let mut bufs: Vec<Vec<u8>> = vec![template; BATCH];
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < count {
            let n = (count - sent).min(BATCH as u64) as usize;
            for (k, buf) in bufs.iter_mut().take(n).enumerate() {
                let (sp, dp) = scan_ports(sent + k as u64);
                buf[SPORT..SPORT + 2].copy_from_slice(&sp.to_be_bytes());
                buf[SPORT + 2..SPORT + 4].copy_from_slice(&dp.to_be_bytes());
            }
            let refs: Vec<&[u8]> = bufs[..n].iter().map(|b| b.as_slice()).collect();
            let mut done = 0;
            while done < n {
                let r = sock.send(&refs[done..])?;
                if r == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
                done += r;
            }
            sent += n as u64;
            // Pace: frame `sent` is due at sent / rate seconds.
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        Ok(ScanResult {
            sent,
            secs: start.elapsed().as_secs_f64(),
        })
    })?
}
