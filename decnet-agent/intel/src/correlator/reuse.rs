//! Credential reuse: the same secret (by SHA-256) tried against at least two distinct
//! (decky, service) pairs, by one attacker or several. Computed whole from every credential row
//! with that secret, so the record is the same however often it is recomputed.
//!
//! This is the rule as plain code; the correlator evaluates the same rule in SQL
//! (`Repository::reuse_of_secrets`, for the secrets of new credential rows only) and the tests
//! check that both agree.
use std::collections::{BTreeMap, BTreeSet};

use decnet_core::{
    model::{Credential, CredentialReuse},
    repo::LIST_MAX,
};

/// Reuse records for the secrets in `creds` that reach two targets, ordered by secret hash.
pub fn reuse(creds: &[Credential]) -> Vec<CredentialReuse> {
    let mut by_secret: BTreeMap<[u8; 32], Vec<&Credential>> = BTreeMap::new();
    for c in creds {
        by_secret.entry(c.secret_hash).or_default().push(c);
    }
    by_secret
        .into_iter()
        .filter_map(|(hash, mut rows)| {
            rows.sort_by_key(|c| c.id);
            let targets: BTreeSet<String> = rows
                .iter()
                .map(|c| format!("{}/{}", c.decky, c.service))
                .collect();
            if targets.len() < 2 {
                return None;
            }
            let attackers: BTreeSet<String> =
                rows.iter().map(|c| c.attacker_ip.to_string()).collect();
            let first = rows[0];
            Some(CredentialReuse {
                secret_hash: hash,
                secret_kind: first.secret_kind.clone(),
                secret_printable: first.secret_printable.clone(),
                target_count: targets.len() as u64,
                targets: targets.into_iter().take(LIST_MAX).collect(),
                attacker_count: attackers.len() as u64,
                attackers: attackers.into_iter().take(LIST_MAX).collect(),
                credential_rows: rows.len() as u64,
                first_seen_ns: rows.iter().map(|c| c.first_seen_ns).min().unwrap_or(0),
                last_seen_ns: rows.iter().map(|c| c.last_seen_ns).max().unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn cred(id: i64, attacker: u8, decky: &str, service: &str, secret: u8) -> Credential {
        Credential {
            id,
            attacker_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, attacker)),
            decky: decky.into(),
            service: service.into(),
            principal: b"root".to_vec(),
            secret_kind: "password".into(),
            secret_hash: [secret; 32],
            secret_printable: format!("pw{secret}"),
            attempts: 2,
            first_seen_ns: id * 10,
            last_seen_ns: id * 10 + 5,
        }
    }

    #[test]
    fn two_targets_make_reuse() {
        let creds = [
            cred(1, 1, "web-01", "ssh", 7),
            cred(2, 1, "web-01", "ssh", 7), // another principal, same target
            cred(3, 2, "db-01", "ssh", 7),
            cred(4, 1, "web-01", "ftp", 9),
        ];
        let r = reuse(&creds);
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(r.secret_hash, [7; 32]);
        assert_eq!(r.targets, vec!["db-01/ssh", "web-01/ssh"]);
        assert_eq!(
            (r.target_count, r.attacker_count, r.credential_rows),
            (2, 2, 3)
        );
        assert_eq!((r.first_seen_ns, r.last_seen_ns), (10, 35));
        assert_eq!(r.secret_printable, "pw7");
        // Order of input does not matter.
        let mut rev = creds.to_vec();
        rev.reverse();
        assert_eq!(reuse(&rev), vec![r.clone()]);
    }
}
