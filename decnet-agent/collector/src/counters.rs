//! The collector's counters, shared by every reader and the writer (relaxed atomics). Logged
//! every `--stats-interval`, recorded in the repository's `worker_counters` (worker `collector`,
//! totals, [`CounterMode::Set`](decnet_core::repo::CounterMode)), printed on exit and written
//! with `--summary-json`.
//!
//! Accounting: every frame or datagram read is `received`; it is then either `parsed` or
//! `rejected` under exactly one reason (`received == parsed + Σ rejected`). A parsed UDP message
//! that found the queue full is `dropped_udp`; every other parsed message reaches the writer and
//! is either `stored` (a new row) or a `duplicate` (already stored: same dedup key).
use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use decnet_core::rfc5424::{Reject, deviation};
use serde::Serialize;

#[derive(Debug)]
pub struct Counters {
    pub received: AtomicU64,
    pub parsed: AtomicU64,
    /// Indexed like `Reject::ALL`.
    rejected: Vec<AtomicU64>,
    pub dropped_udp: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches: AtomicU64,
    pub queue_depth: AtomicU64,
    pub queue_depth_max: AtomicU64,
    pub unwrapped: AtomicU64,
    /// Parsed lines per tolerated deviation, indexed like `rfc5424::deviation::ALL`: accepted,
    /// but never silently.
    deviations: Vec<AtomicU64>,
    pub accepted: AtomicU64,
    pub refused_limit: AtomicU64,
    pub refused_allowlist: AtomicU64,
    pub refused_peer: AtomicU64,
    pub impersonated: AtomicU64,
    pub tls_handshake_failed: AtomicU64,
    pub open: AtomicU64,
    pub idle_closed: AtomicU64,
    pub framing_errors: AtomicU64,
    /// UDP datagrams the kernel dropped because a socket's receive buffer was full.
    pub udp_kernel_drops: AtomicU64,
    pub db_errors: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            received: AtomicU64::new(0),
            parsed: AtomicU64::new(0),
            rejected: Reject::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            dropped_udp: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            queue_depth_max: AtomicU64::new(0),
            unwrapped: AtomicU64::new(0),
            deviations: deviation::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            accepted: AtomicU64::new(0),
            refused_limit: AtomicU64::new(0),
            refused_allowlist: AtomicU64::new(0),
            refused_peer: AtomicU64::new(0),
            impersonated: AtomicU64::new(0),
            tls_handshake_failed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            framing_errors: AtomicU64::new(0),
            udp_kernel_drops: AtomicU64::new(0),
            db_errors: AtomicU64::new(0),
        }
    }
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    pub fn reject(&self, reason: Reject) {
        if let Some(i) = Reject::ALL.iter().position(|r| *r == reason) {
            inc(&self.rejected[i]);
        }
    }

    /// Counts each deviation bit set in `bits`.
    pub fn deviated(&self, bits: u8) {
        if bits == 0 {
            return;
        }
        for (i, (bit, _)) in deviation::ALL.iter().enumerate() {
            if bits & bit != 0 {
                inc(&self.deviations[i]);
            }
        }
    }

    pub fn rejected(&self, reason: Reject) -> u64 {
        Reject::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| get(&self.rejected[i]))
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(get).sum()
    }

    /// A sender saw the queue at `depth` lines.
    pub fn queued(&self, depth: u64) {
        self.queue_depth_max.fetch_max(depth, Ordering::Relaxed);
    }

    /// The writer saw the queue at `depth` lines.
    pub fn set_depth(&self, depth: u64) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Summary {
        Summary {
            received: get(&self.received),
            parsed: get(&self.parsed),
            rejected: Reject::ALL
                .iter()
                .zip(&self.rejected)
                .map(|(r, c)| (r.as_str().to_owned(), get(c)))
                .collect(),
            dropped_udp: get(&self.dropped_udp),
            stored: get(&self.stored),
            duplicates: get(&self.duplicates),
            batches: get(&self.batches),
            queue_depth: get(&self.queue_depth),
            queue_depth_max: get(&self.queue_depth_max),
            connections: ConnectionCounts {
                accepted: get(&self.accepted),
                refused_limit: get(&self.refused_limit),
                refused_allowlist: get(&self.refused_allowlist),
                refused_peer: get(&self.refused_peer),
                impersonated: get(&self.impersonated),
                tls_handshake_failed: get(&self.tls_handshake_failed),
                open: get(&self.open),
                idle_closed: get(&self.idle_closed),
                framing_errors: get(&self.framing_errors),
            },
            unwrapped: get(&self.unwrapped),
            deviations: deviation::ALL
                .iter()
                .zip(&self.deviations)
                .map(|((_, name), c)| ((*name).to_owned(), get(c)))
                .collect(),
            udp_kernel_drops: get(&self.udp_kernel_drops),
            db_errors: get(&self.db_errors),
        }
    }
}

