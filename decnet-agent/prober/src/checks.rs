//! The realism checks: what was seen of each decky ([`DeckySeen`]) against what its persona
//! claims, and the fleet against itself. Every check yields an outcome — a pass too — so a
//! clean decky is a list of passes, not an absence of findings.
//!
//! | check | subject | finding when | severity |
//! |---|---|---|---|
//! | `service_answers` | `kind/port` | a service of the fleet file does not answer its protocol | high |
//! | `banner_matches_persona` | `kind/port` | the banner / Server header is not the one the persona claims | medium |
//! | `honeypot_default` | `kind/port` | the banner is a documented default of a known honeypot (Cowrie, Kippo, OpenCanary) | critical |
//! | `os_consistency` | `kind/port` | the banner names another OS family than the persona (a Windows persona with an Ubuntu OpenSSH, IIS on Linux) | high |
//! | `tcp_ttl` | `stack` | the SYN-ACK's initial TTL is not the persona's | high |
//! | `tcp_stack` | `stack` | the SYN-ACK matches a p0f signature of another OS family, or its option layout is none of p0f's layouts for the persona's family | high |
//! | `tcp_rst_ttl` | `stack` | the RST to a closed port has another initial TTL than the persona's | high |
//! | `mac_vendor` | `mac` | the MAC's vendor prefix does not fit the persona (locally administered, or a vendor of another kind of device) | medium |
//! | `fleet_ssh_host_key` | `fleet` | another decky serves the same SSH host key | high |
//! | `fleet_tls_certificate` | `fleet` | another decky serves the same TLS certificate | high |
//! | `fleet_http_page` | `fleet` | a decky with another `Server` header serves the same page body or ETag | medium |
use std::collections::BTreeMap;

use decnet_core::model::{ProbeOutcome, Severity};
use decnet_decoys::{
    decky::persona,
    fleet::{DeckySpec, OsFamily, ServiceKind, persona as net_persona},
};
use decnet_fingerprint::{
    p0f::Database,
    tcp::{TcpSig, layout_string},
};

use crate::{
    probe::{HttpSeen, ProbeError, TlsSeen, cut},
    stack::{SYN_MSS, StackSeen, initial_ttl},
};

/// What one service showed.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The first line the service sent (ftp, smtp, telnet, mysql greeting; redis' PING answer).
    Greeting(String),
    Ssh {
        banner: String,
        host_key: Option<String>,
    },
    Http(HttpSeen),
    Https(TlsSeen, HttpSeen),
}

#[derive(Debug, Clone)]
pub struct ServiceSeen {
    pub kind: ServiceKind,
    pub port: u16,
    pub result: Result<Observation, ProbeError>,
}

impl ServiceSeen {
    pub fn subject(&self) -> String {
        format!("{}/{}", self.kind.name(), self.port)
    }
}

/// Everything seen of one decky in a sweep.
#[derive(Debug, Clone)]
pub struct DeckySeen {
    pub spec: DeckySpec,
    pub services: Vec<ServiceSeen>,
    /// `None`: not probed (no raw socket, or no open port).
    pub stack: Option<StackSeen>,
    pub mac: Option<String>,
}

/// The documented defaults of other honeypots: (what, exact banner).
pub const HONEYPOT_BANNERS: [(&str, &str); 5] = [
    // cowrie.cfg.dist, [ssh] version
    (
        "Cowrie's default SSH version",
        "SSH-2.0-OpenSSH_6.0p1 Debian-4+deb7u2",
    ),
    // kippo.cfg.dist, ssh_version_string
    (
        "Kippo's default SSH version",
        "SSH-2.0-OpenSSH_5.1p1 Debian-5",
    ),
    // OpenCanary's documented configuration: ssh.version, ftp.banner, http.banner
    (
        "OpenCanary's default SSH version",
        "SSH-2.0-OpenSSH_5.1p1 Debian-4",
    ),
    ("OpenCanary's default FTP banner", "220 FTP server ready"),
    (
        "OpenCanary's default HTTP Server header",
        "Apache/2.2.22 (Ubuntu)",
    ),
];

