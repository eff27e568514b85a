//! Command-line entry point: parses arguments, sets up logging with the worker's APP-NAME and
//! runs the chosen worker.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use decnet_core::logging::{self, LogFormat, SyslogTarget};

use crate::{deploy, web};
use decnet_decoys::decky;
use decnet_intel::{correlator, profiler};
use decnet_runtime::{StopSource, start};

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
    Sniffer(decnet_sniffer::SnifferArgs),
    /// Syslog receiver: the decoy services' RFC 5424 logs over UDP/TCP/TLS → events in the
    /// repository.
    #[command(alias = "collect")]
    Collector(decnet_collector::CollectArgs),
    /// Correlator: events and flows → sessions, attackers, traversal paths, credential reuse,
    /// scans.
    #[command(alias = "correlate")]
    Correlator(correlator::CorrelateArgs),
    /// Profiler: attackers with new evidence → behaviour class, tool guesses, explainable threat
    /// score, MITRE ATT&CK techniques.
    Profiler(profiler::ProfilerArgs),
    /// Retention: old events and flows deleted in small batches (what the correlator derived
    /// stays); SQLite's file given back its free pages.
    Retention(decnet_retention::RetentionArgs),
    /// Prober: realism checks of every decky from a vantage namespace on the decoy bridge
    /// (services, TLS certificates, SSH host keys, the TCP/IP stack against p0f, the fleet
    /// against itself) → probe results.
    Prober(decnet_prober::ProberArgs),
    /// REST API and dashboard (optionally with embedded workers).
    Web(web::WebArgs),
    /// Bring up the decoy fleet and the worker constellation, and supervise them.
    Deploy(deploy::DeployArgs),
    /// Remove exactly what `decnet deploy` created.
    Teardown(deploy::TeardownArgs),
    /// Deckies, workers and key counters.
    Status(deploy::StatusArgs),
    /// Mutator: the fleet changes while it runs — fleet file edits (--watch), the operator's
    /// queued requests, `mutate_interval` schedules — applied by the running `decnet deploy`.
    #[command(alias = "mutate")]
    Mutator(decnet_mutator::MutateArgs),
    /// Serve one decky's decoy services (run by `decnet deploy` inside the decky's namespace).
    Decky(decky::DeckyArgs),
}

impl Command {
    /// The worker's name (`decnet.<name>` is its APP-NAME).
    pub fn worker(&self) -> &'static str {
        match self {
            Command::Sniffer(_) => decnet_sniffer::WORKER,
            Command::Collector(_) => decnet_collector::WORKER,
            Command::Correlator(_) => correlator::WORKER,
            Command::Profiler(_) => profiler::WORKER,
            Command::Retention(_) => decnet_retention::WORKER,
            Command::Prober(_) => decnet_prober::WORKER,
            Command::Web(_) => web::WORKER,
            Command::Deploy(_) | Command::Teardown(_) | Command::Status(_) => deploy::WORKER,
            Command::Decky(_) => decky::WORKER,
            Command::Mutator(_) => decnet_mutator::WORKER,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Leaked once per process: logging wants a static APP-NAME.
    let app: &'static str =
        Box::leak(decnet_runtime::app_name(cli.command.worker()).into_boxed_str());
    if let Err(e) = logging::init_with(app, cli.log_format, cli.log_syslog) {
        decnet_runtime::eprint_line(&format!("decnet: cannot set up logging: {e:#}"));
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            decnet_runtime::eprint_line(&format!("decnet: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let format = cli.log_format;
    let result = runtime.block_on(async {
        let process = StopSource::Process;
        match cli.command {
            Command::Sniffer(args) => start(args, process).await,
            Command::Collector(args) => start(args, process).await,
            Command::Correlator(args) => start(args, process).await,
            Command::Profiler(args) => start(args, process).await,
            Command::Retention(args) => start(args, process).await,
            Command::Prober(args) => start(args, process).await,
            Command::Web(args) => start(args, process).await,
            Command::Deploy(args) => start(args, process).await,
            Command::Decky(args) => start(args, process).await,
            Command::Mutator(args) => start(args, process).await,
            Command::Teardown(args) => deploy::teardown(args).await,
            Command::Status(args) => deploy::status(args).await,
        }
    });
    // Give queued lines a moment to reach the syslog server.
    logging::flush_syslog(std::time::Duration::from_secs(2));
    // Tasks still running (a worker ended by its grace) must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, in the format the operator chose.
            match format {
                LogFormat::Rfc5424 => tracing::error!("{e:#}"),
                LogFormat::Text => decnet_runtime::eprint_line(&format!("decnet: {e:#}")),
            }
            ExitCode::FAILURE
        }
    }
}
