//! What the correlator and the profiler read and write (migration `0004_intel`): `scans`,
//! `traversals`, `pivots`, `credential_reuse` and `attacker_evidence`, plus the narrow reads
//! they need from `events`, `flows`, `sessions` and `credentials`.
//!
//! Everything the correlator writes is a function of stored facts (events, flows, credentials),
//! recomputed for the part new input touches:
//! - sessions and scan episodes of one key are recomputed from a point in time on (the start of
//!   the latest stored session / episode that precedes the new input): rows from that point that
//!   the recomputation no longer produces are deleted, the others replaced. The result is the
//!   same however the input was cut into batches (replay, restart, late events).
//! - traversals and credential reuse are recomputed whole for the attackers / secrets concerned
//!   (they are derived from `attacker_touches` and `credentials`, which only grow);
//! - pivots merge (first_seen min, last_seen max).
//!
//! `attacker_evidence` is the profiler's queue: each correlator transaction stamps the attackers
//! it changed with the next sequence number; the profiler keeps a cursor on (seq, ip).
use std::{collections::HashMap, net::IpAddr};

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::{Decoder, sat},
    limits,
};
use crate::{
    model::{
        AttackerUpdate, CredentialReuse, FlowRecord, Hop, Pivot, Scan, Session, Touch, Traversal,
    },
    time_fmt::format_ts,
};

/// Entries kept in a stored list (ports, hosts, targets, attackers); the counts stay exact.
pub const LIST_MAX: usize = 256;

/// An event as the correlator reads it (no raw line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFact {
    pub id: i64,
    pub ts_ns: i64,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: Option<IpAddr>,
    /// JSON object (as stored; may be malformed if another producer wrote it).
    pub fields: String,
}

/// The sessions of one (attacker, decky, service) from `from_ns` on, recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReplace {
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub from_ns: i64,
    pub sessions: Vec<Session>,
}

/// The scan episodes of one (attacker, kind) from `from_ns` on, recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReplace {
    pub attacker_ip: IpAddr,
    pub kind: String,
    pub from_ns: i64,
    pub scans: Vec<Scan>,
}

/// One correlator transaction's writes (applied in this order by [`WriteTx::apply_intel`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntelBatch {
    pub attackers: Vec<AttackerUpdate>,
    pub touches: Vec<Touch>,
    pub sessions: Vec<SessionReplace>,
    pub scans: Vec<ScanReplace>,
    pub traversals: Vec<Traversal>,
    pub reuse: Vec<CredentialReuse>,
    pub pivots: Vec<Pivot>,
    /// Re-derive these attackers' counters (after the sessions are written).
    pub refresh: Vec<IpAddr>,
    /// Queue these attackers for the profiler.
    pub evidence: Vec<IpAddr>,
}

