//! RFC 5424 rendering of tracing events.
//!
//! [`rfc5424_line`] is the pure formatter (one record in, one bounded single line out);
//! [`Rfc5424Layer`] is the tracing layer that gathers an event's fields (and those of its spans)
//! and hands the line to a [`Destination`].
//!
//! Line shape: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [decnet@32473 k="v" ...] MSG`,
//! facility local0, `-` for every empty field.

use std::fmt;

use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::Destination;
#[cfg(test)]
use crate::rfc5424::render::TRUNCATED;
use crate::rfc5424::render::{Header, NIL, Style, Writer};

/// Syslog facility local0.
pub const FACILITY_LOCAL0: u8 = 16;
/// The SD-ID carrying event fields ([`crate::event::SELF_SD_ID`]).
pub const SD_ID: &str = crate::event::SELF_SD_ID;
/// Upper bound of one line in bytes (without the trailing newline).
pub const MAX_LINE_BYTES: usize = Style::SELF_LOG.max_line;

/// Everything one line is made of.
#[derive(Debug, Clone)]
pub struct Rfc5424Record<'a> {
    pub level: Level,
    pub timestamp: OffsetDateTime,
    /// Empty for NILVALUE.
    pub hostname: &'a str,
    pub app_name: &'a str,
    pub procid: u32,
    /// The event target (`module::path`); MSGID is its last `::` segment.
    pub target: &'a str,
    /// SD-PARAMs, in order; rendered in one `decnet@32473` element, NILVALUE when empty.
    pub params: &'a [(&'a str, String)],
    pub message: &'a str,
}

/// Syslog severity for a tracing level: ERROR 3, WARN 4, INFO 6, DEBUG and TRACE 7.
pub fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// PRI value (facility local0) for a tracing level.
pub fn pri(level: Level) -> u8 {
    FACILITY_LOCAL0 * 8 + severity(level)
}

/// Renders one RFC 5424 line (no trailing newline), at most [`MAX_LINE_BYTES`] bytes, with no
/// control characters: newlines and the like in the message or values are written as `\n`,
/// `\r`, `\t` or `\u{..}` (the shared renderer in [`Style::SELF_LOG`]: the structured data
/// within 6144 bytes, params that no longer fit dropped, a value cut at 1024 bytes and marked
/// `...`; header fields sanitised, invalid PARAM-NAME characters `_`).
pub fn rfc5424_line(r: &Rfc5424Record<'_>) -> String {
    let procid = r.procid.to_string();
    let mut w = Writer::new(
        Style::SELF_LOG,
        &Header {
            pri: pri(r.level),
            timestamp: r.timestamp,
            hostname: r.hostname,
            app_name: r.app_name,
            procid: &procid,
            msgid: msgid(r.target),
        },
    );
    if r.params.is_empty() {
        w.nil_sd();
    } else {
        w.open(SD_ID);
        for (name, value) in r.params {
            w.param(name, value);
        }
        w.close();
    }
    w.msg(r.message);
    w.finish()
}

/// MSGID: the last `::` segment of the target if it is 1..=32 printable ASCII characters.
fn msgid(target: &str) -> &str {
    let last = target.rsplit("::").next().unwrap_or_default();
    if !last.is_empty() && last.len() <= 32 && last.chars().all(|c| c.is_ascii_graphic()) {
        last
    } else {
        NIL
    }
}

/// The tracing layer that renders events with [`rfc5424_line`].
pub(crate) struct Rfc5424Layer {
    app_name: &'static str,
    hostname: String,
    procid: u32,
    destination: Destination,
}

impl Rfc5424Layer {
    pub(crate) fn new(app_name: &'static str, destination: Destination) -> Self {
        Rfc5424Layer {
            app_name,
            hostname: hostname(),
            procid: std::process::id(),
            destination,
        }
    }
}

/// This host's name, or empty (NILVALUE) if unknown.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Fields recorded on a span, kept in its extensions for the events inside it.
struct SpanFields(Vec<(&'static str, String)>);

/// Collects an event's or span's fields; `message` goes apart.
struct FieldCollector<'a> {
    fields: &'a mut Vec<(&'static str, String)>,
    message: Option<String>,
    /// `log.target` of events bridged from the `log` crate.
    log_target: Option<String>,
}

