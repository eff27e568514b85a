//! SSH: the identification string (RFC 4253 §4.2) and the first binary packet, SSH_MSG_KEXINIT
//! (§7.1), and HASSH / HASSH-server (Salesforce, BSD-3-Clause): the MD5 of
//! `kex_algorithms;encryption;mac;compression` of the client→server (HASSH) or server→client
//! (HASSH-server) name-lists.
//!
//! Input is one direction's stream prefix: the identification line, then the KEXINIT packet (which
//! may come in the next segment; the sensor concatenates them).

use crate::util::{ParseError, Reader, md5_hex, printable};

/// RFC 4253: the identification line is at most 255 characters including CR LF.
pub const MAX_BANNER: usize = 255;
/// Lines a server may send before its identification string that we skip (RFC 4253 §4.2).
const MAX_PRE_LINES: usize = 8;
/// RFC 4253 §6.1: implementations must handle packets of 35000 bytes; a larger KEXINIT is
/// malformed here.
pub const MAX_KEXINIT: usize = 35000;

/// The 10 name-lists of SSH_MSG_KEXINIT, each as the raw comma-separated string (printable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KexInit {
    pub kex_algorithms: String,
    pub server_host_key_algorithms: String,
    pub encryption_c2s: String,
    pub encryption_s2c: String,
    pub mac_c2s: String,
    pub mac_s2c: String,
    pub compression_c2s: String,
    pub compression_s2c: String,
    pub languages_c2s: String,
    pub languages_s2c: String,
    pub first_kex_packet_follows: bool,
}

/// The identification string and where the binary protocol starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The line without CR LF, printable (`\xNN` for anything else).
    pub text: String,
    /// Offset of the first byte after the line's LF (the KEXINIT packet).
    pub end: usize,
}

/// True when `bytes` starts like an SSH identification string.
pub fn looks_like_ssh(bytes: &[u8]) -> bool {
    bytes.starts_with(b"SSH-")
}

/// Finds the SSH identification line in a stream prefix. `server` allows (a few, bounded) other
/// lines before it, as RFC 4253 §4.2 does for servers.
pub fn parse_banner(stream: &[u8], server: bool) -> Result<Banner, ParseError> {
    let mut pos = 0usize;
    for _ in 0..=MAX_PRE_LINES {
        let rest = &stream[pos..];
        let window = &rest[..rest.len().min(MAX_BANNER)];
        let is_ident = rest.starts_with(b"SSH-");
        if pos == 0 && !is_ident && !server && !b"SSH-".starts_with(rest) {
            return Err(ParseError::NotThis);
        }
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if rest.len() >= MAX_BANNER {
                return Err(ParseError::Malformed(
                    "SSH identification line longer than 255 bytes",
                ));
            }
            return Err(if pos == 0 && !is_ident && !b"SSH-".starts_with(rest) {
                ParseError::NotThis
            } else {
                ParseError::Truncated
            });
        };
        let line = &rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if is_ident {
            if line.contains(&0) {
                return Err(ParseError::Malformed("NUL in SSH identification string"));
            }
            if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
                // SSH-1.x clients have no KEXINIT; the banner is still their identification.
                if !line.starts_with(b"SSH-1.") {
                    return Err(ParseError::Malformed(
                        "SSH identification without a known version",
                    ));
                }
            }
            return Ok(Banner {
                text: printable(line, MAX_BANNER).0,
                end: pos + lf + 1,
            });
        }
        if pos == 0 && !server {
            return Err(ParseError::NotThis);
        }
        pos += lf + 1;
    }
    Err(ParseError::Malformed(
        "too many lines before the SSH identification string",
    ))
}

/// Parses the SSH_MSG_KEXINIT binary packet at the start of `bytes` (unencrypted, as the first
/// packet always is).
pub fn parse_kexinit(bytes: &[u8]) -> Result<KexInit, ParseError> {
    let mut r = Reader::new(bytes);
    let plen = r.u32().ok_or(ParseError::Truncated)? as usize;
    if plen > MAX_KEXINIT {
        return Err(ParseError::Malformed("SSH packet longer than 35000 bytes"));
    }
    if plen < 1 + 1 + 16 + 10 * 4 + 1 + 4 {
        return Err(ParseError::Malformed("SSH packet too short for a KEXINIT"));
    }
    let pkt = r.take(plen).ok_or(ParseError::Truncated)?;
    let mut p = Reader::new(pkt);
    let pad = usize::from(p.u8().ok_or(ParseError::Malformed("empty SSH packet"))?);
    if pad + 1 > plen {
        return Err(ParseError::Malformed("SSH padding longer than the packet"));
    }
    let payload = &pkt[1..plen - pad];
    let mut p = Reader::new(payload);
    let bad = ParseError::Malformed("KEXINIT name-list overruns the packet");
    if p.u8() != Some(20) {
        return Err(ParseError::Malformed("first SSH packet is not KEXINIT"));
    }
    p.take(16).ok_or(bad)?;
    let mut lists: [String; 10] = Default::default();
    for l in &mut lists {
        let n = p.u32().ok_or(bad)? as usize;
        let s = p.take(n).ok_or(bad)?;
        // RFC 4251 §5: names are US-ASCII. Anything else (NUL, controls, 8-bit) is refused
        // rather than escaped, so the lists — and HASSH, their MD5 — are exactly the wire bytes.
        if s.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
            return Err(ParseError::Malformed(
                "non-printable byte in a KEXINIT name-list",
            ));
        }
        *l = s.iter().map(|&b| b as char).collect();
    }
    let follows = p.u8().ok_or(bad)? != 0;
    p.u32().ok_or(bad)?;
    let [
        kex,
        hostkey,
        enc_c,
        enc_s,
        mac_c,
        mac_s,
        comp_c,
        comp_s,
        lang_c,
        lang_s,
    ] = lists;
    Ok(KexInit {
        kex_algorithms: kex,
        server_host_key_algorithms: hostkey,
        encryption_c2s: enc_c,
        encryption_s2c: enc_s,
        mac_c2s: mac_c,
        mac_s2c: mac_s,
        compression_c2s: comp_c,
        compression_s2c: comp_s,
        languages_c2s: lang_c,
        languages_s2c: lang_s,
        first_kex_packet_follows: follows,
    })
}

