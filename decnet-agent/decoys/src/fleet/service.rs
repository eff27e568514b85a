//! The services of a decky as the fleet file describes them: which protocol ([`ServiceKind`]),
//! on which port, with which banner and accepted logins ([`ServiceSpec`]). The decoy services
//! (`crate::decky::services`) serve what these say; the fleet file never depends on how.
use serde::{Deserialize, Serialize};

/// Which protocol a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Ssh,
    Http,
    Https,
    Ftp,
    Telnet,
    Smtp,
    Redis,
    Mysql,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 8] = [
        Self::Ssh,
        Self::Http,
        Self::Https,
        Self::Ftp,
        Self::Telnet,
        Self::Smtp,
        Self::Redis,
        Self::Mysql,
    ];

    /// The name used in the fleet file and as APP-NAME of the service's log lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ssh => "ssh",
            Self::Http => "http",
            Self::Https => "https",
            Self::Ftp => "ftp",
            Self::Telnet => "telnet",
            Self::Smtp => "smtp",
            Self::Redis => "redis",
            Self::Mysql => "mysql",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::Ssh => 22,
            Self::Http => 80,
            Self::Https => 443,
            Self::Ftp => 21,
            Self::Telnet => 23,
            Self::Smtp => 25,
            Self::Redis => 6379,
            Self::Mysql => 3306,
        }
    }
}

/// A username/password pair a service accepts (e.g. into the ssh fake shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// One service of one decky, as resolved from the fleet file (archetype defaults applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub kind: ServiceKind,
    /// TCP port it listens on.
    pub port: u16,
    /// Protocol banner / version string (ssh identification, ftp/smtp greeting, mysql server
    /// version, http Server header, telnet pre-login banner). None → persona default.
    #[serde(default)]
    pub banner: Option<String>,
    /// Credentials that succeed (ssh fake shell, ftp, telnet…). Every attempt is logged either way.
    #[serde(default)]
    pub accept: Vec<Login>,
}
