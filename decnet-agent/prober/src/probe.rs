//! The probes: what an attacker's tools see of one decky's service, each within connect/read/
//! total timeouts and a byte limit, sending nothing beyond a protocol's opening (a greeting
//! read, `GET /`, a TLS handshake, an SSH key exchange up to the host key, `PING`).
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use crate::vantage::Vantage;

/// Bounds of one probe.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    /// Longest wait for the next bytes.
    pub read: Duration,
    /// Longest a whole probe may take.
    pub total: Duration,
    /// Most bytes read from one connection.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
            total: Duration::from_secs(6),
            max_bytes: 64 * 1024,
        }
    }
}

/// Bytes and probes of a sweep.
#[derive(Debug, Default)]
pub struct Traffic {
    pub probes: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
}

impl Traffic {
    pub fn count_probe(&self) {
        self.probes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a probe saw nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    Connect(String),
    Timeout,
    Io(String),
    Protocol(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "no connection: {e}"),
            ProbeError::Timeout => write!(f, "timed out"),
            ProbeError::Io(e) => write!(f, "i/o error: {e}"),
            ProbeError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

/// Everything a probe needs.
#[derive(Clone)]
pub struct Prober {
    pub vantage: Vantage,
    pub limits: Limits,
    pub traffic: Arc<Traffic>,
    tls: Arc<rustls::ClientConfig>,
    /// The global rate limit: the earliest time the next connection may start.
    next_slot: Arc<tokio::sync::Mutex<tokio::time::Instant>>,
    spacing: Duration,
}

/// What `GET /` answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSeen {
    pub status_line: String,
    /// Header names and values in the order sent.
    pub headers: Vec<(String, String)>,
    pub body_sha256: String,
    pub body_len: usize,
}

impl HttpSeen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a TLS handshake showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSeen {
    /// SHA-256 of the leaf certificate's DER, hex.
    pub leaf_sha256: String,
    pub chain_len: usize,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Prober {
    /// `rate`: connections per second at most, over every decky (≥ 0.1).
    pub fn new(vantage: Vantage, limits: Limits, rate: f64) -> anyhow::Result<Prober> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Ok(Prober {
            vantage,
            limits,
            traffic: Arc::default(),
            tls: Arc::new(tls),
            next_slot: Arc::new(tokio::sync::Mutex::new(tokio::time::Instant::now())),
            spacing: Duration::from_secs_f64(1.0 / rate.max(0.1)),
        })
    }

    /// Waits for the next slot of the global rate limit.
    pub async fn pace(&self) {
        let at = {
            let mut next = self.next_slot.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            *next = at + self.spacing;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    async fn connect(&self, addr: SocketAddr) -> Result<tokio::net::TcpStream, ProbeError> {
        self.pace().await;
        self.traffic.count_probe();
        self.vantage
            .connect(addr, self.limits.connect)
            .await
            .map_err(|e| {
                self.traffic.failures.fetch_add(1, Ordering::Relaxed);
                if e.kind() == std::io::ErrorKind::TimedOut {
                    self.traffic.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                ProbeError::Connect(e.to_string())
            })
    }

    /// Runs `fut` within the total limit.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        match tokio::time::timeout(self.limits.total, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.traffic.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(ProbeError::Timeout)
            }
        }
    }

    /// Connects, optionally sends `hello`, and reads what comes: until the peer closes, the
    /// byte limit, or `quiet` passes without new bytes after the first (`read` before the
    /// first). An empty answer within the limits is `Ok(empty)`.
    pub async fn exchange(
        &self,
        addr: SocketAddr,
        hello: Option<&[u8]>,
        quiet: Duration,
    ) -> Result<Vec<u8>, ProbeError> {
        self.bounded(async {
            let mut s = self.connect(addr).await?;
            if let Some(h) = hello {
                self.send(&mut s, h).await?;
            }
            self.read_some(&mut s, quiet).await
        })
        .await
    }

