use super::*;

use time::macros::{datetime, offset};
use time::{Duration, OffsetDateTime};

fn ok(line: &[u8]) -> Message<'_> {
    match parse(line, MAX_MESSAGE) {
        Ok(m) => m,
        Err(e) => panic!("{:?} rejected: {e:?}", String::from_utf8_lossy(line)),
    }
}

fn rej(line: &[u8]) -> Reject {
    match parse(line, MAX_MESSAGE) {
        Ok(m) => panic!(
            "{:?} accepted: {m:?}",
            String::from_utf8_lossy(line).into_owned()
        ),
        Err(e) => e,
    }
}

fn ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).expect("in range")
}

fn params<'a>(e: &'a SdElement<'a>) -> Vec<(&'a str, &'a str)> {
    e.params.iter().map(|(k, v)| (*k, v.as_ref())).collect()
}

// RFC 5424 section 6.5, examples 1-4 (BOM is the three bytes EF BB BF).

#[test]
fn rfc_example_1_no_structured_data() {
    let line = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \
                 \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
    let m = ok(line);
    assert_eq!((m.facility, m.severity, m.version), (4, 2, 1));
    assert_eq!(
        m.timestamp_ns,
        Some(ns(datetime!(2003-10-11 22:14:15.003 UTC)))
    );
    assert_eq!(m.hostname, Some("mymachine.example.com"));
    assert_eq!(m.app_name, Some("su"));
    assert_eq!(m.procid, None);
    assert_eq!(m.msgid, Some("ID47"));
    assert!(m.sd.is_empty());
    assert_eq!(
        m.msg.as_deref(),
        Some("'su root' failed for lonvick on /dev/pts/8")
    );
    assert_eq!(m.deviations, 0);
}

#[test]
fn rfc_example_2_no_bom() {
    let m = ok(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - \
                 %% It's time to make the do-nuts.",
    );
    assert_eq!((m.facility, m.severity), (20, 5));
    assert_eq!(
        m.timestamp_ns,
        Some(ns(
            datetime!(2003-08-24 05:14:15.000003).assume_offset(offset!(-7))
        ))
    );
    assert_eq!(m.hostname, Some("192.0.2.1"));
    assert_eq!(m.app_name, Some("myproc"));
    assert_eq!(m.procid, Some("8710"));
    assert_eq!(m.msgid, None);
    assert!(m.sd.is_empty());
    assert_eq!(m.msg.as_deref(), Some("%% It's time to make the do-nuts."));
    assert_eq!(m.deviations, 0);
}

#[test]
fn rfc_example_3_structured_data_and_msg() {
    let m = ok(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
                 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \
                 \xEF\xBB\xBFAn application event log entry...",
    );
    assert_eq!((m.facility, m.severity), (20, 5));
    assert_eq!(
        m.timestamp_ns,
        Some(ns(datetime!(2003-10-11 22:14:15.003 UTC)))
    );
    assert_eq!(m.hostname, Some("mymachine.example.com"));
    assert_eq!(m.app_name, Some("evntslog"));
    assert_eq!(m.procid, None);
    assert_eq!(m.msgid, Some("ID47"));
    assert_eq!(m.sd.len(), 1);
    assert_eq!(m.sd[0].id, "exampleSDID@32473");
    assert_eq!(
        params(&m.sd[0]),
        [
            ("iut", "3"),
            ("eventSource", "Application"),
            ("eventID", "1011")
        ]
    );
    assert!(
        m.sd[0]
            .params
            .iter()
            .all(|(_, v)| matches!(v, Cow::Borrowed(_)))
    );
    assert_eq!(m.msg.as_deref(), Some("An application event log entry..."));
    assert_eq!(m.deviations, 0);
}

