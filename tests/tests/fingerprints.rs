//! Fingerprints from the wire (issue 14), end to end, as root: real clients (curl, openssl
//! s_client, Python ssl, OpenSSH) in an attacker namespace talk to a TLS server and an SSH-banner
//! listener in a decky namespace across a bridge that `decnet sniffer` watches; dumpcap captures
//! the same packets on the attacker's bridge port.
//!
//! Checked against the capture, not against decnet's code: the SYN / SYN-ACK header bytes the
//! sensor shipped equal the captured ones; the payload it shipped is a prefix of the TCP byte
//! stream reassembled from the capture (and at least the first data segment); the stored JA3
//! equals tshark's `tls.handshake.ja3`; the stored HASSH is the MD5 (md5sum) of the KEXINIT lists
//! this test parses from the captured stream. A flow the decky opens gives no attacker
//! fingerprint. Namespaces are `fpw<pid>-…`; removed on drop.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use decnet_core::{model::Decky, repo::Repository};

const A_IP: &str = "10.214.0.10";
const D_IP: &str = "10.214.0.20";
const SNAPLEN: usize = 2048;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (cargo xtask setup does)"
    );
}

/// The namespaces and bridge; deleted on drop.
struct Net {
    sw: String,
    a: String,
    d: String,
    br: String,
    port_a: String,
    dir: PathBuf,
}

