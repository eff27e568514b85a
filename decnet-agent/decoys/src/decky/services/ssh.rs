//! SSH (russh server): the persona's identification string and the decky's own host key; every
//! password and public-key attempt is logged (`auth_attempt`; a public key as its SHA-256
//! fingerprint, `secret_kind="public_key"`, with the key itself in `key`), and rejected unless it
//! is an accepted login. An accepted login gets a fake shell (interactive with or without a pty,
//! or `ssh host command`) that records every command line (`command`) and answers a few.
//! Port forwarding requests are logged (`tunnel_request`) and refused.
use std::{
    borrow::Cow,
    collections::HashMap,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use russh::{
    ChannelId, ChannelOpenFailure, MethodKind, MethodSet, SshId,
    keys::HashAlg,
    server::{self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

use super::{Conn, Ctx, IDLE, Login, MAX_LINE, ServiceKind, ServiceSpec, accept_loop};
use crate::decky::{Shutdown, persona, shell::Shell, state};

/// The server configuration: banner, host key, methods, timeouts.
pub fn config(ctx: &Ctx, spec: &ServiceSpec) -> anyhow::Result<Arc<server::Config>> {
    let key = state::ssh_host_key(&ctx.state_dir)?;
    let banner = banner(spec.banner.as_deref(), persona::ssh_banner(&ctx.spec));
    Ok(Arc::new(server::Config {
        server_id: SshId::Standard(Cow::Owned(banner)),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        auth_rejection_time: std::time::Duration::from_millis(800),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        keys: vec![key],
        // OpenSSH's MaxAuthTries.
        max_auth_attempts: 6,
        inactivity_timeout: Some(IDLE),
        nodelay: true,
        ..Default::default()
    }))
}

/// A valid identification string: `SSH-2.0-…`, printable ASCII, at most 200 chars.
fn banner(configured: Option<&str>, default: &str) -> String {
    let b = configured.unwrap_or(default).trim();
    let b: String = b
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect();
    if b.starts_with("SSH-2.0-") {
        b
    } else {
        format!("SSH-2.0-{b}")
    }
}

pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    spec: ServiceSpec,
    config: Arc<server::Config>,
    shutdown: Shutdown,
) {
    let accept = Arc::new(spec.accept);
    accept_loop(
        listener,
        ctx,
        ServiceKind::Ssh,
        shutdown,
        move |stream, conn| {
            let config = config.clone();
            let accept = accept.clone();
            async move { session(stream, conn, config, accept).await }
        },
    )
    .await;
}

async fn session(
    stream: TcpStream,
    conn: Conn,
    config: Arc<server::Config>,
    accept: Arc<Vec<Login>>,
) {
    let client_id = Arc::new(OnceLock::new());
    let tap = Tap {
        inner: stream,
        seen: Vec::new(),
        out: client_id.clone(),
    };
    let handler = Handler {
        conn,
        accept,
        client_id,
        user: None,
        channels: HashMap::new(),
    };
    match server::run_stream(config, tap, handler).await {
        Ok(running) => {
            let _ = running.await;
        }
        Err(e) => tracing::debug!("ssh handshake: {e}"),
    }
}

/// The client's identification line, read as it passes (for the events).
struct Tap {
    inner: TcpStream,
    seen: Vec<u8>,
    out: Arc<OnceLock<String>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.out.get().is_none() {
            let new = &buf.filled()[before..];
            let this = &mut *self;
            for &b in new {
                if b == b'\n' || this.seen.len() >= 255 {
                    let line = String::from_utf8_lossy(&this.seen).trim_end().to_owned();
                    // Lines before the identification are allowed (RFC 4253 §4.2).
                    if line.starts_with("SSH-") || this.seen.len() >= 255 {
                        let _ = this.out.set(line);
                        break;
                    }
                    this.seen.clear();
                } else {
                    this.seen.push(b);
                }
            }
        }
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Channel {
    pty: bool,
    line: Vec<u8>,
    /// Inside an escape sequence (arrow keys…): skipped.
    escape: bool,
    /// The last byte was a CR.
    cr: bool,
    shell: Option<Shell>,
}

struct Handler {
    conn: Conn,
    accept: Arc<Vec<Login>>,
    client_id: Arc<OnceLock<String>>,
    user: Option<String>,
    channels: HashMap<ChannelId, Channel>,
}

impl Handler {
    fn client(&self) -> &str {
        self.client_id.get().map_or("", String::as_str)
    }

    fn command(&self, cmd: &str, mode: &str) {
        let user = self.user.as_deref().unwrap_or("");
        self.conn
            .event("command", &[("cmd", cmd), ("user", user), ("mode", mode)]);
    }

    fn shell(&self) -> Shell {
        Shell::new(
            self.conn.ctx.spec.clone(),
            self.user.as_deref().unwrap_or("root"),
        )
    }

    /// Input on an interactive shell channel.
    fn input(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(mut ch) = self.channels.remove(&id) else {
            return Ok(());
        };
        let mut echo = Vec::new();
        let mut exit = false;
        for &b in data {
            if ch.escape {
                if b.is_ascii_alphabetic() || b == b'~' {
                    ch.escape = false;
                }
                continue;
            }
            // CR LF (or CR NUL) is one line end.
            let after_cr = std::mem::replace(&mut ch.cr, b == b'\r');
            if after_cr && (b == b'\n' || b == 0) {
                continue;
            }
            match b {
                0x1b => ch.escape = true,
                b'\r' | b'\n' => {
                    if ch.pty {
                        echo.extend_from_slice(b"\r\n");
                    }
                    let line = String::from_utf8_lossy(&ch.line).into_owned();
                    ch.line.clear();
                    let trimmed = line.trim();
                    if !trimmed.is_empty() {
                        self.command(trimmed, "shell");
                    }
                    let shell = ch.shell.get_or_insert_with(|| self.shell());
                    let out = shell.run(trimmed);
                    echo.extend_from_slice(text(&out.output, ch.pty).as_bytes());
                    if out.exit {
                        exit = true;
                        break;
                    }
                    if ch.pty {
                        echo.extend_from_slice(shell.prompt().as_bytes());
                    }
                }
                0x7f | 0x08 => {
                    let erased = ch.line.pop().is_some();
                    if erased && ch.pty {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x03 => {
                    ch.line.clear();
                    if ch.pty {
                        echo.extend_from_slice(b"^C\r\n");
                        let shell = ch.shell.get_or_insert_with(|| self.shell());
                        echo.extend_from_slice(shell.prompt().as_bytes());
                    }
                }
                0x04 if ch.line.is_empty() => {
                    echo.extend_from_slice(text("logout\n", ch.pty).as_bytes());
                    exit = true;
                    break;
                }
                b if b >= 0x20 || b == b'\t' => {
                    let room = ch.line.len() < MAX_LINE;
                    if room {
                        ch.line.push(b);
                        if ch.pty {
                            echo.push(b);
                        }
                    }
                }
                _ => {}
            }
        }
        if !echo.is_empty() {
            session.data(id, echo)?;
        }
        if exit {
            session.exit_status_request(id, 0)?;
            session.eof(id)?;
            session.close(id)?;
        } else {
            self.channels.insert(id, ch);
        }
        Ok(())
    }
}

/// `s` for the channel: CR LF line ends on a pty.
fn text(s: &str, pty: bool) -> Cow<'_, str> {
    if pty {
        Cow::Owned(s.replace('\n', "\r\n"))
    } else {
        Cow::Borrowed(s)
    }
}

impl server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ok = Conn::accepted(&self.accept, user, password.as_bytes());
        let client = self.client().to_owned();
        self.conn.auth(
            user,
            password.as_bytes(),
            "password",
            &[
                ("client_version", &client),
                ("result", if ok { "accepted" } else { "rejected" }),
            ],
        );
        if ok {
            self.user = Some(user.to_owned());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let key = offer.public_key;
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        let openssh = key
            .to_openssh()
            .map(|k| {
                // Without the comment: the client does not send it anyway.
                k.split(' ').take(2).collect::<Vec<_>>().join(" ")
            })
            .unwrap_or_default();
        let algorithm = offer.algorithm.to_string();
        let client = self.client().to_owned();
        self.conn.auth(
            user,
            fp.as_bytes(),
            "public_key",
            &[
                ("key_type", &algorithm),
                ("key", &openssh),
                ("client_version", &client),
                ("result", "rejected"),
            ],
        );
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let user = self.user.clone().unwrap_or_default();
        let client = String::from_utf8_lossy(session.remote_sshid()).into_owned();
        self.conn
            .event("login", &[("user", &user), ("client_version", &client)]);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: russh::Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= 8 {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(
            channel.id(),
            Channel {
                pty: false,
                line: Vec::new(),
                escape: false,
                cr: false,
                shell: None,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: russh::Channel<Msg>,
        host: &str,
        port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let port = port.to_string();
        self.conn.event(
            "tunnel_request",
            &[
                ("dst_host", host),
                ("dst_port", &port),
                ("kind", "direct-tcpip"),
            ],
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let p = port.to_string();
        self.conn.event(
            "tunnel_request",
            &[
                ("dst_host", address),
                ("dst_port", &p),
                ("kind", "tcpip-forward"),
            ],
        );
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.pty = true;
        }
        session.channel_success(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let shell = self.shell();
        let Some(ch) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        if ch.pty {
            let mut hello = text(&shell.motd(), true).into_owned();
            hello.push_str(&shell.prompt());
            session.data(channel, hello.into_bytes())?;
        }
        ch.shell = Some(shell);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(super::limit(data, MAX_LINE)).into_owned();
        self.command(&cmd, "exec");
        session.channel_success(channel)?;
        let pty = self.channels.get(&channel).is_some_and(|c| c.pty);
        let out = self.shell().run(&cmd);
        if !out.output.is_empty() {
            session.data(channel, text(&out.output, pty).into_owned().into_bytes())?;
        }
        session.exit_status_request(channel, out.status)?;
        session.eof(channel)?;
        session.close(channel)?;
        self.channels.remove(&channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.command(&format!("subsystem {name}"), "subsystem");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.input(channel, data, session)
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Input ended (a piped script): run what is left, then close like a shell would.
        if let Some(ch) = self.channels.get(&channel)
            && !ch.line.is_empty()
        {
            self.input(channel, b"\n", session)?;
        }
        if self.channels.remove(&channel).is_some() {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners_are_valid_identification_strings() {
        assert_eq!(
            banner(None, "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"),
            "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"
        );
        assert_eq!(banner(Some("dropbear\r\n"), "x"), "SSH-2.0-dropbear");
        assert_eq!(banner(Some("OpenSSH\u{0}_7"), "x"), "SSH-2.0-OpenSSH_7");
        assert!(banner(Some(&"a".repeat(1000)), "x").len() <= 208);
    }
}
