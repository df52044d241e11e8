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
    // Read the tree first, then check it through the number-plain adapter (see `plain`).
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| TypedParseError {
        expression: root.to_string(),
        message: e.to_string(),
    })?;
    check_value::<T>(root, &value)
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

/// Checks an already-parsed R4 Bundle (the caller's lossless tree) against the typed model,
/// without parsing the bytes again.
pub fn check_r4_bundle_value(value: &serde_json::Value) -> Result<(), TypedParseError> {
    check_value::<fhir_sdk::r4b::resources::Bundle>("Bundle", value)
}

fn check_value<T: serde::de::DeserializeOwned>(
    root: &str,
    value: &serde_json::Value,
) -> Result<(), TypedParseError> {
    match serde_path_to_error::deserialize::<_, T>(plain::PlainValue(value)) {
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

/// A deserializer over `serde_json::Value` that hands numbers to the model as plain integers or
/// floats. With serde_json's `arbitrary_precision` (which the application needs for a lossless
/// tree), `Value` numbers deserialize as a private map, which the typed models cannot buffer
/// through their internally tagged enums; this adapter keeps the check independent of that.
mod plain {
    use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
    use serde::de::{self, IntoDeserializer, Visitor};
    use serde_json::Value;

    #[derive(Clone, Copy)]
    pub struct PlainValue<'a>(pub &'a Value);

    impl<'de, 'a> IntoDeserializer<'de, Error> for PlainValue<'a> {
        type Deserializer = PlainValue<'a>;
        fn into_deserializer(self) -> Self::Deserializer {
            self
        }
    }

    fn number<'de, V: Visitor<'de>>(n: &serde_json::Number, visitor: V) -> Result<V::Value, Error> {
        if let Some(u) = n.as_u64() {
            visitor.visit_u64(u)
        } else if let Some(i) = n.as_i64() {
            visitor.visit_i64(i)
        } else if let Some(f) = n.as_f64() {
            visitor.visit_f64(f)
        } else {
            Err(de::Error::custom(format!("unreadable number {n}")))
        }
    }

    impl<'de, 'a> de::Deserializer<'de> for PlainValue<'a> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(*b),
                Value::Number(n) => number(n, visitor),
                Value::String(s) => visitor.visit_str(s),
                Value::Array(items) => {
                    let mut seq = SeqDeserializer::new(items.iter().map(PlainValue));
                    let value = visitor.visit_seq(&mut seq)?;
                    seq.end()?;
                    Ok(value)
                }
                Value::Object(map) => {
                    let mut access =
                        MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), PlainValue(v))));
                    let value = visitor.visit_map(&mut access)?;
                    access.end()?;
                    Ok(value)
                }
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_none(),
                _ => visitor.visit_some(self),
            }
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            match self.0 {
                Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
                Value::Object(map) if map.len() == 1 => {
                    let access =
                        MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), PlainValue(v))));
                    de::Deserializer::deserialize_enum(
                        serde::de::value::MapAccessDeserializer::new(access),
                        name,
                        variants,
                        visitor,
                    )
                }
                _ => Err(de::Error::custom(
                    "expected an enum as a string or a single-key object",
                )),
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;

    fn tree(json: &str) -> serde_json::Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_fractional_decimal_outside_a_choice_element_passes_the_value_check() {
        let json = r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Medication","ingredient":[{"itemCodeableConcept":{"text":"x"},"strength":{"numerator":{"value":2.5,"unit":"mg"},"denominator":{"value":1,"unit":"ml"}}}]}},{"resource":{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p"},"medicationCodeableConcept":{"text":"x"},"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":2.50,"unit":"mg"}}]}]}}]}"#;
        assert_eq!(check_r4_bundle_value(&tree(json)), Ok(()));
    }

    #[test]
    fn the_value_check_still_names_a_bad_element() {
        let json = r#"{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Patient","gender":"sometimes"}}]}"#;
        let err = check_r4_bundle_value(&tree(json)).unwrap_err();
        assert!(
            err.expression.starts_with("Bundle.entry[0].resource"),
            "{err}"
        );
        let json = r#"{"resourceType":"Bundle","type":"novel"}"#;
        assert!(check_r4_bundle_value(&tree(json)).is_err());
    }
}
