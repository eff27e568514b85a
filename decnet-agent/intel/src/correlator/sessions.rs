//! Sessions: the events of one attacker × decky × service, cut into sessions.
//!
//! Rules (events in time order, ties by id):
//! - a session starts at the first event, at a `connect` (when the current session already has
//!   events), after a `disconnect`, or when the gap since the previous event exceeds the idle gap
//!   (`--session-idle-gap`, default 300 s);
//! - it is `closed` when it ended with a `disconnect` or a later session of the same key exists
//!   (the attacker came back after the gap); the last session of a key stays open otherwise;
//! - `event_count` counts its events, `commands` lists the commands typed in order (at most
//!   [`MAX_COMMANDS`]); `bytes` comes from flows (filled in by the caller).
//!
//! The result is a function of the events only, so recomputing a key from the start of a
//! session gives the same rows however the events were batched.
use std::net::IpAddr;

use decnet_core::model::Session;

use crate::vocab::Kind;

/// Commands kept per session.
pub const MAX_COMMANDS: usize = 1000;

/// One event of a key, as sessionizing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    pub ts_ns: i64,
    pub kind: Kind,
    pub command: Option<String>,
}

/// Cuts `events` (in time order) of key (ip, decky, service) into sessions.
pub fn sessionize(
    ip: IpAddr,
    decky: &str,
    service: &str,
    events: &[KeyEvent],
    idle_gap_ns: i64,
) -> Vec<Session> {
    extend(ip, decky, service, None, events, idle_gap_ns)
}

/// Continues `last` — the newest stored session of the key, if any — with `events`, which
/// must all come after the stored ones (no earlier than `last`'s end, in time order, ties in
/// arrival order). Returns the sessions from `last`'s start on: `last` brought up to date,
/// then the new ones. Equal to [`sessionize`] over the stored events and `events` together
/// (from `last`'s start), because a stored last session ended with a disconnect exactly when
/// it is `closed`.
pub fn extend(
    ip: IpAddr,
    decky: &str,
    service: &str,
    last: Option<Session>,
    events: &[KeyEvent],
    idle_gap_ns: i64,
) -> Vec<Session> {
    let mut out: Vec<Session> = last.into_iter().collect();
    for e in events {
        let new = match out.last() {
            None => true,
            Some(s) => {
                s.closed
                    || e.kind == Kind::Connect
                    || e.ts_ns.saturating_sub(s.ended_ns) > idle_gap_ns
            }
        };
        if new {
            if let Some(last) = out.last_mut() {
                last.closed = true;
            }
            out.push(Session {
                attacker_ip: ip,
                decky: decky.to_owned(),
                service: service.to_owned(),
                started_ns: e.ts_ns,
                ended_ns: e.ts_ns,
                event_count: 0,
                bytes: 0,
                commands: Vec::new(),
                closed: false,
            });
        }
        if let Some(s) = out.last_mut() {
            s.ended_ns = s.ended_ns.max(e.ts_ns);
            s.event_count += 1;
            if let Some(c) = &e.command
                && s.commands.len() < MAX_COMMANDS
            {
                s.commands.push(c.clone());
            }
            if e.kind == Kind::Disconnect {
                s.closed = true;
            }
        }
    }
    out
}

