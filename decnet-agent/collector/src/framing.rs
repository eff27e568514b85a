//! Syslog-over-stream framing (RFC 6587, and RFC 5425 for TLS), detected per connection from its
//! first byte: a digit means octet counting (`MSG-LEN SP SYSLOG-MSG`), anything else means
//! non-transparent framing (one message per line, LF-terminated, an optional CR before the LF;
//! an empty line is an empty frame, which the parser rejects as `empty`).
//!
//! [`Framer`] owns one fixed-size buffer (the maximum message plus room for a length header), so
//! a client can never make a connection hold more than that. The caller reads into
//! [`Framer::read_buf`], reports the count with [`Framer::filled`] and takes frames with
//! [`Framer::next`] until it returns `None`.
//!
//! Oversized frames are reported once as [`Frame::TooLong`] and then skipped: exactly `MSG-LEN`
//! bytes when octet-counted, up to and including the next LF otherwise. The connection stays
//! usable. A malformed octet-count header cannot be resynchronised: [`Frame::Invalid`], and the
//! caller closes the connection.

/// Longest accepted `MSG-LEN` (digits): 10 digits cover every length a u32 can express.
const MAX_LEN_DIGITS: usize = 10;

/// How a connection frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `MSG-LEN SP SYSLOG-MSG` (RFC 6587 3.4.1, RFC 5425 4.3).
    OctetCounting,
    /// One message per LF-terminated line (RFC 6587 3.4.2).
    LineFeed,
}

/// What [`Framer::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One message, without its framing (and without a trailing CR/LF).
    Message(&'a [u8]),
    /// A message longer than the maximum; it is being skipped.
    TooLong,
    /// An octet-counting header that is not `NONZERO-DIGIT *DIGIT SP`: the stream cannot be
    /// resynchronised; close the connection.
    Invalid,
}

/// The framing state of one connection.
#[derive(Debug)]
pub struct Framer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    max: usize,
    mode: Option<Framing>,
    /// Octet counting: bytes of an oversized frame still to skip.
    skip: u64,
    /// LF framing: discarding an oversized line up to its LF.
    discarding: bool,
    /// After [`Frame::Invalid`]: nothing more is framed.
    broken: bool,
}

impl Framer {
    /// A framer for messages of at most `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        let max = max_message.max(1);
        Framer {
            // Header (up to 10 digits and a space) or CR LF, plus slack.
            buf: vec![0u8; max + MAX_LEN_DIGITS + 14].into_boxed_slice(),
            start: 0,
            end: 0,
            max,
            mode: None,
            skip: 0,
            discarding: false,
            broken: false,
        }
    }

    /// The framing detected from the first byte (None before any byte arrived).
    pub fn framing(&self) -> Option<Framing> {
        self.mode
    }

    /// Bytes received that are not yet a complete frame.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Free space to read into. Never empty once [`Framer::next`] has returned `None`.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`Framer::read_buf`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete frame, or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Frame<'_>> {
        if self.broken || self.start == self.end {
            return None;
        }
        let mode = *self
            .mode
            .get_or_insert(if self.buf[self.start].is_ascii_digit() {
                Framing::OctetCounting
            } else {
                Framing::LineFeed
            });
        match mode {
            Framing::OctetCounting => self.next_counted(),
            Framing::LineFeed => self.next_line(),
        }
    }

    fn next_counted(&mut self) -> Option<Frame<'_>> {
        if self.skip > 0 {
            let n = self.skip.min((self.end - self.start) as u64);
            self.start += n as usize;
            self.skip -= n;
            if self.skip > 0 {
                return None;
            }
        }
        // Tolerate line ends between frames (some senders add them).
        while self.start < self.end && matches!(self.buf[self.start], b'\n' | b'\r') {
            self.start += 1;
        }
        if self.start == self.end {
            return None;
        }
        let avail = &self.buf[self.start..self.end];
        let mut len: u64 = 0;
        let mut digits = 0;
        while digits < avail.len() && avail[digits].is_ascii_digit() {
            if digits == MAX_LEN_DIGITS {
                return self.invalid();
            }
            len = len * 10 + u64::from(avail[digits] - b'0');
            digits += 1;
        }
        if digits == avail.len() {
            return None;
        }
        if digits == 0 || avail[0] == b'0' || avail[digits] != b' ' {
            return self.invalid();
        }
        let body = self.start + digits + 1;
        if len > self.max as u64 {
            self.start = body;
            self.skip = len;
            return Some(Frame::TooLong);
        }
        let len = len as usize;
        if self.end - body < len {
            return None;
        }
        self.start = body + len;
        Some(Frame::Message(trim_eol(&self.buf[body..body + len])))
    }

    fn next_line(&mut self) -> Option<Frame<'_>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let Some(lf) = avail.iter().position(|&b| b == b'\n') else {
                if self.discarding {
                    self.start = self.end;
                    return None;
                }
                // Longer than any acceptable line (+ CR) and still no LF.
                if avail.len() > self.max + 1 {
                    self.start = self.end;
                    self.discarding = true;
                    return Some(Frame::TooLong);
                }
                return None;
            };
            let line_start = self.start;
            self.start += lf + 1;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            // An empty line is a frame too (the parser rejects it as `empty`: counted).
            let line = trim_eol(&self.buf[line_start..line_start + lf]);
            if line.len() > self.max {
                return Some(Frame::TooLong);
            }
            // Re-borrow: `line` ends where the LF was.
            let len = line.len();
            return Some(Frame::Message(&self.buf[line_start..line_start + len]));
        }
    }

    fn invalid(&mut self) -> Option<Frame<'_>> {
        self.broken = true;
        self.start = self.end;
        Some(Frame::Invalid)
    }
}

