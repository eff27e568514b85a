//! The decoy-event contract: what a decoy service puts on the wire and what the collector, the
//! correlator and the profiler read back. One place for the SD-IDs, the field keys, the event
//! kinds (MSGIDs), the secret encoding and the secret hash.
//!
//! A decoy event is one RFC 5424 line ([`render_decoy_line`]):
//!
//! ```text
//! <134>1 2026-05-02T06:00:26.000001Z web-01 ssh - auth_attempt [relay@55555 principal="root" secret_printable="123456" secret_b64="MTIzNDU2" secret_kind="password" src_ip="203.0.113.9" src_port="51234"]
//! ```
//!
//! - Input of [`render_decoy_line`]: decky (HOSTNAME), service (APP-NAME), event type (MSGID,
//!   an [`EventKind`] name), the attacker's address and the fields in order. Output: the line,
//!   every value bounded ([`value_cap`]) and escaped ([`rfc5424::render::Style::DECOY`]).
//! - A login attempt's secret travels twice ([`encode_secret`]): `secret_b64` (base64 of the
//!   exact bytes) and `secret_printable` (lossy UTF-8, for people). [`decode_secret`] reads it
//!   back from fields (base64 first, padded or not; else the printable bytes), [`secret_hash`]
//!   is the one SHA-256 every consumer keys secrets by.
//! - The collector takes the first element whose SD-ID starts with [`DECOY_SD_PREFIX`];
//!   decnet's own log lines carry [`SELF_SD_ID`] instead.
//!
//! Everything read here is attacker-controlled: parsing never panics, unknown event types stay
//! representable ([`EventKind::Other`]) and decoded secrets are bounded ([`MAX_SECRET`]).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use base64::{
    Engine as _,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::repo::limits;
use crate::rfc5424::{
    self, Message, SdElement,
    render::{Header, Style, Writer},
};

/// The SD-ID of the element carrying a decoy event's fields.
pub const DECOY_SD_ID: &str = "relay@55555";
/// What the collector accepts as a decoy element's SD-ID: any `relay@<PEN>`.
pub const DECOY_SD_PREFIX: &str = "relay@";
/// The SD-ID of decnet's own log lines (32473 is the documentation example PEN).
pub const SELF_SD_ID: &str = "decnet@32473";
/// `<134>`: facility local0 (16), severity informational (6).
pub const DECOY_PRI: u8 = 134;
/// Bytes kept of one ordinary value (principal, secret, path, user agent, command…).
pub const MAX_VALUE: usize = limits::SHORT_TEXT;
/// Bytes kept of a bulky value ([`key::LONG_KEYS`]: headers, bodies…).
pub const MAX_LONG_VALUE: usize = 8192;
/// Bytes of a decoded secret at most (and of the base64 text decoded); far above what a line
/// can carry, so it only ever bounds hostile input.
pub const MAX_SECRET: usize = limits::LONG;
/// A login attempt's `secret_kind` when it has none.
pub const DEFAULT_SECRET_KIND: &str = "password";

/// The field keys (SD PARAM-NAMEs; the keys of an event's stored `fields` JSON).
pub mod key {
    /// The attacker's address and port (the decoys add them to every event).
    pub const SRC_IP: &str = "src_ip";
    pub const SRC_PORT: &str = "src_port";
    /// A login attempt: who, the secret's two forms, and what kind of secret.
    pub const PRINCIPAL: &str = "principal";
    pub const SECRET_B64: &str = "secret_b64";
    pub const SECRET_PRINTABLE: &str = "secret_printable";
    pub const SECRET_KIND: &str = "secret_kind";
    /// The free text (MSG) of a line, stored among the fields.
    pub const MSG: &str = "msg";
    pub const CMD: &str = "cmd";
    pub const USER: &str = "user";
    pub const HEADERS: &str = "headers";
    pub const USER_AGENT: &str = "user_agent";
    pub const CLIENT_VERSION: &str = "client_version";

