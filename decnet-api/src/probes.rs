//! The prober's realism results (`probe_results`, written by `decnet prober`): the routes of the
//! dashboard's "Realism" view. Registered in [`crate::routes::router`] with one line.
//!
//! `GET /api/v1/probes` — every check's current outcome, worst first, with per-severity counts;
//! `?decky=NAME` for one decky, `?findings=true` without the passes.
use std::{collections::BTreeMap, sync::Arc, sync::atomic::Ordering};

use axum::extract::State;
use decnet_core::{
    model::Severity,
    repo::{MAX_PAGE, ProbeFilter},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState, Query,
    auth::Viewer,
    error::{ApiError, ApiResult},
    routes::Json2,
    views::ts,
};

/// The routes of this module.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_probes))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProbeQuery {
    /// One decky only.
    decky: Option<String>,
    /// Only findings (no passes).
    findings: Option<bool>,
    /// At most this many rows (default 500, at most 500).
    limit: Option<u32>,
}

/// One check's current outcome.
#[derive(Serialize, ToSchema)]
pub struct ProbeItem {
    decky: String,
    check: String,
    subject: String,
    /// `pass`, or the finding's severity.
    severity: &'static str,
    expected: String,
    seen: String,
    first_seen: String,
    last_seen: String,
    /// When a finding stopped being seen (absent while it still is).
    resolved_at: Option<String>,
}

/// One decky's tally.
#[derive(Serialize, ToSchema)]
pub struct ProbeDecky {
    decky: String,
    findings: u64,
    /// The worst severity seen on the decky (`pass` when clean).
    worst: &'static str,
}

/// The answer of `GET /api/v1/probes`.
#[derive(Serialize, ToSchema)]
pub struct ProbeList {
    /// Rows per severity.
    counts: BTreeMap<&'static str, u64>,
    deckies: Vec<ProbeDecky>,
    items: Vec<ProbeItem>,
}

/// The prober's realism checks: each (decky, check, subject) with its current outcome —
/// `pass`, or a finding's severity with what was expected and what was seen — worst first.
#[utoipa::path(get, path = "/api/v1/probes", tag = "viewer", security(("bearer" = [])),
    params(ProbeQuery), responses((status = 200, body = ProbeList), (status = 400)))]
async fn list_probes(
    State(s): State<Arc<AppState>>,
    _v: Viewer,
    Query(q): Query<ProbeQuery>,
) -> ApiResult<Json2<ProbeList>> {
    let limit = match q.limit {
        None => MAX_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            s.bad_requests.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::bad_request(format!(
                "limit must be 1..={MAX_PAGE}"
            )));
        }
    };
    let rows = s
        .repo
        .probe_results(&ProbeFilter {
            decky: q.decky.clone(),
            findings_only: q.findings.unwrap_or(false),
            limit,
        })
        .await?;
    let mut counts: BTreeMap<&'static str, u64> =
        Severity::ALL.iter().map(|v| (v.as_str(), 0)).collect();
    let mut deckies: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.severity.as_str()).or_insert(0) += 1;
        let d = deckies.entry(&r.decky).or_insert((0, "pass"));
        if r.severity != Severity::Pass {
            d.0 += 1;
        }
        if Severity::parse(d.1).is_some_and(|w| r.severity > w) {
            d.1 = r.severity.as_str();
        }
    }
    let items = rows
        .iter()
        .map(|r| ProbeItem {
            decky: r.decky.clone(),
            check: r.check.clone(),
            subject: r.subject.clone(),
            severity: r.severity.as_str(),
            expected: r.expected.clone(),
            seen: r.seen.clone(),
            first_seen: ts(r.first_seen_ns),
            last_seen: ts(r.last_seen_ns),
            resolved_at: r.resolved_at_ns.map(ts),
        })
        .collect();
    let deckies = deckies
        .iter()
        .map(|(d, (n, worst))| ProbeDecky {
            decky: (*d).to_owned(),
            findings: *n,
            worst,
        })
        .collect();
    Ok(Json2(ProbeList {
        counts,
        deckies,
        items,
    }))
}
