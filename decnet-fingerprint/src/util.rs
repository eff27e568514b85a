//! Small helpers shared by the parsers: a bounds-checked big-endian reader, hex, hashes, and the
//! escaping that keeps attacker strings printable.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// Why a parser gave up. `Truncated` is the only recoverable case: more bytes would have helped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not this protocol at all (nothing to count: another parser may own them).
    NotThis,
    /// The bytes end before the structure they started does.
    Truncated,
    /// The bytes claim to be this protocol but break its grammar (a length that lies, a field out
    /// of range, …). The string says which rule.
    Malformed(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotThis => f.write_str("not this protocol"),
            ParseError::Truncated => f.write_str("truncated"),
            ParseError::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A cursor over hostile bytes: every read is bounds-checked and returns `None` past the end.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn push_hex_u16(out: &mut String, v: u16) {
    for shift in [12u32, 8, 4, 0] {
        out.push(HEX[usize::from((v >> shift) as u8 & 0xf)] as char);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

pub(crate) fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

/// The first 12 hex characters of SHA-256, or twelve zeros for an empty list (FoxIO's rule).
pub(crate) fn sha256_12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    let mut h = hex(&Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, …, 0xfafa.
pub(crate) const fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// Attacker bytes as a printable string of at most `max` input bytes: printable ASCII kept, `\`
/// and everything else written `\xNN`. Returns the string and whether `max` cut it.
pub(crate) fn printable(bytes: &[u8], max: usize) -> (String, bool) {
    let cut = bytes.len() > max;
    let bytes = &bytes[..bytes.len().min(max)];
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str("\\x");
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    (s, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_exactly_the_sixteen_of_rfc_8701() {
        let all: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        let want: Vec<u16> = (0..16u16)
            .map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a)
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn sha256_12_matches_the_spec_and_zeroes_empty() {
        // JA4 specification, "Cipher hash".
        assert_eq!(
            sha256_12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
            "8daaf6152771"
        );
        assert_eq!(sha256_12(""), "000000000000");
    }

    #[test]
    fn printable_escapes_controls_nul_and_backslash() {
        assert_eq!(
            printable(b"a\0b\\c\r\n\xff", 100),
            ("a\\x00b\\x5cc\\x0d\\x0a\\xff".to_owned(), false)
        );
        assert_eq!(printable(b"abcdef", 3), ("abc".to_owned(), true));
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.take(usize::MAX), None);
        assert!(r.is_empty());
    }
}
