//! Telnet: option negotiation tolerated (IAC commands and subnegotiations are skipped), the
//! persona's banner and `login:`/`Password:` prompts; every attempt is logged (`auth_attempt`),
//! three per connection like `login(1)`. An accepted login gets the fake shell, every line
//! logged as `command`. A line at the login prompt that cannot be a login name — another
//! protocol's request (`GET / HTTP/1.0`, `OPTIONS sip:nm SIP/2.0`, nmap's binary probes) — is
//! logged as a `probe` event with the line, never as a credential ([`protocol_garbage`]); at
//! most [`MAX_PROBE_LINES`] of them per connection.
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{Conn, Ctx, IDLE, Login, MAX_LINE, ServiceKind, ServiceSpec, accept_loop, lossy};
use crate::{
    decky::{
        Shutdown, persona,
        shell::{Shell, crlf},
    },
    fleet::OsFamily,
};

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;
/// Sent at connect: WILL ECHO, WILL SUPPRESS-GO-AHEAD, DO NAWS.
const NEGOTIATION: [u8; 9] = [IAC, WILL, 1, IAC, WILL, 3, IAC, 253, 31];
/// Longest subnegotiation skipped (longer ones end it anyway).
const MAX_SB: usize = 512;
/// Probe lines logged per connection before it is closed.
pub const MAX_PROBE_LINES: usize = 8;
/// Longest plausible login name (bytes).
const MAX_LOGIN_NAME: usize = 64;

/// Whether a line typed at the login prompt is another protocol's request or binary noise
/// rather than a login name: whitespace inside (no login name has any: `GET / HTTP/1.0`), a
/// control or non-UTF-8 byte, longer than any login name, or a bare protocol verb (`HELP`).
pub fn protocol_garbage(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return true;
    };
    let t = text.trim();
    t.len() > MAX_LOGIN_NAME
        || t.chars().any(|c| c.is_whitespace() || c.is_control())
        || t.contains("://")
        || ["HELP", "QUIT", "EHLO", "HELO", "STAT", "STATUS"].contains(&t)
}

/// What one input byte means once the telnet layer is peeled off.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Data(u8),
    Eol,
    Erase,
    Interrupt,
    Nothing,
}

/// The telnet input state machine.
#[derive(Default)]
pub struct Decoder {
    state: State,
    sb_len: usize,
    cr: bool,
}

#[derive(Default, PartialEq, Eq)]
enum State {
    #[default]
    Data,
    Iac,
    Option,
    Sub,
    SubIac,
}

impl Decoder {
    pub fn feed(&mut self, b: u8) -> Input {
        match self.state {
            State::Data => {
                let after_cr = std::mem::replace(&mut self.cr, b == b'\r');
                match b {
                    IAC => {
                        self.state = State::Iac;
                        Input::Nothing
                    }
                    b'\n' | 0 if after_cr => Input::Nothing,
                    b'\r' | b'\n' => Input::Eol,
                    0x7f | 0x08 => Input::Erase,
                    0x03 => Input::Interrupt,
                    b => Input::Data(b),
                }
            }
            State::Iac => {
                self.state = State::Data;
                match b {
                    IAC => Input::Data(IAC),
                    WILL..=DONT => {
                        self.state = State::Option;
                        Input::Nothing
                    }
                    SB => {
                        self.state = State::Sub;
                        self.sb_len = 0;
                        Input::Nothing
                    }
                    // Interrupt Process.
                    244 => Input::Interrupt,
                    // Erase Character.
                    247 => Input::Erase,
                    _ => Input::Nothing,
                }
            }
            State::Option => {
                self.state = State::Data;
                Input::Nothing
            }
            State::Sub | State::SubIac => {
                self.sb_len += 1;
                if self.state == State::SubIac {
                    self.state = if b == SE { State::Data } else { State::Sub };
                } else if b == IAC {
                    self.state = State::SubIac;
                } else if self.sb_len > MAX_SB {
                    self.state = State::Data;
                }
                Input::Nothing
            }
        }
    }
}

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, spec: ServiceSpec, shutdown: Shutdown) {
    let banner: Arc<str> = Arc::from(match &spec.banner {
        Some(b) => format!("{}\r\n", b.replace('\n', "\r\n")),
        None => persona::telnet_banner(&ctx.spec),
    });
    let accept = Arc::new(spec.accept);
    accept_loop(
        listener,
        ctx,
        ServiceKind::Telnet,
        shutdown,
        move |stream, conn| {
            let banner = banner.clone();
            let accept = accept.clone();
            async move { session(stream, conn, &banner, &accept).await }
        },
    )
    .await;
}

struct Term {
    s: TcpStream,
    dec: Decoder,
    buf: Vec<u8>,
    pos: usize,
}