    async fn send<S: AsyncWrite + Unpin>(&self, s: &mut S, b: &[u8]) -> Result<(), ProbeError> {
        s.write_all(b)
            .await
            .map_err(|e| ProbeError::Io(e.to_string()))?;
        s.flush().await.map_err(|e| ProbeError::Io(e.to_string()))?;
        self.traffic
            .bytes_sent
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn read_some<S: AsyncRead + Unpin>(
        &self,
        s: &mut S,
        quiet: Duration,
    ) -> Result<Vec<u8>, ProbeError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let wait = if out.is_empty() {
                self.limits.read
            } else {
                quiet
            };
            match tokio::time::timeout(wait, s.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    self.traffic
                        .bytes_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let room = self.limits.max_bytes - out.len();
                    out.extend_from_slice(&buf[..n.min(room)]);
                    if out.len() >= self.limits.max_bytes {
                        break;
                    }
                }
                // A reset after an answer still leaves the answer.
                Ok(Err(_)) if !out.is_empty() => break,
                Ok(Err(e)) => return Err(ProbeError::Io(e.to_string())),
            }
        }
        Ok(out)
    }

    /// The greeting a service sends first (ssh, ftp, smtp, telnet, mysql), up to its first
    /// quiet moment.
    pub async fn greeting(&self, addr: SocketAddr) -> Result<Vec<u8>, ProbeError> {
        self.exchange(addr, None, Duration::from_millis(300)).await
    }

    /// `GET /` over plain HTTP.
    pub async fn http(&self, addr: SocketAddr) -> Result<HttpSeen, ProbeError> {
        let req = http_request(addr);
        let raw = self
            .exchange(addr, Some(req.as_bytes()), Duration::from_millis(500))
            .await?;
        parse_http(&raw)
    }

    /// A TLS handshake (any certificate accepted and recorded), then `GET /` over it.
    pub async fn https(&self, addr: SocketAddr) -> Result<(TlsSeen, HttpSeen), ProbeError> {
        self.bounded(async {
            let tcp = self.connect(addr).await?;
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let name = ServerName::IpAddress(addr.ip().into());
            let mut tls = tokio::time::timeout(self.limits.read, connector.connect(name, tcp))
                .await
                .map_err(|_| ProbeError::Timeout)?
                .map_err(|e| ProbeError::Protocol(format!("TLS handshake failed: {e}")))?;
            let chain = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
            let seen = TlsSeen {
                leaf_sha256: chain
                    .first()
                    .map(|c| hex(&Sha256::digest(c.as_ref())))
                    .unwrap_or_default(),
                chain_len: chain.len(),
            };
            self.send(&mut tls, http_request(addr).as_bytes()).await?;
            let raw = self.read_some(&mut tls, Duration::from_millis(500)).await?;
            Ok((seen, parse_http(&raw)?))
        })
        .await
    }

    /// The SSH identification line and the host key (its SHA-256 fingerprint, OpenSSH's
    /// `SHA256:…` form), from a key exchange that stops once the key is seen.
    pub async fn ssh_host_key(&self, addr: SocketAddr) -> Result<String, ProbeError> {
        self.bounded(async {
            let tcp = self.connect(addr).await?;
            let seen = Arc::new(Mutex::new(None));
            let handler = KeyGrab(seen.clone());
            let config = Arc::new(russh::client::Config {
                inactivity_timeout: Some(self.limits.read),
                ..Default::default()
            });
            // The handler refuses the key once recorded: the exchange ends there.
            let _ = russh::client::connect_stream(config, tcp, handler).await;
            let key = seen.lock().ok().and_then(|g| g.clone());
            key.ok_or_else(|| ProbeError::Protocol("no host key in the key exchange".into()))
        })
        .await
    }
}

fn http_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        addr.ip()
    )
}

/// Parses an HTTP/1.x response head (and hashes the body as received).
pub fn parse_http(raw: &[u8]) -> Result<HttpSeen, ProbeError> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(ProbeError::Protocol(format!(
            "no HTTP response head in {} bytes",
            raw.len()
        )));
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_owned();
    if !status_line.starts_with("HTTP/") {
        return Err(ProbeError::Protocol(format!(
            "not an HTTP status line: {:?}",
            cut(&status_line, 80)
        )));
    }
    let headers = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_owned(), v.trim().to_owned()))
        })
        .take(100)
        .collect();
    let body = &raw[end + 4..];
    Ok(HttpSeen {
        status_line,
        headers,
        body_sha256: hex(&Sha256::digest(body)),
        body_len: body.len(),
    })
}

/// `s` cut to `n` characters.
pub fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The first line of a greeting, printable (control bytes escaped), at most 200 characters.
pub fn first_line(raw: &[u8]) -> String {
    let line = raw.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    printable(line, 200)
}

/// Bytes as text, control bytes and non-UTF-8 escaped, at most `n` characters.
pub fn printable(raw: &[u8], n: usize) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .take(n)
        .collect()
}

struct KeyGrab(Arc<Mutex<Option<String>>>);

impl russh::client::Handler for KeyGrab {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fp = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(c) => format!(
                "certificate of {}",
                c.public_key().fingerprint(russh::keys::HashAlg::Sha256)
            ),
        };
        if let Ok(mut g) = self.0.lock() {
            *g = Some(fp);
        }
        Ok(false)
    }
}

/// Accepts any certificate: the prober records what it is shown, it trusts nothing.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Time since `t`, in milliseconds.
pub fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_head_is_parsed_in_order_and_garbage_is_refused() {
        let seen = parse_http(
            b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.52 (Ubuntu)\r\nETag: \"x\"\r\n\r\nbody",
        )
        .expect("parses");
        assert_eq!(seen.status_line, "HTTP/1.1 200 OK");
        assert_eq!(seen.header("server"), Some("Apache/2.4.52 (Ubuntu)"));
        assert_eq!(seen.headers[1].0, "ETag");
        assert_eq!(seen.body_len, 4);
        assert!(parse_http(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_http(b"HTTP/1.1 200 OK\r\nServer: x").is_err());
    }

    #[test]
    fn greeting_lines_are_printable_and_bounded() {
        assert_eq!(
            first_line(b"SSH-2.0-OpenSSH_8.9\r\nrest"),
            "SSH-2.0-OpenSSH_8.9"
        );
        assert_eq!(
            first_line(b"\xff\xfb\x01login: "),
            "\u{fffd}\u{fffd}\\u{1}login: "
        );
        assert_eq!(first_line(&[b'a'; 1000]).len(), 200);
    }
}
