//! ITK3 messaging (FHIR STU3), pure: the Transfer of Care message envelope the gateway sends to
//! a GP practice over MESH, and the ITK3 responses it reads back (issue 13, items 3 and 4).
//!
//! - [`message`]: [`build_message`] wraps a recipient's ITK-Document-Bundle-1 (made by the
//!   `prison-to-itk-edischarge-stu3` mapping) in an ITK-Message-Bundle-1: the MessageHeader
//!   (ITK-MessageHeader-2, with the six handling keys of Extension-ITK-MessageHandling-2), the
//!   sender and receiver header Organizations, and the document. A correcting document goes as
//!   an ITK3 replacement document (`Composition.relatesTo` `replaces`).
//! - [`response`]: [`parse_response`] reads an ITK3 response message into an [`ItkResponse`],
//!   classified by its ITK-ResponseCodes-1 code (never by `MessageHeader.response.code`);
//!   [`build_response`] makes the gateway's own responses (20013 for each business response
//!   it receives, 10009 for a message it cannot read).
//! - [`codes`]: the ITK-ResponseCodes-1 CodeSystem (v1.5.0, shipped in `packages/itk3.stu3`)
//!   with the severity of each code.
//!
//! Everything here works on FHIR JSON trees; the XML serialisation and parsing for MESH is
//! `fhir::xml`'s. No I/O.

pub mod codes;
pub mod message;
pub mod response;

pub use codes::{Polarity, ResponseCode, ResponseKind, response_code};
pub use message::{HeaderOrganisation, ItkError, MessageParams, Replaces, build_message};
pub use response::{
    Classification, ItkResponse, ResponseParams, TaskEffect, build_response, parse_response,
};

/// MESH workflow of an inpatient / day-case discharge (ITK003D).
pub const WORKFLOW_IP_DISCHARGE: &str = "TOC_FHIR_IP_DISCH";
/// MESH workflow the ITK3 responses to [`WORKFLOW_IP_DISCHARGE`] travel on.
pub const WORKFLOW_IP_DISCHARGE_ACK: &str = "TOC_FHIR_IP_DISCH_ACK";

/// The eDischarge MessageDefinition (v4.0.0, active) the handling extension names.
pub const EDISCHARGE_MESSAGE_DEFINITION: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-eDischarge-MessageDefinition-4";
/// The response MessageDefinition (the examples misname it `...-Instance-1`).
pub const RESPONSE_MESSAGE_DEFINITION: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-Response-MessageDefinition-1";

pub const MESSAGE_EVENT_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2";
pub const RECIPIENT_TYPE_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1";
pub const RESPONSE_CODES_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1";
pub const MESSAGE_HANDLING_URL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2";

pub const MESSAGE_BUNDLE_PROFILE: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Message-Bundle-1";
pub const MESSAGE_HEADER_PROFILE: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/ITK-MessageHeader-2";
pub const HEADER_ORGANIZATION_PROFILE: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-ITK-Header-Organization-1";
pub const RESPONSE_OUTCOME_PROFILE: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Response-OperationOutcome-1";
pub const DOCUMENT_BUNDLE_PROFILE: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/ITK-Document-Bundle-1";

/// RFC 4122 identifier system, as the ITK examples use for Bundle identifiers.
pub const UUID_SYSTEM: &str = "https://tools.ietf.org/html/rfc4122";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// A UUID derived from a stable seed (a name-based UUID in the spirit of RFC 4122 version 5,
/// over SHA-256), so that a resend of the same delivery produces the same identifiers.
pub fn stable_uuid(seed: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}
