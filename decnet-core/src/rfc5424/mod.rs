//! RFC 5424 syslog lines, both ways.
//!
//! - [`parse`] (file `parse.rs`): one received line in, a zero-copy [`Message`] or the one
//!   [`Reject`] reason out. Strict, with a few real-world deviations tolerated and flagged.
//! - [`render`]: the one renderer of decnet's own lines: a [`render::Header`] and SD-PARAMs in,
//!   one bounded, escaped line out, in a [`render::Style`] — [`render::Style::SELF_LOG`] for the
//!   workers' own tracing events (`logging`), [`render::Style::DECOY`] for the decoy events
//!   ([`crate::event::render_decoy_line`]).
//!
//! Every line [`render`] produces is accepted by [`parse`] without deviations.

mod parse;
pub mod render;

pub use parse::*;