#[test]
fn rfc_example_4_structured_data_only() {
    let m = ok(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
                 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
                 [examplePriority@32473 class=\"high\"]",
    );
    assert_eq!((m.facility, m.severity), (20, 5));
    assert_eq!(m.app_name, Some("evntslog"));
    assert_eq!(m.msgid, Some("ID47"));
    assert_eq!(m.sd.len(), 2);
    assert_eq!(m.sd[0].id, "exampleSDID@32473");
    assert_eq!(m.sd[0].params.len(), 3);
    assert_eq!(m.sd[1].id, "examplePriority@32473");
    assert_eq!(params(&m.sd[1]), [("class", "high")]);
    assert_eq!(m.msg, None);
    assert_eq!(m.deviations, 0);
}

/// RFC 5424 section 6.2.3.1: the valid examples, and the 9-digit fraction it calls invalid,
/// which is accepted and flagged.
#[test]
fn rfc_timestamp_examples() {
    let cases: [(&str, OffsetDateTime, u8); 5] = [
        (
            "1985-04-12T23:20:50.52Z",
            datetime!(1985-04-12 23:20:50.52 UTC),
            0,
        ),
        (
            "1985-04-12T19:20:50.52-04:00",
            datetime!(1985-04-12 19:20:50.52).assume_offset(offset!(-4)),
            0,
        ),
        (
            "2003-10-11T22:14:15.003Z",
            datetime!(2003-10-11 22:14:15.003 UTC),
            0,
        ),
        (
            "2003-08-24T05:14:15.000003-07:00",
            datetime!(2003-08-24 05:14:15.000003).assume_offset(offset!(-7)),
            0,
        ),
        (
            "2003-08-24T05:14:15.000000003-07:00",
            datetime!(2003-08-24 05:14:15.000000003).assume_offset(offset!(-7)),
            deviation::LONG_FRACTION,
        ),
    ];
    for (ts, want, dev) in cases {
        let line = format!("<13>1 {ts} h a - - -");
        let m = ok(line.as_bytes());
        assert_eq!(m.timestamp_ns, Some(ns(want)), "{ts}");
        assert_eq!(m.deviations, dev, "{ts}");
    }
}

/// The decoy services' lines (../shared/reference/upstream-notes.md).
#[test]
fn upstream_decoy_lines() {
    let m = ok(
        b"<134>1 2026-05-02T06:00:25.453826+00:00 omega-decky smtp - disconnect \
                 [relay@55555 src_ip=\"192.168.1.5\"]",
    );
    assert_eq!((m.facility, m.severity), (16, 6));
    assert_eq!(
        m.timestamp_ns,
        Some(ns(datetime!(2026-05-02 06:00:25.453826 UTC)))
    );
    assert_eq!(m.hostname, Some("omega-decky"));
    assert_eq!(m.app_name, Some("smtp"));
    assert_eq!(m.procid, None);
    assert_eq!(m.msgid, Some("disconnect"));
    assert_eq!(m.sd.len(), 1);
    assert_eq!(m.sd[0].id, "relay@55555");
    assert_eq!(params(&m.sd[0]), [("src_ip", "192.168.1.5")]);
    assert_eq!(m.msg, None);
    assert_eq!(m.deviations, 0);

    let m = ok(
        b"<134>1 2026-05-02T06:00:26.000001+00:00 web-01 ssh - auth_attempt \
                 [relay@55555 principal=\"root\" secret_printable=\"123456\" \
                 secret_b64=\"MTIzNDU2\" secret_kind=\"password\" src_ip=\"203.0.113.9\" \
                 src_port=\"51234\"]\n",
    );
    assert_eq!(
        m.timestamp_ns,
        Some(ns(datetime!(2026-05-02 06:00:26.000001 UTC)))
    );
    assert_eq!(m.hostname, Some("web-01"));
    assert_eq!(m.app_name, Some("ssh"));
    assert_eq!(m.msgid, Some("auth_attempt"));
    assert_eq!(
        params(&m.sd[0]),
        [
            ("principal", "root"),
            ("secret_printable", "123456"),
            ("secret_b64", "MTIzNDU2"),
            ("secret_kind", "password"),
            ("src_ip", "203.0.113.9"),
            ("src_port", "51234"),
        ]
    );
    assert_eq!(m.msg, None);
}

/// Captured from util-linux 2.38.1 `logger --rfc5424 --stderr --no-act -n 127.0.0.1 -d ...`
/// (the first with `-p local0.notice --msgid login --sd-id origin@32473 --sd-param
/// 'ip="10.0.0.1"'`, the second with `--id=4242 -p auth.warning` and escaped values).
#[test]
fn logger_golden_lines() {
    let m = ok(br#"<133>1 2026-11-26T23:12:52.050805+00:00 vm decnet-test - login [timeQuality tzKnown="1" isSynced="0"][origin@32473 ip="10.0.0.1"] hello "world""#);
    assert_eq!((m.facility, m.severity), (16, 5));
    assert_eq!(
        m.timestamp_ns,
        Some(ns(datetime!(2026-11-26 23:12:52.050805 UTC)))
    );
    assert_eq!(m.hostname, Some("vm"));
    assert_eq!(m.app_name, Some("decnet-test"));
    assert_eq!(m.procid, None);
    assert_eq!(m.msgid, Some("login"));
    assert_eq!(m.sd.len(), 2);
    assert_eq!(m.sd[0].id, "timeQuality");
    assert_eq!(params(&m.sd[0]), [("tzKnown", "1"), ("isSynced", "0")]);
    assert_eq!(m.sd[1].id, "origin@32473");
    assert_eq!(params(&m.sd[1]), [("ip", "10.0.0.1")]);
    assert_eq!(m.msg.as_deref(), Some("hello \"world\""));

    let m = ok(br#"<36>1 2026-11-26T23:12:55.314823+00:00 vm sshd 4242 auth [timeQuality tzKnown="1" isSynced="0"][meta@32473 user="r\\oot" note="a\]b"] Failed password for root"#);
    assert_eq!((m.facility, m.severity), (4, 4));
    assert_eq!(m.procid, Some("4242"));
    assert_eq!(m.msgid, Some("auth"));
    assert_eq!(params(&m.sd[1]), [("user", r"r\oot"), ("note", "a]b")]);
    assert_eq!(m.msg.as_deref(), Some("Failed password for root"));
    assert_eq!(m.deviations, 0);

    let m = ok(b"<14>1 2026-11-26T23:12:52.079761+00:00 vm app - - - plain msg\n");
    assert_eq!((m.facility, m.severity), (1, 6));
    assert_eq!((m.procid, m.msgid), (None, None));
    assert!(m.sd.is_empty());
    assert_eq!(m.msg.as_deref(), Some("plain msg"));
}

#[test]
fn escaped_sd_values() {
    let m = ok(br#"<13>1 - h a - - [x@1 q="say \"hi\"" bs="C:\\dir" br="[a\]" lit="\n\t\x" end="\\" e=""] m"#);
    assert_eq!(
        params(&m.sd[0]),
        [
            ("q", "say \"hi\""),
            ("bs", r"C:\dir"),
            ("br", "[a]"),
            ("lit", r"\n\t\x"),
            ("end", "\\"),
            ("e", ""),
        ]
    );
    let owned: Vec<bool> = m.sd[0]
        .params
        .iter()
        .map(|(_, v)| matches!(v, Cow::Owned(_)))
        .collect();
    // Only values that had an escape removed are copied.
    assert_eq!(owned, [true, true, true, false, true, false]);
    assert_eq!(m.deviations, 0);

    // UTF-8 values, and `\` before a multi-byte character kept.
    let m = ok("<13>1 - h a - - [x@1 v=\"é\\ü ✓\"]".as_bytes());
    assert_eq!(params(&m.sd[0]), [("v", "é\\ü ✓")]);
}

#[test]
fn nilvalues_and_pri_bounds() {
    let m = ok(b"<0>1 - - - - - -");
    assert_eq!(
        m,
        Message {
            facility: 0,
            severity: 0,
            version: 1,
            timestamp_ns: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            sd: Vec::new(),
            msg: None,
            deviations: 0,
        }
    );
    let m = ok(b"<191>1 - - - - - - x");
    assert_eq!((m.facility, m.severity), (23, 7));
    assert_eq!(m.msg.as_deref(), Some("x"));
    let m = ok(b"<9>1 - - - - - -");
    assert_eq!((m.facility, m.severity), (1, 1));
}

#[test]
fn msg_bom_spaces_and_framing() {
    // Empty MSG, BOM-only MSG: None.
    assert_eq!(ok(b"<13>1 - - - - - - ").msg, None);
    assert_eq!(ok(b"<13>1 - - - - - - \xEF\xBB\xBF").msg, None);
    // Only one BOM is removed; spaces after the separator are MSG.
    assert_eq!(
        ok(b"<13>1 - - - - - - \xEF\xBB\xBF\xEF\xBB\xBFx")
            .msg
            .as_deref(),
        Some("\u{feff}x")
    );
    assert_eq!(ok(b"<13>1 - - - - - -   x ").msg.as_deref(), Some("  x "));
    // One trailing "\n" or "\r\n" is framing; anything before it is MSG.
    assert_eq!(ok(b"<13>1 - - - - - - x\n").msg.as_deref(), Some("x"));
    assert_eq!(ok(b"<13>1 - - - - - - x\r\n").msg.as_deref(), Some("x"));
    assert_eq!(ok(b"<13>1 - - - - - - x\n\n").msg.as_deref(), Some("x\n"));
    assert_eq!(ok(b"<13>1 - - - - - - x\r").msg.as_deref(), Some("x\r"));
    assert_eq!(
        ok(b"<13>1 - - - - - - a\nb\r\n").msg.as_deref(),
        Some("a\nb")
    );
    assert_eq!(ok(b"<13>1 - - - - - -\n").msg, None);
    // MSG that looks like SD after the separator stays MSG.
    let m = ok(b"<13>1 - - - - - [a@1] [b@1 c=\"d\"]");
    assert_eq!(m.sd.len(), 1);
    assert_eq!(m.msg.as_deref(), Some("[b@1 c=\"d\"]"));
}

#[test]
fn deviations_are_flagged() {
    let cases: [(&[u8], u8); 8] = [
        (
            b"<13>1 2026-05-02T06:00:25.4538261+00:00 h a - - -",
            deviation::LONG_FRACTION,
        ),
        (
            b"<13>1 2026-05-02T06:00:25.453826123Z h a - - -",
            deviation::LONG_FRACTION,
        ),
        (
            b"<13>1 - h a - - [x@1 k=\"v\"]msg",
            deviation::NO_SPACE_BEFORE_MSG,
        ),
        (
            b"<13>1 2026-05-02t06:00:25Z h a - - -",
            deviation::LOWERCASE_T_Z,
        ),
        (
            b"<13>1 2026-05-02T06:00:25z h a - - -",
            deviation::LOWERCASE_T_Z,
        ),
        (
            b"<13>1 2016-12-31T23:59:60Z h a - - -",
            deviation::LEAP_SECOND,
        ),
        (
            b"<13>1 - h a - - [x@1 k=\"a]b\"]",
            deviation::UNESCAPED_BRACKET,
        ),
        (
            b"<13>1 2026-05-02t06:00:25.1234567z h a - - [x@1 k=\"]\"]m",
            deviation::LONG_FRACTION
                | deviation::LOWERCASE_T_Z
                | deviation::UNESCAPED_BRACKET
                | deviation::NO_SPACE_BEFORE_MSG,
        ),
    ];
    for (line, want) in cases {
        let m = ok(line);
        assert_eq!(m.deviations, want, "{}", String::from_utf8_lossy(line));
    }
    assert_eq!(
        ok(b"<13>1 - h a - - [x@1 k=\"v\"]msg").msg.as_deref(),
        Some("msg")
    );
    assert_eq!(
        params(&ok(b"<13>1 - h a - - [x@1 k=\"a]b\"]").sd[0]),
        [("k", "a]b")]
    );
    // Leap second: clamped to the last nanosecond of the minute, also with a fraction.
    let last = ns(datetime!(2016-12-31 23:59:59.999999999 UTC));
    assert_eq!(
        ok(b"<13>1 2016-12-31T23:59:60Z h a - - -").timestamp_ns,
        Some(last)
    );
    assert_eq!(
        ok(b"<13>1 2016-12-31T23:59:60.5Z h a - - -").timestamp_ns,
        Some(last)
    );
    // Every flag has a distinct bit and name.
    let bits = deviation::ALL.iter().fold(0u8, |acc, (b, _)| {
        assert_eq!(b.count_ones(), 1);
        assert_eq!(acc & b, 0);
        acc | b
    });
    assert_eq!(bits.count_ones() as usize, deviation::ALL.len());
}

#[test]
fn timestamps_agree_with_the_time_crate() {
    // A deterministic spread of instants 1900..2200 with offsets and fractions, formatted by
    // hand and checked against `time`'s arithmetic.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let base = datetime!(1900-01-01 00:00 UTC);
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let secs = (x % (300 * 365 * 86_400)) as i64;
        let nanos = ((x >> 20) % 1_000_000_000) as i64;
        let off_min = ((x >> 40) % 2879) as i32 - 1439;
        let digits = (x >> 52) % 10;
        let t = base + Duration::seconds(secs) + Duration::nanoseconds(nanos);
        let offset = time::UtcOffset::from_whole_seconds(off_min * 60).expect("offset");
        let local = t.to_offset(offset);
        let frac = match digits {
            0 => String::new(),
            d => format!(".{:09}", local.nanosecond())[..=d as usize].to_owned(),
        };
        let truncated_ns = match digits {
            0 => 0,
            d => {
                let step = 10i64.pow(9 - d as u32);
                i64::from(local.nanosecond()) / step * step
            }
        };
        let (sign, abs) = if off_min < 0 {
            ('-', -off_min)
        } else {
            ('+', off_min)
        };
        let ts = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{sign}{:02}:{:02}",
            local.year(),
            u8::from(local.month()),
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
            abs / 60,
            abs % 60
        );
        let line = format!("<13>1 {ts} h a - - -");
        let want = ns(t) - i64::from(t.nanosecond()) + truncated_ns;
        assert_eq!(ok(line.as_bytes()).timestamp_ns, Some(want), "{ts}");
    }
    // Feb 29 on leap years only; year 2000 is one, 1900 and 2100 are not.
    assert!(parse(b"<13>1 2000-02-29T00:00:00Z h a - - -", 100).is_ok());
    assert!(parse(b"<13>1 2024-02-29T00:00:00Z h a - - -", 100).is_ok());
    for y in ["1900", "2100", "2023"] {
        let line = format!("<13>1 {y}-02-29T00:00:00Z h a - - -");
        assert_eq!(rej(line.as_bytes()), Reject::BadTimestamp, "{y}");
    }
    // Outside the i64 nanosecond range (1677..2262): rejected, not wrapped.
    assert_eq!(
        rej(b"<13>1 9999-12-31T23:59:59Z h a - - -"),
        Reject::BadTimestamp
    );
    assert_eq!(
        rej(b"<13>1 0000-01-01T00:00:00Z h a - - -"),
        Reject::BadTimestamp
    );
    assert_eq!(
        ok(b"<13>1 1970-01-01T00:00:00Z h a - - -").timestamp_ns,
        Some(0)
    );
}

#[test]
fn header_field_lengths() {
    let field = |n: usize| "x".repeat(n);
    let good = format!(
        "<13>1 - {} {} {} {} -",
        field(255),
        field(48),
        field(128),
        field(32)
    );
    let m = ok(good.as_bytes());
    assert_eq!(m.hostname.map(str::len), Some(255));
    assert_eq!(m.app_name.map(str::len), Some(48));
    assert_eq!(m.procid.map(str::len), Some(128));
    assert_eq!(m.msgid.map(str::len), Some(32));
    for bad in [
        format!("<13>1 - {} a p m -", field(256)),
        format!("<13>1 - h {} p m -", field(49)),
        format!("<13>1 - h a {} m -", field(129)),
        format!("<13>1 - h a p {} -", field(33)),
    ] {
        assert_eq!(rej(bad.as_bytes()), Reject::BadHeaderField, "{bad}");
    }
    let sd = format!("<13>1 - h a - - [{}@1 {}=\"v\"]", field(30), field(32));
    assert_eq!(ok(sd.as_bytes()).sd[0].params[0].0.len(), 32);
    for bad in [
        format!("<13>1 - h a - - [{}]", field(33)),
        format!("<13>1 - h a - - [a {}=\"v\"]", field(33)),
    ] {
        assert_eq!(rej(bad.as_bytes()), Reject::BadStructuredData, "{bad}");
    }
}

/// Malformed lines, each with the one reason expected.
#[test]
fn malformed_corpus() {
    let cases: &[(&[u8], Reject)] = &[
        // Empty.
        (b"", Reject::Empty),
        (b"\n", Reject::Empty),
        (b"\r\n", Reject::Empty),
        // PRI.
        (b"<>1 - - - - - -", Reject::BadPri),
        (b"<192>1 - - - - - -", Reject::BadPri),
        (b"<999>1 - - - - - -", Reject::BadPri),
        (b"<01>1 - - - - - -", Reject::BadPri),
        (b"<00>1 - - - - - -", Reject::BadPri),
        (b"134>1 - - - - - -", Reject::BadPri),
        (b"<1345>1 - - - - - -", Reject::BadPri),
        (b"<-1>1 - - - - - -", Reject::BadPri),
        (b"<13 >1 - - - - - -", Reject::BadPri),
        (b"<x>1 - - - - - -", Reject::BadPri),
        (b" <13>1 - - - - - -", Reject::BadPri),
        (b"\r", Reject::BadPri),
        (
            b"Oct 11 22:14:15 mymachine su: 'su root' failed",
            Reject::BadPri,
        ),
        // VERSION.
        (b"<13>2 - - - - - -", Reject::BadVersion),
        (b"<13>0 - - - - - -", Reject::BadVersion),
        (b"<13>01 - - - - - -", Reject::BadVersion),
        (b"<13>11 - - - - - -", Reject::BadVersion),
        (b"<13>1x - - - - - -", Reject::BadVersion),
        (b"<13>x - - - - - -", Reject::BadVersion),
        (b"<13> 1 - - - - - -", Reject::BadVersion),
        // RFC 3164 after a PRI.
        (
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
            Reject::BadVersion,
        ),
        // TIMESTAMP.
        (
            b"<13>1 2003-13-11T22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-00-11T22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-00T22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-32T22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-04-31T22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11X22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11 22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (b"<13>1 2003-10-1122:14:15Z h a - - -", Reject::BadTimestamp),
        (
            b"<13>1 2003-10-11T24:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:60:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:61Z h a - - -",
            Reject::BadTimestamp,
        ),
        (b"<13>1 2003-10-11T22:14:15 h a - - -", Reject::BadTimestamp),
        (
            b"<13>1 2003-10-11T22:14:15+24:00 h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15+05:60 h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15+0500 h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15+05 h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15+05:00x h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15ZZ h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15.Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15.1234567890Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15,5Z h a - - -",
            Reject::BadTimestamp,
        ),
        (b"<13>1 03-10-11T22:14:15Z h a - - -", Reject::BadTimestamp),
        (
            b"<13>1 2003-1-11T22:14:15.5Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 +003-10-11T22:14:15Z h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15Z\xC3\xA9 h a - - -",
            Reject::BadTimestamp,
        ),
        (
            b"<13>1 2003-10-11T22:14:15\xFF h a - - -",
            Reject::InvalidUtf8,
        ),
        (b"<13>1 -- h a - - -", Reject::BadTimestamp),
        (b"<13>1  h a - - -", Reject::BadTimestamp),
        // Header fields.
        (b"<13>1 -  a - - -", Reject::BadHeaderField),
        (b"<13>1 - h  - - -", Reject::BadHeaderField),
        (b"<13>1 - h a  - -", Reject::BadHeaderField),
        (b"<13>1 - h a -  -", Reject::BadHeaderField),
        (b"<13>1 - h\ta - - -", Reject::BadHeaderField),
        (b"<13>1 - h\x7f - - - -", Reject::BadHeaderField),
        (b"<13>1 - h\xC3\xB6st a - - -", Reject::BadHeaderField),
        (b"<13>1 - h\xFFst a - - -", Reject::InvalidUtf8),
        (b"<13>1 - h \xC3 - - -", Reject::InvalidUtf8),
        (b"<13>1 - h a - \xED\xA0\x80 -", Reject::InvalidUtf8),
        // STRUCTURED-DATA.
        (
            b"<13>1 - h a - - [a b=\"c\"",
            Reject::UnterminatedStructuredData,
        ),
        (
            b"<13>1 - h a - - [a b=\"c] msg",
            Reject::UnterminatedStructuredData,
        ),
        (
            b"<13>1 - h a - - [a b=\"c\\\"]",
            Reject::UnterminatedStructuredData,
        ),
        (
            b"<13>1 - h a - - [a b=\"c\\",
            Reject::UnterminatedStructuredData,
        ),
        (
            b"<13>1 - h a - - [a b=\"c\" d=\"e\"",
            Reject::UnterminatedStructuredData,
        ),
        (
            b"<13>1 - h a - - [a b=\"c\"][d",
            Reject::UnterminatedStructuredData,
        ),
        (b"<13>1 - h a - - [", Reject::UnterminatedStructuredData),
        (b"<13>1 - h a - - [a", Reject::UnterminatedStructuredData),
        (b"<13>1 - h a - - [a ", Reject::UnterminatedStructuredData),
        (b"<13>1 - h a - - [a b", Reject::UnterminatedStructuredData),
        (b"<13>1 - h a - - [a b=", Reject::UnterminatedStructuredData),
        (
            b"<13>1 - h a - - [a b=\"",
            Reject::UnterminatedStructuredData,
        ),
        (b"<13>1 - h a - - []", Reject::BadStructuredData),
        (b"<13>1 - h a - - [ a]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a b]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a b=c]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a b=\"c\"x]", Reject::BadStructuredData),
        (
            b"<13>1 - h a - - [a b=\"c\"d=\"e\"]",
            Reject::BadStructuredData,
        ),
        (b"<13>1 - h a - - [a  b=\"c\"]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a b =\"c\"]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a b= \"c\"]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a=b]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a\"b]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a\tb=\"c\"]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a b=\"c\" ]", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a][a]", Reject::BadStructuredData),
        (
            b"<13>1 - h a - - [a][b][a x=\"1\"]",
            Reject::BadStructuredData,
        ),
        (b"<13>1 - h a - - [\xC3\xA9]", Reject::BadStructuredData),
        (
            b"<13>1 - h a - - [a \xC3\xA9=\"1\"]",
            Reject::BadStructuredData,
        ),
        (b"<13>1 - h a - - -x", Reject::BadStructuredData),
        (b"<13>1 - h a - - x", Reject::BadStructuredData),
        (b"<13>1 - h a - - \"x\"", Reject::BadStructuredData),
        (b"<13>1 - h a - - [a\xFF b=\"c\"]", Reject::InvalidUtf8),
        (b"<13>1 - h a - - [a b\xFF=\"c\"]", Reject::InvalidUtf8),
        (b"<13>1 - h a - - [a b=\"\xFF\"]", Reject::InvalidUtf8),
        (
            b"<13>1 - h a - - [a b=\"\\\"\xC0\xAF\"]",
            Reject::InvalidUtf8,
        ),
        // MSG.
        (b"<13>1 - h a - - - \xEF\xBB\xBF\xFF", Reject::InvalidUtf8),
        (
            b"<13>1 - h a - - - \xEF\xBB\xBFok \xC3",
            Reject::InvalidUtf8,
        ),
        (b"<13>1 - h a - - - \xEF\xBB\xBF\xFE", Reject::InvalidUtf8),
        (
            b"<13>1 - h a - - [a@1] \xEF\xBB\xBF\xFF",
            Reject::InvalidUtf8,
        ),
        // NUL anywhere.
        (b"<1\x003>1 - h a - - -", Reject::NulByte),
        (b"<13>1 - h\x00 a - - -", Reject::NulByte),
        (b"<13>1 - h a - - [a b=\"\x00\"]", Reject::NulByte),
        (b"<13>1 - h a - - - msg\x00", Reject::NulByte),
        (b"\x00", Reject::NulByte),
        // Truncated header.
        (b"<", Reject::Truncated),
        (b"<13", Reject::Truncated),
        (b"<13>", Reject::Truncated),
        (b"<13>1", Reject::Truncated),
        (b"<13>1 -", Reject::Truncated),
        (b"<13>1 - h a - -", Reject::Truncated),
        (b"<13>1 - h a - - ", Reject::Truncated),
        (b"<13>1 - h a - - \n", Reject::Truncated),
    ];
    for (line, want) in cases {
        assert_eq!(
            parse(line, MAX_MESSAGE).err(),
            Some(*want),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

/// The RFC example cut at every byte: Truncated up to the SD, Unterminated inside it, accepted
/// from its `]` on.
#[test]
fn truncated_at_every_field() {
    let full: &[u8] = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 77 ID47 \
                        [exampleSDID@32473 iut=\"3\" eventSource=\"App\"] An event";
    let open = full.iter().position(|&b| b == b'[').expect("[");
    let close = full.iter().position(|&b| b == b']').expect("]");
    for n in 1..full.len() {
        let got = parse(&full[..n], MAX_MESSAGE).err();
        let want = if n <= open {
            Some(Reject::Truncated)
        } else if n <= close {
            Some(Reject::UnterminatedStructuredData)
        } else {
            None
        };
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&full[..n]));
    }
}

#[test]
fn length_limit() {
    let line = b"<13>1 - h a - - - 0123456789";
    assert!(parse(line, line.len()).is_ok());
    assert_eq!(parse(line, line.len() - 1).err(), Some(Reject::TooLong));
    // The framing newline does not count.
    let framed = b"<13>1 - h a - - - 0123456789\r\n";
    assert!(parse(framed, line.len()).is_ok());

    // A huge (otherwise valid) SD over the default limit.
    let mut huge = String::from("<13>1 - h a - - [big@1");
    for i in 0..MAX_MESSAGE / 8 {
        huge.push_str(&format!(" k{i}=\"vvvvvv\""));
    }
    huge.push(']');
    assert!(huge.len() > MAX_MESSAGE);
    assert_eq!(rej(huge.as_bytes()), Reject::TooLong);
    assert_eq!(
        parse(huge.as_bytes(), huge.len())
            .map(|m| m.sd[0].params.len())
            .ok(),
        Some(MAX_MESSAGE / 8)
    );
    // Many elements: the duplicate-ID check stays linear-ish.
    let mut many = String::from("<13>1 - h a - - ");
    for i in 0..5000 {
        many.push_str(&format!("[e{i}]"));
    }
    assert_eq!(ok(many.as_bytes()).sd.len(), 5000);
    many.push_str("[e17]");
    assert_eq!(rej(many.as_bytes()), Reject::BadStructuredData);
}

/// Every prefix and every single-byte change of a few valid lines: no panic, and what is
/// accepted keeps the invariants.
#[test]
fn mutations_never_panic() {
    let seeds: [&[u8]; 3] = [
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
          [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
          [examplePriority@32473 class=\"high\"] \xEF\xBB\xBFmsg",
        br#"<36>1 2026-11-26T23:12:55.314823+00:00 vm sshd 4242 auth [meta@32473 user="r\\oot" note="a\]b"] x"#,
        b"<13>1 2026-05-02t06:00:25.1234567-05:30 h a p m [x@1 k=\"]\\q\"]m",
    ];
    let replacements = [
        0u8, b' ', b'"', b'\\', b']', b'[', b'=', b'-', b'<', b'>', b'0', b'9', b'T', b'Z', 0x80,
        0xC3, 0xFF, b'\n',
    ];
    let mut accepted = 0;
    for seed in seeds {
        for n in 0..=seed.len() {
            check_invariants(&seed[..n]);
        }
        for i in 0..seed.len() {
            for r in replacements {
                let mut v = seed.to_vec();
                v[i] = r;
                accepted += usize::from(check_invariants(&v));
                v.remove(i);
                check_invariants(&v);
            }
        }
    }
    assert!(accepted > 100, "{accepted}");
}

/// What the fuzz target checks too (in a lighter form): returns whether `line` was accepted.
fn check_invariants(line: &[u8]) -> bool {
    let Ok(m) = parse(line, MAX_MESSAGE) else {
        return false;
    };
    let range = line.as_ptr_range();
    let inside = |s: &str| {
        let r = s.as_bytes().as_ptr_range();
        range.start <= r.start && r.end <= range.end
    };
    assert!(m.facility < 24 && m.severity < 8 && m.version == 1);
    for s in [m.hostname, m.app_name, m.procid, m.msgid]
        .into_iter()
        .flatten()
    {
        assert!(inside(s) && !s.is_empty() && s.bytes().all(is_print_us_ascii));
    }
    for e in &m.sd {
        assert!(inside(e.id));
        for (k, v) in &e.params {
            assert!(inside(k));
            if let Cow::Borrowed(v) = v {
                assert!(inside(v));
            }
        }
    }
    if let Some(Cow::Borrowed(msg)) = &m.msg {
        assert!(inside(msg) && !msg.is_empty());
    }
    true
}

/// Lines from decnet's own formatter (logging::rfc5424) parse back to what went in.
#[test]
fn formatter_lines_parse_back() {
    use crate::logging::rfc5424::{Rfc5424Record, SD_ID, rfc5424_line};
    use tracing::Level;

    let params = vec![
        ("src_ip", "203.0.113.9".to_owned()),
        ("path", "/a]b\"c\\d".to_owned()),
        ("ctl", "x\ny".to_owned()),
    ];
    let t = datetime!(2026-05-02 06:00:25.453826 UTC);
    let line = rfc5424_line(&Rfc5424Record {
        level: Level::WARN,
        timestamp: t,
        hostname: "sensor-1",
        app_name: "decnet.collector",
        procid: 4242,
        target: "decnet_agent::collector",
        params: &params,
        message: "café ✓ done",
    });
    let m = ok(line.as_bytes());
    assert_eq!((m.facility, m.severity), (16, 4));
    assert_eq!(m.timestamp_ns, Some(ns(t)));
    assert_eq!(m.hostname, Some("sensor-1"));
    assert_eq!(m.app_name, Some("decnet.collector"));
    assert_eq!(m.procid, Some("4242"));
    assert_eq!(m.msgid, Some("collector"));
    assert_eq!(m.sd[0].id, SD_ID);
    assert_eq!(
        params_of(&m),
        [
            ("src_ip", "203.0.113.9"),
            ("path", "/a]b\"c\\d"),
            // The formatter spells control characters out; the parser keeps `\n` literally.
            ("ctl", "x\\ny"),
        ]
    );
    assert_eq!(m.msg.as_deref(), Some("café ✓ done"));
    assert_eq!(m.deviations, 0);

    let empty = rfc5424_line(&Rfc5424Record {
        level: Level::INFO,
        timestamp: t,
        hostname: "",
        app_name: "",
        procid: 1,
        target: "",
        params: &[],
        message: "",
    });
    let m = ok(empty.as_bytes());
    assert_eq!((m.hostname, m.app_name, m.msgid), (None, None, None));
    assert!(m.sd.is_empty() && m.msg.is_none());
}

fn params_of<'a>(m: &'a Message<'a>) -> Vec<(&'a str, &'a str)> {
    params(&m.sd[0])
}

#[test]
fn reject_names() {
    let names: std::collections::HashSet<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), Reject::ALL.len());
    assert_eq!(
        Reject::UnterminatedStructuredData.as_str(),
        "unterminated_structured_data"
    );
    assert_eq!(Reject::InvalidUtf8.to_string(), "invalid_utf8");
    assert!(names.iter().all(|n| {
        n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }));
}

#[test]
fn msg_any_without_bom_is_kept_lossily_and_flagged() {
    let m = parse(b"<13>1 - h a - - - ok \xC3 \xFF end", MAX_MESSAGE).unwrap();
    assert_eq!(m.msg.as_deref(), Some("ok \u{FFFD} \u{FFFD} end"));
    assert_eq!(
        m.deviations & deviation::NON_UTF8_MSG,
        deviation::NON_UTF8_MSG
    );
    let ok = parse(b"<13>1 - h a - - - fine", MAX_MESSAGE).unwrap();
    assert_eq!(ok.deviations & deviation::NON_UTF8_MSG, 0);
}
