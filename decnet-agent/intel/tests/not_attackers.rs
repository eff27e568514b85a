//! Decnet's own traffic and non-routable sources are never attackers (issue 18): a fleet's
//! worth of events, credentials and flows from the host's bridge address (status probes), from
//! `::`, link-local, loopback, multicast and unspecified sources — what an IPv6-enabled machine
//! on the bridge sends on its own (duplicate-address detection from `::`, multicast-listener
//! reports and router solicitations from `fe80::…` to `ff02::…`) — next to one real attacker
//! (IPv4 and IPv6). Only the real attacker becomes one, on SQLite and MariaDB; the others are
//! counted.
#[path = "../../../decnet-core/tests/common/mod.rs"]
mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, atomic::AtomicBool},
};

use common::{Backend, TestDb};
use decnet_core::{
    model::{CredentialAttempt, Decky, DeckyService, FlowRecord, NewEvent},
    repo::{AttackerFilter, Write},
    time_fmt::now_ns,
};
use decnet_intel::correlator::{pass::Config, scans::ScanConfig};

const SEC: i64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn own_traffic_is_not_an_attacker(b: Backend) {
    let db = TestDb::new(b, "not_attackers").await;
    let repo = db.open().await;
    let t0 = now_ns() - 600 * SEC;
    let host = ip("10.77.0.1"); // the host's address on the decoy bridge
    let decky_ip = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 10));
    let decky = Decky {
        name: "web-01".into(),
        ip: decky_ip,
        hostname: "web-01".into(),
        os_family: "linux".into(),
        archetype: "server".into(),
        persona: "{}".into(),
        status: "running".into(),
        services: vec![DeckyService {
            service: "telnet".into(),
            port: 23,
            settings: "{}".into(),
        }],
    };
    let real = [ip("198.51.100.23"), ip("2001:db8::66")];
    let not = [
        host,
        ip("::"),
        ip("fe80::a8c1:abff:fe12:3456"),
        ip("169.254.10.20"),
        ip("127.0.0.1"),
        ip("::1"),
        ip("0.0.0.0"),
        ip("224.0.0.251"),
        ip("ff02::16"),
    ];
    let mut events = Vec::new();
    let mut creds = Vec::new();
    let mut flows = Vec::new();
    for (k, src) in real.iter().chain(not.iter()).enumerate() {
        let k = k as i64;
        events.push(NewEvent {
            ts_ns: t0 + k * SEC,
            decky: "web-01".into(),
            service: "telnet".into(),
            event_type: "auth_attempt".into(),
            attacker_ip: Some(*src),
            attacker_port: Some(40000),
            fields: r#"{"username":"root","password":"123456"}"#.into(),
            raw: format!("<134>1 line {k}").into_bytes(),
            dedup_key: None,
        });
        creds.push((
            events.len() - 1,
            CredentialAttempt {
                attacker_ip: *src,
                decky: "web-01".into(),
                service: "telnet".into(),
                principal: b"root".to_vec(),
                secret_kind: "password".into(),
                secret: b"123456".to_vec(),
                attempts: 1,
                first_seen_ns: t0 + k * SEC,
                last_seen_ns: t0 + k * SEC,
            },
        ));
        // Probes of 30 ports from each source (a scan if it were an attacker's), and the
        // decky's replies to it.
        for p in 0..30u16 {
            let dst = if src.is_ipv6() {
                ip("ff02::1")
            } else {
                decky_ip
            };
            for (s, d, sp, dp) in [
                (*src, dst, 50000 + p, 1000 + p),
                (decky_ip, *src, 1000 + p, 50000 + p),
            ] {
                flows.push(FlowRecord {
                    bridge: "dn0".into(),
                    port: "veth0".into(),
                    src_ip: s,
                    dst_ip: d,
                    src_port: sp,
                    dst_port: dp,
                    proto: 6,
                    vlan: 0,
                    packets: 1,
                    bytes: 60,
                    tcp_flags: 2,
                    first_seen_ns: t0 + k * SEC + i64::from(p),
                    last_seen_ns: t0 + k * SEC + i64::from(p),
                    ended: true,
                });
            }
        }
    }
    repo.write(&[
        Write::Deckies(std::slice::from_ref(&decky)),
        Write::EventsWithCredentials {
            events: &events,
            credentials: &creds,
        },
        Write::Flows(&flows),
    ])
    .await
    .unwrap();
    let cfg = Config {
        idle_gap_ns: 300 * SEC,
        scan: ScanConfig {
            gap_ns: 60 * SEC,
            min_ports: 10,
            min_hosts: 5,
        },
        batch: 1000,
        flow_settle_ns: 0,
        host: "test-host".into(),
        // The host's bridge address as `decnet deploy` names it (the test machine does not
        // carry 10.77.0.1 itself).
        own_addresses: vec![host],
    };
    let c =
        decnet_intel::correlator::pass::run_pass(&repo, &cfg, &Arc::new(AtomicBool::new(false)))
            .await
            .unwrap();
    let attackers: Vec<IpAddr> = repo
        .list_attackers(&AttackerFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|a| a.attacker.ip)
        .collect();
    let mut want = real.to_vec();
    let mut got = attackers.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "only the real attacker (v4 and v6)");
    let n = not.len() as u64;
    assert_eq!(c.get("events_not_attacker"), n, "{c:?}");
    assert_eq!(c.get("credentials_not_attacker"), n, "{c:?}");
    assert_eq!(c.get("flows_not_attacker"), n * 30, "{c:?}");
    // Sessions and scans: the real attacker's only.
    for s in repo.list_scans(None, None, None, None, 100).await.unwrap() {
        assert!(real.contains(&s.1.attacker_ip), "{s:?}");
    }
    repo.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_traffic_is_not_an_attacker_sqlite() {
    own_traffic_is_not_an_attacker(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_traffic_is_not_an_attacker_mysql() {
    own_traffic_is_not_an_attacker(Backend::MySql).await;
}
