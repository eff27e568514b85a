//! Archetypes: named decky roles that give an OS family and a set of services when the fleet file
//! does not spell them out.
use super::OsFamily;
use super::service::{Login, ServiceKind};

/// One archetype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archetype {
    pub name: &'static str,
    pub os: OsFamily,
    pub services: &'static [ServiceKind],
    /// What it pretends to be, for `--help` and the docs.
    pub about: &'static str,
}

use ServiceKind::*;

pub const ARCHETYPES: &[Archetype] = &[
    Archetype {
        name: "web-server",
        os: OsFamily::Linux,
        services: &[Ssh, Http, Https],
        about: "Linux web server (nginx), ssh for its admins",
    },
    Archetype {
        name: "file-server",
        os: OsFamily::Linux,
        services: &[Ssh, Ftp, Http],
        about: "Linux file server with FTP and a web index",
    },
    Archetype {
        name: "database",
        os: OsFamily::Linux,
        services: &[Ssh, Mysql, Redis],
        about: "Linux database host: MySQL and Redis",
    },
    Archetype {
        name: "mail-server",
        os: OsFamily::Linux,
        services: &[Ssh, Smtp, Http],
        about: "Linux mail relay with webmail",
    },
    Archetype {
        name: "iot-camera",
        os: OsFamily::Embedded,
        services: &[Telnet, Http],
        about: "IP camera: telnet console and a web UI",
    },
    Archetype {
        name: "windows-workstation",
        os: OsFamily::Windows,
        services: &[Http, Ftp],
        about: "Windows desktop with a local web app and FTP share",
    },
    Archetype {
        name: "windows-server",
        os: OsFamily::WindowsServer,
        services: &[Http, Https, Ftp, Smtp],
        about: "Windows Server: IIS, FTP, SMTP",
    },
    Archetype {
        name: "router",
        os: OsFamily::Cisco,
        services: &[Telnet, Ssh, Http],
        about: "Cisco router: telnet/ssh console and web admin",
    },
];

pub fn find(name: &str) -> Option<&'static Archetype> {
    ARCHETYPES.iter().find(|a| a.name == name)
}

pub fn names() -> Vec<&'static str> {
    ARCHETYPES.iter().map(|a| a.name).collect()
}

/// Credentials a service accepts when the fleet file lists none: one weak, plausible login for
/// the interactive services so an attacker can get "in" and have their commands recorded;
/// nothing for the others (every attempt is still captured).
pub fn default_accept(kind: ServiceKind) -> Vec<Login> {
    match kind {
        Ssh | Telnet => vec![Login {
            username: "admin".into(),
            password: "admin123".into(),
        }],
        _ => Vec::new(),
    }
}
