//! The collector's single writer: takes parsed events off the one bounded queue and commits them
//! in batches (up to `--batch` events, or whatever arrived within `--flush-ms`), each batch one
//! transaction with its credentials and, every `--stats-interval`, the counter totals.
//!
//! A failing repository is retried with backoff while the queue fills up: the TCP/TLS readers
//! then wait (back-pressure) and nothing accepted is dropped. At shutdown (the queue closed and
//! empty) the last batch is retried a bounded number of times, then the error is returned.
use std::{sync::Arc, time::Duration};

use decnet_core::{
    model::{CredentialAttempt, NewEvent},
    repo::{CounterMode, Repository, Write},
};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc},
    time::{Instant, MissedTickBehavior},
};

use super::counters::{self, Counters};

/// One parsed line on its way to the repository.
#[derive(Debug)]
pub struct Item {
    pub event: NewEvent,
    pub credential: Option<CredentialAttempt>,
    /// Its share of the queue's byte budget, returned when the batch holding it is committed.
    pub permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub batch: usize,
    pub flush: Duration,
    pub stats_interval: Duration,
    /// `worker_counters` host.
    pub host: String,
}

/// The worker name in `worker_counters`.
pub const WORKER: &str = "collector";

/// Runs until the queue is closed and everything taken from it is committed.
pub async fn run(
    repo: Repository,
    mut rx: mpsc::Receiver<Item>,
    cfg: WriterConfig,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let max = cfg.batch.max(1);
    let mut incoming: Vec<Item> = Vec::with_capacity(max);
    let mut batch = Batch::default();
    let mut deadline: Option<Instant> = None;
    let mut stats = tokio::time::interval(cfg.stats_interval);
    stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
    stats.tick().await;
    let mut counters_due = false;
    let mut open = true;
    while open {
        let room = max - batch.events.len();
        // Not biased: under constant load the stats tick must still get its turn.
        tokio::select! {
            n = rx.recv_many(&mut incoming, room) => {
                if n == 0 {
                    open = false;
                } else {
                    counters.set_depth(rx.len() as u64);
                    batch.take(&mut incoming);
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + cfg.flush);
                    }
                }
            }
            _ = sleep_until(deadline) => {}
            _ = stats.tick() => {
                counters.snapshot().log("stats");
                counters_due = true;
            }
        }
        let full = batch.events.len() >= max;
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        if full || late || (counters_due && batch.events.is_empty()) || !open {
            flush(&repo, &mut batch, &cfg, &counters, counters_due, !open).await?;
            counters_due = false;
            deadline = None;
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Default)]
struct Batch {
    events: Vec<NewEvent>,
    /// (index into `events`, the attempt that event carries).
    credentials: Vec<(usize, CredentialAttempt)>,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Batch {
    fn take(&mut self, items: &mut Vec<Item>) {
        for item in items.drain(..) {
            if let Some(c) = item.credential {
                self.credentials.push((self.events.len(), c));
            }
            self.events.push(item.event);
            self.permits.extend(item.permit);
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.credentials.clear();
        self.permits.clear();
    }
}

/// Commits the batch (and the counter totals when `with_counters`); retries until it succeeds,
/// or at shutdown (`closing`) up to a bound.
async fn flush(
    repo: &Repository,
    batch: &mut Batch,
    cfg: &WriterConfig,
    counters: &Counters,
    with_counters: bool,
    closing: bool,
) -> anyhow::Result<()> {
    if batch.events.is_empty() && !with_counters {
        return Ok(());
    }
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        let named = if with_counters {
            counters.snapshot().named()
        } else {
            Vec::new()
        };
        let values: Vec<(&str, i64)> = named.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let mut writes = Vec::with_capacity(2);
        if batch.credentials.is_empty() && !batch.events.is_empty() {
            // No credentials: the plain insert, which need not report which events were new.
            writes.push(Write::Events(&batch.events));
        } else if !batch.events.is_empty() {
            // Each attempt counts once, and only if its event is new: resent lines add nothing.
            writes.push(Write::EventsWithCredentials {
                events: &batch.events,
                credentials: &batch.credentials,
            });
        }
        if with_counters {
            writes.push(Write::Counters {
                worker: WORKER,
                host: &cfg.host,
                values: &values,
                mode: CounterMode::Set,
            });
        }
        match repo.write(&writes).await {
            Ok(counts) => {
                if !batch.events.is_empty() {
                    let new = counts.first().copied().unwrap_or(0);
                    let n = batch.events.len() as u64;
                    counters::add(&counters.stored, new);
                    counters::add(&counters.duplicates, n.saturating_sub(new));
                    counters::inc(&counters.batches);
                }
                batch.clear();
                return Ok(());
            }
            Err(e) => {
                attempts += 1;
                counters::inc(&counters.db_errors);
                tracing::warn!(
                    events = batch.events.len(),
                    attempt = attempts,
                    "writing events failed, retrying: {e}"
                );
                if closing && attempts >= 20 {
                    anyhow::bail!(
                        "giving up writing {} events at shutdown after {attempts} attempts: {e}",
                        batch.events.len()
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Writes the counter totals alone (at exit, after the writer finished).
pub async fn record_totals(
    repo: &Repository,
    host: &str,
    counters: &Counters,
) -> anyhow::Result<()> {
    let named = counters.snapshot().named();
    let values: Vec<(&str, i64)> = named.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    repo.write(&[Write::Counters {
        worker: WORKER,
        host,
        values: &values,
        mode: CounterMode::Set,
    }])
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(ip: &str, secret: &str, ts: i64) -> CredentialAttempt {
        CredentialAttempt {
            attacker_ip: ip.parse().unwrap(),
            decky: "d".into(),
            service: "ssh".into(),
            principal: b"root".to_vec(),
            secret_kind: "password".into(),
            secret: secret.as_bytes().to_vec(),
            attempts: 1,
            first_seen_ns: ts,
            last_seen_ns: ts,
        }
    }

    #[test]
    fn batch_links_each_credential_to_its_event() {
        let ev = |n: u8| NewEvent {
            ts_ns: i64::from(n),
            decky: "d".into(),
            service: "ssh".into(),
            event_type: "auth_attempt".into(),
            attacker_ip: None,
            attacker_port: None,
            fields: "{}".into(),
            raw: vec![n],
            dedup_key: None,
        };
        let mut items = vec![
            Item {
                event: ev(0),
                credential: None,
                permit: None,
            },
            Item {
                event: ev(1),
                credential: Some(cred("10.0.0.1", "a", 1)),
                permit: None,
            },
            Item {
                event: ev(2),
                credential: Some(cred("10.0.0.1", "a", 2)),
                permit: None,
            },
        ];
        let mut batch = Batch::default();
        batch.take(&mut items);
        assert_eq!(batch.events.len(), 3);
        let idx: Vec<usize> = batch.credentials.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [1, 2]);
        assert_eq!(batch.credentials[1].1.first_seen_ns, 2);
    }
}
