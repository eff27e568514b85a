//! Small pieces every worker shares: argument parsers, the lease lifetime, the ready file.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

/// A worker whose heartbeats stop (it died) loses its lease after this long.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// clap value parser: a positive, finite number of seconds.
pub fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// Writes `lines` to `path` atomically (a temporary file renamed over it), one per line. Tests
/// and scripts poll it to know a worker is up.
pub fn write_ready(path: Option<&Path>, lines: &[String]) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_positive_and_finite() {
        assert_eq!(positive_secs("2.5"), Ok(2.5));
        for bad in ["0", "-1", "nan", "inf", "x", "1e10"] {
            assert!(positive_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ready_file_is_replaced_whole() {
        let path = std::env::temp_dir().join(format!("decnet-ready-{}", std::process::id()));
        write_ready(Some(&path), &["a".into(), "b".into()]).unwrap();
        write_ready(Some(&path), &["c".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
        write_ready(None, &[]).unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
