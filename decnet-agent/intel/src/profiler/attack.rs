//! MITRE ATT&CK technique ids the evidence supports (sorted, each once):
//!
//! | evidence | technique |
//! |---|---|
//! | a port scan (flows: tcp_syn, tcp_connect, udp; or a scan seen in events) | T1046 Network Service Discovery |
//! | a ping sweep | T1018 Remote System Discovery |
//! | brute force (behaviour rule) or a credential-attack tool (hydra) | T1110 Brute Force |
//! | a successful login | T1078 Valid Accounts |
//! | touched ≥ 2 deckies (lateral movement) | T1021 Remote Services |
//! | commands typed | T1059 Command and Scripting Interpreter |
//! | beaconing | T1071 Application Layer Protocol |
//! | a web scanner (nikto, nuclei, gobuster, wpscan, dirbuster, feroxbuster, ffuf, wfuzz) | T1595 Active Scanning |
//! | an exploitation tool (sqlmap, metasploit) | T1190 Exploit Public-Facing Application |
use std::collections::BTreeSet;

use super::score::Signals;

const WEB_SCANNERS: [&str; 8] = [
    "nikto",
    "nuclei",
    "gobuster",
    "wpscan",
    "dirbuster",
    "feroxbuster",
    "ffuf",
    "wfuzz",
];

pub fn techniques(s: &Signals) -> Vec<String> {
    let mut t: BTreeSet<&str> = BTreeSet::new();
    for k in &s.scan_kinds {
        t.insert(if k == "ping_sweep" { "T1018" } else { "T1046" });
    }
    let has = |tool: &str| s.tools.iter().any(|g| g.tool == tool);
    if s.brute_force || has("hydra") {
        t.insert("T1110");
    }
    if s.logins > 0 {
        t.insert("T1078");
    }
    if s.deckies >= 2 {
        t.insert("T1021");
    }
    if s.commands > 0 {
        t.insert("T1059");
    }
    if s.beacon.is_some() {
        t.insert("T1071");
    }
    if WEB_SCANNERS.iter().any(|w| has(w)) {
        t.insert("T1595");
    }
    if has("sqlmap") || has("metasploit") {
        t.insert("T1190");
    }
    t.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::tools::{Category, Guess};

    #[test]
    fn evidence_to_techniques() {
        assert!(techniques(&Signals::default()).is_empty());
        let s = Signals {
            deckies: 3,
            logins: 1,
            commands: 2,
            brute_force: true,
            scan_kinds: vec!["ping_sweep".into(), "tcp_syn".into()],
            tools: vec![Guess {
                tool: "sqlmap".into(),
                category: Category::Offensive,
            }],
            ..Signals::default()
        };
        assert_eq!(
            techniques(&s),
            vec![
                "T1018", "T1021", "T1046", "T1059", "T1078", "T1110", "T1190"
            ]
        );
    }
}
