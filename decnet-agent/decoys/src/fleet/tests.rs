use super::*;

const LAN: &str = r#"
[lan]
bridge = "decnet0"
subnet = "10.77.0.0/24"
host_ip = "10.77.0.1"
"#;

fn parse(deckies: &str) -> Result<Fleet, FleetError> {
    Fleet::parse(&format!("{LAN}{deckies}"), "test.toml")
}

fn problems(deckies: &str) -> Vec<String> {
    parse(deckies).unwrap_err().problems
}

#[test]
fn the_example_fleet_is_valid() {
    let text = include_str!("../../../../deploy/fleet.example.toml");
    let fleet = Fleet::parse(text, "fleet.example.toml").unwrap();
    assert!(fleet.deckies.len() >= 3);
    assert!(
        fleet
            .deckies
            .iter()
            .any(|d| d.os == OsFamily::Windows || d.os == OsFamily::WindowsServer)
    );
}

#[test]
fn archetype_gives_os_and_services_and_explicit_values_win() {
    let f = parse(
        r#"
[[decky]]
name = "web-01"
ip = "10.77.0.10"
archetype = "web-server"

[[decky]]
name = "win-01"
ip = "10.77.0.11"
archetype = "web-server"
os = "windows"
hostname = "DESKTOP-7Q2M1.corp.local"
services = ["ftp", { kind = "http", port = 8080, banner = "Microsoft-IIS/10.0" },
            { kind = "ssh", accept = [{ username = "root", password = "toor" }] }]
"#,
    )
    .unwrap();
    assert_eq!(f.lan.collector_port, DEFAULT_COLLECTOR_PORT);
    assert_eq!(f.lan.collector(), "10.77.0.1:5514".parse().unwrap());
    let web = f.decky("web-01").unwrap();
    assert_eq!((web.os, web.hostname.as_str()), (OsFamily::Linux, "web-01"));
    let kinds: Vec<_> = web.services.iter().map(|s| (s.kind, s.port)).collect();
    assert_eq!(
        kinds,
        [
            (ServiceKind::Ssh, 22),
            (ServiceKind::Http, 80),
            (ServiceKind::Https, 443)
        ]
    );
    let win = f.decky("win-01").unwrap();
    assert_eq!(win.os, OsFamily::Windows);
    assert_eq!(win.archetype.as_deref(), Some("web-server"));
    assert_eq!(win.services.len(), 3);
    assert_eq!(win.services[1].port, 8080);
    assert_eq!(
        win.services[1].banner.as_deref(),
        Some("Microsoft-IIS/10.0")
    );
    assert_eq!(win.services[2].accept[0].username, "root");
    // ssh without `accept` gets the archetype default login.
    assert_eq!(
        web.services[0].accept,
        archetype::default_accept(ServiceKind::Ssh)
    );
    assert!(
        f.decky("nope")
            .unwrap_err()
            .to_string()
            .contains("web-01, win-01")
    );
}

