//! Command-line entry point: parses arguments, sets up logging with the worker's APP-NAME and
//! runs the chosen worker.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use decnet_core::logging::{self, LogFormat, SyslogTarget};

use crate::{collector, correlator, decky, deploy, profiler, sniffer, web};

/// decnet — a deception network: decoy hosts on a bridge, an eBPF sensor that sees every packet
/// sent to them, and workers that turn packets and logs into attackers and sessions.
#[derive(Debug, Parser)]
#[command(name = "decnet", version, propagate_version = true)]
pub struct Cli {
    /// Log output: `text` (human) or `rfc5424` (one RFC 5424 line per event, APP-NAME
    /// `decnet.<worker>`, for a SIEM or syslog).
    #[arg(long, global = true, env = "DECNET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Also send every log line, as RFC 5424, to a syslog server: `udp://HOST:PORT` or
    /// `tcp://HOST:PORT` (octet-counted). Never blocks the worker: lines that cannot be sent in
    /// time are dropped and counted.
    #[arg(long, global = true, env = "DECNET_LOG_SYSLOG", value_name = "URL")]
    pub log_syslog: Option<SyslogTarget>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Passive flow sensor: eBPF on every port of the decoy bridge → flows in the repository.
    Sniffer(sniffer::SnifferArgs),
    /// Syslog receiver: the decoy services' RFC 5424 logs over UDP/TCP/TLS → events in the
    /// repository.
    Collect(collector::CollectArgs),
    /// Correlator: events and flows → sessions, attackers, traversal paths, credential reuse,
    /// scans.
    Correlate(correlator::CorrelateArgs),
    /// Profiler: attackers with new evidence → behaviour class, tool guesses, explainable threat
    /// score, MITRE ATT&CK techniques.
    Profiler(profiler::ProfilerArgs),
    /// REST API and dashboard (optionally with embedded workers).
    Web(web::WebArgs),
    /// Bring up the decoy fleet and the worker constellation, and supervise them.
    Deploy(deploy::DeployArgs),
    /// Remove exactly what `decnet deploy` created.
    Teardown(deploy::TeardownArgs),
    /// Deckies, workers and key counters.
    Status(deploy::StatusArgs),
    /// Serve one decky's decoy services (run by `decnet deploy` inside the decky's namespace).
    Decky(decky::DeckyArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let app = match &cli.command {
        Command::Sniffer(_) => "decnet.sniffer",
        Command::Collect(_) => "decnet.collector",
        Command::Correlate(_) => "decnet.correlator",
        Command::Profiler(_) => "decnet.profiler",
        Command::Web(_) => "decnet.web",
        Command::Deploy(_) | Command::Teardown(_) | Command::Status(_) => "decnet.deploy",
        Command::Decky(_) => "decnet.decky",
    };
    if let Err(e) = logging::init_with(app, cli.log_format, cli.log_syslog) {
        eprintln!("decnet: cannot set up logging: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("decnet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = cli.log_format;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sniffer(args) => sniffer::run(args).await,
            Command::Collect(args) => collector::run(args).await,
            Command::Correlate(args) => correlator::run(args).await,
            Command::Profiler(args) => profiler::run(args).await,
            Command::Web(args) => web::run(args).await,
            Command::Deploy(args) => deploy::deploy(args).await,
            Command::Teardown(args) => deploy::teardown(args).await,
            Command::Status(args) => deploy::status(args).await,
            Command::Decky(args) => decky::run(args).await,
        }
    });
    // Give queued lines a moment to reach the syslog server.
    logging::flush_syslog(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, in the format the operator chose.
            match format {
                LogFormat::Rfc5424 => tracing::error!("{e:#}"),
                LogFormat::Text => eprintln!("decnet: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
