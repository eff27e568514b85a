//! `flows`: one row per flow direction from the sensor. Identity: bridge + 5-tuple + vlan +
//! first_seen; re-exports merge (counters max, flags union, last_seen max, ended sticky).
use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::{Decoder, sat},
    limits,
};
use crate::{model::FlowRecord, time_fmt::format_ts};

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
            Insert {
                head: "INSERT INTO",
                table: "flows",
                columns: &COLUMNS,
                tail: &tail,
            },
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
    let d = Decoder::new(row, "flows", Some(0));
    Ok(FlowRecord {
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
    })
}
