//! TLS ClientHello / ServerHello parsing and the fingerprints computed from them: Salesforce
//! JA3 / JA3S (BSD-3-Clause method), FoxIO JA4 (BSD-3-Clause) and, behind the `ja4-plus` feature,
//! FoxIO JA4S (FoxIO License 1.1).
//!
//! Input is a TLS *stream prefix*: the first bytes of one direction, i.e. TLS records one after the
//! other (the sensor concatenates the direction's first data segments). A handshake message may
//! span several records; it is reassembled here (bounded by what was captured). When the stream
//! ends inside the ClientHello/ServerHello and the caller says the capture limit cut it, the hello
//! is returned with `partial: true` and only its complete fields; otherwise that is an error.

use crate::util::{ParseError, Reader, is_grease, push_hex_u16, sha256_12};
use std::borrow::Cow;

/// The largest TLS record fragment a peer may send (2^14 + 2048 for ciphertext, RFC 8446 §5.2).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// The longest ClientHello/ServerHello we reassemble; a larger claimed length is malformed.
pub const MAX_HELLO: usize = 1 << 16;
/// At most this many bytes of the SNI host name are kept.
const MAX_SNI: usize = 255;

const EXT_SNI: u16 = 0x0000;
const EXT_GROUPS: u16 = 0x000a;
const EXT_POINT_FORMATS: u16 = 0x000b;
const EXT_SIG_ALGS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// A parsed TLS ClientHello: every field the fingerprint methods use, in wire order, GREASE kept
/// (each method filters it as it defines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` of the ClientHello body (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order they appear.
    pub extensions: Vec<u16>,
    /// supported_versions (0x002b) list.
    pub supported_versions: Vec<u16>,
    /// supported_groups (0x000a), JA3's "elliptic curves".
    pub groups: Vec<u16>,
    /// ec_point_formats (0x000b).
    pub point_formats: Vec<u8>,
    /// signature_algorithms (0x000d), in order.
    pub sig_algs: Vec<u16>,
    /// The first host name of the SNI extension (bounded), when present.
    pub sni: Option<String>,
    /// The raw bytes of the first ALPN protocol, when the ALPN extension has one.
    pub alpn_first: Option<Vec<u8>>,
    /// True when the capture ended inside the hello: only complete fields are listed.
    pub partial: bool,
}

/// A parsed TLS ServerHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    /// The supported_versions extension's selected version, when present.
    pub selected_version: Option<u16>,
    /// The ALPN protocol the server chose, when present.
    pub alpn: Option<Vec<u8>>,
    pub partial: bool,
}

/// True when `bytes` starts like a TLS handshake record (content type 22, major version 3).
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 22 && bytes[1] == 3
}

/// The first handshake message of a TLS record stream: its type and body (reassembled across
/// records), and whether the body is complete.
fn first_handshake(stream: &[u8]) -> Result<(u8, Cow<'_, [u8]>, bool), ParseError> {
    if !looks_like_tls(stream) {
        return Err(ParseError::NotThis);
    }
    let mut r = Reader::new(stream);
    // Fast path: the whole message in the first record (the usual case) borrows.
    let mut joined: Option<Vec<u8>> = None;
    let mut first: &[u8] = &[];
    let mut records = 0usize;
    loop {
        if r.remaining() < 5 {
            break;
        }
        let Some(hdr) = r.take(5) else { break };
        if hdr[0] != 22 {
            if records == 0 {
                return Err(ParseError::NotThis);
            }
            // A different content type after the handshake started: the message cannot continue.
            break;
        }
        if hdr[1] != 3 {
            return Err(ParseError::Malformed("TLS record version is not 3.x"));
        }
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        if len > MAX_RECORD {
            return Err(ParseError::Malformed("TLS record longer than 2^14+2048"));
        }
        if len == 0 {
            return Err(ParseError::Malformed("empty TLS handshake record"));
        }
        let avail = len.min(r.remaining());
        let frag = r.take(avail).unwrap_or(&[]);
        records += 1;
        if records == 1 {
            first = frag;
        } else {
            let buf = joined.get_or_insert_with(|| first.to_vec());
            buf.extend_from_slice(frag);
        }
        let have = joined.as_deref().unwrap_or(first);
        if have.len() >= 4 {
            let need = 4 + u32::from_be_bytes([0, have[1], have[2], have[3]]) as usize;
            if need > MAX_HELLO + 4 {
                return Err(ParseError::Malformed(
                    "TLS handshake message longer than 64 KiB",
                ));
            }
            if have.len() >= need {
                break;
            }
        }
        if avail < len {
            break; // the stream ends inside this record
        }
    }
    let have: Cow<'_, [u8]> = match joined {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(first),
    };
    if have.len() < 4 {
        return Err(ParseError::Truncated);
    }
    let msg_type = have[0];
    let need = u32::from_be_bytes([0, have[1], have[2], have[3]]) as usize;
    let complete = have.len() - 4 >= need;
    let body: Cow<'_, [u8]> = match have {
        Cow::Borrowed(b) => Cow::Borrowed(&b[4..(4 + need).min(b.len())]),
        Cow::Owned(mut v) => {
            v.truncate((4 + need).min(v.len()));
            v.drain(..4);
            Cow::Owned(v)
        }
    };
    Ok((msg_type, body, complete))
}

