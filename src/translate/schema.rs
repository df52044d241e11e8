//! Element-type tables of a FHIR version (`mappings/fhir-types/*.json`, generated from the typed
//! models the gateway checks with) and the `conform` pass that makes a translated resource fit
//! them: elements the version does not have are removed, single values and lists are put in the
//! shape the version wants, primitives are checked (and repaired where that loses nothing, such
//! as a number written as a string), closed code lists are enforced, and an element that lacks a
//! required child is removed. Everything removed is reported as a loss.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::Loss;
use super::path::{push_index, push_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Code(Option<usize>),
    Decimal,
    Integer,
    UnsignedInt,
    PositiveInt,
    Boolean,
    Date,
    DateTime,
    Instant,
    Time,
    Resource,
    Complex(usize),
}

#[derive(Debug, Clone)]
struct Element {
    kind: Kind,
    many: bool,
    choice: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct TypeDef {
    name: String,
    resource: bool,
    elements: HashMap<String, Element>,
    /// Required non-choice elements.
    required: Vec<String>,
    /// Choice groups: name and whether one member is required.
    choices: Vec<(String, bool)>,
}

/// The element-type table of one FHIR version.
#[derive(Debug, Clone)]
pub(crate) struct TypeTable {
    pub label: String,
    types: Vec<TypeDef>,
    index: HashMap<String, usize>,
    codes: Vec<(String, HashSet<String>)>,
}

#[derive(Deserialize)]
struct RawTable {
    #[serde(rename = "fhirVersion")]
    fhir_version: String,
    types: HashMap<String, RawType>,
    codes: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawType {
    #[serde(default)]
    resource: bool,
    /// In the generated file's order (serde_json's map preserves it).
    elements: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawElement {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    codes: Option<String>,
    #[serde(default)]
    max: Option<String>,
    #[serde(default)]
    min: Option<u32>,
    #[serde(default)]
    choice: Option<String>,
}

impl TypeTable {
    /// Reads a generated table.
    pub fn from_json(label: &str, bytes: &[u8]) -> anyhow::Result<TypeTable> {
        let raw: RawTable = serde_json::from_slice(bytes)?;
        let mut names: Vec<&String> = raw.types.keys().collect();
        names.sort();
        let index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).clone(), i))
            .collect();
        let mut code_names: Vec<&String> = raw.codes.keys().collect();
        code_names.sort();
        let code_index: HashMap<&str, usize> = code_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let codes = code_names
            .iter()
            .map(|n| {
                let set = raw.codes[*n].iter().cloned().collect::<HashSet<_>>();
                ((*n).clone(), set)
            })
            .collect();
        let mut types = Vec::with_capacity(names.len());
        for name in &names {
            let rt = &raw.types[*name];
            let mut def = TypeDef {
                name: (*name).clone(),
                resource: rt.resource,
                ..TypeDef::default()
            };
            for (el, spec) in &rt.elements {
                let spec: RawElement = serde_json::from_value(spec.clone())
                    .map_err(|e| anyhow::anyhow!("{label}: {name}.{el}: {e}"))?;
                let kind = match spec.ty.as_str() {
                    "string" | "base64Binary" => Kind::String,
                    "code" => Kind::Code(match &spec.codes {
                        Some(c) => Some(*code_index.get(c.as_str()).ok_or_else(|| {
                            anyhow::anyhow!("{label}: {name}.{el}: unknown code list {c}")
                        })?),
                        None => None,
                    }),
                    "decimal" => Kind::Decimal,
                    "integer" => Kind::Integer,
                    "unsignedInt" => Kind::UnsignedInt,
                    "positiveInt" => Kind::PositiveInt,
                    "boolean" => Kind::Boolean,
                    "date" => Kind::Date,
                    "dateTime" => Kind::DateTime,
                    "instant" => Kind::Instant,
                    "time" => Kind::Time,
                    "Resource" => Kind::Resource,
                    other => Kind::Complex(*index.get(other).ok_or_else(|| {
                        anyhow::anyhow!("{label}: {name}.{el}: unknown type {other}")
                    })?),
                };
                let required = spec.min.unwrap_or(0) >= 1;
                let choice = match &spec.choice {
                    Some(group) => {
                        let pos = match def.choices.iter().position(|(g, _)| g == group) {
                            Some(p) => p,
                            None => {
                                def.choices.push((group.clone(), false));
                                def.choices.len() - 1
                            }
                        };
                        if required {
                            def.choices[pos].1 = true;
                        }
                        Some(pos)
                    }
                    None => {
                        if required {
                            def.required.push(el.clone());
                        }
                        None
                    }
                };
                def.elements.insert(
                    el.clone(),
                    Element {
                        kind,
                        many: spec.max.as_deref() == Some("*"),
                        choice,
                    },
                );
            }
            types.push(def);
        }
        Ok(TypeTable {
            label: format!("FHIR {} ({label})", raw.fhir_version),
            types,
            index,
            codes,
        })
    }