impl KexInit {
    /// HASSH (client): MD5 of `kex;enc_c2s;mac_c2s;comp_c2s`, and that string.
    pub fn hassh(&self) -> (String, String) {
        let raw = format!(
            "{};{};{};{}",
            self.kex_algorithms, self.encryption_c2s, self.mac_c2s, self.compression_c2s
        );
        (md5_hex(&raw), raw)
    }

    /// HASSH-server: MD5 of `kex;enc_s2c;mac_s2c;comp_s2c`, and that string.
    pub fn hassh_server(&self) -> (String, String) {
        let raw = format!(
            "{};{};{};{}",
            self.kex_algorithms, self.encryption_s2c, self.mac_s2c, self.compression_s2c
        );
        (md5_hex(&raw), raw)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn kexinit_packet(lists: [&str; 10]) -> Vec<u8> {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[0x55; 16]);
        for l in lists {
            payload.extend_from_slice(&(l.len() as u32).to_be_bytes());
            payload.extend_from_slice(l.as_bytes());
        }
        payload.push(0);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        let mut pad = 8 - (payload.len() + 5) % 8;
        if pad < 4 {
            pad += 8;
        }
        let mut pkt = ((payload.len() + pad + 1) as u32).to_be_bytes().to_vec();
        pkt.push(pad as u8);
        pkt.extend_from_slice(&payload);
        pkt.extend(std::iter::repeat_n(0u8, pad));
        pkt
    }

    const LISTS: [&str; 10] = [
        "curve25519-sha256,ext-info-c",
        "ssh-ed25519",
        "aes128-ctr,aes256-gcm@openssh.com",
        "aes256-ctr",
        "hmac-sha2-256",
        "hmac-sha1",
        "none,zlib@openssh.com",
        "none",
        "",
        "",
    ];

    #[test]
    fn banner_then_kexinit_gives_hassh_of_the_client_lists() {
        let mut s = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec();
        s.extend_from_slice(&kexinit_packet(LISTS));
        let b = parse_banner(&s, false).unwrap();
        assert_eq!(b.text, "SSH-2.0-OpenSSH_9.2p1 Debian-2");
        let k = parse_kexinit(&s[b.end..]).unwrap();
        let (h, raw) = k.hassh();
        assert_eq!(
            raw,
            "curve25519-sha256,ext-info-c;aes128-ctr,aes256-gcm@openssh.com;hmac-sha2-256;none,zlib@openssh.com"
        );
        // md5 of the raw string, computed independently: `printf %s "$raw" | md5sum`.
        assert_eq!(h, "48cededbf2ab7656df38d060cf3325e0");
        let (_, raw_s) = k.hassh_server();
        assert_eq!(
            raw_s,
            "curve25519-sha256,ext-info-c;aes256-ctr;hmac-sha1;none"
        );
    }

    #[test]
    fn server_may_send_lines_before_its_banner() {
        let s = b"hello there\r\nSSH-2.0-x\r\n";
        assert_eq!(parse_banner(s, true).unwrap().text, "SSH-2.0-x");
        assert_eq!(parse_banner(s, false), Err(ParseError::NotThis));
    }

    #[test]
    fn hostile_banners_are_bounded() {
        let mut big = b"SSH-2.0-".to_vec();
        big.extend(std::iter::repeat_n(b'A', 64 * 1024));
        big.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_banner(&big, false),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            parse_banner(b"SSH-2.0-a\0b\r\n", false),
            Err(ParseError::Malformed(_))
        ));
        assert_eq!(
            parse_banner(b"SSH-2.0-abc", false),
            Err(ParseError::Truncated)
        );
        assert_eq!(parse_banner(b"SS", false), Err(ParseError::Truncated));
        let many = b"a\r\n".repeat(100);
        assert!(matches!(
            parse_banner(&many, true),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn hostile_kexinit_is_malformed_or_truncated() {
        let good = kexinit_packet(LISTS);
        for n in 0..good.len() {
            assert_eq!(
                parse_kexinit(&good[..n]),
                Err(ParseError::Truncated),
                "cut at {n}"
            );
        }
        let mut lying = good.clone();
        lying[4 + 1 + 1 + 16 + 3] = 0xff; // first name-list length low byte
        assert!(matches!(
            parse_kexinit(&lying),
            Err(ParseError::Malformed(_))
        ));
        let mut huge = good.clone();
        huge[0] = 0x7f;
        assert!(matches!(
            parse_kexinit(&huge),
            Err(ParseError::Malformed(_))
        ));
        let mut nul = good.clone();
        nul[4 + 1 + 1 + 16 + 4] = 0; // first byte of the first name-list
        assert!(matches!(parse_kexinit(&nul), Err(ParseError::Malformed(_))));
        let mut high = good.clone();
        high[4 + 1 + 1 + 16 + 4] = 0xc3;
        assert!(matches!(
            parse_kexinit(&high),
            Err(ParseError::Malformed(_))
        ));
        let mut pad = good;
        pad[4] = 0xff;
        assert!(matches!(parse_kexinit(&pad), Err(ParseError::Malformed(_))));
    }
}
