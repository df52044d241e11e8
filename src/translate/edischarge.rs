//! `bundle.structure.edischarge`: the prison Composition (already in STU3) becomes an ITK3
//! inpatient eDischarge Composition (CareConnect-ITK-EDIS-Composition-1).
//!
//! - Each section keeps its SNOMED CT heading (the EDIS slicing is closed: a section with a
//!   heading the profile has no slice for is dropped and reported) and gets the heading's
//!   fixed title. Its narrative (`section.text`, required by every EDIS slice) is the
//!   sender's, else generated from what the section lists (`narrative:` names, per resource
//!   type, the elements read into it), so that a GP system showing only the narrative shows
//!   everything the section carries.
//! - A section whose heading has a `list:` lists its resources through one CareConnect-ITK
//!   List (allergies, diagnoses, medications), as the EDIS profile requires; entries of other
//!   types stay in the narrative only (reported). A heading with `entries:` lists those types
//!   directly; any other section lists nothing but its narrative (EDIS takes only attachments
//!   there; reported).
//! - Prescriptions (MedicationRequest) become the MedicationStatements the medication List
//!   takes, each with a Medication for its drug (`medicationStatements:`); dose instructions
//!   and extensions (the last dose in custody) are carried.
//! - Sections the profile requires and the document lacks are added (`required: true`) with a
//!   narrative that says where they come from (reported as assumptions).
//! - The Composition gets its identifier (the document's `Bundle.identifier`), the care
//!   setting extension, the EDIS profile; `event` (0..0 in EDIS) is reported and removed; an
//!   author that is not a Practitioner becomes the custodian, and the author is the prison's
//!   clinical record system (an ITK-Device-1), reported as an assumption.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Loss;
use super::ops::coding_of;
use super::structure::{Item, RefIndex, uuid_from};

