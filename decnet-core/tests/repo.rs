//! The repository suite: every test runs on SQLite and on MariaDB (see `common`).
mod common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use common::{Backend, TestDb};
use decnet_core::{
    model::*,
    repo::{CounterMode, DbConfig, LeaseHolder, RepoError, Repository, Write},
};

const T0: i64 = 1_795_730_640_123_456_789;
const SEC: i64 = 1_000_000_000;

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
}

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

fn event(i: u32, attacker: IpAddr) -> NewEvent {
    let raw = format!(
        "<134>1 2026-05-02T06:00:{:02}.{i:06}+00:00 web-01 ssh - auth_attempt [relay@55555 principal=\"root\" src_ip=\"{attacker}\"]",
        i % 60
    );
    NewEvent {
        ts_ns: T0 + i64::from(i) * SEC,
        decky: format!("decky-{}", i % 3),
        service: "ssh".into(),
        event_type: "auth_attempt".into(),
        attacker_ip: Some(attacker),
        attacker_port: Some(40_000 + (i % 1000) as u16),
        fields: format!("{{\"principal\":\"root\",\"n\":{i}}}"),
        raw: raw.into_bytes(),
        dedup_key: None,
    }
}

async fn flows_merge_and_never_shrink(b: Backend) {
    let db = TestDb::new(b, "flows").await;
    let repo = db.open().await;
    let start = flow(1);
    let mut last = start.clone();
    last.port = "veth7".into();
    last.packets = 42;
    last.bytes = 9_000;
    last.tcp_flags = 0x11;
    last.last_seen_ns += 5 * SEC;
    last.ended = true;
    repo.upsert_flows(std::slice::from_ref(&start))
        .await
        .unwrap();
    repo.upsert_flows(std::slice::from_ref(&last))
        .await
        .unwrap();
    // A stale export after the final one changes nothing.
    repo.upsert_flows(std::slice::from_ref(&start))
        .await
        .unwrap();
    let rows = repo.all_flows().await.unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.packets, r.bytes, r.tcp_flags, r.ended),
        (42, 9_000, 0x13, true)
    );
    assert_eq!(
        (r.first_seen_ns, r.last_seen_ns),
        (start.first_seen_ns, last.last_seen_ns)
    );
    assert_eq!(r.port, "veth0", "the port of the first export stays");

    // 10k rows in one call, IPv6 and extremes round-trip.
    let many: Vec<FlowRecord> = (0..10_000).map(flow).collect();
    repo.upsert_flows(&many).await.unwrap();
    let mut v6 = flow(99_999);
    v6.src_ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0xdec, 0, 0, 0, 0, 0, 1));
    v6.packets = u64::MAX >> 1;
    v6.src_port = u16::MAX;
    repo.upsert_flows(std::slice::from_ref(&v6)).await.unwrap();
    assert_eq!(repo.count_flows().await.unwrap(), 10_001);
    let back = repo.all_flows().await.unwrap();
    assert!(back.contains(&v6));
    repo.close().await;
    db.cleanup().await;
}

async fn events_are_idempotent_and_stored_exactly(b: Backend) {
    let db = TestDb::new(b, "events").await;
    let repo = db.open().await;
    let batch: Vec<NewEvent> = (0..500).map(|i| event(i, ip(1))).collect();
    assert_eq!(repo.insert_events(&batch).await.unwrap(), 500);
    // Re-ingest, overlapping: only the new ones count.
    let more: Vec<NewEvent> = (250..750).map(|i| event(i, ip(1))).collect();
    assert_eq!(repo.insert_events(&more).await.unwrap(), 250);
    assert_eq!(repo.count_events().await.unwrap(), 750);

    // Hostile bytes: NUL, invalid UTF-8, quotes, an injection attempt, a 1 MiB line.
    let mut odd = event(10_000, ip(2));
    odd.decky = "d'; DROP TABLE events; --".into();
    odd.fields = "{\"cmd\":\"echo \\\"x\\\" \\u0000 ]\"}".into();
    odd.raw = b"a\0b\xff\xfe'\"\\]\n".to_vec();
    let mut huge = event(10_001, ip(2));
    huge.raw = vec![b'x'; 1 << 20];
    huge.event_type = "t".repeat(500);
    assert_eq!(
        repo.insert_events(&[odd.clone(), huge.clone()])
            .await
            .unwrap(),
        2
    );
    let all = repo.events_after(0, 10_000).await.unwrap();
    assert_eq!(all.len(), 752);
    let o = all
        .iter()
        .find(|e| e.attacker_ip == Some(ip(2)) && e.raw.len() < 100)
        .unwrap();
    assert_eq!(o.decky, odd.decky);
    assert_eq!(o.fields, odd.fields);
    assert_eq!(o.raw, odd.raw, "bytes come back exactly");
    let h = all
        .iter()
        .find(|e| e.raw.len() > 100 && e.attacker_ip == Some(ip(2)))
        .unwrap();
    assert_eq!(
        h.raw.len(),
        decnet_core::repo::limits::LONG,
        "oversized raw line is bounded"
    );
    assert!(h.event_type.len() <= decnet_core::repo::limits::NAME);
    assert!(h.event_type.ends_with(decnet_core::repo::limits::CUT));
    // Keyset pagination.
    let page = repo.events_after(all[99].id, 10).await.unwrap();
    assert_eq!(page.first().map(|e| e.id), Some(all[100].id));
    assert_eq!(page.len(), 10);
    repo.close().await;
    db.cleanup().await;
}

