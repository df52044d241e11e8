//! Recoding: `recode` and `recodeEverywhere` (through a ConceptMap) and `map` (a value map
//! given in the rule), with the ConceptMap helpers they share.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Cx;
use crate::translate::Loss;
use crate::translate::conceptmap::{ConceptMap, TranslateMatch};
use crate::translate::path::{self, Path, push_index, push_key};
use crate::translate::rules::{RecodeMode, Unmapped};

/// `recode`: translates the Coding / CodeableConcept (or, with `system`, primitive code) at
/// `path` through the ConceptMap `concept_map`.
#[allow(clippy::too_many_arguments)]
pub(super) fn recode(
    resource: &mut Value,
    path: &Path,
    concept_map: &str,
    unmapped: Unmapped,
    mode: RecodeMode,
    system: Option<&str>,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    let Some(map) = cx.maps.get(concept_map) else {
        return;
    };
    let maps = cx.maps;
    let mut losses = Vec::new();
    path::visit_mut(resource, &path.segs, p, &mut |node, at| {
        recode_node(node, at, map, maps, unmapped, mode, system, &mut losses);
    });
    cx.losses.extend(losses);
}

/// `recodeEverywhere`: recodes every Coding of the resource whose system the map translates.
pub(super) fn recode_everywhere(
    resource: &mut Value,
    concept_map: &str,
    report: bool,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    let Some(map) = cx.maps.get(concept_map) else {
        return;
    };
    let maps = cx.maps;
    let mut losses = Vec::new();
    recode_all(resource, map, maps, report, p, &mut losses);
    cx.losses.extend(losses);
}

/// `map`: value map for a primitive code; `lossy` entries are reported, other values pass.
pub(super) fn map(
    resource: &mut Value,
    path: &Path,
    values: &HashMap<String, String>,
    lossy: &HashMap<String, String>,
    reason: Option<&str>,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    let Some((last, parents)) = path.segs.split_last() else {
        return;
    };
    path::visit_mut(resource, parents, p, &mut |node, at| {
        let Value::Object(obj) = node else { return };
        let Some(Value::String(code)) = obj.get(last.name.as_str()) else {
            return;
        };
        if let Some(new) = values.get(code.as_str()) {
            let new = new.clone();
            obj.insert(last.name.clone(), Value::String(new));
        } else if let Some(new) = lossy.get(code.as_str()) {
            let (code, new) = (code.clone(), new.clone());
            let mark = at.len();
            push_key(at, &last.name);
            let why = reason
                .map(str::to_owned)
                .unwrap_or_else(|| format!("`{code}` has no exact equivalent in the target"));
            cx.loss(at, Some(code), format!("{why}; `{new}` was sent instead"));
            at.truncate(mark);
            obj.insert(last.name.clone(), Value::String(new));
        }
    });
}

/// Why a code has no translation: the map's own comment when it lists the code as unmatched.
fn no_mapping_reason(
    map: &ConceptMap,
    maps: &HashMap<String, ConceptMap>,
    system: &str,
    code: &str,
) -> String {
    let comment = map
        .translate(maps, Some(system), code, None, 0)
        .into_iter()
        .find_map(|m| m.comment.filter(|_| m.code.is_none()));
    match comment {
        Some(c) => format!(
            "ConceptMap {} has no equivalent: {}",
            map.url,
            c.trim_end_matches('.')
        ),
        None => format!("no mapping in ConceptMap {}", map.url),
    }
}

/// The first usable translation, with the source code filled in where the map keeps it.
fn first_mapping(
    map: &ConceptMap,
    maps: &HashMap<String, ConceptMap>,
    system: &str,
    code: &str,
) -> Option<TranslateMatch> {
    let m = map.lookup(maps, system, code, 0)?;
    Some(TranslateMatch {
        equivalence: String::new(),
        system: m.system.map(str::to_owned),
        code: Some(m.code.unwrap_or(code).to_owned()),
        display: m.display.map(str::to_owned),
        source: String::new(),
        comment: None,
    })
}

