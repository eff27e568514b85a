//! Reads flow START/END events from the kernel's ring buffer with tokio's `AsyncFd`, draining it
//! fully before clearing readiness (otherwise wake-ups are missed), and forwards them as flow
//! records to the writer.
use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use decnet_common::FlowEvent;
use decnet_core::model::FlowRecord;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};

use super::{counters::AgentCounters, flows::Converter};

/// Decodes one ring-buffer record. `None` if it has the wrong size (a kernel/agent mismatch).
pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
    if bytes.len() != size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: length checked; FlowEvent is plain old data valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const FlowEvent) })
}

/// Drains whatever is in the ring now into `out`. Returns the number of events read.
pub fn drain(ring: &mut RingBuf<MapData>, conv: &Converter, out: &mut Vec<FlowRecord>) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match decode(&item) {
            Some(ev) => conv.records(&ev.key, &ev.value, out),
            None => tracing::error!(
                len = item.len(),
                "ring-buffer record of unexpected size ignored"
            ),
        }
    }
    n
}

/// Runs until `stop` flips to true; returns the ring so the caller can drain it one last time
/// after the program is detached.
pub async fn run(
    ring: RingBuf<MapData>,
    conv: Converter,
    tx: mpsc::Sender<Vec<FlowRecord>>,
    counters: Arc<AgentCounters>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<RingBuf<MapData>> {
    // SAFETY: the ring buffer owns its map fd; it stays open and unchanged while the AsyncFd
    // holds it (we only take it back with into_inner).
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {}", e.into_parts().1))?;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let mut out = Vec::new();
                let n = drain(guard.get_inner_mut(), &conv, &mut out);
                guard.clear_ready();
                AgentCounters::add(&counters.events, n);
                if !out.is_empty() && tx.send(out).await.is_err() {
                    anyhow::bail!("flow writer stopped");
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok(fd.into_inner())
}

#[cfg(test)]
mod tests {
    use decnet_common::{EVENT_END, FlowKey};

    use super::*;

    #[test]
    fn decode_checks_size() {
        let ev = FlowEvent {
            kind: EVENT_END,
            key: FlowKey {
                proto: 6,
                ..Default::default()
            },
            ..Default::default()
        };
        // SAFETY: reading the bytes of a POD value.
        let bytes = unsafe {
            std::slice::from_raw_parts(&ev as *const FlowEvent as *const u8, size_of::<FlowEvent>())
        };
        assert_eq!(decode(bytes), Some(ev));
        assert_eq!(decode(&bytes[1..]), None);
        assert_eq!(decode(&[]), None);
    }
}