/// `bundle.structure.edischarge` in a mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EdischargeSpec {
    /// Composition profile (CareConnect-ITK-EDIS-Composition-1).
    pub profile: String,
    /// System of the Composition identifier when the document's identifier has none.
    pub identifier_system: String,
    /// The care-setting extension: its URL and value (a JSON `value[x]` object).
    pub care_setting: ExtensionSpec,
    /// The author the profile allows when the document's author is an organisation.
    pub author_device: DeviceSpec,
    /// The EDIS headings, by SNOMED CT code.
    pub sections: Vec<SectionSpec>,
    /// Per resource type, the elements (dot paths, `a|b` alternatives) a generated narrative
    /// reads, in order.
    #[serde(default)]
    pub narrative: HashMap<String, Vec<String>>,
    /// Prescriptions become MedicationStatements.
    #[serde(default)]
    pub medication_statements: Option<StatementSpec>,
    /// Resource types no EDIS section can list (care plans, flags): told in their section's
    /// narrative, then not carried (reported).
    #[serde(default)]
    pub narrative_only: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExtensionSpec {
    pub url: String,
    pub value: Value,
    pub assume: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeviceSpec {
    pub profile: String,
    #[serde(rename = "type")]
    pub device_type: Value,
    pub assume: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SectionSpec {
    pub code: String,
    /// The heading's display, which EDIS fixes as the section title too.
    pub display: String,
    #[serde(default)]
    pub required: bool,
    /// Resource types the section lists directly (`Composition.subject` for demographics).
    #[serde(default)]
    pub entries: Vec<String>,
    #[serde(default)]
    pub list: Option<ListSpec>,
    /// Narrative of a required section the document lacks.
    #[serde(default)]
    pub when_absent: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ListSpec {
    pub profile: String,
    pub items: Vec<String>,
    pub identifier_system: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct StatementSpec {
    /// `MedicationStatement.taken`, which a prescription does not state.
    pub taken: String,
    pub assume: String,
    /// Prescription status to statement status.
    pub status: HashMap<String, String>,
}

const SNOMED: &str = "http://snomed.info/sct";
const XHTML: &str = "http://www.w3.org/1999/xhtml";

/// MedicationRequest (STU3) elements a MedicationStatement carries, and where.
const STATEMENT_ELEMENTS: &[(&str, &str)] = &[
    ("id", "id"),
    ("meta", "meta"),
    ("extension", "extension"),
    ("identifier", "identifier"),
    ("status", "status"),
    ("medicationCodeableConcept", "medicationCodeableConcept"),
    ("medicationReference", "medicationReference"),
    ("subject", "subject"),
    ("context", "context"),
    ("authoredOn", "dateAsserted"),
    ("reasonCode", "reasonCode"),
    ("reasonReference", "reasonReference"),
    ("note", "note"),
    ("dosageInstruction", "dosage"),
];

/// Rebuilds the Composition (see the module docs); returns the keys (`fullUrl`, `Type/id`) of
/// the resources it did not carry.
pub(crate) fn build(
    spec: &EdischargeSpec,
    document: &Value,
    items: &mut Vec<Item>,
    losses: &mut Vec<Loss>,
) -> Vec<String> {
    let Some(ci) = items
        .iter()
        .position(|it| it.resource_type() == "Composition")
    else {
        return Vec::new();
    };
    let comp_origin = items[ci].origin.clone();
    let mut comp = std::mem::take(&mut items[ci].resource);
    let index = RefIndex::build(items);
    let subject = comp.get("subject").cloned();
    let encounter = comp.get("encounter").cloned();
    let date = comp.get("date").cloned();
    let by_code: HashMap<&str, &SectionSpec> =
        spec.sections.iter().map(|s| (s.code.as_str(), s)).collect();

    let mut new_items: Vec<Item> = Vec::new();
    let mut sections_out: Vec<Value> = Vec::new();
    let sections = comp
        .get("section")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (si, section) in sections.iter().enumerate() {
        let origin = format!("{comp_origin}.section[{si}]");
        let code = section
            .pointer("/code/coding")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .filter(|c| c.get("system").and_then(Value::as_str) == Some(SNOMED))
                    .find_map(|c| c.get("code").and_then(Value::as_str))
            })
            .unwrap_or_default();
        let Some(s) = by_code.get(code) else {
            losses.push(Loss::new(
                &format!("{origin}.code"),
                section.get("code").and_then(coding_of),
                "the ITK eDischarge Composition has no section with this heading (its sections are closed to the EDIS headings); the section and what it lists are not carried",
            ));
            continue;
        };
        if section.get("section").is_some() {
            losses.push(Loss::new(
                &format!("{origin}.section"),
                None,
                "EDIS sections have no sub-sections; they are not carried",
            ));
        }
        let refs: Vec<(usize, String)> = section
            .get("entry")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.get("reference")?.as_str()?.to_string())))
            .collect();
        let resolved: Vec<(usize, String, usize)> = refs
            .into_iter()
            .filter_map(|(i, r)| Some((i, r.clone(), index.resolve(&r)?)))
            .collect();
        // The sender's narrative stands; one the policy stage generated (it replaces a
        // section's narrative whenever it removes anything, saying only what each resource is)
        // is written again from what the copy holds, so that a resource carried in the
        // narrative only (a care plan, a flag) is told in full.
        let senders = section
            .get("text")
            .filter(|t| t.get("status").and_then(Value::as_str) != Some("generated"));
        let text = match senders {
            Some(t) => t.clone(),
            None => {
                let lines: Vec<String> = resolved
                    .iter()
                    .filter_map(|(_, _, k)| summary(&items[*k].resource, &spec.narrative))
                    .collect();
                narrative(&s.display, &lines, section.get("emptyReason"))
            }
        };
        let mut out = Map::new();
        out.insert("title".into(), json!(s.display));
        out.insert(
            "code".into(),
            json!({"coding": [{"system": SNOMED, "code": s.code, "display": s.display}]}),
        );
        out.insert("text".into(), text);
        let mut entries: Vec<Value> = Vec::new();
        if let Some(l) = &s.list {
            let mut list_entries = Vec::new();
            for (i, r, k) in &resolved {
                if l.items.iter().any(|t| t == items[*k].resource_type()) {
                    list_entries.push(json!({"item": {"reference": r}}));
                } else {
                    losses.push(Loss::new(
                        &format!("{origin}.entry[{i}]"),
                        None,
                        format!(
                            "the EDIS {} list takes {} only: this {} is in the section's narrative, not listed",
                            s.display,
                            l.items.join(", "),
                            items[*k].resource_type()
                        ),
                    ));
                }
            }
            let list_id = uuid_from(&format!("{origin}|List"));
            let mut list = Map::new();
            list.insert("resourceType".into(), json!("List"));
            list.insert("id".into(), json!(list_id));
            list.insert("meta".into(), json!({"profile": [l.profile]}));
            list.insert(
                "identifier".into(),
                json!({"system": l.identifier_system, "value": list_id}),
            );
            list.insert("status".into(), json!("current"));
            list.insert("mode".into(), json!("snapshot"));
            list.insert("title".into(), json!(s.display));
            list.insert(
                "code".into(),
                json!({"coding": [{"system": SNOMED, "code": s.code, "display": s.display}]}),
            );
            if let Some(v) = &subject {
                list.insert("subject".into(), v.clone());
            }
            if let Some(v) = &encounter {
                list.insert("encounter".into(), v.clone());
            }
            if let Some(v) = &date {
                list.insert("date".into(), v.clone());
            }
            if !list_entries.is_empty() {
                list.insert("entry".into(), Value::Array(list_entries));
            } else if let Some(er) = section.get("emptyReason") {
                list.insert("emptyReason".into(), er.clone());
            }
            entries.push(json!({"reference": format!("List/{list_id}")}));
            new_items.push(Item {
                origin: origin.clone(),
                full_url: None,
                resource: Value::Object(list),
            });
        } else {
            for (i, r, k) in &resolved {
                if s.entries.iter().any(|t| t == items[*k].resource_type()) {
                    entries.push(json!({"reference": r}));
                } else {
                    losses.push(Loss::new(
                        &format!("{origin}.entry[{i}]"),
                        None,
                        format!(
                            "the EDIS {} section lists no {}: it is in the section's narrative only",
                            s.display,
                            items[*k].resource_type()
                        ),
                    ));
                }
            }
        }
        if !entries.is_empty() {
            out.insert("entry".into(), Value::Array(entries));
        }
        sections_out.push(Value::Object(out));
    }

    // Required sections the document does not have.
    for s in spec.sections.iter().filter(|s| s.required) {
        let present = sections_out
            .iter()
            .any(|o| o.pointer("/code/coding/0/code").and_then(Value::as_str) == Some(&s.code));
        if present {
            continue;
        }
        let mut out = Map::new();
        out.insert("title".into(), json!(s.display));
        out.insert(
            "code".into(),
            json!({"coding": [{"system": SNOMED, "code": s.code, "display": s.display}]}),
        );
        let mut entries = Vec::new();
        let mut lines = Vec::new();
        if s.entries.iter().any(|t| t == "Patient")
            && let Some(r) = subject
                .as_ref()
                .and_then(|v| v.get("reference"))
                .and_then(Value::as_str)
            && let Some(k) = index.resolve(r)
        {
            entries.push(json!({"reference": r}));
            lines.extend(summary(&items[k].resource, &spec.narrative));
        }
        if let Some(l) = &s.list {
            let list_id = uuid_from(&format!("{comp_origin}|{}|List", s.code));
            let mut list = json!({
                "resourceType": "List", "id": list_id,
                "meta": {"profile": [l.profile]},
                "identifier": {"system": l.identifier_system, "value": list_id},
                "status": "current", "mode": "snapshot", "title": s.display,
                "code": {"coding": [{"system": SNOMED, "code": s.code, "display": s.display}]},
            });
            if let (Some(v), Some(m)) = (&subject, list.as_object_mut()) {
                m.insert("subject".into(), v.clone());
            }
            new_items.push(Item {
                origin: format!("{comp_origin}.section"),
                full_url: None,
                resource: list,
            });
            entries.push(json!({"reference": format!("List/{list_id}")}));
        }
        let said = s
            .when_absent
            .clone()
            .unwrap_or_else(|| format!("The prison document has no {} section.", s.display));
        if lines.is_empty() {
            lines.push(said.clone());
        }
        out.insert("text".into(), narrative(&s.display, &lines, None));
        if !entries.is_empty() {
            out.insert("entry".into(), Value::Array(entries));
        }
        losses.push(Loss::assumption(
            &format!("{comp_origin}.section"),
            format!(
                "the ITK eDischarge document requires a {} section, which the prison document does not have; it is added: {said}",
                s.display
            ),
        ));
        sections_out.push(Value::Object(out));
    }

    // The Composition itself.
    if let Some(c) = comp.as_object_mut() {
        if let Some(ev) = c.shift_remove("event") {
            let code = ev
                .pointer("/0/code/0")
                .and_then(coding_of)
                .or_else(|| coding_of(&ev));
            losses.push(Loss::new(
                &format!("{comp_origin}.event"),
                code,
                "the ITK eDischarge Composition has no event (0..0): the custody event and its date are in the Encounter and the narrative only",
            ));
        }
        let authors: Vec<Value> = c
            .get("author")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut kept_authors = Vec::new();
        let mut custodian = None;
        for a in authors {
            let ty = a
                .get("reference")
                .and_then(Value::as_str)
                .and_then(|r| index.resolve(r))
                .map(|k| items[k].resource_type().to_string());
            match ty.as_deref() {
                Some("Practitioner") | Some("Device") => kept_authors.push(a),
                _ => {
                    if custodian.is_none() {
                        custodian = Some(a);
                    }
                }
            }
        }
        if kept_authors.is_empty() {
            let device_id = uuid_from(&format!("{comp_origin}|author-device"));
            let mut device = json!({
                "resourceType": "Device", "id": device_id,
                "meta": {"profile": [spec.author_device.profile]},
                "type": spec.author_device.device_type,
            });
            if let (Some(o), Some(m)) = (&custodian, device.as_object_mut()) {
                m.insert("owner".into(), o.clone());
            }
            new_items.push(Item {
                origin: format!("{comp_origin}.author"),
                full_url: None,
                resource: device,
            });
            kept_authors.push(json!({"reference": format!("Device/{device_id}")}));
            losses.push(Loss::assumption(
                &format!("{comp_origin}.author"),
                &spec.author_device.assume,
            ));
        }
        c.insert("author".into(), Value::Array(kept_authors));
        if let Some(o) = custodian
            && !c.contains_key("custodian")
        {
            c.insert("custodian".into(), o);
        }
        c.insert("section".into(), Value::Array(sections_out));
        let identifier = document.get("identifier").cloned().map(|mut id| {
            if id.get("system").is_none()
                && let Some(m) = id.as_object_mut()
            {
                m.insert("system".into(), json!(spec.identifier_system));
            }
            id
        });
        let exts = c
            .entry("extension")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(a) = exts.as_array_mut()
            && !a
                .iter()
                .any(|e| e.get("url").and_then(Value::as_str) == Some(&spec.care_setting.url))
        {
            let mut e = Map::new();
            e.insert("url".into(), json!(spec.care_setting.url));
            if let Value::Object(v) = &spec.care_setting.value {
                for (k, v) in v {
                    e.insert(k.clone(), v.clone());
                }
            }
            a.push(Value::Object(e));
            losses.push(Loss::assumption(
                &format!("{comp_origin}.extension"),
                &spec.care_setting.assume,
            ));
        }
        c.insert("meta".into(), json!({"profile": [spec.profile]}));
        if let Some(id) = identifier
            && !c.contains_key("identifier")
        {
            c.insert("identifier".into(), id);
        }
        *c = order_composition(std::mem::take(c));
    }
    items[ci].resource = comp;

    if let Some(st) = &spec.medication_statements {
        statements(st, items, &mut new_items, losses);
    }
    let mut gone = Vec::new();
    items.retain(|it| {
        if !spec.narrative_only.iter().any(|t| t == it.resource_type()) {
            return true;
        }
        losses.push(Loss::new(
            &it.origin,
            it.resource.get("code").and_then(coding_of),
            format!(
                "the ITK eDischarge document lists no {}: it is told in its section's narrative, and not carried as a resource",
                it.resource_type()
            ),
        ));
        gone.extend(it.full_url.clone());
        gone.extend(it.relative());
        false
    });
    items.extend(new_items);
    gone
}

