//! Read queries for the REST API and dashboard (`decnet web`): filtered listings with keyset
//! cursors (newest first, `id < cursor`, so a page costs the same at any depth), the attacker
//! page, fleet activity, statistics and the time histogram. Portable SQL only; every filter
//! value is a bound parameter, never spliced into the statement.
use std::net::IpAddr;

use serde::Serialize;
use sqlx::any::AnyRow;

use super::{RepoError, Repository, decode::Decoder, limits};
use crate::{
    model::{Attacker, Credential, Event, Fingerprint, FlowRecord, Session},
    time_fmt::format_ts,
};

/// Rows per page at most.
pub const MAX_PAGE: u32 = 500;
/// Longest text-search needle accepted.
pub const MAX_NEEDLE: usize = 128;

/// A bound parameter of a dynamically assembled statement.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// WHERE clauses and their parameters, assembled in order.
#[derive(Debug, Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn text(&mut self, clause: &str, v: impl Into<String>) {
        self.clauses.push(clause.to_owned());
        self.args.push(Arg::Text(v.into()));
    }
    fn int(&mut self, clause: &str, v: i64) {
        self.clauses.push(clause.to_owned());
        self.args.push(Arg::Int(v));
    }
    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
    async fn fetch(
        self,
        repo: &Repository,
        head: &str,
        tail: &str,
        extra: &[Arg],
    ) -> Result<Vec<AnyRow>, RepoError> {
        let sql = format!("{head}{}{tail}", self.sql());
        let mut q = sqlx::query(&sql);
        for a in self.args.iter().chain(extra) {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        Ok(q.fetch_all(repo.pool()).await?)
    }
}

/// `s` as a LIKE pattern matching it anywhere, `!` escaping the wildcards (an escape character
/// both SQLite and MySQL read the same way).
fn like_anywhere(s: &str) -> String {
    let mut out = String::from("%");
    for c in limits::text(s, MAX_NEEDLE).chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn like_prefix(s: &str) -> String {
    let mut p = like_anywhere(s);
    p.remove(0);
    p
}

fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}

/// Filters of [`Repository::list_events`]. Times are Unix epoch nanoseconds; `before_id` is
/// the keyset cursor (the last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub decky: Option<String>,
    pub service: Option<String>,
    pub event_type: Option<String>,
    pub attacker: Option<IpAddr>,
    /// Substring of the event's fields (JSON text), at most [`MAX_NEEDLE`] bytes.
    pub text: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

const EVENT_COLS: &str = "SELECT id, ts, decky, service, event_type, attacker_ip, attacker_port, fields, raw FROM events";

fn decode_event(row: &AnyRow) -> Result<Event, RepoError> {
    let d = Decoder::new(row, "events", Some(0));
    Ok(Event {
        id: d.i64(0, "id")?,
        ts_ns: d.ts(1, "ts")?,
        decky: d.text(2, "decky")?,
        service: d.text(3, "service")?,
        event_type: d.text(4, "event_type")?,
        attacker_ip: d.opt_ip(5, "attacker_ip")?,
        attacker_port: d.opt_int(6, "attacker_port")?,
        fields: d.text(7, "fields")?,
        raw: d.bytes(8, "raw")?,
    })
}

/// Sort orders of [`Repository::list_attackers`], newest / busiest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttackerSort {
    #[default]
    LastSeen,
    Events,
}

/// Keyset position in an attacker listing: the sort key and id of the last row seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackerCursor {
    LastSeen { last_seen_ns: i64, id: i64 },
    Events { events: i64, id: i64 },
}

#[derive(Debug, Clone, Default)]
pub struct AttackerFilter {
    pub sort: AttackerSort,
    /// Addresses starting with this text.
    pub ip_prefix: Option<String>,
    pub min_events: Option<u64>,
    pub after: Option<AttackerCursor>,
    pub limit: u32,
}

/// An attacker row with the profiler's verdict when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct AttackerRow {
    #[serde(flatten)]
    pub attacker: Attacker,
    pub score: Option<u8>,
    pub behaviour: Option<String>,
}

impl AttackerRow {
    /// The cursor that continues a listing after this row.
    pub fn cursor(&self, sort: AttackerSort) -> AttackerCursor {
        match sort {
            AttackerSort::LastSeen => AttackerCursor::LastSeen {
                last_seen_ns: self.attacker.last_seen_ns,
                id: self.attacker.id,
            },
            AttackerSort::Events => AttackerCursor::Events {
                events: i64::try_from(self.attacker.event_count).unwrap_or(i64::MAX),
                id: self.attacker.id,
            },
        }
    }
}

