//! # collector — the syslog receiver for the decoy services (`decnet collector`, alias `collect`)
//!
//! **Input:** RFC 5424 lines from the decoy services (and relays): UDP datagrams (RFC 5426), TCP
//! streams (RFC 6587: octet counting or LF framing, detected per connection), TLS streams
//! (RFC 5425, optionally mutual TLS) and a Unix stream socket (the deckies' channel under
//! `decnet deploy`: no network peer can reach it; with `--unix-peers` each connection is tied to
//! the decky whose network namespace it comes from).
//! **Output:** one row per line in the repository's `events` table (re-sending a line is a no-op:
//! the dedup key is the SHA-256 of the line), one `credentials` row per login attempt, and the
//! counters (logged every `--stats-interval`, recorded in `worker_counters` as worker
//! `collector`, printed on exit, optionally written as JSON).
//!
//! Pipeline: [`net`] readers (one task per connection, one per UDP socket) frame ([`framing`]),
//! parse (`decnet_core::rfc5424`) and map ([`mapping`]) each line on their own task and push it
//! onto one bounded queue; the single [`writer`] commits batches. When the queue is full, TCP and
//! TLS readers stop reading their sockets (back-pressure; nothing is dropped) while the UDP
//! reader drops and counts. [`allow`] is the source allowlist, [`tls`] the TLS configuration,
//! [`counters`] what is counted.
//!
//! Runs through `decnet-runtime` (lease `collector`, `--daemon | --duration`; it has no
//! one-shot mode). Shutdown (SIGTERM/SIGINT/SIGHUP, or end of `--duration`): close the listeners, let every reader queue
//! the complete frames it has already read (no new bytes are read), drain the queue, commit, then
//! print the summary. A message read from a stream is in the repository after a clean shutdown,
//! or was never read.
pub mod allow;
pub mod counters;
pub mod framing;
pub mod mapping;
pub mod net;
pub mod tls;
pub mod writer;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use decnet_core::{repo::hostname, rfc5424::MAX_MESSAGE};
use decnet_runtime::{Context, DbArgs, Report, RunArgs, Spec, positive_secs, positive_usize};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use self::{
    allow::Cidr,
    counters::Counters,
    net::{Listener, NetConfig, Shared, UdpDrops},
    writer::WriterConfig,
};

/// The default listener (UDP and TCP) when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5514";

/// `decnet collector`: receive the decoy services' RFC 5424 logs over UDP, TCP and TLS and store
/// them as events.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "With no --udp/--tcp/--tls/--unix, listens on UDP and TCP 127.0.0.1:5514.\n\n\
Examples:\n  decnet collector --daemon --udp 0.0.0.0:514 --tcp 0.0.0.0:514\n  \
decnet collector --daemon --unix /run/decnet/collector.sock --unix-peers /run/decnet/peers\n  \
decnet collector --daemon --tls 0.0.0.0:6514 --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem\n  \
decnet collector --duration 30 --tcp 127.0.0.1:0 --ready-file /tmp/ready --summary-json /tmp/collect.json"
)]
pub struct CollectArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// UDP listener, one message per datagram (RFC 5426). Repeatable; port 0 picks a free port
    /// (see --ready-file).
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "DECNET_COLLECTOR_UDP",
        value_delimiter = ','
    )]
    pub udp: Vec<SocketAddr>,

    /// TCP listener; octet counting or LF framing, detected per connection (RFC 6587).
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "DECNET_COLLECTOR_TCP",
        value_delimiter = ','
    )]
    pub tcp: Vec<SocketAddr>,

    /// TLS listener (RFC 5425); needs --tls-cert and --tls-key.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "DECNET_COLLECTOR_TLS",
        value_delimiter = ','
    )]
    pub tls: Vec<SocketAddr>,

    /// Unix stream socket at PATH (created mode 0600 and removed at exit), framed like TCP:
    /// reachable from this host's filesystem only, never from a network. What `decnet deploy`
    /// gives its deckies.
    #[arg(long, value_name = "PATH", env = "DECNET_COLLECTOR_UNIX")]
    pub unix: Option<PathBuf>,

    /// Who may log over --unix: a file of lines `NAME NETNS_FILE` (e.g. `web-01
    /// /run/netns/decnet-web-01`), read again for each connection. A connecting process must be
    /// in the network namespace of one NAME (SO_PEERCRED), and its lines must carry that NAME as
    /// HOSTNAME; other processes are refused (refused_peer), other HOSTNAMEs dropped
    /// (impersonated). Without it any process that can open the socket may log.
    #[arg(long, value_name = "FILE", requires = "unix")]
    pub unix_peers: Option<PathBuf>,

    /// The TLS server certificate chain (PEM).
    #[arg(long, value_name = "PEM", env = "DECNET_COLLECTOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The TLS server private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", env = "DECNET_COLLECTOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates issued by these CAs (PEM): mutual TLS. A client without a
    /// valid certificate is refused.
    #[arg(long, value_name = "PEM", env = "DECNET_COLLECTOR_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Longest message accepted, in bytes; longer ones are rejected (too_long) and skipped.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_MESSAGE, value_parser = max_message)]
    pub max_message: usize,

    /// Open TCP/TLS connections at most; more are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Open TCP/TLS connections per source address at most.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// A connection that sends nothing for this long is closed.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = positive_secs)]
    pub idle_timeout: f64,

    /// Accept logs only from these sources (ADDR or ADDR/PREFIX, repeatable); others are refused
    /// and counted. Default: everyone.
    #[arg(
        long,
        value_name = "CIDR",
        env = "DECNET_COLLECTOR_ALLOW",
        value_delimiter = ','
    )]
    pub allow: Vec<Cidr>,

    /// Lines in flight between the readers and the writer at most; when full, TCP/TLS readers
    /// wait (back-pressure) and UDP datagrams are dropped (counted).
    #[arg(long, value_name = "N", default_value_t = 65_536, value_parser = positive_usize)]
    pub queue: usize,

    /// Bytes of lines in flight at most (bounds memory when lines are long).
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20, value_parser = positive_usize)]
    pub queue_bytes: usize,

    /// Events per transaction at most.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = positive_usize)]
    pub batch: usize,

    /// A batch is committed at the latest this long after its first event arrived.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_ms: u64,

    /// How often counters are logged and recorded in the repository.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub stats_interval: f64,
}

