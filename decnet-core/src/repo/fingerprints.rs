//! `fingerprints` and `decky_fingerprints`: what identifies a client (JA3, JA4, HASSH, TCP SYN,
//! SSH banner, user agent …) and a decky's own server side (SYN-ACK, JA3S, HASSH-server).
//!
//! `fingerprints`: one row per (kind, value, attacker, decky, port) — the natural key is a
//! SHA-256 over those parts — with the raw string the method hashes, p0f's label, whether the
//! input was cut short, a count and first/last seen. `decky_fingerprints`: the same per (kind,
//! value, decky, port).
//!
//! Written by the sniffer (issue 14): an idempotent upsert — writing the same sighting again
//! changes nothing; the count is the producer's running total, merged as a maximum; first/last
//! seen widen; raw/label take the newest non-null value, `partial` stays set only while every
//! sighting was partial. Read by the profiler (tools from fingerprints) and the API's attacker page.
use std::net::IpAddr;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    credentials::key_of,
    decode::{Decoder, Src, sat},
    limits,
    listing::each_row_of_ips,
};
use crate::{
    model::{DeckyFingerprint, Fingerprint},
    time_fmt::format_ts,
};

const COLUMNS: [&str; 12] = [
    "kind",
    "value",
    "attacker_ip",
    "first_seen",
    "last_seen",
    "count",
    "raw",
    "label",
    "partial",
    "decky",
    "port",
    "natural_key",
];

const DECKY_COLUMNS: [&str; 11] = [
    "decky",
    "port",
    "kind",
    "value",
    "raw",
    "label",
    "partial",
    "first_seen",
    "last_seen",
    "count",
    "natural_key",
];

/// Idempotent: every merge is a maximum/minimum of facts, or the newest non-null description.
const MERGE: [(&str, Merge); 6] = [
    ("count", Merge::Max),
    ("first_seen", Merge::Min),
    ("last_seen", Merge::Max),
    ("raw", Merge::ReplaceIfNotLess("last_seen")),
    ("label", Merge::ReplaceIfNotLess("last_seen")),
    // 1 only while every sighting was partial: a complete sighting clears it for good.
    ("partial", Merge::Min),
];

/// Columns of a [`Fingerprint`] read.
const SELECT: &str = "SELECT id, kind, value, attacker_ip, first_seen, last_seen, count, raw, label, \
                      partial, decky, port FROM fingerprints";

fn decode<'r>(row: impl Into<Src<'r>>) -> Result<Fingerprint, RepoError> {
    let d = Decoder::new(row, "fingerprints");
    Ok(Fingerprint {
        kind: d.text("kind")?,
        value: d.text("value")?,
        attacker_ip: d.ip("attacker_ip")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
        count: d.u64("count")?,
        raw: d.opt_text("raw")?,
        label: d.opt_text("label")?,
        partial: d.flag("partial")?,
        decky: d.text("decky")?,
        port: d.int("port")?,
    })
}

fn decode_decky(row: &sqlx::any::AnyRow) -> Result<DeckyFingerprint, RepoError> {
    let d = Decoder::new(row, "decky_fingerprints");
    Ok(DeckyFingerprint {
        decky: d.text("decky")?,
        port: d.int("port")?,
        kind: d.text("kind")?,
        value: d.text("value")?,
        raw: d.opt_text("raw")?,
        label: d.opt_text("label")?,
        partial: d.flag("partial")?,
        first_seen_ns: d.ts("first_seen")?,
        last_seen_ns: d.ts("last_seen")?,
        count: d.u64("count")?,
    })
}

/// Bounded text: kinds and deckies are names, values and labels short texts, raw strings long.
fn bounded(s: &str, max: usize) -> String {
    limits::text(s, max).into_owned()
}

fn bounded_opt(s: &Option<String>, max: usize) -> Option<String> {
    s.as_deref().map(|s| bounded(s, max))
}