fn outcome(
    d: &DeckySpec,
    check: &str,
    subject: &str,
    severity: Severity,
    expected: impl Into<String>,
    seen: impl Into<String>,
) -> ProbeOutcome {
    ProbeOutcome {
        decky: d.name.clone(),
        check: check.to_owned(),
        subject: subject.to_owned(),
        severity,
        expected: expected.into(),
        seen: seen.into(),
    }
}

/// Pass, or the finding's severity.
fn verdict(ok: bool, finding: Severity) -> Severity {
    if ok { Severity::Pass } else { finding }
}

/// The banner the persona (or the fleet file's override) claims for a service, as the
/// prober reads it: the SSH identification line, the HTTP Server header, the text of an FTP or
/// SMTP greeting. `None` for services whose first bytes are not a banner.
pub fn claimed_banner(d: &DeckySpec, kind: ServiceKind, port: u16) -> Option<String> {
    let spec = d.services.iter().find(|s| s.kind == kind && s.port == port);
    let over = spec.and_then(|s| s.banner.clone());
    match kind {
        ServiceKind::Ssh => Some(over.unwrap_or_else(|| persona::ssh_banner(d).to_owned())),
        ServiceKind::Http | ServiceKind::Https => {
            Some(over.unwrap_or_else(|| persona::http_server(d).to_owned()))
        }
        ServiceKind::Ftp => Some(over.unwrap_or_else(|| persona::ftp_greeting(d))),
        ServiceKind::Smtp => Some(over.unwrap_or_else(|| persona::smtp_greeting(d))),
        ServiceKind::Telnet | ServiceKind::Redis | ServiceKind::Mysql => None,
    }
}

/// The coarse OS family a text names, if any.
fn os_hint(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    if t.contains("windows") || t.contains("microsoft") || t.contains("iis") {
        Some("windows")
    } else if t.contains("freebsd") || t.contains("openbsd") || t.contains("netbsd") {
        Some("bsd")
    } else if t.contains("cisco") {
        Some("cisco")
    } else if [
        "ubuntu", "debian", "linux", "red hat", "centos", "raspbian", "fedora",
    ]
    .iter()
    .any(|w| t.contains(w))
    {
        Some("linux")
    } else {
        None
    }
}

/// The coarse family of a persona, and which coarse families its banners may name.
fn family(os: OsFamily) -> (&'static str, &'static [&'static str]) {
    match os {
        OsFamily::Linux => ("linux", &["linux"]),
        OsFamily::Windows | OsFamily::WindowsServer => ("windows", &["windows"]),
        OsFamily::Bsd => ("bsd", &["bsd"]),
        // Embedded devices run Linux.
        OsFamily::Embedded => ("embedded", &["linux"]),
        OsFamily::Cisco => ("cisco", &["cisco"]),
    }
}

/// p0f label names (`Linux 3.x` → `Linux`) that fit an OS family.
fn p0f_names(os: OsFamily) -> &'static [&'static str] {
    match os {
        OsFamily::Linux | OsFamily::Embedded => &["Linux"],
        OsFamily::Windows | OsFamily::WindowsServer => &["Windows"],
        OsFamily::Bsd => &["FreeBSD", "OpenBSD", "NetBSD"],
        OsFamily::Cisco => &["Cisco", "IOS"],
    }
}

fn label_fits(label: &str, os: OsFamily) -> bool {
    p0f_names(os).iter().any(|n| label.starts_with(n))
}

/// The text of what a service showed that names its software.
fn shown_banner(o: &Observation) -> String {
    match o {
        Observation::Greeting(g) => g.clone(),
        Observation::Ssh { banner, .. } => banner.clone(),
        Observation::Http(h) | Observation::Https(_, h) => h
            .header("server")
            .unwrap_or("(no Server header)")
            .to_owned(),
    }
}

