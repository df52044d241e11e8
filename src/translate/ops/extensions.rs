//! Extensions: `toExtension` and `fromExtension` (an element to an extension and back),
//! `renameExtension` (merged at load time into `Op::RenameExtensions`), `addExtension` and
//! `keepExtensions`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Cx, coding_of};
use crate::translate::Loss;
use crate::translate::path::{self, Path, Seg, push_index, push_key};
use crate::translate::rules::{ExtensionRename, ValueRename};

/// `toExtension`: the element(s) at `path` become top-level extensions `url` with
/// `value{value_type}`.
pub(super) fn to_extension(
    resource: &mut Value,
    path: &Path,
    url: &str,
    value_type: &str,
    p: &mut String,
) {
    let taken = path::take_all(resource, &path.segs, p);
    let Value::Object(obj) = resource else { return };
    for (_, _, v) in taken {
        let mut ext = Map::new();
        ext.insert("url".into(), Value::String(url.to_owned()));
        ext.insert(format!("value{value_type}"), v);
        push_array(obj, "extension", Value::Object(ext));
    }
}

/// `fromExtension`: the value of top-level extension `url` (or of its sub-extension `sub`)
/// goes to `to`; the extension is removed. Values after the first are reported.
pub(super) fn from_extension(
    resource: &mut Value,
    url: &str,
    sub: Option<&str>,
    to: &Path,
    origin: &str,
    cx: &mut Cx<'_>,
) {
    let Value::Object(obj) = resource else { return };
    let Some(Value::Array(exts)) = obj.get_mut("extension") else {
        return;
    };
    let mut found: Vec<(String, Value)> = Vec::new();
    let mut i = 0;
    while i < exts.len() {
        if exts[i].get("url").and_then(Value::as_str) != Some(url) {
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
                        if subs[j].get("url").and_then(Value::as_str) == Some(sub_url) {
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

/// `renameExtension` (all consecutive ones, keyed by the old URL): renames extension URLs
/// anywhere in the resource, their sub-extensions and value types; `at` moves a top-level
/// extension onto an element.
pub(super) fn rename_extensions(resource: &mut Value, renames: &HashMap<String, ExtensionRename>) {
    rename_extensions_in(resource, renames);
    for r in renames.values() {
        if let Some(at_path) = &r.at {
            move_extension_to(resource, &r.to, at_path);
        }
    }
}

/// `addExtension`: adds a top-level extension (unless one with `url` is there and `if_absent`).
pub(super) fn add_extension(
    resource: &mut Value,
    url: &str,
    value: &Map<String, Value>,
    if_absent: bool,
) -> bool {
    let Value::Object(obj) = resource else {
        return false;
    };
    let present = obj
        .get("extension")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|e| e.get("url").and_then(Value::as_str) == Some(url))
        });
    if if_absent && present {
        return false;
    }
    let mut ext = Map::new();
    ext.insert("url".into(), Value::String(url.to_owned()));
    for (k, v) in value {
        ext.insert(k.clone(), v.clone());
    }
    push_array(obj, "extension", Value::Object(ext));
    true
}

/// `keepExtensions`: removes (and reports) every extension whose URL has none of `prefixes`.
pub(super) fn keep_extensions(
    resource: &mut Value,
    prefixes: &[String],
    reason: Option<&str>,
    p: &mut String,
    cx: &mut Cx<'_>,
) {
    let mut losses = Vec::new();
    keep_extensions_in(resource, prefixes, reason, p, &mut losses);
    cx.losses.extend(losses);
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

fn rename_extensions_in(node: &mut Value, renames: &HashMap<String, ExtensionRename>) {
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
                rename_extensions_in(v, renames);
            }
        }
        Value::Array(items) => {
            for i in items.iter_mut() {
                rename_extensions_in(i, renames);
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

fn keep_extensions_in(
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
                            keep_extensions_in(&mut exts[i], prefixes, reason, at, losses);
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
                    keep_extensions_in(v, prefixes, reason, at, losses);
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
                keep_extensions_in(item, prefixes, reason, at, losses);
                at.truncate(mark);
            }
        }
        _ => {}
    }
}
