//! The real `decnet collect` binary, end to end on loopback: golden lines in, exact rows out.
//!
//! - RFC 5424's own examples (section 6.5) and the original DECNET decoy line formats, over TCP
//!   with octet counting: exact `events` columns and `credentials` rows;
//! - real clients: util-linux `logger` (TCP octet counting and UDP), and a private `rsyslogd`
//!   relaying over TCP with octet counting (`omfwd`, `RSYSLOG_SyslogProtocol23Format`);
//! - a malformed corpus over TCP (LF framing and octet counting) and UDP: each bad line is
//!   rejected under the reason a strict RFC 5424 parser gives, the valid lines between them all
//!   land, and the collector keeps running;
//! - UDP at overload: every datagram sent is accounted for (stored, dropped by the collector,
//!   rejected, or dropped by the kernel), and the kernel's per-socket drop counter agrees with
//!   the collector's.
//!
//! Needs the binary (`DECNET_BIN`, or target/{release,debug}/decnet), `logger` (bsdutils) and
//! `rsyslogd` (rsyslog); `cargo xtask test` installs and builds all of them. A missing one fails
//! the test with a message saying so; nothing is skipped. No root needed.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use decnet_e2e::collector::{
    self, Collector, CollectorOptions, EventRow, Framing, Outcome, Rsyslogd, Summary,
};
use decnet_e2e::problems::Problems;
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

const WAIT: Duration = Duration::from_secs(30);

fn ok<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

fn start(opts: CollectorOptions) -> Collector {
    ok(Collector::start(&opts))
}

fn stop(c: &mut Collector) -> Outcome {
    ok(c.stop())
}

/// What one event row must hold (everything but `id` and `dedup_key`).
struct Expect {
    ts: &'static str,
    decky: &'static str,
    service: &'static str,
    event_type: &'static str,
    attacker_ip: Option<&'static str>,
    attacker_port: Option<i64>,
    fields: Value,
}

fn check_row(p: &mut Problems, what: &str, row: &EventRow, line: &[u8], want: &Expect) {
    p.eq(format!("{what}: ts"), row.ts.as_str(), want.ts);
    p.eq(format!("{what}: decky"), row.decky.as_str(), want.decky);
    p.eq(
        format!("{what}: service"),
        row.service.as_str(),
        want.service,
    );
    p.eq(
        format!("{what}: event_type"),
        row.event_type.as_str(),
        want.event_type,
    );
    p.eq(
        format!("{what}: attacker_ip"),
        row.attacker_ip.as_deref(),
        want.attacker_ip,
    );
    p.eq(
        format!("{what}: attacker_port"),
        row.attacker_port,
        want.attacker_port,
    );
    p.eq(format!("{what}: fields"), &row.fields, &want.fields);
    p.check(row.raw == line, || {
        format!(
            "{what}: raw is {:?}, not the line sent {:?}",
            row.raw_str(),
            String::from_utf8_lossy(line)
        )
    });
}

/// The row whose raw line is exactly `line`.
fn row_for<'a>(events: &'a [EventRow], line: &[u8]) -> Option<&'a EventRow> {
    events.iter().find(|e| e.raw == line)
}