impl IntelBatch {
    pub fn is_empty(&self) -> bool {
        self == &IntelBatch::default()
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    limits::text(
        &serde_json::to_string(v).unwrap_or_else(|_| "[]".into()),
        limits::LONG,
    )
    .into_owned()
}

fn name(s: &str) -> String {
    limits::text(s, limits::NAME).into_owned()
}

/// `?, ?, …` with `n` placeholders.
fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

const S_COLUMNS: [&str; 9] = [
    "attacker_ip",
    "decky",
    "service",
    "started_at",
    "ended_at",
    "event_count",
    "bytes",
    "commands",
    "closed",
];
const S_REPLACE: [(&str, Merge); 5] = [
    ("ended_at", Merge::Replace),
    ("event_count", Merge::Replace),
    ("bytes", Merge::Replace),
    ("commands", Merge::Replace),
    ("closed", Merge::Replace),
];

const SC_COLUMNS: [&str; 11] = [
    "attacker_ip",
    "kind",
    "started_at",
    "ended_at",
    "probes",
    "port_count",
    "ports",
    "host_count",
    "hosts",
    "rate_per_min",
    "detected",
];
const SC_REPLACE: [(&str, Merge); 8] = [
    ("ended_at", Merge::Replace),
    ("probes", Merge::Replace),
    ("port_count", Merge::Replace),
    ("ports", Merge::Replace),
    ("host_count", Merge::Replace),
    ("hosts", Merge::Replace),
    ("rate_per_min", Merge::Replace),
    ("detected", Merge::Replace),
];

const TR_COLUMNS: [&str; 5] = [
    "attacker_ip",
    "hop_count",
    "path",
    "first_seen",
    "last_seen",
];
const TR_REPLACE: [(&str, Merge); 4] = [
    ("hop_count", Merge::Replace),
    ("path", Merge::Replace),
    ("first_seen", Merge::Replace),
    ("last_seen", Merge::Replace),
];

const PV_COLUMNS: [&str; 6] = [
    "src_decky",
    "dst_decky",
    "dst_port",
    "proto",
    "first_seen",
    "last_seen",
];
const PV_MERGE: [(&str, Merge); 2] = [("first_seen", Merge::Min), ("last_seen", Merge::Max)];

const CR_COLUMNS: [&str; 10] = [
    "secret_hash",
    "secret_kind",
    "secret_printable",
    "target_count",
    "targets",
    "attacker_count",
    "attackers",
    "credential_rows",
    "first_seen",
    "last_seen",
];
const CR_REPLACE: [(&str, Merge); 9] = [
    ("secret_kind", Merge::Replace),
    ("secret_printable", Merge::Replace),
    ("target_count", Merge::Replace),
    ("targets", Merge::Replace),
    ("attacker_count", Merge::Replace),
    ("attackers", Merge::Replace),
    ("credential_rows", Merge::Replace),
    ("first_seen", Merge::Replace),
    ("last_seen", Merge::Replace),
];

impl WriteTx {
    /// Applies one correlator batch (see [`IntelBatch`]).
    pub async fn apply_intel(&mut self, b: &IntelBatch) -> Result<u64, RepoError> {
        let mut n = 0;
        n += self.upsert_attackers(&b.attackers).await?;
        n += self.touch(&b.touches).await?;
        for r in &b.sessions {
            n += self.replace_sessions(r).await?;
        }
        for r in &b.scans {
            n += self.replace_scans(r).await?;
        }
        n += self.upsert_traversals(&b.traversals).await?;
        n += self.upsert_reuse(&b.reuse).await?;
        n += self.upsert_pivots(&b.pivots).await?;
        self.refresh_attacker_counts(&b.refresh).await?;
        n += self.mark_evidence(&b.evidence).await?;
        Ok(n)
    }

    /// Replaces the sessions of one key from `from_ns` on by `r.sessions` (which must all start
    /// at or after `from_ns`): stored ones the recomputation no longer has are deleted.
    pub async fn replace_sessions(&mut self, r: &SessionReplace) -> Result<u64, RepoError> {
        let (ip, decky, service) = (r.attacker_ip.to_string(), name(&r.decky), name(&r.service));
        let starts: Vec<String> = r.sessions.iter().map(|s| format_ts(s.started_ns)).collect();
        let mut sql = "DELETE FROM sessions WHERE attacker_ip = ? AND decky = ? AND service = ? \
                       AND started_at >= ?"
            .to_owned();
        if !starts.is_empty() {
            sql.push_str(&format!(
                " AND started_at NOT IN ({})",
                placeholders(starts.len())
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(ip)
            .bind(decky)
            .bind(service)
            .bind(format_ts(r.from_ns));
        for s in &starts {
            q = q.bind(s.clone());
        }
        let mut n = q.execute(&mut *self.tx).await?.rows_affected();
        if r.sessions.is_empty() {
            return Ok(n);
        }
        let tail = self
            .dialect
            .upsert_tail("sessions", &S_COLUMNS[..4], &S_REPLACE);
        n += insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "sessions",
                columns: &S_COLUMNS,
                tail: &tail,
            },
            &r.sessions,
            |q: AnyQuery<'_>, s: &Session| {
                let commands: Vec<std::borrow::Cow<'_, str>> = s
                    .commands
                    .iter()
                    .map(|c| limits::text(c, limits::SHORT_TEXT))
                    .collect();
                q.bind(s.attacker_ip.to_string())
                    .bind(name(&s.decky))
                    .bind(name(&s.service))
                    .bind(format_ts(s.started_ns))
                    .bind(format_ts(s.ended_ns))
                    .bind(sat(s.event_count))
                    .bind(sat(s.bytes))
                    .bind(json(&commands))
                    .bind(i64::from(s.closed))
            },
        )
        .await?;
        Ok(n)
    }