/// The counters at one moment: `--summary-json` and the exit summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub received: u64,
    pub parsed: u64,
    /// Every reason (`Reject::as_str`), zeros included.
    pub rejected: BTreeMap<String, u64>,
    pub dropped_udp: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub batches: u64,
    pub queue_depth: u64,
    pub queue_depth_max: u64,
    pub connections: ConnectionCounts,
    pub unwrapped: u64,
    /// Parsed lines per tolerated deviation (see `rfc5424::deviation`).
    pub deviations: BTreeMap<String, u64>,
    pub udp_kernel_drops: u64,
    pub db_errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionCounts {
    /// TCP/TLS/Unix-socket connections admitted.
    pub accepted: u64,
    /// Accepted and closed at once: over --max-connections or --max-connections-per-ip.
    pub refused_limit: u64,
    /// Connections (and UDP datagrams) from sources outside --allow.
    pub refused_allowlist: u64,
    /// Unix-socket connections from a process that is no decky named in --unix-peers.
    pub refused_peer: u64,
    /// Lines on a decky's Unix-socket connection that named another decky as HOSTNAME
    /// (dropped).
    pub impersonated: u64,
    pub tls_handshake_failed: u64,
    /// Open now.
    pub open: u64,
    /// Closed after --idle-timeout without a byte.
    pub idle_closed: u64,
    /// Closed on a malformed octet-counting header.
    pub framing_errors: u64,
}

impl Summary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// `(name, value)` pairs for `worker_counters`.
    pub fn named(&self) -> Vec<(String, i64)> {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut out = vec![
            ("received".to_owned(), i(self.received)),
            ("parsed".to_owned(), i(self.parsed)),
            ("rejected".to_owned(), i(self.rejected_total())),
            ("dropped_udp".to_owned(), i(self.dropped_udp)),
            ("stored".to_owned(), i(self.stored)),
            ("duplicates".to_owned(), i(self.duplicates)),
            ("batches".to_owned(), i(self.batches)),
            ("queue_depth".to_owned(), i(self.queue_depth)),
            ("queue_depth_max".to_owned(), i(self.queue_depth_max)),
            ("unwrapped".to_owned(), i(self.unwrapped)),
            ("udp_kernel_drops".to_owned(), i(self.udp_kernel_drops)),
            ("db_errors".to_owned(), i(self.db_errors)),
        ];
        let c = &self.connections;
        for (n, v) in [
            ("accepted", c.accepted),
            ("refused_limit", c.refused_limit),
            ("refused_allowlist", c.refused_allowlist),
            ("refused_peer", c.refused_peer),
            ("impersonated", c.impersonated),
            ("tls_handshake_failed", c.tls_handshake_failed),
            ("open", c.open),
            ("idle_closed", c.idle_closed),
            ("framing_errors", c.framing_errors),
        ] {
            out.push((format!("connections_{n}"), i(v)));
        }
        for (d, v) in &self.deviations {
            out.push((format!("deviation_{d}"), i(*v)));
        }
        for (r, v) in &self.rejected {
            out.push((format!("rejected_{r}"), i(*v)));
        }
        out
    }

    /// The exit summary for humans.
    pub fn human(&self, ran_secs: f64) -> String {
        let rejected: Vec<String> = self
            .rejected
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let c = &self.connections;
        format!(
            "decnet collect summary: ran={ran_secs:.1}s\n  received={} parsed={} rejected={} ({}) unwrapped={}\n  stored={} duplicates={} batches={} dropped_udp={} udp_kernel_drops={} queue_depth_max={} db_errors={}\n  connections: accepted={} refused_limit={} refused_allowlist={} refused_peer={} impersonated={} tls_handshake_failed={} idle_closed={} framing_errors={} open={}",
            self.received,
            self.parsed,
            self.rejected_total(),
            if rejected.is_empty() {
                "none".to_owned()
            } else {
                rejected.join(" ")
            },
            self.unwrapped,
            self.stored,
            self.duplicates,
            self.batches,
            self.dropped_udp,
            self.udp_kernel_drops,
            self.queue_depth_max,
            self.db_errors,
            c.accepted,
            c.refused_limit,
            c.refused_allowlist,
            c.refused_peer,
            c.impersonated,
            c.tls_handshake_failed,
            c.idle_closed,
            c.framing_errors,
            c.open,
        )
    }

    /// One tracing line (every --stats-interval, and at exit).
    pub fn log(&self, what: &str) {
        let c = &self.connections;
        tracing::info!(
            received = self.received,
            parsed = self.parsed,
            rejected = self.rejected_total(),
            dropped_udp = self.dropped_udp,
            udp_kernel_drops = self.udp_kernel_drops,
            stored = self.stored,
            duplicates = self.duplicates,
            batches = self.batches,
            queue_depth = self.queue_depth,
            queue_depth_max = self.queue_depth_max,
            unwrapped = self.unwrapped,
            connections_open = c.open,
            connections_accepted = c.accepted,
            refused = c.refused_limit + c.refused_allowlist + c.refused_peer,
            impersonated = c.impersonated,
            tls_handshake_failed = c.tls_handshake_failed,
            db_errors = self.db_errors,
            "{what}"
        );
    }
}
