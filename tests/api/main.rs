//! API tests: one binary driving a real gateway over TLS, one instance per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod admin;
mod audit;
mod consent;
mod corrections;
mod custody;
mod delivery;
mod demo;
mod directory;
mod edge;
mod escalation;
mod helpers;
mod holds;
mod intake;
mod mesh_delivery;
mod minimal_document;
mod mtls;
mod openapi;
mod parameters;
mod policy;
mod restart;
mod sharing_safety;
mod token;
mod translate;
mod validate;
