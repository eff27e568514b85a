//! What makes a decky's network stack look like its OS family: the per-namespace sysctls
//! (initial TTL, TCP timestamps, SACK, window scaling, ECN) and a MAC address whose vendor prefix
//! fits the persona.
use super::{DeckySpec, OsFamily};

/// One sysctl under `/proc/sys/` and the value to write, inside the decky's namespace.
pub type Sysctl = (&'static str, &'static str);

/// The sysctls for an OS family. Values follow each family's defaults as passive fingerprinting
/// (p0f, nmap -O) sees them in a SYN-ACK: Windows answers with TTL 128 and no TCP timestamps;
/// Linux and BSD with TTL 64 and timestamps; embedded stacks and Cisco IOS with TTL 255, no
/// timestamps, no window scaling and no SACK.
pub fn sysctls(os: OsFamily) -> &'static [Sysctl] {
    const TTL: &str = "net/ipv4/ip_default_ttl";
    const TS: &str = "net/ipv4/tcp_timestamps";
    const SACK: &str = "net/ipv4/tcp_sack";
    const WS: &str = "net/ipv4/tcp_window_scaling";
    const ECN: &str = "net/ipv4/tcp_ecn";
    match os {
        OsFamily::Linux => &[(TTL, "64"), (TS, "1"), (SACK, "1"), (WS, "1"), (ECN, "2")],
        OsFamily::Bsd => &[(TTL, "64"), (TS, "1"), (SACK, "1"), (WS, "1"), (ECN, "0")],
        OsFamily::Windows | OsFamily::WindowsServer => {
            &[(TTL, "128"), (TS, "0"), (SACK, "1"), (WS, "1"), (ECN, "0")]
        }
        OsFamily::Embedded | OsFamily::Cisco => {
            &[(TTL, "255"), (TS, "0"), (SACK, "0"), (WS, "0"), (ECN, "0")]
        }
    }
}

/// The initial TTL the persona's packets carry.
pub fn initial_ttl(os: OsFamily) -> u8 {
    match os {
        OsFamily::Linux | OsFamily::Bsd => 64,
        OsFamily::Windows | OsFamily::WindowsServer => 128,
        OsFamily::Embedded | OsFamily::Cisco => 255,
    }
}

/// Vendor prefix (OUI) for the persona: VMware for Linux servers, Microsoft Hyper-V for Windows,
/// Supermicro for BSD, Hikvision for embedded devices, Cisco for Cisco.
pub fn oui(os: OsFamily) -> [u8; 3] {
    match os {
        OsFamily::Linux => [0x00, 0x50, 0x56],
        OsFamily::Windows | OsFamily::WindowsServer => [0x00, 0x15, 0x5d],
        OsFamily::Bsd => [0x00, 0x25, 0x90],
        OsFamily::Embedded => [0x44, 0x19, 0xb6],
        OsFamily::Cisco => [0x00, 0x1b, 0x54],
    }
}

/// FNV-1a, for stable per-name values (MAC suffixes, interface names).
pub fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The decky's MAC: the persona's OUI and three bytes derived from its name (stable across
/// deploys; the fleet validation refuses two deckies whose MACs clash).
pub fn mac(spec: &DeckySpec) -> [u8; 6] {
    let [a, b, c] = oui(spec.os);
    let h = fnv1a(&spec.name).to_be_bytes();
    [a, b, c, h[1], h[2], h[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}
