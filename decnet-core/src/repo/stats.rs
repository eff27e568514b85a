//! Row counts of the main tables in one round trip: the API's statistics page. Per-table
//! aggregates (top values, histogram, scans) live with their tables.
use serde::Serialize;

use super::{RepoError, Repository, decode::Decoder};

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

impl Repository {
    /// Row counts of the main tables.
    pub async fn counts(&self) -> Result<Counts, RepoError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM events) AS events, \
             (SELECT COUNT(*) FROM attackers) AS attackers, \
             (SELECT COUNT(*) FROM sessions) AS sessions, \
             (SELECT COUNT(*) FROM credentials) AS credentials, \
             (SELECT COUNT(*) FROM flows) AS flows, \
             (SELECT COUNT(*) FROM deckies) AS deckies",
        )
        .fetch_one(self.pool())
        .await?;
        let d = Decoder::new(&row, "counts");
        Ok(Counts {
            events: d.u64("events")?,
            attackers: d.u64("attackers")?,
            sessions: d.u64("sessions")?,
            credentials: d.u64("credentials")?,
            flows: d.u64("flows")?,
            deckies: d.u64("deckies")?,
        })
    }
}
