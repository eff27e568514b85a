//! A lab of network namespaces: a "switch" namespace holding a Linux bridge, and hosts, each in
//! its own namespace and joined to the bridge by a veth pair.
//!
//! ```text
//!   host ns "…-attacker"        switch ns "…-sw"                    host ns "…-decky1"
//!   eth0 10.213.0.11  ──veth──  dn…p1 ─┐                 ┌─ dn…p2  ──veth──  eth0 10.213.0.12
//!        fd00:dec::11                  └──── bridge ─────┘                        fd00:dec::12
//! ```
//!
//! The lab is built to be quiet and deterministic: IPv6 is off in the switch namespace; hosts have
//! no link-local address, no DAD, no router solicitations, and a 1 ms MLD report interval (their
//! few MLD reports go out while the lab is built); every host has permanent ARP and NDP entries for
//! every other host, so no resolution traffic happens during a measurement. TSO, GSO and GRO are
//! off on both ends of every veth, so every frame a socket sends is one frame on the wire, and no
//! receive path merges frames. With [`LabOptions::fixed_tcp_headers`], TCP timestamps, SACK and
//! window scaling are off in the hosts: SYN and SYN-ACK carry only the MSS option (24-byte TCP
//! header), every other segment has a 20-byte header.
//!
//! Names are unique per process and lab (`dn<pid>x<n>…`, base 32), interface names stay within 15
//! characters, and [`Lab`]'s `Drop` deletes every namespace it created (also on panic). Namespaces
//! left behind by a killed test run (whose pid is gone) are deleted by the next [`Lab::new`].

use std::{
    ffi::CString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

/// The IPv4 test subnet (a /24); host `i` (1-based) is `.10 + i`.
pub const V4_NET: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 0);
/// The IPv6 test subnet (ULA, a /64); host `i` is `::10 + i` (hex digits of the decimal number).
pub const V6_NET: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xdec, 0, 0, 0, 0, 0, 0);
/// Name of a host's interface inside its namespace.
pub const HOST_IF: &str = "eth0";

const NETNS_DIR: &str = "/run/netns";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where the `ip` binary is, if anywhere.
pub fn ip_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
}

/// Runs `ip ARGS…`; an error carries the command line and its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let bin = ip_binary().ok_or_else(|| {
        anyhow!("`ip` (iproute2) not found: install it (apt-get install iproute2)")
    })?;
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Moves the calling thread into the network namespace `ns` (a name under /run/netns). Sockets
/// the thread creates afterwards belong to that namespace; /proc/sys/net is that namespace's.
pub fn enter(ns: &str) -> Result<()> {
    let path = Path::new(NETNS_DIR).join(ns);
    let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a valid fd; CLONE_NEWNET only changes this thread's network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns into {ns}"));
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside namespace `ns` and returns its result (a panic in `f` is
/// propagated). The closure may borrow from the caller.
pub fn run_in<T: Send, F: FnOnce() -> T + Send>(ns: &str, f: F) -> Result<T> {
    std::thread::scope(|s| {
        let h = s.spawn(|| -> Result<T> {
            enter(ns)?;
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Starts `f` on a background thread inside namespace `ns`. Returns once the thread is in the
/// namespace (or with the error that kept it out).
pub fn spawn_in<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
    ns: &str,
    f: F,
) -> Result<JoinHandle<T>> {
    let (tx, rx) = mpsc::channel();
    let ns_owned = ns.to_owned();
    let h = std::thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            match enter(&ns_owned) {
                Ok(()) => {
                    let _ = tx.send(Ok(()));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    // The caller gets the error; this thread's result is never looked at.
                    panic!("could not enter {ns_owned}");
                }
            }
            f()
        })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(e)
        }
        Err(_) => Err(anyhow!("thread for namespace {ns} died before entering it")),
    }
}

/// Writes a sysctl of the calling thread's network namespace (`key` like "net/ipv4/tcp_sack").
fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

/// Like [`sysctl`], but a sysctl that does not exist (module not loaded, older kernel) is fine.
fn sysctl_if_exists(key: &str, value: &str) -> Result<()> {
    if Path::new("/proc/sys").join(key).exists() {
        sysctl(key, value)
    } else {
        Ok(())
    }
}

/// ifindex of `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("if_nametoindex({name})"));
    }
    Ok(idx)
}

