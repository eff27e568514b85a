//! The repository every decnet worker and the API go through — the only way they coordinate.
//!
//! [`Repository`] hides which database is behind it: SQLite (the default, an embedded file) or
//! MySQL/MariaDB, chosen by `DECNET_DB_TYPE` with the sqlx URL in `DECNET_DB_URL` (see
//! [`DbConfig`]). Queries are written once, portably (sqlx's `Any` driver, `?` placeholders), in
//! one module per table: the module owns the table's column list, decodes its rows by column
//! name and holds every read and write of it (consumers pass filters, e.g. [`EventFilter`]).
//! [`dialect::Dialect`] supplies only what differs (conflict clauses, `INSERT IGNORE`, how a
//! write transaction starts, bind limits); [`migrate`] applies the per-dialect migrations under
//! a lock so that workers starting together never race. The API's two hot listings
//! (`attackers`, `events`) run the same portable SQL on SQLite through `sqlite_read` (plain
//! read connections on a blocking thread, rows lent to the caller's visitor), which the `Any`
//! driver's per-value copies made several times slower (README, bench api).
//!
//! | table | module | written by | read by |
//! | --- | --- | --- | --- |
//! | `events` | `events` | collector (retention deletes old rows) | correlator, profiler, API |
//! | `credentials` | `credentials` | collector (with its events) | correlator, profiler, API |
//! | `flows` | `flows` | sniffer (retention deletes old rows) | correlator, API |
//! | `attackers` | `attackers` | correlator | profiler, API |
//! | `attacker_touches` | `touches` | correlator | correlator, profiler, API |
//! | `sessions` | `sessions` | correlator | correlator, profiler, API |
//! | `scans` | `scans` | correlator | correlator, profiler |
//! | `traversals` | `traversals` | correlator | tests (the API shows the touches) |
//! | `credential_reuse` | `credential_reuse` | correlator | correlator, profiler, tests |
//! | `pivots` | `pivots` | correlator | tests |
//! | `attacker_evidence` | `evidence` | correlator | profiler |
//! | `attacker_profiles` | `profiles` | profiler | API |
//! | `fingerprints` | `fingerprints`, `decky_fingerprints` | sniffer | profiler, API, prober |
//! | `deckies`, `decky_services` | `deckies` | `decnet deploy` | correlator, API |
//! | `mutations` | `mutations` | mutator (one record per applied change) | API, tests |
//! | `mutation_requests` | `mutation_requests` | API (requests), mutator (claim, outcome) | mutator, API |
//! | `fleet_generations` | `fleet_generations` | deploy (start, outcomes), mutator (changes) | deploy, mutator |
//! | `probe_results`, `probe_vantages` | `probe_results` | prober | API; correlator (vantages) |
//! | `users` | `users` | API | API |
//! | `worker_leases` | `leases` | every worker | deploy, API |
//! | `worker_cursors` | `cursors` | correlator, profiler | correlator, profiler, retention, API |
//! | `worker_counters` | `counters` | every worker, deploy | deploy, API |
//!
//! Cross-table: `intel_batch` (the correlator's one write transaction over its tables),
//! `stats` (row counts of the main tables) and `storage` (retention's timed deletion batches,
//! SQLite's incremental vacuum; the deletions themselves live with their tables).
//!
//! Idempotency rules (every write path follows them): natural keys are unique; re-inserting a
//! fact is a no-op; upserts merge — `first_seen` takes the minimum, `last_seen` the maximum,
//! counters the maximum (they are derived from facts, never blindly overwritten), flags the
//! union. Replaying input or resuming from a cursor after a crash therefore never duplicates rows
//! and never shrinks a counter.
//!
//! Writes go through [`WriteTx`] (one transaction; dropped without [`WriteTx::commit`] it rolls
//! back). On SQLite the repository serialises its own write transactions (one writer path per
//! process) and other processes wait on the busy timeout; on MySQL row locks do the work.
//!
//! Storage conventions: timestamps are [`crate::time_fmt::format_ts`] text (fixed width, so text
//! order is time order) — except `events.ts`, Unix epoch nanoseconds as an integer (the
//! collector's table is the largest and the hottest; [`Dialect::ts_text`] converts where it meets
//! the others); IP addresses their canonical text; attacker-supplied bytes are BLOBs, stored
//! exactly; every text field is bounded ([`limits`]).
//!
//! On a SQLite file, the writes that have one (the collector's events, their credentials, the
//! counters) go through the bulk write path, a dedicated connection with cached prepared
//! statements (module `sqlite_writer`); everything else through sqlx.

