//! `attacker_profiles`: the profiler's verdict on each attacker (behaviour, score and its
//! factors, tools, techniques). A profile only replaces one built on older evidence
//! (`evidence_until`), so a slow or replayed profiler run never overwrites a newer verdict.
//!
//! Written by the profiler. Read by the API (the attacker page; listings join the verdict in
//! `attackers`).
use std::net::IpAddr;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, json, name},
    decode::Decoder,
};
use crate::{model::AttackerProfile, time_fmt::format_ts};

/// The stored columns, in insert order; `attacker_ip` is the key.
const COLUMNS: [&str; 8] = [
    "attacker_ip",
    "behaviour",
    "score",
    "factors",
    "tools",
    "techniques",
    "evidence_until",
    "computed_at",
];
const MERGE: [(&str, Merge); 7] = [
    ("behaviour", Merge::ReplaceIfNotLess("evidence_until")),
    ("score", Merge::ReplaceIfNotLess("evidence_until")),
    ("factors", Merge::ReplaceIfNotLess("evidence_until")),
    ("tools", Merge::ReplaceIfNotLess("evidence_until")),
    ("techniques", Merge::ReplaceIfNotLess("evidence_until")),
    ("computed_at", Merge::ReplaceIfNotLess("evidence_until")),
    ("evidence_until", Merge::Max),
];

fn decode(row: &sqlx::any::AnyRow) -> Result<AttackerProfile, RepoError> {
    let d = Decoder::new(row, "attacker_profiles");
    Ok(AttackerProfile {
        attacker_ip: d.ip("attacker_ip")?,
        behaviour: d.text("behaviour")?,
        score: d.int("score")?,
        factors: d.json("factors")?,
        tools: d.json("tools")?,
        techniques: d.json("techniques")?,
        evidence_until_ns: d.ts("evidence_until")?,
        computed_at_ns: d.ts("computed_at")?,
    })
}

impl WriteTx {
    /// Stores profiles; one built on older evidence than the stored one changes nothing.
    pub async fn upsert_profiles(
        &mut self,
        profiles: &[AttackerProfile],
    ) -> Result<u64, RepoError> {
        if profiles.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("attacker_profiles", &["attacker_ip"], &MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attacker_profiles",
                columns: &COLUMNS,
                tail: &tail,
            },
            profiles,
            |q: AnyQuery<'_>, p: &AttackerProfile| {
                q.bind(p.attacker_ip.to_string())
                    .bind(name(&p.behaviour))
                    .bind(i64::from(p.score.min(100)))
                    .bind(json(&p.factors))
                    .bind(json(&p.tools))
                    .bind(json(&p.techniques))
                    .bind(format_ts(p.evidence_until_ns))
                    .bind(format_ts(p.computed_at_ns))
            },
        )
        .await
    }
}

impl Repository {
    pub async fn profile(&self, ip: IpAddr) -> Result<Option<AttackerProfile>, RepoError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM attacker_profiles WHERE attacker_ip = ?",
            COLUMNS.join(", ")
        ))
        .bind(ip.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode).transpose()
    }
}
