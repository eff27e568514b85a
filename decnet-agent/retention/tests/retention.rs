//! `decnet retention` on a real repository (SQLite and MariaDB).
//!
//! - Old and new events and flows, taken in by the real correlator: one retention run deletes
//!   exactly the old ones it has taken in — not those past its cursors (stored after its pass),
//!   not the events and flows of a session that still reaches into the kept window — and every
//!   derived table (attackers, sessions, touches, credentials, scans) is the same afterwards. A
//!   second run deletes nothing; after the correlator takes in the rest, the next run deletes
//!   the old rows it now may.
//! - SQLite: a new file is in incremental auto-vacuum mode (read back with rusqlite, not our
//!   code) and shrinks on disk after the deletion; a file created without it is switched by
//!   one VACUUM at start when small enough, and left alone (and said so) when not.
#[path = "../../../decnet-core/tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
};

use common::{Backend, TestDb};
use decnet_core::{
    model::{CredentialAttempt, Decky, DeckyService, FlowRecord, NewEvent},
    repo::{Repository, Write},
    time_fmt::{format_ts, now_ns},
};
use decnet_intel::correlator::{pass::Config, scans::ScanConfig};
use decnet_retention::{CORRELATOR, RetentionArgs};
use decnet_runtime::{DbArgs, RunArgs, StopSource, shutdown_pair};

const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;
const DAY: i64 = 24 * HOUR;

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
}

fn decky_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11))
}

fn event(ts_ns: i64, attacker: IpAddr, kind: &str, n: usize) -> NewEvent {
    let raw = format!(
        "<38>1 {} web-01 ssh - {kind} [relay@55555 src_ip=\"{attacker}\" n=\"{n}\"] {}",
        format_ts(ts_ns),
        "x".repeat(n % 7)
    );
    NewEvent {
        ts_ns,
        decky: "web-01".into(),
        service: "ssh".into(),
        event_type: kind.into(),
        attacker_ip: Some(attacker),
        attacker_port: Some(40_000),
        fields: format!("{{\"src_ip\":\"{attacker}\",\"n\":{n}}}"),
        raw: raw.into_bytes(),
        dedup_key: None,
    }
}

fn flow(first_ns: i64, src: IpAddr, dst_port: u16) -> FlowRecord {
    FlowRecord {
        bridge: "rt0".into(),
        port: "rt-web".into(),
        src_ip: src,
        dst_ip: decky_ip(),
        src_port: 40_000,
        dst_port,
        proto: 6,
        vlan: 0,
        packets: 3,
        bytes: 180,
        tcp_flags: 0x02,
        first_seen_ns: first_ns,
        last_seen_ns: first_ns + SEC,
        ended: true,
    }
}

fn correlator_config() -> Config {
    Config {
        idle_gap_ns: 300 * SEC,
        scan: ScanConfig {
            gap_ns: 60 * SEC,
            min_ports: 10,
            min_hosts: 5,
        },
        batch: 500,
        flow_settle_ns: 0,
        host: "test-host".into(),
        own_addresses: Vec::new(),
    }
}

async fn correlate(repo: &Repository) {
    decnet_intel::correlator::pass::run_pass(
        repo,
        &correlator_config(),
        &Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("correlator pass");
}

fn args(db: &TestDb, events_days: f64, flows_days: f64, summary: PathBuf) -> RetentionArgs {
    RetentionArgs {
        run: RunArgs {
            summary_json: Some(summary),
            ..Default::default()
        },
        db: DbArgs {
            db_type: Some(
                match db.backend {
                    Backend::Sqlite => "sqlite",
                    Backend::MySql => "mysql",
                }
                .into(),
            ),
            db_url: Some(db.url.clone()),
        },
        events_days,
        flows_days,
        interval: 1.0,
        batch: 7, // several batches even for a few rows
        max_hold_ms: 50.0,
        pause_ms: 0,
        vacuum_pages: 64,
        convert_max_mb: 64,
        simulated_now: None,
    }
}

/// Runs `decnet retention` once (as the CLI does, through the runtime) and returns its summary.
async fn retention(a: RetentionArgs) -> serde_json::Value {
    let summary = a.run.summary_json.clone().expect("summary path");
    decnet_runtime::start(a, StopSource::Embedded(shutdown_pair().1))
        .await
        .expect("retention run");
    let v = serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let _ = std::fs::remove_file(&summary);
    v
}

fn summary_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "decnet-retention-{tag}-{}-{}.json",
        std::process::id(),
        now_ns()
    ))
}

