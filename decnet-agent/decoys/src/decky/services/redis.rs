//! Redis: a bounded RESP parser (arrays of bulk strings, and inline commands). With accepted
//! logins configured the decky behaves like `requirepass` is set (every command but AUTH/QUIT
//! answers `-NOAUTH`); without, like an open Redis (the classic exposed cache). AUTH (and
//! HELLO … AUTH) is logged as `auth_attempt`, every other command as `command`, and the usual
//! recon and abuse (PING, INFO, CONFIG GET/SET, KEYS, SLAVEOF, MODULE LOAD…) gets Redis's answers.
use std::sync::Arc;

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

use super::{
    Conn, Ctx, IDLE, Login, MAX_AUTH_PER_CONN, ServiceKind, ServiceSpec, accept_loop, lossy,
};
use crate::decky::{Shutdown, persona};

/// Arguments per command, at most.
pub const MAX_ARGS: usize = 64;
/// Bytes per argument, at most.
pub const MAX_BULK: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum RespError {
    Closed,
    Protocol(&'static str),
}

/// Reads one command: a RESP array of bulk strings, or an inline command line.
pub async fn read_command<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<Vec<u8>>, RespError> {
    let first = {
        let buf = r.fill_buf().await.map_err(|_| RespError::Closed)?;
        *buf.first().ok_or(RespError::Closed)?
    };
    if first != b'*' {
        let line = read_crlf_line(r, MAX_BULK).await?;
        return Ok(line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .take(MAX_ARGS)
            .map(<[u8]>::to_vec)
            .collect());
    }
    let header = read_crlf_line(r, 32).await?;
    let n: i64 = std::str::from_utf8(&header[1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Protocol("invalid multibulk length"))?;
    if n <= 0 {
        return Ok(Vec::new());
    }
    if n as usize > MAX_ARGS {
        return Err(RespError::Protocol("invalid multibulk length"));
    }
    let mut args = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let h = read_crlf_line(r, 32).await?;
        if h.first() != Some(&b'$') {
            return Err(RespError::Protocol("expected '$'"));
        }
        let len: usize = std::str::from_utf8(&h[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(RespError::Protocol("invalid bulk length"))?;
        if len > MAX_BULK {
            return Err(RespError::Protocol("invalid bulk length"));
        }
        let mut v = vec![0u8; len + 2];
        r.read_exact(&mut v).await.map_err(|_| RespError::Closed)?;
        v.truncate(len);
        args.push(v);
    }
    Ok(args)
}

async fn read_crlf_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Vec<u8>, RespError> {
    let mut out = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(|_| RespError::Closed)?;
        if buf.is_empty() {
            return Err(RespError::Closed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max + 2 {
            return Err(RespError::Protocol("too big inline request"));
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            while matches!(out.last(), Some(b'\n' | b'\r')) {
                out.pop();
            }
            return Ok(out);
        }
    }
}

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, spec: ServiceSpec, shutdown: Shutdown) {
    let accept = Arc::new(spec.accept);
    accept_loop(
        listener,
        ctx,
        ServiceKind::Redis,
        shutdown,
        move |stream, conn| {
            let accept = accept.clone();
            async move { session(stream, conn, &accept).await }
        },
    )
    .await;
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn array(items: &[&str]) -> String {
    let mut out = format!("*{}\r\n", items.len());
    for i in items {
        out.push_str(&bulk(i));
    }
    out
}

const FAKE_KEYS: [&str; 4] = [
    "session:7f3a9c0d",
    "user:1001",
    "cache:homepage",
    "backup_config",
];

async fn session(stream: TcpStream, conn: Conn, accept: &[Login]) {
    let requires_auth = !accept.is_empty();
    let mut authed = !requires_auth;
    let mut auths = 0u32;
    let mut s = BufReader::new(stream);
    loop {
        let args = match tokio::time::timeout(IDLE, read_command(&mut s)).await {
            Ok(Ok(a)) => a,
            Ok(Err(RespError::Protocol(m))) => {
                let _ = s
                    .get_mut()
                    .write_all(format!("-ERR Protocol error: {m}\r\n").as_bytes())
                    .await;
                return;
            }
            _ => return,
        };
        let Some(name) = args.first() else { continue };
        let name = lossy(name).to_ascii_uppercase();
        let arg = |i: usize| {
            args.get(i)
                .map(|a| lossy(a).into_owned())
                .unwrap_or_default()
        };
        let reply: String = match name.as_str() {
            "AUTH" | "HELLO" => {
                let (user, pass) = match (name.as_str(), args.len()) {
                    ("AUTH", 2) => (Some("default".to_owned()), args.get(1)),
                    ("AUTH", 3) => (Some(arg(1)), args.get(2)),
                    ("HELLO", _) => {
                        let i = args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH"));
                        match i {
                            Some(i) => (Some(arg(i + 1)), args.get(i + 2)),
                            None => (None, None),
                        }
                    }
                    _ => (None, None),
                };
                conn.event("command", &[("cmd", &name)]);
                match (user, pass) {
                    (Some(user), Some(pass)) => {
                        auths += 1;
                        // `requirepass` has no user name: for `default`, any accepted password.
                        let ok = requires_auth
                            && if user == "default" {
                                accept.iter().any(|l| l.password.as_bytes() == pass.as_slice())
                            } else {
                                Conn::accepted(accept, &user, pass)
                            };
                        conn.auth(&user, pass, "password", &[("result", if ok { "accepted" } else { "rejected" })]);
                        if ok {
                            authed = true;
                        }
                        if auths > MAX_AUTH_PER_CONN {
                            return;
                        }
                        if !requires_auth {
                            "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n".into()
                        } else if ok && name == "AUTH" {
                            "+OK\r\n".into()
                        } else if ok {
                            hello()
                        } else {
                            "-WRONGPASS invalid username-password pair or user is disabled.\r\n".into()
                        }
                    }
                    _ if name == "HELLO" && authed => hello(),
                    _ if name == "HELLO" => "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n".into(),
                    _ => "-ERR wrong number of arguments for 'auth' command\r\n".into(),
                }
            }
            _ => {
                let cmd: Vec<String> = args.iter().map(|a| lossy(a).into_owned()).collect();
                conn.event("command", &[("cmd", &cmd.join(" "))]);
                if name == "QUIT" {
                    let _ = s.get_mut().write_all(b"+OK\r\n").await;
                    return;
                }
                if !authed {
                    "-NOAUTH Authentication required.\r\n".into()
                } else {
                    answer(&conn, &name, &args)
                }
            }
        };
        if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn hello() -> String {
    let mut out = String::from("*14\r\n");
    for (k, v) in [
        ("server", "redis"),
        ("version", "7.0.15"),
        ("proto", "2"),
        ("id", "12"),
        ("mode", "standalone"),
        ("role", "master"),
    ] {
        out.push_str(&bulk(k));
        out.push_str(&bulk(v));
    }
    out.push_str(&bulk("modules"));
    out.push_str("*0\r\n");
    out
}

fn answer(conn: &Conn, name: &str, args: &[Vec<u8>]) -> String {
    let sub = args
        .get(1)
        .map(|a| lossy(a).to_ascii_uppercase())
        .unwrap_or_default();
    match name {
        "PING" => match args.get(1) {
            Some(m) => bulk(&lossy(m)),
            None => "+PONG\r\n".into(),
        },
        "ECHO" => bulk(&lossy(args.get(1).map_or(&[][..], |a| a))),
        "INFO" => bulk(&info(conn)),
        "CONFIG" => match sub.as_str() {
            "GET" => {
                let pat = args
                    .get(2)
                    .map(|a| lossy(a).to_ascii_lowercase())
                    .unwrap_or_default();
                let all = [
                    ("dir", "/var/lib/redis"),
                    ("dbfilename", "dump.rdb"),
                    ("maxmemory", "0"),
                    ("bind", "* -::*"),
                    ("protected-mode", "no"),
                    ("appendonly", "no"),
                ];
                let hits: Vec<&str> = all
                    .iter()
                    .filter(|(k, _)| pat == "*" || pat == *k)
                    .flat_map(|(k, v)| [*k, *v])
                    .collect();
                array(&hits)
            }
            "SET" | "RESETSTAT" | "REWRITE" => "+OK\r\n".into(),
            _ => "-ERR unknown subcommand\r\n".into(),
        },
        "KEYS" => array(&FAKE_KEYS),
        "SCAN" => format!("*2\r\n{}{}", bulk("0"), array(&FAKE_KEYS)),
        "DBSIZE" => format!(":{}\r\n", FAKE_KEYS.len()),
        "GET" => "$-1\r\n".into(),
        "SET" | "SELECT" | "FLUSHALL" | "FLUSHDB" | "SAVE" | "SLAVEOF" | "REPLICAOF" | "MSET" => {
            "+OK\r\n".into()
        }
        "BGSAVE" => "+Background saving started\r\n".into(),
        "DEL" | "EXISTS" | "EXPIRE" | "TTL" => ":0\r\n".into(),
        "TYPE" => "+none\r\n".into(),
        "CLIENT" => match sub.as_str() {
            "LIST" => bulk(&format!(
                "id=12 addr={} laddr={} fd=8 name= age=0 idle=0 flags=N db=0 cmd=client|list\n",
                conn.peer, conn.local
            )),
            "GETNAME" => "$-1\r\n".into(),
            _ => "+OK\r\n".into(),
        },
        "COMMAND" => "*0\r\n".into(),
        "MODULE" => "-ERR Error loading the extension. Please check the server logs.\r\n".into(),
        "EVAL" | "EVALSHA" => {
            "-ERR user_script:1: Script attempted to access nonexistent global variable\r\n".into()
        }
        _ => {
            let first = args
                .get(1)
                .map(|a| lossy(a).chars().take(64).collect::<String>())
                .unwrap_or_default();
            format!(
                "-ERR unknown command '{}', with args beginning with: {}\r\n",
                name.to_ascii_lowercase()
                    .chars()
                    .take(64)
                    .collect::<String>(),
                if first.is_empty() {
                    String::new()
                } else {
                    format!("'{first}' ")
                }
            )
        }
    }
}

fn info(conn: &Conn) -> String {
    let spec = &conn.ctx.spec;
    let (kname, release, _, machine, _) = persona::uname(spec);
    format!(
        "# Server\r\nredis_version:{}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\nos:{kname} {release} {machine}\r\narch_bits:64\r\nprocess_id:1187\r\ntcp_port:{}\r\nuptime_in_seconds:3196234\r\nuptime_in_days:36\r\nexecutable:/usr/bin/redis-server\r\nconfig_file:/etc/redis/redis.conf\r\n\r\n# Clients\r\nconnected_clients:1\r\n\r\n# Memory\r\nused_memory:1038224\r\nused_memory_human:1013.89K\r\n\r\n# Persistence\r\nloading:0\r\nrdb_last_save_time:1764140000\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
        persona::redis_version(spec),
        conn.local.port(),
        FAKE_KEYS.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(b: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
        read_command(&mut BufReader::new(b)).await
    }

    #[tokio::test]
    async fn resp_and_inline() {
        assert_eq!(
            parse(b"*2\r\n$4\r\nAUTH\r\n$6\r\nse\r\ncr\r\n")
                .await
                .unwrap(),
            vec![b"AUTH".to_vec(), b"se\r\ncr".to_vec()]
        );
        assert_eq!(
            parse(b"PING  hello\r\n").await.unwrap(),
            vec![b"PING".to_vec(), b"hello".to_vec()]
        );
        assert_eq!(parse(b"").await, Err(RespError::Closed));
        assert!(matches!(
            parse(b"*99999\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            parse(b"*1\r\n$999999999\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            parse(b"*1\r\n:1\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert!(matches!(
            parse(b"*x\r\n").await,
            Err(RespError::Protocol(_))
        ));
        assert_eq!(parse(b"*1\r\n$5\r\nab").await, Err(RespError::Closed));
        let long = vec![b'a'; MAX_BULK + 10];
        assert!(matches!(parse(&long).await, Err(RespError::Protocol(_))));
    }
}
