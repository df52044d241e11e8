//! Applies compiled operations to one resource. Each operation reports what it could not carry
//! as a `Loss` whose path is the FHIRPath of the element in the source document.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Loss;
use super::conceptmap::{ConceptMap, TranslateMatch};
use super::path::{self, Path, Seg, push_index, push_key};
use super::rules::{ExtensionRename, Op, RecodeMode, Unmapped, ValueRename};

/// What operations need besides the resource: the ConceptMaps and the loss report.
pub(crate) struct Cx<'a> {
    pub maps: &'a HashMap<String, ConceptMap>,
    pub losses: &'a mut Vec<Loss>,
}

impl Cx<'_> {
    fn loss(&mut self, path: &str, code: Option<String>, reason: impl Into<String>) {
        self.losses.push(Loss::new(path, code, reason));
    }
}

/// Applies `op` to `resource`, whose FHIRPath in the source document is `origin`.
/// `p` is a reusable buffer for the FHIRPath under construction.
pub(crate) fn apply(op: &Op, resource: &mut Value, origin: &str, p: &mut String, cx: &mut Cx<'_>) {
    p.clear();
    p.push_str(origin);
    match op {
        Op::When {
            path,
            equals,
            negate,
            op,
        } => {
            let found = !path.segs.is_empty() && any_equals(resource, &path.segs, equals);
            if found != *negate {
                apply(op, resource, origin, p, cx);
            }
        }
        Op::Remove {
            path,
            reason,
            report,
        } => {
            if path.is_root() {
                return;
            }
            for (at, _, v) in path::take_all(resource, &path.segs, p) {
                if *report {
                    let why = reason.clone().unwrap_or_else(|| {
                        format!("`{}` is not carried by this mapping", path.text)
                    });
                    cx.loss(&at, coding_of(&v), why);
                }
            }
        }
        Op::Keep {
            path,
            elements,
            reason,
        } => {
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
                                .clone()
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
        Op::Recode {
            path,
            concept_map,
            unmapped,
            mode,
            system,
        } => {
            let Some(map) = cx.maps.get(concept_map) else {
                return;
            };
            let maps = cx.maps;
            let mut losses = Vec::new();
            path::visit_mut(resource, &path.segs, p, &mut |node, at| {
                recode_node(
                    node,
                    at,
                    map,
                    maps,
                    *unmapped,
                    *mode,
                    system.as_deref(),
                    &mut losses,
                );
            });
            cx.losses.extend(losses);
        }
        Op::Map {
            path,
            values,
            lossy,
            reason,
        } => {
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
                    let why = reason.clone().unwrap_or_else(|| {
                        format!("`{code}` has no exact equivalent in the target")
                    });
                    cx.loss(at, Some(code), format!("{why}; `{new}` was sent instead"));
                    at.truncate(mark);
                    obj.insert(last.name.clone(), Value::String(new));
                }
            });
        }
        Op::Set {
            path,
            value,
            from,
            if_absent,
            when,
        } => {
            if let Some((wpath, equals)) = when {
                let found = if wpath.segs.is_empty() {
                    false
                } else {
                    any_equals(resource, &wpath.segs, equals)
                };
                if !found {
                    return;
                }
            }
            if *if_absent && path::exists(resource, &path.segs) {
                return;
            }
            let value = match from {
                Some(from) => match path::first_at(resource, &from.segs) {
                    Some(v) => v.clone(),
                    None => return,
                },
                None => {
                    if mentions_id(value) && resource.get("id").and_then(Value::as_str).is_none() {
                        return;
                    }
                    fill_template(value, resource)
                }
            };
            path::set_at(resource, &path.segs, "", value);
        }
        Op::Profile { urls } => {
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
        Op::Move {
            from,
            to,
            prefix,
            reason,
        } => {
            let ctx = &from.segs[..*prefix];
            let from_rest = &from.segs[*prefix..];
            let to_rest = &to.segs[*prefix..];
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
                        reason.clone().unwrap_or_else(|| {
                            format!("only one value can be carried to `{}`", to.text)
                        }),
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
        Op::ToCode { path, system } => {
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
                    .position(|c| {
                        system.is_none()
                            || c.get("system").and_then(Value::as_str) == system.as_deref()
                    })
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
        Op::ToCodeableConcept { path, system } => {
            let Some((last, parents)) = path.segs.split_last() else {
                return;
            };
            path::visit_mut(resource, parents, p, &mut |node, _| {
                let Value::Object(obj) = node else { return };
                let Some(Value::String(code)) = obj.get(last.name.as_str()) else {
                    return;
                };
                let mut coding = Map::new();
                coding.insert("system".into(), Value::String(system.clone()));
                coding.insert("code".into(), Value::String(code.clone()));
                let mut cc = Map::new();
                cc.insert("coding".into(), Value::Array(vec![Value::Object(coding)]));
                obj.insert(last.name.clone(), Value::Object(cc));
                let ext = format!("_{}", last.name);
                obj.shift_remove(ext.as_str());
            });
        }
        Op::Wrap { path, key } => {
            path::visit_mut(resource, &path.segs, p, &mut |node, _| {
                if node.is_null() {
                    return;
                }
                let inner = std::mem::take(node);
                let mut m = Map::new();
                m.insert(key.clone(), inner);
                *node = Value::Object(m);
            });
        }
        Op::Unwrap { path, key } => {
            path::visit_mut(resource, &path.segs, p, &mut |node, at| {
                let Value::Object(m) = node else { return };
                let Some(inner) = m.shift_remove(key.as_str()) else {
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
        Op::ToExtension {
            path,
            url,
            value_type,
        } => {
            let taken = path::take_all(resource, &path.segs, p);
            let Value::Object(obj) = resource else { return };
            for (_, _, v) in taken {
                let mut ext = Map::new();
                ext.insert("url".into(), Value::String(url.clone()));
                ext.insert(format!("value{value_type}"), v);
                push_array(obj, "extension", Value::Object(ext));
            }
        }
        Op::FromExtension { url, sub, to } => {
            let Value::Object(obj) = resource else { return };
            let Some(Value::Array(exts)) = obj.get_mut("extension") else {
                return;
            };
            let mut found: Vec<(String, Value)> = Vec::new();
            let mut i = 0;
            while i < exts.len() {
                if exts[i].get("url").and_then(Value::as_str) != Some(url.as_str()) {
                    i += 1;
                    continue;
                }
                match sub {
                    None => {
                        if let Some(v) = take_value_x(&mut exts[i]) {
                            found.push(v);
                        }
                        if exts[i].get("extension").is_none() {
                            exts.remove(i);
                            continue;
                        }
                    }
                    Some(sub_url) => {
                        if let Some(Value::Array(subs)) = exts[i].get_mut("extension") {
                            let mut j = 0;
                            while j < subs.len() {
                                if subs[j].get("url").and_then(Value::as_str)
                                    == Some(sub_url.as_str())
                                {
                                    if let Some(v) = take_value_x(&mut subs[j]) {
                                        found.push(v);
                                    }
                                    subs.remove(j);
                                } else {
                                    j += 1;
                                }
                            }
                            if subs.is_empty() {
                                exts.remove(i);
                                continue;
                            }
                        }
                    }
                }
                i += 1;
            }
            if exts.is_empty() {
                obj.shift_remove("extension");
            }
            let mut found = found.into_iter();
            if let Some((suffix, v)) = found.next() {
                path::set_at(resource, &to.segs, &suffix, v);
            }
            for (_, extra) in found {
                cx.loss(
                    &format!("{origin}.extension"),
                    coding_of(&extra),
                    format!("only one `{url}` value can be carried to `{}`", to.text),
                );
            }
        }
        Op::RenameExtensions { renames } => {
            rename_extensions(resource, renames);
            for r in renames.values() {
                if let Some(at_path) = &r.at {
                    move_extension_to(resource, &r.to, at_path);
                }
            }
        }
        Op::RecodeEverywhere {
            concept_map,
            report,
        } => {
            let Some(map) = cx.maps.get(concept_map) else {
                return;
            };
            let maps = cx.maps;
            let mut losses = Vec::new();
            recode_everywhere(resource, map, maps, *report, p, &mut losses);
            cx.losses.extend(losses);
        }
        Op::AddExtension {
            url,
            value,
            if_absent,
        } => {
            let Value::Object(obj) = resource else { return };
            let present = obj
                .get("extension")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|e| e.get("url").and_then(Value::as_str) == Some(url))
                });
            if *if_absent && present {
                return;
            }
            let mut ext = Map::new();
            ext.insert("url".into(), Value::String(url.clone()));
            for (k, v) in value {
                ext.insert(k.clone(), v.clone());
            }
            push_array(obj, "extension", Value::Object(ext));
        }
        Op::KeepExtensions { prefixes, reason } => {
            let mut losses = Vec::new();
            keep_extensions(resource, prefixes, reason.as_deref(), p, &mut losses);
            cx.losses.extend(losses);
        }
    }
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

fn push_array(obj: &mut Map<String, Value>, key: &str, v: Value) {
    match obj.get_mut(key) {
        Some(Value::Array(items)) => items.push(v),
        _ => {
            obj.insert(key.to_owned(), Value::Array(vec![v]));
        }
    }
}

/// Removes and returns the `value[x]` of an extension: (type suffix, value).
fn take_value_x(ext: &mut Value) -> Option<(String, Value)> {
    let Value::Object(m) = ext else { return None };
    let key = m
        .keys()
        .find(|k| {
            k.len() > 5
                && k.starts_with("value")
                && k[5..].starts_with(|c: char| c.is_ascii_uppercase())
        })
        .cloned()?;
    let v = m.shift_remove(key.as_str())?;
    Some((key[5..].to_owned(), v))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `system|code` of a Coding-like value (or of the first coding of a CodeableConcept).
pub(crate) fn coding_of(v: &Value) -> Option<String> {
    let c = if v.get("coding").is_some() {
        v.get("coding")?.as_array()?.first()?
    } else {
        v
    };
    let code = c.get("code").and_then(Value::as_str)?;
    Some(match c.get("system").and_then(Value::as_str) {
        Some(s) => format!("{s}|{code}"),
        None => code.to_owned(),
    })
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
fn recode_everywhere(
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
                    recode_everywhere(v, map, maps, report, at, losses);
                    at.truncate(mark);
                }
            }
        }
        Value::Array(items) => {
            let mark = at.len();
            for (i, item) in items.iter_mut().enumerate() {
                push_index(at, i);
                recode_everywhere(item, map, maps, report, at, losses);
                at.truncate(mark);
            }
        }
        _ => {}
    }
}

fn rename_extensions(node: &mut Value, renames: &HashMap<String, ExtensionRename>) {
    match node {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if (k == "extension" || k == "modifierExtension")
                    && let Value::Array(exts) = v
                {
                    for e in exts.iter_mut() {
                        let Some(rule) = e
                            .get("url")
                            .and_then(Value::as_str)
                            .and_then(|u| renames.get(u))
                        else {
                            continue;
                        };
                        if let Value::Object(em) = e {
                            em.insert("url".into(), Value::String(rule.to.clone()));
                        }
                        rename_value(e, &rule.values);
                        if let Some(Value::Array(subs)) = e.get_mut("extension") {
                            for s in subs.iter_mut() {
                                let new_url = s
                                    .get("url")
                                    .and_then(Value::as_str)
                                    .and_then(|u| rule.sub.get(u))
                                    .cloned();
                                if let (Some(u), Value::Object(sm)) = (new_url, &mut *s) {
                                    sm.insert("url".into(), Value::String(u));
                                }
                                rename_value(s, &rule.values);
                            }
                        }
                    }
                }
                rename_extensions(v, renames);
            }
        }
        Value::Array(items) => {
            for i in items.iter_mut() {
                rename_extensions(i, renames);
            }
        }
        _ => {}
    }
}

