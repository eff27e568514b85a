//! `scans`: an attacker's scan episodes per kind (ports probed, hosts, rate, whether the episode
//! passed the detection thresholds). Unique per (attacker, kind, started_at).
//!
//! Derived from stored flows and events, so recomputed rather than merged:
//! [`WriteTx::replace_scans`] replaces the episodes of one (attacker, kind) from a point in time
//! on (inside the correlator's [`super::intel_batch::IntelBatch`]). Read by the correlator
//! (where a recomputation starts) and the profiler (detected episodes).
use std::{net::IpAddr, sync::LazyLock};

use super::{
    LIST_MAX, Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, json, name, placeholders, select_sql},
    decode::{Decoder, Src, sat},
    listing::each_row_of_ips,
};
use crate::{model::Scan, time_fmt::format_ts};

/// The stored columns (besides `id`), in insert order; the first three are the key.
const COLUMNS: [&str; 11] = [
    "attacker_ip",
    "kind",
    "started_at",
    "ended_at",
    "probes",
    "port_count",
    "ports",
    "host_count",
    "hosts",
    "rate_per_min",
    "detected",
];
const REPLACE: [(&str, Merge); 8] = [
    ("ended_at", Merge::Replace),
    ("probes", Merge::Replace),
    ("port_count", Merge::Replace),
    ("ports", Merge::Replace),
    ("host_count", Merge::Replace),
    ("hosts", Merge::Replace),
    ("rate_per_min", Merge::Replace),
    ("detected", Merge::Replace),
];

/// `SELECT id, <COLUMNS> FROM scans`.
static SELECT: LazyLock<String> = LazyLock::new(|| select_sql("scans", &COLUMNS));

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Scan, RepoError> {
    let d = Decoder::new(row, "scans");
    Ok(Scan {
        attacker_ip: d.ip("attacker_ip")?,
        kind: d.text("kind")?,
        started_ns: d.ts("started_at")?,
        ended_ns: d.ts("ended_at")?,
        probes: d.u64("probes")?,
        port_count: d.u64("port_count")?,
        ports: d.json("ports")?,
        host_count: d.u64("host_count")?,
        hosts: d.json("hosts")?,
        rate_per_min: d.u64("rate_per_min")?,
        detected: d.flag("detected")?,
    })
}

/// The scan episodes of one (attacker, kind) from `from_ns` on, recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReplace {
    pub attacker_ip: IpAddr,
    pub kind: String,
    pub from_ns: i64,
    pub scans: Vec<Scan>,
}

impl WriteTx {
    /// Replaces the scan episodes of one (attacker, kind) from `from_ns` on.
    pub async fn replace_scans(&mut self, r: &ScanReplace) -> Result<u64, RepoError> {
        let starts: Vec<String> = r.scans.iter().map(|s| format_ts(s.started_ns)).collect();
        let mut sql =
            "DELETE FROM scans WHERE attacker_ip = ? AND kind = ? AND started_at >= ?".to_owned();
        if !starts.is_empty() {
            sql.push_str(&format!(
                " AND started_at NOT IN ({})",
                placeholders(starts.len())
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(r.attacker_ip.to_string())
            .bind(name(&r.kind))
            .bind(format_ts(r.from_ns));
        for s in &starts {
            q = q.bind(s.clone());
        }
        let mut n = q.execute(&mut *self.tx).await?.rows_affected();
        if r.scans.is_empty() {
            return Ok(n);
        }
        let tail = self.dialect.upsert_tail("scans", &COLUMNS[..3], &REPLACE);
        n += insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "scans",
                columns: &COLUMNS,
                tail: &tail,
            },
            &r.scans,
            |q: AnyQuery<'_>, s: &Scan| {
                let ports: Vec<u16> = s.ports.iter().copied().take(LIST_MAX).collect();
                let hosts: Vec<String> = s.hosts.iter().take(LIST_MAX).map(|h| name(h)).collect();
                q.bind(s.attacker_ip.to_string())
                    .bind(name(&s.kind))
                    .bind(format_ts(s.started_ns))
                    .bind(format_ts(s.ended_ns))
                    .bind(sat(s.probes))
                    .bind(sat(s.port_count))
                    .bind(json(&ports))
                    .bind(sat(s.host_count))
                    .bind(json(&hosts))
                    .bind(sat(s.rate_per_min))
                    .bind(i64::from(s.detected))
            },
        )
        .await?;
        Ok(n)
    }
}

