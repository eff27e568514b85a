//! FTP: the persona's greeting, USER/PASS captured (`auth_attempt`; 230 for an accepted login,
//! else 530), every other command logged (`command`). After a login: PWD/CWD/TYPE, passive mode
//! (PASV/EPSV, a one-shot data listener on the decky's address) with a small fake listing;
//! downloads and uploads are refused. Active mode (PORT/EPRT) is refused: the decky never
//! connects out.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

use super::{
    Conn, Ctx, Login, MAX_AUTH_PER_CONN, ServiceKind, ServiceSpec, accept_loop, lossy, read_line,
};
use crate::{
    decky::{Shutdown, persona},
    fleet::OsFamily,
};

const DATA_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, spec: ServiceSpec, shutdown: Shutdown) {
    let greeting = spec
        .banner
        .clone()
        .map(|b| b.chars().filter(|c| !c.is_control()).take(200).collect())
        .unwrap_or_else(|| persona::ftp_greeting(&ctx.spec));
    let greeting: Arc<str> = Arc::from(greeting);
    let accept = Arc::new(spec.accept);
    accept_loop(
        listener,
        ctx,
        ServiceKind::Ftp,
        shutdown,
        move |stream, conn| {
            let greeting = greeting.clone();
            let accept = accept.clone();
            async move { session(stream, conn, &greeting, &accept).await }
        },
    )
    .await;
}

/// What one command line asks.
pub fn parse_command(line: &[u8]) -> (String, String) {
    let l = lossy(line);
    let l = l.trim_matches(|c: char| c == '\r' || c == '\n' || c == '\0');
    let (verb, arg) = l.split_once(' ').unwrap_or((l, ""));
    (
        verb.chars()
            .take(16)
            .collect::<String>()
            .to_ascii_uppercase(),
        arg.to_owned(),
    )
}

