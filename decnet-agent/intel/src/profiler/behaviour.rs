//! Behaviour class of an attacker, from the timing and content of its evidence.
//!
//! Each rule below either matches or not; the class is the one rule that matched, `mixed` when
//! several did, `unknown` when none did or there is too little evidence (fewer than
//! `min_events` events and no detected scan). Thresholds are [`BehaviourConfig`] (profiler flags).
//!
//! - **scanning** / **slow_scan**: a detected scan episode from flows (rate above /
//!   at most `slow_scan_max_rate` probes per minute; any fast episode makes it `scanning`), or,
//!   from events alone, at least `scan_min_targets` distinct (decky, service) pairs touched with
//!   no credential attempt, login, command or HTTP request — with the event rate deciding fast
//!   or slow the same way.
//! - **brute_force**: at least `brute_min_attempts` credential attempts.
//! - **beaconing**: the attacker's "callbacks" (non-credential, non-command events; events less
//!   than `callback_burst` apart are one callback) to at most two (decky, service) targets,
//!   at least `beacon_min_callbacks` of them, with a mean period of at least
//!   `beacon_min_period` and a coefficient of variation (stddev / mean of the periods) of at
//!   most `beacon_max_cv` (jitter).
//! - **interactive**: at least `interactive_min_commands` commands typed.
use std::collections::BTreeSet;

use decnet_core::model::Scan;

use crate::vocab::Kind;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BehaviourConfig {
    pub min_events: u64,
    pub brute_min_attempts: u64,
    pub beacon_min_callbacks: usize,
    pub beacon_max_cv: f64,
    pub beacon_min_period_s: f64,
    pub callback_burst_s: f64,
    pub interactive_min_commands: u64,
    pub slow_scan_max_rate: u64,
    pub scan_min_targets: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            min_events: 3,
            brute_min_attempts: 10,
            beacon_min_callbacks: 5,
            beacon_max_cv: 0.2,
            beacon_min_period_s: 5.0,
            callback_burst_s: 2.0,
            interactive_min_commands: 2,
            slow_scan_max_rate: 10,
            scan_min_targets: 5,
        }
    }
}

/// One event as the profiler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub ts_ns: i64,
    pub kind: Kind,
    pub decky: String,
    pub service: String,
}

/// The timing and content facts the rules read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The attacker's event count (all of history).
    pub event_count: u64,
    /// Its newest events, in time order (bounded).
    pub events: Vec<Seen>,
    pub auth_attempts: u64,
    pub commands: u64,
    /// Detected scan episodes.
    pub scans: Vec<Scan>,
}

/// A beacon: mean period in seconds and how many callbacks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beacon {
    pub period_s: f64,
    pub cv: f64,
    pub callbacks: usize,
}

/// The verdict: the class and every rule that matched (in rule order).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub class: &'static str,
    pub matched: Vec<&'static str>,
    pub beacon: Option<Beacon>,
}

fn rate_per_min(n: usize, span_ns: i64) -> u64 {
    let span = u128::try_from(span_ns).unwrap_or(0).max(1_000_000_000);
    u64::try_from(n as u128 * 60_000_000_000 / span).unwrap_or(u64::MAX)
}

/// Beacon analysis over the callbacks (see the module doc).
pub fn beacon(events: &[Seen], cfg: &BehaviourConfig) -> Option<Beacon> {
    let quiet: Vec<&Seen> = events
        .iter()
        .filter(|e| !matches!(e.kind, Kind::Auth(_) | Kind::Command | Kind::Login))
        .collect();
    let targets: BTreeSet<(&str, &str)> = quiet
        .iter()
        .map(|e| (e.decky.as_str(), e.service.as_str()))
        .collect();
    if targets.is_empty() || targets.len() > 2 {
        return None;
    }
    let burst = (cfg.callback_burst_s * 1e9) as i64;
    let mut starts: Vec<i64> = Vec::new();
    let mut prev: Option<i64> = None;
    for e in &quiet {
        if prev.is_none_or(|p| e.ts_ns.saturating_sub(p) > burst) {
            starts.push(e.ts_ns);
        }
        prev = Some(e.ts_ns);
    }
    if starts.len() < cfg.beacon_min_callbacks.max(3) {
        return None;
    }
    let periods: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e9)
        .collect();
    let mean = periods.iter().sum::<f64>() / periods.len() as f64;
    if mean < cfg.beacon_min_period_s {
        return None;
    }
    let var = periods.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / periods.len() as f64;
    let cv = var.sqrt() / mean;
    (cv <= cfg.beacon_max_cv).then_some(Beacon {
        period_s: mean,
        cv,
        callbacks: starts.len(),
    })
}