impl FieldCollector<'_> {
    fn push(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            "log.target" => self.log_target = Some(value),
            name if name.starts_with("log.") => {}
            name => self.fields.push((name, value)),
        }
    }
}

impl Visit for FieldCollector<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl<S> Layer<S> for Rfc5424Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Vec::new();
        let mut collector = FieldCollector {
            fields: &mut fields,
            message: None,
            log_target: None,
        };
        attrs.record(&mut collector);
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
            let mut collector = FieldCollector {
                fields,
                message: None,
                log_target: None,
            };
            values.record(&mut collector);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = self.render(event, &ctx, OffsetDateTime::now_utc());
        self.destination.write_line(&line);
    }
}

impl Rfc5424Layer {
    /// The line for `event`: its spans' fields (outermost first), then its own.
    fn render<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, now: OffsetDateTime) -> String
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut params: Vec<(&'static str, String)> = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    params.extend(fields.iter().cloned());
                }
            }
        }
        let mut collector = FieldCollector {
            fields: &mut params,
            message: None,
            log_target: None,
        };
        event.record(&mut collector);
        let message = collector.message.take().unwrap_or_default();
        let log_target = collector.log_target.take();
        let meta = event.metadata();
        rfc5424_line(&Rfc5424Record {
            level: *meta.level(),
            timestamp: now,
            hostname: &self.hostname,
            app_name: self.app_name,
            procid: self.procid,
            target: log_target.as_deref().unwrap_or(meta.target()),
            params: &params,
            message: &message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn record<'a>(params: &'a [(&'a str, String)], message: &'a str) -> Rfc5424Record<'a> {
        Rfc5424Record {
            level: Level::INFO,
            timestamp: OffsetDateTime::UNIX_EPOCH
                + Duration::nanoseconds(1_795_730_640_123_456_789),
            hostname: "sensor1",
            app_name: "decnet.sniffer",
            procid: 4242,
            target: "decnet_agent::sniffer::export",
            params,
            message,
        }
    }

    #[test]
    fn full_line() {
        let params = [("bridge", "br0".to_owned()), ("flows", "12".to_owned())];
        assert_eq!(
            rfc5424_line(&record(&params, "exported flows")),
            "<134>1 2026-11-26T22:04:00.123456Z sensor1 decnet.sniffer 4242 export \
             [decnet@32473 bridge=\"br0\" flows=\"12\"] exported flows"
        );
    }

    #[test]
    fn pri_values() {
        assert_eq!(pri(Level::ERROR), 131);
        assert_eq!(pri(Level::WARN), 132);
        assert_eq!(pri(Level::INFO), 134);
        assert_eq!(pri(Level::DEBUG), 135);
        assert_eq!(pri(Level::TRACE), 135);
        let mut r = record(&[], "x");
        r.level = Level::ERROR;
        assert!(rfc5424_line(&r).starts_with("<131>1 "));
    }

    #[test]
    fn escapes_sd_values() {
        let params = [("v", r#"a"b\c]d"#.to_owned())];
        let line = rfc5424_line(&record(&params, "m"));
        assert!(
            line.contains(r#"[decnet@32473 v="a\"b\\c\]d"] m"#),
            "{line}"
        );
        // The message itself is not SD-escaped.
        let line = rfc5424_line(&record(&[], r#"say "hi" [x] \o/"#));
        assert!(line.ends_with(r#" - say "hi" [x] \o/"#), "{line}");
    }

    #[test]
    fn sanitises_param_names() {
        let params = [
            ("a b=c]\"d", "1".to_owned()),
            ("", "2".to_owned()),
            ("error.kind", "3".to_owned()),
            ("x".repeat(40).leak(), "4".to_owned()),
        ];
        let line = rfc5424_line(&record(&params, "m"));
        let expected = format!(
            "[decnet@32473 a_b_c__d=\"1\" _=\"2\" error.kind=\"3\" {}=\"4\"]",
            "x".repeat(32)
        );
        assert!(line.contains(&expected), "{line}");
    }

    #[test]
    fn nilvalues() {
        let mut r = record(&[], "");
        r.hostname = "";
        r.app_name = "";
        r.target = "";
        assert_eq!(
            rfc5424_line(&r),
            "<134>1 2026-11-26T22:04:00.123456Z - - 4242 - -"
        );
        // MSGID that is too long or not printable ASCII is NIL too.
        r.target = "crate::this_segment_is_definitely_longer_than_32";
        assert!(rfc5424_line(&r).ends_with(" 4242 - -"));
        r.target = "crate::d\u{e9}j\u{e0}";
        assert!(rfc5424_line(&r).ends_with(" 4242 - -"));
        r.target = "plain";
        assert!(rfc5424_line(&r).ends_with(" 4242 plain -"));
    }

    #[test]
    fn app_name_and_hostname_are_header_safe() {
        let mut r = record(&[], "m");
        r.app_name = "decnet sniffer\n";
        r.hostname = "h\u{e9}st";
        let line = rfc5424_line(&r);
        assert!(line.contains(" h_st decnet_sniffer_ 4242 "), "{line}");
    }

    #[test]
    fn newlines_stay_on_one_line() {
        let params = [("k", "v1\nv2\r\0".to_owned())];
        let line = rfc5424_line(&record(&params, "line1\nline2\r\n\tx\u{1b}[31m\u{2028}"));
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(line.contains(r#"k="v1\nv2\r\u{0}""#), "{line}");
        assert!(
            line.ends_with(r"line1\nline2\r\n\tx\u{1b}[31m\u{2028}"),
            "{line}"
        );
    }

    #[test]
    fn hostile_input_is_bounded() {
        let huge = "]\"\\\n".repeat(100_000);
        let params: Vec<(&str, String)> = (0..200).map(|_| ("field", huge.clone())).collect();
        let line = rfc5424_line(&record(&params, &huge));
        assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
        assert!(!line.contains('\n'));
        assert!(line.ends_with(TRUNCATED));
        // The SD element is still closed and the message still present.
        let sd_end = line.find("] ").expect("SD closed");
        assert!(line.len() - sd_end > 1000);
        assert!(line[..sd_end].contains("...\""));

        // A multi-byte message is cut on a character boundary.
        let line = rfc5424_line(&record(&[], &"\u{e9}".repeat(10_000)));
        assert!(line.len() <= MAX_LINE_BYTES);
        assert!(line.ends_with("\u{e9}..."));
    }

    #[test]
    fn layer_renders_spans_and_events() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        // The real layer's rendering, captured instead of written to stderr.
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<String>>>);
        struct Capture {
            inner: Rfc5424Layer,
            out: Captured,
        }
        impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
            fn on_new_span(&self, a: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
                self.inner.on_new_span(a, id, ctx);
            }
            fn on_record(&self, id: &Id, v: &Record<'_>, ctx: Context<'_, S>) {
                self.inner.on_record(id, v, ctx);
            }
            fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
                let line = self.inner.render(event, &ctx, OffsetDateTime::UNIX_EPOCH);
                if let Ok(mut v) = self.out.0.lock() {
                    v.push(line);
                }
            }
        }

        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(Capture {
            inner: Rfc5424Layer {
                app_name: "decnet.test",
                hostname: "h".into(),
                procid: 1,
                destination: Destination::stderr(),
            },
            out: out.clone(),
        });
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("sweep", bridge = "br0", n = tracing::field::Empty);
            let _g = span.enter();
            span.record("n", 3);
            tracing::warn!(target: "decnet::sniffer", port = 22u16, err = %"x\"y", "hello\nworld");
        });
        let lines = out.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(
            lines,
            vec![
                "<132>1 1970-01-01T00:00:00.000000Z h decnet.test 1 sniffer \
                 [decnet@32473 bridge=\"br0\" n=\"3\" port=\"22\" err=\"x\\\"y\"] hello\\nworld"
                    .to_owned()
            ]
        );
    }
}
