//! The decoy services' event emitter: RFC 5424 lines in the upstream format, shipped to the
//! collector over TCP with octet counting (RFC 6587).
//!
//! ```text
//! <134>1 2026-05-02T06:00:26.000001Z web-01 ssh - auth_attempt [relay@55555 principal="root" secret_printable="123456" secret_b64="MTIzNDU2" secret_kind="password" src_ip="203.0.113.9" src_port="51234"]
//! ```
//!
//! HOSTNAME is the decky, APP-NAME the service, MSGID the event type; the one SD element
//! `relay@55555` carries the fields, then `src_ip`/`src_port` (the attacker). Every value is
//! bounded ([`MAX_VALUE`], [`MAX_LONG_VALUE`] for bulky fields such as headers and bodies) and
//! escaped (`\`, `"`, `]`); invalid UTF-8 is replaced, so a line is always valid RFC 5424.
//!
//! Services never wait for the collector: [`Emitter::emit`] formats the line and pushes it onto a
//! bounded queue ([`QUEUE_LINES`]); when the queue is full the line is dropped and counted
//! (`lost`). One background task writes the queue to the collector, reconnecting with
//! exponential backoff (100 ms → 5 s). A line whose write failed is sent again on the next
//! connection: the collector de-duplicates identical lines, so at-least-once is exact.
use std::{
    borrow::Cow,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use decnet_core::{repo::limits, time_fmt::format_ts_micros};
use tokio::{
    io::AsyncWriteExt as _,
    net::TcpStream,
    sync::{mpsc, oneshot},
};

/// `<134>`: facility local0 (16), severity informational (6).
pub const PRI: &str = "<134>";
/// The SD-ID of the element carrying the event's fields.
pub const SD_ID: &str = "relay@55555";
/// Lines waiting for the collector, at most.
pub const QUEUE_LINES: usize = 16_384;
/// Bytes kept of one ordinary value (principal, secret, path, user agent, command…).
pub const MAX_VALUE: usize = limits::SHORT_TEXT;
/// Bytes kept of a bulky value (`headers`, `body`, `data`, `attrs`).
pub const MAX_LONG_VALUE: usize = 8192;
/// Keys whose values get [`MAX_LONG_VALUE`].
const LONG_KEYS: [&str; 4] = ["headers", "body", "data", "attrs"];
/// A write that takes longer than this counts as a failed connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Counters of one emitter.
#[derive(Debug, Default)]
pub struct EmitStats {
    /// Lines formatted and queued.
    pub queued: AtomicU64,
    /// Lines written to the collector.
    pub sent: AtomicU64,
    /// Lines dropped: the queue was full (the collector was away too long) or still queued at
    /// shutdown.
    pub lost: AtomicU64,
    /// Connections made to the collector.
    pub connects: AtomicU64,
    /// Connections that failed (connect or write).
    pub failures: AtomicU64,
}

enum Item {
    Line(Vec<u8>),
    /// Everything queued before it is written (or given up on): answer.
    Flush(oneshot::Sender<()>),
}

/// Formats and ships one decky's events. Cheap to clone; all clones share one queue.
#[derive(Clone)]
pub struct Emitter {
    decky: Arc<str>,
    tx: mpsc::Sender<Item>,
    stats: Arc<EmitStats>,
}

impl Emitter {
    /// Starts the writer task (needs a tokio runtime) for decky `decky`, shipping to `collector`.
    pub fn new(collector: SocketAddr, decky: &str) -> Emitter {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        let stats = Arc::new(EmitStats::default());
        tokio::spawn(writer(collector, rx, stats.clone()));
        Emitter {
            decky: Arc::from(header_name(decky, 255).as_ref()),
            tx,
            stats,
        }
    }

    /// An emitter whose lines go to `tx` instead of a collector (tests).
    #[cfg(test)]
    pub fn capture(decky: &str) -> (Emitter, Captured) {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        (
            Emitter {
                decky: Arc::from(header_name(decky, 255).as_ref()),
                tx,
                stats: Arc::new(EmitStats::default()),
            },
            Captured(rx),
        )
    }

    pub fn decky(&self) -> &str {
        &self.decky
    }

    pub fn stats(&self) -> &EmitStats {
        &self.stats
    }

    /// Queues one event of `service`, type `msgid`, from `peer` (the attacker), with `fields`
    /// (name, value) in order. Never blocks: a full queue drops the line and counts it.
    pub fn emit(&self, service: &str, msgid: &str, peer: SocketAddr, fields: &[(&str, &str)]) {
        let line = format_line(
            &self.decky,
            service,
            msgid,
            peer,
            fields,
            time::OffsetDateTime::now_utc(),
        );
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(Item::Line(line.into_bytes())).is_err() {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A login attempt: `auth_attempt` with `principal`, the secret (printable form and base64
    /// of its exact bytes) and `secret_kind`, then `extra` fields.
    pub fn auth_attempt(
        &self,
        service: &str,
        peer: SocketAddr,
        principal: &str,
        secret: &[u8],
        secret_kind: &str,
        extra: &[(&str, &str)],
    ) {
        let secret = limits::bytes(secret, MAX_VALUE);
        let printable = String::from_utf8_lossy(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let mut fields: Vec<(&str, &str)> = vec![
            ("principal", principal),
            ("secret_printable", &printable),
            ("secret_b64", &b64),
            ("secret_kind", secret_kind),
        ];
        fields.extend_from_slice(extra);
        self.emit(service, "auth_attempt", peer, &fields);
    }

    /// Waits (at most `timeout`) until every line queued so far is written to the collector.
    /// Returns whether it was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let go = async {
            if self.tx.send(Item::Flush(tx)).await.is_err() {
                return false;
            }
            rx.await.is_ok()
        };
        tokio::time::timeout(timeout, go).await.unwrap_or(false)
    }
}

/// Lines an [`Emitter::capture`] emitter produced (tests).
#[cfg(test)]
pub struct Captured(mpsc::Receiver<Item>);

#[cfg(test)]
impl Captured {
    /// The lines queued so far.
    pub fn lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(item) = self.0.try_recv() {
            if let Item::Line(l) = item {
                out.push(String::from_utf8(l).expect("lines are UTF-8"));
            }
        }
        out
    }
}

/// Formats one line.
pub fn format_line(
    decky: &str,
    service: &str,
    msgid: &str,
    peer: SocketAddr,
    fields: &[(&str, &str)],
    now: time::OffsetDateTime,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(PRI);
    out.push_str("1 ");
    out.push_str(&format_ts_micros(now));
    out.push(' ');
    out.push_str(&header_name(decky, 255));
    out.push(' ');
    out.push_str(&header_name(service, 48));
    out.push_str(" - ");
    out.push_str(&header_name(msgid, 32));
    out.push_str(" [");
    out.push_str(SD_ID);
    let ip = peer.ip().to_canonical().to_string();
    let port = peer.port().to_string();
    for (k, v) in fields
        .iter()
        .copied()
        .chain([("src_ip", ip.as_str()), ("src_port", port.as_str())])
    {
        let name = param_name(k);
        if name.is_empty() {
            continue;
        }
        let cap = if LONG_KEYS.contains(&k) {
            MAX_LONG_VALUE
        } else {
            MAX_VALUE
        };
        out.push(' ');
        out.push_str(&name);
        out.push_str("=\"");
        escape_into(&limits::text(v, cap), &mut out);
        out.push('"');
    }
    out.push(']');
    out
}

/// A header field (HOSTNAME, APP-NAME, MSGID): printable US-ASCII, no spaces, 1..=max chars;
/// anything else becomes `_`, empty becomes `-`.
fn header_name(s: &str, max: usize) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_graphic();
    if !s.is_empty() && s.len() <= max && s.chars().all(ok) {
        return Cow::Borrowed(s);
    }
    if s.is_empty() {
        return Cow::Borrowed("-");
    }
    Cow::Owned(
        s.chars()
            .take(max)
            .map(|c| if ok(c) { c } else { '_' })
            .collect(),
    )
}

/// A PARAM-NAME: printable US-ASCII except `=`, space, `]`, `"`; at most 32 chars.
fn param_name(s: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"');
    if s.len() <= 32 && s.chars().all(ok) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|&c| ok(c)).take(32).collect())
}

