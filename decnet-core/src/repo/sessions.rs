//! `sessions`: an attacker's sessions on one (decky, service), each with its event count,
//! bytes and commands. Unique per (attacker, decky, service, started_at).
//!
//! Everything here is derived from stored events, so the correlator does not merge sessions
//! but recomputes them: [`WriteTx::replace_sessions`] replaces the sessions of one key from a
//! point in time on (inside its [`super::intel_batch::IntelBatch`]), deleting those the
//! recomputation no longer produces. Read by the correlator (where a recomputation starts),
//! the profiler, the attacker counters' refresh (in `attackers`) and the API (filtered listing,
//! live feed).
use std::{collections::HashMap, net::IpAddr, sync::LazyLock};

use serde::Serialize;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, json, name, placeholders, select_sql},
    decode::{Decoder, Src, sat},
    limits,
    listing::{Arg, Where, each_row_of_ips, newest_first, page_limit},
};
use crate::{model::Session, time_fmt::format_ts};

/// The stored columns (besides `id`), in insert order; the first four are the key.
const COLUMNS: [&str; 9] = [
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
const REPLACE: [(&str, Merge); 5] = [
    ("ended_at", Merge::Replace),
    ("event_count", Merge::Replace),
    ("bytes", Merge::Replace),
    ("commands", Merge::Replace),
    ("closed", Merge::Replace),
];

/// `SELECT id, <COLUMNS> FROM sessions`.
static SELECT: LazyLock<String> = LazyLock::new(|| select_sql("sessions", &COLUMNS));

/// A session with its row id (the listing cursor).
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub id: i64,
    #[serde(flatten)]
    pub session: Session,
}

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<SessionRow, RepoError> {
    let d = Decoder::new(row, "sessions");
    Ok(SessionRow {
        id: d.i64("id")?,
        session: Session {
            attacker_ip: d.ip("attacker_ip")?,
            decky: d.text("decky")?,
            service: d.text("service")?,
            started_ns: d.ts("started_at")?,
            ended_ns: d.ts("ended_at")?,
            event_count: d.u64("event_count")?,
            bytes: d.u64("bytes")?,
            commands: d.json("commands")?,
            closed: d.flag("closed")?,
        },
    })
}

/// The sessions of one (attacker, decky, service) from `from_ns` on, recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReplace {
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub from_ns: i64,
    pub sessions: Vec<Session>,
}

/// Filters of [`Repository::list_sessions`].
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub attacker: Option<IpAddr>,
    pub decky: Option<String>,
    pub service: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

impl WriteTx {
    /// Replaces the sessions of one key from `from_ns` on by `r.sessions` (which must all start
    /// at or after `from_ns`): stored ones the recomputation no longer has are deleted.
    pub async fn replace_sessions(&mut self, r: &SessionReplace) -> Result<u64, RepoError> {
        let (ip, decky, service) = (r.attacker_ip.to_string(), name(&r.decky), name(&r.service));
        let starts: Vec<String> = r.sessions.iter().map(|s| format_ts(s.started_ns)).collect();
        let mut sql = "DELETE FROM sessions WHERE attacker_ip = ? AND decky = ? AND service = ? \
                       AND started_at >= ?"
            .to_owned();
        if !starts.is_empty() {
            sql.push_str(&format!(
                " AND started_at NOT IN ({})",
                placeholders(starts.len())
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(ip)
            .bind(decky)
            .bind(service)
            .bind(format_ts(r.from_ns));
        for s in &starts {
            q = q.bind(s.clone());
        }
        let n = q.execute(&mut *self.tx).await?.rows_affected();
        Ok(n + self.upsert_sessions(&r.sessions).await?)
    }
}

/// Bytes of a flow that started at `at_ns`, added to the stored sessions of one key that
/// started before `before_ns` and whose span widened by `slack_ns` contains `at_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBytes {
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub at_ns: i64,
    pub slack_ns: i64,
    pub before_ns: i64,
    pub bytes: u64,
}

impl WriteTx {
    /// Writes whole session rows: each replaces the stored one of the same key and start (the
    /// correlator's incremental path, which knows the rows it extends).
    pub async fn upsert_sessions(&mut self, rows: &[Session]) -> Result<u64, RepoError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("sessions", &COLUMNS[..4], &REPLACE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "sessions",
                columns: &COLUMNS,
                tail: &tail,
            },
            rows,
            bind_session,
        )
        .await
    }

    /// Applies [`SessionBytes`] additions.
    pub async fn add_session_bytes(&mut self, adds: &[SessionBytes]) -> Result<u64, RepoError> {
        let mut n = 0;
        for a in adds {
            n += sqlx::query(
                "UPDATE sessions SET bytes = bytes + ? WHERE attacker_ip = ? AND decky = ? \
                 AND service = ? AND started_at < ? AND started_at <= ? AND ended_at >= ?",
            )
            .bind(sat(a.bytes))
            .bind(a.attacker_ip.to_string())
            .bind(name(&a.decky))
            .bind(name(&a.service))
            .bind(format_ts(a.before_ns))
            .bind(format_ts(a.at_ns.saturating_add(a.slack_ns)))
            .bind(format_ts(a.at_ns.saturating_sub(a.slack_ns)))
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        }
        Ok(n)
    }
}

