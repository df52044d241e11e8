//! Small helpers for reading the lossless JSON tree (`serde_json` with `preserve_order` and
//! `arbitrary_precision`).

use serde_json::Value;

/// Follows object keys from `value`.
pub fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = value;
    for key in path {
        cur = cur.get(*key)?;
    }
    Some(cur)
}

/// Follows object keys and returns a string.
pub fn get_str<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(value, path)?.as_str()
}

/// The elements of an array property, or nothing.
pub fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether any `coding` of a CodeableConcept has this system and code.
pub fn has_coding(concept: &Value, system: &str, code: &str) -> bool {
    array(concept, "coding").iter().any(|c| {
        c.get("system").and_then(Value::as_str) == Some(system)
            && c.get("code").and_then(Value::as_str) == Some(code)
    })
}

/// The first identifier value with this system.
pub fn identifier_value<'a>(resource: &'a Value, system: &str) -> Option<(usize, &'a str)> {
    array(resource, "identifier")
        .iter()
        .enumerate()
        .find_map(|(i, id)| {
            (id.get("system").and_then(Value::as_str) == Some(system))
                .then(|| id.get("value").and_then(Value::as_str).map(|v| (i, v)))
                .flatten()
        })
}

/// The first parameter named `name` of a FHIR Parameters resource.
pub fn parameter<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    array(params, "parameter")
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

/// Measures the deepest nesting of arrays and objects in raw JSON bytes without parsing them,
/// stopping early once `limit` is passed. Strings are skipped, escapes included.
pub fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Why a body could not be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Nested deeper than the limit (the limit given).
    TooDeep(usize),
    Invalid(String),
}

/// Reads JSON bytes into the lossless tree, refusing nesting deeper than `max_depth` before
/// parsing. The one reading of a request body for every route that takes one.
pub fn parse_body(body: &[u8], max_depth: usize) -> Result<Value, BodyError> {
    if nesting_exceeds(body, max_depth) {
        return Err(BodyError::TooDeep(max_depth));
    }
    serde_json::from_slice(body).map_err(|e| BodyError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings_only() {
        assert!(!nesting_exceeds(br#"{"a":[{"b":"[[[[[[[["}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"\"{{{{"}"#, 1));
    }

    #[test]
    fn lossless_tree_keeps_decimals_as_written() {
        let v: Value = serde_json::from_str(r#"{"value":2.50,"n":56}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"value":2.50,"n":56}"#
        );
    }
}
