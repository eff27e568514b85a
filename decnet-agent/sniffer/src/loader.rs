//! Loads the eBPF object and attaches/detaches its program on bridge ports.
//!
//! The object is compiled by `build.rs` and embedded in the binary. XDP mode tries native
//! (driver) mode first and falls back to generic; TC mode uses TCX on kernels ≥ 6.6 and the
//! netlink clsact path before that.
use std::collections::HashMap;

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode, tc,
        tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use decnet_common::{
    COUNTERS_MAP, DEFAULT_FP_PACKETS, DEFAULT_FP_RING_BYTES, DEFAULT_FP_SNAPLEN, EVENTS_MAP,
    FLOWS_MAP, FP_CHUNK, FP_EVENTS_MAP, FP_PACKETS_GLOBAL, FP_SNAPLEN_GLOBAL, MAX_FP_PACKETS,
    TC_EMPTY_PROGRAM, TC_PROGRAM, XDP_EMPTY_PROGRAM, XDP_PROGRAM,
};

/// What the kernel captures for fingerprints (see `decnet-ebpf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpConfig {
    /// Bytes kept per data-bearing segment, ≤ `FP_CHUNK`; 0 turns capture off.
    pub snaplen: u32,
    /// Leading packets per direction examined, ≤ `MAX_FP_PACKETS`.
    pub packets: u32,
    /// Size of the fingerprint ring (a power of two multiple of the page size).
    pub ring_bytes: u32,
}

impl Default for FpConfig {
    fn default() -> Self {
        Self {
            snaplen: DEFAULT_FP_SNAPLEN,
            packets: DEFAULT_FP_PACKETS,
            ring_bytes: DEFAULT_FP_RING_BYTES,
        }
    }
}

impl FpConfig {
    /// Capture off: the program ships no fingerprint events.
    pub fn off() -> Self {
        Self {
            snaplen: 0,
            ..Self::default()
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.snaplen as usize > FP_CHUNK {
            bail!(
                "the fingerprint snap length must be at most {FP_CHUNK} bytes (got {})",
                self.snaplen
            );
        }
        if self.packets > MAX_FP_PACKETS {
            bail!(
                "the fingerprint packet count must be at most {MAX_FP_PACKETS} (got {})",
                self.packets
            );
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 {
            bail!(
                "the fingerprint ring size must be a power of two ≥ 4096 (got {})",
                self.ring_bytes
            );
        }
        Ok(())
    }
}

/// Where the program hooks each bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// TC classifier on ingress (TCX). Cheapest on veth ports; sees GSO super-packets, which are
    /// counted as their wire segments.
    Tc,
    /// XDP, native where the driver supports it, else generic.
    Xdp,
    /// Benchmark floor: an empty TC program on the same hook (counts nothing, writes no flows).
    #[value(hide = true)]
    TcEmpty,
    /// Benchmark floor: an empty XDP program on the same hook (counts nothing, writes no flows).
    #[value(hide = true)]
    XdpEmpty,
}

impl Mode {
    /// The hook is XDP (else TC).
    fn is_xdp(self) -> bool {
        matches!(self, Mode::Xdp | Mode::XdpEmpty)
    }

    /// The program this mode attaches.
    fn program(self) -> &'static str {
        match self {
            Mode::Tc => TC_PROGRAM,
            Mode::Xdp => XDP_PROGRAM,
            Mode::TcEmpty => TC_EMPTY_PROGRAM,
            Mode::XdpEmpty => XDP_EMPTY_PROGRAM,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Tc => "tc",
            Mode::Xdp => "xdp",
            Mode::TcEmpty => "tc-empty",
            Mode::XdpEmpty => "xdp-empty",
        })
    }
}

enum LinkId {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

/// The loaded program and the ports it is attached to.
pub struct Sensor {
    ebpf: Ebpf,
    mode: Mode,
    links: HashMap<u32, (String, LinkId)>,
}

/// The maps userspace works with, taken out of the loaded object.
pub struct SensorMaps {
    pub flows: Map,
    pub events: Map,
    pub counters: Map,
    /// The fingerprint ring (`FP_EVENTS`).
    pub fp_events: Map,
}

impl Sensor {
    /// Loads with the default fingerprint capture.
    pub fn load(
        mode: Mode,
        flow_entries: u32,
        ring_bytes: u32,
    ) -> anyhow::Result<(Self, SensorMaps)> {
        Self::load_with(mode, flow_entries, ring_bytes, FpConfig::default())
    }

