//! SMTP: the persona's 220 greeting, EHLO advertising `AUTH PLAIN LOGIN`, AUTH PLAIN and AUTH
//! LOGIN captured (`auth_attempt`; 235 for an accepted login, else 535), MAIL/RCPT/DATA with a
//! bounded message (logged as `message`: from, recipients, subject, size, a bounded excerpt),
//! QUIT. Every command line is logged (`command`), except the AUTH payloads.
use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use tokio::{
    io::{AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

use super::{
    Conn, Ctx, Login, MAX_AUTH_PER_CONN, ServiceKind, ServiceSpec, accept_loop, lossy, read_line,
};
use crate::decky::{Shutdown, persona};

/// Largest message accepted by DATA (advertised as SIZE).
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Recipients per message, at most.
const MAX_RCPT: usize = 100;
/// Bytes of the message kept in the `message` event.
const EXCERPT: usize = 2048;

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, spec: ServiceSpec, shutdown: Shutdown) {
    let greeting: Arc<str> = Arc::from(
        spec.banner
            .clone()
            .map(|b| b.chars().filter(|c| !c.is_control()).take(200).collect())
            .unwrap_or_else(|| persona::smtp_greeting(&ctx.spec)),
    );
    let accept = Arc::new(spec.accept);
    accept_loop(
        listener,
        ctx,
        ServiceKind::Smtp,
        shutdown,
        move |stream, conn| {
            let greeting = greeting.clone();
            let accept = accept.clone();
            async move { session(stream, conn, &greeting, &accept).await }
        },
    )
    .await;
}

/// `AUTH PLAIN` payload (`authzid NUL authcid NUL password`, base64) → (user, password).
pub fn decode_plain(b64: &str) -> Option<(String, Vec<u8>)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let mut parts = raw.splitn(3, |&b| b == 0);
    let authz = parts.next()?;
    let authc = parts.next()?;
    let pass = parts.next()?;
    let user = if authc.is_empty() { authz } else { authc };
    Some((lossy(user).into_owned(), pass.to_vec()))
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_else(|_| s.trim().as_bytes().to_vec())
}

/// The address inside `MAIL FROM:<a>` / `RCPT TO:<a>`.
pub fn address(arg: &str) -> String {
    let a = arg.split_once(':').map_or(arg, |(_, r)| r).trim();
    let a = a.split(' ').next().unwrap_or(a);
    a.trim_matches(['<', '>']).chars().take(320).collect()
}

