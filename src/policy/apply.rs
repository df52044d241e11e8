//! Produces a recipient's copy of a document from a [`Decision`]: withheld entries removed,
//! references to them dropped from the Composition, and custody-only elements (the prison
//! number identifier, every `custody-*` extension) stripped for non-prison recipients.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;

use super::decision::Decision;
use crate::domain::systems;

/// One element-level removal, for the explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// FHIRPath of the element in the original document.
    pub path: String,
    pub reason: String,
}

fn is_custody_extension(ext: &Value) -> bool {
    ext.get("url")
        .and_then(Value::as_str)
        .is_some_and(|u| u.starts_with(systems::CUSTODY_EXTENSION_PREFIX))
}

/// Removes custody-only elements anywhere below `value`.
fn strip_custody(value: &mut Value, path: &str, removals: &mut Vec<Removal>) {
    match value {
        Value::Object(map) => {
            for key in ["extension", "modifierExtension"] {
                if let Some(Value::Array(exts)) = map.get_mut(key) {
                    let mut i = 0usize;
                    let mut original = 0usize;
                    while i < exts.len() {
                        if is_custody_extension(&exts[i]) {
                            removals.push(Removal {
                                path: format!("{path}.{key}[{original}]"),
                                reason: "custody-only extension".into(),
                            });
                            exts.remove(i);
                        } else {
                            i += 1;
                        }
                        original += 1;
                    }
                    if exts.is_empty() {
                        map.remove(key);
                    }
                }
            }
            if let Some(Value::Array(ids)) = map.get_mut("identifier") {
                let mut i = 0usize;
                let mut original = 0usize;
                while i < ids.len() {
                    if ids[i].get("system").and_then(Value::as_str) == Some(systems::PRISON_NUMBER)
                    {
                        removals.push(Removal {
                            path: format!("{path}.identifier[{original}]"),
                            reason: "custody-only identifier (prison number)".into(),
                        });
                        ids.remove(i);
                    } else {
                        i += 1;
                    }
                    original += 1;
                }
                if ids.is_empty() {
                    map.remove("identifier");
                }
            }
            for (key, child) in map.iter_mut() {
                strip_custody(child, &format!("{path}.{key}"), removals);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                strip_custody(item, &format!("{path}[{i}]"), removals);
            }
        }
        _ => {}
    }
}

fn reference_of(entry: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = entry.get("fullUrl").and_then(Value::as_str) {
        out.push(u.to_string());
    }
    if let Some(r) = entry.get("resource")
        && let (Some(t), Some(id)) = (
            r.get("resourceType").and_then(Value::as_str),
            r.get("id").and_then(Value::as_str),
        )
    {
        out.push(format!("{t}/{id}"));
    }
    out
}

/// Applies `decision` to `document` (a Bundle), returning the recipient's copy and the
/// element-level removals.
pub fn apply(document: &Value, decision: &Decision) -> (Value, Vec<Removal>) {
    let mut copy = document.clone();
    let mut removals = Vec::new();
    let withheld: HashSet<usize> = decision.withheld().map(|r| r.entry).collect();
    let mut withheld_refs: HashSet<String> = HashSet::new();
    if let Some(Value::Array(entries)) = copy.get_mut("entry") {
        let mut kept = Vec::with_capacity(entries.len());
        for (i, e) in std::mem::take(entries).into_iter().enumerate() {
            if withheld.contains(&i) {
                withheld_refs.extend(reference_of(&e));
            } else {
                kept.push((i, e));
            }
        }
        for (i, mut e) in kept {
            if !decision.custody_allowed
                && let Some(r) = e.get_mut("resource")
            {
                strip_custody(r, &format!("Bundle.entry[{i}].resource"), &mut removals);
            }
            entries.push(e);
        }
        // The Composition must not point at what was withheld.
        if let Some(comp) = entries.first_mut().and_then(|e| e.get_mut("resource"))
            && comp.get("resourceType").and_then(Value::as_str) == Some("Composition")
        {
            drop_references(comp, &withheld_refs);
        }
    }
    (copy, removals)
}

fn drop_references(comp: &mut Value, withheld: &HashSet<String>) {
    if let Some(Value::Array(sections)) = comp.get_mut("section") {
        for section in sections.iter_mut() {
            if let Some(Value::Array(entries)) = section.get_mut("entry") {
                let before = entries.len();
                entries.retain(|r| {
                    r.get("reference")
                        .and_then(Value::as_str)
                        .is_none_or(|x| !withheld.contains(x))
                });
                let removed = entries.len() < before;
                let emptied = entries.is_empty();
                if removed && let Some(obj) = section.as_object_mut() {
                    // The narrative cannot be filtered entry by entry, and may describe what
                    // was withheld: it is replaced (cmp-1 wants text where there are no entries).
                    let div = if emptied {
                        obj.remove("entry");
                        obj.insert(
                            "emptyReason".into(),
                            serde_json::json!({"coding": [{
                                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                                "code": "withheld", "display": "Information Withheld"
                            }]}),
                        );
                        "Entries of this section are withheld from this recipient."
                    } else {
                        "Some entries of this section are withheld from this recipient."
                    };
                    if emptied || obj.contains_key("text") {
                        obj.insert(
                            "text".into(),
                            serde_json::json!({
                                "status": "generated",
                                "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{div}</p></div>")
                            }),
                        );
                    }
                }
            }
            drop_references(section, withheld);
        }
    }
}
