//! The sniffer's single writer: merges flow records from the ring-buffer reader and the sweeper
//! and upserts them in batched transactions. Repository errors are retried with backoff while
//! the channel fills up (back-pressure), so accepted records are not dropped.
use std::{collections::HashMap, sync::Arc, time::Duration};

use decnet_core::{
    model::{FlowIdentity, FlowRecord},
    repo::Repository,
};
use tokio::{sync::mpsc, time::Instant};

use super::counters::AgentCounters;

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Flush when this many distinct flows are pending.
    pub max_batch: usize,
    /// …or when the oldest pending record is this old.
    pub max_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            max_delay: Duration::from_millis(250),
        }
    }
}

/// Runs until `rx` is closed and everything received is committed.
pub async fn run(
    repo: Repository,
    mut rx: mpsc::Receiver<Vec<FlowRecord>>,
    cfg: WriterConfig,
    counters: Arc<AgentCounters>,
) -> anyhow::Result<()> {
    let mut pending: HashMap<FlowIdentity, FlowRecord> = HashMap::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let received = match deadline {
            Some(d) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(d) => {
                    flush(&repo, &mut pending, &counters, false).await?;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(batch) = received else { break };
        merge(&mut pending, batch);
        if pending.len() >= cfg.max_batch {
            flush(&repo, &mut pending, &counters, false).await?;
            deadline = None;
        } else if deadline.is_none() && !pending.is_empty() {
            deadline = Some(Instant::now() + cfg.max_delay);
        }
    }
    flush(&repo, &mut pending, &counters, true).await
}

/// Several exports of one flow in a batch become one record with the final counts.
pub fn merge(pending: &mut HashMap<FlowIdentity, FlowRecord>, batch: Vec<FlowRecord>) {
    for rec in batch {
        match pending.entry(rec.identity()) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&rec),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(rec);
            }
        }
    }
}

async fn flush(
    repo: &Repository,
    pending: &mut HashMap<FlowIdentity, FlowRecord>,
    counters: &AgentCounters,
    closing: bool,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows: Vec<FlowRecord> = pending.drain().map(|(_, r)| r).collect();
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        match repo.upsert_flows(&rows).await {
            Ok(_) => {
                AgentCounters::add(&counters.flows_written, rows.len() as u64);
                AgentCounters::add(&counters.batches, 1);
                return Ok(());
            }
            Err(e) => {
                attempts += 1;
                AgentCounters::add(&counters.db_errors, 1);
                tracing::warn!(
                    rows = rows.len(),
                    attempt = attempts,
                    "writing flows failed, retrying: {e}"
                );
                if closing && attempts >= 20 {
                    anyhow::bail!(
                        "giving up writing {} flows at shutdown after {attempts} attempts: {e}",
                        rows.len()
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(packets: u64, first: i64, last: i64) -> FlowRecord {
        FlowRecord {
            bridge: "br".into(),
            port: "p".into(),
            src_ip: "10.0.0.1".parse().unwrap(),
            dst_ip: "10.0.0.2".parse().unwrap(),
            src_port: 1,
            dst_port: 2,
            proto: 6,
            vlan: 0,
            packets,
            bytes: packets * 60,
            tcp_flags: 0x02,
            first_seen_ns: first,
            last_seen_ns: last,
            ended: false,
        }
    }

    #[test]
    fn merge_keeps_final_counts_per_identity() {
        let mut pending = HashMap::new();
        let mut late = rec(9, 100, 900);
        late.ended = true;
        late.tcp_flags = 0x11;
        merge(&mut pending, vec![rec(1, 100, 100), late, rec(4, 100, 400)]);
        // A different flow on the same 5-tuple (later first_seen) stays separate.
        merge(&mut pending, vec![rec(2, 1000, 1100)]);
        assert_eq!(pending.len(), 2);
        let first = pending.values().find(|r| r.first_seen_ns == 100).unwrap();
        assert_eq!(
            (
                first.packets,
                first.last_seen_ns,
                first.tcp_flags,
                first.ended
            ),
            (9, 900, 0x13, true)
        );
    }

    #[tokio::test]
    async fn writes_everything_before_returning() {
        let path = std::env::temp_dir().join(format!("decnet-writer-{}.db", std::process::id()));
        let url = format!("sqlite://{}", path.display());
        let repo = Repository::connect(&url).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        let counters = Arc::new(AgentCounters::default());
        let task = tokio::spawn(run(
            repo.clone(),
            rx,
            WriterConfig {
                max_batch: 3,
                max_delay: Duration::from_secs(60),
            },
            counters.clone(),
        ));
        for i in 0..10 {
            tx.send(vec![rec(1, i, i), rec(5, i, i + 5)]).await.unwrap();
        }
        drop(tx);
        task.await.unwrap().unwrap();
        let rows = repo.all_flows().await.unwrap();
        assert_eq!(rows.len(), 10);
        assert!(rows.iter().all(|r| r.packets == 5));
        assert_eq!(AgentCounters::load(&counters.flows_written), 10);
        repo.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