impl Term {
    async fn write(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).await.is_ok()
    }

    async fn next_byte(&mut self) -> Option<u8> {
        if self.pos >= self.buf.len() {
            self.buf.resize(1024, 0);
            let n = self.s.read(&mut self.buf).await.ok()?;
            self.buf.truncate(n);
            self.pos = 0;
            if n == 0 {
                return None;
            }
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Some(b)
    }

    /// One line, echoed as typed when `echo`. `None` at EOF or idle timeout.
    async fn line(&mut self, echo: bool) -> Option<Vec<u8>> {
        tokio::time::timeout(IDLE, self.line_inner(echo))
            .await
            .ok()
            .flatten()
    }

    async fn line_inner(&mut self, echo: bool) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            // Echo what was typed before waiting for more.
            if self.pos >= self.buf.len() && !out.is_empty() {
                if !self.write(&out).await {
                    return None;
                }
                out.clear();
            }
            let b = self.next_byte().await?;
            match self.dec.feed(b) {
                Input::Data(c) => {
                    if line.len() < MAX_LINE && c != 0 {
                        line.push(c);
                        if echo {
                            out.push(c);
                        }
                    }
                }
                Input::Erase => {
                    if line.pop().is_some() && echo {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                Input::Interrupt => {
                    line.clear();
                    out.extend_from_slice(b"^C");
                }
                Input::Eol => {
                    out.extend_from_slice(b"\r\n");
                    let _ = self.write(&out).await;
                    return Some(line);
                }
                Input::Nothing => {}
            }
        }
    }
}

async fn session(stream: TcpStream, conn: Conn, banner: &str, accept: &[Login]) {
    let spec = conn.ctx.spec.clone();
    let cisco = matches!(spec.os, OsFamily::Cisco);
    let mut t = Term {
        s: stream,
        dec: Decoder::default(),
        buf: Vec::new(),
        pos: 0,
    };
    let mut hello = NEGOTIATION.to_vec();
    hello.extend_from_slice(banner.as_bytes());
    if !t.write(&hello).await {
        return;
    }
    let prompt = persona::telnet_login_prompt(&spec);
    let mut probes = 0usize;
    let mut tries = 0;
    while tries < 3 {
        if !t.write(prompt.as_bytes()).await {
            return;
        }
        let Some(user) = t.line(true).await else {
            return;
        };
        if protocol_garbage(&user) {
            // Not a login attempt: recorded as what it is, and no password is asked for.
            conn.event("probe", &[("line", &lossy(&user))]);
            probes += 1;
            if probes >= MAX_PROBE_LINES {
                return;
            }
            continue;
        }
        let user = lossy(&user).trim().to_owned();
        if user.is_empty() {
            tries += 1;
            continue;
        }
        tries += 1;
        if !t.write(b"Password: ").await {
            return;
        }
        let Some(pass) = t.line(false).await else {
            return;
        };
        let ok = Conn::accepted(accept, &user, &pass);
        conn.auth(
            &user,
            &pass,
            "password",
            &[("result", if ok { "accepted" } else { "rejected" })],
        );
        if ok {
            shell(&mut t, &conn, &user).await;
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let msg: &[u8] = if cisco {
            b"% Authentication failed\r\n\r\n"
        } else {
            b"\r\nLogin incorrect\r\n"
        };
        if !t.write(msg).await {
            return;
        }
    }
}

async fn shell(t: &mut Term, conn: &Conn, user: &str) {
    conn.event("login", &[("user", user)]);
    let mut sh = Shell::new(conn.ctx.spec.clone(), user);
    let mut hello = crlf(&sh.motd());
    hello.push_str(&sh.prompt());
    if !t.write(hello.as_bytes()).await {
        return;
    }
    while let Some(line) = t.line(true).await {
        let line = lossy(&line).trim().to_owned();
        if !line.is_empty() {
            conn.event("command", &[("cmd", &line), ("user", user)]);
        }
        let out = sh.run(&line);
        let mut text = crlf(&out.output);
        if out.exit {
            let _ = t.write(text.as_bytes()).await;
            return;
        }
        text.push_str(&sh.prompt());
        if !t.write(text.as_bytes()).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<Input> {
        let mut d = Decoder::default();
        bytes
            .iter()
            .map(|&b| d.feed(b))
            .filter(|i| *i != Input::Nothing)
            .collect()
    }

    #[test]
    fn probe_lines_are_not_login_names() {
        for garbage in [
            &b"OPTIONS sip:nm SIP/2.0"[..],
            b"GET / HTTP/1.0",
            b"OPTIONS / RTSP/1.0",
            b"HELP",
            b"\x16\x03\x01\x00\xa5\x01",
            b"l\x0b\x00\x00\x00\x00",
            b"\xff\xfe\x80",
            b"Via: SIP/2.0/TCP nm;branch=foo",
            &[b'a'; 65],
        ] {
            assert!(protocol_garbage(garbage), "{garbage:?}");
        }
        for name in [
            &b"root"[..],
            b"admin",
            b"support",
            b"user@example.com",
            b"Administrator",
            b"enable",
            b" root ",
        ] {
            assert!(!protocol_garbage(name), "{name:?}");
        }
    }

    #[test]
    fn negotiation_is_skipped() {
        use Input::*;
        assert_eq!(
            decode(&[
                IAC, 253, 1, b'r', IAC, SB, 24, 0, b'x', b't', IAC, SE, b'o', b'\r', 0
            ]),
            vec![Data(b'r'), Data(b'o'), Eol]
        );
        assert_eq!(decode(b"a\r\nb\n"), vec![Data(b'a'), Eol, Data(b'b'), Eol]);
        assert_eq!(
            decode(&[IAC, IAC, 0x7f, IAC, 244]),
            vec![Data(255), Erase, Interrupt]
        );
        // An endless subnegotiation ends after MAX_SB bytes.
        let mut long = vec![IAC, SB];
        long.extend(std::iter::repeat_n(b'z', MAX_SB + 1));
        long.push(b'k');
        assert_eq!(decode(&long), vec![Data(b'k')]);
    }
}
