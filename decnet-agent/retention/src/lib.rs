//! # decnet-retention — bounded storage (`decnet retention`)
//!
//! **Input:** the repository's `events` and `flows`, the correlator's cursors on them
//! (`worker_cursors`, worker `correlator`, names `events` and `flows`), and the retention
//! settings ([`RetentionArgs`]: days to keep each, batch size, the lock-hold target, the pass
//! interval).
//! **Output:** events and flows older than their retention deleted; on SQLite the freed pages
//! given back to the file system (`PRAGMA incremental_vacuum`), so the file shrinks; counters in
//! `worker_counters` (worker `retention`).
//!
//! Rules:
//! - Nothing the correlator has not taken in is deleted, whatever its age: only rows with ids up
//!   to its cursor (the lowest over every host that runs one). With no correlator cursor yet,
//!   nothing of that table is deleted (counted as `waiting_for_correlator_<table>`).
//! - What the correlator derived stays: attackers, touches, sessions, scans, credentials,
//!   credential reuse, traversals, pivots, profiles. So do the events of a session, and the
//!   flows of a session or scan episode, that still reaches into the kept window (the
//!   correlator may recompute it from them when late input arrives).
//! - Deletion goes in batches of at most `--batch` rows chosen oldest first by the time index
//!   (read without any lock), each deleted by id in its own short write transaction; the time
//!   the write lock is held is measured per batch and counted. A batch that held it longer than
//!   `--max-hold-ms` halves the next batch; one under half of it doubles it (up to `--batch`).
//! - SQLite: new databases are created with `auto_vacuum = INCREMENTAL`; the worker then runs
//!   `PRAGMA incremental_vacuum(--vacuum-pages)` steps, each its own short transaction, until no
//!   free page is left. A file created before (auto_vacuum off) needs one `VACUUM` to switch,
//!   which rewrites the file while holding the write lock: the worker does it at start when the
//!   file is at most `--convert-max-mb`, else it says so at every pass (deletion still keeps the
//!   file from growing: SQLite reuses the freed pages) and an operator converts it once with a
//!   larger `--convert-max-mb` at a quiet moment.
//! - MariaDB: deletion alone; InnoDB reuses the space of deleted rows.
//!
//! Runs through `decnet-runtime`: without `--daemon`/`--duration` one pass (everything due),
//! then exit; with either, a pass every `--interval`. One per host and repository (lease
//! `retention`).
use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use decnet_core::{
    repo::{AutoVacuum, CounterMode, Purge, RepoError, Repository, Write, hostname},
    time_fmt::{now_ns, parse_ts},
};
use decnet_runtime::{Context, DbArgs, Report, RunArgs, Spec, positive_secs};
use serde::Serialize;

pub const WORKER: &str = "retention";

/// The worker whose cursors bound what may be deleted, and its cursor names.
pub const CORRELATOR: &str = "correlator";
const EVENTS_CURSOR: &str = "events";
const FLOWS_CURSOR: &str = "flows";

const NS_PER_DAY: f64 = 86_400e9;

/// clap value parser: days to keep, a finite number ≥ 0 (0 = forever), at most 100 years.
pub fn days(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=36_500.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of days between 0 (keep forever) and 36500"
        )),
    }
}