/// The per-service checks of one decky.
fn service_checks(d: &DeckySeen, out: &mut Vec<ProbeOutcome>) {
    let spec = &d.spec;
    let (fam, allowed) = family(spec.os);
    for s in &d.services {
        let subject = s.subject();
        let o = match &s.result {
            Ok(o) => o,
            Err(e) => {
                out.push(outcome(
                    spec,
                    "service_answers",
                    &subject,
                    Severity::High,
                    format!("{} answering on port {}", s.kind.name(), s.port),
                    e.to_string(),
                ));
                continue;
            }
        };
        out.push(outcome(
            spec,
            "service_answers",
            &subject,
            Severity::Pass,
            format!("{} answering on port {}", s.kind.name(), s.port),
            cut(&shown_banner(o), 200),
        ));
        let shown = shown_banner(o);
        if let Some(claim) = claimed_banner(spec, s.kind, s.port) {
            let ok = match s.kind {
                ServiceKind::Ssh | ServiceKind::Http | ServiceKind::Https => shown == claim,
                _ => shown.contains(claim.trim()),
            };
            out.push(outcome(
                spec,
                "banner_matches_persona",
                &subject,
                verdict(ok, Severity::Medium),
                claim,
                cut(&shown, 200),
            ));
        }
        let default = HONEYPOT_BANNERS
            .iter()
            .find(|(_, b)| shown.trim() == *b || shown.starts_with(&format!("{b}\r")));
        out.push(outcome(
            spec,
            "honeypot_default",
            &subject,
            verdict(default.is_none(), Severity::Critical),
            "no documented default banner of another honeypot",
            match default {
                Some((what, b)) => format!("{b} ({what})"),
                None => cut(&shown, 200),
            },
        ));
        let hint = os_hint(&shown);
        out.push(outcome(
            spec,
            "os_consistency",
            &subject,
            verdict(hint.is_none_or(|h| allowed.contains(&h)), Severity::High),
            format!("a banner of the {fam} persona ({})", spec.os.name()),
            match hint {
                Some(h) => format!("{} (names {h})", cut(&shown, 200)),
                None => format!("{} (names no OS)", cut(&shown, 200)),
            },
        ));
    }
}

/// The stack checks of one decky.
fn stack_checks(d: &DeckySeen, db: Option<&Database>, out: &mut Vec<ProbeOutcome>) {
    let spec = &d.spec;
    let Some(st) = &d.stack else {
        return;
    };
    let want_ttl = net_persona::initial_ttl(spec.os);
    match &st.syn_ack {
        None => out.push(outcome(
            spec,
            "tcp_stack",
            "stack",
            Severity::High,
            "a SYN-ACK to a SYN on an open port",
            st.syn_ack_error.clone().unwrap_or_default(),
        )),
        Some(sig) => {
            let ttl = initial_ttl(sig.ttl);
            out.push(outcome(
                spec,
                "tcp_ttl",
                "stack",
                verdict(ttl == want_ttl, Severity::High),
                format!("initial TTL {want_ttl} ({})", spec.os.name()),
                format!("initial TTL {ttl} (TTL {} at the vantage)", sig.ttl),
            ));
            out.push(tcp_stack(spec, sig, db));
        }
    }
    if let Some((ttl, df)) = st.rst {
        let init = initial_ttl(ttl);
        out.push(outcome(
            spec,
            "tcp_rst_ttl",
            "stack",
            verdict(init == want_ttl, Severity::High),
            format!(
                "a RST with initial TTL {want_ttl} from closed port {}",
                st.rst_port
            ),
            format!(
                "a RST with initial TTL {init} (TTL {ttl}{}) from closed port {}",
                if df { ", DF" } else { "" },
                st.rst_port
            ),
        ));
    } else {
        out.push(outcome(
            spec,
            "tcp_rst_ttl",
            "stack",
            Severity::Medium,
            format!("a RST from closed port {}", st.rst_port),
            "no RST seen",
        ));
    }
}

