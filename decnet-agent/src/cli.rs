//! Command-line entry point: parses arguments, sets up logging with the worker's APP-NAME and
//! runs the chosen worker.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use decnet_core::logging::{self, LogFormat};

use crate::sniffer;

/// decnet — a deception network: decoy hosts on a bridge, an eBPF sensor that sees every packet
/// sent to them, and workers that turn packets and logs into attackers and sessions.
#[derive(Debug, Parser)]
#[command(name = "decnet", version, propagate_version = true)]
pub struct Cli {
    /// Log output: `text` (human) or `rfc5424` (one RFC 5424 line per event, APP-NAME
    /// `decnet.<worker>`, for a SIEM or syslog).
    #[arg(long, global = true, env = "DECNET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Passive flow sensor: eBPF on every port of the decoy bridge → flows in the repository.
    Sniffer(sniffer::SnifferArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let app = match &cli.command {
        Command::Sniffer(_) => "decnet.sniffer",
    };
    if let Err(e) = logging::init(app, cli.log_format) {
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
        }
    });
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
