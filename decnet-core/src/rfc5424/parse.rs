//! A strict, zero-copy RFC 5424 syslog parser.
//!
//! [`parse`] takes one line (one datagram, one octet-counted frame, or one newline-framed line
//! with its `\n` or `\r\n` still on) and returns a [`Message`] borrowing from it, or the one
//! [`Reject`] reason why it is not RFC 5424. Header fields and SD-IDs/names are `&str` slices of
//! the input; PARAM-VALUEs and MSG are [`Cow`]s that borrow unless an escape had to be removed.
//!
//! The grammar is RFC 5424 section 6, with a few real-world deviations tolerated; each one
//! accepted sets a bit of [`Message::deviations`] (see [`deviation`]), so nothing is guessed
//! silently. Everything else that is malformed is rejected: no field is ever re-interpreted.
//!
//! This file uses only `std` and nothing else from the crate: `fuzz/` compiles this very file
//! into its fuzz target, so that the target does not drag the repository's dependencies through
//! the coverage instrumentation. (Its renderer counterpart, `render.rs` beside it, is a separate file
//! for that reason.)

use std::borrow::Cow;
use std::fmt;

/// The default upper bound of one message, in bytes (without the framing newline).
pub const MAX_MESSAGE: usize = 65_536;

/// Longest HOSTNAME, APP-NAME, PROCID, MSGID, SD-ID and PARAM-NAME (RFC 5424 section 6).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROCID: usize = 128;
const MAX_MSGID: usize = 32;
const MAX_SD_NAME: usize = 32;

/// The UTF-8 byte order mark that may start MSG.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Real-world deviations from RFC 5424 that [`parse`] tolerates; each sets one bit of
/// [`Message::deviations`].
pub mod deviation {
    /// TIME-SECFRAC with 7 to 9 digits (rsyslog's high-precision timestamps); the RFC allows 6.
    pub const LONG_FRACTION: u8 = 1;
    /// No space between the last SD-ELEMENT's `]` and MSG.
    pub const NO_SPACE_BEFORE_MSG: u8 = 2;
    /// A lowercase `t` (date/time separator) or `z` (UTC) in the TIMESTAMP.
    pub const LOWERCASE_T_Z: u8 = 4;
    /// A leap second (`:60`), which RFC 5424 forbids: the time is clamped to the last
    /// nanosecond of that minute (`:59.999999999`).
    pub const LEAP_SECOND: u8 = 8;
    /// An unescaped `]` inside a quoted PARAM-VALUE (the RFC says it MUST be escaped; inside
    /// quotes it is unambiguous, so it is kept as is).
    pub const UNESCAPED_BRACKET: u8 = 16;
    /// MSG without a BOM that is not valid UTF-8. RFC 5424 allows it (MSG-ANY: any octets);
    /// [`super::Message::msg`] then holds it with invalid sequences replaced by U+FFFD (the raw
    /// line keeps the original bytes).
    pub const NON_UTF8_MSG: u8 = 32;

    /// Every flag with its name (for counters and logs).
    pub const ALL: [(u8, &str); 6] = [
        (LONG_FRACTION, "long_fraction"),
        (NO_SPACE_BEFORE_MSG, "no_space_before_msg"),
        (LOWERCASE_T_Z, "lowercase_t_z"),
        (LEAP_SECOND, "leap_second"),
        (UNESCAPED_BRACKET, "unescaped_bracket"),
        (NON_UTF8_MSG, "non_utf8_msg"),
    ];
}

/// One parsed syslog message, borrowing from the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// PRI / 8: 0..=23.
    pub facility: u8,
    /// PRI % 8: 0..=7.
    pub severity: u8,
    /// Always 1 (any other version is rejected).
    pub version: u8,
    /// Unix time in nanoseconds, UTC; `None` for NILVALUE `-`.
    pub timestamp_ns: Option<i64>,
    /// `None` for NILVALUE `-` (likewise the three below).
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    /// The SD-ELEMENTs in order; empty for NILVALUE `-`.
    pub sd: Vec<SdElement<'a>>,
    /// MSG with a leading UTF-8 BOM removed; `None` if absent or empty.
    pub msg: Option<Cow<'a, str>>,
    /// The [`deviation`] flags this message needed.
    pub deviations: u8,
}

