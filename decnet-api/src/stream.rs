//! The live feed: one poller reads what the workers stored since it last looked (new events and
//! sessions, and the attackers those events touched) and broadcasts it; every `/api/v1/stream`
//! client gets it as Server-Sent Events.
//!
//! Resume: events carry their row id as the SSE `id`; a client that reconnects with
//! `Last-Event-ID: N` first gets the stored events with id > N (at most
//! [`MAX_REPLAY`]; beyond that a `reset` message tells it to reload), then the live ones, with
//! nothing duplicated (live events at or below what was replayed are skipped).
//!
//! Slow clients: each client reads from a bounded broadcast queue; one that falls behind by
//! more than the queue (its socket is not draining) gets a final `dropped` message and is
//! disconnected — never buffered without bound.
use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::response::sse::Event as SseEvent;
use decnet_core::Repository;
use futures::Stream;
use tokio::sync::{broadcast, watch};

use crate::views;

/// Events replayed to a resuming client at most.
pub const MAX_REPLAY: usize = 10_000;

/// One message of the feed.
#[derive(Debug, Clone)]
pub struct Msg {
    /// `event`, `session` or `attacker`.
    pub kind: &'static str,
    /// The event id (events only): the SSE id.
    pub id: Option<i64>,
    pub data: String,
}

impl Msg {
    fn sse(&self) -> SseEvent {
        let e = SseEvent::default().event(self.kind).data(&self.data);
        match self.id {
            Some(id) => e.id(id.to_string()),
            None => e,
        }
    }
}

/// The broadcaster and its counters.
pub struct Hub {
    tx: broadcast::Sender<Arc<Msg>>,
    pub last_event_id: AtomicI64,
    pub last_session_id: AtomicI64,
    pub clients: AtomicUsize,
    pub dropped_clients: AtomicU64,
    pub sent: AtomicU64,
    pub poll_errors: AtomicU64,
    /// Poll interval in milliseconds (a runtime knob).
    pub poll_ms: AtomicU64,
    stop: watch::Sender<bool>,
}

impl Hub {
    pub fn new(buffer: usize, poll: Duration) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(buffer.max(16));
        let (stop, _) = watch::channel(false);
        Arc::new(Hub {
            stop,
            tx,
            last_event_id: AtomicI64::new(0),
            last_session_id: AtomicI64::new(0),
            clients: AtomicUsize::new(0),
            dropped_clients: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            poll_errors: AtomicU64::new(0),
            poll_ms: AtomicU64::new(u64::try_from(poll.as_millis()).unwrap_or(500).max(10)),
        })
    }

    /// Ends the poller and every client stream (server shutdown).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Starts from what is stored now (clients see only what arrives later, unless resuming).
    pub async fn start(self: &Arc<Self>, repo: Repository) {
        let mut stop = self.stop.subscribe();
        match (repo.max_event_id().await, repo.max_session_id().await) {
            (Ok(e), Ok(s)) => {
                self.last_event_id.store(e, Ordering::Relaxed);
                self.last_session_id.store(s, Ordering::Relaxed);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("live feed: cannot read the start position: {e}")
            }
        }
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = Duration::from_millis(hub.poll_ms.load(Ordering::Relaxed));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = hub.poll(&repo).await {
                    hub.poll_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("live feed: polling the repository failed: {e}");
                }
            }
        });
    }

    async fn poll(&self, repo: &Repository) -> Result<(), decnet_core::RepoError> {
        loop {
            let after = self.last_event_id.load(Ordering::Relaxed);
            let events = repo.events_after(after, 500).await?;
            let full = events.len() == 500;
            let mut ips = Vec::new();
            for e in &events {
                if let Some(ip) = e.attacker_ip
                    && !ips.contains(&ip)
                {
                    ips.push(ip);
                }
                self.publish(Msg {
                    kind: "event",
                    id: Some(e.id),
                    data: views::event_json(e),
                });
                self.last_event_id.store(e.id, Ordering::Relaxed);
            }
            for ip in ips.into_iter().take(100) {
                if let Some(a) = repo.attacker_row(ip).await? {
                    self.publish(Msg {
                        kind: "attacker",
                        id: None,
                        data: serde_json::to_string(&views::AttackerView::from(&a))
                            .unwrap_or_default(),
                    });
                }
            }
            if !full {
                break;
            }
        }
        let after = self.last_session_id.load(Ordering::Relaxed);
        for s in repo.sessions_after(after, 500).await? {
            self.publish(Msg {
                kind: "session",
                id: None,
                data: serde_json::to_string(&views::SessionView::from(&s)).unwrap_or_default(),
            });
            self.last_session_id.store(s.id, Ordering::Relaxed);
        }
        Ok(())
    }

    fn publish(&self, m: Msg) {
        // No receivers is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(m));
    }

    /// A client's stream: replay after `resume` (if given), then live.
    pub fn subscribe(
        self: &Arc<Self>,
        repo: Repository,
        resume: Option<i64>,
    ) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
        let mut rx = self.tx.subscribe();
        let mut stop = self.stop.subscribe();
        let hub = self.clone();
        hub.clients.fetch_add(1, Ordering::Relaxed);
        let guard = ClientGuard(hub.clone());
        async_stream(move |out| async move {
            let _guard = guard;
            let mut sent_upto = i64::MIN;
            out.send(SseEvent::default().event("hello").data("{}"))
                .await?;
            if let Some(mut after) = resume {
                let mut replayed = 0usize;
                loop {
                    let batch = match repo.events_after(after, 500).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!("live feed: replay failed: {e}");
                            break;
                        }
                    };
                    let n = batch.len();
                    for e in &batch {
                        out.send(
                            SseEvent::default()
                                .event("event")
                                .id(e.id.to_string())
                                .data(views::event_json(e)),
                        )
                        .await?;
                        after = e.id;
                        sent_upto = e.id;
                        replayed += 1;
                    }
                    if n < 500 {
                        break;
                    }
                    if replayed >= MAX_REPLAY {
                        out.send(
                            SseEvent::default().event("reset").data(
                                "{\"reason\":\"too many events to replay: reload the page\"}",
                            ),
                        )
                        .await?;
                        break;
                    }
                }
            }
            loop {
                let got = tokio::select! {
                    r = rx.recv() => r,
                    _ = out.closed() => return Ok(()),
                    _ = stop.changed() => return Ok(()),
                };
                match got {
                    Ok(m) => {
                        if m.id.is_some_and(|id| id <= sent_upto) {
                            continue;
                        }
                        hub.sent.fetch_add(1, Ordering::Relaxed);
                        out.send(m.sse()).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        hub.dropped_clients.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(missed = n, "live feed: dropping a client that fell behind");
                        let _ = out
                            .send(SseEvent::default().event("dropped").data(
                                "{\"reason\":\"client too slow: reconnect with Last-Event-ID\"}",
                            ))
                            .await;
                        return Ok(());
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        })
    }
}

struct ClientGuard(Arc<Hub>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The receiving side went away.
pub struct Closed;

/// The sending half handed to a stream body.
pub struct Out(tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>);

impl Out {
    async fn closed(&self) {
        self.0.closed().await
    }

    async fn send(&self, e: SseEvent) -> Result<(), Closed> {
        self.0.send(Ok(e)).await.map_err(|_| Closed)
    }
}

/// A stream fed by an async body through a small bounded channel (8 messages): the body waits
/// when the client does not read, so its broadcast receiver lags and the client is dropped.
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(Out) -> Fut,
    Fut: std::future::Future<Output = Result<(), Closed>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let fut = body(Out(tx));
    tokio::spawn(async move {
        let _ = fut.await;
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