    /// Replaces the scan episodes of one (attacker, kind) from `from_ns` on.
    pub async fn replace_scans(&mut self, r: &ScanReplace) -> Result<u64, RepoError> {
        let starts: Vec<String> = r.scans.iter().map(|s| format_ts(s.started_ns)).collect();
        let mut sql =
            "DELETE FROM scans WHERE attacker_ip = ? AND kind = ? AND started_at >= ?".to_owned();
        if !starts.is_empty() {
            sql.push_str(&format!(
                " AND started_at NOT IN ({})",
                placeholders(starts.len())
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(r.attacker_ip.to_string())
            .bind(name(&r.kind))
            .bind(format_ts(r.from_ns));
        for s in &starts {
            q = q.bind(s.clone());
        }
        let mut n = q.execute(&mut *self.tx).await?.rows_affected();
        if r.scans.is_empty() {
            return Ok(n);
        }
        let tail = self
            .dialect
            .upsert_tail("scans", &SC_COLUMNS[..3], &SC_REPLACE);
        n += insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "scans",
                columns: &SC_COLUMNS,
                tail: &tail,
            },
            &r.scans,
            |q: AnyQuery<'_>, s: &Scan| {
                let ports: Vec<u16> = s.ports.iter().copied().take(LIST_MAX).collect();
                let hosts: Vec<String> = s.hosts.iter().take(LIST_MAX).map(|h| name(h)).collect();
                q.bind(s.attacker_ip.to_string())
                    .bind(name(&s.kind))
                    .bind(format_ts(s.started_ns))
                    .bind(format_ts(s.ended_ns))
                    .bind(sat(s.probes))
                    .bind(sat(s.port_count))
                    .bind(json(&ports))
                    .bind(sat(s.host_count))
                    .bind(json(&hosts))
                    .bind(sat(s.rate_per_min))
                    .bind(i64::from(s.detected))
            },
        )
        .await?;
        Ok(n)
    }

    pub async fn upsert_traversals(&mut self, ts: &[Traversal]) -> Result<u64, RepoError> {
        if ts.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("traversals", &["attacker_ip"], &TR_REPLACE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "traversals",
                columns: &TR_COLUMNS,
                tail: &tail,
            },
            ts,
            |q: AnyQuery<'_>, t: &Traversal| {
                let hops: Vec<Hop> = t
                    .hops
                    .iter()
                    .take(LIST_MAX)
                    .map(|h| Hop {
                        decky: name(&h.decky),
                        first_seen_ns: h.first_seen_ns,
                    })
                    .collect();
                q.bind(t.attacker_ip.to_string())
                    .bind(sat(t.hops.len() as u64))
                    .bind(json(&hops))
                    .bind(format_ts(t.first_seen_ns))
                    .bind(format_ts(t.last_seen_ns))
            },
        )
        .await
    }

    pub async fn upsert_pivots(&mut self, ps: &[Pivot]) -> Result<u64, RepoError> {
        if ps.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("pivots", &PV_COLUMNS[..4], &PV_MERGE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "pivots",
                columns: &PV_COLUMNS,
                tail: &tail,
            },
            ps,
            |q: AnyQuery<'_>, p: &Pivot| {
                q.bind(name(&p.src_decky))
                    .bind(name(&p.dst_decky))
                    .bind(i64::from(p.dst_port))
                    .bind(i64::from(p.proto))
                    .bind(format_ts(p.first_seen_ns))
                    .bind(format_ts(p.last_seen_ns))
            },
        )
        .await
    }

    pub async fn upsert_reuse(&mut self, rs: &[CredentialReuse]) -> Result<u64, RepoError> {
        if rs.is_empty() {
            return Ok(0);
        }
        let tail = self
            .dialect
            .upsert_tail("credential_reuse", &["secret_hash"], &CR_REPLACE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "credential_reuse",
                columns: &CR_COLUMNS,
                tail: &tail,
            },
            rs,
            |q: AnyQuery<'_>, r: &CredentialReuse| {
                let targets: Vec<String> = r
                    .targets
                    .iter()
                    .take(LIST_MAX)
                    .map(|t| limits::text(t, 2 * limits::NAME + 1).into_owned())
                    .collect();
                let attackers: Vec<&String> = r.attackers.iter().take(LIST_MAX).collect();
                q.bind(r.secret_hash.to_vec())
                    .bind(name(&r.secret_kind))
                    .bind(limits::text(&r.secret_printable, limits::SHORT_TEXT).into_owned())
                    .bind(sat(r.target_count))
                    .bind(json(&targets))
                    .bind(sat(r.attacker_count))
                    .bind(json(&attackers))
                    .bind(sat(r.credential_rows))
                    .bind(format_ts(r.first_seen_ns))
                    .bind(format_ts(r.last_seen_ns))
            },
        )
        .await
    }

    /// Stamps `ips` with the next evidence sequence number (one per call).
    pub async fn mark_evidence(&mut self, ips: &[IpAddr]) -> Result<u64, RepoError> {
        if ips.is_empty() {
            return Ok(0);
        }
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM attacker_evidence")
            .fetch_one(&mut *self.tx)
            .await?;
        let seq = max.unwrap_or(0) + 1;
        let tail = self.dialect.upsert_tail(
            "attacker_evidence",
            &["attacker_ip"],
            &[("seq", Merge::Max)],
        );
        let rows: Vec<(String, i64)> = ips.iter().map(|ip| (ip.to_string(), seq)).collect();
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "attacker_evidence",
                columns: &["attacker_ip", "seq"],
                tail: &tail,
            },
            &rows,
            |q: AnyQuery<'_>, r: &(String, i64)| q.bind(r.0.clone()).bind(r.1),
        )
        .await
    }
}