fn decode_attacker_row(row: &AnyRow) -> Result<AttackerRow, RepoError> {
    let d = Decoder::new(row, "attackers", Some(0));
    Ok(AttackerRow {
        attacker: Attacker {
            id: d.i64(0, "id")?,
            ip: d.ip(1, "ip")?,
            first_seen_ns: d.ts(2, "first_seen")?,
            last_seen_ns: d.ts(3, "last_seen")?,
            event_count: d.u64(4, "event_count")?,
            session_count: d.u64(5, "session_count")?,
            credential_count: d.u64(6, "credential_count")?,
            flow_count: d.u64(7, "flow_count")?,
        },
        score: d.opt_int(8, "score")?,
        behaviour: {
            use sqlx::Row as _;
            match row.try_get::<Option<String>, _>(9) {
                Ok(v) => v,
                Err(_) => match row.try_get::<Option<Vec<u8>>, _>(9) {
                    Ok(v) => v.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    Err(e) => {
                        return Err(RepoError::Corrupt {
                            table: "attacker_profiles",
                            id: -1,
                            column: "behaviour",
                            value: String::new(),
                            reason: e.to_string(),
                        });
                    }
                },
            }
        },
    })
}

const ATTACKER_COLS: &str = "SELECT a.id, a.ip, a.first_seen, a.last_seen, a.event_count, a.session_count, \
     a.credential_count, a.flow_count, p.score, p.behaviour FROM attackers a \
     LEFT JOIN attacker_profiles p ON p.attacker_ip = a.ip";

/// A session with its row id (the listing cursor).
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub id: i64,
    #[serde(flatten)]
    pub session: Session,
}

const SESSION_COLS: &str = "SELECT id, attacker_ip, decky, service, started_at, ended_at, event_count, bytes, \
     commands, closed FROM sessions";

fn decode_session(row: &AnyRow) -> Result<SessionRow, RepoError> {
    let d = Decoder::new(row, "sessions", Some(0));
    Ok(SessionRow {
        id: d.i64(0, "id")?,
        session: Session {
            attacker_ip: d.ip(1, "attacker_ip")?,
            decky: d.text(2, "decky")?,
            service: d.text(3, "service")?,
            started_ns: d.ts(4, "started_at")?,
            ended_ns: d.ts(5, "ended_at")?,
            event_count: d.u64(6, "event_count")?,
            bytes: d.u64(7, "bytes")?,
            commands: d.json(8, "commands")?,
            closed: d.i64(9, "closed")? != 0,
        },
    })
}

const CRED_COLS: &str = "SELECT id, attacker_ip, decky, service, principal, secret_kind, secret_hash, \
     secret_printable, attempts, first_seen, last_seen FROM credentials";

fn decode_credential(row: &AnyRow) -> Result<Credential, RepoError> {
    let d = Decoder::new(row, "credentials", Some(0));
    Ok(Credential {
        id: d.i64(0, "id")?,
        attacker_ip: d.ip(1, "attacker_ip")?,
        decky: d.text(2, "decky")?,
        service: d.text(3, "service")?,
        principal: d.bytes(4, "principal")?,
        secret_kind: d.text(5, "secret_kind")?,
        secret_hash: d.hash(6, "secret_hash")?,
        secret_printable: d.text(7, "secret_printable")?,
        attempts: d.u64(8, "attempts")?,
        first_seen_ns: d.ts(9, "first_seen")?,
        last_seen_ns: d.ts(10, "last_seen")?,
    })
}

/// A flow with its row id (the listing cursor).
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    pub id: i64,
    #[serde(flatten)]
    pub flow: FlowRecord,
}

const FLOW_COLS: &str = "SELECT id, bridge, port, src_ip, dst_ip, src_port, dst_port, proto, vlan, packets, \
     bytes, tcp_flags, first_seen, last_seen, ended FROM flows";