impl WriteTx {
    /// Upserts attacker fingerprints (see the module doc for the merge rules).
    pub async fn upsert_fingerprints(&mut self, fps: &[Fingerprint]) -> Result<u64, RepoError> {
        if fps.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("fingerprints", &["natural_key"], &MERGE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "fingerprints",
                columns: &COLUMNS,
                tail: &tail,
            },
            fps,
            |q: AnyQuery<'_>, f: &Fingerprint| {
                let ip = f.attacker_ip.to_string();
                let kind = bounded(&f.kind, limits::NAME);
                let value = bounded(&f.value, limits::SHORT_TEXT);
                let decky = bounded(&f.decky, limits::NAME);
                let key = key_of(&[
                    kind.as_bytes(),
                    value.as_bytes(),
                    ip.as_bytes(),
                    decky.as_bytes(),
                    &f.port.to_be_bytes(),
                ]);
                q.bind(kind)
                    .bind(value)
                    .bind(ip)
                    .bind(format_ts(f.first_seen_ns))
                    .bind(format_ts(f.last_seen_ns))
                    .bind(sat(f.count))
                    .bind(bounded_opt(&f.raw, limits::LONG))
                    .bind(bounded_opt(&f.label, limits::SHORT_TEXT))
                    .bind(i64::from(f.partial))
                    .bind(decky)
                    .bind(i64::from(f.port))
                    .bind(key.to_vec())
            },
        )
        .await
    }

    /// Upserts deckies' own fingerprints (same merge rules).
    pub async fn upsert_decky_fingerprints(
        &mut self,
        fps: &[DeckyFingerprint],
    ) -> Result<u64, RepoError> {
        if fps.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("decky_fingerprints", &["natural_key"], &MERGE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "decky_fingerprints",
                columns: &DECKY_COLUMNS,
                tail: &tail,
            },
            fps,
            |q: AnyQuery<'_>, f: &DeckyFingerprint| {
                let kind = bounded(&f.kind, limits::NAME);
                let value = bounded(&f.value, limits::SHORT_TEXT);
                let decky = bounded(&f.decky, limits::NAME);
                let key = key_of(&[
                    kind.as_bytes(),
                    value.as_bytes(),
                    decky.as_bytes(),
                    &f.port.to_be_bytes(),
                ]);
                q.bind(decky)
                    .bind(i64::from(f.port))
                    .bind(kind)
                    .bind(value)
                    .bind(bounded_opt(&f.raw, limits::LONG))
                    .bind(bounded_opt(&f.label, limits::SHORT_TEXT))
                    .bind(i64::from(f.partial))
                    .bind(format_ts(f.first_seen_ns))
                    .bind(format_ts(f.last_seen_ns))
                    .bind(sat(f.count))
                    .bind(key.to_vec())
            },
        )
        .await
    }
}

impl Repository {
    /// Attacker and decky fingerprints in one transaction. Returns the affected-row count.
    pub async fn record_fingerprints(
        &self,
        attackers: &[Fingerprint],
        deckies: &[DeckyFingerprint],
    ) -> Result<u64, RepoError> {
        if attackers.is_empty() && deckies.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let n = tx.upsert_fingerprints(attackers).await?
            + tx.upsert_decky_fingerprints(deckies).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The fingerprints seen from `ip`, most recently seen first, at most `limit`.
    pub async fn fingerprints(
        &self,
        ip: IpAddr,
        limit: u32,
    ) -> Result<Vec<Fingerprint>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE attacker_ip = ? ORDER BY last_seen DESC, id DESC LIMIT ?"
        ))
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
            |list| format!("{SELECT} WHERE attacker_ip IN ({list})"),
            Vec::new(),
            |out, row| {
                out.push(decode(row)?);
                Ok(())
            },
        )
        .await
    }

    /// A decky's own fingerprints, by port then kind.
    pub async fn decky_fingerprints(
        &self,
        decky: &str,
    ) -> Result<Vec<DeckyFingerprint>, RepoError> {
        let rows = sqlx::query(
            "SELECT decky, port, kind, value, raw, label, partial, first_seen, last_seen, count \
             FROM decky_fingerprints WHERE decky = ? ORDER BY port, kind, id",
        )
        .bind(decky)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode_decky).collect()
    }
}
