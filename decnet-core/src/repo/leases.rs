//! `worker_leases`: a worker kind that must run once per host holds a lease; a second instance
//! is refused, a dead holder's lease expires (or is taken over at once when its process is gone
//! from this host).
//!
//! Written and read by every worker through the runtime (acquire, heartbeat, release). Read by
//! `decnet deploy` / `decnet status` and the API (which workers run).
use std::time::Duration;

use tokio::sync::watch;

use sqlx::any::AnyRow;

use super::{RepoError, Repository, WriteTx, decode::Decoder, limits};
use crate::{
    model::Lease,
    time_fmt::{format_ts, now_ns},
};

/// Who asks for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// Worker kind: sniffer, collector, correlator, profiler, …
    pub kind: String,
    /// The host it must be unique on.
    pub host: String,
    /// This instance (unique per process start, e.g. `host:pid:start-ns`).
    pub holder: String,
    pub pid: u32,
}

impl LeaseHolder {
    /// A holder for this process on this host.
    pub fn this_process(kind: &str) -> Self {
        let host = hostname();
        let pid = std::process::id();
        LeaseHolder {
            kind: kind.to_owned(),
            holder: format!("{host}:{pid}:{}", now_ns()),
            host,
            pid,
        }
    }
}

/// Whether a process with this pid exists on this machine (`/proc/<pid>`). A pid that does not
/// fit in a pid_t is treated as alive (never taken over early).
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The machine's hostname (`/proc/sys/kernel/hostname`), or "localhost".
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn decode_lease(row: &sqlx::any::AnyRow) -> Result<Lease, RepoError> {
    let d = Decoder::new(row, "worker_leases");
    Ok(Lease {
        kind: d.text("kind")?,
        host: d.text("host")?,
        holder: d.text("holder")?,
        pid: d.int("pid")?,
        acquired_at_ns: d.ts("acquired_at")?,
        heartbeat_at_ns: d.ts("heartbeat_at")?,
    })
}

const LEASE_SELECT: &str =
    "SELECT kind, host, holder, pid, acquired_at, heartbeat_at FROM worker_leases";

/// Gives the lease of (kind, host) to `who` (acquired and heartbeat now) if the stored row
/// matches `guard` (bound with `args`); `true` if it did.
async fn take_over<const N: usize>(
    tx: &mut WriteTx,
    who: &LeaseHolder,
    (kind, host, now): (&str, &str, i64),
    guard: &str,
    args: [String; N],
) -> Result<bool, RepoError> {
    let sql = format!(
        "UPDATE worker_leases SET holder = ?, pid = ?, acquired_at = ?, heartbeat_at = ? \
         WHERE kind = ? AND host = ? AND {guard}"
    );
    let mut q = sqlx::query(&sql)
        .bind(who.holder.clone())
        .bind(i64::from(who.pid))
        .bind(format_ts(now))
        .bind(format_ts(now))
        .bind(kind.to_owned())
        .bind(host.to_owned());
    for a in args {
        q = q.bind(a);
    }
    Ok(q.execute(&mut *tx.tx).await?.rows_affected() == 1)
}

/// The stored lease row of (kind, host), inside `tx`.
async fn lease_row(tx: &mut WriteTx, kind: &str, host: &str) -> Result<AnyRow, RepoError> {
    Ok(
        sqlx::query(&format!("{LEASE_SELECT} WHERE kind = ? AND host = ?"))
            .bind(kind.to_owned())
            .bind(host.to_owned())
            .fetch_one(&mut *tx.tx)
            .await?,
    )
}

