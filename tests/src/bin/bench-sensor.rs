//! `cargo xtask bench sensor`: what the sensor costs and whether it keeps up.
//!
//! A lab (bridge in its own namespace, a generator host and a sink host) is flooded from the
//! generator with small UDP frames over 1,000 flows: an AF_PACKET socket with
//! PACKET_QDISC_BYPASS and sendmmsg of 64 prebuilt frames per call, pinned to one core. Phases
//! run interleaved — no sensor, TC, XDP, repeated — and each prints: offered pps (frames the
//! generator's interface took), delivered pps (frames the sink's interface received), the ratio
//! of delivered pps to the no-sensor phases of the same run, packets the sensor counted against
//! frames that entered the bridge, lost events, flow rows written, the agent's CPU seconds per
//! million packets, and whole-machine busy core-seconds per million delivered packets.
use std::{
    net::Ipv4Addr,
    sync::Arc,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use decnet_e2e::{
    frames::{self, Ipv4},
    netns::{Host, Lab, LabOptions, ip},
    sensor::{Mode, Run, Sniffer, SnifferOptions},
};

const FLOWS: u16 = 1000;
const BATCH: usize = 64;

struct Args {
    seconds: f64,
    rounds: usize,
    payload: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        seconds: 5.0,
        rounds: 2,
        payload: 18,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => a.seconds = val("--seconds")?.parse().context("--seconds: a number")?,
            "--rounds" => a.rounds = val("--rounds")?.parse().context("--rounds: a number")?,
            "--payload" => a.payload = val("--payload")?.parse().context("--payload: bytes")?,
            "-h" | "--help" => {
                println!(
                    "bench-sensor [--seconds S (5)] [--rounds N (2)] [--payload BYTES (18)]\n\
                     Floods a lab bridge port with small UDP frames over {FLOWS} flows and compares \
                     no sensor / TC / XDP, interleaved. Needs root."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(
        a.seconds > 0.0 && a.rounds > 0,
        "--seconds and --rounds must be positive"
    );
    Ok(a)
}

/// Interface counters read with `ip -s -j`.
fn link_stats(ns: &str, dev: &str) -> Result<(u64, u64)> {
    let out = ip(&["-n", ns, "-s", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing ip -j output")?;
    let s = &v[0]["stats64"];
    let rx = s["rx"]["packets"].as_u64().context("no rx packets")?;
    let tx = s["tx"]["packets"].as_u64().context("no tx packets")?;
    Ok((rx, tx))
}

/// Busy and total jiffies of the whole machine, from /proc/stat.
fn cpu_jiffies() -> Result<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let line = s.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    ensure!(v.len() >= 8, "unexpected /proc/stat");
    let idle = v[3] + v[4];
    let total: u64 = v.iter().take(8).sum();
    Ok((total - idle, total))
}

/// utime + stime of a process, in seconds.
fn proc_cpu(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s.rsplit_once(')').context("bad stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / hz)
}

fn build_frames(generator: &Host, sink: &Host, payload: usize) -> Vec<Vec<u8>> {
    (0..FLOWS)
        .map(|i| {
            let udp = frames::udp(10_000 + i, 9, &vec![0x5a; payload]);
            let ip = Ipv4::new(generator.ipv4, sink.ipv4, 17).build(&udp);
            frames::ethernet(sink.mac, generator.mac, &[], frames::ETH_P_IP, &ip)
        })
        .collect()
}

/// Floods from inside `ns` for `dur`; returns frames the socket accepted.
fn flood(generator: &Host, frames: Arc<Vec<Vec<u8>>>, dur: Duration) -> Result<u64> {
    let ifindex = generator.ifindex;
    generator.run(move || -> Result<u64> {
        // Pin to CPU 0: one core generates, the other is left to everything else.
        // SAFETY: plain libc calls on owned, initialised values.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
        // SAFETY: socket creation; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        ensure!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: we own fd.
        let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: valid pointer and length.
        let rc = unsafe {
            libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        // SAFETY: valid option pointer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const _ as *const libc::c_void,
                4,
            )
        };
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let n = iovs.len();
        let mut sent = 0u64;
        let mut next = 0usize;
        let end = Instant::now() + dur;
        // SAFETY: zeroed mmsghdr is valid; iov pointers set per batch below.
        let mut msgs: Vec<libc::mmsghdr> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        while Instant::now() < end {
            for (k, m) in msgs.iter_mut().enumerate() {
                m.msg_hdr.msg_iov = &mut iovs[(next + k) % n];
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs point at live iovecs/frames.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
            if r > 0 {
                sent += r as u64;
                next = (next + r as usize) % n;
            }
        }
        Ok(sent)
    })?
}

#[derive(Default, Clone)]
struct PhaseResult {
    name: String,
    secs: f64,
    offered: u64,
    entered: u64,
    delivered: u64,
    sensor_packets: Option<u64>,
    events_lost: u64,
    flows: Option<u64>,
    agent_cpu: Option<f64>,
    busy_core_s: f64,
}

fn phase(
    lab: &Lab,
    frames: &Arc<Vec<Vec<u8>>>,
    mode: Option<Mode>,
    secs: f64,
) -> Result<PhaseResult> {
    let (generator, sink) = (lab.host("gen"), lab.host("sink"));
    let mut sniffer = match mode {
        Some(m) => {
            let mut opts = SnifferOptions::new(m);
            opts.run = Run::Daemon;
            let mut s = Sniffer::start(lab, &opts)?;
            s.wait_ready(&lab.port_names(), Duration::from_secs(30))?;
            Some(s)
        }
        None => None,
    };
    let cpu0 = match &sniffer {
        Some(s) => Some(proc_cpu(s.pid().context("sniffer pid")?)?),
        None => None,
    };
    let (_, gen_tx0) = link_stats(&generator.ns, "eth0")?;
    let (sink_rx0, _) = link_stats(&sink.ns, "eth0")?;
    let (busy0, _) = cpu_jiffies()?;
    let t0 = Instant::now();
    let offered = flood(generator, frames.clone(), Duration::from_secs_f64(secs))?;
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let (busy1, _) = cpu_jiffies()?;
    let (_, gen_tx1) = link_stats(&generator.ns, "eth0")?;
    let (sink_rx1, _) = link_stats(&sink.ns, "eth0")?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut r = PhaseResult {
        name: mode
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "none".into()),
        secs: elapsed,
        offered,
        entered: gen_tx1 - gen_tx0,
        delivered: sink_rx1 - sink_rx0,
        busy_core_s: (busy1 - busy0) as f64 / hz,
        ..Default::default()
    };
    if let Some(s) = sniffer.as_mut() {
        let cpu1 = proc_cpu(s.pid().context("sniffer pid")?)?;
        r.agent_cpu = Some(cpu1 - cpu0.unwrap_or(0.0));
        let out = s.stop()?;
        r.sensor_packets = Some(out.summary.counter("packets"));
        r.events_lost = out.summary.counter("events_lost");
        r.flows = Some(
            out.flows
                .iter()
                .filter(|f| f.proto == 17 && f.dst_port == 9)
                .count() as u64,
        );
    }
    Ok(r)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    decnet_e2e::prereq()?;
    let lab = Lab::new(&["gen", "sink"], LabOptions::default())?;
    // Receive-side socket so the sink does not answer with ICMP port unreachable.
    let sink = lab.host("sink").clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let sink_thread = decnet_e2e::netns::spawn_in(&sink.ns, move || {
        let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 9)).ok();
        while !stop2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(sock);
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let frames = Arc::new(build_frames(lab.host("gen"), &sink, args.payload));
    println!(
        "bench sensor: {} flows, {}-byte frames, {:.0} s per phase, {} round(s), phases interleaved",
        FLOWS,
        frames[0].len(),
        args.seconds,
        args.rounds
    );

    let mut results = Vec::new();
    for round in 0..args.rounds {
        for mode in [None, Some(Mode::Tc), Some(Mode::Xdp)] {
            let r = phase(&lab, &frames, mode, args.seconds)?;
            eprintln!(
                "  round {} {:>4}: delivered {:.0} pps",
                round + 1,
                r.name,
                r.delivered as f64 / r.secs
            );
            results.push(r);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sink_thread.join();

    let base: Vec<f64> = results
        .iter()
        .filter(|r| r.name == "none")
        .map(|r| r.delivered as f64 / r.secs)
        .collect();
    let base_pps = base.iter().sum::<f64>() / base.len() as f64;
    println!();
    println!(
        "{:<5} {:>11} {:>11} {:>7} {:>12} {:>12} {:>7} {:>6} {:>11} {:>11}",
        "phase",
        "offered/s",
        "delivered/s",
        "ratio",
        "entered",
        "sensor_pkts",
        "missed",
        "lost",
        "flow_rows",
        "agent_s/M",
    );
    let mut all_ok = true;
    for r in &results {
        let delivered_pps = r.delivered as f64 / r.secs;
        let missed = r.sensor_packets.map(|p| r.entered as i64 - p as i64);
        if missed.is_some_and(|m| m != 0)
            || r.events_lost > 0
            || r.flows.is_some_and(|f| f != FLOWS as u64)
        {
            all_ok = false;
        }
        println!(
            "{:<5} {:>11.0} {:>11.0} {:>7.3} {:>12} {:>12} {:>7} {:>6} {:>11} {:>11}",
            r.name,
            r.offered as f64 / r.secs,
            delivered_pps,
            delivered_pps / base_pps,
            r.entered,
            r.sensor_packets
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            missed.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            r.events_lost,
            r.flows.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
            r.agent_cpu
                .map(|c| format!("{:.3}", c / (r.entered.max(1) as f64 / 1e6)))
                .unwrap_or_else(|| "-".into()),
        );
    }
    println!();
    println!("machine busy core-seconds per million delivered packets:");
    for r in &results {
        println!(
            "  {:<5} {:.2}",
            r.name,
            r.busy_core_s / (r.delivered.max(1) as f64 / 1e6)
        );
    }
    println!();
    println!(
        "ratio = delivered pps / mean delivered pps with no sensor ({base_pps:.0}); entered = frames the \
         generator's veth passed into the bridge port; missed = entered − packets the sensor counted; \
         flow_rows = flow rows written for the {FLOWS} flooded flows; agent_s/M = decnet sniffer CPU \
         seconds per million packets entering the bridge."
    );
    if all_ok {
        println!(
            "sensor kept up in every phase: nothing missed, no event lost, every flow written once."
        );
    } else {
        println!(
            "WARNING: the sensor missed packets, lost events or flow rows in some phase (see above)."
        );
    }
    Ok(())
}
