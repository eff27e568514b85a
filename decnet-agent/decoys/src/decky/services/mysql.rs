//! MySQL: the real protocol v10 handshake (the persona's server version, a fresh 20-byte
//! `mysql_native_password` salt per connection), the client's HandshakeResponse41 parsed
//! (user, auth response, database, auth plugin, connection attributes) and logged as
//! `auth_attempt` with `secret_kind="mysql_native_password"`: the secret is the client's
//! scramble, `SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))`, with the salt in `salt_hex`, enough to
//! test candidate passwords offline. The answer is always error 1045 (Access denied).
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{Conn, Ctx, ServiceKind, ServiceSpec, accept_loop, lossy};
use crate::decky::{Shutdown, persona, state};

/// Largest client packet read (a handshake response is a few hundred bytes).
pub const MAX_PACKET: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(20);

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const CLIENT_CONNECT_ATTRS: u32 = 0x10_0000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
/// What the server offers: everything a MySQL 8 server does except SSL and compression.
const SERVER_CAPS: u32 = 0x01FF_F7DF;

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, spec: ServiceSpec, shutdown: Shutdown) {
    let version: Arc<str> = Arc::from(
        spec.banner
            .clone()
            .map(|b| b.chars().filter(|c| !c.is_control()).take(64).collect())
            .unwrap_or_else(|| persona::mysql_version(&ctx.spec).to_owned()),
    );
    accept_loop(
        listener,
        ctx,
        ServiceKind::Mysql,
        shutdown,
        move |stream, conn| {
            let version = version.clone();
            async move { session(stream, conn, &version).await }
        },
    )
    .await;
}

/// The server greeting (payload).
pub fn handshake(version: &str, conn_id: u32, salt: &[u8; 20]) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    p.push(10);
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&conn_id.to_le_bytes());
    p.extend_from_slice(&salt[..8]);
    p.push(0);
    p.extend_from_slice(&(SERVER_CAPS as u16).to_le_bytes());
    // utf8mb4_0900_ai_ci (MySQL 8) or utf8mb4_general_ci.
    p.push(if version.starts_with('8') { 255 } else { 45 });
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((SERVER_CAPS >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&salt[8..]);
    p.push(0);
    p.extend_from_slice(b"mysql_native_password\0");
    p
}

/// A parsed HandshakeResponse41.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Login41 {
    pub caps: u32,
    pub user: Vec<u8>,
    pub auth: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub plugin: Option<Vec<u8>>,
    pub attrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a client packet is not a usable login.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The client wants TLS first (an SSLRequest).
    SslRequest,
    /// Pre-4.1 client.
    Old,
    Malformed,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn nul_str(&mut self) -> Option<&'a [u8]> {
        let i = self.0.iter().position(|&b| b == 0)?;
        let s = self.take(i)?;
        self.take(1)?;
        Some(s)
    }
    fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xfa => Some(u64::from(n)),
            0xfc => self
                .take(2)
                .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]]))),
            0xfd => self
                .take(3)
                .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))),
            0xfe => self
                .take(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            _ => None,
        }
    }
    fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.take(n)
    }
}

/// Parses the client's login packet (payload).
pub fn parse_login(p: &[u8]) -> Result<Login41, LoginError> {
    let mut c = Cursor(p);
    let caps_b = c.take(4).ok_or(LoginError::Malformed)?;
    let caps = u32::from_le_bytes([caps_b[0], caps_b[1], caps_b[2], caps_b[3]]);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return Err(LoginError::Old);
    }
    c.take(4 + 1 + 23).ok_or(LoginError::Malformed)?;
    if c.0.is_empty() && caps & CLIENT_SSL != 0 {
        return Err(LoginError::SslRequest);
    }
    let user = c.nul_str().ok_or(LoginError::Malformed)?.to_vec();
    let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        c.lenenc_bytes()
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        c.u8().and_then(|n| c.take(usize::from(n)))
    } else {
        c.nul_str()
    }
    .ok_or(LoginError::Malformed)?
    .to_vec();
    let mut login = Login41 {
        caps,
        user,
        auth,
        ..Login41::default()
    };
    // The rest is optional in practice: stop quietly where a client stops.
    if caps & CLIENT_CONNECT_WITH_DB != 0 {
        login.database = c.nul_str().map(<[u8]>::to_vec);
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        login.plugin = c.nul_str().map(<[u8]>::to_vec);
    }
    if caps & CLIENT_CONNECT_ATTRS != 0
        && let Some(all) = c.lenenc_bytes()
    {
        let mut a = Cursor(all);
        while !a.0.is_empty() && login.attrs.len() < 32 {
            let (Some(k), Some(v)) = (a.lenenc_bytes(), a.lenenc_bytes()) else {
                break;
            };
            login.attrs.push((k.to_vec(), v.to_vec()));
        }
    }
    Ok(login)
}

/// An ERR packet (payload).
pub fn error(code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    p
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(0xff_ffff) as u32;
    let mut out = len.to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(&payload[..len as usize]);
    out
}

async fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    tokio::time::timeout(READ_TIMEOUT, s.read_exact(&mut h))
        .await
        .ok()?
        .ok()?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    if len > MAX_PACKET {
        return None;
    }
    let mut p = vec![0u8; len];
    tokio::time::timeout(READ_TIMEOUT, s.read_exact(&mut p))
        .await
        .ok()?
        .ok()?;
    Some((h[3], p))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn session(mut s: TcpStream, conn: Conn, version: &str) {
    let Ok(rand) = state::random_bytes::<24>() else {
        return;
    };
    // Salt bytes are printable and never NUL, as MySQL's are.
    let mut salt = [0u8; 20];
    for (d, r) in salt.iter_mut().zip(rand.iter()) {
        *d = 0x21 + (r % 0x5e);
    }
    let conn_id = u32::from_le_bytes([rand[20], rand[21], rand[22], 0]) % 100_000 + 8;
    if s.write_all(&frame(0, &handshake(version, conn_id, &salt)))
        .await
        .is_err()
    {
        return;
    }
    let Some((seq, packet)) = read_packet(&mut s).await else {
        return;
    };
    let ip = conn.peer.ip().to_canonical().to_string();
    let login = match parse_login(&packet) {
        Ok(l) => l,
        Err(e) => {
            let why = match e {
                LoginError::SslRequest => "ssl_request",
                LoginError::Old => "pre_41_client",
                LoginError::Malformed => "malformed",
            };
            conn.event("bad_handshake", &[("reason", why)]);
            let _ = s
                .write_all(&frame(
                    seq.wrapping_add(1),
                    &error(1043, "08S01", "Bad handshake"),
                ))
                .await;
            return;
        }
    };
    let user = lossy(super::limit(&login.user, 256)).into_owned();
    let database = login
        .database
        .as_deref()
        .map(|d| lossy(d).into_owned())
        .unwrap_or_default();
    let plugin = login
        .plugin
        .as_deref()
        .map(|d| lossy(d).into_owned())
        .unwrap_or_default();
    let attrs: String = login
        .attrs
        .iter()
        .map(|(k, v)| format!("{}={}", lossy(k), lossy(v)))
        .collect::<Vec<_>>()
        .join(" ");
    let kind = if plugin.is_empty() || plugin == "mysql_native_password" {
        "mysql_native_password".to_owned()
    } else {
        plugin
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect()
    };
    let salt_hex = hex(&salt);
    let response_hex = hex(&login.auth);
    let caps = format!("{:08x}", login.caps);
    conn.auth(
        &user,
        &login.auth,
        &kind,
        &[
            ("salt_hex", &salt_hex),
            ("response_hex", &response_hex),
            ("database", &database),
            ("client_plugin", &plugin),
            ("client_caps", &caps),
            ("attrs", &attrs),
            ("result", "rejected"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let msg = format!(
        "Access denied for user '{user}'@'{ip}' (using password: {})",
        if login.auth.is_empty() { "NO" } else { "YES" }
    );
    let _ = s
        .write_all(&frame(seq.wrapping_add(1), &error(1045, "28000", &msg)))
        .await;
    let _ = s.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_packet(caps: u32, user: &[u8], auth: &[u8], db: Option<&[u8]>) -> Vec<u8> {
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&16_777_216u32.to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user);
        p.push(0);
        p.push(auth.len() as u8);
        p.extend_from_slice(auth);
        if let Some(db) = db {
            p.extend_from_slice(db);
            p.push(0);
        }
        p.extend_from_slice(b"mysql_native_password\0");
        // attrs: one pair
        p.extend_from_slice(&[12, 4]);
        p.extend_from_slice(b"_pid");
        p.extend_from_slice(&[6]);
        p.extend_from_slice(b"123456");
        p
    }

    #[test]
    fn handshake_layout() {
        let salt = [b'a'; 20];
        let h = handshake("8.0.36", 42, &salt);
        assert_eq!(h[0], 10);
        assert_eq!(&h[1..7], b"8.0.36");
        assert_eq!(h[7], 0);
        assert_eq!(&h[8..12], &42u32.to_le_bytes());
        assert!(h.ends_with(b"mysql_native_password\0"));
        assert_eq!(
            h.len(),
            1 + 7 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 + 13 + 22
        );
    }

    #[test]
    fn parses_logins_and_survives_garbage() {
        let caps = CLIENT_PROTOCOL_41
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH
            | CLIENT_CONNECT_WITH_DB
            | CLIENT_CONNECT_ATTRS;
        let p = login_packet(caps, b"root", &[7; 20], Some(b"shop"));
        let l = parse_login(&p).unwrap();
        assert_eq!(l.user, b"root");
        assert_eq!(l.auth, vec![7; 20]);
        assert_eq!(l.database.as_deref(), Some(&b"shop"[..]));
        assert_eq!(l.plugin.as_deref(), Some(&b"mysql_native_password"[..]));
        assert_eq!(l.attrs, vec![(b"_pid".to_vec(), b"123456".to_vec())]);
        // Truncated anywhere: an error or a partial login, never a panic.
        for n in 0..p.len() {
            let _ = parse_login(&p[..n]);
        }
        let mut ssl = (CLIENT_PROTOCOL_41 | CLIENT_SSL).to_le_bytes().to_vec();
        ssl.extend_from_slice(&[0; 28]);
        assert_eq!(parse_login(&ssl), Err(LoginError::SslRequest));
        assert_eq!(parse_login(&[0; 40]), Err(LoginError::Old));
        // A lenenc length far beyond the packet.
        let mut big = (CLIENT_PROTOCOL_41 | CLIENT_PLUGIN_AUTH_LENENC)
            .to_le_bytes()
            .to_vec();
        big.extend_from_slice(&[0; 28]);
        big.extend_from_slice(b"u\0\xfe\xff\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(parse_login(&big), Err(LoginError::Malformed));
    }

    #[test]
    fn error_packet() {
        let e = error(1045, "28000", "Access denied");
        assert_eq!(&e[..3], &[0xff, 0x15, 0x04]);
        assert_eq!(&e[3..9], b"#28000");
        assert_eq!(&frame(2, &e)[..4], &[e.len() as u8, 0, 0, 2]);
    }
}
