//! `flows`: one row per flow direction from the sensor. Identity: bridge + 5-tuple + vlan +
//! first_seen; re-exports merge (counters max, flags union, last_seen max, ended sticky).
//!
//! Written by the sniffer (batched upserts: on a SQLite file through the bulk write path,
//! [`super::sqlite_writer`], one cached prepared single-row upsert per flow; elsewhere
//! multi-row upserts through sqlx — the same SQL either way). Read by the correlator (new flows after
//! its cursor, an attacker's flows, the bytes of a session's flows), the attacker counters'
//! refresh (in `attackers`) and the API (filtered listing, scan summary).
use std::{net::IpAddr, sync::LazyLock};

use serde::Serialize;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, insert_sql, select_sql},
    decode::{Decoder, Src, sat},
    limits,
    listing::{Where, decoded_after, newest_first, page_limit},
};
use crate::{model::FlowRecord, time_fmt::format_ts};

use super::storage::{Purge, delete_candidates};

/// Retention keeps a flow that a session or scan episode still reaching into the kept window
/// may be recomputed from: a session of either end's address, or a scan episode of its source,
/// that started at or before the flow and ended at or after the cutoff. Three binds: the cutoff.
const KEPT_FOR_DERIVED: &str = "NOT EXISTS (SELECT 1 FROM sessions s WHERE \
     s.attacker_ip = flows.src_ip AND s.started_at <= flows.first_seen AND s.ended_at >= ?) \
     AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.attacker_ip = flows.dst_ip \
     AND s.started_at <= flows.first_seen AND s.ended_at >= ?) \
     AND NOT EXISTS (SELECT 1 FROM scans c WHERE c.attacker_ip = flows.src_ip \
     AND c.started_at <= flows.first_seen AND c.ended_at >= ?)";

/// The stored columns (besides `id`), in insert order.
const COLUMNS: [&str; 14] = [
    "bridge",
    "port",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "proto",
    "vlan",
    "packets",
    "bytes",
    "tcp_flags",
    "first_seen",
    "last_seen",
    "ended",
];
const KEY: [&str; 8] = [
    "bridge",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "proto",
    "vlan",
    "first_seen",
];
const MERGE: [(&str, Merge); 5] = [
    ("packets", Merge::Max),
    ("bytes", Merge::Max),
    ("tcp_flags", Merge::Or),
    ("last_seen", Merge::Max),
    ("ended", Merge::Max),
];

/// `SELECT id, <COLUMNS> FROM flows`.
static SELECT: LazyLock<String> = LazyLock::new(|| select_sql("flows", &COLUMNS));

fn bind<'q>(q: AnyQuery<'q>, f: &'q FlowRecord) -> AnyQuery<'q> {
    q.bind(limits::text(&f.bridge, limits::NAME).into_owned())
        .bind(limits::text(&f.port, limits::NAME).into_owned())
        .bind(f.src_ip.to_string())
        .bind(f.dst_ip.to_string())
        .bind(i64::from(f.src_port))
        .bind(i64::from(f.dst_port))
        .bind(i64::from(f.proto))
        .bind(i64::from(f.vlan))
        .bind(sat(f.packets))
        .bind(sat(f.bytes))
        .bind(i64::from(f.tcp_flags))
        .bind(format_ts(f.first_seen_ns))
        .bind(format_ts(f.last_seen_ns))
        .bind(i64::from(f.ended))
}

/// A flow with its row id (the listing cursor).
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    pub id: i64,
    #[serde(flatten)]
    pub flow: FlowRecord,
}

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<FlowRow, RepoError> {
    let d = Decoder::new(row, "flows");
    Ok(FlowRow {
        id: d.i64("id")?,
        flow: FlowRecord {
            bridge: d.text("bridge")?,
            port: d.text("port")?,
            src_ip: d.ip("src_ip")?,
            dst_ip: d.ip("dst_ip")?,
            src_port: d.int("src_port")?,
            dst_port: d.int("dst_port")?,
            proto: d.int("proto")?,
            vlan: d.int("vlan")?,
            packets: d.u64("packets")?,
            bytes: d.u64("bytes")?,
            tcp_flags: d.int("tcp_flags")?,
            first_seen_ns: d.ts("first_seen")?,
            last_seen_ns: d.ts("last_seen")?,
            ended: d.flag("ended")?,
        },
    })
}

fn decode_flow<'r>(row: impl Into<Src<'r>>) -> Result<FlowRecord, RepoError> {
    decode(row).map(|r| r.flow)
}

/// Filters of [`Repository::list_flows`].
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub proto: Option<u8>,
    pub since_ns: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// A source that touched many ports or hosts in the window (derived from `flows`).
