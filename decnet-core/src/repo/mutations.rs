//! `mutations`: requested and applied live changes to a decky (rotate a banner, change a
//! persona …), one row per (decky, kind, time); re-recording one updates only its status.
//!
//! Written by `decnet mutate`: one record per decky a fleet change touched, `kind` = what caused
//! it (`file`, `operator`, `schedule`), `ts` = the generation's creation time (so recording
//! the outcome of the same generation again — a mutator restarted mid-way — updates the one
//! record), `detail` = JSON `{generation, actor, change, before, after}`, `status` = `applied`
//! or `failed`. Read by the API (the decky's timeline) and the tests.
use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, name},
    decode::Decoder,
    limits,
};
use crate::{model::Mutation, time_fmt::format_ts};

/// The stored columns (besides `id`), in insert order.
const COLUMNS: [&str; 5] = ["ts", "decky", "kind", "detail", "status"];

fn decode(row: &sqlx::any::AnyRow) -> Result<Mutation, RepoError> {
    let d = Decoder::new(row, "mutations");
    Ok(Mutation {
        ts_ns: d.ts("ts")?,
        decky: d.text("decky")?,
        kind: d.text("kind")?,
        detail: d.text("detail")?,
        status: d.text("status")?,
    })
}

impl WriteTx {
    /// Records mutations; the same (decky, kind, time) again updates only its status.
    pub async fn record_mutations(&mut self, mutations: &[Mutation]) -> Result<u64, RepoError> {
        if mutations.is_empty() {
            return Ok(0);
        }
        let tail = self.dialect.upsert_tail(
            "mutations",
            &["decky", "kind", "ts"],
            &[("status", Merge::Replace)],
        );

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "mutations",
                columns: &COLUMNS,
                tail: &tail,
            },
            mutations,
            |q: AnyQuery<'_>, m: &Mutation| {
                q.bind(format_ts(m.ts_ns))
                    .bind(name(&m.decky))
                    .bind(name(&m.kind))
                    .bind(limits::text(&m.detail, limits::LONG).into_owned())
                    .bind(name(&m.status))
            },
        )
        .await
    }
}

impl Repository {
    /// The mutations of `decky`, in time order.
    pub async fn mutations(&self, decky: &str) -> Result<Vec<Mutation>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT id, {} FROM mutations WHERE decky = ? ORDER BY ts, id",
            COLUMNS.join(", ")
        ))
        .bind(decky.to_owned())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }
}
