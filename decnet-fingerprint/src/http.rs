//! HTTP/1.x request head: method, version, header names in order, User-Agent, and (behind the
//! `ja4-plus` feature) FoxIO JA4H — **FoxIO License 1.1** (patent pending; not for resale).

use crate::util::{ParseError, printable};

/// At most this many header lines are read.
pub const MAX_HEADERS: usize = 128;
/// The User-Agent value kept (longer ones are cut and marked partial).
pub const MAX_USER_AGENT: usize = 512;
/// A request line or header line longer than this is malformed.
const MAX_LINE: usize = 8192;

const METHODS: [&str; 9] = [
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// One parsed request head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// `HTTP/1.1` → `11`, `HTTP/1.0` → `10`.
    pub version: String,
    /// Header names in order, as sent (printable).
    pub header_names: Vec<String>,
    /// The User-Agent value (printable, bounded), when the head has one.
    pub user_agent: Option<String>,
    /// The User-Agent was longer than [`MAX_USER_AGENT`].
    pub user_agent_cut: bool,
    /// First Accept-Language value, raw.
    pub accept_language: Option<String>,
    /// Cookie pairs `name=value` in order (all Cookie headers).
    pub cookies: Vec<String>,
    pub has_referer: bool,
    /// The head ended (blank line) within the bytes; false when the capture cut it.
    pub complete: bool,
    /// Everything JA4H hashes was kept byte for byte: false when a cookie or Accept-Language held
    /// bytes that had to be escaped (outside printable ASCII, or `\`) or exceeded the bounds —
    /// JA4H of such a head would not be FoxIO's, so it is not computed.
    pub ja4h_exact: bool,
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes `printable` keeps as they are.
fn exact_text(b: &[u8]) -> bool {
    b.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'\\')
}

/// True when `bytes` starts with a known HTTP method and a space.
pub fn looks_like_http(bytes: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|m| bytes.starts_with(m.as_bytes()) && bytes.get(m.len()) == Some(&b' '))
}

/// Parses the request head at the start of `bytes`. A head that is not finished within `bytes`
/// is returned with `complete: false` (its complete lines parsed) — callers decide whether that
/// is a capture cut (partial) or an error.
pub fn parse_request(bytes: &[u8]) -> Result<Request, ParseError> {
    if !looks_like_http(bytes) {
        return Err(ParseError::NotThis);
    }
    let mut lines = bytes.split(|&b| b == b'\n');
    let mut consumed = 0usize;
    let mut next_line = |consumed: &mut usize| -> Option<Result<&[u8], ParseError>> {
        let l = lines.next()?;
        let end = *consumed + l.len();
        if end >= bytes.len() {
            // No LF after this piece: unfinished line.
            return if l.len() > MAX_LINE {
                Some(Err(ParseError::Malformed("HTTP line longer than 8 KiB")))
            } else {
                None
            };
        }
        *consumed = end + 1;
        if l.len() > MAX_LINE {
            return Some(Err(ParseError::Malformed("HTTP line longer than 8 KiB")));
        }
        Some(Ok(l.strip_suffix(b"\r").unwrap_or(l)))
    };
    let Some(first) = next_line(&mut consumed) else {
        return Err(ParseError::Truncated);
    };
    let first = first?;
    let mut parts = first.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let _target = parts
        .next()
        .ok_or(ParseError::Malformed("HTTP request line without a target"))?;
    let proto = parts
        .next()
        .ok_or(ParseError::Malformed("HTTP request line without a version"))?;
    if parts.next().is_some() {
        return Err(ParseError::Malformed("HTTP request line with extra fields"));
    }
    let version = match proto {
        b"HTTP/1.1" => "11",
        b"HTTP/1.0" => "10",
        b"HTTP/0.9" => "09",
        _ => return Err(ParseError::Malformed("unknown HTTP version")),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::Malformed("HTTP method is not a token"));
    }
    let mut req = Request {
        method: String::from_utf8_lossy(method).into_owned(),
        version: version.to_owned(),
        ja4h_exact: true,
        ..Request::default()
    };
    while let Some(line) = next_line(&mut consumed) {
        let line = line?;
        if line.is_empty() {
            req.complete = true;
            break;
        }
        if req.header_names.len() >= MAX_HEADERS {
            return Err(ParseError::Malformed("more than 128 HTTP headers"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::Malformed("HTTP header line without a colon"))?;
        let name = &line[..colon];
        // RFC 9110 §5.1: a field name is a token.
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ParseError::Malformed("HTTP header name is not a token"));
        }
        let value = line[colon + 1..].trim_ascii();
        let name_s = printable(name, 256).0;
        if name.eq_ignore_ascii_case(b"user-agent") && req.user_agent.is_none() {
            let (ua, cut) = printable(value, MAX_USER_AGENT);
            req.user_agent = Some(ua);
            req.user_agent_cut = cut;
        } else if name.eq_ignore_ascii_case(b"accept-language") && req.accept_language.is_none() {
            let (lang, cut) = printable(value, 256);
            req.ja4h_exact &= !cut && exact_text(value);
            req.accept_language = Some(lang);
        } else if name.eq_ignore_ascii_case(b"referer") {
            req.has_referer = true;
        } else if name.eq_ignore_ascii_case(b"cookie") {
            for c in value.split(|&b| b == b';') {
                let c = c.trim_ascii();
                if c.is_empty() {
                    continue;
                }
                if req.cookies.len() >= MAX_HEADERS {
                    req.ja4h_exact = false;
                    break;
                }
                let (cookie, cut) = printable(c, 1024);
                req.ja4h_exact &= !cut && exact_text(c);
                req.cookies.push(cookie);
            }
        }
        req.header_names.push(name_s);
    }
    Ok(req)
}