/// The SYN-ACK against p0f's database: a signature of the persona's family, or at least an
/// option layout p0f lists for that family.
fn tcp_stack(spec: &DeckySpec, sig: &TcpSig, db: Option<&Database>) -> ProbeOutcome {
    let raw = sig.raw_sig(SYN_MSS);
    let Some(db) = db else {
        return outcome(
            spec,
            "tcp_stack",
            "stack",
            Severity::Info,
            "a SYN-ACK p0f's database places in the persona's OS family",
            format!("{raw} (no p0f database to compare with)"),
        );
    };
    let layout = layout_string(&sig.opt_layout, sig.opt_eol_pad);
    let m = db.find(sig, false, SYN_MSS);
    let mut family_layouts: Vec<String> = Vec::new();
    let mut other: BTreeMap<String, ()> = BTreeMap::new();
    for (label, _ttl, l) in db.layouts(false) {
        if label_fits(label, spec.os) {
            if !family_layouts.contains(&l) {
                family_layouts.push(l);
            }
        } else if l == layout {
            other.insert(label.to_owned(), ());
        }
    }
    let expected = format!(
        "a SYN-ACK like p0f's {} signatures (option layouts: {})",
        p0f_names(spec.os).join("/"),
        if family_layouts.is_empty() {
            "none in the database".to_owned()
        } else {
            family_layouts.join(" | ")
        }
    );
    if let Some(m) = &m
        && !label_fits(&m.label, spec.os)
    {
        return outcome(
            spec,
            "tcp_stack",
            "stack",
            Severity::High,
            expected,
            format!(
                "{raw}: p0f says {}{}",
                m.label,
                if m.fuzzy { " (fuzzy)" } else { "" }
            ),
        );
    }
    if m.is_some() || family_layouts.contains(&layout) {
        return outcome(
            spec,
            "tcp_stack",
            "stack",
            Severity::Pass,
            expected,
            match &m {
                Some(m) => format!("{raw}: p0f says {}", m.label),
                None => format!("{raw}: option layout {layout} of the family"),
            },
        );
    }
    if family_layouts.is_empty() {
        return outcome(
            spec,
            "tcp_stack",
            "stack",
            Severity::Info,
            expected,
            format!("{raw}: p0f has no SYN-ACK signature of this family"),
        );
    }
    let others: Vec<String> = other.into_keys().collect();
    outcome(
        spec,
        "tcp_stack",
        "stack",
        Severity::High,
        expected,
        format!(
            "{raw}: option layout {layout}{}",
            if others.is_empty() {
                String::new()
            } else {
                format!(", which p0f lists for {}", others.join(", "))
            }
        ),
    )
}

/// OUIs of device vendors whose MACs do not belong on a server or desktop (cameras, network
/// gear), and of the hypervisors and server vendors that fit every persona but those.
const CAMERA_OUIS: [&str; 4] = ["44:19:b6", "c0:56:e3", "bc:ad:28", "3c:ef:8c"];
const CISCO_OUIS: [&str; 3] = ["00:1b:54", "00:1a:a1", "00:0c:85"];

fn mac_check(d: &DeckySeen, out: &mut Vec<ProbeOutcome>) {
    let spec = &d.spec;
    let Some(mac) = &d.mac else {
        return;
    };
    let oui = mac.get(..8).unwrap_or("");
    let first = u8::from_str_radix(mac.get(..2).unwrap_or("00"), 16).unwrap_or(0);
    let problem = if first & 0x02 != 0 {
        Some("a locally administered (random) address, as containers and honeypot tools use")
    } else if CAMERA_OUIS.contains(&oui) && spec.os != OsFamily::Embedded {
        Some("a camera maker's prefix")
    } else if CISCO_OUIS.contains(&oui) && spec.os != OsFamily::Cisco {
        Some("Cisco's prefix")
    } else {
        None
    };
    out.push(outcome(
        spec,
        "mac_vendor",
        "mac",
        verdict(problem.is_none(), Severity::Medium),
        format!("a vendor prefix that fits a {} host", spec.os.name()),
        match problem {
            Some(p) => format!("{mac}: {p}"),
            None => mac.clone(),
        },
    ));
}

