//! The decision matrix: DESIGN §7 rules 1–5 over the sample agreements, each recipient role,
//! each label with and without a permit, deny provisions, withdrawal, break-glass, and custody
//! content in each of its three forms.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::domain::{OdsCode, Role};

const PRISON: &str = "Y02307";
const GP: &str = "A99001";
const OTHER_GP: &str = "A99999";
const DRUG: &str = "X99001";
const ICB: &str = "Q99";
/// An ICB that is not the ICB of the patient's release area.
const OTHER_ICB: &str = "Q98";
const RECEIVING: &str = "Y05009";
const NOW: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

fn agreements() -> Vec<Agreement> {
    agreement::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("agreements")).unwrap()
}

fn classifier() -> Classifier {
    Classifier::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/labels")).unwrap()
}

fn recipient(ods: &str) -> RecipientContext {
    let (role, rel) = match ods {
        GP => (Role::Gp, Some(Relationship::RegisteredGp)),
        OTHER_GP => (Role::Gp, None),
        DRUG => (Role::Service, Some(Relationship::CarePlanPerformer)),
        ICB => (Role::Icb, Some(Relationship::ReleaseAreaIcb)),
        OTHER_ICB => (Role::Icb, None),
        RECEIVING => (Role::Prison, Some(Relationship::ReceivingPrison)),
        _ => (Role::Service, None),
    };
    RecipientContext {
        ods: OdsCode::parse(ods).unwrap(),
        role,
        relationships: rel.into_iter().collect(),
    }
}

fn resource(kind: &str) -> Value {
    let sec = |system: &str, code: &str| json!({"meta": {"security": [{"system": system, "code": code}]}});
    let mut r = match kind {
        "patient" => json!({"resourceType": "Patient", "id": "p"}),
        "med" => json!({"resourceType": "MedicationRequest", "id": "med",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "39113611000001102"}]}}),
        "methadone-labelled" => json!({"resourceType": "MedicationRequest", "id": "meth"}),
        "methadone-unlabelled" => json!({"resourceType": "MedicationRequest", "id": "meth2",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "322696004"}]}}),
        "schizophrenia" => json!({"resourceType": "Condition", "id": "psy",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "58214004"}]}}),
        "depot" => json!({"resourceType": "MedicationRequest", "id": "depot"}),
        "hiv" => json!({"resourceType": "Condition", "id": "hiv",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "86406008"}]}}),
        "chlamydia" => json!({"resourceType": "Condition", "id": "std",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "105629000"}]}}),
        "sex" => json!({"resourceType": "Condition", "id": "sex"}),
        "sdv" => json!({"resourceType": "Flag", "id": "sdv"}),
        "hepc" => json!({"resourceType": "Condition", "id": "hepc",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "128302006"}]}}),
        "allergy" => json!({"resourceType": "AllergyIntolerance", "id": "alg"}),
        "careplan" => json!({"resourceType": "CarePlan", "id": "cp"}),
        "custody-flag" => json!({"resourceType": "Flag", "id": "sec"}),
        "flag" => json!({"resourceType": "Flag", "id": "flag"}),
        "observation" => json!({"resourceType": "Observation", "id": "obs"}),
        "unknown-label" => json!({"resourceType": "MedicationRequest", "id": "unk"}),
        other => panic!("no resource {other}"),
    };
    let label = match kind {
        "methadone-labelled" => Some(sec(super::ACT_CODE, "ETH")),
        "depot" => Some(sec(super::ACT_CODE, "PSY")),
        "sex" => Some(sec(super::ACT_CODE, "SEX")),
        "sdv" => Some(sec(super::ACT_CODE, "SDV")),
        "custody-flag" => Some(sec(crate::domain::systems::CUSTODY_LABEL, "custody-only")),
        "unknown-label" => Some(sec(super::ACT_CODE, "NOPE")),
        _ => None,
    };
    if let Some(l) = label {
        r["meta"] = l["meta"].clone();
    }
    r
}

