//! The `decnet` binary's workers. Each worker is a module with its config type (the clap args of
//! its subcommand), a `run` function, and its own tests; [`cli`] assembles them.
//!
//! - [`sniffer`]: loads the eBPF flow sensor onto every port of the decoy bridge and writes flows
//!   to the repository.
//! - [`collector`]: receives the decoy services' RFC 5424 logs over UDP, TCP and TLS and writes
//!   events (and credentials) to the repository.
pub mod cli;
pub mod collector;
pub mod common;
pub mod correlator;
pub mod decky;
pub mod deploy;
pub mod fleet;
pub mod profiler;
pub mod sniffer;
pub mod web;