/// One SD-ELEMENT: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    pub id: &'a str,
    /// PARAM-NAME and PARAM-VALUE pairs in order (a name may repeat); values unescaped
    /// (`\"`, `\\`, `\]`; a backslash before any other character is kept, as the RFC says).
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// Why a line is not an RFC 5424 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Nothing but (at most) the framing newline.
    Empty,
    /// Longer than the limit given to [`parse`].
    TooLong,
    /// PRI is not `<0>`..`<191>` (missing `<` or `>`, no digits, leading zero, too large).
    BadPri,
    /// VERSION is not `1`.
    BadVersion,
    /// TIMESTAMP is neither `-` nor a valid RFC 3339 date-time (as restricted by RFC 5424).
    BadTimestamp,
    /// HOSTNAME, APP-NAME, PROCID or MSGID is empty, too long or not printable US-ASCII.
    BadHeaderField,
    /// STRUCTURED-DATA is neither `-` nor well-formed SD-ELEMENTs (bad SD-ID or PARAM-NAME,
    /// missing `=` or quotes, a repeated SD-ID, junk after `-` or after a value).
    BadStructuredData,
    /// The line ends inside an SD-ELEMENT (e.g. a PARAM-VALUE whose closing quote is missing).
    UnterminatedStructuredData,
    /// A header field, SD part or MSG is not valid UTF-8.
    InvalidUtf8,
    /// A NUL byte anywhere in the line.
    NulByte,
    /// The line ends before the header and STRUCTURED-DATA are complete.
    Truncated,
}

impl Reject {
    /// Every reason, in declaration order.
    pub const ALL: [Reject; 11] = [
        Reject::Empty,
        Reject::TooLong,
        Reject::BadPri,
        Reject::BadVersion,
        Reject::BadTimestamp,
        Reject::BadHeaderField,
        Reject::BadStructuredData,
        Reject::UnterminatedStructuredData,
        Reject::InvalidUtf8,
        Reject::NulByte,
        Reject::Truncated,
    ];

    /// A stable snake_case name, for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Empty => "empty",
            Reject::TooLong => "too_long",
            Reject::BadPri => "bad_pri",
            Reject::BadVersion => "bad_version",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::BadHeaderField => "bad_header_field",
            Reject::BadStructuredData => "bad_structured_data",
            Reject::UnterminatedStructuredData => "unterminated_structured_data",
            Reject::InvalidUtf8 => "invalid_utf8",
            Reject::NulByte => "nul_byte",
            Reject::Truncated => "truncated",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Reject {}

/// Parses one RFC 5424 message of at most `max_len` bytes (not counting one trailing `\n` or
/// `\r\n`, which is stripped first). Never panics.
///
/// Checks, in order: [`Reject::Empty`], [`Reject::TooLong`], [`Reject::NulByte`] (anywhere),
/// then the grammar left to right; the first error found is returned.
pub fn parse(line: &[u8], max_len: usize) -> Result<Message<'_>, Reject> {
    let line = strip_framing(line);
    if line.is_empty() {
        return Err(Reject::Empty);
    }
    if line.len() > max_len {
        return Err(Reject::TooLong);
    }
    // `contains` on bytes is memchr.
    if line.contains(&0) {
        return Err(Reject::NulByte);
    }
    let mut p = Parser {
        s: line,
        // Usually the whole line is UTF-8: validated once, fields are then sliced from it.
        text: std::str::from_utf8(line).ok(),
        pos: 0,
        deviations: 0,
    };
    let pri = p.pri()?;
    let version = p.version()?;
    let timestamp_ns = p.timestamp()?;
    let hostname = p.header_field(MAX_HOSTNAME)?;
    let app_name = p.header_field(MAX_APP_NAME)?;
    let procid = p.header_field(MAX_PROCID)?;
    let msgid = p.header_field(MAX_MSGID)?;
    let sd = p.structured_data()?;
    let msg = p.msg()?;
    Ok(Message {
        facility: pri / 8,
        severity: pri % 8,
        version,
        timestamp_ns,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
        deviations: p.deviations,
    })
}

/// `line` without one trailing `\n` or `\r\n`.
fn strip_framing(line: &[u8]) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
        None => line,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    /// `s` as a `str` if it is all valid UTF-8.
    text: Option<&'a str>,
    pos: usize,
    deviations: u8,
}

