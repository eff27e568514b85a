//! The threat score: 0–100, the sum of fixed-weight factors (clamped), each stored with its
//! weight so the analyst sees why. Same signals → same factors, same order, same score.
//!
//! | factor | weight |
//! |---|---|
//! | touched N deckies (N ≥ 2) | 5 × N, at most 25 |
//! | valid credential used (a successful login) | 25 |
//! | interactive commands (N) | 20 |
//! | brute force (N attempts) | 15 |
//! | network scan (kinds) | 10 |
//! | beaconing every ~P s | 20 |
//! | cadence of a C2 default (frameworks) | 10 |
//! | credential reused across N targets | 10 |
//! | offensive tool (names) | 10 |
//! | known scanner UA (names) | 5 |
use decnet_core::model::ScoreFactor;

use super::{
    behaviour::Beacon,
    tools::{Category, Guess},
};

/// What the score (and the techniques) are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub deckies: usize,
    pub logins: u64,
    pub commands: u64,
    pub auth_attempts: u64,
    pub brute_force: bool,
    /// Detected scan kinds (`tcp_syn`, `tcp_connect`, `udp`, `ping_sweep`, or `events` for a
    /// scan seen in events only), sorted.
    pub scan_kinds: Vec<String>,
    pub beacon: Option<Beacon>,
    /// The most targets a secret this attacker tried was reused across (0: none).
    pub reuse_targets: u64,
    pub tools: Vec<Guess>,
}

fn names(tools: &[Guess], cat: Category) -> Vec<&str> {
    tools
        .iter()
        .filter(|g| g.category == cat)
        .map(|g| g.tool.as_str())
        .collect()
}

/// The factors, in table order, and their clamped sum.
pub fn score(s: &Signals) -> (u8, Vec<ScoreFactor>) {
    let mut f: Vec<ScoreFactor> = Vec::new();
    let mut add = |factor: String, weight: i32| f.push(ScoreFactor { factor, weight });
    if s.deckies >= 2 {
        let w = i32::try_from(s.deckies.saturating_mul(5))
            .unwrap_or(25)
            .min(25);
        add(format!("touched {} deckies", s.deckies), w);
    }
    if s.logins > 0 {
        add("valid credential used".into(), 25);
    }
    if s.commands > 0 {
        add(format!("interactive commands ({})", s.commands), 20);
    }
    if s.brute_force {
        add(format!("brute force ({} attempts)", s.auth_attempts), 15);
    }
    if !s.scan_kinds.is_empty() {
        add(format!("network scan ({})", s.scan_kinds.join(", ")), 10);
    }
    if let Some(b) = s.beacon {
        add(format!("beaconing every ~{:.0} s", b.period_s), 20);
        let c2 = super::tools::c2_matches(b.period_s);
        if !c2.is_empty() {
            add(format!("cadence of a C2 default ({})", c2.join(", ")), 10);
        }
    }
    if s.reuse_targets >= 2 {
        add(
            format!("credential reused across {} targets", s.reuse_targets),
            10,
        );
    }
    let offensive = names(&s.tools, Category::Offensive);
    if !offensive.is_empty() {
        add(format!("offensive tool ({})", offensive.join(", ")), 10);
    }
    let scanners = names(&s.tools, Category::Scanner);
    if !scanners.is_empty() {
        add(format!("known scanner UA ({})", scanners.join(", ")), 5);
    }
    let total: i32 = f.iter().map(|x| x.weight).sum();
    (u8::try_from(total.clamp(0, 100)).unwrap_or(100), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factors(f: &[ScoreFactor]) -> Vec<(&str, i32)> {
        f.iter().map(|x| (x.factor.as_str(), x.weight)).collect()
    }

    #[test]
    fn explains_itself_and_clamps() {
        let s = Signals {
            deckies: 4,
            logins: 1,
            commands: 7,
            auth_attempts: 40,
            brute_force: true,
            scan_kinds: vec!["tcp_syn".into()],
            beacon: Some(Beacon {
                period_s: 60.2,
                cv: 0.03,
                callbacks: 12,
            }),
            reuse_targets: 3,
            tools: vec![
                Guess {
                    tool: "hydra".into(),
                    category: Category::Offensive,
                },
                Guess {
                    tool: "nmap".into(),
                    category: Category::Scanner,
                },
            ],
        };
        let (score, f) = score(&s);
        assert_eq!(
            factors(&f),
            vec![
                ("touched 4 deckies", 20),
                ("valid credential used", 25),
                ("interactive commands (7)", 20),
                ("brute force (40 attempts)", 15),
                ("network scan (tcp_syn)", 10),
                ("beaconing every ~60 s", 20),
                ("cadence of a C2 default (cobalt_strike, sliver)", 10),
                ("credential reused across 3 targets", 10),
                ("offensive tool (hydra)", 10),
                ("known scanner UA (nmap)", 5),
            ]
        );
        assert_eq!(score, 100, "clamped");
        assert_eq!(super::score(&Signals::default()), (0, vec![]));
        let few = Signals {
            deckies: 9,
            ..Signals::default()
        };
        assert_eq!(super::score(&few).0, 25);
    }
}
