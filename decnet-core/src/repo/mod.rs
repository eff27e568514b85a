//! The repository every decnet worker writes through.
//!
//! [`Repository`] hides which database is behind it. The backend is chosen from the URL (today only
//! SQLite, `sqlite:...`); the MySQL backend planned behind `DECNET_DB_TYPE` slots in as another
//! [`Backend`] arm. The split is:
//!
//! - here: the portable part, i.e. the table layout, the column list and unique key, how a
//!   [`FlowRecord`] is encoded into column values and decoded back, the multi-row `INSERT`
//!   text and the chunking, and the public error type;
//! - [`sqlite`]: the dialect (URL parsing, pragmas, pool, migrations, the `ON CONFLICT` clause,
//!   the variable limit) and the actual binding/execution.
//!
//! Storage conventions: IP addresses as their canonical text (`Display`), timestamps as
//! [`crate::time_fmt::format_ts`], `packets`/`bytes` saturate at `i64::MAX`, `ended` as 0/1.

mod sqlite;

use std::net::IpAddr;

use crate::model::FlowRecord;
use crate::time_fmt::{format_ts, parse_ts};

/// Name of the environment variable that carries the database URL, quoted in connection errors.
pub const DB_URL_VAR: &str = "DECNET_DB_URL";

/// Errors from the repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The URL is unusable or the database cannot be opened. The message names [`DB_URL_VAR`] and
    /// the URL (password, if any, redacted).
    #[error("cannot open the database {DB_URL_VAR}={url:?}: {reason}")]
    Connect { url: String, reason: String },
    /// The schema migrations failed.
    #[error("cannot migrate the database {DB_URL_VAR}={url:?}: {reason}")]
    Migrate { url: String, reason: String },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored row holds a value that does not decode.
    #[error("flow row {id} has an invalid {column} {value:?}: {reason}")]
    Corrupt {
        id: i64,
        column: &'static str,
        value: String,
        reason: String,
    },
}

/// The repository workers receive. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Backend,
}

/// One arm per database dialect.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteBackend),
}

impl Repository {
    /// Opens (creating the file if needed) and migrates the database at `url`.
    ///
    /// Accepts sqlx SQLite URLs: `sqlite://decnet.db` (relative), `sqlite:///abs/path.db`,
    /// `sqlite::memory:`. Any failure is one [`RepoError::Connect`] (or [`RepoError::Migrate`])
    /// naming [`DB_URL_VAR`] and the URL.
    pub async fn connect(url: &str) -> Result<Repository, RepoError> {
        if url.starts_with("sqlite:") {
            let backend = sqlite::SqliteBackend::connect(url).await?;
            return Ok(Repository {
                backend: Backend::Sqlite(backend),
            });
        }
        Err(RepoError::Connect {
            url: redact_url(url),
            reason: "unsupported URL: expected sqlite://PATH, sqlite:///ABS/PATH or \
                     sqlite::memory:"
                .to_owned(),
        })
    }

    /// Inserts or merges `flows` in one transaction and returns the number of rows written
    /// (inserted or updated).
    ///
    /// A flow already stored (same [`crate::model::FlowIdentity`]) is merged like
    /// [`FlowRecord::merge`]: counters take the maximum, flags are OR-ed, `last_seen` takes the
    /// maximum, `ended` is sticky and `port` keeps its first value. Re-exporting a flow is
    /// therefore idempotent and never shrinks a row.
    pub async fn upsert_flows(&self, flows: &[FlowRecord]) -> Result<u64, RepoError> {
        if flows.is_empty() {
            return Ok(0);
        }
        match &self.backend {
            Backend::Sqlite(b) => b.upsert_flows(flows).await,
        }
    }

    /// All stored flows, ordered by insertion (`id`).
    pub async fn list_flows(&self) -> Result<Vec<FlowRecord>, RepoError> {
        let rows = match &self.backend {
            Backend::Sqlite(b) => b.list_flows().await?,
        };
        rows.into_iter().map(StoredFlow::decode).collect()
    }

    /// Number of stored flows.
    pub async fn count_flows(&self) -> Result<u64, RepoError> {
        match &self.backend {
            Backend::Sqlite(b) => b.count_flows().await,
        }
    }

    /// Closes the pool, waiting for checked-out connections to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(b) => b.close().await,
        }
    }
}

/// Columns written by an upsert, in bind order.
const FLOW_COLUMNS: [&str; 14] = [
    "bridge",
    "port",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "proto",
    "vlan",
    "packets",
    "bytes",
    "tcp_flags",
    "first_seen",
    "last_seen",
    "ended",
];

