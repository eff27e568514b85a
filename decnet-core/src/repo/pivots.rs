//! `pivots`: decky-to-decky connections (an attacker moving laterally inside the fleet), one row
//! per (source decky, destination decky, port, protocol). Re-recording merges (first_seen min,
//! last_seen max).
//!
//! Written by the correlator (inside its [`super::intel_batch::IntelBatch`]). Read by the
//! tests.
use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, name},
    decode::Decoder,
};
use crate::{model::Pivot, time_fmt::format_ts};

/// The stored columns, in insert order; the first four are the key.
const COLUMNS: [&str; 6] = [
    "src_decky",
    "dst_decky",
    "dst_port",
    "proto",
    "first_seen",
    "last_seen",
];
const MERGE: [(&str, Merge); 2] = [("first_seen", Merge::Min), ("last_seen", Merge::Max)];

fn decode(row: &sqlx::any::AnyRow) -> Result<Pivot, RepoError> {
    let d = Decoder::new(row, "pivots");
    Ok(Pivot {
        src_decky: d.text("src_decky")?,
        dst_decky: d.text("dst_decky")?,
        dst_port: d.int("dst_port")?,
        proto: d.int("proto")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
    })
}

impl WriteTx {
    pub async fn upsert_pivots(&mut self, ps: &[Pivot]) -> Result<u64, RepoError> {
        if ps.is_empty() {
            return Ok(0);
        }
        let tail = self.dialect.upsert_tail("pivots", &COLUMNS[..4], &MERGE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "pivots",
                columns: &COLUMNS,
                tail: &tail,
            },
            ps,
            |q: AnyQuery<'_>, p: &Pivot| {
                q.bind(name(&p.src_decky))
                    .bind(name(&p.dst_decky))
                    .bind(i64::from(p.dst_port))
                    .bind(i64::from(p.proto))
                    .bind(format_ts(p.first_seen_ns))
                    .bind(format_ts(p.last_seen_ns))
            },
        )
        .await
    }
}

impl Repository {
    /// Every pivot, ordered by key.
    pub async fn pivots(&self) -> Result<Vec<Pivot>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM pivots ORDER BY src_decky, dst_decky, dst_port, proto",
            COLUMNS.join(", ")
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }
}

/// Where a page of [`Repository::list_pivots`] starts: after this pivot's (last seen, key).
pub type PivotCursor = (i64, String, String, u16, u8);

impl Repository {
    /// Pivots, most recent first (by last seen, then key), optionally from or to one decky; at
    /// most `limit`, after `after`. The API's listing.
    pub async fn list_pivots(
        &self,
        decky: Option<&str>,
        after: Option<PivotCursor>,
        limit: u32,
    ) -> Result<Vec<Pivot>, RepoError> {
        let mut sql = format!("SELECT {} FROM pivots WHERE 1 = 1", COLUMNS.join(", "));
        if decky.is_some() {
            sql.push_str(" AND (src_decky = ? OR dst_decky = ?)");
        }
        if after.is_some() {
            sql.push_str(
                " AND (last_seen < ? OR (last_seen = ? AND (src_decky < ? OR (src_decky = ? AND \
                 (dst_decky < ? OR (dst_decky = ? AND (dst_port < ? OR (dst_port = ? AND proto < ?))))))))",
            );
        }
        sql.push_str(
            " ORDER BY last_seen DESC, src_decky DESC, dst_decky DESC, dst_port DESC, proto DESC LIMIT ?",
        );
        let mut q = sqlx::query(&sql);
        if let Some(d) = decky {
            q = q.bind(name(d)).bind(name(d));
        }
        if let Some((t, src, dst, port, proto)) = after {
            q = q
                .bind(format_ts(t))
                .bind(format_ts(t))
                .bind(src.clone())
                .bind(src)
                .bind(dst.clone())
                .bind(dst)
                .bind(i64::from(port))
                .bind(i64::from(port))
                .bind(i64::from(proto));
        }
        let rows = q.bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter().map(decode).collect()
    }
}
