//! The correlator's and profiler's repository functions (`repo::IntelBatch` and the reads of the
//! tables it writes, migration 0004_intel), every test on SQLite and on MariaDB (see `common`).
mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{Backend, TestDb};
use decnet_core::{
    model::*,
    repo::{IntelBatch, Repository, ScanReplace, SessionReplace},
};
use sha2::{Digest as _, Sha256};

const T0: i64 = 1_795_730_640_000_000_000;
const SEC: i64 = 1_000_000_000;

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
}

fn session(a: IpAddr, start: i64, end: i64, n: u64, cmds: &[&str], closed: bool) -> Session {
    Session {
        attacker_ip: a,
        decky: "web-01".into(),
        service: "ssh".into(),
        started_ns: T0 + start * SEC,
        ended_ns: T0 + end * SEC,
        event_count: n,
        bytes: 0,
        commands: cmds.iter().map(|c| c.to_string()).collect(),
        closed,
    }
}

fn replace(a: IpAddr, from: i64, sessions: Vec<Session>) -> SessionReplace {
    SessionReplace {
        attacker_ip: a,
        decky: "web-01".into(),
        service: "ssh".into(),
        from_ns: T0 + from * SEC,
        sessions,
    }
}

async fn intel(repo: &Repository, b: IntelBatch) {
    repo.apply_intel(&b).await.expect("apply_intel");
}

/// Sessions of a key are replaced from a point on: rows the recomputation no longer has go,
/// earlier rows stay, and ids of rows that stay are kept.
async fn sessions_replace_from_a_point(b: Backend) {
    let db = TestDb::new(b, "sess_replace").await;
    let repo = db.open().await;
    let a = ip(1);
    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(
                a,
                0,
                vec![
                    session(a, 0, 10, 3, &["id"], true),
                    session(a, 400, 410, 2, &[], true),
                    session(a, 800, 800, 1, &[], false),
                ],
            )],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.sessions(a).await.unwrap().len(), 3);
    // A late event bridged the last two: recomputed from 400 on, one session remains there.
    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(
                a,
                400,
                vec![session(a, 400, 800, 4, &["uname -a", "w"], false)],
            )],
            ..IntelBatch::default()
        },
    )
    .await;
    let got = repo.sessions(a).await.unwrap();
    assert_eq!(
        got,
        vec![
            session(a, 0, 10, 3, &["id"], true),
            session(a, 400, 800, 4, &["uname -a", "w"], false),
        ]
    );
    // The same batch again changes nothing.
    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(
                a,
                400,
                vec![session(a, 400, 800, 4, &["uname -a", "w"], false)],
            )],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.sessions(a).await.unwrap(), got);
    // Another attacker's and another key's sessions are untouched by a replace.
    let other = ip(2);
    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(other, 0, vec![session(other, 5, 6, 1, &[], false)])],
            ..IntelBatch::default()
        },
    )
    .await;
    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(a, 1000, vec![])],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.sessions(a).await.unwrap(), got);
    assert_eq!(repo.sessions(other).await.unwrap().len(), 1);
    // Hostile command text is bounded and stored exactly otherwise.
    let nasty = "'; DROP TABLE sessions; -- \u{0} ]\"".to_string();
    let long = "x".repeat(5000);
    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(
                other,
                0,
                vec![session(other, 5, 6, 2, &[&nasty, &long], false)],
            )],
            ..IntelBatch::default()
        },
    )
    .await;
    let s = repo.sessions(other).await.unwrap();
    assert_eq!(s[0].commands[0], nasty);
    assert!(s[0].commands[1].len() <= decnet_core::repo::limits::SHORT_TEXT);
    repo.close().await;
    db.cleanup().await;
}

fn scan(a: IpAddr, kind: &str, start: i64, probes: u64, detected: bool) -> Scan {
    Scan {
        attacker_ip: a,
        kind: kind.into(),
        started_ns: T0 + start * SEC,
        ended_ns: T0 + (start + 10) * SEC,
        probes,
        port_count: probes,
        ports: (1..=probes as u16).collect(),
        host_count: 1,
        hosts: vec!["web-01".into()],
        rate_per_min: probes * 6,
        detected,
    }
}

