//! The one bounded, reconnecting sender of syslog lines: to a syslog server over UDP (one
//! datagram per line, RFC 5426), TCP or a Unix stream socket (octet-counting framing
//! `LEN SP LINE`, RFC 6587). Used by `logging` (`--log-syslog`) and by the decoys' event emitter
//! (to the collector: over its Unix socket under `decnet deploy`, which no network peer can
//! reach).
//!
//! Input: whole lines ([`Sender::send`]), from any thread, sync or async. Output: the lines on
//! the wire in order, and [`Stats`].
//!
//! Sending never blocks: [`Sender::send`] puts the line on a bounded queue
//! ([`Config::queue_lines`]) and a background thread writes it out, in batches of up to
//! [`BATCH_LINES`]. When the queue is full the line is dropped and counted ([`Stats::lost`]). On
//! a TCP error the thread reconnects with exponential backoff ([`BACKOFF_MIN`] doubling up to
//! [`Config::backoff_max`]) and then resends the batch it held (at-least-once: a line whose
//! write failed goes out again on the next connection), while newer lines wait in the queue (or
//! are dropped once it is full). Before each write it checks whether the server closed its side
//! (a syslog server never sends), so a line is not written into a dead connection. Outages are
//! reported once each, through [`Config::notify`] (never through the sender itself).
//! [`Sender::flush`] / [`Sender::flush_async`] wait, with a timeout, until every line sent so
//! far has been written (or dropped).

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Lines the queue holds before new ones are dropped ([`Config::new`]'s default).
pub const QUEUE_LINES: usize = 4096;
/// At most this many queued lines go out in one TCP write.
pub const BATCH_LINES: usize = 256;
/// First wait before reconnecting after a TCP error; doubles up to [`Config::backoff_max`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// [`Config::new`]'s longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// [`Config::new`]'s write timeout: a server that stops reading is given up on (and
/// reconnected to) after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where RFC 5424 lines are sent besides stderr: `udp://host:port`, `tcp://host:port` or
/// `unix:///path/to/socket`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SyslogTarget {
    /// One datagram per line.
    Udp(SocketAddr),
    /// One connection, octet-counting framing; reconnected on errors.
    Tcp(SocketAddr),
    /// A Unix stream socket (a filesystem path), framed and reconnected like TCP.
    Unix(PathBuf),
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Udp(a) => write!(f, "udp://{a}"),
            SyslogTarget::Tcp(a) => write!(f, "tcp://{a}"),
            SyslogTarget::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A string that names no [`SyslogTarget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid syslog target {input:?}: {reason} (expected udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH)"
)]
pub struct ParseSyslogTargetError {
    pub input: String,
    pub reason: String,
}

impl FromStr for SyslogTarget {
    type Err = ParseSyslogTargetError;

    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH` (scheme case-insensitive,
    /// surrounding whitespace ignored). HOST is an IPv4 address, a bracketed IPv6 address
    /// (`[::1]`) or a name, which is resolved now (its first address is used). The port is
    /// required. PATH is absolute.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseSyslogTargetError {
            input: s.to_owned(),
            reason,
        };
        let t = s.trim();
        let (scheme, rest) = t.split_once("://").ok_or_else(|| err("no scheme".into()))?;
        if scheme.eq_ignore_ascii_case("unix") {
            if !rest.starts_with('/') {
                return Err(err(
                    "the socket path must be absolute (unix:///run/...)".into()
                ));
            }
            return Ok(SyslogTarget::Unix(PathBuf::from(rest)));
        }
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

/// How a [`Sender`] queues, reconnects and reports.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Lines the queue holds before new ones are dropped (at least 1).
    pub queue_lines: usize,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// A write that takes longer than this counts as a failed connection.
    pub write_timeout: Duration,
    /// Names the destination in notices (`"syslog"`, `"collector"`).
    pub label: &'static str,
    /// Called on the sender's thread when an outage starts and ends.
    pub notify: fn(&Notice<'_>),
}

impl Config {
    /// [`QUEUE_LINES`], [`BACKOFF_MAX`], [`WRITE_TIMEOUT`], notices on stderr.
    pub fn new(label: &'static str) -> Config {
        Config {
            queue_lines: QUEUE_LINES,
            backoff_max: BACKOFF_MAX,
            write_timeout: WRITE_TIMEOUT,
            label,
            notify: notify_stderr,
        }
    }
}

/// An outage of a TCP destination, starting or ending.
#[derive(Debug)]
pub enum Notice<'a> {
    /// The connection failed (or could not be made); reconnecting.
    Down {
        label: &'static str,
        target: &'a SyslogTarget,
        error: &'a io::Error,
        backoff_max: Duration,
    },
    /// Connected again after an outage of `after`.
    Up {
        label: &'static str,
        target: &'a SyslogTarget,
        after: Duration,
    },
}

impl fmt::Display for Notice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Down {
                label,
                target,
                error,
                backoff_max,
            } => write!(
                f,
                "{label} {target}: {error}; reconnecting (backoff {} ms to {} s); lines wait in \
                 the queue meanwhile, and are dropped (counted) when it is full",
                BACKOFF_MIN.as_millis(),
                backoff_max.as_secs()
            ),
            Notice::Up {
                label,
                target,
                after,
            } => write!(
                f,
                "{label} {target}: connected again after {} s",
                after.as_secs()
            ),
        }
    }
}

