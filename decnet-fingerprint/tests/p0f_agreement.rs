//! p0f agreement over the whole database: for thousands of synthetic flows whose SYN and SYN-ACK
//! are built from the signatures of Debian's /etc/p0f/p0f.fp (every option layout, window form,
//! TTL distance, quirk and IP version it uses) plus random mutations (quirks flipped, TTLs beyond
//! the distance limit, windows off by one, unknown layouts), this test writes a pcap, runs p0f
//! 3.09b on it (`p0f -r`) and asserts that decnet-fingerprint's `tcp_syn` / `tcp_synack`
//! signature and OS label equal p0f's `raw_sig` and `os`/`app` for every flow. The packet builder
//! below is test-only; the expected values are p0f's.

use decnet_fingerprint::{Config, FlowSample, Kind, fingerprints_of, p0f::Database};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One `sig =` line split into its fields.
struct Sig {
    fields: Vec<String>,
}

fn db_sigs(text: &str) -> (Vec<Sig>, Vec<Sig>) {
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    let mut sec = "";
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            sec = if l == "[tcp:request]" {
                "req"
            } else if l == "[tcp:response]" {
                "resp"
            } else {
                ""
            };
            continue;
        }
        if let Some(v) = l
            .strip_prefix("sig")
            .and_then(|v| v.trim_start().strip_prefix('='))
        {
            let fields: Vec<String> = v.trim().split(':').map(str::to_owned).collect();
            match sec {
                "req" => req.push(Sig { fields }),
                "resp" => resp.push(Sig { fields }),
                _ => {}
            }
        }
    }
    (req, resp)
}

struct Pkt {
    v6: bool,
    ttl: u8,
    df: bool,
    id: u16,
    mbz: bool,
    ecn_ip: bool,
    flow: u32,
    ip_opts: usize,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    urg: u16,
    opts: Vec<u8>,
    payload: usize,
}

/// Builds the options of a p0f layout; None when they cannot make a valid header.
fn options(
    rng: &mut Rng,
    layout: &str,
    quirks: &str,
    mss: u16,
    ws: u8,
    syn_ack: bool,
) -> Option<Vec<u8>> {
    let mut o = Vec::new();
    if layout.is_empty() {
        return Some(o);
    }
    for item in layout.split(',') {
        match item {
            "mss" => o.extend_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]),
            "nop" => o.push(1),
            "ws" => o.extend_from_slice(&[3, 3, ws]),
            "sok" => o.extend_from_slice(&[4, 2]),
            "sack" => {
                o.extend_from_slice(&[5, 10]);
                o.extend_from_slice(&rng.next().to_be_bytes());
            }
            "ts" => {
                o.extend_from_slice(&[8, 10]);
                let ts1 = if quirks.contains("ts1-") {
                    0
                } else {
                    (rng.next() as u32) | 1
                };
                let ts2 = if quirks.contains("ts2+") || (syn_ack && rng.chance(50)) {
                    (rng.next() as u32) | 1
                } else {
                    0
                };
                o.extend_from_slice(&ts1.to_be_bytes());
                o.extend_from_slice(&ts2.to_be_bytes());
            }
            e if e.starts_with("eol+") => {
                let pad: usize = e[4..].parse().ok()?;
                o.push(0);
                let start = o.len();
                o.extend(std::iter::repeat_n(0u8, pad));
                if quirks.contains("opt+") && pad > 1 {
                    o[start] = 0x55;
                }
            }
            q if q.starts_with('?') => {
                let k: u8 = q[1..].parse().ok()?;
                o.extend_from_slice(&[k, 2]);
            }
            _ => return None,
        }
    }
    (o.len() % 4 == 0 && o.len() <= 40).then_some(o)
}

fn ittl_of(f: &str) -> (u8, bool) {
    if let Some(t) = f.strip_suffix('-') {
        return (t.parse().unwrap_or(64), true);
    }
    if let Some((a, b)) = f.split_once('+') {
        let (a, b): (u16, u16) = (a.parse().unwrap_or(64), b.parse().unwrap_or(0));
        return ((a + b).min(255) as u8, false);
    }
    (f.parse().unwrap_or(64), false)
}