fn decode_flow(row: &AnyRow) -> Result<FlowRow, RepoError> {
    let d = Decoder::new(row, "flows", Some(0));
    Ok(FlowRow {
        id: d.i64(0, "id")?,
        flow: FlowRecord {
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
    })
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub attacker: Option<IpAddr>,
    pub decky: Option<String>,
    pub service: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub attacker: Option<IpAddr>,
    pub service: Option<String>,
    /// Substring of the principal.
    pub principal: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub proto: Option<u8>,
    pub since_ns: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// A source that touched many ports or hosts in the window (derived from `flows`).
#[derive(Debug, Clone, Serialize)]
pub struct ScanRow {
    pub src_ip: IpAddr,
    pub ports: u64,
    pub hosts: u64,
    pub flows: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// Named count.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}

/// Per-decky activity in a window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeckyActivity {
    pub decky: String,
    pub events: u64,
    pub attackers: u64,
    pub last_event_ns: Option<i64>,
}

/// Row counts of the main tables.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub attackers: u64,
    pub sessions: u64,
    pub credentials: u64,
    pub flows: u64,
    pub deckies: u64,
}

/// Histogram bucket widths (the time text is cut to this prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn prefix_len(self) -> i64 {
        // 2026-05-02T06:00:25.123456789Z
        match self {
            Bucket::Minute => 16,
            Bucket::Hour => 13,
            Bucket::Day => 10,
        }
    }
}

fn count(row: &AnyRow, i: usize, table: &'static str) -> Result<u64, RepoError> {
    Decoder::new(row, table, None).u64(i, "count")
}

