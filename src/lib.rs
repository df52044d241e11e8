//! Throughcare: a FHIR gateway that moves health records between prison healthcare and
//! community NHS services, under data-sharing agreements and the patient's consent, with a
//! tamper-evident audit log.
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
