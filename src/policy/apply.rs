//! Produces a recipient's copy of a document from a [`Decision`]: withheld entries removed,
//! references to them dropped from the Composition and masked elsewhere, custody-only elements
//! (the prison number identifier, every `custody-*` extension) stripped for non-prison
//! recipients, and free text naming a class the recipient may not see removed from the
//! resources every copy needs.
//!
//! Narrative (docs/sharing.md): where anything was withheld or removed from a copy, none of the
//! sender's narrative is kept, since it may describe what was withheld. Every kept resource's
//! `text` is removed (all target profiles allow it), and every Composition section's `text` is
//! replaced by narrative generated from the entries the copy holds. A copy from which nothing
//! was withheld or removed (a transfer between prisons) keeps the sender's narrative.

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
        let redactions: std::collections::HashMap<usize, &Vec<String>> = decision
            .resources
            .iter()
            .filter(|r| r.shared && !r.redacted.is_empty())
            .map(|r| (r.entry, &r.redacted))
            .collect();
        for (i, mut e) in kept {
            if let Some(r) = e.get_mut("resource") {
                let path = format!("Bundle.entry[{i}].resource");
                if !decision.custody_allowed {
                    strip_custody(r, &path, &mut removals);
                }
                if let Some(paths) = redactions.get(&i) {
                    for p in paths.iter() {
                        redact(r, p);
                        removals.push(Removal {
                            path: format!("{path}.{p}"),
                            reason: "free text naming a class this recipient may not see".into(),
                        });
                    }
                }
            }
            entries.push(e);
        }
        // The Composition must not point at what was withheld.
        if let Some(comp) = entries.first_mut().and_then(|e| e.get_mut("resource"))
            && comp.get("resourceType").and_then(Value::as_str) == Some("Composition")
        {
            drop_references(comp, &withheld_refs);
        }
        // Elsewhere, a reference to withheld content says only that something is masked.
        for e in entries.iter_mut().skip(1) {
            if let Some(r) = e.get_mut("resource") {
                mask_references(r, &withheld_refs);
            }
        }
        if !withheld.is_empty() || !removals.is_empty() {
            replace_narrative(entries);
        }
    }
    (copy, removals)
}

/// The `data-absent-reason` extension, `masked`: a reference to something this recipient may not
/// see.
const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