/// Scans, traversals, reuse, pivots and the evidence queue: written, read back exactly, replaced
/// or merged as documented.
async fn derived_tables_round_trip(b: Backend) {
    let db = TestDb::new(b, "derived").await;
    let repo = db.open().await;
    let a = ip(3);
    let syn = |scans| ScanReplace {
        attacker_ip: a,
        kind: "tcp_syn".into(),
        from_ns: T0,
        scans,
    };
    intel(
        &repo,
        IntelBatch {
            scans: vec![syn(vec![scan(a, "tcp_syn", 0, 3, false)])],
            ..IntelBatch::default()
        },
    )
    .await;
    assert!(repo.scan_episodes(a, true).await.unwrap().is_empty());
    intel(
        &repo,
        IntelBatch {
            scans: vec![syn(vec![
                scan(a, "tcp_syn", 0, 30, true),
                scan(a, "tcp_syn", 600, 2, false),
            ])],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(
        repo.scan_episodes(a, true).await.unwrap(),
        vec![scan(a, "tcp_syn", 0, 30, true)]
    );
    assert_eq!(repo.scan_episodes(a, false).await.unwrap().len(), 2);

    let tr = Traversal {
        attacker_ip: a,
        hops: vec![
            Hop {
                decky: "web-01".into(),
                first_seen_ns: T0,
            },
            Hop {
                decky: "db-01".into(),
                first_seen_ns: T0 + SEC,
            },
        ],
        first_seen_ns: T0,
        last_seen_ns: T0 + 9 * SEC,
    };
    let reuse = CredentialReuse {
        secret_hash: Sha256::digest(b"hunter2").into(),
        secret_kind: "password".into(),
        secret_printable: "hunter2".into(),
        target_count: 2,
        targets: vec!["db-01/ssh".into(), "web-01/ssh".into()],
        attacker_count: 1,
        attackers: vec![a.to_string()],
        credential_rows: 2,
        first_seen_ns: T0,
        last_seen_ns: T0 + SEC,
    };
    let pivot = |first: i64, last: i64| Pivot {
        src_decky: "web-01".into(),
        dst_decky: "db-01".into(),
        dst_port: 3306,
        proto: 6,
        first_seen_ns: T0 + first * SEC,
        last_seen_ns: T0 + last * SEC,
    };
    intel(
        &repo,
        IntelBatch {
            traversals: vec![tr.clone()],
            reuse: vec![reuse.clone()],
            pivots: vec![pivot(10, 20)],
            evidence: vec![a, ip(4)],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.traversal(a).await.unwrap(), Some(tr.clone()));
    assert_eq!(repo.traversals().await.unwrap(), vec![tr.clone()]);
    assert_eq!(repo.credential_reuse().await.unwrap(), vec![reuse.clone()]);
    // Pivots merge: first_seen min, last_seen max.
    intel(
        &repo,
        IntelBatch {
            pivots: vec![pivot(5, 15), pivot(12, 30)],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.pivots().await.unwrap(), vec![pivot(5, 30)]);
    // A traversal grows: replaced whole.
    let mut longer = tr.clone();
    longer.hops.push(Hop {
        decky: "files".into(),
        first_seen_ns: T0 + 5 * SEC,
    });
    intel(
        &repo,
        IntelBatch {
            traversals: vec![longer.clone()],
            evidence: vec![ip(4)],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.traversal(a).await.unwrap(), Some(longer));

    // The evidence queue: seq 1 = {a, ip4}, then ip4 moved to seq 2; keyset pagination.
    let q = repo.evidence_after(0, "", 10).await.unwrap();
    assert_eq!(q, vec![(1, a), (2, ip(4))]);
    assert_eq!(
        repo.evidence_after(1, &a.to_string(), 10).await.unwrap(),
        vec![(2, ip(4))]
    );
    assert_eq!(repo.evidence_after(0, "", 1).await.unwrap(), vec![(1, a)]);
    assert!(
        repo.evidence_after(2, &ip(4).to_string(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    repo.close().await;
    db.cleanup().await;
}

fn ev(i: i64, a: IpAddr, decky: &str, service: &str, ty: &str, fields: &str) -> NewEvent {
    NewEvent {
        ts_ns: T0 + i * SEC,
        decky: decky.into(),
        service: service.into(),
        event_type: ty.into(),
        attacker_ip: Some(a),
        attacker_port: Some(40000),
        fields: fields.into(),
        raw: format!("{i} {a} {decky} {service} {ty}").into_bytes(),
        dedup_key: None,
    }
}

fn flow(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, t: i64, bytes: u64) -> FlowRecord {
    FlowRecord {
        bridge: "decnet0".into(),
        port: "veth0".into(),
        src_ip: src,
        dst_ip: dst,
        src_port: sport,
        dst_port: dport,
        proto: 6,
        vlan: 0,
        packets: 5,
        bytes,
        tcp_flags: 0x1b,
        first_seen_ns: T0 + t * SEC,
        last_seen_ns: T0 + (t + 1) * SEC,
        ended: true,
    }
}

/// The narrow reads: event facts by id and by key, session/scan starts, flows by id and by
/// source, flow bytes both ways, the fleet directory, credentials by secret, reuse of an attacker.
async fn reads_for_the_workers(b: Backend) {
    let db = TestDb::new(b, "reads").await;
    let repo = db.open().await;
    let (a, other) = (ip(5), ip(6));
    let decky_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    repo.insert_events(&[
        ev(3, a, "web-01", "ssh", "connect", "{}"),
        ev(
            1,
            a,
            "web-01",
            "ssh",
            "auth_attempt",
            r#"{"secret_printable":"pw"}"#,
        ),
        ev(2, a, "web-01", "http", "request", "{}"),
        ev(4, other, "web-01", "ssh", "connect", "{}"),
    ])
    .await
    .unwrap();
    let facts = repo.event_facts_after(0, 10).await.unwrap();
    assert_eq!(facts.len(), 4);
    assert_eq!(facts[1].event_type, "auth_attempt");
    assert_eq!(facts[1].fields, r#"{"secret_printable":"pw"}"#);
    assert_eq!(
        repo.event_facts_after(facts[1].id, 1).await.unwrap()[0].id,
        facts[2].id
    );
    let key = repo
        .key_events(a, "web-01", "ssh", T0 + 2 * SEC, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        key.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
        vec![T0 + 3 * SEC]
    );
    let key = repo
        .key_events(a, "web-01", "ssh", 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        key.iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["auth_attempt", "connect"],
        "time order"
    );
    let recent = repo.recent_events(a, 2).await.unwrap();
    assert_eq!(
        recent.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
        vec![T0 + 2 * SEC, T0 + 3 * SEC]
    );
    // The profiler's batch read: every event of each attacker, in (attacker, time, id) order.
    let all = repo.events_of(&[other, a, ip(99)]).await.unwrap();
    let of = |who: IpAddr| {
        all.iter()
            .filter(|e| e.attacker_ip == Some(who))
            .map(|e| e.ts_ns)
            .collect::<Vec<_>>()
    };
    assert_eq!(all.len(), 4);
    assert_eq!(of(a), vec![T0 + SEC, T0 + 2 * SEC, T0 + 3 * SEC]);
    assert_eq!(of(other), vec![T0 + 4 * SEC]);

    intel(
        &repo,
        IntelBatch {
            sessions: vec![replace(
                a,
                0,
                vec![
                    session(a, 0, 10, 3, &[], true),
                    session(a, 400, 410, 2, &[], false),
                ],
            )],
            scans: vec![ScanReplace {
                attacker_ip: a,
                kind: "udp".into(),
                from_ns: T0,
                scans: vec![scan(a, "udp", 100, 5, false)],
            }],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(
        repo.session_start_before(a, "web-01", "ssh", T0 + 399 * SEC)
            .await
            .unwrap(),
        Some(T0)
    );
    assert_eq!(
        repo.session_start_before(a, "web-01", "ssh", T0 + 400 * SEC)
            .await
            .unwrap(),
        Some(T0 + 400 * SEC)
    );
    assert_eq!(
        repo.session_start_before(a, "web-01", "ssh", T0 - 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        repo.scan_start_before(a, "udp", T0 + 200 * SEC)
            .await
            .unwrap(),
        Some(T0 + 100 * SEC)
    );
    assert_eq!(
        repo.scan_start_before(a, "tcp_syn", T0 + 200 * SEC)
            .await
            .unwrap(),
        None
    );

    repo.upsert_flows(&[
        flow(a, decky_ip, 40000, 22, 1, 1000),
        flow(decky_ip, a, 22, 40000, 1, 3000),
        flow(a, decky_ip, 40001, 80, 2, 777),  // other port
        flow(a, decky_ip, 40002, 22, 900, 50), // outside the window
        flow(other, decky_ip, 40000, 22, 1, 5),
    ])
    .await
    .unwrap();
    let flows = repo.flows_after(0, 100).await.unwrap();
    assert_eq!(flows.len(), 5);
    assert_eq!(repo.flows_after(flows[3].0, 100).await.unwrap().len(), 1);
    let from_a = repo.flows_from(a, T0 + 2 * SEC, i64::MAX).await.unwrap();
    assert_eq!(
        from_a.iter().map(|f| f.dst_port).collect::<Vec<_>>(),
        vec![80, 22]
    );
    assert_eq!(
        repo.flow_bytes(a, decky_ip, 22, T0, T0 + 10 * SEC, i64::MAX)
            .await
            .unwrap(),
        4000
    );

    repo.write(&[decnet_core::repo::Write::Deckies(&[Decky {
        name: "web-01".into(),
        ip: decky_ip,
        hostname: "web-01".into(),
        os_family: "linux".into(),
        archetype: "web".into(),
        persona: "{}".into(),
        status: "up".into(),
        services: vec![DeckyService {
            service: "ssh".into(),
            port: 2222,
            settings: "{}".into(),
        }],
    }])])
    .await
    .unwrap();
    let (by_ip, ports) = repo.decky_directory().await.unwrap();
    assert_eq!(by_ip.get(&decky_ip).map(String::as_str), Some("web-01"));
    assert_eq!(
        ports.get(&("web-01".to_string(), "ssh".to_string())),
        Some(&2222)
    );

    let cred = |who: IpAddr, decky: &str, secret: &[u8]| CredentialAttempt {
        attacker_ip: who,
        decky: decky.into(),
        service: "ssh".into(),
        principal: b"root".to_vec(),
        secret_kind: "password".into(),
        secret: secret.to_vec(),
        attempts: 1,
        first_seen_ns: T0,
        last_seen_ns: T0,
    };
    // Credentials are written with the events that carry them (the collector's path).
    let carriers: Vec<NewEvent> = (0..3)
        .map(|i| ev(100 + i, a, "web-01", "ssh", "auth_attempt", "{}"))
        .collect();
    repo.write(&[decnet_core::repo::Write::EventsWithCredentials {
        events: &carriers,
        credentials: &[
            (0, cred(a, "web-01", b"pw")),
            (1, cred(other, "db-01", b"pw")),
            (2, cred(a, "web-01", b"other")),
        ],
    }])
    .await
    .unwrap();
    let pw: [u8; 32] = Sha256::digest(b"pw").into();
    let by = repo.credentials_by_secret(&[pw], i64::MAX).await.unwrap();
    assert_eq!(
        by.iter()
            .map(|c| (c.attacker_ip, c.decky.as_str()))
            .collect::<Vec<_>>(),
        vec![(a, "web-01"), (other, "db-01")]
    );
    assert_eq!(repo.credentials_after(by[1].id, 10).await.unwrap().len(), 1);
    let r = CredentialReuse {
        secret_hash: pw,
        secret_kind: "password".into(),
        secret_printable: "pw".into(),
        target_count: 2,
        targets: vec!["db-01/ssh".into(), "web-01/ssh".into()],
        attacker_count: 2,
        attackers: vec![a.to_string(), other.to_string()],
        credential_rows: 2,
        first_seen_ns: T0,
        last_seen_ns: T0,
    };
    intel(
        &repo,
        IntelBatch {
            reuse: vec![r.clone()],
            ..IntelBatch::default()
        },
    )
    .await;
    assert_eq!(repo.reuse_of(a).await.unwrap(), vec![r.clone()]);
    assert_eq!(repo.reuse_of(other).await.unwrap(), vec![r.clone()]);
    assert!(repo.reuse_of(ip(99)).await.unwrap().is_empty());

    // What the correlator's secret state is loaded and kept from.
    let other_pw: [u8; 32] = Sha256::digest(b"other").into();
    assert_eq!(
        repo.reuse_records(&[pw, other_pw]).await.unwrap(),
        vec![r.clone()]
    );
    assert_eq!(repo.reuse_targets_of(a).await.unwrap(), 2);
    assert_eq!(repo.reuse_targets_of(ip(99)).await.unwrap(), 0);
    assert_eq!(repo.credential_attempts(a).await.unwrap(), 2);
    // The profiler's batch reads agree with the per-attacker ones.
    let who = [a, other, ip(99)];
    let targets = repo.reuse_targets_of_many(&who).await.unwrap();
    let attempts = repo.credential_attempts_of(&who).await.unwrap();
    let commands = repo.session_commands_of(&who).await.unwrap();
    let scans = repo.detected_scans_of(&who).await.unwrap();
    for w in who {
        assert_eq!(
            targets.get(&w).copied().unwrap_or(0),
            repo.reuse_targets_of(w).await.unwrap()
        );
        assert_eq!(
            repo.reuse_targets_by_records(w).await.unwrap(),
            repo.reuse_targets_of(w).await.unwrap()
        );
        assert_eq!(
            attempts.get(&w).copied().unwrap_or(0),
            repo.credential_attempts(w).await.unwrap()
        );
        assert_eq!(
            commands.get(&w).copied().unwrap_or(0),
            repo.session_commands(w).await.unwrap()
        );
        let mine: Vec<Scan> = scans
            .iter()
            .filter(|s| s.attacker_ip == w)
            .cloned()
            .collect();
        assert_eq!(mine, repo.scan_episodes(w, true).await.unwrap());
    }
    assert_eq!((targets.get(&a), targets.get(&ip(99))), (Some(&2), None));
    assert_eq!(attempts.get(&a), Some(&2));
    let mut targets = repo
        .secret_targets(&[pw, other_pw], i64::MAX)
        .await
        .unwrap();
    targets.sort();
    let t = |h: [u8; 32], d: &str| (h, d.to_string(), "ssh".to_string());
    let mut want = vec![t(pw, "db-01"), t(pw, "web-01"), t(other_pw, "web-01")];
    want.sort();
    assert_eq!(targets, want);
    let asked = [
        (pw, a),
        (pw, other),
        (pw, ip(99)),
        (other_pw, a),
        (other_pw, other),
    ];
    let known = repo.known_secret_attackers(&asked, i64::MAX).await.unwrap();
    let mut known: Vec<_> = known.into_iter().collect();
    known.sort();
    let mut want = vec![(pw, a), (pw, other), (other_pw, a)];
    want.sort();
    assert_eq!(known, want);
    // Only rows up to an id count: after the first row, only (pw, a) was known.
    let known = repo.known_secret_attackers(&asked, by[0].id).await.unwrap();
    assert_eq!(known.into_iter().collect::<Vec<_>>(), vec![(pw, a)]);
    assert_eq!(
        repo.secret_attackers(&pw, 10, by[0].id).await.unwrap(),
        vec![a]
    );
    let agg = repo.reuse_of_secrets(&[pw], i64::MAX).await.unwrap();
    assert_eq!(agg, vec![r]);
    assert!(
        repo.reuse_of_secrets(&[pw], by[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    repo.close().await;
    db.cleanup().await;
}

both_backends!(
    sessions_replace_from_a_point,
    derived_tables_round_trip,
    reads_for_the_workers,
);
