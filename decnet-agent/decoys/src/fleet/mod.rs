//! # fleet — the fleet file: the decoy LAN and its deckies
//!
//! **Input:** a TOML file (`deploy/fleet.example.toml` is the documented example):
//!
//! ```toml
//! [lan]
//! bridge = "decnet0"          # created by `decnet deploy` if it does not exist
//! subnet = "10.77.0.0/24"
//! host_ip = "10.77.0.1"       # the host's address on the bridge: gateway, collector listener
//! # uplink = "eth1"           # optional interface to enslave to the bridge
//!
//! [[decky]]
//! name = "web-01"
//! ip = "10.77.0.10"
//! archetype = "web-server"    # gives os and services when they are not set
//! # os = "linux"              # linux, windows, windows_server, bsd, embedded, cisco
//! # hostname = "web-01"
//! # services = ["ssh", { kind = "http", port = 8080, banner = "nginx/1.24.0" }]
//! # mutate_interval = "12h"  # decnet mutate rotates its services within the archetype's pool
//! ```
//!
//! **Output:** a validated [`Fleet`]: every decky resolved to a [`DeckySpec`] (archetype defaults
//! applied, ports filled in). Every mistake is reported at once, each naming the decky and the
//! field ([`FleetError`]).
pub mod archetype;
pub mod diff;
pub mod persona;
pub mod rotate;
pub mod service;

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, path::Path};

use serde::{Deserialize, Serialize};

pub use self::service::{Login, ServiceKind, ServiceSpec};

/// The OS family a decky pretends to be: drives TTL and TCP stack sysctls, MAC vendor, banners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsFamily {
    Linux,
    Windows,
    WindowsServer,
    Bsd,
    Embedded,
    Cisco,
}

impl OsFamily {
    pub fn name(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Windows => "windows",
            Self::WindowsServer => "windows_server",
            Self::Bsd => "bsd",
            Self::Embedded => "embedded",
            Self::Cisco => "cisco",
        }
    }
}

/// One decky, resolved (archetype defaults applied, validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeckySpec {
    pub name: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
    pub os: OsFamily,
    pub archetype: Option<String>,
    pub services: Vec<ServiceSpec>,
    /// `mutate_interval` in seconds: how often `decnet mutate` rotates the services (None: never).
    #[serde(default)]
    pub mutate_interval: Option<u64>,
}

/// The decoy LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lan {
    pub bridge: String,
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub host_ip: Ipv4Addr,
    pub uplink: Option<String>,
    /// Port of the collector on `host_ip` (UDP and TCP) the deckies log to.
    pub collector_port: u16,
}

impl Lan {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !prefix_mask(self.prefix))
    }

    /// `host_ip:collector_port`.
    pub fn collector(&self) -> std::net::SocketAddr {
        (self.host_ip, self.collector_port).into()
    }
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// A validated fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    pub lan: Lan,
    pub deckies: Vec<DeckySpec>,
}

/// Everything wrong with a fleet file, one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetError {
    pub source: String,
    pub problems: Vec<String>,
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem{}",
            self.source,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FleetError {}

