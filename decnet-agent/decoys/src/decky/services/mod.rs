//! The decoy services a decky serves. Each service is a module with a `serve` function; this file
//! holds what the services share (their settings types, [`ServiceSpec`] and friends, belong to the
//! fleet file: [`crate::fleet::service`]): the decky context, the accept loop with its limits (per-IP and total
//! connection caps, session lifetime, `connect`/`disconnect` events) and a bounded line reader.
use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

use super::{Shutdown, emit::Emitter, stopped};
use crate::fleet::DeckySpec;
pub use crate::fleet::service::{Login, ServiceKind, ServiceSpec};

pub mod ftp;
pub mod http;
pub mod mysql;
pub mod redis;
pub mod smtp;
pub mod ssh;
pub mod telnet;

/// Connections from one IP to one service, at most (more are accepted and closed at once).
pub const MAX_CONN_PER_IP: usize = 16;
/// Connections to one service, at most.
pub const MAX_CONN: usize = 256;
/// A connection lives this long at most.
pub const SESSION_MAX: Duration = Duration::from_secs(15 * 60);
/// A client that sends nothing for this long is disconnected.
pub const IDLE: Duration = Duration::from_secs(120);
/// Longest protocol line kept (longer lines are cut, the rest up to the newline discarded).
pub const MAX_LINE: usize = 4096;
/// Login attempts on one connection, at most (then it is closed, as real servers do).
pub const MAX_AUTH_PER_CONN: u32 = 10;

/// What every service of one decky shares.
pub struct Ctx {
    pub spec: Arc<DeckySpec>,
    pub emit: Emitter,
    pub state_dir: PathBuf,
    /// Connections accepted by all services.
    pub connections: AtomicU64,
}

impl Ctx {
    pub fn new(spec: DeckySpec, emit: Emitter, state_dir: PathBuf) -> Ctx {
        Ctx {
            spec: Arc::new(spec),
            emit,
            state_dir,
            connections: AtomicU64::new(0),
        }
    }
}

/// One accepted connection: who, to what; emits its events.
#[derive(Clone)]
pub struct Conn {
    pub ctx: Arc<Ctx>,
    pub service: &'static str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl Conn {
    /// An event of this connection (`src_ip`/`src_port` are added).
    pub fn event(&self, msgid: &str, fields: &[(&str, &str)]) {
        self.ctx.emit.emit(self.service, msgid, self.peer, fields);
    }

    /// A login attempt.
    pub fn auth(&self, principal: &str, secret: &[u8], kind: &str, extra: &[(&str, &str)]) {
        self.ctx
            .emit
            .auth_attempt(self.service, self.peer, principal, secret, kind, extra);
    }

    /// Whether `user`/`password` is one of the service's accepted logins.
    pub fn accepted(accept: &[Login], user: &str, password: &[u8]) -> bool {
        accept
            .iter()
            .any(|l| l.username == user && l.password.as_bytes() == password)
    }

    pub fn hostname(&self) -> &str {
        &self.ctx.spec.hostname
    }
}

/// What a service needs ready before it listens (so errors show before the ready file).
pub enum Prepared {
    Nothing,
    Ssh(Arc<russh::server::Config>),
    Tls(tokio_rustls::TlsAcceptor),
}

/// Loads or creates the service's keys and certificates.
pub fn prepare(ctx: &Ctx, spec: &ServiceSpec) -> anyhow::Result<Prepared> {
    Ok(match spec.kind {
        ServiceKind::Ssh => Prepared::Ssh(ssh::config(ctx, spec)?),
        ServiceKind::Https => Prepared::Tls(http::tls_acceptor(ctx)?),
        _ => Prepared::Nothing,
    })
}

/// Serves one service on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    spec: ServiceSpec,
    prepared: Prepared,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    match (spec.kind, prepared) {
        (ServiceKind::Ssh, Prepared::Ssh(config)) => {
            ssh::serve(listener, ctx, spec, config, shutdown).await
        }
        (ServiceKind::Http, _) => http::serve(listener, ctx, spec, None, shutdown).await,
        (ServiceKind::Https, Prepared::Tls(tls)) => {
            http::serve(listener, ctx, spec, Some(tls), shutdown).await
        }
        (ServiceKind::Ftp, _) => ftp::serve(listener, ctx, spec, shutdown).await,
        (ServiceKind::Telnet, _) => telnet::serve(listener, ctx, spec, shutdown).await,
        (ServiceKind::Smtp, _) => smtp::serve(listener, ctx, spec, shutdown).await,
        (ServiceKind::Redis, _) => redis::serve(listener, ctx, spec, shutdown).await,
        (ServiceKind::Mysql, _) => mysql::serve(listener, ctx, spec, shutdown).await,
        (kind, _) => anyhow::bail!("{}: not prepared", kind.name()),
    }
    Ok(())
}