/// `decnet retention`: delete old events and flows in small batches, keep what was derived
/// from them, and (SQLite) give the freed space back to the file system.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Nothing the correlator has not taken in is deleted, whatever its age (rows beyond its cursors \
stay; with no correlator cursor yet, nothing is deleted). What the correlator derived \
(attackers, sessions, scans, credentials, touches, traversals, profiles) is kept, and so are the \
events and flows of a session or scan that still reaches into the kept window.\n\n\
SQLite: new databases are created with auto_vacuum=INCREMENTAL and the file shrinks as rows are \
deleted (PRAGMA incremental_vacuum in small steps). A database created by an older decnet needs \
one VACUUM to switch: it rewrites the whole file while holding the write lock (other workers \
wait), so it runs at start only for files up to --convert-max-mb; convert a larger one once at \
a quiet moment with `decnet retention --convert-max-mb 100000`. Until then the file stops \
growing but does not shrink (SQLite reuses freed pages).\n\
MariaDB: deletion alone (InnoDB reuses the space of deleted rows; the files do not shrink).\n\n\
Examples:\n  decnet retention                       # one pass: delete what is due, then exit\n  \
decnet retention --daemon               # a pass every --interval (what decnet deploy runs)\n  \
DECNET_RETENTION_EVENTS_DAYS=30 DECNET_RETENTION_FLOWS_DAYS=0 decnet retention --daemon   # flows kept forever")]
pub struct RetentionArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// Days of events to keep (by event time); 0 keeps them forever. Fractions allowed.
    #[arg(long, value_name = "DAYS", env = "DECNET_RETENTION_EVENTS_DAYS", default_value = "14", value_parser = days)]
    pub events_days: f64,

    /// Days of flows to keep (by last packet); 0 keeps them forever. Fractions allowed.
    #[arg(long, value_name = "DAYS", env = "DECNET_RETENTION_FLOWS_DAYS", default_value = "7", value_parser = days)]
    pub flows_days: f64,

    /// Seconds between passes with --daemon or --duration.
    #[arg(long, value_name = "SECS", env = "DECNET_RETENTION_INTERVAL", default_value = "300", value_parser = positive_secs)]
    pub interval: f64,

    /// Most rows deleted per transaction.
    #[arg(long, value_name = "N", env = "DECNET_RETENTION_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,

    /// Target for how long one batch holds the write lock: a batch over it halves the next.
    #[arg(long, value_name = "MS", env = "DECNET_RETENTION_MAX_HOLD_MS", default_value = "5", value_parser = positive_secs)]
    pub max_hold_ms: f64,

    /// Pause between two batches, so that other writers get the lock in between.
    #[arg(long, value_name = "MS", env = "DECNET_RETENTION_PAUSE_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub pause_ms: u64,

    /// SQLite: free pages given back to the file system per step (each step one transaction).
    #[arg(long, value_name = "PAGES", env = "DECNET_RETENTION_VACUUM_PAGES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub vacuum_pages: u32,

    /// SQLite: a file without auto_vacuum=INCREMENTAL is switched (one VACUUM) at start when it
    /// is at most this many MiB; 0 never switches it.
    #[arg(
        long,
        value_name = "MIB",
        env = "DECNET_RETENTION_CONVERT_MAX_MB",
        default_value_t = 64
    )]
    pub convert_max_mb: u64,

    /// Acts as if the time were this (RFC 3339): for tests and the soak benchmark, which
    /// replay days of input at accelerated time.
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub simulated_now: Option<String>,
}

decnet_runtime::worker!(
    RetentionArgs,
    |_args| Spec::new(WORKER)
        .once()
        .lease(WORKER)
        .grace(Duration::from_secs(5)),
    run
);

/// Named counters of a run (also added to `worker_counters` after every pass).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<&'static str, u64>);

impl Counters {
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.0.entry(name).or_insert(0) += n;
    }
    pub fn max(&mut self, name: &'static str, n: u64) {
        let v = self.0.entry(name).or_insert(0);
        *v = (*v).max(n);
    }
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
    fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            if k.ends_with("_max_us") {
                self.max(k, *v);
            } else {
                self.add(k, *v);
            }
        }
    }
    fn line(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The settings a pass needs, checked.
#[derive(Debug, Clone)]
struct Settings {
    events_keep_ns: Option<i64>,
    flows_keep_ns: Option<i64>,
    batch: u32,
    max_hold: Duration,
    pause: Duration,
    vacuum_pages: u32,
    now_ns: Option<i64>,
}

impl RetentionArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let keep = |d: f64| (d > 0.0).then_some((d * NS_PER_DAY) as i64);
        let now_ns = match &self.simulated_now {
            Some(s) => Some(
                parse_ts(s).map_err(|e| anyhow::anyhow!("--simulated-now {s:?}: {}", e.reason))?,
            ),
            None => None,
        };
        Ok(Settings {
            events_keep_ns: keep(self.events_days),
            flows_keep_ns: keep(self.flows_days),
            batch: self.batch,
            max_hold: Duration::from_secs_f64(self.max_hold_ms / 1000.0),
            pause: Duration::from_millis(self.pause_ms),
            vacuum_pages: self.vacuum_pages,
            now_ns,
        })
    }
}