fn max_message(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if (16..=MAX_MESSAGE).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: the maximum message size must be 16..={MAX_MESSAGE}"
        )),
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

/// A listener to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl CollectArgs {
    /// The listeners asked for, or the default pair.
    pub fn listeners(&self) -> Vec<(Transport, SocketAddr)> {
        let mut out: Vec<(Transport, SocketAddr)> = Vec::new();
        out.extend(self.udp.iter().map(|a| (Transport::Udp, *a)));
        out.extend(self.tcp.iter().map(|a| (Transport::Tcp, *a)));
        out.extend(self.tls.iter().map(|a| (Transport::Tls, *a)));
        if out.is_empty() && self.unix.is_none() {
            // A constant that parses.
            if let Ok(a) = DEFAULT_LISTEN.parse() {
                out.push((Transport::Udp, a));
                out.push((Transport::Tcp, a));
            }
        }
        out
    }

    fn net_config(&self) -> NetConfig {
        NetConfig {
            max_message: self.max_message,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            idle_timeout: secs(self.idle_timeout),
            allow: self.allow.clone(),
            queue_bytes: self.queue_bytes,
        }
    }

    /// The TLS acceptor if a TLS listener is asked for (errors name the files).
    fn tls_acceptor(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        if self.tls.is_empty() {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                tracing::warn!("--tls-cert/--tls-key/--tls-client-ca given without --tls: ignored");
            }
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            bail!("--tls needs --tls-cert PEM and --tls-key PEM");
        };
        tls::acceptor(cert, key, self.tls_client_ca.as_deref()).map(Some)
    }
}

/// The worker's name: subcommand, lease, unit and APP-NAME `decnet.collector`.
pub const WORKER: &str = "collector";

decnet_runtime::worker!(
    CollectArgs,
    |_args| {
        // One collector per host: two would split the decoys' streams between them and race on the
        // counters. Draining a full queue into the repository may take a while.
        Spec::new(WORKER)
            .lease(WORKER)
            .grace(Duration::from_secs(60))
    },
    run
);