fn target_coding(m: &TranslateMatch) -> Value {
    let mut c = Map::new();
    if let Some(s) = &m.system {
        c.insert("system".into(), Value::String(s.clone()));
    }
    if let Some(code) = &m.code {
        c.insert("code".into(), Value::String(code.clone()));
    }
    if let Some(d) = &m.display {
        c.insert("display".into(), Value::String(d.clone()));
    }
    Value::Object(c)
}

#[allow(clippy::too_many_arguments)]
fn recode_node(
    node: &mut Value,
    at: &mut String,
    map: &ConceptMap,
    maps: &HashMap<String, ConceptMap>,
    unmapped: Unmapped,
    mode: RecodeMode,
    system: Option<&str>,
    losses: &mut Vec<Loss>,
) {
    match node {
        Value::String(code) => {
            // A primitive code: its system comes from the rule.
            let Some(sys) = system else { return };
            match first_mapping(map, maps, sys, code) {
                Some(m) => {
                    if let Some(c) = m.code {
                        *code = c;
                    }
                }
                None => {
                    losses.push(Loss::new(
                        at.as_str(),
                        Some(format!("{sys}|{code}")),
                        format!(
                            "{}; kept as it was",
                            no_mapping_reason(map, maps, sys, code)
                        ),
                    ));
                }
            }
        }
        Value::Object(obj) if obj.contains_key("coding") => {
            let Some(Value::Array(codings)) = obj.get_mut("coding") else {
                return;
            };
            let mark = at.len();
            push_key(at, "coding");
            let inner = at.len();
            let mut out: Vec<Value> = Vec::with_capacity(codings.len() + 1);
            let mut appended: Vec<Value> = Vec::new();
            let mut dropped_display: Option<String> = None;
            for (i, c) in codings.drain(..).enumerate() {
                let sys = c.get("system").and_then(Value::as_str).map(str::to_owned);
                let code = c.get("code").and_then(Value::as_str).map(str::to_owned);
                let (Some(sys), Some(code)) = (sys, code) else {
                    out.push(c);
                    continue;
                };
                if !map.has_source_system(&sys) {
                    out.push(c);
                    continue;
                }
                push_index(at, i);
                match first_mapping(map, maps, &sys, &code) {
                    Some(m) => {
                        let t = if m.code.as_deref() == Some(code.as_str()) {
                            // Same code in another system: the coding keeps everything else
                            // (display, extensions such as the SNOMED CT description id).
                            let mut same = c.clone();
                            if let Value::Object(sm) = &mut same {
                                if let Some(ts) = &m.system {
                                    sm.insert("system".into(), Value::String(ts.clone()));
                                }
                                if let Some(d) = &m.display {
                                    sm.insert("display".into(), Value::String(d.clone()));
                                }
                                sm.shift_remove("version");
                            }
                            same
                        } else {
                            if c.get("extension").is_some() {
                                let m2 = at.len();
                                push_key(at, "extension");
                                losses.push(Loss::new(
                                    at.as_str(),
                                    Some(format!("{sys}|{code}")),
                                    "the coding's extensions describe the source code and are not carried to its translation",
                                ));
                                at.truncate(m2);
                            }
                            target_coding(&m)
                        };
                        match mode {
                            RecodeMode::Replace => out.push(t),
                            RecodeMode::Append => {
                                out.push(c);
                                appended.push(t);
                            }
                        }
                    }
                    None => {
                        let code_text = Some(format!("{sys}|{code}"));
                        match unmapped {
                            Unmapped::Keep => {
                                losses.push(Loss::new(
                                    at.as_str(),
                                    code_text,
                                    format!(
                                        "{}; the code was kept as it was",
                                        no_mapping_reason(map, maps, &sys, &code)
                                    ),
                                ));
                                out.push(c);
                            }
                            Unmapped::Drop => {
                                losses.push(Loss::new(
                                    at.as_str(),
                                    code_text,
                                    format!(
                                        "{}; the code was dropped",
                                        no_mapping_reason(map, maps, &sys, &code)
                                    ),
                                ));
                                if dropped_display.is_none() {
                                    dropped_display =
                                        c.get("display").and_then(Value::as_str).map(str::to_owned);
                                }
                            }
                        }
                    }
                }
                at.truncate(inner);
            }
            for t in appended {
                out.push(t);
            }
            // A translation the CodeableConcept already holds is not added twice (same system
            // and code: the first one, usually the sender's, is kept).
            let mut seen: Vec<(String, String)> = Vec::with_capacity(out.len());
            out.retain(|c| {
                let (Some(s), Some(k)) = (
                    c.get("system").and_then(Value::as_str),
                    c.get("code").and_then(Value::as_str),
                ) else {
                    return true;
                };
                if seen.iter().any(|(a, b)| a == s && b == k) {
                    return false;
                }
                seen.push((s.to_owned(), k.to_owned()));
                true
            });
            if out.is_empty() {
                obj.shift_remove("coding");
            } else {
                obj.insert("coding".into(), Value::Array(out));
            }
            if let Some(d) = dropped_display
                && !obj.contains_key("text")
            {
                obj.insert("text".into(), Value::String(d));
            }
            at.truncate(mark);
        }
        Value::Object(obj) if obj.contains_key("code") => {
            // A single Coding.
            let sys = obj.get("system").and_then(Value::as_str).map(str::to_owned);
            let code = obj.get("code").and_then(Value::as_str).map(str::to_owned);
            let (Some(sys), Some(code)) = (sys, code) else {
                return;
            };
            if !map.has_source_system(&sys) {
                return;
            }
            match first_mapping(map, maps, &sys, &code) {
                Some(m) => {
                    if m.code.as_deref() != Some(code.as_str()) {
                        obj.shift_remove("display");
                        obj.shift_remove("version");
                        if obj.shift_remove("extension").is_some() {
                            losses.push(Loss::new(
                                at.as_str(),
                                Some(format!("{sys}|{code}")),
                                "the coding's extensions describe the source code and are not carried to its translation",
                            ));
                        }
                    }
                    if let Value::Object(tm) = target_coding(&m) {
                        for (k, v) in tm {
                            obj.insert(k, v);
                        }
                    }
                }
                None => losses.push(Loss::new(
                    at.as_str(),
                    Some(format!("{sys}|{code}")),
                    format!(
                        "{}; the code was kept as it was",
                        no_mapping_reason(map, maps, &sys, &code)
                    ),
                )),
            }
        }
        _ => {}
    }
}

