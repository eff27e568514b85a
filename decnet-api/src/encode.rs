//! Listing pages written straight into their JSON body from the rows the repository lends
//! ([`AttackerRef`], [`EventRef`]): no intermediate view structs, no copy of each value, no
//! re-parse of stored JSON. The bytes are exactly what serialising the views
//! ([`crate::views::AttackerView`], [`crate::views::EventView`]) in a
//! [`crate::routes::Page`] gives; `tests` checks that on hostile values.
use decnet_core::{
    RepoError,
    repo::{AttackerRef, EventRef},
    time_fmt::{format_ts, parse_ts},
};

/// `{"items":[…],"next_cursor":…}`, one item at a time.
pub struct PageJson {
    buf: Vec<u8>,
    items: usize,
    /// The first row that did not encode (a corrupt stored value): the page is an error.
    err: Option<RepoError>,
}

impl Default for PageJson {
    fn default() -> Self {
        Self::new()
    }
}

impl PageJson {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(16 * 1024);
        buf.extend_from_slice(b"{\"items\":[");
        PageJson {
            buf,
            items: 0,
            err: None,
        }
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// The body, or the first row's error.
    pub fn finish(mut self, next_cursor: Option<&str>) -> Result<Vec<u8>, RepoError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        self.buf.extend_from_slice(b"],\"next_cursor\":");
        match next_cursor {
            Some(c) => self.str(c),
            None => self.buf.extend_from_slice(b"null"),
        }
        self.buf.push(b'}');
        Ok(self.buf)
    }

    fn item(&mut self) {
        if self.items > 0 {
            self.buf.push(b',');
        }
        self.items += 1;
    }

    fn str(&mut self, s: &str) {
        // serde_json's own string escaping; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, s);
    }

    fn key(&mut self, k: &str) {
        self.buf.push(b',');
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn int(&mut self, v: impl itoa::Integer) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.str(s),
            None => self.buf.extend_from_slice(b"null"),
        }
    }

    /// A stored time as the API writes it ([`format_ts`]): the stored text itself when it is
    /// already that form, else re-formatted; unreadable, the page is an error.
    fn ts(&mut self, table: &'static str, id: i64, column: &'static str, t: &str) {
        if is_canonical_ts(t) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(t.as_bytes());
            self.buf.push(b'"');
            return;
        }
        match parse_ts(t) {
            Ok(ns) => {
                let s = format_ts(ns);
                self.str(&s);
            }
            Err(e) => {
                self.buf.extend_from_slice(b"null");
                self.err.get_or_insert(RepoError::Corrupt {
                    table,
                    id,
                    column,
                    value: e.input,
                    reason: e.reason,
                });
            }
        }
    }

    /// One attacker, as [`crate::views::AttackerView`].
    pub fn attacker(&mut self, a: &AttackerRef<'_>) {
        self.item();
        self.buf.extend_from_slice(b"{\"id\":");
        self.int(a.id);
        self.key("ip");
        self.str(a.ip);
        self.key("first_seen");
        self.ts("attackers", a.id, "first_seen", a.first_seen);
        self.key("last_seen");
        self.ts("attackers", a.id, "last_seen", a.last_seen);
        self.key("event_count");
        self.int(a.event_count);
        self.key("session_count");
        self.int(a.session_count);
        self.key("credential_count");
        self.int(a.credential_count);
        self.key("flow_count");
        self.int(a.flow_count);
        self.key("score");
        match a.score {
            Some(v) => self.int(v),
            None => self.buf.extend_from_slice(b"null"),
        }
        self.key("behaviour");
        self.opt_str(a.behaviour);
        self.buf.push(b'}');
    }
}