/// One line `decnet: NOTICE` on stderr (not through tracing: a logging destination would feed
/// it back into its own queue).
pub fn notify_stderr(notice: &Notice<'_>) {
    let line = format!("decnet: {notice}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Counters of one [`Sender`] (shared by its clones) since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Lines handed to [`Sender::send`] (each ends up sent, lost or failed).
    pub queued: AtomicU64,
    /// Lines handed to the socket.
    pub sent: AtomicU64,
    /// Lines dropped because the queue was full (the server is slow, down or unreachable).
    pub lost: AtomicU64,
    /// Lines the socket refused (UDP send errors, e.g. nothing listening on the port), or given
    /// up on because every [`Sender`] was gone before the server came back.
    pub failed: AtomicU64,
    /// TCP connections made.
    pub connects: AtomicU64,
    /// TCP connections that failed (connect or write).
    pub failures: AtomicU64,
    /// Lines sent, lost or failed: a flush waits for this to reach `queued`.
    settled: AtomicU64,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: SyncSender<String>,
    stats: Arc<Stats>,
}

impl Sender {
    /// Opens the socket (UDP) and starts the background thread; a TCP connection is made by
    /// that thread, so a server that is not up yet is not an error here.
    pub fn spawn(target: SyslogTarget, config: Config) -> anyhow::Result<Sender> {
        let transport = match &target {
            &SyslogTarget::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0u8; 4], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = UdpSocket::bind(local)
                    .and_then(|s| s.connect(addr).map(|()| s))
                    .with_context(|| {
                        format!("cannot open a UDP socket to {} {target}", config.label)
                    })?;
                Transport::Udp(socket)
            }
            SyslogTarget::Tcp(_) | SyslogTarget::Unix(_) => Transport::Stream(Stream {
                target: target.clone(),
                config,
                stream: None,
                backoff: BACKOFF_MIN,
                down_since: None,
                buf: Vec::new(),
            }),
        };
        let (tx, rx) = mpsc::sync_channel(config.queue_lines.max(1));
        let stats = Arc::new(Stats::default());
        let worker_stats = Arc::clone(&stats);
        thread::Builder::new()
            .name(format!("decnet-{}", config.label))
            .spawn(move || worker(rx, transport, &worker_stats))
            .with_context(|| format!("cannot start the {} thread", config.label))?;
        Ok(Sender { tx, stats })
    }

    /// A sender without a destination: every line is counted lost (for when [`Sender::spawn`]
    /// failed and the caller goes on without one).
    pub fn disconnected() -> Sender {
        Sender::channel(1).0
    }

    /// A sender whose lines go to the returned receiver instead of a socket (tests); nothing
    /// counts them sent.
    pub fn channel(queue_lines: usize) -> (Sender, Receiver<String>) {
        let (tx, rx) = mpsc::sync_channel(queue_lines.max(1));
        (
            Sender {
                tx,
                stats: Arc::new(Stats::default()),
            },
            rx,
        )
    }

    /// Queues `line`; drops (and counts) it if the queue is full.
    pub fn send(&self, line: String) {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                self.stats.settled.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether every line sent before `target` was counted is settled.
    fn settled(&self, target: u64) -> bool {
        self.stats.settled.load(Ordering::SeqCst) >= target
    }

    /// Waits until every line sent so far has been handed to the socket (or dropped), or
    /// `timeout` passed (e.g. before exiting: the background thread dies with the process).
    /// Returns whether it was. Blocks the calling thread: in async code use
    /// [`Sender::flush_async`].
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.stats.queued.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        loop {
            if self.settled(target) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// [`Sender::flush`] without blocking the runtime (needs a tokio runtime with time).
    pub async fn flush_async(&self, timeout: Duration) -> bool {
        let target = self.stats.queued.load(Ordering::SeqCst);
        let wait = async {
            while !self.settled(target) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

enum Transport {
    Udp(UdpSocket),
    Stream(Stream),
}

/// A TCP or Unix stream connection.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn connect(target: &SyslogTarget, write_timeout: Duration) -> io::Result<Conn> {
        match target {
            SyslogTarget::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
                let _ = s.set_nodelay(true);
                s.set_write_timeout(Some(write_timeout))?;
                Ok(Conn::Tcp(s))
            }
            SyslogTarget::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_write_timeout(Some(write_timeout))?;
                Ok(Conn::Unix(s))
            }
            SyslogTarget::Udp(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "UDP has no connection",
            )),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(buf),
            Conn::Unix(s) => s.write_all(buf),
        }
    }

    /// Whether the server has closed its side (a syslog server never sends anything, so
    /// readable with zero bytes means EOF; anything it did send is read and discarded). Checked
    /// before each write: a write into a half-closed connection succeeds and the data is lost.
    fn peer_closed(&mut self) -> bool {
        let mut probe = [0u8; 64];
        let (nonblocking, read) = match self {
            Conn::Tcp(s) => (s.set_nonblocking(true), s.read(&mut probe)),
            Conn::Unix(s) => (s.set_nonblocking(true), s.read(&mut probe)),
        };
        if nonblocking.is_err() {
            return true;
        }
        let closed = match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        let blocking = match self {
            Conn::Tcp(s) => s.set_nonblocking(false),
            Conn::Unix(s) => s.set_nonblocking(false),
        };
        closed || blocking.is_err()
    }
}

