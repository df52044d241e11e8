//! Element paths used by the rule files, compiled once at load time, and the traversal helpers
//! that apply them to a lossless JSON tree.
//!
//! Syntax: element names separated by dots, relative to the resource (`""` is the resource
//! itself). Repeating elements are iterated implicitly, as in FHIRPath. Two refinements:
//! - `name[x]` matches a choice element whatever its type (`dose[x]` matches `doseQuantity`);
//! - `extension('URL')` (or `modifierExtension('URL')`) keeps only the extensions with that URL.
//!
//! Traversals keep the FHIRPath of the element they are on in a reusable `String`, so that a
//! loss can name the element without any allocation on the paths that lose nothing.

use serde_json::{Map, Value};

/// One step of a compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seg {
    /// Element name, or the prefix of a choice element when `choice` is set.
    pub name: String,
    /// `name[x]`: matches `name` followed by an upper-case type suffix.
    pub choice: bool,
    /// `extension('URL')`: only the array items whose `url` equals this.
    pub url: Option<String>,
}

impl Seg {
    /// Does the JSON key `key` belong to this step?
    pub fn matches(&self, key: &str) -> bool {
        if self.choice {
            key.len() > self.name.len()
                && key.starts_with(self.name.as_str())
                && key[self.name.len()..].starts_with(|c: char| c.is_ascii_uppercase())
        } else {
            key == self.name
        }
    }

    /// The type suffix of a choice key (`Quantity` for `doseQuantity`), empty otherwise.
    pub fn suffix<'k>(&self, key: &'k str) -> &'k str {
        if self.choice {
            &key[self.name.len()..]
        } else {
            ""
        }
    }

    /// The key to write for this step, given the suffix of the value being written.
    pub fn key_with(&self, suffix: &str) -> String {
        if self.choice {
            format!("{}{}", self.name, suffix)
        } else {
            self.name.clone()
        }
    }
}

/// A compiled path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Path {
    pub segs: Vec<Seg>,
    pub text: String,
}

impl Path {
    /// Compiles `text`; errors name the problem.
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut segs = Vec::new();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Path {
                segs,
                text: String::new(),
            });
        }
        let bytes = trimmed.as_bytes();
        let mut start = 0;
        let mut i = 0;
        let mut in_quote = false;
        let mut pieces = Vec::new();
        while i < bytes.len() {
            match bytes[i] {
                b'\'' => in_quote = !in_quote,
                b'.' if !in_quote => {
                    pieces.push(&trimmed[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        if in_quote {
            return Err(format!("unterminated quote in path `{text}`"));
        }
        pieces.push(&trimmed[start..]);
        for piece in pieces {
            segs.push(parse_seg(piece).map_err(|e| format!("{e} in path `{text}`"))?);
        }
        Ok(Path {
            segs,
            text: trimmed.to_owned(),
        })
    }

    pub fn is_root(&self) -> bool {
        self.segs.is_empty()
    }
}

fn parse_seg(piece: &str) -> Result<Seg, String> {
    if piece.is_empty() {
        return Err("empty step".into());
    }
    if let Some(open) = piece.find('(') {
        let name = &piece[..open];
        let rest = &piece[open..];
        let url = rest
            .strip_prefix("('")
            .and_then(|r| r.strip_suffix("')"))
            .ok_or_else(|| format!("bad filter `{piece}`"))?;
        if name != "extension" && name != "modifierExtension" {
            return Err(format!(
                "only extension('url') filters are supported, not `{piece}`"
            ));
        }
        check_name(name)?;
        return Ok(Seg {
            name: name.to_owned(),
            choice: false,
            url: Some(url.to_owned()),
        });
    }
    if let Some(name) = piece.strip_suffix("[x]") {
        check_name(name)?;
        return Ok(Seg {
            name: name.to_owned(),
            choice: true,
            url: None,
        });
    }
    check_name(piece)?;
    Ok(Seg {
        name: piece.to_owned(),
        choice: false,
        url: None,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not an element name"))
    }
}

/// Appends `.key` to a FHIRPath under construction.
pub(crate) fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Appends `[i]` to a FHIRPath under construction.
pub(crate) fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write as _;
    let _ = write!(path, "[{i}]");
}

/// Keys of `map` matching `seg`, in document order.
fn matching_keys<'s>(map: &Map<String, Value>, seg: &'s Seg) -> Keys<'s> {
    if seg.choice {
        Keys::Many(map.keys().filter(|k| seg.matches(k)).cloned().collect())
    } else if map.contains_key(seg.name.as_str()) {
        Keys::One(seg.name.as_str())
    } else {
        Keys::Many(Vec::new())
    }
}

/// Keys matched by a step, without allocating for the common case of a plain element name.
enum Keys<'s> {
    One(&'s str),
    Many(Vec<String>),
}

impl Keys<'_> {
    fn len(&self) -> usize {
        match self {
            Keys::One(_) => 1,
            Keys::Many(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        match self {
            Keys::One(k) if i == 0 => Some(k),
            Keys::One(_) => None,
            Keys::Many(v) => v.get(i).map(String::as_str),
        }
    }
}

/// Calls `f` on every node that `segs` reaches from `node`. Arrays at the end of the path are
/// visited item by item. `path` holds the FHIRPath of `node` on entry and is restored on exit.
pub(crate) fn visit_mut<F>(node: &mut Value, segs: &[Seg], path: &mut String, f: &mut F)
where
    F: FnMut(&mut Value, &mut String),
{
    let mark = path.len();
    match (segs.split_first(), node) {
        (None, Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                push_index(path, i);
                f(item, path);
                path.truncate(mark);
            }
        }
        (None, other) => f(other, path),
        (Some(_), Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                push_index(path, i);
                visit_mut(item, segs, path, f);
                path.truncate(mark);
            }
        }
        (Some((seg, rest)), Value::Object(map)) => {
            let keys = matching_keys(map, seg);
            for i in 0..keys.len() {
                let Some(key) = keys.get(i) else { continue };
                let Some(child) = map.get_mut(key) else {
                    continue;
                };
                push_key(path, key);
                if let Some(url) = &seg.url {
                    if let Value::Array(items) = child {
                        let inner = path.len();
                        for (i, item) in items.iter_mut().enumerate() {
                            if item.get("url").and_then(Value::as_str) == Some(url.as_str()) {
                                push_index(path, i);
                                visit_mut(item, rest, path, f);
                                path.truncate(inner);
                            }
                        }
                    }
                } else {
                    visit_mut(child, rest, path, f);
                }
                path.truncate(mark);
            }
        }
        (Some(_), _) => {}
    }
}

