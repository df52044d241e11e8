//! Bundle-level steps: the prison Composition becomes the GP Connect structured-record Lists
//! (and back, for reception), and references and `fullUrl`s are rewritten in the style the
//! target expects.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::Loss;
use super::conceptmap::{ConceptMap, TranslateMatch};
use super::ops::coding_of;
use super::rules::{CompositionSpec, InlineSpec, ListsSpec, ReferenceStyle};

/// One resource on its way through the pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// FHIRPath of the resource in the source document (`Bundle.entry[3].resource`).
    pub origin: String,
    /// `fullUrl` of its entry in the source document.
    pub full_url: Option<String>,
    pub resource: Value,
}

impl Item {
    pub fn resource_type(&self) -> &str {
        self.resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn id(&self) -> Option<&str> {
        self.resource.get("id").and_then(Value::as_str)
    }

    /// `Type/id`, when the resource has an id.
    pub fn relative(&self) -> Option<String> {
        self.id()
            .map(|id| format!("{}/{}", self.resource_type(), id))
    }
}

/// Keys by which references find entries: `fullUrl` and `Type/id`.
#[derive(Debug, Default)]
pub(crate) struct RefIndex {
    keys: HashMap<String, usize>,
}

impl RefIndex {
    pub fn build(items: &[Item]) -> RefIndex {
        let mut keys = HashMap::with_capacity(items.len() * 2);
        for (i, it) in items.iter().enumerate() {
            if let Some(u) = &it.full_url {
                keys.entry(u.clone()).or_insert(i);
            }
            if let Some(r) = it.relative() {
                keys.entry(r).or_insert(i);
            }
        }
        RefIndex { keys }
    }