    /// Makes `resource` fit this version. Returns false when the resource itself cannot be
    /// represented (a required element is missing); losses say why.
    pub fn conform_resource(
        &self,
        resource: &mut Value,
        path: &mut String,
        losses: &mut Vec<Loss>,
    ) -> bool {
        let Some(rt) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            losses.push(Loss::new(
                path.as_str(),
                None,
                "a resource without resourceType cannot be represented",
            ));
            return false;
        };
        let Some(&idx) = self
            .index
            .get(rt.as_str())
            .filter(|i| self.types[**i].resource)
        else {
            losses.push(Loss::new(
                path.as_str(),
                None,
                format!(
                    "{} has no {rt} resource in the translator's type table",
                    self.label
                ),
            ));
            return false;
        };
        let Value::Object(map) = resource else {
            return false;
        };
        match self.conform_object(map, idx, path, losses) {
            Ok(()) => true,
            Err(missing) => {
                losses.push(Loss::new(
                    path.as_str(),
                    None,
                    format!(
                        "{rt} cannot be represented in {}: required element `{missing}` is missing",
                        self.label
                    ),
                ));
                false
            }
        }
    }

    fn conform_object(
        &self,
        map: &mut Map<String, Value>,
        idx: usize,
        path: &mut String,
        losses: &mut Vec<Loss>,
    ) -> Result<(), String> {
        let def = &self.types[idx];
        let mut remove: Vec<String> = Vec::new();
        let mut seen_choices: Vec<usize> = Vec::new();
        let mut only_nulls: Vec<String> = Vec::new();
        let mark = path.len();
        for (key, value) in map.iter_mut() {
            if key == "resourceType" && def.resource {
                continue;
            }
            if let Some(base) = key.strip_prefix('_') {
                // Extensions and ids of primitives: kept with their primitive.
                let ok = def
                    .elements
                    .get(base)
                    .is_some_and(|e| !matches!(e.kind, Kind::Complex(_) | Kind::Resource))
                    && (value.is_object() || value.is_array());
                if !ok {
                    remove.push(key.clone());
                }
                continue;
            }
            push_key(path, key);
            match def.elements.get(key.as_str()) {
                None => {
                    losses.push(Loss::new(
                        path.as_str(),
                        None,
                        format!("{} {} has no element `{key}`", self.label, def.name),
                    ));
                    remove.push(key.clone());
                }
                Some(el) => {
                    let mut keep = true;
                    if let Some(c) = el.choice {
                        if seen_choices.contains(&c) {
                            losses.push(Loss::new(
                                path.as_str(),
                                None,
                                format!(
                                    "only one type of {}[x] can be given; `{key}` was dropped",
                                    def.choices[c].0
                                ),
                            ));
                            keep = false;
                        } else {
                            seen_choices.push(c);
                        }
                    }
                    if keep {
                        keep = self.conform_value(value, el, path, losses);
                    }
                    if !keep {
                        remove.push(key.clone());
                    } else if value
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_null))
                    {
                        only_nulls.push(key.clone());
                    }
                }
            }
            path.truncate(mark);
        }
        for key in only_nulls {
            let beside = map
                .get(format!("_{key}").as_str())
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| !v.is_null()));
            if !beside {
                remove.push(key);
            }
        }
        for key in &remove {
            map.shift_remove(key.as_str());
            if !key.starts_with('_') {
                let ext = format!("_{key}");
                map.shift_remove(ext.as_str());
            }
        }
        for req in &def.required {
            if !map.contains_key(req.as_str()) {
                return Err(req.clone());
            }
        }
        for (i, (group, required)) in def.choices.iter().enumerate() {
            if *required && !seen_choices.contains(&i) {
                return Err(format!("{group}[x]"));
            }
        }
        Ok(())
    }

    /// Returns false when the element must be removed (losses already recorded).
    fn conform_value(
        &self,
        value: &mut Value,
        el: &Element,
        path: &mut String,
        losses: &mut Vec<Loss>,
    ) -> bool {
        if el.many {
            if !value.is_array() {
                let single = std::mem::take(value);
                *value = Value::Array(vec![single]);
            }
            let Value::Array(items) = value else {
                return false;
            };
            let mark = path.len();
            let mut i = 0;
            let mut shown = 0;
            while i < items.len() {
                push_index(path, shown);
                let keep = if items[i].is_null()
                    && !matches!(el.kind, Kind::Complex(_) | Kind::Resource)
                {
                    true
                } else {
                    self.conform_item(&mut items[i], el.kind, path, losses)
                };
                path.truncate(mark);
                if keep {
                    i += 1;
                } else {
                    items.remove(i);
                }
                shown += 1;
            }
            // A list of nulls stands only beside its `_name` (primitives known by their
            // extensions alone): `conform_object` checks that.
            !items.is_empty()
        } else {
            if let Value::Array(items) = value {
                if items.is_empty() {
                    return false;
                }
                let mark = path.len();
                for (i, extra) in items.iter().enumerate().skip(1) {
                    push_index(path, i);
                    losses.push(Loss::new(
                        path.as_str(),
                        coding_of(extra),
                        format!(
                            "{} allows only one value here; this one was dropped",
                            self.label
                        ),
                    ));
                    path.truncate(mark);
                }
                let first = items.swap_remove(0);
                *value = first;
            }
            self.conform_item(value, el.kind, path, losses)
        }
    }

    fn conform_item(
        &self,
        value: &mut Value,
        kind: Kind,
        path: &mut String,
        losses: &mut Vec<Loss>,
    ) -> bool {
        let label = self.label.as_str();
        let bad = |losses: &mut Vec<Loss>, path: &str, what: &str, v: &Value| {
            losses.push(Loss::new(
                path,
                None,
                format!("{} is not a valid {what} in {label}; dropped", short(v)),
            ));
            false
        };
        match kind {
            Kind::String => match value {
                Value::String(_) => true,
                Value::Number(n) => {
                    *value = Value::String(n.to_string());
                    true
                }
                Value::Bool(b) => {
                    *value = Value::String(b.to_string());
                    true
                }
                other => bad(losses, path, "string", other),
            },
            Kind::Code(list) => {
                let Value::String(code) = value else {
                    return bad(losses, path, "code", value);
                };
                match list {
                    Some(i) if !self.codes[i].1.contains(code.as_str()) => {
                        losses.push(Loss::new(
                            path.as_str(),
                            Some(code.clone()),
                            format!(
                                "`{code}` is not a {} code in {}; dropped",
                                self.codes[i].0, self.label
                            ),
                        ));
                        false
                    }
                    _ => true,
                }
            }
            Kind::Decimal => match value {
                Value::Number(_) => true,
                Value::String(s) => match Number::from_str(s.trim()) {
                    Ok(n) => {
                        *value = Value::Number(n);
                        true
                    }
                    Err(_) => bad(losses, path, "decimal", value),
                },
                other => bad(losses, path, "decimal", other),
            },
            Kind::Integer | Kind::UnsignedInt | Kind::PositiveInt => {
                let parsed = match value {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                let ok = parsed.filter(|n| match kind {
                    Kind::Integer => i32::try_from(*n).is_ok(),
                    Kind::UnsignedInt => u32::try_from(*n).is_ok(),
                    _ => *n >= 1 && u32::try_from(*n).is_ok(),
                });
                match ok {
                    Some(n) => {
                        if !value.is_number() {
                            *value = Value::Number(Number::from(n));
                        }
                        true
                    }
                    None => bad(losses, path, "integer", value),
                }
            }
            Kind::Boolean => match value {
                Value::Bool(_) => true,
                Value::String(s) if s == "true" || s == "false" => {
                    *value = Value::Bool(s == "true");
                    true
                }
                other => bad(losses, path, "boolean", other),
            },
            Kind::Date => match value.as_str() {
                Some(s) if valid_date(s) => true,
                _ => bad(losses, path, "date", value),
            },
            Kind::DateTime => match value.as_str() {
                Some(s) if valid_date_time(s) => true,
                Some(s) => {
                    // A dateTime with a time but no offset: keep the date, which is certain.
                    if let Some((date, _)) = s.split_once('T')
                        && date.len() == 10
                        && valid_date(date)
                    {
                        losses.push(Loss::new(
                            path.as_str(),
                            None,
                            format!(
                                "`{s}` is not a valid dateTime (a time needs a time-zone offset); only the date {date} was kept"
                            ),
                        ));
                        *value = Value::String(date.to_owned());
                        true
                    } else {
                        bad(losses, path, "dateTime", value)
                    }
                }
                None => bad(losses, path, "dateTime", value),
            },
            Kind::Instant => match value.as_str() {
                Some(s) if valid_instant(s) => true,
                _ => bad(losses, path, "instant", value),
            },
            Kind::Time => match value.as_str() {
                Some(s) if valid_time(s) => true,
                _ => bad(losses, path, "time", value),
            },
            Kind::Resource => {
                if !value.is_object() {
                    return bad(losses, path, "resource", value);
                }
                self.conform_resource(value, path, losses)
            }
            Kind::Complex(idx) => {
                let Value::Object(map) = value else {
                    return bad(losses, path, &self.types[idx].name, value);
                };
                match self.conform_object(map, idx, path, losses) {
                    Ok(()) => !map.is_empty(),
                    Err(missing) => {
                        losses.push(Loss::new(
                            path.as_str(),
                            coding_of(value),
                            format!(
                                "this {} lacks the required `{missing}` in {}; dropped",
                                self.types[idx].name, self.label
                            ),
                        ));
                        false
                    }
                }
            }
        }
    }
}