impl Repository {
    /// Events matching `f`, newest (highest id) first.
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<Event>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(t) = f.since_ns {
            w.text("ts >= ?", format_ts(t));
        }
        if let Some(t) = f.until_ns {
            w.text("ts < ?", format_ts(t));
        }
        if let Some(v) = &f.decky {
            w.text("decky = ?", limits::text(v, limits::NAME));
        }
        if let Some(v) = &f.service {
            w.text("service = ?", limits::text(v, limits::NAME));
        }
        if let Some(v) = &f.event_type {
            w.text("event_type = ?", limits::text(v, limits::NAME));
        }
        if let Some(ip) = f.attacker {
            w.text("attacker_ip = ?", ip.to_string());
        }
        if let Some(t) = f.text.as_deref().filter(|t| !t.is_empty()) {
            w.text("fields LIKE ? ESCAPE '!'", like_anywhere(t));
        }
        let rows = w
            .fetch(
                self,
                EVENT_COLS,
                " ORDER BY id DESC LIMIT ?",
                &[Arg::Int(page_limit(f.limit))],
            )
            .await?;
        rows.iter().map(decode_event).collect()
    }

    /// Attackers matching `f` in the chosen order (newest activity or most events first).
    pub async fn list_attackers(&self, f: &AttackerFilter) -> Result<Vec<AttackerRow>, RepoError> {
        let mut w = Where::default();
        if let Some(p) = f.ip_prefix.as_deref().filter(|p| !p.is_empty()) {
            w.text("a.ip LIKE ? ESCAPE '!'", like_prefix(p));
        }
        if let Some(n) = f.min_events {
            w.int("a.event_count >= ?", i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut extra = Vec::new();
        let order = match (f.sort, &f.after) {
            (AttackerSort::LastSeen, after) => {
                if let Some(AttackerCursor::LastSeen { last_seen_ns, id }) = after {
                    w.clauses
                        .push("(a.last_seen < ? OR (a.last_seen = ? AND a.id < ?))".into());
                    let t = format_ts(*last_seen_ns);
                    w.args
                        .extend([Arg::Text(t.clone()), Arg::Text(t), Arg::Int(*id)]);
                }
                " ORDER BY a.last_seen DESC, a.id DESC LIMIT ?"
            }
            (AttackerSort::Events, after) => {
                if let Some(AttackerCursor::Events { events, id }) = after {
                    w.clauses
                        .push("(a.event_count < ? OR (a.event_count = ? AND a.id < ?))".into());
                    w.args
                        .extend([Arg::Int(*events), Arg::Int(*events), Arg::Int(*id)]);
                }
                " ORDER BY a.event_count DESC, a.id DESC LIMIT ?"
            }
        };
        extra.push(Arg::Int(page_limit(f.limit)));
        let rows = w.fetch(self, ATTACKER_COLS, order, &extra).await?;
        rows.iter().map(decode_attacker_row).collect()
    }

    /// One attacker with its profile verdict.
    pub async fn attacker_row(&self, ip: IpAddr) -> Result<Option<AttackerRow>, RepoError> {
        let mut w = Where::default();
        w.text("a.ip = ?", ip.to_string());
        let rows = w.fetch(self, ATTACKER_COLS, "", &[]).await?;
        rows.first().map(decode_attacker_row).transpose()
    }

    pub async fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(ip) = f.attacker {
            w.text("attacker_ip = ?", ip.to_string());
        }
        if let Some(v) = &f.decky {
            w.text("decky = ?", limits::text(v, limits::NAME));
        }
        if let Some(v) = &f.service {
            w.text("service = ?", limits::text(v, limits::NAME));
        }
        let rows = w
            .fetch(
                self,
                SESSION_COLS,
                " ORDER BY id DESC LIMIT ?",
                &[Arg::Int(page_limit(f.limit))],
            )
            .await?;
        rows.iter().map(decode_session).collect()
    }

    /// Sessions with `id > after`, oldest first (the live feed).
    pub async fn sessions_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SessionRow>, RepoError> {
        let mut w = Where::default();
        w.int("id > ?", after);
        let rows = w
            .fetch(
                self,
                SESSION_COLS,
                " ORDER BY id LIMIT ?",
                &[Arg::Int(page_limit(limit))],
            )
            .await?;
        rows.iter().map(decode_session).collect()
    }

    pub async fn list_credentials(
        &self,
        f: &CredentialFilter,
    ) -> Result<Vec<Credential>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(ip) = f.attacker {
            w.text("attacker_ip = ?", ip.to_string());
        }
        if let Some(v) = &f.service {
            w.text("service = ?", limits::text(v, limits::NAME));
        }
        if let Some(p) = f.principal.as_deref().filter(|p| !p.is_empty()) {
            w.clauses.push("principal LIKE ? ESCAPE '!'".into());
            w.args.push(Arg::Text(like_anywhere(p)));
        }
        let rows = w
            .fetch(
                self,
                CRED_COLS,
                " ORDER BY id DESC LIMIT ?",
                &[Arg::Int(page_limit(f.limit))],
            )
            .await?;
        rows.iter().map(decode_credential).collect()
    }

    pub async fn list_flows_page(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, RepoError> {
        let mut w = Where::default();
        if let Some(id) = f.before_id {
            w.int("id < ?", id);
        }
        if let Some(ip) = f.src_ip {
            w.text("src_ip = ?", ip.to_string());
        }
        if let Some(ip) = f.dst_ip {
            w.text("dst_ip = ?", ip.to_string());
        }
        if let Some(p) = f.dst_port {
            w.int("dst_port = ?", i64::from(p));
        }
        if let Some(p) = f.proto {
            w.int("proto = ?", i64::from(p));
        }
        if let Some(t) = f.since_ns {
            w.text("first_seen >= ?", format_ts(t));
        }
        let rows = w
            .fetch(
                self,
                FLOW_COLS,
                " ORDER BY id DESC LIMIT ?",
                &[Arg::Int(page_limit(f.limit))],
            )
            .await?;
        rows.iter().map(decode_flow).collect()
    }

    /// Fingerprints seen from `ip`, most recent first.
    pub async fn attacker_fingerprints(&self, ip: IpAddr) -> Result<Vec<Fingerprint>, RepoError> {
        let mut w = Where::default();
        w.text("attacker_ip = ?", ip.to_string());
        let rows = w
            .fetch(
                self,
                "SELECT id, kind, value, attacker_ip, first_seen, last_seen, count FROM fingerprints",
                " ORDER BY last_seen DESC LIMIT ?",
                &[Arg::Int(i64::from(MAX_PAGE))],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "fingerprints", Some(0));
                Ok(Fingerprint {
                    kind: d.text(1, "kind")?,
                    value: d.text(2, "value")?,
                    attacker_ip: d.ip(3, "attacker_ip")?,
                    first_seen_ns: d.ts(4, "first_seen")?,
                    last_seen_ns: d.ts(5, "last_seen")?,
                    count: d.u64(6, "count")?,
                })
            })
            .collect()
    }

    /// Sources with at least `min_ports` distinct destination ports or `min_hosts` distinct
    /// destination hosts in flows that started at or after `since_ns`, widest first.
    pub async fn flow_scans(
        &self,
        since_ns: i64,
        min_ports: u32,
        min_hosts: u32,
        limit: u32,
    ) -> Result<Vec<ScanRow>, RepoError> {
        let rows = sqlx::query(
            "SELECT src_ip, COUNT(DISTINCT dst_port) AS ports, COUNT(DISTINCT dst_ip) AS hosts, \
             COUNT(*) AS n, MIN(first_seen), MAX(last_seen) FROM flows WHERE first_seen >= ? \
             GROUP BY src_ip HAVING COUNT(DISTINCT dst_port) >= ? OR COUNT(DISTINCT dst_ip) >= ? \
             ORDER BY ports DESC, hosts DESC, src_ip LIMIT ?",
        )
        .bind(format_ts(since_ns))
        .bind(i64::from(min_ports))
        .bind(i64::from(min_hosts))
        .bind(page_limit(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "flows", None);
                Ok(ScanRow {
                    src_ip: d.ip(0, "src_ip")?,
                    ports: d.u64(1, "ports")?,
                    hosts: d.u64(2, "hosts")?,
                    flows: d.u64(3, "count")?,
                    first_seen_ns: d.ts(4, "first_seen")?,
                    last_seen_ns: d.ts(5, "last_seen")?,
                })
            })
            .collect()
    }

    /// Row counts of the main tables.
    pub async fn counts(&self) -> Result<Counts, RepoError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM attackers), \
             (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM credentials), \
             (SELECT COUNT(*) FROM flows), (SELECT COUNT(*) FROM deckies)",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(Counts {
            events: count(&row, 0, "events")?,
            attackers: count(&row, 1, "attackers")?,
            sessions: count(&row, 2, "sessions")?,
            credentials: count(&row, 3, "credentials")?,
            flows: count(&row, 4, "flows")?,
            deckies: count(&row, 5, "deckies")?,
        })
    }

    /// The highest event id (0 when there are none): where a live feed starts.
    pub async fn max_event_id(&self) -> Result<i64, RepoError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(self.pool())
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub async fn max_session_id(&self) -> Result<i64, RepoError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM sessions")
            .fetch_one(self.pool())
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The `column` values (`service`, `decky`, `event_type`) with the most events since
    /// `since_ns`.
    pub async fn top_event_values(
        &self,
        column: TopColumn,
        since_ns: i64,
        limit: u32,
    ) -> Result<Vec<NameCount>, RepoError> {
        let c = column.sql();
        let rows = sqlx::query(&format!(
            "SELECT {c}, COUNT(*) AS n FROM events WHERE ts >= ? GROUP BY {c} ORDER BY n DESC, {c} LIMIT ?"
        ))
        .bind(format_ts(since_ns))
        .bind(page_limit(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "events", None);
                Ok(NameCount {
                    name: d.text(0, "name")?,
                    count: d.u64(1, "count")?,
                })
            })
            .collect()
    }

    /// Events per bucket since `since_ns`: (bucket start as text prefix, count), in time order.
    pub async fn event_histogram(
        &self,
        since_ns: i64,
        bucket: Bucket,
    ) -> Result<Vec<NameCount>, RepoError> {
        let rows = sqlx::query(
            "SELECT SUBSTR(ts, 1, ?) AS b, COUNT(*) FROM events WHERE ts >= ? GROUP BY b ORDER BY b",
        )
        .bind(bucket.prefix_len())
        .bind(format_ts(since_ns))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "events", None);
                Ok(NameCount {
                    name: d.text(0, "bucket")?,
                    count: d.u64(1, "count")?,
                })
            })
            .collect()
    }

    /// Events, distinct attackers and last event time per decky since `since_ns`.
    pub async fn decky_activity(&self, since_ns: i64) -> Result<Vec<DeckyActivity>, RepoError> {
        let rows = sqlx::query(
            "SELECT decky, COUNT(*), COUNT(DISTINCT attacker_ip), MAX(ts) FROM events \
             WHERE ts >= ? GROUP BY decky ORDER BY decky",
        )
        .bind(format_ts(since_ns))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "events", None);
                Ok(DeckyActivity {
                    decky: d.text(0, "decky")?,
                    events: d.u64(1, "count")?,
                    attackers: d.u64(2, "attackers")?,
                    last_event_ns: Some(d.ts(3, "ts")?),
                })
            })
            .collect()
    }

    /// A cheap liveness probe of the database.
    pub async fn ping(&self) -> Result<(), RepoError> {
        let _: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(self.pool())
            .await?;
        Ok(())
    }

    pub async fn user_count(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Columns [`Repository::top_event_values`] groups by (a closed set: never caller text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopColumn {
    Service,
    Decky,
    EventType,
}

impl TopColumn {
    fn sql(self) -> &'static str {
        match self {
            TopColumn::Service => "service",
            TopColumn::Decky => "decky",
            TopColumn::EventType => "event_type",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_anywhere("a%b_c!"), "%a!%b!_c!!%");
        assert_eq!(like_prefix("10.0."), "10.0.%");
        assert!(like_anywhere(&"x".repeat(1000)).len() <= MAX_NEEDLE + 2);
    }
}
