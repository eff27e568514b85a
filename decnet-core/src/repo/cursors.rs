//! `worker_cursors`: each worker's resume points (an input position and the state that goes
//! with it), which only move forward. Written in the same transaction as the work a position
//! covers, so a crash loses both or neither.
//!
//! Written and read by the correlator (events, credentials, flows) and the profiler (the
//! evidence queue). Read by the API (worker status).
use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::Decoder,
    limits,
};
use crate::{
    model::Cursor,
    time_fmt::{format_ts, now_ns},
};

const COLUMNS: [&str; 6] = ["worker", "host", "name", "position", "state", "updated_at"];
const MERGE: [(&str, Merge); 3] = [
    ("state", Merge::ReplaceIfNotLess("position")),
    ("updated_at", Merge::ReplaceIfNotLess("position")),
    ("position", Merge::Max),
];

impl WriteTx {
    /// Moves a worker's cursor forward (never backward); `state` goes with the position. Write it
    /// in the same transaction as the work it covers, so a crash loses both or neither.
    pub async fn set_cursor(
        &mut self,
        worker: &str,
        host: &str,
        name: &str,
        position: i64,
        state: &str,
    ) -> Result<(), RepoError> {
        let tail = self
            .dialect
            .upsert_tail("worker_cursors", &COLUMNS[..3], &MERGE);
        let row = [(worker, host, name, position, state)];
        let now = format_ts(now_ns());

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "worker_cursors",
                columns: &COLUMNS,
                tail: &tail,
            },
            &row,
            |q: AnyQuery<'_>, r: &(&str, &str, &str, i64, &str)| {
                q.bind(limits::text(r.0, limits::NAME).into_owned())
                    .bind(limits::text(r.1, 255).into_owned())
                    .bind(limits::text(r.2, limits::NAME).into_owned())
                    .bind(r.3)
                    .bind(limits::text(r.4, limits::LONG).into_owned())
                    .bind(now.clone())
            },
        )
        .await?;
        Ok(())
    }
}

impl Repository {
    /// The lowest position of cursor `name` of `worker` over every host, or `None` when no host
    /// has one yet: how far every instance of the worker has taken an input in (retention
    /// deletes nothing beyond it).
    pub async fn min_cursor(&self, worker: &str, name: &str) -> Result<Option<i64>, RepoError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(position) FROM worker_cursors WHERE worker = ? AND name = ?",
        )
        .bind(worker.to_owned())
        .bind(name.to_owned())
        .fetch_one(self.pool())
        .await?;
        Ok(v)
    }

    pub async fn cursor(
        &self,
        worker: &str,
        host: &str,
        name: &str,
    ) -> Result<Option<Cursor>, RepoError> {
        let row = sqlx::query(
            "SELECT position, state FROM worker_cursors WHERE worker = ? AND host = ? AND name = ?",
        )
        .bind(worker.to_owned())
        .bind(host.to_owned())
        .bind(name.to_owned())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let d = Decoder::new(&row, "worker_cursors");
        Ok(Some(Cursor {
            position: d.i64("position")?,
            state: d.text("state")?,
        }))
    }
}
