//! `probe_results` and `probe_vantages`: the prober's realism checks of the deckies, one row
//! per (decky, check, subject) carrying its current outcome, and the addresses the prober
//! probes from.
//!
//! Written by `decnet prober` (one transaction per sweep); read by the API (the dashboard's
//! "Realism" view) and the tests. `probe_vantages` is read by the correlator, which never
//! counts those addresses as attackers.
//!
//! Outcome rules ([`WriteTx::record_probe_results`]): a new (decky, check, subject) is inserted
//! with `first_seen = last_seen = now`; the same outcome again (pass stays pass, a finding
//! stays a finding) moves `last_seen` and updates severity, expected and seen; a finding that
//! now passes becomes `pass` with `resolved_at = now` (and `first_seen = now`: the pass is new);
//! a pass that now fails becomes the finding with `first_seen = now` and no `resolved_at`.
use std::net::IpAddr;

use super::{RepoError, Repository, WriteTx, bulk::name, decode::Decoder, limits};
use crate::{
    model::{ProbeOutcome, ProbeResult, Severity},
    time_fmt::{format_ts, parse_ts},
};

/// The stored columns (besides `id`).
const COLUMNS: [&str; 9] = [
    "decky",
    "check_name",
    "subject",
    "severity",
    "expected",
    "seen",
    "first_seen",
    "last_seen",
    "resolved_at",
];

/// Expected/seen texts are bounded (they quote banners and headers of the deckies).
const DETAIL_MAX: usize = 4096;
/// Subjects (`https/8443`, `stack`) are short.
const SUBJECT_MAX: usize = 128;

fn decode(row: &sqlx::any::AnyRow) -> Result<ProbeResult, RepoError> {
    let d = Decoder::new(row, "probe_results");
    let sev = d.text("severity")?;
    let severity = Severity::parse(&sev).ok_or_else(|| RepoError::Corrupt {
        table: "probe_results",
        id: d.i64("id").unwrap_or(0),
        column: "severity",
        value: sev.clone(),
        reason: "not a severity".into(),
    })?;
    let resolved_at_ns = match d.opt_text("resolved_at")? {
        None => None,
        Some(t) => Some(parse_ts(&t).map_err(|e| RepoError::Corrupt {
            table: "probe_results",
            id: d.i64("id").unwrap_or(0),
            column: "resolved_at",
            value: t.clone(),
            reason: e.reason.to_string(),
        })?),
    };
    Ok(ProbeResult {
        decky: d.text("decky")?,
        check: d.text("check_name")?,
        subject: d.text("subject")?,
        severity,
        expected: d.text("expected")?,
        seen: d.text("seen")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
        resolved_at_ns,
    })
}

/// What one sweep changed in `probe_results`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeTally {
    /// Rows new to the table.
    pub inserted: u64,
    /// Rows whose outcome stayed (pass or finding).
    pub unchanged: u64,
    /// Findings that now pass.
    pub resolved: u64,
    /// Passes (or resolved findings) that now fail.
    pub regressed: u64,
}

/// Which rows [`Repository::probe_results`] returns.
#[derive(Debug, Clone, Default)]
pub struct ProbeFilter {
    pub decky: Option<String>,
    /// Only rows whose severity is not `pass`.
    pub findings_only: bool,
    pub limit: u32,
}

