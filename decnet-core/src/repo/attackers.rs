//! `attackers`: one row per attacker IP, with counters. The correlator adds to the counters
//! what each batch brings ([`WriteTx::add_attackers`]); other writers merge them as maxima
//! ([`WriteTx::upsert_attackers`]); [`WriteTx::refresh_attacker_counts`] re-derives them from
//! the stored facts (events, sessions, credentials, flows), at a cost that grows with them.
//!
//! Written by the correlator (inside its [`super::intel_batch::IntelBatch`]). Read by the
//! profiler (the attacker it profiles), the API (listing joined with the profiler's verdict,
//! the attacker page, the live feed) and the benches.
use std::net::IpAddr;

use serde::Serialize;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::{Decoder, Src, sat},
    listing::{Arg, Where, each_row_of_ips, like_prefix, page_limit, rows_after},
    sqlite_read::{AnyCells, CellError, Cells},
};
use crate::{
    model::{Attacker, AttackerUpdate},
    time_fmt::{format_ts, now_ns, parse_ts},
};

/// The stored columns (besides `id`), in insert order.
const COLUMNS: [&str; 8] = [
    "ip",
    "first_seen",
    "last_seen",
    "event_count",
    "session_count",
    "credential_count",
    "flow_count",
    "updated_at",
];
const MERGE: [(&str, Merge); 7] = [
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
    ("event_count", Merge::Max),
    ("session_count", Merge::Max),
    ("credential_count", Merge::Max),
    ("flow_count", Merge::Max),
    ("updated_at", Merge::Max),
];

const ADD: [(&str, Merge); 7] = [
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
    ("event_count", Merge::Sum),
    ("session_count", Merge::Sum),
    ("credential_count", Merge::Sum),
    ("flow_count", Merge::Sum),
    ("updated_at", Merge::Max),
];

/// What an [`Attacker`] is read from.
const SELECT: &str = "SELECT id, ip, first_seen, last_seen, event_count, session_count, \
                      credential_count, flow_count FROM attackers";
/// The same columns with the profiler's verdict (an [`AttackerRow`]).
const WITH_VERDICT: &str = "SELECT a.id, a.ip, a.first_seen, a.last_seen, a.event_count, \
     a.session_count, a.credential_count, a.flow_count, p.score, p.behaviour FROM attackers a \
     LEFT JOIN attacker_profiles p ON p.attacker_ip = a.ip";

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Attacker, RepoError> {
    let d = Decoder::new(row, "attackers");
    Ok(Attacker {
        id: d.i64("id")?,
        ip: d.ip("ip")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
        event_count: d.u64("event_count")?,
        session_count: d.u64("session_count")?,
        credential_count: d.u64("credential_count")?,
        flow_count: d.u64("flow_count")?,
    })
}

/// Sort orders of [`Repository::list_attackers`], newest / busiest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttackerSort {
    #[default]
    LastSeen,
    Events,
}

/// Keyset position in an attacker listing: the sort key and id of the last row seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackerCursor {
    LastSeen { last_seen_ns: i64, id: i64 },
    Events { events: i64, id: i64 },
}

/// Filters of [`Repository::list_attackers`].
#[derive(Debug, Clone, Default)]
pub struct AttackerFilter {
    pub sort: AttackerSort,
    /// Addresses starting with this text.
    pub ip_prefix: Option<String>,
    pub min_events: Option<u64>,
    pub after: Option<AttackerCursor>,
    pub limit: u32,
}

/// An attacker row with the profiler's verdict when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct AttackerRow {
    #[serde(flatten)]
    pub attacker: Attacker,
    pub score: Option<u8>,
    pub behaviour: Option<String>,
}

impl AttackerRow {
    /// The cursor that continues a listing after this row.
    pub fn cursor(&self, sort: AttackerSort) -> AttackerCursor {
        match sort {
            AttackerSort::LastSeen => AttackerCursor::LastSeen {
                last_seen_ns: self.attacker.last_seen_ns,
                id: self.attacker.id,
            },
            AttackerSort::Events => AttackerCursor::Events {
                events: i64::try_from(self.attacker.event_count).unwrap_or(i64::MAX),
                id: self.attacker.id,
            },
        }
    }
}

/// An attacker listing row borrowed from the database's row, times as their stored text
/// ([`format_ts`] form): what [`Repository::each_attacker`] hands its visitor, so that a page
/// can be encoded without a copy of each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttackerRef<'r> {
    pub id: i64,
    /// A valid IP address's text.
    pub ip: &'r str,
    pub first_seen: &'r str,
    pub last_seen: &'r str,
    pub event_count: u64,
    pub session_count: u64,
    pub credential_count: u64,
    pub flow_count: u64,
    pub score: Option<u8>,
    pub behaviour: Option<&'r str>,
}

