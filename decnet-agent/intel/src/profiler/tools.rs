//! Tool guesses from evidence: HTTP User-Agents, SSH client identification strings (from
//! events and the sensor's fingerprints) and beacon cadence against C2 framework defaults.
//!
//! Matching is a case-insensitive substring test against a fixed table; every tool found is
//! reported once, sorted. Categories feed the score: [`Category::Scanner`] (reconnaissance
//! tools) and [`Category::Offensive`] (exploitation / credential attack tools).

/// What kind of tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Scanner,
    Offensive,
    Client,
    C2,
}

/// (substring of the lowercased User-Agent, tool, category). First match wins per pattern;
/// more specific patterns come first.
pub const UA_PATTERNS: &[(&str, &str, Category)] = &[
    ("nmap scripting engine", "nmap", Category::Scanner),
    ("nmap", "nmap", Category::Scanner),
    ("nikto", "nikto", Category::Scanner),
    ("sqlmap", "sqlmap", Category::Offensive),
    ("nuclei", "nuclei", Category::Scanner),
    ("masscan", "masscan", Category::Scanner),
    ("zgrab", "zgrab", Category::Scanner),
    ("metasploit", "metasploit", Category::Offensive),
    ("gobuster", "gobuster", Category::Scanner),
    ("hydra", "hydra", Category::Offensive),
    ("wpscan", "wpscan", Category::Scanner),
    ("dirbuster", "dirbuster", Category::Scanner),
    ("feroxbuster", "feroxbuster", Category::Scanner),
    ("fuzz faster u fool", "ffuf", Category::Scanner),
    ("wfuzz", "wfuzz", Category::Scanner),
    ("censysinspect", "censys", Category::Scanner),
    ("curl/", "curl", Category::Client),
    ("wget/", "wget", Category::Client),
    ("python-requests", "python-requests", Category::Client),
    ("python-urllib", "python-urllib", Category::Client),
    ("go-http-client", "go-http-client", Category::Client),
];

/// (substring of the lowercased SSH identification string, tool, category).
pub const SSH_PATTERNS: &[(&str, &str, Category)] = &[
    ("libssh2", "libssh2", Category::Client),
    ("libssh", "libssh", Category::Client),
    ("paramiko", "paramiko", Category::Client),
    ("ssh-2.0-go", "go-ssh", Category::Client),
    ("openssh", "openssh", Category::Client),
    ("putty", "putty", Category::Client),
    ("jsch", "jsch", Category::Client),
    ("asyncssh", "asyncssh", Category::Client),
    ("russh", "russh", Category::Client),
    ("zgrab", "zgrab", Category::Scanner),
    ("nmap", "nmap", Category::Scanner),
];

/// Default beacon intervals of C2 frameworks, seconds (see upstream-notes.md).
pub const C2_DEFAULTS: &[(&str, f64)] = &[
    ("cobalt_strike", 60.0),
    ("sliver", 60.0),
    ("havoc", 45.0),
    ("mythic", 30.0),
];

/// A beacon period matches a default within this fraction of it.
pub const C2_TOLERANCE: f64 = 0.1;

/// One tool guess.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Guess {
    pub tool: String,
    pub category: Category,
}

fn matches(value: &str, table: &[(&str, &str, Category)], out: &mut Vec<Guess>) {
    let v = value.to_ascii_lowercase();
    for (pat, tool, cat) in table {
        if v.contains(pat) {
            out.push(Guess {
                tool: (*tool).to_owned(),
                category: *cat,
            });
            return;
        }
    }
}

/// C2 frameworks whose default interval is within tolerance of `period_s`.
pub fn c2_matches(period_s: f64) -> Vec<&'static str> {
    C2_DEFAULTS
        .iter()
        .filter(|(_, d)| (period_s - d).abs() <= d * C2_TOLERANCE)
        .map(|(n, _)| *n)
        .collect()
}

/// Every tool the evidence points to, sorted by name, each once.
pub fn guess(user_agents: &[String], ssh_clients: &[String], beacon_s: Option<f64>) -> Vec<Guess> {
    let mut out = Vec::new();
    for ua in user_agents {
        matches(ua, UA_PATTERNS, &mut out);
    }
    for s in ssh_clients {
        matches(s, SSH_PATTERNS, &mut out);
    }
    if let Some(p) = beacon_s {
        out.extend(c2_matches(p).into_iter().map(|t| Guess {
            tool: t.to_owned(),
            category: Category::C2,
        }));
    }
    out.sort();
    out.dedup_by(|a, b| a.tool == b.tool);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(g: &[Guess]) -> Vec<&str> {
        g.iter().map(|g| g.tool.as_str()).collect()
    }

    #[test]
    fn user_agents_and_banners() {
        let uas = [
            "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
            "sqlmap/1.8.2#stable (https://sqlmap.org)",
            "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)",
            "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "gobuster/3.6",
            "Mozilla/4.0 (Hydra)",
            "Mozilla/5.0 zgrab/0.x",
            "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        ]
        .map(String::from);
        let g = guess(&uas, &[], None);
        assert_eq!(
            names(&g),
            vec![
                "curl",
                "gobuster",
                "hydra",
                "masscan",
                "nikto",
                "nmap",
                "nuclei",
                "python-requests",
                "sqlmap",
                "zgrab"
            ]
        );
        let ssh = [
            "SSH-2.0-libssh_0.10.6",
            "SSH-2.0-paramiko_3.4.0",
            "SSH-2.0-Go",
            "SSH-2.0-libssh2_1.11.0",
        ]
        .map(String::from);
        assert_eq!(
            names(&guess(&[], &ssh, None)),
            vec!["go-ssh", "libssh", "libssh2", "paramiko"]
        );
    }

    #[test]
    fn beacon_cadence_against_c2_defaults() {
        assert_eq!(c2_matches(59.8), vec!["cobalt_strike", "sliver"]);
        assert_eq!(c2_matches(46.0), vec!["havoc"]);
        assert_eq!(c2_matches(30.5), vec!["mythic"]);
        assert!(c2_matches(120.0).is_empty());
        let g = guess(&[], &[], Some(60.0));
        assert_eq!(names(&g), vec!["cobalt_strike", "sliver"]);
        assert!(g.iter().all(|g| g.category == Category::C2));
    }
}