    /// Keys naming the attacker's address, in order of preference.
    pub const IP_KEYS: [&str; 6] = [SRC_IP, "src", "remote_ip", "client_ip", "ip", "peer_ip"];
    /// Keys naming the attacker's port, in order of preference.
    pub const PORT_KEYS: [&str; 3] = [SRC_PORT, "sport", "remote_port"];
    /// Bulky keys, bounded to [`super::MAX_LONG_VALUE`] instead of [`super::MAX_VALUE`].
    pub const LONG_KEYS: [&str; 4] = [HEADERS, "body", "data", "attrs"];
    /// The command of a command event, in order of preference.
    pub const COMMAND_KEYS: [&str; 4] = [CMD, "command", "input", "line"];
    /// A client's User-Agent, in order of preference (else one inside [`HEADERS`]).
    pub const USER_AGENT_KEYS: [&str; 4] = [USER_AGENT, "ua", "http_user_agent", "User-Agent"];
    /// An SSH client's identification string.
    pub const SSH_CLIENT_KEYS: [&str; 3] = [CLIENT_VERSION, "client_banner", "ssh_client"];
    /// Keys that hold an SSH identification when their value starts with `SSH-`.
    pub const SSH_BANNER_KEYS: [&str; 3] = ["banner", "client", "version"];
    /// The outcome of a login attempt (`accepted`, `rejected`, …).
    pub const OUTCOME_KEYS: [&str; 4] = ["result", "success", "outcome", "status"];
}

/// What an event records: its MSGID. The decoys emit the canonical names ([`EventKind::as_str`]);
/// [`EventKind::parse`] also takes the aliases other decoy implementations use, ASCII
/// case-insensitively and ignoring surrounding whitespace. Anything else is
/// [`EventKind::Other`], holding the type as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind<'a> {
    /// A new connection (`connect`; `connection`, `session_start`, `accept`, `new_connection`).
    Connect,
    /// The connection ended (`disconnect`; `close`, `closed`, `session_end`, `session_closed`,
    /// `logout`, `connection_closed`).
    Disconnect,
    /// A login attempt, outcome in the fields (`auth_attempt`; `login_attempt`, `auth`).
    AuthAttempt,
    /// A failed login attempt (`auth_failed`; `login_failed`).
    AuthFailed,
    /// A successful login attempt (`auth_success`; `login_success`).
    AuthSuccess,
    /// A successful login, without an attempt of its own (`login`).
    Login,
    /// A command typed (`command`; `cmd`, `exec`, `shell_command`, `input`).
    Command,
    /// An HTTP request (`request`; `http_request`).
    Request,
    /// A request the service could not read (`bad_request`).
    BadRequest,
    /// A client handshake the service could not read (`bad_handshake`).
    BadHandshake,
    /// A TLS handshake that failed (`tls_handshake_failed`).
    TlsHandshakeFailed,
    /// An SSH port-forwarding request (`tunnel_request`).
    TunnelRequest,
    /// A mail message received (`message`).
    Message,
    /// Any other type, as given.
    Other(&'a str),
}

/// Every known name (canonical first) and its kind.
const KIND_NAMES: [(&str, EventKind<'static>); 32] = [
    ("connect", EventKind::Connect),
    ("disconnect", EventKind::Disconnect),
    ("auth_attempt", EventKind::AuthAttempt),
    ("auth_failed", EventKind::AuthFailed),
    ("auth_success", EventKind::AuthSuccess),
    ("login", EventKind::Login),
    ("command", EventKind::Command),
    ("request", EventKind::Request),
    ("bad_request", EventKind::BadRequest),
    ("bad_handshake", EventKind::BadHandshake),
    ("tls_handshake_failed", EventKind::TlsHandshakeFailed),
    ("tunnel_request", EventKind::TunnelRequest),
    ("message", EventKind::Message),
    // Aliases.
    ("connection", EventKind::Connect),
    ("session_start", EventKind::Connect),
    ("accept", EventKind::Connect),
    ("new_connection", EventKind::Connect),
    ("close", EventKind::Disconnect),
    ("closed", EventKind::Disconnect),
    ("session_end", EventKind::Disconnect),
    ("session_closed", EventKind::Disconnect),
    ("logout", EventKind::Disconnect),
    ("connection_closed", EventKind::Disconnect),
    ("login_attempt", EventKind::AuthAttempt),
    ("auth", EventKind::AuthAttempt),
    ("login_failed", EventKind::AuthFailed),
    ("login_success", EventKind::AuthSuccess),
    ("cmd", EventKind::Command),
    ("exec", EventKind::Command),
    ("shell_command", EventKind::Command),
    ("input", EventKind::Command),
    ("http_request", EventKind::Request),
];

impl<'a> EventKind<'a> {
    /// The kind of event type `s` (never fails: unknown types are [`EventKind::Other`]).
    pub fn parse(s: &'a str) -> EventKind<'a> {
        let t = s.trim();
        KIND_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(t))
            .map_or(EventKind::Other(s), |&(_, kind)| kind)
    }

    /// The canonical MSGID (for [`EventKind::Other`], the type as given).
    pub fn as_str(&self) -> &'a str {
        match self {
            EventKind::Other(s) => s,
            known => KIND_NAMES
                .iter()
                .find(|(_, k)| k == known)
                .map_or("", |&(name, _)| name),
        }
    }
}

