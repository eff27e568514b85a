//! The fence: an nftables table of the deployment's own, `inet decnet_<bridge>`, that keeps the
//! decoy network off the sensor host. Attackers on the bridge reach the deckies, never the host:
//! every new connection and datagram from the bridge to the host (`input`) or routed through it
//! (`forward` out of another interface) is dropped and counted; answers to what the host opened
//! (the status checks) and IPv6 neighbour discovery pass. ARP is not IP and is untouched; traffic
//! bridged between the deckies, attackers and an uplink never enters these hooks' rules.
//!
//! Created by `decnet deploy` after the bridge (recorded in the deployment record first, so
//! `teardown` and crash recovery remove exactly it), deleted with the deployment. Built with
//! `nft -f -` (Debian package `nftables`): one atomic transaction that also replaces a table
//! left by a crash. The drop counter goes to the repository as the supervisor's counter
//! `fence.dropped`: those packets are attackers probing the sensor host.
use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The nftables table of the deployment on `bridge` (family `inet`).
pub fn table_name(bridge: &str) -> String {
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("decnet_{safe}")
}

/// The table's ruleset: replaces any table of that name in one transaction.
pub fn ruleset(table: &str, bridge: &str) -> String {
    format!(
        r#"add table inet {table}
delete table inet {table}
table inet {table} {{
    counter dropped {{ }}
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        iifname "{bridge}" ct state established,related accept
        iifname "{bridge}" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report }} accept
        iifname "{bridge}" counter name "dropped" drop
    }}
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{bridge}" oifname != "{bridge}" ct state established,related accept
        iifname "{bridge}" oifname != "{bridge}" counter name "dropped" drop
    }}
}}
"#
    )
}

/// Whether `nft` is there (an error saying what to install if not).
pub fn available() -> anyhow::Result<()> {
    nft().map(|_| ())
}

fn nft() -> anyhow::Result<Command> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = std::path::Path::new(dir).join("nft");
        if p.is_file() {
            return Ok(Command::new(p));
        }
    }
    bail!(
        "decnet deploy fences the sensor host off the decoy network with nftables, and `nft` \
         was not found: install it (`apt-get install nftables`), or run with --no-fence to \
         leave the host reachable from the decoy LAN"
    )
}

fn run(mut cmd: Command, stdin: Option<&str>) -> anyhow::Result<String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run nft")?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes()).context("writing to nft")?;
    }
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates (or replaces) the fence of `bridge`'s deployment.
pub fn create(table: &str, bridge: &str) -> anyhow::Result<()> {
    let mut cmd = nft()?;
    cmd.args(["-f", "-"]);
    run(cmd, Some(&ruleset(table, bridge)))
        .map(|_| ())
        .with_context(|| format!("cannot create the nftables table inet {table}"))
}

/// Deletes the fence; one that is not there is not an error.
pub fn delete(table: &str) -> anyhow::Result<()> {
    let mut cmd = nft()?;
    cmd.args(["delete", "table", "inet", table]);
    match run(cmd, None) {
        Ok(_) => Ok(()),
        Err(e) if format!("{e:#}").contains("No such file or directory") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete the nftables table inet {table}")),
    }
}

/// Packets the fence dropped so far.
pub fn dropped(table: &str) -> anyhow::Result<u64> {
    let mut cmd = nft()?;
    cmd.args(["-j", "list", "counter", "inet", table, "dropped"]);
    let out = run(cmd, None)?;
    let v: serde_json::Value = serde_json::from_str(&out).context("nft -j: not JSON")?;
    v["nftables"]
        .as_array()
        .and_then(|items| items.iter().find_map(|i| i["counter"]["packets"].as_u64()))
        .with_context(|| format!("no counter in nft's answer: {out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table_name("decnet0"), "decnet_decnet0");
        assert_eq!(table_name("br-lab.7"), "decnet_br_lab_7");
    }

    /// nft itself (check mode: parsed and validated by the kernel, nothing applied) accepts
    /// the ruleset.
    #[test]
    fn nft_accepts_the_ruleset() {
        let mut cmd = nft().unwrap_or_else(|e| panic!("{e:#}"));
        cmd.args(["-c", "-f", "-"]);
        if let Err(e) = run(cmd, Some(&ruleset("decnet_check", "dntcheck"))) {
            panic!("nft -c rejects the fence (needs root, as in CI): {e:#}");
        }
    }
}
