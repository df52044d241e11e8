//! Element operations: `remove`, `keep`, `set`, `profile` and `move`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{Cx, coding_of, conditions};
use crate::translate::path::{self, Path, push_key};

/// `remove`: removes the element(s) at `path`, reporting them if `report`.
pub(super) fn remove(
    resource: &mut Value,
    path: &Path,
    reason: Option<&str>,
    report: bool,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    if path.is_root() {
        return;
    }
    for (at, _, v) in path::take_all(resource, &path.segs, p) {
        if report {
            let why = reason
                .map(str::to_owned)
                .unwrap_or_else(|| format!("`{}` is not carried by this mapping", path.text));
            cx.loss(&at, coding_of(&v), why);
        }
    }
}

/// `keep`: allow-list; removes (and reports) every other child of the node(s) at `path`.
pub(super) fn keep(
    resource: &mut Value,
    path: &Path,
    elements: &HashSet<String>,
    reason: Option<&str>,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    path::visit_mut(resource, &path.segs, p, &mut |node, at| {
        let Value::Object(map) = node else { return };
        let mark = at.len();
        let mut dropped = Vec::new();
        for (k, v) in map.iter() {
            let base = k.strip_prefix('_').unwrap_or(k);
            if k == "resourceType" || elements.contains(base) {
                continue;
            }
            if !k.starts_with('_') {
                push_key(at, k);
                cx.loss(
                    at,
                    coding_of(v),
                    reason
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("`{k}` is not carried by this mapping")),
                );
                at.truncate(mark);
            }
            dropped.push(k.clone());
        }
        for k in dropped {
            map.shift_remove(k.as_str());
        }
    });
}

/// Where `set` takes its value from.
pub(super) enum SetSource<'a> {
    /// A JSON value (`${id}` in a string is the resource id).
    Value(&'a Value),
    /// The first value at this path of the same resource.
    Resource(&'a Path),
    /// The first value at this path of the document's Composition.
    Document(&'a Path, Option<&'a Value>),
}

/// `set`: writes the value `source` gives at `path`; `if_absent` and `when` (a path and the
/// value it must hold) guard it. True when something was written.
pub(super) fn set(
    resource: &mut Value,
    path: &Path,
    source: SetSource<'_>,
    if_absent: bool,
    when: Option<&(Path, Value)>,
) -> bool {
    if let Some((wpath, equals)) = when
        && !conditions::found(resource, wpath, equals)
    {
        return false;
    }
    if if_absent && path::exists(resource, &path.segs) {
        return false;
    }
    let value = match source {
        SetSource::Resource(from) => match path::first_at(resource, &from.segs) {
            Some(v) => v.clone(),
            None => return false,
        },
        SetSource::Document(from, composition) => {
            match composition.and_then(|c| path::first_at(c, &from.segs)) {
                Some(v) => v.clone(),
                None => return false,
            }
        }
        SetSource::Value(value) => {
            if mentions_id(value) && resource.get("id").and_then(Value::as_str).is_none() {
                return false;
            }
            fill_template(value, resource)
        }
    };
    path::set_at(resource, &path.segs, "", value);
    true
}

/// The extension FHIR marks a missing element with.
pub(crate) const DATA_ABSENT_REASON: &str =
    "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// `absent`: where the element at `path` is missing, marks it absent the FHIR way: a complex
/// element as `{"extension": [data-absent-reason]}`, a primitive as `_name` holding the
/// extension, a repeating primitive as `[null]` beside `[{"extension": ...}]`. True when it
/// marked something.
pub(super) fn mark_absent(
    resource: &mut Value,
    path: &Path,
    reason: &str,
    shape: AbsentShape,
) -> bool {
    if path::exists(resource, &path.segs) {
        return false;
    }
    let ext = serde_json::json!({"extension": [{"url": DATA_ABSENT_REASON, "valueCode": reason}]});
    let Some((last, parents)) = path.segs.split_last() else {
        return false;
    };
    if shape == AbsentShape::Element {
        path::set_at(resource, &path.segs, "", ext);
        return true;
    }
    let hidden = format!("_{}", last.name);
    let mut done = false;
    let mut set_on = |node: &mut Value| {
        if let Value::Object(map) = node {
            if map.contains_key(&last.name) || map.contains_key(&hidden) {
                return;
            }
            if shape == AbsentShape::PrimitiveList {
                map.insert(last.name.clone(), Value::Array(vec![Value::Null]));
                map.insert(hidden.clone(), Value::Array(vec![ext.clone()]));
            } else {
                map.insert(hidden.clone(), ext.clone());
            }
            done = true;
        }
    };
    if parents.is_empty() {
        set_on(resource);
    } else {
        let mut buf = String::new();
        path::visit_mut(resource, parents, &mut buf, &mut |node, _| set_on(node));
    }
    done
}

/// The shape of an element `absent` marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AbsentShape {
    /// A complex element (a Reference, a BackboneElement, a CodeableConcept).
    Element,
    /// A primitive (`date`, `code`): the extension goes on `_name`.
    Primitive,
    /// A repeating primitive.
    PrimitiveList,
}

/// `profile`: sets `meta.profile`.
pub(super) fn profile(resource: &mut Value, urls: &[String]) {
    let Value::Object(obj) = resource else { return };
    if !obj.get("meta").is_some_and(Value::is_object) {
        // Where FHIR JSON puts it: after resourceType and id.
        let at = obj
            .keys()
            .position(|k| k != "resourceType" && k != "id")
            .unwrap_or(obj.len());
        obj.shift_remove("meta");
        obj.shift_insert(at.min(obj.len()), "meta".into(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(m)) = obj.get_mut("meta") {
        m.insert(
            "profile".into(),
            Value::Array(urls.iter().cloned().map(Value::String).collect()),
        );
    }
}

/// `move`: renames or re-nests an element within each node of the first `prefix` steps (the
/// context); further values are reported, and so is a value the moved one replaces.
pub(super) fn move_(
    resource: &mut Value,
    from: &Path,
    to: &Path,
    prefix: usize,
    reason: Option<&str>,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    let ctx = &from.segs[..prefix];
    let from_rest = &from.segs[prefix..];
    let to_rest = &to.segs[prefix..];
    path::visit_mut(resource, ctx, p, &mut |node, at| {
        let taken = path::take_all(node, from_rest, at);
        let mut taken = taken.into_iter();
        let Some((_, suffix, first)) = taken.next() else {
            return;
        };
        for (where_, _, extra) in taken {
            cx.loss(
                &where_,
                coding_of(&extra),
                reason
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("only one value can be carried to `{}`", to.text)),
            );
        }
        if let Some(old) = path::set_at(node, to_rest, &suffix, first)
            && !is_empty(&old)
        {
            let mark = at.len();
            for s in to_rest {
                push_key(at, &s.name);
            }
            cx.loss(
                at,
                coding_of(&old),
                format!("replaced by the value moved from `{}`", from.text),
            );
            at.truncate(mark);
        }
    });
}

fn mentions_id(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("${id}"),
        Value::Array(items) => items.iter().any(mentions_id),
        Value::Object(m) => m.values().any(mentions_id),
        _ => false,
    }
}

/// `${id}` in a string value becomes the resource id.
fn fill_template(value: &Value, resource: &Value) -> Value {
    match value {
        Value::String(s) if s.contains("${id}") => {
            let id = resource.get("id").and_then(Value::as_str).unwrap_or("");
            Value::String(s.replace("${id}", id))
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| fill_template(i, resource)).collect())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill_template(v, resource)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