impl Repository {
    /// The start of the newest stored scan episode of (ip, kind) that started at or before
    /// `at_ns`.
    pub async fn scan_start_before(
        &self,
        ip: IpAddr,
        kind: &str,
        at_ns: i64,
    ) -> Result<Option<i64>, RepoError> {
        let row = sqlx::query(
            "SELECT started_at FROM scans WHERE attacker_ip = ? AND kind = ? AND started_at <= ? \
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(ip.to_string())
        .bind(name(kind))
        .bind(format_ts(at_ns))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Decoder::new(&r, "scans").ts("started_at"))
            .transpose()
    }

    /// The start of the newest stored episode of every (attacker, kind) of `ips`.
    pub async fn latest_scan_starts(
        &self,
        ips: &[IpAddr],
    ) -> Result<Vec<(IpAddr, String, i64)>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| {
                format!(
                    "SELECT attacker_ip, kind, MAX(started_at) AS started_at FROM scans \
                 WHERE attacker_ip IN ({list}) GROUP BY attacker_ip, kind"
                )
            },
            Vec::new(),
            |out, row| {
                let d = Decoder::new(row, "scans");
                out.push((d.ip("attacker_ip")?, d.text("kind")?, d.ts("started_at")?));
                Ok(())
            },
        )
        .await
    }

    /// Scan episodes of `ip` (`detected_only`: those that passed the thresholds), in time order.
    pub async fn scan_episodes(
        &self,
        ip: IpAddr,
        detected_only: bool,
    ) -> Result<Vec<Scan>, RepoError> {
        let rows = sqlx::query(&format!(
            "{} WHERE attacker_ip = ?{} ORDER BY started_at, kind",
            *SELECT,
            // `+ 0`: an expression, not the column, so that SQLite reads the attacker's rows by
            // its key instead of every detected scan by `scans_detected`.
            if detected_only {
                " AND detected + 0 = 1"
            } else {
                ""
            }
        ))
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }
}

impl Repository {
    /// The detected scan episodes of each of `ips`, each attacker's in the order of
    /// [`Repository::scan_episodes`] (start, kind): the profiler's batch read.
    pub async fn detected_scans_of(&self, ips: &[IpAddr]) -> Result<Vec<Scan>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| {
                format!(
                    "{} WHERE attacker_ip IN ({}) AND detected + 0 = 1 \
                 ORDER BY attacker_ip, started_at, kind",
                    *SELECT, list
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

/// Where a page of [`Repository::list_scans`] starts: after this (start, id).
pub type ScanCursor = (i64, i64);

impl Repository {
    /// The detected scan episodes, newest first (by start, then id), optionally of one
    /// attacker, one kind, or starting at or after `since_ns`; at most `limit`, after `after`.
    /// Each with its id (the page's cursor is the last row's (start, id)). The API's listing.
    pub async fn list_scans(
        &self,
        attacker: Option<IpAddr>,
        kind: Option<&str>,
        since_ns: Option<i64>,
        after: Option<ScanCursor>,
        limit: u32,
    ) -> Result<Vec<(i64, Scan)>, RepoError> {
        let mut sql = format!("{} WHERE detected = 1", *SELECT);
        if attacker.is_some() {
            sql.push_str(" AND attacker_ip = ?");
        }
        if kind.is_some() {
            sql.push_str(" AND kind = ?");
        }
        if since_ns.is_some() {
            sql.push_str(" AND started_at >= ?");
        }
        if after.is_some() {
            sql.push_str(" AND (started_at < ? OR (started_at = ? AND id < ?))");
        }
        sql.push_str(" ORDER BY started_at DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(ip) = attacker {
            q = q.bind(ip.to_string());
        }
        if let Some(k) = kind {
            q = q.bind(name(k));
        }
        if let Some(t) = since_ns {
            q = q.bind(format_ts(t));
        }
        if let Some((t, id)) = after {
            q = q.bind(format_ts(t)).bind(format_ts(t)).bind(id);
        }
        let rows = q.bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| Ok((Decoder::new(r, "scans").i64("id")?, decode(r)?)))
            .collect()
    }
}
