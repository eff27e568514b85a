//! A decky's persistent identity, in its state directory: the SSH host key
//! (`ssh_host_ed25519_key`, OpenSSH format) and the TLS certificate and key (`tls_cert.pem`,
//! `tls_key.pem`, self-signed for the decky's hostname and IP). Created on first use, then
//! reused, so restarts keep them and every decky has its own (a key shared by several hosts is a
//! classic honeypot tell). Files are written atomically, keys with mode 0600.
use std::{
    io::{Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use russh::keys::{PrivateKey, ssh_key::private::Ed25519Keypair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

use crate::fleet::DeckySpec;

pub const SSH_HOST_KEY: &str = "ssh_host_ed25519_key";
pub const TLS_CERT: &str = "tls_cert.pem";
pub const TLS_KEY: &str = "tls_key.pem";

/// `n` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom")?;
    Ok(b)
}

/// Creates `dir` (mode 0700) if needed. A directory whose mode cannot be set is an error: the
/// host keys must not land in a directory others can read.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make the state directory {} private (chmod 0700)",
                    dir.display()
                )
            },
        )?;
    }
    Ok(())
}

/// Writes `body` to `path` atomically with `mode`.
fn write_atomic(path: &Path, body: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The decky's SSH host key: loaded, or generated (Ed25519) and saved.
pub fn ssh_host_key(dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = dir.join(SSH_HOST_KEY);
    if path.exists() {
        return PrivateKey::read_openssh_file(&path)
            .with_context(|| format!("{}: not an OpenSSH private key", path.display()));
    }
    ensure_dir(dir)?;
    let seed = random_bytes::<32>()?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("encode the host key")?;
    write_atomic(&path, pem.as_bytes(), 0o600)?;
    if let Ok(public) = key.public_key().to_openssh() {
        let _ = write_atomic(
            &dir.join(format!("{SSH_HOST_KEY}.pub")),
            format!("{public}\n").as_bytes(),
            0o644,
        );
    }
    Ok(key)
}

/// The decky's TLS certificate chain and key: loaded, or generated (self-signed, ECDSA P-256,
/// for the hostname and IP, valid from a few months ago for ten years, like a distribution's
/// "snakeoil" certificate) and saved.
pub fn tls_identity(
    dir: &Path,
    spec: &DeckySpec,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_path = dir.join(TLS_CERT);
    let key_path = dir.join(TLS_KEY);
    if !(cert_path.exists() && key_path.exists()) {
        ensure_dir(dir)?;
        let (cert, key) = generate_cert(spec)?;
        write_atomic(&key_path, key.as_bytes(), 0o600)?;
        write_atomic(&cert_path, cert.as_bytes(), 0o644)?;
    }
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", cert_path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{}: no private key in it", key_path.display()))?;
    Ok((certs, key))
}

/// A new self-signed certificate and its key, PEM.
fn generate_cert(spec: &DeckySpec) -> anyhow::Result<(String, String)> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType, SerialNumber};
    let key = KeyPair::generate().context("generate the TLS key")?;
    let mut params =
        CertificateParams::new(vec![spec.hostname.clone()]).context("certificate names")?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(spec.ip)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.hostname.clone());
    params.distinguished_name = dn;
    let r = random_bytes::<18>()?;
    let mut serial = r[..16].to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    // Issued 30..285 days ago (per decky), valid ten years: not the tell-tale 1975 default.
    let age_days = 30 + i64::from(r[16]);
    let now = time::OffsetDateTime::now_utc();
    let start =
        now - time::Duration::days(age_days) - time::Duration::seconds(i64::from(r[17]) * 300);
    params.not_before = start;
    params.not_after = start + time::Duration::days(3650);
    let cert = params.self_signed(&key).context("sign the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("decnet-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn host_key_is_stable_per_dir_and_unique_per_decky() {
        let (a, b) = (tmp("ka"), tmp("kb"));
        let k1 = ssh_host_key(&a).unwrap();
        let k2 = ssh_host_key(&a).unwrap();
        let k3 = ssh_host_key(&b).unwrap();
        assert_eq!(k1.public_key(), k2.public_key());
        assert_ne!(k1.public_key(), k3.public_key());
        let mode = std::fs::metadata(a.join(SSH_HOST_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(b);
    }

    #[test]
    fn certificate_is_stable_per_dir() {
        let spec = crate::decky::test_spec();
        let (a, b) = (tmp("ca"), tmp("cb"));
        let (c1, _) = tls_identity(&a, &spec).unwrap();
        let (c2, _) = tls_identity(&a, &spec).unwrap();
        let (c3, _) = tls_identity(&b, &spec).unwrap();
        assert_eq!(c1, c2);
        assert_ne!(c1, c3);
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(b);
    }
}