/// A packet fitting `sig`, then mutated with some probability.
fn from_sig(rng: &mut Rng, sig: &Sig, syn_ack: bool, peer_mss: u16) -> Option<Pkt> {
    let f = &sig.fields;
    if f.len() != 8 {
        return None;
    }
    let v6 = match f[0].as_str() {
        "6" => true,
        "4" => false,
        _ => rng.chance(25),
    };
    let quirks = f[6].as_str();
    if quirks.contains("bad") {
        return None;
    }
    let (ittl, bad_ttl) = ittl_of(&f[1]);
    let dist = if bad_ttl {
        rng.below(20) as u8
    } else {
        rng.below(30) as u8
    };
    let mut ttl = ittl.saturating_sub(dist).max(1);
    let olen: usize = f[2].parse().ok()?;
    if v6 && olen > 0 {
        return None;
    }
    let mss: u16 = if f[3] == "*" {
        536 + rng.below(1000) as u16
    } else {
        f[3].parse().ok()?
    };
    if mss == 1331 {
        return None; // p0f-sendsyn's probes get p0f's special handling
    }
    let (w, s) = f[4].split_once(',')?;
    let ws: u8 = if s == "*" {
        rng.below(15) as u8
    } else {
        s.parse().ok()?
    };
    let win: u32 = if w == "*" {
        rng.below(65536) as u32
    } else if let Some(m) = w.strip_prefix("mss*") {
        u32::from(mss) * m.parse::<u32>().ok()?
    } else if let Some(m) = w.strip_prefix("mtu*") {
        (u32::from(mss) + if v6 { 60 } else { 40 }) * m.parse::<u32>().ok()?
    } else if let Some(m) = w.strip_prefix('%') {
        m.parse::<u32>().ok()? * (1 + rng.below(8) as u32)
    } else {
        w.parse().ok()?
    };
    let _ = peer_mss;
    let mut win = u16::try_from(win).ok()?;
    let mut opts = options(rng, &f[5], quirks, mss, ws, syn_ack)?;
    let has = |q: &str| quirks.split(',').any(|x| x == q);
    let mut p = Pkt {
        v6,
        ttl,
        df: has("df"),
        id: if has("id+") || (!has("df") && !has("id-")) {
            1 + rng.below(65000) as u16
        } else {
            0
        },
        mbz: has("0+"),
        ecn_ip: has("ecn"),
        flow: if has("flow") {
            1 + rng.below(0xffff) as u32
        } else {
            0
        },
        ip_opts: olen,
        seq: if has("seq-") {
            0
        } else {
            (rng.next() as u32) | 1
        },
        ack: if syn_ack {
            if has("ack-") {
                0
            } else {
                (rng.next() as u32) | 1
            }
        } else if has("ack+") {
            (rng.next() as u32) | 0x0100_0000
        } else {
            0
        },
        flags: 0x02
            | if syn_ack { 0x10 } else { 0 }
            | if has("urgf+") { 0x20 } else { 0 }
            | if has("pushf+") { 0x08 } else { 0 },
        win,
        urg: if has("uptr+") {
            1 + rng.below(1000) as u16
        } else {
            0
        },
        opts: Vec::new(),
        payload: if f[7] == "+" {
            1 + rng.below(40) as usize
        } else {
            0
        },
    };
    // Mutations: p0f's fuzzy rules, TTL limits, near-miss windows, foreign quirks.
    match rng.below(12) {
        0 => p.df = !p.df,
        1 => p.id = if p.id == 0 { 7 } else { 0 },
        2 => p.ecn_ip = !p.ecn_ip,
        3 => ttl = ttl.saturating_sub(40).max(1),
        4 => win = win.wrapping_add(1),
        5 => p.urg = 5,
        6 => {
            if let Some(b) = opts.iter_mut().find(|b| **b == 1) {
                *b = 0x1e; // NOP → unknown option kind 30: the layout changes (and may go bad)
            }
        }
        7 => ttl = 255,
        // 129..=219: more than 35 hops below 255, p0f prints `ttl+?`.
        8 => ttl = 129 + rng.below(91) as u8,
        _ => {}
    }
    if rng.chance(3) {
        p.ack = (rng.next() as u32) | 1; // includes SYNs with a stray ACK number
    }
    p.ttl = ttl;
    p.win = win;
    p.opts = opts;
    Some(p)
}