/// STU3 element order of a Composition.
fn order_composition(mut c: Map<String, Value>) -> Map<String, Value> {
    const ORDER: &[&str] = &[
        "resourceType",
        "id",
        "meta",
        "implicitRules",
        "language",
        "text",
        "contained",
        "extension",
        "modifierExtension",
        "identifier",
        "status",
        "type",
        "class",
        "subject",
        "encounter",
        "date",
        "author",
        "title",
        "confidentiality",
        "attester",
        "custodian",
        "relatesTo",
        "event",
        "section",
    ];
    let mut out = Map::new();
    for k in ORDER {
        if let Some(v) = c.shift_remove(*k) {
            out.insert((*k).to_string(), v);
        }
    }
    out.extend(c);
    out
}

/// Prescriptions become MedicationStatements, each with a Medication for its drug.
fn statements(
    spec: &StatementSpec,
    items: &mut [Item],
    new_items: &mut Vec<Item>,
    losses: &mut Vec<Loss>,
) {
    for it in items.iter_mut() {
        let rt = it.resource_type().to_string();
        if rt != "MedicationRequest" && rt != "MedicationStatement" {
            continue;
        }
        let Value::Object(src) = std::mem::take(&mut it.resource) else {
            continue;
        };
        let mut ms = Map::new();
        ms.insert("resourceType".into(), json!("MedicationStatement"));
        if rt == "MedicationRequest" {
            let mut src = src;
            for (from, to) in STATEMENT_ELEMENTS {
                if let Some(v) = src.shift_remove(*from) {
                    ms.insert((*to).to_string(), v);
                }
            }
            if let Some(agent) = src
                .shift_remove("requester")
                .and_then(|r| r.get("agent").cloned())
            {
                ms.insert("informationSource".into(), agent);
            }
            for (k, v) in src {
                if k == "resourceType" {
                    continue;
                }
                losses.push(Loss::new(
                    &format!("{}.{k}", it.origin),
                    coding_of(&v),
                    format!("MedicationRequest.{k} has no place on the ITK MedicationStatement the medication list takes"),
                ));
            }
            let status = ms.get("status").and_then(Value::as_str).map(str::to_string);
            match status.as_deref().and_then(|s| spec.status.get(s)) {
                Some(mapped) => {
                    ms.insert("status".into(), json!(mapped));
                }
                None => {
                    losses.push(Loss::new(
                        &format!("{}.status", it.origin),
                        status.clone(),
                        "the prescription's status has no MedicationStatement equivalent; it is carried as active",
                    ));
                    ms.insert("status".into(), json!("active"));
                }
            }
            ms.insert("taken".into(), json!(spec.taken));
            losses.push(Loss::assumption(
                &format!("{}.taken", it.origin),
                &spec.assume,
            ));
        } else {
            ms = src;
        }
        // The drug as a Medication of its own (medicationReference is required).
        if let Some(cc) = ms.shift_remove("medicationCodeableConcept") {
            let id = uuid_from(&format!("{}|Medication", it.origin));
            new_items.push(Item {
                origin: format!("{}.medicationCodeableConcept", it.origin),
                full_url: None,
                resource: json!({"resourceType": "Medication", "id": id, "code": cc}),
            });
            ms.insert(
                "medicationReference".into(),
                json!({"reference": format!("Medication/{id}")}),
            );
        }
        it.resource = Value::Object(order_statement(ms));
    }
}

