//! `fingerprints` / `decky_fingerprints` (issue 14) on SQLite and MariaDB: the sniffer's upsert is
//! idempotent, merges as documented, bounds hostile values, and keeps deckies apart.
mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{Backend, TestDb};
use decnet_core::model::{DeckyFingerprint, Fingerprint};

const T0: i64 = 1_795_730_640_123_456_789;
const SEC: i64 = 1_000_000_000;

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
}

fn fp(kind: &str, value: &str, at: i64, count: u64, partial: bool) -> Fingerprint {
    Fingerprint {
        kind: kind.into(),
        value: value.into(),
        attacker_ip: ip(7),
        first_seen_ns: at,
        last_seen_ns: at,
        count,
        raw: Some(format!("raw-of-{value}-{at}")),
        label: None,
        partial,
        decky: "web-01".into(),
        port: 443,
    }
}

async fn fingerprints_upsert_is_idempotent_and_merges(b: Backend) {
    let db = TestDb::new(b, "fpwire").await;
    let repo = db.open().await;
    let first = vec![
        fp("ja3", "e7d705a3286e19ea42f587b344ee6865", T0, 1, true),
        fp(
            "tcp_syn",
            "4:64+0:0:1460:mss*44,7:mss,sok,ts,nop,ws:df,id+:0",
            T0,
            1,
            false,
        ),
    ];
    repo.record_fingerprints(&first, &[]).await.unwrap();
    // The very same write again: nothing changes.
    repo.record_fingerprints(&first, &[]).await.unwrap();
    let mut got = repo.fingerprints(ip(7), 100).await.unwrap();
    got.sort_by(|a, b| a.kind.cmp(&b.kind));
    let mut want = first.clone();
    want.sort_by(|a, b| a.kind.cmp(&b.kind));
    assert_eq!(got, want);

    // Later sightings: count is the producer's running total (max), times widen, a complete
    // sighting clears `partial`, raw takes the newest; an older replay moves nothing back.
    let later = fp(
        "ja3",
        "e7d705a3286e19ea42f587b344ee6865",
        T0 + 5 * SEC,
        3,
        false,
    );
    let older = fp("ja3", "e7d705a3286e19ea42f587b344ee6865", T0 - SEC, 2, true);
    repo.record_fingerprints(&[later.clone(), older], &[])
        .await
        .unwrap();
    let ja3 = repo
        .fingerprints(ip(7), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.kind == "ja3")
        .unwrap();
    assert_eq!(
        (ja3.count, ja3.first_seen_ns, ja3.last_seen_ns, ja3.partial),
        (3, T0 - SEC, T0 + 5 * SEC, false)
    );
    assert_eq!(ja3.raw, later.raw);

    // The same value on another port of the decky is its own row.
    let mut other_port = fp("ja3", "e7d705a3286e19ea42f587b344ee6865", T0, 1, false);
    other_port.port = 8443;
    repo.record_fingerprints(&[other_port], &[]).await.unwrap();
    assert_eq!(repo.fingerprints(ip(7), 100).await.unwrap().len(), 3);
    assert_eq!(
        repo.fingerprints_of(&[ip(7), ip(8)]).await.unwrap().len(),
        3
    );

    // Hostile sizes are bounded, not refused.
    let mut huge = fp("ssh_client_banner", &"A".repeat(70_000), T0, 1, true);
    huge.raw = Some("B".repeat(200_000));
    huge.label = Some("C".repeat(5_000));
    huge.attacker_ip = ip(9);
    repo.record_fingerprints(&[huge], &[]).await.unwrap();
    let h = &repo.fingerprints(ip(9), 10).await.unwrap()[0];
    assert!(h.value.len() <= 1024 && h.value.ends_with("[cut]"));
    assert!(h.raw.as_ref().unwrap().len() <= 65_536);
    assert!(h.label.as_ref().unwrap().len() <= 1024);

    // Deckies' own fingerprints live apart from attackers'.
    let d = DeckyFingerprint {
        decky: "web-01".into(),
        port: 443,
        kind: "tcp_synack".into(),
        value: "4:64+0:0:1460:mss*44,7:mss,sok,ts,nop,ws:df:0".into(),
        raw: None,
        label: Some("s:unix:Linux:3.x".into()),
        partial: false,
        first_seen_ns: T0,
        last_seen_ns: T0,
        count: 4,
    };
    repo.record_fingerprints(&[], std::slice::from_ref(&d))
        .await
        .unwrap();
    repo.record_fingerprints(&[], std::slice::from_ref(&d))
        .await
        .unwrap();
    assert_eq!(repo.decky_fingerprints("web-01").await.unwrap(), vec![d]);
    assert!(repo.decky_fingerprints("db-01").await.unwrap().is_empty());
    assert_eq!(repo.fingerprints(ip(7), 100).await.unwrap().len(), 3);

    repo.close().await;
    db.cleanup().await;
}

both_backends!(fingerprints_upsert_is_idempotent_and_merges);
