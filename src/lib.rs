//! Throughcare: a FHIR gateway that moves health records between prison healthcare and
//! community NHS services, under data-sharing agreements and the patient's consent, with a
//! tamper-evident audit log.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod consents;
pub mod delivery;
pub mod demo;
pub mod document;
pub mod domain;
pub mod error;
pub mod fhir;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod pull;
pub mod routing;
pub mod sharing;
pub mod startup;
pub mod store;
pub mod tls;
pub mod translate;
pub mod validate;

#[cfg(test)]
mod hazard_log_tests;
