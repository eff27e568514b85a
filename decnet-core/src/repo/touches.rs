//! `attacker_touches`: the (decky, service) pairs each attacker touched, with first/last seen —
//! its path through the fleet in first_seen order. Re-recording a pair merges (first_seen min,
//! last_seen max).
//!
//! Written by the correlator (inside its [`super::intel_batch::IntelBatch`]). Read by the
//! correlator (to rebuild an attacker's traversal), the profiler and the API's attacker page.
use std::net::IpAddr;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, name},
    decode::{Decoder, Src},
    listing::each_row_of_ips,
};
use crate::{model::Touch, time_fmt::format_ts};

/// The stored columns, in insert order; the first three are the key.
const COLUMNS: [&str; 5] = ["attacker_ip", "decky", "service", "first_seen", "last_seen"];
const MERGE: [(&str, Merge); 2] = [("first_seen", Merge::Min), ("last_seen", Merge::Max)];

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Touch, RepoError> {
    let d = Decoder::new(row, "attacker_touches");
    Ok(Touch {
        attacker_ip: d.ip("attacker_ip")?,
        decky: d.text("decky")?,
        service: d.text("service")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
    })
}

impl WriteTx {
    /// Records (decky, service) pairs attackers touched.
    pub async fn touch(&mut self, touches: &[Touch]) -> Result<u64, RepoError> {
        if touches.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("attacker_touches", &COLUMNS[..3], &MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attacker_touches",
                columns: &COLUMNS,
                tail: &tail,
            },
            touches,
            |q: AnyQuery<'_>, t: &Touch| {
                q.bind(t.attacker_ip.to_string())
                    .bind(name(&t.decky))
                    .bind(name(&t.service))
                    .bind(format_ts(t.first_seen_ns))
                    .bind(format_ts(t.last_seen_ns))
            },
        )
        .await
    }
}

impl Repository {
    /// The (decky, service) pairs `ip` touched, in first_seen order.
    pub async fn touches(&self, ip: IpAddr) -> Result<Vec<Touch>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM attacker_touches WHERE attacker_ip = ? \
             ORDER BY first_seen, decky, service",
            COLUMNS.join(", ")
        ))
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The touches of each of `ips` (any order).
    pub async fn touches_of(&self, ips: &[IpAddr]) -> Result<Vec<Touch>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| {
                format!(
                    "SELECT {} FROM attacker_touches WHERE attacker_ip IN ({})",
                    COLUMNS.join(", "),
                    list
                )
            },
            Vec::new(),
            |out, row| {
                out.push(decode(row)?);
                Ok(())
            },
        )
        .await
    }
}
