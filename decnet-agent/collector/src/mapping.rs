//! One decoy-service log line → one [`NewEvent`] (and, for a login attempt, one
//! [`CredentialAttempt`]).
//!
//! The decoy services write RFC 5424 with one structured-data element (SD-ID `relay@…`; the
//! contract is [`decnet_core::event`]):
//! HOSTNAME is the decky, APP-NAME the service, MSGID the event type, and the element's params
//! are the event's fields (stored as a JSON object; a non-empty MSG is kept under `msg` unless a
//! param has that name). The attacker is `src_ip` (else `src`, `remote_ip`, `client_ip`, `ip`,
//! `peer_ip`: the first that parses as an address), its port `src_port` (else `sport`,
//! `remote_port`). A login attempt's credential is read with [`event::auth_fields`]. The event time is the TIMESTAMP, or the receive time when it is NILVALUE.
//! `raw` is the line as received, so its SHA-256 (the default dedup key) makes re-sending the
//! same line idempotent.
//!
//! A line whose MSG is itself a complete RFC 5424 line (relayed through another syslog hop) is
//! unwrapped: the inner line's header and fields are used, `raw` stays the received line.
//!
//! Every value is attacker-controlled: nothing here allocates more than a bounded multiple of
//! the line, and the repository bounds every stored text.
use std::net::IpAddr;

use decnet_core::{
    event,
    model::{CredentialAttempt, NewEvent},
    repo::limits,
    rfc5424::{self, Message, Reject},
};

pub use decnet_core::event::key::{IP_KEYS, PORT_KEYS};
/// The NILVALUE, for a missing HOSTNAME / APP-NAME / MSGID.
const NIL: &str = "-";

/// A mapped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub event: NewEvent,
    pub credential: Option<CredentialAttempt>,
    /// Relay hops removed (0: the line was not wrapped).
    pub unwrapped: usize,
    /// The parser's tolerated-deviation bits (`rfc5424::deviation`) of the received line.
    pub deviations: u8,
}

/// Parses `line` (at most `max_len` bytes) and maps it; `recv_ns` stands in for a NILVALUE
/// timestamp.
pub fn map_line(line: &[u8], max_len: usize, recv_ns: i64) -> Result<Mapped, Reject> {
    let msg = rfc5424::parse(line, max_len)?;
    let mut m = map_message(&msg, line, max_len, recv_ns, 0);
    m.deviations = msg.deviations;
    Ok(m)
}

