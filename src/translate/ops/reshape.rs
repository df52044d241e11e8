//! Reshapes of one value: `toCode` and `toCodeableConcept` (CodeableConcept to code and back),
//! `wrap` and `unwrap` (`v` to `{key: v}` and back).

use serde_json::{Map, Value};

use super::{Cx, coding_of};
use crate::translate::path::{self, Path, push_index, push_key};

/// `toCode`: a CodeableConcept becomes the code of its first coding (in `system`, if given);
/// other codings and parts are reported.
pub(super) fn to_code(
    resource: &mut Value,
    path: &Path,
    system: Option<&str>,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    let Some((last, parents)) = path.segs.split_last() else {
        return;
    };
    path::visit_mut(resource, parents, p, &mut |node, at| {
        let Value::Object(obj) = node else { return };
        let Some(cc) = obj.get(last.name.as_str()) else {
            return;
        };
        if cc.is_string() {
            return;
        }
        let mark = at.len();
        push_key(at, &last.name);
        let codings: Vec<&Value> = cc
            .get("coding")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let chosen = codings
            .iter()
            .position(|c| system.is_none() || c.get("system").and_then(Value::as_str) == system)
            .and_then(|i| {
                codings[i]
                    .get("code")
                    .and_then(Value::as_str)
                    .map(|c| (i, c.to_owned()))
            });
        let mut dropped_parts: Vec<String> = Vec::new();
        if let Value::Object(ccm) = cc {
            for k in ccm.keys() {
                if k != "coding" {
                    dropped_parts.push(k.clone());
                }
            }
        }
        for k in dropped_parts {
            let m2 = at.len();
            push_key(at, &k);
            cx.loss(at, None, "only a code can be carried here");
            at.truncate(m2);
        }
        match chosen {
            Some((i, code)) => {
                for (j, c) in codings.iter().enumerate() {
                    if j != i {
                        let m2 = at.len();
                        push_key(at, "coding");
                        push_index(at, j);
                        cx.loss(at, coding_of(c), "only one code can be carried here");
                        at.truncate(m2);
                    }
                }
                obj.insert(last.name.clone(), Value::String(code));
            }
            None => {
                cx.loss(at, None, "no code to carry: the element was dropped");
                obj.shift_remove(last.name.as_str());
            }
        }
        at.truncate(mark);
    });
}

/// `toCodeableConcept`: a code becomes a CodeableConcept with one coding in `system`.
pub(super) fn to_codeable_concept(resource: &mut Value, path: &Path, system: &str, p: &mut String) {
    let Some((last, parents)) = path.segs.split_last() else {
        return;
    };
    path::visit_mut(resource, parents, p, &mut |node, _| {
        let Value::Object(obj) = node else { return };
        let Some(Value::String(code)) = obj.get(last.name.as_str()) else {
            return;
        };
        let mut coding = Map::new();
        coding.insert("system".into(), Value::String(system.to_owned()));
        coding.insert("code".into(), Value::String(code.clone()));
        let mut cc = Map::new();
        cc.insert("coding".into(), Value::Array(vec![Value::Object(coding)]));
        obj.insert(last.name.clone(), Value::Object(cc));
        let ext = format!("_{}", last.name);
        obj.shift_remove(ext.as_str());
    });
}

/// `wrap`: `v` becomes `{key: v}`.
pub(super) fn wrap(resource: &mut Value, path: &Path, key: &str, p: &mut String) {
    path::visit_mut(resource, &path.segs, p, &mut |node, _| {
        if node.is_null() {
            return;
        }
        let inner = std::mem::take(node);
        let mut m = Map::new();
        m.insert(key.to_owned(), inner);
        *node = Value::Object(m);
    });
}

/// `unwrap`: `{key: v}` becomes `v`; other keys are reported.
pub(super) fn unwrap(
    resource: &mut Value,
    path: &Path,
    key: &str,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    path::visit_mut(resource, &path.segs, p, &mut |node, at| {
        let Value::Object(m) = node else { return };
        let Some(inner) = m.shift_remove(key) else {
            return;
        };
        let mark = at.len();
        for (k, v) in m.iter() {
            push_key(at, k);
            cx.loss(
                at,
                coding_of(v),
                format!("only `{key}` can be carried here"),
            );
            at.truncate(mark);
        }
        *node = inner;
    });
}
