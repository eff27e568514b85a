//! Service rotation (`decnet mutate`: "mutate now", "rotate services", `mutate_interval`): a
//! decky's service set moves to another set drawn from its archetype's **pool** — the services
//! a host of that role and OS family plausibly runs — and never to a combination
//! [`realism_problems`] flags (a service outside the pool, an OS that is not the archetype's,
//! an empty or duplicated set). Banners and versions are the persona's ([`crate::decky::persona`]),
//! which follow the OS family, so they stay plausible by construction. Host keys and
//! certificates live per decky in its state directory and do not change with a rotation.
use super::{
    DeckySpec,
    archetype::{self, default_accept},
    service::{ServiceKind, ServiceSpec},
};

use ServiceKind::*;

/// The services a decky of `archetype` may rotate within (its own services first).
pub fn pool(archetype: &str) -> Option<&'static [ServiceKind]> {
    Some(match archetype {
        "web-server" => &[Ssh, Http, Https, Ftp],
        "file-server" => &[Ssh, Ftp, Http, Https],
        "database" => &[Ssh, Mysql, Redis, Http],
        "mail-server" => &[Ssh, Smtp, Http, Https],
        "iot-camera" => &[Telnet, Http, Ftp],
        "windows-workstation" => &[Http, Ftp, Https],
        "windows-server" => &[Http, Https, Ftp, Smtp],
        "router" => &[Telnet, Ssh, Http, Https],
        _ => return None,
    })
}

/// What a realism check would flag in `spec`'s service set (empty: plausible).
pub fn realism_problems(spec: &DeckySpec) -> Vec<String> {
    let mut out = Vec::new();
    let Some(name) = spec.archetype.as_deref() else {
        return vec![format!("decky {:?} has no archetype", spec.name)];
    };
    let (Some(arch), Some(pool)) = (archetype::find(name), pool(name)) else {
        return vec![format!("decky {:?}: unknown archetype {name:?}", spec.name)];
    };
    if spec.os != arch.os {
        out.push(format!(
            "decky {:?}: a {name} runs {}, not {}",
            spec.name,
            arch.os.name(),
            spec.os.name()
        ));
    }
    if spec.services.is_empty() {
        out.push(format!("decky {:?}: no services", spec.name));
    }
    let mut seen = Vec::new();
    for s in &spec.services {
        if !pool.contains(&s.kind) {
            out.push(format!(
                "decky {:?}: {} is not something a {name} runs",
                spec.name,
                s.kind.name()
            ));
        }
        if seen.contains(&s.kind) {
            out.push(format!("decky {:?}: {} twice", spec.name, s.kind.name()));
        }
        seen.push(s.kind);
    }
    out
}

/// `spec` with its services rotated: another set from the pool (the same size, or one fewer
/// when the decky already runs the whole pool), chosen by `seed` — the same seed gives the same
/// set, so a request applied again after a crash converges to the same state. Services that
/// stay keep their port, banner and logins; new ones take their default port and logins.
pub fn rotate(spec: &DeckySpec, seed: u64) -> Result<DeckySpec, String> {
    let name = spec.archetype.as_deref().ok_or_else(|| {
        format!(
            "decky {:?} has no archetype: there is no pool to rotate its services within",
            spec.name
        )
    })?;
    let pool = pool(name).ok_or_else(|| format!("unknown archetype {name:?}"))?;
    let current: Vec<ServiceKind> = spec.services.iter().map(|s| s.kind).collect();
    let size = current.len().clamp(1, pool.len());
    let mut candidates: Vec<Vec<ServiceKind>> = Vec::new();
    for want in [size, size - 1] {
        if want == 0 {
            continue;
        }
        for mask in 1u32..(1 << pool.len()) {
            if mask.count_ones() as usize != want {
                continue;
            }
            let set: Vec<ServiceKind> = (0..pool.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| pool[i])
                .collect();
            let same = set.len() == current.len() && set.iter().all(|k| current.contains(k));
            if !same {
                candidates.push(set);
            }
        }
        if !candidates.is_empty() {
            break;
        }
    }
    // Candidates whose new services' default ports clash with a kept service's port are out.
    candidates.retain(|set| {
        let kept: Vec<u16> = spec
            .services
            .iter()
            .filter(|s| set.contains(&s.kind))
            .map(|s| s.port)
            .collect();
        set.iter()
            .filter(|k| !current.contains(k))
            .all(|k| !kept.contains(&k.default_port()))
    });
    if candidates.is_empty() {
        return Err(format!(
            "decky {:?}: no other service set in the {name} pool fits",
            spec.name
        ));
    }
    let pick = &candidates[(seed % candidates.len() as u64) as usize];
    let services = pick
        .iter()
        .map(|&kind| {
            spec.services
                .iter()
                .find(|s| s.kind == kind)
                .cloned()
                .unwrap_or_else(|| ServiceSpec {
                    kind,
                    port: kind.default_port(),
                    banner: None,
                    accept: default_accept(kind),
                })
        })
        .collect();
    Ok(DeckySpec {
        services,
        ..spec.clone()
    })
}
