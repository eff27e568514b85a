//! `events`: one row per decoy-service log event. Re-ingesting the same event is a no-op:
//! (`ts`, `dedup_key`) is unique, the key being the first 8 bytes of the SHA-256 of the raw line
//! by default.
//!
//! Stored compactly (migration 0008): `ts` is Unix epoch nanoseconds (an integer, not text), and
//! `fields` is NULL when the producer left [`NewEvent::fields`] empty — the collector does, for
//! every line: the fields are then derived from the raw line when read
//! ([`crate::event::line_fields`], the collector's own mapping), so the JSON is never stored
//! beside the line it came from. A row's size is the line plus a few dozen bytes.
//!
//! Written by the collector (batched multi-row inserts, through
//! [`WriteTx::insert_events_with_credentials`] when the events carry credential attempts).
//! Read by the correlator ([`EventFact`]s after its cursor, a key's events), the profiler (an
//! attacker's recent events) and the API (filtered listing, live feed, statistics, histogram,
//! per-decky activity).
use std::{borrow::Cow, net::IpAddr};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{
    RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, insert_sql, name},
    decode::{Decoder, Src},
    limits,
    listing::{
        Arg, NameCount, Where, decoded_after, each_row_of_ips, like_anywhere, name_counts,
        newest_first, page_limit, rows_after,
    },
    sqlite_read::{CellError, Cells},
};
use crate::{
    event::line_fields,
    model::{CredentialAttempt, Event, NewEvent},
    time_fmt::format_ts,
};

use super::storage::{Purge, delete_candidates};

/// The stored columns (besides `id`), in insert order.
const COLUMNS: [&str; 9] = [
    "ts",
    "decky",
    "service",
    "event_type",
    "attacker_ip",
    "attacker_port",
    "fields",
    "raw",
    "dedup_key",
];
/// What an [`Event`] is read from.
const EVENT: &str = "SELECT id, ts, decky, service, event_type, attacker_ip, attacker_port, \
                     fields, raw FROM events";
/// What an [`EventFact`] is read from (the raw line only where the fields are derived from it).
const FACT: &str = "SELECT id, ts, decky, service, event_type, attacker_ip, fields, \
                    CASE WHEN fields IS NULL THEN raw END AS raw FROM events";

/// Retention keeps an event that belongs to a session still reaching into the kept window (the
/// correlator may recompute that session from its events). One bind: the cutoff.
/// (`{ts}` is the dialect's text form of `events.ts`: sessions keep text times.)
fn kept_for_session(dialect: super::Dialect) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM sessions s WHERE s.attacker_ip = events.attacker_ip AND \
         s.decky = events.decky AND s.service = events.service AND s.started_at <= {ts} AND \
         s.ended_at >= ?)",
        ts = dialect.ts_text("events.ts")
    )
}

/// The default dedup key of an event: SHA-256 of its raw line (as given, before bounding).
pub fn dedup_key(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// The stored 64-bit form of an event's dedup key.
fn key_i64(e: &NewEvent) -> i64 {
    let key = e.dedup_key.unwrap_or_else(|| dedup_key(&e.raw));
    i64::from_be_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ])
}

/// The stored `fields`: NULL when empty (derived from the raw line when read).
pub(crate) fn stored_fields(e: &NewEvent) -> Option<std::borrow::Cow<'_, str>> {
    (!e.fields.is_empty()).then(|| limits::text(&e.fields, limits::LONG))
}

/// The fields of a read row: the stored JSON, else derived from the raw line.
fn read_fields(d: &Decoder<'_>) -> Result<String, RepoError> {
    match d.opt_text("fields")? {
        Some(f) => Ok(f),
        None => Ok(line_fields(&d.bytes("raw")?)),
    }
}

fn bind<'q>(q: AnyQuery<'q>, e: &'q NewEvent) -> AnyQuery<'q> {
    q.bind(e.ts_ns)
        .bind(limits::text(&e.decky, limits::NAME).into_owned())
        .bind(limits::text(&e.service, limits::NAME).into_owned())
        .bind(limits::text(&e.event_type, limits::NAME).into_owned())
        .bind(e.attacker_ip.map(|ip| ip.to_string()))
        .bind(e.attacker_port.map(i64::from))
        .bind(stored_fields(e).map(std::borrow::Cow::into_owned))
        .bind(limits::bytes(&e.raw, limits::LONG).to_vec())
        .bind(key_i64(e))
}

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Event, RepoError> {
    let d = Decoder::new(row, "events");
    Ok(Event {
        id: d.i64("id")?,
        ts_ns: d.i64("ts")?,
        decky: d.text("decky")?,
        service: d.text("service")?,
        event_type: d.text("event_type")?,
        attacker_ip: d.opt_ip("attacker_ip")?,
        attacker_port: d.opt_int("attacker_port")?,
        fields: read_fields(&d)?,
        raw: d.bytes("raw")?,
    })
}

