//! # decnet-intel — the correlator and the profiler
//!
//! [`correlator`] (`decnet correlator`): events, credentials and flows → sessions, attackers,
//! traversals, credential reuse, scans and the profiler's evidence queue. [`profiler`] (`decnet
//! profiler`): attackers with new evidence → behaviour, tools, score, ATT&CK techniques.
//! [`vocab`] is how both read a stored event; [`passes`] is the loop of passes and the counters
//! they share.
pub mod correlator;
pub mod passes;
pub mod profiler;
pub mod vocab;
