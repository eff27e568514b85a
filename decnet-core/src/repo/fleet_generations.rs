//! `fleet_generations`: the desired fleet of a deployment, one row per change; the generation
//! is the row's `id`, so a newer generation always has a larger number.
//!
//! Written by `decnet deploy` (the generation it starts from, cause `deploy`; the outcome of
//! applying each newer one: `applied` or `failed` with the reason; older pending ones it never
//! applied become `superseded` when it starts again) and by `decnet mutate` (every validated
//! change: a fleet file edit, an operator's request, a schedule). Read by both: deploy applies
//! the newest generation of its bridge; the mutator diffs against it and waits for its outcome.
use super::{RepoError, Repository, WriteTx, decode::Decoder, limits};
use crate::{
    model::FleetGeneration,
    time_fmt::{format_ts, now_ns},
};

/// Largest stored fleet JSON (a 1,000-decky fleet is ≈ 0.5 MiB).
pub const MAX_FLEET_JSON: usize = 4 << 20;

const SELECT: &str = "SELECT id, bridge, fleet, file_fleet, restart, cause, actor, request_id, \
                      status, reason, created_at, applied_at FROM fleet_generations";

fn decode(row: &sqlx::any::AnyRow) -> Result<FleetGeneration, RepoError> {
    let d = Decoder::new(row, "fleet_generations");
    Ok(FleetGeneration {
        id: d.i64("id")?,
        bridge: d.text("bridge")?,
        fleet: d.text("fleet")?,
        file_fleet: d.text("file_fleet")?,
        restart: d.text("restart")?,
        cause: d.text("cause")?,
        actor: d.text("actor")?,
        request_id: d.opt_int("request_id")?,
        status: d.text("status")?,
        reason: d.text("reason")?,
        created_ns: d.ts("created_at")?,
        applied_ns: match d.opt_text("applied_at")? {
            Some(_) => Some(d.ts("applied_at")?),
            None => None,
        },
    })
}

impl WriteTx {
    /// Adds a generation (status `pending`; `id`, `created_ns` and `applied_ns` of `g` are
    /// ignored); returns its number.
    pub async fn insert_fleet_generation(&mut self, g: &FleetGeneration) -> Result<i64, RepoError> {
        let r = sqlx::query(
            "INSERT INTO fleet_generations (bridge, fleet, file_fleet, restart, cause, actor, \
             request_id, status, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(limits::text(&g.bridge, limits::NAME).into_owned())
        .bind(limits::text(&g.fleet, MAX_FLEET_JSON).into_owned())
        .bind(limits::text(&g.file_fleet, MAX_FLEET_JSON).into_owned())
        .bind(limits::text(&g.restart, limits::LONG).into_owned())
        .bind(limits::text(&g.cause, limits::NAME).into_owned())
        .bind(limits::text(&g.actor, 255).into_owned())
        .bind(g.request_id)
        .bind(limits::text(&g.status, limits::NAME).into_owned())
        .bind(limits::text(&g.reason, limits::LONG).into_owned())
        .bind(format_ts(now_ns()))
        .execute(&mut *self.tx)
        .await?;
        match r.last_insert_id() {
            Some(id) => Ok(id),
            None => Ok(sqlx::query_scalar::<_, i64>(
                "SELECT MAX(id) FROM fleet_generations WHERE bridge = ?",
            )
            .bind(g.bridge.clone())
            .fetch_one(&mut *self.tx)
            .await?),
        }
    }

    /// Records the outcome of applying generation `id` (`applied` or `failed`); only a pending
    /// generation changes. `true` if it did.
    pub async fn finish_fleet_generation(
        &mut self,
        id: i64,
        status: &str,
        reason: &str,
    ) -> Result<bool, RepoError> {
        let r = sqlx::query(
            "UPDATE fleet_generations SET status = ?, reason = ?, applied_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(limits::text(status, limits::NAME).into_owned())
        .bind(limits::text(reason, limits::LONG).into_owned())
        .bind(format_ts(now_ns()))
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Marks the pending generations of `bridge` older than `id` `superseded` (a deploy that
    /// starts again starts from its own generation `id`); returns how many.
    pub async fn supersede_fleet_generations(
        &mut self,
        bridge: &str,
        id: i64,
    ) -> Result<u64, RepoError> {
        let r = sqlx::query(
            "UPDATE fleet_generations SET status = 'superseded', \
             reason = 'decnet deploy started again from its fleet file', applied_at = ? \
             WHERE bridge = ? AND id < ? AND status = 'pending'",
        )
        .bind(format_ts(now_ns()))
        .bind(bridge.to_owned())
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected())
    }
}

impl Repository {
    /// The newest generation of `bridge` (any status).
    pub async fn latest_fleet_generation(
        &self,
        bridge: &str,
    ) -> Result<Option<FleetGeneration>, RepoError> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE bridge = ? ORDER BY id DESC LIMIT 1"
        ))
        .bind(bridge.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The newest generation of `bridge` that was applied.
    pub async fn applied_fleet_generation(
        &self,
        bridge: &str,
    ) -> Result<Option<FleetGeneration>, RepoError> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE bridge = ? AND status = 'applied' ORDER BY id DESC LIMIT 1"
        ))
        .bind(bridge.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Generation `id`.
    pub async fn fleet_generation(&self, id: i64) -> Result<Option<FleetGeneration>, RepoError> {
        let row = sqlx::query(&format!("{SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The generation made for request `request_id`, if one was.
    pub async fn fleet_generation_of_request(
        &self,
        request_id: i64,
    ) -> Result<Option<FleetGeneration>, RepoError> {
        let row = sqlx::query(&format!("{SELECT} WHERE request_id = ?"))
            .bind(request_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every generation of `bridge`, oldest first.
    pub async fn fleet_generations(&self, bridge: &str) -> Result<Vec<FleetGeneration>, RepoError> {
        let rows = sqlx::query(&format!("{SELECT} WHERE bridge = ? ORDER BY id"))
            .bind(bridge.to_owned())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }
}