impl AttackerRef<'_> {
    fn corrupt(&self, column: &'static str, value: &str, reason: impl ToString) -> RepoError {
        RepoError::Corrupt {
            table: "attackers",
            id: self.id,
            column,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn ts(&self, column: &'static str, t: &str) -> Result<i64, RepoError> {
        parse_ts(t).map_err(|e| self.corrupt(column, t, e.reason))
    }

    /// The owned, parsed row.
    pub fn to_row(&self) -> Result<AttackerRow, RepoError> {
        Ok(AttackerRow {
            attacker: Attacker {
                id: self.id,
                ip: self
                    .ip
                    .parse()
                    .map_err(|e| self.corrupt("ip", self.ip, e))?,
                first_seen_ns: self.ts("first_seen", self.first_seen)?,
                last_seen_ns: self.ts("last_seen", self.last_seen)?,
                event_count: self.event_count,
                session_count: self.session_count,
                credential_count: self.credential_count,
                flow_count: self.flow_count,
            },
            score: self.score,
            behaviour: self.behaviour.map(str::to_owned),
        })
    }

    /// The cursor that continues a listing after this row.
    pub fn cursor(&self, sort: AttackerSort) -> Result<AttackerCursor, RepoError> {
        Ok(match sort {
            AttackerSort::LastSeen => AttackerCursor::LastSeen {
                last_seen_ns: self.ts("last_seen", self.last_seen)?,
                id: self.id,
            },
            AttackerSort::Events => AttackerCursor::Events {
                events: i64::try_from(self.event_count).unwrap_or(i64::MAX),
                id: self.id,
            },
        })
    }
}

/// Reads a [`WITH_VERDICT`] row's cells (by their position in that SELECT list).
fn attacker_ref(c: &dyn Cells) -> Result<AttackerRef<'_>, RepoError> {
    let id = c.i64(0).map_err(|e| cell_err(-1, "id", e))?;
    let bad = |column: &'static str| move |e: CellError| cell_err(id, column, e);
    let count = |i: usize, column: &'static str| -> Result<u64, RepoError> {
        let v = c.i64(i).map_err(bad(column))?;
        u64::try_from(v).map_err(|_| cell_err(id, column, CellError(format!("negative: {v}"))))
    };
    let ip = c.str(1).map_err(bad("ip"))?;
    if let Err(e) = ip.parse::<IpAddr>() {
        return Err(cell_err(id, "ip", CellError(format!("{ip:?}: {e}"))));
    }
    Ok(AttackerRef {
        id,
        ip,
        first_seen: c.str(2).map_err(bad("first_seen"))?,
        last_seen: c.str(3).map_err(bad("last_seen"))?,
        event_count: count(4, "event_count")?,
        session_count: count(5, "session_count")?,
        credential_count: count(6, "credential_count")?,
        flow_count: count(7, "flow_count")?,
        score: match c.opt_i64(8).map_err(bad("score"))? {
            None => None,
            Some(v) => Some(
                u8::try_from(v)
                    .map_err(|_| cell_err(id, "score", CellError(format!("out of range: {v}"))))?,
            ),
        },
        behaviour: c.opt_str(9).map_err(bad("behaviour"))?,
    })
}

fn cell_err(id: i64, column: &'static str, e: CellError) -> RepoError {
    RepoError::Corrupt {
        table: "attackers",
        id,
        column,
        value: String::new(),
        reason: e.0,
    }
}

impl WriteTx {
    /// Merges facts into attacker rows (creating them): first_seen min, last_seen max, counters
    /// max.
    pub async fn upsert_attackers(&mut self, updates: &[AttackerUpdate]) -> Result<u64, RepoError> {
        self.merge_attackers(updates, &MERGE).await
    }

    /// Adds facts to attacker rows (creating them): first_seen min, last_seen max, and the
    /// counters of each update *added* to the stored ones — the correlator's incremental path,
    /// exactly once because its cursor moves in the same transaction.
    pub async fn add_attackers(&mut self, updates: &[AttackerUpdate]) -> Result<u64, RepoError> {
        self.merge_attackers(updates, &ADD).await
    }