/// An event as the correlator and the profiler read it (no raw line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFact {
    pub id: i64,
    pub ts_ns: i64,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: Option<IpAddr>,
    /// JSON object (as stored; may be malformed if another producer wrote it).
    pub fields: String,
}

fn decode_fact<'r>(row: impl Into<Src<'r>>) -> Result<EventFact, RepoError> {
    let d = Decoder::new(row, "events");
    Ok(EventFact {
        id: d.i64("id")?,
        ts_ns: d.i64("ts")?,
        decky: d.text("decky")?,
        service: d.text("service")?,
        event_type: d.text("event_type")?,
        attacker_ip: d.opt_ip("attacker_ip")?,
        fields: read_fields(&d)?,
    })
}

impl WriteTx {
    /// Like [`WriteTx::insert_events`], but says which events were new (`true`) and which were
    /// already stored: what lets derived counts (credential attempts) stay exact under replay.
    pub async fn insert_events_marking_new(
        &mut self,
        events: &[NewEvent],
    ) -> Result<Vec<bool>, RepoError> {
        let mut new = vec![false; events.len()];
        if events.is_empty() {
            return Ok(new);
        }
        let (head, tail) = (self.dialect.insert_ignore(), self.dialect.ignore_tail());
        let per = self.dialect.rows_per_statement(COLUMNS.len());
        for (c, chunk) in events.chunks(per).enumerate() {
            let sql = format!(
                "{} RETURNING ts, dedup_key",
                insert_sql(head, "events", &COLUMNS, chunk.len(), tail)
            );
            let mut q = sqlx::query(&sql);
            // Which batch positions carry each (ts, key): a repeated line is new only once.
            let mut pending: std::collections::HashMap<
                (i64, i64),
                std::collections::VecDeque<usize>,
            > = std::collections::HashMap::new();
            for (i, e) in chunk.iter().enumerate() {
                q = bind(q, e);
                pending
                    .entry((e.ts_ns, key_i64(e)))
                    .or_default()
                    .push_back(c * per + i);
            }
            let rows = q.persistent(false).fetch_all(&mut *self.tx).await?;
            for row in &rows {
                let d = Decoder::new(row, "events");
                let k = (d.i64("ts")?, d.i64("dedup_key")?);
                if let Some(i) = pending.get_mut(&k).and_then(|v| v.pop_front()) {
                    new[i] = true;
                }
            }
        }
        Ok(new)
    }

    /// Stores new events; ones already stored (same dedup key) are skipped. Returns how many
    /// were new.
    pub async fn insert_events(&mut self, events: &[NewEvent]) -> Result<u64, RepoError> {
        if events.is_empty() {
            return Ok(0);
        }
        let (head, tail) = (self.dialect.insert_ignore(), self.dialect.ignore_tail());
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head,
                table: "events",
                columns: &COLUMNS,
                tail,
            },
            events,
            bind,
        )
        .await
    }
}

/// The SQLite bulk write path ([`super::sqlite_writer`]): stores `events` row by row through one
/// cached prepared statement, and for each NEW event (the insert changed a row) adds the
/// credential attempts it carries (`(event index, attempt)`). Returns the number of new events.
pub(crate) fn insert_native(
    tx: &rusqlite::Transaction<'_>,
    events: &[NewEvent],
    credentials: &[(usize, CredentialAttempt)],
) -> Result<u64, RepoError> {
    let d = super::Dialect::Sqlite;
    let sql = insert_sql(d.insert_ignore(), "events", &COLUMNS, 1, d.ignore_tail());
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut new = vec![
        false;
        if credentials.is_empty() {
            0
        } else {
            events.len()
        }
    ];
    let mut stored = 0u64;
    for (i, e) in events.iter().enumerate() {
        let ip = e.attacker_ip.map(|ip| ip.to_string());
        let n = stmt.execute((
            e.ts_ns,
            &*limits::text(&e.decky, limits::NAME),
            &*limits::text(&e.service, limits::NAME),
            &*limits::text(&e.event_type, limits::NAME),
            ip.as_deref(),
            e.attacker_port,
            stored_fields(e).as_deref(),
            limits::bytes(&e.raw, limits::LONG),
            key_i64(e),
        ))?;
        if n > 0 {
            stored += 1;
            if let Some(slot) = new.get_mut(i) {
                *slot = true;
            }
        }
    }
    if !credentials.is_empty() {
        super::credentials::add_attempts_native(
            tx,
            credentials
                .iter()
                .filter(|(i, _)| new.get(*i).copied().unwrap_or(false))
                .map(|(_, c)| c),
        )?;
    }
    Ok(stored)
}

