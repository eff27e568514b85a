//! The logging side of the syslog destination (`--log-syslog`): the process's one
//! [`crate::syslog::Sender`], installed by [`super::init_with`], and its counters as
//! [`SyslogStats`].
//!
//! Input: rendered RFC 5424 lines from the tracing layer. Output: the lines to the syslog server
//! (see [`crate::syslog`] for queueing, drops and reconnects), [`syslog_stats`] and
//! [`flush_syslog`]. Connection trouble is reported on stderr once per outage, never through
//! tracing (which would feed it back into the queue).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use crate::syslog::{ParseSyslogTargetError, QUEUE_LINES, SyslogTarget};

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

/// The logging side of the destination: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct Sender(crate::syslog::Sender);

impl Sender {
    /// [`crate::syslog::Sender::spawn`] with the defaults, notices on stderr.
    pub(crate) fn spawn(target: SyslogTarget, queue_lines: usize) -> anyhow::Result<Sender> {
        let config = crate::syslog::Config {
            queue_lines,
            ..crate::syslog::Config::new("syslog")
        };
        crate::syslog::Sender::spawn(target, config).map(Sender)
    }

    /// Queues `line`; drops (and counts) it if the queue is full.
    pub(crate) fn send(&self, line: &str) {
        self.0.send(line.to_owned());
    }

    pub(crate) fn stats(&self) -> SyslogStats {
        let s = self.0.stats();
        SyslogStats {
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.lost.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }

    /// See [`flush_syslog`].
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.0.flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::BATCH_LINES;
    use std::io::{self, Read as _};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::thread;
    use std::time::Instant;

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
