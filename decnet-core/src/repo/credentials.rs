//! `credentials`: the credentials attackers tried, one row per (attacker, decky, service,
//! principal, secret kind, secret) — the natural key is a SHA-256 over those parts — with the
//! number of attempts and first/last seen. The secret itself is stored only as its SHA-256 and a
//! bounded printable form.
//!
//! Written by the collector, only with the events that carry the attempts
//! ([`WriteTx::insert_events_with_credentials`]): an attempt counts once, when its event is new,
//! so replayed input never counts twice. Read by the correlator (new credentials after its
//! cursor, the rows and the reuse aggregate of a secret), the profiler (an attacker's attempts),
//! the attacker counters' refresh (in `attackers`), `credential_reuse` (which secrets an attacker
//! tried) and the API (filtered listing).
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use sha2::{Digest as _, Sha256};

use super::{
    LIST_MAX, Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, name, placeholders},
    decode::{Decoder, Src, sat},
    dialect::Dialect,
    limits,
    listing::{Where, decoded_after, each_row_of_ips, like_anywhere, newest_first},
};
use crate::{
    model::{Credential, CredentialAttempt, CredentialReuse, NewEvent},
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

/// The stored columns (besides `id`), in insert order.
const COLUMNS: [&str; 11] = [
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
/// Attempts add up (each comes with a new event); first/last seen widen.
const MERGE: [(&str, Merge); 3] = [
    ("attempts", Merge::Sum),
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
];

/// What a [`Credential`] is read from.
const SELECT: &str = "SELECT id, attacker_ip, decky, service, principal, secret_kind, secret_hash, \
                      secret_printable, attempts, first_seen, last_seen FROM credentials";
fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Credential, RepoError> {
    let d = Decoder::new(row, "credentials");
    Ok(Credential {
        id: d.i64("id")?,
        attacker_ip: d.ip("attacker_ip")?,
        decky: d.text("decky")?,
        service: d.text("service")?,
        principal: d.bytes("principal")?,
        secret_kind: d.text("secret_kind")?,
        secret_hash: d.hash("secret_hash")?,
        secret_printable: d.text("secret_printable")?,
        attempts: d.u64("attempts")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
    })
}

/// Filters of [`Repository::list_credentials`].
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub attacker: Option<IpAddr>,
    pub service: Option<String>,
    /// Substring of the principal.
    pub principal: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

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
        self.add_credential_attempts(&fresh).await?;
        Ok(new.iter().filter(|n| **n).count() as u64)
    }

    /// Adds attempts to the credentials' counts (creating their rows).
    async fn add_credential_attempts(
        &mut self,
        creds: &[CredentialAttempt],
    ) -> Result<u64, RepoError> {
        if creds.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("credentials", &["natural_key"], &MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "credentials",
                columns: &COLUMNS,
                tail: &tail,
            },
            creds,
            |q: AnyQuery<'_>, c: &CredentialAttempt| {
                let r = Stored::of(c);
                q.bind(r.ip)
                    .bind(r.decky.into_owned())
                    .bind(r.service.into_owned())
                    .bind(r.principal.to_vec())
                    .bind(r.kind.into_owned())
                    .bind(r.secret_hash.to_vec())
                    .bind(r.printable)
                    .bind(r.attempts)
                    .bind(r.first_seen)
                    .bind(r.last_seen)
                    .bind(r.key.to_vec())
            },
        )
        .await
    }
}

/// The stored values of an attempt, in [`COLUMNS`] order: one derivation for both write paths.
struct Stored<'a> {
    ip: String,
    decky: std::borrow::Cow<'a, str>,
    service: std::borrow::Cow<'a, str>,
    principal: &'a [u8],
    kind: std::borrow::Cow<'a, str>,
    secret_hash: [u8; 32],
    printable: String,
    attempts: i64,
    first_seen: String,
    last_seen: String,
    key: [u8; 32],
}

impl<'a> Stored<'a> {
    fn of(c: &'a CredentialAttempt) -> Stored<'a> {
        let ip = c.attacker_ip.to_string();
        let decky = limits::text(&c.decky, limits::NAME);
        let service = limits::text(&c.service, limits::NAME);
        let principal = limits::bytes(&c.principal, limits::SHORT_TEXT);
        let kind = limits::text(&c.secret_kind, limits::NAME);
        let secret_hash: [u8; 32] = crate::event::secret_hash(&c.secret);
        let key = key_of(&[
            ip.as_bytes(),
            decky.as_bytes(),
            service.as_bytes(),
            principal,
            kind.as_bytes(),
            &secret_hash,
        ]);
        Stored {
            ip,
            decky,
            service,
            principal,
            kind,
            secret_hash,
            printable: printable(&c.secret),
            attempts: sat(c.attempts),
            first_seen: format_ts(c.first_seen_ns),
            last_seen: format_ts(c.last_seen_ns),
            key,
        }
    }
}

/// [`WriteTx::add_credential_attempts`] on the SQLite bulk write path (one cached prepared
/// upsert, row by row).
pub(crate) fn add_attempts_native<'c>(
    tx: &rusqlite::Transaction<'_>,
    creds: impl Iterator<Item = &'c CredentialAttempt>,
) -> Result<u64, RepoError> {
    let d = Dialect::Sqlite;
    let tail = d.upsert_tail("credentials", &["natural_key"], &MERGE);
    let sql = super::bulk::insert_sql("INSERT INTO", "credentials", &COLUMNS, 1, &tail);
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut n = 0;
    for c in creds {
        let r = Stored::of(c);
        n += stmt.execute((
            &r.ip,
            &*r.decky,
            &*r.service,
            r.principal,
            &*r.kind,
            &r.secret_hash[..],
            &r.printable,
            r.attempts,
            &r.first_seen,
            &r.last_seen,
            &r.key[..],
        ))? as u64;
    }
    Ok(n)
}

