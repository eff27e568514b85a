//! The harness proves itself, with no sensor: the lab is quiet and cleans up after itself, and the
//! oracle's counts equal what arithmetic says the traffic must be on the wire.

use std::{net::IpAddr, time::Duration};

use decnet_e2e::{
    frames::{self, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Ipv4, NOBODY_MAC},
    netns::{self, HOST_IF, Lab, LabOptions},
    oracle::{Class, FlowKey, Oracle, Report},
    traffic::{self, TcpServer, UdpSink},
};

const QUIET: Duration = Duration::from_millis(300);
const MAX_WAIT: Duration = Duration::from_secs(10);

fn lab() -> Lab {
    Lab::new(&["attacker", "decky"], LabOptions::default()).expect("building the lab")
}

fn settle(oracle: Oracle) -> Report {
    oracle.wait_quiet(QUIET, MAX_WAIT).expect("traffic settles");
    oracle.stop().expect("oracle")
}

/// Flows other than IPv6 noise (MLD, which the lab keeps before any measurement anyway).
fn flows_v4_and_v6_tcp(r: &Report) -> Vec<(&FlowKey, u64, u64)> {
    r.flows
        .iter()
        .filter(|(k, _)| k.proto != 58)
        .map(|(k, s)| (k, s.packets, s.bytes))
        .collect()
}

#[test]
fn lab_is_quiet_and_removed_on_drop() {
    let lab = lab();
    let names: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| h.ns.clone())
        .chain([lab.switch_ns().to_owned()])
        .collect();
    for n in &names {
        assert!(
            netns::list_namespaces().contains(n),
            "namespace {n} exists while the lab lives"
        );
    }
    assert_eq!(lab.ports().len(), 2);
    for (port, idx) in lab.ports() {
        assert!(idx > 0 && port.len() <= 15, "{port} / {idx}");
    }

    // Nothing at all enters the bridge while nobody sends: no ARP, no ND, no DAD, no RS, no MLD.
    let oracle = Oracle::start(&lab).expect("oracle");
    std::thread::sleep(Duration::from_secs(1));
    let r = oracle.stop().expect("oracle");
    assert_eq!(
        r.total_frames(),
        0,
        "an idle lab must be silent; the oracle saw {:#?}",
        r
    );

    drop(lab);
    let left: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left after drop: {left:?}");
}

#[test]
fn udp_datagrams_are_counted_exactly() {
    let lab = lab();
    let (att, dec) = (lab.host("attacker").clone(), lab.host("decky").clone());
    let sink = UdpSink::start(&dec.ns, dec.v4(5000)).expect("sink");
    let oracle = Oracle::start(&lab).expect("oracle");
    let src = att.v4(40000);
    att.run(|| traffic::udp_send(src, &[(dec.v4(5000), 100, 100)]))
        .unwrap()
        .expect("send");
    sink.wait_for(100, MAX_WAIT).expect("all datagrams arrive");
    let r = settle(oracle);

    let key = FlowKey::new(src.ip(), 40000, dec.v4(0).ip(), 5000, 17);
    let s = r
        .flow(&key)
        .unwrap_or_else(|| panic!("no flow {key}: {:#?}", r.flows));
    assert_eq!(s.packets, 100);
    assert_eq!(s.bytes, 100 * (14 + 20 + 8 + 100));
    assert_eq!(
        s.ports.iter().collect::<Vec<_>>(),
        vec![&att.port],
        "entered at the attacker's port only"
    );
    assert_eq!(
        flows_v4_and_v6_tcp(&r).len(),
        1,
        "no other flow: {:#?}",
        r.flows
    );
    let p = &r.ports[&att.port];
    assert_eq!((p.frames, p.non_ip, p.unparsed), (100, 0, 0));
    // The datagrams left the bridge at the decky's port (outgoing there), not counted as ingress.
    assert_eq!(r.ports[&dec.port].frames, 0);
    assert_eq!(r.ports[&dec.port].outgoing, 100);
}

