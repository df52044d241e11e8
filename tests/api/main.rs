//! API tests: one binary driving a real gateway over TLS, one instance per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod consent;
mod custody;
mod delivery;
mod demo;
mod directory;
mod helpers;
mod intake;
mod openapi;
mod policy;
mod restart;
mod token;
mod translate;
mod validate;
