//! What changes between two fleets, decky by decky — the one diff `decnet mutate` records and
//! `decnet deploy` applies:
//!
//! - **added** / **removed** deckies;
//! - **changed** deckies, each either *rebuilt* (IP or OS family changed: the namespace, veth,
//!   MAC and persona sysctls are made anew) or *restarted* (services, banners, logins, hostname,
//!   archetype changed: the same namespace, a new `decnet decky` process), or neither (only the
//!   `mutate_interval` changed: nothing runs differently);
//! - every other decky is **untouched**: not in the diff at all, so nothing of it is touched.
//!
//! The LAN (`[lan]`) cannot change under a running deployment ([`lan_change`]).
use super::{DeckySpec, Fleet};

/// A decky that exists on both sides and differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub before: DeckySpec,
    pub after: DeckySpec,
    /// New namespace and veth (IP or OS family changed).
    pub rebuild: bool,
    /// New process in the same namespace (services, hostname, archetype changed).
    pub restart: bool,
    /// What changed, for the log and the mutation record (`services`, `ip`, `os`, …).
    pub what: Vec<&'static str>,
}

/// The difference from one fleet to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetDiff {
    pub added: Vec<DeckySpec>,
    pub removed: Vec<DeckySpec>,
    pub changed: Vec<Changed>,
}

impl FleetDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Names of every decky the diff touches.
    pub fn touched(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .added
            .iter()
            .chain(&self.removed)
            .map(|d| d.name.as_str())
            .chain(self.changed.iter().map(|c| c.after.name.as_str()))
            .collect();
        v.sort_unstable();
        v
    }

    /// One line: `+c -b ~d(services)`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.added.iter().map(|d| format!("+{}", d.name)));
        parts.extend(self.removed.iter().map(|d| format!("-{}", d.name)));
        parts.extend(
            self.changed
                .iter()
                .map(|c| format!("~{}({})", c.after.name, c.what.join(","))),
        );
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Why `new`'s LAN cannot replace `old`'s under a running deployment (None: same LAN).
pub fn lan_change(old: &Fleet, new: &Fleet) -> Option<String> {
    (old.lan != new.lan).then(|| {
        "[lan] changed: the bridge, subnet, host address, uplink and collector port are fixed \
         while a deployment runs (stop it and deploy again to change them)"
            .to_owned()
    })
}

/// The decky-by-decky difference from `old` to `new`.
pub fn diff(old: &Fleet, new: &Fleet) -> FleetDiff {
    let mut out = FleetDiff::default();
    for d in &old.deckies {
        if !new.deckies.iter().any(|n| n.name == d.name) {
            out.removed.push(d.clone());
        }
    }
    for n in &new.deckies {
        match old.deckies.iter().find(|d| d.name == n.name) {
            None => out.added.push(n.clone()),
            Some(d) if d == n => {}
            Some(d) => {
                let mut what = Vec::new();
                if d.ip != n.ip {
                    what.push("ip");
                }
                if d.os != n.os {
                    what.push("os");
                }
                if d.services != n.services {
                    what.push("services");
                }
                if d.hostname != n.hostname {
                    what.push("hostname");
                }
                if d.archetype != n.archetype {
                    what.push("archetype");
                }
                if d.mutate_interval != n.mutate_interval {
                    what.push("mutate_interval");
                }
                let rebuild = d.ip != n.ip || d.os != n.os;
                let restart = rebuild
                    || d.services != n.services
                    || d.hostname != n.hostname
                    || d.archetype != n.archetype;
                out.changed.push(Changed {
                    before: d.clone(),
                    after: n.clone(),
                    rebuild,
                    restart,
                    what,
                });
            }
        }
    }
    out
}

/// The running fleet after a fleet file edit: `effective` (what runs, with the operator's and
/// the schedule's changes) with exactly what changed from `file_old` to `file_new` carried
/// over. A decky the edit did not touch keeps its running form (a rotated service set stays).
pub fn rebase(file_old: &Fleet, file_new: &Fleet, effective: &Fleet) -> Fleet {
    let edit = diff(file_old, file_new);
    let mut deckies = Vec::new();
    for n in &file_new.deckies {
        let edited = edit.added.iter().any(|d| d.name == n.name)
            || edit.changed.iter().any(|c| c.after.name == n.name);
        match effective.deckies.iter().find(|d| d.name == n.name) {
            Some(running) if !edited => deckies.push(running.clone()),
            _ => deckies.push(n.clone()),
        }
    }
    Fleet {
        lan: file_new.lan.clone(),
        deckies,
    }
}