/// Checks one direction of a TCP exchange: first frame is the SYN (or SYN-ACK) with the MSS option
/// only, every other frame has a 20-byte TCP header, and the payloads add up to `payload`.
fn check_tcp_direction(
    r: &Report,
    key: &FlowKey,
    port: &str,
    first_flags: u8,
    payload: u64,
    ip_hdr: u64,
) {
    let s = r
        .flow(key)
        .unwrap_or_else(|| panic!("no flow {key}: {:#?}", r.flows));
    let base = 14 + ip_hdr + 20;
    assert_eq!(s.ports.iter().collect::<Vec<_>>(), vec![port], "{key}");
    assert_eq!(s.frames[0].tcp_flags, first_flags, "{key}: first segment");
    assert_eq!(
        s.frames[0].len as u64,
        base + 4,
        "{key}: SYN/SYN-ACK carries only MSS"
    );
    for f in &s.frames[1..] {
        assert_eq!(
            f.len as u64,
            base + f.payload as u64,
            "{key}: 20-byte TCP header: {f:?}"
        );
    }
    assert_eq!(
        s.frames.iter().map(|f| f.payload as u64).sum::<u64>(),
        payload,
        "{key}"
    );
    assert_eq!(
        s.bytes - base * s.packets - 4,
        payload,
        "{key}: bytes − base·packets − 4 = payload"
    );
    assert_eq!(s.tcp_flags & 0x07, 0x03, "{key}: SYN and FIN, no RST");
}

#[test]
fn tcp_exchanges_have_fixed_header_sizes_v4_and_v6() {
    let lab = lab();
    let (att, dec) = (lab.host("attacker").clone(), lab.host("decky").clone());
    let s4 = TcpServer::start(&dec.ns, dec.v4(8080)).expect("server v4");
    let s6 = TcpServer::start(&dec.ns, dec.v6(8080)).expect("server v6");
    let oracle = Oracle::start(&lab).expect("oracle");
    let (c4, c6) = (att.v4(40001), att.v6(40002));
    att.run(|| {
        traffic::tcp_exchange(Some(c4), s4.addr, 300, 700)?;
        traffic::tcp_exchange(Some(c6), s6.addr, 123, 999)
    })
    .unwrap()
    .expect("exchanges");
    let r = settle(oracle);
    assert_eq!(s4.stop().unwrap(), 1);
    assert_eq!(s6.stop().unwrap(), 1);

    let k4 = FlowKey::new(c4.ip(), c4.port(), dec.v4(0).ip(), 8080, 6);
    check_tcp_direction(&r, &k4, &att.port, 0x02, 300, 20);
    check_tcp_direction(&r, &k4.reverse(), &dec.port, 0x12, 700, 20);
    let k6 = FlowKey::new(c6.ip(), c6.port(), dec.v6(0).ip(), 8080, 6);
    check_tcp_direction(&r, &k6, &att.port, 0x02, 123, 40);
    check_tcp_direction(&r, &k6.reverse(), &dec.port, 0x12, 999, 40);
    assert_eq!(
        flows_v4_and_v6_tcp(&r).len(),
        4,
        "no other flow: {:#?}",
        r.flows
    );
}

#[test]
fn icmp_echo_is_two_one_way_flows() {
    let lab = lab();
    let (att, dec) = (lab.host("attacker").clone(), lab.host("decky").clone());
    let oracle = Oracle::start(&lab).expect("oracle");
    let replies = att
        .run(|| traffic::icmp_echo(dec.ipv4, 0x4242, 5, 56))
        .unwrap()
        .expect("echo");
    assert_eq!(replies, 5);
    let r = settle(oracle);

    let (a, d): (IpAddr, IpAddr) = (att.ipv4.into(), dec.ipv4.into());
    let req = FlowKey::new(a, 8 << 8, d, 0, 1);
    let rep = FlowKey::new(d, 0, a, 0, 1);
    assert_eq!(
        (r.flows[&req].packets, r.flows[&req].bytes),
        (5, 5 * (14 + 20 + 8 + 56))
    );
    assert_eq!(
        (r.flows[&rep].packets, r.flows[&rep].bytes),
        (5, 5 * (14 + 20 + 8 + 56))
    );
    assert!(r.flows[&rep].ports.contains(&dec.port));
    assert_eq!(flows_v4_and_v6_tcp(&r).len(), 2, "{:#?}", r.flows);
}

