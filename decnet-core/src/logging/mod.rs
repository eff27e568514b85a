//! Process-wide logging shared by every decnet worker.
//!
//! [`init`] installs a global `tracing` subscriber that writes to stderr, filtered by `RUST_LOG`
//! (default `info`), in one of two [`LogFormat`]s: tracing-subscriber's compact text, or one
//! RFC 5424 syslog line per event (see [`rfc5424`]).
//!
//! [`init_with`] can also send every event, as an RFC 5424 line whatever the stderr format, to a
//! syslog server ([`SyslogTarget`]: `udp://host:port` or `tcp://host:port`, octet-counted), from
//! a background thread behind a bounded queue, so logging never blocks on the network (see
//! [`syslog`] for drops and reconnects; [`syslog_stats`], [`flush_syslog`]).

pub mod rfc5424;
pub mod syslog;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::str::FromStr;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use rfc5424::{Rfc5424Record, rfc5424_line};
pub use syslog::{ParseSyslogTargetError, SyslogStats, SyslogTarget, flush_syslog, syslog_stats};

/// How log events are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// tracing-subscriber's compact human-readable output.
    #[default]
    Text,
    /// One RFC 5424 syslog line per event.
    Rfc5424,
}

/// A string that names no [`LogFormat`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected \"text\" or \"rfc5424\"")]
pub struct ParseLogFormatError(pub String);

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// `text` or `rfc5424` (ASCII case-insensitive, surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if t.eq_ignore_ascii_case("rfc5424") {
            Ok(LogFormat::Rfc5424)
        } else {
            Err(ParseLogFormatError(s.to_owned()))
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Rfc5424 => "rfc5424",
        })
    }
}

/// Installs the global subscriber for this process: stderr, `RUST_LOG` filter (default `info`),
/// rendered as `format`. `app_name` is the RFC 5424 APP-NAME (e.g. `"decnet.sniffer"`).
///
/// Fails if `RUST_LOG` does not parse or a global subscriber is already installed.
pub fn init(app_name: &'static str, format: LogFormat) -> anyhow::Result<()> {
    init_with(app_name, format, None)
}

/// [`init`], plus, with `syslog`, every event also sent as an RFC 5424 line (whatever `format`
/// says for stderr) to that syslog server. The sending runs on a background thread behind a
/// bounded queue: a slow or absent server costs dropped lines ([`syslog_stats`]), never a
/// blocked caller. A TCP server that is not up yet is not an error (it is connected to when it
/// comes); a UDP socket that cannot be opened is.
pub fn init_with(
    app_name: &'static str,
    format: LogFormat,
    syslog: Option<SyslogTarget>,
) -> anyhow::Result<()> {
    let filter = env_filter()?;
    let Some(target) = syslog else {
        return match format {
            LogFormat::Text => tracing_subscriber::fmt()
                .compact()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                // Its report of a failed write is an eprintln!, which panics on a closed stderr
                // (in whichever task logged: a stop signal's handler, say).
                .log_internal_errors(false)
                .with_env_filter(filter)
                .try_init()
                .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}")),
            LogFormat::Rfc5424 => tracing_subscriber::registry()
                .with(filter)
                .with(rfc5424::Rfc5424Layer::new(app_name, Destination::stderr()))
                .try_init()
                .context("cannot install the log subscriber"),
        };
    };
    let sender = syslog::Sender::spawn(target, syslog::QUEUE_LINES)?;
    with_syslog(app_name, format, filter, sender.clone())
        .try_init()
        .context("cannot install the log subscriber")?;
    syslog::set_global(sender);
    Ok(())
}

/// The subscriber of [`init_with`] when there is a syslog destination.
fn with_syslog(
    app_name: &'static str,
    format: LogFormat,
    filter: EnvFilter,
    sender: syslog::Sender,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => Box::new(
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .compact()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::stderr().is_terminal())
                        .log_internal_errors(false),
                )
                .with(rfc5424::Rfc5424Layer::new(
                    app_name,
                    Destination {
                        stderr: false,
                        syslog: Some(sender),
                    },
                )),
        ),
        LogFormat::Rfc5424 => Box::new(registry.with(rfc5424::Rfc5424Layer::new(
            app_name,
            Destination {
                stderr: true,
                syslog: Some(sender),
            },
        ))),
    }
}

