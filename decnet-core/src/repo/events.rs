//! `events`: one row per decoy-service log event. Re-ingesting the same event is a no-op:
//! (`ts`, `dedup_key`) is unique, the key being the first 8 bytes of the SHA-256 of the raw line
//! by default.
//!
//! Written by the collector (batched multi-row inserts, through
//! [`WriteTx::insert_events_with_credentials`] when the events carry credential attempts).
//! Read by the correlator ([`EventFact`]s after its cursor, a key's events), the profiler (an
//! attacker's recent events) and the API (filtered listing, live feed, statistics, histogram,
//! per-decky activity).
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{
    RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, insert_sql, name},
    decode::Decoder,
    limits,
    listing::{NameCount, Where, like_anywhere, name_counts, newest_first, page_limit, rows_after},
};
use crate::{
    model::{Event, NewEvent},
    time_fmt::format_ts,
};

use super::storage::{Purge, timed_delete};

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
/// What an [`EventFact`] is read from (no raw line).
const FACT: &str = "SELECT id, ts, decky, service, event_type, attacker_ip, fields FROM events";

/// Retention keeps an event that belongs to a session still reaching into the kept window (the
/// correlator may recompute that session from its events). One bind: the cutoff.
const KEPT_FOR_SESSION: &str = "NOT EXISTS (SELECT 1 FROM sessions s WHERE \
     s.attacker_ip = events.attacker_ip AND s.decky = events.decky AND s.service = events.service \
     AND s.started_at <= events.ts AND s.ended_at >= ?)";

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

