//! p0f v3's signature database (`p0f.fp`, Debian: `/etc/p0f/p0f.fp`) and its TCP matcher,
//! following p0f 3.09b's `readfp.c` / `fp_tcp.c`: exact signatures first (a specific one wins at
//! once, a generic one only if nothing specific matches), then the first fuzzy one where p0f allows
//! fuzziness (`df`/`id+` gone, `id-`/`ecn` appeared, TTL out of range), never fuzzy for userland
//! tools; `*` wildcards, `%N`, `mss*N` / `mtu*N` window forms, `ttl-` (random TTL) and `ttl+dist`.

use crate::tcp::{MAX_DIST, TcpSig, guess_dist, quirk, win_multi};
use std::path::Path;

/// Where Debian's p0f package installs its database.
pub const SYSTEM_DB: &str = "/etc/p0f/p0f.fp";
/// A database larger than this is refused (the shipped one is ~40 KiB).
const MAX_DB_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Win {
    Any,
    Normal(u16),
    Mod(u16),
    Mss(u16),
    Mtu(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RefSig {
    /// None = `*`.
    ver: Option<u8>,
    ttl: u16,
    bad_ttl: bool,
    olen: u8,
    /// None = `*`.
    mss: Option<u16>,
    win: Win,
    /// None = `*`.
    wscale: Option<u8>,
    layout: Vec<u8>,
    eol_pad: u8,
    quirks: u32,
    /// None = `*`.
    pay_class: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    generic: bool,
    userland: bool,
    label: String,
    line: u32,
    sig: RefSig,
}

/// The parsed TCP part of a p0f database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Database {
    request: Vec<Record>,
    response: Vec<Record>,
    /// Lines p0f itself would reject (p0f stops on the first; this skips and counts them).
    pub rejected_lines: u32,
}

/// The outcome of matching one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// `name flavor` as p0f prints it (`Linux 2.2.x-3.x`).
    pub label: String,
    /// A `g:` (generic) signature.
    pub generic: bool,
    /// Matched only fuzzily.
    pub fuzzy: bool,
    /// A userland tool (`!` class: p0f prints `app =`).
    pub userland: bool,
    /// The TTL distance p0f derives.
    pub dist: u8,
    /// The line of the database.
    pub line: u32,
}

impl Database {
    /// Loads a p0f.fp file.
    pub fn load(path: &Path) -> std::io::Result<Database> {
        let meta = std::fs::metadata(path)?;
        if meta.len() > MAX_DB_BYTES {
            return Err(std::io::Error::other(format!(
                "{} is larger than {MAX_DB_BYTES} bytes",
                path.display()
            )));
        }
        Ok(Database::parse(&std::fs::read_to_string(path)?))
    }