fn summary_context(out: &Outcome, events: &[EventRow]) -> String {
    let mut s = format!("summary: {}\nevents:\n", out.summary_json.trim());
    for e in events {
        s += &format!(
            "  {} {} {} {} {} {:?}:{:?} {} raw={:?}\n",
            e.id,
            e.ts,
            e.decky,
            e.service,
            e.event_type,
            e.attacker_ip,
            e.attacker_port,
            e.fields,
            e.raw_str()
        );
    }
    s + &format!("logs (tail):\n{}", tail(&out.logs, 30))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `received`, `parsed`, `stored` are what a clean run of `n` distinct valid lines gives.
fn check_clean_summary(p: &mut Problems, s: &Summary, n: u64) {
    p.eq("summary received", s.received, n);
    p.eq("summary parsed", s.parsed, n);
    p.eq("summary stored", s.stored, n);
    p.eq("summary duplicates", s.duplicates, 0);
    p.eq("summary dropped_udp", s.dropped_udp, 0);
    p.eq(
        "summary rejected (non-zero)",
        s.rejected_nonzero(),
        BTreeMap::new(),
    );
}

/// An RFC 3339 timestamp as the DB stores it: UTC, nine fraction digits, `Z`.
fn canonical_ts(rfc3339: &str) -> String {
    let t = OffsetDateTime::parse(rfc3339, &Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

fn is_canonical_ts(s: &str) -> bool {
    s.len() == 30 && s.ends_with('Z') && canonical_ts(s) == s
}

// ---------------------------------------------------------------------------------------------
// RFC 5424 section 6.5

const BOM: &str = "\u{feff}";

#[test]
fn rfc5424_section_6_5_examples_over_tcp() {
    let lines = [
        format!(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - {BOM}'su root' failed \
             for lonvick on /dev/pts/8"
        ),
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make \
         the do-nuts."
            .to_string(),
        format!(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \
             {BOM}An application event log entry..."
        ),
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
         [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
         [examplePriority@32473 class=\"high\"]"
            .to_string(),
    ];
    let expect = [
        Expect {
            ts: "2003-10-11T22:14:15.003000000Z",
            decky: "mymachine.example.com",
            service: "su",
            event_type: "ID47",
            attacker_ip: None,
            attacker_port: None,
            // MSG is kept under `msg`; the BOM only says "UTF-8" and is not part of the text.
            fields: json!({"msg": "'su root' failed for lonvick on /dev/pts/8"}),
        },
        Expect {
            ts: "2003-08-24T12:14:15.000003000Z",
            decky: "192.0.2.1",
            service: "myproc",
            event_type: "-",
            attacker_ip: None,
            attacker_port: None,
            fields: json!({"msg": "%% It's time to make the do-nuts."}),
        },
        Expect {
            ts: "2003-10-11T22:14:15.003000000Z",
            decky: "mymachine.example.com",
            service: "evntslog",
            event_type: "ID47",
            attacker_ip: None,
            attacker_port: None,
            fields: json!({"iut": "3", "eventSource": "Application", "eventID": "1011",
                           "msg": "An application event log entry..."}),
        },
        Expect {
            ts: "2003-10-11T22:14:15.003000000Z",
            decky: "mymachine.example.com",
            service: "evntslog",
            event_type: "ID47",
            attacker_ip: None,
            attacker_port: None,
            // No relay@ element: the first element is the event's.
            fields: json!({"iut": "3", "eventSource": "Application", "eventID": "1011"}),
        },
    ];
    let mut c = start(CollectorOptions::default());
    ok(collector::send_tcp(
        c.tcp_addr(),
        &lines,
        Framing::OctetCounting,
    ));
    ok(c.wait_count(lines.len() as u64, WAIT));
    let out = stop(&mut c);
    let events = ok(c.events());
    let mut p = Problems::default();
    for (i, (line, want)) in lines.iter().zip(&expect).enumerate() {
        match row_for(&events, line.as_bytes()) {
            Some(row) => check_row(
                &mut p,
                &format!("example {}", i + 1),
                row,
                line.as_bytes(),
                want,
            ),
            None => p.check(false, || {
                format!("example {}: no row with raw == {line:?}", i + 1)
            }),
        }
    }
    p.eq("events rows", events.len(), lines.len());
    check_clean_summary(&mut p, &out.summary, lines.len() as u64);
    p.eq(
        "credentials rows",
        ok(collector::read_credentials(&c.db)).len(),
        0,
    );
    p.assert_none(&summary_context(&out, &events));
}

// ---------------------------------------------------------------------------------------------
// The original DECNET line formats

#[test]
fn decnet_decoy_lines_give_exact_columns_and_credentials() {
    let disconnect = r#"<134>1 2026-05-02T06:00:25.453826+00:00 omega-decky smtp - disconnect [relay@55555 src_ip="192.168.1.5"]"#;
    let auth = r#"<134>1 2026-05-02T06:01:00.000001+00:00 web-01 ssh - auth_attempt [relay@55555 principal="root" secret_printable="123456" secret_b64="MTIzNDU2" secret_kind="password" src_ip="203.0.113.9" src_port="51234"]"#;
    // Escapes: \" \\ \] decode; a backslash before anything else stays (RFC 5424 6.3.3).
    let http = r#"<134>1 2026-05-02T08:02:00.5+02:00 web-01 http - request [relay@55555 src_ip="198.51.100.7" src_port="40000" method="POST" path="/login?next=%2Fadmin&q=\"x\"" headers="{\"User-Agent\":\"sqlmap/1.7.2#stable (https://sqlmap.org)\",\"Accept\":\"*/*\"}" body="user=admin&pass=a\\b\]c\"d&dir=C:\temp"]"#;
    let v6 = r#"<134>1 2026-05-02T06:03:00Z web-02 ftp 4242 connect [relay@55555 src_ip="2001:db8::7" src_port="2121"] session opened"#;
    let lines = [disconnect, auth, http, v6];
    let expect = [
        Expect {
            ts: "2026-05-02T06:00:25.453826000Z",
            decky: "omega-decky",
            service: "smtp",
            event_type: "disconnect",
            attacker_ip: Some("192.168.1.5"),
            attacker_port: None,
            fields: json!({"src_ip": "192.168.1.5"}),
        },
        Expect {
            ts: "2026-05-02T06:01:00.000001000Z",
            decky: "web-01",
            service: "ssh",
            event_type: "auth_attempt",
            attacker_ip: Some("203.0.113.9"),
            attacker_port: Some(51234),
            fields: json!({"principal": "root", "secret_printable": "123456",
                           "secret_b64": "MTIzNDU2", "secret_kind": "password",
                           "src_ip": "203.0.113.9", "src_port": "51234"}),
        },
        Expect {
            ts: "2026-05-02T06:02:00.500000000Z",
            decky: "web-01",
            service: "http",
            event_type: "request",
            attacker_ip: Some("198.51.100.7"),
            attacker_port: Some(40000),
            fields: json!({
                "src_ip": "198.51.100.7", "src_port": "40000", "method": "POST",
                "path": "/login?next=%2Fadmin&q=\"x\"",
                "headers": "{\"User-Agent\":\"sqlmap/1.7.2#stable (https://sqlmap.org)\",\"Accept\":\"*/*\"}",
                "body": "user=admin&pass=a\\b]c\"d&dir=C:\\temp",
            }),
        },
        Expect {
            ts: "2026-05-02T06:03:00.000000000Z",
            decky: "web-02",
            service: "ftp",
            event_type: "connect",
            attacker_ip: Some("2001:db8::7"),
            attacker_port: Some(2121),
            fields: json!({"src_ip": "2001:db8::7", "src_port": "2121", "msg": "session opened"}),
        },
    ];
    let mut c = start(CollectorOptions::default());
    ok(collector::send_tcp(
        c.tcp_addr(),
        &lines,
        Framing::OctetCounting,
    ));
    ok(c.wait_count(lines.len() as u64, WAIT));
    // The same lines again, LF-framed this time: duplicates, nothing new.
    ok(collector::send_tcp(c.tcp_addr(), &lines, Framing::Lf));
    // A marker after them on the same kind of connection: once it is stored, the resent lines
    // were read and written before it.
    let marker = r#"<134>1 2026-05-02T06:04:00Z web-01 ssh - disconnect [relay@55555 src_ip="203.0.113.9"] golden-end"#;
    ok(collector::send_tcp(c.tcp_addr(), &[marker], Framing::Lf));
    ok(c.wait_marker("golden-end", WAIT));
    let out = stop(&mut c);
    let events = ok(c.events());
    let creds = ok(collector::read_credentials(&c.db));

    let mut p = Problems::default();
    for (line, want) in lines.iter().zip(&expect) {
        match row_for(&events, line.as_bytes()) {
            Some(row) => check_row(&mut p, want.event_type, row, line.as_bytes(), want),
            None => p.check(false, || format!("no row with raw == {line:?}")),
        }
    }
    p.eq("events rows", events.len(), lines.len() + 1);
    let mut keys: Vec<i64> = events.iter().map(|e| e.dedup_key).collect();
    keys.sort_unstable();
    keys.dedup();
    p.eq("distinct dedup keys", keys.len(), events.len());
    let s = &out.summary;
    let sent = 2 * lines.len() as u64 + 1;
    p.eq("summary received", s.received, sent);
    p.eq("summary parsed", s.parsed, sent);
    p.eq("summary stored", s.stored, lines.len() as u64 + 1);
    p.eq("summary duplicates", s.duplicates, lines.len() as u64);
    p.eq(
        "summary rejected (non-zero)",
        s.rejected_nonzero(),
        BTreeMap::new(),
    );

    // One credential: the auth_attempt, once (its resent duplicate is the same attempt).
    p.eq("credentials rows", creds.len(), 1);
    if let Some(cr) = creds.first() {
        p.eq(
            "credential attacker_ip",
            cr.attacker_ip.as_str(),
            "203.0.113.9",
        );
        p.eq("credential decky", cr.decky.as_str(), "web-01");
        p.eq("credential service", cr.service.as_str(), "ssh");
        p.eq(
            "credential principal",
            cr.principal.as_slice(),
            b"root".as_slice(),
        );
        p.eq(
            "credential secret_kind",
            cr.secret_kind.as_str(),
            "password",
        );
        p.eq(
            "credential secret_printable",
            cr.secret_printable.as_str(),
            "123456",
        );
        p.eq(
            "credential attempts (resending a line is not a new attempt)",
            cr.attempts,
            1,
        );
    }
    p.assert_none(&format!(
        "{}\ncredentials: {creds:?}",
        summary_context(&out, &events)
    ));
}

// ---------------------------------------------------------------------------------------------
// Real clients: util-linux logger, rsyslog

/// The HOSTNAME field of an RFC 5424 line (the third header field).
fn header_hostname(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.split(' ').nth(2).unwrap_or_default().to_string()
}

/// The TIMESTAMP field of an RFC 5424 line.
fn header_timestamp(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.split(' ').nth(1).unwrap_or_default().to_string()
}

fn logger_args(
    transport: &[&str],
    port: u16,
    msgid: &str,
    params: &[String],
    msg: &str,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["--rfc5424".into()];
    a.extend(transport.iter().map(|s| s.to_string()));
    a.extend([
        "--server".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "-p".into(),
        "local0.info".into(),
        "-t".into(),
        "ssh".into(),
        "--msgid".into(),
        msgid.into(),
        "--sd-id".into(),
        "relay@55555".into(),
    ]);
    for prm in params {
        a.extend(["--sd-param".into(), prm.clone()]);
    }
    a.push(msg.into());
    a
}

/// Checks an event sent by `logger` (directly or through rsyslog) against what was asked.
fn check_logger_event(
    p: &mut Problems,
    what: &str,
    row: &EventRow,
    msgid: &str,
    src_port: &str,
    msg: &str,
    window: (OffsetDateTime, OffsetDateTime),
) {
    // What logger actually put in HOSTNAME, read back from the stored line.
    let sent_host = header_hostname(&row.raw);
    let me = ok(collector::hostname());
    p.check(
        sent_host == me || me.split('.').next() == Some(sent_host.as_str()),
        || format!("{what}: logger sent HOSTNAME {sent_host:?}, this host is {me:?}"),
    );
    p.eq(
        format!("{what}: decky"),
        row.decky.as_str(),
        sent_host.as_str(),
    );
    p.eq(format!("{what}: service"), row.service.as_str(), "ssh");
    p.eq(
        format!("{what}: event_type"),
        row.event_type.as_str(),
        msgid,
    );
    p.eq(
        format!("{what}: attacker_ip"),
        row.attacker_ip.as_deref(),
        Some("203.0.113.77"),
    );
    p.eq(
        format!("{what}: attacker_port"),
        row.attacker_port,
        Some(src_port.parse::<i64>().unwrap()),
    );
    // logger adds its own [timeQuality …] element first; the relay@ element is the event's.
    p.eq(
        format!("{what}: fields"),
        &row.fields,
        &json!({
            "principal": "admin", "secret_printable": "hunter2", "secret_b64": "aHVudGVyMg==",
            "secret_kind": "password", "src_ip": "203.0.113.77", "src_port": src_port,
            "cmd": "echo \"hi\" a]b c\\d", "msg": msg,
        }),
    );
    let sent_ts = header_timestamp(&row.raw);
    p.eq(
        format!("{what}: ts (logger sent {sent_ts:?})"),
        row.ts.clone(),
        canonical_ts(&sent_ts),
    );
    let t = OffsetDateTime::parse(&row.ts, &Rfc3339).ok();
    p.check(
        t.is_some_and(|t| {
            t >= window.0 - Duration::from_secs(2) && t <= window.1 + Duration::from_secs(2)
        }),
        || {
            format!(
                "{what}: ts {} is not the time it was sent ({window:?})",
                row.ts
            )
        },
    );
    p.check(!row.raw.ends_with(b"\n"), || {
        format!(
            "{what}: raw keeps the frame's trailing LF: {:?}",
            row.raw_str()
        )
    });
}

fn logger_params(src_port: &str) -> Vec<String> {
    vec![
        r#"principal="admin""#.into(),
        r#"secret_printable="hunter2""#.into(),
        r#"secret_b64="aHVudGVyMg==""#.into(),
        r#"secret_kind="password""#.into(),
        r#"src_ip="203.0.113.77""#.into(),
        format!(r#"src_port="{src_port}""#),
        r#"cmd="echo \"hi\" a\]b c\\d""#.into(),
    ]
}

#[test]
fn util_linux_logger_over_tcp_octet_counting_and_udp() {
    ok(collector::logger_bin());
    let mut c = start(CollectorOptions::default());
    let pid = std::process::id();
    let before = OffsetDateTime::now_utc();
    let tcp_msg = format!("logger-tcp-{pid} tried admin");
    let udp_msg = format!("logger-udp-{pid} tried admin");
    ok(collector::run_logger(&logger_args(
        &["--tcp", "--octet-count"],
        c.tcp_addr().port(),
        "auth_attempt",
        &logger_params("50001"),
        &tcp_msg,
    )));
    ok(collector::run_logger(&logger_args(
        &["--udp"],
        c.udp_addr().port(),
        "auth_attempt",
        &logger_params("50002"),
        &udp_msg,
    )));
    let after = OffsetDateTime::now_utc();
    let tcp_row = ok(c.wait_marker(&tcp_msg, WAIT));
    let udp_row = ok(c.wait_marker(&udp_msg, WAIT));
    let out = stop(&mut c);
    let events = ok(c.events());
    let creds = ok(collector::read_credentials(&c.db));

    let mut p = Problems::default();
    let w = (before, after);
    check_logger_event(
        &mut p,
        "logger --tcp --octet-count",
        &tcp_row,
        "auth_attempt",
        "50001",
        &tcp_msg,
        w,
    );
    check_logger_event(
        &mut p,
        "logger --udp",
        &udp_row,
        "auth_attempt",
        "50002",
        &udp_msg,
        w,
    );
    check_clean_summary(&mut p, &out.summary, 2);
    // Same attacker, decky, service, principal and secret: one credential, two attempts.
    p.eq("credentials rows", creds.len(), 1);
    if let Some(cr) = creds.first() {
        p.eq(
            "credential principal",
            cr.principal.as_slice(),
            b"admin".as_slice(),
        );
        p.eq(
            "credential secret_printable",
            cr.secret_printable.as_str(),
            "hunter2",
        );
        p.eq(
            "credential attacker_ip",
            cr.attacker_ip.as_str(),
            "203.0.113.77",
        );
        p.eq(
            "credential decky",
            cr.decky.as_str(),
            tcp_row.decky.as_str(),
        );
        p.eq("credential attempts", cr.attempts, 2);
    }
    p.assert_none(&format!(
        "{}\ncredentials: {creds:?}",
        summary_context(&out, &events)
    ));
}

#[test]
fn rsyslog_relays_to_the_collector_over_octet_counted_tcp() {
    ok(collector::logger_bin());
    ok(collector::rsyslogd_bin());
    let mut c = start(CollectorOptions::default());
    let in_port = ok(collector::free_port("udp"));
    let config = format!(
        r#"module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{in_port}" ruleset="to_decnet")
ruleset(name="to_decnet") {{
  action(type="omfwd" target="127.0.0.1" port="{out_port}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}}
"#,
        out_port = c.tcp_addr().port()
    );
    let mut rs = ok(Rsyslogd::start(&config, &[("udp", in_port)]));
    let pid = std::process::id();
    let before = OffsetDateTime::now_utc();
    let msgs: Vec<(String, String, String)> = (0..5)
        .map(|i| {
            (
                format!("login_{i}"),
                (50100 + i).to_string(),
                format!("via-rsyslog-{pid}-{i} x"),
            )
        })
        .collect();
    for (msgid, port, msg) in &msgs {
        ok(collector::run_logger(&logger_args(
            &["--udp"],
            in_port,
            msgid,
            &logger_params(port),
            msg,
        )));
    }
    let after = OffsetDateTime::now_utc();
    let rows: Vec<EventRow> = msgs
        .iter()
        .map(|(_, _, msg)| {
            c.wait_marker(msg, WAIT).unwrap_or_else(|e| {
                panic!("{e:#}\nrsyslogd log:\n{}\nconfig:\n{config}", rs.logs())
            })
        })
        .collect();
    let rs_logs = rs.logs();
    ok(rs.stop());
    let out = stop(&mut c);
    let events = ok(c.events());

    let mut p = Problems::default();
    for ((msgid, port, msg), row) in msgs.iter().zip(&rows) {
        check_logger_event(
            &mut p,
            &format!("via rsyslog {msgid}"),
            row,
            msgid,
            port,
            msg,
            (before, after),
        );
        p.check(row.raw.starts_with(b"<134>1 "), || {
            format!("{msgid}: rsyslog's line starts {:?}", row.raw_str())
        });
    }
    check_clean_summary(&mut p, &out.summary, msgs.len() as u64);
    p.eq("summary unwrapped", out.summary.unwrapped, 0);
    p.assert_none(&format!(
        "{}\nrsyslogd log:\n{rs_logs}",
        summary_context(&out, &events)
    ));
}

// ---------------------------------------------------------------------------------------------
// Malformed corpus

const MAX_MESSAGE: usize = 2048;
const TS: &str = "2026-05-02T06:00:25.453826+00:00";

/// A valid decoy line, marked `valid-<tag>-<seq>` in its MSG.
fn good(tag: &str, seq: usize) -> Vec<u8> {
    format!(
        r#"<134>1 {TS} web-01 ssh - auth_attempt [relay@55555 src_ip="203.0.113.9" seq="{seq}"] valid-{tag}-{seq}"#
    )
    .into_bytes()
}

/// `<PRI>VERSION TS HOST APP - MSGID SD` with the given pieces.
fn line(pri: &str, ver: &str, ts: &str, host: &str, app: &str, msgid: &str, sd: &str) -> Vec<u8> {
    format!("<{pri}>{ver} {ts} {host} {app} - {msgid} {sd}").into_bytes()
}

const SD: &str = r#"[relay@55555 src_ip="203.0.113.9"]"#;

fn with_ts(ts: &str) -> Vec<u8> {
    let mut l = line("134", "1", ts, "web-01", "ssh", "auth_attempt", SD);
    l.extend_from_slice(b" bad ts");
    l
}

fn with_sd(sd: &str) -> Vec<u8> {
    line("134", "1", TS, "web-01", "ssh", "auth_attempt", sd)
}

fn bytes_line(prefix: &str, middle: &[u8], suffix: &str) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(middle);
    v.extend_from_slice(suffix.as_bytes());
    v
}

/// Every malformed case: (name, line, the reason a strict RFC 5424 parser rejects it with).
fn malformed_corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let head = format!("<134>1 {TS} web-01 ssh - auth_attempt ");
    let long = |n: usize| "a".repeat(n);
    vec![
        ("empty line", Vec::new(), "empty"),
        ("PRI only", b"<134>".to_vec(), "truncated"),
        ("cut after VERSION", b"<134>1".to_vec(), "truncated"),
        (
            "cut after TIMESTAMP",
            format!("<134>1 {TS}").into_bytes(),
            "truncated",
        ),
        (
            "cut after APP-NAME",
            format!("<134>1 {TS} web-01 ssh").into_bytes(),
            "truncated",
        ),
        (
            "cut before STRUCTURED-DATA",
            format!("<134>1 {TS} web-01 ssh - auth_attempt").into_bytes(),
            "truncated",
        ),
        ("no PRI", b"hello world".to_vec(), "bad_pri"),
        (
            "empty PRI",
            line("", "1", TS, "web-01", "ssh", "x", SD),
            "bad_pri",
        ),
        (
            "PRI 192",
            line("192", "1", TS, "web-01", "ssh", "x", SD),
            "bad_pri",
        ),
        (
            "PRI 4 digits",
            line("1340", "1", TS, "web-01", "ssh", "x", SD),
            "bad_pri",
        ),
        (
            "PRI not a number",
            line("1a4", "1", TS, "web-01", "ssh", "x", SD),
            "bad_pri",
        ),
        (
            "PRI not closed",
            format!("<134 1 {TS} web-01 ssh - x {SD}").into_bytes(),
            "bad_pri",
        ),
        (
            "VERSION 2",
            line("134", "2", TS, "web-01", "ssh", "x", SD),
            "bad_version",
        ),
        (
            "VERSION 0",
            line("134", "0", TS, "web-01", "ssh", "x", SD),
            "bad_version",
        ),
        (
            "VERSION 01",
            line("134", "01", TS, "web-01", "ssh", "x", SD),
            "bad_version",
        ),
        ("month 13", with_ts("2026-13-02T06:00:25Z"), "bad_timestamp"),
        (
            "February 30",
            with_ts("2026-02-30T06:00:25Z"),
            "bad_timestamp",
        ),
        ("hour 24", with_ts("2026-05-02T24:00:25Z"), "bad_timestamp"),
        (
            "no time offset",
            with_ts("2026-05-02T06:00:25.453826"),
            "bad_timestamp",
        ),
        ("date only", with_ts("2026-05-02"), "bad_timestamp"),
        ("unix seconds", with_ts("1777701625"), "bad_timestamp"),
        (
            "HOSTNAME 256 chars",
            line("134", "1", TS, &long(256), "ssh", "x", SD),
            "bad_header_field",
        ),
        (
            "APP-NAME 49 chars",
            line("134", "1", TS, "web-01", &long(49), "x", SD),
            "bad_header_field",
        ),
        (
            "MSGID 33 chars",
            line("134", "1", TS, "web-01", "ssh", &long(33), SD),
            "bad_header_field",
        ),
        (
            "PROCID 129 chars",
            format!("<134>1 {TS} web-01 ssh {} x {SD}", long(129)).into_bytes(),
            "bad_header_field",
        ),
        (
            "non-ASCII HOSTNAME",
            line("134", "1", TS, "wéb-01", "ssh", "x", SD),
            "bad_header_field",
        ),
        (
            "empty HOSTNAME (two spaces)",
            format!("<134>1 {TS}  ssh - x {SD}").into_bytes(),
            "bad_header_field",
        ),
        (
            "SD value unquoted",
            with_sd("[relay@55555 src_ip=203.0.113.9]"),
            "bad_structured_data",
        ),
        ("SD empty element", with_sd("[]"), "bad_structured_data"),
        ("SD is free text", with_sd("hello"), "bad_structured_data"),
        (
            "SD duplicate SD-ID",
            with_sd(r#"[relay@55555 a="1"][relay@55555 b="2"]"#),
            "bad_structured_data",
        ),
        (
            "SD PARAM-NAME 33 chars",
            with_sd(&format!(r#"[relay@55555 {}="1"]"#, long(33))),
            "bad_structured_data",
        ),
        (
            "SD-ID with a quote",
            with_sd(r#"[rel"ay@55555 a="1"]"#),
            "bad_structured_data",
        ),
        (
            "SD without ]",
            with_sd(r#"[relay@55555 src_ip="203.0.113.9""#),
            "unterminated_structured_data",
        ),
        (
            "SD value without closing quote",
            with_sd(r#"[relay@55555 src_ip="203.0.113.9]"#),
            "unterminated_structured_data",
        ),
        (
            "SD value ending in an escaped quote",
            with_sd(r#"[relay@55555 a="x\"]"#),
            "unterminated_structured_data",
        ),
        (
            "huge SD (> --max-message)",
            with_sd(&format!(
                r#"[relay@55555 blob="{}"]"#,
                long(MAX_MESSAGE + 500)
            )),
            "too_long",
        ),
        (
            "one byte over --max-message",
            {
                let mut l = head.clone().into_bytes();
                l.extend_from_slice(format!("{SD} ").as_bytes());
                l.resize(MAX_MESSAGE + 1, b'z');
                l
            },
            "too_long",
        ),
        (
            "NUL in MSG",
            bytes_line(&format!("{head}{SD} a"), b"\0", "b"),
            "nul_byte",
        ),
        (
            "NUL in SD value",
            bytes_line(&format!("{head}[relay@55555 a=\"x"), b"\0", "y\"]"),
            "nul_byte",
        ),
        (
            "invalid UTF-8 in SD value",
            bytes_line(&format!("{head}[relay@55555 a=\"x"), b"\xff\xfe", "\"]"),
            "invalid_utf8",
        ),
        (
            "overlong UTF-8 in SD value",
            bytes_line(&format!("{head}[relay@55555 a=\"x"), b"\xc0\xaf", "\"]"),
            "invalid_utf8",
        ),
        (
            "UTF-16 surrogate in SD value",
            bytes_line(&format!("{head}[relay@55555 a=\"x"), b"\xed\xa0\x80", "\"]"),
            "invalid_utf8",
        ),
        (
            "BOM then invalid UTF-8 MSG",
            bytes_line(&format!("{head}{SD} {BOM}ok"), b"\xff", "!"),
            "invalid_utf8",
        ),
    ]
}

/// Valid but unusual lines (RFC 5424 accepts every one): they must land. Each carries `marker`.
fn unusual_valid(marker: &str) -> Vec<(&'static str, Vec<u8>)> {
    let max_header = format!(
        "<191>1 2026-05-02T06:00:25.000001-23:59 {} {} {} {} -",
        "h".repeat(255),
        "a".repeat(48),
        "p".repeat(128),
        "m".repeat(32)
    );
    let mut exactly_max = format!("{max_header} {marker}-max ").into_bytes();
    exactly_max.resize(MAX_MESSAGE, b'z');
    vec![
        (
            "NILVALUE everything, PRI 0",
            format!("<0>1 - - - - - - {marker}-nil").into_bytes(),
        ),
        (
            "NILVALUE timestamp",
            format!(r#"<134>1 - web-01 ssh - auth_attempt [relay@55555 src_ip="203.0.113.9"] {marker}-nilts"#)
                .into_bytes(),
        ),
        ("longest header fields, PRI 191, exactly --max-message bytes", exactly_max),
        (
            "MSG-ANY that is not UTF-8 (no BOM)",
            bytes_line(&format!("<134>1 {TS} web-01 ssh - x {SD} {marker}-latin1 caf"), b"\xe9", ""),
        ),
        (
            "backslash before an ordinary character in an SD value",
            format!(r#"<134>1 {TS} web-01 ssh - x [relay@55555 path="C:\temp\x"] {marker}-bs"#).into_bytes(),
        ),
    ]
}

/// Real-world deviations from RFC 5424 that the collector tolerates — stored, and counted under
/// `deviations` in the summary so that nothing is accepted silently — with the deviation name.
fn tolerated(marker: &str) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "7 fraction digits (rsyslog high precision)",
            format!(r#"<134>1 2026-05-02T06:00:25.1234567Z web-01 ssh - x {SD} {marker}-frac"#)
                .into_bytes(),
            "long_fraction",
        ),
        (
            "lower-case t and z",
            format!(r#"<134>1 2026-05-02t06:00:25z web-01 ssh - x {SD} {marker}-lower"#)
                .into_bytes(),
            "lowercase_t_z",
        ),
        (
            "no space between STRUCTURED-DATA and MSG",
            format!(
                r#"<134>1 {TS} web-01 ssh - x [relay@55555 src_ip="203.0.113.9"]{marker}-nospace"#
            )
            .into_bytes(),
            "no_space_before_msg",
        ),
    ]
}

/// Where a corpus goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    TcpLf,
    TcpCounted,
    Udp,
}

/// Sends `msgs` over `t` (one connection, or one UDP socket).
fn send_over(c: &Collector, t: Transport, msgs: &[Vec<u8>]) {
    match t {
        Transport::TcpLf => ok(collector::send_tcp(c.tcp_addr(), msgs, Framing::Lf)),
        Transport::TcpCounted => ok(collector::send_tcp(
            c.tcp_addr(),
            msgs,
            Framing::OctetCounting,
        )),
        Transport::Udp => ok(collector::send_udp(c.udp_addr(), msgs)),
    }
}

/// Whether a case can travel over `t`: LF framing cannot carry an empty line's framing
/// unambiguously only when it is the first byte (it is never first here), nor a line with an
/// LF; octet counting carries anything; UDP carries anything up to 65,507 bytes.
fn corpus_for(t: Transport) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    malformed_corpus()
        .into_iter()
        .filter(|(_, l, _)| !(t == Transport::TcpLf && l.contains(&b'\n')))
        // Octet counting frames a zero-length message as `0 `, which RFC 6587's MSG-LEN
        // (NONZERO-DIGIT *DIGIT) forbids: a framing error, not a message.
        .filter(|(_, l, _)| !(t == Transport::TcpCounted && l.is_empty()))
        .collect()
}

/// The stream of one transport: good line, bad line, good line, …, unusual valid lines, then the
/// end marker. Returns (messages, expected rejections, valid markers).
fn build_stream(t: Transport) -> (Vec<Vec<u8>>, BTreeMap<String, u64>, Vec<String>) {
    let tag = format!("{t:?}").to_lowercase();
    let mut msgs = vec![good(&tag, 0)];
    let mut markers = vec![format!("valid-{tag}-0")];
    let mut rejected = BTreeMap::new();
    for (i, (_, bad, reason)) in corpus_for(t).into_iter().enumerate() {
        msgs.push(bad);
        *rejected.entry(reason.to_string()).or_insert(0) += 1;
        msgs.push(good(&tag, i + 1));
        markers.push(format!("valid-{tag}-{}", i + 1));
    }
    let marker = format!("odd-{tag}");
    for (name, l) in unusual_valid(&marker) {
        msgs.push(l);
        markers.push(match name {
            n if n.starts_with("NILVALUE everything") => format!("{marker}-nil"),
            n if n.starts_with("NILVALUE timestamp") => format!("{marker}-nilts"),
            n if n.starts_with("longest") => format!("{marker}-max"),
            n if n.starts_with("MSG-ANY") => format!("{marker}-latin1"),
            _ => format!("{marker}-bs"),
        });
    }
    for (_, l, _) in tolerated(&marker) {
        msgs.push(l);
    }
    markers.extend(["frac", "lower", "nospace"].map(|m| format!("{marker}-{m}")));
    msgs.push(
        format!(r#"<134>1 {TS} web-01 ssh - end [relay@55555 src_ip="203.0.113.9"] end-{tag}"#)
            .into_bytes(),
    );
    markers.push(format!("end-{tag}"));
    (msgs, rejected, markers)
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

/// One malformed case alone in a fresh collector: the non-zero rejection counters it caused.
fn diagnose_case(t: Transport, bad: &[u8]) -> String {
    let mut c = start(CollectorOptions {
        max_message: Some(MAX_MESSAGE),
        ..Default::default()
    });
    let end =
        format!(r#"<134>1 {TS} web-01 ssh - end [relay@55555 src_ip="203.0.113.9"] diag-end"#)
            .into_bytes();
    let first = good("diag", 0);
    send_over(&c, t, &[first, bad.to_vec(), end]);
    if let Err(e) = c.wait_marker("diag-end", Duration::from_secs(10)) {
        return format!("(the end marker never landed: {e:#})");
    }
    match c.stop() {
        Ok(out) => format!(
            "rejected {:?}, parsed {} of 3 sent",
            out.summary.rejected_nonzero(),
            out.summary.parsed
        ),
        Err(e) => format!("(stop failed: {e:#})"),
    }
}

#[test]
fn malformed_corpus_is_rejected_by_reason_and_valid_lines_land() {
    let mut c = start(CollectorOptions {
        max_message: Some(MAX_MESSAGE),
        ..Default::default()
    });
    let transports = [Transport::TcpLf, Transport::TcpCounted, Transport::Udp];
    let mut expected_rejected = BTreeMap::new();
    let mut markers = Vec::new();
    let mut sent = 0u64;
    for t in transports {
        let (msgs, rejected, m) = build_stream(t);
        sent += msgs.len() as u64;
        add_counts(&mut expected_rejected, &rejected);
        markers.extend(m);
        send_over(&c, t, &msgs);
        let end = format!("end-{}", format!("{t:?}").to_lowercase());
        ok(c.wait_marker(&end, WAIT));
    }
    let still_running = c.is_running();
    let out = stop(&mut c);
    let events = ok(c.events());
    let s = &out.summary;

    let mut p = Problems::default();
    p.check(still_running, || {
        "the collector was no longer running after the corpus".into()
    });
    let mut missing = Vec::new();
    for m in &markers {
        let mb = m.as_bytes();
        if !events
            .iter()
            .any(|e| e.raw.windows(mb.len()).any(|w| w == mb))
        {
            missing.push(m.clone());
        }
    }
    let odd_ts: Vec<&str> = events
        .iter()
        .filter(|e| !is_canonical_ts(&e.ts))
        .map(|e| e.ts.as_str())
        .collect();
    p.check(odd_ts.is_empty(), || {
        format!("ts not in the canonical form (UTC, 9 fraction digits, Z): {odd_ts:?}")
    });
    p.check(missing.is_empty(), || {
        format!("valid lines that did not land: {missing:?}")
    });
    let expected_rejected_total: u64 = expected_rejected.values().sum();
    p.eq(
        "rejected by reason",
        s.rejected_nonzero(),
        expected_rejected.clone(),
    );
    p.eq("received", s.received, sent);
    p.eq("parsed", s.parsed, sent - expected_rejected_total);
    p.eq(
        "received == parsed + rejected",
        s.received,
        s.parsed + s.rejected_total(),
    );
    p.eq("stored", s.stored, markers.len() as u64);
    // Tolerated deviations are counted, once per transport each (the MSG-ANY line of
    // unusual_valid counts as non_utf8_msg: RFC-valid, but flagged too).
    let mut want_dev: BTreeMap<String, u64> = tolerated("x")
        .iter()
        .map(|(_, _, d)| (d.to_string(), transports.len() as u64))
        .collect();
    want_dev.insert("non_utf8_msg".into(), transports.len() as u64);
    let got_dev: BTreeMap<String, u64> = s
        .deviations
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    p.eq("deviations", got_dev, want_dev);
    p.eq("duplicates", s.duplicates, 0);
    p.eq("events rows", events.len() as u64, markers.len() as u64);

    if !p.0.is_empty() {
        // Attribute the difference: each case alone, in a fresh collector.
        let mut lines =
            vec!["per-case diagnosis (each case alone in a fresh collector):".to_string()];
        for t in transports {
            for (name, bad, reason) in corpus_for(t) {
                let got = diagnose_case(t, &bad);
                if !got.contains(&format!("{{\"{reason}\": 1}}")) {
                    lines.push(format!("  {t:?} {name:?}: expected {reason}, got {got}"));
                }
            }
            for (name, valid) in unusual_valid("diag") {
                let got = diagnose_case(t, &valid);
                if !got.contains("rejected {}") {
                    lines.push(format!("  {t:?} {name:?}: expected to land, got {got}"));
                }
            }
        }
        p.0.push(lines.join("\n"));
    }
    p.assert_none(&format!(
        "summary: {}\nlogs (tail):\n{}",
        out.summary_json.trim(),
        tail(&out.logs, 30)
    ));
}

// ---------------------------------------------------------------------------------------------
// UDP at overload

#[test]
fn udp_overload_every_datagram_is_accounted_for() {
    const SENT: usize = 200_000;
    let mut c = start(CollectorOptions {
        tcp: 0,
        queue: Some(16),
        ..Default::default()
    });
    let addr: SocketAddr = c.udp_addr();
    let port = addr.port();
    let datagrams: Vec<Vec<u8>> = (0..SENT)
        .map(|i| {
            format!(
                r#"<134>1 2026-05-02T06:{:02}:{:02}.{:06}Z web-{:02} ssh - command [relay@55555 src_ip="10.{}.{}.{}" src_port="{}" cmd="uname -a; cat /proc/cpuinfo" seq="{i}"] blast {i}"#,
                (i / 60_000_000) % 60,
                (i / 1_000_000) % 60,
                i % 1_000_000,
                i % 10,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                1024 + i % 60000,
            )
            .into_bytes()
        })
        .collect();
    let drops_of = |port| -> u64 {
        ok(collector::proc_sockets("udp", port))
            .iter()
            .map(|s| s.drops)
            .sum()
    };
    let kernel_before = drops_of(port);
    let snmp_before = ok(collector::udp_snmp());
    let sock = ok(std::net::UdpSocket::bind("127.0.0.1:0").map_err(anyhow::Error::from));
    let t0 = Instant::now();
    // Loopback sends do not fail for a full receiver: the kernel drops and counts instead.
    let (running, stopped) = datagrams.split_at(SENT / 2);
    // First half at full speed into a running collector: its reader keeps up with one sender,
    // so the tiny queue overflows and the collector drops (dropped_udp).
    for d in running {
        sock.send_to(d, addr).expect("send_to 127.0.0.1");
    }
    // Second half while it is stopped (SIGSTOP): its socket buffer fills and the kernel drops
    // the rest (udp_kernel_drops), which the collector must still account for.
    ok(c.signal(libc::SIGSTOP));
    let sent_stopped = stopped
        .iter()
        .map(|d| sock.send_to(d, addr).map(|_| ()))
        .collect::<std::io::Result<Vec<()>>>();
    ok(c.signal(libc::SIGCONT));
    sent_stopped.expect("send_to 127.0.0.1");
    let send_secs = t0.elapsed().as_secs_f64();
    // Let the collector drain its socket (rx_queue 0) before reading the kernel's counter.
    let deadline = Instant::now() + WAIT;
    while ok(collector::proc_sockets("udp", port))
        .iter()
        .any(|s| s.rx_queue > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let kernel_drops = drops_of(port) - kernel_before;
    let snmp_after = ok(collector::udp_snmp());
    // And let the writer drain its queue (the row count stops growing), so the next datagram
    // finds room.
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        let now = ok(c.count_events());
        if now == last {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(300));
    }
    // Still alive, and still taking datagrams after the storm.
    ok(collector::send_udp(
        addr,
        &[br#"<134>1 2026-05-02T07:00:00Z web-01 ssh - after [relay@55555 src_ip="10.0.0.1"] after-storm"#],
    ));
    ok(c.wait_marker("after-storm", WAIT));
    let out = stop(&mut c);
    let s = &out.summary;
    let stored_rows = ok(c.count_events());
    let sent = SENT as u64 + 1;

    let report = format!(
        "sent {sent} datagrams in {send_secs:.2} s; collector: received {} parsed {} rejected {} \
         dropped_udp {} stored {} duplicates {} udp_kernel_drops {:?} queue_depth_max {}; kernel \
         (/proc/net/udp drops of the collector's socket): {kernel_drops}; machine-wide \
         /proc/net/snmp deltas: InErrors {} RcvbufErrors {}; DB rows {stored_rows}",
        s.received,
        s.parsed,
        s.rejected_total(),
        s.dropped_udp,
        s.stored,
        s.duplicates,
        s.udp_kernel_drops,
        s.queue_depth_max,
        snmp_after.1 - snmp_before.1,
        snmp_after.2 - snmp_before.2,
    );
    eprintln!("{report}");
    let mut p = Problems::default();
    // The kernel's count is the collector's: it observes the drops (SO_RXQ_OVFL) itself.
    p.eq(
        "summary udp_kernel_drops vs /proc/net/udp drops",
        s.udp_kernel_drops,
        Some(kernel_drops),
    );
    p.eq(
        "sent == received + kernel drops",
        sent,
        s.received + kernel_drops,
    );
    p.eq(
        "received == parsed + rejected",
        s.received,
        s.parsed + s.rejected_total(),
    );
    p.eq("rejected", s.rejected_total(), 0);
    p.eq(
        "parsed == stored + duplicates + dropped_udp",
        s.parsed,
        s.stored + s.duplicates + s.dropped_udp,
    );
    p.eq("duplicates (every datagram is distinct)", s.duplicates, 0);
    p.eq(
        "sent == stored + dropped_udp + rejected + kernel drops",
        sent,
        s.stored + s.dropped_udp + s.rejected_total() + kernel_drops,
    );
    p.eq("DB rows == stored", stored_rows, s.stored);
    p.check(s.dropped_udp > 0, || {
        "the collector dropped nothing: its queue (16) never overflowed".into()
    });
    p.check(kernel_drops > 0, || {
        "the kernel dropped nothing while the collector was stopped".into()
    });
    p.assert_none(&format!(
        "{report}\nsummary: {}\nlogs (tail):\n{}",
        out.summary_json.trim(),
        tail(&out.logs, 30)
    ));
}