/// Filters of [`Repository::list_events`]. Times are Unix epoch nanoseconds; `before_id` is
/// the keyset cursor (the last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub decky: Option<String>,
    pub service: Option<String>,
    pub event_type: Option<String>,
    pub attacker: Option<IpAddr>,
    /// Substring of the event's fields (JSON text), at most [`super::MAX_NEEDLE`] bytes.
    pub text: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The WHERE clause of a filtered listing.
fn event_where(f: &EventFilter) -> Where {
    let mut w = Where::default();
    if let Some(id) = f.before_id {
        w.int("id < ?", id);
    }
    if let Some(t) = f.since_ns {
        w.int("ts >= ?", t);
    }
    if let Some(t) = f.until_ns {
        w.int("ts < ?", t);
    }
    if let Some(v) = &f.decky {
        w.text("decky = ?", name(v));
    }
    if let Some(v) = &f.service {
        w.text("service = ?", name(v));
    }
    if let Some(v) = &f.event_type {
        w.text("event_type = ?", name(v));
    }
    if let Some(ip) = f.attacker {
        w.text("attacker_ip = ?", ip.to_string());
    }
    if let Some(t) = f.text.as_deref().filter(|t| !t.is_empty()) {
        // Derived fields are searched in the line they come from.
        w.text("COALESCE(fields, raw) LIKE ? ESCAPE '!'", like_anywhere(t));
    }
    w
}

/// What an [`EventRef`] is read from without the raw line (only where the fields are derived
/// from it); [`EVENT`] with it (same positions, `raw` last).
const LISTED: &str = "SELECT id, ts, decky, service, event_type, attacker_ip, attacker_port, \
                      fields, CASE WHEN fields IS NULL THEN raw END AS raw FROM events";

/// An event listing row borrowed from the database's row, the fields as the stored JSON text
/// (or, where none is stored, derived from the raw line: [`line_fields`]): what
/// [`Repository::each_event`] hands its visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef<'r> {
    pub id: i64,
    pub ts_ns: i64,
    pub decky: &'r str,
    pub service: &'r str,
    pub event_type: &'r str,
    /// A valid IP address's text.
    pub attacker_ip: Option<&'r str>,
    pub attacker_port: Option<u16>,
    /// As stored (a JSON object when the collector wrote it; may be anything), or derived.
    pub fields: Cow<'r, str>,
    /// Only when asked for.
    pub raw: Option<&'r [u8]>,
}

/// Reads a [`LISTED`] (or [`EVENT`]) row's cells by their position in that SELECT list.
fn event_ref(c: &dyn Cells, with_raw: bool) -> Result<EventRef<'_>, RepoError> {
    let id = c.i64(0).map_err(|e| cell_err(-1, "id", e.0))?;
    let bad = |column: &'static str| move |e: CellError| cell_err(id, column, e.0);
    let attacker_ip = c.opt_str(5).map_err(bad("attacker_ip"))?;
    if let Some(t) = attacker_ip
        && let Err(e) = t.parse::<IpAddr>()
    {
        return Err(cell_err(id, "attacker_ip", format!("{t:?}: {e}")));
    }
    let fields = match c.opt_str(7).map_err(bad("fields"))? {
        Some(f) => Cow::Borrowed(f),
        None => Cow::Owned(line_fields(c.bytes(8).map_err(bad("raw"))?)),
    };
    Ok(EventRef {
        id,
        ts_ns: c.i64(1).map_err(bad("ts"))?,
        decky: c.str(2).map_err(bad("decky"))?,
        service: c.str(3).map_err(bad("service"))?,
        event_type: c.str(4).map_err(bad("event_type"))?,
        attacker_ip,
        attacker_port: match c.opt_i64(6).map_err(bad("attacker_port"))? {
            None => None,
            Some(v) => {
                Some(u16::try_from(v).map_err(|_| cell_err(id, "attacker_port", format!("{v}")))?)
            }
        },
        fields,
        raw: if with_raw {
            Some(c.bytes(8).map_err(bad("raw"))?)
        } else {
            None
        },
    })
}