// --- ethtool ioctls (no ethtool binary on the machine) ---------------------------------------

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool_value(fd: libc::c_int, ifname: &str, cmd: u32, data: u32) -> std::io::Result<u32> {
    let mut v = EthtoolValue { cmd, data };
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: &mut v as *mut _ as *mut libc::c_void,
        _pad: [0; 16],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq whose data points at a live ethtool_value.
    if unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v.data)
}

/// Turns TSO, GSO and GRO off on `ifname` (in the calling thread's namespace) and checks they are
/// off. Without them every frame a socket sends is one frame on the wire and receive paths merge
/// nothing, so per-packet counts are exact.
pub fn offloads_off(ifname: &str) -> Result<()> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for ethtool ioctl");
    }
    // SAFETY: we own the fd.
    let _guard = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    for (set, get, what) in [
        (ETHTOOL_STSO, ETHTOOL_GTSO, "tso"),
        (ETHTOOL_SGSO, ETHTOOL_GGSO, "gso"),
        (ETHTOOL_SGRO, ETHTOOL_GGRO, "gro"),
    ] {
        // EOPNOTSUPP when the feature is not changeable, e.g. veth's GSO/TSO once its peer has an
        // XDP program (then it is off anyway): what counts is that it reads back as off.
        let set_result = ethtool_value(fd, ifname, set, 0);
        let now = ethtool_value(fd, ifname, get, 0)
            .with_context(|| format!("reading {what} of {ifname}"))?;
        if now != 0 {
            set_result.with_context(|| format!("turning {what} off on {ifname}"))?;
            bail!("{what} is still on on {ifname} after turning it off");
        }
    }
    Ok(())
}

// --- the lab ------------------------------------------------------------------------------------

/// How to build a [`Lab`].
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Turn TCP timestamps, SACK and window scaling off in the host namespaces, so TCP headers have
    /// fixed sizes: 24 bytes on SYN and SYN-ACK (MSS option only), 20 bytes otherwise.
    pub fixed_tcp_headers: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            fixed_tcp_headers: true,
        }
    }
}

/// One host: a namespace with `eth0`, whose veth peer (`port`) is a port of the lab's bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Logical name given by the caller ("attacker", "decky1", …).
    pub name: String,
    /// Its network namespace (under /run/netns).
    pub ns: String,
    /// The bridge port (switch-side veth end) in the switch namespace.
    pub port: String,
    /// ifindex of `port` in the switch namespace.
    pub port_ifindex: u32,
    /// ifindex of `eth0` in the host namespace.
    pub ifindex: u32,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub mac: [u8; 6],
}

impl Host {
    pub fn v4(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ipv4), port)
    }
    pub fn v6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.ipv6), port)
    }
    /// Runs `f` inside this host's namespace (see [`run_in`]).
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        run_in(&self.ns, f)
    }
}

/// A bridge in a "switch" namespace plus hosts; deleted on drop.
pub struct Lab {
    id: String,
    switch_ns: String,
    bridge: String,
    hosts: Vec<Host>,
    opts: LabOptions,
    /// Every namespace created so far, in creation order (deleted in reverse).
    created: Vec<String>,
}

/// Base 32 with digits `0-9a-v`: never contains the separator `x`.
fn base32(mut n: u64) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 32) as usize]);
        n /= 32;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Deletes namespaces named like ours (`dn<pid>x<n>-…`, base 32) whose creating process is gone.
