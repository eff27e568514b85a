//! decnet's end-to-end harness, shared by the tests in `tests/tests/` and by `xtask` (`run`, `bench`).
//!
//! - [`netns`]: a lab of network namespaces: one "switch" namespace with a Linux bridge, and hosts
//!   joined to it by veth pairs; run code or processes inside any of them.
//! - [`traffic`]: deterministic traffic from plain sockets (TCP request/response, UDP, ICMP echo).
//! - [`frames`]: hand-built Ethernet frames (valid and hostile) and an AF_PACKET sender.
//! - [`flood`]: raw-frame floods (sendmmsg, qdisc bypass): repeated frames, or a paced scan of new
//!   5-tuples.
//! - [`oracle`]: an independent ground truth: AF_PACKET capture at every bridge port's ingress,
//!   counted per unidirectional 5-tuple.
//! - [`sensor`]: runs the real `decnet sniffer` binary in the lab and reads back its DB and summary.
//! - [`fleet`]: runs the real `decnet deploy` with a test's own fleet file, attacker namespaces on
//!   its bridge, and reads back the deployment record, events, credentials and leases.
//! - [`collector`]: runs the real `decnet collect` binary on loopback (ephemeral ports) and reads
//!   back its events, credentials and summary; syslog clients (UDP, TCP octet counting or LF), a
//!   private `rsyslogd`, and the checks for `logger` and `rsyslogd`.
//!
//! Everything here needs root (namespaces, raw sockets, BPF). A missing prerequisite is an error
//! saying what to install or run, never a silent skip: see [`prereq`].

pub mod collector;
pub mod fleet;
pub mod flood;
pub mod frames;
pub mod netns;
pub mod oracle;
pub mod problems;
pub mod sensor;
pub mod traffic;

/// Checks what every lab needs: root, and the `ip` command (iproute2). The error says what to do.
pub fn prereq() -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "decnet's end-to-end tests need root (network namespaces, raw sockets, BPF): run them as root, \
             e.g. `sudo -E cargo test -p decnet-e2e` or `cargo xtask test`"
        );
    }
    if netns::ip_binary().is_none() {
        anyhow::bail!(
            "the `ip` command (iproute2) was not found on PATH nor in /usr/sbin, /sbin, /usr/bin, /bin: \
             install it (`apt-get install iproute2`)"
        );
    }
    Ok(())
}
