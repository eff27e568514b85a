//! The collector's readers over real loopback sockets (127.0.0.1, ephemeral ports): framing,
//! limits, back-pressure, UDP overflow, TLS and mutual TLS, the allowlist; and the writer on a
//! temporary SQLite repository.
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

use decnet_core::{model::NewEvent, repo::Repository};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::{
    TlsAcceptor, TlsConnector,
    rustls::{ClientConfig, RootCertStore, crypto::ring},
};

use super::{
    counters::{Counters, get},
    net::{self, NetConfig, Shared},
    writer::{self, Item, WriterConfig},
};

fn cfg() -> NetConfig {
    NetConfig {
        max_message: 1024,
        max_connections: 64,
        max_connections_per_ip: 64,
        idle_timeout: Duration::from_secs(30),
        allow: Vec::new(),
        queue_bytes: 1 << 30,
    }
}

fn line(i: usize) -> String {
    format!(
        r#"<134>1 2026-05-02T06:00:25.000001Z decky-{i} ssh - auth_attempt [relay@55555 src_ip="203.0.113.9" n="{i}"]"#
    )
}

fn octet(s: &str) -> String {
    format!("{} {s}", s.len())
}

/// A listener with its readers, the queue's receiving end and the stop switch.
struct Rig {
    counters: Arc<Counters>,
    rx: mpsc::Receiver<Item>,
    stop: watch::Sender<bool>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Rig {
    async fn tcp(cfg: NetConfig, queue: usize, tls: Option<TlsAcceptor>) -> Rig {
        let (tx, rx) = mpsc::channel(queue);
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let shared = Shared::new(cfg, counters.clone(), tx, stop_rx);
        let listener = net::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(net::accept_loop(listener, tls, shared));
        Rig {
            counters,
            rx,
            stop,
            addr,
            task,
        }
    }

    async fn udp(cfg: NetConfig, queue: usize) -> Rig {
        let (tx, rx) = mpsc::channel(queue);
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let shared = Shared::new(cfg, counters.clone(), tx, stop_rx);
        let sock = net::bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            net::udp_loop(sock, shared).await;
        });
        Rig {
            counters,
            rx,
            stop,
            addr,
            task,
        }
    }

    /// The next `n` events, in queue order.
    async fn events(&mut self, n: usize) -> Vec<NewEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let item = tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
                .await
                .expect("events arrive in time")
                .expect("queue open");
            out.push(item.event);
        }
        out
    }

    /// Stops the readers and checks that nothing else is queued.
    async fn finish(mut self) -> Arc<Counters> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        // Readers end when they see the stop; the queue then closes.
        let rest = tokio::time::timeout(Duration::from_secs(10), async {
            let mut n = 0;
            while self.rx.recv().await.is_some() {
                n += 1;
            }
            n
        })
        .await
        .expect("every reader stops");
        assert_eq!(rest, 0, "unexpected events left in the queue");
        self.counters
    }
}