impl Repository {
    /// Takes the lease for `who.kind` on `who.host`: free, already ours, expired (no
    /// heartbeat for `ttl`), or held by a process of this host that no longer exists. Otherwise [`RepoError::LeaseHeld`] naming the holder.
    pub async fn acquire_lease(
        &self,
        who: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, RepoError> {
        let now = now_ns();
        let (kind, host) = (
            limits::text(&who.kind, limits::NAME).into_owned(),
            limits::text(&who.host, 255).into_owned(),
        );
        let mut tx = self.begin().await?;
        let sql = format!(
            "{} worker_leases (kind, host, holder, pid, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) {}",
            self.dialect().insert_ignore(),
            self.dialect().ignore_tail()
        );
        let inserted = sqlx::query(&sql)
            .bind(kind.clone())
            .bind(host.clone())
            .bind(who.holder.clone())
            .bind(i64::from(who.pid))
            .bind(format_ts(now))
            .bind(format_ts(now))
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        let mut taken = inserted == 1 || {
            let stale_before =
                now.saturating_sub(i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX));
            take_over(
                &mut tx,
                who,
                (&kind, &host, now),
                "(holder = ? OR heartbeat_at < ?)",
                [who.holder.clone(), format_ts(stale_before)],
            )
            .await?
        };
        let mut row = lease_row(&mut tx, &kind, &host).await?;
        if !taken {
            // A holder on this very host whose process is gone (killed -9, crashed) cannot
            // heartbeat any more: take its lease at once instead of waiting out the TTL, so a
            // supervisor's restart is not refused. A pid that is alive (even if reused by another
            // program) is left to expire normally.
            let current = decode_lease(&row)?;
            if current.host == host
                && host == hostname()
                && current.holder != who.holder
                && !pid_alive(i64::from(current.pid))
            {
                taken = take_over(
                    &mut tx,
                    who,
                    (&kind, &host, now),
                    "holder = ?",
                    [current.holder.clone()],
                )
                .await?;
                if taken {
                    row = lease_row(&mut tx, &kind, &host).await?;
                }
            }
        }
        tx.commit().await?;
        let lease = decode_lease(&row)?;
        if taken && lease.holder == who.holder {
            return Ok(lease);
        }
        let age = Duration::from_nanos(u64::try_from(now - lease.heartbeat_at_ns).unwrap_or(0));
        Err(RepoError::LeaseHeld(format!(
            "another {kind} is already running on {host}: {} (pid {}), last heartbeat {:.1} s ago. \
             Stop it first (embedded in `decnet web` or standalone); if it died, its lease expires \
             {:.0} s after its last heartbeat",
            lease.holder,
            lease.pid,
            age.as_secs_f64(),
            ttl.as_secs_f64()
        )))
    }

    /// Renews the lease; `false` if it is no longer ours (taken over after we missed
    /// heartbeats): the worker must stop.
    pub async fn heartbeat(&self, who: &LeaseHolder) -> Result<bool, RepoError> {
        let now = format_ts(now_ns());
        self.on_own_lease("UPDATE worker_leases SET heartbeat_at = ?", Some(now), who)
            .await
    }

    /// Gives the lease up (clean shutdown). `false` if it was not ours.
    pub async fn release_lease(&self, who: &LeaseHolder) -> Result<bool, RepoError> {
        self.on_own_lease("DELETE FROM worker_leases", None, who)
            .await
    }

    /// Runs `head` (with its one parameter `arg`, if any) on `who`'s own lease row in its own
    /// transaction; `true` if the row was there (still ours).
    async fn on_own_lease(
        &self,
        head: &str,
        arg: Option<String>,
        who: &LeaseHolder,
    ) -> Result<bool, RepoError> {
        let sql = format!("{head} WHERE kind = ? AND host = ? AND holder = ?");
        let mut q = sqlx::query(&sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let mut tx = self.begin().await?;
        let n = q
            .bind(limits::text(&who.kind, limits::NAME).into_owned())
            .bind(limits::text(&who.host, 255).into_owned())
            .bind(who.holder.clone())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn leases(&self) -> Result<Vec<Lease>, RepoError> {
        let rows = sqlx::query(&format!("{LEASE_SELECT} ORDER BY kind, host"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_lease).collect()
    }

    /// Takes the lease and keeps it alive from a background task (heartbeat every `ttl / 3`).
    /// The returned [`LeaseKeeper`] reports a lost lease on [`LeaseKeeper::lost`] and releases
    /// the lease on [`LeaseKeeper::release`].
    pub async fn hold_lease(
        &self,
        who: LeaseHolder,
        ttl: Duration,
    ) -> Result<LeaseKeeper, RepoError> {
        self.acquire_lease(&who, ttl).await?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let repo = self.clone();
        let holder = who.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => return,
                }
                match repo.heartbeat(&holder).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(kind = %holder.kind, "lost the worker lease to another instance");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    // A transient database error: try again next tick; the lease survives
                    // until ttl passes without a successful heartbeat.
                    Err(e) => tracing::warn!(kind = %holder.kind, "lease heartbeat failed: {e}"),
                }
            }
        });
        Ok(LeaseKeeper {
            repo: self.clone(),
            who,
            lost: lost_rx,
            stop: stop_tx,
            task,
        })
    }
}

/// A held lease with its heartbeat task.
#[derive(Debug)]
pub struct LeaseKeeper {
    repo: Repository,
    who: LeaseHolder,
    lost: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    pub fn holder(&self) -> &LeaseHolder {
        &self.who
    }

    /// Resolves when the lease was lost (taken over by another instance).
    pub async fn lost(&mut self) {
        while !*self.lost.borrow() {
            if self.lost.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops heartbeating and gives the lease up.
    pub async fn release(self) -> Result<(), RepoError> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.repo.release_lease(&self.who).await?;
        Ok(())
    }
}
