//! Real handshakes, independent answers: OpenSSL, curl, Python `ssl` and OpenSSH talk to
//! `openssl s_server`, `sshd` and `python3 -m http.server` inside a network namespace of our own
//! (`fpc<pid>`); `dumpcap` records the namespace's loopback to a pcap. This test reads the pcap
//! itself (its own pcap/Ethernet/IP/TCP walk), builds each flow's `FlowSample` like the sensor
//! does (SYN and SYN-ACK headers, each direction's first payload bytes concatenated; a second
//! round with the namespace's loopback MTU at 300 splits every hello over several segments) and
//! asserts
//! that decnet-fingerprint agrees with programs that share no code with it, on the same pcap:
//! - JA3 / ja3_full / JA3S / ja3s_full: tshark's `tls.handshake.ja3*` fields;
//! - HASSH / HASSH-server: `md5sum` of the KEXINIT name-lists tshark prints (`ssh.*_algorithms*`);
//! - the User-Agent: tshark's `http.user_agent`;
//! - `tcp_syn` / `tcp_synack`: p0f 3.09b's `raw_sig` and `os` (`p0f -r`), with /etc/p0f/p0f.fp.
//!
//! Needs root (namespaces) and the tools `cargo xtask setup` installs; a missing one fails the
//! test with what to install.

use decnet_fingerprint::{Config, FlowSample, Kind, Payload, fingerprints_of, p0f::Database};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TLS_PORT: u16 = 4433;
const SSH_PORT: u16 = 2222;
const HTTP_PORT: u16 = 8080;