/// Open connections per IP, and in total, of one service.
#[derive(Default)]
struct Limiter {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

struct Slot {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Limiter {
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 >= MAX_CONN || g.1.get(&ip).copied().unwrap_or(0) >= MAX_CONN_PER_IP {
            return None;
        }
        g.0 += 1;
        *g.1.entry(ip).or_default() += 1;
        Some(Slot {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until `shutdown`; each one within the caps runs `handler` (at most
/// [`SESSION_MAX`], cut short by shutdown) between a `connect` and a `disconnect` event.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    kind: ServiceKind,
    mut shutdown: Shutdown,
    handler: H,
) where
    H: Fn(TcpStream, Conn) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let limiter = Arc::new(Limiter::default());
    let mut conns = JoinSet::new();
    let mut refused = 0u64;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(service = kind.name(), "accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(slot) = limiter.acquire(peer.ip()) else {
                    refused += 1;
                    if refused.is_power_of_two() {
                        tracing::info!(service = kind.name(), %peer, refused, "connection cap reached");
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                ctx.connections.fetch_add(1, Ordering::Relaxed);
                let local = stream.local_addr().unwrap_or(peer);
                let conn = Conn { ctx: ctx.clone(), service: kind.name(), peer, local };
                let fut = handler(stream, conn.clone());
                let mut sd = shutdown.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let port = local.port().to_string();
                    conn.event("connect", &[("dst_port", &port)]);
                    let start = Instant::now();
                    tokio::select! {
                        _ = tokio::time::timeout(SESSION_MAX, fut) => {}
                        _ = stopped(&mut sd) => {}
                    }
                    let ms = start.elapsed().as_millis().to_string();
                    conn.event("disconnect", &[("dst_port", &port), ("duration_ms", &ms)]);
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Reads one line (up to `\n`, without the line ending) of at most [`MAX_LINE`] bytes (the rest of
/// a longer line is read and discarded). `None` at end of stream or after [`IDLE`] without a
/// complete line.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    tokio::time::timeout(IDLE, read_line_inner(r, MAX_LINE))
        .await
        .ok()
        .flatten()
}

async fn read_line_inner<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.ok()?;
        if buf.is_empty() {
            // EOF: a last unterminated line still counts.
            return (!line.is_empty()).then_some(line);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        if done {
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            return Some(line);
        }
    }
}

/// At most `max` bytes of `b`.
pub fn limit(b: &[u8], max: usize) -> &[u8] {
    &b[..b.len().min(max)]
}

/// `b` as text for a log field: lossy UTF-8.
pub fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_split() {
        let long = vec![b'a'; MAX_LINE * 3];
        let mut input = Vec::new();
        input.extend_from_slice(b"USER root\r\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut r = tokio::io::BufReader::with_capacity(64, &input[..]);
        assert_eq!(read_line(&mut r).await.unwrap(), b"USER root");
        assert_eq!(read_line(&mut r).await.unwrap().len(), MAX_LINE);
        assert_eq!(read_line(&mut r).await.unwrap(), b"last");
        assert_eq!(read_line(&mut r).await, None);
    }

    #[test]
    fn limiter_caps_per_ip_and_releases() {
        let l = Arc::new(Limiter::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..MAX_CONN_PER_IP)
            .map(|_| l.acquire(a).expect("slot"))
            .collect();
        assert!(l.acquire(a).is_none());
        assert!(l.acquire(b).is_some());
        drop(held);
        assert!(l.acquire(a).is_some());
        assert!(l.open.lock().unwrap().1.is_empty());
    }

    #[test]
    fn service_spec_json_round_trip() {
        let s = ServiceSpec {
            kind: ServiceKind::Ssh,
            port: 2222,
            banner: None,
            accept: vec![Login {
                username: "root".into(),
                password: "toor".into(),
            }],
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ServiceSpec>(&j).unwrap(), s);
    }
}
