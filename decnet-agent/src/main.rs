//! `decnet`: one binary, every worker a subcommand. See `decnet --help`.
use std::process::ExitCode;

fn main() -> ExitCode {
    decnet_agent::cli::main()
}