const EF_SELECT: &str =
    "SELECT id, ts, decky, service, event_type, attacker_ip, fields FROM events";

fn decode_event_fact(row: &sqlx::any::AnyRow) -> Result<EventFact, RepoError> {
    let d = Decoder::new(row, "events", Some(0));
    Ok(EventFact {
        id: d.i64(0, "id")?,
        ts_ns: d.ts(1, "ts")?,
        decky: d.text(2, "decky")?,
        service: d.text(3, "service")?,
        event_type: d.text(4, "event_type")?,
        attacker_ip: d.opt_ip(5, "attacker_ip")?,
        fields: d.text(6, "fields")?,
    })
}

const FLOW_SELECT: &str = "SELECT id, bridge, port, src_ip, dst_ip, src_port, dst_port, proto, vlan, \
     packets, bytes, tcp_flags, first_seen, last_seen, ended FROM flows";

fn decode_flow(row: &sqlx::any::AnyRow) -> Result<(i64, FlowRecord), RepoError> {
    let d = Decoder::new(row, "flows", Some(0));
    Ok((
        d.i64(0, "id")?,
        FlowRecord {
            bridge: d.text(1, "bridge")?,
            port: d.text(2, "port")?,
            src_ip: d.ip(3, "src_ip")?,
            dst_ip: d.ip(4, "dst_ip")?,
            src_port: d.int(5, "src_port")?,
            dst_port: d.int(6, "dst_port")?,
            proto: d.int(7, "proto")?,
            vlan: d.int(8, "vlan")?,
            packets: d.u64(9, "packets")?,
            bytes: d.u64(10, "bytes")?,
            tcp_flags: d.int(11, "tcp_flags")?,
            first_seen_ns: d.ts(12, "first_seen")?,
            last_seen_ns: d.ts(13, "last_seen")?,
            ended: d.i64(14, "ended")? != 0,
        },
    ))
}

const SCAN_SELECT: &str = "SELECT id, attacker_ip, kind, started_at, ended_at, probes, port_count, \
     ports, host_count, hosts, rate_per_min, detected FROM scans";

fn decode_scan(row: &sqlx::any::AnyRow) -> Result<Scan, RepoError> {
    let d = Decoder::new(row, "scans", Some(0));
    Ok(Scan {
        attacker_ip: d.ip(1, "attacker_ip")?,
        kind: d.text(2, "kind")?,
        started_ns: d.ts(3, "started_at")?,
        ended_ns: d.ts(4, "ended_at")?,
        probes: d.u64(5, "probes")?,
        port_count: d.u64(6, "port_count")?,
        ports: d.json(7, "ports")?,
        host_count: d.u64(8, "host_count")?,
        hosts: d.json(9, "hosts")?,
        rate_per_min: d.u64(10, "rate_per_min")?,
        detected: d.i64(11, "detected")? != 0,
    })
}

const CR_SELECT: &str = "SELECT secret_hash, secret_kind, secret_printable, target_count, targets, \
     attacker_count, attackers, credential_rows, first_seen, last_seen FROM credential_reuse";