impl fmt::Display for EventKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes kept of the value of `key` on the wire.
pub fn value_cap(key: &str) -> usize {
    if key::LONG_KEYS.contains(&key) {
        MAX_LONG_VALUE
    } else {
        MAX_VALUE
    }
}

/// One decoy event line: `decky` (HOSTNAME), `service` (APP-NAME), `msgid` (MSGID), then one
/// [`DECOY_SD_ID`] element with `fields` in order and the attacker (`src_ip`, canonical, and
/// `src_port`) last. Each value is cut to [`value_cap`] (marked [`limits::CUT`]).
pub fn render_decoy_line(
    decky: &str,
    service: &str,
    msgid: &str,
    peer: SocketAddr,
    fields: &[(&str, &str)],
    now: OffsetDateTime,
) -> String {
    let mut w = Writer::new(
        Style::DECOY,
        &Header {
            pri: DECOY_PRI,
            timestamp: now,
            hostname: decky,
            app_name: service,
            procid: "",
            msgid,
        },
    );
    w.open(DECOY_SD_ID);
    let ip = peer.ip().to_canonical().to_string();
    let port = peer.port().to_string();
    for (k, v) in fields
        .iter()
        .copied()
        .chain([(key::SRC_IP, ip.as_str()), (key::SRC_PORT, port.as_str())])
    {
        w.param(k, &limits::text(v, value_cap(k)));
    }
    w.close();
    w.finish()
}

/// Whether an SD-ID names a decoy element.
pub fn is_decoy_sd_id(id: &str) -> bool {
    id.starts_with(DECOY_SD_PREFIX)
}

/// A secret's two wire forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSecret {
    /// `secret_printable`: lossy UTF-8 of the bytes.
    pub printable: String,
    /// `secret_b64`: standard base64, padded, of the exact bytes.
    pub b64: String,
}

/// The wire forms of `secret`, its first [`MAX_VALUE`] bytes.
pub fn encode_secret(secret: &[u8]) -> EncodedSecret {
    let secret = limits::bytes(secret, MAX_VALUE);
    EncodedSecret {
        printable: String::from_utf8_lossy(secret).into_owned(),
        b64: B64.encode(secret),
    }
}

/// Base64 as written by the decoys, read padded or not.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The secret of a login attempt from its fields (`field(key)` looks a key up): `secret_b64`
/// decoded if it is base64 (surrounding whitespace ignored, at most [`MAX_SECRET`] bytes of
/// text), else the bytes of `secret_printable` (the first [`MAX_SECRET`]); `None` if neither.
pub fn decode_secret<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<Vec<u8>> {
    field(key::SECRET_B64)
        .filter(|b| b.len() <= MAX_SECRET)
        .and_then(|b| B64.decode(b.trim().as_bytes()).ok())
        .or_else(|| {
            field(key::SECRET_PRINTABLE).map(|s| limits::bytes(s.as_bytes(), MAX_SECRET).to_vec())
        })
}

/// The credential fields of a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFields<'a> {
    pub principal: &'a str,
    /// [`decode_secret`].
    pub secret: Vec<u8>,
    /// `secret_kind`, [`DEFAULT_SECRET_KIND`] when missing or empty.
    pub secret_kind: &'a str,
}

/// The credential of an event's fields: `None` unless it has a `principal` and a secret.
pub fn auth_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Option<AuthFields<'a>> {
    let principal = field(key::PRINCIPAL)?;
    let secret = decode_secret(&field)?;
    let secret_kind = field(key::SECRET_KIND)
        .filter(|k| !k.is_empty())
        .unwrap_or(DEFAULT_SECRET_KIND);
    Some(AuthFields {
        principal,
        secret,
        secret_kind,
    })
}

/// The hash secrets are keyed by everywhere (credentials table, reuse, profiles): SHA-256 of the
/// secret's exact bytes.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Relay hops unwrapped at most (a line nested deeper is read as its innermost-but-N form).
pub const MAX_UNWRAP: usize = 4;