/// The unique key of `flows` (the [`crate::model::FlowIdentity`]), the conflict target of upserts.
const FLOW_KEY: &str = "bridge, src_ip, dst_ip, src_port, dst_port, proto, vlan, first_seen";

/// Columns read back, in [`StoredFlow`] order.
const SELECT_FLOWS: &str = "SELECT id, bridge, port, src_ip, dst_ip, src_port, dst_port, proto, \
     vlan, packets, bytes, tcp_flags, first_seen, last_seen, ended FROM flows ORDER BY id";

/// `INSERT INTO flows (...) VALUES (?, ...), ... <tail>` for `rows` rows with `?` placeholders.
fn insert_sql(rows: usize, tail: &str) -> String {
    let one_row = {
        let mut s = String::from("(");
        for i in 0..FLOW_COLUMNS.len() {
            if i > 0 {
                s.push(',');
            }
            s.push('?');
        }
        s.push(')');
        s
    };
    let mut sql = String::with_capacity(64 + rows * (one_row.len() + 1) + tail.len());
    sql.push_str("INSERT INTO flows (");
    sql.push_str(&FLOW_COLUMNS.join(", "));
    sql.push_str(") VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one_row);
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// A [`FlowRecord`] as column values, in [`FLOW_COLUMNS`] order.
struct EncodedFlow<'a> {
    bridge: &'a str,
    port: &'a str,
    src_ip: String,
    dst_ip: String,
    src_port: i64,
    dst_port: i64,
    proto: i64,
    vlan: i64,
    packets: i64,
    bytes: i64,
    tcp_flags: i64,
    first_seen: String,
    last_seen: String,
    ended: i64,
}

impl<'a> EncodedFlow<'a> {
    fn encode(f: &'a FlowRecord) -> Self {
        EncodedFlow {
            bridge: &f.bridge,
            port: &f.port,
            src_ip: f.src_ip.to_string(),
            dst_ip: f.dst_ip.to_string(),
            src_port: i64::from(f.src_port),
            dst_port: i64::from(f.dst_port),
            proto: i64::from(f.proto),
            vlan: i64::from(f.vlan),
            packets: i64::try_from(f.packets).unwrap_or(i64::MAX),
            bytes: i64::try_from(f.bytes).unwrap_or(i64::MAX),
            tcp_flags: i64::from(f.tcp_flags),
            first_seen: format_ts(f.first_seen_ns),
            last_seen: format_ts(f.last_seen_ns),
            ended: i64::from(f.ended),
        }
    }
}

/// A `flows` row as read back, in [`SELECT_FLOWS`] order, before decoding.
struct StoredFlow {
    id: i64,
    bridge: String,
    port: String,
    src_ip: String,
    dst_ip: String,
    src_port: i64,
    dst_port: i64,
    proto: i64,
    vlan: i64,
    packets: i64,
    bytes: i64,
    tcp_flags: i64,
    first_seen: String,
    last_seen: String,
    ended: i64,
}

impl StoredFlow {
    fn decode(self) -> Result<FlowRecord, RepoError> {
        let id = self.id;
        let corrupt = |column: &'static str, value: String, reason: String| RepoError::Corrupt {
            id,
            column,
            value,
            reason,
        };
        let ip = |column, text: String| {
            text.parse::<IpAddr>()
                .map_err(|e| corrupt(column, text.clone(), e.to_string()))
        };
        fn int<T: TryFrom<i64>>(v: i64) -> Result<T, String> {
            T::try_from(v).map_err(|_| "out of range".to_owned())
        }
        let num = |column, v: i64| move |reason| corrupt(column, v.to_string(), reason);
        let ts = |column, text: String| {
            parse_ts(&text).map_err(|e| corrupt(column, text.clone(), e.reason))
        };
        Ok(FlowRecord {
            src_ip: ip("src_ip", self.src_ip)?,
            dst_ip: ip("dst_ip", self.dst_ip)?,
            src_port: int(self.src_port).map_err(num("src_port", self.src_port))?,
            dst_port: int(self.dst_port).map_err(num("dst_port", self.dst_port))?,
            proto: int(self.proto).map_err(num("proto", self.proto))?,
            vlan: int(self.vlan).map_err(num("vlan", self.vlan))?,
            packets: int(self.packets).map_err(num("packets", self.packets))?,
            bytes: int(self.bytes).map_err(num("bytes", self.bytes))?,
            tcp_flags: int(self.tcp_flags).map_err(num("tcp_flags", self.tcp_flags))?,
            first_seen_ns: ts("first_seen", self.first_seen)?,
            last_seen_ns: ts("last_seen", self.last_seen)?,
            ended: self.ended != 0,
            bridge: self.bridge,
            port: self.port,
        })
    }
}

/// `url` with the password of its user-info (if any) replaced by `***`, for error messages.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests;