/// Whether a late event (earlier than `last`'s end) only adds one to `last`'s event count:
/// it falls inside `last`'s span and neither starts, ends nor types anything. Other late
/// events change where sessions are cut; their key is recomputed from stored events.
pub fn absorbs(last: &Session, e: &KeyEvent) -> bool {
    e.ts_ns >= last.started_ns
        && e.ts_ns < last.ended_ns
        && matches!(
            e.kind,
            Kind::Auth(_) | Kind::Login | Kind::Request | Kind::Other
        )
        && e.command.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: i64 = 1_000_000_000;
    const GAP: i64 = 300 * S;

    fn ev(t: i64, kind: Kind) -> KeyEvent {
        KeyEvent {
            ts_ns: t * S,
            kind,
            command: None,
        }
    }

    fn cmd(t: i64, c: &str) -> KeyEvent {
        KeyEvent {
            ts_ns: t * S,
            kind: Kind::Command,
            command: Some(c.into()),
        }
    }

    fn cut(events: &[KeyEvent]) -> Vec<(i64, i64, u64, Vec<String>, bool)> {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        sessionize(ip, "web-01", "ssh", events, GAP)
            .into_iter()
            .map(|s| {
                (
                    s.started_ns / S,
                    s.ended_ns / S,
                    s.event_count,
                    s.commands,
                    s.closed,
                )
            })
            .collect()
    }

    #[test]
    fn idle_gap_and_disconnect_end_sessions() {
        let events = [
            ev(0, Kind::Connect),
            ev(1, Kind::Login),
            cmd(5, "id"),
            cmd(9, "uname -a"),
            ev(10, Kind::Disconnect),
            // after a disconnect: new session even without a connect
            ev(12, Kind::Other),
            ev(312, Kind::Other), // exactly the gap: same session
            ev(613, Kind::Other), // 301 s later: new session
        ];
        assert_eq!(
            cut(&events),
            vec![
                (
                    0,
                    10,
                    5,
                    vec!["id".to_string(), "uname -a".to_string()],
                    true
                ),
                (12, 312, 2, vec![], true),
                (613, 613, 1, vec![], false),
            ]
        );
    }

    #[test]
    fn a_connect_starts_a_new_session() {
        let events = [
            ev(0, Kind::Connect),
            ev(1, Kind::Auth(Some(false))),
            ev(2, Kind::Connect),
            ev(3, Kind::Auth(Some(false))),
        ];
        assert_eq!(
            cut(&events),
            vec![(0, 1, 2, vec![], true), (2, 3, 2, vec![], false)]
        );
        assert!(cut(&[]).is_empty());
    }

    #[test]
    fn extending_the_last_session_equals_cutting_everything() {
        // Every split of a history: sessionize the head, keep its last session as the stored
        // state, extend it with the tail — the rows equal sessionizing the whole history.
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let kinds = [
            Kind::Connect,
            Kind::Auth(Some(false)),
            Kind::Other,
            Kind::Disconnect,
            Kind::Command,
        ];
        let mut t = 0;
        let events: Vec<KeyEvent> = (0..120)
            .map(|i: usize| {
                t += [1, 0, 299, 300, 301, 5, 900][i % 7];
                let kind = kinds[(i * 7 + i / 3) % kinds.len()];
                KeyEvent {
                    ts_ns: t * S,
                    kind,
                    command: (kind == Kind::Command).then(|| format!("cmd{i}")),
                }
            })
            .collect();
        let full = sessionize(ip, "web-01", "ssh", &events, GAP);
        for split in 0..=events.len() {
            let head = sessionize(ip, "web-01", "ssh", &events[..split], GAP);
            let mut rows: Vec<Session> = head.clone();
            let last = rows.pop();
            rows.extend(extend(ip, "web-01", "ssh", last, &events[split..], GAP));
            assert_eq!(rows, full, "split at {split}");
        }
    }

    #[test]
    fn absorbed_late_events_only_count() {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let mut events = vec![
            ev(0, Kind::Connect),
            ev(10, Kind::Other),
            ev(20, Kind::Other),
        ];
        let stored = sessionize(ip, "web-01", "ssh", &events, GAP);
        let late = ev(15, Kind::Auth(Some(false)));
        assert!(absorbs(&stored[0], &late));
        assert!(!absorbs(&stored[0], &ev(15, Kind::Connect)));
        assert!(
            !absorbs(&stored[0], &ev(20, Kind::Other)),
            "at the end: in order"
        );
        assert!(!absorbs(&stored[0], &cmd(15, "id")));
        events.insert(2, late);
        let mut counted = stored[0].clone();
        counted.event_count += 1;
        assert_eq!(sessionize(ip, "web-01", "ssh", &events, GAP), vec![counted]);
    }

    #[test]
    fn same_result_whatever_the_batching() {
        // Recomputing from a session start over a superset gives the rows a full pass gives.
        let events: Vec<KeyEvent> = (0..50)
            .map(|i| {
                ev(
                    i * 100,
                    if i % 7 == 0 {
                        Kind::Connect
                    } else {
                        Kind::Other
                    },
                )
            })
            .collect();
        let full = cut(&events);
        for split in 1..events.len() {
            let head = cut(&events[..split]);
            let restart_at = head.last().map(|s| s.0).unwrap();
            let from = events
                .iter()
                .position(|e| e.ts_ns / S == restart_at)
                .unwrap();
            let mut merged: Vec<_> = head[..head.len() - 1].to_vec();
            merged.extend(cut(&events[from..]));
            assert_eq!(merged, full, "split at {split}");
        }
    }
}