/// Passes until the run stops (or one, once).
pub async fn run(ctx: Context, args: RetentionArgs) -> anyhow::Result<Report> {
    let settings = args.settings()?;
    let repo = ctx.repo()?;
    let host = hostname();
    let mut totals = Counters::default();
    let mut shutdown = ctx.shutdown.clone();
    tracing::info!(
        "keeping events {}, flows {}",
        keep_text(args.events_days),
        keep_text(args.flows_days)
    );
    let mut incremental = prepare_sqlite(repo, args.convert_max_mb, &mut totals).await?;
    ctx.ready(&[ctx.name.to_owned()])?;
    loop {
        let mut c = Counters::default();
        let result = pass(repo, &settings, incremental, &ctx, &mut c).await;
        c.add("passes", 1);
        if let Err(e) = &result {
            c.add("db_errors", 1);
            tracing::error!("retention pass failed: {e}");
        }
        let values: Vec<(&str, i64)> =
            c.0.iter()
                .filter(|(k, _)| !k.ends_with("_max_us"))
                .map(|(k, v)| (*k, i64::try_from(*v).unwrap_or(i64::MAX)))
                .collect();
        let maxes: Vec<(&str, i64)> =
            c.0.iter()
                .filter(|(k, _)| k.ends_with("_max_us"))
                .map(|(k, v)| (*k, i64::try_from(*v).unwrap_or(i64::MAX)))
                .collect();
        if let Err(e) = repo
            .write(&[
                Write::Counters {
                    worker: WORKER,
                    host: &host,
                    values: &values,
                    mode: CounterMode::Add,
                },
                Write::Counters {
                    worker: WORKER,
                    host: &host,
                    values: &maxes,
                    mode: CounterMode::Set,
                },
            ])
            .await
        {
            tracing::warn!("could not record the retention counters: {e}");
        }
        if c.get("events_deleted") + c.get("flows_deleted") + c.get("vacuum_pages_freed") > 0 {
            tracing::info!("pass: {}", c.line());
        }
        totals.merge(&c);
        if let Err(e) = result
            && ctx.once()
        {
            return Err(anyhow::Error::from(e).context("retention pass failed"));
        }
        if ctx.once() || shutdown.is_stopping() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => {}
            _ = shutdown.wait() => break,
        }
        if !incremental {
            // Converted by an operator meanwhile?
            incremental = matches!(repo.auto_vacuum().await, Ok(Some(AutoVacuum::Incremental)));
        }
    }
    Ok(Report::new(
        format!(
            "{}: {:.1} s, {}",
            ctx.name,
            ctx.started.elapsed().as_secs_f64(),
            totals.line()
        ),
        &totals,
    ))
}

fn keep_text(days: f64) -> String {
    if days > 0.0 {
        format!("{days} days")
    } else {
        "forever".into()
    }
}

/// SQLite: makes sure the file is in incremental auto-vacuum mode (converting it when it is
/// small enough); returns whether incremental vacuum steps can run. `false` on MariaDB.
async fn prepare_sqlite(
    repo: &Repository,
    convert_max_mb: u64,
    c: &mut Counters,
) -> anyhow::Result<bool> {
    let Some(mode) = repo.auto_vacuum().await? else {
        return Ok(false);
    };
    if mode == AutoVacuum::Incremental {
        return Ok(true);
    }
    let space = repo
        .space()
        .await?
        .context("SQLite page accounting unavailable")?;
    let mib = (space.pages * space.page_size) / (1024 * 1024);
    if convert_max_mb > 0 && mib <= convert_max_mb {
        tracing::warn!(
            "the database ({mib} MiB) was created without auto_vacuum=INCREMENTAL: switching it with one VACUUM (other writers wait meanwhile)"
        );
        let took = repo.convert_to_incremental_vacuum().await?;
        c.add("vacuum_conversions", 1);
        c.add("vacuum_conversion_ms", took.as_millis() as u64);
        tracing::info!(
            "switched to auto_vacuum=INCREMENTAL in {:.2} s",
            took.as_secs_f64()
        );
        return Ok(matches!(
            repo.auto_vacuum().await?,
            Some(AutoVacuum::Incremental)
        ));
    }
    tracing::warn!(
        "the database ({mib} MiB) was created without auto_vacuum=INCREMENTAL and is larger than --convert-max-mb {convert_max_mb}: old rows are deleted and their space reused, but the file will not shrink until it is switched once (a VACUUM that holds the write lock for the whole rewrite): run `decnet retention --convert-max-mb {}` at a quiet moment",
        mib + 1
    );
    c.add("vacuum_conversion_pending", 1);
    Ok(false)
}

/// What one deletion batch did, into the counters; returns the next batch size.
fn account(
    p: &Purge,
    table_deleted: &'static str,
    s: &Settings,
    limit: u32,
    c: &mut Counters,
) -> u32 {
    c.add(table_deleted, p.rows);
    c.add("batches", 1);
    record_hold(p.held, s, c);
    if p.held > s.max_hold {
        (limit / 2).max(1)
    } else if p.held < s.max_hold / 2 {
        limit.saturating_mul(2).min(s.batch)
    } else {
        limit
    }
}

