//! The syslog destination: RFC 5424 lines to a syslog server over UDP (one datagram per line,
//! RFC 5426) or TCP (octet-counting framing `LEN SP LINE`, RFC 6587).
//!
//! The logging call never blocks on the network: [`Sender::send`] puts the line on a bounded
//! queue ([`QUEUE_LINES`]) and a background thread (`decnet-syslog`) writes it out. When the queue
//! is full the line is dropped and counted ([`SyslogStats::dropped`]). On a TCP error the thread
//! reconnects with exponential backoff ([`BACKOFF_MIN`]..[`BACKOFF_MAX`]) and then resends the
//! batch it held, while newer lines wait in the queue (or are dropped once it is full).
//! Connection trouble is reported on stderr once per outage, never through tracing (which would
//! feed it back into the queue).

use std::fmt;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Lines the queue holds before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;
/// At most this many queued lines go out in one TCP write.
const BATCH_LINES: usize = 256;
/// First wait before reconnecting after a TCP error; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A server that stops reading is given up on (and reconnected to) after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where RFC 5424 lines are sent besides stderr: `udp://host:port` or `tcp://host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyslogTarget {
    /// One datagram per line.
    Udp(SocketAddr),
    /// One connection, octet-counting framing; reconnected on errors.
    Tcp(SocketAddr),
}

impl SyslogTarget {
    pub fn addr(&self) -> SocketAddr {
        match self {
            SyslogTarget::Udp(a) | SyslogTarget::Tcp(a) => *a,
        }
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Udp(a) => write!(f, "udp://{a}"),
            SyslogTarget::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A string that names no [`SyslogTarget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid syslog target {input:?}: {reason} (expected udp://HOST:PORT or tcp://HOST:PORT)")]
pub struct ParseSyslogTargetError {
    pub input: String,
    pub reason: String,
}

impl FromStr for SyslogTarget {
    type Err = ParseSyslogTargetError;

    /// `udp://HOST:PORT` or `tcp://HOST:PORT` (scheme case-insensitive, surrounding whitespace
    /// ignored). HOST is an IPv4 address, a bracketed IPv6 address (`[::1]`) or a name, which is
    /// resolved now (its first address is used). The port is required.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseSyslogTargetError {
            input: s.to_owned(),
            reason,
        };
        let t = s.trim();
        let (scheme, rest) = t.split_once("://").ok_or_else(|| err("no scheme".into()))?;
        let udp = if scheme.eq_ignore_ascii_case("udp") {
            true
        } else if scheme.eq_ignore_ascii_case("tcp") {
            false
        } else {
            return Err(err(format!("unknown scheme {scheme:?}")));
        };
        if rest.is_empty() {
            return Err(err("no host and port".into()));
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err("only HOST:PORT may follow the scheme".into()));
        }
        let addr = match rest.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("no port".into()))?;
                let port: u16 = port
                    .parse()
                    .map_err(|_| err(format!("invalid port {port:?}")))?;
                if host.is_empty() {
                    return Err(err("no host".into()));
                }
                if host.contains(':') || host.starts_with('[') {
                    return Err(err(format!("invalid host {host:?}")));
                }
                (host, port)
                    .to_socket_addrs()
                    .map_err(|e| err(format!("cannot resolve {host:?}: {e}")))?
                    .next()
                    .ok_or_else(|| err(format!("{host:?} resolves to no address")))?
            }
        };
        if addr.port() == 0 {
            return Err(err("port 0".into()));
        }
        Ok(if udp {
            SyslogTarget::Udp(addr)
        } else {
            SyslogTarget::Tcp(addr)
        })
    }
}

/// Counters of the syslog destination since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyslogStats {
    /// Lines handed to the socket.
    pub sent: u64,
    /// Lines dropped because the queue was full (the server is slow, down or unreachable).
    pub dropped: u64,
    /// Lines the socket refused (UDP send errors, e.g. nothing listening on the port).
    pub failed: u64,
}

/// The process's syslog destination, once [`super::init_with`] installed one.
static GLOBAL: OnceLock<Sender> = OnceLock::new();

pub(crate) fn set_global(sender: Sender) {
    let _ = GLOBAL.set(sender);
}

/// Counters of the syslog destination [`super::init_with`] installed; `None` if there is none.
pub fn syslog_stats() -> Option<SyslogStats> {
    GLOBAL.get().map(Sender::stats)
}

/// Waits until every line logged so far has been handed to the syslog socket, or `timeout`
/// passed (e.g. before exiting: the background thread dies with the process). Returns whether
/// everything went out; true when there is no syslog destination.
pub fn flush_syslog(timeout: Duration) -> bool {
    GLOBAL.get().is_none_or(|s| s.flush(timeout))
}

#[derive(Debug, Default)]
struct Shared {
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Lines queued or being written.
    pending: AtomicU64,
}

/// The logging side of the destination: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    tx: SyncSender<String>,
    shared: Arc<Shared>,
}

