//! Bounded storage: what `decnet retention` needs besides each table's own deletion (which
//! lives with its table: [`Repository::purge_events`] in `events`, [`Repository::purge_flows`]
//! in `flows`).
//!
//! - [`Purge`]: the outcome of one deletion batch — rows deleted, how long the batch held the
//!   write lock, where the next batch continues.
//! - [`delete_candidates`]: one batch's chosen rows deleted in its own short write transaction,
//!   timed from the moment the write lock is held (SQLite: `BEGIN IMMEDIATE` returned) to the
//!   commit.
//! - SQLite space: new databases are created with `auto_vacuum = INCREMENTAL` (set on every
//!   connection before the migrations create the first table, see [`super::Repository::open`]),
//!   so pages freed by deletion can be given back to the file system in small steps
//!   ([`Repository::incremental_vacuum`]). A database created before that needs one `VACUUM`
//!   to switch ([`Repository::convert_to_incremental_vacuum`]); it rewrites the whole file while
//!   holding the write lock, so the caller decides when (see `decnet retention --help`).
//!   MariaDB (InnoDB) reuses the space of deleted rows itself: deletion alone keeps it bounded.
use std::time::{Duration, Instant};

use super::{RepoError, Repository, bulk::AnyQuery, dialect::Dialect};

/// One deletion batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purge {
    /// Rows deleted.
    pub rows: u64,
    /// Candidates selected for the batch (0: nothing left to delete).
    pub selected: u64,
    /// How long the batch held the write lock (zero when nothing was selected).
    pub held: Duration,
    /// The time (ns) the next batch continues from (the oldest candidate not yet looked at is
    /// at or after it).
    pub next_ns: i64,
}

/// SQLite's `auto_vacuum` mode of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoVacuum {
    None,
    Full,
    Incremental,
}

/// SQLite page accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub page_size: u64,
    pub pages: u64,
    /// Pages free inside the file (what incremental vacuum can give back).
    pub free_pages: u64,
}

/// Runs `sql` (a `DELETE … WHERE id IN (ids) AND …`) with `ids` bound first and `extra` binding
/// the rest, as one write transaction; returns the rows deleted and how long the write lock was
/// held.
/// The rest of a retention batch once its candidates are chosen: `ids` (oldest first) are
/// deleted by `delete(placeholders)` — their ids bound first, then what `extra` binds — in one
/// timed transaction; `next_ns` (the last candidate's time) is where the next batch starts.
pub(crate) async fn delete_candidates(
    repo: &Repository,
    ids: &[i64],
    next_ns: i64,
    delete: impl FnOnce(&str) -> String,
    extra: impl for<'q> Fn(AnyQuery<'q>) -> AnyQuery<'q>,
) -> Result<Purge, RepoError> {
    if ids.is_empty() {
        return Ok(Purge {
            next_ns,
            ..Purge::default()
        });
    }
    let sql = delete(&super::bulk::placeholders(ids.len()));
    let (rows, held) = timed_delete(repo, &sql, ids, extra).await?;
    Ok(Purge {
        rows,
        selected: ids.len() as u64,
        held,
        next_ns,
    })
}

async fn timed_delete<'q>(
    repo: &Repository,
    sql: &'q str,
    ids: &[i64],
    extra: impl Fn(AnyQuery<'q>) -> AnyQuery<'q>,
) -> Result<(u64, Duration), RepoError> {
    let mut tx = repo.begin().await?;
    let held = Instant::now();
    let mut q = sqlx::query(sql);
    for id in ids {
        q = q.bind(*id);
    }
    let q = extra(q);
    let n = q.execute(&mut *tx.tx).await?.rows_affected();
    tx.commit().await?;
    Ok((n, held.elapsed()))
}

impl Repository {
    /// SQLite: the file's `auto_vacuum` mode; `None` on MariaDB.
    pub async fn auto_vacuum(&self) -> Result<Option<AutoVacuum>, RepoError> {
        if self.dialect != Dialect::Sqlite {
            return Ok(None);
        }
        let v: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(self.pool())
            .await?;
        Ok(Some(match v {
            1 => AutoVacuum::Full,
            2 => AutoVacuum::Incremental,
            _ => AutoVacuum::None,
        }))
    }

    /// SQLite: page size, pages and free pages of the file; `None` on MariaDB.
    pub async fn space(&self) -> Result<Option<Space>, RepoError> {
        if self.dialect != Dialect::Sqlite {
            return Ok(None);
        }
        let mut v = [0u64; 3];
        for (i, p) in ["page_size", "page_count", "freelist_count"]
            .iter()
            .enumerate()
        {
            let n: i64 = sqlx::query_scalar(&format!("PRAGMA {p}"))
                .fetch_one(self.pool())
                .await?;
            v[i] = u64::try_from(n).unwrap_or(0);
        }
        Ok(Some(Space {
            page_size: v[0],
            pages: v[1],
            free_pages: v[2],
        }))
    }

    /// SQLite: switches a file created without `auto_vacuum = INCREMENTAL` to it with one
    /// `VACUUM` (the whole file is rewritten while this process holds the write lock; other
    /// processes' writers wait for it, up to their busy timeout). Returns how long it took. A
    /// no-op on MariaDB.
    pub async fn convert_to_incremental_vacuum(&self) -> Result<Duration, RepoError> {
        if self.dialect != Dialect::Sqlite {
            return Ok(Duration::ZERO);
        }
        let _guard = match &self.write_lock {
            Some(l) => Some(l.clone().lock_owned().await),
            None => None,
        };
        let t = Instant::now();
        let mut conn = self.pool().acquire().await?;
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        Ok(t.elapsed())
    }

    /// SQLite: gives up to `pages` free pages back to the file system, in one write transaction;
    /// returns the pages freed and how long the write lock was held. `(0, 0)` on MariaDB or
    /// when the file has no free pages.
    pub async fn incremental_vacuum(&self, pages: u32) -> Result<(u64, Duration), RepoError> {
        if self.dialect != Dialect::Sqlite {
            return Ok((0, Duration::ZERO));
        }
        let mut tx = self.begin().await?;
        let held = Instant::now();
        let before: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&mut *tx.tx)
            .await?;
        if before == 0 {
            tx.rollback().await?;
            return Ok((0, Duration::ZERO));
        }
        sqlx::query(&format!("PRAGMA incremental_vacuum({pages})"))
            .execute(&mut *tx.tx)
            .await?;
        let after: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok((
            u64::try_from(before.saturating_sub(after)).unwrap_or(0),
            held.elapsed(),
        ))
    }

    /// SQLite: a passive WAL checkpoint (copies committed pages into the file and lets it
    /// shrink to what the last vacuum left; never waits for readers or writers). A no-op on
    /// MariaDB.
    pub async fn checkpoint(&self) -> Result<(), RepoError> {
        if self.dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_all(self.pool())
                .await?;
        }
        Ok(())
    }
}