#[test]
fn raw_frames_reach_the_port_unchanged() {
    let lab = lab();
    let att = lab.host("attacker").clone();
    let dec = lab.host("decky").clone();
    let oracle = Oracle::start(&lab).expect("oracle");
    let udp = frames::udp(1111, 2222, &[7u8; 10]);
    let ip = Ipv4::new(att.ipv4, dec.ipv4, 17).build(&udp);
    let mut nonfirst = Ipv4::new(att.ipv4, dec.ipv4, 17);
    nonfirst.flags_frag = 185; // offset 1480 bytes
    let list = vec![
        // 0: plain UDP (14+20+8+10 = 52 bytes)
        frames::ethernet(NOBODY_MAC, att.mac, &[], ETH_P_IP, &ip),
        // 1: one VLAN tag (the kernel moves it to metadata; the oracle puts it back)
        frames::ethernet(NOBODY_MAC, att.mac, &[(ETH_P_8021Q, 100)], ETH_P_IP, &ip),
        // 2: two tags
        frames::ethernet(
            NOBODY_MAC,
            att.mac,
            &[(0x88a8, 10), (ETH_P_8021Q, 20)],
            ETH_P_IP,
            &ip,
        ),
        // 3: three tags
        frames::ethernet(
            NOBODY_MAC,
            att.mac,
            &[(0x88a8, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
            ETH_P_IP,
            &ip,
        ),
        // 4: ARP-ish
        frames::ethernet(NOBODY_MAC, att.mac, &[], ETH_P_ARP, &[0u8; 28]),
        // 5: a bare Ethernet header announcing IPv4 (the shortest frame Linux sends on Ethernet)
        frames::ethernet(NOBODY_MAC, att.mac, &[], ETH_P_IP, &[]),
        // 6: non-first fragment
        frames::ethernet(
            NOBODY_MAC,
            att.mac,
            &[],
            ETH_P_IP,
            &nonfirst.build(&[0u8; 16]),
        ),
        // 7: IPv6 with a hop-by-hop header
        frames::ethernet(
            NOBODY_MAC,
            att.mac,
            &[],
            ETH_P_IPV6,
            &frames::ipv6(att.ipv6, dec.ipv6, 0, &frames::ipv6_hop_by_hop(17, &udp)),
        ),
    ];
    att.run(|| frames::send_frames(HOST_IF, &list))
        .unwrap()
        .expect("send");
    // Linux does not put a frame shorter than an Ethernet header on an Ethernet device.
    let short = att
        .run(|| frames::send_frames(HOST_IF, &[vec![0u8; 10]]))
        .unwrap();
    assert!(short.is_err(), "a 10-byte frame was accepted");
    let r = settle(oracle);

    let p = &r.ports[&att.port];
    assert_eq!(p.frames, list.len() as u64, "{p:?}");
    assert_eq!(
        p.bytes,
        list.iter().map(|f| f.len() as u64).sum::<u64>(),
        "lengths as sent (VLAN tags included)"
    );
    assert_eq!(
        (p.vlan_over_2, p.non_ip, p.unparsed, p.fragments, p.ipv6_ext),
        (1, 1, 1, 1, 1),
        "{p:?}"
    );
    let key = FlowKey::new(att.ipv4.into(), 1111, dec.ipv4.into(), 2222, 17);
    let s = &r.flows[&key];
    assert_eq!(s.packets, 3);
    assert_eq!(s.bytes, 52 + 56 + 60);
    // classify() agrees frame by frame.
    assert!(classify_is(
        &frames::ethernet(NOBODY_MAC, att.mac, &[], 0x88cc, &[1]),
        "NonIp"
    ));
    match decnet_e2e::oracle::classify(&list[1]) {
        Class::Flow { vlan, info, .. } => assert_eq!((vlan, info.len), (100, 56)),
        c => panic!("{c:?}"),
    }
}

fn classify_is(frame: &[u8], what: &str) -> bool {
    format!("{:?}", decnet_e2e::oracle::classify(frame)).starts_with(what)
}