/// The fleet-wide checks: values that must differ between deckies.
fn fleet_checks(all: &[DeckySeen], out: &mut Vec<ProbeOutcome>) {
    let mut keys: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut certs: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    // Page body or ETag → (decky, persona tag).
    let mut pages: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for d in all {
        for s in &d.services {
            match &s.result {
                Ok(Observation::Ssh {
                    host_key: Some(k), ..
                }) => keys.entry(k.clone()).or_default().push(&d.spec.name),
                Ok(Observation::Https(t, _)) if !t.leaf_sha256.is_empty() => certs
                    .entry(t.leaf_sha256.clone())
                    .or_default()
                    .push(&d.spec.name),
                _ => {}
            }
            if let Ok(Observation::Http(h) | Observation::Https(_, h)) = &s.result {
                // The same server software shows the same default page on every host.
                let tag = h
                    .header("server")
                    .unwrap_or("(no Server header)")
                    .to_owned();
                if h.body_len > 0 {
                    pages
                        .entry(format!("body {}", h.body_sha256))
                        .or_default()
                        .push((&d.spec.name, tag.clone()));
                }
                if let Some(e) = h.header("etag") {
                    pages
                        .entry(format!("ETag {e}"))
                        .or_default()
                        .push((&d.spec.name, tag));
                }
            }
        }
    }
    let shared = |map: &BTreeMap<String, Vec<&str>>, name: &str| -> Option<(String, Vec<String>)> {
        map.iter().find_map(|(v, owners)| {
            let others: Vec<String> = owners
                .iter()
                .filter(|o| **o != name)
                .map(|o| o.to_string())
                .collect();
            (owners.contains(&name) && !others.is_empty()).then(|| (v.clone(), others))
        })
    };
    for d in all {
        let name = d.spec.name.as_str();
        let has = |k: ServiceKind| d.services.iter().any(|s| s.kind == k && s.result.is_ok());
        if has(ServiceKind::Ssh) {
            let s = shared(&keys, name);
            out.push(outcome(
                &d.spec,
                "fleet_ssh_host_key",
                "fleet",
                verdict(s.is_none(), Severity::High),
                "an SSH host key no other decky serves",
                match s {
                    Some((k, others)) => format!("{k}, also served by {}", others.join(", ")),
                    None => "a host key of its own".to_owned(),
                },
            ));
        }
        if has(ServiceKind::Https) {
            let s = shared(&certs, name);
            out.push(outcome(
                &d.spec,
                "fleet_tls_certificate",
                "fleet",
                verdict(s.is_none(), Severity::High),
                "a TLS certificate no other decky serves",
                match s {
                    Some((c, others)) => {
                        format!(
                            "certificate SHA-256 {c}, also served by {}",
                            others.join(", ")
                        )
                    }
                    None => "a certificate of its own".to_owned(),
                },
            ));
        }
        if has(ServiceKind::Http) || has(ServiceKind::Https) {
            // The same default page under the same persona and server is what two real
            // installations show; under different ones it is a copy.
            let clash = pages.iter().find_map(|(v, owners)| {
                let mine: Vec<&String> = owners
                    .iter()
                    .filter(|(o, _)| *o == name)
                    .map(|(_, t)| t)
                    .collect();
                let others: Vec<String> = owners
                    .iter()
                    .filter(|(o, t)| *o != name && !mine.contains(&t))
                    .map(|(o, t)| format!("{o} ({t})"))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (!mine.is_empty() && !others.is_empty()).then(|| (v.clone(), others))
            });
            out.push(outcome(
                &d.spec,
                "fleet_http_page",
                "fleet",
                verdict(clash.is_none(), Severity::Medium),
                "no page body or ETag shared with a decky whose Server header differs",
                match clash {
                    Some((v, others)) => format!("{v}, also served by {}", others.join(", ")),
                    None => "pages of its own".to_owned(),
                },
            ));
        }
    }
}