fn rename_value(ext: &mut Value, values: &HashMap<String, ValueRename>) {
    if values.is_empty() {
        return;
    }
    let Value::Object(m) = ext else { return };
    let Some(key) = m.keys().find(|k| values.contains_key(k.as_str())).cloned() else {
        return;
    };
    let Some(rule) = values.get(key.as_str()) else {
        return;
    };
    let Some(old) = m.shift_remove(key.as_str()) else {
        return;
    };
    let new = if let Some(wk) = &rule.wrap_key {
        let mut w = rule.with.clone();
        w.insert(wk.clone(), old);
        Value::Object(w)
    } else if let Some(uk) = &rule.unwrap_key {
        match old {
            Value::Object(mut o) => o.shift_remove(uk.as_str()).unwrap_or(Value::Null),
            other => other,
        }
    } else {
        old
    };
    if !new.is_null() {
        m.insert(rule.to.clone(), new);
    }
}

/// Moves top-level extensions with `url` onto the element at `at` (such as the UK Core
/// AllergyIntoleranceEnd extension, which sits on `clinicalStatus`).
fn move_extension_to(resource: &mut Value, url: &str, at: &Path) {
    let Value::Object(obj) = resource else { return };
    let Some(Value::Array(exts)) = obj.get_mut("extension") else {
        return;
    };
    let mut moved = Vec::new();
    let mut i = 0;
    while i < exts.len() {
        if exts[i].get("url").and_then(Value::as_str) == Some(url) {
            moved.push(exts.remove(i));
        } else {
            i += 1;
        }
    }
    if exts.is_empty() {
        obj.shift_remove("extension");
    }
    if moved.is_empty() {
        return;
    }
    let mut segs = at.segs.clone();
    segs.push(Seg {
        name: "extension".into(),
        choice: false,
        url: None,
    });
    let existing = path::take_all(resource, &segs, &mut String::new());
    let mut all: Vec<Value> = existing
        .into_iter()
        .flat_map(|(_, _, v)| match v {
            Value::Array(a) => a,
            other => vec![other],
        })
        .collect();
    all.extend(moved);
    path::set_at(resource, &segs, "", Value::Array(all));
}

