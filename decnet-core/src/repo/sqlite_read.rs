//! SQLite's read connections for the API's hot listings (`attackers`, `events`).
//!
//! Through sqlx's `Any` driver a SQLite row costs two copies of every value (the connection
//! thread's row, then the `Any` row), a channel hop per row between the connection's thread and
//! the task, and an allocation per text column; at 50 rows a page this was most of a listing's
//! time (see the README, bench api). Here a listing runs on a blocking thread over a plain
//! SQLite connection (rusqlite, the same libsqlite3 sqlx links) and the caller's row visitor
//! reads each cell in place, borrowed from SQLite's own buffers: one thread hop per page, no
//! allocation per cell. The SQL is the same portable text the MySQL path runs through sqlx.
//!
//! The connections are opened read-only (`query_only`) on the database file the pool uses;
//! in WAL mode they read the last committed state without blocking the writer. In-memory
//! databases (each connection would see its own) use the sqlx path.
use std::{path::PathBuf, str::FromStr as _, sync::Arc, time::Duration};

use rusqlite::types::ValueRef;
use sqlx::sqlite::SqliteConnectOptions;

use super::{RepoError, listing::Arg};

/// Listings running at once (each on a blocking thread with its own connection): as many as
/// the sqlx pool has connections.
const SLOTS: usize = 4;

pub(crate) struct SqliteReaders {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteReaders {
    /// Readers of the database file of `url` (a sqlx SQLite URL); `None` for an in-memory
    /// database or a URL sqlx would not read as a file.
    pub(crate) fn new(url: &str) -> Option<SqliteReaders> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return None;
        }
        let opts = SqliteConnectOptions::from_str(url).ok()?;
        let path = opts.get_filename().to_path_buf();
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return None;
        }
        Some(SqliteReaders {
            path,
            idle: std::sync::Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(SLOTS)),
        })
    }

    fn open(&self) -> Result<rusqlite::Connection, RepoError> {
        use rusqlite::OpenFlags as F;
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_secs(30))?;
        // Same page cache as the pool's connections; never a write through this path.
        c.execute_batch("PRAGMA cache_size = -32768; PRAGMA query_only = ON;")?;
        c.set_prepared_statement_cache_capacity(32);
        Ok(c)
    }

    /// Runs `sql` with `args` bound in order and calls `each` on every row, on a blocking
    /// thread with one of the read connections. Returns `each`'s state.
    pub(crate) async fn each_row<S, F>(
        &self,
        sql: String,
        args: Vec<Arg>,
        mut state: S,
        mut each: F,
    ) -> Result<S, RepoError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &dyn Cells) -> Result<(), RepoError> + Send + 'static,
    {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RepoError::Query(sqlx::Error::PoolClosed))?;
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => self.open()?,
        };
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = run(&conn, &sql, &args, &mut state, &mut each).map(|()| state);
            (conn, out)
        })
        .await
        .map_err(|e| {
            tracing::error!("a SQLite read thread failed: {e}");
            RepoError::Query(sqlx::Error::WorkerCrashed)
        })?;
        drop(permit);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        out
    }
}

fn run<S>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg],
    state: &mut S,
    each: &mut dyn FnMut(&mut S, &dyn Cells) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (i, a) in args.iter().enumerate() {
        match a {
            Arg::Text(s) => stmt.raw_bind_parameter(i + 1, s.as_str())?,
            Arg::Int(v) => stmt.raw_bind_parameter(i + 1, *v)?,
        }
    }
    // The column names, once per statement: decoders look columns up by name on every cell.
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        each(state, &RowCells(row, &names))?;
    }
    Ok(())
}

/// One result row's cells by position, borrowed (what listing visitors read rows through, on
/// either backend). A cell of the wrong type is an error naming the column's position.
pub(crate) trait Cells {
    /// The position of the column named `name` in the row.
    fn index_of(&self, name: &str) -> Option<usize>;
    fn i64(&self, i: usize) -> Result<i64, CellError>;
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, CellError>;
    fn str(&self, i: usize) -> Result<&str, CellError>;
    fn opt_str(&self, i: usize) -> Result<Option<&str>, CellError>;
    fn bytes(&self, i: usize) -> Result<&[u8], CellError>;
}