    pub fn load_with(
        mode: Mode,
        flow_entries: u32,
        ring_bytes: u32,
        fp: FpConfig,
    ) -> anyhow::Result<(Self, SensorMaps)> {
        fp.check()?;
        const OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/decnet-ebpf"));
        if OBJECT.is_empty() {
            anyhow::bail!(
                "this decnet was built with DECNET_SKIP_EBPF set: it has no eBPF program; \
                 rebuild without it (`cargo xtask build`)"
            );
        }
        raise_memlock();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(FLOWS_MAP, flow_entries)
            .map_max_entries(EVENTS_MAP, ring_bytes)
            .map_max_entries(FP_EVENTS_MAP, fp.ring_bytes)
            .override_global(FP_SNAPLEN_GLOBAL, &fp.snaplen, true)
            .override_global(FP_PACKETS_GLOBAL, &fp.packets, true)
            .load(OBJECT)
            .context(
                "loading the eBPF object failed (decnet sniffer needs root, or CAP_BPF + \
                 CAP_NET_ADMIN + CAP_PERFMON; --ring-bytes must be a power of two multiple of \
                 the page size)",
            )?;
        if mode.is_xdp() {
            let prog: &mut Xdp = program(&mut ebpf, mode.program())?.try_into()?;
            prog.load().context("the kernel rejected the XDP program")?;
        } else {
            let prog: &mut SchedClassifier = program(&mut ebpf, mode.program())?.try_into()?;
            prog.load().context("the kernel rejected the TC program")?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))
        };
        let maps = SensorMaps {
            flows: take(FLOWS_MAP)?,
            events: take(EVENTS_MAP)?,
            counters: take(COUNTERS_MAP)?,
            fp_events: take(FP_EVENTS_MAP)?,
        };
        Ok((
            Self {
                ebpf,
                mode,
                links: HashMap::new(),
            },
            maps,
        ))
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn is_attached(&self, ifindex: u32) -> bool {
        self.links.contains_key(&ifindex)
    }

    pub fn attached_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.links.values().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    /// Attaches to the ingress of `name`. Returns a description of how (for the log).
    pub fn attach(&mut self, ifindex: u32, name: &str) -> anyhow::Result<&'static str> {
        if self.links.contains_key(&ifindex) {
            return Ok("already attached");
        }
        let (id, how) = match self.mode.is_xdp() {
            true => {
                let prog: &mut Xdp = program(&mut self.ebpf, self.mode.program())?.try_into()?;
                match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
                    Ok(id) => (LinkId::Xdp(id), "xdp native"),
                    Err(native) => {
                        let id = prog
                            .attach_to_if_index(ifindex, XdpMode::Skb)
                            .with_context(|| {
                                format!("attaching XDP to {name} failed (native: {native})")
                            })?;
                        (LinkId::Xdp(id), "xdp generic")
                    }
                }
            }
            false => {
                let prog: &mut SchedClassifier =
                    program(&mut self.ebpf, self.mode.program())?.try_into()?;
                match prog.attach(name, TcAttachType::Ingress) {
                    Ok(id) => (LinkId::Tc(id), "tc ingress"),
                    Err(first) => {
                        // Older kernels: netlink TC needs a clsact qdisc.
                        let _ = tc::qdisc_add_clsact(name);
                        let id = prog
                            .attach_with_options(
                                name,
                                TcAttachType::Ingress,
                                TcAttachOptions::Netlink(NlOptions::default()),
                            )
                            .with_context(|| {
                                format!("attaching TC to {name} failed (tcx: {first})")
                            })?;
                        (LinkId::Tc(id), "tc ingress (netlink clsact)")
                    }
                }
            }
        };
        self.links.insert(ifindex, (name.to_string(), id));
        Ok(how)
    }

    /// Forgets a port that left the bridge or vanished; detaches if it still exists.
    pub fn forget(&mut self, ifindex: u32) -> Option<String> {
        let (name, id) = self.links.remove(&ifindex)?;
        // A deleted device takes its hooks with it; detaching then fails harmlessly.
        let _ = self.detach_link(id);
        Some(name)
    }

    pub fn detach_all(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for (_, (name, id)) in std::mem::take(&mut self.links) {
            if let Err(e) = self.detach_link(id) {
                tracing::debug!(port = %name, "detach: {e:#}");
            }
            names.push(name);
        }
        names.sort();
        names
    }

    fn detach_link(&mut self, id: LinkId) -> anyhow::Result<()> {
        match id {
            LinkId::Xdp(id) => {
                let prog: &mut Xdp = program(&mut self.ebpf, self.mode.program())?.try_into()?;
                prog.detach(id)?;
            }
            LinkId::Tc(id) => {
                let prog: &mut SchedClassifier =
                    program(&mut self.ebpf, self.mode.program())?.try_into()?;
                prog.detach(id)?;
            }
        }
        Ok(())
    }

    /// For tests: the loaded program, to drive it with `BPF_PROG_TEST_RUN`.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
    match ebpf.program_mut(name) {
        Some(p) => Ok(p),
        None => bail!("program {name} missing from the eBPF object"),
    }
}

/// Older kernels charge BPF maps to RLIMIT_MEMLOCK; newer ones to the memory cgroup.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels that account BPF memory to cgroups",
            std::io::Error::last_os_error()
        );
    }
}