fn build(p: &Pkt, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&p.seq.to_be_bytes());
    tcp.extend_from_slice(&p.ack.to_be_bytes());
    tcp.push((((20 + p.opts.len()) / 4) as u8) << 4);
    tcp.push(p.flags);
    tcp.extend_from_slice(&p.win.to_be_bytes());
    tcp.extend_from_slice(&[0, 0]);
    tcp.extend_from_slice(&p.urg.to_be_bytes());
    tcp.extend_from_slice(&p.opts);
    tcp.extend(std::iter::repeat_n(b'A', p.payload));
    let mut ip = Vec::new();
    if p.v6 {
        let vtf: u32 = (6 << 28) | (if p.ecn_ip { 0x02 << 20 } else { 0 }) | p.flow;
        ip.extend_from_slice(&vtf.to_be_bytes());
        ip.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        ip.push(6);
        ip.push(p.ttl);
        ip.extend_from_slice(&[
            0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src[0], src[1], src[2], src[3],
        ]);
        ip.extend_from_slice(&[
            0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, dst[0], dst[1], dst[2], dst[3],
        ]);
    } else {
        let hl = 20 + p.ip_opts;
        ip.push(0x40 | (hl / 4) as u8);
        ip.push(if p.ecn_ip { 0x02 } else { 0 });
        ip.extend_from_slice(&((hl + tcp.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&p.id.to_be_bytes());
        let fo: u16 = if p.df { 0x4000 } else { 0 } | if p.mbz { 0x8000 } else { 0 };
        ip.extend_from_slice(&fo.to_be_bytes());
        ip.push(p.ttl);
        ip.push(6);
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend(std::iter::repeat_n(1u8, p.ip_opts));
    }
    ip.extend_from_slice(&tcp);
    ip
}

fn pcap_record(out: &mut Vec<u8>, t: u32, ip: &[u8], v6: bool) {
    let len = (14 + ip.len()) as u32;
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    out.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    out.extend_from_slice(ip);
}

#[test]
fn p0f_signatures_and_labels_equal_p0f_on_the_whole_database() {
    let db_path = decnet_fingerprint::p0f::SYSTEM_DB;
    assert!(
        Path::new(db_path).exists(),
        "{db_path} missing: install p0f (cargo xtask setup)"
    );
    let text = std::fs::read_to_string(db_path).expect("p0f.fp");
    let (req, resp) = db_sigs(&text);
    assert!(req.len() > 50 && resp.len() > 10);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut pcap = Vec::new();
    for v in [
        0xa1b2_c3d4u32.to_le_bytes(),
        [2, 0, 4, 0],
        [0; 4],
        [0; 4],
        65535u32.to_le_bytes(),
        1u32.to_le_bytes(),
    ] {
        pcap.extend_from_slice(&v);
    }
    let mut flows: BTreeMap<u16, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut t = 1_700_000_000u32;
    let mut n = 0u16;
    while n < 4000 {
        let sig = &req[rng.below(req.len() as u64) as usize];
        let Some(syn) = from_sig(&mut rng, sig, false, 0) else {
            continue;
        };
        let rsig = &resp[rng.below(resp.len() as u64) as usize];
        let Some(mut sa) = from_sig(&mut rng, rsig, true, 0) else {
            continue;
        };
        sa.v6 = syn.v6;
        if sa.v6 {
            sa.ip_opts = 0;
        }
        let sport = 1024 + n;
        let src = [10, (n >> 8) as u8, n as u8, 2];
        let dst = [10, 200, (n >> 8) as u8, n as u8];
        let syn_ip = build(&syn, src, dst, sport, 80);
        let sa_ip = build(&sa, dst, src, 80, sport);
        t += 1;
        pcap_record(&mut pcap, t, &syn_ip, syn.v6);
        pcap_record(&mut pcap, t, &sa_ip, sa.v6);
        flows.insert(sport, (syn_ip, sa_ip));
        n += 1;
    }
    let dir = std::env::temp_dir().join(format!("fpc-p0f-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pcap_path = dir.join("synthetic.pcap");
    std::fs::write(&pcap_path, &pcap).expect("write pcap");
    let log = dir.join("p0f.log");
    let out = Command::new("p0f")
        .arg("-r")
        .arg(&pcap_path)
        .args(["-f", db_path, "-o"])
        .arg(&log)
        .output()
        .unwrap_or_else(|e| panic!("p0f: {e} — install p0f (cargo xtask setup)"));
    assert!(
        out.status.success(),
        "p0f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("p0f log");
    let mut theirs: BTreeMap<(String, u16), (String, String)> = BTreeMap::new();
    let mut userland_syn = std::collections::BTreeSet::new();
    let (mut fuzzy, mut generic) = (0usize, 0usize);
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
            .expect("port");
        let os = kv.get("os").or(kv.get("app")).copied().unwrap_or("???");
        let params = kv.get("params").copied().unwrap_or("");
        fuzzy += usize::from(params.contains("fuzzy"));
        generic += usize::from(params.contains("generic"));
        if *m == "syn" && kv.contains_key("app") {
            userland_syn.insert(port);
        }
        theirs.insert(((*m).to_owned(), port), (os.to_owned(), (*sig).to_owned()));
    }

    let cfg = Config {
        p0f: Some(Arc::new(Database::parse(
            &std::fs::read_to_string(db_path).expect("db"),
        ))),
        ja4_plus: false,
    };
    let (mut compared, mut labelled, mut fuzzy_or_unknown) = (0usize, 0usize, 0usize);
    let mut mismatches = Vec::new();
    let far = theirs
        .values()
        .filter(|(_, sig)| sig.contains("+?"))
        .count();
    assert!(
        far >= 100,
        "only {far} signatures with an unguessable distance (`+?`)"
    );
    for (port, (syn, sa)) in &flows {
        let sample = FlowSample {
            proto: 6,
            server_port: 80,
            client_syn: Some(syn.clone()),
            server_synack: Some(sa.clone()),
            ..FlowSample::default()
        };
        let ours = fingerprints_of(&sample, &cfg);
        for (m, kind) in [("syn", Kind::TcpSyn), ("syn+ack", Kind::TcpSynAck)] {
            let Some((os, raw)) = theirs.get(&(m.to_owned(), *port)) else {
                // p0f ends a flow whose SYN matched a userland tool (e.g. NMap) and never looks
                // at its SYN-ACK; decnet does (it is the decky's). Nothing of p0f to compare.
                if m == "syn+ack" && userland_syn.contains(port) {
                    continue;
                }
                // Otherwise p0f drops what its parser rejects; so must we.
                assert!(
                    ours.get(kind).is_none(),
                    "p0f ignored {m} of {port}, we did not: {ours:?}"
                );
                continue;
            };
            let got = ours.get(kind);
            let (v, l) = (
                got.map(|f| f.value.as_str()),
                got.and_then(|f| f.label.as_deref()).unwrap_or("???"),
            );
            compared += 1;
            if os != "???" {
                labelled += 1;
            } else {
                fuzzy_or_unknown += 1;
            }
            if v != Some(raw.as_str()) || l != os {
                mismatches.push(format!("{m} {port}: p0f {raw} [{os}] / ours {v:?} [{l}]"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        mismatches.is_empty(),
        "{} of {compared} differ, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(15)]
    );
    eprintln!(
        "{compared} signatures equal p0f's ({labelled} labelled of which {fuzzy} fuzzy and \
         {generic} generic, {fuzzy_or_unknown} unknown to p0f)"
    );
    assert!(
        fuzzy >= 100 && generic >= 100,
        "fuzzy {fuzzy}, generic {generic}: mutations too tame"
    );
    assert!(compared >= 7000, "only {compared} compared");
    assert!(
        labelled >= 2000 && fuzzy_or_unknown >= 200,
        "{labelled} / {fuzzy_or_unknown}"
    );
}
