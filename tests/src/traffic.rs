//! Deterministic traffic from plain sockets.
//!
//! The functions without a namespace argument act in the calling thread's namespace: call them
//! inside [`crate::netns::run_in`] / [`crate::netns::Host::run`]. Servers and sinks take the
//! namespace and run on their own thread in it until stopped.
//!
//! TCP exchanges are request/response: the client connects (TCP_NODELAY), writes its whole request
//! in one `write` (≤ 1000 bytes: one segment), reads the whole response, waits for the server's
//! FIN and closes. The request's first 8 bytes say how long the request is and how long the
//! response must be, so one server serves exchanges of any sizes. The server reads exactly the
//! request, writes exactly the response in one `write`, and closes (it never leaves unread data
//! behind, so closes are FINs, never RSTs).

use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use socket2::{Domain, Protocol, Socket, Type};

/// The most a request or response may be: one segment, one write.
pub const MAX_MESSAGE: usize = 1000;
/// Every request starts with its own length and the response length (u32 each, big endian).
pub const REQUEST_HEADER: usize = 8;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn socket_for(addr: &SocketAddr, ty: Type, proto: Protocol) -> Result<Socket> {
    let s = Socket::new(Domain::for_address(*addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

// --- TCP ----------------------------------------------------------------------------------------

/// A TCP server running in a namespace; see the module docs for what it does per connection.
pub struct TcpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl TcpServer {
    /// Listens on `addr` inside `ns`; returns once listening.
    pub fn start(ns: &str, addr: SocketAddr) -> Result<TcpServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let (stop2, served2) = (stop.clone(), served.clone());
        let handle = crate::netns::spawn_in(ns, move || -> Result<()> {
            let listener = match (|| -> Result<TcpListener> {
                let s = socket_for(&addr, Type::STREAM, Protocol::TCP)?;
                s.set_reuse_address(true)?;
                s.bind(&addr.into())?;
                s.listen(128)?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })() {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
            };
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        serve_one(conn).with_context(|| format!("serving {peer} on {addr}"))?;
                        served2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => return Err(e).context("accept"),
                }
            }
            Ok(())
        })?;
        rx.recv()
            .context("server thread died")?
            .with_context(|| format!("listening on {addr}"))?;
        Ok(TcpServer {
            addr,
            stop,
            served,
            handle: Some(handle),
        })
    }

    /// Connections served completely so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the server; returns the number of connections served, or the first error it hit.
    pub fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().expect("not stopped yet").join() {
            Ok(r) => r.map(|()| self.served()),
            Err(_) => bail!("server thread on {} panicked", self.addr),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(mut conn: TcpStream) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = [0u8; REQUEST_HEADER];
    conn.read_exact(&mut head)
        .context("reading request header")?;
    let req_len = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let resp_len = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    ensure!(
        (REQUEST_HEADER..=MAX_MESSAGE).contains(&req_len),
        "bad request length {req_len}"
    );
    ensure!(resp_len <= MAX_MESSAGE, "bad response length {resp_len}");
    let mut rest = vec![0u8; req_len - REQUEST_HEADER];
    conn.read_exact(&mut rest).context("reading request body")?;
    if resp_len > 0 {
        let n = conn
            .write(&pattern(resp_len, 0x80))
            .context("writing response")?;
        ensure!(n == resp_len, "short write: {n} of {resp_len}");
    }
    Ok(())
}

/// What one [`tcp_exchange`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpExchange {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub request: usize,
    pub response: usize,
}

/// One request/response exchange with a [`TcpServer`] (in the calling thread's namespace).
/// `src` binds the client (a fixed source port makes the 5-tuple known in advance).
pub fn tcp_exchange(
    src: Option<SocketAddr>,
    dst: SocketAddr,
    request: usize,
    response: usize,
) -> Result<TcpExchange> {
    ensure!(
        (REQUEST_HEADER..=MAX_MESSAGE).contains(&request),
        "request must be 8..=1000 bytes"
    );
    ensure!(response <= MAX_MESSAGE, "response must be ≤ 1000 bytes");
    let s = socket_for(&dst, Type::STREAM, Protocol::TCP)?;
    if let Some(src) = src {
        s.bind(&src.into())
            .with_context(|| format!("binding {src}"))?;
    }
    s.set_tcp_nodelay(true)?;
    s.connect_timeout(&dst.into(), IO_TIMEOUT)
        .with_context(|| format!("connecting to {dst}"))?;
    let mut conn: TcpStream = s.into();
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let client = conn.local_addr()?;
    let mut req = pattern(request, 0x20);
    req[0..4].copy_from_slice(&(request as u32).to_be_bytes());
    req[4..8].copy_from_slice(&(response as u32).to_be_bytes());
    let n = conn.write(&req).context("writing request")?;
    ensure!(n == request, "short write: {n} of {request}");
    let mut resp = vec![0u8; response];
    conn.read_exact(&mut resp)
        .with_context(|| format!("reading {response}-byte response from {dst}"))?;
    ensure!(
        resp == pattern(response, 0x80),
        "response from {dst} has the wrong bytes"
    );
    // Wait for the server's FIN: the close is then a plain passive close.
    let mut extra = [0u8; 1];
    let n = conn
        .read(&mut extra)
        .context("waiting for the server's FIN")?;
    ensure!(n == 0, "server sent more than {response} bytes");
    Ok(TcpExchange {
        client,
        server: dst,
        request,
        response,
    })
}

