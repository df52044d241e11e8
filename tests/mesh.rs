//! The MESH client against NHS Digital's MESH sandbox, started by the tests themselves
//! (`mesh/harness.rs`): handshake, send and receive, chunking, compression, reports, endpoint
//! lookup, and how failures map onto delivery outcomes (credentials, unknown recipient, outage).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mesh/exchange.rs"]
mod exchange;
#[path = "mesh/failures.rs"]
mod failures;
#[path = "mesh/harness.rs"]
mod harness;
#[path = "mesh/lookup.rs"]
mod lookup;
