//! Repository tests against real SQLite files under the system temp directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A unique database file, removed (with its WAL/SHM side files) on drop.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "decnet-core-{tag}-{}-{}-{nanos}.db",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        TempDb {
            path: std::env::temp_dir().join(name),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn open(&self) -> Repository {
        Repository::connect(&self.url()).await.expect("connect")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

const T0: i64 = 1_795_730_640_123_456_789;

fn flow(i: u32) -> FlowRecord {
    FlowRecord {
        bridge: "br0".into(),
        port: "veth0".into(),
        src_ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
        dst_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
        src_port: (i % 60_000) as u16 + 1024,
        dst_port: 443,
        proto: 6,
        vlan: 0,
        packets: 1,
        bytes: 60,
        tcp_flags: 0x02,
        first_seen_ns: T0 + i64::from(i),
        last_seen_ns: T0 + i64::from(i),
        ended: false,
    }
}

#[tokio::test]
async fn double_export_merges_into_one_row_with_max_counts() {
    let db = TempDb::new("merge");
    let repo = db.open().await;

    let start = flow(1);
    let mut last = start.clone();
    last.port = "veth7".into(); // port is kept from the first export
    last.packets = 42;
    last.bytes = 9_000;
    last.tcp_flags = 0x11;
    last.last_seen_ns = T0 + 5_000_000_000;
    last.ended = true;

    assert_eq!(
        repo.upsert_flows(std::slice::from_ref(&start))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.upsert_flows(std::slice::from_ref(&last))
            .await
            .unwrap(),
        1
    );
    // A stale re-export must not shrink anything or un-end the flow.
    repo.upsert_flows(std::slice::from_ref(&start))
        .await
        .unwrap();
    // Same again within one batch.
    repo.upsert_flows(&[start.clone(), last.clone()])
        .await
        .unwrap();

    let mut expected = start.clone();
    expected.merge(&last);
    assert_eq!(expected.port, "veth0");
    assert_eq!(repo.count_flows().await.unwrap(), 1);
    assert_eq!(repo.list_flows().await.unwrap(), vec![expected]);

    // A different first_seen is a different flow.
    let mut other = start.clone();
    other.first_seen_ns += 1;
    repo.upsert_flows(&[other]).await.unwrap();
    assert_eq!(repo.count_flows().await.unwrap(), 2);
    repo.close().await;
}

#[tokio::test]
async fn batch_of_10k_rows_in_one_call() {
    let db = TempDb::new("batch");
    let repo = db.open().await;
    let flows: Vec<FlowRecord> = (0..10_000).map(flow).collect();

    let started = std::time::Instant::now();
    assert_eq!(repo.upsert_flows(&flows).await.unwrap(), 10_000);
    let took = started.elapsed();
    eprintln!("10k upserts: {took:?}");

    assert_eq!(repo.count_flows().await.unwrap(), 10_000);
    let listed = repo.list_flows().await.unwrap();
    assert_eq!(listed, flows);

    // Re-exporting the whole batch with higher counts updates in place.
    let bumped: Vec<FlowRecord> = flows
        .iter()
        .map(|f| FlowRecord {
            packets: 7,
            ..f.clone()
        })
        .collect();
    assert_eq!(repo.upsert_flows(&bumped).await.unwrap(), 10_000);
    assert_eq!(repo.count_flows().await.unwrap(), 10_000);
    assert!(
        repo.list_flows()
            .await
            .unwrap()
            .iter()
            .all(|f| f.packets == 7)
    );
    repo.close().await;
}

#[tokio::test]
async fn ipv6_and_extreme_values_round_trip() {
    let db = TempDb::new("v6");
    let repo = db.open().await;
    let mut a = flow(1);
    a.src_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    a.dst_ip = IpAddr::V6(Ipv6Addr::new(
        0xfe80, 0, 0, 0, 0x1ff, 0xfe23, 0x4567, 0x890a,
    ));
    a.proto = 58;
    a.vlan = 4094;
    a.src_port = u16::MAX;
    a.tcp_flags = 0xff;
    let mut b = flow(2);
    b.src_ip = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
    b.dst_ip = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    b.packets = i64::MAX as u64;
    b.bytes = i64::MAX as u64;
    b.first_seen_ns = i64::MIN;
    b.last_seen_ns = i64::MAX;
    b.ended = true;
    repo.upsert_flows(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(repo.list_flows().await.unwrap(), vec![a, b]);
    repo.close().await;
}

#[tokio::test]
async fn stored_timestamps_are_canonical_text() {
    let db = TempDb::new("ts");
    let repo = db.open().await;
    let mut f = flow(0);
    f.first_seen_ns = T0;
    f.last_seen_ns = T0 + 1;
    repo.upsert_flows(&[f]).await.unwrap();
    let Backend::Sqlite(b) = &repo.backend;
    let (first, last): (String, String) = sqlx::query_as("SELECT first_seen, last_seen FROM flows")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_eq!(first, "2026-11-26T22:04:00.123456789Z");
    assert_eq!(last, "2026-11-26T22:04:00.123456790Z");
    repo.close().await;
}

#[tokio::test]
async fn bad_url_errors_name_the_variable() {
    for url in [
        "postgres://u:secret@h/db",
        "decnet.db",
        "sqlite:///nonexistent-dir-decnet/sub/x.db",
        "sqlite://x.db?mode=bogus",
    ] {
        let err = Repository::connect(url).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RepoError::Connect { .. }), "{url}: {msg}");
        assert!(msg.contains("DECNET_DB_URL"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
        eprintln!("{msg}");
    }
    let err = Repository::connect("postgres://u:secret@h/db")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("postgres://u:***@h/db"), "{err}");
    let err = Repository::connect("sqlite:///nonexistent-dir-decnet/sub/x.db")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("sqlite:///nonexistent-dir-decnet/sub/x.db"),
        "{err}"
    );
}

