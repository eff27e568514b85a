//! The prober's vantage point: a network namespace of its own on the decoy bridge, with an
//! address of the decoy subnet that is neither the host's nor a decky's. `decnet deploy`
//! creates it (next to the deckies' namespaces, removed with them); the prober opens its
//! sockets inside it, so every probe reaches the deckies the way an attacker's on the bridge
//! would, and the correlator is told (the repository's `probe_vantages`) never to count that
//! address as an attacker.
use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use decnet_decoys::fleet::Fleet;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// The namespace of the prober of `bridge` (a decky name cannot hold a dot, so this never
/// clashes with a decky's `decnet-<name>`).
pub fn netns_name(bridge: &str) -> String {
    format!("decnet-prober.{bridge}")
}

/// The decky name the deployment uses for the vantage's veth (`veth_name(bridge, VETH_KEY)`).
pub const VETH_KEY: &str = "prober.";

/// The vantage's address: the highest host address of the decoy subnet that is neither the
/// host's nor a decky's.
pub fn address(fleet: &Fleet) -> anyhow::Result<Ipv4Addr> {
    let lan = &fleet.lan;
    let network = u32::from(lan.network);
    let size = if lan.prefix >= 31 {
        bail!(
            "the decoy subnet /{} has no room for the prober",
            lan.prefix
        )
    } else {
        1u32 << (32 - u32::from(lan.prefix))
    };
    let used: std::collections::HashSet<Ipv4Addr> = fleet
        .deckies
        .iter()
        .map(|d| d.ip)
        .chain(std::iter::once(lan.host_ip))
        .collect();
    (1..size - 1)
        .rev()
        .map(|i| Ipv4Addr::from(network + i))
        .find(|ip| !used.contains(ip))
        .context("the decoy subnet has no free address for the prober's vantage")
}

/// Where probes are sent from.
#[derive(Debug, Clone)]
pub struct Vantage {
    /// `None`: the prober's own namespace (tests on loopback, `--vantage-netns none`).
    ns: Option<Arc<OwnedFd>>,
    pub name: String,
}

impl Vantage {
    /// The prober's own namespace.
    pub fn here() -> Vantage {
        Vantage {
            ns: None,
            name: "(own namespace)".into(),
        }
    }

    /// The named namespace (`/run/netns/<name>`).
    pub fn open(name: &str) -> anyhow::Result<Vantage> {
        let path = PathBuf::from("/run/netns").join(name);
        let f = File::open(&path).with_context(|| {
            format!(
                "cannot open the prober's vantage namespace {} (created by `decnet deploy`; \
                 give --vantage-netns none to probe from the prober's own namespace)",
                path.display()
            )
        })?;
        Ok(Vantage {
            ns: Some(Arc::new(f.into())),
            name: name.to_owned(),
        })
    }

    /// Runs `f` on a thread inside the vantage namespace (or here).
    pub fn inside<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<R> + Send + 'static,
    ) -> io::Result<R> {
        let Some(ns) = &self.ns else {
            return f();
        };
        let fd = ns.try_clone()?;
        std::thread::spawn(move || {
            // SAFETY: setns on this (new, short-lived) thread only, with a valid namespace fd.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }

    /// A TCP connection to `addr` from the vantage, within `timeout`.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let sock = self.inside(|| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            s.set_nonblocking(true)?;
            s.set_cloexec(true)?;
            Ok(s)
        })?;
        let sock = TcpSocket::from_std_stream(std::net::TcpStream::from(sock));
        match tokio::time::timeout(timeout, sock.connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// A raw IPv4 socket that receives a copy of every TCP segment reaching the vantage (IP
    /// header included): how the SYN-ACK and RST of a decky are seen. Needs CAP_NET_RAW.
    pub fn raw_tcp(&self) -> io::Result<Socket> {
        self.inside(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
            s.set_cloexec(true)?;
            s.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(s)
        })
    }

    /// The vantage's neighbour table (`/proc/net/arp` as its namespace sees it): IP → MAC.
    pub fn arp_table(&self) -> io::Result<Vec<(Ipv4Addr, String)>> {
        let text = self.inside(|| std::fs::read_to_string("/proc/thread-self/net/arp"))?;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let ip = f.first()?.parse().ok()?;
                let mac = f.get(3)?.to_ascii_lowercase();
                (mac != "00:00:00:00:00:00").then_some((ip, mac))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vantage_takes_the_highest_free_address() {
        let fleet = Fleet::parse(
            "[lan]\nbridge = \"b0\"\nsubnet = \"10.9.0.0/24\"\nhost_ip = \"10.9.0.1\"\n\n\
             [[decky]]\nname = \"a\"\nip = \"10.9.0.254\"\narchetype = \"web-server\"\n",
            "test",
        )
        .expect("fleet");
        assert_eq!(
            address(&fleet).expect("address"),
            Ipv4Addr::new(10, 9, 0, 253)
        );
        assert_eq!(netns_name("b0"), "decnet-prober.b0");
    }
}