#[derive(Debug, Clone, Serialize)]
pub struct ScanRow {
    pub src_ip: IpAddr,
    pub ports: u64,
    pub hosts: u64,
    pub flows: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

impl WriteTx {
    /// Inserts or merges `flows` (see the module doc). Returns the affected-row count.
    pub async fn upsert_flows(&mut self, flows: &[FlowRecord]) -> Result<u64, RepoError> {
        if flows.is_empty() {
            return Ok(0);
        }
        let tail = self.dialect.upsert_tail("flows", &KEY, &MERGE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "flows",
                columns: &COLUMNS,
                tail: &tail,
            },
            flows,
            bind,
        )
        .await
    }
}

/// [`WriteTx::upsert_flows`] on the SQLite bulk write path: the same upsert (same columns, key
/// and merges), one cached prepared row at a time. Returns the affected-row count.
pub(crate) fn upsert_native(
    tx: &rusqlite::Transaction<'_>,
    flows: &[FlowRecord],
) -> Result<u64, RepoError> {
    if flows.is_empty() {
        return Ok(0);
    }
    let d = super::Dialect::Sqlite;
    let tail = d.upsert_tail("flows", &KEY, &MERGE);
    let mut stmt = tx.prepare_cached(&insert_sql("INSERT INTO", "flows", &COLUMNS, 1, &tail))?;
    let mut affected = 0u64;
    for f in flows {
        let n = stmt.execute((
            &*limits::text(&f.bridge, limits::NAME),
            &*limits::text(&f.port, limits::NAME),
            f.src_ip.to_string(),
            f.dst_ip.to_string(),
            i64::from(f.src_port),
            i64::from(f.dst_port),
            i64::from(f.proto),
            i64::from(f.vlan),
            sat(f.packets),
            sat(f.bytes),
            i64::from(f.tcp_flags),
            format_ts(f.first_seen_ns),
            format_ts(f.last_seen_ns),
            i64::from(f.ended),
        ))?;
        affected += n as u64;
    }
    Ok(affected)
}

impl Repository {
    /// [`WriteTx::upsert_flows`] in its own transaction.
    pub async fn upsert_flows(&self, flows: &[FlowRecord]) -> Result<u64, RepoError> {
        if flows.is_empty() {
            return Ok(0);
        }
        Ok(self.write(&[super::Write::Flows(flows)]).await?[0])
    }