fn bind_session<'q>(q: AnyQuery<'q>, s: &'q Session) -> AnyQuery<'q> {
    let commands: Vec<std::borrow::Cow<'_, str>> = s
        .commands
        .iter()
        .map(|c| limits::text(c, limits::SHORT_TEXT))
        .collect();
    q.bind(s.attacker_ip.to_string())
        .bind(name(&s.decky))
        .bind(name(&s.service))
        .bind(format_ts(s.started_ns))
        .bind(format_ts(s.ended_ns))
        .bind(sat(s.event_count))
        .bind(sat(s.bytes))
        .bind(json(&commands))
        .bind(i64::from(s.closed))
}

impl Repository {
    /// The newest session of every (decky, service) of each of `ips` (the correlator's starting
    /// point for extending them).
    pub async fn latest_sessions(&self, ips: &[IpAddr]) -> Result<Vec<Session>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| format!(
                "{} WHERE attacker_ip IN ({}) AND started_at = (SELECT MAX(t.started_at) FROM \
                 sessions t WHERE t.attacker_ip = sessions.attacker_ip AND t.decky = sessions.decky \
                 AND t.service = sessions.service)",
                *SELECT,
                list
            ),
            Vec::new(),
            |out, row| {
                out.push(decode(row)?.session);
                Ok(())
            },
        )
        .await
    }

    /// How many sessions of one key started at or after `from_ns`.
    pub async fn count_sessions_from(
        &self,
        ip: IpAddr,
        decky: &str,
        service: &str,
        from_ns: i64,
    ) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE attacker_ip = ? AND decky = ? AND service = ? \
             AND started_at >= ?",
        )
        .bind(ip.to_string())
        .bind(name(decky))
        .bind(name(service))
        .bind(format_ts(from_ns))
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Σ commands over the sessions of `ip` (the profiler's "interactive" signal), without
    /// reading the sessions that have none.
    pub async fn session_commands(&self, ip: IpAddr) -> Result<u64, RepoError> {
        let rows =
            sqlx::query("SELECT commands FROM sessions WHERE attacker_ip = ? AND commands <> '[]'")
                .bind(ip.to_string())
                .fetch_all(self.pool())
                .await?;
        let mut n = 0u64;
        for r in &rows {
            let c: Vec<String> = Decoder::new(r, "sessions").json("commands")?;
            n = n.saturating_add(c.len() as u64);
        }
        Ok(n)
    }

    /// Σ commands over the sessions of each of `ips` (absent: none): the profiler's batch read
    /// of [`Repository::session_commands`].
    pub async fn session_commands_of(
        &self,
        ips: &[IpAddr],
    ) -> Result<HashMap<IpAddr, u64>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| {
                format!(
                    "SELECT attacker_ip, commands FROM sessions WHERE attacker_ip IN ({list}) \
                 AND commands <> '[]'"
                )
            },
            HashMap::with_capacity(ips.len()),
            |out: &mut HashMap<IpAddr, u64>, r| {
                let d = Decoder::new(r, "sessions");
                let c: Vec<String> = d.json("commands")?;
                let n = out.entry(d.ip("attacker_ip")?).or_default();
                *n = n.saturating_add(c.len() as u64);
                Ok(())
            },
        )
        .await
    }

    /// The sessions of `ip`, in start order.
    pub async fn sessions(&self, ip: IpAddr) -> Result<Vec<Session>, RepoError> {
        let rows = sqlx::query(&format!(
            "{} WHERE attacker_ip = ? ORDER BY started_at, id",
            *SELECT
        ))
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| decode(r).map(|r| r.session)).collect()
    }

    /// Sessions matching `f`, newest (highest id) first.
    pub async fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(ip) = f.attacker {
            w.text("attacker_ip = ?", ip.to_string());
        }
        if let Some(v) = &f.decky {
            w.text("decky = ?", name(v));
        }
        if let Some(v) = &f.service {
            w.text("service = ?", name(v));
        }
        let (tail, limit) = newest_first(f.limit);
        let rows = w.fetch(self, &SELECT, tail, &limit).await?;
        rows.iter().map(decode).collect()
    }

    /// Sessions with `id > after`, oldest first (the live feed).
    pub async fn sessions_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SessionRow>, RepoError> {
        let mut w = Where::default();
        w.int("id > ?", after);
        let rows = w
            .fetch(
                self,
                &SELECT,
                " ORDER BY id LIMIT ?",
                &[Arg::Int(page_limit(limit))],
            )
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The highest session id (0 when there are none): where a live feed starts.
    pub async fn max_session_id(&self) -> Result<i64, RepoError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM sessions")
            .fetch_one(self.pool())
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The start of the newest stored session of the key that started at or before `at_ns`.
    pub async fn session_start_before(
        &self,
        ip: IpAddr,
        decky: &str,
        service: &str,
        at_ns: i64,
    ) -> Result<Option<i64>, RepoError> {
        let row = sqlx::query(
            "SELECT started_at FROM sessions WHERE attacker_ip = ? AND decky = ? AND service = ? \
             AND started_at <= ? ORDER BY started_at DESC LIMIT 1",
        )
        .bind(ip.to_string())
        .bind(name(decky))
        .bind(name(service))
        .bind(format_ts(at_ns))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Decoder::new(&r, "sessions").ts("started_at"))
            .transpose()
    }
}
