//! Fuzz target for `decnet_core::rfc5424::parse`.
//!
//! The parser is std-only; its source file is compiled in directly (`#[path]`) rather than
//! through the decnet-core crate, so the instrumented build does not compile sqlx, tokio and the
//! rest of decnet-core's dependencies (minutes on two cores) for a target that needs none of them.
//!
//! On every input: no panic (debug assertions and overflow checks are on). On an accepted one:
//! - every borrowed `&str` lies inside the input, PRI/VERSION are in range, header fields and
//!   SD names have the RFC's lengths and alphabet, only known deviation bits are set, and the
//!   input holds no NUL byte;
//! - the length limit only ever turns a result into `TooLong`;
//! - rendering the message back to RFC 5424 (escaping values, timestamp in UTC with 9 fraction
//!   digits, a BOM before MSG, `\r\n` framing) and parsing that gives the same message.
#![no_main]

use std::borrow::Cow;
use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../decnet-core/src/rfc5424/parse.rs"]
mod rfc5424;

use rfc5424::{MAX_MESSAGE, Message, Reject, deviation, parse};

fuzz_target!(|data: &[u8]| {
    let result = parse(data, MAX_MESSAGE);
    // Deterministic.
    assert_eq!(result, parse(data, MAX_MESSAGE));
    // A smaller limit changes nothing but the length verdict.
    let framed_len = strip_framing_len(data);
    let small = parse(data, 64);
    if framed_len > 64 {
        assert!(
            small == Err(Reject::TooLong),
            "limit 64 on {framed_len} bytes: {small:?}"
        );
    } else {
        assert_eq!(small, result);
    }
    let Ok(m) = result else { return };
    check_invariants(data, &m);
    let rendered = render(&m);
    match parse(&rendered, usize::MAX) {
        Ok(mut again) => {
            again.deviations = m.deviations;
            assert_eq!(
                again,
                m,
                "re-rendered as {:?}",
                String::from_utf8_lossy(&rendered)
            );
        }
        Err(e) => panic!(
            "re-rendered {:?} rejected: {e:?}",
            String::from_utf8_lossy(&rendered)
        ),
    }
});

/// Length of `data` without one trailing `\n` or `\r\n`.
fn strip_framing_len(data: &[u8]) -> usize {
    match data.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l).len(),
        None => data.len(),
    }
}

fn check_invariants(data: &[u8], m: &Message<'_>) {
    let range = data.as_ptr_range();
    let inside = |s: &str| {
        let r = s.as_bytes().as_ptr_range();
        range.start <= r.start && r.end <= range.end
    };
    let printable = |s: &str| s.bytes().all(|b| (33..=126).contains(&b));

    assert!(!data.contains(&0), "accepted a NUL byte");
    assert!(m.facility < 24, "facility {}", m.facility);
    assert!(m.severity < 8, "severity {}", m.severity);
    assert_eq!(m.version, 1);
    let known = deviation::ALL.iter().fold(0u8, |acc, (bit, _)| acc | bit);
    assert_eq!(m.deviations & !known, 0, "unknown deviation bits");

    for (field, max) in [
        (m.hostname, 255),
        (m.app_name, 48),
        (m.procid, 128),
        (m.msgid, 32),
    ] {
        if let Some(s) = field {
            assert!(inside(s), "header field outside the input");
            assert!(!s.is_empty() && s.len() <= max && printable(s), "{s:?}");
        }
    }
    let sd_name = |s: &str| {
        inside(s) && !s.is_empty() && s.len() <= 32 && printable(s) && !s.contains(['=', ']', '"'])
    };
    for e in &m.sd {
        assert!(sd_name(e.id), "SD-ID {:?}", e.id);
        for (name, value) in &e.params {
            assert!(sd_name(name), "PARAM-NAME {name:?}");
            match value {
                Cow::Borrowed(v) => assert!(inside(v), "borrowed value outside the input"),
                Cow::Owned(v) => assert!(v.len() < data.len()),
            }
        }
    }
    match &m.msg {
        Some(Cow::Borrowed(s)) => assert!(inside(s) && !s.is_empty()),
        Some(Cow::Owned(s)) => assert!(!s.is_empty()),
        None => {}
    }
}

/// `m` as an RFC 5424 line again.
fn render(m: &Message<'_>) -> Vec<u8> {
    let mut out = format!("<{}>1 ", u16::from(m.facility) * 8 + u16::from(m.severity));
    match m.timestamp_ns {
        Some(ns) => push_timestamp(&mut out, ns),
        None => out.push('-'),
    }
    for field in [m.hostname, m.app_name, m.procid, m.msgid] {
        out.push(' ');
        out.push_str(field.unwrap_or("-"));
    }
    out.push(' ');
    if m.sd.is_empty() {
        out.push('-');
    }
    for e in &m.sd {
        out.push('[');
        out.push_str(e.id);
        for (name, value) in &e.params {
            let _ = write!(out, " {name}=\"");
            for c in value.chars() {
                if matches!(c, '"' | '\\' | ']') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push(']');
    }
    if let Some(msg) = &m.msg {
        out.push_str(" \u{feff}");
        out.push_str(msg);
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for unix nanoseconds.
fn push_timestamp(out: &mut String, ns: i64) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}
