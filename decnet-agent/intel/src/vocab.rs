//! What a stored event means to the correlator and the profiler: the decoy services' event
//! vocabulary (MSGID = event type, SD params = fields), whose names, keys and secret encoding are
//! the contract in [`decnet_core::event`] (written by `decky::emit`, read by `collector::mapping`).
//!
//! Input: an event's type and its `fields` JSON, as stored. Output: [`Interpreted`].
//!
//! | event type | meaning |
//! |---|---|
//! | `connect`, `connection`, `session_start`, `accept` | a new connection: starts a session |
//! | `disconnect`, `close`, `closed`, `session_end`, `session_closed`, `logout`, `connection_closed` | ends the session |
//! | `auth_attempt`, `login_attempt`, `auth`, `auth_failed`, `login_failed`, `auth_success`, `login_success` | a credential attempt; succeeded when the type ends in `_success` or `result`/`success`/`outcome`/`status` says so (`accepted`, `success`, `ok`, `true`, …) |
//! | `login` | a successful login |
//! | `command`, `cmd`, `exec`, `shell_command`, `input` | a command typed: `cmd`, `command`, `input` or `line` field |
//! | `request`, `http_request` | an HTTP request (`method`, `path`, `user_agent`, `headers`) |
//!
//! Tool evidence: `user_agent` / `ua` / `http_user_agent` fields or a `User-Agent:` line inside
//! `headers`; SSH client identification in `client_version` (or `client_banner`, `ssh_client`,
//! or any of `banner`/`client`/`version` that starts with `SSH-`). A credential's secret is
//! `secret_b64` (else `secret_printable`, [`event::decode_secret`]), hashed as the repository does
//! ([`event::secret_hash`], SHA-256).
//!
//! Fields are attacker-controlled: every extracted string is bounded
//! ([`decnet_core::repo::limits`]); a `fields` value that is not a JSON object is reported
//! ([`Interpreted::bad_fields`]) and the event is read from its type alone.
use decnet_core::event::{self, EventKind, key};
use decnet_core::repo::limits;
use serde_json::{Map, Value};

/// What kind of thing an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Connect,
    Disconnect,
    /// A credential attempt; `Some(true)` succeeded, `Some(false)` failed, `None` unknown.
    Auth(Option<bool>),
    /// A successful login (no attempt of its own).
    Login,
    Command,
    Request,
    Other,
}

/// An event, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreted {
    pub kind: Kind,
    pub command: Option<String>,
    pub user_agent: Option<String>,
    pub ssh_client: Option<String>,
    /// SHA-256 of the secret of a credential attempt.
    pub secret_hash: Option<[u8; 32]>,
    /// `fields` was not a JSON object.
    pub bad_fields: bool,
}

fn kind_of(event_type: &str) -> Kind {
    match EventKind::parse(event_type) {
        EventKind::Connect => Kind::Connect,
        EventKind::Disconnect => Kind::Disconnect,
        EventKind::AuthAttempt => Kind::Auth(None),
        EventKind::AuthFailed => Kind::Auth(Some(false)),
        EventKind::AuthSuccess => Kind::Auth(Some(true)),
        EventKind::Login => Kind::Login,
        EventKind::Command => Kind::Command,
        EventKind::Request => Kind::Request,
        EventKind::BadRequest
        | EventKind::BadHandshake
        | EventKind::TlsHandshakeFailed
        | EventKind::TunnelRequest
        | EventKind::Message
        | EventKind::Other(_) => Kind::Other,
    }
}

fn field<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| match map.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.as_str()),
        _ => None,
    })
}

fn bounded(s: &str) -> String {
    limits::text(s.trim(), limits::SHORT_TEXT).into_owned()
}

/// The outcome word of an attempt: `Some(true)` success, `Some(false)` failure.
fn outcome(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "accepted" | "success" | "succeeded" | "ok" | "true" | "1" | "valid" => Some(true),
        "rejected" | "failure" | "failed" | "fail" | "denied" | "false" | "0" | "invalid" => {
            Some(false)
        }
        _ => None,
    }
}

/// The User-Agent inside a `headers` field: a JSON object or `Name: value` lines.
fn ua_in_headers(headers: &str) -> Option<String> {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(headers) {
        return m.iter().find_map(|(k, v)| match v {
            Value::String(s) if k.eq_ignore_ascii_case("user-agent") => Some(bounded(s)),
            _ => None,
        });
    }
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("user-agent")
            .then(|| bounded(v))
    })
}

