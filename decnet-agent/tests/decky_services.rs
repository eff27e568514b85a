//! End to end: a real `decnet collect` (temporary SQLite) and a real `decnet decky` (from a
//! JSON spec, every service on 127.0.0.1 ephemeral ports), talked to with the real clients of
//! this machine (OpenSSH + sshpass, ssh-keygen, ssh-keyscan, curl for http/https/ftp, redis-cli,
//! the mariadb client) and small clients of our own (telnet, smtp). Every attempt must arrive as
//! rows in `events` and `credentials` with the right decky, service, attacker IP and secret.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use decnet_core::{
    model::{Credential, Event},
    repo::Repository,
};
use serde_json::{Value, json};

fn decnet_bin() -> PathBuf {
    std::env::var_os("DECNET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_decnet")))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("decnet-e2e-decky-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn db_url(&self) -> String {
        format!("sqlite://{}", self.0.join("decnet.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `decnet` child process with a ready file (`KIND ADDR` lines), killed on drop.
struct Proc {
    child: Option<Child>,
    ready: Vec<(String, SocketAddr)>,
    log: PathBuf,
    what: String,
}

impl Proc {
    fn start(what: &str, args: &[String], ready: &Path, log: &Path) -> Proc {
        let _ = std::fs::remove_file(ready);
        let child = Command::new(decnet_bin())
            .args(args)
            .arg("--ready-file")
            .arg(ready)
            .env_remove("DECNET_DB_TYPE")
            .env_remove("DECNET_DB_URL")
            .env_remove("DECNET_COLLECTOR_UDP")
            .env_remove("DECNET_COLLECTOR_TCP")
            .env_remove("DECNET_COLLECTOR_TLS")
            .env_remove("DECNET_COLLECTOR_ALLOW")
            .env_remove("DECNET_DECKY_COLLECTOR")
            .env_remove("DECNET_FLEET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("decnet starts");
        let mut p = Proc {
            child: Some(child),
            ready: Vec::new(),
            log: log.to_path_buf(),
            what: what.to_owned(),
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(ready) {
                p.ready = text
                    .lines()
                    .map(|l| {
                        let (kind, addr) = l.split_once(' ').expect("KIND ADDR");
                        (kind.to_owned(), addr.parse().expect("ADDR:PORT"))
                    })
                    .collect();
                return p;
            }
            if let Some(st) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{what} exited ({st}) before it was ready:\n{}", p.logs());
            }
            assert!(
                Instant::now() < until,
                "{what} not ready in 60 s:\n{}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self, kind: &str) -> SocketAddr {
        self.ready
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {kind} in {:?}", self.ready))
    }

    fn port(&self, kind: &str) -> String {
        self.addr(kind).port().to_string()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and a clean exit within 20 s.
    fn stop(&mut self) {
        let child = self.child.as_mut().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                self.child = None;
                assert!(st.success(), "{} exit {st}:\n{}", self.what, self.logs());
                return;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("{} did not exit after SIGTERM:\n{}", self.what, self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_collector(dir: &TempDir) -> Proc {
    Proc::start(
        "decnet collect",
        &[
            "collect".into(),
            "--daemon".into(),
            "--tcp".into(),
            "127.0.0.1:0".into(),
            "--db-url".into(),
            dir.db_url(),
            "--flush-ms".into(),
            "20".into(),
        ],
        &dir.path("collect.ready"),
        &dir.path("collect.log"),
    )
}

/// Starts `decnet decky` for `spec` (JSON) with state in `dir/state-<tag>`.
fn start_decky(dir: &TempDir, tag: &str, spec: &Value, collector: SocketAddr) -> Proc {
    let spec_path = dir.path(&format!("{tag}.json"));
    std::fs::write(&spec_path, spec.to_string()).expect("spec");
    Proc::start(
        "decnet decky",
        &[
            "decky".into(),
            "--daemon".into(),
            "--name".into(),
            spec["name"].as_str().expect("name").into(),
            "--spec-json".into(),
            spec_path.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--collector".into(),
            collector.to_string(),
            "--state-dir".into(),
            dir.path(&format!("state-{}", spec["name"].as_str().unwrap_or("x")))
                .display()
                .to_string(),
        ],
        &dir.path(&format!("{tag}.ready")),
        &dir.path(&format!("{tag}.log")),
    )
}

fn spec(name: &str, os: &str, services: &[&str]) -> Value {
    let accept = json!([{"username": "root", "password": "toor"}]);
    json!({
        "name": name,
        "ip": "10.77.0.10",
        "hostname": format!("{name}-host"),
        "os": os,
        "archetype": "web-server",
        "services": services.iter().map(|k| json!({"kind": k, "port": 0, "accept": accept})).collect::<Vec<_>>(),
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ssh_cmd(port: &str, password: Option<&str>) -> Command {
    let mut c = match password {
        Some(p) => {
            let mut c = Command::new("sshpass");
            c.args(["-p", p, "ssh"]);
            c
        }
        None => Command::new("ssh"),
    };
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "BatchMode=no",
        "-p",
        port,
    ]);
    c
}

/// Everything stored, after the collector stopped.
fn rows(dir: &TempDir) -> (Vec<Event>, Vec<Credential>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let repo = Repository::connect(&dir.db_url()).await.expect("repo");
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let batch = repo.events_after(after, 1000).await.expect("events");
            let Some(last) = batch.last() else { break };
            after = last.id;
            events.extend(batch);
        }
        let creds = repo.credentials(None).await.expect("credentials");
        repo.close().await;
        (events, creds)
    })
}

fn fields(e: &Event) -> Value {
    serde_json::from_str(&e.fields).expect("fields are JSON")
}

fn find<'a>(events: &'a [Event], service: &str, kind: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.service == service && e.event_type == kind)
        .collect()
}

fn cred<'a>(
    creds: &'a [Credential],
    service: &str,
    principal: &str,
    secret: &[u8],
) -> &'a Credential {
    creds
        .iter()
        .find(|c| {
            c.service == service && c.principal == principal.as_bytes() && {
                use sha2_like::digest;
                c.secret_hash == digest(secret)
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "no {service} credential {principal}/{}; have: {:#?}",
                String::from_utf8_lossy(secret),
                creds
                    .iter()
                    .map(|c| (
                        &c.service,
                        String::from_utf8_lossy(&c.principal),
                        &c.secret_kind,
                        &c.secret_printable
                    ))
                    .collect::<Vec<_>>()
            )
        })
}

/// The credential table keeps the SHA-256 of the secret.
mod sha2_like {
    pub fn digest(b: &[u8]) -> [u8; 32] {
        decnet_core::repo::dedup_key(b)
    }
}

const ATTACKER: &str = "127.0.0.1";

/// ssh: a wrong password, a public key, an accepted password with an exec command and with a
/// piped shell; http/https: pages, persona header, Basic auth and a login form.
#[test]
fn ssh_and_web_with_real_clients() {
    let dir = TempDir::new("sshweb");
    let mut collector = start_collector(&dir);
    let mut decky = start_decky(
        &dir,
        "d1",
        &spec("web-01", "linux", &["ssh", "http", "https"]),
        collector.addr("tcp"),
    );
    let ssh = decky.port("ssh");

    // A wrong password: refused.
    let out = run(ssh_cmd(&ssh, Some("hunter2")).args([
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "root@127.0.0.1",
        "true",
    ]));
    assert!(!out.status.success(), "wrong password accepted");

    // A public key: logged with its fingerprint, refused.
    let key = dir.path("id_test");
    let kg = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(&key));
    assert!(kg.status.success(), "ssh-keygen: {}", text(&kg.stderr));
    let fp = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    let fingerprint = text(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let out = run(ssh_cmd(&ssh, None)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PreferredAuthentications=publickey",
            "-i",
        ])
        .arg(&key)
        .args(["admin@127.0.0.1", "true"]));
    assert!(!out.status.success(), "public key accepted");

    // The accepted password: an exec command…
    let out = run(ssh_cmd(&ssh, Some("toor")).args([
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "root@127.0.0.1",
        "whoami; uname -a",
    ]));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exec: {} {}",
        stdout,
        text(&out.stderr)
    );
    assert!(stdout.starts_with("root\nLinux web-01-host "), "{stdout}");
    // … and a shell fed from a pipe.
    let mut child = ssh_cmd(&ssh, Some("toor"))
        .args([
            "-T",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "root@127.0.0.1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"id\ncat /etc/passwd\nexit\n")
        .expect("write");
    let out = child.wait_with_output().expect("ssh shell");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("uid=0(root)"),
        "{stdout} {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("root:x:0:0:root:/root:/bin/bash"),
        "{stdout}"
    );

    // http: the Apache default page, the Server header, Basic auth, a login form.
    let http = format!("http://127.0.0.1:{}", decky.port("http"));
    let out =
        run(Command::new("curl").args(["-s", "-i", "-A", "decnet-test/1.0", &format!("{http}/")]));
    let page = text(&out.stdout);
    assert!(page.contains("Server: Apache/2.4.52 (Ubuntu)"), "{page}");
    assert!(page.contains("Apache2 Ubuntu Default Page"), "{page}");
    let out = run(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "admin:s3cret!",
        &format!("{http}/admin"),
    ]));
    assert_eq!(text(&out.stdout), "401");
    let out = run(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "root:toor",
        &format!("{http}/admin"),
    ]));
    assert_eq!(text(&out.stdout), "200");
    let out = run(Command::new("curl").args([
        "-s",
        "-d",
        "username=bob&password=hunter%262",
        &format!("{http}/login"),
    ]));
    assert!(text(&out.stdout).contains("Invalid username or password"));
    let out = run(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{http}/nope"),
    ]));
    assert_eq!(text(&out.stdout), "404");

    // https: the same site behind the decky's certificate.
    let https = format!("https://127.0.0.1:{}", decky.port("https"));
    let out = run(Command::new("curl").args(["-s", "-k", "-i", &format!("{https}/")]));
    let page = text(&out.stdout);
    assert!(page.contains("Apache2 Ubuntu Default Page"), "{page}");
    let out = run(Command::new("curl").args([
        "-s",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "alice:wonder",
        &format!("{https}/admin"),
    ]));
    assert_eq!(text(&out.stdout), "401");

    decky.stop();
    collector.stop();
    let (events, creds) = rows(&dir);
    for e in &events {
        assert_eq!(e.decky, "web-01");
        assert_eq!(e.attacker_ip, Some(ATTACKER.parse().unwrap()), "{e:?}");
        assert!(e.attacker_port.is_some());
    }

    // ssh
    let c = cred(&creds, "ssh", "root", b"hunter2");
    assert_eq!(c.secret_kind, "password");
    cred(&creds, "ssh", "root", b"toor");
    let c = cred(&creds, "ssh", "admin", fingerprint.as_bytes());
    assert_eq!(c.secret_kind, "public_key");
    let auths = find(&events, "ssh", "auth_attempt");
    let pk = auths
        .iter()
        .map(|e| fields(e))
        .find(|f| f["secret_kind"] == "public_key")
        .expect("public key attempt");
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    assert!(pubkey.starts_with(pk["key"].as_str().unwrap()), "{pk}");
    assert!(
        pk["client_version"]
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-OpenSSH"),
        "{pk}"
    );
    let cmds: Vec<String> = find(&events, "ssh", "command")
        .iter()
        .map(|e| fields(e)["cmd"].as_str().unwrap_or("").to_owned())
        .collect();
    for want in ["whoami; uname -a", "id", "cat /etc/passwd", "exit"] {
        assert!(cmds.iter().any(|c| c == want), "{want} not in {cmds:?}");
    }
    assert!(find(&events, "ssh", "login").len() >= 2);
    assert!(find(&events, "ssh", "connect").len() >= 4);
    assert_eq!(
        find(&events, "ssh", "connect").len(),
        find(&events, "ssh", "disconnect").len()
    );

    // http / https
    let reqs = find(&events, "http", "request");
    let root = reqs
        .iter()
        .map(|e| fields(e))
        .find(|f| f["path"] == "/")
        .expect("GET /");
    assert_eq!(root["method"], "GET");
    assert_eq!(root["user_agent"], "decnet-test/1.0");
    assert!(
        root["headers"]
            .as_str()
            .unwrap()
            .contains("User-Agent: decnet-test/1.0")
    );
    let c = cred(&creds, "http", "admin", b"s3cret!");
    assert_eq!(c.secret_kind, "password");
    cred(&creds, "http", "bob", b"hunter&2");
    cred(&creds, "https", "alice", b"wonder");
    assert!(!find(&events, "https", "request").is_empty());
}

