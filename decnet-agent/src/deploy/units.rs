//! The one place where `decnet deploy` turns what it runs into child processes: each worker and
//! decky as a typed [`Child`], rendered to a command line by [`Child::args`] from the workers'
//! own flag types ([`RunArgs`] for the run mode and ready file), with the repository passed by
//! environment ([`DbArgs::to_env`]), never on argv where `ps` shows its password. The tests
//! parse every rendered command line with the real `decnet` CLI and compare it with the typed
//! value, so a renamed flag fails in `cargo test`, not at deploy time.
use std::{ffi::OsString, net::SocketAddr, path::PathBuf};

use decnet_runtime::{DbArgs, PARENT_PID_VAR, RunArgs};

/// A process `decnet deploy` supervises.
#[derive(Debug, Clone, PartialEq)]
pub enum Child {
    Collector {
        /// The Unix socket the deckies log to (no listener on the decoy network).
        socket: PathBuf,
        /// Who may: the deckies and their network namespaces (`--unix-peers`).
        peers: PathBuf,
    },
    Sniffer {
        bridge: String,
        /// `--sniffer-arg` values, passed through as given.
        extra: Vec<String>,
    },
    Correlator,
    Profiler,
    /// Its settings come from the environment it inherits (`DECNET_RETENTION_*`).
    Retention,
    /// Probes from the vantage namespace of the fleet's bridge (`DECNET_PROBER_*` inherited).
    Prober {
        fleet: PathBuf,
    },
    Web {
        listen: SocketAddr,
        jwt_secret_file: PathBuf,
    },
    /// `decnet mutate --watch`: the fleet file's edits, the operator's requests, the schedule.
    Mutator {
        fleet: PathBuf,
    },
    Decky {
        name: String,
        /// The decky as the current fleet generation has it (a JSON `DeckySpec` written by
        /// deploy): what runs may differ from the fleet file after a rotation.
        spec: PathBuf,
        collector: CollectorAt,
        state_dir: PathBuf,
    },
}

/// Where a decky sends its events.
#[derive(Debug, Clone, PartialEq)]
pub enum CollectorAt {
    /// The collector this deploy runs: its Unix socket.
    Socket(PathBuf),
    /// A collector run elsewhere (not by this deploy): its TCP listener.
    Tcp(SocketAddr),
}