pub mod dialect;
pub mod migrate;

// One module per table (or a table and its child table); each owns its column list, its
// decoding and every statement on the table. Their public types are re-exported below.
mod attackers;
mod counters;
mod credential_reuse;
mod credentials;
mod cursors;
mod deckies;
mod events;
mod evidence;
mod fingerprints;
mod fleet_generations;
mod flows;
mod leases;
mod mutation_requests;
mod mutations;
mod pivots;
mod probe_results;
mod profiles;
mod scans;
mod sessions;
mod touches;
mod traversals;
mod users;

// Cross-table concerns, named for what they are.
mod intel_batch;
mod stats;
mod storage;

// Statement building blocks.
mod bulk;
// The SQLite bulk write path (a dedicated connection with cached prepared statements).
mod decode;
mod listing;
mod sqlite_read;
mod sqlite_writer;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    Any, AnyPool, Executor as _, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::model::{
    AttackerProfile, AttackerUpdate, CredentialAttempt, Decky, FlowRecord, Mutation, NewEvent,
    Touch,
};

pub use self::{
    attackers::{AttackerCursor, AttackerFilter, AttackerRef, AttackerRow, AttackerSort},
    counters::CounterMode,
    credentials::{CredentialFilter, printable},
    dialect::{Dialect, Merge},
    events::{Bucket, DeckyActivity, EventFact, EventFilter, EventRef, TopColumn, dedup_key},
    fleet_generations::MAX_FLEET_JSON,
    flows::{FlowFilter, FlowRow, ScanRow},
    intel_batch::IntelBatch,
    leases::{LeaseHolder, LeaseKeeper, hostname, pid_alive},
    listing::{MAX_NEEDLE, MAX_PAGE, NameCount},
    pivots::PivotCursor,
    probe_results::{ProbeFilter, ProbeTally},
    scans::{ScanCursor, ScanReplace},
    sessions::{SessionBytes, SessionFilter, SessionReplace, SessionRow},
    stats::Counts,
    storage::{AutoVacuum, Purge, Space},
    users::username_key,
};

/// Entries kept in a stored list (ports, hosts, targets, attackers, hops); the counts stay
/// exact.
pub const LIST_MAX: usize = 256;

/// Environment variables that choose the database; quoted in errors.
pub const DB_TYPE_VAR: &str = "DECNET_DB_TYPE";
pub const DB_URL_VAR: &str = "DECNET_DB_URL";
/// The embedded default: a file in the working directory.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://decnet.db";

/// How long a statement waits for another writer (another process) before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors from the repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The configuration is unusable or the database cannot be reached. The message names the
    /// variable and the URL (password redacted).
    #[error("cannot open the database {var}={url:?}: {reason}")]
    Connect {
        var: &'static str,
        url: String,
        reason: String,
    },
    /// The schema migrations failed.
    #[error("cannot migrate the database {DB_URL_VAR}={url:?}: {reason}")]
    Migrate { url: String, reason: String },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A statement on a SQLite connection of the repository's own failed: the bulk write path
    /// (`sqlite_writer`) or the listings' read connections (`sqlite_read`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row holds a value that does not decode.
    #[error("{table} row {id} has an invalid {column} {value:?}: {reason}")]
    Corrupt {
        table: &'static str,
        id: i64,
        column: &'static str,
        value: String,
        reason: String,
    },
    /// A worker lease is held by a live holder.
    #[error("{0}")]
    LeaseHeld(String),
}

