//! `traversals`: each attacker's path through the fleet as a list of hops (decky, first seen),
//! one row per attacker. Recomputed whole from `attacker_touches` for the attackers a correlator
//! batch touches, so a row is replaced, not merged.
//!
//! Written by the correlator (inside its [`super::intel_batch::IntelBatch`]). Read by the
//! tests (the API shows the touches themselves).
use std::net::IpAddr;

use super::{
    LIST_MAX, Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, json, name},
    decode::{Decoder, sat},
};
use crate::{
    model::{Hop, Traversal},
    time_fmt::format_ts,
};

/// The stored columns, in insert order; `attacker_ip` is the key.
const COLUMNS: [&str; 5] = [
    "attacker_ip",
    "hop_count",
    "path",
    "first_seen",
    "last_seen",
];
const REPLACE: [(&str, Merge); 4] = [
    ("hop_count", Merge::Replace),
    ("path", Merge::Replace),
    ("first_seen", Merge::Replace),
    ("last_seen", Merge::Replace),
];

fn select() -> String {
    format!("SELECT {} FROM traversals", COLUMNS.join(", "))
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Traversal, RepoError> {
    let d = Decoder::new(row, "traversals");
    Ok(Traversal {
        attacker_ip: d.ip("attacker_ip")?,
        hops: d.json("path")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
    })
}

impl WriteTx {
    /// Stores traversals, replacing the stored ones of the same attackers.
    pub async fn upsert_traversals(&mut self, ts: &[Traversal]) -> Result<u64, RepoError> {
        if ts.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("traversals", &["attacker_ip"], &REPLACE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "traversals",
                columns: &COLUMNS,
                tail: &tail,
            },
            ts,
            |q: AnyQuery<'_>, t: &Traversal| {
                let hops: Vec<Hop> = t
                    .hops
                    .iter()
                    .take(LIST_MAX)
                    .map(|h| Hop {
                        decky: name(&h.decky),
                        first_seen_ns: h.first_seen_ns,
                    })
                    .collect();
                q.bind(t.attacker_ip.to_string())
                    .bind(sat(t.hops.len() as u64))
                    .bind(json(&hops))
                    .bind(format_ts(t.first_seen_ns))
                    .bind(format_ts(t.last_seen_ns))
            },
        )
        .await
    }
}

impl Repository {
    /// The traversal of `ip`, if it has one.
    pub async fn traversal(&self, ip: IpAddr) -> Result<Option<Traversal>, RepoError> {
        let row = sqlx::query(&format!("{} WHERE attacker_ip = ?", select()))
            .bind(ip.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every traversal, by attacker.
    pub async fn traversals(&self) -> Result<Vec<Traversal>, RepoError> {
        let rows = sqlx::query(&format!("{} ORDER BY attacker_ip", select()))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }
}

impl Repository {
    /// Traversals, most recently active first (by last seen, then attacker), optionally of one
    /// attacker; at most `limit`, after `after` (the previous page's last (last seen, attacker)).
    /// The API's listing.
    pub async fn list_traversals(
        &self,
        attacker: Option<IpAddr>,
        after: Option<(i64, IpAddr)>,
        limit: u32,
    ) -> Result<Vec<Traversal>, RepoError> {
        let mut sql = format!("{} WHERE 1 = 1", select());
        if attacker.is_some() {
            sql.push_str(" AND attacker_ip = ?");
        }
        if after.is_some() {
            sql.push_str(" AND (last_seen < ? OR (last_seen = ? AND attacker_ip < ?))");
        }
        sql.push_str(" ORDER BY last_seen DESC, attacker_ip DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(ip) = attacker {
            q = q.bind(ip.to_string());
        }
        if let Some((t, ip)) = after {
            q = q.bind(format_ts(t)).bind(format_ts(t)).bind(ip.to_string());
        }
        let rows = q.bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter().map(decode).collect()
    }
}