/// `system|code` of a Coding-like value, for the loss report.
fn coding_of(v: &Value) -> Option<String> {
    let code = v.get("code").and_then(Value::as_str)?;
    Some(match v.get("system").and_then(Value::as_str) {
        Some(s) => format!("{s}|{code}"),
        None => code.to_owned(),
    })
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");
const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[hour]:[minute]:[second]");
const TIME_FORMAT_SUBSEC: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[hour]:[minute]:[second].[subsecond]");

/// The date forms the typed model accepts: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`.
pub(crate) fn valid_date(s: &str) -> bool {
    match s.split('-').count() {
        1 => s.len() == 4 && s.parse::<i32>().is_ok(),
        2 => s.split_once('-').is_some_and(|(y, m)| {
            y.len() == 4
                && y.parse::<i32>().is_ok()
                && m.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
        }),
        3 => time::Date::parse(s, DATE_FORMAT).is_ok(),
        _ => false,
    }
}

pub(crate) fn valid_instant(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

pub(crate) fn valid_date_time(s: &str) -> bool {
    if s.contains('T') {
        valid_instant(s)
    } else {
        valid_date(s)
    }
}

fn valid_time(s: &str) -> bool {
    time::Time::parse(s, TIME_FORMAT).is_ok() || time::Time::parse(s, TIME_FORMAT_SUBSEC).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> TypeTable {
        let raw = json!({
            "fhirVersion": "9.9.9",
            "types": {
                "Thing": {"resource": true, "elements": {
                    "id": {"type": "string"},
                    "status": {"type": "code", "codes": "Status", "min": 1},
                    "when": {"type": "dateTime"},
                    "count": {"type": "integer"},
                    "size": {"type": "decimal"},
                    "tag": {"type": "Coding", "max": "*"},
                    "main": {"type": "Coding"},
                    "valueString": {"type": "string", "choice": "value"},
                    "valueBoolean": {"type": "boolean", "choice": "value"}
                }},
                "Coding": {"elements": {"system": {"type": "string"}, "code": {"type": "string"}}}
            },
            "codes": {"Status": ["active", "done"]}
        });
        TypeTable::from_json("test", raw.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn elements_the_version_lacks_are_dropped_and_reported() {
        let mut r = json!({"resourceType": "Thing", "status": "active", "colour": "red"});
        let mut losses = Vec::new();
        assert!(table().conform_resource(&mut r, &mut "Thing".to_string(), &mut losses));
        assert_eq!(r, json!({"resourceType": "Thing", "status": "active"}));
        assert_eq!(losses[0].path, "Thing.colour");
    }

    #[test]
    fn shapes_and_primitives_are_repaired_without_loss_of_meaning() {
        let mut r = json!({
            "resourceType": "Thing", "status": "done", "count": "28", "size": "2.50",
            "tag": {"code": "a"}, "main": [{"code": "b"}, {"code": "c"}],
            "when": "2018-09-28T10:30:00"
        });
        let mut losses = Vec::new();
        assert!(table().conform_resource(&mut r, &mut "Thing".to_string(), &mut losses));
        assert_eq!(r["count"], json!(28));
        assert_eq!(serde_json::to_string(&r["size"]).unwrap(), "2.50");
        assert_eq!(r["tag"], json!([{"code": "a"}]));
        assert_eq!(r["main"], json!({"code": "b"}));
        assert_eq!(r["when"], json!("2018-09-28"));
        assert_eq!(losses.len(), 2, "{losses:?}");
    }

    #[test]
    fn a_missing_required_element_drops_the_resource() {
        let mut r = json!({"resourceType": "Thing", "status": "gone"});
        let mut losses = Vec::new();
        assert!(!table().conform_resource(&mut r, &mut "Thing".to_string(), &mut losses));
        assert!(
            losses
                .iter()
                .any(|l| l.reason.contains("required element `status`"))
        );
    }

    #[test]
    fn two_types_of_one_choice_keep_the_first() {
        let mut r = json!({"resourceType": "Thing", "status": "done", "valueString": "x", "valueBoolean": true});
        let mut losses = Vec::new();
        assert!(table().conform_resource(&mut r, &mut "Thing".to_string(), &mut losses));
        assert!(r.get("valueBoolean").is_none());
    }

    #[test]
    fn date_forms_follow_the_typed_model() {
        assert!(valid_date("2019"));
        assert!(valid_date("2019-05"));
        assert!(valid_date("2019-05-02"));
        assert!(!valid_date("2019-13"));
        assert!(valid_date_time("2016-07-25T12:00:00.000+00:00"));
        assert!(!valid_date_time("2018-09-28T10:30:00"));
        assert!(valid_time("14:00:00"));
    }
}