/// Calls `f` on every object that holds the last step of `segs` (the parents), with the FHIRPath
/// of that object. `segs` must not be empty.
pub(crate) fn visit_parents_mut<F>(node: &mut Value, segs: &[Seg], path: &mut String, f: &mut F)
where
    F: FnMut(&mut Map<String, Value>, &Seg, &mut String),
{
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    visit_mut(node, parents, path, &mut |parent, p| {
        if let Value::Object(map) = parent {
            f(map, last, p);
        }
    });
}

/// Removes every value that `segs` reaches (honouring `extension('url')` filters), and returns
/// each with its FHIRPath and choice-type suffix. Empty arrays and objects left behind are removed.
pub(crate) fn take_all(
    node: &mut Value,
    segs: &[Seg],
    path: &mut String,
) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    if segs.is_empty() {
        return out;
    }
    visit_parents_mut(node, segs, path, &mut |map, last, p| {
        let keys = matching_keys(map, last);
        for k in 0..keys.len() {
            let Some(key) = keys.get(k) else { continue };
            let mark = p.len();
            push_key(p, key);
            if let Some(url) = &last.url {
                if let Some(Value::Array(items)) = map.get_mut(key) {
                    let mut i = 0;
                    let mut shown = 0;
                    while i < items.len() {
                        if items[i].get("url").and_then(Value::as_str) == Some(url.as_str()) {
                            let inner = p.len();
                            push_index(p, shown);
                            out.push((p.clone(), String::new(), items.remove(i)));
                            p.truncate(inner);
                        } else {
                            i += 1;
                        }
                        shown += 1;
                    }
                    if items.is_empty() {
                        map.shift_remove(key);
                    }
                }
            } else if let Some(v) = map.shift_remove(key) {
                let suffix = last.suffix(key).to_owned();
                out.push((p.clone(), suffix, v));
                let ext = format!("_{key}");
                map.shift_remove(ext.as_str());
            }
            p.truncate(mark);
        }
    });
    prune_along(node, &segs[..segs.len() - 1]);
    out
}

/// Removes the empty objects and arrays left along `segs` below `node` (not elsewhere).
pub(crate) fn prune_along(node: &mut Value, segs: &[Seg]) {
    let Some((seg, rest)) = segs.split_first() else {
        return;
    };
    match node {
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune_along(item, segs);
            }
            items.retain(|i| !is_empty(i));
        }
        Value::Object(map) => {
            let keys = matching_keys(map, seg);
            for k in 0..keys.len() {
                let Some(key) = keys.get(k) else { continue };
                let now_empty = match map.get_mut(key) {
                    Some(child) => {
                        prune_along(child, rest);
                        if let Value::Array(items) = child {
                            items.retain(|i| !is_empty(i));
                        }
                        is_empty(child)
                    }
                    None => false,
                };
                if now_empty {
                    map.shift_remove(key);
                }
            }
        }
        _ => {}
    }
}

