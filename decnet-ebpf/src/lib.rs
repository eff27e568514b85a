//! Empty on purpose: lets `decnet-sniffer` name this crate as a build dependency. The program lives
//! in `main.rs` and only builds for `bpfel-unknown-none`.
#![no_std]
