//! Unit tests of the operations, through [`super::apply`] as the translator calls it.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Cx, apply};
use crate::translate::Loss;
use crate::translate::conceptmap::ConceptMap;
use crate::translate::path::Path;
use crate::translate::rules::{Op, RecodeMode, Unmapped};

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
    let composition = json!({"resourceType": "Composition", "date": "2026-11-20T09:30:00+00:00"});
    let mut cx = Cx {
        maps: &maps,
        composition: Some(&composition),
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
    let r = json!({"code": {"coding": [{"system": "urn:local", "code": "ZZZ", "display": "Odd"}]}});
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

fn op(yaml: &str) -> Op {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    crate::translate::rules::compile_op_for_tests(&v).unwrap()
}

#[test]
fn absent_marks_a_missing_element_the_fhir_way_for_each_shape_and_reports_an_assumption() {
    let dar = json!([{"url": super::elements::DATA_ABSENT_REASON, "valueCode": "unknown"}]);
    let (r, losses) = run(
        op("absent: {path: recorder, assume: no recorder}"),
        json!({"resourceType": "AllergyIntolerance"}),
    );
    assert_eq!(r["recorder"]["extension"], dar);
    assert_eq!(losses.len(), 1);
    assert!(losses[0].is_assumption());
    assert_eq!(losses[0].path, "Bundle.entry[1].resource.recorder");
    let (r, _) = run(
        op("absent: {path: authoredOn, shape: primitive, assume: x}"),
        json!({"resourceType": "MedicationRequest"}),
    );
    assert!(r.get("authoredOn").is_none());
    assert_eq!(r["_authoredOn"]["extension"], dar);
    let (r, _) = run(
        op("absent: {path: category, shape: primitive-list, reason: not-asked, assume: x}"),
        json!({"resourceType": "AllergyIntolerance"}),
    );
    assert_eq!(r["category"], json!([null]));
    assert_eq!(r["_category"][0]["extension"][0]["valueCode"], "not-asked");
    // Present: untouched, nothing reported.
    let (r, losses) = run(
        op("absent: {path: recorder, assume: x}"),
        json!({"resourceType": "AllergyIntolerance", "recorder": {"reference": "Practitioner/1"}}),
    );
    assert_eq!(r["recorder"], json!({"reference": "Practitioner/1"}));
    assert!(losses.is_empty());
}

#[test]
fn set_from_the_document_copies_the_composition_value_and_reports_the_assumption_only_when_it_writes()
 {
    let rule =
        "set: {path: recordedDate, fromDocument: date, ifAbsent: true, assume: the document date}";
    let (r, losses) = run(op(rule), json!({"resourceType": "Condition"}));
    assert_eq!(r["recordedDate"], "2026-11-20T09:30:00+00:00");
    assert_eq!(losses.len(), 1);
    assert_eq!(losses[0].reason, "the document date");
    let (r, losses) = run(
        op(rule),
        json!({"resourceType": "Condition", "recordedDate": "2026-01-01"}),
    );
    assert_eq!(r["recordedDate"], "2026-01-01");
    assert!(losses.is_empty());
}

#[test]
fn add_extension_on_matching_items_only() {
    let rule = r#"addExtension:
  on: identifier
  where: {path: system, equals: "https://fhir.nhs.uk/Id/nhs-number"}
  url: urn:x
  value: {valueString: "02"}
  ifAbsent: true
  assume: untraced"#;
    let (r, losses) = run(
        op(rule),
        json!({"resourceType": "Patient", "identifier": [
            {"system": "urn:other", "value": "1"},
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}
        ]}),
    );
    assert!(r["identifier"][0].get("extension").is_none());
    assert_eq!(r["identifier"][1]["extension"][0]["valueString"], "02");
    assert_eq!(losses.len(), 1);
    let (_, losses) = run(
        op(rule),
        json!({"resourceType": "Patient", "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018", "extension": [{"url": "urn:x", "valueString": "01"}]}
        ]}),
    );
    assert!(losses.is_empty(), "the sender's status stands");
}