fn need(tool: &str, package: &str) {
    let found = if tool.starts_with('/') {
        Path::new(tool).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false)
    };
    assert!(
        found,
        "`{tool}` not found: install {package} (cargo xtask setup)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespace; deleted on drop (also when an assertion fails).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("fpc{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run(ns.cmd("ip").args(["link", "set", "lo", "up"]));
        ns
    }
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A background process, terminated on drop. `ip netns exec` execs its program, so the pid is
/// the program's own.
struct Bg(Child, &'static str);

impl Bg {
    fn spawn(mut cmd: Command, what: &'static str, log: &Path) -> Bg {
        let f = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Bg(child, what)
    }
    fn stop(mut self) {
        self.term();
    }
    fn term(&mut self) {
        // SIGTERM so dumpcap flushes its file.
        sigterm(self.0.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.term();
        }
        let _ = self.1;
    }
}

fn wait_listening(ns: &Netns, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(ns.cmd("ss").args(["-Htln", &format!("sport = :{port}")]));
        if !out.trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- our own pcap walk -------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Flow {
    syn: Option<Vec<u8>>,
    synack: Option<Vec<u8>>,
    client: Vec<u8>,
    server: Vec<u8>,
    /// Sizes of the client's data segments (in order, without retransmissions).
    client_segments: Vec<usize>,
    next_client: Option<u32>,
    next_server: Option<u32>,
}

/// Flows of the pcap keyed by client port (all traffic is 127.0.0.1 ↔ 127.0.0.1).
fn flows_of(pcap: &[u8]) -> BTreeMap<u16, (u16, Flow)> {
    assert!(pcap.len() >= 24, "pcap shorter than its header");
    let magic = u32::from_le_bytes([pcap[0], pcap[1], pcap[2], pcap[3]]);
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "not a little-endian pcap: {magic:x}"
    );
    let linktype = u32::from_le_bytes([pcap[20], pcap[21], pcap[22], pcap[23]]);
    assert_eq!(linktype, 1, "loopback capture should be DLT_EN10MB");
    let mut flows: BTreeMap<u16, (u16, Flow)> = BTreeMap::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let incl =
            u32::from_le_bytes([pcap[at + 8], pcap[at + 9], pcap[at + 10], pcap[at + 11]]) as usize;
        let frame = &pcap[at + 16..at + 16 + incl];
        at += 16 + incl;
        if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let hl = usize::from(ip[0] & 0xf) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let ip = &ip[..tot];
        if ip[9] != 6 {
            continue;
        }
        let tcp = &ip[hl..];
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let doff = usize::from(tcp[12] >> 4) * 4;
        let flags = tcp[13];
        let payload = &tcp[doff..];
        let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
        if syn && !ack {
            let f = &mut flows
                .entry(sport)
                .or_insert_with(|| (dport, Flow::default()))
                .1;
            f.syn = Some(ip.to_vec());
            f.next_client = Some(seq.wrapping_add(1));
            continue;
        }
        if syn && ack {
            if let Some((_, f)) = flows.get_mut(&dport) {
                f.synack = Some(ip.to_vec());
                f.next_server = Some(seq.wrapping_add(1));
            }
            continue;
        }
        if payload.is_empty() {
            continue;
        }
        // Each direction's bytes in sequence order, as the sensor ships them (retransmissions
        // of bytes already taken are skipped).
        let (flow, to_server) = if let Some((_, f)) = flows.get_mut(&sport) {
            (f, true)
        } else if let Some((_, f)) = flows.get_mut(&dport) {
            (f, false)
        } else {
            continue;
        };
        let next = if to_server {
            flow.next_client
        } else {
            flow.next_server
        };
        if next == Some(seq) {
            let next = Some(seq.wrapping_add(payload.len() as u32));
            if to_server {
                flow.client_segments.push(payload.len());
                flow.client.extend_from_slice(payload);
                flow.next_client = next;
            } else {
                flow.server.extend_from_slice(payload);
                flow.next_server = next;
            }
        }
    }
    flows
}

fn sample_of(server_port: u16, f: &Flow, limit: usize) -> FlowSample {
    let cut = |b: &Vec<u8>| {
        (!b.is_empty()).then(|| Payload {
            bytes: b[..b.len().min(limit)].to_vec(),
            truncated: b.len() > limit,
        })
    };
    FlowSample {
        proto: 6,
        server_port,
        client_syn: f.syn.clone(),
        server_synack: f.synack.clone(),
        client_payload: cut(&f.client),
        server_payload: cut(&f.server),
    }
}

fn md5sum(s: &str) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(s.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("md5sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// `tshark -T fields` rows keyed by the first field (a port).
fn tshark_rows(pcap: &Path, filter: &str, fields: &[&str]) -> BTreeMap<u16, Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    for d in [
        format!("tcp.port=={TLS_PORT},tls"),
        format!("tcp.port=={SSH_PORT},ssh"),
        format!("tcp.port=={HTTP_PORT},http"),
    ] {
        cmd.args(["-d", &d]);
    }
    cmd.args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=f",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let mut rows = BTreeMap::new();
    for line in run(&mut cmd).lines() {
        let cols: Vec<String> = line.split('\t').map(str::to_owned).collect();
        let port: u16 = cols[0]
            .parse()
            .unwrap_or_else(|_| panic!("tshark row {line:?}"));
        rows.insert(port, cols[1..].to_vec());
    }
    rows
}

/// p0f's log lines: (mod, client port) → (os, raw_sig).
fn p0f_rows(pcap: &Path, dir: &Path) -> BTreeMap<(String, u16), (String, String)> {
    let log = dir.join("p0f.log");
    run(Command::new("p0f")
        .arg("-r")
        .arg(pcap)
        .args(["-f", decnet_fingerprint::p0f::SYSTEM_DB, "-o"])
        .arg(&log));
    let text = std::fs::read_to_string(&log).expect("p0f log");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let kv: BTreeMap<&str, &str> = line
            .split('|')
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.rsplit(' ').next().unwrap_or(k), v))
            .collect();
        let (Some(m), Some(cli), Some(sig)) = (kv.get("mod"), kv.get("cli"), kv.get("raw_sig"))
        else {
            continue;
        };
        let port: u16 = cli
            .rsplit('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("cli port");
        let os = kv.get("os").or(kv.get("app")).copied().unwrap_or("???");
        rows.insert(((*m).to_owned(), port), (os.to_owned(), (*sig).to_owned()));
    }
    rows
}