/// A MSG that starts like an RFC 5424 header (`<PRI>VERSION`): a line relayed through another
/// syslog hop, whose inner line carries the event.
pub fn looks_wrapped(m: &str) -> bool {
    let b = m.as_bytes();
    if b.first() != Some(&b'<') {
        return false;
    }
    let Some(close) = b.iter().take(5).position(|&c| c == b'>') else {
        return false;
    };
    close > 1 && b.get(close + 1).is_some_and(u8::is_ascii_digit)
}

/// The decoy's element: the first whose SD-ID starts with `relay@` ([`DECOY_SD_PREFIX`]), else
/// the first.
pub fn decoy_element<'m, 'a>(sd: &'m [SdElement<'a>]) -> Option<&'m SdElement<'a>> {
    sd.iter().find(|e| is_decoy_sd_id(e.id)).or(sd.first())
}

/// An event's fields as a JSON object: the decoy element's params (first occurrence of a name
/// wins) plus a non-empty MSG under `msg` (unless a param has that name). Kept within
/// [`limits::LONG`] by shortening values, so the text is always valid JSON.
pub fn fields_json(params: &[(&str, Cow<'_, str>)], msg: Option<&str>) -> String {
    let build = |cap: usize| {
        let mut map = serde_json::Map::new();
        for (k, v) in params {
            if !map.contains_key(*k) {
                map.insert(
                    (*k).to_owned(),
                    serde_json::Value::String(limits::text(v, cap).into_owned()),
                );
            }
        }
        if let Some(m) = msg
            && !map.contains_key(key::MSG)
        {
            map.insert(
                key::MSG.into(),
                serde_json::Value::String(limits::text(m, cap).into_owned()),
            );
        }
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    };
    let mut cap = limits::LONG;
    loop {
        let json = build(cap);
        if json.len() <= limits::LONG || cap <= 64 {
            return json;
        }
        cap /= 2;
    }
}

/// The fields of a parsed message, relayed lines unwrapped (up to [`MAX_UNWRAP`] hops): what
/// the collector maps a line to.
pub fn message_fields(msg: &Message<'_>) -> String {
    fn go(msg: &Message<'_>, depth: usize) -> String {
        if depth < MAX_UNWRAP
            && let Some(inner_text) = msg.msg.as_deref()
            && looks_wrapped(inner_text)
            && let Ok(inner) = rfc5424::parse(inner_text.as_bytes(), rfc5424::MAX_MESSAGE)
        {
            return go(&inner, depth + 1);
        }
        let params = decoy_element(&msg.sd).map_or(&[][..], |e| e.params.as_slice());
        let free_text = msg.msg.as_deref().filter(|m| !m.trim().is_empty());
        fields_json(params, free_text)
    }
    go(msg, 0)
}

/// The fields of a raw decoy line ([`message_fields`] of its parse; `{}` if it does not parse).
/// The repository stores collector events without their fields and derives them from the raw
/// line with this when they are read: the JSON is never stored twice.
pub fn line_fields(raw: &[u8]) -> String {
    match rfc5424::parse(raw, rfc5424::MAX_MESSAGE) {
        Ok(msg) => message_fields(&msg),
        Err(_) => "{}".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc5424;
    use std::collections::HashMap;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-05-02 06:00:26.000001 UTC)
    }

    fn lookup<'a>(m: &'a HashMap<&str, &'a str>) -> impl Fn(&str) -> Option<&'a str> {
        move |k| m.get(k).copied()
    }

    #[test]
    fn kinds_parse_and_print() {
        for (name, kind) in KIND_NAMES {
            assert_eq!(EventKind::parse(name), kind, "{name}");
            assert_eq!(EventKind::parse(kind.as_str()), kind);
        }
        assert_eq!(EventKind::parse(" Auth_Attempt\n"), EventKind::AuthAttempt);
        assert_eq!(EventKind::parse("login_success").as_str(), "auth_success");
        assert_eq!(EventKind::Connect.to_string(), "connect");
        // Unknown and hostile types stay as they are.
        for s in ["", " ", "made_up", "\0\u{fffd}", "connect\0"] {
            assert_eq!(EventKind::parse(s), EventKind::Other(s));
            assert_eq!(EventKind::parse(s).as_str(), s);
        }
        let huge = "x".repeat(1 << 20);
        assert_eq!(EventKind::parse(&huge), EventKind::Other(&huge));
    }

    #[test]
    fn render_parse_round_trip() {
        let secret = b"p\xff\"\0w]\\";
        let enc = encode_secret(secret);
        let fields = [
            (key::PRINCIPAL, "ro\"ot]"),
            (key::SECRET_PRINTABLE, enc.printable.as_str()),
            (key::SECRET_B64, enc.b64.as_str()),
            (key::SECRET_KIND, "password"),
        ];
        let line = render_decoy_line(
            "web-01",
            "ssh",
            EventKind::AuthAttempt.as_str(),
            "[::ffff:203.0.113.9]:51234".parse().expect("addr"),
            &fields,
            now(),
        );
        let m = rfc5424::parse(line.as_bytes(), rfc5424::MAX_MESSAGE).expect("parses");
        assert_eq!(m.deviations, 0, "{line}");
        assert_eq!(m.facility * 8 + m.severity, DECOY_PRI);
        assert_eq!(
            (m.hostname, m.app_name, m.procid, m.msgid),
            (Some("web-01"), Some("ssh"), None, Some("auth_attempt"))
        );
        assert_eq!(
            EventKind::parse(m.msgid.unwrap_or("")),
            EventKind::AuthAttempt
        );
        assert_eq!(m.sd.len(), 1);
        assert_eq!(m.sd[0].id, DECOY_SD_ID);
        assert!(is_decoy_sd_id(m.sd[0].id) && !is_decoy_sd_id(SELF_SD_ID));
        let p = &m.sd[0].params;
        let field = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_ref());
        let a = auth_fields(field).expect("credential");
        assert_eq!(a.principal, "ro\"ot]");
        assert_eq!(a.secret, secret);
        assert_eq!(a.secret_kind, "password");
        assert_eq!(field(key::SRC_IP), Some("203.0.113.9"));
        assert_eq!(field(key::SRC_PORT), Some("51234"));
        assert_eq!(secret_hash(&a.secret), secret_hash(secret));
    }

    #[test]
    fn hostile_secrets() {
        // Bad base64: the printable form.
        let m = HashMap::from([("secret_b64", "!!not base64"), ("secret_printable", "pw")]);
        assert_eq!(decode_secret(lookup(&m)), Some(b"pw".to_vec()));
        // Unpadded and whitespace-wrapped base64 decodes; NUL bytes survive.
        let m = HashMap::from([("secret_b64", " AHAA ")]);
        assert_eq!(decode_secret(lookup(&m)), Some(b"\0p\0".to_vec()));
        let m = HashMap::from([("secret_printable", "a\0b")]);
        assert_eq!(decode_secret(lookup(&m)), Some(b"a\0b".to_vec()));
        // Missing fields.
        let m = HashMap::from([("principal", "root")]);
        assert_eq!(decode_secret(lookup(&m)), None);
        assert_eq!(auth_fields(lookup(&m)), None);
        let m = HashMap::from([("secret_printable", "pw")]);
        assert_eq!(auth_fields(lookup(&m)), None, "no principal");
        let m = HashMap::from([("principal", "r"), ("secret_b64", ""), ("secret_kind", "")]);
        let a = auth_fields(lookup(&m)).expect("empty secret is a secret");
        assert_eq!((a.secret.as_slice(), a.secret_kind), (&b""[..], "password"));
        // Oversize: bounded, never more than MAX_SECRET bytes.
        let huge_b64 = "QUFB".repeat(MAX_SECRET);
        let huge = "A".repeat(MAX_SECRET * 3);
        let m = HashMap::from([
            ("secret_b64", huge_b64.as_str()),
            ("secret_printable", huge.as_str()),
        ]);
        let s = decode_secret(lookup(&m)).expect("printable");
        assert_eq!(s.len(), MAX_SECRET);
        // Encoding bounds the secret to MAX_VALUE bytes.
        let enc = encode_secret(&[0xffu8; 100_000]);
        let m = HashMap::from([("secret_b64", enc.b64.as_str())]);
        assert_eq!(decode_secret(lookup(&m)).map(|s| s.len()), Some(MAX_VALUE));
        assert!(enc.printable.chars().all(|c| c == '\u{fffd}'));
    }

    #[test]
    fn secret_hash_is_sha256() {
        assert_eq!(
            secret_hash(b"")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