fn bind<'q>(q: AnyQuery<'q>, e: &'q NewEvent) -> AnyQuery<'q> {
    q.bind(format_ts(e.ts_ns))
        .bind(limits::text(&e.decky, limits::NAME).into_owned())
        .bind(limits::text(&e.service, limits::NAME).into_owned())
        .bind(limits::text(&e.event_type, limits::NAME).into_owned())
        .bind(e.attacker_ip.map(|ip| ip.to_string()))
        .bind(e.attacker_port.map(i64::from))
        .bind(limits::text(&e.fields, limits::LONG).into_owned())
        .bind(limits::bytes(&e.raw, limits::LONG).to_vec())
        .bind(key_i64(e))
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Event, RepoError> {
    let d = Decoder::new(row, "events");
    Ok(Event {
        id: d.i64("id")?,
        ts_ns: d.ts("ts")?,
        decky: d.text("decky")?,
        service: d.text("service")?,
        event_type: d.text("event_type")?,
        attacker_ip: d.opt_ip("attacker_ip")?,
        attacker_port: d.opt_int("attacker_port")?,
        fields: d.text("fields")?,
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

fn decode_fact(row: &sqlx::any::AnyRow) -> Result<EventFact, RepoError> {
    let d = Decoder::new(row, "events");
    Ok(EventFact {
        id: d.i64("id")?,
        ts_ns: d.ts("ts")?,
        decky: d.text("decky")?,
        service: d.text("service")?,
        event_type: d.text("event_type")?,
        attacker_ip: d.opt_ip("attacker_ip")?,
        fields: d.text("fields")?,
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
                (String, i64),
                std::collections::VecDeque<usize>,
            > = std::collections::HashMap::new();
            for (i, e) in chunk.iter().enumerate() {
                q = bind(q, e);
                pending
                    .entry((format_ts(e.ts_ns), key_i64(e)))
                    .or_default()
                    .push_back(c * per + i);
            }
            let rows = q.persistent(false).fetch_all(&mut *self.tx).await?;
            for row in &rows {
                let d = Decoder::new(row, "events");
                let k = (d.text("ts")?, d.i64("dedup_key")?);
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

/// Per-decky activity in a window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeckyActivity {
    pub decky: String,
    pub events: u64,
    pub attackers: u64,
    pub last_event_ns: Option<i64>,
}

/// Histogram bucket widths (the time text is cut to this prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn prefix_len(self) -> i64 {
        // 2026-05-02T06:00:25.123456789Z
        match self {
            Bucket::Minute => 16,
            Bucket::Hour => 13,
            Bucket::Day => 10,
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
        let rows = rows_after(self, FACT, after, limit).await?;
        rows.iter().map(decode_fact).collect()
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
        let rows = sqlx::query(&format!(
            "{FACT} WHERE attacker_ip = ? AND ts >= ? AND decky = ? AND service = ? \
             AND id <= ? ORDER BY ts, id"
        ))
        .bind(ip.to_string())
        .bind(format_ts(from_ns))
        .bind(name(decky))
        .bind(name(service))
        .bind(max_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode_fact).collect()
    }

    /// The newest `limit` events of `ip`, in time order.
    pub async fn recent_events(&self, ip: IpAddr, limit: u32) -> Result<Vec<EventFact>, RepoError> {
        let rows = sqlx::query(&format!(
            "{FACT} WHERE attacker_ip = ? ORDER BY ts DESC, id DESC LIMIT ?"
        ))
        .bind(ip.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut v = rows
            .iter()
            .map(decode_fact)
            .collect::<Result<Vec<_>, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// Events matching `f`, newest (highest id) first.
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<Event>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(t) = f.since_ns {
            w.text("ts >= ?", format_ts(t));
        }
        if let Some(t) = f.until_ns {
            w.text("ts < ?", format_ts(t));
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
            w.text("fields LIKE ? ESCAPE '!'", like_anywhere(t));
        }
        let (tail, limit) = newest_first(f.limit);
        let rows = w.fetch(self, EVENT, tail, &limit).await?;
        rows.iter().map(decode).collect()
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
        let (from, before) = (format_ts(from_ns), format_ts(before_ns));
        let rows = sqlx::query(&format!(
            "SELECT id, ts FROM events WHERE ts >= ? AND ts < ? AND id <= ? AND \
             {KEPT_FOR_SESSION} ORDER BY ts LIMIT ?"
        ))
        .bind(from)
        .bind(before.clone())
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
            next_ns = d.ts("ts")?;
        }
        if ids.is_empty() {
            return Ok(Purge {
                next_ns,
                ..Purge::default()
            });
        }
        let sql = format!(
            "DELETE FROM events WHERE id IN ({}) AND ts < ? AND id <= ? AND {KEPT_FOR_SESSION}",
            super::bulk::placeholders(ids.len())
        );
        let (n, held) = timed_delete(self, &sql, &ids, |q| {
            q.bind(before.clone()).bind(max_id).bind(before.clone())
        })
        .await?;
        Ok(Purge {
            rows: n,
            selected: ids.len() as u64,
            held,
            next_ns,
        })
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
        .bind(format_ts(since_ns))
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
            "SELECT SUBSTR(ts, 1, ?) AS b, COUNT(*) AS n FROM events WHERE ts >= ? GROUP BY b \
             ORDER BY b",
        )
        .bind(bucket.prefix_len())
        .bind(format_ts(since_ns))
        .fetch_all(self.pool())
        .await?;
        name_counts(&rows, "events", "b")
    }

    /// Events, distinct attackers and last event time per decky since `since_ns`.
    pub async fn decky_activity(&self, since_ns: i64) -> Result<Vec<DeckyActivity>, RepoError> {
        let rows = sqlx::query(
            "SELECT decky, COUNT(*) AS n, COUNT(DISTINCT attacker_ip) AS attackers, \
             MAX(ts) AS last_ts FROM events WHERE ts >= ? GROUP BY decky ORDER BY decky",
        )
        .bind(format_ts(since_ns))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "events");
                Ok(DeckyActivity {
                    decky: d.text("decky")?,
                    events: d.u64("n")?,
                    attackers: d.u64("attackers")?,
                    last_event_ns: Some(d.ts("last_ts")?),
                })
            })
            .collect()
    }
}