impl Child {
    /// The worker name (subcommand, unit, ready file).
    pub fn worker(&self) -> &'static str {
        match self {
            Child::Collector { .. } => decnet_collector::WORKER,
            Child::Sniffer { .. } => decnet_sniffer::WORKER,
            Child::Correlator => decnet_intel::correlator::WORKER,
            Child::Profiler => decnet_intel::profiler::WORKER,
            Child::Retention => decnet_retention::WORKER,
            Child::Prober { .. } => decnet_prober::WORKER,
            Child::Web { .. } => crate::web::WORKER,
            Child::Mutator { .. } => decnet_mutator::WORKER,
            Child::Decky { .. } => decnet_decoys::decky::WORKER,
        }
    }

    /// The command line (after the program name).
    pub fn args(&self, run: &RunArgs) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![self.worker().into()];
        v.extend(run.to_args());
        let mut flag = |name: &str, value: OsString| {
            v.push(format!("--{name}").into());
            v.push(value);
        };
        match self {
            Child::Collector { socket, peers } => {
                flag("unix", socket.into());
                flag("unix-peers", peers.into());
            }
            Child::Sniffer { bridge, extra } => {
                flag("bridge", bridge.into());
                v.extend(extra.iter().map(OsString::from));
            }
            Child::Correlator | Child::Profiler | Child::Retention => {}
            Child::Prober { fleet } => flag("fleet", fleet.into()),
            Child::Web {
                listen,
                jwt_secret_file,
            } => {
                flag("listen", listen.to_string().into());
                flag("jwt-secret-file", jwt_secret_file.into());
            }
            Child::Mutator { fleet } => {
                v.push("--watch".into());
                v.push("--fleet".into());
                v.push(fleet.into());
            }
            Child::Decky {
                name,
                spec,
                collector,
                state_dir,
            } => {
                flag("name", name.into());
                flag("spec-json", spec.into());
                match collector {
                    CollectorAt::Socket(path) => flag("collector-socket", path.into()),
                    CollectorAt::Tcp(addr) => flag("collector", addr.to_string().into()),
                }
                flag("state-dir", state_dir.into());
            }
        }
        v
    }

    /// The environment of the child: the repository (for workers that use one) and the
    /// supervisor's pid (so the child stops on its own when the supervisor is gone).
    pub fn env(&self, db: &DbArgs) -> Vec<(&'static str, String)> {
        let mut env = match self {
            Child::Decky { .. } => Vec::new(),
            _ => db.to_env(),
        };
        env.push((PARENT_PID_VAR, std::process::id().to_string()));
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn parse(child: &Child, run: &RunArgs) -> Command {
        let mut argv: Vec<OsString> = vec!["decnet".into()];
        argv.extend(child.args(run));
        match Cli::try_parse_from(&argv) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{argv:?} does not parse: {e}"),
        }
    }

    #[test]
    fn every_child_command_line_parses_back_to_what_was_asked() {
        let run = RunArgs {
            daemon: true,
            ready_file: Some("/run/decnet/x.ready".into()),
            ..Default::default()
        };
        let socket = PathBuf::from("/run/decnet/decnet0.d/collector.sock");
        let peers = PathBuf::from("/run/decnet/decnet0.d/deckies.peers");
        let collector = Child::Collector {
            socket: socket.clone(),
            peers: peers.clone(),
        };
        match parse(&collector, &run) {
            Command::Collector(a) => {
                // Nothing listens on a network: the default UDP/TCP pair is not opened either.
                assert!(a.listeners().is_empty(), "{:?}", a.listeners());
                assert_eq!(
                    (a.unix, a.unix_peers, a.run),
                    (Some(socket.clone()), Some(peers), run.clone())
                );
            }
            other => panic!("{other:?}"),
        }
        let sniffer = Child::Sniffer {
            bridge: "decnet0".into(),
            extra: vec!["--mode=xdp".into()],
        };
        match parse(&sniffer, &run) {
            Command::Sniffer(a) => {
                assert_eq!(a.bridge, "decnet0");
                assert_eq!(a.mode.to_string(), "xdp");
                assert_eq!(a.run, run);
            }
            other => panic!("{other:?}"),
        }
        match parse(
            &Child::Mutator {
                fleet: "/etc/decnet/fleet.toml".into(),
            },
            &run,
        ) {
            Command::Mutator(a) => {
                assert!(a.watch);
                assert_eq!(a.fleet, PathBuf::from("/etc/decnet/fleet.toml"));
                assert_eq!(a.run, run);
            }
            other => panic!("{other:?}"),
        }
        match parse(&Child::Correlator, &run) {
            Command::Correlator(a) => assert_eq!(a.run, run),
            other => panic!("{other:?}"),
        }
        match parse(&Child::Profiler, &run) {
            Command::Profiler(a) => assert_eq!(a.run, run),
            other => panic!("{other:?}"),
        }
        match parse(&Child::Retention, &run) {
            Command::Retention(a) => assert_eq!(a.run, run),
            other => panic!("{other:?}"),
        }
        let prober = Child::Prober {
            fleet: "/etc/decnet/fleet.toml".into(),
        };
        match parse(&prober, &run) {
            Command::Prober(a) => {
                assert_eq!(a.fleet, PathBuf::from("/etc/decnet/fleet.toml"));
                assert_eq!(a.vantage_netns, None, "derived from the fleet's bridge");
                assert_eq!(a.run, run);
            }
            other => panic!("{other:?}"),
        }
        let web = Child::Web {
            listen: "127.0.0.1:8080".parse().unwrap(),
            jwt_secret_file: "/var/lib/decnet/web/jwt.secret".into(),
        };
        match parse(&web, &run) {
            Command::Web(a) => {
                assert_eq!(a.listen, "127.0.0.1:8080".parse().unwrap());
                assert_eq!(
                    a.jwt_secret_file,
                    PathBuf::from("/var/lib/decnet/web/jwt.secret")
                );
                assert_eq!(a.run, run);
            }
            other => panic!("{other:?}"),
        }
        let listen: SocketAddr = "10.77.0.1:5514".parse().unwrap();
        for (collector, via_socket, via_tcp) in [
            (
                CollectorAt::Socket(socket.clone()),
                Some(socket.clone()),
                None,
            ),
            (CollectorAt::Tcp(listen), None, Some(listen)),
        ] {
            let decky = Child::Decky {
                name: "web-01".into(),
                spec: "/run/decnet/decnet0.d/decky-web-01.json".into(),
                collector,
                state_dir: "/var/lib/decnet/deckies/web-01".into(),
            };
            match parse(&decky, &run) {
                Command::Decky(a) => {
                    assert_eq!(a.name, "web-01");
                    assert_eq!(
                        a.spec_json.as_deref(),
                        Some(std::path::Path::new(
                            "/run/decnet/decnet0.d/decky-web-01.json"
                        ))
                    );
                    assert_eq!(a.fleet, None);
                    assert_eq!((a.collector_socket, a.collector), (via_socket, via_tcp));
                    assert_eq!(
                        a.state_dir.as_deref(),
                        Some(std::path::Path::new("/var/lib/decnet/deckies/web-01"))
                    );
                    assert_eq!(a.run, run);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_repository_url_goes_by_environment_never_on_argv() {
        let db = DbArgs {
            db_type: Some("mysql".into()),
            db_url: Some("mysql://decnet:s3cret@127.0.0.1/decnet".into()),
        };
        for child in [Child::Correlator, Child::Profiler, Child::Retention] {
            let argv = child.args(&RunArgs::default());
            assert!(!argv.iter().any(|a| a.to_string_lossy().contains("s3cret")));
            let env = child.env(&db);
            assert!(env.contains(&("DECNET_DB_URL", db.db_url.clone().unwrap())));
            assert!(env.iter().any(|(k, _)| *k == PARENT_PID_VAR));
        }
    }
}