fn map_message(
    msg: &Message<'_>,
    raw: &[u8],
    max_len: usize,
    recv_ns: i64,
    depth: usize,
) -> Mapped {
    let ts_ns = msg.timestamp_ns.unwrap_or(recv_ns);
    if depth < event::MAX_UNWRAP
        && let Some(inner_text) = msg.msg.as_deref()
        && event::looks_wrapped(inner_text)
        && let Ok(inner) = rfc5424::parse(inner_text.as_bytes(), max_len)
    {
        let mut m = map_message(&inner, raw, max_len, ts_ns, depth + 1);
        m.unwrapped += 1;
        return m;
    }

    let element = event::decoy_element(&msg.sd);
    let params: &[(&str, std::borrow::Cow<'_, str>)] = element.map_or(&[], |e| e.params.as_slice());
    let param = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_ref())
    };

    let attacker_ip = IP_KEYS
        .iter()
        .filter_map(|k| param(k))
        .find_map(|v| v.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical());
    let attacker_port = PORT_KEYS
        .iter()
        .filter_map(|k| param(k))
        .find_map(|v| v.trim().parse::<u16>().ok());

    let decky = msg.hostname.unwrap_or(NIL).to_owned();
    let service = msg.app_name.unwrap_or(NIL).to_owned();
    // The fields are not stored: the repository derives them from the raw line when they are
    // read (`event::line_fields`, the same mapping). Only a line the repository would cut is
    // given its fields here.
    let fields = if raw.len() > limits::LONG {
        let free_text = msg.msg.as_deref().filter(|m| !m.trim().is_empty());
        event::fields_json(params, free_text)
    } else {
        String::new()
    };

    let credential = attacker_ip.and_then(|ip| {
        let auth = event::auth_fields(param)?;
        Some(CredentialAttempt {
            attacker_ip: ip,
            decky: decky.clone(),
            service: service.clone(),
            principal: auth.principal.as_bytes().to_vec(),
            secret_kind: auth.secret_kind.to_owned(),
            secret: auth.secret,
            attempts: 1,
            first_seen_ns: ts_ns,
            last_seen_ns: ts_ns,
        })
    });

    Mapped {
        event: NewEvent {
            ts_ns,
            decky,
            service,
            event_type: msg.msgid.unwrap_or(NIL).to_owned(),
            attacker_ip,
            attacker_port,
            fields,
            raw: raw.to_vec(),
            dedup_key: None,
        },
        credential,
        unwrapped: 0,
        deviations: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decnet_core::time_fmt::parse_ts;
    use serde_json::Value;

    const RECV: i64 = 1_000_000_000;

    /// The mapped line, its fields as the repository reads them back (derived from the raw
    /// line).
    fn map(line: &str) -> Mapped {
        let mut m = map_line(line.as_bytes(), rfc5424::MAX_MESSAGE, RECV).expect("line parses");
        assert_eq!(m.event.fields, "", "fields are left to the repository");
        m.event.fields = event::line_fields(&m.event.raw);
        m
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).expect("fields are JSON")
    }

    #[test]
    fn upstream_disconnect_line() {
        let line = r#"<134>1 2026-05-02T06:00:25.453826+00:00 omega-decky smtp - disconnect [relay@55555 src_ip="192.168.1.5"]"#;
        let m = map(line);
        assert_eq!(
            m.event,
            NewEvent {
                ts_ns: parse_ts("2026-05-02T06:00:25.453826Z").unwrap(),
                decky: "omega-decky".into(),
                service: "smtp".into(),
                event_type: "disconnect".into(),
                attacker_ip: Some("192.168.1.5".parse().unwrap()),
                attacker_port: None,
                fields: r#"{"src_ip":"192.168.1.5"}"#.into(),
                raw: line.as_bytes().to_vec(),
                dedup_key: None,
            }
        );
        assert_eq!(m.credential, None);
        assert_eq!(m.unwrapped, 0);
    }

    #[test]
    fn upstream_auth_attempt_line() {
        let line = r#"<134>1 2026-05-02T06:00:26.000001Z web-01 ssh - auth_attempt [relay@55555 principal="root" secret_printable="123456" secret_b64="MTIzNDU2" secret_kind="password" src_ip="203.0.113.9" src_port="51234"]"#;
        let m = map(line);
        let ts = parse_ts("2026-05-02T06:00:26.000001Z").unwrap();
        assert_eq!(m.event.ts_ns, ts);
        assert_eq!(
            (
                m.event.decky.as_str(),
                m.event.service.as_str(),
                m.event.event_type.as_str()
            ),
            ("web-01", "ssh", "auth_attempt")
        );
        assert_eq!(m.event.attacker_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(m.event.attacker_port, Some(51234));
        assert_eq!(
            json(&m.event.fields),
            serde_json::json!({
                "principal": "root", "secret_printable": "123456", "secret_b64": "MTIzNDU2",
                "secret_kind": "password", "src_ip": "203.0.113.9", "src_port": "51234"
            })
        );
        assert_eq!(
            m.credential,
            Some(CredentialAttempt {
                attacker_ip: "203.0.113.9".parse().unwrap(),
                decky: "web-01".into(),
                service: "ssh".into(),
                principal: b"root".to_vec(),
                secret_kind: "password".into(),
                secret: b"123456".to_vec(),
                attempts: 1,
                first_seen_ns: ts,
                last_seen_ns: ts,
            })
        );
    }

    #[test]
    fn secrets_come_from_base64_first_and_bytes_survive() {
        // "p\xffw" is not UTF-8: only the base64 form carries it exactly.
        let m = map(
            r#"<134>1 - d ssh - auth [relay@1 principal="a" secret_b64="cP93" secret_printable="p?w" secret_kind="public_key" src_ip="10.0.0.1"]"#,
        );
        let c = m.credential.unwrap();
        assert_eq!(c.secret, b"p\xffw");
        assert_eq!(c.secret_kind, "public_key");
        // Broken base64 falls back to the printable form; unpadded base64 decodes.
        let m = map(
            r#"<134>1 - d ssh - auth [relay@1 principal="a" secret_b64="!!" secret_printable="pw" src_ip="10.0.0.1"]"#,
        );
        assert_eq!(m.credential.unwrap().secret, b"pw");
        let m = map(
            r#"<134>1 - d ssh - auth [relay@1 principal="a" secret_b64="cHc" src_ip="10.0.0.1"]"#,
        );
        assert_eq!(m.credential.unwrap().secret, b"pw");
        // No attacker address, or no secret: no credential (the event is still stored).
        let m = map(r#"<134>1 - d ssh - auth [relay@1 principal="a" secret_printable="pw"]"#);
        assert!(m.credential.is_none());
        let m = map(r#"<134>1 - d ssh - auth [relay@1 principal="a" src_ip="10.0.0.1"]"#);
        assert!(m.credential.is_none());
    }

    #[test]
    fn attacker_address_fallbacks() {
        let m = map(
            r#"<134>1 - d http - req [relay@1 src_ip="not-an-ip" remote_ip="::ffff:198.51.100.7" sport="80"]"#,
        );
        assert_eq!(m.event.attacker_ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(m.event.attacker_port, Some(80));
        assert_eq!(json(&m.event.fields)["src_ip"], "not-an-ip");
        let m = map(r#"<134>1 - d http - req [relay@1 peer_ip="2001:db8::1" src_port="99999"]"#);
        assert_eq!(m.event.attacker_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(m.event.attacker_port, None);
        let m = map(r#"<134>1 - d http - req [relay@1 ip="bogus"]"#);
        assert_eq!(m.event.attacker_ip, None);
    }

    #[test]
    fn nil_values_and_element_choice() {
        let m = map(
            r#"<134>1 - - - - - [meta@1 x="1"][relay@55555 src="10.9.8.7" a="1" a="2"] free text"#,
        );
        assert_eq!(m.event.ts_ns, RECV);
        assert_eq!(
            (
                m.event.decky.as_str(),
                m.event.service.as_str(),
                m.event.event_type.as_str()
            ),
            ("-", "-", "-")
        );
        assert_eq!(m.event.attacker_ip, Some("10.9.8.7".parse().unwrap()));
        assert_eq!(
            json(&m.event.fields),
            serde_json::json!({"src": "10.9.8.7", "a": "1", "msg": "free text"})
        );
        // Without a relay@ element, the first element is the decoy's.
        let m = map(r#"<134>1 - h s - t [first@1 ip="10.0.0.2"][second@1 ip="10.0.0.3"]"#);
        assert_eq!(m.event.attacker_ip, Some("10.0.0.2".parse().unwrap()));
        // No element at all.
        let m = map("<134>1 - h s - t -");
        assert_eq!(m.event.fields, "{}");
    }

    #[test]
    fn double_wrapped_lines_are_unwrapped() {
        let inner = r#"<134>1 2026-05-02T06:00:27Z web-01 bash - CMD [relay@55555 src_ip="203.0.113.9" cmd="cat /etc/passwd"]"#;
        let outer = format!("<13>1 2026-05-02T06:00:28Z relay-host rsyslogd - - - {inner}");
        let m = map(&outer);
        assert_eq!(m.unwrapped, 1);
        assert_eq!(m.event.decky, "web-01");
        assert_eq!(m.event.service, "bash");
        assert_eq!(m.event.event_type, "CMD");
        assert_eq!(m.event.ts_ns, parse_ts("2026-05-02T06:00:27Z").unwrap());
        assert_eq!(
            json(&m.event.fields),
            serde_json::json!({"src_ip": "203.0.113.9", "cmd": "cat /etc/passwd"})
        );
        assert_eq!(m.event.raw, outer.as_bytes());
        // Wrapped twice; the innermost line has no timestamp: the relay's is used.
        let inner = r#"<134>1 - web-01 bash - CMD [relay@55555 src_ip="203.0.113.9"]"#;
        let twice = format!(
            "<13>1 2026-05-02T06:00:29Z hop2 rsyslogd - - - <13>1 - hop1 rsyslogd - - - {inner}"
        );
        let m = map(&twice);
        assert_eq!(m.unwrapped, 2);
        assert_eq!(m.event.decky, "web-01");
        assert_eq!(m.event.ts_ns, parse_ts("2026-05-02T06:00:29Z").unwrap());
        // A MSG that only looks like a line stays the outer event's text.
        let m = map("<13>1 - h s - - - <b>bold</b> text");
        assert_eq!(m.unwrapped, 0);
        assert_eq!(json(&m.event.fields)["msg"], "<b>bold</b> text");
    }

    #[test]
    fn fields_stay_valid_json_when_values_are_huge() {
        // Control characters expand 6× when JSON-escaped.
        let v = "\u{1}".repeat(20_000);
        let line = format!(r#"<134>1 - h s - t [relay@1 a="{v}" b="{v}" src_ip="10.0.0.1"]"#);
        let m = map(&line);
        assert!(m.event.fields.len() <= limits::LONG);
        let f = json(&m.event.fields);
        assert_eq!(f["src_ip"], "10.0.0.1");
        assert!(f["a"].as_str().unwrap().ends_with(limits::CUT));
    }

    #[test]
    fn a_line_the_repository_would_cut_carries_its_fields() {
        let v = "x".repeat(limits::LONG);
        let line = format!(r#"<134>1 - h s - t [relay@1 src_ip="10.0.0.1"] {v}"#);
        let m = map_line(line.as_bytes(), rfc5424::MAX_MESSAGE * 2, RECV).expect("parses");
        assert!(m.event.raw.len() > limits::LONG);
        assert_eq!(json(&m.event.fields)["src_ip"], "10.0.0.1");
    }

    #[test]
    fn rejects_are_the_parsers() {
        assert!(map_line(b"", 100, RECV).is_err());
        assert!(map_line(b"not syslog", 100, RECV).is_err());
        assert_eq!(
            map_line(&[b'x'; 200], 100, RECV).err(),
            Some(Reject::TooLong)
        );
    }
}