    /// Debian's `/etc/p0f/p0f.fp` when it exists (`Ok(None)` when it does not).
    pub fn load_system() -> std::io::Result<Option<Database>> {
        match Database::load(Path::new(SYSTEM_DB)) {
            Ok(db) => Ok(Some(db)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Number of TCP signatures (request, response).
    pub fn len(&self) -> (usize, usize) {
        (self.request.len(), self.response.len())
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Parses p0f.fp text. Only `[tcp:request]` and `[tcp:response]` sections are kept.
    pub fn parse(text: &str) -> Database {
        let mut db = Database::default();
        // Section: 0 = other, 1 = tcp request, 2 = tcp response.
        let mut section = 0u8;
        let mut label: Option<(bool, bool, String)> = None;
        for (no, raw) in text.lines().enumerate() {
            let line_no = (no + 1) as u32;
            let line = raw.trim();
            // p0f: lines starting (after blanks) with `;` are comments.
            if line.is_empty() || line.starts_with(';') {
                continue;
            }
            if let Some(sec) = line.strip_prefix('[') {
                section = match sec {
                    "tcp:request]" => 1,
                    "tcp:response]" => 2,
                    _ => 0,
                };
                label = None;
                continue;
            }
            if section == 0 {
                continue;
            }
            let Some((key, val)) = line.split_once('=') else {
                db.rejected_lines += 1;
                continue;
            };
            match key.trim() {
                "label" => {
                    label = parse_label(val.trim());
                    if label.is_none() {
                        db.rejected_lines += 1;
                    }
                }
                "sig" => {
                    let (Some((generic, userland, name)), Some(sig)) =
                        (label.as_ref(), parse_sig(val.trim()))
                    else {
                        db.rejected_lines += 1;
                        continue;
                    };
                    let rec = Record {
                        generic: *generic,
                        userland: *userland,
                        label: name.clone(),
                        line: line_no,
                        sig,
                    };
                    if section == 1 {
                        db.request.push(rec)
                    } else {
                        db.response.push(rec)
                    }
                }
                _ => {} // sys = …, classes = … : not needed for matching
            }
        }
        db
    }

    /// Every SYN (`to_server`) or SYN-ACK signature of the database as (label, TTL, option
    /// layout in p0f's names): what a persona's OS family answers with, to compare a stack
    /// with when no signature matches exactly (the prober's realism check).
    pub fn layouts(&self, to_server: bool) -> impl Iterator<Item = (&str, u16, String)> {
        let sigs = if to_server {
            &self.request
        } else {
            &self.response
        };
        sigs.iter().map(|r| {
            (
                r.label.as_str(),
                r.sig.ttl,
                crate::tcp::layout_string(&r.sig.layout, r.sig.eol_pad),
            )
        })
    }

    /// Matches a SYN (`to_server`) or SYN-ACK signature as p0f's `tcp_find_match` does.
    /// `syn_mss` is the SYN's MSS when matching a SYN-ACK (0 otherwise).
    pub fn find(&self, ts: &TcpSig, to_server: bool, syn_mss: u16) -> Option<Match> {
        let sigs = if to_server {
            &self.request
        } else {
            &self.response
        };
        let wm = win_multi(ts, syn_mss);
        let (win_multi, use_mtu) = match wm {
            Some((m, mtu)) => (i32::from(m), mtu),
            None => (-1, false),
        };
        let mut fmatch: Option<&Record> = None;
        let mut gmatch: Option<&Record> = None;
        for rec in sigs {
            let r = &rec.sig;
            if r.layout != ts.opt_layout {
                continue;
            }
            let mut fuzzy = false;
            let mut ref_quirks = r.quirks;
            if r.ver.is_none() {
                ref_quirks &= if ts.ip_ver == 4 {
                    !quirk::FLOW
                } else {
                    !(quirk::DF | quirk::NZ_ID | quirk::ZERO_ID)
                };
            }
            if ref_quirks != ts.quirks {
                let deleted = (ref_quirks ^ ts.quirks) & ref_quirks;
                let added = (ref_quirks ^ ts.quirks) & ts.quirks;
                if fmatch.is_some()
                    || deleted & !(quirk::DF | quirk::NZ_ID) != 0
                    || added & !(quirk::ZERO_ID | quirk::ECN) != 0
                {
                    continue;
                }
                fuzzy = true;
            }
            if r.eol_pad != ts.opt_eol_pad || r.olen != ts.ip_opt_len {
                continue;
            }
            let ttl = u16::from(ts.ttl);
            if r.bad_ttl {
                if r.ttl < ttl {
                    continue;
                }
            } else if r.ttl < ttl || r.ttl - ttl > u16::from(MAX_DIST) {
                fuzzy = true;
            }
            if r.mss.is_some_and(|m| m != ts.mss)
                || r.wscale.is_some_and(|w| w != ts.wscale)
                || r.pay_class.is_some_and(|p| p != ts.has_payload)
            {
                continue;
            }
            let win_ok = match r.win {
                Win::Any => true,
                Win::Normal(w) => w == ts.win,
                Win::Mod(m) => ts.win.is_multiple_of(m),
                Win::Mss(m) => !use_mtu && i32::from(m) == win_multi,
                Win::Mtu(m) => use_mtu && i32::from(m) == win_multi,
            };
            if !win_ok {
                continue;
            }
            if !fuzzy {
                if !rec.generic {
                    return Some(to_match(rec, false, (r.ttl - ttl) as u8));
                } else if gmatch.is_none() {
                    gmatch = Some(rec);
                }
            } else if fmatch.is_none() {
                fmatch = Some(rec);
            }
        }
        if let Some(g) = gmatch {
            return Some(to_match(
                g,
                false,
                (g.sig.ttl.saturating_sub(u16::from(ts.ttl))) as u8,
            ));
        }
        let f = fmatch?;
        if f.userland {
            return None; // p0f: no fuzzy matching for userland tools
        }
        let ttl = u16::from(ts.ttl);
        let dist = if f.sig.ttl < ttl || (!f.sig.bad_ttl && f.sig.ttl - ttl > u16::from(MAX_DIST)) {
            guess_dist(ts.ttl)
        } else {
            (f.sig.ttl - ttl) as u8
        };
        Some(to_match(f, true, dist))
    }
}

fn to_match(rec: &Record, fuzzy: bool, dist: u8) -> Match {
    Match {
        label: rec.label.clone(),
        generic: rec.generic,
        fuzzy,
        userland: rec.userland,
        dist,
        line: rec.line,
    }
}

/// `label = s:unix:Linux:3.11 and newer` → (generic, userland, "Linux 3.11 and newer").
fn parse_label(v: &str) -> Option<(bool, bool, String)> {
    let mut it = v.splitn(4, ':');
    let generic = match it.next()? {
        "g" => true,
        "s" => false,
        _ => return None,
    };
    let class = it.next()?;
    if class.is_empty() {
        return None;
    }
    let name = it.next()?;
    if name.is_empty() {
        return None;
    }
    let flavor = it.next().unwrap_or("");
    let label = if flavor.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {flavor}")
    };
    Some((generic, class == "!", label))
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One `sig = ver:ittl:olen:mss:wsize,scale:olayout:quirks:pclass`.
fn parse_sig(v: &str) -> Option<RefSig> {
    let f: Vec<&str> = v.split(':').collect();
    if f.len() != 8 {
        return None;
    }
    let ver = match f[0] {
        "4" => Some(4),
        "6" => Some(6),
        "*" => None,
        _ => return None,
    };
    let (ttl, bad_ttl) = if let Some(t) = f[1].strip_suffix('-') {
        (num::<u16>(t)?, true)
    } else if let Some((t, add)) = f[1].split_once('+') {
        (num::<u16>(t)? + num::<u16>(add)?, false)
    } else {
        (num::<u16>(f[1])?, false)
    };
    if !(1..=255).contains(&ttl) {
        return None;
    }
    let olen = num::<u8>(f[2])?;
    let mss = if f[3] == "*" {
        None
    } else {
        Some(num::<u16>(f[3])?)
    };
    let (w, s) = f[4].split_once(',')?;
    let win = if w == "*" {
        Win::Any
    } else if let Some(m) = w.strip_prefix('%') {
        Win::Mod(num::<u16>(m).filter(|&m| m >= 2)?)
    } else if let Some(m) = w.strip_prefix("mss*") {
        Win::Mss(num::<u16>(m).filter(|&m| (1..=1000).contains(&m))?)
    } else if let Some(m) = w.strip_prefix("mtu*") {
        Win::Mtu(num::<u16>(m).filter(|&m| (1..=1000).contains(&m))?)
    } else {
        Win::Normal(num::<u16>(w)?)
    };
    let wscale = if s == "*" { None } else { Some(num::<u8>(s)?) };
    let mut layout = Vec::new();
    let mut eol_pad = 0u8;
    if !f[5].is_empty() {
        for o in f[5].split(',') {
            let k = match o {
                "nop" => 1,
                "mss" => 2,
                "ws" => 3,
                "sok" => 4,
                "sack" => 5,
                "ts" => 8,
                _ => {
                    if let Some(p) = o.strip_prefix("eol+") {
                        eol_pad = num::<u8>(p)?;
                        0
                    } else {
                        num::<u8>(o.strip_prefix('?')?)?
                    }
                }
            };
            layout.push(k);
        }
    }
    if layout.len() > crate::tcp::MAX_TCP_OPT {
        return None;
    }
    let mut quirks = 0u32;
    if !f[6].is_empty() {
        for q in f[6].split(',') {
            let (bit, _) = quirk::NAMES.iter().find(|(_, n)| *n == q)?;
            quirks |= bit;
        }
    }
    let pay_class = match f[7] {
        "*" => None,
        "0" => Some(false),
        "+" => Some(true),
        _ => return None,
    };
    Some(RefSig {
        ver,
        ttl,
        bad_ttl,
        olen,
        mss,
        win,
        wscale,
        layout,
        eol_pad,
        quirks,
        pay_class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::{parse_syn, tests::linux_syn};

    const DB: &str = "\
classes = win,unix,other
[tcp:request]
label = s:unix:Linux:3.11 and newer
sys   = Linux
sig   = *:64:0:*:mss*20,10:mss,sok,ts,nop,ws:df,id+:0
sig   = *:64:0:*:mss*20,7:mss,sok,ts,nop,ws:df,id+:0
label = s:unix:Linux:(loopback)
sig   = *:64:0:16396:mss*1,7:mss,sok,ts,nop,ws:df,id+:0
label = g:unix:Linux:
sig   = *:64:0:*:*,*:mss,sok,ts,nop,ws:df,id+:0
label = s:!:NMap:SYN scan
sys   = @unix,@win
sig   = *:64-:0:1460:1024,0:mss::0
[tcp:response]
label = s:unix:Linux:3.x
sig   = *:64:0:*:mss*10,0:mss:df:0
[http:request]
sig   = *:Host,User-Agent:Accept:junk
garbage line
";

    #[test]
    fn generic_wins_only_when_nothing_specific_matches() {
        let db = Database::parse(DB);
        assert_eq!(db.len(), (5, 1));
        let s = parse_syn(&linux_syn()).unwrap(); // mss 65495, win mss*1, ws 7
        let m = db.find(&s, true, 0).expect("generic Linux");
        assert_eq!(m.label, "Linux");
        assert!(m.generic && !m.fuzzy);
        assert_eq!(m.dist, 0);
    }

    #[test]
    fn fuzzy_when_df_disappears_and_ttl_distance_counts() {
        let db = Database::parse(DB);
        let mut p = linux_syn();
        p[6] = 0; // DF off (id stays non-zero: id+ requires DF, so both quirks vanish)
        p[8] = 50; // ttl 50: distance 14
        let s = parse_syn(&p).unwrap();
        let m = db.find(&s, true, 0).expect("fuzzy");
        assert!(m.fuzzy && m.generic);
        assert_eq!(m.label, "Linux");
        assert_eq!(m.dist, 14);
    }

    #[test]
    fn mss_multiplier_and_sig_line_parse() {
        let r = parse_sig("4:64+2:0:*:mtu*4,*:mss,nop,ws,eol+1:df,ecn:+").unwrap();
        assert_eq!(r.ttl, 66);
        assert_eq!(r.win, Win::Mtu(4));
        assert_eq!(r.layout, vec![2, 1, 3, 0]);
        assert_eq!(r.eol_pad, 1);
        assert_eq!(r.quirks, quirk::DF | quirk::ECN);
        assert_eq!(r.pay_class, Some(true));
        assert!(parse_sig("4:64:0:*:mtu*0,*:mss:df:+").is_none());
        assert!(parse_sig("4:999:0:*:1,*:mss:df:+").is_none());
        assert!(parse_sig("4:64:0:*:1,*:bogus:df:+").is_none());
    }

    #[test]
    fn the_system_database_parses_with_nothing_rejected() {
        let db = Database::load(Path::new(SYSTEM_DB))
            .unwrap_or_else(|e| panic!("{SYSTEM_DB}: {e} — install p0f (cargo xtask setup)"));
        assert_eq!(db.rejected_lines, 0);
        let (req, resp) = db.len();
        assert!(req > 50 && resp > 10, "{req} {resp}");
    }
}
