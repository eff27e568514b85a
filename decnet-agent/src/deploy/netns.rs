//! Network plumbing for the fleet, over netlink (rtnetlink) and raw namespace syscalls — no `ip`.
//!
//! Named namespaces live where iproute2 keeps them (`/run/netns/<name>`, a bind mount of the
//! namespace), so `ip netns exec decnet-web-01 …` works for an operator poking at a decky.
//! Work inside a namespace runs on a short-lived thread that has `setns`'d into it: sockets it
//! opens (netlink included) and `/proc/sys/net` it writes belong to that namespace.
use std::{
    ffi::CString,
    fs::File,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use futures::TryStreamExt as _;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::Handle;

/// Where named network namespaces are mounted (iproute2's convention).
pub const NETNS_DIR: &str = "/run/netns";

pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn cstr(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| anyhow!("NUL in path"))
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so namespaces mounted there
/// stay visible to `ip netns exec` (which enters a private mount namespace).
fn prepare_netns_dir() -> anyhow::Result<()> {
    std::fs::create_dir_all(NETNS_DIR).with_context(|| format!("cannot create {NETNS_DIR}"))?;
    let dir = cstr(Path::new(NETNS_DIR))?;
    let none = c"none";
    // SAFETY: plain mount(2) calls with valid NUL-terminated strings.
    unsafe {
        if libc::mount(
            none.as_ptr(),
            dir.as_ptr(),
            none.as_ptr(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        ) == 0
        {
            return Ok(());
        }
        if errno().raw_os_error() != Some(libc::EINVAL) {
            return Err(errno()).context("cannot make /run/netns a shared mount");
        }
        if libc::mount(
            dir.as_ptr(),
            dir.as_ptr(),
            none.as_ptr(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno()).context("cannot bind-mount /run/netns onto itself");
        }
        if libc::mount(
            none.as_ptr(),
            dir.as_ptr(),
            none.as_ptr(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno()).context("cannot make /run/netns a shared mount");
        }
    }
    Ok(())
}

/// Creates the named network namespace `/run/netns/<name>`. Fails if it exists.
pub fn create_netns(name: &str) -> anyhow::Result<()> {
    prepare_netns_dir()?;
    let path = netns_path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot create {} (does the namespace exist?)",
                path.display()
            )
        })?;
    let target = cstr(&path)?;
    let result = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare affects only this thread (its network namespace); the bind mount
        // pins the new namespace to the file created above.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(errno());
            }
            let me = c"/proc/thread-self/ns/net";
            if libc::mount(
                me.as_ptr(),
                target.as_ptr(),
                c"none".as_ptr(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(errno());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e).with_context(|| format!("cannot create network namespace {name}"));
    }
    Ok(())
}

/// Removes the named namespace (its mount and file). Missing is fine.
pub fn delete_netns(name: &str) -> anyhow::Result<()> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(());
    }
    let c = cstr(&path)?;
    // SAFETY: umount2 on a valid path; EINVAL means it was not mounted.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = errno();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e).with_context(|| format!("cannot unmount {}", path.display()));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// An open handle on a named namespace.
pub fn open_netns(name: &str) -> anyhow::Result<OwnedFd> {
    let path = netns_path(name);
    Ok(File::open(&path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?
        .into())
}

/// Runs `f` on a thread inside the namespace `ns`.
pub fn in_netns<R: Send + 'static>(
    ns: &OwnedFd,
    f: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    let fd = ns
        .try_clone()
        .context("cannot duplicate the namespace handle")?;
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(errno()).context("setns into the decky's namespace failed");
        }
        f()
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?
}

/// A netlink handle on the current thread's namespace (call from a tokio runtime).
pub fn netlink() -> anyhow::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("cannot open a netlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Index of the link `name`, if it exists.
pub async fn link_index(handle: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot look up link {name}")),
    }
}

/// Ensures the bridge exists and is up; returns (index, whether we created it).
pub async fn ensure_bridge(handle: &Handle, name: &str) -> anyhow::Result<(u32, bool)> {
    let created = match link_index(handle, name).await? {
        Some(_) => false,
        None => {
            handle
                .link()
                .add()
                .bridge(name.to_owned())
                .execute()
                .await
                .with_context(|| format!("cannot create bridge {name}"))?;
            true
        }
    };
    let idx = link_index(handle, name)
        .await?
        .ok_or_else(|| anyhow!("bridge {name} vanished"))?;
    handle
        .link()
        .set(idx)
        .up()
        .execute()
        .await
        .with_context(|| format!("cannot bring bridge {name} up"))?;
    Ok((idx, created))
}

