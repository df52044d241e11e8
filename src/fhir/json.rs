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

/// One step of a simple element path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Splits a simple element path (`note[0].text`, `section[1].title`) into steps.
pub fn split_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Segment::Key(rest[..open].to_string()));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

/// The first key that appears twice in one JSON object, decoded (`"a"` and `"\u0061"` are the
/// same key). JSON parsers keep one of the two silently (serde_json the last), so a document
/// with `"meta"` twice would be read one way by policy and stored another: such a document is
/// refused instead. Expects bytes that already parsed as JSON.
pub fn first_duplicate_key(bytes: &[u8]) -> Option<String> {
    enum Frame {
        Object {
            keys: std::collections::HashSet<String>,
            want_key: bool,
        },
        Array,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => stack.push(Frame::Object {
                keys: Default::default(),
                want_key: true,
            }),
            b'[' => stack.push(Frame::Array),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Object { want_key, .. }) = stack.last_mut() {
                    *want_key = true;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(Frame::Object { keys, want_key }) = stack.last_mut()
                    && *want_key
                {
                    *want_key = false;
                    let raw = &bytes[start..=i.min(bytes.len() - 1)];
                    let key: String = serde_json::from_slice(raw).unwrap_or_default();
                    if !keys.insert(key.clone()) {
                        return Some(key);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Why a body could not be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Nested deeper than the limit (the limit given).
    TooDeep(usize),
    Invalid(String),
    /// An object has the same key twice (the key).
    DuplicateKey(String),
    /// A number no reader can hold (`1e999`): the element's path and the number.
    UnreadableNumber {
        path: String,
        number: String,
    },
    /// More Bundle entries than the limit, counted over every Bundle in the body.
    TooManyEntries {
        found: usize,
        max: usize,
    },
}

/// Walks a parsed body once: every number must be finite as a double (as the typed FHIR
/// models read it), and the Bundle entries, counted over every Bundle in it (a Parameters of
/// Bundles included), must stay within `max_entries`.
fn check_tree(value: &Value, max_entries: usize) -> Result<(), BodyError> {
    fn walk(
        v: &Value,
        path: &mut String,
        entries: &mut usize,
        max: usize,
    ) -> Result<(), BodyError> {
        match v {
            Value::Number(n) if !n.as_f64().is_some_and(f64::is_finite) => {
                return Err(BodyError::UnreadableNumber {
                    path: path.clone(),
                    number: n.to_string().chars().take(40).collect(),
                });
            }
            Value::Object(map) => {
                if map.get("resourceType").and_then(Value::as_str) == Some("Bundle")
                    && let Some(Value::Array(list)) = map.get("entry")
                {
                    *entries += list.len();
                    if *entries > max {
                        return Err(BodyError::TooManyEntries {
                            found: *entries,
                            max,
                        });
                    }
                }
                for (k, child) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(child, path, entries, max)?;
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(child, path, entries, max)?;
                    path.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut path = value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut entries = 0;
    walk(value, &mut path, &mut entries, max_entries)
}

/// The one reading of a request body, for every route that takes JSON: nesting no deeper than
/// the limit (checked before parsing), valid JSON into the lossless tree, no key twice in one
/// object, every number readable, and no more Bundle entries than the limit.
pub fn parse_body(body: &[u8], limits: &crate::config::Limits) -> Result<Value, BodyError> {
    if nesting_exceeds(body, limits.max_json_depth) {
        return Err(BodyError::TooDeep(limits.max_json_depth));
    }
    let value = serde_json::from_slice(body).map_err(|e| BodyError::Invalid(e.to_string()))?;
    if let Some(key) = first_duplicate_key(body) {
        return Err(BodyError::DuplicateKey(key));
    }
    check_tree(&value, limits.max_bundle_entries)?;
    Ok(value)
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

    #[test]
    fn a_key_given_twice_in_one_object_is_found_however_it_is_escaped() {
        let dup = br#"{"resourceType":"Bundle","entry":[{"resource":{"meta":{"security":[{"code":"ETH"}]},"meta":{"versionId":"1"}}}]}"#;
        assert_eq!(first_duplicate_key(dup).as_deref(), Some("meta"));
        let escaped = br#"{"meta":1,"\u006deta":2}"#;
        assert_eq!(first_duplicate_key(escaped).as_deref(), Some("meta"));
        // The same key in sibling objects, keys inside strings, and escaped quotes are fine.
        let fine =
            br#"{"a":{"k":1},"b":{"k":"x\"k\":1"},"c":[{"k":1},{"k":2}],"d":"{\"a\":1,\"a\":2}"}"#;
        assert_eq!(first_duplicate_key(fine), None);
        assert_eq!(
            parse_body(dup, &limits()),
            Err(BodyError::DuplicateKey("meta".into()))
        );
    }

    fn limits() -> crate::config::Limits {
        crate::config::Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
            max_bundle_entries: 3,
        }
    }

    #[test]
    fn every_body_is_read_with_the_same_number_and_entry_rules() {
        let huge = br#"{"resourceType":"Bundle","entry":[{"resource":{"dose":{"value":1e999}}}]}"#;
        assert_eq!(
            parse_body(huge, &limits()),
            Err(BodyError::UnreadableNumber {
                path: "Bundle.entry[0].resource.dose.value".into(),
                number: "1e+999".into()
            })
        );
        assert!(
            parse_body(
                br#"{"value": 2.50, "big": 12345678901234567890}"#,
                &limits()
            )
            .is_ok()
        );
        // Entries count over every Bundle, nested in Parameters included.
        let nested = br#"{"resourceType":"Parameters","parameter":[
            {"resource":{"resourceType":"Bundle","entry":[{},{}]}},
            {"resource":{"resourceType":"Bundle","entry":[{},{}]}}]}"#;
        assert_eq!(
            parse_body(nested, &limits()),
            Err(BodyError::TooManyEntries { found: 4, max: 3 })
        );
    }
}
