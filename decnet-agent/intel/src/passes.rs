//! What the correlator and the profiler share: their counters and their loop of passes.
//!
//! A pass processes every pending batch (each batch one transaction with its cursor) and
//! returns its counters. [`run_passes`] runs one pass (once), or a pass every interval until
//! the run stops (`--daemon`, `--duration`); a failed pass is counted and retried next
//! interval when running as a daemon, and ends a one-shot run with its error.
use std::{collections::BTreeMap, future::Future, time::Duration};

use decnet_core::repo::RepoError;
use decnet_runtime::{Context, Report, Spec};
use serde::Serialize;

/// Per-key reads in flight at once within a batch.
pub const READ_CONCURRENCY: usize = 4;

/// Named counters (totals of this process; each batch also adds its share to
/// `worker_counters`, in the batch's transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<&'static str, u64>);

impl Counters {
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.0.entry(name).or_insert(0) += n;
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }

    pub fn values(&self) -> Vec<(&'static str, i64)> {
        self.0
            .iter()
            .map(|(k, v)| (*k, i64::try_from(*v).unwrap_or(i64::MAX)))
            .collect()
    }

    /// `name=value …` for the log.
    pub fn line(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The correlator's and profiler's [`Spec`]: one-shot mode, their own lease, and a short grace
/// (a batch is one transaction with its cursor: ending one half-way loses nothing).
pub fn spec<T>(worker: &'static str, _args: &T) -> Spec {
    Spec::new(worker)
        .once()
        .lease(worker)
        .grace(Duration::from_secs(5))
}

/// Runs `pass` once, or every `interval` until the run stops; returns the run's totals as its
/// report.
pub async fn run_passes<P, Fut>(
    ctx: &Context,
    interval: Duration,
    mut pass: P,
) -> anyhow::Result<Report>
where
    P: FnMut() -> Fut,
    Fut: Future<Output = Result<Counters, RepoError>>,
{
    let mut totals = Counters::default();
    let mut shutdown = ctx.shutdown.clone();
    ctx.ready(&[ctx.name.to_owned()])?;
    loop {
        match pass().await {
            Ok(c) => {
                if !c.0.is_empty() {
                    tracing::info!("pass: {}", c.line());
                }
                totals.merge(&c);
                totals.add("passes", 1);
            }
            Err(e) if !ctx.once() => {
                totals.add("db_errors", 1);
                tracing::error!("pass failed, retrying next interval: {e}");
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!("{} pass failed", ctx.name)));
            }
        }
        if ctx.once() || shutdown.is_stopping() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => break,
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