/// Writes `value` at `segs` below `node`, creating objects on the way; an existing array on the
/// way is entered at its first item (created if the array is empty). Returns what was there.
pub(crate) fn set_at(node: &mut Value, segs: &[Seg], suffix: &str, value: Value) -> Option<Value> {
    let Some((last, parents)) = segs.split_last() else {
        return Some(std::mem::replace(node, value));
    };
    let mut cur = node;
    for seg in parents {
        cur = descend_or_create(cur, seg)?;
    }
    if let Value::Array(items) = cur {
        if items.is_empty() {
            items.push(Value::Object(Map::new()));
        }
        cur = items.first_mut()?;
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    let map = cur.as_object_mut()?;
    if last.choice {
        // A choice element holds one type at a time: replace whichever is there.
        let old_keys: Vec<String> = map.keys().filter(|k| last.matches(k)).cloned().collect();
        let mut old = None;
        for k in old_keys {
            old = map.shift_remove(k.as_str());
        }
        map.insert(last.key_with(suffix), value);
        old
    } else {
        map.insert(last.name.clone(), value)
    }
}

fn descend_or_create<'a>(cur: &'a mut Value, seg: &Seg) -> Option<&'a mut Value> {
    let mut cur = cur;
    if let Value::Array(items) = cur {
        if items.is_empty() {
            items.push(Value::Object(Map::new()));
        }
        cur = items.first_mut()?;
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    let map = cur.as_object_mut()?;
    let key = if seg.choice {
        map.keys()
            .find(|k| seg.matches(k))
            .cloned()
            .unwrap_or_else(|| seg.name.clone())
    } else {
        seg.name.clone()
    };
    Some(map.entry(key).or_insert_with(|| Value::Object(Map::new())))
}

/// The first value at `segs` below `node` (arrays on the way are searched in order; a repeating
/// element at the end gives its first item).
pub(crate) fn first_at<'a>(node: &'a Value, segs: &[Seg]) -> Option<&'a Value> {
    match (segs.split_first(), node) {
        (None, Value::Null) => None,
        (None, Value::Array(items)) => items.first(),
        (None, v) => Some(v),
        (Some(_), Value::Array(items)) => items.iter().find_map(|i| first_at(i, segs)),
        (Some((seg, rest)), Value::Object(map)) => map
            .iter()
            .filter(|(k, _)| seg.matches(k))
            .find_map(|(_, v)| match &seg.url {
                Some(url) => v.as_array().and_then(|items| {
                    items
                        .iter()
                        .filter(|i| i.get("url").and_then(Value::as_str) == Some(url.as_str()))
                        .find_map(|i| first_at(i, rest))
                }),
                None => first_at(v, rest),
            }),
        (Some(_), _) => None,
    }
}

/// Is there anything at `segs` below `node`?
pub(crate) fn exists(node: &Value, segs: &[Seg]) -> bool {
    match (segs.split_first(), node) {
        (None, Value::Null) => false,
        (None, _) => true,
        (Some(_), Value::Array(items)) => items.iter().any(|i| exists(i, segs)),
        (Some((seg, rest)), Value::Object(map)) => map.iter().any(|(k, v)| {
            if !seg.matches(k) {
                return false;
            }
            match &seg.url {
                Some(url) => v.as_array().is_some_and(|items| {
                    items.iter().any(|i| {
                        i.get("url").and_then(Value::as_str) == Some(url.as_str())
                            && exists(i, rest)
                    })
                }),
                None => exists(v, rest),
            }
        }),
        (Some(_), _) => false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_with_a_choice_and_an_extension_filter_compiles() {
        let p = Path::parse("extension('https://x.org/a.b').value[x]").unwrap();
        assert_eq!(p.segs.len(), 2);
        assert_eq!(p.segs[0].url.as_deref(), Some("https://x.org/a.b"));
        assert!(p.segs[1].choice);
        assert!(p.segs[1].matches("valueString"));
        assert!(!p.segs[1].matches("value"));
        assert!(!p.segs[1].matches("valueless"));
    }

    #[test]
    fn a_bad_step_is_refused() {
        assert!(Path::parse("a..b").is_err());
        assert!(Path::parse("a.where(x)").is_err());
    }

    #[test]
    fn visiting_iterates_arrays_and_names_each_element() {
        let mut v = json!({"a": [{"b": 1}, {"b": 2}]});
        let p = Path::parse("a.b").unwrap();
        let mut seen = Vec::new();
        let mut path = String::from("R");
        visit_mut(&mut v, &p.segs, &mut path, &mut |n, p| {
            seen.push((p.clone(), n.clone()));
        });
        assert_eq!(seen[0].0, "R.a[0].b");
        assert_eq!(seen[1].0, "R.a[1].b");
        assert_eq!(path, "R");
    }

    #[test]
    fn taking_a_choice_keeps_its_type_suffix() {
        let mut v = json!({"d": [{"doseQuantity": {"value": 1}, "_doseQuantity": {"id": "x"}}]});
        let p = Path::parse("d.dose[x]").unwrap();
        let mut path = String::new();
        let taken = take_all(&mut v, &p.segs, &mut path);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, "d[0].doseQuantity");
        assert_eq!(taken[0].1, "Quantity");
        assert_eq!(v, json!({}));
    }

    #[test]
    fn setting_creates_the_objects_on_the_way() {
        let mut v = json!({});
        let p = Path::parse("requester.agent").unwrap();
        set_at(&mut v, &p.segs, "", json!({"reference": "Practitioner/1"}));
        assert_eq!(
            v,
            json!({"requester": {"agent": {"reference": "Practitioner/1"}}})
        );
    }
}
