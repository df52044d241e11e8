//! Consent: the body reading, the patient's NHS number (`consents::patient_nhs_number`), the
//! directive the policy engine evaluates (`policy::ConsentDirective::from_resource`), the
//! prison Consent profile, and the evaluation of what a directive read permits or denies for
//! each resource of the sample document.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use throughcare::domain::{OdsCode, Role};
use throughcare::policy::consent::{ConsentContext, find_denial, find_permit};
use throughcare::policy::{ConsentDirective, Label, Purpose, ResourceView};

use crate::arb::{self, Mutated};
use crate::intake::VALIDATOR;
use crate::{fuzz, reached, settings};

fn coding(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

/// Consents that use every part of a provision the gateway reads.
static SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let base = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")]},
        "category": [{"coding": [coding("http://loinc.org", "59284-0")]}],
        "patient": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}},
        "dateTime": "2026-11-20T10:00:00+00:00",
        "policyRule": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN")]},
        "provision": {
            "type": "permit",
            "actor": [{
                "role": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")]},
                "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "X99001"}}
            }],
            "securityLabel": [coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "ETH")]
        }
    });
    let mut nested = base.clone();
    nested["id"] = json!("c-1");
    nested["provision"] = json!({
        "type": "deny",
        "period": {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01"},
        "provision": [
            {
                "actor": [{"reference": {"identifier": {
                    "system": throughcare::policy::consent::RECIPIENT_ROLE_SYSTEM, "value": "gp"}}}],
                "class": [coding(throughcare::policy::consent::RESOURCE_TYPES, "MedicationStatement")],
                "purpose": [coding(throughcare::policy::ACT_REASON, "TREAT")],
                "provision": [{"type": "deny", "securityLabel": [
                    coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY")]}]
            },
            {"purpose": [coding(throughcare::policy::ACT_REASON, "ETREAT")]}
        ]
    });
    let mut withdrawn = base.clone();
    withdrawn["status"] = json!("inactive");
    vec![base, nested, withdrawn]
});

/// The resources of the sample document, as policy sees them.
static VIEWS: LazyLock<Vec<ResourceView>> = LazyLock::new(|| {
    let classifier =
        throughcare::policy::Classifier::load_dir(&settings().policy.labels_dir).unwrap();
    let doc: Value =
        serde_json::from_str(include_str!("../../samples/release-bundle.json")).unwrap();
    doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| ResourceView::of(i, e["fullUrl"].as_str(), &e["resource"], &classifier))
        .collect()
});

#[derive(Debug, Clone)]
enum Input {
    Mutated(Mutated),
    Tree(Value),
}

fn input() -> BoxedStrategy<Input> {
    prop_oneof![
        9 => arb::mutated(SEEDS.len()).prop_map(Input::Mutated),
        1 => arb::json(5).prop_map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.insert("resourceType".into(), json!("Consent"));
            }
            Input::Tree(v)
        }),
    ]
    .boxed()
}

/// What recording a Consent does with it, short of the store.
pub fn consent_stages(consent: &Value) -> Result<(), TestCaseError> {
    reached("consent", "parsed");
    let nhs = throughcare::consents::patient_nhs_number(consent);
    if let Err(e) = &nhs {
        prop_assert_eq!(e.status(), 422);
    }
    match ConsentDirective::from_resource(consent, 1) {
        Ok(directive) => {
            reached("consent", "directive");
            let directives = [directive];
            let ods = OdsCode::parse("X99001").unwrap();
            for role in [Role::Gp, Role::Service] {
                for purpose in [Purpose::Treat, Purpose::EmergencyTreat] {
                    let cx = ConsentContext {
                        recipient_ods: &ods,
                        recipient_role: role,
                        purpose,
                        at: time::OffsetDateTime::now_utc(),
                    };
                    for view in VIEWS.iter() {
                        let _ = find_denial(&directives, view, &cx);
                        let _ = find_permit(&directives, Label::Eth, view, &cx);
                    }
                }
            }
        }
        Err(message) => prop_assert!(!message.is_empty()),
    }
    let profile = format!("{}prison-consent", throughcare::validate::PRISON_SD_BASE);
    let _ = VALIDATOR.validate(
        consent,
        Some(&profile),
        throughcare::validate::ProfileSet::Prison,
    );
    Ok(())
}

#[test]
fn fuzz_consent() {
    LazyLock::force(&VIEWS);
    fuzz("consent", input(), |input| {
        let bytes = match &input {
            Input::Mutated(m) => m.bytes(&SEEDS),
            Input::Tree(v) => serde_json::to_vec(v).unwrap(),
        };
        if let Some(consent) = crate::intake::read(&bytes)? {
            consent_stages(&consent)?;
        }
        Ok(())
    });
}