impl Repository {
    /// Credentials tried by `ip` (all attackers when `None`), in id order.
    pub async fn credentials(&self, ip: Option<IpAddr>) -> Result<Vec<Credential>, RepoError> {
        let rows = match ip {
            Some(ip) => {
                sqlx::query(&format!("{SELECT} WHERE attacker_ip = ? ORDER BY id"))
                    .bind(ip.to_string())
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query(&format!("{SELECT} ORDER BY id"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(decode).collect()
    }

    /// Credentials matching `f`, newest (highest id) first.
    pub async fn list_credentials(
        &self,
        f: &CredentialFilter,
    ) -> Result<Vec<Credential>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(ip) = f.attacker {
            w.text("attacker_ip = ?", ip.to_string());
        }
        if let Some(v) = &f.service {
            w.text("service = ?", name(v));
        }
        if let Some(p) = f.principal.as_deref().filter(|p| !p.is_empty()) {
            w.text("principal LIKE ? ESCAPE '!'", like_anywhere(p));
        }
        let (tail, limit) = newest_first(f.limit);
        let rows = w.fetch(self, SELECT, tail, &limit).await?;
        rows.iter().map(decode).collect()
    }

    /// Up to `limit` credentials with `id > after`, in id order: how the correlator reads new
    /// credentials from its cursor.
    pub async fn credentials_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Credential>, RepoError> {
        decoded_after(self, SELECT, after, limit, |c| decode(c)).await
    }

    /// Every credential row with one of these secret hashes and an id up to `max_id`, by id.
    pub async fn credentials_by_secret(
        &self,
        hashes: &[[u8; 32]],
        max_id: i64,
    ) -> Result<Vec<Credential>, RepoError> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "{SELECT} WHERE secret_hash IN ({}) AND id <= ? ORDER BY id",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.to_vec());
            }
            q = q.bind(max_id);
            for row in q.fetch_all(self.pool()).await? {
                out.push(decode(&row)?);
            }
        }
        Ok(out)
    }

    /// Σ attempts over the credentials of `ip`.
    pub async fn credential_attempts(&self, ip: IpAddr) -> Result<u64, RepoError> {
        let sql = format!(
            "SELECT {} FROM credentials WHERE attacker_ip = ?",
            self.dialect().sum_int("attempts")
        );
        let n: Option<i64> = sqlx::query_scalar(&sql)
            .bind(ip.to_string())
            .fetch_one(self.pool())
            .await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// Σ attempts over the credentials of each of `ips` (absent: none): the profiler's batch
    /// read of [`Repository::credential_attempts`].
    pub async fn credential_attempts_of(
        &self,
        ips: &[IpAddr],
    ) -> Result<HashMap<IpAddr, u64>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| {
                format!(
                    "SELECT attacker_ip, {} AS n FROM credentials WHERE attacker_ip IN ({}) \
                 GROUP BY attacker_ip",
                    self.dialect().sum_int("attempts"),
                    list
                )
            },
            HashMap::with_capacity(ips.len()),
            |out, row| {
                let d = Decoder::new(row, "credentials");
                out.insert(d.ip("attacker_ip")?, d.u64("n")?);
                Ok(())
            },
        )
        .await
    }

    /// Credential reuse of these secrets, aggregated in SQL from every credential row with the
    /// secret (only secrets that reach two (decky, service) targets), ordered by hash: what the
    /// correlator stores in `credential_reuse`.
    pub async fn reuse_of_secrets(
        &self,
        hashes: &[[u8; 32]],
        max_id: i64,
    ) -> Result<Vec<CredentialReuse>, RepoError> {
        let mut out = Vec::new();
        let mut sorted = hashes.to_vec();
        sorted.sort();
        sorted.dedup();
        for h in sorted {
            let key = h.to_vec();
            let targets: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT DISTINCT decky, service FROM credentials \
                 WHERE secret_hash = ? AND id <= ?) t",
            )
            .bind(key.clone())
            .bind(max_id)
            .fetch_one(self.pool())
            .await?;
            if targets < 2 {
                continue;
            }
            let row = sqlx::query(
                "SELECT MIN(id) AS first_id, COUNT(*) AS n, MIN(first_seen) AS first_ts, \
                 MAX(last_seen) AS last_ts FROM credentials WHERE secret_hash = ? AND id <= ?",
            )
            .bind(key.clone())
            .bind(max_id)
            .fetch_one(self.pool())
            .await?;
            let d = Decoder::new(&row, "credentials");
            let (first_id, rows, first, last) = (
                d.i64("first_id")?,
                d.u64("n")?,
                d.ts("first_ts")?,
                d.ts("last_ts")?,
            );
            let row =
                sqlx::query("SELECT secret_kind, secret_printable FROM credentials WHERE id = ?")
                    .bind(first_id)
                    .fetch_one(self.pool())
                    .await?;
            let d = Decoder::new(&row, "credentials");
            let (kind, printable) = (d.text("secret_kind")?, d.text("secret_printable")?);
            let attackers: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT DISTINCT attacker_ip FROM credentials \
                 WHERE secret_hash = ? AND id <= ?) t",
            )
            .bind(key.clone())
            .bind(max_id)
            .fetch_one(self.pool())
            .await?;
            let target_rows = sqlx::query(&format!(
                "SELECT DISTINCT decky, service FROM credentials WHERE secret_hash = ? \
                 AND id <= ? ORDER BY decky, service LIMIT {LIST_MAX}"
            ))
            .bind(key.clone())
            .bind(max_id)
            .fetch_all(self.pool())
            .await?;
            let mut target_list = Vec::with_capacity(target_rows.len());
            for r in &target_rows {
                let d = Decoder::new(r, "credentials");
                target_list.push(format!("{}/{}", d.text("decky")?, d.text("service")?));
            }
            target_list.sort();
            let attacker_list = self.secret_attackers(&h, LIST_MAX, max_id).await?;
            out.push(CredentialReuse {
                secret_hash: h,
                secret_kind: kind,
                secret_printable: printable,
                target_count: u64::try_from(targets).unwrap_or(0),
                targets: target_list,
                attacker_count: u64::try_from(attackers).unwrap_or(0),
                attackers: attacker_list.iter().map(|ip| ip.to_string()).collect(),
                credential_rows: rows,
                first_seen_ns: first,
                last_seen_ns: last,
            });
        }
        Ok(out)
    }

    /// The attackers that tried secret `hash` in rows up to id `max_id` (at most `limit`, by
    /// address text).
    pub async fn secret_attackers(
        &self,
        hash: &[u8; 32],
        limit: usize,
        max_id: i64,
    ) -> Result<Vec<IpAddr>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT attacker_ip FROM credentials WHERE secret_hash = ? AND id <= ? \
             ORDER BY attacker_ip LIMIT {}",
            limit.min(1_000_000)
        ))
        .bind(hash.to_vec())
        .bind(max_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Decoder::new(r, "credentials").ip("attacker_ip"))
            .collect()
    }

    /// The distinct (decky, service) targets of each of these secrets in rows up to id `max_id`.
    pub async fn secret_targets(
        &self,
        hashes: &[[u8; 32]],
        max_id: i64,
    ) -> Result<Vec<([u8; 32], String, String)>, RepoError> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT secret_hash, decky, service FROM credentials WHERE secret_hash IN ({}) \
                 AND id <= ? GROUP BY secret_hash, decky, service",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.to_vec());
            }
            for row in q.bind(max_id).fetch_all(self.pool()).await? {
                let d = Decoder::new(&row, "credentials");
                out.push((d.hash("secret_hash")?, d.text("decky")?, d.text("service")?));
            }
        }
        Ok(out)
    }

    /// Which of these (secret, attacker) pairs rows up to id `max_id` already hold (by the
    /// (secret_hash, attacker_ip) index: the cost follows the pairs asked about).
    pub async fn known_secret_attackers(
        &self,
        pairs: &[([u8; 32], IpAddr)],
        max_id: i64,
    ) -> Result<HashSet<([u8; 32], IpAddr)>, RepoError> {
        let mut out = HashSet::new();
        for chunk in pairs.chunks(500) {
            let rows = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = match self.dialect() {
                // The pairs as a table the index is searched from (`CROSS JOIN` keeps them the
                // outer loop; SQLite reads a row-value `IN` list by scanning the whole index).
                Dialect::Sqlite => format!(
                    "WITH p (h, a) AS (VALUES {rows}) SELECT DISTINCT c.secret_hash, c.attacker_ip \
                     FROM p CROSS JOIN credentials c ON c.secret_hash = p.h \
                     AND c.attacker_ip = p.a WHERE c.id <= ?"
                ),
                // MariaDB seeks a row-value `IN` list by the index (range access).
                Dialect::MySql => format!(
                    "SELECT DISTINCT secret_hash, attacker_ip FROM credentials \
                     WHERE (secret_hash, attacker_ip) IN ({rows}) AND id <= ?"
                ),
            };
            let mut q = sqlx::query(&sql);
            for (h, ip) in chunk {
                q = q.bind(h.to_vec()).bind(ip.to_string());
            }
            for row in q.bind(max_id).fetch_all(self.pool()).await? {
                let d = Decoder::new(&row, "credentials");
                out.insert((d.hash("secret_hash")?, d.ip("attacker_ip")?));
            }
        }
        Ok(out)
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