/// `DECNET_DB_TYPE` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbType {
    Sqlite,
    MySql,
}

impl FromStr for DbType {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Self, RepoError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "sqlite" => Ok(DbType::Sqlite),
            "mysql" | "mariadb" => Ok(DbType::MySql),
            other => Err(RepoError::Connect {
                var: DB_TYPE_VAR,
                url: other.to_owned(),
                reason: "unknown database type: use sqlite (default) or mysql".to_owned(),
            }),
        }
    }
}

/// Which database to open: `DECNET_DB_TYPE` (default sqlite) and `DECNET_DB_URL` (default
/// `sqlite://decnet.db` for SQLite; required for MySQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    pub db_type: DbType,
    pub url: String,
}

impl DbConfig {
    /// From explicit values (e.g. CLI flags that fell back to the environment).
    pub fn new(db_type: Option<&str>, url: Option<&str>) -> Result<Self, RepoError> {
        let db_type = match db_type {
            Some(t) => t.parse()?,
            None => match url {
                Some(u) if u.starts_with("mysql:") || u.starts_with("mariadb:") => DbType::MySql,
                _ => DbType::Sqlite,
            },
        };
        let url = match (db_type, url) {
            (_, Some(u)) if !u.trim().is_empty() => u.trim().to_owned(),
            (DbType::Sqlite, _) => DEFAULT_SQLITE_URL.to_owned(),
            (DbType::MySql, _) => {
                return Err(RepoError::Connect {
                    var: DB_URL_VAR,
                    url: String::new(),
                    reason: "DECNET_DB_TYPE=mysql needs DECNET_DB_URL=mysql://user:password@host/database"
                        .to_owned(),
                });
            }
        };
        let scheme_ok = match db_type {
            DbType::Sqlite => url.starts_with("sqlite:"),
            DbType::MySql => url.starts_with("mysql:") || url.starts_with("mariadb:"),
        };
        if !scheme_ok {
            return Err(RepoError::Connect {
                var: DB_URL_VAR,
                url: redact_url(&url),
                reason: format!(
                    "does not match {DB_TYPE_VAR}={}: expected {}",
                    match db_type {
                        DbType::Sqlite => "sqlite",
                        DbType::MySql => "mysql",
                    },
                    match db_type {
                        DbType::Sqlite => "sqlite://PATH, sqlite:///ABS/PATH or sqlite::memory:",
                        DbType::MySql => "mysql://user:password@host[:port]/database",
                    }
                ),
            });
        }
        let url = url.replacen("mariadb:", "mysql:", 1);
        Ok(DbConfig { db_type, url })
    }

    /// From `DECNET_DB_TYPE` and `DECNET_DB_URL`.
    pub fn from_env() -> Result<Self, RepoError> {
        let t = std::env::var(DB_TYPE_VAR).ok();
        let u = std::env::var(DB_URL_VAR).ok();
        Self::new(t.as_deref(), u.as_deref())
    }
}

/// The repository workers and the API receive. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct Repository {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite: this process's single write path (one write transaction at a time; queueing
    /// here is cheaper and fairer than connections spinning in the busy handler).
    write_lock: Option<Arc<Mutex<()>>>,
    /// SQLite file: the bulk write path ([`sqlite_writer`]) for the writes that have one.
    native: Option<sqlite_writer::SqliteWriter>,
    /// SQLite (a file): the read connections of the hot listings (see `sqlite_read`).
    readers: Option<Arc<sqlite_read::SqliteReaders>>,
}

impl Repository {
    /// Opens the database described by `DECNET_DB_TYPE` / `DECNET_DB_URL`.
    pub async fn from_env() -> Result<Repository, RepoError> {
        Self::open(&DbConfig::from_env()?).await
    }

