//! The sensor's counters: the kernel's per-CPU `COUNTERS` array summed over CPUs, plus the agent's
//! own (events read, flows written). Logged periodically, printed on exit, and written as JSON
//! with `--summary-json`.
use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, PerCpuArray};
use decnet_common::{
    C_EVENTS_LOST, C_FLOW_PACKETS, C_PACKETS, COUNTER_COUNT, COUNTER_NAMES, DROP_REASONS,
};
use serde::Serialize;

/// Kernel counters, summed over CPUs, indexed like `decnet_common::C_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCounters(pub [u64; COUNTER_COUNT as usize]);

impl KernelCounters {
    pub fn read(map: &PerCpuArray<MapData, u64>) -> anyhow::Result<Self> {
        let mut out = [0u64; COUNTER_COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = map.get(&(i as u32), 0)?;
            *slot = values.iter().sum();
        }
        Ok(Self(out))
    }

    pub fn get(&self, idx: u32) -> u64 {
        self.0[idx as usize]
    }

    pub fn drops(&self) -> u64 {
        DROP_REASONS.map(|i| self.get(i)).sum()
    }

    /// Every packet is either in a flow or under a drop reason.
    pub fn balanced(&self) -> bool {
        self.get(C_PACKETS) == self.get(C_FLOW_PACKETS) + self.drops()
    }

    pub fn named(&self) -> BTreeMap<&'static str, u64> {
        COUNTER_NAMES
            .iter()
            .zip(self.0.iter())
            .map(|(n, v)| (*n, *v))
            .collect()
    }

    /// Short `name=value` list of the non-zero drop reasons (or "none").
    pub fn drop_summary(&self) -> String {
        let parts: Vec<String> = DROP_REASONS
            .filter(|i| self.get(*i) > 0)
            .map(|i| format!("{}={}", COUNTER_NAMES[i as usize], self.get(i)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }

    pub fn events_lost(&self) -> u64 {
        self.get(C_EVENTS_LOST)
    }
}

/// The agent's own counters, shared by its tasks.
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Ring-buffer events read.
    pub events: AtomicU64,
    /// Flow records handed to the repository (after merging duplicates within a batch).
    pub flows_written: AtomicU64,
    /// Batches (transactions) committed.
    pub batches: AtomicU64,
    /// Entries removed from the kernel table by the idle sweep.
    pub swept: AtomicU64,
    /// Repository errors (each retried; see the log).
    pub db_errors: AtomicU64,
}

impl AgentCounters {
    pub fn load(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Written to `--summary-json` and printed on exit.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub bridge: String,
    pub mode: String,
    pub ports: Vec<String>,
    pub duration_secs: f64,
    pub counters: BTreeMap<&'static str, u64>,
    pub events: u64,
    pub flows_written: u64,
    pub batches: u64,
    pub swept: u64,
    pub db_errors: u64,
    pub balanced: bool,
    /// The agent's fingerprint counters (see `fp::FpCounters`).
    pub fingerprints: BTreeMap<&'static str, u64>,
}

impl Summary {
    pub fn human(&self) -> String {
        let c = |n: &str| self.counters.get(n).copied().unwrap_or(0);
        let drops: Vec<String> = self
            .counters
            .iter()
            .filter(|(n, v)| n.starts_with("drop_") && **v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        format!(
            "decnet sniffer summary: bridge={} mode={} ports={} ran={:.1}s\n  packets={} bytes={} in_flows={} flows_started={} flows_ended={}\n  events_read={} events_lost={} flows_written={} batches={} db_errors={}\n  drops: {}\n  every packet accounted: {}\n  fingerprints: kernel headers={} segments={} truncated={} lost={}; {}",
            self.bridge,
            self.mode,
            self.ports.len(),
            self.duration_secs,
            c("packets"),
            c("bytes"),
            c("flow_packets"),
            c("flows_started"),
            c("flows_ended"),
            self.events,
            c("events_lost"),
            self.flows_written,
            self.batches,
            self.db_errors,
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(" ")
            },
            if self.balanced { "yes" } else { "NO" },
            c("fp_headers"),
            c("fp_segments"),
            c("fp_truncated"),
            c("fp_lost"),
            self.fingerprints
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

#[cfg(test)]
mod tests {
    use decnet_common::{C_BYTES, C_NON_IP, C_TRUNCATED};

    use super::*;

    #[test]
    fn balance_and_drop_summary() {
        let mut k = KernelCounters::default();
        k.0[C_PACKETS as usize] = 10;
        k.0[C_BYTES as usize] = 1000;
        k.0[C_FLOW_PACKETS as usize] = 7;
        k.0[C_TRUNCATED as usize] = 2;
        k.0[C_NON_IP as usize] = 1;
        assert!(k.balanced());
        assert_eq!(k.drops(), 3);
        assert_eq!(k.drop_summary(), "drop_truncated=2 drop_non_ip=1");
        k.0[C_NON_IP as usize] = 0;
        assert!(!k.balanced());
        assert_eq!(k.named()["packets"], 10);
    }
}
