//! The correlator's write transaction: everything one correlator batch derives from stored
//! facts (events, flows, credentials), written together so that a crash loses all of it or
//! none, across `attackers`, `attacker_touches`, `sessions`, `scans`, `traversals`,
//! `credential_reuse`, `pivots` and `attacker_evidence` (each table's own module does its part).
//!
//! What a batch brings is added to what is stored (the correlator's cursor moves in the same
//! transaction, so each input row is added exactly once):
//! - attacker counters are added to (`attacker_adds`), first/last seen merge;
//! - sessions the batch extends or starts are written whole (`session_rows`); flow bytes that
//!   belong to older sessions are added to them (`session_bytes`);
//! - sessions and scan episodes of a key that late input re-cuts are replaced from a point in
//!   time on (`sessions`, `scans`): rows from that point that the recomputation no longer
//!   produces are deleted, the others replaced;
//! - traversals and credential reuse are written whole for the attackers / secrets concerned;
//! - pivots merge (first_seen min, last_seen max).
//!
//! The attackers it changed are queued for the profiler (`attacker_evidence`).
use std::net::IpAddr;

use super::{
    RepoError, Repository, WriteTx,
    scans::ScanReplace,
    sessions::{SessionBytes, SessionReplace},
};
use crate::model::{AttackerUpdate, CredentialReuse, Pivot, Session, Touch, Traversal};

/// One correlator transaction's writes (applied in this order by [`WriteTx::apply_intel`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntelBatch {
    /// Merged as maxima ([`WriteTx::upsert_attackers`]).
    pub attackers: Vec<AttackerUpdate>,
    /// Counters added ([`WriteTx::add_attackers`]).
    pub attacker_adds: Vec<AttackerUpdate>,
    pub touches: Vec<Touch>,
    pub sessions: Vec<SessionReplace>,
    /// Whole session rows, upserted (sessions extended or started by the batch).
    pub session_rows: Vec<Session>,
    /// Flow bytes added to older stored sessions.
    pub session_bytes: Vec<SessionBytes>,
    pub scans: Vec<ScanReplace>,
    pub traversals: Vec<Traversal>,
    pub reuse: Vec<CredentialReuse>,
    pub pivots: Vec<Pivot>,
    /// Queue these attackers for the profiler.
    pub evidence: Vec<IpAddr>,
}

impl IntelBatch {
    pub fn is_empty(&self) -> bool {
        self == &IntelBatch::default()
    }
}

impl WriteTx {
    /// Applies one correlator batch (see [`IntelBatch`]).
    pub async fn apply_intel(&mut self, b: &IntelBatch) -> Result<u64, RepoError> {
        let mut n = 0;
        n += self.upsert_attackers(&b.attackers).await?;
        n += self.add_attackers(&b.attacker_adds).await?;
        n += self.touch(&b.touches).await?;
        for r in &b.sessions {
            n += self.replace_sessions(r).await?;
        }
        n += self.upsert_sessions(&b.session_rows).await?;
        n += self.add_session_bytes(&b.session_bytes).await?;
        for r in &b.scans {
            n += self.replace_scans(r).await?;
        }
        n += self.upsert_traversals(&b.traversals).await?;
        n += self.upsert_reuse(&b.reuse).await?;
        n += self.upsert_pivots(&b.pivots).await?;
        n += self.mark_evidence(&b.evidence).await?;
        Ok(n)
    }
}

impl Repository {
    /// [`WriteTx::apply_intel`] in its own (retried) transaction.
    pub async fn apply_intel(&self, b: &IntelBatch) -> Result<u64, RepoError> {
        Ok(self.write(&[super::Write::Intel(b)]).await?[0])
    }
}
