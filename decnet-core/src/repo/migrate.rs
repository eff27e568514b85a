//! Schema migrations, one directory per dialect (`migrations/sqlite`, `migrations/mysql`),
//! embedded at compile time and applied at start.
//!
//! When several workers start at once exactly one migrates and the others wait: on MySQL sqlx's
//! migrator holds a named lock (`GET_LOCK`) for the whole run; on SQLite (which has no named
//! locks) an exclusive lock on a file next to the database (`<db>.migrate-lock`) does the same.
//! Waiters then find the migrations applied and do nothing — no "table already exists" races.
use std::path::PathBuf;

use sqlx::{AnyPool, Executor as _, migrate::Migrator};

use super::{RepoError, dialect::Dialect, redact_url};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL: Migrator = sqlx::migrate!("./migrations/mysql");

/// The SQLite database file named by `url`, if it is a file.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Applies the dialect's migrations up to and including `last` on `pool` (no lock): how the
/// tests build a database as an older decnet left it, to check that a later migration converts
/// it.
#[doc(hidden)]
pub async fn run_until(dialect: Dialect, pool: &AnyPool, last: i64) -> Result<(), RepoError> {
    let all = match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::MySql => &MYSQL,
    };
    let mut m = Migrator::DEFAULT;
    m.migrations = all
        .iter()
        .filter(|x| x.version <= last)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    m.locking = false;
    m.run(pool).await.map_err(|e| RepoError::Migrate {
        url: String::new(),
        reason: e.to_string(),
    })
}

/// Applies the dialect's pending migrations on `pool`, under the migration lock.
pub async fn run_on_pool(dialect: Dialect, pool: &AnyPool, url: &str) -> Result<(), RepoError> {
    let err = |reason: String| RepoError::Migrate {
        url: redact_url(url),
        reason,
    };
    match dialect {
        Dialect::Sqlite => {
            let lock = match sqlite_file(url) {
                Some(db) => {
                    let mut name = db.into_os_string();
                    name.push(".migrate-lock");
                    let path = PathBuf::from(name);
                    let file =
                        tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                            let f = std::fs::OpenOptions::new()
                                .create(true)
                                .truncate(false)
                                .write(true)
                                .open(&path)?;
                            f.lock()?;
                            Ok(f)
                        })
                        .await
                        .map_err(|e| err(e.to_string()))?
                        .map_err(|e| err(format!("cannot take the migration lock file: {e}")))?;
                    Some(file)
                }
                None => None,
            };
            // WAL is a property of the file: set once, here, under the lock. Other processes
            // opening the same fresh file at this moment (their connections' pragmas) can make
            // SQLite answer "database is locked" without waiting on its busy handler: each
            // migration is its own transaction, so the run is retried a few times.
            let mut attempt = 0u32;
            loop {
                let run = async {
                    pool.execute("PRAGMA journal_mode = WAL").await?;
                    SQLITE.run(pool).await.map_err(sqlx::Error::from)
                };
                match run.await {
                    Ok(()) => break,
                    Err(e) if attempt < 10 && e.to_string().contains("database is locked") => {
                        attempt += 1;
                        tracing::debug!("migration found the database locked, retrying: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(
                            50 * u64::from(attempt),
                        ))
                        .await;
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            drop(lock);
        }
        Dialect::MySql => {
            // One named lock per database, held on the connection that migrates. (sqlx's own
            // lock asks GET_LOCK for an infinite wait, which MariaDB does not honour; this one
            // is checked.)
            const LOCK: &str = "LEFT(CONCAT('decnet.migrate.', DATABASE()), 64)";
            let mut conn = pool.acquire().await.map_err(|e| err(e.to_string()))?;
            let got: Option<i64> = sqlx::query_scalar(&format!("SELECT GET_LOCK({LOCK}, 600)"))
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| err(e.to_string()))?;
            if got != Some(1) {
                return Err(err("timed out after 600 s waiting for the migration lock held by another decnet process".into()));
            }
            let result = MYSQL
                .run_direct(&mut *conn)
                .await
                .map_err(|e| err(e.to_string()));
            let _ = sqlx::query(&format!("SELECT RELEASE_LOCK({LOCK})"))
                .execute(&mut *conn)
                .await;
            result?;
        }
    }
    Ok(())
}