/// A consent with a root provision of `kind` and the given extras.
fn consent(status: &str, kind: &str, extra: Value) -> ConsentDirective {
    let mut provision = json!({"type": kind});
    if let (Some(p), Some(e)) = (provision.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    let c =
        json!({"resourceType": "Consent", "id": "c1", "status": status, "provision": provision});
    ConsentDirective::from_resource(&c, 1).unwrap()
}

fn label(code: &str) -> Value {
    json!([{"system": super::ACT_CODE, "code": code}])
}

fn ods_actor(ods: &str) -> Value {
    json!([{"reference": {"identifier": {"system": crate::domain::systems::ODS_ORGANISATION, "value": ods}}}])
}

fn role_actor(role: &str) -> Value {
    json!([{"reference": {"identifier": {"system": consent::RECIPIENT_ROLE_SYSTEM, "value": role}}}])
}

struct Case {
    name: &'static str,
    to: &'static str,
    resource: &'static str,
    consents: Vec<ConsentDirective>,
    purpose: Purpose,
    at: OffsetDateTime,
    break_glass: bool,
    pull: bool,
    agreements: Option<Vec<Agreement>>,
    sender: (&'static str, Role),
    expect_shared: bool,
    expect_rule: u8,
}

fn case(
    name: &'static str,
    to: &'static str,
    resource: &'static str,
    shared: bool,
    rule: u8,
) -> Case {
    Case {
        name,
        to,
        resource,
        consents: vec![],
        purpose: Purpose::Treat,
        at: NOW,
        break_glass: false,
        pull: false,
        agreements: None,
        sender: (PRISON, Role::Prison),
        expect_shared: shared,
        expect_rule: rule,
    }
}

impl Case {
    fn consents(mut self, c: Vec<ConsentDirective>) -> Case {
        self.consents = c;
        self
    }
    fn at(mut self, t: OffsetDateTime) -> Case {
        self.at = t;
        self
    }
    fn emergency(mut self, allowed: bool, pull: bool) -> Case {
        self.purpose = Purpose::EmergencyTreat;
        self.break_glass = allowed;
        self.pull = pull;
        self
    }
    fn agreements(mut self, a: Vec<Agreement>) -> Case {
        self.agreements = Some(a);
        self
    }
    fn sender(mut self, ods: &'static str, role: Role) -> Case {
        self.sender = (ods, role);
        self
    }
}

fn run(c: &Case) -> Decision {
    let all = agreements();
    let agreements = c.agreements.clone().unwrap_or(all);
    let sender = Party {
        ods: OdsCode::parse(c.sender.0).unwrap(),
        role: c.sender.1,
    };
    let to = recipient(c.to);
    let view = ResourceView::of(0, None, &resource(c.resource), &classifier());
    let request = DecisionRequest {
        sender: &sender,
        recipient: &to,
        purpose: c.purpose,
        at: c.at,
        agreements: &agreements,
        consents: &c.consents,
        break_glass_allowed: c.break_glass,
        is_pull: c.pull,
    };
    decide(&request, &[view])
}

fn retired_gp_agreement() -> Vec<Agreement> {
    let mut a = agreements();
    for x in &mut a {
        x.status = AgreementStatus::Retired;
    }
    a
}

#[test]
fn the_decision_matrix_holds() {
    let permit = |code: &str, who: Value| {
        consent(
            "active",
            "permit",
            json!({"securityLabel": label(code), "actor": who}),
        )
    };
    let cases = vec![
        // Rule 1: agreement absent, expired, not yet valid, retired, not covering.
        case("no agreement at all", GP, "patient", false, 1).agreements(vec![]),
        case("agreement expired", GP, "patient", false, 1).at(datetime!(2029-01-02 00:00 UTC)),
        case("agreement not yet valid", GP, "patient", false, 1)
            .at(datetime!(2025-12-31 00:00 UTC)),
        case("agreement retired", GP, "patient", false, 1).agreements(retired_gp_agreement()),
        case(
            "a GP the patient is not registered with",
            OTHER_GP,
            "med",
            false,
            1,
        ),
        case("a sender that is not a prison", GP, "med", false, 1).sender(OTHER_GP, Role::Gp),
        case(
            "an organisation with no agreement",
            "X12345",
            "patient",
            false,
            1,
        ),
        // Registered GP: classes and labels.
        case("GP gets the patient", GP, "patient", true, 0),
        case("GP gets a plain medication", GP, "med", true, 0),
        case("GP gets allergies", GP, "allergy", true, 0),
        case("GP gets the care plan", GP, "careplan", true, 0),
        case(
            "GP gets hepatitis C (not a sensitive class)",
            GP,
            "hepc",
            true,
            0,
        ),
        case("GP: alerts are outside the agreement", GP, "flag", false, 3),
        case(
            "GP: observations are outside the agreement",
            GP,
            "observation",
            false,
            3,
        ),
        case(
            "GP: unknown security label withheld",
            GP,
            "unknown-label",
            false,
            3,
        ),
        case(
            "GP: labelled ETH without consent",
            GP,
            "methadone-labelled",
            false,
            4,
        ),
        case(
            "GP: unlabelled methadone is labelled ETH from its code",
            GP,
            "methadone-unlabelled",
            false,
            4,
        ),
        case(
            "GP: ETH with an ETH permit for the GP",
            GP,
            "methadone-labelled",
            true,
            0,
        )
        .consents(vec![permit("ETH", ods_actor(GP))]),
        case(
            "GP: ETH with an ETH permit for every GP",
            GP,
            "methadone-unlabelled",
            true,
            0,
        )
        .consents(vec![permit("ETH", role_actor("gp"))]),
        case(
            "GP: ETH with an ETH permit for another organisation",
            GP,
            "methadone-labelled",
            false,
            4,
        )
        .consents(vec![permit("ETH", ods_actor(DRUG))]),
        case("GP: PSY without consent", GP, "schizophrenia", false, 4),
        case("GP: PSY with only an ETH permit", GP, "depot", false, 4)
            .consents(vec![permit("ETH", ods_actor(GP))]),
        case("GP: PSY with a PSY permit", GP, "depot", true, 0)
            .consents(vec![permit("PSY", ods_actor(GP))]),
        case("GP: HIV without consent", GP, "hiv", false, 4),
        case("GP: HIV with an HIV permit", GP, "hiv", true, 0)
            .consents(vec![permit("HIV", ods_actor(GP))]),
        case(
            "GP: STD is not permitted by the agreement",
            GP,
            "chlamydia",
            false,
            3,
        )
        .consents(vec![permit("STD", ods_actor(GP))]),
        case(
            "GP: SEX is not permitted by the agreement",
            GP,
            "sex",
            false,
            3,
        ),
        case(
            "GP: SDV is not permitted by the agreement",
            GP,
            "sdv",
            false,
            3,
        ),
        // Rule 2: custody-only content.
        case(
            "GP: custody-only resource withheld",
            GP,
            "custody-flag",
            false,
            2,
        ),
        case(
            "ICB: custody-only resource withheld",
            ICB,
            "custody-flag",
            false,
            2,
        ),
        case(
            "drug service: custody-only resource withheld",
            DRUG,
            "custody-flag",
            false,
            2,
        ),
        case(
            "receiving prison gets custody-only content",
            RECEIVING,
            "custody-flag",
            true,
            0,
        ),
        // Deny provisions by actor, class, period; withdrawal.
        case("deny for this GP withholds", GP, "med", false, 4).consents(vec![consent(
            "active",
            "deny",
            json!({"actor": ods_actor(GP)}),
        )]),
        case("deny for ICBs does not touch the GP", GP, "med", true, 0).consents(vec![consent(
            "active",
            "deny",
            json!({"actor": role_actor("icb")}),
        )]),
        case("deny by resource class withholds", GP, "med", false, 4).consents(vec![consent(
            "active",
            "deny",
            json!({"class": [{"system": consent::RESOURCE_TYPES, "code": "MedicationRequest"}]}),
        )]),
        case(
            "deny by resource class leaves other classes",
            GP,
            "allergy",
            true,
            0,
        )
        .consents(vec![consent(
            "active",
            "deny",
            json!({"class": [{"system": consent::RESOURCE_TYPES, "code": "MedicationRequest"}]}),
        )]),
        case("deny in force for its period", GP, "med", false, 4).consents(vec![consent(
            "active",
            "deny",
            json!({"period": {"start": "2026-11-01", "end": "2026-12-31"}}),
        )]),
        case("deny outside its period does nothing", GP, "med", true, 0).consents(vec![consent(
            "active",
            "deny",
            json!({"period": {"start": "2025-01-01", "end": "2025-12-31"}}),
        )]),
        case(
            "ETH permit whose period ended",
            GP,
            "methadone-labelled",
            false,
            4,
        )
        .consents(vec![consent(
            "active",
            "permit",
            json!({"securityLabel": label("ETH"), "period": {"end": "2026-10-01"}}),
        )]),
        case("withdrawn deny no longer applies", GP, "med", true, 0).consents(vec![consent(
            "inactive",
            "deny",
            json!({"actor": ods_actor(GP)}),
        )]),
        case(
            "withdrawn ETH permit no longer applies",
            GP,
            "methadone-labelled",
            false,
            4,
        )
        .consents(vec![consent(
            "inactive",
            "permit",
            json!({"securityLabel": label("ETH")}),
        )]),
        case(
            "deny-all with a nested permit for the GP shares with the GP",
            GP,
            "med",
            true,
            0,
        )
        .consents(vec![consent(
            "active",
            "deny",
            json!({"provision": [{"type": "permit", "actor": ods_actor(GP)}]}),
        )]),
        case(
            "deny-all with a nested permit for the GP withholds from the drug service",
            DRUG,
            "careplan",
            false,
            4,
        )
        .consents(vec![consent(
            "active",
            "deny",
            json!({"provision": [{"type": "permit", "actor": ods_actor(GP)}]}),
        )]),
        case("deny by purpose TREAT", GP, "med", false, 4).consents(vec![consent(
            "active",
            "deny",
            json!({"purpose": [{"system": super::ACT_REASON, "code": "TREAT"}]}),
        )]),
        // Drug service.
        case("drug service gets the care plan", DRUG, "careplan", true, 0),
        case(
            "drug service: methadone without consent",
            DRUG,
            "methadone-labelled",
            false,
            4,
        ),
        case(
            "drug service: methadone with an ETH permit",
            DRUG,
            "methadone-labelled",
            true,
            0,
        )
        .consents(vec![permit("ETH", ods_actor(DRUG))]),
        case(
            "drug service: problems are outside the agreement",
            DRUG,
            "hepc",
            false,
            3,
        ),
        case("drug service: PSY not permitted", DRUG, "depot", false, 3),
        // ICB.
        case("ICB gets the patient", ICB, "patient", true, 0),
        case("ICB gets medications", ICB, "med", true, 0),
        case(
            "ICB: ETH not permitted even with consent",
            ICB,
            "methadone-labelled",
            false,
            3,
        )
        .consents(vec![permit("ETH", role_actor("icb"))]),
        case(
            "ICB: problems are outside the agreement",
            ICB,
            "hepc",
            false,
            3,
        ),
        // prison-to-icb covers the release-area ICB (relationship), not every ICB (role).
        case(
            "an ICB that is not the release-area ICB gets nothing",
            OTHER_ICB,
            "patient",
            false,
            1,
        ),
        case(
            "an ICB that is not the release-area ICB gets no medication",
            OTHER_ICB,
            "med",
            false,
            1,
        ),
        // Receiving prison.
        case(
            "receiving prison gets STD content",
            RECEIVING,
            "chlamydia",
            true,
            0,
        ),
        case(
            "receiving prison gets methadone without consent",
            RECEIVING,
            "methadone-labelled",
            true,
            0,
        ),
        case("receiving prison gets alerts", RECEIVING, "flag", true, 0),
        case(
            "a patient's deny applies to a receiving prison too",
            RECEIVING,
            "med",
            false,
            4,
        )
        .consents(vec![consent(
            "active",
            "deny",
            json!({"actor": ods_actor(RECEIVING)}),
        )]),
        // Rule 5: break-glass.
        case(
            "ETREAT overrides a missing consent",
            GP,
            "methadone-labelled",
            true,
            5,
        )
        .emergency(true, true),
        case("ETREAT overrides a deny", GP, "med", true, 5)
            .emergency(true, true)
            .consents(vec![consent(
                "active",
                "deny",
                json!({"actor": ods_actor(GP)}),
            )]),
        case(
            "ETREAT with nothing to override is an ordinary share",
            GP,
            "med",
            true,
            0,
        )
        .emergency(true, true),
        case(
            "ETREAT not allowed for the client",
            GP,
            "methadone-labelled",
            false,
            5,
        )
        .emergency(false, true),
        case("ETREAT is pull only", GP, "methadone-labelled", false, 5).emergency(true, false),
        case(
            "ETREAT never overrides custody stripping",
            GP,
            "custody-flag",
            false,
            2,
        )
        .emergency(true, true),
        case(
            "ETREAT never overrides a missing agreement",
            OTHER_GP,
            "med",
            false,
            1,
        )
        .emergency(true, true),
        case(
            "ETREAT does not widen the agreement's classes",
            GP,
            "chlamydia",
            false,
            3,
        )
        .emergency(true, true),
    ];
    assert!(cases.len() >= 40, "the matrix has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let d = run(c);
        let r = &d.resources[0];
        if r.shared != c.expect_shared || r.rule != c.expect_rule {
            failures.push(format!(
                "{}: expected shared={} rule={}, got shared={} rule={} ({})",
                c.name, c.expect_shared, c.expect_rule, r.shared, r.rule, r.basis
            ));
        }
        if c.expect_rule == 5 && c.expect_shared {
            assert!(d.emergency, "{}: emergency must be flagged", c.name);
        }
        assert!(
            !r.basis.is_empty(),
            "{}: every verdict explains itself",
            c.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn shared_verdicts_name_the_agreement_version_and_the_consent_provision() {
    let c = case("x", GP, "methadone-labelled", true, 0).consents(vec![consent(
        "active",
        "permit",
        json!({"securityLabel": label("ETH"), "actor": ods_actor(GP)}),
    )]);
    let d = run(&c);
    assert_eq!(
        d.agreement,
        Some(("prison-to-registered-gp".to_string(), 1))
    );
    assert!(
        d.resources[0]
            .basis
            .contains("agreement prison-to-registered-gp v1"),
        "{}",
        d.resources[0].basis
    );
    assert!(
        d.resources[0]
            .basis
            .contains("Consent/c1/_history/1 Consent.provision"),
        "{}",
        d.resources[0].basis
    );
}

#[test]
fn a_consent_the_gateway_cannot_understand_is_refused_with_the_element_named() {
    let c = json!({"resourceType": "Consent", "status": "active",
        "provision": {"type": "deny", "actor": [{"reference": {"reference": "Practitioner/x"}}]}});
    let err = ConsentDirective::from_resource(&c, 1).unwrap_err();
    assert!(err.starts_with("Consent.provision.actor[0]"), "{err}");
    let c = json!({"resourceType": "Consent", "status": "maybe", "provision": {}});
    assert!(ConsentDirective::from_resource(&c, 1).is_err());
}

/// Each provision element the engine cannot evaluate, with the element the refusal must name.
fn unevaluable_provisions() -> Vec<(&'static str, Value, &'static str)> {
    let ods = |v: &str| json!({"system": crate::domain::systems::ODS_ORGANISATION, "value": v});
    vec![
        (
            "data",
            json!({"data": [{"meaning": "related", "reference": {"reference": "MedicationRequest/x"}}]}),
            "Consent.provision.data",
        ),
        (
            "code",
            json!({"code": [{"coding": [{"system": "http://snomed.info/sct", "code": "322696004"}]}]}),
            "Consent.provision.code",
        ),
        (
            "action",
            json!({"action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose"}]}]}),
            "Consent.provision.action",
        ),
        (
            "dataPeriod",
            json!({"dataPeriod": {"start": "2026-01-01"}}),
            "Consent.provision.dataPeriod",
        ),
        (
            "modifierExtension",
            json!({"modifierExtension": [{"url": "https://example.org/only-on-tuesdays", "valueBoolean": true}]}),
            "Consent.provision.modifierExtension",
        ),
        (
            "an unknown security label",
            json!({"securityLabel": [{"system": super::ACT_CODE, "code": "XYZ"}]}),
            "Consent.provision.securityLabel[0]",
        ),
        (
            "a class that is not a resource type",
            json!({"class": [{"system": "http://snomed.info/sct", "code": "363787002"}]}),
            "Consent.provision.class[0]",
        ),
        (
            "a misspelt resource type",
            json!({"class": [{"system": consent::RESOURCE_TYPES, "code": "MedicationRequests"}]}),
            "Consent.provision.class[0]",
        ),
        (
            "a partial start date",
            json!({"period": {"start": "2026-11"}}),
            "Consent.provision.period.start",
        ),
        (
            "a year as the end",
            json!({"period": {"end": "2027"}}),
            "Consent.provision.period.end",
        ),
        (
            "a date-time without a time zone",
            json!({"period": {"start": "2026-11-20T10:00:00"}}),
            "Consent.provision.period.start",
        ),
        (
            "provisions nested two levels deep",
            json!({"provision": [{"type": "permit", "actor": [{"reference": {"identifier": ods("A99001")}}],
                   "provision": [{"type": "deny"}]}]}),
            "Consent.provision.provision[0].provision",
        ),
        (
            "an element the engine does not know",
            json!({"colour": "blue"}),
            "Consent.provision.colour",
        ),
        (
            "actor given as an object, not a list",
            json!({"actor": {"reference": {"identifier": ods("A99001")}}}),
            "Consent.provision.actor",
        ),
    ]
}

#[test]
fn a_consent_provision_the_engine_cannot_evaluate_is_refused_naming_the_element() {
    let mut failures = Vec::new();
    for (what, extra, element) in unevaluable_provisions() {
        let mut provision = json!({"type": "deny"});
        for (k, v) in extra.as_object().unwrap() {
            provision[k] = v.clone();
        }
        let c = json!({"resourceType": "Consent", "id": "c1", "status": "active",
            "provision": provision});
        match ConsentDirective::from_resource(&c, 1) {
            Ok(_) => failures.push(format!("{what}: accepted, so it would be ignored")),
            Err(e) if !e.starts_with(&format!("{element}:")) => {
                failures.push(format!("{what}: the refusal should name {element}: {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // What the engine does evaluate still reads: full dates, date-times with a zone, one level of
    // nested exceptions, resource types, extensions.
    let c = json!({"resourceType": "Consent", "id": "c1", "status": "active",
        "provision": {"type": "deny", "extension": [{"url": "https://example.org/note", "valueString": "x"}],
            "period": {"start": "2026-11-01", "end": "2026-12-31T23:59:59+00:00"},
            "class": [{"system": consent::RESOURCE_TYPES, "code": "MedicationRequest"}],
            "provision": [{"type": "permit", "actor": ods_actor(GP)}]}});
    let d = ConsentDirective::from_resource(&c, 1).unwrap();
    assert_eq!(d.provisions.len(), 2);
    let c = json!({"resourceType": "Consent", "status": "active", "modifierExtension": [],
        "provision": {"type": "deny"}});
    let err = ConsentDirective::from_resource(&c, 1).unwrap_err();
    assert!(err.starts_with("Consent.modifierExtension:"), "{err}");
}

#[test]
fn sample_agreements_load_and_check() {
    let a = agreements();
    let ids: BTreeSet<&str> = a.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            "prison-to-drug-service",
            "prison-to-icb",
            "prison-to-prison",
            "prison-to-registered-gp"
        ])
    );
    let gp = a
        .iter()
        .find(|x| x.id == "prison-to-registered-gp")
        .unwrap();
    assert_eq!(
        gp.consent_required,
        BTreeSet::from([Label::Eth, Label::Psy, Label::Hiv])
    );
    let mut broken = gp.clone();
    broken.consent_required.insert(Label::Std);
    assert!(
        broken.check().is_err(),
        "consent_required must be within sensitive_permitted"
    );
}

fn sample() -> Value {
    serde_json::from_str(crate::demo::SAMPLE_RELEASE).unwrap()
}

fn decide_sample(to: &str, consents: &[ConsentDirective]) -> (Decision, Value, Vec<Removal>) {
    let doc = sample();
    let views = labels::views(&doc, &classifier());
    let agreements = agreements();
    let sender = Party {
        ods: OdsCode::parse(PRISON).unwrap(),
        role: Role::Prison,
    };
    let to = recipient(to);
    let request = DecisionRequest {
        sender: &sender,
        recipient: &to,
        purpose: Purpose::Treat,
        at: NOW,
        agreements: &agreements,
        consents,
        break_glass_allowed: false,
        is_pull: false,
    };
    let d = decide(&request, &views);
    let (copy, removals) = apply(&doc, &d);
    (d, copy, removals)
}

#[test]
fn no_custody_string_reaches_a_community_copy_in_any_of_its_three_forms() {
    for to in [GP, DRUG, ICB] {
        let (_, copy, removals) = decide_sample(to, &[]);
        let bytes = serde_json::to_string(&copy).unwrap();
        for secret in [
            "A1234BC",
            "HB2-3-014",
            "custody-cell-location",
            "not to share cell",
            "Id/prison-number",
        ] {
            assert!(!bytes.contains(secret), "{to}: {secret:?} leaked");
        }
        assert!(
            removals
                .iter()
                .any(|r| r.path == "Bundle.entry[1].resource.identifier[1]"),
            "{to}: {removals:?}"
        );
        assert!(
            removals
                .iter()
                .any(|r| r.path == "Bundle.entry[1].resource.extension[0]"),
            "{to}: {removals:?}"
        );
    }
    let (d, copy, removals) = decide_sample(RECEIVING, &[]);
    let bytes = serde_json::to_string(&copy).unwrap();
    assert!(
        bytes.contains("A1234BC")
            && bytes.contains("HB2-3-014")
            && bytes.contains("not to share cell")
    );
    assert!(removals.is_empty());
    assert_eq!(
        d.withheld().count(),
        0,
        "{:?}",
        d.withheld().collect::<Vec<_>>()
    );
}

#[test]
fn the_same_document_gives_each_recipient_its_own_copy() {
    let (gp, gp_copy, _) = decide_sample(GP, &[]);
    let (drug, drug_copy, _) = decide_sample(DRUG, &[]);
    let (icb, _, _) = decide_sample(ICB, &[]);
    let shared = |d: &Decision| {
        d.shared()
            .map(|r| r.reference.clone())
            .collect::<BTreeSet<_>>()
    };
    let meth = "MedicationRequest/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006".to_string();
    let hepc = "Condition/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1008".to_string();
    assert!(
        !shared(&gp).contains(&meth),
        "GP without consent gets no methadone"
    );
    assert!(shared(&gp).contains(&hepc));
    assert!(
        !shared(&drug).contains(&hepc),
        "the drug service gets no diagnoses"
    );
    assert!(!shared(&icb).contains(&hepc));
    assert_ne!(gp_copy, drug_copy);
    // With consent for the drug service, methadone reaches it.
    let permit = consent(
        "active",
        "permit",
        json!({"securityLabel": label("ETH"), "actor": ods_actor(DRUG)}),
    );
    let (drug2, copy2, _) = decide_sample(DRUG, &[permit]);
    assert!(shared(&drug2).contains(&meth));
    assert!(serde_json::to_string(&copy2).unwrap().contains("322696004"));
    // The Composition no longer points at what was withheld.
    let text = serde_json::to_string(&gp_copy).unwrap();
    assert!(
        !text.contains("urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006"),
        "dangling reference to withheld methadone"
    );
    assert!(text.contains("2.50"), "the dose survives as written");
}
