//! `fingerprints`: what identifies an attacker's client (JA4, user agent, SSH client …), one row
//! per (kind, value, attacker) — the natural key is a SHA-256 over those parts — with a count
//! and first/last seen.
//!
//! No worker writes fingerprints yet (the sensor that will produce them is a later issue; the
//! table and its migration are in place). Read by the profiler (tools from user agents and SSH
//! clients) and the API's attacker page.
use std::net::IpAddr;

use super::{
    RepoError, Repository,
    decode::{Decoder, Src},
    listing::each_row_of_ips,
};
use crate::model::Fingerprint;

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Fingerprint, RepoError> {
    let d = Decoder::new(row, "fingerprints");
    Ok(Fingerprint {
        kind: d.text("kind")?,
        value: d.text("value")?,
        attacker_ip: d.ip("attacker_ip")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
        count: d.u64("count")?,
    })
}

impl Repository {
    /// The fingerprints seen from `ip`, most recently seen first, at most `limit`.
    pub async fn fingerprints(
        &self,
        ip: IpAddr,
        limit: u32,
    ) -> Result<Vec<Fingerprint>, RepoError> {
        let rows = sqlx::query(
            "SELECT id, kind, value, attacker_ip, first_seen, last_seen, count FROM fingerprints \
             WHERE attacker_ip = ? ORDER BY last_seen DESC, id DESC LIMIT ?",
        )
        .bind(ip.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// The fingerprints of each of `ips` (any order): the profiler's batch read.
    pub async fn fingerprints_of(&self, ips: &[IpAddr]) -> Result<Vec<Fingerprint>, RepoError> {
        each_row_of_ips(
            self,
            ips,
            |list| format!("SELECT id, kind, value, attacker_ip, first_seen, last_seen, count FROM fingerprints \
                 WHERE attacker_ip IN ({list})"),
            Vec::new(),
            |out, row| {
                out.push(decode(row)?);
                Ok(())
            },
        )
        .await
    }
}