    /// The entry a reference string points at. Absolute URLs match on their last two steps.
    pub fn resolve(&self, reference: &str) -> Option<usize> {
        if let Some(i) = self.keys.get(reference) {
            return Some(*i);
        }
        if reference.contains("://") {
            let mut parts = reference.rsplitn(3, '/');
            let id = parts.next()?;
            let ty = parts.next()?;
            return self.keys.get(&format!("{ty}/{id}")).copied();
        }
        None
    }
}

/// A UUID made from `seed` (SHA-256, RFC 9562 version 8), so that translation is repeatable.
pub(crate) fn uuid_from(seed: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

fn first_match(
    map: &ConceptMap,
    maps: &HashMap<String, ConceptMap>,
    coding: &Value,
) -> Option<TranslateMatch> {
    let system = coding.get("system").and_then(Value::as_str)?;
    let code = coding.get("code").and_then(Value::as_str)?;
    map.translate(maps, Some(system), code, None, 0)
        .into_iter()
        .find(TranslateMatch::is_mapping)
}

fn coding_json(m: &TranslateMatch, fallback_display: Option<&Value>) -> Value {
    let mut c = Map::new();
    if let Some(s) = &m.system {
        c.insert("system".into(), Value::String(s.clone()));
    }
    if let Some(code) = &m.code {
        c.insert("code".into(), Value::String(code.clone()));
    }
    match (&m.display, fallback_display) {
        (Some(d), _) => {
            c.insert("display".into(), Value::String(d.clone()));
        }
        (None, Some(d)) => {
            c.insert("display".into(), d.clone());
        }
        _ => {}
    }
    Value::Object(c)
}

/// `: <comment>` when the map lists a coding of `cc` as having no equivalent.
fn comment_of(map: &ConceptMap, maps: &HashMap<String, ConceptMap>, cc: &Value) -> String {
    let codings = cc.get("coding").and_then(Value::as_array);
    for c in codings.map(Vec::as_slice).unwrap_or_default() {
        let (Some(system), Some(code)) = (
            c.get("system").and_then(Value::as_str),
            c.get("code").and_then(Value::as_str),
        ) else {
            continue;
        };
        if let Some(comment) = map
            .translate(maps, Some(system), code, None, 0)
            .into_iter()
            .find_map(|m| m.comment.filter(|_| m.code.is_none()))
        {
            return format!(": {}", comment.trim_end_matches('.'));
        }
    }
    String::new()
}

/// Translates the codings of `cc` (a CodeableConcept) through `map`; returns the new
/// CodeableConcept, or None when no coding maps.
fn translate_cc(cc: &Value, map: &ConceptMap, maps: &HashMap<String, ConceptMap>) -> Option<Value> {
    let codings = cc.get("coding")?.as_array()?;
    for c in codings {
        if let Some(m) = first_match(map, maps, c) {
            let same = m.code.as_deref() == c.get("code").and_then(Value::as_str);
            let coding = coding_json(&m, if same { c.get("display") } else { None });
            let mut out = Map::new();
            out.insert("coding".into(), Value::Array(vec![coding]));
            if let Some(t) = cc.get("text") {
                out.insert("text".into(), t.clone());
            }
            return Some(Value::Object(out));
        }
    }
    None
}

/// Composition elements the Lists carry; every other one is reported as lost.
const CARRIED_BY_LISTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "status",
    "subject",
    "date",
    "section",
    "text",
];

/// The prison Composition becomes one GP Connect List per section (sub-sections included).
pub(crate) fn composition_to_lists(
    comp_origin: &str,
    c: &Value,
    spec: &ListsSpec,
    maps: &HashMap<String, ConceptMap>,
    losses: &mut Vec<Loss>,
) -> Vec<Item> {
    let Some(map) = maps.get(&spec.concept_map) else {
        return Vec::new();
    };
    if let Value::Object(obj) = c {
        for (k, v) in obj {
            if CARRIED_BY_LISTS.contains(&k.as_str()) {
                continue;
            }
            if k == "event" {
                for (i, ev) in v
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let code = ev
                        .get("code")
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(coding_of);
                    losses.push(Loss::new(
                        &format!("{}.event[{i}]", comp_origin),
                        code,
                        "a GP Connect structured record has no document event; the custody event is not carried",
                    ));
                }
                continue;
            }
            losses.push(Loss::new(
                &format!("{}.{k}", comp_origin),
                coding_of(v),
                format!("Composition.{k} has no place in a GP Connect structured record"),
            ));
        }
    }
    let comp_id = c
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid_from(comp_origin));
    let mut out = Vec::new();
    let mut stack: Vec<(String, &Value)> = Vec::new();
    if let Some(sections) = c.get("section").and_then(Value::as_array) {
        for (i, s) in sections.iter().enumerate().rev() {
            stack.push((format!("{}.section[{i}]", comp_origin), s));
        }
    }
    while let Some((origin, section)) = stack.pop() {
        if let Some(subs) = section.get("section").and_then(Value::as_array) {
            for (i, s) in subs.iter().enumerate().rev() {
                stack.push((format!("{origin}.section[{i}]"), s));
            }
        }
        let mut list = Map::new();
        list.insert("resourceType".into(), json!("List"));
        list.insert(
            "id".into(),
            Value::String(format!("{comp_id}-list-{}", out.len() + 1)),
        );
        if let Some(p) = &spec.profile {
            list.insert("meta".into(), json!({"profile": [p]}));
        }
        list.insert("status".into(), Value::String(spec.status.clone()));
        list.insert("mode".into(), Value::String(spec.mode.clone()));
        if let Some(t) = section.get("title") {
            list.insert("title".into(), t.clone());
        }
        if let Some(code) = section.get("code") {
            match translate_cc(code, map, maps) {
                Some(cc) => {
                    list.insert("code".into(), cc);
                }
                None => {
                    losses.push(Loss::new(
                        &format!("{origin}.code"),
                        coding_of(code),
                        format!(
                            "no GP Connect list code for this section in ConceptMap {}{}{}",
                            map.url,
                            comment_of(map, maps, code),
                            if spec.unmapped == "keep" {
                                "; the section code was kept"
                            } else {
                                "; dropped"
                            }
                        ),
                    ));
                    if spec.unmapped == "keep" {
                        list.insert("code".into(), code.clone());
                    }
                }
            }
        }
        if let Some(s) = c.get("subject") {
            list.insert("subject".into(), s.clone());
        }
        if let Some(d) = c.get("date") {
            list.insert("date".into(), d.clone());
        }
        if let Some(o) = section.get("orderedBy") {
            list.insert("orderedBy".into(), o.clone());
        }
        if let Some(t) = section.get("text") {
            list.insert("text".into(), t.clone());
        }
        if let Some(entries) = section.get("entry").and_then(Value::as_array) {
            let items: Vec<Value> = entries.iter().map(|r| json!({"item": r.clone()})).collect();
            if !items.is_empty() {
                list.insert("entry".into(), Value::Array(items));
            }
        }
        if let Some(e) = section.get("emptyReason") {
            list.insert("emptyReason".into(), e.clone());
        }
        for k in ["author", "focus", "mode"] {
            if let Some(v) = section.get(k) {
                losses.push(Loss::new(
                    &format!("{origin}.{k}"),
                    coding_of(v),
                    format!("section.{k} has no place on a GP Connect List"),
                ));
            }
        }
        out.push(Item {
            origin,
            full_url: None,
            resource: Value::Object(list),
        });
    }
    out
}

