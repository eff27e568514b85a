//! Canonical text form of timestamps stored by decnet.
//!
//! Timestamps travel as unix-epoch nanoseconds (`i64`, UTC) and are stored as RFC 3339 UTC with
//! exactly nine fraction digits and a `Z`, e.g. `2026-11-26T22:04:00.123456789Z`. The width is
//! fixed (every `i64` nanosecond value falls in years 1677..=2262), so string order is time order
//! and SQL `max()`/`ORDER BY` on the text column do the right thing.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A timestamp string that is not RFC 3339 or falls outside the `i64` nanosecond range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct ParseTsError {
    /// The offending text.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Formats unix-epoch nanoseconds as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC).
pub fn format_ts(ns: i64) -> String {
    // An i64 of nanoseconds spans ±292 years around 1970: always inside `time`'s range, so the
    // saturating add never saturates.
    let dt = OffsetDateTime::UNIX_EPOCH.saturating_add(Duration::nanoseconds(ns));
    let mut out = String::with_capacity(30);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond()
    );
    out
}

/// Parses an RFC 3339 timestamp back into unix-epoch nanoseconds.
///
/// Accepts any RFC 3339 form (fraction width, offset), not only the canonical one written by
/// [`format_ts`]; for canonical input `parse_ts(&format_ts(ns)) == Ok(ns)` exactly.
pub fn parse_ts(s: &str) -> Result<i64, ParseTsError> {
    let err = |reason: String| ParseTsError {
        input: s.to_owned(),
        reason,
    };
    let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| err(e.to_string()))?;
    i64::try_from(dt.unix_timestamp_nanos())
        .map_err(|_| err("outside the i64 nanosecond range (1677..2262)".to_owned()))
}

/// Formats unix-epoch nanoseconds as RFC 3339 UTC with microseconds, the RFC 5424 TIMESTAMP form
/// (`2026-11-26T22:04:00.123456Z`).
pub fn format_ts_micros(dt: OffsetDateTime) -> String {
    let dt = dt.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(27);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.microsecond()
    );
    out
}

/// The current time as unix nanoseconds (UTC).
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_canonical_form() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_ts(1_795_730_640_123_456_789),
            "2026-11-26T22:04:00.123456789Z"
        );
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_ts(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(format_ts(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn round_trips_exactly() {
        for ns in [
            0,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            1_795_730_640_123_456_789,
            1_795_730_640_000_000_001,
            i64::MIN,
            i64::MAX,
        ] {
            let s = format_ts(ns);
            assert_eq!(s.len(), 30, "{s}");
            assert_eq!(parse_ts(&s), Ok(ns), "{s}");
        }
    }

    #[test]
    fn string_order_is_time_order() {
        let mut ns: Vec<i64> = vec![
            i64::MIN,
            -1_000_000_000,
            -1,
            0,
            1,
            9,
            10,
            999_999_999,
            1_000_000_000,
            1_795_730_640_123_456_789,
            1_795_730_640_123_456_790,
            1_795_730_641_000_000_000,
            i64::MAX,
        ];
        ns.sort_unstable();
        let strings: Vec<String> = ns.iter().map(|&n| format_ts(n)).collect();
        let mut sorted = strings.clone();
        sorted.sort();
        assert_eq!(strings, sorted);
    }

    #[test]
    fn parses_other_rfc3339_forms() {
        assert_eq!(parse_ts("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        assert_eq!(parse_ts("1970-01-01T01:00:00.5+01:00"), Ok(500_000_000));
    }

    #[test]
    fn rejects_garbage() {
        let e = parse_ts("yesterday").unwrap_err();
        assert_eq!(e.input, "yesterday");
        assert!(e.to_string().contains("yesterday"));
        assert!(parse_ts("").is_err());
        assert!(parse_ts("2300-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn micros_form() {
        let dt = OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(1_795_730_640_123_456_789);
        assert_eq!(format_ts_micros(dt), "2026-11-26T22:04:00.123456Z");
    }
}
