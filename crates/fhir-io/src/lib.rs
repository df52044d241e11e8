//! Typed FHIR (de)serialisation behind plain functions.
//!
//! fhir-sdk's generated models are expensive to instantiate, so they live in this crate alone
//! (DESIGN §14): the application calls `check_r4_bundle(&[u8])` and friends and never names a
//! fhir-sdk type, which keeps the application crate's rebuilds fast.
//!
//! These functions *check* content against the typed models; they are not used to re-serialise
//! what the gateway stores or sends, because the typed round trip is lossy (decimals become
//! floats, unknown properties are dropped). The lossless work happens on a JSON tree.

use std::fmt;

/// Why a document did not fit the typed FHIR model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedParseError {
    /// FHIRPath-style location of the offending element, such as `Bundle.entry[1].resource`.
    pub expression: String,
    /// What serde said about it.
    pub message: String,
}

impl fmt::Display for TypedParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.expression, self.message)
    }
}

impl std::error::Error for TypedParseError {}

fn to_expression(root: &str, path: &serde_path_to_error::Path) -> String {
    let mut out = String::from(root);
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
            serde_path_to_error::Segment::Map { key } => {
                out.push('.');
                out.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

fn check<T: serde::de::DeserializeOwned>(root: &str, bytes: &[u8]) -> Result<(), TypedParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // The caller has already bounded nesting depth; serde_json's own limit stays as a backstop.
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => Ok(()),
        Err(err) => {
            let expression = to_expression(root, err.path());
            let message = err.into_inner().to_string();
            Err(TypedParseError {
                expression,
                message,
            })
        }
    }
}

/// Checks that `bytes` is a FHIR R4 Bundle that the typed model accepts.
///
/// R4 content is read with fhir-sdk's R4B models, which carry every resource of the prison
/// document unchanged (DESIGN §14).
pub fn check_r4_bundle(bytes: &[u8]) -> Result<(), TypedParseError> {
    check::<fhir_sdk::r4b::resources::Bundle>("Bundle", bytes)
}

/// Checks that `bytes` is any FHIR R4 resource that the typed model accepts.
pub fn check_r4_resource(bytes: &[u8]) -> Result<(), TypedParseError> {
    check::<fhir_sdk::r4b::resources::Resource>("Resource", bytes)
}

/// Checks that `bytes` is a FHIR STU3 Bundle that the typed model accepts.
pub fn check_stu3_bundle(bytes: &[u8]) -> Result<(), TypedParseError> {
    check::<fhir_sdk::stu3::resources::Bundle>("Bundle", bytes)
}

/// Checks that `bytes` is any FHIR STU3 resource that the typed model accepts.
pub fn check_stu3_resource(bytes: &[u8]) -> Result<(), TypedParseError> {
    check::<fhir_sdk::stu3::resources::Resource>("Resource", bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_bundle_passes() {
        let json = br#"{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Patient","id":"p1"}}]}"#;
        assert_eq!(check_r4_bundle(json), Ok(()));
    }

    #[test]
    fn decimal_dose_passes_the_typed_model() {
        let json = br#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"medicationCodeableConcept":{"text":"x"},"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":2.50,"unit":"mg"}}]}]}}]}"#;
        assert_eq!(check_r4_bundle(json), Ok(()));
    }

    #[test]
    fn bad_code_names_the_element() {
        let json = br#"{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Patient","gender":"sometimes"}}]}"#;
        let err = check_r4_bundle(json).unwrap_err();
        assert!(
            err.expression.starts_with("Bundle.entry[0].resource"),
            "{err}"
        );
    }

    #[test]
    fn wrong_bundle_type_is_refused() {
        let json = br#"{"resourceType":"Bundle","type":"novel"}"#;
        let err = check_r4_bundle(json).unwrap_err();
        assert!(err.expression.contains("type"), "{err}");
    }
}