impl Net {
    fn new() -> Net {
        // SAFETY: no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test needs root (namespaces, BPF)"
        );
        let id = format!("fpw{}", std::process::id());
        let net = Net {
            sw: format!("{id}-sw"),
            a: format!("{id}-a"),
            d: format!("{id}-d"),
            br: format!("{id}br"),
            port_a: format!("{id}pa"),
            dir: std::env::temp_dir().join(format!("{id}-fingerprints")),
        };
        let _ = std::fs::remove_dir_all(&net.dir);
        std::fs::create_dir_all(&net.dir).unwrap();
        for ns in [&net.sw, &net.a, &net.d] {
            ip(&["netns", "add", ns]);
        }
        ip(&["-n", &net.sw, "link", "add", &net.br, "type", "bridge"]);
        ip(&["-n", &net.sw, "link", "set", &net.br, "up"]);
        for (ns, port, addr) in [
            (&net.a, net.port_a.clone(), A_IP),
            (&net.d, format!("{id}pd"), D_IP),
        ] {
            ip(&[
                "-n", &net.sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ]);
            ip(&["-n", &net.sw, "link", "set", &port, "master", &net.br, "up"]);
            run(Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]));
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn cmd(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.a, &self.d, &self.sw] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm_and_wait(c: &mut Kill, timeout: Duration) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.0.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < timeout {
        if c.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("process {} did not stop on SIGTERM", c.0.id());
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One TCP flow of the capture, by client (ip, port).
#[derive(Default, Debug)]
struct CapFlow {
    server_port: u16,
    syn: Option<Vec<u8>>,
    synack: Option<Vec<u8>>,
    /// (seq, payload, is the first data segment) per direction: 0 client, 1 server.
    segs: [Vec<(u32, Vec<u8>)>; 2],
    isn: [Option<u32>; 2],
}

impl CapFlow {
    fn stream(&self, dir: usize) -> Vec<u8> {
        let base = self.isn[dir].expect("handshake captured").wrapping_add(1);
        let mut segs: Vec<(usize, &Vec<u8>)> = self.segs[dir]
            .iter()
            .map(|(s, b)| (s.wrapping_sub(base) as usize, b))
            .collect();
        segs.sort();
        let mut out = Vec::new();
        for (off, b) in segs {
            if off > out.len() {
                break;
            }
            if off + b.len() > out.len() {
                out.extend_from_slice(&b[out.len() - off..]);
            }
        }
        out
    }
}

/// Reads a classic pcap file (Ethernet, IPv4, TCP) written by dumpcap -P.
fn read_pcap(path: &Path) -> BTreeMap<(IpAddr, u16), CapFlow> {
    let data = std::fs::read(path).unwrap();
    assert!(data.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2c3d4 || magic == 0xa1b23c4d,
        "not a little-endian pcap: {magic:#x}"
    );
    let mut flows: BTreeMap<(IpAddr, u16), CapFlow> = BTreeMap::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let f = &data[off + 16..off + 16 + incl];
        off += 16 + incl;
        if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 6 {
            continue;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[ihl..];
        let doff = usize::from(tcp[12] >> 4) * 4;
        let flags = tcp[13];
        let src = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
        let dst = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        // The client is the SYN's sender; look the flow up from either side.
        let (key, dir) = if flows.contains_key(&(src, sport)) {
            ((src, sport), 0)
        } else if flows.contains_key(&(dst, dport)) {
            ((dst, dport), 1)
        } else if flags & 0x12 == 0x02 {
            ((src, sport), 0)
        } else {
            continue; // a flow whose SYN was not captured
        };
        let fl = flows.entry(key).or_default();
        let hdr = ip[..ihl + doff].to_vec();
        if flags & 0x12 == 0x02 && dir == 0 && fl.syn.is_none() {
            fl.server_port = dport;
            fl.syn = Some(hdr);
            fl.isn[0] = Some(seq);
        } else if flags & 0x12 == 0x12 && dir == 1 && fl.synack.is_none() {
            fl.synack = Some(hdr);
            fl.isn[1] = Some(seq);
        }
        let payload = &ip[ihl + doff..total.min(ip.len())];
        if !payload.is_empty() {
            fl.segs[dir].push((seq, payload.to_vec()));
        }
    }
    flows
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The client's KEXINIT name-lists (kex; enc c2s; mac c2s; comp c2s) from its byte stream.
fn hassh_lists(stream: &[u8]) -> String {
    let nl = stream
        .iter()
        .position(|&b| b == b'\n')
        .expect("an SSH banner line");
    let p = &stream[nl + 1..];
    let plen = u32::from_be_bytes(p[0..4].try_into().unwrap()) as usize;
    assert!(p.len() >= 4 + plen, "the captured KEXINIT is complete");
    let payload = &p[5..4 + plen];
    assert_eq!(payload[0], 20, "SSH_MSG_KEXINIT");
    let mut at = 17; // type + 16-byte cookie
    let mut lists = Vec::new();
    for _ in 0..10 {
        let n = u32::from_be_bytes(payload[at..at + 4].try_into().unwrap()) as usize;
        lists.push(String::from_utf8(payload[at + 4..at + 4 + n].to_vec()).unwrap());
        at += 4 + n;
    }
    // kex, host key, enc c2s, enc s2c, mac c2s, mac s2c, comp c2s, …
    format!("{};{};{};{}", lists[0], lists[2], lists[4], lists[6])
}

fn md5sum(s: &str) -> String {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

const SSH_LISTENER: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("ready", flush=True)
def serve(c):
    c.settimeout(3)
    try:
        c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
        while c.recv(65536): pass
    except Exception: pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

const PY_TLS_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection((sys.argv[1], 443), timeout=5) as s:
    with ctx.wrap_socket(s, server_hostname="decky.example") as t:
        t.sendall(b"GET / HTTP/1.0\r\n\r\n"); t.recv(100)
"#;

const PY_DECKY_CLIENT: &str = r#"
import socket, sys
with socket.create_connection((sys.argv[1], 8080), timeout=5) as s:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: decky-originated/1.0\r\n\r\n")
"#;

const PY_SINK: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080)); s.listen(4); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.settimeout(2)
    try: c.recv(65536)
    except Exception: pass
    c.close()
"#;

fn spawn_ready(mut cmd: Command, what: &str, log: &Path) -> Kill {
    cmd.stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null());
    let child = Kill(cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}")));
    wait_for(what, Duration::from_secs(10), || {
        std::fs::read_to_string(log).is_ok_and(|s| s.contains("ready") || s.contains("ACCEPT"))
    });
    child
}

