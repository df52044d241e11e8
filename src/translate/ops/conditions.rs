//! Conditions: `when: {path, equals}` (or `unless:`) beside any operation, and the `when` of
//! `set`. The operation runs only if some value at `path` equals (or, for `unless:`, none
//! equals) `equals`; [`super::apply`] does the running.

use serde_json::Value;

use crate::translate::path::{Path, Seg};

/// Whether some value at `path` of `resource` equals `equals` (never for the resource itself).
pub(super) fn found(resource: &Value, path: &Path, equals: &Value) -> bool {
    !path.segs.is_empty() && any_equals(resource, &path.segs, equals)
}

fn any_equals(node: &Value, segs: &[Seg], equals: &Value) -> bool {
    match (segs.split_first(), node) {
        (None, Value::Array(items)) => items.iter().any(|i| i == equals),
        (None, v) => v == equals,
        (Some(_), Value::Array(items)) => items.iter().any(|i| any_equals(i, segs, equals)),
        (Some((seg, rest)), Value::Object(m)) => m
            .iter()
            .filter(|(k, _)| seg.matches(k))
            .any(|(_, v)| any_equals(v, rest, equals)),
        _ => false,
    }
}
