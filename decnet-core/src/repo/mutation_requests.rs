//! `mutation_requests`: the operator's queue of decky actions (`mutate`, `rotate_services`,
//! `restart`, `set_mutate_interval`). A request is `pending` until the mutator claims it
//! (`claimed`, naming the claimer), then `applied` or `failed` with the reason. A claimed
//! request whose mutator died is claimed again by the next one (there is one mutator per host:
//! its lease), which converges to the requested state without applying it twice (see
//! `decnet-mutator`).
//!
//! Written by the API (new requests) and the mutator (claim, outcome). Read by the mutator (its
//! queue) and the API (a request's state: pending → applied/failed).
use super::{RepoError, Repository, WriteTx, decode::Decoder, limits};
use crate::{
    model::MutationRequest,
    time_fmt::{format_ts, now_ns},
};

const SELECT: &str = "SELECT id, decky, action, args, requested_by, requested_at, status, \
                      claimed_by, reason, updated_at FROM mutation_requests";

fn decode(row: &sqlx::any::AnyRow) -> Result<MutationRequest, RepoError> {
    let d = Decoder::new(row, "mutation_requests");
    Ok(MutationRequest {
        id: d.i64("id")?,
        decky: d.text("decky")?,
        action: d.text("action")?,
        args: d.text("args")?,
        requested_by: d.text("requested_by")?,
        requested_ns: d.ts("requested_at")?,
        status: d.text("status")?,
        claimed_by: d.text("claimed_by")?,
        reason: d.text("reason")?,
        updated_ns: d.ts("updated_at")?,
    })
}

impl WriteTx {
    /// Queues a request (status `pending`); returns its id.
    pub async fn insert_mutation_request(
        &mut self,
        decky: &str,
        action: &str,
        args: &str,
        requested_by: &str,
    ) -> Result<i64, RepoError> {
        let now = format_ts(now_ns());
        let r = sqlx::query(
            "INSERT INTO mutation_requests (decky, action, args, requested_by, requested_at, \
             status, claimed_by, reason, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', '', '', ?)",
        )
        .bind(limits::text(decky, limits::NAME).into_owned())
        .bind(limits::text(action, limits::NAME).into_owned())
        .bind(limits::text(args, limits::SHORT_TEXT).into_owned())
        .bind(limits::text(requested_by, 255).into_owned())
        .bind(now.clone())
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        match r.last_insert_id() {
            Some(id) => Ok(id),
            None => Ok(
                sqlx::query_scalar::<_, i64>("SELECT MAX(id) FROM mutation_requests")
                    .fetch_one(&mut *self.tx)
                    .await?,
            ),
        }
    }
}

impl Repository {
    /// Queues a request (see [`WriteTx::insert_mutation_request`]).
    pub async fn request_mutation(
        &self,
        decky: &str,
        action: &str,
        args: &str,
        requested_by: &str,
    ) -> Result<i64, RepoError> {
        let mut tx = self.begin().await?;
        let id = tx
            .insert_mutation_request(decky, action, args, requested_by)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The oldest request that is pending, or claimed by someone else than `holder` (a mutator
    /// that died with it), claimed now for `holder`. `None` when the queue is empty.
    pub async fn claim_mutation_request(
        &self,
        holder: &str,
    ) -> Result<Option<MutationRequest>, RepoError> {
        loop {
            let row = sqlx::query(&format!(
                "{SELECT} WHERE status = 'pending' OR (status = 'claimed' AND claimed_by <> ?) \
                 ORDER BY id LIMIT 1"
            ))
            .bind(holder.to_owned())
            .fetch_optional(self.pool())
            .await?;
            let Some(row) = row else { return Ok(None) };
            let req = decode(&row)?;
            let mut tx = self.begin().await?;
            let r = sqlx::query(
                "UPDATE mutation_requests SET status = 'claimed', claimed_by = ?, updated_at = ? \
                 WHERE id = ? AND status = ? AND claimed_by = ?",
            )
            .bind(limits::text(holder, 255).into_owned())
            .bind(format_ts(now_ns()))
            .bind(req.id)
            .bind(req.status.clone())
            .bind(req.claimed_by.clone())
            .execute(&mut *tx.tx)
            .await?;
            tx.commit().await?;
            if r.rows_affected() == 1 {
                return Ok(Some(MutationRequest {
                    status: "claimed".into(),
                    claimed_by: holder.to_owned(),
                    ..req
                }));
            }
            // Someone else changed it in between: look again.
        }
    }

    /// Records a request's outcome (`applied` or `failed`, with the reason).
    pub async fn finish_mutation_request(
        &self,
        id: i64,
        status: &str,
        reason: &str,
    ) -> Result<bool, RepoError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE mutation_requests SET status = ?, reason = ?, updated_at = ? WHERE id = ?",
        )
        .bind(limits::text(status, limits::NAME).into_owned())
        .bind(limits::text(reason, limits::LONG).into_owned())
        .bind(format_ts(now_ns()))
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Request `id`.
    pub async fn mutation_request(&self, id: i64) -> Result<Option<MutationRequest>, RepoError> {
        let row = sqlx::query(&format!("{SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The requests for `decky`, newest first (at most `limit`).
    pub async fn mutation_requests(
        &self,
        decky: &str,
        limit: i64,
    ) -> Result<Vec<MutationRequest>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE decky = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(decky.to_owned())
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }
}