fn decode_reuse(row: &sqlx::any::AnyRow) -> Result<CredentialReuse, RepoError> {
    let d = Decoder::new(row, "credential_reuse", None);
    Ok(CredentialReuse {
        secret_hash: d.hash(0, "secret_hash")?,
        secret_kind: d.text(1, "secret_kind")?,
        secret_printable: d.text(2, "secret_printable")?,
        target_count: d.u64(3, "target_count")?,
        targets: d.json(4, "targets")?,
        attacker_count: d.u64(5, "attacker_count")?,
        attackers: d.json(6, "attackers")?,
        credential_rows: d.u64(7, "credential_rows")?,
        first_seen_ns: d.ts(8, "first_seen")?,
        last_seen_ns: d.ts(9, "last_seen")?,
    })
}

/// A credential row as the reuse rule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFact {
    pub id: i64,
    pub attacker_ip: IpAddr,
    pub decky: String,
    pub service: String,
    pub secret_kind: String,
    pub secret_hash: [u8; 32],
    pub secret_printable: String,
    pub attempts: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

const CF_SELECT: &str = "SELECT id, attacker_ip, decky, service, secret_kind, secret_hash, \
     secret_printable, attempts, first_seen, last_seen FROM credentials";

fn decode_cred(row: &sqlx::any::AnyRow) -> Result<CredentialFact, RepoError> {
    let d = Decoder::new(row, "credentials", Some(0));
    Ok(CredentialFact {
        id: d.i64(0, "id")?,
        attacker_ip: d.ip(1, "attacker_ip")?,
        decky: d.text(2, "decky")?,
        service: d.text(3, "service")?,
        secret_kind: d.text(4, "secret_kind")?,
        secret_hash: d.hash(5, "secret_hash")?,
        secret_printable: d.text(6, "secret_printable")?,
        attempts: d.u64(7, "attempts")?,
        first_seen_ns: d.ts(8, "first_seen")?,
        last_seen_ns: d.ts(9, "last_seen")?,
    })
}

impl Repository {
    /// [`WriteTx::apply_intel`] in its own (retried) transaction.
    pub async fn apply_intel(&self, b: &IntelBatch) -> Result<u64, RepoError> {
        Ok(self.write(&[super::Write::Intel(b)]).await?[0])
    }

