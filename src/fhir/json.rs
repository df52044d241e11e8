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
}

/// Reads JSON bytes into the lossless tree, refusing nesting deeper than `max_depth` before
/// parsing. The one reading of a request body for every route that takes one.
pub fn parse_body(body: &[u8], max_depth: usize) -> Result<Value, BodyError> {
    if nesting_exceeds(body, max_depth) {
        return Err(BodyError::TooDeep(max_depth));
    }
    let value = serde_json::from_slice(body).map_err(|e| BodyError::Invalid(e.to_string()))?;
    if let Some(key) = first_duplicate_key(body) {
        return Err(BodyError::DuplicateKey(key));
    }
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
            parse_body(dup, 64),
            Err(BodyError::DuplicateKey("meta".into()))
        );
    }
}