    /// Opens `url`, the backend inferred from its scheme (`sqlite:` or `mysql:`).
    pub async fn connect(url: &str) -> Result<Repository, RepoError> {
        Self::open(&DbConfig::new(None, Some(url))?).await
    }

    /// Opens (SQLite: creating the file if needed) and migrates the database. Any failure is one
    /// error naming the variable and the URL.
    pub async fn open(cfg: &DbConfig) -> Result<Repository, RepoError> {
        sqlx::any::install_default_drivers();
        let url = cfg.url.as_str();
        let connect_err = |reason: String| RepoError::Connect {
            var: DB_URL_VAR,
            url: redact_url(url),
            reason,
        };
        let dialect = match cfg.db_type {
            DbType::Sqlite => Dialect::Sqlite,
            DbType::MySql => Dialect::MySql,
        };
        // SQLite: create the file if it does not exist yet.
        let url_owned;
        let connect_url =
            if dialect == Dialect::Sqlite && !url.contains("mode=") && !url.contains(":memory:") {
                url_owned = format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' });
                url_owned.as_str()
            } else {
                url
            };
        let opts =
            AnyConnectOptions::from_str(connect_url).map_err(|e| connect_err(e.to_string()))?;
        let in_memory =
            dialect == Dialect::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let pool_opts = match dialect {
            Dialect::Sqlite if in_memory => {
                // A memory database lives as long as one of its connections.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            }
            Dialect::Sqlite => AnyPoolOptions::new().max_connections(4),
            Dialect::MySql => AnyPoolOptions::new().max_connections(16),
        }
        .acquire_timeout(BUSY_TIMEOUT + Duration::from_secs(5))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                match dialect {
                    Dialect::Sqlite => {
                        conn.execute(
                            // A 32 MiB page cache and a 40 MB WAL between checkpoints: bulk
                            // inserts spend their time in B-tree pages; both were measured (see
                            // README, bench repo). auto_vacuum = INCREMENTAL before anything
                            // else: it takes effect only on a file that has no table yet (a new
                            // one: the migrations then create the tables), so retention can give
                            // freed pages back to the file system (see `storage`).
                            "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA busy_timeout = 30000; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
                             PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 10000",
                        )
                        .await?;
                    }
                    Dialect::MySql => {
                        conn.execute(
                            "SET SESSION time_zone = '+00:00', \
                             SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', \
                             SESSION innodb_lock_wait_timeout = 30",
                        )
                        .await?;
                    }
                }
                Ok(())
            })
        });
        let pool = pool_opts
            .connect_with(opts)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        if let Err(e) = migrate::run_on_pool(dialect, &pool, url).await {
            pool.close().await;
            return Err(e);
        }
        let native = match migrate::sqlite_file(url) {
            Some(path) if dialect == Dialect::Sqlite && !url.contains("mode=ro") => {
                match sqlite_writer::SqliteWriter::open(&path) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        pool.close().await;
                        return Err(connect_err(format!("the bulk write connection: {e}")));
                    }
                }
            }
            _ => None,
        };
        Ok(Repository {
            pool,
            dialect,
            write_lock: (dialect == Dialect::Sqlite).then(|| Arc::new(Mutex::new(()))),
            native,
            readers: (dialect == Dialect::Sqlite)
                .then(|| sqlite_read::SqliteReaders::new(connect_url))
                .flatten()
                .map(Arc::new),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, for read queries of the portable modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// SQLite on a file: the read connections of the hot listings.
    pub(crate) fn readers(&self) -> Option<&sqlite_read::SqliteReaders> {
        self.readers.as_deref()
    }

    /// Starts a write transaction. Dropping it without [`WriteTx::commit`] rolls back.
    pub async fn begin(&self) -> Result<WriteTx, RepoError> {
        let guard = match &self.write_lock {
            Some(l) => Some(l.clone().lock_owned().await),
            None => None,
        };
        // Started on a task of its own, so that a caller that gives up half-way (a `select!`, a
        // timeout, a worker ended by a second stop signal) cannot leave the connection inside
        // its BEGIN: sqlx 0.8 returns such a connection to the pool with the transaction open
        // (on SQLite holding the write lock until the process exits). Finished here, an
        // abandoned transaction is dropped whole and rolled back.
        let pool = self.pool.clone();
        let begin = self.dialect.begin_write();
        let tx = tokio::spawn(async move { pool.begin_with(begin).await })
            .await
            .map_err(|e| RepoError::Query(sqlx::Error::Protocol(format!("begin task: {e}"))))??;
        Ok(WriteTx {
            tx,
            dialect: self.dialect,
            _guard: guard,
        })
    }

    /// Applies `writes` in one write transaction and commits; returns each write's affected-row
    /// count. A transaction the database aborted to break a deadlock or a lock-wait timeout
    /// (normal under concurrent writers on MySQL) is rolled back and redone from the start, up
    /// to 10 times — callers never see lock errors, and nothing is applied twice.
    pub async fn write(&self, writes: &[Write<'_>]) -> Result<Vec<u64>, RepoError> {
        let mut backoff = Duration::from_millis(5);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(native) = &self.native
                && writes.iter().all(Write::has_native)
            {
                let _guard = match &self.write_lock {
                    Some(l) => Some(l.lock().await),
                    None => None,
                };
                let result = native.transaction(|tx| {
                    writes
                        .iter()
                        .map(|w| w.apply_native(tx))
                        .collect::<Result<Vec<u64>, RepoError>>()
                });
                match result {
                    Err(e) if attempt < 10 && is_retryable(&e) => {
                        tracing::debug!(attempt, "SQLite busy, retrying: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                        continue;
                    }
                    other => return other,
                }
            }
            let result = async {
                let mut tx = self.begin().await?;
                let mut counts = Vec::with_capacity(writes.len());
                for w in writes {
                    counts.push(tx.apply(w).await?);
                }
                tx.commit().await?;
                Ok(counts)
            }
            .await;
            match result {
                Err(e) if attempt < 10 && is_retryable(&e) => {
                    tracing::debug!(
                        attempt,
                        "transaction aborted by the database, retrying: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// A cheap liveness probe of the database.
    pub async fn ping(&self) -> Result<(), RepoError> {
        let _: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(self.pool())
            .await?;
        Ok(())
    }

    /// Closes the pool, waiting for checked-out connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One write transaction. All write operations of the repository are methods on it (and have
/// one-shot shortcuts on [`Repository`]).
pub struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    pub(crate) dialect: Dialect,
    _guard: Option<OwnedMutexGuard<()>>,
}

/// One write, as data, so that [`Repository::write`] can redo a whole transaction.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Flows(&'a [FlowRecord]),
    Events(&'a [NewEvent]),
    /// Events plus the credential attempts they carry, `(event index, attempt)`; attempts count
    /// only for events that are new (see [`WriteTx::insert_events_with_credentials`]).
    EventsWithCredentials {
        events: &'a [NewEvent],
        credentials: &'a [(usize, CredentialAttempt)],
    },
    Attackers(&'a [AttackerUpdate]),
    Touches(&'a [Touch]),
    Profiles(&'a [AttackerProfile]),
    Deckies(&'a [Decky]),
    Mutations(&'a [Mutation]),
    /// One correlator batch (see [`IntelBatch`]).
    Intel(&'a IntelBatch),
    Cursor {
        worker: &'a str,
        host: &'a str,
        name: &'a str,
        position: i64,
        state: &'a str,
    },
    Counters {
        worker: &'a str,
        host: &'a str,
        values: &'a [(&'a str, i64)],
        mode: CounterMode,
    },
}

impl WriteTx {
    /// Applies one [`Write`]; returns its affected-row count.
    pub async fn apply(&mut self, w: &Write<'_>) -> Result<u64, RepoError> {
        match *w {
            Write::Flows(v) => self.upsert_flows(v).await,
            Write::Events(v) => self.insert_events(v).await,
            Write::EventsWithCredentials {
                events,
                credentials,
            } => {
                self.insert_events_with_credentials(events, credentials)
                    .await
            }
            Write::Attackers(v) => self.upsert_attackers(v).await,
            Write::Touches(v) => self.touch(v).await,
            Write::Profiles(v) => self.upsert_profiles(v).await,
            Write::Deckies(v) => self.upsert_deckies(v).await,
            Write::Mutations(v) => self.record_mutations(v).await,
            Write::Intel(b) => self.apply_intel(b).await,
            Write::Cursor {
                worker,
                host,
                name,
                position,
                state,
            } => self
                .set_cursor(worker, host, name, position, state)
                .await
                .map(|()| 1),
            Write::Counters {
                worker,
                host,
                values,
                mode,
            } => self
                .record_counters(worker, host, values, mode)
                .await
                .map(|()| values.len() as u64),
        }
    }

    pub async fn commit(self) -> Result<(), RepoError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), RepoError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Write<'_> {
    /// Whether the SQLite bulk write path ([`sqlite_writer`]) has this write.
    fn has_native(&self) -> bool {
        matches!(
            self,
            Write::Flows(_)
                | Write::Events(_)
                | Write::EventsWithCredentials { .. }
                | Write::Counters { .. }
        )
    }

    /// Applies the write on the bulk write path; only for [`Write::has_native`] writes.
    fn apply_native(&self, tx: &rusqlite::Transaction<'_>) -> Result<u64, RepoError> {
        match *self {
            Write::Flows(v) => flows::upsert_native(tx, v),
            Write::Events(v) => events::insert_native(tx, v, &[]),
            Write::EventsWithCredentials {
                events,
                credentials,
            } => events::insert_native(tx, events, credentials),
            Write::Counters {
                worker,
                host,
                values,
                mode,
            } => counters::record_native(tx, worker, host, values, mode)
                .map(|()| values.len() as u64),
            _ => Err(RepoError::Query(sqlx::Error::Protocol(
                "internal: this write has no SQLite bulk path".into(),
            ))),
        }
    }
}

/// Deadlock / lock-wait timeout (MySQL), busy / locked (SQLite): redoing the transaction helps.
fn is_retryable(e: &RepoError) -> bool {
    if let RepoError::Sqlite(e) = e {
        return sqlite_writer::is_busy(e);
    }
    let RepoError::Query(sqlx::Error::Database(db)) = e else {
        return false;
    };
    match db.code().as_deref() {
        // MySQL: deadlock, lock wait timeout, serialization failure.
        Some("40001") | Some("HY000") if db.message().contains("try restarting transaction") => {
            true
        }
        Some("40001") => true,
        // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
        Some(code) => matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5) | Ok(6)),
        None => false,
    }
}

/// `url` with the password of its user-info (if any) replaced by `***`, for error messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// Bounds for stored text and bytes. Longer values are cut (at a character boundary) and the
/// cut is marked, so hostile input cannot grow rows without bound.
pub mod limits {
    /// Names: decky, service, event type, worker kind, host, fingerprint kind, roles.
    pub const NAME: usize = 64;
    /// Credential principals and printable secrets, fingerprint values, usernames.
    pub const SHORT_TEXT: usize = 1024;
    /// Raw log lines (bytes) and JSON field blobs.
    pub const LONG: usize = 65_536;
    /// The marker appended to a cut value.
    pub const CUT: &str = "…[cut]";

    /// `s` bounded to `max` bytes (cut at a char boundary, marked).
    pub fn text(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
        if s.len() <= max {
            return std::borrow::Cow::Borrowed(s);
        }
        let mut end = max.saturating_sub(CUT.len());
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        std::borrow::Cow::Owned(format!("{}{CUT}", &s[..end]))
    }

    /// `b` bounded to `max` bytes (cut, not marked: bytes are stored exactly as far as kept).
    pub fn bytes(b: &[u8], max: usize) -> &[u8] {
        &b[..b.len().min(max)]
    }
}
