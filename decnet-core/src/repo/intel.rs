//! What the workers learn about attackers: `fingerprints`, `credentials` and `sessions`. Each
//! has a unique natural key (a SHA-256 over the key parts where they are long or binary); repeats
//! merge: first_seen min, last_seen max, counts max, a session's command list replaced only by
//! one covering at least as many events.
use std::net::IpAddr;

use sha2::{Digest as _, Sha256};

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::{Decoder, sat},
    limits,
};
use crate::{
    model::{Credential, CredentialAttempt, Fingerprint, NewEvent, Session},
    time_fmt::format_ts,
};

/// SHA-256 over length-prefixed parts (so ("ab","c") and ("a","bc") differ).
pub(crate) fn key_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A printable, bounded form of secret bytes: UTF-8 as is (control characters escaped),
/// other bytes as `\xNN`.
pub fn printable(secret: &[u8]) -> String {
    let mut out = String::new();
    for chunk in secret.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    limits::text(&out, limits::SHORT_TEXT).into_owned()
}

const F_COLUMNS: [&str; 7] = [
    "kind",
    "value",
    "attacker_ip",
    "first_seen",
    "last_seen",
    "count",
    "natural_key",
];
const F_MERGE: [(&str, Merge); 3] = [
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
    ("count", Merge::Max),
];

const C_COLUMNS: [&str; 11] = [
    "attacker_ip",
    "decky",
    "service",
    "principal",
    "secret_kind",
    "secret_hash",
    "secret_printable",
    "attempts",
    "first_seen",
    "last_seen",
    "natural_key",
];
const C_MERGE: [(&str, Merge); 3] = [
    ("attempts", Merge::Max),
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
];

const S_COLUMNS: [&str; 9] = [
    "attacker_ip",
    "decky",
    "service",
    "started_at",
    "ended_at",
    "event_count",
    "bytes",
    "commands",
    "closed",
];
const S_KEY: [&str; 4] = ["attacker_ip", "decky", "service", "started_at"];
const S_MERGE: [(&str, Merge); 5] = [
    ("commands", Merge::ReplaceIfNotLess("event_count")),
    ("ended_at", Merge::Max),
    ("event_count", Merge::Max),
    ("bytes", Merge::Max),
    ("closed", Merge::Max),
];

impl WriteTx {
    /// Events and the credential attempts they carry (`(event index, attempt)`), in one go: the
    /// events are stored, and each attempt whose event was NEW adds its `attempts` to the
    /// credential's count. Replaying the same events therefore counts nothing twice, and the
    /// count is derived from the stored facts. Returns the number of new events.
    pub async fn insert_events_with_credentials(
        &mut self,
        events: &[NewEvent],
        credentials: &[(usize, CredentialAttempt)],
    ) -> Result<u64, RepoError> {
        let new = self.insert_events_marking_new(events).await?;
        let fresh: Vec<CredentialAttempt> = credentials
            .iter()
            .filter(|(i, _)| new.get(*i).copied().unwrap_or(false))
            .map(|(_, c)| c.clone())
            .collect();
        self.credentials_with(&fresh, Merge::Sum).await?;
        Ok(new.iter().filter(|n| **n).count() as u64)
    }

    pub async fn upsert_fingerprints(&mut self, fps: &[Fingerprint]) -> Result<u64, RepoError> {
        if fps.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("fingerprints", &["natural_key"], &F_MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "fingerprints",
                columns: &F_COLUMNS,
                tail: &tail,
            },
            fps,
            |q: AnyQuery<'_>, f: &Fingerprint| {
                let kind = limits::text(&f.kind, limits::NAME).into_owned();
                let value = limits::text(&f.value, limits::SHORT_TEXT).into_owned();
                let ip = f.attacker_ip.to_string();
                let key = key_of(&[kind.as_bytes(), value.as_bytes(), ip.as_bytes()]);
                q.bind(kind)
                    .bind(value)
                    .bind(ip)
                    .bind(format_ts(f.first_seen_ns))
                    .bind(format_ts(f.last_seen_ns))
                    .bind(sat(f.count))
                    .bind(key.to_vec())
            },
        )
        .await
    }

    /// Merges credential attempts reported as totals (attempts merge as a maximum). Producers that
    /// see individual attempts use [`WriteTx::insert_events_with_credentials`] instead.
    pub async fn upsert_credentials(
        &mut self,
        creds: &[CredentialAttempt],
    ) -> Result<u64, RepoError> {
        self.credentials_with(creds, Merge::Max).await
    }

    async fn credentials_with(
        &mut self,
        creds: &[CredentialAttempt],
        attempts: Merge,
    ) -> Result<u64, RepoError> {
        if creds.is_empty() {
            return Ok(0);
        }
        let merge = [("attempts", attempts), C_MERGE[1], C_MERGE[2]];
        let tail = self
            .dialect
            .upsert_tail("credentials", &["natural_key"], &merge);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "credentials",
                columns: &C_COLUMNS,
                tail: &tail,
            },
            creds,
            |q: AnyQuery<'_>, c: &CredentialAttempt| {
                let ip = c.attacker_ip.to_string();
                let decky = limits::text(&c.decky, limits::NAME).into_owned();
                let service = limits::text(&c.service, limits::NAME).into_owned();
                let principal = limits::bytes(&c.principal, limits::SHORT_TEXT).to_vec();
                let kind = limits::text(&c.secret_kind, limits::NAME).into_owned();
                let secret_hash: [u8; 32] = crate::event::secret_hash(&c.secret);
                let key = key_of(&[
                    ip.as_bytes(),
                    decky.as_bytes(),
                    service.as_bytes(),
                    &principal,
                    kind.as_bytes(),
                    &secret_hash,
                ]);
                q.bind(ip)
                    .bind(decky)
                    .bind(service)
                    .bind(principal)
                    .bind(kind)
                    .bind(secret_hash.to_vec())
                    .bind(printable(&c.secret))
                    .bind(sat(c.attempts))
                    .bind(format_ts(c.first_seen_ns))
                    .bind(format_ts(c.last_seen_ns))
                    .bind(key.to_vec())
            },
        )
        .await
    }

    pub async fn upsert_sessions(&mut self, sessions: &[Session]) -> Result<u64, RepoError> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let tail = self.dialect.upsert_tail("sessions", &S_KEY, &S_MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "sessions",
                columns: &S_COLUMNS,
                tail: &tail,
            },
            sessions,
            |q: AnyQuery<'_>, s: &Session| {
                let commands: Vec<std::borrow::Cow<'_, str>> = s
                    .commands
                    .iter()
                    .map(|c| limits::text(c, limits::SHORT_TEXT))
                    .collect();
                q.bind(s.attacker_ip.to_string())
                    .bind(limits::text(&s.decky, limits::NAME).into_owned())
                    .bind(limits::text(&s.service, limits::NAME).into_owned())
                    .bind(format_ts(s.started_ns))
                    .bind(format_ts(s.ended_ns))
                    .bind(sat(s.event_count))
                    .bind(sat(s.bytes))
                    .bind(serde_json::to_string(&commands).unwrap_or_else(|_| "[]".into()))
                    .bind(i64::from(s.closed))
            },
        )
        .await
    }
}

