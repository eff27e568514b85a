//! The RFC 5424 renderer: one [`Writer`] builds one line from a [`Header`], at most one
//! SD-ELEMENT (its SD-ID and PARAMs) and an optional MSG, in a [`Style`].
//!
//! Input: the header fields, SD-PARAMs and MSG as text, any of which may be hostile (attacker
//! bytes from a decoy, odd tracing fields). Output: one line without a trailing newline that
//! [`super::parse`] accepts without deviations:
//!
//! - HOSTNAME, APP-NAME, PROCID, MSGID: printable US-ASCII, cut to the RFC's lengths, every
//!   other character `_`, an empty field NILVALUE `-` ([`header_field`]).
//! - PARAM-NAMEs: printable US-ASCII except `=`, space, `]`, `"`, at most 32; other characters
//!   are replaced by `_` or dropped ([`Names`]).
//! - PARAM-VALUEs: `\`, `"` and `]` escaped (RFC 5424 §6.3.3); control characters spelled out
//!   (`\n`, `\u{1b}`) or kept with NUL as U+FFFD ([`Controls`]); bounded as the style says.
//! - MSG: control characters as for values, cut at [`Style::max_line`] (marked `...`).
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`, TIMESTAMP in UTC with microseconds.

use std::borrow::Cow;
use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::time_fmt::format_ts_micros;

/// The NILVALUE.
pub const NIL: &str = "-";
/// The marker of a value or MSG cut by a [`Style`] bound.
pub const TRUNCATED: &str = "...";
/// Longest HOSTNAME, APP-NAME, PROCID, MSGID and PARAM-NAME (RFC 5424 §6).
pub const MAX_HOSTNAME: usize = 255;
pub const MAX_APP_NAME: usize = 48;
pub const MAX_PROCID: usize = 128;
pub const MAX_MSGID: usize = 32;
pub const MAX_PARAM_NAME: usize = 32;

/// How control characters in PARAM-VALUEs and MSG are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controls {
    /// `\n`, `\r`, `\t`, any other control character (and U+2028/U+2029) `\u{hex}`: the line
    /// stays one line on a terminal.
    Spell,
    /// As they are, except NUL (which the parser rejects anywhere) as U+FFFD.
    Keep,
}

/// What happens to characters a PARAM-NAME may not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Cut to 32 characters, each invalid one replaced by `_`; an empty name becomes `_`.
    Replace,
    /// Invalid characters dropped, then cut to 32; a param whose name ends up empty is skipped.
    Strip,
}

/// How a [`Writer`] escapes and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub controls: Controls,
    pub names: Names,
    /// Bytes the SD-ELEMENT may take at most (from `[` to `]`): a value that does not fit is cut
    /// (marked `...`), params after one that does not fit at all are dropped. `None`: unbounded
    /// (the caller bounds the values).
    pub max_sd: Option<usize>,
    /// Bytes of one escaped value at most (only with `max_sd`).
    pub max_value: usize,
    /// Bytes of the whole line at most, enforced on MSG (cut, marked `...`).
    pub max_line: usize,
}

impl Style {
    /// decnet's own log lines (`logging`): controls spelled out, names replaced, SD within
    /// 6144 bytes, values within 1024, the line within 8192.
    pub const SELF_LOG: Style = Style {
        controls: Controls::Spell,
        names: Names::Replace,
        max_sd: Some(6144),
        max_value: 1024,
        max_line: 8192,
    };
    /// The decoy services' event lines ([`crate::event`]): values as they are (the caller
    /// bounds each), NUL as U+FFFD, invalid name characters dropped; no MSG.
    pub const DECOY: Style = Style {
        controls: Controls::Keep,
        names: Names::Strip,
        max_sd: None,
        max_value: usize::MAX,
        max_line: usize::MAX,
    };
}

/// The header of one line.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// facility × 8 + severity.
    pub pri: u8,
    pub timestamp: OffsetDateTime,
    /// Empty for NILVALUE (likewise the three below).
    pub hostname: &'a str,
    pub app_name: &'a str,
    pub procid: &'a str,
    pub msgid: &'a str,
}

/// Builds one line: [`Writer::new`] (the header), then either [`Writer::nil_sd`] or
/// [`Writer::open`], [`Writer::param`]s and [`Writer::close`], then maybe [`Writer::msg`], then
/// [`Writer::finish`].
#[derive(Debug)]
pub struct Writer {
    out: String,
    style: Style,
    /// Where the open SD-ELEMENT starts in `out`.
    sd_start: usize,
    /// A param did not fit: the rest are dropped.
    sd_full: bool,
}

impl Writer {
    /// Starts the line with `header` (and the space before STRUCTURED-DATA).
    pub fn new(style: Style, header: &Header<'_>) -> Writer {
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "<{}>1 {} ",
            header.pri,
            format_ts_micros(header.timestamp)
        );
        for (value, max) in [
            (header.hostname, MAX_HOSTNAME),
            (header.app_name, MAX_APP_NAME),
            (header.procid, MAX_PROCID),
            (header.msgid, MAX_MSGID),
        ] {
            out.push_str(&header_field(value, max));
            out.push(' ');
        }
        Writer {
            sd_start: out.len(),
            out,
            style,
            sd_full: false,
        }
    }

    /// STRUCTURED-DATA is NILVALUE.
    pub fn nil_sd(&mut self) {
        self.out.push_str(NIL);
    }

    /// Opens the SD-ELEMENT `id` (a constant of the caller's; written as is).
    pub fn open(&mut self, id: &str) {
        self.sd_start = self.out.len();
        self.sd_full = false;
        self.out.push('[');
        self.out.push_str(id);
    }

    /// Appends one SD-PARAM to the open element, named and bounded as the style says.
    pub fn param(&mut self, name: &str, value: &str) {
        if self.sd_full {
            return;
        }
        let name = match self.style.names {
            Names::Replace => replace_name(name),
            Names::Strip => strip_name(name),
        };
        if name.is_empty() {
            return;
        }
        let limit = match self.style.max_sd {
            None => usize::MAX,
            Some(max_sd) => {
                // Room left for this param, keeping one byte for the closing `]`.
                let used = self.out.len() - self.sd_start;
                let room = max_sd.saturating_sub(used + 1);
                // ` n="` + at least a few bytes of value + `"`.
                let overhead = name.len() + 4;
                if room < overhead + TRUNCATED.len() + 1 {
                    self.sd_full = true;
                    return;
                }
                self.out.len() + name.len() + 3 + (room - overhead).min(self.style.max_value)
            }
        };
        self.out.push(' ');
        self.out.push_str(&name);
        self.out.push_str("=\"");
        let controls = self.style.controls;
        if !push_escaped(
            &mut self.out,
            value,
            limit.saturating_sub(TRUNCATED.len()),
            controls,
            true,
        ) {
            self.out.push_str(TRUNCATED);
        }
        self.out.push('"');
    }

    /// Closes the element.
    pub fn close(&mut self) {
        self.out.push(']');
    }

    /// Appends MSG (nothing if empty), cut so the line stays within [`Style::max_line`].
    pub fn msg(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.out.push(' ');
        let limit = self.style.max_line.saturating_sub(TRUNCATED.len());
        if !push_escaped(&mut self.out, text, limit, self.style.controls, false) {
            self.out.push_str(TRUNCATED);
        }
    }

    /// The line.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A header field (HOSTNAME, APP-NAME, PROCID, MSGID): printable US-ASCII, no spaces,
/// 1..=`max` characters; every other character becomes `_`, longer is cut, empty is `-`.
pub fn header_field(s: &str, max: usize) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_graphic();
    if s.is_empty() {
        return Cow::Borrowed(NIL);
    }
    if s.len() <= max && s.chars().all(ok) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .take(max)
            .map(|c| if ok(c) { c } else { '_' })
            .collect(),
    )
}

/// Whether `c` may appear in a PARAM-NAME.
fn name_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"')
}

/// [`Names::Replace`].
fn replace_name(name: &str) -> Cow<'_, str> {
    if !name.is_empty() && name.len() <= MAX_PARAM_NAME && name.chars().all(name_char) {
        return Cow::Borrowed(name);
    }
    let mut s: String = name
        .chars()
        .take(MAX_PARAM_NAME)
        .map(|c| if name_char(c) { c } else { '_' })
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    Cow::Owned(s)
}

/// [`Names::Strip`].
fn strip_name(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_PARAM_NAME && name.chars().all(name_char) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .filter(|&c| name_char(c))
            .take(MAX_PARAM_NAME)
            .collect(),
    )
}

/// Appends `text` escaped (for an SD value also `\`, `"`, `]`) while `out` stays within
/// `limit` bytes. Returns false if `text` was cut.
fn push_escaped(
    out: &mut String,
    text: &str,
    limit: usize,
    controls: Controls,
    sd_value: bool,
) -> bool {
    let mut spelled = String::new();
    for c in text.chars() {
        let mut buf = [0u8; 4];
        let piece: &str = match c {
            '\\' if sd_value => "\\\\",
            '"' if sd_value => "\\\"",
            ']' if sd_value => "\\]",
            '\0' if controls == Controls::Keep => "\u{fffd}",
            '\n' if controls == Controls::Spell => "\\n",
            '\r' if controls == Controls::Spell => "\\r",
            '\t' if controls == Controls::Spell => "\\t",
            c if controls == Controls::Spell
                && (c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) =>
            {
                spelled.clear();
                let _ = write!(spelled, "\\u{{{:x}}}", u32::from(c));
                &spelled
            }
            c => c.encode_utf8(&mut buf),
        };
        if out.len().saturating_add(piece.len()) > limit {
            return false;
        }
        out.push_str(piece);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc5424::{MAX_MESSAGE, parse};

    fn header<'a>(msgid: &'a str) -> Header<'a> {
        Header {
            pri: 134,
            timestamp: time::macros::datetime!(2026-05-02 06:00:26.000001 UTC),
            hostname: "h",
            app_name: "a",
            procid: "",
            msgid,
        }
    }

    #[test]
    fn both_styles_round_trip_through_the_parser() {
        let nasty = "a\"b\\c]d\r\ne\u{0}f[g=h \u{202e}\u{1b}";
        for style in [Style::SELF_LOG, Style::DECOY] {
            let mut w = Writer::new(style, &header("m"));
            w.open("x@1");
            w.param("k", nasty);
            w.param("bad name]", "v");
            w.close();
            if style.controls == Controls::Spell {
                w.msg("free\ntext");
            }
            let line = w.finish();
            let m = parse(line.as_bytes(), MAX_MESSAGE).expect("parses");
            assert_eq!(m.deviations, 0, "{line}");
            assert_eq!(m.procid, None);
            assert_eq!(m.sd[0].id, "x@1");
            let (k, v) = &m.sd[0].params[0];
            assert_eq!(*k, "k");
            match style.controls {
                Controls::Keep => assert_eq!(v, &nasty.replace('\0', "\u{fffd}")),
                Controls::Spell => {
                    assert_eq!(v, "a\"b\\c]d\\r\\ne\\u{0}f[g=h \u{202e}\\u{1b}");
                    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
                }
            }
            let name = m.sd[0].params[1].0;
            assert_eq!(
                name,
                if style.names == Names::Strip {
                    "badname"
                } else {
                    "bad_name_"
                }
            );
        }
    }

    #[test]
    fn names_and_headers_are_sanitised() {
        assert_eq!(header_field("", 5), "-");
        assert_eq!(header_field("a b\u{e9}", 5), "a_b_");
        assert_eq!(header_field("abcdefgh", 5), "abcde");
        assert_eq!(replace_name(""), "_");
        assert_eq!(strip_name("\"]="), "");
        assert_eq!(replace_name(&"y".repeat(40)), "y".repeat(32));
        // An empty stripped name skips the param.
        let mut w = Writer::new(Style::DECOY, &header(""));
        w.open("x@1");
        w.param("\"", "dropped");
        w.close();
        assert!(w.finish().ends_with(" - - [x@1]"));
    }

    #[test]
    fn self_log_style_is_bounded() {
        let huge = "]\"\\\n".repeat(50_000);
        let mut w = Writer::new(Style::SELF_LOG, &header("m"));
        w.open("x@1");
        for _ in 0..100 {
            w.param("field", &huge);
        }
        w.close();
        w.msg(&huge);
        let line = w.finish();
        assert!(line.len() <= Style::SELF_LOG.max_line, "{}", line.len());
        assert!(parse(line.as_bytes(), MAX_MESSAGE).is_ok());
    }
}
