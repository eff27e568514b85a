//! The API's hot listings (`attackers`, `events`) as the repository serves them, on SQLite and
//! on MariaDB: order, keyset cursors and filters against the same order computed here from the
//! inserted rows; rows committed after the read connections opened; corrupt stored values
//! refused by name; and (SQLite, asked of SQLite itself through rusqlite) the covering indexes
//! of migration 0009 serving the default sorts.
mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{Backend, TestDb};
use decnet_core::{
    model::{AttackerProfile, AttackerUpdate, NewEvent},
    repo::{AttackerCursor, AttackerFilter, AttackerSort, EventFilter, RepoError},
};

const T0: i64 = 1_795_730_640_123_456_789;
const SEC: i64 = 1_000_000_000;

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc633_6400 + n))
}

fn update(n: u32) -> AttackerUpdate {
    AttackerUpdate {
        ip: ip(n),
        first_seen_ns: T0 - i64::from(n) * SEC,
        // Ties on purpose: every third attacker shares its last_seen with the next one.
        last_seen_ns: T0 + i64::from(n / 3 * 3) * SEC,
        event_count: u64::from(n % 7),
        session_count: u64::from(n % 5),
        credential_count: u64::from(n % 3),
        flow_count: u64::from(n),
    }
}

async fn attacker_listings_follow_their_keys(b: Backend) {
    let db = TestDb::new(b, "listing_attackers").await;
    let repo = db.open().await;
    // Opened (and read from) before the rows exist: later commits must still be seen.
    assert!(
        repo.list_attackers(&AttackerFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    let n = 40u32;
    let ups: Vec<_> = (0..n).map(update).collect();
    repo.upsert_attackers(&ups).await.unwrap();
    let mut tx = repo.begin().await.unwrap();
    tx.upsert_profiles(&[AttackerProfile {
        attacker_ip: ip(4),
        behaviour: "brute_force \"q\" </b>".into(),
        score: 77,
        factors: vec![],
        tools: vec![],
        techniques: vec![],
        evidence_until_ns: T0,
        computed_at_ns: T0,
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // The expected orders, from the inserted values (ids are insertion order, 1-based).
    let mut by_last: Vec<(i64, i64, u32)> = (0..n)
        .map(|i| (update(i).last_seen_ns, i64::from(i) + 1, i))
        .collect();
    by_last.sort_by(|a, b| b.cmp(a));
    let mut by_events: Vec<(u64, i64, u32)> = (0..n)
        .map(|i| (update(i).event_count, i64::from(i) + 1, i))
        .collect();
    by_events.sort_by(|a, b| b.cmp(a));

    for (sort, expected) in [
        (
            AttackerSort::LastSeen,
            by_last.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        (
            AttackerSort::Events,
            by_events.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
    ] {
        // Page through 7 at a time with the cursors the pages give.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = repo
                .list_attackers(&AttackerFilter {
                    sort,
                    after: after.clone(),
                    limit: 7,
                    ..Default::default()
                })
                .await
                .unwrap();
            for r in &page {
                let i = seen.len();
                let want = update(expected[i]);
                let a = &r.attacker;
                assert_eq!(a.ip, want.ip, "{sort:?} row {i}");
                assert_eq!(
                    (a.first_seen_ns, a.last_seen_ns, a.event_count),
                    (want.first_seen_ns, want.last_seen_ns, want.event_count)
                );
                assert_eq!(
                    (a.session_count, a.credential_count, a.flow_count),
                    (want.session_count, want.credential_count, want.flow_count)
                );
                if a.ip == ip(4) {
                    assert_eq!(r.score, Some(77));
                    assert_eq!(r.behaviour.as_deref(), Some("brute_force \"q\" </b>"));
                } else {
                    assert_eq!((r.score, r.behaviour.as_deref()), (None, None));
                }
                seen.push(a.ip);
            }
            if page.len() < 7 {
                break;
            }
            after = page.last().map(|r| r.cursor(sort));
        }
        assert_eq!(
            seen,
            expected.iter().map(|&i| ip(i)).collect::<Vec<_>>(),
            "{sort:?}"
        );
    }

    // The borrowed rows are the same rows; the last one's cursor continues the listing.
    let f = AttackerFilter {
        limit: 5,
        ..Default::default()
    };
    let (owned, cursor) = repo
        .each_attacker(&f, (Vec::new(), None), |(rows, cur), a| {
            rows.push(a.to_row().unwrap());
            *cur = Some(a.cursor(AttackerSort::LastSeen).unwrap());
        })
        .await
        .unwrap();
    let listed = repo.list_attackers(&f).await.unwrap();
    assert_eq!(
        owned.iter().map(|r| r.attacker.clone()).collect::<Vec<_>>(),
        listed
            .iter()
            .map(|r| r.attacker.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(cursor, Some(listed[4].cursor(AttackerSort::LastSeen)));
    assert!(matches!(cursor, Some(AttackerCursor::LastSeen { .. })));

    // Filters: prefix and minimum events, against the same filter applied here.
    let rows = repo
        .list_attackers(&AttackerFilter {
            ip_prefix: Some("198.51.100.1".into()),
            min_events: Some(3),
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got: Vec<IpAddr> = rows.iter().map(|r| r.attacker.ip).collect();
    got.sort();
    let mut want: Vec<IpAddr> = (0..n)
        .filter(|&i| ip(i).to_string().starts_with("198.51.100.1") && i % 7 >= 3)
        .map(ip)
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // A row written after the listings ran is in the next one.
    repo.upsert_attackers(&[AttackerUpdate {
        last_seen_ns: T0 + 1000 * SEC,
        ..update(1000)
    }])
    .await
    .unwrap();
    let first = repo
        .list_attackers(&AttackerFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first[0].attacker.ip, ip(1000));
    repo.close().await;
    db.cleanup().await;
}

fn event(i: u32) -> NewEvent {
    NewEvent {
        ts_ns: T0 + i64::from(i) * SEC,
        decky: format!("decky-{}", i % 3),
        service: "ssh".into(),
        event_type: "auth_attempt".into(),
        attacker_ip: (!i.is_multiple_of(4)).then(|| ip(i % 5)),
        attacker_port: i.is_multiple_of(2).then_some(40_000 + i as u16),
        // Every fifth stored without fields (derived from the line when read, as the
        // collector's are).
        fields: if i.is_multiple_of(5) {
            String::new()
        } else {
            format!("{{\"n\":{i},\"q\":\"\\\"\"}}")
        },
        raw: if i.is_multiple_of(5) {
            format!("<134>1 2026-05-02T06:00:{i:02}Z web-01 ssh - auth_attempt [relay@55555 principal=\"r{i}\"] m").into_bytes()
        } else {
            format!("<134>1 line {i} \u{0}\u{ff}").into_bytes()
        },
        dedup_key: None,
    }
}

async fn event_listings_lend_the_stored_rows(b: Backend) {
    let db = TestDb::new(b, "listing_events").await;
    let repo = db.open().await;
    let input: Vec<NewEvent> = (0..30).map(event).collect();
    repo.insert_events(&input).await.unwrap();
    for with_raw in [false, true] {
        let f = EventFilter {
            decky: Some("decky-1".into()),
            limit: 4,
            ..Default::default()
        };
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let page = repo
                .each_event(
                    &EventFilter {
                        before_id: before,
                        ..f.clone()
                    },
                    with_raw,
                    Vec::new(),
                    |rows, e| {
                        rows.push((
                            e.id,
                            e.ts_ns,
                            e.decky.to_owned(),
                            e.attacker_ip.map(str::to_owned),
                            e.attacker_port,
                            e.fields.to_string(),
                            e.raw.map(<[u8]>::to_vec),
                        ))
                    },
                )
                .await
                .unwrap();
            // Each page is the owned listing's page, value for value.
            let owned = repo
                .list_events(&EventFilter {
                    before_id: before,
                    ..f.clone()
                })
                .await
                .unwrap();
            assert_eq!(page.len(), owned.len());
            for (p, o) in page.iter().zip(&owned) {
                assert_eq!(p.0, o.id);
                assert_eq!(p.1, o.ts_ns);
                assert_eq!(p.2, o.decky);
                assert_eq!(p.3, o.attacker_ip.map(|i| i.to_string()));
                assert_eq!(p.4, o.attacker_port);
                assert_eq!(p.5, o.fields);
                assert_eq!(p.6, with_raw.then(|| o.raw.clone()));
            }
            all.extend(page.iter().map(|p| p.0));
            if page.len() < 4 {
                break;
            }
            before = page.last().map(|p| p.0);
        }
        // Newest first, exactly the decky-1 events that were inserted.
        let want: Vec<u32> = (0..30).rev().filter(|i| i % 3 == 1).collect();
        assert_eq!(all.len(), want.len());
        assert!(all.windows(2).all(|w| w[0] > w[1]));
    }
    repo.close().await;
    db.cleanup().await;
}

both_backends!(
    attacker_listings_follow_their_keys,
    event_listings_lend_the_stored_rows,
);

/// SQLite: a stored value another writer corrupted is refused with its table, row and column
/// (the listing does not make up a value); the default sorts read the covering indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_listings_refuse_corrupt_rows_and_use_covering_indexes() {
    let db = TestDb::new(Backend::Sqlite, "listing_sqlite").await;
    let repo = db.open().await;
    repo.upsert_attackers(&(0..3).map(update).collect::<Vec<_>>())
        .await
        .unwrap();
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let c = rusqlite::Connection::open(&path).unwrap();
    for (sort, index) in [
        ("last_seen", "attackers_last_seen_listing"),
        ("event_count", "attackers_events_listing"),
    ] {
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT a.id, a.ip, a.first_seen, a.last_seen, a.event_count, \
                 a.session_count, a.credential_count, a.flow_count, p.score, p.behaviour FROM \
                 attackers a LEFT JOIN attacker_profiles p ON p.attacker_ip = a.ip \
                 ORDER BY a.{sort} DESC, a.id DESC LIMIT 50"
            ))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains(&format!("COVERING INDEX {index}"))),
            "{sort}: {plan:?}"
        );
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
    }
    c.execute(
        "UPDATE attackers SET ip = 'not-an-ip' WHERE ip = ?1",
        [ip(1).to_string()],
    )
    .unwrap();
    drop(c);
    let e = repo
        .list_attackers(&AttackerFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    match e {
        RepoError::Corrupt { table, column, .. } => {
            assert_eq!((table, column), ("attackers", "ip"))
        }
        other => panic!("expected a corrupt-row error, got {other}"),
    }
    repo.close().await;
    db.cleanup().await;
}