fn cell_err(id: i64, column: &'static str, reason: String) -> RepoError {
    RepoError::Corrupt {
        table: "events",
        id,
        column,
        value: String::new(),
        reason,
    }
}

/// Per-decky activity in a window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeckyActivity {
    pub decky: String,
    pub events: u64,
    pub attackers: u64,
    pub last_event_ns: Option<i64>,
}

/// Histogram bucket widths (a bucket is named by the time text cut to its prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn prefix_len(self) -> usize {
        // 2026-05-02T06:00:25.123456789Z
        match self {
            Bucket::Minute => 16,
            Bucket::Hour => 13,
            Bucket::Day => 10,
        }
    }

    fn width_ns(self) -> i64 {
        match self {
            Bucket::Minute => 60_000_000_000,
            Bucket::Hour => 3_600_000_000_000,
            Bucket::Day => 86_400_000_000_000,
        }
    }
}

/// Columns [`Repository::top_event_values`] groups by (a closed set: never caller text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopColumn {
    Service,
    Decky,
    EventType,
}

impl TopColumn {
    fn sql(self) -> &'static str {
        match self {
            TopColumn::Service => "service",
            TopColumn::Decky => "decky",
            TopColumn::EventType => "event_type",
        }
    }
}

impl Repository {
    /// [`WriteTx::insert_events`] in its own transaction.
    pub async fn insert_events(&self, events: &[NewEvent]) -> Result<u64, RepoError> {
        Ok(self.write(&[super::Write::Events(events)]).await?[0])
    }

