//! The listeners and readers: UDP (one message per datagram, RFC 5426), TCP (RFC 6587 framing
//! detected per connection), TLS (RFC 5425) and a Unix stream socket (framed like TCP), the
//! decoys' own channel: a path on the host's filesystem, which nobody on a network can reach.
//! With `--unix-peers` ([`Peers`]) a Unix-socket connection is admitted only from a process in
//! the network namespace of a decky named there (SO_PEERCRED), and its lines must name that
//! decky as HOSTNAME: a decky cannot write events as another.
//!
//! Readers parse on their own task and push onto the one bounded queue ([`Shared::enqueue`]).
//! A TCP/TLS reader whose queue is full waits — it stops reading its socket, so the sender is
//! slowed by TCP flow control and nothing is lost. The UDP reader cannot wait (the kernel would
//! drop instead): it uses `try_send` and counts `dropped_udp`.
//!
//! Hostile clients: each connection holds one fixed-size buffer ([`Framer`]); connections are
//! limited in total and per source address (excess ones are accepted and closed at once), closed
//! after `--idle-timeout` without a byte, and refused outside `--allow`. The queue is bounded in
//! lines and in bytes (each queued line holds a permit of its size until it is committed).
//!
//! Shutdown: the stop signal closes the listeners; readers stop at their next read (every
//! complete frame already read has been queued by then) and drop their queue senders, which is
//! how the writer learns that the queue is complete.
use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use decnet_core::{rfc5424::Reject, time_fmt::now_ns};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _},
    net::{TcpListener, TcpSocket, UdpSocket, UnixListener},
    sync::{Semaphore, mpsc, watch},
};
use tokio_rustls::TlsAcceptor;

use super::{
    allow::{Cidr, allowed},
    counters::{self, Counters},
    framing::{Frame, Framer, trim_eol},
    mapping::map_line,
    writer::Item,
};

/// Receive buffer asked for on UDP sockets (SO_RCVBUFFORCE as root, else SO_RCVBUF, which the
/// kernel caps at net.core.rmem_max).
pub const UDP_RCVBUF: usize = 8 << 20;
/// A TLS handshake must finish within this (or the idle timeout, if shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams read per wake-up before yielding to other tasks.
const UDP_BURST: usize = 1024;

#[derive(Debug, Clone)]
pub struct NetConfig {
    pub max_message: usize,
    pub max_connections: u64,
    pub max_connections_per_ip: u32,
    pub idle_timeout: Duration,
    pub allow: Vec<Cidr>,
    /// Bytes of queued lines (raw line + fields) in flight at most.
    pub queue_bytes: usize,
}

/// What every reader shares.
#[derive(Debug)]
pub struct Shared {
    pub cfg: NetConfig,
    pub counters: Arc<Counters>,
    tx: mpsc::Sender<Item>,
    budget: Arc<Semaphore>,
    budget_max: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        cfg: NetConfig,
        counters: Arc<Counters>,
        tx: mpsc::Sender<Item>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let budget_max =
            u32::try_from(cfg.queue_bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Arc::new(Shared {
            budget: Arc::new(Semaphore::new(budget_max as usize)),
            budget_max,
            cfg,
            counters,
            tx,
            per_ip: Mutex::new(HashMap::new()),
            stop,
        })
    }

    /// Counts, parses and maps one frame or datagram; with `decky`, a line naming another decky
    /// as HOSTNAME is dropped and counted (`impersonated`).
    fn process(&self, line: &[u8], recv_ns: i64, decky: Option<&str>) -> Option<Item> {
        counters::inc(&self.counters.received);
        match map_line(line, self.cfg.max_message, recv_ns) {
            Ok(m) if decky.is_some_and(|d| d != m.event.decky) => {
                counters::inc(&self.counters.impersonated);
                tracing::debug!(
                    decky = decky.unwrap_or_default(),
                    claimed = %m.event.decky.escape_debug(),
                    "a line naming another decky as its sender: dropped (impersonated)"
                );
                None
            }
            Ok(m) => {
                counters::inc(&self.counters.parsed);
                self.counters.deviated(m.deviations);
                if m.unwrapped > 0 {
                    counters::inc(&self.counters.unwrapped);
                }
                Some(Item {
                    event: m.event,
                    credential: m.credential,
                    permit: None,
                })
            }
            Err(reason) => {
                self.counters.reject(reason);
                None
            }
        }
    }

