//! `flows`: one row per flow direction from the sensor. Identity: bridge + 5-tuple + vlan +
//! first_seen; re-exports merge (counters max, flags union, last_seen max, ended sticky).
use std::net::IpAddr;

use sqlx::Row as _;

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, insert_rows},
    limits,
};
use crate::{
    model::FlowRecord,
    time_fmt::{format_ts, parse_ts},
};

const COLUMNS: [&str; 14] = [
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
const KEY: [&str; 8] = [
    "bridge",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "proto",
    "vlan",
    "first_seen",
];
const MERGE: [(&str, Merge); 5] = [
    ("packets", Merge::Max),
    ("bytes", Merge::Max),
    ("tcp_flags", Merge::Or),
    ("last_seen", Merge::Max),
    ("ended", Merge::Max),
];

fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn bind<'q>(q: AnyQuery<'q>, f: &'q FlowRecord) -> AnyQuery<'q> {
    q.bind(limits::text(&f.bridge, limits::NAME).into_owned())
        .bind(limits::text(&f.port, limits::NAME).into_owned())
        .bind(f.src_ip.to_string())
        .bind(f.dst_ip.to_string())
        .bind(i64::from(f.src_port))
        .bind(i64::from(f.dst_port))
        .bind(i64::from(f.proto))
        .bind(i64::from(f.vlan))
        .bind(sat(f.packets))
        .bind(sat(f.bytes))
        .bind(i64::from(f.tcp_flags))
        .bind(format_ts(f.first_seen_ns))
        .bind(format_ts(f.last_seen_ns))
        .bind(i64::from(f.ended))
}

impl WriteTx {
    /// Inserts or merges `flows` (see the module doc). Returns the affected-row count.
    pub async fn upsert_flows(&mut self, flows: &[FlowRecord]) -> Result<u64, RepoError> {
        if flows.is_empty() {
            return Ok(0);
        }
        let tail = self.dialect.upsert_tail("flows", &KEY, &MERGE);
        insert_rows(
            &mut self.tx,
            self.dialect,
            "INSERT INTO",
            "flows",
            &COLUMNS,
            &tail,
            flows,
            bind,
        )
        .await
    }
}

impl Repository {
    /// [`WriteTx::upsert_flows`] in its own transaction.
    pub async fn upsert_flows(&self, flows: &[FlowRecord]) -> Result<u64, RepoError> {
        if flows.is_empty() {
            return Ok(0);
        }
        Ok(self.write(&[super::Write::Flows(flows)]).await?[0])
    }

    /// All stored flows, ordered by id.
    pub async fn list_flows(&self) -> Result<Vec<FlowRecord>, RepoError> {
        let rows = sqlx::query(
            "SELECT id, bridge, port, src_ip, dst_ip, src_port, dst_port, proto, vlan, packets, bytes, \
             tcp_flags, first_seen, last_seen, ended FROM flows ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn count_flows(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flows")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn decode(row: &sqlx::any::AnyRow) -> Result<FlowRecord, RepoError> {
    let id: i64 = row.try_get(0)?;
    let corrupt = |column: &'static str, value: String, reason: String| RepoError::Corrupt {
        table: "flows",
        id,
        column,
        value,
        reason,
    };
    let ip = |i: usize, column: &'static str| -> Result<IpAddr, RepoError> {
        let t: String = row.try_get(i)?;
        t.parse()
            .map_err(|e: std::net::AddrParseError| corrupt(column, t.clone(), e.to_string()))
    };
    let int = |i: usize, column: &'static str| -> Result<i64, RepoError> {
        Ok(row
            .try_get::<i64, _>(i)
            .map_err(|e| corrupt(column, String::new(), e.to_string()))?)
    };
    fn fit<T: TryFrom<i64>>(
        v: i64,
        column: &'static str,
        c: &dyn Fn(&'static str, String, String) -> RepoError,
    ) -> Result<T, RepoError> {
        T::try_from(v).map_err(|_| c(column, v.to_string(), "out of range".into()))
    }
    let ts = |i: usize, column: &'static str| -> Result<i64, RepoError> {
        let t: String = row.try_get(i)?;
        parse_ts(&t).map_err(|e| corrupt(column, t.clone(), e.reason))
    };
    Ok(FlowRecord {
        bridge: row.try_get(1)?,
        port: row.try_get(2)?,
        src_ip: ip(3, "src_ip")?,
        dst_ip: ip(4, "dst_ip")?,
        src_port: fit(int(5, "src_port")?, "src_port", &corrupt)?,
        dst_port: fit(int(6, "dst_port")?, "dst_port", &corrupt)?,
        proto: fit(int(7, "proto")?, "proto", &corrupt)?,
        vlan: fit(int(8, "vlan")?, "vlan", &corrupt)?,
        packets: fit(int(9, "packets")?, "packets", &corrupt)?,
        bytes: fit(int(10, "bytes")?, "bytes", &corrupt)?,
        tcp_flags: fit(int(11, "tcp_flags")?, "tcp_flags", &corrupt)?,
        first_seen_ns: ts(12, "first_seen")?,
        last_seen_ns: ts(13, "last_seen")?,
        ended: int(14, "ended")? != 0,
    })
}