/// Polls `cond` until it holds (10 s at most).
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether the server closed the connection (EOF or reset; anything it sent before, such as a
/// TLS alert, is skipped) within 5 s.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

async fn send_slowly(s: &mut TcpStream, bytes: &[u8], piece: usize) {
    s.set_nodelay(true).unwrap();
    for chunk in bytes.chunks(piece) {
        s.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn deckies(events: &[NewEvent]) -> Vec<String> {
    events.iter().map(|e| e.decky.clone()).collect()
}

#[tokio::test]
async fn tcp_octet_counting_and_lf_framing_split_across_reads() {
    let mut rig = Rig::tcp(cfg(), 1024, None).await;
    // Octet counting, in 7-byte writes (frames and headers split anywhere).
    let counted: String = (0..5).map(|i| octet(&line(i))).collect();
    let mut a = TcpStream::connect(rig.addr).await.unwrap();
    send_slowly(&mut a, counted.as_bytes(), 7).await;
    let got = rig.events(5).await;
    assert_eq!(
        deckies(&got),
        (0..5).map(|i| format!("decky-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(got[0].raw, line(0).as_bytes());
    // LF framing with CR LF and a blank line, in 5-byte writes.
    let lines = format!("{}\r\n{}\n\n{}\n", line(10), line(11), line(12));
    let mut b = TcpStream::connect(rig.addr).await.unwrap();
    send_slowly(&mut b, lines.as_bytes(), 5).await;
    let got = rig.events(3).await;
    assert_eq!(deckies(&got), ["decky-10", "decky-11", "decky-12"]);
    assert_eq!(got[1].raw, line(11).as_bytes());
    drop((a, b));
    let c = rig.finish().await;
    // The blank line is a frame, rejected as empty.
    assert_eq!((get(&c.received), get(&c.parsed)), (9, 8));
    assert_eq!(c.rejected(decnet_core::rfc5424::Reject::Empty), 1);
}

#[tokio::test]
async fn oversized_frames_are_skipped_and_the_connection_stays_usable() {
    let mut rig = Rig::tcp(
        NetConfig {
            max_message: 256,
            ..cfg()
        },
        64,
        None,
    )
    .await;
    let big = format!("<134>1 - big ssh - x - {}", "A".repeat(5000));
    let counted = format!("{}{}{}", octet(&line(1)), octet(&big), octet(&line(2)));
    let mut a = TcpStream::connect(rig.addr).await.unwrap();
    send_slowly(&mut a, counted.as_bytes(), 1000).await;
    assert_eq!(deckies(&rig.events(2).await), ["decky-1", "decky-2"]);
    let lines = format!("{}\n{big}\n{}\n", line(3), line(4));
    let mut b = TcpStream::connect(rig.addr).await.unwrap();
    send_slowly(&mut b, lines.as_bytes(), 1000).await;
    assert_eq!(deckies(&rig.events(2).await), ["decky-3", "decky-4"]);
    // Both connections are still open and usable.
    a.write_all(octet(&line(5)).as_bytes()).await.unwrap();
    b.write_all(format!("{}\n", line(6)).as_bytes())
        .await
        .unwrap();
    let mut last = deckies(&rig.events(2).await);
    last.sort();
    assert_eq!(last, ["decky-5", "decky-6"]);
    // Garbage that is not a message is rejected with the parser's reason.
    b.write_all(b"hello\n").await.unwrap();
    until("the reject", || {
        rig.counters.rejected(decnet_core::rfc5424::Reject::BadPri) == 1
    })
    .await;
    drop((a, b));
    let c = rig.finish().await;
    assert_eq!(c.rejected(decnet_core::rfc5424::Reject::TooLong), 2);
    assert_eq!(get(&c.received), 9);
    assert_eq!(get(&c.parsed), 6);
    assert_eq!(c.rejected_total(), 3);
}

#[tokio::test]
async fn malformed_octet_header_closes_only_that_connection() {
    let mut rig = Rig::tcp(cfg(), 64, None).await;
    let mut bad = TcpStream::connect(rig.addr).await.unwrap();
    bad.write_all(format!("{}12x <1>", octet(&line(1))).as_bytes())
        .await
        .unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-1"]);
    assert!(closed_by_server(&mut bad).await);
    let mut good = TcpStream::connect(rig.addr).await.unwrap();
    good.write_all(octet(&line(2)).as_bytes()).await.unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-2"]);
    drop(good);
    let c = rig.finish().await;
    assert_eq!(get(&c.framing_errors), 1);
}

/// A writer that does not take from the queue: the TCP reader stops reading its socket (the
/// client's writes block in the kernel), and once the queue is drained every line arrives.
#[tokio::test]
async fn backpressure_stops_the_tcp_reader_without_loss() {
    const N: usize = 200_000;
    let mut rig = Rig::tcp(cfg(), 4, None).await;
    let payload: String = (0..N).map(|i| format!("{}\n", line(i))).collect();
    assert!(
        payload.len() > 16 << 20,
        "more than loopback TCP buffers hold"
    );
    let addr = rig.addr;
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = sent.clone();
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        for chunk in payload.as_bytes().chunks(64 << 10) {
            s.write_all(chunk).await.unwrap();
            sent2.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
        s.shutdown().await.unwrap();
    });
    // The queue fills, then the reader waits.
    until("a full queue", || rig.rx.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled_at = get(&rig.counters.received);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(&rig.counters.received),
        stalled_at,
        "the reader kept reading"
    );
    // At most the queue plus the frames of one read buffer (1 KiB) plus the one being sent.
    assert!(
        stalled_at <= 4 + 20,
        "read {stalled_at} lines while stalled"
    );
    assert!(!client.is_finished(), "the client should be blocked");
    let sent_while_stalled = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent_while_stalled < N * 100,
        "the client sent everything: {sent_while_stalled}"
    );
    assert!(get(&rig.counters.queue_depth_max) <= 4);
    // Drain: every line arrives, in order, none twice.
    let got = rig.events(N).await;
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.decky, format!("decky-{i}"));
    }
    client.await.unwrap();
    let c = rig.finish().await;
    assert_eq!(get(&c.received), N as u64);
    assert_eq!(get(&c.parsed), N as u64);
}

#[tokio::test]
async fn udp_overflow_is_counted() {
    let mut rig = Rig::udp(cfg(), 4).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..50 {
        client
            .send_to(format!("{}\n", line(i)).as_bytes(), rig.addr)
            .await
            .unwrap();
    }
    // Over the maximum: rejected, not queued.
    client.send_to(&vec![b'x'; 5000], rig.addr).await.unwrap();
    until("every datagram", || get(&rig.counters.received) == 51).await;
    assert_eq!(get(&rig.counters.dropped_udp), 46);
    assert_eq!(
        rig.counters.rejected(decnet_core::rfc5424::Reject::TooLong),
        1
    );
    let got = rig.events(4).await;
    assert_eq!(deckies(&got), ["decky-0", "decky-1", "decky-2", "decky-3"]);
    // Room again: the next datagram is queued.
    client.send_to(line(99).as_bytes(), rig.addr).await.unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-99"]);
    let c = rig.finish().await;
    assert_eq!(get(&c.parsed), 51);
    assert_eq!(get(&c.queue_depth_max), 4);
}

#[tokio::test]
async fn per_ip_connection_limit() {
    let mut rig = Rig::tcp(
        NetConfig {
            max_connections_per_ip: 2,
            ..cfg()
        },
        64,
        None,
    )
    .await;
    let mut a = TcpStream::connect(rig.addr).await.unwrap();
    let b = TcpStream::connect(rig.addr).await.unwrap();
    until("two connections", || get(&rig.counters.accepted) == 2).await;
    let mut c = TcpStream::connect(rig.addr).await.unwrap();
    assert!(closed_by_server(&mut c).await);
    assert_eq!(get(&rig.counters.refused_limit), 1);
    a.write_all(octet(&line(1)).as_bytes()).await.unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-1"]);
    // A slot frees when a connection closes.
    drop(b);
    until("the slot to free", || get(&rig.counters.open) == 1).await;
    let mut d = TcpStream::connect(rig.addr).await.unwrap();
    d.write_all(octet(&line(2)).as_bytes()).await.unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-2"]);
    drop((a, d));
    let counters = rig.finish().await;
    assert_eq!(get(&counters.accepted), 3);
    assert_eq!(get(&counters.refused_limit), 1);
}

#[tokio::test]
async fn total_connection_limit_and_idle_timeout() {
    let mut rig = Rig::tcp(
        NetConfig {
            max_connections: 1,
            idle_timeout: Duration::from_secs(1),
            ..cfg()
        },
        64,
        None,
    )
    .await;
    let mut a = TcpStream::connect(rig.addr).await.unwrap();
    until("one connection", || get(&rig.counters.accepted) == 1).await;
    let mut b = TcpStream::connect(rig.addr).await.unwrap();
    assert!(closed_by_server(&mut b).await);
    a.write_all(octet(&line(1)).as_bytes()).await.unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-1"]);
    // Silent for longer than the idle timeout: closed.
    assert!(closed_by_server(&mut a).await);
    let c = rig.finish().await;
    assert_eq!(get(&c.idle_closed), 1);
    assert_eq!(get(&c.refused_limit), 1);
    assert_eq!(get(&c.open), 0);
}

#[tokio::test]
async fn allowlist_refuses_other_sources() {
    let elsewhere = NetConfig {
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..cfg()
    };
    let rig = Rig::tcp(elsewhere.clone(), 64, None).await;
    let mut s = TcpStream::connect(rig.addr).await.unwrap();
    assert!(closed_by_server(&mut s).await);
    let c = rig.finish().await;
    assert_eq!(get(&c.refused_allowlist), 1);
    assert_eq!(get(&c.accepted), 0);

    let rig = Rig::udp(elsewhere, 64).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(line(1).as_bytes(), rig.addr).await.unwrap();
    until("the refusal", || get(&rig.counters.refused_allowlist) == 1).await;
    let c = rig.finish().await;
    assert_eq!(get(&c.received), 0);

    let mut rig = Rig::tcp(
        NetConfig {
            allow: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.0/8".parse().unwrap(),
            ],
            ..cfg()
        },
        64,
        None,
    )
    .await;
    let mut s = TcpStream::connect(rig.addr).await.unwrap();
    s.write_all(octet(&line(7)).as_bytes()).await.unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-7"]);
    drop(s);
    let c = rig.finish().await;
    assert_eq!(get(&c.refused_allowlist), 0);
}

#[tokio::test]
async fn double_wrapped_line_over_the_wire() {
    let mut rig = Rig::tcp(cfg(), 64, None).await;
    let inner = r#"<134>1 2026-05-02T06:00:27Z web-01 bash - CMD [relay@55555 src_ip="203.0.113.9" cmd="id"]"#;
    let outer = format!("<13>1 2026-05-02T06:00:28Z relay rsyslogd - - - {inner}");
    let mut s = TcpStream::connect(rig.addr).await.unwrap();
    s.write_all(format!("{outer}\n").as_bytes()).await.unwrap();
    let e = rig.events(1).await.remove(0);
    assert_eq!(
        (e.decky.as_str(), e.service.as_str(), e.event_type.as_str()),
        ("web-01", "bash", "CMD")
    );
    assert_eq!(e.raw, outer.as_bytes());
    drop(s);
    let c = rig.finish().await;
    assert_eq!(get(&c.unwrapped), 1);
}

/// A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: PathBuf,
    ca_der: rustls_pki_types::CertificateDer<'static>,
    client_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    client_key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let dir =
            std::env::temp_dir().join(format!("decnet-collector-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "decnet test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();

        let srv_key = KeyPair::generate().unwrap();
        let mut srv =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let srv_cert = srv.signed_by(&srv_key, &ca_cert, &ca_key).unwrap();

        let cli_key = KeyPair::generate().unwrap();
        let mut cli = CertificateParams::new(vec!["decky-relay".to_owned()]).unwrap();
        cli.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cli_cert = cli.signed_by(&cli_key, &ca_cert, &ca_key).unwrap();

        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), srv_cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), srv_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_der: ca_cert.der().clone(),
            client_chain: vec![cli_cert.der().clone()],
            client_key: rustls_pki_types::PrivateKeyDer::Pkcs8(cli_key.serialize_der().into()),
        }
    }

    fn acceptor(&self, mutual: bool) -> TlsAcceptor {
        let ca = self.dir.join("ca.pem");
        super::tls::acceptor(
            &self.dir.join("server.pem"),
            &self.dir.join("server.key"),
            mutual.then_some(ca.as_path()),
        )
        .unwrap()
    }

    fn connector(&self, with_cert: bool) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_cert {
            builder
                .with_client_auth_cert(self.client_chain.clone(), self.client_key.clone_key())
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_send(
    connector: &TlsConnector,
    addr: SocketAddr,
    bytes: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await?;
    s.write_all(bytes).await?;
    s.flush().await?;
    Ok(s)
}

#[tokio::test]
async fn tls_octet_counted_messages_arrive() {
    let pki = Pki::new("plain");
    let mut rig = Rig::tcp(cfg(), 64, Some(pki.acceptor(false))).await;
    let frames: String = (0..3).map(|i| octet(&line(i))).collect();
    // No client certificate needed without --tls-client-ca.
    let s = tls_send(&pki.connector(false), rig.addr, frames.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        deckies(&rig.events(3).await),
        ["decky-0", "decky-1", "decky-2"]
    );
    // A plaintext client is not a TLS client.
    let mut plain = TcpStream::connect(rig.addr).await.unwrap();
    plain.write_all(octet(&line(9)).as_bytes()).await.unwrap();
    assert!(closed_by_server(&mut plain).await);
    until("the failed handshake", || {
        get(&rig.counters.tls_handshake_failed) == 1
    })
    .await;
    drop(s);
    let c = rig.finish().await;
    assert_eq!(get(&c.parsed), 3);
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let pki = Pki::new("mutual");
    let mut rig = Rig::tcp(cfg(), 64, Some(pki.acceptor(true))).await;
    let with_cert = tls_send(&pki.connector(true), rig.addr, octet(&line(1)).as_bytes())
        .await
        .unwrap();
    assert_eq!(deckies(&rig.events(1).await), ["decky-1"]);

    // TLS 1.3: the client may think it is connected; the server refuses when it sees no
    // certificate, and nothing it sent is read.
    if let Ok(mut s) = tls_send(&pki.connector(false), rig.addr, octet(&line(2)).as_bytes()).await {
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
    until("the refusal", || {
        get(&rig.counters.tls_handshake_failed) == 1
    })
    .await;
    drop(with_cert);
    let c = rig.finish().await;
    assert_eq!(get(&c.parsed), 1);
    assert_eq!(get(&c.received), 1);
}

#[tokio::test]
async fn writer_commits_batches_and_counts_duplicates() {
    let path =
        std::env::temp_dir().join(format!("decnet-collector-writer-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let repo = Repository::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let counters = Arc::new(Counters::default());
    let run_once = |lines: Vec<String>| {
        let repo = repo.clone();
        let counters = counters.clone();
        async move {
            let (tx, rx) = mpsc::channel(8);
            let task = tokio::spawn(writer::run(
                repo,
                rx,
                WriterConfig {
                    batch: 7,
                    flush: Duration::from_millis(20),
                    stats_interval: Duration::from_secs(60),
                    host: "test-host".into(),
                },
                counters,
            ));
            for l in lines {
                let m = super::mapping::map_line(l.as_bytes(), 1024, 0).unwrap();
                tx.send(Item {
                    event: m.event,
                    credential: m.credential,
                    permit: None,
                })
                .await
                .unwrap();
            }
            drop(tx);
            task.await.unwrap().unwrap();
        }
    };
    let cred = |i: usize| {
        format!(
            r#"<134>1 2026-05-02T06:00:26Z web-01 ssh - auth_attempt [relay@55555 principal="root" secret_b64="MTIzNDU2" src_ip="203.0.113.{i}"]"#
        )
    };
    let lines: Vec<String> = (0..50).map(line).chain((1..=3).map(cred)).collect();
    run_once(lines.clone()).await;
    assert_eq!(repo.count_events().await.unwrap(), 53);
    assert_eq!(get(&counters.stored), 53);
    assert_eq!(get(&counters.duplicates), 0);
    assert!(get(&counters.batches) >= 8);
    let creds = repo.credentials(None).await.unwrap();
    assert_eq!(creds.len(), 3);
    assert_eq!(creds[0].secret_printable, "123456");
    // The same lines again: no new rows.
    run_once(lines).await;
    assert_eq!(repo.count_events().await.unwrap(), 53);
    assert_eq!(get(&counters.stored), 53);
    assert_eq!(get(&counters.duplicates), 53);
    assert_eq!(repo.credentials(None).await.unwrap().len(), 3);
    writer::record_totals(&repo, "test-host", &counters)
        .await
        .unwrap();
    let recorded = repo.counters().await.unwrap();
    assert!(recorded.contains(&("collector".into(), "test-host".into(), "stored".into(), 53)));
    repo.close().await;
    let _ = std::fs::remove_file(&path);
}

/// A Unix-socket listener in a fresh directory, with its readers.
struct UnixRig {
    dir: PathBuf,
    path: PathBuf,
    counters: Arc<Counters>,
    rx: mpsc::Receiver<Item>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl UnixRig {
    fn new(tag: &str, peers: Option<&str>) -> UnixRig {
        let dir = std::env::temp_dir().join(format!("decnet-unix-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let peers = peers.map(|text| {
            let file = dir.join("peers");
            std::fs::write(&file, text).unwrap();
            net::Peers { file }
        });
        let path = dir.join("c.sock");
        let sock = net::bind_unix(&path).unwrap();
        let (tx, rx) = mpsc::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let shared = Shared::new(cfg(), counters.clone(), tx, stop_rx);
        let task = tokio::spawn(net::unix_accept_loop(sock, peers, shared));
        UnixRig {
            dir,
            path,
            counters,
            rx,
            stop,
            task,
        }
    }

    async fn send(&self, lines: &[String]) -> tokio::net::UnixStream {
        let mut s = tokio::net::UnixStream::connect(&self.path).await.unwrap();
        let bytes: String = lines.iter().map(|l| octet(l)).collect();
        s.write_all(bytes.as_bytes()).await.unwrap();
        s
    }

    async fn finish(mut self) -> (Arc<Counters>, Vec<NewEvent>) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        let mut events = Vec::new();
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await
        {
            events.push(item.event);
        }
        assert!(!self.path.exists(), "the socket file is removed at the end");
        let _ = std::fs::remove_dir_all(&self.dir);
        (self.counters, events)
    }
}

#[tokio::test]
async fn unix_socket_lines_are_framed_like_tcp_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut rig = UnixRig::new("plain", None);
    let mode = std::fs::metadata(&rig.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // A second collector on the same path is refused; the first keeps it.
    let again = net::bind_unix(&rig.path).expect_err("a live socket is not replaced");
    assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
    // Without --unix-peers any HOSTNAME is taken as given.
    let s = rig.send(&[line(1), line(2)]).await;
    let got = rig.rx.recv().await.unwrap();
    assert_eq!(got.event.decky, "decky-1");
    drop(s);
    let (c, rest) = rig.finish().await;
    assert_eq!(deckies(&rest), ["decky-2"]);
    // The refused second bind's liveness probe was a connection too.
    assert_eq!((get(&c.accepted), get(&c.impersonated)), (2, 0));
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_other_files_are_left_alone() {
    let dir = std::env::temp_dir().join(format!("decnet-unix-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.sock");
    // A socket file nobody listens on any more (its collector died).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let sock = net::bind_unix(&path).expect("a stale socket is replaced");
    drop(sock);
    assert!(!path.exists());
    let plain = dir.join("not-a-socket");
    std::fs::write(&plain, "data").unwrap();
    let e = net::bind_unix(&plain).expect_err("a regular file is not a socket");
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "data");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unix_socket_peers_log_as_the_decky_of_their_network_namespace_only() {
    // This very process's network namespace stands for decky-1's (the collector sees the
    // connecting process's namespace through SO_PEERCRED and /proc/PID/ns/net).
    let own = "/proc/self/ns/net";
    let peers = format!("# comment\n\ndecky-9 /nonexistent/ns\ndecky-1 {own}\n");
    let mut rig = UnixRig::new("peers", Some(&peers));
    // decky-1 may write as decky-1, not as decky-2.
    let s = rig.send(&[line(2), line(1)]).await;
    let got = rig.rx.recv().await.unwrap();
    assert_eq!(got.event.decky, "decky-1");
    until("the impersonation is counted", || {
        get(&rig.counters.impersonated) == 1
    })
    .await;
    drop(s);
    // The fleet changes: the file no longer names this namespace; a new connection is refused
    // (closed at once, nothing read).
    std::fs::write(rig.dir.join("peers"), "decky-1 /nonexistent/ns\n").unwrap();
    let mut s = rig.send(&[line(1)]).await;
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let (c, rest) = rig.finish().await;
    assert!(rest.is_empty(), "{:?}", deckies(&rest));
    assert_eq!(
        (
            get(&c.accepted),
            get(&c.refused_peer),
            get(&c.impersonated),
            get(&c.received)
        ),
        (1, 1, 1, 2)
    );
}
