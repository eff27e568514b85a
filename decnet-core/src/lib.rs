//! Shared core of the decnet workers.
//!
//! - [`model`]: the records workers exchange ([`model::FlowRecord`]).
//! - [`repo`]: the one [`repo::Repository`] every worker writes through (SQLite today; the backend
//!   is chosen by URL, more dialects slot in behind the same type).
//! - [`time_fmt`]: the canonical text form of timestamps in the database.
//! - [`logging`]: the process-wide tracing setup (compact text or RFC 5424 lines on stderr,
//!   optionally also sent to a syslog server).
//! - [`rfc5424`]: RFC 5424 lines both ways: the parser the collector reads decoy logs with, and
//!   the one renderer of decnet's own lines (self-logging and decoy events).
//! - [`event`]: the decoy-event contract (SD-IDs, field keys, event kinds, secret encoding and
//!   hash) shared by the decoys, the collector and the intel workers.
//! - [`syslog`]: the one bounded, reconnecting syslog sender (UDP, or TCP octet-counted), used by
//!   `logging` (`--log-syslog`) and the decoys' event emitter.
#![forbid(unsafe_code)]

pub mod event;
pub mod logging;
pub mod model;
pub mod repo;
pub mod rfc5424;
pub mod syslog;
pub mod time_fmt;

pub use model::{FlowIdentity, FlowRecord};
pub use repo::{RepoError, Repository};
