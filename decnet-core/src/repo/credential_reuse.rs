//! `credential_reuse`: one row per secret tried against two or more (decky, service) targets,
//! with the targets, the attackers and the counts. Recomputed whole for the secrets a
//! correlator batch touches (from `credentials`, which only grows), so a row is replaced, not
//! merged.
//!
//! Written by the correlator (inside its [`super::intel_batch::IntelBatch`]). Read by the
//! correlator (the stored target counts, to see which secrets changed), the profiler (the
//! reuse of the secrets an attacker tried) and the tests.
use std::{collections::HashMap, net::IpAddr};

use super::{
    LIST_MAX, Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, json, name, placeholders},
    decode::{Decoder, sat},
    limits,
    listing::each_row_of_ips,
};
use crate::{model::CredentialReuse, time_fmt::format_ts};

/// The stored columns, in insert order; `secret_hash` is the key.
const COLUMNS: [&str; 10] = [
    "secret_hash",
    "secret_kind",
    "secret_printable",
    "target_count",
    "targets",
    "attacker_count",
    "attackers",
    "credential_rows",
    "first_seen",
    "last_seen",
];
const REPLACE: [(&str, Merge); 9] = [
    ("secret_kind", Merge::Replace),
    ("secret_printable", Merge::Replace),
    ("target_count", Merge::Replace),
    ("targets", Merge::Replace),
    ("attacker_count", Merge::Replace),
    ("attackers", Merge::Replace),
    ("credential_rows", Merge::Replace),
    ("first_seen", Merge::Replace),
    ("last_seen", Merge::Replace),
];

fn select() -> String {
    format!("SELECT {} FROM credential_reuse", COLUMNS.join(", "))
}

fn decode(row: &sqlx::any::AnyRow) -> Result<CredentialReuse, RepoError> {
    let d = Decoder::new(row, "credential_reuse");
    Ok(CredentialReuse {
        secret_hash: d.hash("secret_hash")?,
        secret_kind: d.text("secret_kind")?,
        secret_printable: d.text("secret_printable")?,
        target_count: d.u64("target_count")?,
        targets: d.json("targets")?,
        attacker_count: d.u64("attacker_count")?,
        attackers: d.json("attackers")?,
        credential_rows: d.u64("credential_rows")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
    })
}

impl WriteTx {
    /// Stores reuse records, replacing the stored ones of the same secrets.
    pub async fn upsert_reuse(&mut self, rs: &[CredentialReuse]) -> Result<u64, RepoError> {
        if rs.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("credential_reuse", &["secret_hash"], &REPLACE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "credential_reuse",
                columns: &COLUMNS,
                tail: &tail,
            },
            rs,
            |q: AnyQuery<'_>, r: &CredentialReuse| {
                let targets: Vec<String> = r
                    .targets
                    .iter()
                    .take(LIST_MAX)
                    .map(|t| limits::text(t, 2 * limits::NAME + 1).into_owned())
                    .collect();
                let attackers: Vec<&String> = r.attackers.iter().take(LIST_MAX).collect();
                q.bind(r.secret_hash.to_vec())
                    .bind(name(&r.secret_kind))
                    .bind(limits::text(&r.secret_printable, limits::SHORT_TEXT).into_owned())
                    .bind(sat(r.target_count))
                    .bind(json(&targets))
                    .bind(sat(r.attacker_count))
                    .bind(json(&attackers))
                    .bind(sat(r.credential_rows))
                    .bind(format_ts(r.first_seen_ns))
                    .bind(format_ts(r.last_seen_ns))
            },
        )
        .await
    }
}

impl Repository {
    /// Every credential-reuse record, by secret hash.
    pub async fn credential_reuse(&self) -> Result<Vec<CredentialReuse>, RepoError> {
        let rows = sqlx::query(&format!("{} ORDER BY secret_hash", select()))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Reuse records of the secrets `ip` tried.
    pub async fn reuse_of(&self, ip: IpAddr) -> Result<Vec<CredentialReuse>, RepoError> {
        let rows = sqlx::query(&format!(
            "{} WHERE secret_hash IN (SELECT secret_hash FROM credentials \
             WHERE attacker_ip = ?) ORDER BY secret_hash",
            select()
        ))
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The most targets any secret `ip` tried is reused across (0: none).
    pub async fn reuse_targets_of(&self, ip: IpAddr) -> Result<u64, RepoError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(target_count) FROM credential_reuse WHERE secret_hash IN \
             (SELECT secret_hash FROM credentials WHERE attacker_ip = ?)",
        )
        .bind(ip.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// [`Repository::reuse_targets_of`] from the other side: each stored reuse record is probed
    /// for a row of `ip` (one indexed lookup per reused secret), so the cost follows the number
    /// of reused secrets, not the attacker's credential rows — for a brute-forcer with many.
    pub async fn reuse_targets_by_records(&self, ip: IpAddr) -> Result<u64, RepoError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(r.target_count) FROM credential_reuse r WHERE EXISTS \
             (SELECT 1 FROM credentials c WHERE c.secret_hash = r.secret_hash \
             AND c.attacker_ip = ?)",
        )
        .bind(ip.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// [`Repository::reuse_targets_of`] for each of `ips` (absent: 0), in one statement per
    /// chunk: the profiler's batch read.
    pub async fn reuse_targets_of_many(
        &self,
        ips: &[IpAddr],
    ) -> Result<HashMap<IpAddr, u64>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| {
                format!(
                    "SELECT c.attacker_ip, MAX(r.target_count) AS n FROM credentials c \
                 JOIN credential_reuse r ON r.secret_hash = c.secret_hash \
                 WHERE c.attacker_ip IN ({list}) GROUP BY c.attacker_ip"
                )
            },
            HashMap::with_capacity(ips.len()),
            |out, row| {
                let d = Decoder::new(row, "credential_reuse");
                out.insert(d.ip("attacker_ip")?, d.u64("n")?);
                Ok(())
            },
        )
        .await
    }

    /// The stored reuse records of these secrets (those that have one).
    pub async fn reuse_records(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<CredentialReuse>, RepoError> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "{} WHERE secret_hash IN ({})",
                select(),
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.to_vec());
            }
            for row in q.fetch_all(self.pool()).await? {
                out.push(decode(&row)?);
            }
        }
        Ok(out)
    }

    /// The stored reuse target counts of these secrets.
    pub async fn reuse_target_counts(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], u64>, RepoError> {
        let mut out = HashMap::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT secret_hash, target_count FROM credential_reuse WHERE secret_hash IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.to_vec());
            }
            for row in q.fetch_all(self.pool()).await? {
                let d = Decoder::new(&row, "credential_reuse");
                out.insert(d.hash("secret_hash")?, d.u64("target_count")?);
            }
        }
        Ok(out)
    }
}

impl Repository {
    /// Credential-reuse records, most recent first (by last seen, then secret hash); at most
    /// `limit`, after `after` (the previous page's last (last seen, hash)). The API's listing.
    pub async fn list_credential_reuse(
        &self,
        after: Option<(i64, [u8; 32])>,
        limit: u32,
    ) -> Result<Vec<CredentialReuse>, RepoError> {
        let mut sql = format!("{} WHERE 1 = 1", select());
        if after.is_some() {
            sql.push_str(" AND (last_seen < ? OR (last_seen = ? AND secret_hash < ?))");
        }
        sql.push_str(" ORDER BY last_seen DESC, secret_hash DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some((t, h)) = after {
            q = q.bind(format_ts(t)).bind(format_ts(t)).bind(h.to_vec());
        }
        let rows = q.bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter().map(decode).collect()
    }
}