impl WriteTx {
    /// Stores one sweep's outcomes at `now_ns` (see the module's outcome rules).
    pub async fn record_probe_results(
        &mut self,
        outcomes: &[ProbeOutcome],
        now_ns: i64,
    ) -> Result<ProbeTally, RepoError> {
        let now = format_ts(now_ns);
        let mut tally = ProbeTally::default();
        for o in outcomes {
            let decky = name(&o.decky);
            let check = name(&o.check);
            let subject = limits::text(&o.subject, SUBJECT_MAX).into_owned();
            let expected = limits::text(&o.expected, DETAIL_MAX).into_owned();
            let seen = limits::text(&o.seen, DETAIL_MAX).into_owned();
            let old: Option<String> = sqlx::query_scalar(
                "SELECT severity FROM probe_results WHERE decky = ? AND check_name = ? AND subject = ?",
            )
            .bind(decky.clone())
            .bind(check.clone())
            .bind(subject.clone())
            .fetch_optional(&mut *self.tx)
            .await?;
            let sev = o.severity.as_str();
            match old {
                None => {
                    sqlx::query(&format!(
                        "INSERT INTO probe_results ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                        COLUMNS.join(", ")
                    ))
                    .bind(decky)
                    .bind(check)
                    .bind(subject)
                    .bind(sev)
                    .bind(expected)
                    .bind(seen)
                    .bind(now.clone())
                    .bind(now.clone())
                    .execute(&mut *self.tx)
                    .await?;
                    tally.inserted += 1;
                }
                Some(old) => {
                    let was_pass = old == Severity::Pass.as_str();
                    let is_pass = o.severity == Severity::Pass;
                    let (sql, kind) = match (was_pass, is_pass) {
                        (true, true) | (false, false) => (
                            "UPDATE probe_results SET severity = ?, expected = ?, seen = ?, last_seen = ? \
                             WHERE decky = ? AND check_name = ? AND subject = ?",
                            0,
                        ),
                        (false, true) => (
                            "UPDATE probe_results SET severity = ?, expected = ?, seen = ?, last_seen = ?, \
                             first_seen = last_seen, resolved_at = last_seen \
                             WHERE decky = ? AND check_name = ? AND subject = ?",
                            1,
                        ),
                        (true, false) => (
                            "UPDATE probe_results SET severity = ?, expected = ?, seen = ?, last_seen = ?, \
                             first_seen = last_seen, resolved_at = NULL \
                             WHERE decky = ? AND check_name = ? AND subject = ?",
                            2,
                        ),
                    };
                    // `first_seen = last_seen` and `resolved_at = last_seen` read the new
                    // `last_seen` on MySQL (left to right) but the old one on SQLite: bind the
                    // time again instead.
                    let sql = sql
                        .replace("first_seen = last_seen", "first_seen = ?")
                        .replace("resolved_at = last_seen", "resolved_at = ?");
                    let mut q = sqlx::query(&sql)
                        .bind(sev)
                        .bind(expected)
                        .bind(seen)
                        .bind(now.clone());
                    if kind != 0 {
                        q = q.bind(now.clone());
                    }
                    if kind == 1 {
                        q = q.bind(now.clone());
                    }
                    q.bind(decky)
                        .bind(check)
                        .bind(subject)
                        .execute(&mut *self.tx)
                        .await?;
                    match kind {
                        0 => tally.unchanged += 1,
                        1 => tally.resolved += 1,
                        _ => tally.regressed += 1,
                    }
                }
            }
        }
        Ok(tally)
    }

    /// Records (or refreshes) an address the prober probes from.
    pub async fn record_probe_vantage(
        &mut self,
        ip: IpAddr,
        vantage: &str,
        now_ns: i64,
    ) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM probe_vantages WHERE ip = ?")
            .bind(ip.to_string())
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("INSERT INTO probe_vantages (ip, name, updated_at) VALUES (?, ?, ?)")
            .bind(ip.to_string())
            .bind(name(vantage))
            .bind(format_ts(now_ns))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

impl Repository {
    /// Probe results, worst first (then decky, check, subject), at most `filter.limit` (≥ 1).
    pub async fn probe_results(&self, filter: &ProbeFilter) -> Result<Vec<ProbeResult>, RepoError> {
        let mut sql = format!(
            "SELECT id, {} FROM probe_results WHERE 1 = 1",
            COLUMNS.join(", ")
        );
        if filter.decky.is_some() {
            sql.push_str(" AND decky = ?");
        }
        if filter.findings_only {
            sql.push_str(" AND severity <> 'pass'");
        }
        sql.push_str(
            " ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 \
             WHEN 'low' THEN 3 WHEN 'info' THEN 4 ELSE 5 END, decky, check_name, subject LIMIT ?",
        );
        let mut q = sqlx::query(&sql);
        if let Some(d) = &filter.decky {
            q = q.bind(d.clone());
        }
        let rows = q
            .bind(i64::from(filter.limit.max(1)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The addresses the prober probes from.
    pub async fn probe_vantages(&self) -> Result<Vec<IpAddr>, RepoError> {
        let rows = sqlx::query("SELECT ip FROM probe_vantages ORDER BY ip")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Decoder::new(r, "probe_vantages").ip("ip"))
            .collect()
    }
}