fn keep_extensions(
    node: &mut Value,
    prefixes: &[String],
    reason: Option<&str>,
    at: &mut String,
    losses: &mut Vec<Loss>,
) {
    match node {
        Value::Object(m) => {
            let mark = at.len();
            for (k, v) in m.iter_mut() {
                push_key(at, k);
                if (k == "extension" || k == "modifierExtension")
                    && let Value::Array(exts) = v
                {
                    let inner = at.len();
                    let mut i = 0;
                    let mut shown = 0;
                    while i < exts.len() {
                        let url = exts[i].get("url").and_then(Value::as_str).unwrap_or("");
                        // A sub-extension is named, not a URL: its parent decides.
                        let local = !url.is_empty() && !url.contains(':');
                        if local || prefixes.iter().any(|p| url.starts_with(p.as_str())) {
                            push_index(at, shown);
                            keep_extensions(&mut exts[i], prefixes, reason, at, losses);
                            at.truncate(inner);
                            i += 1;
                        } else {
                            push_index(at, shown);
                            losses.push(Loss::new(
                                at.as_str(),
                                None,
                                match reason {
                                    Some(r) => format!("{r} ({url})"),
                                    None => {
                                        format!("extension {url} has no equivalent in the target")
                                    }
                                },
                            ));
                            at.truncate(inner);
                            exts.remove(i);
                        }
                        shown += 1;
                    }
                } else {
                    keep_extensions(v, prefixes, reason, at, losses);
                }
                at.truncate(mark);
            }
            m.retain(|k, v| {
                !((k == "extension" || k == "modifierExtension")
                    && v.as_array().is_some_and(Vec::is_empty))
            });
        }
        Value::Array(items) => {
            let mark = at.len();
            for (i, item) in items.iter_mut().enumerate() {
                push_index(at, i);
                keep_extensions(item, prefixes, reason, at, losses);
                at.truncate(mark);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::rules::RecodeMode;
    use serde_json::json;

    fn maps() -> HashMap<String, ConceptMap> {
        let cm = json!({"resourceType": "ConceptMap", "url": "urn:cm", "group": [{
            "source": "urn:local", "target": "http://snomed.info/sct",
            "element": [{"code": "HEPC", "target": [{"code": "128302006", "display": "Chronic hepatitis C", "equivalence": "equivalent"}]}]
        }]});
        let m = ConceptMap::from_json(&cm).unwrap();
        HashMap::from([(m.url.clone(), m)])
    }

    fn run(op: Op, mut r: Value) -> (Value, Vec<Loss>) {
        let maps = maps();
        let mut losses = Vec::new();
        let mut cx = Cx {
            maps: &maps,
            losses: &mut losses,
        };
        apply(
            &op,
            &mut r,
            "Bundle.entry[1].resource",
            &mut String::new(),
            &mut cx,
        );
        (r, losses)
    }

    #[test]
    fn recode_appends_the_mapped_code_and_reports_the_unmapped_one() {
        let r = json!({"resourceType": "Condition", "code": {"coding": [
            {"system": "urn:local", "code": "HEPC"}, {"system": "urn:local", "code": "ZZZ", "display": "Odd"}
        ]}});
        let op = Op::Recode {
            path: Path::parse("code").unwrap(),
            concept_map: "urn:cm".into(),
            unmapped: Unmapped::Keep,
            mode: RecodeMode::Append,
            system: None,
        };
        let (out, losses) = run(op, r);
        assert_eq!(out["code"]["coding"].as_array().unwrap().len(), 3);
        assert_eq!(out["code"]["coding"][2]["code"], json!("128302006"));
        assert_eq!(losses.len(), 1);
        assert_eq!(losses[0].path, "Bundle.entry[1].resource.code.coding[1]");
        assert_eq!(losses[0].code.as_deref(), Some("urn:local|ZZZ"));
    }

    #[test]
    fn recode_drop_keeps_the_display_as_text() {
        let r =
            json!({"code": {"coding": [{"system": "urn:local", "code": "ZZZ", "display": "Odd"}]}});
        let op = Op::Recode {
            path: Path::parse("code").unwrap(),
            concept_map: "urn:cm".into(),
            unmapped: Unmapped::Drop,
            mode: RecodeMode::Replace,
            system: None,
        };
        let (out, losses) = run(op, r);
        assert_eq!(out, json!({"code": {"text": "Odd"}}));
        assert_eq!(losses.len(), 1);
    }

    #[test]
    fn move_hoists_the_first_dose_and_reports_the_others() {
        let r: Value = serde_json::from_str(
            r#"{"dosageInstruction": [{"text": "t", "doseAndRate": [
                {"doseQuantity": {"value": 2.50}}, {"doseRange": {"low": {"value": 1}}}]}]}"#,
        )
        .unwrap();
        let op = Op::Move {
            from: Path::parse("dosageInstruction.doseAndRate.dose[x]").unwrap(),
            to: Path::parse("dosageInstruction.dose[x]").unwrap(),
            prefix: 1,
            reason: None,
        };
        let (out, losses) = run(op, r);
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"dosageInstruction":[{"text":"t","doseQuantity":{"value":2.50}}]}"#
        );
        assert_eq!(losses.len(), 1);
        assert_eq!(
            losses[0].path,
            "Bundle.entry[1].resource.dosageInstruction[0].doseAndRate[1].doseRange"
        );
    }

    #[test]
    fn to_code_and_back_round_trips_a_status() {
        let r = json!({"clinicalStatus": {"coding": [{"system": "urn:s", "code": "active"}]}});
        let (out, losses) = run(
            Op::ToCode {
                path: Path::parse("clinicalStatus").unwrap(),
                system: None,
            },
            r,
        );
        assert_eq!(out, json!({"clinicalStatus": "active"}));
        assert!(losses.is_empty());
        let (back, _) = run(
            Op::ToCodeableConcept {
                path: Path::parse("clinicalStatus").unwrap(),
                system: "urn:s".into(),
            },
            out,
        );
        assert_eq!(
            back,
            json!({"clinicalStatus": {"coding": [{"system": "urn:s", "code": "active"}]}})
        );
    }

    #[test]
    fn an_element_becomes_an_extension_and_back() {
        let r = json!({"encounter": {"reference": "Encounter/1"}});
        let (out, _) = run(
            Op::ToExtension {
                path: Path::parse("encounter").unwrap(),
                url: "urn:e".into(),
                value_type: "Reference".into(),
            },
            r,
        );
        assert_eq!(
            out,
            json!({"extension": [{"url": "urn:e", "valueReference": {"reference": "Encounter/1"}}]})
        );
        let (back, _) = run(
            Op::FromExtension {
                url: "urn:e".into(),
                sub: None,
                to: Path::parse("encounter").unwrap(),
            },
            out,
        );
        assert_eq!(back, json!({"encounter": {"reference": "Encounter/1"}}));
    }

    #[test]
    fn extensions_outside_the_allowed_prefixes_are_removed_and_reported() {
        let r = json!({"extension": [{"url": "https://ok/a", "valueString": "x"}, {"url": "https://no/b", "valueString": "y"}],
                       "identifier": [{"extension": [{"url": "https://no/c", "valueString": "z"}], "value": "1"}]});
        let (out, losses) = run(
            Op::KeepExtensions {
                prefixes: vec!["https://ok/".into()],
                reason: None,
            },
            r,
        );
        assert_eq!(
            out,
            json!({"extension": [{"url": "https://ok/a", "valueString": "x"}], "identifier": [{"value": "1"}]})
        );
        assert_eq!(losses.len(), 2);
        assert_eq!(
            losses[1].path,
            "Bundle.entry[1].resource.identifier[0].extension[0]"
        );
    }
}