impl Sender {
    /// Opens the socket (UDP) and starts the background thread; a TCP connection is made by
    /// that thread, so a server that is not up yet is not an error here.
    pub(crate) fn spawn(target: SyslogTarget, queue_lines: usize) -> anyhow::Result<Sender> {
        let transport = match target {
            SyslogTarget::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0u8; 4], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = UdpSocket::bind(local)
                    .and_then(|s| s.connect(addr).map(|()| s))
                    .with_context(|| format!("cannot open a UDP socket to syslog {target}"))?;
                Transport::Udp(socket)
            }
            SyslogTarget::Tcp(addr) => Transport::Tcp(Tcp {
                target,
                addr,
                stream: None,
                backoff: BACKOFF_MIN,
                down_since: None,
                buf: Vec::new(),
            }),
        };
        let (tx, rx) = mpsc::sync_channel(queue_lines.max(1));
        let shared = Arc::new(Shared::default());
        let worker_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("decnet-syslog".into())
            .spawn(move || worker(rx, transport, &worker_shared))
            .context("cannot start the syslog thread")?;
        Ok(Sender { tx, shared })
    }

    /// Queues `line`; drops (and counts) it if the queue is full.
    pub(crate) fn send(&self, line: &str) {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(line.to_owned()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn stats(&self) -> SyslogStats {
        SyslogStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// See [`flush_syslog`].
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

enum Transport {
    Udp(UdpSocket),
    Tcp(Tcp),
}

struct Tcp {
    target: SyslogTarget,
    addr: SocketAddr,
    stream: Option<TcpStream>,
    backoff: Duration,
    /// Set while the server cannot be reached (reported once).
    down_since: Option<Instant>,
    buf: Vec<u8>,
}

/// The background thread: batches what is queued and writes it out, until every [`Sender`] is
/// gone.
fn worker(rx: Receiver<String>, mut transport: Transport, shared: &Arc<Shared>) {
    let mut batch = Vec::with_capacity(BATCH_LINES);
    while let Ok(line) = rx.recv() {
        batch.push(line);
        while batch.len() < BATCH_LINES {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        match &mut transport {
            Transport::Udp(socket) => {
                for line in &batch {
                    let counter = match socket.send(line.as_bytes()) {
                        Ok(_) => &shared.sent,
                        Err(_) => &shared.failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Transport::Tcp(tcp) => {
                if tcp.send(&batch, shared) {
                    shared.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                } else {
                    shared
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
        }
        shared
            .pending
            .fetch_sub(batch.len() as u64, Ordering::SeqCst);
        batch.clear();
    }
}

impl Tcp {
    /// Writes `lines` (octet-counted), reconnecting with backoff until it succeeds. Gives up
    /// (false) only when no [`Sender`] is left, i.e. nobody can log any more.
    fn send(&mut self, lines: &[String], shared: &Arc<Shared>) -> bool {
        self.buf.clear();
        for line in lines {
            // Writing into a Vec cannot fail.
            let _ = write!(self.buf, "{} ", line.len());
            self.buf.extend_from_slice(line.as_bytes());
        }
        loop {
            if let Some(stream) = &mut self.stream {
                let result = if peer_closed(stream) {
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server closed the connection",
                    ))
                } else {
                    stream.write_all(&self.buf)
                };
                match result {
                    Ok(()) => return true,
                    Err(e) => {
                        self.stream = None;
                        self.went_down(&e);
                        continue;
                    }
                }
            }
            match TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                    if let Some(since) = self.down_since.take() {
                        report(&format!(
                            "syslog {}: connected again after {} s",
                            self.target,
                            since.elapsed().as_secs()
                        ));
                    }
                    self.backoff = BACKOFF_MIN;
                    self.stream = Some(stream);
                }
                Err(e) => {
                    self.went_down(&e);
                    // Only this thread's own reference left: nobody will log again.
                    if Arc::strong_count(shared) == 1 {
                        return false;
                    }
                    thread::sleep(self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn went_down(&mut self, e: &io::Error) {
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            report(&format!(
                "syslog {}: {e}; reconnecting (backoff {} ms to {} s); lines wait in the queue \
                 meanwhile, and are dropped (counted) when it is full",
                self.target,
                BACKOFF_MIN.as_millis(),
                BACKOFF_MAX.as_secs()
            ));
        }
    }
}

/// Whether the server has closed its side (a syslog server never sends anything, so readable
/// with zero bytes means EOF). Checked before each write: a write into a half-closed connection
/// succeeds and the data is lost.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    closed || stream.set_nonblocking(false).is_err()
}

/// One line on stderr about the destination itself (not through tracing: that would loop).
fn report(msg: &str) {
    let line = format!("decnet: {msg}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::TcpListener;

    fn ok(s: &str) -> SyslogTarget {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn targets_parse_and_display() {
        assert_eq!(
            ok("udp://127.0.0.1:514"),
            SyslogTarget::Udp("127.0.0.1:514".parse().expect("addr"))
        );
        assert_eq!(
            ok(" TCP://[::1]:601 "),
            SyslogTarget::Tcp("[::1]:601".parse().expect("addr"))
        );
        let local = ok("tcp://localhost:6514");
        assert!(local.addr().ip().is_loopback() && local.addr().port() == 6514);
        for t in [ok("udp://127.0.0.1:514"), ok("tcp://[::1]:601")] {
            assert_eq!(ok(&t.to_string()), t);
        }
        assert_eq!(ok("udp://10.1.2.3:5514").to_string(), "udp://10.1.2.3:5514");

        for (input, reason) in [
            ("127.0.0.1:514", "no scheme"),
            ("http://127.0.0.1:514", "unknown scheme \"http\""),
            ("udp://", "no host and port"),
            ("udp://127.0.0.1", "no port"),
            ("udp://127.0.0.1:", "invalid port \"\""),
            ("tcp://127.0.0.1:99999", "invalid port \"99999\""),
            ("tcp://127.0.0.1:0", "port 0"),
            ("tcp://:514", "no host"),
            ("tcp://::1:514", "invalid host \"::1\""),
            ("tcp://127.0.0.1:514/x", "only HOST:PORT"),
            ("tcp://no-such-host.invalid:514", "cannot resolve"),
        ] {
            let e = input.parse::<SyslogTarget>().expect_err(input);
            assert_eq!(e.input, input);
            assert!(e.reason.starts_with(reason), "{input}: {}", e.reason);
            assert!(e.to_string().contains("udp://HOST:PORT"), "{e}");
        }
    }

    #[test]
    fn udp_sends_one_datagram_per_line() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let addr = server.local_addr().expect("addr");
        let sender = Sender::spawn(SyslogTarget::Udp(addr), 64).expect("spawn");
        let lines = ["<134>1 - h a - - - one", "<134>1 - h a - - - two", "three"];
        for l in lines {
            sender.send(l);
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 9000];
        for _ in lines {
            let n = server.recv(&mut buf).expect("datagram");
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.sort();
        let mut want: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        assert!(sender.flush(Duration::from_secs(5)));
        assert_eq!(
            sender.stats(),
            SyslogStats {
                sent: 3,
                dropped: 0,
                failed: 0
            }
        );
    }

    /// Accepts one connection within 10 s.
    fn accept(listener: &TcpListener) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no connection: {e}"),
            }
        }
    }

    /// Reads octet-counted frames until `n` have arrived.
    fn read_frames(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            while let Some(sp) = buf.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&buf[..sp])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad frame length in {buf:?}"));
                if buf.len() < sp + 1 + len {
                    break;
                }
                frames.push(String::from_utf8_lossy(&buf[sp + 1..sp + 1 + len]).into_owned());
                buf.drain(..sp + 1 + len);
            }
            if frames.len() >= n {
                return frames;
            }
            let mut chunk = [0u8; 4096];
            let got = stream.read(&mut chunk).expect("read");
            assert!(got > 0, "connection closed after {frames:?}");
            buf.extend_from_slice(&chunk[..got]);
        }
    }

    #[test]
    fn tcp_octet_counting_and_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let sender = Sender::spawn(SyslogTarget::Tcp(addr), 64).expect("spawn");

        let lines = ["<134>1 - h a - - - one", "with spaces and ünïcode", "3"];
        for l in lines {
            sender.send(l);
        }
        let mut conn = accept(&listener);
        let mut buf = Vec::new();
        assert_eq!(read_frames(&mut conn, &mut buf, 3), lines);
        assert!(sender.flush(Duration::from_secs(5)));
        assert_eq!(sender.stats().sent, 3);

        // The server goes away (closes the connection); the sender reconnects and goes on. (The
        // pause lets the FIN arrive, so the sender sees the close before its next write.)
        drop(conn);
        thread::sleep(Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut i = 0;
        let mut conn = loop {
            sender.send(&format!("after-{i}"));
            i += 1;
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("no reconnection: {e}"),
            }
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        sender.send("last");
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        while frames.last().map(String::as_str) != Some("last") {
            frames.extend(read_frames(&mut conn, &mut buf, 1));
        }
        assert!(
            frames[..frames.len() - 1]
                .iter()
                .all(|f| f.starts_with("after-")),
            "{frames:?}"
        );
        // Nothing was lost: the first line after the close reached the new connection.
        assert_eq!(frames[0], "after-0", "{frames:?}");
        assert!(sender.flush(Duration::from_secs(5)));
        assert_eq!(sender.stats().sent, 3 + i + 1);
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        // A port nothing listens on: every connect is refused and the thread backs off.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let sender = Sender::spawn(SyslogTarget::Tcp(addr), 4).expect("spawn");
        let started = Instant::now();
        for i in 0..10_000 {
            sender.send(&format!("line {i}"));
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "sending blocked: {took:?}");
        let stats = sender.stats();
        assert_eq!(stats.sent, 0);
        // At most the queue and the batch the thread holds got through.
        assert!(
            stats.dropped >= 10_000 - 4 - BATCH_LINES as u64,
            "{stats:?}"
        );
        assert!(!sender.flush(Duration::from_millis(50)));
    }
}