impl<'a> Parser<'a> {
    /// `s[start..end]` as a `str`: sliced from the validated line when there is one (the bounds
    /// are always next to ASCII bytes, so on character boundaries), else validated alone.
    fn str_at(&self, start: usize, end: usize) -> Result<&'a str, Reject> {
        match self.text {
            Some(t) => t.get(start..end).ok_or(Reject::InvalidUtf8),
            None => self
                .s
                .get(start..end)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or(Reject::InvalidUtf8),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.s.get(self.pos..).unwrap_or_default()
    }

    /// `<` 1*3DIGIT `>`, 0..=191, no leading zero (but `<0>`).
    fn pri(&mut self) -> Result<u8, Reject> {
        if self.peek() != Some(b'<') {
            return Err(Reject::BadPri);
        }
        self.pos += 1;
        let digits = self.digits();
        if digits.len() > 3 || (digits.len() > 1 && digits[0] == b'0') {
            return Err(Reject::BadPri);
        }
        let value = digits
            .iter()
            .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        if value > 191 {
            return Err(Reject::BadPri);
        }
        match self.peek() {
            None => Err(Reject::Truncated),
            Some(b'>') if !digits.is_empty() => {
                self.pos += 1;
                // value <= 191 fits.
                Ok(value as u8)
            }
            Some(_) => Err(Reject::BadPri),
        }
    }

    /// VERSION (must be `1`) and the space after it.
    fn version(&mut self) -> Result<u8, Reject> {
        let digits = self.digits();
        if digits.is_empty() && self.peek().is_none() {
            return Err(Reject::Truncated);
        }
        if digits != b"1" {
            return Err(Reject::BadVersion);
        }
        match self.peek() {
            None => Err(Reject::Truncated),
            Some(b' ') => {
                self.pos += 1;
                Ok(1)
            }
            Some(_) => Err(Reject::BadVersion),
        }
    }

    /// The run of ASCII digits at the cursor (consumed).
    fn digits(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        self.pos += n;
        &rest[..n]
    }