/// Adds `ip/prefix` to link `idx`; `false` if it was already there.
pub async fn add_address(
    handle: &Handle,
    idx: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> anyhow::Result<bool> {
    match handle
        .address()
        .add(idx, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(true),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot add address {ip}/{prefix}")),
    }
}

/// Removes `ip/prefix` from link `name` (missing link or address is fine).
pub async fn del_address(
    handle: &Handle,
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> anyhow::Result<()> {
    let Some(idx) = link_index(handle, name).await? else {
        return Ok(());
    };
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(idx)
        .set_address_filter(IpAddr::V4(ip))
        .set_prefix_length_filter(prefix)
        .execute();
    while let Some(a) = addrs.try_next().await.context("cannot list addresses")? {
        handle
            .address()
            .del(a)
            .execute()
            .await
            .with_context(|| format!("cannot remove {ip}/{prefix} from {name}"))?;
    }
    Ok(())
}

/// Deletes link `name` (missing is fine).
pub async fn delete_link(handle: &Handle, name: &str) -> anyhow::Result<()> {
    let Some(idx) = link_index(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(idx).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete link {name}")),
    }
}

/// Enslaves link `name` to the bridge `bridge_idx` (or releases it with `None`).
pub async fn set_controller(
    handle: &Handle,
    name: &str,
    bridge_idx: Option<u32>,
) -> anyhow::Result<()> {
    let idx = link_index(handle, name)
        .await?
        .ok_or_else(|| anyhow!("no interface named {name}"))?;
    let req = handle.link().set(idx);
    let req = match bridge_idx {
        Some(b) => req.controller(b).up(),
        None => req.nocontroller(),
    };
    req.execute()
        .await
        .with_context(|| format!("cannot change the bridge of {name}"))
}

/// Creates a veth pair: `host_name` in this namespace, enslaved to the bridge and up; its peer
/// `eth0` with `mac` directly inside the namespace `ns`.
pub async fn create_veth(
    handle: &Handle,
    host_name: &str,
    bridge_idx: u32,
    ns: &OwnedFd,
    mac: [u8; 6],
) -> anyhow::Result<()> {
    // rtnetlink's veth(a, b): the main message is named b, the peer a.
    let mut req = handle
        .link()
        .add()
        .veth("eth0".to_owned(), host_name.to_owned());
    let msg = req.message_mut();
    msg.attributes.push(LinkAttribute::Controller(bridge_idx));
    for attr in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
                    peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
                }
            }
        }
    }
    req.execute()
        .await
        .with_context(|| format!("cannot create veth {host_name}"))
}

/// Inside a decky's namespace: loopback up, `eth0` with `ip/prefix` up, default route via
/// `gateway`, and the persona's sysctls. Runs on a thread inside `ns`.
pub fn configure_inside(
    ns: &OwnedFd,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    sysctls: &'static [(&'static str, &'static str)],
) -> anyhow::Result<()> {
    in_netns(ns, move || {
        // Deckies are IPv4 hosts: no IPv6 link-local chatter (NDP, MLD, router solicitations)
        // that would show up as traffic from a decky. Skipped where the kernel has no IPv6.
        for key in [
            "net/ipv6/conf/all/disable_ipv6",
            "net/ipv6/conf/default/disable_ipv6",
        ] {
            let path = Path::new("/proc/sys").join(key);
            if path.exists() {
                std::fs::write(&path, "1")
                    .with_context(|| format!("cannot set {} = 1", path.display()))?;
            }
        }
        for (key, value) in sysctls {
            let path = Path::new("/proc/sys").join(key);
            std::fs::write(&path, value)
                .with_context(|| format!("cannot set {} = {value}", path.display()))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime in the namespace")?;
        rt.block_on(async move {
            let h = netlink()?;
            let lo = link_index(&h, "lo")
                .await?
                .ok_or_else(|| anyhow!("no loopback in the namespace"))?;
            h.link().set(lo).up().execute().await.context("lo up")?;
            let eth = link_index(&h, "eth0")
                .await?
                .ok_or_else(|| anyhow!("eth0 did not arrive in the namespace"))?;
            add_address(&h, eth, ip, prefix).await?;
            h.link().set(eth).up().execute().await.context("eth0 up")?;
            h.route()
                .add()
                .v4()
                .gateway(gateway)
                .execute()
                .await
                .with_context(|| format!("cannot add the default route via {gateway}"))?;
            Ok::<_, anyhow::Error>(())
        })
    })
}

/// Reads a sysctl inside a namespace (for tests and `status`).
pub fn read_sysctl(ns: &OwnedFd, key: &'static str) -> anyhow::Result<String> {
    in_netns(ns, move || {
        let path = Path::new("/proc/sys").join(key);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_owned())
    })
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{what} creates network namespaces, links and a bridge: run it as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        );
    }
    Ok(())
}
