//! The SQLite bulk write path: one dedicated write connection (rusqlite, the engine's own C API)
//! whose prepared statements are cached and reused row after row, inside one `BEGIN IMMEDIATE`
//! transaction per batch — how SQLite itself inserts fastest.
//!
//! sqlx's `Any` driver pays per value (conversion to its own argument type, a copy of every
//! text and blob, a trip to the connection's worker thread per statement) and per statement (a
//! multi-row statement text rebuilt and re-prepared for odd sizes); at the collector's rates that
//! cost more than SQLite's own work (see README, `cargo xtask bench collector`).
//!
//! A table module that wants the fast path writes a function over a [`rusqlite::Transaction`]
//! with `prepare_cached` statements whose SQL comes from the same portable builders
//! ([`super::bulk::insert_sql`], [`super::Dialect::upsert_tail`]) as its sqlx path, so the SQL
//! is still written once; [`super::Repository::write`] sends the writes that have such a
//! function here (see [`super::Write::native`]). Everything else, and every read, stays on sqlx.
//!
//! Only for a database file: an in-memory database lives in its sqlx connection and cannot be
//! shared, so it keeps the sqlx path. The connection is used from the writing task with
//! [`tokio::task::block_in_place`] on a multi-threaded runtime (the runtime moves its other
//! tasks to other threads meanwhile), inline on a current-thread one.
use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use super::{BUSY_TIMEOUT, RepoError};

/// The dedicated write connection (cheap to clone: clones share it).
#[derive(Debug, Clone)]
pub(crate) struct SqliteWriter {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

/// Statements kept prepared (per connection; a table needs one or two).
const STATEMENT_CACHE: usize = 32;

impl SqliteWriter {
    /// Opens the write connection to `path` (already created and migrated), with the pragmas of
    /// the sqlx connections.
    pub(crate) fn open(path: &Path) -> Result<SqliteWriter, RepoError> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 10000",
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteWriter {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`) and commits; an error rolls back.
    /// The caller holds the repository's write lock.
    pub(crate) fn transaction<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, RepoError>,
    ) -> Result<R, RepoError> {
        let run = || {
            // A panic while holding the connection leaves no transaction open (the Transaction
            // rolls back on drop): the connection is still good.
            let mut conn = self
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let r = f(&tx)?;
            tx.commit()?;
            Ok(r)
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }
}

/// SQLITE_BUSY / SQLITE_LOCKED: redoing the transaction helps.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