/// Outcome of parsing inside a possibly incomplete body: `Cut` means "ran out of bytes".
enum Step {
    Cut,
    Bad(&'static str),
}

impl From<Step> for ParseError {
    fn from(s: Step) -> Self {
        match s {
            Step::Cut => ParseError::Truncated,
            Step::Bad(why) => ParseError::Malformed(why),
        }
    }
}

fn cut<T>(v: Option<T>) -> Result<T, Step> {
    v.ok_or(Step::Cut)
}

/// Parses the ClientHello at the start of a TLS stream prefix. `capture_cut` says the bytes were
/// cut by a capture limit: an incomplete hello is then returned `partial`; without it, an
/// incomplete hello is [`ParseError::Truncated`].
pub fn parse_client_hello(stream: &[u8], capture_cut: bool) -> Result<ClientHello, ParseError> {
    let (msg_type, body, complete) = first_handshake(stream)?;
    if msg_type != 1 {
        return Err(ParseError::Malformed(
            "first TLS handshake message is not a ClientHello",
        ));
    }
    if !complete && !capture_cut {
        return Err(ParseError::Truncated);
    }
    let mut ch = ClientHello {
        partial: !complete,
        ..ClientHello::default()
    };
    match client_hello_body(&body, &mut ch) {
        Ok(()) => Ok(ch),
        // Ran out of bytes inside a hello the capture cut: keep the complete fields.
        Err(Step::Cut) if !complete => Ok(ch),
        Err(Step::Cut) => Err(ParseError::Malformed(
            "ClientHello field overruns the message",
        )),
        Err(e) => Err(e.into()),
    }
}

fn client_hello_body(body: &[u8], ch: &mut ClientHello) -> Result<(), Step> {
    let mut r = Reader::new(body);
    ch.legacy_version = cut(r.u16())?;
    cut(r.take(32))?;
    let sid = usize::from(cut(r.u8())?);
    if sid > 32 {
        return Err(Step::Bad("ClientHello session id longer than 32"));
    }
    cut(r.take(sid))?;
    let clen = usize::from(cut(r.u16())?);
    if clen % 2 != 0 {
        return Err(Step::Bad("odd cipher suite list length"));
    }
    let cs = cut(r.take(clen));
    let cs = match cs {
        Ok(cs) => cs,
        Err(e) => {
            // Keep the complete suites of a cut list: the hello is partial anyway.
            let rest = r.take(r.remaining()).unwrap_or(&[]);
            ch.ciphers.extend(
                rest.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]])),
            );
            return Err(e);
        }
    };
    ch.ciphers
        .extend(cs.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])));
    let comp = usize::from(cut(r.u8())?);
    cut(r.take(comp))?;
    if r.is_empty() {
        return Ok(()); // no extensions block
    }
    let elen = usize::from(cut(r.u16())?);
    let ext_block = match r.take(elen) {
        Some(b) => b,
        None => {
            let rest = r.take(r.remaining()).unwrap_or(&[]);
            client_extensions(rest, ch)?;
            return Err(Step::Cut);
        }
    };
    client_extensions(ext_block, ch)
}

