//! `probe_results` and `probe_vantages` (the prober's tables) on SQLite and MariaDB: the
//! outcome rules of a sweep (new, unchanged, resolved, regressed), bounds on hostile text, the
//! listing's order and filters, and the vantage addresses.
mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{Backend, TestDb};
use decnet_core::{
    model::{ProbeOutcome, Severity},
    repo::{ProbeFilter, ProbeTally},
};

const T0: i64 = 1_795_730_640_123_456_789;
const SEC: i64 = 1_000_000_000;

fn o(decky: &str, check: &str, severity: Severity, seen: &str) -> ProbeOutcome {
    ProbeOutcome {
        decky: decky.into(),
        check: check.into(),
        subject: "ssh/22".into(),
        severity,
        expected: "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6".into(),
        seen: seen.into(),
    }
}

async fn sweep(
    repo: &decnet_core::repo::Repository,
    outcomes: &[ProbeOutcome],
    at: i64,
) -> ProbeTally {
    let mut tx = repo.begin().await.expect("begin");
    let t = tx.record_probe_results(outcomes, at).await.expect("record");
    tx.commit().await.expect("commit");
    t
}

async fn sweeps_keep_one_row_per_check_with_its_history(b: Backend) {
    let db = TestDb::new(b, "probe_results").await;
    let repo = db.open().await;
    let all = ProbeFilter {
        limit: 100,
        ..Default::default()
    };

    // Sweep 1: a pass and a finding.
    let t = sweep(
        &repo,
        &[
            o("a", "honeypot_default", Severity::Pass, "fine"),
            o("b", "honeypot_default", Severity::Critical, "cowrie"),
        ],
        T0,
    )
    .await;
    assert_eq!(
        t,
        ProbeTally {
            inserted: 2,
            ..Default::default()
        }
    );

    // Sweep 2: the same outcomes: last_seen moves, first_seen stays.
    let t = sweep(
        &repo,
        &[
            o("a", "honeypot_default", Severity::Pass, "fine"),
            o("b", "honeypot_default", Severity::Critical, "cowrie again"),
        ],
        T0 + SEC,
    )
    .await;
    assert_eq!(
        t,
        ProbeTally {
            unchanged: 2,
            ..Default::default()
        }
    );
    let rows = repo.probe_results(&all).await.expect("read");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].decky, "b", "worst first");
    assert_eq!(
        (
            rows[0].first_seen_ns,
            rows[0].last_seen_ns,
            rows[0].seen.as_str()
        ),
        (T0, T0 + SEC, "cowrie again")
    );
    assert_eq!(rows[0].resolved_at_ns, None);

    // Sweep 3: b's finding is fixed, a regresses.
    let t = sweep(
        &repo,
        &[
            o("a", "honeypot_default", Severity::High, "broken"),
            o("b", "honeypot_default", Severity::Pass, "fixed"),
        ],
        T0 + 2 * SEC,
    )
    .await;
    assert_eq!(
        t,
        ProbeTally {
            resolved: 1,
            regressed: 1,
            ..Default::default()
        }
    );
    let rows = repo.probe_results(&all).await.expect("read");
    let a = rows.iter().find(|r| r.decky == "a").expect("a");
    let bb = rows.iter().find(|r| r.decky == "b").expect("b");
    assert_eq!(
        (a.severity, a.first_seen_ns, a.resolved_at_ns),
        (Severity::High, T0 + 2 * SEC, None)
    );
    assert_eq!(
        (bb.severity, bb.first_seen_ns, bb.resolved_at_ns),
        (Severity::Pass, T0 + 2 * SEC, Some(T0 + 2 * SEC))
    );

    // Filters: one decky; findings only.
    let only_a = repo
        .probe_results(&ProbeFilter {
            decky: Some("a".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(only_a.len(), 1);
    let findings = repo
        .probe_results(&ProbeFilter {
            findings_only: true,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(
        findings
            .iter()
            .map(|r| r.decky.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );

    // Hostile text (a banner is the decky's, but bounded all the same) is cut, not refused.
    let huge = "é".repeat(100_000);
    sweep(
        &repo,
        &[o("c", "service_answers", Severity::Pass, &huge)],
        T0 + 3 * SEC,
    )
    .await;
    let c = repo
        .probe_results(&ProbeFilter {
            decky: Some("c".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("read");
    assert!(
        c[0].seen.len() <= 4096 && c[0].seen.ends_with("[cut]"),
        "{}",
        c[0].seen.len()
    );

    // Vantages: recorded once per address, refreshed in place.
    let v = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 254));
    for at in [T0, T0 + SEC] {
        let mut tx = repo.begin().await.expect("begin");
        tx.record_probe_vantage(v, "decnet-prober.decnet0", at)
            .await
            .expect("vantage");
        tx.commit().await.expect("commit");
    }
    assert_eq!(repo.probe_vantages().await.expect("vantages"), vec![v]);
    db.cleanup().await;
}

both_backends!(sweeps_keep_one_row_per_check_with_its_history);