#[test]
fn fingerprints_agree_with_tshark_md5sum_and_p0f_on_real_handshakes() {
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("unshare", "util-linux"),
        ("tshark", "tshark"),
        ("dumpcap", "tshark (dumpcap)"),
        ("p0f", "p0f"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("python3", "python3"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("md5sum", "coreutils"),
    ] {
        need(tool, pkg);
    }
    assert!(
        Path::new(decnet_fingerprint::p0f::SYSTEM_DB).exists(),
        "install p0f (cargo xtask setup)"
    );

    let dir = std::env::temp_dir().join(format!("fpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = |name: &str| -> PathBuf { dir.join(name) };
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=fpc.test", "-keyout"])
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("cert.pem")));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(p("hostkey")));

    let ns = Netns::new();
    let pcap = p("capture.pcap");
    let mut dc = ns.cmd("dumpcap");
    dc.args(["-q", "-P", "-i", "lo", "-f", "tcp", "-w"])
        .arg(&pcap);
    let dumpcap = Bg::spawn(dc, "dumpcap", &p("dumpcap.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&pcap)
        .map(|m| m.len() < 24)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "dumpcap did not start: {:?}",
            std::fs::read_to_string(p("dumpcap.log"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut s = ns.cmd("openssl");
    s.args([
        "s_server",
        "-quiet",
        "-www",
        "-accept",
        &format!("127.0.0.1:{TLS_PORT}"),
        "-key",
    ])
    .arg(p("key.pem"))
    .arg("-cert")
    .arg(p("cert.pem"));
    let s_server = Bg::spawn(s, "openssl s_server", &p("s_server.log"));
    let mut d = ns.cmd("unshare");
    d.args([
        "-m",
        "sh",
        "-c",
        // sshd wants /run/sshd: give it a private /run instead of touching the host's.
        "mount -t tmpfs fpc /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f /dev/null \
         -o HostKey=\"$0\" -o ListenAddress=127.0.0.1:2222 -o PidFile=none",
    ])
    .arg(p("hostkey"));
    let sshd = Bg::spawn(d, "sshd", &p("sshd.log"));
    let mut h = ns.cmd("python3");
    h.args([
        "-m",
        "http.server",
        &HTTP_PORT.to_string(),
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(&dir);
    let http = Bg::spawn(h, "python3 http.server", &p("http.log"));
    wait_listening(&ns, TLS_PORT, "openssl s_server");
    wait_listening(&ns, SSH_PORT, "sshd");
    wait_listening(&ns, HTTP_PORT, "python3 http.server");

    let tls_target = format!("127.0.0.1:{TLS_PORT}");
    let quiet = |mut c: Command| {
        // Clients' exit codes vary (no auth for ssh, s_client on EOF); the capture is the point.
        let _ = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    // Two rounds: loopback's own MTU (every hello in one segment), then MTU 300 (MSS 260), where
    // every ClientHello and ServerHello spans several segments the sample must concatenate.
    for mtu in ["65536", "300"] {
        // gso_max_size too: otherwise TCP hands loopback (and the capture) one GSO packet larger
        // than the MSS.
        run(ns
            .cmd("ip")
            .args(["link", "set", "lo", "mtu", mtu, "gso_max_size", mtu]));
        let mut c = ns.cmd("openssl");
        c.args([
            "s_client",
            "-connect",
            &tls_target,
            "-servername",
            "fpc.test",
        ]);
        quiet(c);
        let mut c = ns.cmd("openssl");
        c.args([
            "s_client",
            "-tls1_2",
            "-connect",
            &tls_target,
            "-alpn",
            "h2,http/1.1",
        ]);
        quiet(c);
        let mut c = ns.cmd("curl");
        c.args([
            "-sk",
            &format!("https://fpc.test:{TLS_PORT}/"),
            "--resolve",
            &format!("fpc.test:{TLS_PORT}:127.0.0.1"),
        ]);
        quiet(c);
        let mut c = ns.cmd("python3");
        c.args([
            "-c",
            "import ssl,socket\nc=ssl.create_default_context()\nc.check_hostname=False\n\
             c.verify_mode=ssl.CERT_NONE\ns=c.wrap_socket(socket.create_connection(('127.0.0.1',4433)),\
             server_hostname='fpc.test')\ns.close()",
        ]);
        quiet(c);
        let mut c = ns.cmd("ssh");
        c.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-p", &SSH_PORT.to_string(), "nobody@127.0.0.1", "true"]);
        quiet(c);
        let mut c = ns.cmd("curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-A",
            "fpc-test/1.0 (\"quoted\"; x)",
            &format!("http://127.0.0.1:{HTTP_PORT}/"),
        ]);
        quiet(c);
        let mut c = ns.cmd("python3");
        c.args([
            "-c",
            "import ssl,urllib.request\nc=ssl.create_default_context()\nc.check_hostname=False\n\
             c.verify_mode=ssl.CERT_NONE\nurllib.request.urlopen('https://127.0.0.1:4433/',context=c).read()",
        ]);
        quiet(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    dumpcap.stop();
    drop((s_server, sshd, http));
    drop(ns);

    let bytes = std::fs::read(&pcap).expect("pcap");
    let flows = flows_of(&bytes);
    let db = Arc::new(
        Database::load_system()
            .expect("p0f db")
            .expect("p0f db exists"),
    );
    let cfg = Config {
        p0f: Some(db),
        ja4_plus: false,
    };

    let hellos = tshark_rows(
        &pcap,
        "tls.handshake.type==1",
        &["tcp.srcport", "tls.handshake.ja3", "tls.handshake.ja3_full"],
    );
    let server_hellos = tshark_rows(
        &pcap,
        "tls.handshake.type==2",
        &[
            "tcp.dstport",
            "tls.handshake.ja3s",
            "tls.handshake.ja3s_full",
        ],
    );
    let kex_fields = |dir: &str| {
        [
            "ssh.kex_algorithms".to_owned(),
            format!("ssh.encryption_algorithms_{dir}"),
            format!("ssh.mac_algorithms_{dir}"),
            format!("ssh.compression_algorithms_{dir}"),
        ]
    };
    let c2s = kex_fields("client_to_server");
    let s2c = kex_fields("server_to_client");
    let mut f: Vec<&str> = vec!["tcp.srcport"];
    f.extend(c2s.iter().map(String::as_str));
    let kex_client = tshark_rows(
        &pcap,
        &format!("ssh.message_code==20 && tcp.dstport=={SSH_PORT}"),
        &f,
    );
    let mut f: Vec<&str> = vec!["tcp.dstport"];
    f.extend(s2c.iter().map(String::as_str));
    let kex_server = tshark_rows(
        &pcap,
        &format!("ssh.message_code==20 && tcp.srcport=={SSH_PORT}"),
        &f,
    );
    let agents = tshark_rows(&pcap, "http.request", &["tcp.srcport", "http.user_agent"]);
    let p0f = p0f_rows(&pcap, &dir);

    let (mut tls_flows, mut ssh_flows, mut http_flows, mut p0f_checked) = (0, 0, 0, 0);
    let mut split_hellos = 0;
    for (port, (server_port, flow)) in &flows {
        let out = fingerprints_of(&sample_of(*server_port, flow, usize::MAX), &cfg);
        assert_eq!(out.counters, Default::default(), "flow {port}: {out:?}");
        for f in &out.fingerprints {
            eprintln!(
                "{port}->{server_port} {:<17} {} {:?}",
                f.kind.as_str(),
                f.value,
                f.label
            );
        }
        let fp = |k: Kind| {
            out.get(k)
                .unwrap_or_else(|| panic!("flow {port}: no {} in {out:#?}", k.as_str()))
        };

        // p0f, SYN and SYN-ACK.
        for (m, kind) in [("syn", Kind::TcpSyn), ("syn+ack", Kind::TcpSynAck)] {
            let (os, raw) = p0f
                .get(&(m.to_owned(), *port))
                .unwrap_or_else(|| panic!("p0f saw no {m} of {port}"));
            let ours = fp(kind);
            assert_eq!(&ours.value, raw, "flow {port} {m} signature");
            assert_eq!(
                ours.label.as_deref().unwrap_or("???"),
                os,
                "flow {port} {m} label"
            );
            p0f_checked += 1;
        }

        match *server_port {
            TLS_PORT => {
                tls_flows += 1;
                let hello_len =
                    5 + usize::from(u16::from_be_bytes([flow.client[3], flow.client[4]]));
                // Segments the ClientHello record took.
                let mut covered = 0;
                let taken = flow
                    .client_segments
                    .iter()
                    .take_while(|&&n| {
                        let before = covered;
                        covered += n;
                        before < hello_len
                    })
                    .count();
                // p0f's view of the SYN says which round this flow was in (MSS 260: round two).
                let small_mss = p0f
                    .get(&("syn".to_owned(), *port))
                    .is_some_and(|(_, sig)| sig.split(':').nth(3) == Some("260"));
                if small_mss && hello_len > 260 {
                    assert!(
                        taken > 1,
                        "flow {port}: {hello_len}-byte hello in {taken} segment"
                    );
                    split_hellos += 1;
                }
                let t = &hellos[port];
                assert_eq!(fp(Kind::Ja3).value, t[0], "flow {port} JA3");
                assert_eq!(
                    fp(Kind::Ja3).raw.as_deref(),
                    Some(t[1].as_str()),
                    "flow {port} ja3_full"
                );
                let t = &server_hellos[port];
                assert_eq!(fp(Kind::Ja3s).value, t[0], "flow {port} JA3S");
                assert_eq!(
                    fp(Kind::Ja3s).raw.as_deref(),
                    Some(t[1].as_str()),
                    "flow {port} ja3s_full"
                );
                assert!(
                    fp(Kind::Ja4).value.starts_with("t1"),
                    "flow {port} JA4 {:?}",
                    fp(Kind::Ja4)
                );
                // The same flow with a capture limit inside the ClientHello: partial, flagged.
                let cut = fingerprints_of(&sample_of(*server_port, flow, hello_len - 10), &cfg);
                let ja3 = cut.get(Kind::Ja3).expect("partial JA3");
                assert!(ja3.partial, "flow {port}: cut hello not partial");
                assert!(cut.counters.partial >= 2, "{:?}", cut.counters);
            }
            SSH_PORT => {
                ssh_flows += 1;
                let t = &kex_client[port];
                let raw = t.join(";");
                assert_eq!(
                    fp(Kind::Hassh).raw.as_deref(),
                    Some(raw.as_str()),
                    "flow {port} HASSH lists"
                );
                assert_eq!(fp(Kind::Hassh).value, md5sum(&raw), "flow {port} HASSH");
                let t = &kex_server[port];
                let raw = t.join(";");
                assert_eq!(fp(Kind::HasshServer).raw.as_deref(), Some(raw.as_str()));
                assert_eq!(
                    fp(Kind::HasshServer).value,
                    md5sum(&raw),
                    "flow {port} HASSH-server"
                );
                assert!(
                    fp(Kind::SshClientBanner)
                        .value
                        .starts_with("SSH-2.0-OpenSSH_")
                );
                assert!(
                    fp(Kind::SshServerBanner)
                        .value
                        .starts_with("SSH-2.0-OpenSSH_")
                );
            }
            HTTP_PORT => {
                http_flows += 1;
                assert_eq!(
                    fp(Kind::HttpUserAgent).value,
                    agents[port][0],
                    "flow {port} UA"
                );
                assert_eq!(
                    fp(Kind::HttpUserAgent).value,
                    "fpc-test/1.0 (\"quoted\"; x)"
                );
            }
            other => panic!("unexpected flow to port {other}"),
        }
    }
    assert_eq!(
        (tls_flows, ssh_flows, http_flows),
        (10, 2, 2),
        "flows seen: {:?}",
        flows.keys()
    );
    assert_eq!(p0f_checked, 28);
    // Round two: the ClientHellos longer than MSS 260 (all but OpenSSL's TLS 1.2 one without SNI)
    // came in several segments.
    assert!(
        split_hellos >= 4,
        "only {split_hellos} ClientHellos split over segments"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