fn client_extensions(block: &[u8], ch: &mut ClientHello) -> Result<(), Step> {
    let mut r = Reader::new(block);
    while !r.is_empty() {
        let ty = cut(r.u16())?;
        let len = usize::from(cut(r.u16())?);
        let data = cut(r.take(len))?;
        ch.extensions.push(ty);
        client_extension(ty, data, ch)?;
    }
    Ok(())
}

fn u16_list(data: &[u8], len_bytes: usize, what: &'static str) -> Result<Vec<u16>, Step> {
    let mut r = Reader::new(data);
    let n = match len_bytes {
        1 => r.u8().map(usize::from),
        _ => r.u16().map(usize::from),
    }
    .ok_or(Step::Bad(what))?;
    let list = r.take(n).ok_or(Step::Bad(what))?;
    if n % 2 != 0 || !r.is_empty() {
        return Err(Step::Bad(what));
    }
    Ok(list
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

fn client_extension(ty: u16, data: &[u8], ch: &mut ClientHello) -> Result<(), Step> {
    match ty {
        EXT_SNI if !data.is_empty() => {
            let mut r = Reader::new(data);
            let list_len = usize::from(r.u16().ok_or(Step::Bad("bad SNI extension"))?);
            let mut list = Reader::new(r.take(list_len).ok_or(Step::Bad("SNI list overruns"))?);
            if let (Some(0), Some(n)) = (list.u8(), list.u16()) {
                let name = list
                    .take(usize::from(n))
                    .ok_or(Step::Bad("SNI name overruns"))?;
                ch.sni = Some(crate::util::printable(name, MAX_SNI).0);
            }
        }
        EXT_GROUPS => ch.groups = u16_list(data, 2, "bad supported_groups extension")?,
        EXT_POINT_FORMATS => {
            let mut r = Reader::new(data);
            let n = usize::from(r.u8().ok_or(Step::Bad("bad ec_point_formats extension"))?);
            let l = r
                .take(n)
                .ok_or(Step::Bad("ec_point_formats list overruns"))?;
            ch.point_formats = l.to_vec();
        }
        EXT_SIG_ALGS => ch.sig_algs = u16_list(data, 2, "bad signature_algorithms extension")?,
        EXT_SUPPORTED_VERSIONS => {
            ch.supported_versions = u16_list(data, 1, "bad supported_versions extension")?
        }
        EXT_ALPN => ch.alpn_first = first_alpn(data)?,
        _ => {}
    }
    Ok(())
}

fn first_alpn(data: &[u8]) -> Result<Option<Vec<u8>>, Step> {
    let mut r = Reader::new(data);
    let Some(list_len) = r.u16() else {
        return Ok(None);
    };
    let mut list = Reader::new(
        r.take(usize::from(list_len))
            .ok_or(Step::Bad("ALPN list overruns"))?,
    );
    let Some(n) = list.u8() else { return Ok(None) };
    let v = list
        .take(usize::from(n))
        .ok_or(Step::Bad("ALPN protocol overruns"))?;
    Ok(Some(v.to_vec()))
}

/// Parses the ServerHello at the start of the server's TLS stream prefix (same rules as
/// [`parse_client_hello`]).
pub fn parse_server_hello(stream: &[u8], capture_cut: bool) -> Result<ServerHello, ParseError> {
    let (msg_type, body, complete) = first_handshake(stream)?;
    if msg_type != 2 {
        return Err(ParseError::Malformed(
            "first TLS handshake message is not a ServerHello",
        ));
    }
    if !complete && !capture_cut {
        return Err(ParseError::Truncated);
    }
    let mut sh = ServerHello {
        partial: !complete,
        ..ServerHello::default()
    };
    match server_hello_body(&body, &mut sh) {
        Ok(()) => Ok(sh),
        Err(Step::Cut) if !complete => Ok(sh),
        Err(Step::Cut) => Err(ParseError::Malformed(
            "ServerHello field overruns the message",
        )),
        Err(e) => Err(e.into()),
    }
}

fn server_hello_body(body: &[u8], sh: &mut ServerHello) -> Result<(), Step> {
    let mut r = Reader::new(body);
    sh.legacy_version = cut(r.u16())?;
    cut(r.take(32))?;
    let sid = usize::from(cut(r.u8())?);
    if sid > 32 {
        return Err(Step::Bad("ServerHello session id longer than 32"));
    }
    cut(r.take(sid))?;
    sh.cipher = cut(r.u16())?;
    cut(r.u8())?; // compression method
    if r.is_empty() {
        return Ok(());
    }
    let elen = usize::from(cut(r.u16())?);
    let (block, whole) = match r.take(elen) {
        Some(b) => (b, true),
        None => (r.take(r.remaining()).unwrap_or(&[]), false),
    };
    let mut e = Reader::new(block);
    while !e.is_empty() {
        let ty = cut(e.u16())?;
        let len = usize::from(cut(e.u16())?);
        let data = cut(e.take(len))?;
        sh.extensions.push(ty);
        match ty {
            EXT_SUPPORTED_VERSIONS => {
                let mut d = Reader::new(data);
                sh.selected_version = Some(d.u16().ok_or(Step::Bad("bad supported_versions"))?);
            }
            EXT_ALPN => sh.alpn = first_alpn(data)?,
            _ => {}
        }
    }
    if whole { Ok(()) } else { Err(Step::Cut) }
}

fn push_dec_list<T: Into<u32> + Copy>(out: &mut String, items: impl Iterator<Item = T>) {
    use std::fmt::Write as _;
    let mut first = true;
    for v in items {
        if !first {
            out.push('-');
        }
        first = false;
        let _ = write!(out, "{}", v.into());
    }
}

fn push_hex_list(out: &mut String, items: impl Iterator<Item = u16>) {
    let mut first = true;
    for v in items {
        if !first {
            out.push(',');
        }
        first = false;
        push_hex_u16(out, v);
    }
}

/// JA4's two-character version code.
fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's ALPN code: first and last characters of the first ALPN value when both are ASCII
/// alphanumeric, else the first and last hex digits of its bytes; `00` when absent or empty.
fn ja4_alpn(alpn: Option<&[u8]>) -> [u8; 2] {
    let Some(a) = alpn.filter(|a| !a.is_empty()) else {
        return *b"00";
    };
    let (f, l) = (a[0], a[a.len() - 1]);
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        [f, l]
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        [HEX[usize::from(f >> 4)], HEX[usize::from(l & 0xf)]]
    }
}

fn count2(n: usize) -> String {
    format!("{:02}", n.min(99))
}

/// JA4 with its raw (`_r`, sorted) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ja4 {
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1`
    pub ja4: String,
    /// `t13d1516h2_<sorted ciphers>_<sorted extensions>_<signature algorithms>`
    pub ja4_r: String,
    /// JA4 over the original order (`ja4_o`).
    pub ja4_o: String,
    /// The raw original-order form (`ja4_ro`).
    pub ja4_ro: String,
}

impl ClientHello {
    /// Salesforce JA3: the raw string `version,ciphers,extensions,groups,point_formats` (decimal,
    /// `-`-joined, GREASE removed from ciphers, extensions and groups) and its MD5.
    pub fn ja3(&self) -> (String, String) {
        let mut s = String::with_capacity(64 + 6 * (self.ciphers.len() + self.extensions.len()));
        use std::fmt::Write as _;
        let _ = write!(s, "{},", self.legacy_version);
        push_dec_list(
            &mut s,
            self.ciphers.iter().copied().filter(|&v| !is_grease(v)),
        );
        s.push(',');
        push_dec_list(
            &mut s,
            self.extensions.iter().copied().filter(|&v| !is_grease(v)),
        );
        s.push(',');
        push_dec_list(
            &mut s,
            self.groups.iter().copied().filter(|&v| !is_grease(v)),
        );
        s.push(',');
        push_dec_list(&mut s, self.point_formats.iter().copied());
        let h = crate::util::md5_hex(&s);
        (h, s)
    }

    /// The version JA4 uses: the highest non-GREASE supported_versions entry, else legacy_version.
    pub fn ja4_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// FoxIO JA4 (TLS over TCP: prefix `t`; `quic` for `q`).
    pub fn ja4(&self, quic: bool) -> Ja4 {
        let ciphers: Vec<u16> = self
            .ciphers
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .collect();
        let exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .collect();
        let sigs: Vec<u16> = self
            .sig_algs
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .collect();
        let alpn = ja4_alpn(self.alpn_first.as_deref());
        let mut a = String::with_capacity(10);
        a.push(if quic { 'q' } else { 't' });
        a.push_str(ja4_version(self.ja4_version()));
        a.push(if self.extensions.contains(&EXT_SNI) {
            'd'
        } else {
            'i'
        });
        a.push_str(&count2(ciphers.len()));
        a.push_str(&count2(exts.len()));
        a.push(alpn[0] as char);
        a.push(alpn[1] as char);

        let mut sorted_c = ciphers.clone();
        sorted_c.sort_unstable();
        let mut sorted_e: Vec<u16> = exts
            .iter()
            .copied()
            .filter(|&e| e != EXT_SNI && e != EXT_ALPN)
            .collect();
        sorted_e.sort_unstable();

        let list = |v: &[u16]| {
            let mut s = String::with_capacity(v.len() * 5);
            push_hex_list(&mut s, v.iter().copied());
            s
        };
        let ext_part = |e: &[u16]| {
            let mut s = list(e);
            if !sigs.is_empty() && !s.is_empty() {
                s.push('_');
                push_hex_list(&mut s, sigs.iter().copied());
            }
            s
        };
        let (c_sorted, e_sorted) = (list(&sorted_c), ext_part(&sorted_e));
        let (c_orig, e_orig) = (list(&ciphers), ext_part(&exts));
        Ja4 {
            ja4: format!("{a}_{}_{}", sha256_12(&c_sorted), sha256_12(&e_sorted)),
            ja4_r: format!("{a}_{c_sorted}_{e_sorted}"),
            ja4_o: format!("{a}_{}_{}", sha256_12(&c_orig), sha256_12(&e_orig)),
            ja4_ro: format!("{a}_{c_orig}_{e_orig}"),
        }
    }
}

impl ServerHello {
    /// Salesforce JA3S: `version,cipher,extensions` (decimal) and its MD5.
    pub fn ja3s(&self) -> (String, String) {
        let mut s = format!("{},{},", self.legacy_version, self.cipher);
        push_dec_list(&mut s, self.extensions.iter().copied());
        let h = crate::util::md5_hex(&s);
        (h, s)
    }

    /// FoxIO JA4S and its raw form. **FoxIO License 1.1** (patent pending; not for resale): only
    /// compiled with the `ja4-plus` feature.
    #[cfg(any(test, feature = "ja4-plus"))]
    pub fn ja4s(&self, quic: bool) -> (String, String) {
        let alpn = ja4_alpn(self.alpn.as_deref());
        let mut a = String::with_capacity(16);
        a.push(if quic { 'q' } else { 't' });
        a.push_str(ja4_version(
            self.selected_version.unwrap_or(self.legacy_version),
        ));
        a.push_str(&count2(self.extensions.len()));
        a.push(alpn[0] as char);
        a.push(alpn[1] as char);
        a.push('_');
        push_hex_u16(&mut a, self.cipher);
        let mut exts = String::with_capacity(self.extensions.len() * 5);
        push_hex_list(&mut exts, self.extensions.iter().copied());
        (format!("{a}_{}", sha256_12(&exts)), format!("{a}_{exts}"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a TLS record stream holding one ClientHello with these fields (a test-only encoder;
    /// the expected values below come from the JA4 specification, not from this encoder).
    pub(crate) fn client_hello_bytes(
        legacy: u16,
        ciphers: &[u16],
        exts: &[(u16, Vec<u8>)],
    ) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&legacy.to_be_bytes());
        body.extend_from_slice(&[7u8; 32]);
        body.push(32);
        body.extend_from_slice(&[9u8; 32]);
        body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            body.extend_from_slice(&c.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut eb = Vec::new();
        for (t, d) in exts {
            eb.extend_from_slice(&t.to_be_bytes());
            eb.extend_from_slice(&(d.len() as u16).to_be_bytes());
            eb.extend_from_slice(d);
        }
        body.extend_from_slice(&(eb.len() as u16).to_be_bytes());
        body.extend_from_slice(&eb);
        let mut hs = vec![1u8];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22u8, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    pub(crate) fn u16s(len_bytes: usize, v: &[u16]) -> Vec<u8> {
        let mut d = Vec::new();
        let n = v.len() * 2;
        if len_bytes == 1 {
            d.push(n as u8);
        } else {
            d.extend_from_slice(&(n as u16).to_be_bytes());
        }
        for x in v {
            d.extend_from_slice(&x.to_be_bytes());
        }
        d
    }

    pub(crate) fn alpn(protos: &[&[u8]]) -> Vec<u8> {
        let mut l = Vec::new();
        for p in protos {
            l.push(p.len() as u8);
            l.extend_from_slice(p);
        }
        let mut d = (l.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&l);
        d
    }

    /// The ClientHello of the JA4 specification's worked example (technical_details/JA4.md):
    /// ciphers and extensions in the order given there, signature algorithms as listed, TLS 1.3
    /// in supported_versions, SNI, ALPN h2. GREASE values are sprinkled in: the spec ignores them.
    pub(crate) fn spec_example() -> Vec<u8> {
        let ciphers = [
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let order = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let mut exts = vec![(0x2a2a, vec![])];
        for t in order {
            let d = match t {
                0x0000 => {
                    let name = b"example.com";
                    let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
                    d.push(0);
                    d.extend_from_slice(&(name.len() as u16).to_be_bytes());
                    d.extend_from_slice(name);
                    d
                }
                0x0010 => alpn(&[b"h2", b"http/1.1"]),
                0x000d => u16s(
                    2,
                    &[
                        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                    ],
                ),
                0x002b => u16s(1, &[0x3a3a, 0x0304, 0x0303]),
                0x000a => u16s(2, &[0x4a4a, 0x001d, 0x0017, 0x0018]),
                0x000b => vec![1, 0],
                _ => vec![],
            };
            exts.push((t, d));
        }
        exts.push((0xfafa, vec![0]));
        client_hello_bytes(0x0303, &ciphers, &exts)
    }

    #[test]
    fn ja4_of_the_specification_example() {
        let ch = parse_client_hello(&spec_example(), false).expect("parses");
        assert!(!ch.partial);
        let j = ch.ja4(false);
        // Every expected string below is copied from FoxIO's technical_details/JA4.md.
        assert_eq!(j.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            j.ja4_r,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert_eq!(
            j.ja4_ro,
            "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert_eq!(j.ja4_o, "t13d1516h2_acb858a92679_18f69afefd3d");
    }

    #[test]
    fn ja4_without_signature_algorithms_has_no_underscore_tail() {
        // The spec: "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01 = 6d807ffa2a79".
        let exts: Vec<(u16, Vec<u8>)> = [
            0x0005u16, 0x000a, 0x000b, 0x000d, 0x0012, 0x0015, 0x0017, 0x001b, 0x0023, 0x002b,
            0x002d, 0x0033, 0x4469, 0xff01,
        ]
        .iter()
        .map(|&t| {
            let d = match t {
                0x002b => u16s(1, &[0x0304]),
                0x000a => u16s(2, &[0x001d]),
                0x000b => vec![1, 0],
                0x000d => u16s(2, &[]), // present, but no signature algorithms in it
                _ => vec![],
            };
            (t, d)
        })
        .collect();
        let ch = parse_client_hello(&client_hello_bytes(0x0303, &[0x1301], &exts), false).unwrap();
        assert!(
            ch.ja4(false).ja4.ends_with("_6d807ffa2a79"),
            "{}",
            ch.ja4(false).ja4
        );
        assert!(ch.ja4(false).ja4.starts_with("t13i0114"));
    }

    #[test]
    fn ja4_alpn_rules_of_the_specification() {
        // The specification's table of non-alphanumeric ALPN values.
        let cases: [(&[u8], &str); 9] = [
            (&[0xab], "ab"),
            (&[0x20], "20"),
            (&[0xab, 0xcd], "ad"),
            (&[0x20, 0x61], "21"),
            (&[0x30, 0xab], "3b"),
            (&[0x61, 0x20], "60"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
            (b"http/1.1", "h1"),
        ];
        for (v, want) in cases {
            assert_eq!(&ja4_alpn(Some(v)), want.as_bytes(), "{v:02x?}");
        }
        assert_eq!(&ja4_alpn(Some(b"h")), b"hh");
        assert_eq!(&ja4_alpn(Some(b"")), b"00");
        assert_eq!(&ja4_alpn(None), b"00");
    }

    #[test]
    fn ja3_removes_grease_and_keeps_order() {
        let ch = parse_client_hello(&spec_example(), false).unwrap();
        let (hash, raw) = ch.ja3();
        assert_eq!(
            raw,
            "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0"
        );
        assert_eq!(hash.len(), 32);
    }

    #[test]
    fn hello_split_over_records_is_reassembled() {
        let one = spec_example();
        // Re-frame the handshake message into records of 100 bytes.
        let hs = &one[5..];
        let mut split = Vec::new();
        for chunk in hs.chunks(100) {
            split.extend_from_slice(&[22, 3, 3]);
            split.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            split.extend_from_slice(chunk);
        }
        let a = parse_client_hello(&one, false).unwrap();
        let b = parse_client_hello(&split, false).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hello_cut_by_the_capture_is_partial_never_silent() {
        let full = spec_example();
        let whole = parse_client_hello(&full, false).unwrap();
        for n in (2..full.len()).step_by(7).chain([full.len() - 1]) {
            let cut = &full[..n];
            match parse_client_hello(cut, true) {
                Ok(ch) => {
                    assert!(ch.partial, "cut at {n} must be partial");
                    // Lost real (non-GREASE) fields change the value; the flag says so anyway.
                    if n < full.len() - 20 {
                        assert_ne!(ch.ja4(false).ja4, whole.ja4(false).ja4, "cut at {n}");
                    }
                }
                Err(e) => assert_eq!(e, ParseError::Truncated, "cut at {n}"),
            }
            // Without the capture flag an incomplete hello is an error, not a value.
            assert!(parse_client_hello(cut, false).is_err(), "cut at {n}");
        }
    }

    /// Re-frames the handshake message of a one-record stream into records of `size` bytes.
    fn reframe(one: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in one[5..].chunks(size) {
            out.extend_from_slice(&[22, 3, 3]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn large_hellos_reassemble_and_oversized_ones_are_malformed() {
        // A 40 KB padding extension (0x0015): three full records, still one hello.
        let big = client_hello_bytes(0x0303, &[0x1301], &[(0x0015, vec![0; 40_000])]);
        // client_hello_bytes wrote the record length mod 2^16; re-frame properly.
        let big = reframe(&big, 16_384);
        let ch = parse_client_hello(&big, false).expect("40 KB hello");
        assert_eq!(ch.extensions, vec![0x0015]);
        assert!(!ch.partial);
        // Over 64 KiB: refused, not reassembled.
        let huge = reframe(
            &client_hello_bytes(0x0303, &[0x1301], &[(0x0015, vec![0; 65_500])]),
            16_384,
        );
        assert!(matches!(
            parse_client_hello(&huge, false),
            Err(ParseError::Malformed(_))
        ));
        // A record claiming more than 2^14 + 2048 bytes.
        let mut rec = spec_example();
        rec[3] = 0x50;
        assert!(matches!(
            parse_client_hello(&rec, false),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn lying_lengths_are_malformed_not_panics() {
        let mut b = spec_example();
        // Extension block length claims 0xffff.
        let ext_len_at = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 32 + 2;
        b[ext_len_at] = 0xff;
        b[ext_len_at + 1] = 0xff;
        assert!(matches!(
            parse_client_hello(&b, false),
            Err(ParseError::Malformed(_))
        ));
        // One extension claims more bytes than the block holds.
        let mut b = spec_example();
        let first_ext_len = ext_len_at + 2 + 2;
        b[first_ext_len] = 0x40;
        assert!(matches!(
            parse_client_hello(&b, false),
            Err(ParseError::Malformed(_))
        ));
        // Handshake length far beyond the record.
        let mut b = spec_example();
        b[6] = 0xff;
        assert!(parse_client_hello(&b, false).is_err());
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n", false),
            Err(ParseError::NotThis)
        );
    }

    #[test]
    fn ja4s_of_the_specification_example() {
        // FoxIO's JA4S worked example: TLS 1.2, cipher c030, extensions 0005,0017,ff01,0000, no
        // ALPN = t120400_c030_4e8089b08790.
        let sh = ServerHello {
            legacy_version: 0x0303,
            cipher: 0xc030,
            extensions: vec![0x0005, 0x0017, 0xff01, 0x0000],
            ..ServerHello::default()
        };
        let (v, raw) = sh.ja4s(false);
        assert_eq!(v, "t120400_c030_4e8089b08790");
        assert_eq!(raw, "t120400_c030_0005,0017,ff01,0000");
    }
}