    /// Up to `limit` events with `id > after`, in id order, without their raw lines.
    pub async fn event_facts_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventFact>, RepoError> {
        let rows = sqlx::query(&format!("{EF_SELECT} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_event_fact).collect()
    }

    /// The events of one (attacker, decky, service) at or after `from_ns`, in time order.
    pub async fn key_events(
        &self,
        ip: IpAddr,
        decky: &str,
        service: &str,
        from_ns: i64,
    ) -> Result<Vec<EventFact>, RepoError> {
        let rows = sqlx::query(&format!(
            "{EF_SELECT} WHERE attacker_ip = ? AND ts >= ? AND decky = ? AND service = ? \
             ORDER BY ts, id"
        ))
        .bind(ip.to_string())
        .bind(format_ts(from_ns))
        .bind(name(decky))
        .bind(name(service))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode_event_fact).collect()
    }

    /// The newest `limit` events of `ip`, in time order.
    pub async fn recent_events(&self, ip: IpAddr, limit: u32) -> Result<Vec<EventFact>, RepoError> {
        let rows = sqlx::query(&format!(
            "{EF_SELECT} WHERE attacker_ip = ? ORDER BY ts DESC, id DESC LIMIT ?"
        ))
        .bind(ip.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut v = rows
            .iter()
            .map(decode_event_fact)
            .collect::<Result<Vec<_>, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// The start of the newest stored session of the key that started at or before `at_ns`.
    pub async fn session_start_before(
        &self,
        ip: IpAddr,
        decky: &str,
        service: &str,
        at_ns: i64,
    ) -> Result<Option<i64>, RepoError> {
        let row = sqlx::query(
            "SELECT started_at FROM sessions WHERE attacker_ip = ? AND decky = ? AND service = ? \
             AND started_at <= ? ORDER BY started_at DESC LIMIT 1",
        )
        .bind(ip.to_string())
        .bind(name(decky))
        .bind(name(service))
        .bind(format_ts(at_ns))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Decoder::new(&r, "sessions", None).ts(0, "started_at"))
            .transpose()
    }

    /// The start of the newest stored scan episode of (ip, kind) that started at or before
    /// `at_ns`.
    pub async fn scan_start_before(
        &self,
        ip: IpAddr,
        kind: &str,
        at_ns: i64,
    ) -> Result<Option<i64>, RepoError> {
        let row = sqlx::query(
            "SELECT started_at FROM scans WHERE attacker_ip = ? AND kind = ? AND started_at <= ? \
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(ip.to_string())
        .bind(name(kind))
        .bind(format_ts(at_ns))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Decoder::new(&r, "scans", None).ts(0, "started_at"))
            .transpose()
    }

    /// Up to `limit` flows with `id > after`, in id order, with their ids.
    pub async fn flows_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FlowRecord)>, RepoError> {
        let rows = sqlx::query(&format!("{FLOW_SELECT} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_flow).collect()
    }

    /// Flows from `ip` that started at or after `from_ns`, in time order.
    pub async fn flows_from(&self, ip: IpAddr, from_ns: i64) -> Result<Vec<FlowRecord>, RepoError> {
        let rows = sqlx::query(&format!(
            "{FLOW_SELECT} WHERE src_ip = ? AND first_seen >= ? ORDER BY first_seen, id"
        ))
        .bind(ip.to_string())
        .bind(format_ts(from_ns))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| decode_flow(r).map(|(_, f)| f))
            .collect()
    }

    /// Bytes of the flows between `attacker` and `decky_ip` on `port` (both directions) whose
    /// attacker side started in `[from_ns, to_ns]`. The attacker's flows come by its index; each
    /// one's reply by the flow key (bridge, decky, attacker, ports): the cost follows the
    /// attacker's flows, not the decky's history.
    pub async fn flow_bytes(
        &self,
        attacker: IpAddr,
        decky_ip: IpAddr,
        port: u16,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<u64, RepoError> {
        let (a, d) = (attacker.to_string(), decky_ip.to_string());
        let rows = sqlx::query(
            "SELECT bridge, src_port, bytes, proto FROM flows WHERE src_ip = ? AND dst_ip = ? \
             AND dst_port = ? AND first_seen >= ? AND first_seen <= ?",
        )
        .bind(a.clone())
        .bind(d.clone())
        .bind(i64::from(port))
        .bind(format_ts(from_ns))
        .bind(format_ts(to_ns))
        .fetch_all(self.pool())
        .await?;
        let mut total = 0u64;
        for row in &rows {
            let dec = Decoder::new(row, "flows", None);
            let (bridge, sport, bytes, proto) = (
                dec.text(0, "bridge")?,
                dec.i64(1, "src_port")?,
                dec.u64(2, "bytes")?,
                dec.i64(3, "proto")?,
            );
            total = total.saturating_add(bytes);
            let replies: Vec<i64> = sqlx::query_scalar(
                "SELECT bytes FROM flows WHERE bridge = ? AND src_ip = ? AND dst_ip = ? \
                 AND src_port = ? AND dst_port = ? AND proto = ? AND first_seen >= ? \
                 AND first_seen <= ?",
            )
            .bind(bridge)
            .bind(d.clone())
            .bind(a.clone())
            .bind(i64::from(port))
            .bind(sport)
            .bind(proto)
            .bind(format_ts(from_ns))
            .bind(format_ts(to_ns))
            .fetch_all(self.pool())
            .await?;
            for n in replies {
                total = total.saturating_add(u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(total)
    }

    /// Decky IP → name, and (decky, service) → port, from the recorded fleet.
    pub async fn decky_directory(
        &self,
    ) -> Result<(HashMap<IpAddr, String>, HashMap<(String, String), u16>), RepoError> {
        let rows = sqlx::query("SELECT id, name, ip FROM deckies ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut by_ip = HashMap::new();
        for row in &rows {
            let d = Decoder::new(row, "deckies", Some(0));
            by_ip.insert(d.ip(2, "ip")?, d.text(1, "name")?);
        }
        let rows = sqlx::query(
            "SELECT decky, service, port FROM decky_services ORDER BY decky, service, port",
        )
        .fetch_all(self.pool())
        .await?;
        let mut ports = HashMap::new();
        for row in &rows {
            let d = Decoder::new(row, "decky_services", None);
            ports
                .entry((d.text(0, "decky")?, d.text(1, "service")?))
                .or_insert(d.int(2, "port")?);
        }
        Ok((by_ip, ports))
    }

    /// Up to `limit` credentials with `id > after`, in id order.
    pub async fn credential_facts_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<CredentialFact>, RepoError> {
        let rows = sqlx::query(&format!("{CF_SELECT} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_cred).collect()
    }

    /// Every credential row with one of these secret hashes.
    pub async fn credentials_by_secret(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<CredentialFact>, RepoError> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "{CF_SELECT} WHERE secret_hash IN ({}) ORDER BY id",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.to_vec());
            }
            for row in q.fetch_all(self.pool()).await? {
                out.push(decode_cred(&row)?);
            }
        }
        Ok(out)
    }

    /// Credential reuse of these secrets, aggregated in SQL from every credential row with the
    /// secret (only secrets that reach two (decky, service) targets), ordered by hash.
    pub async fn reuse_of_secrets(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<CredentialReuse>, RepoError> {
        let mut out = Vec::new();
        let mut sorted = hashes.to_vec();
        sorted.sort();
        sorted.dedup();
        for h in sorted {
            let key = h.to_vec();
            let targets: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT DISTINCT decky, service FROM credentials \
                 WHERE secret_hash = ?) t",
            )
            .bind(key.clone())
            .fetch_one(self.pool())
            .await?;
            if targets < 2 {
                continue;
            }
            let row = sqlx::query(
                "SELECT MIN(id), COUNT(*), MIN(first_seen), MAX(last_seen) FROM credentials \
                 WHERE secret_hash = ?",
            )
            .bind(key.clone())
            .fetch_one(self.pool())
            .await?;
            let d = Decoder::new(&row, "credentials", None);
            let (first_id, rows, first, last) = (
                d.i64(0, "id")?,
                d.u64(1, "count")?,
                d.ts(2, "first_seen")?,
                d.ts(3, "last_seen")?,
            );
            let row =
                sqlx::query("SELECT secret_kind, secret_printable FROM credentials WHERE id = ?")
                    .bind(first_id)
                    .fetch_one(self.pool())
                    .await?;
            let d = Decoder::new(&row, "credentials", None);
            let (kind, printable) = (d.text(0, "secret_kind")?, d.text(1, "secret_printable")?);
            let attackers: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT DISTINCT attacker_ip FROM credentials \
                 WHERE secret_hash = ?) t",
            )
            .bind(key.clone())
            .fetch_one(self.pool())
            .await?;
            let target_rows = sqlx::query(&format!(
                "SELECT DISTINCT decky, service FROM credentials WHERE secret_hash = ? \
                 ORDER BY decky, service LIMIT {LIST_MAX}"
            ))
            .bind(key.clone())
            .fetch_all(self.pool())
            .await?;
            let mut target_list = Vec::with_capacity(target_rows.len());
            for r in &target_rows {
                let d = Decoder::new(r, "credentials", None);
                target_list.push(format!("{}/{}", d.text(0, "decky")?, d.text(1, "service")?));
            }
            target_list.sort();
            let attacker_list = self.secret_attackers(&h, LIST_MAX).await?;
            out.push(CredentialReuse {
                secret_hash: h,
                secret_kind: kind,
                secret_printable: printable,
                target_count: u64::try_from(targets).unwrap_or(0),
                targets: target_list,
                attacker_count: u64::try_from(attackers).unwrap_or(0),
                attackers: attacker_list.iter().map(|ip| ip.to_string()).collect(),
                credential_rows: rows,
                first_seen_ns: first,
                last_seen_ns: last,
            });
        }
        Ok(out)
    }

    /// The attackers that tried secret `hash` (at most `limit`, by address text).
    pub async fn secret_attackers(
        &self,
        hash: &[u8; 32],
        limit: usize,
    ) -> Result<Vec<IpAddr>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT attacker_ip FROM credentials WHERE secret_hash = ? \
             ORDER BY attacker_ip LIMIT {}",
            limit.min(1_000_000)
        ))
        .bind(hash.to_vec())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Decoder::new(r, "credentials", None).ip(0, "attacker_ip"))
            .collect()
    }

    /// The stored reuse target counts of these secrets.
    pub async fn reuse_target_counts(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], u64>, RepoError> {
        let mut out = HashMap::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT secret_hash, target_count FROM credential_reuse WHERE secret_hash IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q.bind(h.to_vec());
            }
            for row in q.fetch_all(self.pool()).await? {
                let d = Decoder::new(&row, "credential_reuse", None);
                out.insert(d.hash(0, "secret_hash")?, d.u64(1, "target_count")?);
            }
        }
        Ok(out)
    }

    /// Scan episodes of `ip` (`detected_only`: those that passed the thresholds), in time order.
    pub async fn scan_episodes(
        &self,
        ip: IpAddr,
        detected_only: bool,
    ) -> Result<Vec<Scan>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SCAN_SELECT} WHERE attacker_ip = ?{} ORDER BY started_at, kind",
            if detected_only {
                " AND detected = 1"
            } else {
                ""
            }
        ))
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode_scan).collect()
    }

    pub async fn traversal_of(&self, ip: IpAddr) -> Result<Option<Traversal>, RepoError> {
        let row = sqlx::query(
            "SELECT attacker_ip, hop_count, path, first_seen, last_seen FROM traversals \
             WHERE attacker_ip = ?",
        )
        .bind(ip.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let d = Decoder::new(&row, "traversals", None);
        Ok(Some(Traversal {
            attacker_ip: d.ip(0, "attacker_ip")?,
            hops: d.json(2, "path")?,
            first_seen_ns: d.ts(3, "first_seen")?,
            last_seen_ns: d.ts(4, "last_seen")?,
        }))
    }

    /// Every traversal, by attacker.
    pub async fn traversals(&self) -> Result<Vec<Traversal>, RepoError> {
        let rows = sqlx::query(
            "SELECT attacker_ip, hop_count, path, first_seen, last_seen FROM traversals \
             ORDER BY attacker_ip",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "traversals", None);
                Ok(Traversal {
                    attacker_ip: d.ip(0, "attacker_ip")?,
                    hops: d.json(2, "path")?,
                    first_seen_ns: d.ts(3, "first_seen")?,
                    last_seen_ns: d.ts(4, "last_seen")?,
                })
            })
            .collect()
    }

    /// Every credential-reuse record, by secret hash.
    pub async fn credential_reuse(&self) -> Result<Vec<CredentialReuse>, RepoError> {
        let rows = sqlx::query(&format!("{CR_SELECT} ORDER BY secret_hash"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_reuse).collect()
    }

    /// Reuse records of the secrets `ip` tried.
    pub async fn reuse_of(&self, ip: IpAddr) -> Result<Vec<CredentialReuse>, RepoError> {
        let rows = sqlx::query(&format!(
            "{CR_SELECT} WHERE secret_hash IN (SELECT secret_hash FROM credentials \
             WHERE attacker_ip = ?) ORDER BY secret_hash"
        ))
        .bind(ip.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode_reuse).collect()
    }

    /// Every pivot, ordered by key.
    pub async fn pivots(&self) -> Result<Vec<Pivot>, RepoError> {
        let rows = sqlx::query(
            "SELECT src_decky, dst_decky, dst_port, proto, first_seen, last_seen FROM pivots \
             ORDER BY src_decky, dst_decky, dst_port, proto",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "pivots", None);
                Ok(Pivot {
                    src_decky: d.text(0, "src_decky")?,
                    dst_decky: d.text(1, "dst_decky")?,
                    dst_port: d.int(2, "dst_port")?,
                    proto: d.int(3, "proto")?,
                    first_seen_ns: d.ts(4, "first_seen")?,
                    last_seen_ns: d.ts(5, "last_seen")?,
                })
            })
            .collect()
    }

    /// Attackers queued for the profiler after the position (`seq`, `ip`), in queue order:
    /// `(seq, ip)`.
    pub async fn evidence_after(
        &self,
        seq: i64,
        ip: &str,
        limit: u32,
    ) -> Result<Vec<(i64, IpAddr)>, RepoError> {
        let rows = sqlx::query(
            "SELECT seq, attacker_ip FROM attacker_evidence \
             WHERE seq > ? OR (seq = ? AND attacker_ip > ?) ORDER BY seq, attacker_ip LIMIT ?",
        )
        .bind(seq)
        .bind(seq)
        .bind(ip.to_owned())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "attacker_evidence", None);
                Ok((d.i64(0, "seq")?, d.ip(1, "attacker_ip")?))
            })
            .collect()
    }
}