    /// All stored flows, ordered by id.
    pub async fn all_flows(&self) -> Result<Vec<FlowRecord>, RepoError> {
        let rows = sqlx::query(&format!("{} ORDER BY id", *SELECT))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_flow).collect()
    }

    /// Up to `limit` flows with `id > after`, in id order, with their ids: how the correlator
    /// reads new flows from its cursor.
    pub async fn flows_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FlowRecord)>, RepoError> {
        decoded_after(self, &SELECT, after, limit, |c| {
            decode(c).map(|r| (r.id, r.flow))
        })
        .await
    }

    /// Flows from `ip` that started at or after `from_ns`, in time order.
    /// (Only rows up to id `max_id`: what the correlator has taken in.)
    pub async fn flows_from(
        &self,
        ip: IpAddr,
        from_ns: i64,
        max_id: i64,
    ) -> Result<Vec<FlowRecord>, RepoError> {
        let mut w = Where::default();
        w.text("src_ip = ?", ip.to_string());
        w.text("first_seen >= ?", format_ts(from_ns));
        w.int("id <= ?", max_id);
        w.decoded(self, &SELECT, " ORDER BY first_seen, id", &[], |c| {
            decode_flow(c)
        })
        .await
    }

    /// Flows that started in `[from_ns, to_ns]` with ids up to `max_id`, in id order.
    pub async fn flows_between(
        &self,
        from_ns: i64,
        to_ns: i64,
        max_id: i64,
    ) -> Result<Vec<FlowRecord>, RepoError> {
        let mut w = Where::default();
        w.text("first_seen >= ?", format_ts(from_ns));
        w.text("first_seen <= ?", format_ts(to_ns));
        w.int("id <= ?", max_id);
        w.decoded(self, &SELECT, " ORDER BY id", &[], |c| decode_flow(c))
            .await
    }

    /// Flows matching `f`, newest (highest id) first.
    pub async fn list_flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(ip) = f.src_ip {
            w.text("src_ip = ?", ip.to_string());
        }
        if let Some(ip) = f.dst_ip {
            w.text("dst_ip = ?", ip.to_string());
        }
        if let Some(p) = f.dst_port {
            w.int("dst_port = ?", i64::from(p));
        }
        if let Some(p) = f.proto {
            w.int("proto = ?", i64::from(p));
        }
        if let Some(t) = f.since_ns {
            w.text("first_seen >= ?", format_ts(t));
        }
        let (tail, limit) = newest_first(f.limit);
        let rows = w.fetch(self, &SELECT, tail, &limit).await?;
        rows.iter().map(decode).collect()
    }

    /// Bytes of the flows between `attacker` and `decky_ip` on `port`, both directions (the
    /// attacker's flows to the port and the port's flows back), that started in
    /// `[from_ns, to_ns]`. Both come by the (source, start) index: the cost follows the flows of
    /// that span. Only flows up to id `max_id` count (those the correlator has taken in; the
    /// others are added when it takes them).
    pub async fn flow_bytes(
        &self,
        attacker: IpAddr,
        decky_ip: IpAddr,
        port: u16,
        from_ns: i64,
        to_ns: i64,
        max_id: i64,
    ) -> Result<u64, RepoError> {
        let (a, d) = (attacker.to_string(), decky_ip.to_string());
        let sum = self.dialect().sum_int("bytes");
        let mut total = 0u64;
        for (src, dst, port_col) in [(&a, &d, "dst_port"), (&d, &a, "src_port")] {
            let n: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT {sum} FROM flows WHERE src_ip = ? AND first_seen >= ? AND first_seen <= ? \
                 AND dst_ip = ? AND {port_col} = ? AND id <= ?"
            ))
            .bind(src.clone())
            .bind(format_ts(from_ns))
            .bind(format_ts(to_ns))
            .bind(dst.clone())
            .bind(i64::from(port))
            .bind(max_id)
            .fetch_one(self.pool())
            .await?;
            total = total.saturating_add(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0));
        }
        Ok(total)
    }

    /// Sources with at least `min_ports` distinct destination ports or `min_hosts` distinct
    /// destination hosts in flows that started at or after `since_ns`, widest first.
    pub async fn flow_scans(
        &self,
        since_ns: i64,
        min_ports: u32,
        min_hosts: u32,
        limit: u32,
    ) -> Result<Vec<ScanRow>, RepoError> {
        let rows = sqlx::query(
            "SELECT src_ip, COUNT(DISTINCT dst_port) AS ports, COUNT(DISTINCT dst_ip) AS hosts, \
             COUNT(*) AS n, MIN(first_seen) AS first_ts, MAX(last_seen) AS last_ts \
             FROM flows WHERE first_seen >= ? GROUP BY src_ip \
             HAVING COUNT(DISTINCT dst_port) >= ? OR COUNT(DISTINCT dst_ip) >= ? \
             ORDER BY ports DESC, hosts DESC, src_ip LIMIT ?",
        )
        .bind(format_ts(since_ns))
        .bind(i64::from(min_ports))
        .bind(i64::from(min_hosts))
        .bind(page_limit(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "flows");
                Ok(ScanRow {
                    src_ip: d.ip("src_ip")?,
                    ports: d.u64("ports")?,
                    hosts: d.u64("hosts")?,
                    flows: d.u64("n")?,
                    first_seen_ns: d.ts("first_ts")?,
                    last_seen_ns: d.ts("last_ts")?,
                })
            })
            .collect()
    }

    /// Retention, one batch: deletes up to `limit` flows that started and were last seen before
    /// `before_ns`, with ids up to `max_id` (what the correlator has taken in), oldest first
    /// from `from_ns` on, in one short write transaction. Flows a session or scan episode still
    /// reaching into the kept window may be recomputed from stay; everything derived (scans,
    /// session bytes, attackers' flow counts) stays. Candidates are chosen by the start-time
    /// index before the transaction; the transaction deletes them by id, checking every
    /// condition again.
    pub async fn purge_flows(
        &self,
        before_ns: i64,
        max_id: i64,
        from_ns: i64,
        limit: u32,
    ) -> Result<Purge, RepoError> {
        let (from, before) = (format_ts(from_ns), format_ts(before_ns));
        let rows = sqlx::query(&format!(
            "SELECT id, first_seen FROM flows WHERE first_seen >= ? AND first_seen < ? \
             AND last_seen < ? AND id <= ? AND {KEPT_FOR_DERIVED} ORDER BY first_seen LIMIT ?"
        ))
        .bind(from)
        .bind(before.clone())
        .bind(before.clone())
        .bind(max_id)
        .bind(before.clone())
        .bind(before.clone())
        .bind(before.clone())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut next_ns = from_ns;
        for row in &rows {
            let d = Decoder::new(row, "flows");
            ids.push(d.i64("id")?);
            next_ns = d.ts("first_seen")?;
        }
        delete_candidates(
            self,
            &ids,
            next_ns,
            |list| {
                format!(
                    "DELETE FROM flows WHERE id IN ({list}) AND first_seen < ? AND last_seen < ? \
                     AND id <= ? AND {KEPT_FOR_DERIVED}"
                )
            },
            move |q| {
                q.bind(before.clone())
                    .bind(before.clone())
                    .bind(max_id)
                    .bind(before.clone())
                    .bind(before.clone())
                    .bind(before.clone())
            },
        )
        .await
    }

    /// The highest flow id (0 when there are none).
    pub async fn max_flow_id(&self) -> Result<i64, RepoError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM flows")
            .fetch_one(self.pool())
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub async fn count_flows(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flows")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