// ---- the file as written -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFleet {
    lan: FileLan,
    #[serde(default)]
    decky: Vec<FileDecky>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLan {
    bridge: String,
    subnet: String,
    host_ip: Ipv4Addr,
    #[serde(default)]
    uplink: Option<String>,
    #[serde(default)]
    collector_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDecky {
    name: String,
    ip: Ipv4Addr,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    archetype: Option<String>,
    #[serde(default)]
    services: Option<Vec<FileService>>,
    #[serde(default)]
    mutate_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileService {
    Name(String),
    Full(FullService),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullService {
    kind: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    banner: Option<String>,
    #[serde(default)]
    accept: Vec<Login>,
}

/// The default collector port on the host's bridge address.
pub const DEFAULT_COLLECTOR_PORT: u16 = 5514;

/// Longest decky name: it becomes part of namespace names, log HOSTNAMEs and state paths.
pub const MAX_NAME: usize = 32;

impl Fleet {
    /// Reads and validates a fleet file.
    pub fn load(path: &Path) -> anyhow::Result<Fleet> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the fleet file {}: {e} (see deploy/fleet.example.toml)",
                path.display()
            )
        })?;
        Ok(Fleet::parse(&text, &path.display().to_string())?)
    }

    /// Parses and validates fleet TOML; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Fleet, FleetError> {
        let err = |problems| FleetError {
            source: source.to_owned(),
            problems,
        };
        let file: FileFleet = toml::from_str(text).map_err(|e| {
            err(vec![
                e.to_string().trim_end().replace('\n', "\n    ").to_string(),
            ])
        })?;
        let mut problems = Vec::new();
        let lan = resolve_lan(&file.lan, &mut problems);
        let mut deckies = Vec::new();
        for (i, d) in file.decky.iter().enumerate() {
            if let Some(spec) = resolve_decky(i, d, &mut problems) {
                deckies.push(spec);
            }
        }
        if let Some(lan) = &lan {
            let all: Vec<(&str, Ipv4Addr)> =
                file.decky.iter().map(|d| (d.name.as_str(), d.ip)).collect();
            check_fleet(lan, &all, &deckies, &mut problems);
        }
        if file.decky.is_empty() {
            problems.push("no [[decky]] entries: a fleet needs at least one decky".into());
        }
        match lan {
            Some(lan) if problems.is_empty() => Ok(Fleet { lan, deckies }),
            _ => Err(err(problems)),
        }
    }

    /// Checks a fleet built in code (the mutator's changes to a running fleet) with the rules a
    /// fleet file is checked with: names, IPs, ports, MACs across deckies. Every problem at once.
    pub fn check(&self) -> Result<(), FleetError> {
        let mut problems = Vec::new();
        let all: Vec<(&str, Ipv4Addr)> = self
            .deckies
            .iter()
            .map(|d| (d.name.as_str(), d.ip))
            .collect();
        check_fleet(&self.lan, &all, &self.deckies, &mut problems);
        for d in &self.deckies {
            let mut ports = BTreeMap::new();
            for s in &d.services {
                if let Some(other) = ports.insert(s.port, s.kind) {
                    problems.push(format!(
                        "decky {:?}: port {} is used by both {} and {}",
                        d.name,
                        s.port,
                        other.name(),
                        s.kind.name()
                    ));
                }
            }
            if d.services.is_empty() {
                problems.push(format!("decky {:?}: services is empty", d.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FleetError {
                source: "the changed fleet".into(),
                problems,
            })
        }
    }

    /// The decky named `name`.
    pub fn decky(&self, name: &str) -> anyhow::Result<&DeckySpec> {
        self.deckies.iter().find(|d| d.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.deckies.iter().map(|d| d.name.as_str()).collect();
            anyhow::anyhow!(
                "no decky named {name:?} in the fleet (it has: {})",
                names.join(", ")
            )
        })
    }
}

fn resolve_lan(lan: &FileLan, problems: &mut Vec<String>) -> Option<Lan> {
    let mut ok = true;
    if lan.bridge.is_empty()
        || lan.bridge.len() > 15
        || !lan
            .bridge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        problems.push(format!(
            "lan.bridge {:?}: an interface name is 1-15 characters of letters, digits, '-', '_', '.'",
            lan.bridge
        ));
        ok = false;
    }
    let subnet = match parse_cidr(&lan.subnet) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("lan.subnet {:?}: {e}", lan.subnet));
            None
        }
    };
    if let Some(uplink) = &lan.uplink
        && (uplink.is_empty() || uplink.len() > 15 || uplink == &lan.bridge)
    {
        problems.push(format!(
            "lan.uplink {uplink:?}: must be an existing interface name (1-15 characters) other than the bridge"
        ));
        ok = false;
    }
    let (network, prefix) = subnet?;
    let lan = Lan {
        bridge: lan.bridge.clone(),
        network,
        prefix,
        host_ip: lan.host_ip,
        uplink: lan.uplink.clone(),
        collector_port: lan.collector_port.unwrap_or(DEFAULT_COLLECTOR_PORT),
    };
    if !lan.contains(lan.host_ip) || lan.host_ip == network || lan.host_ip == lan.broadcast() {
        problems.push(format!(
            "lan.host_ip {} is not a host address of {}/{}",
            lan.host_ip, network, prefix
        ));
        ok = false;
    }
    if lan.collector_port == 0 {
        problems.push("lan.collector_port must not be 0".into());
        ok = false;
    }
    ok.then_some(lan)
}