/// Default filter: `info`, but quiet for netlink-packet-route, which warns about every kernel
/// attribute newer than itself (e.g. IFLA_INET6_CONF growing) on each link dump.
pub const DEFAULT_FILTER: &str = "info,netlink_packet_route=error";

/// `RUST_LOG` if set and non-empty, else [`DEFAULT_FILTER`].
fn env_filter() -> anyhow::Result<EnvFilter> {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).with_context(|| format!("invalid RUST_LOG={v:?}"))
        }
        _ => Ok(EnvFilter::new(DEFAULT_FILTER)),
    }
}

/// Where rendered RFC 5424 lines are written: stderr, a syslog server, or both.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    stderr: bool,
    syslog: Option<syslog::Sender>,
}

impl Destination {
    pub(crate) fn stderr() -> Self {
        Destination {
            stderr: true,
            syslog: None,
        }
    }

    /// Queues the line for the syslog server (never blocks), and writes it to stderr with a
    /// newline in a single write. Errors are dropped, since there is nowhere left to report them.
    pub(crate) fn write_line(&self, line: &str) {
        if let Some(sender) = &self.syslog {
            sender.send(line);
        }
        if self.stderr {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            let _ = std::io::stderr().lock().write_all(&buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_and_displays() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("rfc5424".parse::<LogFormat>(), Ok(LogFormat::Rfc5424));
        assert_eq!(" RFC5424 ".parse::<LogFormat>(), Ok(LogFormat::Rfc5424));
        for f in [LogFormat::Text, LogFormat::Rfc5424] {
            assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
        }
        let err = "json".parse::<LogFormat>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"json\"") && msg.contains("text") && msg.contains("rfc5424"));
    }

    /// The subscriber `init_with` installs with a syslog destination, without installing it
    /// globally: events reach a local UDP server as RFC 5424 lines, in both stderr formats.
    #[test]
    fn syslog_destination_receives_rfc5424_lines() {
        use std::net::UdpSocket;
        use std::time::Duration;

        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let target: SyslogTarget = format!("udp://{}", server.local_addr().expect("addr"))
            .parse()
            .expect("target");
        for format in [LogFormat::Text, LogFormat::Rfc5424] {
            let sender = syslog::Sender::spawn(target.clone(), 16).expect("spawn");
            let subscriber = with_syslog(
                "decnet.test",
                format,
                EnvFilter::new("info"),
                sender.clone(),
            );
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "decnet::syslog_test", "filtered out");
                tracing::warn!(target: "decnet::syslog_test", src_ip = "203.0.113.9", "to \"syslog\"");
            });
            assert!(sender.flush(Duration::from_secs(5)));
            let mut buf = [0u8; 9000];
            let n = server.recv(&mut buf).expect("datagram");
            let m =
                crate::rfc5424::parse(&buf[..n], crate::rfc5424::MAX_MESSAGE).unwrap_or_else(|e| {
                    panic!(
                        "{format}: {e:?} in {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    )
                });
            assert_eq!((m.facility, m.severity), (16, 4), "{format}");
            assert_eq!(m.app_name, Some("decnet.test"));
            assert_eq!(m.procid, Some(std::process::id().to_string().as_str()));
            assert_eq!(m.msgid, Some("syslog_test"));
            assert_eq!(m.sd.len(), 1);
            assert_eq!(m.sd[0].id, rfc5424::SD_ID);
            assert_eq!(m.sd[0].params.len(), 1);
            assert_eq!(m.sd[0].params[0].0, "src_ip");
            assert_eq!(m.sd[0].params[0].1, "203.0.113.9");
            assert_eq!(m.msg.as_deref(), Some("to \"syslog\""));
            assert_eq!(
                sender.stats(),
                SyslogStats {
                    sent: 1,
                    dropped: 0,
                    failed: 0
                },
                "{format}: only the warning passed the filter"
            );
        }
    }
}
