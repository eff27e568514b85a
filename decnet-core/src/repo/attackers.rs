//! `attackers` (one row per attacker IP), `attacker_touches` (the (decky, service) pairs each
//! touched — its traversal path in first_seen order) and `attacker_profiles` (the profiler's
//! verdict). Counters merge as maxima and can be re-derived from the stored facts with
//! [`WriteTx::refresh_attacker_counts`]; a profile only replaces one built on older evidence.
use std::net::IpAddr;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::{Decoder, sat},
    limits,
};
use crate::{
    model::{Attacker, AttackerProfile, AttackerUpdate, Touch},
    time_fmt::{format_ts, now_ns},
};

const A_COLUMNS: [&str; 8] = [
    "ip",
    "first_seen",
    "last_seen",
    "event_count",
    "session_count",
    "credential_count",
    "flow_count",
    "updated_at",
];
const A_MERGE: [(&str, Merge); 7] = [
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
    ("event_count", Merge::Max),
    ("session_count", Merge::Max),
    ("credential_count", Merge::Max),
    ("flow_count", Merge::Max),
    ("updated_at", Merge::Max),
];

const T_COLUMNS: [&str; 5] = ["attacker_ip", "decky", "service", "first_seen", "last_seen"];
const T_MERGE: [(&str, Merge); 2] = [("first_seen", Merge::Min), ("last_seen", Merge::Max)];

const P_COLUMNS: [&str; 8] = [
    "attacker_ip",
    "behaviour",
    "score",
    "factors",
    "tools",
    "techniques",
    "evidence_until",
    "computed_at",
];
const P_MERGE: [(&str, Merge); 7] = [
    ("behaviour", Merge::ReplaceIfNotLess("evidence_until")),
    ("score", Merge::ReplaceIfNotLess("evidence_until")),
    ("factors", Merge::ReplaceIfNotLess("evidence_until")),
    ("tools", Merge::ReplaceIfNotLess("evidence_until")),
    ("techniques", Merge::ReplaceIfNotLess("evidence_until")),
    ("computed_at", Merge::ReplaceIfNotLess("evidence_until")),
    ("evidence_until", Merge::Max),
];

fn json<T: serde::Serialize>(v: &T) -> String {
    limits::text(
        &serde_json::to_string(v).unwrap_or_else(|_| "[]".into()),
        limits::LONG,
    )
    .into_owned()
}

