//! The decoy services' event emitter: decoy-event lines ([`decnet_core::event`]: RFC 5424 in
//! the upstream format) shipped to the collector with octet counting (RFC 6587), over its Unix
//! socket (under `decnet deploy`) or TCP.
//!
//! ```text
//! <134>1 2026-05-02T06:00:26.000001Z web-01 ssh - auth_attempt [relay@55555 principal="root" secret_printable="123456" secret_b64="MTIzNDU2" secret_kind="password" src_ip="203.0.113.9" src_port="51234"]
//! ```
//!
//! Input: events of one decky (service, event type, attacker, fields). Output: the lines on the
//! collector's socket, and [`EmitStats`]. HOSTNAME is the decky, APP-NAME the service,
//! MSGID the event type; the one SD element `relay@55555` carries the fields, then
//! `src_ip`/`src_port` (the attacker). Every value is bounded ([`MAX_VALUE`], [`MAX_LONG_VALUE`]
//! for bulky fields such as headers and bodies) and escaped (`\`, `"`, `]`); invalid UTF-8 is
//! replaced, so a line is always valid RFC 5424 (see [`decnet_core::event::render_decoy_line`]).
//!
//! Services never wait for the collector: [`Emitter::emit`] formats the line and hands it to
//! decnet-core's bounded syslog sender ([`decnet_core::syslog`], [`QUEUE_LINES`] lines); when
//! the queue is full the line is dropped and counted (`lost`). Its background thread writes the
//! queue to the collector, reconnecting with exponential backoff (100 ms → 5 s). A line whose
//! write failed is sent again on the next connection: the collector de-duplicates identical
//! lines, so at-least-once is exact.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use decnet_core::{
    event::{self, EventKind, key},
    rfc5424::render::{MAX_HOSTNAME, header_field},
    syslog::{Config, Notice, Sender, SyslogTarget},
};

/// Formats one line.
pub use decnet_core::event::render_decoy_line as format_line;
pub use decnet_core::event::{DECOY_SD_ID as SD_ID, MAX_LONG_VALUE, MAX_VALUE};

/// Lines waiting for the collector, at most.
pub const QUEUE_LINES: usize = 16_384;
/// A write that takes longer than this counts as a failed connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Counters of one emitter: `queued` (lines formatted), `sent` (written to the collector),
/// `lost` (dropped: the queue was full, the collector was away too long), `failed` (given up
/// when the emitter went away), `connects` and `failures` (connect or write).
pub type EmitStats = decnet_core::syslog::Stats;

/// Formats and ships one decky's events. Cheap to clone; all clones share one queue.
#[derive(Clone)]
pub struct Emitter {
    decky: Arc<str>,
    sender: Sender,
}

/// Connection trouble, in the decky's own log.
fn notify(n: &Notice<'_>) {
    match n {
        Notice::Down { .. } => tracing::warn!("{n}"),
        Notice::Up { .. } => tracing::info!("{n}"),
    }
}

impl Emitter {
    /// Starts the sender thread for decky `decky`, shipping to `collector` (its TCP listener or
    /// its Unix socket). If the thread cannot start, says so and counts every line lost.
    pub fn new(collector: SyslogTarget, decky: &str) -> Emitter {
        let config = Config {
            queue_lines: QUEUE_LINES,
            backoff_max: BACKOFF_MAX,
            write_timeout: WRITE_TIMEOUT,
            label: "collector",
            notify,
        };
        let sender = Sender::spawn(collector.clone(), config).unwrap_or_else(|e| {
            tracing::error!(%collector, "cannot ship events: {e:#}");
            Sender::disconnected()
        });
        Emitter {
            decky: Arc::from(header_field(decky, MAX_HOSTNAME).as_ref()),
            sender,
        }
    }

    /// An emitter whose lines go to the returned [`Captured`] instead of a collector (tests).
    #[cfg(test)]
    pub fn capture(decky: &str) -> (Emitter, Captured) {
        let (sender, rx) = Sender::channel(QUEUE_LINES);
        (
            Emitter {
                decky: Arc::from(header_field(decky, MAX_HOSTNAME).as_ref()),
                sender,
            },
            Captured(rx),
        )
    }

    pub fn decky(&self) -> &str {
        &self.decky
    }

    pub fn stats(&self) -> &EmitStats {
        self.sender.stats()
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
        self.sender.send(line);
    }

    /// A login attempt: `auth_attempt` with `principal`, the secret (printable form and base64
    /// of its exact bytes, [`event::encode_secret`]) and `secret_kind`, then `extra` fields.
    pub fn auth_attempt(
        &self,
        service: &str,
        peer: SocketAddr,
        principal: &str,
        secret: &[u8],
        secret_kind: &str,
        extra: &[(&str, &str)],
    ) {
        let secret = event::encode_secret(secret);
        let mut fields: Vec<(&str, &str)> = vec![
            (key::PRINCIPAL, principal),
            (key::SECRET_PRINTABLE, &secret.printable),
            (key::SECRET_B64, &secret.b64),
            (key::SECRET_KIND, secret_kind),
        ];
        fields.extend_from_slice(extra);
        self.emit(service, EventKind::AuthAttempt.as_str(), peer, &fields);
    }

    /// Waits (at most `timeout`) until every line queued so far is written to the collector.
    /// Returns whether it was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.sender.flush_async(timeout).await
    }
}

/// Lines an [`Emitter::capture`] emitter produced (tests).
#[cfg(test)]
pub struct Captured(std::sync::mpsc::Receiver<String>);

#[cfg(test)]
impl Captured {
    /// The lines queued so far.
    pub fn lines(&mut self) -> Vec<String> {
        self.0.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decnet_core::{repo::limits, rfc5424};
    use std::sync::atomic::Ordering;

    /// What the collector reads back from a line: core's parser and the event contract.
    struct Read {
        deviations: u8,
        principal: Vec<u8>,
        secret: Vec<u8>,
        attacker_port: Option<u16>,
    }

    fn read(line: &str) -> Read {
        let m = rfc5424::parse(line.as_bytes(), 65536).expect("parses");
        let e =
            m.sd.iter()
                .find(|e| event::is_decoy_sd_id(e.id))
                .expect("decoy element");
        let field = |k: &str| {
            e.params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_ref())
        };
        let auth = event::auth_fields(field).expect("credential");
        Read {
            deviations: m.deviations,
            principal: auth.principal.as_bytes().to_vec(),
            secret: auth.secret,
            attacker_port: field(key::SRC_PORT).and_then(|p| p.parse().ok()),
        }
    }

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
        let m = read(&line);
        assert_eq!(m.deviations, 0);
        assert_eq!(m.principal, b"root");
        assert_eq!(m.secret, b"123456");
        assert_eq!(m.attacker_port, Some(51234));
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
        let c = read(&lines[0]);
        assert_eq!(c.secret, b"p\xff\"\0w");
        assert_eq!(c.principal, "u\u{fffd}".as_bytes());
    }

    #[tokio::test]
    async fn ships_octet_counted_and_reconnects() {
        use tokio::io::AsyncReadExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let e = Emitter::new(SyslogTarget::Tcp(addr), "d1");
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
