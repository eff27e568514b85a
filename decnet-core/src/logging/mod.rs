//! Process-wide logging shared by every decnet worker.
//!
//! [`init`] installs a global `tracing` subscriber that writes to stderr, filtered by `RUST_LOG`
//! (default `info`), in one of two [`LogFormat`]s: tracing-subscriber's compact text, or one
//! RFC 5424 syslog line per event (see [`rfc5424`]).
//!
//! Where lines go is [`Destination`]; today only stderr. A syslog destination (UDP/TCP) is meant
//! to be added as another variant there, reusing [`rfc5424_line`] unchanged.

pub mod rfc5424;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::str::FromStr;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use rfc5424::{Rfc5424Record, rfc5424_line};

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
    let filter = env_filter()?;
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .compact()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(filter)
            .try_init()
            .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}")),
        LogFormat::Rfc5424 => tracing_subscriber::registry()
            .with(filter)
            .with(rfc5424::Rfc5424Layer::new(app_name, Destination::Stderr))
            .try_init()
            .context("cannot install the log subscriber"),
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

/// Where formatted log lines are written.
///
/// Later: `Syslog { transport: Udp | Tcp, addr }` sending the same RFC 5424 lines (TCP with
/// RFC 6587 octet counting), selected by configuration alongside [`LogFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    Stderr,
}

impl Destination {
    /// Writes one line (a newline is appended) in a single write; errors are dropped, since there
    /// is nowhere left to report them.
    pub(crate) fn write_line(&self, line: &str) {
        match self {
            Destination::Stderr => {
                let mut buf = Vec::with_capacity(line.len() + 1);
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                let _ = std::io::stderr().lock().write_all(&buf);
            }
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
}
