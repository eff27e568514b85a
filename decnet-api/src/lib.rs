//! decnet's REST API, authentication, live feed (SSE) and dashboard (`decnet web`).
//!
//! Not built yet: it arrives with the web issue and reads everything through
//! `decnet_core::repo::Repository`, never on the packet path. The crate exists now so the
//! workspace has its final shape.