    /// Up to `limit` events with `id > after`, in id order: how the live feed reads new input.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>, RepoError> {
        let rows = rows_after(self, EVENT, after, limit).await?;
        rows.iter().map(decode).collect()
    }

    /// Up to `limit` events with `id > after`, in id order, without their raw lines: how the
    /// correlator reads new input from its cursor.
    pub async fn event_facts_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventFact>, RepoError> {
        decoded_after(self, FACT, after, limit, |c| decode_fact(c)).await
    }

    /// The events of one (attacker, decky, service) at or after `from_ns`, in time order.
    pub async fn key_events(
        &self,
        ip: IpAddr,
        decky: &str,
        service: &str,
        from_ns: i64,
        max_id: i64,
    ) -> Result<Vec<EventFact>, RepoError> {
        let mut w = Where::default();
        w.text("attacker_ip = ?", ip.to_string());
        w.int("ts >= ?", from_ns);
        w.text("decky = ?", name(decky));
        w.text("service = ?", name(service));
        w.int("id <= ?", max_id);
        w.decoded(self, FACT, " ORDER BY ts, id", &[], |c| decode_fact(c))
            .await
    }

    /// The newest `limit` events of `ip`, in time order.
    pub async fn recent_events(&self, ip: IpAddr, limit: u32) -> Result<Vec<EventFact>, RepoError> {
        let mut w = Where::default();
        w.text("attacker_ip = ?", ip.to_string());
        let mut v = w
            .decoded(
                self,
                FACT,
                " ORDER BY ts DESC, id DESC LIMIT ?",
                &[Arg::Int(i64::from(limit))],
                |c| decode_fact(c),
            )
            .await?;
        v.reverse();
        Ok(v)
    }

    /// Every event of each of `ips`, in (attacker, time, id) order: the profiler's batch read
    /// for attackers with few events (the newest `limit` of each, in time order, are the tail
    /// of its run — what [`Repository::recent_events`] returns).
    pub async fn events_of(&self, ips: &[IpAddr]) -> Result<Vec<EventFact>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| format!("{FACT} WHERE attacker_ip IN ({list}) ORDER BY attacker_ip, ts, id"),
            Vec::new(),
            |out, row| {
                out.push(decode_fact(row)?);
                Ok(())
            },
        )
        .await
    }

    /// Events matching `f`, newest (highest id) first.
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<Event>, RepoError> {
        let (tail, limit) = newest_first(f.limit);
        let rows = event_where(f).fetch(self, EVENT, tail, &limit).await?;
        rows.iter().map(decode).collect()
    }

    /// The rows of [`Repository::list_events`] (with their raw lines if `with_raw`), each
    /// handed to `each` (with `state`, returned at the end) borrowed from the database's row:
    /// how the API encodes a page without copying it first.
    pub async fn each_event<S, F>(
        &self,
        f: &EventFilter,
        with_raw: bool,
        state: S,
        mut each: F,
    ) -> Result<S, RepoError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &EventRef<'_>) + Send + 'static,
    {
        let (tail, limit) = newest_first(f.limit);
        let head = if with_raw { EVENT } else { LISTED };
        event_where(f)
            .each_row(self, head, tail, &limit, state, move |st, cells| {
                each(st, &event_ref(cells, with_raw)?);
                Ok(())
            })
            .await
    }

    /// Retention, one batch: deletes up to `limit` events older than `before_ns` (by `ts`) with
    /// ids up to `max_id` (what the correlator has taken in), oldest first from `from_ns` on, in
    /// one short write transaction. Events of a session that reaches to `before_ns` or later stay
    /// (the correlator may recompute it); everything derived (sessions, attackers, credentials,
    /// …) stays. Candidates are chosen by the time index before the transaction; the
    /// transaction deletes them by id, checking every condition again.
    pub async fn purge_events(
        &self,
        before_ns: i64,
        max_id: i64,
        from_ns: i64,
        limit: u32,
    ) -> Result<Purge, RepoError> {
        let before = format_ts(before_ns);
        let kept = kept_for_session(self.dialect);
        let rows = sqlx::query(&format!(
            "SELECT id, ts FROM events WHERE ts >= ? AND ts < ? AND id <= ? AND \
             {kept} ORDER BY ts LIMIT ?"
        ))
        .bind(from_ns)
        .bind(before_ns)
        .bind(max_id)
        .bind(before.clone())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut next_ns = from_ns;
        for row in &rows {
            let d = Decoder::new(row, "events");
            ids.push(d.i64("id")?);
            next_ns = d.i64("ts")?;
        }
        delete_candidates(
            self,
            &ids,
            next_ns,
            |list| {
                format!("DELETE FROM events WHERE id IN ({list}) AND ts < ? AND id <= ? AND {kept}")
            },
            move |q| q.bind(before_ns).bind(max_id).bind(before.clone()),
        )
        .await
    }

    pub async fn count_events(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The highest event id (0 when there are none): where a live feed starts.
    pub async fn max_event_id(&self) -> Result<i64, RepoError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The `column` values (`service`, `decky`, `event_type`) with the most events since
    /// `since_ns`.
    pub async fn top_event_values(
        &self,
        column: TopColumn,
        since_ns: i64,
        limit: u32,
    ) -> Result<Vec<NameCount>, RepoError> {
        let c = column.sql();
        let rows = sqlx::query(&format!(
            "SELECT {c} AS name, COUNT(*) AS n FROM events WHERE ts >= ? GROUP BY {c} \
             ORDER BY n DESC, {c} LIMIT ?"
        ))
        .bind(since_ns)
        .bind(page_limit(limit))
        .fetch_all(self.pool())
        .await?;
        name_counts(&rows, "events", "name")
    }

    /// Events per bucket since `since_ns`: (bucket start as text prefix, count), in time order.
    pub async fn event_histogram(
        &self,
        since_ns: i64,
        bucket: Bucket,
    ) -> Result<Vec<NameCount>, RepoError> {
        let rows = sqlx::query(
            "SELECT ts - ts % ? AS b, COUNT(*) AS n FROM events WHERE ts >= ? GROUP BY b \
             ORDER BY b",
        )
        .bind(bucket.width_ns())
        .bind(since_ns)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "events");
                let mut name = format_ts(d.i64("b")?);
                name.truncate(bucket.prefix_len());
                Ok(NameCount {
                    name,
                    count: d.u64("n")?,
                })
            })
            .collect()
    }

    /// Events, distinct attackers and last event time per decky since `since_ns`.
    pub async fn decky_activity(&self, since_ns: i64) -> Result<Vec<DeckyActivity>, RepoError> {
        let rows = sqlx::query(
            "SELECT decky, COUNT(*) AS n, COUNT(DISTINCT attacker_ip) AS attackers, \
             MAX(ts) AS last_ts FROM events WHERE ts >= ? GROUP BY decky ORDER BY decky",
        )
        .bind(since_ns)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "events");
                Ok(DeckyActivity {
                    decky: d.text("decky")?,
                    events: d.u64("n")?,
                    attackers: d.u64("attackers")?,
                    last_event_ns: Some(d.i64("last_ts")?),
                })
            })
            .collect()
    }
}
