//! decnet-fingerprint: exact, passive fingerprints of one flow, computed in userspace from what the
//! eBPF sensor ships for a new flow (issue 14), and reused by the prober for what it captures itself.
//!
//! Input: a [`FlowSample`] — the raw IP + TCP headers of the client's SYN and of the server's
//! SYN-ACK exactly as they were on the wire, and the first bytes of each direction's first
//! data-bearing segment(s). Output: [`Fingerprint`]s, each of one [`Kind`] defined by its published
//! method (p0f v3, Salesforce JA3/JA3S, FoxIO JA4, HASSH). Nothing here touches the network, the
//! repository or the kernel: every function is a pure parse of hostile bytes, bounded and fuzzed.

/// What the sensor saw of one new flow. Every field is optional: a flow that never completed a
/// handshake, or never carried data, yields only the fingerprints its bytes allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowSample {
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub proto: u8,
    /// The server (decky) port of the flow.
    pub server_port: u16,
    /// The client's SYN: IPv4 or IPv6 header followed by the TCP header with its options, as on the
    /// wire (no payload needed). `None` when the SYN was not seen.
    pub client_syn: Option<Vec<u8>>,
    /// The server's SYN-ACK, same layout as `client_syn`.
    pub server_synack: Option<Vec<u8>>,
    /// First payload bytes sent by the client (transport payload only, no headers).
    pub client_payload: Option<Payload>,
    /// First payload bytes sent by the server.
    pub server_payload: Option<Payload>,
}

/// The leading payload bytes of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub bytes: Vec<u8>,
    /// True when the direction carried more bytes than were captured (the capture limit cut it):
    /// a fingerprint that needed the cut bytes is marked partial, never computed from a guess.
    pub truncated: bool,
}

/// The fingerprint kinds, each per its published definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// p0f v3 signature of the client's SYN (`ver:ittl:olen:mss:wsize,scale:olayout:quirks:pclass`).
    TcpSyn,
    /// p0f v3 signature of the server's SYN-ACK.
    TcpSynAck,
    /// Salesforce JA3 of a TLS ClientHello (MD5 of the decimal string, GREASE removed).
    Ja3,
    /// Salesforce JA3S of a TLS ServerHello.
    Ja3s,
    /// FoxIO JA4 of a TLS ClientHello (BSD-3-Clause).
    Ja4,
    /// FoxIO JA4S (FoxIO License 1.1: opt-in only).
    Ja4s,
    /// FoxIO JA4H of an HTTP request (FoxIO License 1.1: opt-in only).
    Ja4h,
    /// HASSH of an SSH client's KEXINIT.
    Hassh,
    /// HASSH-server of an SSH server's KEXINIT.
    HasshServer,
    /// The SSH identification string the client sent.
    SshClientBanner,
    /// The SSH identification string the server sent.
    SshServerBanner,
    /// The HTTP request's User-Agent.
    HttpUserAgent,
}

impl Kind {
    /// The name stored in the repository's `fingerprints.kind` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::TcpSyn => "tcp_syn",
            Kind::TcpSynAck => "tcp_synack",
            Kind::Ja3 => "ja3",
            Kind::Ja3s => "ja3s",
            Kind::Ja4 => "ja4",
            Kind::Ja4s => "ja4s",
            Kind::Ja4h => "ja4h",
            Kind::Hassh => "hassh",
            Kind::HasshServer => "hassh_server",
            Kind::SshClientBanner => "ssh_client_banner",
            Kind::SshServerBanner => "ssh_server_banner",
            Kind::HttpUserAgent => "http_user_agent",
        }
    }
}

/// One fingerprint of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub kind: Kind,
    /// The fingerprint itself (a hash, a signature, a banner — bounded, printable).
    pub value: String,
    /// The string the method hashes, where it has one (JA3's decimal string, HASSH's lists, JA4's
    /// `_r` form); `None` otherwise.
    pub raw: Option<String>,
    /// An OS / tool label where the method has a database (p0f's), else `None`.
    pub label: Option<String>,
    /// True when the input was cut short and the value is known to be incomplete.
    pub partial: bool,
}