    /// Inserts `updates`, merging each into a stored row of the same IP by `merges`.
    async fn merge_attackers(
        &mut self,
        updates: &[AttackerUpdate],
        merges: &[(&str, Merge)],
    ) -> Result<u64, RepoError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let now = format_ts(now_ns());
        let tail = self.dialect.upsert_tail("attackers", &["ip"], merges);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attackers",
                columns: &COLUMNS,
                tail: &tail,
            },
            updates,
            |q: AnyQuery<'_>, a: &AttackerUpdate| {
                q.bind(a.ip.to_string())
                    .bind(format_ts(a.first_seen_ns))
                    .bind(format_ts(a.last_seen_ns))
                    .bind(sat(a.event_count))
                    .bind(sat(a.session_count))
                    .bind(sat(a.credential_count))
                    .bind(sat(a.flow_count))
                    .bind(now.clone())
            },
        )
        .await
    }

    /// Re-derives the counters and first/last seen of `ips` from the stored facts (events,
    /// sessions, credentials, flows). Never lowers a value.
    pub async fn refresh_attacker_counts(&mut self, ips: &[IpAddr]) -> Result<(), RepoError> {
        let (g, l) = (self.dialect.greatest(), self.dialect.least());
        let sql = format!(
            "UPDATE attackers SET \
             event_count = {g}(event_count, (SELECT COUNT(*) FROM events WHERE events.attacker_ip = attackers.ip)), \
             session_count = {g}(session_count, (SELECT COUNT(*) FROM sessions WHERE sessions.attacker_ip = attackers.ip)), \
             credential_count = {g}(credential_count, (SELECT COUNT(*) FROM credentials WHERE credentials.attacker_ip = attackers.ip)), \
             flow_count = {g}(flow_count, (SELECT COUNT(*) FROM flows WHERE flows.src_ip = attackers.ip)), \
             first_seen = {l}(first_seen, COALESCE((SELECT {min_ts} FROM events WHERE events.attacker_ip = attackers.ip), first_seen)), \
             last_seen = {g}(last_seen, COALESCE((SELECT {max_ts} FROM events WHERE events.attacker_ip = attackers.ip), last_seen)) \
             WHERE ip = ?",
            // Event times are integers; the attackers' are text.
            min_ts = self.dialect.ts_text("MIN(ts)"),
            max_ts = self.dialect.ts_text("MAX(ts)"),
        );
        for ip in ips {
            sqlx::query(&sql)
                .bind(ip.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

impl Repository {
    pub async fn upsert_attackers(&self, updates: &[AttackerUpdate]) -> Result<u64, RepoError> {
        Ok(self.write(&[super::Write::Attackers(updates)]).await?[0])
    }

    pub async fn attacker(&self, ip: IpAddr) -> Result<Option<Attacker>, RepoError> {
        let row = sqlx::query(&format!("{SELECT} WHERE ip = ?"))
            .bind(ip.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The attacker rows of `ips` (those that have one; any order): the profiler's batch read.
    pub async fn attackers_of(&self, ips: &[IpAddr]) -> Result<Vec<Attacker>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| format!("{SELECT} WHERE ip IN ({list})"),
            Vec::with_capacity(ips.len()),
            |out, row| {
                out.push(decode(row)?);
                Ok(())
            },
        )
        .await
    }

    /// Attackers by id, `id > after`, at most `limit` (keyset pagination).
    pub async fn attackers_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Attacker>, RepoError> {
        let rows = rows_after(self, SELECT, after, limit).await?;
        rows.iter().map(decode).collect()
    }

    /// Attackers matching `f`, with their verdicts, in the chosen order (newest activity or
    /// most events first).
    pub async fn list_attackers(&self, f: &AttackerFilter) -> Result<Vec<AttackerRow>, RepoError> {
        let (rows, bad) = self
            .each_attacker(f, (Vec::new(), None), |(rows, bad), a| match a.to_row() {
                Ok(r) => rows.push(r),
                Err(e) => *bad = bad.take().or(Some(e)),
            })
            .await?;
        match bad {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// The rows of [`Repository::list_attackers`], each handed to `each` (with `state`,
    /// returned at the end) borrowed from the database's row: how the API encodes a page
    /// without copying it first.
    pub async fn each_attacker<S, F>(
        &self,
        f: &AttackerFilter,
        state: S,
        mut each: F,
    ) -> Result<S, RepoError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &AttackerRef<'_>) + Send + 'static,
    {
        let mut w = Where::default();
        if let Some(p) = f.ip_prefix.as_deref().filter(|p| !p.is_empty()) {
            w.text("a.ip LIKE ? ESCAPE '!'", like_prefix(p));
        }
        if let Some(n) = f.min_events {
            w.int("a.event_count >= ?", i64::try_from(n).unwrap_or(i64::MAX));
        }
        let order = match (f.sort, &f.after) {
            (AttackerSort::LastSeen, after) => {
                if let Some(AttackerCursor::LastSeen { last_seen_ns, id }) = after {
                    let t = format_ts(*last_seen_ns);
                    w.clause(
                        "(a.last_seen < ? OR (a.last_seen = ? AND a.id < ?))",
                        [Arg::Text(t.clone()), Arg::Text(t), Arg::Int(*id)],
                    );
                }
                " ORDER BY a.last_seen DESC, a.id DESC LIMIT ?"
            }
            (AttackerSort::Events, after) => {
                if let Some(AttackerCursor::Events { events, id }) = after {
                    w.clause(
                        "(a.event_count < ? OR (a.event_count = ? AND a.id < ?))",
                        [Arg::Int(*events), Arg::Int(*events), Arg::Int(*id)],
                    );
                }
                " ORDER BY a.event_count DESC, a.id DESC LIMIT ?"
            }
        };
        w.each_row(
            self,
            WITH_VERDICT,
            order,
            &[Arg::Int(page_limit(f.limit))],
            state,
            move |st, cells| {
                each(st, &attacker_ref(cells)?);
                Ok(())
            },
        )
        .await
    }

    /// One attacker with its profile verdict.
    pub async fn attacker_row(&self, ip: IpAddr) -> Result<Option<AttackerRow>, RepoError> {
        let mut w = Where::default();
        w.text("a.ip = ?", ip.to_string());
        let rows = w.fetch(self, WITH_VERDICT, "", &[]).await?;
        rows.first()
            .map(|r| attacker_ref(&AnyCells(r))?.to_row())
            .transpose()
    }
}
