//! `decnet deploy` runs the dashboard (issue 18's first step): `decnet web` is a supervised
//! worker, on `--web-listen`, whose first start prints the admin's one-time password; the
//! dashboard answers there and goes away with the deployment.
//!
//! Needs root. Own bridge (`dntweb`), subnet 10.254.0.0/24, a loopback port of its own.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use decnet_e2e::{fleet::Deployment, sensor::decnet_bin};

/// `GET path` on 127.0.0.1:`port`: (status line, body).
fn get(port: u16, path: &str) -> Result<(String, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    ))
}

#[test]
fn deploy_runs_the_dashboard_and_prints_the_first_admin_password() -> Result<()> {
    let fleet = "\n[[decky]]\nname = \"web-a\"\nip = \"10.254.0.10\"\nservices = [\"http\"]\n";
    let mut d = Deployment::new("web", 254, fleet)?;
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let mut cmd = Command::new(decnet_bin()?);
    cmd.args(["deploy", "--daemon"])
        .args(d.deploy_args("collector,web"))
        .arg("--web-listen")
        .arg(format!("127.0.0.1:{port}"));
    d.launch_command(cmd, Duration::from_secs(60))?;
    let created = d.created()?;
    ensure!(
        created.units.iter().any(|(n, _)| n == "web"),
        "no web unit: {created:?}"
    );
    let (status, body) = get(port, "/").context("the dashboard on its port")?;
    ensure!(status.contains(" 200"), "GET /: {status}");
    ensure!(
        body.to_ascii_lowercase().contains("<html"),
        "GET / is no page: {body:.200}"
    );
    let log = d.logs();
    ensure!(
        log.contains("one-time password"),
        "the first start did not print the admin's one-time password:\n{log}"
    );
    d.stop(Duration::from_secs(30))?;
    ensure!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "the dashboard outlived its deployment"
    );
    d.wait_clean(&created, Duration::from_secs(10))?;
    Ok(())
}