#[test]
fn real_clients_fingerprints_match_the_capture() {
    for (tool, pkg) in [
        ("tshark", "tshark"),
        ("dumpcap", "wireshark-common"),
        ("curl", "curl"),
        ("openssl", "openssl"),
        ("ssh", "openssh-client"),
        ("md5sum", "coreutils"),
    ] {
        require(tool, pkg);
    }
    let bin = decnet_e2e::sensor::decnet_bin().expect("the decnet binary");
    let net = Net::new();
    let dir = net.dir.clone();
    let db = dir.join("fp.db");
    let url = format!("sqlite://{}", db.display());

    // The decky is known to the repository before the sniffer starts (as `decnet deploy` does).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let repo = Repository::connect(&url).await.expect("open the test DB");
        let mut tx = repo.begin().await.unwrap();
        tx.upsert_deckies(&[Decky {
            name: "web-01".into(),
            ip: D_IP.parse().unwrap(),
            hostname: "web-01".into(),
            os_family: "linux".into(),
            archetype: "web".into(),
            persona: "{}".into(),
            status: "running".into(),
            services: vec![],
        }])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        repo.close().await;
    });

    // Servers in the decky, a sink in the attacker (for the decky-originated flow).
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=decky",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    let mut tls = net.cmd(&net.d, "openssl");
    tls.args([
        "s_server",
        "-accept",
        &format!("{D_IP}:443"),
        "-cert",
        cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-www",
    ]);
    let _tls = spawn_ready(tls, "openssl s_server", &dir.join("s_server.log"));
    let mut ssh = net.cmd(&net.d, "/usr/bin/python3");
    ssh.args(["-c", SSH_LISTENER, D_IP, "22"]);
    let _ssh = spawn_ready(ssh, "ssh banner listener", &dir.join("sshd.log"));
    let mut sink = net.cmd(&net.a, "/usr/bin/python3");
    sink.args(["-c", PY_SINK, A_IP]);
    let _sink = spawn_ready(sink, "attacker sink", &dir.join("sink.log"));

    // Capture and sensor.
    let pcap = dir.join("cap.pcap");
    let mut cap = net.cmd(&net.sw, "dumpcap");
    cap.args(["-q", "-P", "-i", &net.port_a, "-w", pcap.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut cap = Kill(cap.spawn().expect("dumpcap"));
    let dump = dir.join("samples.jsonl");
    let ready = dir.join("ready");
    let summary = dir.join("summary.json");
    let mut sn = net.cmd(&net.sw, bin.to_str().unwrap());
    sn.args([
        "sniffer",
        "--bridge",
        &net.br,
        "--daemon",
        "--db-url",
        &url,
        "--ready-file",
        ready.to_str().unwrap(),
        "--summary-json",
        summary.to_str().unwrap(),
        "--fp-settle",
        "1",
        "--fp-dump",
        dump.to_str().unwrap(),
    ])
    .stdout(std::fs::File::create(dir.join("sniffer.out")).unwrap())
    .stderr(std::fs::File::create(dir.join("sniffer.err")).unwrap());
    let mut sn = Kill(sn.spawn().expect("decnet sniffer"));
    wait_for("the sniffer to be ready", Duration::from_secs(30), || {
        std::fs::read_to_string(&ready).is_ok_and(|s| s.contains(&net.port_a))
    });
    wait_for("dumpcap to start", Duration::from_secs(10), || {
        std::fs::metadata(&pcap).is_ok_and(|m| m.len() >= 24)
    });

    // The clients.
    let quiet = |c: &mut Command| {
        let _ = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    quiet(
        net.cmd(&net.a, "curl")
            .args(["-sk", "--max-time", "5", &format!("https://{D_IP}/")]),
    );
    quiet(net.cmd(&net.a, "openssl").args([
        "s_client",
        "-connect",
        &format!("{D_IP}:443"),
        "-servername",
        "decky.example",
    ]));
    quiet(
        net.cmd(&net.a, "/usr/bin/python3")
            .args(["-c", PY_TLS_CLIENT, D_IP]),
    );
    quiet(net.cmd(&net.a, "ssh").args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        &format!("root@{D_IP}"),
        "true",
    ]));
    quiet(
        net.cmd(&net.d, "/usr/bin/python3")
            .args(["-c", PY_DECKY_CLIENT, A_IP]),
    );

    std::thread::sleep(Duration::from_secs(2));
    sigterm_and_wait(&mut cap, Duration::from_secs(10));
    sigterm_and_wait(&mut sn, Duration::from_secs(30));
    let err = std::fs::read_to_string(dir.join("sniffer.err")).unwrap_or_default();
    assert!(
        sn.0.try_wait().unwrap().is_some_and(|s| s.success()),
        "the sniffer failed:\n{err}"
    );

    // 1. The shipped bytes are the captured bytes.
    let cap = read_pcap(&pcap);
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(&dump)
        .expect("the sample dump")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut checked = 0;
    for s in &samples {
        let client: IpAddr = s["client"].as_str().unwrap().parse().unwrap();
        let cport = s["client_port"].as_u64().unwrap() as u16;
        let Some(c) = cap.get(&(client, cport)) else {
            continue; // a flow on the decky's port only (not on the captured port): none here
        };
        checked += 1;
        let ctx = format!("flow {client}:{cport} → {}", c.server_port);
        assert_eq!(
            s["client_syn"].as_str().map(unhex),
            c.syn.clone(),
            "{ctx}: SYN headers"
        );
        assert_eq!(
            s["server_synack"].as_str().map(unhex),
            c.synack.clone(),
            "{ctx}: SYN-ACK headers"
        );
        for (dir, field) in [(0, "client_payload"), (1, "server_payload")] {
            let stream = c.stream(dir);
            match s[field].as_array() {
                Some(p) => {
                    let got = unhex(p[0].as_str().unwrap());
                    assert!(
                        stream.starts_with(&got),
                        "{ctx}: {field} is not a prefix of the captured stream"
                    );
                    let first = c.segs[dir]
                        .iter()
                        .find(|(seq, _)| seq.wrapping_sub(c.isn[dir].unwrap().wrapping_add(1)) == 0)
                        .map(|(_, b)| b.len())
                        .unwrap_or(0);
                    assert!(
                        got.len() >= first.min(SNAPLEN),
                        "{ctx}: {field} has {} bytes, the first segment alone {first}",
                        got.len()
                    );
                    let truncated = p[1].as_bool().unwrap();
                    if got.len() == SNAPLEN && stream.len() > SNAPLEN {
                        assert!(
                            truncated,
                            "{ctx}: {field} was cut at the snap length, unmarked"
                        );
                    }
                    if got == stream {
                        assert!(!truncated, "{ctx}: {field} is complete, marked truncated");
                    }
                }
                None => assert!(
                    stream.is_empty(),
                    "{ctx}: {field} missing, but the capture has {} bytes",
                    stream.len()
                ),
            }
        }
    }
    assert!(
        checked >= 5,
        "only {checked} flows were both captured and sampled:\n{err}"
    );

    // 2. The stored fingerprints equal tshark's / the capture's.
    let rt_rows = rt.block_on(async {
        let repo = Repository::connect(&url).await.unwrap();
        let a = repo
            .fingerprints(A_IP.parse().unwrap(), 1000)
            .await
            .unwrap();
        let d = repo
            .fingerprints(D_IP.parse().unwrap(), 1000)
            .await
            .unwrap();
        let dk = repo.decky_fingerprints("web-01").await.unwrap();
        repo.close().await;
        (a, d, dk)
    });
    let (attacker, from_decky, decky) = rt_rows;
    let stored = |kind: &str| -> BTreeSet<String> {
        attacker
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.value.clone())
            .collect()
    };
    let tshark = run(Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "tls.handshake.type == 1",
        "-T",
        "fields",
        "-e",
        "tls.handshake.ja3",
    ]));
    let want_ja3: BTreeSet<String> = tshark
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    assert!(want_ja3.len() >= 2, "tshark saw ClientHellos: {want_ja3:?}");
    assert_eq!(stored("ja3"), want_ja3, "JA3: decnet vs tshark");

    let ssh_flow = cap
        .values()
        .find(|c| c.server_port == 22)
        .expect("the ssh flow was captured");
    let want_hassh = md5sum(&hassh_lists(&ssh_flow.stream(0)));
    assert_eq!(stored("hassh"), BTreeSet::from([want_hassh]), "HASSH");
    assert!(!stored("tcp_syn").is_empty());
    assert!(
        attacker
            .iter()
            .all(|f| f.decky == "web-01" && [22, 443].contains(&f.port)),
        "attacker fingerprints name the decky and port: {attacker:?}"
    );

    // 3. The decky's own side is under the decky; decky-originated flows give nothing.
    let dkinds: BTreeSet<&str> = decky.iter().map(|f| f.kind.as_str()).collect();
    assert!(
        dkinds.contains("tcp_synack")
            && dkinds.contains("ja3s")
            && dkinds.contains("ssh_server_banner"),
        "decky fingerprints: {dkinds:?}"
    );
    assert!(
        from_decky.is_empty(),
        "a flow the decky opened gave attacker fingerprints: {from_decky:?}"
    );

    // 4. Nothing lost in the kernel.
    let summ: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summ["counters"]["fp_lost"], 0, "{summ}");
    assert!(
        summ["counters"]["fp_headers"].as_u64().unwrap() >= 10,
        "{summ}"
    );
    assert!(
        summ["fingerprints"]["not_attacker"].as_u64().unwrap() >= 1,
        "{summ}"
    );
    assert_eq!(summ["fingerprints"]["bad_records"], 0, "{summ}");
}