/// Recodes every Coding (an object with `system` and `code`) whose system the map translates.
fn recode_all(
    node: &mut Value,
    map: &ConceptMap,
    maps: &HashMap<String, ConceptMap>,
    report: bool,
    at: &mut String,
    losses: &mut Vec<Loss>,
) {
    match node {
        Value::Object(m) => {
            let system = m.get("system").and_then(Value::as_str);
            if let (Some(sys), Some(Value::String(code))) = (system, m.get("code"))
                && map.has_source_system(sys)
            {
                let sys = sys.to_owned();
                let code = code.clone();
                match first_mapping(map, maps, &sys, &code) {
                    Some(t) => {
                        if let Some(ts) = t.system {
                            m.insert("system".into(), Value::String(ts));
                        }
                        if let Some(tc) = t.code
                            && tc != code
                        {
                            m.insert("code".into(), Value::String(tc));
                            match t.display {
                                Some(d) => {
                                    m.insert("display".into(), Value::String(d));
                                }
                                None => {
                                    m.shift_remove("display");
                                }
                            }
                        }
                    }
                    None if report => losses.push(Loss::new(
                        at.as_str(),
                        Some(format!("{sys}|{code}")),
                        format!(
                            "{}; the code was kept as it was",
                            no_mapping_reason(map, maps, &sys, &code)
                        ),
                    )),
                    None => {}
                }
            }
            let mark = at.len();
            for (k, v) in m.iter_mut() {
                if v.is_object() || v.is_array() {
                    push_key(at, k);
                    recode_all(v, map, maps, report, at, losses);
                    at.truncate(mark);
                }
            }
        }
        Value::Array(items) => {
            let mark = at.len();
            for (i, item) in items.iter_mut().enumerate() {
                push_index(at, i);
                recode_all(item, map, maps, report, at, losses);
                at.truncate(mark);
            }
        }
        _ => {}
    }
}