// --- UDP ----------------------------------------------------------------------------------------

/// A UDP socket in a namespace that counts (and discards) what it receives; it exists so that no
/// ICMP port-unreachable answers the datagrams.
pub struct UdpSink {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl UdpSink {
    pub fn start(ns: &str, addr: SocketAddr) -> Result<UdpSink> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let (stop2, received2) = (stop.clone(), received.clone());
        let handle = crate::netns::spawn_in(ns, move || {
            let sock = match (|| -> Result<UdpSocket> {
                let s = socket_for(&addr, Type::DGRAM, Protocol::UDP)?;
                s.set_recv_buffer_size(4 << 20)?;
                s.bind(&addr.into())?;
                let u: UdpSocket = s.into();
                u.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok(u)
            })() {
                Ok(u) => {
                    let _ = tx.send(Ok(()));
                    u
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    received2.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?;
        rx.recv()
            .context("sink thread died")?
            .with_context(|| format!("binding UDP {addr}"))?;
        Ok(UdpSink {
            addr,
            stop,
            received,
            handle: Some(handle),
        })
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` datagrams arrived (error after `timeout`).
    pub fn wait_for(&self, n: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.received() < n {
            if Instant::now() > deadline {
                bail!(
                    "UDP sink {} received {} of {n} datagrams",
                    self.addr,
                    self.received()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends, from one socket bound to `src`, `count` datagrams of `size` payload bytes to each
/// `(dst, count, size)` in turn. Returns the socket's local address.
pub fn udp_send(src: SocketAddr, sends: &[(SocketAddr, usize, usize)]) -> Result<SocketAddr> {
    let s = socket_for(&src, Type::DGRAM, Protocol::UDP)?;
    s.bind(&src.into())
        .with_context(|| format!("binding {src}"))?;
    let sock: UdpSocket = s.into();
    for &(dst, count, size) in sends {
        let payload = pattern(size, 0x40);
        for i in 0..count {
            let n = sock
                .send_to(&payload, dst)
                .with_context(|| format!("datagram {i} to {dst}"))?;
            ensure!(n == size, "short UDP send");
        }
    }
    Ok(sock.local_addr()?)
}

// --- ICMP ---------------------------------------------------------------------------------------

/// Sends `count` ICMP echo requests (identifier `id`, sequence 1..=count, `payload` bytes each) to
/// `dst` from a raw socket, one at a time, each after the previous one's reply; the replies come
/// from the peer's kernel. Returns the number of replies (an error if one is missing).
pub fn icmp_echo(dst: Ipv4Addr, id: u16, count: u16, payload: usize) -> Result<u16> {
    let s =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).context("raw ICMP socket")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let sock: std::net::UdpSocket = s.into(); // only for send_to/recv on the fd
    let dst_sa = SocketAddr::new(IpAddr::V4(dst), 0);
    let data = pattern(payload, 0x60);
    let mut replies = 0;
    for seq in 1..=count {
        let msg = crate::frames::icmp_echo(8, id, seq, &data);
        sock.send_to(&msg, dst_sa).context("sending echo request")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        loop {
            ensure!(
                Instant::now() < deadline,
                "no echo reply from {dst} for seq {seq}"
            );
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => return Err(e).context("receiving echo reply"),
            };
            // Raw IPv4 sockets receive the IP header too.
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            if n < ihl + 8 || buf[12..16] != dst.octets() {
                continue;
            }
            let icmp = &buf[ihl..n];
            let (ty, rid, rseq) = (
                icmp[0],
                u16::from_be_bytes([icmp[4], icmp[5]]),
                u16::from_be_bytes([icmp[6], icmp[7]]),
            );
            if ty == 0 && rid == id && rseq == seq {
                ensure!(icmp[8..] == data[..], "echo reply payload differs");
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}
