//! FHIR building blocks: OperationOutcome, CapabilityStatement, and JSON helpers.

pub mod capability;
pub mod json;
pub mod outcome;
pub mod xml;

/// The FHIR media type the gateway speaks.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The FHIR version advertised on the wire.
pub const FHIR_VERSION: &str = "4.0.1";