#[test]
fn every_mistake_is_reported_with_the_decky_and_field() {
    let p = problems(
        r#"
[[decky]]
name = "a"
ip = "10.77.0.10"
services = ["ssh", "gopher", { kind = "http", port = 22 }]

[[decky]]
name = "a"
ip = "10.77.0.10"
services = ["ssh"]

[[decky]]
name = "Bad_Name"
ip = "10.78.0.5"
services = ["ssh"]

[[decky]]
name = "gw"
ip = "10.77.0.1"
archetype = "toaster"

[[decky]]
name = "os"
ip = "10.77.0.255"
os = "plan9"
services = ["ssh"]
"#,
    );
    let all = p.join("\n");
    for want in [
        r#"decky "a": unknown service "gopher" (known: ssh, http, https, ftp, telnet, smtp, redis, mysql)"#,
        r#"decky "a": port 22 is used by both ssh and http"#,
        r#"decky "Bad_Name": name must be"#,
        r#"decky "gw": unknown archetype "toaster""#,
        r#"decky "os": unknown os "plan9""#,
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    // Second "a" is valid on its own; the fleet check names the clash.
    assert!(all.contains(r#"decky "a": duplicate name"#), "{all}");
    assert!(
        all.contains(r#"ip 10.77.0.10 is already used by decky "a""#),
        "{all}"
    );
}

#[test]
fn addresses_must_fit_the_subnet() {
    let p = problems(
        r#"
[[decky]]
name = "out"
ip = "10.78.0.5"
services = ["ssh"]
[[decky]]
name = "host"
ip = "10.77.0.1"
services = ["ssh"]
[[decky]]
name = "bcast"
ip = "10.77.0.255"
services = ["ssh"]
"#,
    )
    .join("\n");
    assert!(
        p.contains(r#"decky "out": ip 10.78.0.5 is outside the subnet 10.77.0.0/24"#),
        "{p}"
    );
    assert!(
        p.contains(r#"decky "host": ip 10.77.0.1 is the host's address"#),
        "{p}"
    );
    assert!(
        p.contains(r#"decky "bcast": ip 10.77.0.255 is the subnet's network or broadcast"#),
        "{p}"
    );

    let bad_lan = Fleet::parse(
        "[lan]\nbridge = \"this-name-is-too-long\"\nsubnet = \"10.77.0.5/24\"\nhost_ip = \"10.1.0.1\"\n[[decky]]\nname=\"x\"\nip=\"10.77.0.9\"\nservices=[\"ssh\"]\n",
        "lan.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(bad_lan.starts_with("lan.toml: "), "{bad_lan}");
    assert!(bad_lan.contains("lan.bridge"), "{bad_lan}");
    assert!(bad_lan.contains("did you mean 10.77.0.0/24"), "{bad_lan}");
}

#[test]
fn syntax_and_unknown_fields_are_clear_errors() {
    let e = Fleet::parse("[lan]\nbridge = 3\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.toml: 1 problem"), "{e}");
    let e = parse("[[decky]]\nname = \"a\"\nip = \"10.77.0.9\"\nservics = [\"ssh\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("servics"), "{e}");
    let e = Fleet::parse(LAN, "empty.toml").unwrap_err().to_string();
    assert!(e.contains("at least one decky"), "{e}");
}

#[test]
fn personas_differ_by_os_family() {
    let f = parse(
        r#"
[[decky]]
name = "lin"
ip = "10.77.0.10"
archetype = "database"
[[decky]]
name = "win"
ip = "10.77.0.11"
archetype = "windows-server"
[[decky]]
name = "cam"
ip = "10.77.0.12"
archetype = "iot-camera"
"#,
    )
    .unwrap();
    let ttl = |name: &str| {
        let os = f.decky(name).unwrap().os;
        let v = persona::sysctls(os)
            .iter()
            .find(|(k, _)| *k == "net/ipv4/ip_default_ttl")
            .unwrap()
            .1;
        assert_eq!(v, persona::initial_ttl(os).to_string());
        v
    };
    assert_eq!((ttl("lin"), ttl("win"), ttl("cam")), ("64", "128", "255"));
    let macs: Vec<String> = f
        .deckies
        .iter()
        .map(|d| persona::mac_string(persona::mac(d)))
        .collect();
    assert!(macs[0].starts_with("00:50:56:"), "{macs:?}");
    assert!(macs[1].starts_with("00:15:5d:"), "{macs:?}");
    assert!(macs[2].starts_with("44:19:b6:"), "{macs:?}");
    // Stable: the same name gives the same MAC.
    assert_eq!(
        persona::mac(&f.deckies[0]),
        persona::mac(&f.deckies[0].clone())
    );
}

#[test]
fn cidr_parsing() {
    assert_eq!(
        parse_cidr("10.0.0.0/8"),
        Ok(("10.0.0.0".parse().unwrap(), 8))
    );
    for bad in [
        "10.0.0.0",
        "10.0.0.0/7",
        "10.0.0.0/31",
        "x/24",
        "10.0.0.1/24",
        "10.0.0.0/-1",
    ] {
        assert!(parse_cidr(bad).is_err(), "{bad}");
    }
}