/// Applies the rules.
pub fn classify(f: &Facts, cfg: &BehaviourConfig) -> Verdict {
    let mut matched: Vec<&'static str> = Vec::new();
    // Scanning, from flows first.
    if !f.scans.is_empty() {
        if f.scans
            .iter()
            .any(|s| s.rate_per_min > cfg.slow_scan_max_rate)
        {
            matched.push("scanning");
        } else {
            matched.push("slow_scan");
        }
    } else {
        let engaged = f.events.iter().any(|e| {
            matches!(
                e.kind,
                Kind::Auth(_) | Kind::Login | Kind::Command | Kind::Request
            )
        });
        let targets: BTreeSet<(&str, &str)> = f
            .events
            .iter()
            .map(|e| (e.decky.as_str(), e.service.as_str()))
            .collect();
        if !engaged && targets.len() >= cfg.scan_min_targets {
            let span = match (f.events.first(), f.events.last()) {
                (Some(a), Some(b)) => b.ts_ns - a.ts_ns,
                _ => 0,
            };
            if rate_per_min(f.events.len(), span) > cfg.slow_scan_max_rate {
                matched.push("scanning");
            } else {
                matched.push("slow_scan");
            }
        }
    }
    if f.auth_attempts >= cfg.brute_min_attempts {
        matched.push("brute_force");
    }
    let beacon = beacon(&f.events, cfg);
    if beacon.is_some() {
        matched.push("beaconing");
    }
    if f.commands >= cfg.interactive_min_commands {
        matched.push("interactive");
    }
    let class = if f.event_count < cfg.min_events && f.scans.is_empty() {
        "unknown"
    } else {
        match matched.as_slice() {
            [] => "unknown",
            [one] => one,
            _ => "mixed",
        }
    };
    Verdict {
        class,
        matched,
        beacon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn seen(t_ms: i64, kind: Kind, decky: &str, service: &str) -> Seen {
        Seen {
            ts_ns: t_ms * 1_000_000,
            kind,
            decky: decky.into(),
            service: service.into(),
        }
    }

    fn facts(events: Vec<Seen>) -> Facts {
        Facts {
            event_count: events.len() as u64,
            events,
            ..Facts::default()
        }
    }

    #[test]
    fn beacon_every_60s_with_jitter() {
        // connect + request + disconnect every 60 s ± 3 s, 10 callbacks.
        let jitter = [0, 3, -2, 1, -3, 2, 0, -1, 3, -2];
        let mut ev = Vec::new();
        for (i, j) in jitter.iter().enumerate() {
            let t = (i as i64 * 60 + j) * 1000;
            ev.push(seen(t, Kind::Connect, "web-01", "http"));
            ev.push(seen(t + 100, Kind::Request, "web-01", "http"));
            ev.push(seen(t + 200, Kind::Disconnect, "web-01", "http"));
        }
        let v = classify(&facts(ev), &BehaviourConfig::default());
        assert_eq!(v.class, "beaconing");
        let b = v.beacon.unwrap();
        assert_eq!(b.callbacks, 10);
        assert!((b.period_s - 59.777).abs() < 0.01, "{}", b.period_s);
        assert!(b.cv < 0.1);
    }

    #[test]
    fn irregular_traffic_is_no_beacon() {
        let times = [0, 5, 70, 71, 300, 302, 900, 1000, 1500, 1501];
        let ev: Vec<Seen> = times
            .iter()
            .map(|t| seen(t * 1000, Kind::Request, "web-01", "http"))
            .collect();
        let v = classify(&facts(ev), &BehaviourConfig::default());
        assert_eq!(v.beacon, None);
        assert_eq!(v.class, "unknown");
    }

    #[test]
    fn brute_force_interactive_and_mixed() {
        let cfg = BehaviourConfig::default();
        let mut f = facts(vec![seen(0, Kind::Auth(Some(false)), "d", "ssh"); 12]);
        f.auth_attempts = 12;
        assert_eq!(classify(&f, &cfg).class, "brute_force");
        f.commands = 3;
        let v = classify(&f, &cfg);
        assert_eq!(
            (v.class, v.matched.clone()),
            ("mixed", vec!["brute_force", "interactive"])
        );
        f.auth_attempts = 1;
        assert_eq!(classify(&f, &cfg).class, "interactive");
        // Too little evidence.
        let few = facts(vec![seen(0, Kind::Connect, "d", "ssh")]);
        assert_eq!(classify(&few, &cfg).class, "unknown");
    }

    #[test]
    fn scans_from_flows_and_from_events() {
        let cfg = BehaviourConfig::default();
        let scan = |rate| Scan {
            attacker_ip: "203.0.113.1".parse().unwrap(),
            kind: "tcp_syn".into(),
            started_ns: 0,
            ended_ns: 10 * S,
            probes: 100,
            port_count: 100,
            ports: vec![],
            host_count: 1,
            hosts: vec![],
            rate_per_min: rate,
            detected: true,
        };
        let mut f = Facts {
            scans: vec![scan(600)],
            ..Facts::default()
        };
        assert_eq!(classify(&f, &cfg).class, "scanning");
        f.scans = vec![scan(2)];
        assert_eq!(classify(&f, &cfg).class, "slow_scan");
        // Events only: connects to 6 services, one every 5 minutes → slow.
        let ev: Vec<Seen> = (0..6)
            .map(|i| seen(i * 300_000, Kind::Connect, "d", &format!("svc{i}")))
            .collect();
        assert_eq!(classify(&facts(ev.clone()), &cfg).class, "slow_scan");
        let fast: Vec<Seen> = (0..6)
            .map(|i| seen(i * 100, Kind::Connect, "d", &format!("svc{i}")))
            .collect();
        assert_eq!(classify(&facts(fast), &cfg).class, "scanning");
    }
}