async fn session(stream: TcpStream, conn: Conn, greeting: &str, accept: &[Login]) {
    let mut s = BufReader::new(stream);
    let host = conn.hostname().to_owned();
    macro_rules! reply {
        ($($t:tt)*) => {
            if s.get_mut().write_all(format!($($t)*).as_bytes()).await.is_err() {
                return;
            }
        };
    }
    reply!("220 {greeting}\r\n");
    let mut helo = false;
    let mut authed: Option<String> = None;
    let mut auths = 0u32;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut s).await {
        let l = lossy(&line).into_owned();
        let (verb, arg) = l.split_once(' ').unwrap_or((l.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        if verb.is_empty() {
            continue;
        }
        if verb == "AUTH" {
            let mech = arg.split(' ').next().unwrap_or("").to_ascii_uppercase();
            conn.event("command", &[("cmd", &format!("AUTH {mech}"))]);
        } else {
            conn.event("command", &[("cmd", &l)]);
        }
        match verb.as_str() {
            "EHLO" => {
                helo = true;
                reply!(
                    "250-{host}\r\n250-PIPELINING\r\n250-SIZE {MAX_MESSAGE}\r\n250-VRFY\r\n250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 DSN\r\n"
                );
            }
            "HELO" => {
                helo = true;
                reply!("250 {host}\r\n");
            }
            "AUTH" => {
                if !helo {
                    reply!("503 5.5.1 Error: send HELO/EHLO first\r\n");
                    continue;
                }
                let mut words = arg.split_whitespace();
                let mech = words.next().unwrap_or("").to_ascii_uppercase();
                let initial = words.next().map(str::to_owned);
                let creds = match mech.as_str() {
                    "PLAIN" => {
                        let payload = match initial {
                            Some(p) => p,
                            None => {
                                reply!("334 \r\n");
                                match read_line(&mut s).await {
                                    Some(l) => lossy(&l).into_owned(),
                                    None => return,
                                }
                            }
                        };
                        if payload.trim() == "*" {
                            reply!("501 5.7.0 Authentication aborted\r\n");
                            continue;
                        }
                        decode_plain(&payload)
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(u) => b64(&u),
                            None => {
                                reply!("334 VXNlcm5hbWU6\r\n");
                                match read_line(&mut s).await {
                                    Some(l) => b64(&lossy(&l)),
                                    None => return,
                                }
                            }
                        };
                        reply!("334 UGFzc3dvcmQ6\r\n");
                        let pass = match read_line(&mut s).await {
                            Some(l) => b64(&lossy(&l)),
                            None => return,
                        };
                        Some((lossy(&user).into_owned(), pass))
                    }
                    _ => {
                        reply!(
                            "535 5.7.8 Error: authentication failed: Invalid authentication mechanism\r\n"
                        );
                        continue;
                    }
                };
                let Some((user, pass)) = creds else {
                    reply!(
                        "501 5.5.2 Error: authentication failed: malformed initial response\r\n"
                    );
                    continue;
                };
                auths += 1;
                let ok = Conn::accepted(accept, &user, &pass);
                let m = mech.to_ascii_lowercase();
                conn.auth(
                    &user,
                    &pass,
                    "password",
                    &[
                        ("mechanism", &m),
                        ("result", if ok { "accepted" } else { "rejected" }),
                    ],
                );
                if ok {
                    authed = Some(user);
                    reply!("235 2.7.0 Authentication successful\r\n");
                } else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    reply!("535 5.7.8 Error: authentication failed: authentication failure\r\n");
                    if auths >= MAX_AUTH_PER_CONN {
                        reply!("421 4.7.0 {host} Error: too many errors\r\n");
                        return;
                    }
                }
            }
            "MAIL" => {
                if !helo {
                    reply!("503 5.5.1 Error: send HELO/EHLO first\r\n");
                } else {
                    from = Some(address(arg));
                    rcpts.clear();
                    reply!("250 2.1.0 Ok\r\n");
                }
            }
            "RCPT" => {
                if from.is_none() {
                    reply!("503 5.5.1 Error: need MAIL command\r\n");
                } else if rcpts.len() >= MAX_RCPT {
                    reply!("452 4.5.3 Error: too many recipients\r\n");
                } else if authed.is_none() && !address(arg).ends_with(&host) {
                    // Not an open relay: believable, and no spam goes anywhere anyway.
                    rcpts.push(address(arg));
                    reply!("454 4.7.1 <{}>: Relay access denied\r\n", address(arg));
                } else {
                    rcpts.push(address(arg));
                    reply!("250 2.1.5 Ok\r\n");
                }
            }
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    reply!("554 5.5.1 Error: no valid recipients\r\n");
                    continue;
                }
                reply!("354 End data with <CR><LF>.<CR><LF>\r\n");
                let mut size = 0usize;
                let mut excerpt = Vec::new();
                let mut subject = String::new();
                let mut too_big = false;
                loop {
                    let Some(l) = read_line(&mut s).await else {
                        return;
                    };
                    if l == b"." {
                        break;
                    }
                    size += l.len() + 2;
                    if size > MAX_MESSAGE {
                        too_big = true;
                    }
                    if subject.is_empty() && l.len() > 8 && l[..8].eq_ignore_ascii_case(b"subject:")
                    {
                        subject = lossy(&l[8..]).trim().chars().take(256).collect();
                    }
                    if excerpt.len() < EXCERPT {
                        excerpt.extend_from_slice(&l);
                        excerpt.push(b'\n');
                    }
                }
                let size_s = size.to_string();
                let to = rcpts.join(",");
                let excerpt = lossy(super::limit(&excerpt, EXCERPT)).into_owned();
                conn.event(
                    "message",
                    &[
                        ("mail_from", from.as_deref().unwrap_or("")),
                        ("rcpt_to", &to),
                        ("subject", &subject),
                        ("size", &size_s),
                        ("data", &excerpt),
                    ],
                );
                from = None;
                rcpts.clear();
                if too_big {
                    reply!("552 5.3.4 Error: message file too big\r\n");
                } else {
                    let id: String = super::super::state::random_bytes::<5>()
                        .unwrap_or_default()
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect();
                    reply!("250 2.0.0 Ok: queued as {id}\r\n");
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                reply!("250 2.0.0 Ok\r\n");
            }
            "NOOP" => reply!("250 2.0.0 Ok\r\n"),
            "VRFY" => reply!("252 2.0.0 {}\r\n", address(arg)),
            "STARTTLS" => reply!("454 4.7.0 TLS not available due to local problem\r\n"),
            "QUIT" => {
                reply!("221 2.0.0 Bye\r\n");
                return;
            }
            _ => reply!("502 5.5.2 Error: command not recognized\r\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_payloads() {
        // "\0alice\0wonder"
        assert_eq!(
            decode_plain("AGFsaWNlAHdvbmRlcg=="),
            Some(("alice".into(), b"wonder".to_vec()))
        );
        // authzid only, password with a NUL inside.
        assert_eq!(
            decode_plain("Ym9iAABwAHc="),
            Some(("bob".into(), b"p\0w".to_vec()))
        );
        assert_eq!(decode_plain("!!!"), None);
        assert_eq!(decode_plain("YWJj"), None);
        assert_eq!(address("FROM:<a@b.c> SIZE=100"), "a@b.c");
        assert_eq!(address("TO: <root@web01>"), "root@web01");
    }
}
