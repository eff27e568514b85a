//! The real `decnet sniffer` binary, end to end, against the oracle and against arithmetic.
//!
//! Each test builds its own lab, runs the sniffer in the lab's switch namespace, sends known
//! traffic, stops the sniffer with SIGTERM and compares its DB rows and summary counters with
//! what the AF_PACKET oracle saw at the same bridge ports and with what was sent.
//!
//! Needs root and the binary (`DECNET_BIN`, or target/{release,debug}/decnet): build it with
//! `cargo xtask build`, or run everything with `cargo xtask test`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use decnet_e2e::{
    flood,
    frames::{
        self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_P_LLDP, Ipv4,
        NOBODY_MAC,
    },
    netns::{HOST_IF, Host, Lab, LabOptions},
    oracle::{FlowKey, Oracle, Report},
    problems::Problems,
    sensor::{self, FlowRow, Mode, Outcome, Sniffer, SnifferOptions},
    traffic::{self, TcpServer, UdpSink},
};
use time::OffsetDateTime;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(500);
const MAX_WAIT: Duration = Duration::from_secs(15);

fn rows_table(rows: &[FlowRow]) -> String {
    let mut s = String::from(
        "DB rows (port src:sport -> dst:dport proto vlan packets bytes flags ended):\n",
    );
    for r in rows {
        s += &format!(
            "  {:>4} {} {}:{} -> {}:{} p{} v{} {} pkts {} B flags {:#04x} ended={} [{} .. {}]\n",
            r.id,
            r.port,
            r.src_ip,
            r.src_port,
            r.dst_ip,
            r.dst_port,
            r.proto,
            r.vlan,
            r.packets,
            r.bytes,
            r.tcp_flags,
            r.ended,
            r.first_seen,
            r.last_seen
        );
    }
    s
}

