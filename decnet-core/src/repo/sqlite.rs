//! SQLite dialect of the repository: connection options, pool, migrations, upsert clause, and
//! binding/execution of the portable queries built in the parent module.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use tokio::sync::Mutex;

use super::{
    EncodedFlow, FLOW_COLUMNS, FLOW_KEY, RepoError, SELECT_FLOWS, StoredFlow, insert_sql,
    redact_url,
};
use crate::model::FlowRecord;

/// Embedded at compile time from `decnet-core/migrations/sqlite`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another writer (another process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pool size for file databases: one writer at a time (WAL), a few concurrent readers.
const MAX_CONNECTIONS: u32 = 4;

/// Rows per `INSERT` statement. Each row binds `FLOW_COLUMNS.len()` (14) variables; the bundled
/// SQLite allows 32766 per statement, so 1000 rows (14000 variables) stays well below it while
/// keeping the per-statement overhead negligible.
const ROWS_PER_STATEMENT: usize = 1000;
const _: () = assert!(ROWS_PER_STATEMENT * FLOW_COLUMNS.len() <= 32766);

/// SQLite's conflict clause: merge into the stored row (see `Repository::upsert_flows`).
fn upsert_tail() -> String {
    format!(
        "ON CONFLICT({FLOW_KEY}) DO UPDATE SET \
         packets = max(flows.packets, excluded.packets), \
         bytes = max(flows.bytes, excluded.bytes), \
         tcp_flags = flows.tcp_flags | excluded.tcp_flags, \
         last_seen = max(flows.last_seen, excluded.last_seen), \
         ended = max(flows.ended, excluded.ended)"
    )
}

#[derive(Debug, Clone)]
pub(super) struct SqliteBackend {
    pub(super) pool: SqlitePool,
    /// Serialises this process's write transactions: SQLite has one writer at a time anyway, and
    /// queueing here is fairer and cheaper than every connection spinning in the busy handler.
    /// (Other processes are still handled by `busy_timeout`.)
    write_lock: Arc<Mutex<()>>,
    /// SQL for a full chunk, built once.
    full_chunk_sql: Arc<str>,
}

impl SqliteBackend {
    pub(super) async fn connect(url: &str) -> Result<Self, RepoError> {
        let connect_err = |reason: String| RepoError::Connect {
            url: redact_url(url),
            reason,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        // An in-memory database lives as long as one of its connections: keep exactly one open
        // forever (a shared-cache memory DB with several connections also has table-level locks
        // that busy_timeout does not cover).
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        }
        .acquire_timeout(BUSY_TIMEOUT + Duration::from_secs(5));

        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| connect_err(e.to_string()))?;

        if let Err(e) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(RepoError::Migrate {
                url: redact_url(url),
                reason: e.to_string(),
            });
        }

        Ok(SqliteBackend {
            pool,
            write_lock: Arc::new(Mutex::new(())),
            full_chunk_sql: insert_sql(ROWS_PER_STATEMENT, &upsert_tail()).into(),
        })
    }

    pub(super) async fn upsert_flows(&self, flows: &[FlowRecord]) -> Result<u64, RepoError> {
        let _guard = self.write_lock.lock().await;
        // IMMEDIATE takes the write lock up front, so the busy handler covers other processes
        // and no statement inside can fail with SQLITE_BUSY halfway.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut written = 0u64;
        for chunk in flows.chunks(ROWS_PER_STATEMENT) {
            let encoded: Vec<EncodedFlow<'_>> = chunk.iter().map(EncodedFlow::encode).collect();
            let partial_sql;
            let sql: &str = if chunk.len() == ROWS_PER_STATEMENT {
                &self.full_chunk_sql
            } else {
                partial_sql = insert_sql(chunk.len(), &upsert_tail());
                &partial_sql
            };
            let mut query = sqlx::query(sql);
            for e in &encoded {
                query = query
                    .bind(e.bridge)
                    .bind(e.port)
                    .bind(e.src_ip.as_str())
                    .bind(e.dst_ip.as_str())
                    .bind(e.src_port)
                    .bind(e.dst_port)
                    .bind(e.proto)
                    .bind(e.vlan)
                    .bind(e.packets)
                    .bind(e.bytes)
                    .bind(e.tcp_flags)
                    .bind(e.first_seen.as_str())
                    .bind(e.last_seen.as_str())
                    .bind(e.ended);
            }
            // A partial chunk's SQL is one-off (its size varies): don't fill the statement cache.
            let query = query.persistent(chunk.len() == ROWS_PER_STATEMENT);
            written += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    pub(super) async fn list_flows(&self) -> Result<Vec<StoredFlow>, RepoError> {
        let rows = sqlx::query(SELECT_FLOWS).fetch_all(&self.pool).await?;
        rows.iter()
            .map(stored_flow)
            .collect::<Result<_, _>>()
            .map_err(RepoError::from)
    }

    pub(super) async fn count_flows(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flows")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

fn stored_flow(row: &SqliteRow) -> Result<StoredFlow, sqlx::Error> {
    Ok(StoredFlow {
        id: row.try_get(0)?,
        bridge: row.try_get(1)?,
        port: row.try_get(2)?,
        src_ip: row.try_get(3)?,
        dst_ip: row.try_get(4)?,
        src_port: row.try_get(5)?,
        dst_port: row.try_get(6)?,
        proto: row.try_get(7)?,
        vlan: row.try_get(8)?,
        packets: row.try_get(9)?,
        bytes: row.try_get(10)?,
        tcp_flags: row.try_get(11)?,
        first_seen: row.try_get(12)?,
        last_seen: row.try_get(13)?,
        ended: row.try_get(14)?,
    })
}
