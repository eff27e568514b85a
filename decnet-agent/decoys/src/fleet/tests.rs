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

const MU_LAN: &str = "[lan]\nbridge = \"mu0\"\nsubnet = \"10.9.0.0/24\"\nhost_ip = \"10.9.0.1\"\n";

fn mu_fleet(deckies: &str) -> Fleet {
    Fleet::parse(&format!("{MU_LAN}{deckies}"), "t").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn intervals_take_a_number_and_a_unit() {
    assert_eq!(parse_interval("30m"), Ok(1800));
    assert_eq!(parse_interval("12h"), Ok(43_200));
    assert_eq!(parse_interval("7d"), Ok(604_800));
    assert_eq!(parse_interval("3s"), Ok(3));
    for bad in [
        "",
        "m",
        "30",
        "30x",
        "-1m",
        "0s",
        "367d",
        "1.5h",
        "99999999999999999999d",
    ] {
        assert!(parse_interval(bad).is_err(), "{bad:?}");
    }
    let f = mu_fleet(
        "[[decky]]\nname = \"a\"\nip = \"10.9.0.10\"\narchetype = \"database\"\nmutate_interval = \"12h\"\n",
    );
    assert_eq!(f.deckies[0].mutate_interval, Some(43_200));
    let e = Fleet::parse(
        &format!(
            "{MU_LAN}[[decky]]\nname = \"a\"\nip = \"10.9.0.10\"\narchetype = \"database\"\nmutate_interval = \"soon\"\n\
             [[decky]]\nname = \"b\"\nip = \"10.9.0.11\"\nservices = [\"ssh\"]\nmutate_interval = \"1h\"\n"
        ),
        "t",
    )
    .unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.problems[0].contains("decky \"a\": mutate_interval: \"soon\""),
        "{e}"
    );
    assert!(
        e.problems[1].contains("decky \"b\": mutate_interval needs an archetype"),
        "{e}"
    );
}

#[test]
fn the_diff_names_added_removed_and_changed_deckies_and_leaves_the_rest() {
    let old = mu_fleet(
        "[[decky]]\nname = \"a\"\nip = \"10.9.0.10\"\narchetype = \"web-server\"\n\
         [[decky]]\nname = \"b\"\nip = \"10.9.0.11\"\narchetype = \"web-server\"\n\
         [[decky]]\nname = \"d\"\nip = \"10.9.0.13\"\nservices = [\"ssh\"]\n\
         [[decky]]\nname = \"e\"\nip = \"10.9.0.14\"\nservices = [\"ssh\"]\n",
    );
    let new = mu_fleet(
        "[[decky]]\nname = \"a\"\nip = \"10.9.0.10\"\narchetype = \"web-server\"\n\
         [[decky]]\nname = \"c\"\nip = \"10.9.0.12\"\narchetype = \"database\"\n\
         [[decky]]\nname = \"d\"\nip = \"10.9.0.13\"\nservices = [\"ssh\", \"redis\"]\n\
         [[decky]]\nname = \"e\"\nip = \"10.9.0.24\"\nservices = [\"ssh\"]\n",
    );
    let d = diff::diff(&old, &new);
    assert_eq!(d.touched(), ["b", "c", "d", "e"], "a is untouched");
    assert_eq!(d.added[0].name, "c");
    assert_eq!(d.removed[0].name, "b");
    let dch = &d.changed[0];
    assert_eq!(
        (dch.after.name.as_str(), dch.rebuild, dch.restart),
        ("d", false, true)
    );
    assert_eq!(dch.what, ["services"]);
    let ech = &d.changed[1];
    assert_eq!(
        (ech.after.name.as_str(), ech.rebuild, ech.restart),
        ("e", true, true)
    );
    assert_eq!(d.summary(), "+c -b ~d(services) ~e(ip)");
    assert!(diff::diff(&new, &new).is_empty());
    assert!(diff::lan_change(&old, &new).is_none());
    let mut other = new.clone();
    other.lan.host_ip = "10.9.0.2".parse().unwrap();
    assert!(diff::lan_change(&new, &other).is_some());
}

#[test]
fn a_file_edit_keeps_the_running_form_of_deckies_it_did_not_touch() {
    let file_old = mu_fleet(
        "[[decky]]\nname = \"a\"\nip = \"10.9.0.10\"\narchetype = \"web-server\"\n\
         [[decky]]\nname = \"b\"\nip = \"10.9.0.11\"\narchetype = \"database\"\n",
    );
    let mut running = file_old.clone();
    running.deckies[0] = rotate::rotate(&running.deckies[0], 1).unwrap();
    running.deckies[1] = rotate::rotate(&running.deckies[1], 1).unwrap();
    let file_new = mu_fleet(
        "[[decky]]\nname = \"a\"\nip = \"10.9.0.10\"\narchetype = \"web-server\"\n\
         [[decky]]\nname = \"b\"\nip = \"10.9.0.11\"\narchetype = \"mail-server\"\n",
    );
    let next = diff::rebase(&file_old, &file_new, &running);
    assert_eq!(next.deckies[0], running.deckies[0], "a keeps its rotation");
    assert_eq!(next.deckies[1], file_new.deckies[1], "b takes the edit");
}

#[test]
fn rotation_stays_in_the_pool_and_passes_the_realism_checks() {
    for a in archetype::ARCHETYPES {
        let f = mu_fleet(&format!(
            "[[decky]]\nname = \"x\"\nip = \"10.9.0.10\"\narchetype = \"{}\"\n",
            a.name
        ));
        let mut d = f.deckies[0].clone();
        assert!(rotate::realism_problems(&d).is_empty(), "{:?}", d);
        let pool = rotate::pool(a.name).unwrap();
        let mut sets = std::collections::BTreeSet::new();
        for seed in 0..40u64 {
            let next = rotate::rotate(&d, seed * 7919).unwrap();
            let p = rotate::realism_problems(&next);
            assert!(p.is_empty(), "{}: {p:?}", a.name);
            assert!(next.services.iter().all(|s| pool.contains(&s.kind)));
            let kinds = |d: &DeckySpec| {
                let mut k: Vec<_> = d.services.iter().map(|s| s.kind).collect();
                k.sort();
                k
            };
            assert_ne!(
                kinds(&next),
                kinds(&d),
                "{}: a rotation changes the set",
                a.name
            );
            assert_eq!(
                rotate::rotate(&d, seed * 7919).unwrap(),
                next,
                "deterministic"
            );
            sets.insert(kinds(&next));
            d = next;
        }
        assert!(sets.len() >= 2, "{}: {sets:?}", a.name);
    }
    // The checks do flag what is implausible.
    let mut d =
        mu_fleet("[[decky]]\nname = \"x\"\nip = \"10.9.0.10\"\narchetype = \"iot-camera\"\n")
            .deckies[0]
            .clone();
    d.services.push(ServiceSpec {
        kind: ServiceKind::Mysql,
        port: 3306,
        banner: None,
        accept: Vec::new(),
    });
    d.os = OsFamily::Windows;
    assert_eq!(rotate::realism_problems(&d).len(), 2);
    let mut none = d.clone();
    none.archetype = None;
    assert!(
        rotate::rotate(&none, 1)
            .unwrap_err()
            .contains("no archetype")
    );
}