/// A line-based client over TCP (our own smtp and telnet clients).
struct LineClient {
    s: TcpStream,
    buf: Vec<u8>,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        LineClient { s, buf: Vec::new() }
    }

    fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send");
    }

    /// Reads until `needle` appears; returns everything read so far (and forgets it).
    fn until(&mut self, needle: &str) -> String {
        text(&self.until_bytes(needle))
    }

    fn until_bytes(&mut self, needle: &str) -> Vec<u8> {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(i) = find_bytes(&self.buf, needle.as_bytes()) {
                let end = i + needle.len();
                return self.buf.drain(..end).collect();
            }
            assert!(
                Instant::now() < until,
                "no {needle:?} in {:?}",
                text(&self.buf)
            );
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("closed before {needle:?}; got {:?}", text(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}; got {:?}", text(&self.buf)),
            }
        }
    }
}

fn find_bytes(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// ftp (curl), telnet (ours), smtp (ours), redis (redis-cli), mysql (the mariadb client).
#[test]
fn ftp_telnet_smtp_redis_mysql_with_real_clients() {
    let dir = TempDir::new("others");
    let mut collector = start_collector(&dir);
    let mut decky = start_decky(
        &dir,
        "d2",
        &spec(
            "db-02",
            "linux",
            &["ftp", "telnet", "smtp", "redis", "mysql"],
        ),
        collector.addr("tcp"),
    );

    // ftp: a refused login, then an accepted one with a listing over passive mode.
    let ftp = format!("ftp://127.0.0.1:{}/", decky.port("ftp"));
    let out = run(Command::new("curl").args([
        "-s",
        "-S",
        "--max-time",
        "20",
        "-u",
        "anonymous:guest@example.com",
        &ftp,
    ]));
    assert_eq!(
        out.status.code(),
        Some(67),
        "ftp refused: {}",
        text(&out.stderr)
    );
    let out =
        run(Command::new("curl").args(["-s", "-S", "--max-time", "20", "-u", "root:toor", &ftp]));
    assert!(out.status.success(), "ftp listing: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("backup.tar.gz"),
        "{}",
        text(&out.stdout)
    );

    // telnet: IAC negotiation, a wrong password, then the accepted one and two commands.
    let mut t = LineClient::connect(decky.addr("telnet"));
    let hello = t.until_bytes("login: ");
    assert!(
        hello.starts_with(&[255, 251, 1]),
        "no IAC WILL ECHO in {hello:?}"
    );
    let hello = text(&hello);
    assert!(hello.contains("Ubuntu 22.04.4 LTS"), "{hello:?}");
    // Answer the negotiation like a client would (DO ECHO, WILL NAWS + subnegotiation).
    t.send(&[
        255, 253, 1, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240,
    ]);
    t.send(b"admin\r\n");
    t.until("Password: ");
    t.send(b"admin123\r\n");
    t.until("Login incorrect");
    t.until("login: ");
    t.send(b"root\r\n");
    t.until("Password: ");
    t.send(b"toor\r\n");
    t.until("root@db-02-host:~# ");
    t.send(b"whoami\r\n");
    let out = t.until("# ");
    assert!(out.contains("root\r\n"), "{out:?}");
    t.send(b"uname -a\r\nexit\r\n");
    t.until("logout");

    // smtp: EHLO, AUTH PLAIN and AUTH LOGIN (refused), a message, QUIT.
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut m = LineClient::connect(decky.addr("smtp"));
    assert!(m.until("\r\n").starts_with("220 db-02-host ESMTP Postfix"));
    m.send(b"EHLO attacker.example\r\n");
    let ehlo = m.until("250 DSN\r\n");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
    m.send(format!("AUTH PLAIN {}\r\n", b64(b"\0mailer\0Spring2024!")).as_bytes());
    assert!(m.until("\r\n").starts_with("535 "));
    m.send(b"AUTH LOGIN\r\n");
    assert_eq!(m.until("\r\n"), "334 VXNlcm5hbWU6\r\n");
    m.send(format!("{}\r\n", b64(b"info@db-02-host")).as_bytes());
    assert_eq!(m.until("\r\n"), "334 UGFzc3dvcmQ6\r\n");
    m.send(format!("{}\r\n", b64(b"letmein")).as_bytes());
    assert!(m.until("\r\n").starts_with("535 "));
    m.send(b"MAIL FROM:<spam@attacker.example>\r\n");
    assert!(m.until("\r\n").starts_with("250 "));
    m.send(b"RCPT TO:<root@db-02-host>\r\n");
    assert!(m.until("\r\n").starts_with("250 "));
    m.send(b"DATA\r\n");
    assert!(m.until("\r\n").starts_with("354 "));
    m.send(b"Subject: invoice\r\n\r\nplease pay\r\n.\r\n");
    assert!(m.until("\r\n").starts_with("250 2.0.0 Ok: queued as "));
    m.send(b"QUIT\r\n");
    assert!(m.until("\r\n").starts_with("221 "));

    // redis: a wrong password (WRONGPASS, then NOAUTH), the accepted one, recon commands.
    let port = decky.port("redis");
    let out = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        "foobared",
        "--no-auth-warning",
        "PING",
    ]));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("NOAUTH") || all.contains("WRONGPASS"), "{all}");
    let out = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        "toor",
        "--no-auth-warning",
        "PING",
    ]));
    assert_eq!(text(&out.stdout).trim(), "PONG", "{}", text(&out.stderr));
    let out = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--user",
        "default",
        "--pass",
        "toor",
        "--no-auth-warning",
        "INFO",
        "server",
    ]));
    assert!(
        text(&out.stdout).contains("redis_version:7.0.15"),
        "{}",
        text(&out.stdout)
    );
    let out = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        "toor",
        "--no-auth-warning",
        "CONFIG",
        "SET",
        "dir",
        "/root/.ssh",
    ]));
    assert_eq!(text(&out.stdout).trim(), "OK");

    // mysql: the real client; the scramble must match the password and the salt.
    let out = run(Command::new("mysql").args([
        "-h",
        "127.0.0.1",
        "-P",
        &decky.port("mysql"),
        "--protocol=TCP",
        "-u",
        "root",
        "-pSup3rSecret",
        "-D",
        "shop",
        "--connect-timeout=10",
        "-e",
        "SELECT 1",
    ]));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("1045")
            && err.contains("Access denied for user 'root'@'127.0.0.1' (using password: YES)"),
        "{err}"
    );

    // Per-IP cap: 16 open connections to one service; the 17th is closed at once.
    let held: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut c = TcpStream::connect(decky.addr("mysql")).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut greeting = [0u8; 16];
            c.read_exact(&mut greeting)
                .expect("greeting within the cap");
            c
        })
        .collect();
    let mut over = TcpStream::connect(decky.addr("mysql")).expect("connect");
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(over.read(&mut b), Ok(0) | Err(_)),
        "17th connection served"
    );
    drop(held);

    // Hostile bytes to every service: nothing breaks, the services still answer.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let garbage: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    for (_, addr) in &decky.ready {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(&garbage);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
    }
    let out = run(Command::new("redis-cli").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        "toor",
        "--no-auth-warning",
        "PING",
    ]));
    assert_eq!(text(&out.stdout).trim(), "PONG", "after garbage");

    decky.stop();
    collector.stop();
    let (events, creds) = rows(&dir);
    for e in &events {
        assert_eq!(e.decky, "db-02");
        assert_eq!(e.attacker_ip, Some(ATTACKER.parse().unwrap()), "{e:?}");
    }
    // ftp
    cred(&creds, "ftp", "anonymous", b"guest@example.com");
    cred(&creds, "ftp", "root", b"toor");
    let ftp_cmds: Vec<Value> = find(&events, "ftp", "command")
        .iter()
        .map(|e| fields(e))
        .collect();
    assert!(
        ftp_cmds
            .iter()
            .any(|f| f["cmd"] == "LIST" || f["cmd"] == "EPSV"),
        "{ftp_cmds:?}"
    );
    assert!(
        !ftp_cmds
            .iter()
            .any(|f| f["cmd"].as_str().unwrap_or("").contains("toor")),
        "password logged as a command"
    );
    // telnet
    cred(&creds, "telnet", "admin", b"admin123");
    cred(&creds, "telnet", "root", b"toor");
    let cmds: Vec<String> = find(&events, "telnet", "command")
        .iter()
        .map(|e| fields(e)["cmd"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(cmds, ["whoami", "uname -a", "exit"]);
    // smtp
    let c = cred(&creds, "smtp", "mailer", b"Spring2024!");
    assert_eq!(c.secret_kind, "password");
    cred(&creds, "smtp", "info@db-02-host", b"letmein");
    let msg = fields(
        find(&events, "smtp", "message")
            .first()
            .expect("message event"),
    );
    assert_eq!(msg["mail_from"], "spam@attacker.example");
    assert_eq!(msg["rcpt_to"], "root@db-02-host");
    assert_eq!(msg["subject"], "invoice");
    // redis
    cred(&creds, "redis", "default", b"foobared");
    cred(&creds, "redis", "default", b"toor");
    let cmds: Vec<String> = find(&events, "redis", "command")
        .iter()
        .map(|e| fields(e)["cmd"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        cmds.iter().any(|c| c == "CONFIG SET dir /root/.ssh"),
        "{cmds:?}"
    );
    assert!(cmds.iter().any(|c| c == "INFO server"), "{cmds:?}");
    // mysql: verify the scramble against the password with the logged salt.
    let auth = find(&events, "mysql", "auth_attempt");
    assert_eq!(auth.len(), 1);
    let f = fields(auth[0]);
    assert_eq!(f["principal"], "root");
    assert_eq!(f["database"], "shop");
    assert_eq!(f["secret_kind"], "mysql_native_password");
    let salt = unhex(f["salt_hex"].as_str().unwrap());
    let scramble = base64::engine::general_purpose::STANDARD
        .decode(f["secret_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(scramble, native_scramble(b"Sup3rSecret", &salt));
    let c = cred(&creds, "mysql", "root", &scramble);
    assert_eq!(c.secret_kind, "mysql_native_password");
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))`.
fn native_scramble(pw: &[u8], salt: &[u8]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let h1 = Sha1::digest(pw);
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(salt);
    h.update(h2);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// The host key (as `ssh-keyscan` sees it) and the certificate (as served over TLS) are the same
/// across two starts with the same state directory, and differ between two deckies.
#[test]
fn host_key_and_certificate_are_per_decky_and_stable() {
    let dir = TempDir::new("stable");
    // No collector: the decky keeps serving while its events wait for one.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let identity = |tag: &str, name: &str| {
        let mut d = start_decky(&dir, tag, &spec(name, "linux", &["ssh", "https"]), nowhere);
        let out = run(Command::new("ssh-keyscan").args([
            "-T",
            "10",
            "-t",
            "ed25519",
            "-p",
            &d.port("ssh"),
            "127.0.0.1",
        ]));
        let key = text(&out.stdout)
            .lines()
            .find(|l| l.contains("ssh-ed25519"))
            .unwrap_or_else(|| panic!("no key from ssh-keyscan: {}", text(&out.stderr)))
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned();
        let out = run(Command::new("curl").args([
            "-s",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{certs}",
            &format!("https://127.0.0.1:{}/", d.port("https")),
        ]));
        let cert = text(&out.stdout);
        assert!(
            cert.contains("-----BEGIN CERTIFICATE-----"),
            "curl %{{certs}}: {cert}"
        );
        assert!(
            cert.contains(&format!("CN = {name}-host"))
                || cert.contains(&format!("CN={name}-host")),
            "{cert}"
        );
        d.stop();
        (key, cert)
    };
    let a1 = identity("a1", "alpha");
    let a2 = identity("a2", "alpha");
    let b = identity("b", "beta");
    assert_eq!(a1, a2, "same decky, same state dir: same identity");
    assert_ne!(a1.0, b.0, "two deckies share a host key");
    assert_ne!(a1.1, b.1, "two deckies share a certificate");
}