/// Bind, run until stopped, drain, summarise.
pub async fn run(ctx: Context, args: CollectArgs) -> anyhow::Result<Report> {
    let tls = args.tls_acceptor()?;
    let repo = ctx.repo()?;
    let mut shutdown = ctx.shutdown.clone();
    let host = hostname();
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(args.queue);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut writer = tokio::spawn(writer::run(
        repo.clone(),
        rx,
        WriterConfig {
            batch: args.batch,
            flush: Duration::from_millis(args.flush_ms),
            stats_interval: secs(args.stats_interval),
            host: host.clone(),
        },
        counters.clone(),
    ));
    let shared = Shared::new(args.net_config(), counters.clone(), tx, stop_rx);

    let bound_all = bind_all(&args.listeners()).and_then(|mut l| {
        if let Some(path) = &args.unix {
            if let Some(peers) = &args.unix_peers {
                std::fs::metadata(peers)
                    .with_context(|| format!("--unix-peers {}", peers.display()))?;
            }
            let u = net::bind_unix(path)
                .with_context(|| format!("cannot listen on unix {}", path.display()))?;
            l.push(Listener::Unix(u));
        }
        Ok(l)
    });
    let listeners = match bound_all {
        Ok(l) => l,
        Err(e) => {
            drop(shared);
            let _ = writer.await;
            return Err(e);
        }
    };
    let bound: Vec<String> = listeners.iter().map(Listener::describe).collect();
    let peers = args.unix_peers.clone().map(|file| net::Peers { file });
    let udp_socks: Vec<&tokio::net::UdpSocket> = listeners
        .iter()
        .filter_map(|l| match l {
            Listener::Udp(s) => Some(s),
            _ => None,
        })
        .collect();
    let udp_drops = UdpDrops::new(&udp_socks);
    // UDP tasks hand their sockets back at the end (for the last kernel drop count).
    let mut tasks: JoinSet<Option<tokio::net::UdpSocket>> = JoinSet::new();
    for l in listeners {
        let shared = shared.clone();
        match l {
            Listener::Udp(s) => tasks.spawn(async move { Some(net::udp_loop(s, shared).await) }),
            Listener::Tcp(l) => tasks.spawn(async move {
                net::accept_loop(l, None, shared).await;
                None
            }),
            Listener::Tls(l) => {
                let tls = tls.clone();
                tasks.spawn(async move {
                    net::accept_loop(l, tls, shared).await;
                    None
                })
            }
            Listener::Unix(u) => {
                let peers = peers.clone();
                tasks.spawn(async move {
                    net::unix_accept_loop(u, peers, shared).await;
                    None
                })
            }
        };
    }
    if let Err(e) = ctx.ready(&bound) {
        let _ = stop_tx.send(true);
        drop(shared);
        while tasks.join_next().await.is_some() {}
        let _ = writer.await;
        return Err(e);
    }
    tracing::info!(listeners = %bound.join(", "), "collector running");

    let mut stats = tokio::time::interval(secs(args.stats_interval));
    stats.tick().await;
    let mut writer_result = None;
    loop {
        tokio::select! {
            why = shutdown.wait() => { tracing::info!("{why}: stopping"); break; }
            r = &mut writer => {
                tracing::error!("the event writer stopped: stopping");
                writer_result = Some(r);
                break;
            }
            _ = stats.tick() => refresh_udp_drops(&udp_drops, &counters),
        }
    }

    // Shutdown: no new connections or bytes; every frame already read goes through the queue.
    let _ = stop_tx.send(true);
    drop(shared);
    let mut udp_socks = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(sock)) = done {
            udp_socks.push(sock);
        }
    }
    // Kernel drops are read while the sockets still exist.
    refresh_udp_drops(&udp_drops, &counters);
    drop(udp_socks);
    let writer_result = match writer_result {
        Some(r) => r,
        None => writer.await,
    };
    let writer_result = match writer_result {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("the event writer panicked: {e}")),
    };
    if let Err(e) = writer::record_totals(repo, &host, &counters).await {
        tracing::warn!("could not record the final counters: {e:#}");
    }
    let summary = counters.snapshot();
    summary.log("final");
    writer_result?;
    Ok(Report::new(
        summary.human(ctx.started.elapsed().as_secs_f64()),
        &summary,
    ))
}

fn bind_all(plan: &[(Transport, SocketAddr)]) -> anyhow::Result<Vec<Listener>> {
    plan.iter()
        .map(|(t, addr)| {
            let l = match t {
                Transport::Udp => net::bind_udp(*addr).map(Listener::Udp),
                Transport::Tcp => net::bind_tcp(*addr).map(Listener::Tcp),
                Transport::Tls => net::bind_tcp(*addr).map(Listener::Tls),
            };
            l.with_context(|| {
                format!(
                    "cannot listen on {} {addr}",
                    match t {
                        Transport::Udp => "udp",
                        Transport::Tcp => "tcp",
                        Transport::Tls => "tls",
                    }
                )
            })
        })
        .collect()
}

fn refresh_udp_drops(drops: &UdpDrops, counters: &Counters) {
    if let Some(n) = drops.total() {
        counters
            .udp_kernel_drops
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }
}
