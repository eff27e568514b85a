//! Fuzz target for decnet-fingerprint: every parser and `fingerprints_of` on hostile bytes.
//!
//! Input layout: byte 0 = flags (bit 0: client payload cut by the capture limit, bit 1: server
//! payload cut, bit 2: JA4+ on), then four sections, each a little-endian u16 length followed by
//! that many bytes (clamped to what is left): client SYN, server SYN-ACK, client payload, server
//! payload. fuzz/seeds/fingerprint holds real handshakes in this layout.
//!
//! On every input: no panic (debug assertions and overflow checks are on); deterministic; every
//! fingerprint value non-empty, printable ASCII and bounded by the input it came from; every
//! partial fingerprint counted; a hello parsed complete is the same with or without the
//! capture-cut flag, and a complete hello is never partial; a SYN accepted gives a p0f signature
//! of the form `ver:ttl+dist:olen:mss:wsize,scale:olayout:quirks:pclass`; p0f.fp text of any
//! shape parses and matches without panicking.
#![no_main]

use decnet_fingerprint::{
    Config, FlowSample, Kind, ParseError, Payload, fingerprints_of, http, p0f, ssh, tcp, tls,
};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn sections(data: &[u8]) -> (u8, [&[u8]; 4]) {
    let flags = data.first().copied().unwrap_or(0);
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut out: [&[u8]; 4] = [&[]; 4];
    for s in &mut out {
        if rest.len() < 2 {
            break;
        }
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        *s = &rest[2..2 + n];
        rest = &rest[2 + n..];
    }
    (flags, out)
}

fn db() -> Arc<p0f::Database> {
    static DB: OnceLock<Arc<p0f::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        // The real database when installed, else a small one with every sig form.
        let text = std::fs::read_to_string(p0f::SYSTEM_DB).unwrap_or_else(|_| {
            "[tcp:request]\nlabel = s:unix:Linux:3.11 and newer\nsig = *:64:0:*:mss*20,10:mss,sok,ts,nop,ws:df,id+:0\n\
             label = g:unix:Linux:\nsig = *:64:0:*:*,*:mss,sok,ts,nop,ws:df,id+:0\n\
             label = s:!:NMap:SYN scan\nsig = *:64-:0:1460:%1024,0:mss::0\n\
             [tcp:response]\nlabel = s:win:Windows:7\nsig = *:128:0:*:mtu*2,*:mss,nop,ws,eol+1:df:*\n"
                .to_owned()
        });
        Arc::new(p0f::Database::parse(&text))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let (flags, [syn, synack, cp, sp]) = sections(data);
    let payload = |b: &[u8], cut: bool| {
        (!b.is_empty()).then(|| Payload {
            bytes: b.to_vec(),
            truncated: cut,
        })
    };
    let sample = FlowSample {
        proto: 6,
        server_port: 443,
        client_syn: (!syn.is_empty()).then(|| syn.to_vec()),
        server_synack: (!synack.is_empty()).then(|| synack.to_vec()),
        client_payload: payload(cp, flags & 1 != 0),
        server_payload: payload(sp, flags & 2 != 0),
    };
    let cfg = Config {
        p0f: Some(db()),
        ja4_plus: flags & 4 != 0,
    };
    let out = fingerprints_of(&sample, &cfg);
    assert_eq!(out, fingerprints_of(&sample, &cfg), "not deterministic");
    let partials = out.fingerprints.iter().filter(|f| f.partial).count() as u64;
    assert!(out.counters.partial >= partials, "{out:?}");
    for f in &out.fingerprints {
        assert!(!f.value.is_empty(), "{f:?}");
        for s in [Some(&f.value), f.raw.as_ref(), f.label.as_ref()]
            .into_iter()
            .flatten()
        {
            assert!(
                s.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "not printable: {f:?}"
            );
            // Escaping quadruples a byte at most; hashes and signatures are short.
            assert!(
                s.len() <= 4 * data.len() + 256,
                "{} bytes from {}",
                s.len(),
                data.len()
            );
        }
        if !f.partial && matches!(f.kind, Kind::Ja3 | Kind::Ja4) {
            assert!(out.get(Kind::Ja3).is_some_and(|j| !j.partial));
        }
    }

    // The parsers on their own, on every section.
    for bytes in [cp, sp, syn, synack] {
        // A hello complete without the capture-cut flag is the same, not partial, with it.
        match (
            tls::parse_client_hello(bytes, false),
            tls::parse_client_hello(bytes, true),
        ) {
            (Ok(a), Ok(b)) => assert!(a == b && !b.partial, "{a:?} / {b:?}"),
            (Ok(a), Err(e)) => panic!("{a:?} without the flag, {e:?} with it"),
            (Err(ParseError::Truncated), _) => {}
            (Err(e), b) => assert_eq!(Err(e), b),
        }
        match (
            tls::parse_server_hello(bytes, false),
            tls::parse_server_hello(bytes, true),
        ) {
            (Ok(a), Ok(b)) => assert!(a == b && !b.partial, "{a:?} / {b:?}"),
            (Ok(a), Err(e)) => panic!("{a:?} without the flag, {e:?} with it"),
            (Err(ParseError::Truncated), _) => {}
            (Err(e), b) => assert_eq!(Err(e), b),
        }
        if let Ok(h) = tls::parse_server_hello(bytes, true) {
            assert_eq!(h.ja3s().0.len(), 32);
            let (v, _) = h.ja4s(false);
            assert_eq!(v.len(), 25, "{v}");
        }
        if let Ok(h) = tls::parse_client_hello(bytes, true) {
            let j = h.ja4(false);
            assert_eq!(j.ja4.len(), 36, "{j:?}");
            assert!(j.ja4_r.starts_with(&j.ja4[..10]));
            let _ = h.ja3();
        }
        for server in [false, true] {
            if let Ok(b) = ssh::parse_banner(bytes, server) {
                assert!(b.end <= bytes.len() && b.text.len() <= 4 * ssh::MAX_BANNER);
                if let Ok(k) = ssh::parse_kexinit(&bytes[b.end..]) {
                    assert_eq!(k.hassh().0.len(), 32);
                    assert_eq!(k.hassh_server().0.len(), 32);
                }
            }
        }
        if let Ok(k) = ssh::parse_kexinit(bytes) {
            let (h, raw) = k.hassh();
            let want = [
                &k.kex_algorithms,
                &k.encryption_c2s,
                &k.mac_c2s,
                &k.compression_c2s,
            ];
            assert_eq!(raw, want.map(String::as_str).join(";"));
            assert_eq!(h.len(), 32);
        }
        if let Ok(r) = http::parse_request(bytes) {
            assert!(r.header_names.len() <= http::MAX_HEADERS);
            if let Some(ua) = &r.user_agent {
                assert!(ua.len() <= 4 * http::MAX_USER_AGENT);
            }
            let (v, _) = r.ja4h();
            assert!(v.len() >= 12 + 3 * 13, "{v}");
        }
        if let Ok(sig) = tcp::parse_syn(bytes) {
            let s = sig.raw_sig(1460);
            assert_eq!(s.split(':').count(), 8, "{s}");
            assert!(sig.opt_layout.len() <= tcp::MAX_TCP_OPT);
            let _ = db().find(&sig, !sig.syn_ack, 1460);
        }
    }
    // Any text as a p0f database: parse, then match a fixed SYN against it.
    let text = String::from_utf8_lossy(cp);
    let db = p0f::Database::parse(&text);
    if let Ok(sig) = tcp::parse_syn(syn) {
        let _ = db.find(&sig, true, 0);
        let _ = db.find(&sig, false, 1460);
    }
});