    fn too_long(&self) {
        counters::inc(&self.counters.received);
        self.counters.reject(Reject::TooLong);
    }

    fn weight(&self, item: &Item) -> u32 {
        let w = item.event.raw.len() + item.event.fields.len() + 256;
        u32::try_from(w).unwrap_or(u32::MAX).min(self.budget_max)
    }

    /// Queues `item`, waiting for room (back-pressure). `false`: the writer is gone.
    pub async fn enqueue(&self, mut item: Item) -> bool {
        let Ok(permit) = self
            .budget
            .clone()
            .acquire_many_owned(self.weight(&item))
            .await
        else {
            return false;
        };
        item.permit = Some(permit);
        if self.tx.send(item).await.is_err() {
            return false;
        }
        self.counters
            .queued((self.tx.max_capacity() - self.tx.capacity()) as u64);
        true
    }

    /// Queues `item` if there is room now; otherwise counts it as `dropped_udp`. `false`: the
    /// writer is gone.
    fn try_enqueue(&self, mut item: Item) -> bool {
        let Ok(permit) = self
            .budget
            .clone()
            .try_acquire_many_owned(self.weight(&item))
        else {
            counters::inc(&self.counters.dropped_udp);
            return true;
        };
        item.permit = Some(permit);
        match self.tx.try_send(item) {
            Ok(()) => {
                self.counters
                    .queued((self.tx.max_capacity() - self.tx.capacity()) as u64);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                counters::inc(&self.counters.dropped_udp);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Takes a connection slot for `ip` (`None`: a local Unix-socket peer, under the total
    /// limit only), or `None` over a limit.
    fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Admission> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if counters::get(&self.counters.open) >= self.cfg.max_connections {
            return None;
        }
        if let Some(ip) = ip {
            let n = map.entry(ip).or_insert(0);
            if *n >= self.cfg.max_connections_per_ip {
                return None;
            }
            *n += 1;
        }
        counters::inc(&self.counters.open);
        Some(Admission {
            shared: self.clone(),
            ip,
        })
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// A held connection slot; dropping it frees the slot.
struct Admission {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = self.ip
            && let Some(n) = map.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
        self.shared
            .counters
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resolves when the stop signal is (or was already) given, or its sender is gone.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A bound listener, before it runs.
#[derive(Debug)]
pub enum Listener {
    Udp(UdpSocket),
    Tcp(TcpListener),
    Tls(TcpListener),
    Unix(UnixSocket),
}

impl Listener {
    pub fn kind(&self) -> &'static str {
        match self {
            Listener::Udp(_) => "udp",
            Listener::Tcp(_) => "tcp",
            Listener::Tls(_) => "tls",
            Listener::Unix(_) => "unix",
        }
    }

    /// `KIND ADDRESS` (the ready file's line): the bound address, or the socket's path.
    pub fn describe(&self) -> String {
        let addr = match self {
            Listener::Udp(s) => s.local_addr(),
            Listener::Tcp(l) | Listener::Tls(l) => l.local_addr(),
            Listener::Unix(u) => return format!("unix {}", u.path.display()),
        };
        match addr {
            Ok(a) => format!("{} {a}", self.kind()),
            Err(_) => format!("{} ?", self.kind()),
        }
    }
}

/// A bound Unix stream socket; its file is removed when this is dropped.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds a Unix stream socket at `path`, readable and writable by its owner only (mode 0600).
/// A socket file left by a collector that is gone is replaced; a live one (another collector
/// answers on it) or any other kind of file is an error.
pub fn bind_unix(path: &Path) -> io::Result<UnixSocket> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens on it",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Put it in a directory only its owner can enter: the mode is set right after bind(2),
    // which creates the file under the process umask.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(UnixSocket {
        listener,
        path: path.to_path_buf(),
    })
}

/// `--unix-peers FILE`: the deckies that may log over the Unix socket, one per line
/// `NAME NETNS_FILE` (a network namespace file such as `/run/netns/NAME`; `#` comments and
/// blank lines are ignored). Read again for every new connection, so that a fleet that changes
/// while the collector runs only needs the file rewritten.
#[derive(Debug, Clone)]
pub struct Peers {
    pub file: PathBuf,
}

impl Peers {
    /// The decky whose network namespace has inode `netns`.
    fn decky_of(&self, netns: u64) -> io::Result<Option<String>> {
        use std::os::unix::fs::MetadataExt as _;
        let text = std::fs::read_to_string(&self.file)?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, ns)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            if std::fs::metadata(ns.trim()).is_ok_and(|m| m.ino() == netns) {
                return Ok(Some(name.to_owned()));
            }
        }
        Ok(None)
    }
}