/// Longest `mutate_interval`: a year.
pub const MAX_INTERVAL_SECS: u64 = 366 * 86_400;

/// A duration like `30m`, `12h`, `7d`, `45s` (a whole number and one unit: s, m, h, d), from 1 s
/// to a year; seconds.
pub fn parse_interval(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let unit = t.chars().last().ok_or("empty (use e.g. 30m, 12h, 7d)")?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "{s:?}: expected a number and a unit s, m, h or d (e.g. 30m, 12h, 7d)"
            ));
        }
    };
    let n: u64 = t[..t.len() - 1].parse().map_err(|_| {
        format!("{s:?}: expected a whole number before the unit (e.g. 30m, 12h, 7d)")
    })?;
    match n.checked_mul(mult) {
        Some(v) if (1..=MAX_INTERVAL_SECS).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: must be from 1s to 366d")),
    }
}

/// `a.b.c.d/len` with no host bits set; prefix 8..=30 (room for a host and deckies).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or("expected ADDRESS/PREFIX, e.g. 10.77.0.0/24")?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .ok_or_else(|| format!("prefix {len:?} must be a number from 8 to 30"))?;
    if u32::from(ip) & !prefix_mask(len) != 0 {
        let net = Ipv4Addr::from(u32::from(ip) & prefix_mask(len));
        return Err(format!("host bits are set (did you mean {net}/{len}?)"));
    }
    Ok((ip, len))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn parse_os(s: &str) -> Option<OsFamily> {
    Some(match s {
        "linux" => OsFamily::Linux,
        "windows" => OsFamily::Windows,
        "windows_server" => OsFamily::WindowsServer,
        "bsd" => OsFamily::Bsd,
        "embedded" => OsFamily::Embedded,
        "cisco" => OsFamily::Cisco,
        _ => return None,
    })
}

fn parse_kind(s: &str) -> Option<ServiceKind> {
    ServiceKind::ALL.into_iter().find(|k| k.name() == s)
}

fn known_kinds() -> String {
    ServiceKind::ALL.map(|k| k.name()).join(", ")
}