/// What a worker does with one batch of input: store the events, merge the attacker, record
/// its touches and move its cursor, all in one transaction.
async fn process(repo: &Repository, input: &[NewEvent], cursor_at: i64, commit: bool) {
    let mut tx = repo.begin().await.unwrap();
    tx.insert_events(input).await.unwrap();
    let first = input.iter().map(|e| e.ts_ns).min().unwrap();
    let last = input.iter().map(|e| e.ts_ns).max().unwrap();
    let attacker = input[0].attacker_ip.unwrap();
    tx.upsert_attackers(&[AttackerUpdate {
        ip: attacker,
        first_seen_ns: first,
        last_seen_ns: last,
        event_count: 0,
        session_count: 0,
        credential_count: 0,
        flow_count: 0,
    }])
    .await
    .unwrap();
    let touches: Vec<Touch> = input
        .iter()
        .map(|e| Touch {
            attacker_ip: attacker,
            decky: e.decky.clone(),
            service: e.service.clone(),
            first_seen_ns: e.ts_ns,
            last_seen_ns: e.ts_ns,
        })
        .collect();
    tx.touch(&touches).await.unwrap();
    tx.refresh_attacker_counts(&[attacker]).await.unwrap();
    tx.set_cursor(
        "collector",
        "h1",
        "input",
        cursor_at,
        &format!("offset={cursor_at}"),
    )
    .await
    .unwrap();
    if commit {
        tx.commit().await.unwrap();
    } else {
        drop(tx); // the crash: the connection goes away before COMMIT
    }
}

async fn snapshot(repo: &Repository) -> String {
    let mut events = repo.events_after(0, 100_000).await.unwrap();
    for e in &mut events {
        e.id = 0; // surrogate ids may differ (MariaDB does not give back rolled-back ids)
    }
    let mut a = repo.attacker(ip(7)).await.unwrap();
    if let Some(a) = a.as_mut() {
        a.id = 0;
    }
    let path = repo.touches(ip(7)).await.unwrap();
    let cur = repo.cursor("collector", "h1", "input").await.unwrap();
    format!("{events:?}\n{a:?}\n{path:?}\n{cur:?}")
}

async fn crash_then_replay_equals_a_clean_pass(b: Backend) {
    let input: Vec<NewEvent> = (0..300).map(|i| event(i, ip(7))).collect();
    let chunks: Vec<&[NewEvent]> = input.chunks(100).collect();

    let clean = TestDb::new(b, "clean").await;
    let repo = clean.open().await;
    for (n, c) in chunks.iter().enumerate() {
        process(&repo, c, (n as i64 + 1) * 100, true).await;
    }
    let want = snapshot(&repo).await;
    repo.close().await;

    let crashed = TestDb::new(b, "crash").await;
    let repo = crashed.open().await;
    process(&repo, chunks[0], 100, true).await;
    process(&repo, chunks[1], 200, false).await; // crash mid-way
    // Restart: resume from the cursor; the first chunk is replayed too (at-least-once input).
    let resume = repo
        .cursor("collector", "h1", "input")
        .await
        .unwrap()
        .unwrap()
        .position;
    assert_eq!(resume, 100, "the uncommitted batch did not move the cursor");
    process(&repo, chunks[0], 100, true).await; // duplicate delivery
    for (n, c) in chunks.iter().enumerate().skip((resume / 100) as usize) {
        process(&repo, c, (n as i64 + 1) * 100, true).await;
    }
    let got = snapshot(&repo).await;
    assert_eq!(
        got, want,
        "crash + replay must equal one clean pass, row for row"
    );
    let a = repo.attacker(ip(7)).await.unwrap().unwrap();
    assert_eq!(a.event_count, 300);
    assert_eq!(a.first_seen_ns, T0);
    repo.close().await;
    clean.cleanup().await;
    crashed.cleanup().await;
}

