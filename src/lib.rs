//! Throughcare: a FHIR gateway that moves health records between prison healthcare and
//! community NHS services, under data-sharing agreements and the patient's consent, with a
//! tamper-evident audit log.
//!
//! The house has layers, each importing only from those below it (`tests/architecture.rs`):
//!
//! - **edge**: [`api`] (handlers, the route table with each route's access rule, the
//!   `Principal` extractor, errors as OperationOutcomes), [`startup`], [`cli`], [`demo`]. Only
//!   the edge knows actix.
//! - **use cases** over the [`app::App`] context: [`intake`], [`recipient`] (`copy_for`, the one
//!   place a recipient's copy is made), [`pull`], [`decisions`], [`consents`], [`preview`],
//!   [`admin`], [`delivery`], [`sharing`] (agreements and consents in force), [`error`].
//! - **services**: [`store`], [`audit`], [`auth`], [`transport`], [`metrics`], [`tls`],
//!   [`certs`], [`client`].
//! - **pure stages**: [`policy`], [`translate`], [`validate`], [`routing`], [`document`].
//! - **values**: [`domain`], [`codes`], [`chain`], [`fhir`], [`config`], [`clock`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod certs;
pub mod chain;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codes;
pub mod config;
pub mod consents;
pub mod custody;
pub mod decisions;
pub mod delivery;
pub mod demo;
pub mod directory;
pub mod document;
pub mod domain;
pub mod error;
pub mod fhir;
pub mod intake;
pub mod itk;
pub mod medicines;
pub mod metrics;
pub mod policy;
pub mod preview;
pub mod pull;
pub mod recipient;
pub mod routing;
pub mod sharing;
pub mod startup;
pub mod store;
pub mod tls;
pub mod translate;
pub mod transport;
pub mod validate;

#[cfg(test)]
mod hazard_log_tests;