async fn event_ids(repo: &Repository) -> BTreeSet<(i64, i64)> {
    repo.events_after(0, 1_000_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.id, e.ts_ns))
        .collect()
}

async fn flow_starts(repo: &Repository) -> BTreeSet<(IpAddr, i64)> {
    repo.all_flows()
        .await
        .expect("flows")
        .into_iter()
        .map(|f| (f.src_ip, f.first_seen_ns))
        .collect()
}

/// Everything the correlator derived, for the attackers of the test.
async fn derived(repo: &Repository) -> String {
    let mut out = String::new();
    for n in 1..=5 {
        let a = ip(n);
        let mut attacker = repo.attacker(a).await.expect("attacker");
        if let Some(x) = attacker.as_mut() {
            x.id = 0;
        }
        let sessions = repo.sessions(a).await.expect("sessions");
        let touches = repo.touches(a).await.expect("touches");
        let creds = repo.credentials(Some(a)).await.expect("credentials");
        let scans = repo.scan_episodes(a, false).await.expect("scans");
        out.push_str(&format!(
            "{attacker:?}\n{sessions:?}\n{touches:?}\n{creds:?}\n{scans:?}\n"
        ));
    }
    out
}

async fn old_and_new_rows_and_the_correlators_cursors(b: Backend) {
    let db = TestDb::new(b, "retention").await;
    let repo = db.open().await;
    repo.write(&[Write::Deckies(&[Decky {
        name: "web-01".into(),
        ip: decky_ip(),
        hostname: "web-01".into(),
        os_family: "linux".into(),
        archetype: "web-server".into(),
        persona: "{}".into(),
        status: "running".into(),
        services: vec![DeckyService {
            service: "ssh".into(),
            port: 22,
            settings: "{}".into(),
        }],
    }])])
    .await
    .expect("fleet");
    let now = now_ns();
    let old = now - 10 * DAY;
    // Attacker 1: an old brute force (with credentials), long over.
    let mut a1: Vec<NewEvent> = (0..40)
        .map(|i| event(old + i * 10 * SEC, ip(1), "auth_attempt", i as usize))
        .collect();
    a1.push(event(old + 500 * SEC, ip(1), "disconnect", 99));
    let creds: Vec<(usize, CredentialAttempt)> = (0..40)
        .map(|i| {
            (
                i,
                CredentialAttempt {
                    attacker_ip: ip(1),
                    decky: "web-01".into(),
                    service: "ssh".into(),
                    principal: b"root".to_vec(),
                    secret_kind: "password".into(),
                    secret: format!("pw{}", i % 5).into_bytes(),
                    attempts: 1,
                    first_seen_ns: old + i as i64 * 10 * SEC,
                    last_seen_ns: old + i as i64 * 10 * SEC,
                },
            )
        })
        .collect();
    repo.write(&[Write::EventsWithCredentials {
        events: &a1,
        credentials: &creds,
    }])
    .await
    .expect("store attacker 1");
    // Attacker 2: a command every 2 minutes from 2 days ago until 20 hours ago, never 5 minutes
    // idle: one session that reaches into the kept window (retention 1 day), so all of it stays.
    // (A `connect` would start a new session each time: those would go.)
    let a2: Vec<NewEvent> = (0..((28 * HOUR) / (120 * SEC)))
        .map(|i| event(now - 2 * DAY + i * 120 * SEC, ip(2), "command", i as usize))
        .collect();
    // Attacker 3: recent.
    let a3: Vec<NewEvent> = (0..20)
        .map(|i| event(now - HOUR + i * SEC, ip(3), "command", i as usize))
        .collect();
    repo.insert_events(&a2).await.expect("store attacker 2");
    repo.insert_events(&a3).await.expect("store attacker 3");
    // Flows: an old port scan by attacker 4 (a detected scan episode), recent flows of 3, and
    // the flows under attacker 2's long session.
    let scan: Vec<FlowRecord> = (0..30)
        .map(|p| flow(old + p * SEC, ip(4), 1000 + p as u16))
        .collect();
    let recent: Vec<FlowRecord> = (0..10)
        .map(|p| flow(now - HOUR + p * SEC, ip(3), 22))
        .collect();
    let beacon: Vec<FlowRecord> = (0..20)
        .map(|i| flow(now - 2 * DAY + i * 600 * SEC, ip(2), 22))
        .collect();
    repo.upsert_flows(&scan).await.expect("flows");
    repo.upsert_flows(&recent).await.expect("flows");
    repo.upsert_flows(&beacon).await.expect("flows");

    // Nothing is deleted before the correlator has a cursor.
    let s = retention(args(&db, 1.0, 1.0, summary_path("nocursor"))).await;
    assert_eq!(s["events_deleted"], serde_json::Value::Null, "{s}");
    assert_eq!(s["waiting_for_correlator_events"], 1, "{s}");
    assert_eq!(s["waiting_for_correlator_flows"], 1, "{s}");
    assert_eq!(
        repo.count_events().await.unwrap(),
        41 + a2.len() as u64 + 20
    );

    correlate(&repo).await;
    let scans = repo.scan_episodes(ip(4), true).await.unwrap();
    assert_eq!(scans.len(), 1, "the old port scan is a detected scan");
    // Stored after the correlator's pass: old, but past its cursors.
    let a5: Vec<NewEvent> = (0..15)
        .map(|i| event(old + DAY + i * SEC, ip(5), "connect", i as usize))
        .collect();
    repo.insert_events(&a5).await.expect("store attacker 5");
    let late_flows: Vec<FlowRecord> = (0..5)
        .map(|p| flow(old + DAY + p * SEC, ip(5), 80 + p as u16))
        .collect();
    repo.upsert_flows(&late_flows).await.expect("flows");

    let before_events = event_ids(&repo).await;
    let before_flows = flow_starts(&repo).await;
    let before_derived = derived(&repo).await;
    let s = retention(args(&db, 1.0, 1.0, summary_path("first"))).await;

    let after_events = event_ids(&repo).await;
    let gone: BTreeSet<i64> = before_events
        .difference(&after_events)
        .map(|(_, ts)| *ts)
        .collect();
    let expected: BTreeSet<i64> = a1.iter().map(|e| e.ts_ns).collect();
    assert_eq!(
        gone, expected,
        "exactly attacker 1's old events are deleted"
    );
    assert_eq!(after_events.len(), before_events.len() - a1.len());
    assert_eq!(s["events_deleted"], a1.len() as u64, "{s}");
    let after_flows = flow_starts(&repo).await;
    let gone: BTreeSet<(IpAddr, i64)> = before_flows.difference(&after_flows).copied().collect();
    let expected: BTreeSet<(IpAddr, i64)> =
        scan.iter().map(|f| (f.src_ip, f.first_seen_ns)).collect();
    assert_eq!(gone, expected, "exactly the old scan's flows are deleted");
    assert_eq!(s["flows_deleted"], scan.len() as u64, "{s}");
    assert!(
        s["batches"].as_u64().unwrap() >= 10,
        "batches of at most 7: {s}"
    );
    assert!(s["lock_hold_max_us"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        derived(&repo).await,
        before_derived,
        "derived tables unchanged"
    );
    let counters = repo.counters().await.unwrap();
    assert!(
        counters
            .iter()
            .any(|(worker, _, name, v)| worker == decnet_retention::WORKER
                && name == "events_deleted"
                && *v == a1.len() as i64),
        "{counters:?}"
    );

    // Again: nothing more is due.
    let s = retention(args(&db, 1.0, 1.0, summary_path("again"))).await;
    assert_eq!(s["events_deleted"], serde_json::Value::Null, "{s}");
    assert_eq!(event_ids(&repo).await, after_events);

    // The correlator takes in attacker 5: now its old rows go too, and what it derived stays.
    correlate(&repo).await;
    let before_derived = derived(&repo).await;
    assert!(repo.attacker(ip(5)).await.unwrap().is_some());
    let s = retention(args(&db, 1.0, 1.0, summary_path("late"))).await;
    assert_eq!(s["events_deleted"], a5.len() as u64, "{s}");
    assert_eq!(s["flows_deleted"], late_flows.len() as u64, "{s}");
    assert_eq!(derived(&repo).await, before_derived);
    // Kept: attacker 2's long session (all of it) and attacker 3's recent rows.
    let left: BTreeSet<i64> = event_ids(&repo).await.iter().map(|(_, t)| *t).collect();
    let want: BTreeSet<i64> = a2.iter().chain(&a3).map(|e| e.ts_ns).collect();
    assert_eq!(left, want);
    let left_flows = flow_starts(&repo).await;
    let want: BTreeSet<(IpAddr, i64)> = recent
        .iter()
        .chain(&beacon)
        .map(|f| (f.src_ip, f.first_seen_ns))
        .collect();
    assert_eq!(left_flows, want);

    // 0 keeps forever.
    let s = retention(args(&db, 0.0, 0.0, summary_path("forever"))).await;
    assert_eq!(s["events_deleted"], serde_json::Value::Null, "{s}");
    assert_eq!(event_ids(&repo).await.len(), a2.len() + a3.len());
    repo.close().await;
    db.cleanup().await;
}

both_backends!(old_and_new_rows_and_the_correlators_cursors);

/// Size of the SQLite file (after a checkpoint, the WAL holds nothing of it).
fn file_size(db: &TestDb) -> u64 {
    let path = db.url.trim_start_matches("sqlite://");
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn sqlite(db: &TestDb) -> rusqlite::Connection {
    rusqlite::Connection::open(db.url.trim_start_matches("sqlite://")).expect("rusqlite open")
}

fn pragma(conn: &rusqlite::Connection, name: &str) -> i64 {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .expect(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_file_shrinks() {
    let db = TestDb::new(Backend::Sqlite, "shrink").await;
    let repo = db.open().await;
    assert_eq!(
        pragma(&sqlite(&db), "auto_vacuum"),
        2,
        "a new file is INCREMENTAL"
    );
    let old = now_ns() - 30 * DAY;
    for chunk in 0..10 {
        let rows: Vec<NewEvent> = (0..2000)
            .map(|i| {
                let mut e = event(old + (chunk * 2000 + i) * SEC, ip(1), "request", 0);
                e.raw.extend(std::iter::repeat_n(b'r', 900));
                e
            })
            .collect();
        repo.insert_events(&rows).await.expect("events");
    }
    let max_id = repo.max_event_id().await.unwrap();
    // Where the correlator would stand after taking everything in.
    repo.write(&[Write::Cursor {
        worker: CORRELATOR,
        host: "h",
        name: "events",
        position: max_id,
        state: "",
    }])
    .await
    .unwrap();
    repo.checkpoint().await.unwrap();
    let big = file_size(&db);
    assert!(big > 20_000_000, "{big}");
    let mut a = args(&db, 1.0, 1.0, summary_path("shrink"));
    a.batch = 1000;
    let s = retention(a).await;
    assert_eq!(s["events_deleted"], 20_000, "{s}");
    assert!(s["vacuum_pages_freed"].as_u64().unwrap() > 4000, "{s}");
    repo.close().await;
    let conn = sqlite(&db);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    let small = file_size(&db);
    assert!(
        small * 10 < big,
        "the file shrank from {big} to {small} bytes"
    );
    assert_eq!(pragma(&conn, "freelist_count"), 0);
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_file_is_switched_to_incremental_vacuum_when_small() {
    for (max_mb, switched) in [(0u64, false), (64, true)] {
        let db = TestDb::new(Backend::Sqlite, "legacy").await;
        // A file from before: a table exists before decnet first opens it, so the repository's
        // auto_vacuum setting cannot take effect on it.
        sqlite(&db)
            .execute_batch("PRAGMA auto_vacuum = NONE; CREATE TABLE legacy (x INTEGER);")
            .expect("legacy file");
        let repo = db.open().await;
        repo.close().await;
        assert_eq!(pragma(&sqlite(&db), "auto_vacuum"), 0);
        let mut a = args(&db, 1.0, 1.0, summary_path("legacy"));
        a.convert_max_mb = max_mb;
        let s = retention(a).await;
        let conn = sqlite(&db);
        if switched {
            assert_eq!(pragma(&conn, "auto_vacuum"), 2, "{s}");
            assert_eq!(s["vacuum_conversions"], 1, "{s}");
        } else {
            assert_eq!(pragma(&conn, "auto_vacuum"), 0, "{s}");
            assert_eq!(s["vacuum_conversion_pending"], 1, "{s}");
        }
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}
