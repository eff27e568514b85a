//! `events`: one row per decoy-service log event. Re-ingesting the same event is a no-op:
//! (`ts`, `dedup_key`) is unique, the key being the first 8 bytes of the SHA-256 of the raw line
//! by default.
use sha2::{Digest as _, Sha256};

use super::{
    RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::Decoder,
    limits,
};
use crate::{
    model::{Event, NewEvent},
    time_fmt::format_ts,
};

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
                crate::repo::bulk::insert_sql(head, "events", &COLUMNS, chunk.len(), tail)
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
                let d = Decoder::new(row, "events", None);
                let k = (d.text(0, "ts")?, d.i64(1, "dedup_key")?);
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

const SELECT: &str = "SELECT id, ts, decky, service, event_type, attacker_ip, attacker_port, fields, raw FROM events";

fn decode(row: &sqlx::any::AnyRow) -> Result<Event, RepoError> {
    let d = Decoder::new(row, "events", Some(0));
    Ok(Event {
        id: d.i64(0, "id")?,
        ts_ns: d.ts(1, "ts")?,
        decky: d.text(2, "decky")?,
        service: d.text(3, "service")?,
        event_type: d.text(4, "event_type")?,
        attacker_ip: d.opt_ip(5, "attacker_ip")?,
        attacker_port: d.opt_int(6, "attacker_port")?,
        fields: d.text(7, "fields")?,
        raw: d.bytes(8, "raw")?,
    })
}

impl Repository {
    /// [`WriteTx::insert_events`] in its own transaction.
    pub async fn insert_events(&self, events: &[NewEvent]) -> Result<u64, RepoError> {
        Ok(self.write(&[super::Write::Events(events)]).await?[0])
    }

    /// Up to `limit` events with `id > after`, in id order: how workers read new input from a
    /// cursor.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>, RepoError> {
        let rows = sqlx::query(&format!("{SELECT} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn count_events(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
