//! `worker_counters`: named counters and gauges per (worker, host): what `decnet status`, the
//! API and /metrics show. Counters add ([`CounterMode::Add`]), gauges and totals replace
//! ([`CounterMode::Set`]).
//!
//! Written by every worker (its end-of-batch or end-of-run report) and `decnet deploy`. Read by
//! `decnet deploy` / `decnet status`, the API and the tests.
use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::Decoder,
    limits,
};
use crate::time_fmt::{format_ts, now_ns};

const COLUMNS: [&str; 5] = ["worker", "host", "name", "value", "updated_at"];

/// How [`WriteTx::record_counters`] combines a value with the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterMode {
    /// Add (counters of events since the last report).
    Add,
    /// Replace (gauges such as a queue depth, or totals a worker already summed).
    Set,
}

impl WriteTx {
    pub async fn record_counters(
        &mut self,
        worker: &str,
        host: &str,
        values: &[(&str, i64)],
        mode: CounterMode,
    ) -> Result<(), RepoError> {
        if values.is_empty() {
            return Ok(());
        }
        let merge = merge_of(mode);
        let tail = self.dialect.upsert_tail(
            "worker_counters",
            &COLUMNS[..3],
            &[("value", merge), ("updated_at", Merge::Replace)],
        );
        let now = format_ts(now_ns());
        let (w, h) = (
            limits::text(worker, limits::NAME).into_owned(),
            limits::text(host, HOST_MAX).into_owned(),
        );

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "worker_counters",
                columns: &COLUMNS,
                tail: &tail,
            },
            values,
            |q: AnyQuery<'_>, (name, v): &(&str, i64)| {
                q.bind(w.clone())
                    .bind(h.clone())
                    .bind(limits::text(name, limits::NAME).into_owned())
                    .bind(*v)
                    .bind(now.clone())
            },
        )
        .await?;
        Ok(())
    }
}

/// [`WriteTx::record_counters`] on the SQLite bulk write path (one cached prepared upsert).
pub(crate) fn record_native(
    tx: &rusqlite::Transaction<'_>,
    worker: &str,
    host: &str,
    values: &[(&str, i64)],
    mode: CounterMode,
) -> Result<(), RepoError> {
    let d = super::Dialect::Sqlite;
    let tail = d.upsert_tail(
        "worker_counters",
        &COLUMNS[..3],
        &[("value", merge_of(mode)), ("updated_at", Merge::Replace)],
    );
    let sql = super::bulk::insert_sql("INSERT INTO", "worker_counters", &COLUMNS, 1, &tail);
    let mut stmt = tx.prepare_cached(&sql)?;
    let now = format_ts(now_ns());
    let (w, h) = (
        limits::text(worker, limits::NAME),
        limits::text(host, HOST_MAX),
    );
    for (name, v) in values {
        stmt.execute((&*w, &*h, &*limits::text(name, limits::NAME), *v, &now))?;
    }
    Ok(())
}

fn merge_of(mode: CounterMode) -> Merge {
    match mode {
        CounterMode::Add => Merge::Sum,
        CounterMode::Set => Merge::Replace,
    }
}

/// The longest stored host name.
const HOST_MAX: usize = 255;

impl Repository {
    /// (worker, host, name, value) of every counter, ordered.
    pub async fn counters(&self) -> Result<Vec<(String, String, String, i64)>, RepoError> {
        let rows = sqlx::query(
            "SELECT worker, host, name, value FROM worker_counters ORDER BY worker, host, name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "worker_counters");
                Ok((
                    d.text("worker")?,
                    d.text("host")?,
                    d.text("name")?,
                    d.i64("value")?,
                ))
            })
            .collect()
    }

    pub async fn record_counters(
        &self,
        worker: &str,
        host: &str,
        values: &[(&str, i64)],
        mode: CounterMode,
    ) -> Result<(), RepoError> {
        self.write(&[super::Write::Counters {
            worker,
            host,
            values,
            mode,
        }])
        .await
        .map(|_| ())
    }
}