impl Peers {
    /// The decky the process at the other end of `stream` is (SO_PEERCRED, then its network
    /// namespace), or why it is none.
    fn identify(&self, stream: &tokio::net::UnixStream) -> Result<String, String> {
        let file = self.file.display();
        let Some(pid) = stream.peer_cred().ok().and_then(|c| c.pid()) else {
            return Err("the peer's pid is unknown".into());
        };
        match netns_of(pid).and_then(|ns| self.decky_of(ns)) {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Err(format!("pid {pid} is no decky of {file}")),
            Err(e) => Err(format!(
                "cannot tell which decky pid {pid} is ({file}): {e}"
            )),
        }
    }
}

/// The network-namespace inode of process `pid`.
fn netns_of(pid: i32) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}

/// Accepts Unix-socket connections until stopped; one task per connection. With `peers`, a
/// connection is admitted only from a decky named there, and serves that decky's lines only.
pub async fn unix_accept_loop(sock: UnixSocket, peers: Option<Peers>, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    loop {
        let stream = tokio::select! {
            r = sock.listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping(&mut stop) => break,
        };
        let decky: Option<Arc<str>> = match peers.as_ref().map(|p| p.identify(&stream)) {
            None => None,
            Some(Ok(name)) => Some(Arc::from(name.as_str())),
            Some(Err(why)) => {
                counters::inc(&shared.counters.refused_peer);
                tracing::warn!("a Unix-socket connection refused: {why}");
                continue;
            }
        };
        let Some(slot) = shared.admit(None) else {
            counters::inc(&shared.counters.refused_limit);
            tracing::debug!("Unix-socket connection refused: over the connection limit");
            continue;
        };
        counters::inc(&shared.counters.accepted);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve(&shared, stream, decky.as_deref()).await;
        });
    }
    // Dropping the socket closes it and removes its file.
}

pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if !force_rcvbuf(&sock, UDP_RCVBUF) {
        // Capped by net.core.rmem_max; whatever we get is better than the default.
        let _ = sock.set_recv_buffer_size(UDP_RCVBUF);
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// SO_RCVBUFFORCE (needs CAP_NET_ADMIN): a receive buffer beyond net.core.rmem_max.
fn force_rcvbuf(sock: &Socket, bytes: usize) -> bool {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd and a pointer to a c_int with its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Accepts TCP (or, with `tls`, TLS) connections until stopped; one task per connection.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping(&mut stop) => break,
        };
        let ip = peer.ip().to_canonical();
        if !allowed(&shared.cfg.allow, ip) {
            counters::inc(&shared.counters.refused_allowlist);
            tracing::debug!(%ip, "connection refused: not in --allow");
            continue;
        }
        let Some(slot) = shared.admit(Some(ip)) else {
            counters::inc(&shared.counters.refused_limit);
            tracing::debug!(%ip, "connection refused: over the connection limit");
            continue;
        };
        counters::inc(&shared.counters.accepted);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve(&shared, sock, None).await,
                Some(acceptor) => {
                    let limit = HANDSHAKE_TIMEOUT.min(shared.cfg.idle_timeout);
                    let mut stop = shared.stop.clone();
                    let hs = tokio::select! {
                        r = tokio::time::timeout(limit, acceptor.accept(sock)) => r,
                        _ = stopping(&mut stop) => return,
                    };
                    match hs {
                        Ok(Ok(stream)) => serve(&shared, stream, None).await,
                        Ok(Err(e)) => {
                            counters::inc(&shared.counters.tls_handshake_failed);
                            tracing::debug!(%ip, "TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            counters::inc(&shared.counters.tls_handshake_failed);
                            tracing::debug!(%ip, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    // Dropping the listener closes the port.
}

/// Reads frames from one connection until EOF, an error, the idle timeout, a framing error or
/// the stop signal. With `decky`, only lines of that decky are taken.
pub async fn serve<S: AsyncRead + Unpin>(shared: &Shared, mut stream: S, decky: Option<&str>) {
    let mut stop = shared.stop.clone();
    let mut framer = Framer::new(shared.cfg.max_message);
    let idle = shared.cfg.idle_timeout;
    while !shared.stopped() {
        let read = {
            let buf = framer.read_buf();
            tokio::select! {
                r = tokio::time::timeout(idle, stream.read(buf)) => r,
                _ = stopping(&mut stop) => break,
            }
        };
        let n = match read {
            Err(_) => {
                counters::inc(&shared.counters.idle_closed);
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!("connection read failed: {e}");
                break;
            }
        };
        framer.filled(n);
        let recv_ns = now_ns();
        loop {
            let item = match framer.next() {
                None => break,
                Some(Frame::Message(line)) => shared.process(line, recv_ns, decky),
                Some(Frame::TooLong) => {
                    shared.too_long();
                    None
                }
                Some(Frame::Invalid) => {
                    counters::inc(&shared.counters.framing_errors);
                    tracing::debug!("closing a connection: malformed octet-counting header");
                    return;
                }
            };
            if let Some(item) = item
                && !shared.enqueue(item).await
            {
                return;
            }
        }
    }
}

/// Reads datagrams until stopped; returns the socket (still open, so that its kernel drop count
/// can be read one last time).
pub async fn udp_loop(sock: UdpSocket, shared: Arc<Shared>) -> UdpSocket {
    let mut stop = shared.stop.clone();
    let max = shared.cfg.max_message;
    // Room for a trailing CR LF, and one byte more to see that a datagram was longer.
    let mut buf = vec![0u8; max + 3];
    loop {
        tokio::select! {
            r = sock.readable() => if let Err(e) = r {
                tracing::error!("UDP socket failed: {e}");
                return sock;
            },
            _ = stopping(&mut stop) => return sock,
        }
        let recv_ns = now_ns();
        for _ in 0..UDP_BURST {
            let (n, peer) = match sock.try_recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!("UDP receive failed: {e}");
                    break;
                }
            };
            if !allowed(&shared.cfg.allow, peer.ip().to_canonical()) {
                counters::inc(&shared.counters.refused_allowlist);
                continue;
            }
            let line = trim_eol(&buf[..n]);
            if n == buf.len() || line.len() > max {
                shared.too_long();
                continue;
            }
            if let Some(item) = shared.process(line, recv_ns, None)
                && !shared.try_enqueue(item)
            {
                return sock;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Kernel drops of our UDP sockets (`drops` in /proc/net/udp{,6}, by socket inode).
#[derive(Debug, Default, Clone)]
pub struct UdpDrops {
    inodes: Vec<u64>,
    proc_root: PathBuf,
}

impl UdpDrops {
    pub fn new(socks: &[&UdpSocket]) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let inodes = socks
            .iter()
            .filter_map(|s| {
                std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                    .ok()
                    .map(|m| m.ino())
            })
            .collect();
        UdpDrops {
            inodes,
            proc_root: PathBuf::from("/proc/self/net"),
        }
    }

    /// The sum of the kernel's drop counts over our sockets (None if /proc cannot be read).
    pub fn total(&self) -> Option<u64> {
        if self.inodes.is_empty() {
            return Some(0);
        }
        let mut total = 0;
        let mut read_any = false;
        for f in ["udp", "udp6"] {
            let Ok(text) = std::fs::read_to_string(self.proc_root.join(f)) else {
                continue;
            };
            read_any = true;
            total += drops_of(&text, &self.inodes);
        }
        read_any.then_some(total)
    }
}

/// Sums the `drops` column (13th) of the rows whose `inode` (10th) is one of `inodes`.
fn drops_of(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            if !inodes.contains(&inode) {
                return None;
            }
            cols.get(12)?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_drops_by_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
          1: 0100007F:15AA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
          2: 0100007F:15AB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 5\n";
        assert_eq!(drops_of(table, &[4242]), 17);
        assert_eq!(drops_of(table, &[4242, 4343]), 22);
        assert_eq!(drops_of(table, &[1]), 0);
    }
}
