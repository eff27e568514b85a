//! # fleet — the fleet file (TOML): the decoy LAN and its deckies, archetypes, validation.
//! Being filled in by the fleet issue; the types below are the contract the other modules use.
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::decky::services::ServiceSpec;

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

/// One decky, resolved (archetype defaults applied, validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeckySpec {
    pub name: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
    pub os: OsFamily,
    pub archetype: Option<String>,
    pub services: Vec<ServiceSpec>,
}