/// GP Connect Lists become the sections of a prison Composition, which is returned (it goes
/// first in the document). `items` are the carried resources, already converted.
pub(crate) fn lists_to_composition(
    lists: &[(String, &Value)],
    items: &[Item],
    spec: &CompositionSpec,
    maps: &HashMap<String, ConceptMap>,
    seed: &str,
    losses: &mut Vec<Loss>,
) -> Item {
    let index = RefIndex::build(items);
    let mut sections = Vec::new();
    let mut latest: Option<String> = None;
    if let Some(map) = maps.get(&spec.concept_map) {
        for (list_origin, l) in lists {
            let l = *l;
            if let Some(d) = l.get("date").and_then(Value::as_str)
                && latest.as_deref().is_none_or(|cur| d > cur)
            {
                latest = Some(d.to_owned());
            }
            let title = l
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("(untitled)");
            let code = l.get("code");
            let mapped = code.and_then(|cc| translate_cc(cc, map, maps));
            let Some(section_code) = mapped else {
                losses.push(Loss::new(
                    &format!("{}.code", list_origin),
                    code.and_then(coding_of),
                    format!(
                        "List `{title}` has no section in the prison document (ConceptMap {}{}); the resources it lists are carried where their type is",
                        map.url,
                        code.map(|c| comment_of(map, maps, c)).unwrap_or_default()
                    ),
                ));
                continue;
            };
            let mut section = Map::new();
            section.insert("title".into(), Value::String(title.to_owned()));
            section.insert("code".into(), section_code);
            if let Some(mode) = l.get("mode") {
                section.insert("mode".into(), mode.clone());
            }
            if let Some(o) = l.get("orderedBy") {
                section.insert("orderedBy".into(), o.clone());
            }
            let mut entries = Vec::new();
            for (i, e) in l
                .get("entry")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let Some(r) = e
                    .get("item")
                    .and_then(|it| it.get("reference"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                if index.resolve(r).is_some() {
                    entries.push(json!({"reference": r}));
                } else {
                    losses.push(Loss::new(
                        &format!("{}.entry[{i}].item", list_origin),
                        None,
                        format!("`{r}` is not carried into the prison document, so the section does not list it"),
                    ));
                }
            }
            let listed = l.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
            if !entries.is_empty() {
                section.insert("entry".into(), Value::Array(entries));
            } else {
                // A section holds entries, text or sections (cmp-1): say why it is bare.
                let empty_reason = l.get("emptyReason");
                if let Some(er) = empty_reason {
                    section.insert("emptyReason".into(), er.clone());
                }
                let why = if listed > 0 {
                    format!(
                        "The community record lists {listed} item(s) here that are not carried into the prison document; the loss report names them."
                    )
                } else if let Some(er) = empty_reason {
                    let reason = er
                        .get("text")
                        .or_else(|| er.pointer("/coding/0/display"))
                        .or_else(|| er.pointer("/coding/0/code"))
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    format!("Empty in the community record: {}.", xml_escape(reason))
                } else {
                    "The community record sent this list empty, without a reason.".to_owned()
                };
                section.insert(
                    "text".into(),
                    json!({
                        "status": "generated",
                        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{why}</p></div>")
                    }),
                );
            }
            for (k, v) in l.as_object().into_iter().flatten() {
                if matches!(k.as_str(), "note" | "extension" | "encounter" | "source") {
                    losses.push(Loss::new(
                        &format!("{}.{k}", list_origin),
                        coding_of(v),
                        format!("List.{k} has no place in a Composition section"),
                    ));
                }
            }
            sections.push(Value::Object(section));
        }
    }
    let patient = items.iter().find(|i| i.resource_type() == "Patient");
    let org = patient
        .and_then(|p| p.resource.get("managingOrganization"))
        .and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
        .filter(|r| index.resolve(r).is_some())
        .map(str::to_owned)
        .or_else(|| {
            items
                .iter()
                .find(|i| i.resource_type() == "Organization")
                .and_then(Item::relative)
        });
    let date = latest.unwrap_or_else(now);
    let id = uuid_from(&format!("composition|{seed}"));
    let mut comp = Map::new();
    comp.insert("resourceType".into(), json!("Composition"));
    comp.insert("id".into(), Value::String(id.clone()));
    if let Some(p) = &spec.profile {
        comp.insert("meta".into(), json!({"profile": [p]}));
    }
    comp.insert("status".into(), Value::String(spec.status.clone()));
    comp.insert("type".into(), json!({"coding": [spec.doc_type.to_json()]}));
    if let Some(p) = patient.and_then(Item::relative) {
        comp.insert("subject".into(), json!({"reference": p}));
    }
    comp.insert("date".into(), Value::String(date.clone()));
    comp.insert(
        "author".into(),
        match org {
            Some(o) => json!([{"reference": o}]),
            None => json!([{"display": "GP Connect structured record"}]),
        },
    );
    comp.insert("title".into(), Value::String(spec.title.clone()));
    if let Some(ev) = &spec.event {
        // The record was produced for this event: its date stands for the event's.
        comp.insert(
            "event".into(),
            json!([{"code": [{"coding": [ev.to_json()]}], "period": {"start": date.clone()}}]),
        );
    }
    if !sections.is_empty() {
        comp.insert("section".into(), Value::Array(sections));
    }
    Item {
        origin: "Bundle".into(),
        full_url: Some(format!("urn:uuid:{id}")),
        resource: Value::Object(comp),
    }
}

/// Replaces references by an element of the resource they point at (`bundle.inline`).
pub(crate) fn inline_references(items: &mut [Item], specs: &[InlineSpec], losses: &mut Vec<Loss>) {
    if specs.is_empty() {
        return;
    }
    let index = RefIndex::build(items);
    for spec in specs {
        let mut copies: Vec<(usize, Value)> = Vec::new();
        let mut unresolved: Vec<usize> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if it.resource_type() != spec.resource {
                continue;
            }
            let Some(r) = it
                .resource
                .get(spec.reference.as_str())
                .and_then(|v| v.get("reference"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let target = index
                .resolve(r)
                .map(|t| &items[t])
                .filter(|t| t.resource_type() == spec.target);
            match target.and_then(|t| t.resource.get(spec.element.as_str())) {
                Some(v) => copies.push((i, v.clone())),
                None => {
                    losses.push(Loss::new(
                        &format!("{}.{}", it.origin, spec.reference),
                        None,
                        format!(
                            "`{r}` does not lead to a {} with a `{}` in this record, so `{}` cannot be given",
                            spec.target, spec.element, spec.to
                        ),
                    ));
                    if spec.required {
                        unresolved.push(i);
                    }
                }
            }
        }
        for i in unresolved {
            if let Value::Object(m) = &mut items[i].resource {
                m.shift_remove(spec.reference.as_str());
            }
        }
        for (i, v) in copies {
            if let Value::Object(m) = &mut items[i].resource {
                let at = m
                    .keys()
                    .position(|k| k == &spec.reference)
                    .unwrap_or(m.len());
                m.shift_remove(spec.reference.as_str());
                m.shift_insert(at.min(m.len()), spec.to.clone(), v);
            }
        }
    }
}

/// The current time as a FHIR dateTime (used only when the source gives no date).
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Rewrites references and `fullUrl`s in `style`. `dropped` holds the reference keys of source
/// resources that were not carried: List and section entries that point at them are removed.
pub(crate) fn rewrite_references(
    items: &mut [Item],
    style: ReferenceStyle,
    dropped: &HashSet<String>,
    losses: &mut Vec<Loss>,
) {
    let index = RefIndex::build(items);
    // New key of each item.
    let mut new_keys: Vec<Option<String>> = Vec::with_capacity(items.len());
    // fullUrls given out so far: ids are unique per type only, a fullUrl in the whole Bundle.
    let mut taken: HashSet<String> = HashSet::new();
    for it in items.iter_mut() {
        match style {
            ReferenceStyle::Keep => new_keys.push(None),
            ReferenceStyle::Relative => {
                if it.id().is_none() {
                    let id = it
                        .full_url
                        .as_deref()
                        .and_then(|u| u.strip_prefix("urn:uuid:"))
                        .map(str::to_owned)
                        .unwrap_or_else(|| uuid_from(&it.origin));
                    if let Value::Object(m) = &mut it.resource {
                        m.insert("id".into(), Value::String(id));
                    }
                }
                new_keys.push(it.relative());
                it.full_url = None;
            }
            ReferenceStyle::UrnUuid => {
                let derived = || {
                    format!(
                        "urn:uuid:{}",
                        uuid_from(&it.relative().unwrap_or_else(|| it.origin.clone()))
                    )
                };
                let mut url = match &it.full_url {
                    Some(u) if u.starts_with("urn:uuid:") => u.clone(),
                    _ => match it.id() {
                        Some(id) if is_uuid(id) => format!("urn:uuid:{id}"),
                        _ => derived(),
                    },
                };
                if taken.contains(&url) {
                    // Two resources of different types with the same UUID id.
                    url = derived();
                }
                taken.insert(url.clone());
                it.full_url = Some(url.clone());
                new_keys.push(Some(url));
            }
        }
    }
    for it in items.iter_mut() {
        if style != ReferenceStyle::Keep {
            rewrite_node(&mut it.resource, &index, &new_keys);
        }
        if matches!(it.resource_type(), "List" | "Composition") && !dropped.is_empty() {
            let origin = it.origin.clone();
            prune_dangling(&mut it.resource, &index, dropped, &origin, losses);
        }
        let mut at = it.origin.clone();
        prune_extensions(&mut it.resource, &index, dropped, &mut at, losses);
    }
}

/// Removes extensions whose value is a reference to a resource that was not carried (such as
/// a problem's "actual problem" pointing at an immunisation): without its target the extension
/// says nothing, and the target's profile may not allow the type. Also removes extensions left
/// with neither a value nor sub-extensions (their value did not fit the target, ext-1).
fn prune_extensions(
    node: &mut Value,
    index: &RefIndex,
    dropped: &HashSet<String>,
    at: &mut String,
    losses: &mut Vec<Loss>,
) {
    let gone = |r: &str| index.resolve(r).is_none() && dropped.contains(r);
    match node {
        Value::Object(m) => {
            if let Some(Value::Array(exts)) = m.get_mut("extension") {
                let mut i = 0;
                let mut shown = 0;
                while i < exts.len() {
                    let target = exts[i]
                        .get("valueReference")
                        .and_then(|r| r.get("reference"))
                        .and_then(Value::as_str)
                        .filter(|r| gone(r))
                        .map(str::to_owned);
                    let hollow = exts[i].as_object().is_some_and(|e| {
                        !e.keys().any(|k| k.starts_with("value") || k == "extension")
                    });
                    if hollow {
                        let url = exts[i].get("url").and_then(Value::as_str).unwrap_or("?");
                        losses.push(Loss::new(
                            &format!("{at}.extension[{shown}]"),
                            None,
                            format!("extension {url} has no value left to carry"),
                        ));
                        exts.remove(i);
                    } else if let Some(r) = target {
                        let url = exts[i].get("url").and_then(Value::as_str).unwrap_or("?");
                        losses.push(Loss::new(
                            &format!("{at}.extension[{shown}]"),
                            None,
                            format!("extension {url} refers to `{r}`, which was not carried"),
                        ));
                        exts.remove(i);
                    } else {
                        i += 1;
                    }
                    shown += 1;
                }
                if exts.is_empty() {
                    m.shift_remove("extension");
                }
            }
            for (k, v) in m.iter_mut() {
                if k == "extension" {
                    continue;
                }
                let mark = at.len();
                at.push('.');
                at.push_str(k);
                prune_extensions(v, index, dropped, at, losses);
                at.truncate(mark);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let mark = at.len();
                at.push_str(&format!("[{i}]"));
                prune_extensions(v, index, dropped, at, losses);
                at.truncate(mark);
            }
        }
        _ => {}
    }
}

fn rewrite_node(node: &mut Value, index: &RefIndex, new_keys: &[Option<String>]) {
    match node {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "reference" {
                    if let Value::String(r) = v
                        && let Some(i) = index.resolve(r)
                        && let Some(Some(new)) = new_keys.get(i)
                    {
                        *r = new.clone();
                    }
                } else {
                    rewrite_node(v, index, new_keys);
                }
            }
        }
        Value::Array(items) => {
            for i in items.iter_mut() {
                rewrite_node(i, index, new_keys);
            }
        }
        _ => {}
    }
}

