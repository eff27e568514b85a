//! `cargo xtask bench fleet`: how long `decnet deploy` takes to bring up N deckies until every
//! service answers, and how much memory the whole constellation (supervisor, workers, one
//! `decnet decky` per decky) uses, for N = 10 and 50 (by default).
//!
//! Each round writes a fleet of N deckies (archetypes in rotation: web-server, file-server,
//! database, iot-camera, windows-workstation — 2-3 services each), starts `decnet deploy` with the
//! collector and sniffer, and polls TCP connects from the host to every service until all
//! answer. Memory is read from /proc for every process of the deployment: RSS summed (counts the
//! shared binary once per process, an upper bound) and PSS summed (shared pages split between
//! the processes that map them: what the fleet really costs). Baseline for the same run: an idle
//! `sleep` process's RSS, and the original's published ≈1.8 GB.
use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use decnet_e2e::fleet::{Deployment, processes_with};

struct Args {
    sizes: Vec<usize>,
    workers: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        sizes: vec![10, 50],
        workers: "collector,sniffer".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                a.sizes = it
                    .next()
                    .context("--sizes N,M")?
                    .split(',')
                    .map(|s| s.parse::<usize>().context("--sizes takes numbers"))
                    .collect::<Result<_>>()?;
                if a.sizes.iter().any(|&n| n == 0 || n > 200) {
                    bail!("--sizes: 1 to 200 deckies per round");
                }
            }
            "--workers" => a.workers = it.next().context("--workers LIST")?,
            "-h" | "--help" => {
                println!(
                    "bench-fleet [--sizes 10,50] [--workers collector,sniffer]\n\n\
                     Deploys N deckies per round (root; uses bridge dntbf and 10.240.0.0/16 \
                     addresses), measures time until every service answers and the memory of \
                     every decnet process of the deployment."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(a)
}

const ARCHETYPES: [(&str, &[u16]); 5] = [
    ("web-server", &[22, 80, 443]),
    ("file-server", &[22, 21, 80]),
    ("database", &[22, 3306, 6379]),
    ("iot-camera", &[23, 80]),
    ("windows-workstation", &[80, 21]),
];

fn kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    decnet_e2e::prereq()?;
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn()?;
    std::thread::sleep(Duration::from_millis(200));
    let sleep_rss = kib(sleeper.id(), "status", "VmRSS:");
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    println!(
        "{:>7} {:>9} {:>12} {:>14} {:>12} {:>12} {:>10}",
        "deckies", "services", "network s", "all answer s", "RSS sum MB", "PSS sum MB", "processes"
    );
    for (round, &n) in args.sizes.iter().enumerate() {
        // 10.240.0.0/16 would need a /16 fleet; a /24 holds 200 deckies.
        let net = 240 + round as u8;
        let mut fleet = String::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let (arch, ports) = ARCHETYPES[i % ARCHETYPES.len()];
            let ip = Ipv4Addr::new(10, net, 0, 10 + i as u8);
            fleet.push_str(&format!(
                "[[decky]]\nname = \"bf{round}-{i}\"\nip = \"{ip}\"\narchetype = \"{arch}\"\n\n"
            ));
            targets.extend(ports.iter().map(|&p| SocketAddr::from((ip, p))));
        }
        let t0 = Instant::now();
        let mut d = Deployment::start(&format!("bf{round}"), net, &fleet, &args.workers)?;
        let ready = t0.elapsed();
        // Every service answers a TCP connect from the host (on the bridge).
        let mut pending = targets.clone();
        while !pending.is_empty() {
            pending.retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err());
            if t0.elapsed() > Duration::from_secs(120) {
                bail!(
                    "{} services still silent after 120 s: {:?}",
                    pending.len(),
                    &pending[..pending.len().min(5)]
                );
            }
        }
        let answered = t0.elapsed();
        let network = d
            .logs()
            .lines()
            .find_map(|l| {
                l.split("deckies in ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .unwrap_or(f64::NAN);
        // Let the processes settle, then read memory of everything in the deployment.
        std::thread::sleep(Duration::from_secs(2));
        let pids = processes_with(&d.run_dir.display().to_string());
        let rss: u64 = pids.iter().map(|&p| kib(p, "status", "VmRSS:")).sum();
        let pss: u64 = pids.iter().map(|&p| kib(p, "smaps_rollup", "Pss:")).sum();
        println!(
            "{:>7} {:>9} {:>12.2} {:>14.2} {:>12.1} {:>12.1} {:>10}",
            n,
            targets.len(),
            network,
            answered.as_secs_f64(),
            rss as f64 / 1024.0,
            pss as f64 / 1024.0,
            pids.len()
        );
        let _ = ready;
        d.stop(Duration::from_secs(60))?;
    }
    println!(
        "\nbaseline: an idle `sleep` process has {:.1} MB RSS; the original DECNET's fleet needs ≈1.8 GB \
         (upstream-notes.md). Aim: 50 deckies answering in < 5 s, < 150 MB.",
        sleep_rss as f64 / 1024.0
    );
    Ok(())
}