/// Interprets one event.
pub fn interpret(event_type: &str, fields: &str) -> Interpreted {
    let mut kind = kind_of(event_type);
    let parsed = serde_json::from_str::<Value>(fields);
    let (map, bad_fields) = match parsed {
        Ok(Value::Object(m)) => (m, false),
        _ => (Map::new(), true),
    };
    if let Kind::Auth(None) = kind {
        let o = field(&map, &key::OUTCOME_KEYS).and_then(outcome);
        kind = Kind::Auth(o);
    }
    let command = (kind == Kind::Command)
        .then(|| field(&map, &key::COMMAND_KEYS).map(bounded))
        .flatten();
    let user_agent = field(&map, &key::USER_AGENT_KEYS)
        .map(bounded)
        .or_else(|| field(&map, &[key::HEADERS]).and_then(ua_in_headers))
        .filter(|s| !s.is_empty());
    let ssh_client = field(&map, &key::SSH_CLIENT_KEYS)
        .or_else(|| field(&map, &key::SSH_BANNER_KEYS).filter(|v| v.trim().starts_with("SSH-")))
        .map(bounded);
    let secret_hash = matches!(kind, Kind::Auth(_))
        .then(|| event::decode_secret(|k| field(&map, &[k])))
        .flatten()
        .map(|secret| event::secret_hash(&secret));
    Interpreted {
        kind,
        command,
        user_agent,
        ssh_client,
        secret_hash,
        bad_fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    #[test]
    fn decoy_vocabulary() {
        assert_eq!(interpret("connect", "{}").kind, Kind::Connect);
        assert_eq!(interpret("disconnect", "{}").kind, Kind::Disconnect);
        assert_eq!(interpret("login", "{}").kind, Kind::Login);
        assert_eq!(interpret("made_up", "{}").kind, Kind::Other);
        let a = interpret(
            "auth_attempt",
            r#"{"principal":"root","secret_b64":"MTIzNDU2","secret_printable":"x","result":"accepted","client_version":"SSH-2.0-libssh_0.10.6"}"#,
        );
        assert_eq!(a.kind, Kind::Auth(Some(true)));
        let want: [u8; 32] = Sha256::digest(b"123456").into();
        assert_eq!(a.secret_hash, Some(want), "secret_b64 wins over printable");
        assert_eq!(a.ssh_client.as_deref(), Some("SSH-2.0-libssh_0.10.6"));
        let r = interpret(
            "auth_attempt",
            r#"{"secret_printable":"pw","result":"rejected"}"#,
        );
        assert_eq!(r.kind, Kind::Auth(Some(false)));
        let pw: [u8; 32] = Sha256::digest(b"pw").into();
        assert_eq!(r.secret_hash, Some(pw));
        assert_eq!(
            interpret("login_failed", "{}").kind,
            Kind::Auth(Some(false))
        );
        assert_eq!(interpret("auth_attempt", "{}").kind, Kind::Auth(None));
    }

    #[test]
    fn commands_and_agents() {
        let c = interpret("command", r#"{"cmd":"  uname -a ","user":"root"}"#);
        assert_eq!(c.command.as_deref(), Some("uname -a"));
        let h = interpret(
            "request",
            r#"{"method":"GET","headers":"Host: x\nUser-Agent: sqlmap/1.8#stable\n"}"#,
        );
        assert_eq!(h.user_agent.as_deref(), Some("sqlmap/1.8#stable"));
        let j = interpret(
            "request",
            r#"{"headers":"{\"user-agent\":\"curl/8.5.0\"}"}"#,
        );
        assert_eq!(j.user_agent.as_deref(), Some("curl/8.5.0"));
        let b = interpret("connect", r#"{"banner":"SSH-2.0-Go"}"#);
        assert_eq!(b.ssh_client.as_deref(), Some("SSH-2.0-Go"));
        assert_eq!(
            interpret("connect", r#"{"banner":"hello"}"#).ssh_client,
            None
        );
    }

    #[test]
    fn hostile_fields_are_bounded_and_reported() {
        let bad = interpret("command", "not json");
        assert!(bad.bad_fields);
        assert_eq!(bad.kind, Kind::Command);
        assert_eq!(bad.command, None);
        let long = format!(r#"{{"cmd":"{}"}}"#, "A".repeat(100_000));
        let c = interpret("command", &long);
        assert!(c.command.unwrap().len() <= limits::SHORT_TEXT);
        assert!(interpret("request", "[1,2]").bad_fields);
    }
}