fn resolve_decky(i: usize, d: &FileDecky, problems: &mut Vec<String>) -> Option<DeckySpec> {
    let at = if d.name.is_empty() {
        format!("decky #{}", i + 1)
    } else {
        format!("decky {:?}", d.name)
    };
    let before = problems.len();
    if !valid_name(&d.name) {
        problems.push(format!(
            "{at}: name must be 1-{MAX_NAME} characters of a-z, 0-9 and '-' (not at either end)"
        ));
    }
    let archetype = match d.archetype.as_deref() {
        None => None,
        Some(a) => match archetype::find(a) {
            Some(a) => Some(a),
            None => {
                problems.push(format!(
                    "{at}: unknown archetype {a:?} (known: {})",
                    archetype::names().join(", ")
                ));
                None
            }
        },
    };
    let os = match d.os.as_deref() {
        Some(s) => parse_os(s).or_else(|| {
            problems.push(format!(
                "{at}: unknown os {s:?} (known: linux, windows, windows_server, bsd, embedded, cisco)"
            ));
            None
        }),
        None => Some(archetype.map_or(OsFamily::Linux, |a| a.os)),
    };
    let hostname = d.hostname.clone().unwrap_or_else(|| d.name.clone());
    if !valid_hostname(&hostname) {
        problems.push(format!(
            "{at}: hostname {hostname:?} is not a valid host name"
        ));
    }
    let mut services = Vec::new();
    match &d.services {
        Some(list) => {
            for s in list {
                let (kind, port, banner, accept) = match s {
                    FileService::Name(n) => (n.as_str(), None, None, Vec::new()),
                    FileService::Full(f) => {
                        (f.kind.as_str(), f.port, f.banner.clone(), f.accept.clone())
                    }
                };
                let Some(kind) = parse_kind(kind) else {
                    problems.push(format!(
                        "{at}: unknown service {kind:?} (known: {})",
                        known_kinds()
                    ));
                    continue;
                };
                if port == Some(0) {
                    problems.push(format!("{at}: service {}: port 0", kind.name()));
                }
                if let Some(b) = &banner
                    && (b.len() > 255 || b.chars().any(|c| c.is_control()))
                {
                    problems.push(format!(
                        "{at}: service {}: banner must be ≤ 255 characters without control characters",
                        kind.name()
                    ));
                }
                services.push(ServiceSpec {
                    kind,
                    port: port.unwrap_or(kind.default_port()),
                    banner,
                    accept: if accept.is_empty() {
                        archetype::default_accept(kind)
                    } else {
                        accept
                    },
                });
            }
        }
        None => match archetype {
            Some(a) => services.extend(a.services.iter().map(|&kind| ServiceSpec {
                kind,
                port: kind.default_port(),
                banner: None,
                accept: archetype::default_accept(kind),
            })),
            None => problems.push(format!(
                "{at}: no services and no archetype to take them from"
            )),
        },
    }
    if d.services.as_ref().is_some_and(|s| s.is_empty()) {
        problems.push(format!("{at}: services is empty"));
    }
    let mut ports: BTreeMap<u16, ServiceKind> = BTreeMap::new();
    for s in &services {
        if let Some(other) = ports.insert(s.port, s.kind) {
            problems.push(format!(
                "{at}: port {} is used by both {} and {}",
                s.port,
                other.name(),
                s.kind.name()
            ));
        }
    }
    let mutate_interval = match d.mutate_interval.as_deref().map(parse_interval) {
        None => None,
        Some(Ok(secs)) => Some(secs),
        Some(Err(e)) => {
            problems.push(format!("{at}: mutate_interval: {e}"));
            None
        }
    };
    if mutate_interval.is_some() && archetype.is_none() {
        problems.push(format!(
            "{at}: mutate_interval needs an archetype (its services rotate within the archetype's pool)"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(DeckySpec {
        mutate_interval,
        name: d.name.clone(),
        ip: d.ip,
        hostname,
        os: os?,
        archetype: archetype.map(|a| a.name.to_owned()),
        services,
    })
}

/// Checks across deckies: `all` is every decky as written (even those with their own
/// problems), `resolved` the valid ones.
fn check_fleet(
    lan: &Lan,
    all: &[(&str, Ipv4Addr)],
    resolved: &[DeckySpec],
    problems: &mut Vec<String>,
) {
    let mut names = BTreeMap::new();
    let mut ips = BTreeMap::new();
    let mut macs = BTreeMap::new();
    for d in resolved {
        if let Some(other) = macs.insert(persona::mac(d), d.name.as_str())
            && other != d.name
        {
            problems.push(format!(
                "decky {:?}: its MAC address {} (derived from the name) clashes with decky {other:?}'s; rename one",
                d.name,
                persona::mac_string(persona::mac(d))
            ));
        }
    }
    for &(name, ip) in all {
        if let Some(()) = names.insert(name, ()) {
            problems.push(format!("decky {name:?}: duplicate name"));
        }
        if let Some(other) = ips.insert(ip, name) {
            problems.push(format!(
                "decky {name:?}: ip {ip} is already used by decky {other:?}"
            ));
        }
        if !lan.contains(ip) {
            problems.push(format!(
                "decky {name:?}: ip {ip} is outside the subnet {}/{}",
                lan.network, lan.prefix
            ));
        } else if ip == lan.network || ip == lan.broadcast() {
            problems.push(format!(
                "decky {name:?}: ip {ip} is the subnet's network or broadcast address"
            ));
        } else if ip == lan.host_ip {
            problems.push(format!(
                "decky {name:?}: ip {ip} is the host's address (lan.host_ip)"
            ));
        }
    }
}

#[cfg(test)]
mod tests;
