//! A worker process for the repository's multi-process test (`tests/repo.rs`): opens the
//! database named on the command line (migrating it if needed, racing the other processes) and
//! writes overlapping facts plus increment-style counters, round after round. Exits non-zero on
//! any error, which the test reports.
//!
//! Usage: repo-stress <sqlite|mysql> <URL> <WORKER-ID> <ROUNDS>
use std::net::{IpAddr, Ipv4Addr};

use decnet_core::{
    model::{AttackerUpdate, NewEvent},
    repo::{CounterMode, DbConfig, Repository, Write},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: repo-stress <sqlite|mysql> <URL> <WORKER-ID> <ROUNDS>");
        return std::process::ExitCode::from(2);
    }
    match run(&args[1], &args[2], &args[3], &args[4]).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("repo-stress worker {}: {e}", args[3]);
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(
    db_type: &str,
    url: &str,
    worker: &str,
    rounds: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u32 = rounds.parse()?;
    let repo = Repository::open(&DbConfig::new(Some(db_type), Some(url))?).await?;
    let attacker = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let mine = format!("w{worker}");
    for round in 0..rounds {
        // The same 20 events per round from every worker: stored once.
        let events: Vec<NewEvent> = (0..20)
            .map(|i| {
                let n = round * 20 + i;
                NewEvent {
                    ts_ns: 1_795_730_640_000_000_000 + i64::from(n),
                    decky: "web-01".into(),
                    service: "ssh".into(),
                    event_type: "auth_attempt".into(),
                    attacker_ip: Some(attacker),
                    attacker_port: Some(40_000),
                    fields: "{}".into(),
                    raw: format!("event {n}").into_bytes(),
                    dedup_key: None,
                }
            })
            .collect();
        let seen = 1_795_730_640_000_000_000 + i64::from(round);
        let update = [AttackerUpdate {
            ip: attacker,
            first_seen_ns: seen,
            last_seen_ns: seen,
            event_count: u64::from(round + 1) * 20,
            session_count: 0,
            credential_count: 0,
            flow_count: 0,
        }];
        let counters = [("rounds", 1), (mine.as_str(), 1)];
        repo.write(&[
            Write::Events(&events),
            Write::Attackers(&update),
            Write::Counters {
                worker: "stress",
                host: "h1",
                values: &counters,
                mode: CounterMode::Add,
            },
        ])
        .await?;
    }
    repo.close().await;
    Ok(())
}
