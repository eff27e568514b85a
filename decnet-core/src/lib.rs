//! Shared core of the decnet workers.
//!
//! - [`model`]: the records workers exchange ([`model::FlowRecord`]).
//! - [`repo`]: the one [`repo::Repository`] every worker writes through (SQLite today; the backend
//!   is chosen by URL, more dialects slot in behind the same type).
//! - [`time_fmt`]: the canonical text form of timestamps in the database.
//! - [`logging`]: the process-wide tracing setup (compact text or RFC 5424 lines on stderr,
//!   optionally also sent to a syslog server).
//! - [`rfc5424`]: the RFC 5424 syslog parser the collector reads decoy logs with.
#![forbid(unsafe_code)]

pub mod logging;
pub mod model;
pub mod repo;
pub mod rfc5424;
pub mod time_fmt;

pub use model::{FlowIdentity, FlowRecord};
pub use repo::{RepoError, Repository};