impl Repository {
    pub async fn fingerprints(&self, ip: IpAddr) -> Result<Vec<Fingerprint>, RepoError> {
        let rows = sqlx::query(
            "SELECT id, kind, value, attacker_ip, first_seen, last_seen, count FROM fingerprints \
             WHERE attacker_ip = ? ORDER BY id",
        )
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "fingerprints", Some(0));
                Ok(Fingerprint {
                    kind: d.text(1, "kind")?,
                    value: d.text(2, "value")?,
                    attacker_ip: d.ip(3, "attacker_ip")?,
                    first_seen_ns: d.ts(4, "first_seen")?,
                    last_seen_ns: d.ts(5, "last_seen")?,
                    count: d.u64(6, "count")?,
                })
            })
            .collect()
    }

    /// Credentials tried by `ip` (all attackers when `None`), in id order.
    pub async fn credentials(&self, ip: Option<IpAddr>) -> Result<Vec<Credential>, RepoError> {
        let base = "SELECT id, attacker_ip, decky, service, principal, secret_kind, secret_hash, \
                    secret_printable, attempts, first_seen, last_seen FROM credentials";
        let rows = match ip {
            Some(ip) => {
                sqlx::query(&format!("{base} WHERE attacker_ip = ? ORDER BY id"))
                    .bind(ip.to_string())
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query(&format!("{base} ORDER BY id"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "credentials", Some(0));
                Ok(Credential {
                    id: d.i64(0, "id")?,
                    attacker_ip: d.ip(1, "attacker_ip")?,
                    decky: d.text(2, "decky")?,
                    service: d.text(3, "service")?,
                    principal: d.bytes(4, "principal")?,
                    secret_kind: d.text(5, "secret_kind")?,
                    secret_hash: d.hash(6, "secret_hash")?,
                    secret_printable: d.text(7, "secret_printable")?,
                    attempts: d.u64(8, "attempts")?,
                    first_seen_ns: d.ts(9, "first_seen")?,
                    last_seen_ns: d.ts(10, "last_seen")?,
                })
            })
            .collect()
    }

    pub async fn sessions(&self, ip: IpAddr) -> Result<Vec<Session>, RepoError> {
        let rows = sqlx::query(
            "SELECT id, attacker_ip, decky, service, started_at, ended_at, event_count, bytes, commands, closed \
             FROM sessions WHERE attacker_ip = ? ORDER BY started_at, id",
        )
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "sessions", Some(0));
                Ok(Session {
                    attacker_ip: d.ip(1, "attacker_ip")?,
                    decky: d.text(2, "decky")?,
                    service: d.text(3, "service")?,
                    started_ns: d.ts(4, "started_at")?,
                    ended_ns: d.ts(5, "ended_at")?,
                    event_count: d.u64(6, "event_count")?,
                    bytes: d.u64(7, "bytes")?,
                    commands: d.json(8, "commands")?,
                    closed: d.i64(9, "closed")? != 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_invalid_bytes() {
        assert_eq!(printable(b"hunter2"), "hunter2");
        assert_eq!(printable(b"a\0b\n"), "a\\u{0}b\\n");
        assert_eq!(printable(&[0x66, 0xff, 0x6f]), "f\\xffo");
        assert!(printable(&[b'x'; 5000]).len() <= limits::SHORT_TEXT);
    }

    #[test]
    fn natural_keys_are_length_prefixed() {
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
        assert_eq!(key_of(&[b"x"]), key_of(&[b"x"]));
    }
}