fn reap_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("dn") else {
            continue;
        };
        let Some((id, _)) = rest.split_once('-') else {
            continue;
        };
        let Some((pid32, n32)) = id.split_once('x') else {
            continue;
        };
        let is_b32 = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
        };
        if !is_b32(pid32) || !is_b32(n32) {
            continue;
        }
        let Ok(pid) = u64::from_str_radix(pid32, 32) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Lab {
    /// Builds a lab with a host per name in `hosts` (in order: host `i` gets `10.213.0.(10+i)`).
    pub fn new(hosts: &[&str], opts: LabOptions) -> Result<Lab> {
        crate::prereq()?;
        reap_stale();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "dn{}x{}",
            base32(std::process::id() as u64),
            base32(n as u64)
        );
        let mut lab = Lab {
            switch_ns: format!("{id}-sw"),
            bridge: format!("{id}br"),
            id,
            hosts: Vec::new(),
            opts,
            created: Vec::new(),
        };
        debug_assert!(lab.bridge.len() <= 15);
        lab.add_ns(&lab.switch_ns.clone())?;
        run_in(&lab.switch_ns, || -> Result<()> {
            // Nothing in the switch speaks IPv6 (the bridge itself would send MLD/RS otherwise).
            sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
            sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
            Ok(())
        })??;
        let sw = lab.switch_ns.clone();
        let br = lab.bridge.clone();
        ip(&[
            "-n",
            &sw,
            "link",
            "add",
            &br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        run_in(&sw, || -> Result<()> {
            // Bridged frames must not go through iptables/ip6tables/arptables (per-netns since 5.3;
            // the sysctls exist only while br_netfilter is loaded).
            for k in [
                "bridge-nf-call-iptables",
                "bridge-nf-call-ip6tables",
                "bridge-nf-call-arptables",
            ] {
                sysctl_if_exists(&format!("net/bridge/{k}"), "0")?;
            }
            Ok(())
        })??;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        ip(&["-n", &sw, "link", "set", &br, "up"])?;
        for h in hosts {
            lab.add_host(h)?;
        }
        Ok(lab)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_owned());
        Ok(())
    }

    /// Unique id of this lab (the prefix of all its names).
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// The host called `name`; panics if there is none (a test bug).
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }
    /// The host whose bridge port is `port`.
    pub fn host_by_port(&self, port: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.port == port)
    }
    /// Bridge ports (switch-side names) and their ifindexes in the switch namespace.
    pub fn ports(&self) -> Vec<(String, u32)> {
        self.hosts
            .iter()
            .map(|h| (h.port.clone(), h.port_ifindex))
            .collect()
    }
    pub fn port_names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.port.clone()).collect()
    }

    /// Adds a host and joins it to the bridge (also while a sniffer runs: a port that joins late).
    /// Neighbour entries are added both ways with every existing host.
    pub fn add_host(&mut self, name: &str) -> Result<&Host> {
        if self.hosts.iter().any(|h| h.name == name) {
            bail!("host {name} already exists");
        }
        let idx = self.hosts.len() + 1;
        if idx > 200 {
            bail!("too many hosts");
        }
        let ns = format!("{}-{name}", self.id);
        let port = format!("{}p{idx}", self.id);
        if port.len() > 15 {
            bail!("interface name {port} is longer than 15 characters");
        }
        let ipv4 = Ipv4Addr::new(10, 213, 0, 10 + idx as u8);
        let last: u16 = u16::from_str_radix(&format!("{}", 10 + idx), 16)
            .expect("decimal digits are hex digits");
        let ipv6 = Ipv6Addr::new(0xfd00, 0xdec, 0, 0, 0, 0, 0, last);
        let mac = [0x02, 0xdc, 0x0e, 0x2e, 0x00, idx as u8];
        let mac_s = mac_str(&mac);
        let fixed_tcp = self.opts.fixed_tcp_headers;

        self.add_ns(&ns)?;
        run_in(&ns, || -> Result<()> {
            // Defaults first: eth0 is created below and takes them.
            for scope in ["all", "default"] {
                let c = format!("net/ipv6/conf/{scope}");
                sysctl(&format!("{c}/accept_dad"), "0")?;
                sysctl(&format!("{c}/dad_transmits"), "0")?;
                sysctl(&format!("{c}/router_solicitations"), "0")?;
                sysctl(&format!("{c}/accept_ra"), "0")?;
                sysctl(&format!("{c}/mldv1_unsolicited_report_interval"), "1")?;
                sysctl(&format!("{c}/mldv2_unsolicited_report_interval"), "1")?;
            }
            // No link-local address: nothing to do DAD or router solicitation with.
            sysctl("net/ipv6/conf/default/addr_gen_mode", "1")?;
            if fixed_tcp {
                sysctl("net/ipv4/tcp_timestamps", "0")?;
                sysctl("net/ipv4/tcp_sack", "0")?;
                sysctl("net/ipv4/tcp_window_scaling", "0")?;
            }
            Ok(())
        })??;

        let sw = self.switch_ns.clone();
        #[rustfmt::skip]
        ip(&["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", HOST_IF, "address", &mac_s, "netns", &ns])?;
        let port_ifindex = run_in(&sw, || -> Result<u32> {
            offloads_off(&port)?;
            ifindex(&port)
        })??;
        let ifidx = run_in(&ns, || -> Result<u32> {
            offloads_off(HOST_IF)?;
            ifindex(HOST_IF)
        })??;
        // Enslaved only now: a running sniffer attaches to the port from here on.
        ip(&["-n", &sw, "link", "set", &port, "master", &self.bridge])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ipv4}/24"),
            "dev",
            HOST_IF,
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ipv6}/64"),
            "dev",
            HOST_IF,
            "nodad",
        ])?;

        let host = Host {
            name: name.to_owned(),
            ns,
            port,
            port_ifindex,
            ifindex: ifidx,
            ipv4,
            ipv6,
            mac,
        };
        for other in &self.hosts {
            add_neighbours(&host, other)?;
            add_neighbours(other, &host)?;
        }
        ip(&["-n", &sw, "link", "set", &host.port, "up"])?;
        // The host's link comes up last, watched from the switch: its IPv6 stack sends a few MLD
        // reports then (the one thing that cannot be switched off); wait until they are over, so
        // that the lab is silent when this returns.
        let watch = run_in(&sw, || crate::oracle::open_port_socket(port_ifindex))??;
        ip(&["-n", &host.ns, "link", "set", HOST_IF, "up"])?;
        wait_quiet(&watch, Duration::from_millis(150), Duration::from_secs(5))
            .with_context(|| format!("waiting for {} to settle", host.port))?;
        self.hosts.push(host);
        Ok(self.hosts.last().expect("just pushed"))
    }

    /// A command that runs `program` inside the switch namespace (`ip netns exec <ns> program`;
    /// `ip` execs the program, so the child's pid is the program's).
    pub fn switch_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(ip_binary().unwrap_or_else(|| PathBuf::from("ip")));
        c.args(["netns", "exec", &self.switch_ns]).arg(program);
        c
    }

    /// Runs `f` inside the switch namespace (see [`run_in`]).
    pub fn in_switch<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        run_in(&self.switch_ns, f)
    }
}