fn order_statement(mut m: Map<String, Value>) -> Map<String, Value> {
    const ORDER: &[&str] = &[
        "resourceType",
        "id",
        "meta",
        "text",
        "extension",
        "identifier",
        "status",
        "medicationReference",
        "effectiveDateTime",
        "effectivePeriod",
        "dateAsserted",
        "informationSource",
        "subject",
        "context",
        "taken",
        "reasonCode",
        "reasonReference",
        "note",
        "dosage",
    ];
    let mut out = Map::new();
    for k in ORDER {
        if let Some(v) = m.shift_remove(*k) {
            out.insert((*k).to_string(), v);
        }
    }
    out.extend(m);
    out
}

/// One line of narrative for a resource, from the elements `narrative:` names for its type.
/// Each field is `[label: ]path|path...`: the first path with a value gives the field (all
/// its values, space-separated), after the label. A path is dot-separated element names;
/// `extension(URL)` keeps the extensions with that URL, `identifier(SYSTEM)` the identifiers
/// with that system.
pub(crate) fn summary(
    resource: &Value,
    narrative: &HashMap<String, Vec<String>>,
) -> Option<String> {
    let rt = resource.get("resourceType").and_then(Value::as_str)?;
    let fields = narrative.get(rt)?;
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|field| {
            let (label, alternatives) = match field.split_once(": ") {
                Some((l, a)) => (Some(l), a),
                None => (None, field.as_str()),
            };
            alternatives.split('|').find_map(|path| {
                let mut found = Vec::new();
                strings_at(resource, &segments(path), &mut found);
                (!found.is_empty()).then(|| match label {
                    Some(l) => format!("{l}: {}", found.join(" ")),
                    None => found.join(" "),
                })
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Dot-separated segments; dots inside `(...)` do not separate.
fn segments(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, ch) in path.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// Every string (or number, or boolean) at a path, lists iterated.
fn strings_at(node: &Value, path: &[&str], out: &mut Vec<String>) {
    match node {
        Value::Array(a) => {
            for v in a {
                strings_at(v, path, out);
            }
        }
        _ if path.is_empty() => match node {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            _ => {}
        },
        Value::Object(m) => {
            if let Some((name, key)) = path[0].strip_suffix(')').and_then(|p| p.split_once('(')) {
                // `extension(URL)`, `identifier(SYSTEM)`: the items with that url or system.
                for e in m
                    .get(name)
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let url = e.get("url").or_else(|| e.get("system"));
                    if url.and_then(Value::as_str) == Some(key) {
                        strings_at(e, &path[1..], out);
                    }
                }
            } else if let Some(v) = m.get(path[0]) {
                strings_at(v, &path[1..], out);
            }
        }
        _ => {}
    }
}

/// A section narrative: the heading and one list item per line (XHTML, escaped).
pub(crate) fn narrative(heading: &str, lines: &[String], empty_reason: Option<&Value>) -> Value {
    let mut div = format!("<div xmlns=\"{XHTML}\"><h2>{}</h2>", escape(heading));
    if lines.is_empty() {
        let why = empty_reason
            .and_then(|er| {
                er.get("text")
                    .or_else(|| er.pointer("/coding/0/display"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("Nothing recorded in this section.");
        div.push_str(&format!("<p>{}</p>", escape(why)));
    } else {
        div.push_str("<ul>");
        for l in lines {
            div.push_str(&format!("<li>{}</li>", escape(l)));
        }
        div.push_str("</ul>");
    }
    div.push_str("</div>");
    json!({"status": "generated", "div": div})
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narr() -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "MedicationRequest".to_string(),
            vec![
                "medicationCodeableConcept.text|medicationCodeableConcept.coding.display".into(),
                "dosageInstruction.text".into(),
            ],
        )])
    }

    #[test]
    fn a_summary_reads_the_first_alternative_that_has_a_value() {
        let mr = json!({"resourceType": "MedicationRequest",
            "medicationCodeableConcept": {"coding": [{"display": "Methadone 1mg/ml"}]},
            "dosageInstruction": [{"text": "30 ml daily"}, {"text": "supervised"}]});
        assert_eq!(
            summary(&mr, &narr()).as_deref(),
            Some("Methadone 1mg/ml; 30 ml daily supervised")
        );
        assert_eq!(summary(&json!({"resourceType": "Flag"}), &narr()), None);
    }

    #[test]
    fn a_field_can_be_labelled_and_pick_one_extension_by_url() {
        let n = HashMap::from([(
            "MedicationRequest".to_string(),
            vec![
                "last dose in custody: extension(https://x.org/a.b/last-dose).valueDateTime".into(),
            ],
        )]);
        let mr = json!({"resourceType": "MedicationRequest", "extension": [
            {"url": "https://x.org/other", "valueDateTime": "2026-01-01"},
            {"url": "https://x.org/a.b/last-dose", "valueDateTime": "2026-12-03T08:00:00+00:00"}]});
        assert_eq!(
            summary(&mr, &n).as_deref(),
            Some("last dose in custody: 2026-12-03T08:00:00+00:00")
        );
    }

    #[test]
    fn narrative_is_escaped_xhtml_and_says_why_a_section_is_empty() {
        let n = narrative("Allergies", &["Peanut <severe> & hives".into()], None);
        let div = n["div"].as_str().unwrap();
        assert!(div.starts_with("<div xmlns=\"http://www.w3.org/1999/xhtml\">"));
        assert!(div.contains("<li>Peanut &lt;severe&gt; &amp; hives</li>"));
        let empty = narrative(
            "Allergies",
            &[],
            Some(&json!({"coding": [{"display": "Withheld"}]})),
        );
        assert!(empty["div"].as_str().unwrap().contains("<p>Withheld</p>"));
    }
}