impl PageJson {
    /// One event, as [`crate::views::EventView`] (`raw` only if the row has it).
    pub fn event(&mut self, e: &EventRef<'_>) {
        self.item();
        self.buf.extend_from_slice(b"{\"id\":");
        self.int(e.id);
        self.key("ts");
        self.buf.push(b'"');
        self.buf.extend_from_slice(format_ts(e.ts_ns).as_bytes());
        self.buf.push(b'"');
        self.key("decky");
        self.str(e.decky);
        self.key("service");
        self.str(e.service);
        self.key("event_type");
        self.str(e.event_type);
        self.key("attacker_ip");
        self.opt_str(e.attacker_ip);
        self.key("attacker_port");
        match e.attacker_port {
            Some(v) => self.int(v),
            None => self.buf.extend_from_slice(b"null"),
        }
        self.key("fields");
        // Stored JSON goes out as it is (checked in place, nothing built); anything else as a
        // JSON string — what `RawValue` did.
        if serde_json::from_str::<serde::de::IgnoredAny>(&e.fields).is_ok() {
            self.buf
                .extend_from_slice(e.fields.trim_matches([' ', '\t', '\n', '\r']).as_bytes());
        } else {
            self.str(&e.fields);
        }
        if let Some(raw) = e.raw {
            self.key("raw");
            self.str(&String::from_utf8_lossy(raw));
        }
        self.buf.push(b'}');
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, digits where digits belong: [`format_ts`]'s own form, so
/// it can be written out as stored.
pub fn is_canonical_ts(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 30
        && (b[4], b[7], b[10], b[13], b[16], b[19], b[29])
            == (b'-', b'-', b'T', b':', b':', b'.', b'Z')
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && digits(20..29)
        && b[5..7] >= b"01"[..]
        && b[5..7] <= b"12"[..]
        && b[8..10] >= b"01"[..]
        && b[8..10] <= b"31"[..]
        && b[11..13] <= b"23"[..]
        && b[14..16] <= b"59"[..]
        && b[17..19] <= b"59"[..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        routes::Page,
        views::{AttackerView, EventView},
    };
    use decnet_core::model::Event;

    /// Text an attacker controls, or a corrupted row could hold: quotes, backslashes, control
    /// characters, markup, non-ASCII, U+2028.
    const HOSTILE: [&str; 6] = [
        "",
        "plain",
        "q\"uo\\te",
        "ctl\u{0}\u{1}\u{1f}\n\r\t\u{7f}",
        "</script><b>é中😀",
        "line\u{2028}sep",
    ];

    fn serde_page(rows: &[AttackerRef<'_>], next: Option<&str>) -> Vec<u8> {
        let items = rows
            .iter()
            .map(|r| AttackerView::from(&r.to_row().expect("row decodes")))
            .collect();
        serde_json::to_vec(&Page {
            items,
            next_cursor: next.map(str::to_owned),
        })
        .expect("serialises")
    }

    fn encoded(rows: &[AttackerRef<'_>], next: Option<&str>) -> Vec<u8> {
        let mut p = PageJson::new();
        for r in rows {
            p.attacker(r);
        }
        p.finish(next).expect("encodes")
    }

    fn row(id: i64, behaviour: Option<&'static str>) -> AttackerRef<'static> {
        AttackerRef {
            id,
            ip: "2001:db8::1",
            first_seen: "1970-01-01T00:00:00.000000000Z",
            last_seen: "2262-04-11T23:47:16.854775807Z",
            event_count: u64::MAX >> 1,
            session_count: 0,
            credential_count: 7,
            flow_count: 1,
            score: behaviour.map(|_| 100),
            behaviour,
        }
    }

    #[test]
    fn attacker_pages_are_the_views_serialised() {
        assert_eq!(encoded(&[], None), serde_page(&[], None));
        let rows: Vec<_> = HOSTILE
            .iter()
            .enumerate()
            .map(|(i, h)| row(i as i64 - 1, Some(h)))
            .chain([row(i64::MAX, None), row(i64::MIN, None)])
            .collect();
        for next in HOSTILE.iter().copied().map(Some).chain([None]) {
            assert_eq!(
                String::from_utf8(encoded(&rows, next)),
                String::from_utf8(serde_page(&rows, next))
            );
        }
        let out: serde_json::Value =
            serde_json::from_slice(&encoded(&rows, Some("l.1.2"))).expect("valid JSON");
        assert_eq!(
            out["items"][3]["behaviour"],
            "ctl\u{0}\u{1}\u{1f}\n\r\t\u{7f}"
        );
    }

    #[test]
    fn non_canonical_stored_times_are_reformatted_and_bad_ones_refused() {
        // Another writer's RFC 3339 (offset, fewer digits) comes out in the API's form.
        let mut r = row(5, None);
        r.first_seen = "2026-05-02T08:00:25.5+02:00";
        assert!(!is_canonical_ts(r.first_seen));
        assert_eq!(encoded(&[r], None), serde_page(&[r], None));
        let v: serde_json::Value = serde_json::from_slice(&encoded(&[r], None)).expect("json");
        assert_eq!(
            v["items"][0]["first_seen"],
            "2026-05-02T06:00:25.500000000Z"
        );
        // Not a time at all: the page is an error naming the row and column.
        r.last_seen = "yesterday";
        let mut p = PageJson::new();
        p.attacker(&r);
        match p.finish(None) {
            Err(RepoError::Corrupt {
                table, id, column, ..
            }) => assert_eq!((table, id, column), ("attackers", 5, "last_seen")),
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
    }

    #[test]
    fn canonical_form_is_recognised_exactly() {
        for ns in [0, -1, 1_795_730_640_123_456_789, i64::MIN, i64::MAX] {
            assert!(is_canonical_ts(&format_ts(ns)), "{}", format_ts(ns));
        }
        for t in [
            "2026-11-26T22:04:00.123456789",
            "2026-11-26T22:04:00.12345678Z",
            "2026-11-26 22:04:00.123456789Z",
            "2026-13-26T22:04:00.123456789Z",
            "2026-11-32T22:04:00.123456789Z",
            "2026-11-26T24:04:00.123456789Z",
            "2026-11-26T22:60:00.123456789Z",
            "2026-11-26T22:04:60.123456789Z",
            "2026-11-26T22:04:00.12345678\"Z",
            "2026-00-26T22:04:00.123456789Z",
        ] {
            assert!(!is_canonical_ts(t), "{t}");
        }
    }

    fn event_ref<'a>(
        id: i64,
        text: &'a str,
        fields: &'a str,
        raw: Option<&'a [u8]>,
    ) -> EventRef<'a> {
        EventRef {
            id,
            ts_ns: 1_795_730_640_123_456_789 + id,
            decky: text,
            service: text,
            event_type: text,
            attacker_ip: (id % 2 == 0).then_some("10.1.2.3"),
            attacker_port: (id % 3 == 0).then_some(65535),
            fields: fields.into(),
            raw,
        }
    }

    /// The serde path the listing had: [`EventView`] of the owned [`Event`].
    fn serde_events(rows: &[EventRef<'_>], next: Option<&str>) -> Vec<u8> {
        let items = rows
            .iter()
            .map(|e| {
                let owned = Event {
                    id: e.id,
                    ts_ns: e.ts_ns,
                    decky: e.decky.into(),
                    service: e.service.into(),
                    event_type: e.event_type.into(),
                    attacker_ip: e.attacker_ip.map(|t| t.parse().expect("ip")),
                    attacker_port: e.attacker_port,
                    fields: e.fields.to_string(),
                    raw: e.raw.unwrap_or_default().to_vec(),
                };
                let mut v = EventView::from(&owned);
                if e.raw.is_none() {
                    v.raw = None;
                }
                v
            })
            .collect();
        serde_json::to_vec(&Page {
            items,
            next_cursor: next.map(str::to_owned),
        })
        .expect("serialises")
    }

    #[test]
    fn event_pages_are_the_views_serialised() {
        // Stored fields: the collector's objects, other JSON values, whitespace around them,
        // and text that is not JSON at all (truncated, hostile).
        let fields = [
            r#"{"username":"root","password":"pw\"1\u0000","n":1}"#,
            " \t{\"a\": [1, 2.5e3, true, null, {\"b\": \"\\u2028\"}]}\n ",
            "[]",
            "\"just a string\"",
            "12",
            "{\"cut\":\"in the mid",
            "not json </script>",
            "",
            "{\"a\":1} trailing",
        ];
        let raws: [&[u8]; 3] = [b"<134>1 line \"q\" \\", b"\xff\xfe not utf-8 \x00", b""];
        let mut rows = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            for (j, h) in HOSTILE.iter().enumerate() {
                let id = (i * 10 + j) as i64;
                rows.push(event_ref(id, h, f, Some(raws[(i + j) % raws.len()])));
                rows.push(event_ref(-id, h, f, None));
            }
        }
        for next in [None, Some("123")] {
            let mut p = PageJson::new();
            for r in &rows {
                p.event(r);
            }
            let ours = p.finish(next).expect("encodes");
            assert_eq!(
                String::from_utf8(ours.clone()),
                String::from_utf8(serde_events(&rows, next))
            );
            let v: serde_json::Value = serde_json::from_slice(&ours).expect("valid JSON");
            assert_eq!(v["items"][0]["fields"]["password"], "pw\"1\u{0}");
        }
    }
}