    /// The bytes up to the next space, and the space (consumed). The header's fields all end in
    /// one, so reaching the end of the line first is [`Reject::Truncated`].
    fn token(&mut self) -> Result<&'a [u8], Reject> {
        let rest = self.rest();
        match rest.iter().position(|&b| b == b' ') {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(Reject::Truncated),
        }
    }

    fn timestamp(&mut self) -> Result<Option<i64>, Reject> {
        let token = self.token()?;
        if token == b"-" {
            return Ok(None);
        }
        if !token.is_ascii() {
            return Err(non_ascii_reject(token, Reject::BadTimestamp));
        }
        parse_timestamp(token, &mut self.deviations).map(Some)
    }

    /// HOSTNAME, APP-NAME, PROCID or MSGID: NILVALUE or 1..=`max` printable US-ASCII.
    fn header_field(&mut self, max: usize) -> Result<Option<&'a str>, Reject> {
        let start = self.pos;
        let token = self.token()?;
        if token == b"-" {
            return Ok(None);
        }
        if !token.iter().all(|&b| CLASS[usize::from(b)] & PRINT != 0) {
            return Err(non_ascii_reject(token, Reject::BadHeaderField));
        }
        if token.is_empty() || token.len() > max {
            return Err(Reject::BadHeaderField);
        }
        self.str_at(start, start + token.len()).map(Some)
    }

    /// STRUCTURED-DATA: NILVALUE or 1*SD-ELEMENT. Leaves the cursor on what follows (end of
    /// line, the space before MSG, or MSG itself when that space is missing).
    fn structured_data(&mut self) -> Result<Vec<SdElement<'a>>, Reject> {
        match self.peek() {
            None => Err(Reject::Truncated),
            Some(b'-') => {
                self.pos += 1;
                match self.peek() {
                    None | Some(b' ') => Ok(Vec::new()),
                    Some(_) => Err(Reject::BadStructuredData),
                }
            }
            Some(b'[') => {
                let mut elements = Vec::with_capacity(2);
                while self.peek() == Some(b'[') {
                    elements.push(self.sd_element()?);
                }
                match self.peek() {
                    None | Some(b' ') => {}
                    Some(_) => self.deviations |= deviation::NO_SPACE_BEFORE_MSG,
                }
                if has_duplicate_id(&elements) {
                    return Err(Reject::BadStructuredData);
                }
                Ok(elements)
            }
            Some(_) => Err(Reject::BadStructuredData),
        }
    }

    /// `[` SD-ID *(SP PARAM-NAME `="` PARAM-VALUE `"`) `]`, the cursor on the `[`.
    fn sd_element(&mut self) -> Result<SdElement<'a>, Reject> {
        self.pos += 1;
        let id = self.sd_name()?;
        let mut params = Vec::with_capacity(8);
        loop {
            match self.peek() {
                None => return Err(Reject::UnterminatedStructuredData),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(SdElement { id, params });
                }
                Some(b' ') => {
                    self.pos += 1;
                    let name = self.sd_name()?;
                    self.expect(b'=')?;
                    self.expect(b'"')?;
                    let value = self.param_value()?;
                    params.push((name, value));
                }
                Some(_) => return Err(Reject::BadStructuredData),
            }
        }
    }

    /// The next byte must be `b` (consumed).
    fn expect(&mut self, b: u8) -> Result<(), Reject> {
        match self.peek() {
            None => Err(Reject::UnterminatedStructuredData),
            Some(c) if c == b => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(Reject::BadStructuredData),
        }
    }

    /// SD-NAME: 1..=32 printable US-ASCII except `=`, space, `]` and `"`. Stops before the
    /// first byte that cannot be part of one.
    fn sd_name(&mut self) -> Result<&'a str, Reject> {
        let rest = self.rest();
        let Some(n) = rest
            .iter()
            .position(|&b| CLASS[usize::from(b)] & SD_NAME == 0)
        else {
            return Err(Reject::UnterminatedStructuredData);
        };
        if rest[n] >= 0x80 && !starts_with_valid_char(&rest[n..]) {
            return Err(Reject::InvalidUtf8);
        }
        if n == 0 || n > MAX_SD_NAME {
            return Err(Reject::BadStructuredData);
        }
        let start = self.pos;
        self.pos += n;
        self.str_at(start, start + n)
    }

    /// PARAM-VALUE up to its closing quote (consumed), the cursor just after the opening one.
    fn param_value(&mut self) -> Result<Cow<'a, str>, Reject> {
        let start = self.pos;
        let rest = self.rest();
        let mut escaped = false;
        let mut i = 0;
        let end = loop {
            // Skip to the next `"`, `\` or `]`.
            i += rest
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|&b| CLASS[usize::from(b)] & VALUE_STOP != 0)
                .unwrap_or(rest.len() - i);
            match rest.get(i) {
                None => return Err(Reject::UnterminatedStructuredData),
                Some(b'"') => break i,
                Some(b'\\') => match rest.get(i + 1) {
                    None => return Err(Reject::UnterminatedStructuredData),
                    Some(b'"' | b'\\' | b']') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(_) => i += 1,
                },
                Some(_) => {
                    // `]`
                    self.deviations |= deviation::UNESCAPED_BRACKET;
                    i += 1;
                }
            }
        };
        let raw = &rest[..end];
        self.pos += end + 1;
        if !escaped {
            return self.str_at(start, start + end).map(Cow::Borrowed);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            if b == b'\\'
                && let Some(&next @ (b'"' | b'\\' | b']')) = raw.get(i + 1)
            {
                out.push(next);
                i += 2;
                continue;
            }
            out.push(b);
            i += 1;
        }
        // Removing a backslash before an ASCII byte changes nothing to UTF-8 validity.
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| Reject::InvalidUtf8)
    }

    /// MSG: whatever follows the space after STRUCTURED-DATA (or directly after `]`, see
    /// [`deviation::NO_SPACE_BEFORE_MSG`]), less a leading BOM.
    fn msg(&mut self) -> Result<Option<Cow<'a, str>>, Reject> {
        let mut start = self.pos;
        if self.peek() == Some(b' ') {
            start += 1;
        }
        let bom = self.s.get(start..).is_some_and(|r| r.starts_with(BOM));
        if bom {
            start += BOM.len();
        }
        if start >= self.s.len() {
            return Ok(None);
        }
        match self.str_at(start, self.s.len()) {
            Ok(s) => Ok(Some(Cow::Borrowed(s))),
            // MSG-UTF8 (after a BOM) must be UTF-8.
            Err(e) if bom => Err(e),
            // MSG-ANY: any octets. Keep a lossy text form and say so.
            Err(_) => {
                self.deviations |= deviation::NON_UTF8_MSG;
                Ok(Some(Cow::Owned(
                    String::from_utf8_lossy(&self.s[start..]).into_owned(),
                )))
            }
        }
    }
}