fn masked() -> Value {
    serde_json::json!({"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]})
}

fn points_at(v: &Value, withheld: &HashSet<String>) -> bool {
    v.get("reference")
        .and_then(Value::as_str)
        .is_some_and(|r| withheld.contains(r))
}

/// Replaces every Reference to withheld content below `value`: removed from a list, and
/// reduced to a `masked` data-absent-reason where it stands alone (its `display` and
/// `identifier` go with it).
fn mask_references(value: &mut Value, withheld: &HashSet<String>) {
    if withheld.is_empty() {
        return;
    }
    match value {
        Value::Object(map) => {
            let mut emptied = Vec::new();
            for (key, child) in map.iter_mut() {
                if points_at(child, withheld) {
                    *child = masked();
                    continue;
                }
                if let Value::Array(items) = child {
                    let before = items.len();
                    items.retain(|i| !points_at(i, withheld));
                    if before > 0 && items.is_empty() {
                        emptied.push(key.clone());
                        continue;
                    }
                }
                mask_references(child, withheld);
                // An element left with nothing in it goes too (`evidence: [{}]` is no FHIR).
                if is_emptied(child) {
                    emptied.push(key.clone());
                }
            }
            for key in emptied {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            items.iter_mut().for_each(|i| mask_references(i, withheld));
            items.retain(|i| !is_emptied(i));
        }
        _ => {}
    }
}

/// An object or array with nothing left in it.
fn is_emptied(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The neutral value a required free-text element keeps when its text is removed.
fn neutral(path: &str) -> Option<&'static str> {
    (path == "title").then_some("Prison healthcare record")
}

/// Removes the free-text element at `path` (relative to the resource, as labels report it:
/// `text.div`, `section[1].title`, `note[0].text`). The narrative goes whole; a required title
/// keeps a neutral value; elements left empty are removed.
fn redact(resource: &mut Value, path: &str) {
    if let Some(text) = neutral(path) {
        if let Some(obj) = resource.as_object_mut() {
            obj.insert(path.into(), Value::String(text.into()));
        }
        return;
    }
    let path = path.strip_suffix(".div").unwrap_or(path);
    let segments = crate::fhir::json::split_path(path);
    remove_at(resource, &segments);
}

/// Removes the element at `segments` below `value`; returns whether `value` is left empty.
fn remove_at(value: &mut Value, segments: &[crate::fhir::json::Segment]) -> bool {
    use crate::fhir::json::Segment;
    let Some((first, rest)) = segments.split_first() else {
        return false;
    };
    match (first, value) {
        (Segment::Key(k), Value::Object(map)) => {
            if rest.is_empty() {
                map.remove(k.as_str());
            } else if let Some(child) = map.get_mut(k.as_str())
                && remove_at(child, rest)
            {
                map.remove(k.as_str());
            }
            map.is_empty()
        }
        (Segment::Index(i), Value::Array(items)) => {
            if rest.is_empty() {
                if *i < items.len() {
                    items.remove(*i);
                }
            } else if let Some(child) = items.get_mut(*i)
                && remove_at(child, rest)
            {
                items.remove(*i);
            }
            items.is_empty()
        }
        _ => false,
    }
}

/// Drops the sender's narrative from every resource of the copy and writes each section's
/// narrative from what the copy holds.
fn replace_narrative(entries: &mut [Value]) {
    let summaries: std::collections::HashMap<String, String> = entries
        .iter()
        .filter_map(|e| {
            let r = e.get("resource")?;
            let summary = summary_of(r);
            let mut keys = reference_of(e);
            keys.retain(|k| !k.is_empty());
            Some(keys.into_iter().map(move |k| (k, summary.clone())))
        })
        .flatten()
        .collect();
    for e in entries.iter_mut() {
        let Some(r) = e.get_mut("resource").and_then(Value::as_object_mut) else {
            continue;
        };
        r.remove("text");
        if r.get("resourceType").and_then(Value::as_str) == Some("Composition")
            && let Some(Value::Array(sections)) = r.get_mut("section")
        {
            sections
                .iter_mut()
                .for_each(|s| section_narrative(s, &summaries));
        }
    }
}

fn section_narrative(section: &mut Value, summaries: &std::collections::HashMap<String, String>) {
    let Some(obj) = section.as_object_mut() else {
        return;
    };
    let items: Vec<String> = obj
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("reference").and_then(Value::as_str))
        .map(|r| {
            summaries
                .get(r)
                .cloned()
                .unwrap_or_else(|| "An entry of this record".into())
        })
        .collect();
    let div = if items.is_empty() {
        if obj.contains_key("section") {
            None
        } else {
            Some("<p>Entries of this section are withheld from this recipient.</p>".to_string())
        }
    } else {
        let list: String = items
            .iter()
            .map(|i| format!("<li>{}</li>", xml_escape(i)))
            .collect();
        Some(format!("<ul>{list}</ul>"))
    };
    match div {
        Some(div) => {
            obj.insert(
                "text".into(),
                serde_json::json!({
                    "status": "generated",
                    "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{div}</div>")
                }),
            );
        }
        None => {
            obj.remove("text");
        }
    }
    if let Some(Value::Array(subs)) = obj.get_mut("section") {
        subs.iter_mut()
            .for_each(|s| section_narrative(s, summaries));
    }
}

/// A one-line description of a resource from its coded content: its type and the display or
/// text of its main code.
fn summary_of(r: &Value) -> String {
    let rt = r
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    let concept = [
        "code",
        "medicationCodeableConcept",
        "vaccineCode",
        "category",
    ]
    .iter()
    .find_map(|k| r.get(*k))
    .map(|c| {
        if let Value::Array(a) = c {
            a.first().unwrap_or(c)
        } else {
            c
        }
    });
    let name = concept.and_then(|c| {
        c.get("text")
            .and_then(Value::as_str)
            .or_else(|| c.pointer("/coding/0/display").and_then(Value::as_str))
    });
    match name {
        Some(n) => format!("{rt}: {n}"),
        None => rt.to_string(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
                // The section's narrative is written anew by `replace_narrative` (cmp-1 wants
                // text where there are no entries).
                if removed
                    && emptied
                    && let Some(obj) = section.as_object_mut()
                {
                    obj.remove("entry");
                    obj.insert(
                        "emptyReason".into(),
                        serde_json::json!({"coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                            "code": "withheld", "display": "Information Withheld"
                        }]}),
                    );
                }
            }
            drop_references(section, withheld);
        }
    }
}