impl Request {
    /// FoxIO JA4H (`ge11cn05enus_<headers>_<cookie names>_<cookie pairs>`) and its raw form.
    /// **FoxIO License 1.1**: only compiled with the `ja4-plus` feature.
    #[cfg(any(test, feature = "ja4-plus"))]
    pub fn ja4h(&self) -> (String, String) {
        use crate::util::sha256_12;
        let method: String = self.method.to_ascii_lowercase().chars().take(2).collect();
        let has_cookie = !self.cookies.is_empty()
            || self
                .header_names
                .iter()
                .any(|h| h.eq_ignore_ascii_case("cookie"));
        let headers: Vec<&str> = self
            .header_names
            .iter()
            .map(String::as_str)
            .filter(|h| {
                !h.to_ascii_lowercase().starts_with("cookie") && !h.eq_ignore_ascii_case("referer")
            })
            .collect();
        let lang = match &self.accept_language {
            Some(l) => {
                let l = l.replace('-', "").replace(';', ",").to_ascii_lowercase();
                let first: String = l.split(',').next().unwrap_or("").chars().take(4).collect();
                format!("{first:0<4}")
            }
            None => "0000".to_owned(),
        };
        let a = format!(
            "{method}{}{}{}{:02}{lang}",
            self.version,
            if has_cookie { 'c' } else { 'n' },
            if self.has_referer { 'r' } else { 'n' },
            headers.len().min(99)
        );
        let mut pairs: Vec<(&str, &str)> = self
            .cookies
            .iter()
            .map(|c| (c.split('=').next().unwrap_or("").trim(), c.as_str()))
            .collect();
        pairs.sort_by(|x, y| x.0.cmp(y.0));
        let names: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let values: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let hl = headers.join(",");
        let (cn, cv) = (names.join(","), values.join(","));
        let value = format!(
            "{a}_{}_{}_{}",
            sha256_12(&hl),
            sha256_12(&cn),
            sha256_12(&cv)
        );
        let raw = if pairs.is_empty() {
            format!("{a}_{hl}_")
        } else {
            format!("{a}_{hl}_{cn}_{cv}")
        };
        (value, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_request_gives_user_agent() {
        let r = parse_request(
            b"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.user_agent.as_deref(), Some("curl/7.88.1"));
        assert_eq!(r.header_names, ["Host", "User-Agent", "Accept"]);
        assert!(r.complete);
    }

    #[test]
    fn cut_head_is_incomplete_and_hostile_lines_bounded() {
        let r = parse_request(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nAcc").unwrap();
        assert!(!r.complete);
        assert_eq!(r.user_agent.as_deref(), Some("x"));
        let mut long = b"GET / HTTP/1.1\r\nUser-Agent: ".to_vec();
        long.extend(std::iter::repeat_n(b'A', 64 * 1024));
        assert!(matches!(
            parse_request(&long),
            Err(ParseError::Malformed(_))
        ));
        let r = parse_request(b"GET / HTTP/1.1\r\nUser-Agent: a\0b\r\n\r\n").unwrap();
        assert_eq!(r.user_agent.as_deref(), Some("a\\x00b"));
        assert!(matches!(
            parse_request(b"GET / HTTP/7\r\n\r\n"),
            Err(ParseError::Malformed(_))
        ));
        assert_eq!(parse_request(b"\x16\x03\x01"), Err(ParseError::NotThis));
        let many = [
            b"GET / HTTP/1.1\r\n".as_slice(),
            &b"A: b\r\n".repeat(200),
            b"\r\n",
        ]
        .concat();
        assert!(matches!(
            parse_request(&many),
            Err(ParseError::Malformed(_))
        ));
    }
}