/// Every outcome of a sweep.
pub fn evaluate(all: &[DeckySeen], db: Option<&Database>) -> Vec<ProbeOutcome> {
    let mut out = Vec::new();
    for d in all {
        service_checks(d, &mut out);
        stack_checks(d, db, &mut out);
        mac_check(d, &mut out);
    }
    fleet_checks(all, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use decnet_decoys::fleet::Fleet;

    fn fleet() -> Fleet {
        Fleet::parse(
            "[lan]\nbridge = \"b0\"\nsubnet = \"10.9.0.0/24\"\nhost_ip = \"10.9.0.1\"\n\n\
             [[decky]]\nname = \"lin\"\nip = \"10.9.0.10\"\narchetype = \"web-server\"\n\n\
             [[decky]]\nname = \"win\"\nip = \"10.9.0.11\"\nos = \"windows\"\nservices = [\"ssh\"]\n",
            "test",
        )
        .expect("fleet")
    }

    fn ssh(banner: &str, key: &str) -> ServiceSeen {
        ServiceSeen {
            kind: ServiceKind::Ssh,
            port: 22,
            result: Ok(Observation::Ssh {
                banner: banner.into(),
                host_key: Some(key.into()),
            }),
        }
    }

    fn find<'a>(o: &'a [ProbeOutcome], decky: &str, check: &str) -> &'a ProbeOutcome {
        o.iter()
            .find(|x| x.decky == decky && x.check == check)
            .unwrap_or_else(|| panic!("no {check} for {decky} in {o:#?}"))
    }

    #[test]
    fn a_shared_key_a_wrong_os_banner_and_a_cowrie_default_are_found() {
        let f = fleet();
        let lin = DeckySeen {
            spec: f.deckies[0].clone(),
            services: vec![ssh("SSH-2.0-OpenSSH_6.0p1 Debian-4+deb7u2", "SHA256:same")],
            stack: None,
            mac: Some("00:50:56:01:02:03".into()),
        };
        let win = DeckySeen {
            spec: f.deckies[1].clone(),
            services: vec![ssh(
                "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6",
                "SHA256:same",
            )],
            stack: None,
            mac: Some("02:00:00:00:00:01".into()),
        };
        let o = evaluate(&[lin, win], None);
        assert_eq!(
            find(&o, "lin", "honeypot_default").severity,
            Severity::Critical
        );
        assert_eq!(find(&o, "win", "honeypot_default").severity, Severity::Pass);
        assert_eq!(find(&o, "win", "os_consistency").severity, Severity::High);
        assert_eq!(find(&o, "lin", "os_consistency").severity, Severity::Pass);
        assert_eq!(
            find(&o, "win", "fleet_ssh_host_key").severity,
            Severity::High
        );
        assert!(find(&o, "win", "fleet_ssh_host_key").seen.contains("lin"));
        assert_eq!(find(&o, "win", "mac_vendor").severity, Severity::Medium);
        assert_eq!(find(&o, "lin", "mac_vendor").severity, Severity::Pass);
        assert_eq!(
            find(&o, "win", "banner_matches_persona").severity,
            Severity::Medium
        );
    }

    #[test]
    fn a_service_that_does_not_answer_is_a_finding() {
        let f = fleet();
        let d = DeckySeen {
            spec: f.deckies[1].clone(),
            services: vec![ServiceSeen {
                kind: ServiceKind::Ssh,
                port: 22,
                result: Err(ProbeError::Timeout),
            }],
            stack: None,
            mac: None,
        };
        let o = evaluate(&[d], None);
        assert_eq!(find(&o, "win", "service_answers").severity, Severity::High);
        assert!(o.iter().all(|x| x.check != "fleet_ssh_host_key"));
    }
}