/// [`CLASS`] bit: PRINTUSASCII, `%d33-126` (the header fields' alphabet).
const PRINT: u8 = 1;
/// [`CLASS`] bit: a byte of an SD-NAME (PRINTUSASCII except `=`, `]`, `"`).
const SD_NAME: u8 = 2;
/// [`CLASS`] bit: a byte that ends a run of plain PARAM-VALUE bytes (`"`, `\`, `]`).
const VALUE_STOP: u8 = 4;

/// Byte classes, one lookup per byte in the hot loops.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 33;
    while b <= 126 {
        t[b] = if b == b'=' as usize || b == b']' as usize || b == b'"' as usize {
            PRINT
        } else {
            PRINT | SD_NAME
        };
        b += 1;
    }
    t[b'"' as usize] |= VALUE_STOP;
    t[b'\\' as usize] |= VALUE_STOP;
    t[b']' as usize] |= VALUE_STOP;
    t
};

#[cfg(test)]
fn is_print_us_ascii(b: u8) -> bool {
    CLASS[usize::from(b)] & PRINT != 0
}

/// Whether `bytes` starts with one complete, valid UTF-8 character.
fn starts_with_valid_char(bytes: &[u8]) -> bool {
    let width = match bytes.first() {
        Some(0x00..=0x7F) => 1,
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return false,
    };
    bytes
        .get(..width)
        .is_some_and(|c| std::str::from_utf8(c).is_ok())
}

/// The reject for a field that should be ASCII but is not: [`Reject::InvalidUtf8`] if it is not
/// even UTF-8, else the field's own reason.
fn non_ascii_reject(token: &[u8], otherwise: Reject) -> Reject {
    if std::str::from_utf8(token).is_err() {
        Reject::InvalidUtf8
    } else {
        otherwise
    }
}

/// RFC 5424: "The same SD-ID MUST NOT exist more than once in a message."
fn has_duplicate_id(elements: &[SdElement<'_>]) -> bool {
    match elements.len() {
        0 | 1 => false,
        n if n <= 16 => elements
            .iter()
            .enumerate()
            .any(|(i, e)| elements[i + 1..].iter().any(|f| f.id == e.id)),
        n => {
            let mut seen = std::collections::HashSet::with_capacity(n);
            !elements.iter().all(|e| seen.insert(e.id))
        }
    }
}

/// `FULL-DATE "T" FULL-TIME` as RFC 5424 restricts RFC 3339, to unix nanoseconds.
fn parse_timestamp(t: &[u8], deviations: &mut u8) -> Result<i64, Reject> {
    const BAD: Reject = Reject::BadTimestamp;
    // YYYY-MM-DDTHH:MM:SS is 19 bytes; at least the `Z` follows.
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || t[13] != b':' || t[16] != b':' {
        return Err(BAD);
    }
    match t[10] {
        b'T' => {}
        b't' => *deviations |= deviation::LOWERCASE_T_Z,
        _ => return Err(BAD),
    }
    let year = number(&t[0..4]).ok_or(BAD)?;
    let month = number(&t[5..7]).ok_or(BAD)?;
    let day = number(&t[8..10]).ok_or(BAD)?;
    let hour = number(&t[11..13]).ok_or(BAD)?;
    let minute = number(&t[14..16]).ok_or(BAD)?;
    let mut second = number(&t[17..19]).ok_or(BAD)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(BAD);
    }

    let mut rest = &t[19..];
    let mut nanos: i64 = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err(BAD);
        }
        if n > 6 {
            *deviations |= deviation::LONG_FRACTION;
        }
        let digits = number(&frac[..n]).ok_or(BAD)?;
        nanos = digits * 10i64.pow(9 - n as u32);
        rest = &frac[n..];
    }
    if second == 60 {
        *deviations |= deviation::LEAP_SECOND;
        second = 59;
        nanos = 999_999_999;
    }

    let offset_secs = match rest {
        b"Z" => 0,
        b"z" => {
            *deviations |= deviation::LOWERCASE_T_Z;
            0
        }
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = number(&[*h1, *h2]).ok_or(BAD)?;
            let m = number(&[*m1, *m2]).ok_or(BAD)?;
            if h > 23 || m > 59 {
                return Err(BAD);
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return Err(BAD),
    };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or(BAD)
}

/// The decimal value of `digits` if they are all ASCII digits (at most 9 of them).
fn number(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0i64, |v, &d| {
        d.is_ascii_digit().then(|| v * 10 + i64::from(d - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
