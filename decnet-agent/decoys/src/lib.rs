//! # decnet-decoys — the deckies and the fleet file
//!
//! [`fleet`]: the fleet file (TOML) — the LAN and every decky (name, IP, OS persona, archetype,
//! services), validated in one step with every problem reported. [`decky`] (`decnet decky`):
//! one decky's decoy services, run inside its network namespace, logging every interaction as
//! RFC 5424 to the collector.
pub mod decky;
pub mod fleet;