/// Appends `v` escaped as a PARAM-VALUE (RFC 5424 §6.3.3: `"`, `\` and `]` are escaped). A
/// NUL, which the collector rejects anywhere in a line, becomes U+FFFD (exact bytes of a secret
/// travel in `secret_b64`).
pub fn escape_into(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// The writer task: the queue → the collector, reconnecting with backoff.
async fn writer(collector: SocketAddr, mut rx: mpsc::Receiver<Item>, stats: Arc<EmitStats>) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = BACKOFF_MIN;
    // Flush requests waiting for the lines before them.
    while let Some(item) = rx.recv().await {
        let line = match item {
            Item::Line(l) => l,
            Item::Flush(done) => {
                if let Some(c) = conn.as_mut() {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, c.flush()).await;
                }
                let _ = done.send(());
                continue;
            }
        };
        let mut frame = Vec::with_capacity(line.len() + 8);
        frame.extend_from_slice(line.len().to_string().as_bytes());
        frame.push(b' ');
        frame.extend_from_slice(&line);
        // Retry this line until it is written; other lines wait in the bounded queue (and are
        // dropped by `emit` if it fills up).
        loop {
            // The collector never writes: a readable socket means it closed (or reset) its side.
            // Noticed before writing, the line goes to a fresh connection instead of the void.
            if let Some(c) = conn.as_ref() {
                let mut probe = [0u8; 64];
                match c.try_read(&mut probe) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(n) if n > 0 => {}
                    _ => conn = None,
                }
            }
            if conn.is_none() {
                match tokio::time::timeout(WRITE_TIMEOUT, TcpStream::connect(collector)).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        if stats.connects.load(Ordering::Relaxed) > 1 {
                            tracing::info!(%collector, "reconnected to the collector");
                        }
                        conn = Some(s);
                        backoff = BACKOFF_MIN;
                    }
                    Ok(Err(e)) => {
                        if stats.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            tracing::warn!(%collector, "cannot reach the collector: {e}; retrying");
                        }
                    }
                    Err(_) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                match tokio::time::timeout(WRITE_TIMEOUT, c.write_all(&frame)).await {
                    Ok(Ok(())) => {
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%collector, "lost the connection to the collector; reconnecting");
                        conn = None;
                    }
                }
            }
            // While waiting, answer flushes with "not done": drain nothing, just sleep.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if rx.is_closed() && rx.is_empty() {
                stats.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, c.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decnet_core::rfc5424;

    fn now() -> time::OffsetDateTime {
        time::macros::datetime!(2026-05-02 06:00:26.000001 UTC)
    }

    fn peer() -> SocketAddr {
        "203.0.113.9:51234".parse().unwrap()
    }

    #[test]
    fn upstream_format_exactly() {
        let line = format_line(
            "web-01",
            "ssh",
            "auth_attempt",
            peer(),
            &[
                ("principal", "root"),
                ("secret_printable", "123456"),
                ("secret_b64", "MTIzNDU2"),
                ("secret_kind", "password"),
            ],
            now(),
        );
        assert_eq!(
            line,
            r#"<134>1 2026-05-02T06:00:26.000001Z web-01 ssh - auth_attempt [relay@55555 principal="root" secret_printable="123456" secret_b64="MTIzNDU2" secret_kind="password" src_ip="203.0.113.9" src_port="51234"]"#
        );
        let m = decnet_collector::mapping::map_line(line.as_bytes(), 65536, 0).unwrap();
        assert_eq!(m.deviations, 0);
        let c = m.credential.unwrap();
        assert_eq!(c.principal, b"root");
        assert_eq!(c.secret, b"123456");
        assert_eq!(m.event.attacker_port, Some(51234));
    }

    #[test]
    fn hostile_values_round_trip_through_the_parser() {
        let nasty = "a\"b\\c]d\r\ne\u{0}f[g=h \u{202e}";
        let line = format_line(
            "decky with space",
            "",
            "x y",
            "[::ffff:10.1.2.3]:7".parse().unwrap(),
            &[("cmd", nasty), ("bad\"name]", "v"), ("", "dropped")],
            now(),
        );
        let msg = rfc5424::parse(line.as_bytes(), 65536).expect("parses");
        assert_eq!(msg.deviations, 0, "{line}");
        assert_eq!(msg.hostname, Some("decky_with_space"));
        assert_eq!(msg.app_name, None);
        assert_eq!(msg.msgid, Some("x_y"));
        let p = &msg.sd[0].params;
        assert_eq!(p[0].0, "cmd");
        assert_eq!(p[0].1, nasty.replace('\0', "\u{fffd}"));
        assert_eq!(p[1].0, "badname");
        assert_eq!(p[2], ("src_ip", "10.1.2.3".into()));
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn values_are_bounded() {
        let huge = "x".repeat(100_000);
        let line = format_line(
            "d",
            "http",
            "request",
            peer(),
            &[("path", &huge), ("headers", &huge)],
            now(),
        );
        assert!(
            line.len() < MAX_VALUE + MAX_LONG_VALUE + 300,
            "{}",
            line.len()
        );
        let msg = rfc5424::parse(line.as_bytes(), 65536).expect("parses");
        assert!(msg.sd[0].params[0].1.ends_with(limits::CUT));
    }

    #[test]
    fn binary_secrets_survive_in_base64() {
        let (e, mut cap) = Emitter::capture("d");
        e.auth_attempt("ftp", peer(), "u\0", b"p\xff\"\0w", "password", &[]);
        let lines = cap.lines();
        assert_eq!(lines.len(), 1);
        let m = decnet_collector::mapping::map_line(lines[0].as_bytes(), 65536, 0).unwrap();
        let c = m.credential.unwrap();
        assert_eq!(c.secret, b"p\xff\"\0w");
        assert_eq!(c.principal, "u\u{fffd}".as_bytes());
    }

    #[tokio::test]
    async fn ships_octet_counted_and_reconnects() {
        use tokio::io::AsyncReadExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let e = Emitter::new(addr, "d1");
        e.emit("ssh", "connect", peer(), &[]);
        let (mut s, _) = l.accept().await.unwrap();
        assert!(e.flush(Duration::from_secs(5)).await);
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let (len, rest) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert!(rest.contains(" d1 ssh - connect [relay@55555 src_ip=\"203.0.113.9\""));
        // The collector goes away and comes back: lines still arrive.
        drop(s);
        for _ in 0..3 {
            e.emit("ssh", "disconnect", peer(), &[]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
            .await
            .unwrap()
            .unwrap();
        assert!(e.flush(Duration::from_secs(10)).await);
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(String::from_utf8_lossy(&got).contains("disconnect"));
        assert_eq!(e.stats().lost.load(Ordering::Relaxed), 0);
    }
}