fn context(out: &Outcome, oracle: &Report) -> String {
    let mut s = rows_table(&out.flows);
    s += &format!("summary: {:?}\n", out.summary);
    s += "oracle flows:\n";
    for (k, v) in &oracle.flows {
        s += &format!(
            "  {k} ports {:?} {} pkts {} B flags {:#04x} vlan {}\n",
            v.ports, v.packets, v.bytes, v.tcp_flags, v.vlan
        );
    }
    s += &format!("oracle ports: {:?}\n", oracle.ports);
    s += &format!("sniffer logs (tail):\n{}", tail(&out.stderr, 40));
    s
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn start_sniffer(lab: &Lab, mode: Mode) -> Sniffer {
    let mut sn =
        Sniffer::start(lab, &SnifferOptions::new(mode)).unwrap_or_else(|e| panic!("{e:#}"));
    let listed = sn
        .wait_ready(&lab.port_names(), READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        lab.port_names().iter().collect::<BTreeSet<_>>(),
        "the ready file lists exactly the bridge's ports"
    );
    sn
}

/// Stops the sniffer (it must still be running: it survived the traffic) and the oracle.
fn finish(sn: &mut Sniffer, oracle: Oracle) -> (Outcome, Report) {
    oracle.wait_quiet(QUIET, MAX_WAIT).expect("traffic settles");
    assert!(
        sn.is_running(),
        "the sniffer died during the test; logs:\n{}",
        sn.logs()
    );
    let out = sn.stop().unwrap_or_else(|e| panic!("{e:#}"));
    let report = oracle.stop().expect("oracle");
    (out, report)
}

/// Counter invariants that hold whatever the traffic: every packet is in a flow or a drop reason.
/// With `same_window`, the sniffer and the oracle watched the same frames: totals must be equal.
fn check_counters(
    p: &mut Problems,
    out: &Outcome,
    lab: &Lab,
    mode: Mode,
    oracle: &Report,
    same_window: bool,
) {
    let s = &out.summary;
    if let Err(e) = s.check_counter_names() {
        p.0.push(format!("{e:#}"));
        return;
    }
    p.eq("summary.bridge", s.bridge.as_str(), lab.bridge());
    p.eq("summary.mode", s.mode.as_str(), mode.as_str());
    p.eq(
        "summary.ports",
        s.ports.iter().cloned().collect::<BTreeSet<_>>(),
        lab.port_names().into_iter().collect::<BTreeSet<_>>(),
    );
    p.eq(
        "packets == flow_packets + drops",
        s.counter("packets"),
        s.counter("flow_packets") + s.drops(),
    );
    p.eq("events_lost", s.counter("events_lost"), 0);
    p.eq("drop_map_full", s.counter("drop_map_full"), 0);
    if same_window {
        // The sniffer was attached before the oracle started and until after the traffic ended,
        // and the lab is silent otherwise: both saw the same frames.
        p.eq(
            "summary packets == frames the oracle saw enter the bridge",
            s.counter("packets"),
            oracle.total_frames(),
        );
        p.eq(
            "summary bytes == frame bytes the oracle saw enter the bridge",
            s.counter("bytes"),
            oracle.ports.values().map(|x| x.bytes).sum::<u64>(),
        );
    } else {
        // At least the flows' packets are the same.
        p.eq(
            "summary flow_packets == packets of the flows the oracle saw",
            s.counter("flow_packets"),
            oracle.flows.values().map(|f| f.packets).sum::<u64>(),
        );
    }
}

/// What a direction of a flow must look like, from what was sent.
#[derive(Clone, Debug)]
enum Expect {
    /// One direction of a TCP exchange carrying `payload` bytes; `ip_hdr` 20 (v4) or 40 (v6).
    Tcp {
        payload: u64,
        ip_hdr: u64,
    },
    Udp {
        count: u64,
        size: u64,
    },
    /// ICMP echo requests or replies.
    Icmp {
        count: u64,
        size: u64,
    },
}

struct Plan {
    expect: BTreeMap<FlowKey, (String, Expect)>,
    tcp_connections: u64,
}

impl Plan {
    fn tcp(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        cport: &str,
        sport: &str,
        req: usize,
        resp: usize,
    ) {
        let ip_hdr = if client.is_ipv4() { 20 } else { 40 };
        let k = FlowKey::new(client.ip(), client.port(), server.ip(), server.port(), 6);
        self.expect.insert(
            k,
            (
                cport.into(),
                Expect::Tcp {
                    payload: req as u64,
                    ip_hdr,
                },
            ),
        );
        self.expect.insert(
            k.reverse(),
            (
                sport.into(),
                Expect::Tcp {
                    payload: resp as u64,
                    ip_hdr,
                },
            ),
        );
        self.tcp_connections += 1;
    }
    /// Conversations (both directions under one key, as the kernel table keys them).
    fn canonical_flows(&self) -> usize {
        self.expect
            .keys()
            .map(|k| if *k <= k.reverse() { *k } else { k.reverse() })
            .collect::<BTreeSet<_>>()
            .len()
    }
}

fn main_scenario(mode: Mode) {
    let lab = Lab::new(&["attacker", "decky1", "decky2"], LabOptions::default()).expect("lab");
    let (att, d1, d2) = (
        lab.host("attacker").clone(),
        lab.host("decky1").clone(),
        lab.host("decky2").clone(),
    );
    let srv1 = TcpServer::start(&d1.ns, d1.v4(8080)).expect("server");
    let srv2 = TcpServer::start(&d2.ns, d2.v4(8080)).expect("server");
    let srv6 = TcpServer::start(&d1.ns, d1.v6(8081)).expect("server");
    let udp_ports = [
        (5001u16, 34usize, 64usize),
        (5002, 33, 200),
        (5003, 33, 512),
    ];
    let sinks: Vec<UdpSink> = udp_ports
        .iter()
        .map(|(p, ..)| UdpSink::start(&d1.ns, d1.v4(*p)).expect("sink"))
        .collect();

    let started = OffsetDateTime::now_utc();
    let mut sn = start_sniffer(&lab, mode);
    let oracle = Oracle::start(&lab).expect("oracle");

    let mut plan = Plan {
        expect: BTreeMap::new(),
        tcp_connections: 0,
    };
    // 10 TCP exchanges with each decky, all sizes different.
    let mut exchanges = Vec::new();
    for i in 0..10u16 {
        exchanges.push((
            att.v4(41000 + i),
            srv1.addr,
            &d1,
            20 + 37 * i as usize,
            40 + 53 * i as usize,
        ));
        exchanges.push((
            att.v4(42000 + i),
            srv2.addr,
            &d2,
            30 + 41 * i as usize,
            10 + 61 * i as usize,
        ));
    }
    for i in 0..3u16 {
        exchanges.push((
            att.v6(44000 + i),
            srv6.addr,
            &d1,
            100 + 10 * i as usize,
            300 + 100 * i as usize,
        ));
    }
    let udp_src = att.v4(43000);
    let icmp = (5u64, 56usize);
    att.run(|| -> anyhow::Result<()> {
        for (c, s, _, req, resp) in &exchanges {
            traffic::tcp_exchange(Some(*c), *s, *req, *resp)?;
        }
        let sends: Vec<_> = udp_ports
            .iter()
            .map(|&(p, n, size)| (d1.v4(p), n, size))
            .collect();
        traffic::udp_send(udp_src, &sends)?;
        let replies = traffic::icmp_echo(d1.ipv4, 0x1d1d, icmp.0 as u16, icmp.1)?;
        anyhow::ensure!(replies as u64 == icmp.0, "{replies} echo replies");
        Ok(())
    })
    .unwrap()
    .expect("attacker traffic");
    // Decky to decky.
    let lateral = [(d1.v4(45000), 50usize, 60usize), (d1.v4(45001), 70, 80)];
    d1.run(|| -> anyhow::Result<()> {
        for (c, req, resp) in lateral {
            traffic::tcp_exchange(Some(c), srv2.addr, req, resp)?;
        }
        Ok(())
    })
    .unwrap()
    .expect("lateral traffic");
    for (sink, (_, n, _)) in sinks.iter().zip(udp_ports) {
        sink.wait_for(n as u64, MAX_WAIT).expect("datagrams arrive");
    }

    for (c, s, dh, req, resp) in &exchanges {
        plan.tcp(*c, *s, &att.port, &dh.port, *req, *resp);
    }
    for (c, req, resp) in lateral {
        plan.tcp(c, srv2.addr, &d1.port, &d2.port, req, resp);
    }
    for (p, n, size) in udp_ports {
        let k = FlowKey::new(udp_src.ip(), udp_src.port(), d1.ipv4.into(), p, 17);
        plan.expect.insert(
            k,
            (
                att.port.clone(),
                Expect::Udp {
                    count: n as u64,
                    size: size as u64,
                },
            ),
        );
    }
    let (a, d): (IpAddr, IpAddr) = (att.ipv4.into(), d1.ipv4.into());
    plan.expect.insert(
        FlowKey::new(a, 8 << 8, d, 0, 1),
        (
            att.port.clone(),
            Expect::Icmp {
                count: icmp.0,
                size: icmp.1 as u64,
            },
        ),
    );
    plan.expect.insert(
        FlowKey::new(d, 0, a, 0, 1),
        (
            d1.port.clone(),
            Expect::Icmp {
                count: icmp.0,
                size: icmp.1 as u64,
            },
        ),
    );

    let (out, report) = finish(&mut sn, oracle);
    let finished = OffsetDateTime::now_utc();
    assert_eq!(
        srv1.stop().unwrap() + srv2.stop().unwrap() + srv6.stop().unwrap(),
        plan.tcp_connections
    );
    let ctx = context(&out, &report);
    let mut p = Problems::default();

    // The harness itself: the oracle saw exactly the planned flows (ICMPv6 aside).
    let oracle_keys: BTreeSet<FlowKey> = report
        .flows
        .keys()
        .filter(|k| k.proto != 58)
        .copied()
        .collect();
    let plan_keys: BTreeSet<FlowKey> = plan.expect.keys().copied().collect();
    assert_eq!(
        oracle_keys, plan_keys,
        "harness: the oracle saw other flows than were sent\n{ctx}"
    );

    // (a) exactly the expected rows, per protocol; ICMPv6 only reported.
    let rows: Vec<&FlowRow> = out.flows.iter().filter(|r| r.proto != 58).collect();
    let icmpv6 = out.flows.len() - rows.len();
    eprintln!(
        "[{}] {} rows, {icmpv6} ICMPv6 rows (not checked)",
        mode.as_str(),
        out.flows.len()
    );
    let count = |f: &dyn Fn(&FlowKey) -> bool| -> (usize, usize) {
        (
            rows.iter().filter(|r| f(&r.key())).count(),
            plan.expect.keys().filter(|k| f(k)).count(),
        )
    };
    for (name, f) in [
        (
            "TCP/IPv4",
            &(|k: &FlowKey| k.proto == 6 && k.src.is_ipv4()) as &dyn Fn(&FlowKey) -> bool,
        ),
        ("TCP/IPv6", &|k: &FlowKey| k.proto == 6 && k.src.is_ipv6()),
        ("UDP", &|k: &FlowKey| k.proto == 17),
        ("ICMP", &|k: &FlowKey| k.proto == 1),
        ("IPv4, any protocol", &|k: &FlowKey| k.src.is_ipv4()),
    ] {
        let (got, want) = count(f);
        p.eq(format!("number of {name} rows"), got, want);
    }
    p.eq(
        "number of rows (ICMPv6 aside)",
        rows.len(),
        plan.expect.len(),
    );
    p.eq("expected 44+6+3+2 rows", plan.expect.len(), 55);

    // (d) no duplicates: every direction is one row.
    let mut seen = BTreeMap::new();
    for r in &rows {
        *seen.entry((r.key(), r.first_seen.clone())).or_insert(0) += 1;
    }
    for ((k, first), n) in &seen {
        p.check(*n == 1, || format!("{n} rows for {k} first_seen {first}"));
    }
    let mut by_key: BTreeMap<FlowKey, Vec<&FlowRow>> = BTreeMap::new();
    for r in &rows {
        by_key.entry(r.key()).or_default().push(r);
    }
    for (k, rs) in &by_key {
        p.check(rs.len() == 1, || {
            format!(
                "{} rows for {k} (one direction of one flow must be one row)",
                rs.len()
            )
        });
    }

    for (k, (port, exp)) in &plan.expect {
        let Some(row) = by_key.get(k).and_then(|v| v.first()) else {
            p.0.push(format!("no row for {k} ({exp:?})"));
            continue;
        };
        let o = &report.flows[k];
        // (b) exactly the oracle's counts, port, flags.
        p.eq(format!("{k}: packets (oracle)"), row.packets, o.packets);
        p.eq(format!("{k}: bytes (oracle)"), row.bytes, o.bytes);
        p.eq(format!("{k}: port"), &row.port, port);
        p.eq(
            format!("{k}: oracle port"),
            o.ports.iter().collect::<Vec<_>>(),
            vec![port],
        );
        p.eq(
            format!("{k}: tcp_flags (oracle)"),
            row.tcp_flags,
            o.tcp_flags,
        );
        p.eq(format!("{k}: vlan"), row.vlan, 0);
        p.eq(format!("{k}: bridge"), row.bridge.as_str(), lab.bridge());
        // (c) arithmetic from what was sent.
        match exp {
            Expect::Tcp { payload, ip_hdr } => {
                let base = 14 + ip_hdr + 20;
                p.check(row.bytes >= base * row.packets + 4, || {
                    format!("{k}: {} bytes for {} packets", row.bytes, row.packets)
                });
                p.eq(
                    format!("{k}: bytes − {base}·packets − 4 (payload)"),
                    row.bytes.wrapping_sub(base * row.packets + 4),
                    *payload,
                );
                // (f) every connection completed (FIN both ways).
                p.eq(format!("{k}: ended"), row.ended, true);
                p.eq(
                    format!("{k}: SYN and FIN seen, no RST"),
                    row.tcp_flags & 0x07,
                    0x03,
                );
            }
            Expect::Udp { count, size } => {
                p.eq(format!("{k}: packets (sent)"), row.packets, *count);
                p.eq(format!("{k}: bytes (sent)"), row.bytes, count * (42 + size));
            }
            Expect::Icmp { count, size } => {
                p.eq(format!("{k}: packets (sent)"), row.packets, *count);
                p.eq(format!("{k}: bytes (sent)"), row.bytes, count * (42 + size));
            }
        }
        // Timestamps: RFC 3339 UTC, ordered, within the test.
        match (
            sensor::parse_time(&row.first_seen),
            sensor::parse_time(&row.last_seen),
        ) {
            (Ok(f), Ok(l)) => {
                let slack = time::Duration::seconds(2);
                p.check(f <= l, || {
                    format!("{k}: first_seen {f} after last_seen {l}")
                });
                p.check(f >= started - slack && l <= finished + slack, || {
                    format!("{k}: [{f}, {l}] not within the test [{started}, {finished}]")
                });
                p.check(f.offset().is_utc(), || {
                    format!("{k}: first_seen {} is not UTC", row.first_seen)
                });
            }
            (a, b) => p.0.push(format!("{k}: bad timestamps {a:?} {b:?}")),
        }
    }

    // (e) counters.
    check_counters(&mut p, &out, &lab, mode, &report, true);
    let s = &out.summary;
    p.check(
        s.counter("flows_started") >= plan.canonical_flows() as u64,
        || {
            format!(
                "flows_started {} < {} conversations sent",
                s.counter("flows_started"),
                plan.canonical_flows()
            )
        },
    );
    p.check(s.counter("flows_ended") >= plan.tcp_connections, || {
        format!(
            "flows_ended {} < {} TCP connections closed",
            s.counter("flows_ended"),
            plan.tcp_connections
        )
    });
    p.check(s.flows_written >= rows.len() as u64, || {
        format!("flows_written {} < {} rows", s.flows_written, rows.len())
    });
    p.assert_none(&ctx);
}

#[test]
fn sensor_tc_matches_oracle_and_arithmetic() {
    main_scenario(Mode::Tc);
}

#[test]
fn sensor_xdp_matches_oracle_and_arithmetic() {
    main_scenario(Mode::Xdp);
}

// --- a port that joins after the sniffer started --------------------------------------------------

fn late_port(mode: Mode) {
    let mut lab = Lab::new(&["attacker", "decky1"], LabOptions::default()).expect("lab");
    let d1 = lab.host("decky1").clone();
    let srv = TcpServer::start(&d1.ns, d1.v4(8080)).expect("server");
    let sink = UdpSink::start(&d1.ns, d1.v4(5001)).expect("sink");
    let mut sn = start_sniffer(&lab, mode);

    let late: Host = lab.add_host("late").expect("adding a host").clone();
    let listed = sn
        .wait_ready(&lab.port_names(), READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(listed.contains(&late.port), "{listed:?}");
    let oracle = Oracle::start(&lab).expect("oracle");

    let (c1, c2, u) = (late.v4(46000), late.v4(46001), late.v4(46002));
    late.run(|| -> anyhow::Result<()> {
        traffic::tcp_exchange(Some(c1), srv.addr, 111, 222)?;
        traffic::tcp_exchange(Some(c2), srv.addr, 333, 444)?;
        traffic::udp_send(u, &[(sink.addr, 10, 99)])?;
        Ok(())
    })
    .unwrap()
    .expect("traffic from the late host");
    sink.wait_for(10, MAX_WAIT).expect("datagrams arrive");
    let (out, report) = finish(&mut sn, oracle);
    let ctx = context(&out, &report);
    let mut p = Problems::default();

    let srv_addr = srv.addr;
    let expect = [
        (
            FlowKey::new(c1.ip(), c1.port(), srv_addr.ip(), 8080, 6),
            &late.port,
        ),
        (
            FlowKey::new(srv_addr.ip(), 8080, c1.ip(), c1.port(), 6),
            &d1.port,
        ),
        (
            FlowKey::new(c2.ip(), c2.port(), srv_addr.ip(), 8080, 6),
            &late.port,
        ),
        (
            FlowKey::new(srv_addr.ip(), 8080, c2.ip(), c2.port(), 6),
            &d1.port,
        ),
        (
            FlowKey::new(u.ip(), u.port(), sink.addr.ip(), 5001, 17),
            &late.port,
        ),
    ];
    for (k, port) in &expect {
        let rows: Vec<&FlowRow> = out.flows.iter().filter(|r| r.key() == *k).collect();
        p.eq(format!("{k}: rows"), rows.len(), 1);
        let Some(row) = rows.first() else { continue };
        let o = &report.flows[k];
        p.eq(format!("{k}: port"), &row.port, *port);
        p.eq(format!("{k}: packets (oracle)"), row.packets, o.packets);
        p.eq(format!("{k}: bytes (oracle)"), row.bytes, o.bytes);
        if k.proto == 17 {
            p.eq(format!("{k}: bytes (sent)"), row.bytes, 10 * (42 + 99));
        } else {
            p.eq(format!("{k}: ended"), row.ended, true);
        }
    }
    p.eq(
        "rows (ICMPv6 aside)",
        out.flows.iter().filter(|r| r.proto != 58).count(),
        expect.len(),
    );
    // Not the same window: the late host's MLD reports (IPv6 hop-by-hop: drop_ipv6_ext) go out as
    // it joins, before the oracle watches its port, while the sniffer may already be attached.
    check_counters(&mut p, &out, &lab, mode, &report, false);
    for reason in [
        "truncated",
        "bad_header",
        "non_ip",
        "fragment",
        "unsupported",
    ] {
        p.eq(
            format!("drop_{reason}"),
            out.summary.counter(&format!("drop_{reason}")),
            0,
        );
    }
    p.assert_none(&ctx);
    assert_eq!(srv.stop().unwrap(), 2);
}

#[test]
fn sensor_tc_late_port() {
    late_port(Mode::Tc);
}

#[test]
fn sensor_xdp_late_port() {
    late_port(Mode::Xdp);
}

// --- hostile frames -------------------------------------------------------------------------------

fn hostile(mode: Mode) {
    let lab = Lab::new(&["attacker", "decky1"], LabOptions::default()).expect("lab");
    let (att, d1) = (lab.host("attacker").clone(), lab.host("decky1").clone());
    let mut sn = start_sniffer(&lab, mode);
    let oracle = Oracle::start(&lab).expect("oracle");

    let (src, dst) = (att.ipv4, d1.ipv4);
    let eth = |ethertype: u16, payload: &[u8]| {
        frames::ethernet(NOBODY_MAC, att.mac, &[], ethertype, payload)
    };
    let tcp_ok = frames::tcp(1234, 80, 0x02, 5, &[]);
    let udp10 = frames::udp(4000, 5000, &[0x55; 10]);
    let mut kinds: Vec<(&str, &str, usize, Vec<u8>)> = Vec::new();

    // drop_truncated: 3 + 2 + 2 + 1 = 8
    kinds.push((
        "truncated",
        "Ethernet header only, announcing IPv4 (14 bytes)",
        3,
        eth(ETH_P_IP, &[]),
    ));
    let mut short_total = Ipv4::new(src, dst, 6);
    short_total.total_len = Some(30);
    kinds.push((
        "truncated",
        "IPv4 total length 30 < IHL 20 + TCP 20",
        2,
        eth(ETH_P_IP, &short_total.build(&tcp_ok[..10])),
    ));
    let mut cut = Ipv4::new(src, dst, 6);
    cut.total_len = Some(40);
    kinds.push((
        "truncated",
        "frame ends inside the TCP header",
        2,
        eth(ETH_P_IP, &cut.build(&tcp_ok[..10])),
    ));
    kinds.push((
        "truncated",
        "IPv6 header cut at 20 bytes",
        1,
        eth(
            ETH_P_IPV6,
            &frames::ipv6(att.ipv6, d1.ipv6, 17, &udp10)[..20],
        ),
    ));
    // drop_bad_header: 4 + 3 + 2 + 2 = 11
    let mut ihl3 = Ipv4::new(src, dst, 17);
    ihl3.ihl = 3;
    kinds.push((
        "bad_header",
        "IPv4 IHL 3",
        4,
        eth(ETH_P_IP, &ihl3.build(&udp10)),
    ));
    let mut zero = Ipv4::new(src, dst, 17);
    zero.total_len = Some(0);
    kinds.push((
        "bad_header",
        "IPv4 total length 0",
        3,
        eth(ETH_P_IP, &zero.build(&udp10)),
    ));
    let mut v6in4 = Ipv4::new(src, dst, 17);
    v6in4.version = 6;
    kinds.push((
        "bad_header",
        "version 6 in an IPv4 frame",
        2,
        eth(ETH_P_IP, &v6in4.build(&udp10)),
    ));
    kinds.push((
        "bad_header",
        "TCP data offset 2",
        2,
        eth(
            ETH_P_IP,
            &Ipv4::new(src, dst, 6).build(&frames::tcp(1234, 80, 0x02, 2, &[])),
        ),
    ));
    // drop_non_ip: 7 + 6 = 13
    kinds.push(("non_ip", "ARP ethertype", 7, eth(ETH_P_ARP, &[0u8; 28])));
    kinds.push(("non_ip", "LLDP ethertype", 6, eth(ETH_P_LLDP, &[0u8; 32])));
    // drop_fragment: 5
    let mut frag = Ipv4::new(src, dst, 17);
    frag.flags_frag = 185;
    kinds.push((
        "fragment",
        "IPv4 non-first fragment",
        5,
        eth(ETH_P_IP, &frag.build(&udp10)),
    ));
    // drop_ipv6_ext: 3 + 1 = 4
    kinds.push((
        "ipv6_ext",
        "IPv6 hop-by-hop header",
        3,
        eth(
            ETH_P_IPV6,
            &frames::ipv6(att.ipv6, d1.ipv6, 0, &frames::ipv6_hop_by_hop(17, &udp10)),
        ),
    ));
    kinds.push((
        "ipv6_ext",
        "IPv6 routing header",
        1,
        eth(
            ETH_P_IPV6,
            &frames::ipv6(att.ipv6, d1.ipv6, 43, &frames::ipv6_hop_by_hop(17, &udp10)),
        ),
    ));
    // drop_unsupported: 9
    let tags3 = [(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)];
    let ip_udp = Ipv4::new(src, dst, 17).build(&udp10);
    kinds.push((
        "unsupported",
        "three VLAN tags",
        9,
        frames::ethernet(NOBODY_MAC, att.mac, &tags3, ETH_P_IP, &ip_udp),
    ));

    let mut all = Vec::new();
    for (_, _, n, f) in &kinds {
        all.extend(std::iter::repeat_n(f.clone(), *n));
    }
    att.run(|| frames::send_frames(HOST_IF, &all))
        .unwrap()
        .expect("sending frames");
    let (out, report) = finish(&mut sn, oracle);
    let ctx = context(&out, &report);
    let mut p = Problems::default();

    // The harness: the frames entered the bridge at the attacker's port as sent, and nothing else.
    let ap = &report.ports[&att.port];
    assert_eq!(
        ap.frames,
        all.len() as u64,
        "harness: frames at the attacker's port\n{ctx}"
    );
    assert_eq!(
        report.total_frames(),
        all.len() as u64,
        "harness: no other frame entered the bridge\n{ctx}"
    );
    assert!(
        report.flows.is_empty(),
        "harness: none of these frames is a flow\n{ctx}"
    );

    for reason in [
        "truncated",
        "bad_header",
        "non_ip",
        "fragment",
        "ipv6_ext",
        "unsupported",
    ] {
        let sent: usize = kinds.iter().filter(|k| k.0 == reason).map(|k| k.2).sum();
        let what: Vec<&str> = kinds
            .iter()
            .filter(|k| k.0 == reason)
            .map(|k| k.1)
            .collect();
        p.eq(
            format!("drop_{reason} (sent: {what:?})"),
            out.summary.counter(&format!("drop_{reason}")),
            sent as u64,
        );
    }
    p.eq("flow_packets", out.summary.counter("flow_packets"), 0);
    p.eq("rows", out.flows.len(), 0);
    check_counters(&mut p, &out, &lab, mode, &report, true);
    p.assert_none(&ctx);
}

#[test]
fn sensor_tc_hostile_frames() {
    hostile(Mode::Tc);
}

#[test]
fn sensor_xdp_hostile_frames() {
    hostile(Mode::Xdp);
}

// --- VLAN-tagged flows ----------------------------------------------------------------------------

/// Frames with one 802.1Q tag and with two (802.1ad + 802.1Q) are flows keyed by the innermost
/// VLAN id and counted with their tags' bytes: what entered the port.
fn vlan_flows(mode: Mode) {
    let lab = Lab::new(&["attacker", "decky1"], LabOptions::default()).expect("lab");
    let (att, d1) = (lab.host("attacker").clone(), lab.host("decky1").clone());
    let mut sn = start_sniffer(&lab, mode);
    let oracle = Oracle::start(&lab).expect("oracle");

    let ip_udp =
        |sport: u16| Ipv4::new(att.ipv4, d1.ipv4, 17).build(&frames::udp(sport, 5000, &[0x55; 10]));
    let one = frames::ethernet(
        NOBODY_MAC,
        att.mac,
        &[(ETH_P_8021Q, 100)],
        ETH_P_IP,
        &ip_udp(4001),
    );
    let two = frames::ethernet(
        NOBODY_MAC,
        att.mac,
        &[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)],
        ETH_P_IP,
        &ip_udp(4002),
    );
    let mut all = vec![one.clone(); 6];
    all.extend(std::iter::repeat_n(two.clone(), 4));
    att.run(|| frames::send_frames(HOST_IF, &all))
        .unwrap()
        .expect("sending frames");
    let (out, report) = finish(&mut sn, oracle);
    let ctx = context(&out, &report);
    let mut p = Problems::default();

    let k1 = FlowKey::new(att.ipv4.into(), 4001, d1.ipv4.into(), 5000, 17);
    let k2 = FlowKey::new(att.ipv4.into(), 4002, d1.ipv4.into(), 5000, 17);
    // The harness: the oracle saw the tags.
    assert_eq!(
        (report.flows[&k1].vlan, report.flows[&k1].bytes),
        (100, 6 * 56),
        "harness\n{ctx}"
    );
    assert_eq!(
        (report.flows[&k2].vlan, report.flows[&k2].bytes),
        (20, 4 * 60),
        "harness\n{ctx}"
    );

    let mut got: Vec<(FlowKey, u16, u64, u64)> = out
        .flows
        .iter()
        .map(|r| (r.key(), r.vlan, r.packets, r.bytes))
        .collect();
    got.sort();
    p.eq(
        "rows (key, vlan, packets, bytes)",
        got,
        vec![
            (k1, 100, 6, 6 * one.len() as u64),
            (k2, 20, 4, 4 * two.len() as u64),
        ],
    );
    check_counters(&mut p, &out, &lab, mode, &report, true);
    p.assert_none(&ctx);
}

#[test]
fn sensor_tc_vlan_tagged_flows() {
    vlan_flows(Mode::Tc);
}

#[test]
fn sensor_xdp_vlan_tagged_flows() {
    vlan_flows(Mode::Xdp);
}

// --- export while running, SIGINT, --duration -----------------------------------------------------

/// With a short idle timeout, flows are exported while the sniffer runs and removed from the
/// kernel table; the same 5-tuple later is a new flow (a second row, later first_seen), and the
/// final flush on SIGINT writes nothing twice.
#[test]
fn sensor_tc_idle_export_then_new_flow_sigint() {
    let lab = Lab::new(&["attacker", "decky1"], LabOptions::default()).expect("lab");
    let (att, d1) = (lab.host("attacker").clone(), lab.host("decky1").clone());
    let srv = TcpServer::start(&d1.ns, d1.v4(8080)).expect("server");
    let sink = UdpSink::start(&d1.ns, d1.v4(5001)).expect("sink");
    let mut opts = SnifferOptions::new(Mode::Tc);
    opts.sweep_interval = Some(1);
    opts.idle_timeout = Some(2);
    let mut sn = Sniffer::start(&lab, &opts).unwrap_or_else(|e| panic!("{e:#}"));
    sn.wait_ready(&lab.port_names(), READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let oracle = Oracle::start(&lab).expect("oracle");

    let (u, c) = (att.v4(47000), att.v4(47001));
    att.run(|| traffic::udp_send(u, &[(sink.addr, 7, 100)]))
        .unwrap()
        .expect("burst 1");
    att.run(|| traffic::tcp_exchange(Some(c), srv.addr, 200, 300))
        .unwrap()
        .expect("tcp");
    sink.wait_for(7, MAX_WAIT).expect("burst 1 arrives");
    // Idle for more than idle-timeout + sweep interval: burst 1 is exported and forgotten.
    std::thread::sleep(Duration::from_secs(5));
    att.run(|| traffic::udp_send(u, &[(sink.addr, 5, 60)]))
        .unwrap()
        .expect("burst 2");
    sink.wait_for(12, MAX_WAIT).expect("burst 2 arrives");
    oracle.wait_quiet(QUIET, MAX_WAIT).expect("quiet");
    assert!(sn.is_running(), "sniffer died; logs:\n{}", sn.logs());
    sn.signal(libc::SIGINT).expect("SIGINT");
    let out = sn
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = oracle.stop().expect("oracle");
    let ctx = context(&out, &report);
    let mut p = Problems::default();

    let uk = FlowKey::new(u.ip(), u.port(), sink.addr.ip(), 5001, 17);
    let mut udp_rows: Vec<&FlowRow> = out.flows.iter().filter(|r| r.key() == uk).collect();
    udp_rows.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
    let got: Vec<(u64, u64)> = udp_rows.iter().map(|r| (r.packets, r.bytes)).collect();
    p.eq(
        "UDP 5-tuple: one row per burst (packets, bytes)",
        got,
        vec![(7, 7 * 142), (5, 5 * 102)],
    );
    if let [a, b] = udp_rows[..] {
        p.check(a.last_seen < b.first_seen, || {
            format!("burst rows overlap: {a:?} / {b:?}")
        });
    }
    let ck = FlowKey::new(c.ip(), c.port(), srv.addr.ip(), 8080, 6);
    for k in [ck, ck.reverse()] {
        let rows: Vec<&FlowRow> = out.flows.iter().filter(|r| r.key() == k).collect();
        p.eq(format!("{k}: rows"), rows.len(), 1);
        if let Some(r) = rows.first() {
            p.eq(
                format!("{k}: packets (oracle)"),
                r.packets,
                report.flows[&k].packets,
            );
            p.eq(
                format!("{k}: bytes (oracle)"),
                r.bytes,
                report.flows[&k].bytes,
            );
            p.eq(format!("{k}: ended"), r.ended, true);
        }
    }
    p.eq(
        "rows (ICMPv6 aside)",
        out.flows.iter().filter(|r| r.proto != 58).count(),
        4,
    );
    check_counters(&mut p, &out, &lab, Mode::Tc, &report, true);
    p.assert_none(&ctx);
}

/// `--duration`: the sniffer stops by itself, exits 0 and flushes everything.
#[test]
fn sensor_xdp_duration_run_flushes() {
    let lab = Lab::new(&["attacker", "decky1"], LabOptions::default()).expect("lab");
    let (att, d1) = (lab.host("attacker").clone(), lab.host("decky1").clone());
    let sink = UdpSink::start(&d1.ns, d1.v4(5001)).expect("sink");
    let mut opts = SnifferOptions::new(Mode::Xdp);
    opts.run = sensor::Run::Duration(4);
    let mut sn = Sniffer::start(&lab, &opts).unwrap_or_else(|e| panic!("{e:#}"));
    sn.wait_ready(&lab.port_names(), READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let u = att.v4(48000);
    att.run(|| traffic::udp_send(u, &[(sink.addr, 10, 33)]))
        .unwrap()
        .expect("send");
    sink.wait_for(10, MAX_WAIT).expect("arrives");
    let out = sn
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let got: Vec<(FlowKey, String, u64, u64)> = out
        .flows
        .iter()
        .filter(|r| r.proto != 58)
        .map(|r| (r.key(), r.port.clone(), r.packets, r.bytes))
        .collect();
    assert_eq!(
        got,
        vec![(
            FlowKey::new(u.ip(), u.port(), sink.addr.ip(), 5001, 17),
            att.port.clone(),
            10,
            10 * (42 + 33)
        )],
        "{}",
        rows_table(&out.flows)
    );
    assert_eq!(
        out.summary.counter("packets"),
        out.summary.counter("flow_packets") + out.summary.drops()
    );
}

/// Worker leases: a second sniffer on the same bridge and database refuses to start and names
/// the running one; once that one stops cleanly, a new one starts at once.
#[test]
fn second_sniffer_on_the_same_bridge_is_refused() {
    let lab = Lab::new(&["attacker"], LabOptions::default()).expect("lab");
    let mut first = start_sniffer(&lab, Mode::Tc);
    let db_url = format!("sqlite://{}", first.db.display());
    let mut opts = SnifferOptions::new(Mode::Tc);
    opts.extra_args = vec!["--db-url".into(), db_url.clone()];
    let mut second = Sniffer::start(&lab, &opts).unwrap_or_else(|e| panic!("{e:#}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = second.exited() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second sniffer did not refuse to start:\n{}",
            second.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let logs = second.logs();
    assert!(!status.success(), "the second sniffer must fail: {logs}");
    let pid = first.pid().expect("first sniffer pid").to_string();
    assert!(
        logs.contains(&format!(
            "another sniffer@{} is already running",
            lab.bridge()
        )) && logs.contains(&format!("pid {pid}")),
        "the refusal names the holder (pid {pid}):\n{logs}"
    );
    assert!(
        first.is_running(),
        "the first sniffer is unaffected:\n{}",
        first.logs()
    );
    first.stop().unwrap_or_else(|e| panic!("{e:#}"));

    // Released on a clean stop: a new sniffer takes over immediately.
    let mut third = Sniffer::start(&lab, &opts).unwrap_or_else(|e| panic!("{e:#}"));
    third
        .wait_ready(&lab.port_names(), READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    third
        .signal(libc::SIGTERM)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = third.exited() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the third sniffer did not stop:
{}",
            third.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{}", third.logs());
}

// --- a flood of new flows ---------------------------------------------------------------------

/// A scan-style flood of new flows into a kernel table far too small for it: every distinct
/// 5-tuple sent ends either as exactly one flow row (its one packet) or under `drop_map_full`,
/// never both, never neither. Idle flows are swept every second, so the table turns over and
/// both outcomes occur. (`cargo xtask bench sensor` runs the same at 100,000 new flows/s.)
#[test]
fn sensor_tc_flood_of_new_flows_every_tuple_is_a_row_or_a_map_full_drop() {
    const TUPLES: u64 = 30_000;
    const RATE: f64 = 15_000.0;
    const ENTRIES: u32 = 4096;
    let lab = Lab::new(&["gen", "sink"], LabOptions::default()).expect("lab");
    let (gen_host, sink) = (lab.host("gen").clone(), lab.host("sink").clone());
    let mut opts = SnifferOptions::new(Mode::Tc);
    opts.sweep_interval = Some(1);
    opts.idle_timeout = Some(1);
    opts.extra_args = vec!["--flow-entries".into(), ENTRIES.to_string()];
    let mut sn = Sniffer::start(&lab, &opts).unwrap_or_else(|e| panic!("{e:#}"));
    sn.wait_ready(&lab.port_names(), READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let sent = flood::scan(&gen_host, &sink, TUPLES, RATE).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(sent.sent, TUPLES);
    // Let the last flows go idle and be swept before the final export.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(sn.is_running(), "the sniffer died:\n{}", sn.logs());
    let out = sn.stop().unwrap_or_else(|e| panic!("{e:#}"));

    let mut p = Problems::default();
    let target = IpAddr::V4(flood::SCAN_TARGET);
    let rows: Vec<&FlowRow> = out
        .flows
        .iter()
        .filter(|r| r.dst_ip == target && r.proto == 17)
        .collect();
    let mut seen = BTreeSet::new();
    for r in &rows {
        p.check(r.src_ip == IpAddr::V4(gen_host.ipv4), || {
            format!("scan row from the wrong source: {r:?}")
        });
        p.check(r.packets == 1 && r.bytes == 60, || {
            format!("a scan 5-tuple carries one 60-byte frame: {r:?}")
        });
        p.check(seen.insert((r.src_port, r.dst_port)), || {
            format!("5-tuple written twice: {r:?}")
        });
    }
    let sent_tuples: BTreeSet<(u16, u16)> = (0..TUPLES).map(flood::scan_ports).collect();
    p.check(seen.is_subset(&sent_tuples), || {
        format!(
            "rows for 5-tuples never sent: {:?}",
            seen.difference(&sent_tuples).take(5).collect::<Vec<_>>()
        )
    });
    let map_full = out.summary.counter("drop_map_full");
    p.eq(
        "rows + drop_map_full = distinct 5-tuples sent",
        rows.len() as u64 + map_full,
        TUPLES,
    );
    // The table holds 4,096 flows and a flow stays ≥ 1 s: both outcomes must have happened.
    p.check(map_full > 0, || {
        format!("a {ENTRIES}-entry table must overflow at {RATE}/s with a 1 s idle timeout")
    });
    p.check(rows.len() as u64 > u64::from(ENTRIES), || {
        format!(
            "the table must turn over (idle flows swept): only {} rows",
            rows.len()
        )
    });
    p.eq(
        "packets = flow_packets + drops",
        out.summary.counter("packets"),
        out.summary.counter("flow_packets") + out.summary.drops(),
    );
    p.assert_none(&format!(
        "summary: {:?}\nsniffer logs (tail):\n{}",
        out.summary,
        tail(&out.stderr, 40)
    ));
}