/// Reads (and discards) frames from an AF_PACKET socket until none came for `quiet`.
fn wait_quiet(fd: &OwnedFd, quiet: Duration, max: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: valid buffer; the socket has a receive timeout (20 ms).
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n >= 0 {
            last = Instant::now();
        } else if last.elapsed() >= quiet {
            return Ok(());
        }
        if start.elapsed() > max {
            bail!("frames kept coming for {max:?}");
        }
    }
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Permanent ARP and NDP entries for `to` in `on`'s namespace.
fn add_neighbours(on: &Host, to: &Host) -> Result<()> {
    let mac = mac_str(&to.mac);
    ip(&[
        "-n",
        &on.ns,
        "neigh",
        "replace",
        &to.ipv4.to_string(),
        "lladdr",
        &mac,
        "nud",
        "permanent",
        "dev",
        HOST_IF,
    ])?;
    #[rustfmt::skip]
    ip(&["-n", &on.ns, "-6", "neigh", "replace", &to.ipv6.to_string(), "lladdr", &mac, "nud", "permanent", "dev", HOST_IF])?;
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Host namespaces first (each takes its veth pair along), then the switch.
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab cleanup: {e:#}");
            }
        }
    }
}

/// Names of the namespaces that exist now (under /run/netns).
pub fn list_namespaces() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
