//! The `decnet` binary: [`cli`] (one subcommand per worker), [`deploy`] (`decnet deploy`,
//! `teardown`, `status`: the fleet's network, supervision of deckies and workers) and [`web`]
//! (`decnet web`: the `decnet-api` crate plus embedded workers).
//!
//! The workers live in their own crates beside this one: `decnet-sniffer` (sniffer/),
//! `decnet-collector` (collector/), `decnet-intel` (intel/: correlator and profiler),
//! `decnet-decoys` (decoys/: `decnet decky` and the fleet file); `decnet-runtime` (runtime/) is
//! what they share.
pub mod cli;
pub mod deploy;
pub mod web;