async fn session(stream: TcpStream, conn: Conn, greeting: &str, accept: &[Login]) {
    let mut s = BufReader::new(stream);
    let windows = matches!(
        conn.ctx.spec.os,
        OsFamily::Windows | OsFamily::WindowsServer
    );
    macro_rules! reply {
        ($($t:tt)*) => {
            if s.get_mut().write_all(format!($($t)*).as_bytes()).await.is_err() {
                return;
            }
        };
    }
    reply!("220 {greeting}\r\n");
    let mut user: Option<String> = None;
    let mut logged_in: Option<String> = None;
    let mut auths = 0u32;
    let mut pasv: Option<TcpListener> = None;
    let mut cwd = String::from("/");
    while let Some(line) = read_line(&mut s).await {
        let (verb, arg) = parse_command(&line);
        if verb.is_empty() {
            continue;
        }
        if verb != "PASS" {
            let cmd = if arg.is_empty() {
                verb.clone()
            } else {
                format!("{verb} {arg}")
            };
            conn.event(
                "command",
                &[("cmd", &cmd), ("user", logged_in.as_deref().unwrap_or(""))],
            );
        }
        match verb.as_str() {
            "USER" => {
                user = Some(arg.clone());
                reply!("331 Please specify the password.\r\n");
            }
            "PASS" => {
                let Some(u) = user.take() else {
                    reply!("503 Login with USER first.\r\n");
                    continue;
                };
                auths += 1;
                let ok = Conn::accepted(accept, &u, arg.as_bytes());
                conn.auth(
                    &u,
                    arg.as_bytes(),
                    "password",
                    &[("result", if ok { "accepted" } else { "rejected" })],
                );
                if ok {
                    logged_in = Some(u);
                    reply!("230 Login successful.\r\n");
                } else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    reply!("530 Login incorrect.\r\n");
                    if auths >= MAX_AUTH_PER_CONN {
                        return;
                    }
                }
            }
            "QUIT" => {
                reply!("221 Goodbye.\r\n");
                return;
            }
            "SYST" => reply!("{}\r\n", persona::ftp_syst(&conn.ctx.spec)),
            "FEAT" => reply!(
                "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n"
            ),
            "OPTS" => reply!("200 Always in UTF8 mode.\r\n"),
            "NOOP" => reply!("200 NOOP ok.\r\n"),
            "AUTH" | "PBSZ" | "PROT" => reply!("530 Please login with USER and PASS.\r\n"),
            _ if logged_in.is_none() => reply!("530 Please login with USER and PASS.\r\n"),
            "PWD" | "XPWD" => reply!("257 \"{cwd}\" is the current directory\r\n"),
            "CWD" | "XCWD" => {
                cwd = if arg.starts_with('/') {
                    arg.chars().take(256).collect()
                } else {
                    format!("{}/{}", cwd.trim_end_matches('/'), arg)
                        .chars()
                        .take(256)
                        .collect()
                };
                reply!("250 Directory successfully changed.\r\n");
            }
            "CDUP" => {
                cwd = "/".into();
                reply!("250 Directory successfully changed.\r\n");
            }
            "TYPE" => {
                if arg.eq_ignore_ascii_case("I") {
                    reply!("200 Switching to Binary mode.\r\n");
                } else {
                    reply!("200 Switching to ASCII mode.\r\n");
                }
            }
            "PASV" | "EPSV" => {
                let ip = conn.local.ip();
                match TcpListener::bind(SocketAddr::new(ip, 0)).await {
                    Ok(l) => {
                        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                        pasv = Some(l);
                        if verb == "EPSV" {
                            reply!("229 Entering Extended Passive Mode (|||{port}|)\r\n");
                        } else {
                            let o = match ip {
                                std::net::IpAddr::V4(v4) => v4.octets(),
                                std::net::IpAddr::V6(_) => [127, 0, 0, 1],
                            };
                            reply!(
                                "227 Entering Passive Mode ({},{},{},{},{},{}).\r\n",
                                o[0],
                                o[1],
                                o[2],
                                o[3],
                                port >> 8,
                                port & 0xff
                            );
                        }
                    }
                    Err(_) => reply!("425 Can't open data connection.\r\n"),
                }
            }
            "PORT" | "EPRT" => reply!("500 Illegal PORT command.\r\n"),
            "LIST" | "NLST" | "MLSD" => {
                let Some(l) = pasv.take() else {
                    reply!("425 Use PORT or PASV first.\r\n");
                    continue;
                };
                reply!("150 Here comes the directory listing.\r\n");
                let listing = if verb == "NLST" {
                    "backup.tar.gz\r\nconfig.php.bak\r\nusers.csv\r\n".to_owned()
                } else if windows {
                    "11-24-26  09:12AM             10485760 backup.zip\r\n03-02-26  02:40PM                 2214 web.config.bak\r\n".to_owned()
                } else {
                    "-rw-r--r--    1 1000     1000     10485760 Nov 24 09:12 backup.tar.gz\r\n-rw-r--r--    1 1000     1000         2214 Mar 02  2026 config.php.bak\r\n-rw-r--r--    1 1000     1000        48211 Oct 17  2025 users.csv\r\n".to_owned()
                };
                let sent = match tokio::time::timeout(DATA_TIMEOUT, l.accept()).await {
                    Ok(Ok((mut d, _))) => {
                        let ok = d.write_all(listing.as_bytes()).await.is_ok();
                        let _ = d.shutdown().await;
                        ok
                    }
                    _ => false,
                };
                if sent {
                    reply!("226 Directory send OK.\r\n");
                } else {
                    reply!("425 Failed to establish connection.\r\n");
                }
            }
            "RETR" | "SIZE" | "MDTM" => {
                pasv = None;
                reply!("550 Failed to open file.\r\n");
            }
            "STOR" | "STOU" | "APPE" | "DELE" | "MKD" | "XMKD" | "RMD" | "XRMD" | "RNFR"
            | "RNTO" | "SITE" => {
                pasv = None;
                reply!("550 Permission denied.\r\n");
            }
            _ => reply!("500 Unknown command.\r\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command(b"user root"), ("USER".into(), "root".into()));
        assert_eq!(
            parse_command(b"PASS a b c"),
            ("PASS".into(), "a b c".into())
        );
        assert_eq!(parse_command(b"NOOP\r"), ("NOOP".into(), "".into()));
        let (v, _) = parse_command(&[b'x'; 5000]);
        assert_eq!(v.len(), 16);
        assert_eq!(parse_command(b"\xff\xfe ok").1, "ok");
    }
}