async fn attackers_merge_never_shrinks(b: Backend) {
    let db = TestDb::new(b, "attackers").await;
    let repo = db.open().await;
    let up = |first, last, events| AttackerUpdate {
        ip: ip(9),
        first_seen_ns: first,
        last_seen_ns: last,
        event_count: events,
        session_count: 1,
        credential_count: 2,
        flow_count: 3,
    };
    repo.upsert_attackers(&[up(T0 + 10, T0 + 20, 50)])
        .await
        .unwrap();
    // A worker restarting with empty memory reports smaller numbers: nothing shrinks.
    repo.upsert_attackers(&[up(T0 + 15, T0 + 16, 5)])
        .await
        .unwrap();
    repo.upsert_attackers(&[up(T0 + 5, T0 + 30, 60)])
        .await
        .unwrap();
    let a = repo.attacker(ip(9)).await.unwrap().unwrap();
    assert_eq!(
        (a.first_seen_ns, a.last_seen_ns, a.event_count),
        (T0 + 5, T0 + 30, 60)
    );
    assert_eq!(
        (a.session_count, a.credential_count, a.flow_count),
        (1, 2, 3)
    );

    // Touches form the traversal path in first_seen order.
    let t = |decky: &str, s| Touch {
        attacker_ip: ip(9),
        decky: decky.into(),
        service: "ssh".into(),
        first_seen_ns: T0 + s * SEC,
        last_seen_ns: T0 + s * SEC,
    };
    let mut tx = repo.begin().await.unwrap();
    tx.touch(&[t("c", 30), t("a", 10), t("b", 20), t("a", 40)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let path: Vec<String> = repo
        .touches(ip(9))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.decky)
        .collect();
    assert_eq!(path, ["a", "b", "c"]);
    assert_eq!(
        repo.touches(ip(9)).await.unwrap()[0].last_seen_ns,
        T0 + 40 * SEC
    );

    // Profiles: an older-evidence profile never replaces a newer one.
    let prof = |score, until| AttackerProfile {
        attacker_ip: ip(9),
        behaviour: "brute_force".into(),
        score,
        factors: vec![ScoreFactor {
            factor: "touched 3 deckies".into(),
            weight: 15,
        }],
        tools: vec!["hydra".into()],
        techniques: vec!["T1110".into()],
        evidence_until_ns: until,
        computed_at_ns: until + 1,
    };
    let mut tx = repo.begin().await.unwrap();
    tx.upsert_profiles(&[prof(70, T0 + 100)]).await.unwrap();
    tx.upsert_profiles(&[prof(10, T0 + 50)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        repo.profile(ip(9)).await.unwrap().unwrap(),
        prof(70, T0 + 100)
    );
    let mut tx = repo.begin().await.unwrap();
    tx.upsert_profiles(&[prof(90, T0 + 200)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(repo.profile(ip(9)).await.unwrap().unwrap().score, 90);
    repo.close().await;
    db.cleanup().await;
}

async fn intel_natural_keys_merge(b: Backend) {
    let db = TestDb::new(b, "intel").await;
    let repo = db.open().await;
    let cred = |principal: &[u8], secret: &[u8], attempts, s| CredentialAttempt {
        attacker_ip: ip(3),
        decky: "web-01".into(),
        service: "ssh".into(),
        principal: principal.to_vec(),
        secret_kind: "password".into(),
        secret: secret.to_vec(),
        attempts,
        first_seen_ns: T0 + s,
        last_seen_ns: T0 + s,
    };
    // Credentials are written only with the events that carry them (the collector's path): one
    // attempt per new event, so three attempts on the same natural key merge into one row.
    let evs: Vec<NewEvent> = (0..4).map(|i| event(i, ip(3))).collect();
    let mut tx = repo.begin().await.unwrap();
    tx.insert_events_with_credentials(
        &evs,
        &[
            (0, cred(b"root", b"123456", 1, 0)),
            (1, cred(b"root", b"123456", 1, 5)),
            (2, cred(b"root", b"123456", 1, 2)),
            (3, cred(b"ro\0ot\xff", b"pa'ss\"--", 1, 1)),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let creds = repo.credentials(Some(ip(3))).await.unwrap();
    assert_eq!(creds.len(), 2);
    let c = creds.iter().find(|c| c.principal == b"root").unwrap();
    assert_eq!(
        (c.attempts, c.first_seen_ns, c.last_seen_ns),
        (3, T0, T0 + 5)
    );
    assert_eq!(c.secret_printable, "123456");
    let odd = creds.iter().find(|c| c.principal != b"root").unwrap();
    assert_eq!(odd.principal, b"ro\0ot\xff");
    assert_eq!(odd.secret_printable, "pa'ss\"--");

    repo.close().await;
    db.cleanup().await;
}

async fn fleet_users_cursors_counters(b: Backend) {
    let db = TestDb::new(b, "fleet").await;
    let repo = db.open().await;
    let decky = |services: Vec<DeckyService>| Decky {
        name: "web-01".into(),
        ip: ip(50),
        hostname: "web-01.corp".into(),
        os_family: "linux".into(),
        archetype: "web-server".into(),
        persona: "{\"server\":\"nginx/1.18.0\"}".into(),
        status: "up".into(),
        services,
    };
    let svc = |s: &str, port| DeckyService {
        service: s.into(),
        port,
        settings: "{}".into(),
    };
    let mut tx = repo.begin().await.unwrap();
    tx.upsert_deckies(&[decky(vec![svc("ssh", 22), svc("http", 80)])])
        .await
        .unwrap();
    tx.upsert_deckies(&[decky(vec![svc("https", 443)])])
        .await
        .unwrap();
    assert!(tx.set_decky_status("web-01", "down").await.unwrap());
    let m = Mutation {
        ts_ns: T0,
        decky: "web-01".into(),
        kind: "rotate_banner".into(),
        detail: "{}".into(),
        status: "pending".into(),
    };
    tx.record_mutations(std::slice::from_ref(&m)).await.unwrap();
    tx.record_mutations(&[Mutation {
        status: "applied".into(),
        ..m.clone()
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let ds = repo.deckies().await.unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(
        ds[0].services,
        vec![svc("https", 443)],
        "re-recording replaces the service set"
    );
    assert_eq!(ds[0].status, "down");
    let ms = repo.mutations("web-01").await.unwrap();
    assert_eq!((ms.len(), ms[0].status.as_str()), (1, "applied"));

    assert!(
        repo.create_user(
            "admin",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            Role::Admin,
            true
        )
        .await
        .unwrap()
    );
    assert!(
        !repo
            .create_user("admin", "x", Role::Viewer, false)
            .await
            .unwrap(),
        "usernames are unique"
    );
    assert!(
        repo.set_password("admin", "$argon2id$new", false)
            .await
            .unwrap()
    );
    assert!(repo.set_role("admin", Role::Viewer).await.unwrap());
    let u = repo.user("admin").await.unwrap().unwrap();
    assert_eq!(
        (u.password_hash.as_str(), u.role, u.must_change_password),
        ("$argon2id$new", Role::Viewer, false)
    );
    assert!(repo.user("nobody").await.unwrap().is_none());

    // Cursors only move forward.
    let mut tx = repo.begin().await.unwrap();
    tx.set_cursor("correlator", "h1", "events", 50, "a")
        .await
        .unwrap();
    tx.set_cursor("correlator", "h1", "events", 20, "stale")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let c = repo
        .cursor("correlator", "h1", "events")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.position, c.state.as_str()), (50, "a"));

    repo.record_counters(
        "collector",
        "h1",
        &[("received", 5), ("queue_depth", 3)],
        CounterMode::Add,
    )
    .await
    .unwrap();
    repo.record_counters("collector", "h1", &[("received", 7)], CounterMode::Add)
        .await
        .unwrap();
    repo.record_counters("collector", "h1", &[("queue_depth", 1)], CounterMode::Set)
        .await
        .unwrap();
    let counters = repo.counters().await.unwrap();
    assert!(counters.contains(&("collector".into(), "h1".into(), "received".into(), 12)));
    assert!(counters.contains(&("collector".into(), "h1".into(), "queue_depth".into(), 1)));
    repo.close().await;
    db.cleanup().await;
}

async fn a_dead_local_holder_is_taken_over_at_once(b: Backend) {
    let db = TestDb::new(b, "lease_dead").await;
    let repo = db.open().await;
    let host = decnet_core::repo::hostname();
    let holder = |h: &str, pid| LeaseHolder {
        kind: "collector".into(),
        host: host.clone(),
        holder: h.into(),
        pid,
    };
    let ttl = Duration::from_secs(600);
    // A live process of this host (this test) holds it: refused, TTL or not.
    repo.acquire_lease(&holder("live", std::process::id()), ttl)
        .await
        .unwrap();
    let err = repo
        .acquire_lease(&holder("next", 1), ttl)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("live"), "{err}");
    repo.release_lease(&holder("live", std::process::id()))
        .await
        .unwrap();
    // A process that has exited (killed -9, say) cannot heartbeat: taken over without waiting.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    repo.acquire_lease(&holder("dead", dead), ttl)
        .await
        .unwrap();
    let lease = repo
        .acquire_lease(&holder("next", std::process::id()), ttl)
        .await
        .expect("the lease of a dead local process is free");
    assert_eq!(lease.holder, "next");
    assert!(!repo.heartbeat(&holder("dead", dead)).await.unwrap());
    repo.close().await;
    db.cleanup().await;
}

async fn leases_refuse_a_second_holder_and_expire(b: Backend) {
    let db = TestDb::new(b, "leases").await;
    let repo = db.open().await;
    let holder = |h: &str, pid| LeaseHolder {
        kind: "sniffer".into(),
        host: "h1".into(),
        holder: h.into(),
        pid,
    };
    let (first, second) = (holder("h1:100:1", 100), holder("h1:200:2", 200));
    let ttl = Duration::from_secs(2);
    repo.acquire_lease(&first, ttl).await.unwrap();
    repo.acquire_lease(&first, ttl)
        .await
        .expect("re-acquiring our own lease is fine");
    let err = repo.acquire_lease(&second, ttl).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RepoError::LeaseHeld(_)));
    assert!(
        msg.contains("h1:100:1") && msg.contains("pid 100") && msg.contains("sniffer"),
        "{msg}"
    );
    // Another kind on the same host, or the same kind on another host, is independent.
    repo.acquire_lease(
        &LeaseHolder {
            kind: "profiler".into(),
            ..second.clone()
        },
        ttl,
    )
    .await
    .unwrap();
    repo.acquire_lease(
        &LeaseHolder {
            host: "h2".into(),
            ..second.clone()
        },
        ttl,
    )
    .await
    .unwrap();

    assert!(repo.heartbeat(&first).await.unwrap());
    // The first holder dies: no heartbeats for longer than the ttl.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let lease = repo
        .acquire_lease(&second, ttl)
        .await
        .expect("an expired lease is taken over");
    assert_eq!((lease.holder.as_str(), lease.pid), ("h1:200:2", 200));
    assert!(
        !repo.heartbeat(&first).await.unwrap(),
        "the old holder learns it lost the lease"
    );
    assert!(!repo.release_lease(&first).await.unwrap());
    assert!(repo.release_lease(&second).await.unwrap());
    repo.acquire_lease(&first, ttl)
        .await
        .expect("a released lease is free");

    // The keeper heartbeats in the background, so the lease does not expire while held.
    let mut keeper = repo
        .hold_lease(holder("h1:300:3", 300), Duration::from_millis(900))
        .await
        .unwrap_err();
    assert!(matches!(keeper, RepoError::LeaseHeld(_)));
    repo.release_lease(&first).await.unwrap();
    let k = repo
        .hold_lease(holder("h1:300:3", 300), Duration::from_millis(900))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    keeper = repo
        .acquire_lease(&second, Duration::from_millis(900))
        .await
        .unwrap_err();
    assert!(keeper.to_string().contains("h1:300:3"));
    k.release().await.unwrap();
    assert!(
        repo.leases()
            .await
            .unwrap()
            .iter()
            .all(|l| !(l.kind == "sniffer" && l.host == "h1"))
    );
    repo.close().await;
    db.cleanup().await;
}

async fn concurrent_writers_lose_nothing(b: Backend) {
    let db = TestDb::new(b, "concurrent").await;
    // Several repositories (pools) on one database, as separate workers would have.
    let repos: Vec<Repository> = futures_join(db.config(), 4).await;
    let mut tasks = Vec::new();
    for (w, repo) in repos.iter().enumerate() {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..25u32 {
                // Overlapping facts: every worker also re-inserts the others' events.
                let evs: Vec<NewEvent> = (0..40).map(|i| event(round * 40 + i, ip(20))).collect();
                let mine = format!("w{w}");
                let counters = [("batches", 1), (mine.as_str(), 1)];
                repo.write(&[
                    Write::Events(&evs),
                    Write::Counters {
                        worker: "stress",
                        host: "h1",
                        values: &counters,
                        mode: CounterMode::Add,
                    },
                ])
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.expect("no worker failed (no lock errors)");
    }
    let repo = &repos[0];
    assert_eq!(repo.count_events().await.unwrap(), 1000);
    let counters = repo.counters().await.unwrap();
    let get = |n: &str| counters.iter().find(|c| c.2 == n).map(|c| c.3);
    assert_eq!(get("batches"), Some(100), "no lost updates");
    for w in 0..4 {
        assert_eq!(get(&format!("w{w}")), Some(25));
    }
    for r in &repos {
        r.close().await;
    }
    db.cleanup().await;
}

/// Opens `n` repositories on the same fresh database at the same time: exactly one migrates,
/// the others wait and find the schema in place.
async fn futures_join(cfg: DbConfig, n: usize) -> Vec<Repository> {
    let opens: Vec<_> = (0..n)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move { Repository::open(&cfg).await })
        })
        .collect();
    let mut out = Vec::new();
    for o in opens {
        out.push(o.await.unwrap().expect("concurrent open and migrate"));
    }
    out
}

async fn simultaneous_starts_migrate_once(b: Backend) {
    let db = TestDb::new(b, "migrate").await;
    let repos = futures_join(db.config(), 6).await;
    repos[0].upsert_flows(&[flow(1)]).await.unwrap();
    assert_eq!(repos[5].count_flows().await.unwrap(), 1);
    for r in &repos {
        r.close().await;
    }
    // Reopening skips the applied migrations and keeps the data.
    let again = db.open().await;
    assert_eq!(again.count_flows().await.unwrap(), 1);
    again.close().await;
    db.cleanup().await;
}

/// The flows' batched write path (`Repository::write`: on a SQLite file the bulk write path) and
/// a sqlx transaction (`WriteTx::upsert_flows`) store the same rows for the same exports: both
/// directions of a flow separately, merges that never shrink, stale exports ignored, a later
/// flow on the same 5-tuple (new first_seen) kept apart, duplicates in one batch merged.
async fn flows_write_paths_agree(b: Backend) {
    let out = flow(7);
    let mut back = out.clone();
    std::mem::swap(&mut back.src_ip, &mut back.dst_ip);
    std::mem::swap(&mut back.src_port, &mut back.dst_port);
    back.packets = 3;
    back.bytes = 400;
    back.tcp_flags = 0x12;
    let mut out_final = out.clone();
    out_final.packets = 10;
    out_final.bytes = 1_000;
    out_final.tcp_flags = 0x18;
    out_final.last_seen_ns += 2 * SEC;
    out_final.ended = true;
    let mut again = out.clone();
    again.first_seen_ns += 60 * SEC;
    again.last_seen_ns = again.first_seen_ns;
    let bulk: Vec<FlowRecord> = (100..2_100).map(flow).collect();
    let batches: Vec<Vec<FlowRecord>> = vec![
        vec![out.clone(), back.clone()],
        // The final export and a stale one in one batch, then a stale one alone.
        vec![out_final.clone(), out.clone(), again.clone()],
        vec![out.clone()],
        bulk,
    ];
    let mut stored = Vec::new();
    for via_write in [true, false] {
        let db = TestDb::new(b, "flowpaths").await;
        let repo = db.open().await;
        for batch in &batches {
            if via_write {
                repo.write(&[Write::Flows(batch)]).await.unwrap();
            } else {
                let mut tx = repo.begin().await.unwrap();
                tx.upsert_flows(batch).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
        let mut rows = repo.all_flows().await.unwrap();
        rows.sort_by_key(|f| (f.src_ip, f.src_port, f.first_seen_ns));
        repo.close().await;
        db.cleanup().await;
        stored.push(rows);
    }
    assert_eq!(stored[0], stored[1], "the two write paths disagree");
    let rows = &stored[0];
    assert_eq!(rows.len(), 2 + 1 + 2_000);
    let find = |f: &FlowRecord| {
        rows.iter()
            .find(|r| r.identity() == f.identity())
            .cloned()
            .unwrap()
    };
    let o = find(&out);
    assert_eq!(
        (o.packets, o.bytes, o.tcp_flags, o.last_seen_ns, o.ended),
        (10, 1_000, 0x1a, out_final.last_seen_ns, true)
    );
    let r = find(&back);
    assert_eq!((r.packets, r.bytes, r.tcp_flags), (3, 400, 0x12));
    assert_eq!(find(&again), again);
}

both_backends!(
    flows_merge_and_never_shrink,
    flows_write_paths_agree,
    events_are_idempotent_and_stored_exactly,
    crash_then_replay_equals_a_clean_pass,
    attackers_merge_never_shrinks,
    intel_natural_keys_merge,
    fleet_users_cursors_counters,
    leases_refuse_a_second_holder_and_expire,
    a_dead_local_holder_is_taken_over_at_once,
    concurrent_writers_lose_nothing,
    simultaneous_starts_migrate_once,
);

#[tokio::test]
async fn bad_configuration_errors_name_the_variable() {
    let e = DbConfig::new(Some("postgres"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("DECNET_DB_TYPE") && e.contains("sqlite") && e.contains("mysql"),
        "{e}"
    );
    let e = DbConfig::new(Some("mysql"), None).unwrap_err().to_string();
    assert!(e.contains("DECNET_DB_URL"), "{e}");
    let e = DbConfig::new(Some("mysql"), Some("sqlite://x.db"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("DECNET_DB_URL") && e.contains("does not match"),
        "{e}"
    );
    assert_eq!(DbConfig::new(None, None).unwrap().url, "sqlite://decnet.db");
    let e = Repository::connect("mysql://decnet:secret@127.0.0.1:1/nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("DECNET_DB_URL") && e.contains("***") && !e.contains("secret"),
        "{e}"
    );
    let e = Repository::connect("sqlite:///nonexistent-dir/x/y.db")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("DECNET_DB_URL"), "{e}");
    let mem = Repository::connect("sqlite::memory:").await.unwrap();
    mem.upsert_flows(&[flow(1)]).await.unwrap();
    assert_eq!(mem.count_flows().await.unwrap(), 1);
}

/// Four separate processes start at once on a fresh database (racing the migrations) and write
/// overlapping facts and increment-style counters: no errors ("database is locked", deadlocks),
/// no lost updates, no duplicates.
async fn four_processes_write_at_once(b: Backend) {
    let db = TestDb::new(b, "procs").await;
    let kind = match b {
        Backend::Sqlite => "sqlite",
        Backend::MySql => "mysql",
    };
    const ROUNDS: u32 = 40;
    let children: Vec<_> = (0..4)
        .map(|w| {
            std::process::Command::new(env!("CARGO_BIN_EXE_repo-stress"))
                .args([kind, &db.url, &w.to_string(), &ROUNDS.to_string()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn repo-stress")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let repo = db.open().await;
    assert_eq!(repo.count_events().await.unwrap(), u64::from(ROUNDS) * 20);
    let counters = repo.counters().await.unwrap();
    let get = |n: &str| counters.iter().find(|c| c.2 == n).map(|c| c.3);
    assert_eq!(
        get("rounds"),
        Some(4 * i64::from(ROUNDS)),
        "no lost updates across processes"
    );
    for w in 0..4 {
        assert_eq!(get(&format!("w{w}")), Some(i64::from(ROUNDS)));
    }
    let a = repo
        .attacker("198.51.100.7".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.event_count,
        u64::from(ROUNDS) * 20,
        "the largest count wins, whatever the order"
    );
    repo.close().await;
    db.cleanup().await;
}

both_backends!(four_processes_write_at_once);

/// Credential attempts counted from events: each NEW event carrying a credential adds one
/// attempt; resending the same events adds nothing; a repeated line inside one batch is one event.
async fn credential_attempts_follow_new_events(b: Backend) {
    let db = TestDb::new(b, "attempts").await;
    let repo = db.open().await;
    let cred = |s| CredentialAttempt {
        attacker_ip: ip(4),
        decky: "web-01".into(),
        service: "ssh".into(),
        principal: b"root".to_vec(),
        secret_kind: "password".into(),
        secret: b"toor".to_vec(),
        attempts: 1,
        first_seen_ns: T0 + s,
        last_seen_ns: T0 + s,
    };
    let evs: Vec<NewEvent> = (0..3).map(|i| event(i, ip(4))).collect();
    let mut batch = evs.clone();
    batch.push(evs[0].clone()); // the same line twice in one batch
    let creds: Vec<(usize, CredentialAttempt)> = (0..4).map(|i| (i, cred(i as i64))).collect();
    let n = repo
        .write(&[Write::EventsWithCredentials {
            events: &batch,
            credentials: &creds,
        }])
        .await
        .unwrap();
    assert_eq!(n, [3]);
    let c = &repo.credentials(Some(ip(4))).await.unwrap()[0];
    assert_eq!(
        (c.attempts, c.first_seen_ns, c.last_seen_ns),
        (3, T0, T0 + 2)
    );
    // Replay: nothing new, nothing counted.
    let n = repo
        .write(&[Write::EventsWithCredentials {
            events: &batch,
            credentials: &creds,
        }])
        .await
        .unwrap();
    assert_eq!(n, [0]);
    assert_eq!(repo.credentials(Some(ip(4))).await.unwrap()[0].attempts, 3);
    // One more real attempt.
    let more = [event(10, ip(4))];
    repo.write(&[Write::EventsWithCredentials {
        events: &more,
        credentials: &[(0, cred(10))],
    }])
    .await
    .unwrap();
    assert_eq!(repo.credentials(Some(ip(4))).await.unwrap()[0].attempts, 4);
    repo.close().await;
    db.cleanup().await;
}

both_backends!(credential_attempts_follow_new_events);

/// A write transaction whose caller gives up while it is starting (a `select!`, a timeout, a
/// worker ended by a second stop signal) leaves nothing behind: the next write goes through at
/// once. (sqlx 0.8 leaves a connection inside its `BEGIN IMMEDIATE` when the begin future is
/// dropped at the wrong moment; that connection then held SQLite's write lock until the process
/// exited and every later write — in this process and in every other — waited it out.)
async fn a_write_cancelled_while_it_begins_leaves_no_transaction_open(b: Backend) {
    let db = TestDb::new(b, "cancelbegin").await;
    let repo = db.open().await;
    // A write that goes through sqlx on both backends. (SQLite's bulk write path, which has
    // the collector's writes and the counters, cannot be given up half-way: its transaction
    // runs to the end once it has the write lock.)
    let write = [Write::Cursor {
        worker: "cancel",
        host: "h",
        name: "n",
        position: 1,
        state: "",
    }];
    let mut cancelled = 0;
    for i in 0..400u64 {
        // Give up after a varying number of scheduler turns: before, during and after the
        // BEGIN round trip (the database works on its own thread or connection meanwhile).
        let turns = i % 80;
        let give_up = async {
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
        };
        let raced = async {
            tokio::select! {
                biased;
                r = repo.write(&write) => r.map(|_| false),
                _ = give_up => Ok(true),
            }
        };
        let gave_up = tokio::time::timeout(Duration::from_secs(5), raced)
            .await
            .unwrap_or_else(stuck(i, "a write"))
            .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
        cancelled += usize::from(gave_up);
        tokio::time::timeout(Duration::from_secs(5), repo.write(&write))
            .await
            .unwrap_or_else(stuck(i, "the write after it"))
            .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
    }
    assert!(
        cancelled > 40,
        "only {cancelled} of 400 writes were cancelled"
    );
    repo.close().await;
    db.cleanup().await;
}

fn stuck<T>(i: u64, what: &'static str) -> impl FnOnce(tokio::time::error::Elapsed) -> T {
    move |_| panic!("iteration {i}: {what} waited 5 s (a transaction was left open)")
}

both_backends!(a_write_cancelled_while_it_begins_leaves_no_transaction_open);

/// A collector event (fields left to the repository: empty) of a real decoy line.
fn decoy_event(i: u32, attacker: IpAddr) -> NewEvent {
    let mut e = event(i, attacker);
    e.raw = format!(
        "<134>1 2026-05-02T06:00:{:02}.{i:06}Z web-01 ssh - auth_attempt [relay@55555 \
         principal=\"root\" secret_printable=\"toor\" src_ip=\"{attacker}\" \
         src_port=\"{}\"] try {i}",
        i % 60,
        40_000 + i
    )
    .into_bytes();
    e.fields = String::new();
    e
}

/// Events stored without their fields read them from the line (every read path), the same
/// JSON the collector's mapping gives; events with fields keep theirs; the text filter finds
/// both.
async fn derived_fields_are_read_from_the_line(b: Backend) {
    let db = TestDb::new(b, "derived").await;
    let repo = db.open().await;
    let a = ip(7);
    let mut with = event(1, a);
    with.fields = "{\"marker\":\"kept-as-given\"}".into();
    let batch = vec![decoy_event(0, a), with.clone(), decoy_event(2, a)];
    assert_eq!(repo.insert_events(&batch).await.unwrap(), 3);
    let want = |i: u32| {
        serde_json::json!({
            "principal": "root", "secret_printable": "toor", "src_ip": a.to_string(),
            "src_port": (40_000 + i).to_string(), "msg": format!("try {i}")
        })
    };
    let json = |s: &str| -> serde_json::Value { serde_json::from_str(s).expect("JSON") };
    let all = repo.events_after(0, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(json(&all[0].fields), want(0));
    assert_eq!(all[1].fields, with.fields);
    assert_eq!(json(&all[2].fields), want(2));
    assert_eq!(all[0].raw, batch[0].raw);
    let facts = repo.event_facts_after(0, 10).await.unwrap();
    assert_eq!(
        facts.iter().map(|f| json(&f.fields)).collect::<Vec<_>>(),
        all.iter().map(|e| json(&e.fields)).collect::<Vec<_>>()
    );
    let recent = repo.recent_events(a, 10).await.unwrap();
    assert_eq!(json(&recent[2].fields), want(2));
    // The text filter searches the stored JSON, or the line the fields come from.
    let found = |t: &str| {
        let f = decnet_core::repo::EventFilter {
            text: Some(t.into()),
            limit: 10,
            ..Default::default()
        };
        let repo = repo.clone();
        async move {
            let mut ids: Vec<i64> = repo
                .list_events(&f)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(found("try 2").await, [all[2].id]);
    assert_eq!(found("kept-as-given").await, [all[1].id]);
    assert_eq!(found("toor").await, [all[0].id, all[2].id]);
    // Dedup still holds.
    assert_eq!(repo.insert_events(&batch).await.unwrap(), 0);
    repo.close().await;
    db.cleanup().await;
}

both_backends!(derived_fields_are_read_from_the_line);

/// Migration 0008 turns the text times of a database written before it into integer
/// nanoseconds, keeps every row, id and field, and dedup keeps working across it.
async fn events_migrate_to_integer_times(b: Backend) {
    let db = TestDb::new(b, "mig8").await;
    let dialect = match b {
        Backend::Sqlite => decnet_core::repo::Dialect::Sqlite,
        Backend::MySql => decnet_core::repo::Dialect::MySql,
    };
    let old = event(3, ip(9));
    let ts_text = "2026-11-26T22:04:00.123456789Z";
    let ts_ns = decnet_core::time_fmt::parse_ts(ts_text).unwrap();
    let key = {
        let k = decnet_core::repo::dedup_key(&old.raw);
        i64::from_be_bytes(k[..8].try_into().unwrap())
    };
    {
        sqlx::any::install_default_drivers();
        let url = match b {
            Backend::Sqlite => format!("{}?mode=rwc", db.url),
            Backend::MySql => db.url.clone(),
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        decnet_core::repo::migrate::run_until(dialect, &pool, 7)
            .await
            .unwrap();
        for (id, ts) in [(41i64, ts_text), (42, "1970-01-01T00:00:01.000000007Z")] {
            sqlx::query(
                "INSERT INTO events (id, ts, decky, service, event_type, attacker_ip, \
                 attacker_port, fields, raw, dedup_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(ts)
            .bind(old.decky.clone())
            .bind(old.service.clone())
            .bind(old.event_type.clone())
            .bind(old.attacker_ip.map(|i| i.to_string()))
            .bind(old.attacker_port.map(i64::from))
            .bind(old.fields.clone())
            .bind(old.raw.clone())
            .bind(key.wrapping_add(id))
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let repo = db.open().await;
    let all = repo.events_after(0, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [41, 42]);
    assert_eq!(all[0].ts_ns, ts_ns);
    assert_eq!(all[1].ts_ns, 1_000_000_007);
    assert_eq!(all[0].fields, old.fields);
    assert_eq!(all[0].raw, old.raw);
    assert_eq!(all[0].attacker_ip, old.attacker_ip);
    // The same event (time and key) is still a duplicate; new ones get ids after the old.
    let mut again = old.clone();
    again.ts_ns = ts_ns;
    again.dedup_key = Some({
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&key.wrapping_add(41).to_be_bytes());
        k
    });
    assert_eq!(repo.insert_events(&[again]).await.unwrap(), 0);
    assert_eq!(repo.insert_events(&[event(4, ip(9))]).await.unwrap(), 1);
    assert!(repo.max_event_id().await.unwrap() > 42);
    let act = repo.decky_activity(0).await.unwrap();
    assert_eq!(act.iter().map(|a| a.events).sum::<u64>(), 3);
    // The attacker refresh meets the integer times with the attackers' text times: first and
    // last seen widen to the events' exact nanoseconds.
    let mid = ts_ns - 5 * SEC;
    repo.write(&[Write::Attackers(&[AttackerUpdate {
        ip: ip(9),
        first_seen_ns: mid,
        last_seen_ns: mid,
        event_count: 0,
        session_count: 0,
        credential_count: 0,
        flow_count: 0,
    }])])
    .await
    .unwrap();
    let mut tx = repo.begin().await.unwrap();
    tx.refresh_attacker_counts(&[ip(9)]).await.unwrap();
    tx.commit().await.unwrap();
    let at = repo.attacker(ip(9)).await.unwrap().unwrap();
    let newest = all[0].ts_ns.max(T0 + 4 * SEC);
    assert_eq!(
        (at.first_seen_ns, at.last_seen_ns, at.event_count),
        (1_000_000_007, newest, 3)
    );
    repo.close().await;
    db.cleanup().await;
}

both_backends!(events_migrate_to_integer_times);

fn generation(bridge: &str, cause: &str, request: Option<i64>) -> FleetGeneration {
    FleetGeneration {
        id: 0,
        bridge: bridge.into(),
        fleet: "{\"deckies\":[]}".into(),
        file_fleet: "{}".into(),
        restart: "[]".into(),
        cause: cause.into(),
        actor: "test".into(),
        request_id: request,
        status: "pending".into(),
        reason: String::new(),
        created_ns: 0,
        applied_ns: None,
    }
}

/// The mutator's tables: generations numbered in order per bridge, outcomes recorded once,
/// older pending ones superseded; requests claimed once, a dead claimer's request claimed again.
async fn fleet_generations_and_the_request_queue(b: Backend) {
    let db = TestDb::new(b, "mutq").await;
    let repo = db.open().await;
    assert_eq!(repo.latest_fleet_generation("mu0").await.unwrap(), None);
    let mut tx = repo.begin().await.unwrap();
    let g1 = tx
        .insert_fleet_generation(&generation("mu0", "deploy", None))
        .await
        .unwrap();
    assert!(tx.finish_fleet_generation(g1, "applied", "").await.unwrap());
    let other = tx
        .insert_fleet_generation(&generation("mu1", "deploy", None))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let r = repo
        .request_mutation("web-01", "mutate", "{}", "admin")
        .await
        .unwrap();
    let mut tx = repo.begin().await.unwrap();
    let g2 = tx
        .insert_fleet_generation(&generation("mu0", "operator", Some(r)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(g2 > g1 && other > g1);
    let latest = repo.latest_fleet_generation("mu0").await.unwrap().unwrap();
    assert_eq!((latest.id, latest.status.as_str()), (g2, "pending"));
    assert_eq!(
        repo.applied_fleet_generation("mu0")
            .await
            .unwrap()
            .unwrap()
            .id,
        g1
    );
    assert_eq!(
        repo.fleet_generation_of_request(r)
            .await
            .unwrap()
            .unwrap()
            .id,
        g2
    );
    // One generation per request.
    let mut tx = repo.begin().await.unwrap();
    assert!(
        tx.insert_fleet_generation(&generation("mu0", "operator", Some(r)))
            .await
            .is_err()
    );
    drop(tx);
    // An outcome is recorded once; a later deploy start supersedes what is still pending.
    let mut tx = repo.begin().await.unwrap();
    assert!(
        tx.finish_fleet_generation(g2, "failed", "port 22 in use")
            .await
            .unwrap()
    );
    assert!(!tx.finish_fleet_generation(g2, "applied", "").await.unwrap());
    let g3 = tx
        .insert_fleet_generation(&generation("mu0", "file", None))
        .await
        .unwrap();
    let g4 = tx
        .insert_fleet_generation(&generation("mu0", "deploy", None))
        .await
        .unwrap();
    assert_eq!(tx.supersede_fleet_generations("mu0", g4).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let all = repo.fleet_generations("mu0").await.unwrap();
    let st: Vec<(i64, &str, &str)> = all
        .iter()
        .map(|g| (g.id, g.status.as_str(), g.reason.as_str()))
        .collect();
    assert_eq!(st[1], (g2, "failed", "port 22 in use"));
    assert_eq!((st[2].0, st[2].1), (g3, "superseded"));
    assert_eq!((st[3].0, st[3].1), (g4, "pending"));
    assert!(all[1].applied_ns.is_some() && all[3].applied_ns.is_none());

    // The queue: oldest first, claimed once per holder; a dead holder's claim is taken over.
    let r2 = repo
        .request_mutation("web-01", "restart", "{}", "bob")
        .await
        .unwrap();
    let a = repo.claim_mutation_request("m:1").await.unwrap().unwrap();
    assert_eq!(
        (a.id, a.status.as_str(), a.claimed_by.as_str()),
        (r, "claimed", "m:1")
    );
    let n = repo.claim_mutation_request("m:1").await.unwrap().unwrap();
    assert_eq!(n.id, r2, "its own claim is not handed back");
    assert_eq!(repo.claim_mutation_request("m:1").await.unwrap(), None);
    // m:1 died; m:2 takes both over, oldest first.
    let again = repo.claim_mutation_request("m:2").await.unwrap().unwrap();
    assert_eq!((again.id, again.claimed_by.as_str()), (r, "m:2"));
    assert!(
        repo.finish_mutation_request(r, "applied", "")
            .await
            .unwrap()
    );
    let again = repo.claim_mutation_request("m:2").await.unwrap().unwrap();
    assert_eq!(again.id, r2);
    assert!(
        repo.finish_mutation_request(r2, "failed", "no decky")
            .await
            .unwrap()
    );
    assert_eq!(repo.claim_mutation_request("m:3").await.unwrap(), None);
    let listed = repo.mutation_requests("web-01", 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|q| (q.id, q.status.as_str(), q.reason.as_str()))
            .collect::<Vec<_>>(),
        [(r2, "failed", "no decky"), (r, "applied", "")]
    );
    assert_eq!(
        repo.mutation_request(r)
            .await
            .unwrap()
            .unwrap()
            .requested_by,
        "admin"
    );
    repo.close().await;
    db.cleanup().await;
}

both_backends!(fleet_generations_and_the_request_queue);
