//! `attacker_evidence`: the profiler's queue. Each correlator transaction stamps the attackers
//! it changed with the next sequence number (one row per attacker, the sequence only grows); the
//! profiler keeps a cursor on (seq, ip) and profiles what is queued after it.
//!
//! Written by the correlator (inside its [`super::intel_batch::IntelBatch`]). Read by the
//! profiler.
use std::net::IpAddr;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::Decoder,
};

const COLUMNS: [&str; 2] = ["attacker_ip", "seq"];

impl WriteTx {
    /// Stamps `ips` with the next evidence sequence number (one per call).
    pub async fn mark_evidence(&mut self, ips: &[IpAddr]) -> Result<u64, RepoError> {
        if ips.is_empty() {
            return Ok(0);
        }
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM attacker_evidence")
            .fetch_one(&mut *self.tx)
            .await?;
        let seq = max.unwrap_or(0) + 1;
        let tail = self.dialect.upsert_tail(
            "attacker_evidence",
            &["attacker_ip"],
            &[("seq", Merge::Max)],
        );
        let rows: Vec<(String, i64)> = ips.iter().map(|ip| (ip.to_string(), seq)).collect();
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attacker_evidence",
                columns: &COLUMNS,
                tail: &tail,
            },
            &rows,
            |q: AnyQuery<'_>, r: &(String, i64)| q.bind(r.0.clone()).bind(r.1),
        )
        .await
    }
}

impl Repository {
    /// Attackers queued for the profiler after the position (`seq`, `ip`), in queue order:
    /// `(seq, ip)`.
    pub async fn evidence_after(
        &self,
        seq: i64,
        ip: &str,
        limit: u32,
    ) -> Result<Vec<(i64, IpAddr)>, RepoError> {
        let rows = sqlx::query(
            "SELECT seq, attacker_ip FROM attacker_evidence \
             WHERE seq > ? OR (seq = ? AND attacker_ip > ?) ORDER BY seq, attacker_ip LIMIT ?",
        )
        .bind(seq)
        .bind(seq)
        .bind(ip.to_owned())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "attacker_evidence");
                Ok((d.i64("seq")?, d.ip("attacker_ip")?))
            })
            .collect()
    }
}