struct Stream {
    target: SyslogTarget,
    config: Config,
    stream: Option<Conn>,
    backoff: Duration,
    /// Set while the server cannot be reached (reported once).
    down_since: Option<Instant>,
    buf: Vec<u8>,
}

/// The background thread: batches what is queued and writes it out, until every [`Sender`] is
/// gone.
fn worker(rx: Receiver<String>, mut transport: Transport, stats: &Arc<Stats>) {
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
                        Ok(_) => &stats.sent,
                        Err(_) => &stats.failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Transport::Stream(conn) => {
                let counter = if conn.send(&batch, stats) {
                    &stats.sent
                } else {
                    &stats.failed
                };
                counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
        stats
            .settled
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        batch.clear();
    }
}

impl Stream {
    /// Writes `lines` (octet-counted), reconnecting with backoff until it succeeds. Gives up
    /// (false) only when no [`Sender`] is left, i.e. nobody can send any more.
    fn send(&mut self, lines: &[String], stats: &Arc<Stats>) -> bool {
        self.buf.clear();
        for line in lines {
            // Writing into a Vec cannot fail.
            let _ = write!(self.buf, "{} ", line.len());
            self.buf.extend_from_slice(line.as_bytes());
        }
        loop {
            if let Some(stream) = &mut self.stream {
                let result = if stream.peer_closed() {
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
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        self.went_down(&e);
                        continue;
                    }
                }
            }
            match Conn::connect(&self.target, self.config.write_timeout) {
                Ok(stream) => {
                    stats.connects.fetch_add(1, Ordering::Relaxed);
                    if let Some(since) = self.down_since.take() {
                        (self.config.notify)(&Notice::Up {
                            label: self.config.label,
                            target: &self.target,
                            after: since.elapsed(),
                        });
                    }
                    self.backoff = BACKOFF_MIN;
                    self.stream = Some(stream);
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.went_down(&e);
                    // Only this thread's own reference left: nobody will send again.
                    if Arc::strong_count(stats) == 1 {
                        return false;
                    }
                    thread::sleep(self.backoff);
                    self.backoff = (self.backoff * 2).min(self.config.backoff_max);
                }
            }
        }
    }

    fn went_down(&mut self, e: &io::Error) {
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            (self.config.notify)(&Notice::Down {
                label: self.config.label,
                target: &self.target,
                error: e,
                backoff_max: self.config.backoff_max,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let SyslogTarget::Tcp(local) = ok("tcp://localhost:6514") else {
            panic!("tcp://localhost is TCP")
        };
        assert!(local.ip().is_loopback() && local.port() == 6514);
        assert_eq!(
            ok("unix:///run/decnet/collector.sock"),
            SyslogTarget::Unix("/run/decnet/collector.sock".into())
        );
        for t in [
            ok("udp://127.0.0.1:514"),
            ok("tcp://[::1]:601"),
            ok("unix:///tmp/x.sock"),
        ] {
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
            ("unix://run/x.sock", "the socket path must be absolute"),
        ] {
            let e = input.parse::<SyslogTarget>().expect_err(input);
            assert_eq!(e.input, input);
            assert!(e.reason.starts_with(reason), "{input}: {}", e.reason);
            assert!(e.to_string().contains("udp://HOST:PORT"), "{e}");
        }
    }

    #[test]
    fn stats_and_flush() {
        let (sender, rx) = Sender::channel(2);
        for i in 0..5 {
            sender.send(format!("line {i}"));
        }
        let st = sender.stats();
        assert_eq!(st.queued.load(Ordering::Relaxed), 5);
        assert_eq!(st.lost.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["line 0", "line 1"]);
        // Nothing settles channel lines: the flush times out.
        assert!(!sender.flush(Duration::from_millis(20)));

        let dead = Sender::disconnected();
        dead.send("x".into());
        assert_eq!(dead.stats().lost.load(Ordering::Relaxed), 1);
        assert!(dead.flush(Duration::ZERO));
    }

    #[test]
    fn tcp_flush_async_and_counters() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sender = Sender::spawn(SyslogTarget::Tcp(addr), Config::new("test")).expect("spawn");
        sender.send("hello".into());
        let (mut conn, _) = listener.accept().expect("accept");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        assert!(rt.block_on(sender.flush_async(Duration::from_secs(5))));
        let mut buf = [0u8; 7];
        conn.read_exact(&mut buf).expect("frame");
        assert_eq!(&buf, b"5 hello");
        let st = sender.stats();
        assert_eq!(st.sent.load(Ordering::Relaxed), 1);
        assert_eq!(st.connects.load(Ordering::Relaxed), 1);
        assert_eq!(st.lost.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unix_socket_lines_are_framed_and_resent_after_a_restart() {
        use std::io::Read as _;
        let dir = std::env::temp_dir().join(format!("decnet-syslog-unix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let sender =
            Sender::spawn(SyslogTarget::Unix(path.clone()), Config::new("test")).expect("spawn");
        sender.send("hello".into());
        let (mut conn, _) = listener.accept().expect("accept");
        assert!(sender.flush(Duration::from_secs(5)));
        let mut buf = [0u8; 7];
        conn.read_exact(&mut buf).expect("frame");
        assert_eq!(&buf, b"5 hello");
        // The collector goes away and comes back on the same path: the next line arrives on a
        // new connection.
        drop(conn);
        drop(listener);
        std::fs::remove_file(&path).expect("unlink");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("rebind");
        sender.send("again".into());
        let (mut conn, _) = listener.accept().expect("accept again");
        let mut buf = [0u8; 7];
        conn.read_exact(&mut buf).expect("frame");
        assert_eq!(&buf, b"5 again");
        assert_eq!(sender.stats().connects.load(Ordering::Relaxed), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