impl WriteTx {
    /// Merges facts into attacker rows (creating them): first_seen min, last_seen max, counters
    /// max.
    pub async fn upsert_attackers(&mut self, updates: &[AttackerUpdate]) -> Result<u64, RepoError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let now = format_ts(now_ns());
        let tail = self.dialect.upsert_tail("attackers", &["ip"], &A_MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attackers",
                columns: &A_COLUMNS,
                tail: &tail,
            },
            updates,
            |q: AnyQuery<'_>, a: &AttackerUpdate| {
                q.bind(a.ip.to_string())
                    .bind(format_ts(a.first_seen_ns))
                    .bind(format_ts(a.last_seen_ns))
                    .bind(sat(a.event_count))
                    .bind(sat(a.session_count))
                    .bind(sat(a.credential_count))
                    .bind(sat(a.flow_count))
                    .bind(now.clone())
            },
        )
        .await
    }

    /// Records (decky, service) pairs attackers touched.
    pub async fn touch(&mut self, touches: &[Touch]) -> Result<u64, RepoError> {
        if touches.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("attacker_touches", &T_COLUMNS[..3], &T_MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attacker_touches",
                columns: &T_COLUMNS,
                tail: &tail,
            },
            touches,
            |q: AnyQuery<'_>, t: &Touch| {
                q.bind(t.attacker_ip.to_string())
                    .bind(limits::text(&t.decky, limits::NAME).into_owned())
                    .bind(limits::text(&t.service, limits::NAME).into_owned())
                    .bind(format_ts(t.first_seen_ns))
                    .bind(format_ts(t.last_seen_ns))
            },
        )
        .await
    }

    /// Re-derives the counters and first/last seen of `ips` from the stored facts (events,
    /// sessions, credentials, flows). Never lowers a value.
    pub async fn refresh_attacker_counts(&mut self, ips: &[IpAddr]) -> Result<(), RepoError> {
        let (g, l) = (self.dialect.greatest(), self.dialect.least());
        let sql = format!(
            "UPDATE attackers SET \
             event_count = {g}(event_count, (SELECT COUNT(*) FROM events WHERE events.attacker_ip = attackers.ip)), \
             session_count = {g}(session_count, (SELECT COUNT(*) FROM sessions WHERE sessions.attacker_ip = attackers.ip)), \
             credential_count = {g}(credential_count, (SELECT COUNT(*) FROM credentials WHERE credentials.attacker_ip = attackers.ip)), \
             flow_count = {g}(flow_count, (SELECT COUNT(*) FROM flows WHERE flows.src_ip = attackers.ip)), \
             first_seen = {l}(first_seen, COALESCE((SELECT MIN(ts) FROM events WHERE events.attacker_ip = attackers.ip), first_seen)), \
             last_seen = {g}(last_seen, COALESCE((SELECT MAX(ts) FROM events WHERE events.attacker_ip = attackers.ip), last_seen)) \
             WHERE ip = ?"
        );
        for ip in ips {
            sqlx::query(&sql)
                .bind(ip.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

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
            .upsert_tail("attacker_profiles", &["attacker_ip"], &P_MERGE);

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attacker_profiles",
                columns: &P_COLUMNS,
                tail: &tail,
            },
            profiles,
            |q: AnyQuery<'_>, p: &AttackerProfile| {
                q.bind(p.attacker_ip.to_string())
                    .bind(limits::text(&p.behaviour, limits::NAME).into_owned())
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

const A_SELECT: &str = "SELECT id, ip, first_seen, last_seen, event_count, session_count, credential_count, \
                        flow_count FROM attackers";

fn decode_attacker(row: &sqlx::any::AnyRow) -> Result<Attacker, RepoError> {
    let d = Decoder::new(row, "attackers", Some(0));
    Ok(Attacker {
        id: d.i64(0, "id")?,
        ip: d.ip(1, "ip")?,
        first_seen_ns: d.ts(2, "first_seen")?,
        last_seen_ns: d.ts(3, "last_seen")?,
        event_count: d.u64(4, "event_count")?,
        session_count: d.u64(5, "session_count")?,
        credential_count: d.u64(6, "credential_count")?,
        flow_count: d.u64(7, "flow_count")?,
    })
}

impl Repository {
    pub async fn upsert_attackers(&self, updates: &[AttackerUpdate]) -> Result<u64, RepoError> {
        Ok(self.write(&[super::Write::Attackers(updates)]).await?[0])
    }

    pub async fn attacker(&self, ip: IpAddr) -> Result<Option<Attacker>, RepoError> {
        let row = sqlx::query(&format!("{A_SELECT} WHERE ip = ?"))
            .bind(ip.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode_attacker).transpose()
    }

    /// Attackers by id, `id > after`, at most `limit` (keyset pagination).
    pub async fn attackers_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Attacker>, RepoError> {
        let rows = sqlx::query(&format!("{A_SELECT} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_attacker).collect()
    }

    /// The (decky, service) pairs `ip` touched, in first_seen order: its traversal path.
    pub async fn traversal(&self, ip: IpAddr) -> Result<Vec<Touch>, RepoError> {
        let rows = sqlx::query(
            "SELECT attacker_ip, decky, service, first_seen, last_seen FROM attacker_touches \
             WHERE attacker_ip = ? ORDER BY first_seen, decky, service",
        )
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "attacker_touches", None);
                Ok(Touch {
                    attacker_ip: d.ip(0, "attacker_ip")?,
                    decky: d.text(1, "decky")?,
                    service: d.text(2, "service")?,
                    first_seen_ns: d.ts(3, "first_seen")?,
                    last_seen_ns: d.ts(4, "last_seen")?,
                })
            })
            .collect()
    }

    pub async fn profile(&self, ip: IpAddr) -> Result<Option<AttackerProfile>, RepoError> {
        let row = sqlx::query(
            "SELECT attacker_ip, behaviour, score, factors, tools, techniques, evidence_until, computed_at \
             FROM attacker_profiles WHERE attacker_ip = ?",
        )
        .bind(ip.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let d = Decoder::new(&row, "attacker_profiles", None);
        Ok(Some(AttackerProfile {
            attacker_ip: d.ip(0, "attacker_ip")?,
            behaviour: d.text(1, "behaviour")?,
            score: d.int(2, "score")?,
            factors: d.json(3, "factors")?,
            tools: d.json(4, "tools")?,
            techniques: d.json(5, "techniques")?,
            evidence_until_ns: d.ts(6, "evidence_until")?,
            computed_at_ns: d.ts(7, "computed_at")?,
        }))
    }
}