#[tokio::test]
async fn in_memory_url_works() {
    let repo = Repository::connect("sqlite::memory:").await.unwrap();
    repo.upsert_flows(&[flow(1), flow(2)]).await.unwrap();
    assert_eq!(repo.count_flows().await.unwrap(), 2);
    repo.close().await;
}

#[tokio::test]
async fn reopening_keeps_data_and_skips_applied_migrations() {
    let db = TempDb::new("reopen");
    let repo = db.open().await;
    repo.upsert_flows(&[flow(1)]).await.unwrap();
    repo.close().await;
    let repo = db.open().await;
    assert_eq!(repo.count_flows().await.unwrap(), 1);
    repo.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_upserts_on_one_pool() {
    let db = TempDb::new("concurrent");
    let repo = db.open().await;
    // A second repository on the same file: a separate pool, like another process.
    let other = db.open().await;
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let repo = if t % 2 == 0 {
            repo.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            for round in 0..10u32 {
                // Overlapping identities across tasks: every task also rewrites flows 0..100.
                let mut batch: Vec<FlowRecord> = (0..100).map(flow).collect();
                batch.extend((0..200).map(|i| flow(10_000 + t * 10_000 + round * 200 + i)));
                for f in &mut batch[..100] {
                    f.packets = u64::from(t * 100 + round);
                }
                repo.upsert_flows(&batch).await.expect("upsert");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(repo.count_flows().await.unwrap(), 100 + 8 * 10 * 200);
    let max_packets: u64 = 7 * 100 + 9;
    let listed = repo.list_flows().await.unwrap();
    assert!(listed[..100].iter().all(|f| f.packets == max_packets));
    repo.close().await;
    other.close().await;
}

#[test]
fn insert_sql_shape() {
    let sql = insert_sql(2, "ON CONFLICT DO NOTHING");
    assert!(sql.starts_with("INSERT INTO flows (bridge, port, src_ip,"));
    assert_eq!(sql.matches('?').count(), 2 * FLOW_COLUMNS.len());
    assert!(sql.ends_with(") ON CONFLICT DO NOTHING"));
}

#[test]
fn redacts_passwords_only() {
    assert_eq!(
        redact_url("mysql://u:pw@h:3306/db"),
        "mysql://u:***@h:3306/db"
    );
    assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
    assert_eq!(redact_url("sqlite:///a@b:c.db"), "sqlite:///a@b:c.db");
    assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
}