/// Removes List entries and Composition section entries that point at resources that were
/// not carried (a document must not list what it does not hold).
fn prune_dangling(
    resource: &mut Value,
    index: &RefIndex,
    dropped: &HashSet<String>,
    origin: &str,
    losses: &mut Vec<Loss>,
) {
    let gone = |r: &str| index.resolve(r).is_none() && dropped.contains(r);
    if let Some(Value::Array(entries)) = resource.get_mut("entry") {
        let mut i = 0;
        let mut shown = 0;
        while i < entries.len() {
            let r = entries[i]
                .get("item")
                .and_then(|x| x.get("reference"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match r {
                Some(r) if gone(&r) => {
                    losses.push(Loss::new(
                        &format!("{origin}.entry[{shown}]"),
                        None,
                        format!("`{r}` was not carried, so the list no longer refers to it"),
                    ));
                    entries.remove(i);
                }
                _ => i += 1,
            }
            shown += 1;
        }
    }
    if let Some(Value::Array(sections)) = resource.get_mut("section") {
        for (si, s) in sections.iter_mut().enumerate() {
            if let Some(Value::Array(entries)) = s.get_mut("entry") {
                let mut i = 0;
                let mut shown = 0;
                while i < entries.len() {
                    let r = entries[i]
                        .get("reference")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    match r {
                        Some(r) if gone(&r) => {
                            losses.push(Loss::new(
                                &format!("{origin}.section[{si}].entry[{shown}]"),
                                None,
                                format!(
                                    "`{r}` was not carried, so the section no longer refers to it"
                                ),
                            ));
                            entries.remove(i);
                        }
                        _ => i += 1,
                    }
                    shown += 1;
                }
            }
            if let Value::Object(m) = s
                && m.get("entry")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty)
            {
                m.shift_remove("entry");
            }
        }
    }
    if let Value::Object(m) = resource
        && m.get("entry")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    {
        m.shift_remove("entry");
    }
}

/// Escapes text for XHTML narrative.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuids_are_stable_and_well_formed() {
        let a = uuid_from("Patient/1");
        assert_eq!(a, uuid_from("Patient/1"));
        assert_ne!(a, uuid_from("Patient/2"));
        assert!(is_uuid(&a));
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn references_resolve_by_full_url_type_and_id_or_absolute_url() {
        let items = vec![Item {
            origin: "Bundle.entry[0].resource".into(),
            full_url: Some("urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002".into()),
            resource: json!({"resourceType": "Patient", "id": "p1"}),
        }];
        let idx = RefIndex::build(&items);
        assert_eq!(
            idx.resolve("urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"),
            Some(0)
        );
        assert_eq!(idx.resolve("Patient/p1"), Some(0));
        assert_eq!(idx.resolve("https://gp.example/fhir/Patient/p1"), Some(0));
        assert_eq!(idx.resolve("Patient/p2"), None);
    }
}
