//! Exports flows from the kernel's `FLOWS` table: entries idle longer than their timeout are
//! removed (atomically read-and-deleted) and written with their final counts; active entries are
//! re-exported every `active_timeout` when their counts changed, so long flows stay current in the
//! repository. At shutdown, [`Sweeper::export_all`] writes every entry. An entry still exactly as
//! its START event reported it (`FlowValue::unchanged_since_start`: a scan's one-packet flows) is
//! not exported again: that event's row is already final.
use std::{
    collections::HashMap,
    io,
    mem::MaybeUninit,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use decnet_common::{FlowKey, FlowValue, STATE_ENDED};
use decnet_core::model::FlowRecord;

use super::flows::Converter;

#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// A flow with no packet for this long is exported and removed.
    pub idle_timeout: Duration,
    /// Same for a TCP flow that has ended (RST, FIN both ways): only trailing ACKs are expected.
    pub ended_timeout: Duration,
    /// Active flows whose counts changed are re-exported this often.
    pub active_timeout: Duration,
}

pub struct Sweeper {
    map: Map,
    conv: Converter,
    cfg: SweepConfig,
    /// Packets at the last export of each active flow (to skip unchanged ones).
    exported: HashMap<FlowKey, u64>,
    last_active_export: u64,
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct SweepResult {
    pub records: Vec<FlowRecord>,
    pub removed: u64,
    pub entries: u64,
    /// Entries not exported because their START event already carried exactly these counts
    /// ([`FlowValue::unchanged_since_start`]).
    pub unchanged: u64,
}

impl Sweeper {
    pub fn new(map: Map, conv: Converter, cfg: SweepConfig, now_mono: u64) -> Self {
        Self {
            map,
            conv,
            cfg,
            exported: HashMap::new(),
            last_active_export: now_mono,
        }
    }

    /// One pass at kernel time `now_mono` (CLOCK_MONOTONIC ns).
    pub fn sweep(&mut self, now_mono: u64) -> anyhow::Result<SweepResult> {
        let mut res = SweepResult::default();
        let active_due = now_mono.saturating_sub(self.last_active_export)
            >= self.cfg.active_timeout.as_nanos() as u64;
        let mut expired = Vec::new();
        {
            let table = table(&self.map)?;
            for entry in table.iter() {
                // An entry deleted between get_next_key and lookup is just skipped.
                let Ok((key, value)) = entry else { continue };
                res.entries += 1;
                let idle = now_mono.saturating_sub(value.last_ns());
                let timeout = if value.state & STATE_ENDED != 0 {
                    self.cfg.ended_timeout
                } else {
                    self.cfg.idle_timeout
                };
                if idle >= timeout.as_nanos() as u64 {
                    expired.push(key);
                } else if active_due && !value.unchanged_since_start() {
                    let packets = value.packets();
                    if self.exported.get(&key) != Some(&packets) {
                        self.conv.records(&key, &value, &mut res.records);
                        self.exported.insert(key, packets);
                    }
                }
            }
        }
        if active_due {
            self.last_active_export = now_mono;
        }
        let fd = map_fd(&self.map)?;
        for key in expired {
            self.exported.remove(&key);
            // Read-and-delete in one syscall: a packet counted between a read and a delete
            // would be lost; this way the last count is the one we export.
            match lookup_and_delete(fd, &key) {
                Ok(Some(value)) => {
                    // Unchanged since its START event: that event's row is already final.
                    if !value.unchanged_since_start() {
                        self.conv.records(&key, &value, &mut res.records);
                    } else {
                        res.unchanged += 1;
                    }
                    res.removed += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("removing an idle flow from the kernel table failed: {e}"),
            }
        }
        Ok(res)
    }

    /// Every entry's current counts (used at shutdown, after the program is detached).
    pub fn export_all(&mut self) -> anyhow::Result<SweepResult> {
        let mut res = SweepResult::default();
        let table = table(&self.map)?;
        for entry in table.iter() {
            let Ok((key, value)) = entry else { continue };
            res.entries += 1;
            if value.unchanged_since_start() {
                res.unchanged += 1;
            } else {
                self.conv.records(&key, &value, &mut res.records);
            }
        }
        Ok(res)
    }
}

fn table(map: &Map) -> anyhow::Result<BpfHashMap<&MapData, FlowKey, FlowValue>> {
    BpfHashMap::try_from(map).context("FLOWS is not a hash map")
}

fn map_fd(map: &Map) -> anyhow::Result<BorrowedFd<'_>> {
    match map {
        Map::HashMap(data) => Ok(data.fd().as_fd()),
        _ => anyhow::bail!("FLOWS is not a hash map"),
    }
}

const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// `bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM)` (hash maps: kernel ≥ 5.14). aya 0.14 does not expose it
/// for hash maps. `Ok(None)` when the key is already gone.
fn lookup_and_delete(fd: BorrowedFd<'_>, key: &FlowKey) -> io::Result<Option<FlowValue>> {
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut value = MaybeUninit::<FlowValue>::zeroed();
    let attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const FlowKey as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: attr points to a valid, fully initialised struct the kernel reads; key and value
    // point to buffers of the map's key and value sizes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &attr as *const MapElemAttr,
            size_of::<MapElemAttr>(),
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(err);
    }
    // SAFETY: the kernel filled the value on success; FlowValue is POD.
    Ok(Some(unsafe { value.assume_init() }))
}