/// `b` without one trailing LF, CR LF or CR.
pub fn trim_eol(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one read at a time; collects frames as owned values.
    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Result<Vec<u8>, &'static str>>, Framer) {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let buf = f.read_buf();
                assert!(!buf.is_empty(), "framer left no room to read");
                let n = buf.len().min(rest.len());
                buf[..n].copy_from_slice(&rest[..n]);
                f.filled(n);
                rest = &rest[n..];
                while let Some(fr) = f.next() {
                    out.push(match fr {
                        Frame::Message(m) => Ok(m.to_vec()),
                        Frame::TooLong => Err("too_long"),
                        Frame::Invalid => Err("invalid"),
                    });
                }
            }
        }
        (out, f)
    }

    fn msgs(v: &[&str]) -> Vec<Result<Vec<u8>, &'static str>> {
        v.iter().map(|s| Ok(s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn octet_counting_detected_and_split_anywhere() {
        let stream = b"5 <1>1 11 <2>1 a b cd8 <3>1 xyz";
        // Every split point of the stream into two reads gives the same frames.
        for cut in 0..=stream.len() {
            let (out, f) = run(100, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(
                out,
                msgs(&["<1>1 ", "<2>1 a b cd", "<3>1 xyz"]),
                "cut {cut}"
            );
            assert_eq!(f.framing(), Some(Framing::OctetCounting));
            assert_eq!(f.pending(), 0);
        }
        // One byte per read.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (out, _) = run(100, &bytes);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn line_feed_detected_and_split_anywhere() {
        let stream = b"<1>1 a\n<2>1 bb\r\n\n<3>1 c\n<4>1 partial";
        for cut in 0..=stream.len() {
            let (out, f) = run(100, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(out, msgs(&["<1>1 a", "<2>1 bb", "", "<3>1 c"]), "cut {cut}");
            assert_eq!(f.framing(), Some(Framing::LineFeed));
            assert_eq!(f.pending(), b"<4>1 partial".len());
        }
    }

    #[test]
    fn oversized_octet_frame_is_skipped_exactly() {
        let big = "x".repeat(50);
        let stream = format!("3 abc50 {big}4 defg");
        for cut in 0..=stream.len() {
            let b = stream.as_bytes();
            let (out, _) = run(10, &[&b[..cut], &b[cut..]]);
            assert_eq!(
                out,
                vec![Ok(b"abc".to_vec()), Err("too_long"), Ok(b"defg".to_vec())],
                "cut {cut}"
            );
        }
        // A length far beyond the buffer is skipped across many reads.
        let big = "y".repeat(100_000);
        let stream = format!("100000 {big}2 ok");
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(777).collect();
        let (out, _) = run(64, &chunks);
        assert_eq!(out, vec![Err("too_long"), Ok(b"ok".to_vec())]);
    }

    #[test]
    fn oversized_line_is_discarded_to_the_next_lf() {
        let big = "z".repeat(100_000);
        let stream = format!("<1>1 a\n{big}\n<2>1 b\n{}\n<3>1 c\n", "w".repeat(11));
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(333).collect();
        let (out, _) = run(10, &chunks);
        assert_eq!(
            out,
            vec![
                Ok(b"<1>1 a".to_vec()),
                Err("too_long"),
                Ok(b"<2>1 b".to_vec()),
                Err("too_long"),
                Ok(b"<3>1 c".to_vec()),
            ]
        );
        // Exactly max bytes (with CR LF) is fine.
        let (out, _) = run(6, &[b"<1>1 a\r\n"]);
        assert_eq!(out, msgs(&["<1>1 a"]));
    }

    #[test]
    fn bad_octet_header_is_invalid() {
        for bad in [
            &b"12x <1>1"[..],
            b"1<1>1",
            b"99999999999 x",
            b"5 <1>1 0 ",
            b"5 <1>1 x",
        ] {
            let (out, f) = run(100, &[bad]);
            assert_eq!(
                out.last(),
                Some(&Err("invalid")),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(f.pending(), 0);
        }
        // Line ends between octet-counted frames are tolerated.
        let (out, _) = run(100, &[b"2 ab\n2 cd\r\n"]);
        assert_eq!(out, msgs(&["ab", "cd"]));
    }

    #[test]
    fn trailing_line_end_is_not_part_of_the_message() {
        assert_eq!(trim_eol(b"a\r\n"), b"a");
        assert_eq!(trim_eol(b"a\n"), b"a");
        assert_eq!(trim_eol(b"a\n\n"), b"a\n");
        let (out, _) = run(100, &[b"4 ab\r\n"]);
        assert_eq!(out, msgs(&["ab"]));
    }
}