fn record_hold(held: Duration, s: &Settings, c: &mut Counters) {
    let us = held.as_micros() as u64;
    c.add("lock_hold_total_us", us);
    c.max("lock_hold_max_us", us);
    c.add(
        match us {
            0..=1_000 => "lock_holds_le_1ms",
            1_001..=5_000 => "lock_holds_le_5ms",
            5_001..=20_000 => "lock_holds_le_20ms",
            _ => "lock_holds_over_20ms",
        },
        1,
    );
    if held > s.max_hold {
        c.add("lock_holds_over_target", 1);
    }
}

#[derive(Clone, Copy)]
enum Table {
    Events,
    Flows,
}

/// One pass: events, then flows, then (SQLite) the freed pages back to the file system.
async fn pass(
    repo: &Repository,
    s: &Settings,
    incremental: bool,
    ctx: &Context,
    c: &mut Counters,
) -> Result<(), RepoError> {
    let now = s.now_ns.unwrap_or_else(now_ns);
    for (table, keep, cursor, waiting, deleted) in [
        (
            Table::Events,
            s.events_keep_ns,
            EVENTS_CURSOR,
            "waiting_for_correlator_events",
            "events_deleted",
        ),
        (
            Table::Flows,
            s.flows_keep_ns,
            FLOWS_CURSOR,
            "waiting_for_correlator_flows",
            "flows_deleted",
        ),
    ] {
        let Some(keep) = keep else { continue };
        let Some(max_id) = repo.min_cursor(CORRELATOR, cursor).await? else {
            c.add(waiting, 1);
            continue;
        };
        let before = now.saturating_sub(keep);
        let (mut from, mut limit) = (i64::MIN, s.batch);
        loop {
            if ctx.shutdown.is_stopping() {
                return Ok(());
            }
            let p = match table {
                Table::Events => repo.purge_events(before, max_id, from, limit).await?,
                Table::Flows => repo.purge_flows(before, max_id, from, limit).await?,
            };
            if p.selected == 0 {
                break;
            }
            let next = account(&p, deleted, s, limit, c);
            if p.selected < u64::from(limit) {
                break;
            }
            (from, limit) = (p.next_ns, next);
            if !s.pause.is_zero() {
                tokio::time::sleep(s.pause).await;
            }
        }
    }
    if incremental {
        loop {
            if ctx.shutdown.is_stopping() {
                return Ok(());
            }
            let (freed, held) = repo.incremental_vacuum(s.vacuum_pages).await?;
            if freed == 0 {
                break;
            }
            c.add("vacuum_pages_freed", freed);
            c.add("vacuum_steps", 1);
            record_hold(held, s, c);
            if !s.pause.is_zero() {
                tokio::time::sleep(s.pause).await;
            }
        }
        repo.checkpoint().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_checked() {
        assert_eq!(days("0"), Ok(0.0));
        assert_eq!(days("2.5"), Ok(2.5));
        for bad in ["-1", "nan", "inf", "x", "", "36501"] {
            let e = days(bad).unwrap_err();
            assert!(e.contains("keep forever"), "{bad}: {e}");
        }
    }

    #[test]
    fn batch_size_follows_the_lock_hold() {
        let s = Settings {
            events_keep_ns: None,
            flows_keep_ns: None,
            batch: 1000,
            max_hold: Duration::from_millis(5),
            pause: Duration::ZERO,
            vacuum_pages: 1,
            now_ns: None,
        };
        let mut c = Counters::default();
        let p = |ms: u64| Purge {
            rows: 10,
            selected: 10,
            held: Duration::from_millis(ms),
            next_ns: 0,
        };
        assert_eq!(account(&p(9), "events_deleted", &s, 1000, &mut c), 500);
        assert_eq!(account(&p(1), "events_deleted", &s, 500, &mut c), 1000);
        assert_eq!(account(&p(1), "events_deleted", &s, 1000, &mut c), 1000);
        assert_eq!(account(&p(4), "events_deleted", &s, 250, &mut c), 250);
        assert_eq!(account(&p(50), "events_deleted", &s, 1, &mut c), 1);
        assert_eq!(c.get("events_deleted"), 50);
        assert_eq!(c.get("batches"), 5);
        assert_eq!(c.get("lock_holds_over_target"), 2);
        assert_eq!(c.get("lock_hold_max_us"), 50_000);
        assert_eq!(c.get("lock_holds_over_20ms"), 1);
    }
}