/// Why a cell did not read as asked.
#[derive(Debug)]
pub(crate) struct CellError(pub(crate) String);

struct RowCells<'a, 'r>(&'a rusqlite::Row<'r>, &'a [String]);

impl RowCells<'_, '_> {
    fn get(&self, i: usize) -> Result<ValueRef<'_>, CellError> {
        self.0.get_ref(i).map_err(|e| CellError(e.to_string()))
    }
}

fn utf8(b: &[u8]) -> Result<&str, CellError> {
    std::str::from_utf8(b).map_err(|e| CellError(e.to_string()))
}

impl Cells for RowCells<'_, '_> {
    fn index_of(&self, name: &str) -> Option<usize> {
        self.1.iter().position(|n| n == name)
    }

    fn i64(&self, i: usize) -> Result<i64, CellError> {
        match self.get(i)? {
            ValueRef::Integer(v) => Ok(v),
            v => Err(CellError(format!(
                "{:?} where an integer belongs",
                v.data_type()
            ))),
        }
    }

    fn opt_i64(&self, i: usize) -> Result<Option<i64>, CellError> {
        match self.get(i)? {
            ValueRef::Null => Ok(None),
            _ => self.i64(i).map(Some),
        }
    }

    fn str(&self, i: usize) -> Result<&str, CellError> {
        match self.get(i)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => utf8(b),
            v => Err(CellError(format!("{:?} where text belongs", v.data_type()))),
        }
    }

    fn opt_str(&self, i: usize) -> Result<Option<&str>, CellError> {
        match self.get(i)? {
            ValueRef::Null => Ok(None),
            _ => self.str(i).map(Some),
        }
    }

    fn bytes(&self, i: usize) -> Result<&[u8], CellError> {
        match self.get(i)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => Ok(b),
            v => Err(CellError(format!("{:?} where bytes belong", v.data_type()))),
        }
    }
}

/// The same over a sqlx row (the MySQL path, and SQLite in memory): cells borrowed from the
/// row's values.
pub(crate) struct AnyCells<'r>(pub(crate) &'r sqlx::any::AnyRow);

impl Cells for AnyCells<'_> {
    fn index_of(&self, name: &str) -> Option<usize> {
        use sqlx::{Column as _, Row as _};
        self.0.columns().iter().position(|c| c.name() == name)
    }

    fn i64(&self, i: usize) -> Result<i64, CellError> {
        use sqlx::Row as _;
        self.0
            .try_get::<i64, _>(i)
            .map_err(|e| CellError(e.to_string()))
    }

    fn opt_i64(&self, i: usize) -> Result<Option<i64>, CellError> {
        use sqlx::Row as _;
        self.0
            .try_get::<Option<i64>, _>(i)
            .map_err(|e| CellError(e.to_string()))
    }

    fn str(&self, i: usize) -> Result<&str, CellError> {
        self.opt_str(i)?
            .ok_or_else(|| CellError("NULL where text belongs".into()))
    }

    fn opt_str(&self, i: usize) -> Result<Option<&str>, CellError> {
        use sqlx::Row as _;
        // MySQL sends TEXT columns with BLOB type codes, which the Any driver reports as
        // bytes: read them as such and check the UTF-8.
        match self.0.try_get::<Option<&str>, _>(i) {
            Ok(v) => Ok(v),
            Err(_) => match self.0.try_get::<Option<&[u8]>, _>(i) {
                Ok(v) => v.map(utf8).transpose(),
                Err(e) => Err(CellError(e.to_string())),
            },
        }
    }

    fn bytes(&self, i: usize) -> Result<&[u8], CellError> {
        use sqlx::Row as _;
        match self.0.try_get::<&[u8], _>(i) {
            Ok(v) => Ok(v),
            Err(_) => self.str(i).map(str::as_bytes),
        }
    }
}
