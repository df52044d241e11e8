//! Sharing policy end to end: the intake preview, `POST /fhir/$sharing-decision` for each kind of
//! recipient, consent and its withdrawal, custody stripping, and the agreements admin API.
//! The rule-by-rule matrix lives in `src/policy/tests.rs`; these tests drive the real gateway.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::consent::{eth_permit_for, record_consent, withdraw_consent};
use crate::helpers::*;

const GP: &str = "A99001";
const DRUG_SERVICE: &str = "X99001";
const ICB: &str = "Q99";

const COMPOSITION: &str = "Composition/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1001";
const PATIENT: &str = "Patient/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002";
const METHADONE: &str = "MedicationRequest/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006";
const RAMIPRIL: &str = "MedicationRequest/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1007";
const HEPATITIS_C: &str = "Condition/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1008";
const ALLERGY: &str = "AllergyIntolerance/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1009";
const CARE_PLAN: &str = "CarePlan/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1010";
const CUSTODY_FLAG: &str = "Flag/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1011";

/// Strings that exist only in custody-only content of the sample.
const CUSTODY_STRINGS: [&str; 5] = [
    "A1234BC",
    "HB2-3-014",
    "custody-cell-location",
    "not to share cell",
    "Id/prison-number",
];

const PRISON_NUMBER_PATH: &str = "Bundle.entry[1].resource.identifier[1]";
const CELL_LOCATION_PATH: &str = "Bundle.entry[1].resource.extension[0]";

/// The verdict on one resource, as `$sharing-decision` reports it.
#[derive(Debug, Clone)]
struct ResourceVerdict {
    shared: bool,
    rule: i64,
    basis: String,
    labels: Vec<String>,
}

/// A `$sharing-decision` answer for one recipient.
#[derive(Debug)]
struct Verdict {
    recipient: String,
    agreement: Option<String>,
    refusal: Option<String>,
    emergency: bool,
    resources: BTreeMap<String, ResourceVerdict>,
    removals: Vec<(String, String)>,
}

impl Verdict {
    fn resource(&self, reference: &str) -> &ResourceVerdict {
        self.resources
            .get(reference)
            .unwrap_or_else(|| panic!("{reference} is not in the decision: {self:#?}"))
    }

    fn assert_shared(&self, reference: &str) {
        let r = self.resource(reference);
        assert!(
            r.shared,
            "{reference} should be shared with {}: {r:?}",
            self.recipient
        );
        assert_eq!(r.rule, 0, "{reference}: {r:?}");
        assert!(
            !r.basis.is_empty(),
            "{reference}: every verdict explains itself"
        );
    }

    fn assert_withheld(&self, reference: &str, rule: i64) -> &ResourceVerdict {
        let r = self.resource(reference);
        assert!(
            !r.shared,
            "{reference} should be withheld from {}: {r:?}",
            self.recipient
        );
        assert_eq!(r.rule, rule, "{reference} for {}: {r:?}", self.recipient);
        assert!(
            !r.basis.is_empty(),
            "{reference}: every verdict explains itself"
        );
        r
    }

    fn removal_paths(&self) -> Vec<&str> {
        self.removals.iter().map(|(p, _)| p.as_str()).collect()
    }
}

fn part<'a>(parts: &'a [Value], name: &str) -> Option<&'a Value> {
    parts.iter().find(|p| p["name"] == name)
}

/// Reads a `$sharing-decision` Parameters answer about one recipient.
fn verdict(parameters: &Value) -> Verdict {
    assert_eq!(parameters["resourceType"], "Parameters", "{parameters}");
    let params = parameters["parameter"].as_array().expect("parameters");
    fn named<'a>(params: &'a [Value], name: &'static str) -> impl Iterator<Item = &'a Value> {
        params.iter().filter(move |p| p["name"] == name)
    }
    let recipients: Vec<&Value> = named(params, "recipient").collect();
    assert_eq!(recipients.len(), 1, "one recipient: {parameters}");
    let mut resources = BTreeMap::new();
    for r in named(params, "resource") {
        let parts = r["part"].as_array().expect("resource parts");
        let reference = part(parts, "reference").unwrap()["valueString"]
            .as_str()
            .unwrap()
            .to_string();
        let verdict = ResourceVerdict {
            shared: part(parts, "shared").unwrap()["valueBoolean"]
                .as_bool()
                .unwrap(),
            rule: part(parts, "rule").unwrap()["valueInteger"]
                .as_i64()
                .unwrap(),
            basis: part(parts, "basis").unwrap()["valueString"]
                .as_str()
                .unwrap()
                .to_string(),
            labels: parts
                .iter()
                .filter(|p| p["name"] == "label")
                .map(|p| p["valueCode"].as_str().unwrap().to_string())
                .collect(),
        };
        assert!(
            resources.insert(reference.clone(), verdict).is_none(),
            "{reference} is listed once"
        );
    }
    let removals = named(params, "removal")
        .map(|r| {
            let parts = r["part"].as_array().expect("removal parts");
            (
                part(parts, "path").unwrap()["valueString"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                part(parts, "reason").unwrap()["valueString"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    Verdict {
        recipient: recipients[0]["valueIdentifier"]["value"]
            .as_str()
            .unwrap()
            .to_string(),
        agreement: named(params, "agreement")
            .next()
            .map(|p| p["valueString"].as_str().unwrap().to_string()),
        refusal: named(params, "refusal")
            .next()
            .map(|p| p["valueString"].as_str().unwrap().to_string()),
        emergency: named(params, "emergency")
            .next()
            .and_then(|p| p["valueBoolean"].as_bool())
            .expect("emergency is always stated"),
        resources,
        removals,
    }
}

/// `$sharing-decision` parameters for the sample patient and `recipient`.
fn decision_request(recipient: &str) -> Value {
    json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueIdentifier": {
                "system": "https://fhir.nhs.uk/Id/nhs-number", "value": SAMPLE_NHS_NUMBER}},
            {"name": "recipient", "valueIdentifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": recipient}},
            {"name": "purpose", "valueCode": "TREAT"}
        ]
    })
}

fn with_document(mut params: Value, document: &str) -> Value {
    let document: Value = serde_json::from_str(document).unwrap();
    params["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "document", "resource": document}));
    params
}

/// Asks `$sharing-decision` as the sample client `who`; returns the status and the body.
async fn ask(app: &TestApp, who: &str, token: &str, params: &Value) -> (u16, Value, String) {
    let response = app
        .post_json(who, token, "/fhir/$sharing-decision", params)
        .await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the body should be JSON ({e}): {text}"));
    (status, body, text)
}

/// Asks for the decision on the stored document for `recipient`, asserting 200.
async fn decide(app: &TestApp, who: &str, token: &str, recipient: &str) -> (Verdict, String) {
    let (status, body, text) = ask(app, who, token, &decision_request(recipient)).await;
    assert_eq!(status, 200, "{body}");
    (verdict(&body), text)
}

/// Posts a uniquely identified sample document as the prison; returns the document id and the
/// OperationOutcome.
async fn post_sample(app: &TestApp, prison_token: &str) -> (String, Value, String) {
    let (release, _) = unique_release();
    let response = app.post_bundle(prison_token, FHIR_JSON, release).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    let location = location_of(&headers);
    let id = location.rsplit('/').next().unwrap().to_string();
    (id, serde_json::from_str(&text).unwrap(), text)
}

/// The sample release with no registered GP: routing sends it to the ICB of the release area.
fn release_without_gp() -> String {
    release_tree(|t| {
        t["entry"][1]["resource"]
            .as_object_mut()
            .unwrap()
            .remove("generalPractitioner");
    })
}

/// Routes a release in Bristol (postcode area BS) with no GP to the sample ICB, as
/// throughcare.toml does.
fn bristol_icb(settings: &mut throughcare::config::Settings) {
    settings.policy.icb_by_postcode.insert(
        "BS".into(),
        throughcare::domain::OdsCode::parse(ICB).unwrap(),
    );
}

/// The decision for the sample ICB on the sample released with no GP (the ICB is then the
/// release-area ICB), asked by the prison that wrote it.
async fn release_area_icb_verdict(app: &TestApp, prison: &str) -> (Verdict, String) {
    // Only the patient's current prison is answered: it has sent the patient's document.
    let document = release_without_gp();
    let status = app
        .post_bundle(prison, FHIR_JSON, document.clone())
        .await
        .status()
        .as_u16();
    assert!(status == 201 || status == 200, "{status}");
    let params = with_document(decision_request(ICB), &document);
    let (status, body, text) = ask(app, "prison", prison, &params).await;
    assert_eq!(status, 200, "{body}");
    (verdict(&body), text)
}

fn assert_no_custody_string(what: &str, text: &str) {
    for secret in CUSTODY_STRINGS {
        assert!(!text.contains(secret), "{what}: {secret:?} leaked: {text}");
    }
}

fn issue_texts(outcome: &Value) -> Vec<(String, String, Vec<String>)> {
    issues(outcome)
        .iter()
        .map(|i| {
            (
                i["severity"].as_str().unwrap_or_default().to_string(),
                i["diagnostics"].as_str().unwrap_or_default().to_string(),
                i["expression"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect(),
            )
        })
        .collect()
}

fn detail(entry: &throughcare::audit::AuditEntry) -> Value {
    serde_json::from_str(&entry.detail).expect("detail is JSON")
}

// ---------------------------------------------------------------------------------------------
// (1) The intake preview.

#[tokio::test]
async fn intake_outcome_names_each_recipient_and_each_withheld_resource_with_its_rule() {
    let mut app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (id, outcome, text) = post_sample(&app, &token).await;
    let issues = issue_texts(&outcome);
    let has = |severity: &str, needle: &str| {
        issues
            .iter()
            .any(|(s, d, _)| s == severity && d.contains(needle))
    };

    assert!(
        has(
            "information",
            "Recipient A99001 (RegisteredGp) under agreement prison-to-registered-gp v1: 9 resources shared, 3 withheld, 2 elements removed"
        ),
        "{outcome}"
    );
    assert!(
        has(
            "information",
            "Recipient X99001 (CarePlanPerformer) under agreement prison-to-drug-service v1: 8 resources shared, 4 withheld, 2 elements removed"
        ),
        "{outcome}"
    );
    // No ICB: the patient has a GP.
    assert!(!text.contains("Q99"), "{outcome}");

    let withheld = |ods: &str, reference: &str, rule: u8| {
        let needle = format!("Withheld from {ods}: {reference} (rule {rule})");
        issues
            .iter()
            .find(|(s, d, _)| s == "warning" && d.contains(&needle))
            .unwrap_or_else(|| panic!("no warning {needle:?} in {outcome}"))
            .2
            .clone()
    };
    assert_eq!(
        withheld(GP, METHADONE, 4),
        vec!["Bundle.entry[5].resource".to_string()]
    );
    assert_eq!(
        withheld(GP, CUSTODY_FLAG, 2),
        vec!["Bundle.entry[10].resource".to_string()]
    );
    withheld(DRUG_SERVICE, METHADONE, 4);
    withheld(DRUG_SERVICE, HEPATITIS_C, 3);
    withheld(DRUG_SERVICE, CUSTODY_FLAG, 2);
    // The opiate-treatment care plan is ETH by its words, though uncoded and unlabelled: no
    // recipient without the patient's ETH consent receives it.
    withheld(GP, CARE_PLAN, 4);
    withheld(DRUG_SERVICE, CARE_PLAN, 4);
    assert!(
        !issues
            .iter()
            .any(|(_, d, _)| d.contains(&format!("Withheld from {GP}: {HEPATITIS_C}"))),
        "the GP receives the hepatitis C diagnosis: {outcome}"
    );
    assert_eq!(
        issues
            .iter()
            .filter(|(s, d, _)| s == "warning" && d.starts_with("Withheld from"))
            .count(),
        7,
        "{outcome}"
    );
    // The explanation to the sender names no custody content either (only references).
    assert!(
        !text.contains("A1234BC") && !text.contains("HB2-3-014"),
        "{text}"
    );

    // Each preview decision is audited with the agreement version it used.
    app.stop().await;
    let entries = app.audit_entries().await;
    let previews: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "sharing-decided" && detail(e)["context"] == "intake-preview")
        .collect();
    assert_eq!(previews.len(), 2, "{previews:?}");
    for e in &previews {
        let d = detail(e);
        let entities: Vec<String> = serde_json::from_str(&e.entities).unwrap();
        assert_eq!(entities, vec![format!("Bundle/{id}")]);
        assert_eq!(e.nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
        let expected = match d["recipient"].as_str() {
            Some(GP) => "prison-to-registered-gp",
            Some(DRUG_SERVICE) => "prison-to-drug-service",
            other => panic!("unexpected recipient {other:?}"),
        };
        assert_eq!(
            d["decision"]["agreement"],
            json!({"id": expected, "version": 1})
        );
        assert_eq!(
            d["decision"]["resources"].as_array().unwrap().len(),
            12,
            "every resource is explained: {d}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (2) One document, three recipients, three different verdicts.

#[tokio::test]
async fn the_same_document_is_filtered_differently_for_the_gp_the_drug_service_and_the_icb() {
    let app = spawn_app_with(bristol_icb).await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;

    // The registered GP: problems yes; ETH only with consent (there is none); never custody.
    let (gp, _) = decide(&app, "prison", &prison, GP).await;
    assert_eq!(gp.recipient, GP);
    assert_eq!(gp.agreement.as_deref(), Some("prison-to-registered-gp|1"));
    assert_eq!(gp.refusal, None);
    assert!(!gp.emergency);
    assert_eq!(gp.resources.len(), 12, "{gp:#?}");
    for r in [COMPOSITION, PATIENT, RAMIPRIL, HEPATITIS_C, ALLERGY] {
        gp.assert_shared(r);
    }
    let plan = gp.assert_withheld(CARE_PLAN, 4);
    assert!(
        plan.labels.contains(&"ETH".to_string())
            && plan.basis.contains("the term 'opiate substitution'"),
        "the decision names the term that labelled it: {plan:?}"
    );
    assert!(
        gp.resource(HEPATITIS_C)
            .basis
            .contains("agreement prison-to-registered-gp v1 permits the class 'problems'"),
        "{:?}",
        gp.resource(HEPATITIS_C)
    );
    let meth = gp.assert_withheld(METHADONE, 4);
    assert!(meth.labels.contains(&"ETH".to_string()), "{meth:?}");
    assert!(
        meth.basis.contains("ETH") && meth.basis.contains("explicit consent"),
        "{meth:?}"
    );
    gp.assert_withheld(CUSTODY_FLAG, 2);
    assert!(
        gp.resource(CUSTODY_FLAG)
            .labels
            .contains(&"custody-only".to_string())
    );

    // The drug service: no problems class (rule 3); ETH with consent only (rule 4).
    let (drug, _) = decide(&app, "prison", &prison, DRUG_SERVICE).await;
    assert_eq!(drug.agreement.as_deref(), Some("prison-to-drug-service|1"));
    for r in [COMPOSITION, PATIENT, RAMIPRIL, ALLERGY] {
        drug.assert_shared(r);
    }
    drug.assert_withheld(CARE_PLAN, 4);
    let hepc = drug.assert_withheld(HEPATITIS_C, 3);
    assert!(hepc.basis.contains("'problems'"), "{hepc:?}");
    drug.assert_withheld(METHADONE, 4);
    drug.assert_withheld(CUSTODY_FLAG, 2);

    // The ICB: prison-to-icb covers the ICB of the release area only (a relationship routing
    // establishes), never every ICB by role. The patient has a GP, so this document has no
    // release-area ICB and the ICB gets nothing (rule 1).
    let (other_icb, _) = decide(&app, "prison", &prison, ICB).await;
    assert_eq!(other_icb.agreement, None, "{other_icb:#?}");
    assert!(
        other_icb
            .resources
            .values()
            .all(|r| !r.shared && r.rule == 1),
        "{other_icb:#?}"
    );

    // Released with no GP, the ICB is the release-area ICB. Core, medications, allergies and
    // care plan; no problems; no sensitive class at all, so the methadone is outside the
    // agreement (rule 3).
    let (icb, _) = release_area_icb_verdict(&app, &prison).await;
    assert_eq!(icb.agreement.as_deref(), Some("prison-to-icb|2"));
    for r in [COMPOSITION, PATIENT, RAMIPRIL, ALLERGY] {
        icb.assert_shared(r);
    }
    icb.assert_withheld(CARE_PLAN, 3);
    icb.assert_withheld(HEPATITIS_C, 3);
    let meth = icb.assert_withheld(METHADONE, 3);
    assert!(
        meth.basis
            .contains("agreement prison-to-icb v2 does not permit ETH content"),
        "{meth:?}"
    );
    icb.assert_withheld(CUSTODY_FLAG, 2);

    let shared = |v: &Verdict| {
        v.resources
            .iter()
            .filter(|(_, r)| r.shared)
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(shared(&gp), shared(&drug));
    assert_eq!(shared(&gp).len(), 9);
    assert_eq!(shared(&drug).len(), 8);
    assert_eq!(shared(&icb).len(), 8);
}

#[tokio::test]
async fn an_organisation_no_agreement_covers_is_refused_everything_under_rule_1() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;
    // Another GP practice: not the registered GP, so no agreement covers it.
    let (other, text) = decide(&app, "prison", &prison, "A99999").await;
    assert_eq!(other.agreement, None, "{other:#?}");
    let refusal = other.refusal.as_deref().expect("a refusal");
    assert!(refusal.contains("no active agreement"), "{refusal}");
    assert!(
        refusal.contains("prison-to-registered-gp v1 does not cover the recipient"),
        "the agreements considered are named with their versions: {refusal}"
    );
    assert_eq!(other.resources.len(), 12);
    for (reference, r) in &other.resources {
        assert!(!r.shared, "{reference}: {r:?}");
        assert_eq!(r.rule, 1, "{reference}: {r:?}");
    }
    // Nothing is shared, so no element-level removal is needed; no custody string in the answer.
    assert_no_custody_string("A99999 decision", &text);
}

// ---------------------------------------------------------------------------------------------
// (3) Consent: a permit, its withdrawal, and a deny provision.

#[tokio::test]
async fn a_consent_permit_shares_the_methadone_and_its_withdrawal_removes_it_from_later_reads() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;

    let (before, _) = decide(&app, "prison", &prison, DRUG_SERVICE).await;
    before.assert_withheld(METHADONE, 4);

    let consent = eth_permit_for(DRUG_SERVICE);
    let id = record_consent(&app, &prison, &consent).await;
    let (permitted, _) = decide(&app, "prison", &prison, DRUG_SERVICE).await;
    permitted.assert_shared(METHADONE);
    let basis = &permitted.resource(METHADONE).basis;
    assert!(
        basis.contains(&format!(
            "ETH permitted by Consent/{id}/_history/1 Consent.provision"
        )),
        "{basis}"
    );
    assert!(
        basis.contains("agreement prison-to-drug-service v1"),
        "{basis}"
    );
    // The permit is for the drug service only: the GP still does not get the methadone.
    let (gp, _) = decide(&app, "prison", &prison, GP).await;
    gp.assert_withheld(METHADONE, 4);
    // And consent never reopens a class outside the agreement.
    permitted.assert_withheld(HEPATITIS_C, 3);

    let version = withdraw_consent(&app, &prison, &id, &consent).await;
    assert_eq!(version, "2");
    let (after, _) = decide(&app, "prison", &prison, DRUG_SERVICE).await;
    let meth = after.assert_withheld(METHADONE, 4);
    assert!(
        !meth.basis.contains("Consent/"),
        "a withdrawn consent decides nothing: {meth:?}"
    );
    after.assert_shared(RAMIPRIL);
}

#[tokio::test]
async fn a_deny_provision_for_the_gp_withholds_every_resource_from_the_gp_only() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;
    let mut deny = eth_permit_for(GP);
    deny["provision"]["type"] = json!("deny");
    deny["provision"]
        .as_object_mut()
        .unwrap()
        .shift_remove("securityLabel");
    let id = record_consent(&app, &prison, &deny).await;

    let (gp, _) = decide(&app, "prison", &prison, GP).await;
    assert_eq!(gp.agreement.as_deref(), Some("prison-to-registered-gp|1"));
    for (reference, r) in &gp.resources {
        assert!(!r.shared, "{reference}: {r:?}");
        if reference == CUSTODY_FLAG {
            assert_eq!(
                r.rule, 2,
                "custody content is decided before consent: {r:?}"
            );
        } else {
            assert_eq!(r.rule, 4, "{reference}: {r:?}");
            assert!(
                r.basis.contains(&format!(
                    "the patient's consent denies it (Consent/{id}/_history/1 Consent.provision)"
                )),
                "{reference}: {r:?}"
            );
        }
    }
    // The drug service is not named in the denial.
    let (drug, _) = decide(&app, "prison", &prison, DRUG_SERVICE).await;
    drug.assert_shared(RAMIPRIL);
    drug.assert_shared(PATIENT);
}

// ---------------------------------------------------------------------------------------------
// (4) Custody-only content.

#[tokio::test]
async fn custody_elements_are_removed_for_every_community_recipient_and_never_echoed() {
    let app = spawn_app_with(bristol_icb).await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;
    for recipient in [GP, DRUG_SERVICE, ICB] {
        // The ICB receives only releases with no GP (as the release-area ICB).
        let (v, text) = if recipient == ICB {
            release_area_icb_verdict(&app, &prison).await
        } else {
            decide(&app, "prison", &prison, recipient).await
        };
        let paths = v.removal_paths();
        assert!(
            paths.contains(&PRISON_NUMBER_PATH),
            "{recipient}: {paths:?}"
        );
        assert!(
            paths.contains(&CELL_LOCATION_PATH),
            "{recipient}: {paths:?}"
        );
        assert_eq!(paths.len(), 2, "{recipient}: {paths:?}");
        let reasons: Vec<&str> = v.removals.iter().map(|(_, r)| r.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("prison number")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("custody-only extension")),
            "{reasons:?}"
        );
        v.assert_withheld(CUSTODY_FLAG, 2);
        // The Patient itself is shared, stripped.
        v.assert_shared(PATIENT);
        // The explanation names paths, never the values.
        assert_no_custody_string(recipient, &text);
    }
}

// ---------------------------------------------------------------------------------------------
// (5) `$sharing-decision` refusals, roles and audit.

async fn assert_decision_refused(
    app: &TestApp,
    token: &str,
    params: Value,
    status: u16,
    needle: &str,
) {
    let (got, body, _) = ask(app, "prison", token, &params).await;
    assert_eq!(got, status, "{body}");
    assert!(
        diagnostics(&body).contains(needle),
        "expected {needle:?} in {body}"
    );
}

fn without(params: &Value, name: &str) -> Value {
    let mut p = params.clone();
    p["parameter"]
        .as_array_mut()
        .unwrap()
        .retain(|x| x["name"] != name);
    p
}

#[tokio::test]
async fn sharing_decision_refuses_missing_or_wrong_parameters_with_422() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;
    let good = decision_request(GP);

    assert_decision_refused(&app, &prison, without(&good, "patient"), 422, "'patient'").await;
    assert_decision_refused(
        &app,
        &prison,
        without(&good, "recipient"),
        422,
        "'recipient'",
    )
    .await;
    let mut bad_nhs = good.clone();
    bad_nhs["parameter"][0] = json!({"name": "patient", "valueString": "9990000019"});
    assert_decision_refused(&app, &prison, bad_nhs, 422, "NHS number is not valid").await;

    // A document about another patient.
    let other = release_tree(|b| {
        b["entry"][1]["resource"]["identifier"][0]["value"] = json!("9990000026");
    });
    assert_decision_refused(
        &app,
        &prison,
        with_document(good.clone(), &other),
        422,
        "another patient",
    )
    .await;

    // Not a Parameters resource at all.
    assert_decision_refused(
        &app,
        &prison,
        json!({"resourceType": "Bundle"}),
        422,
        "Parameters",
    )
    .await;

    // Break-glass is for pulls only.
    let mut emergency = good.clone();
    emergency["parameter"][2] = json!({"name": "purpose", "valueCode": "ETREAT"});
    assert_decision_refused(&app, &prison, emergency, 422, "ETREAT").await;

    // The patient may be given as a plain string too.
    let mut plain = good.clone();
    plain["parameter"][0] = json!({"name": "patient", "valueString": SAMPLE_NHS_NUMBER});
    let (status, body, _) = ask(&app, "prison", &prison, &plain).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sharing_decision_without_a_stored_or_given_document_is_not_found() {
    let app = spawn_app().await;
    // IG asks: nothing is stored for the patient.
    let auditor = app.token_for("auditor").await;
    let (status, body, _) = ask(&app, "auditor", &auditor, &decision_request(GP)).await;
    assert_eq!(status, 404, "{body}");
    assert_outcome_code(&body, "GW-NOT-FOUND");
    // A prison that does not hold the patient is not told even that.
    let prison = app.token_for("prison").await;
    let (status, body, _) = ask(&app, "prison", &prison, &decision_request(GP)).await;
    assert_eq!(status, 403, "{body}");
    assert_outcome_code(&body, "GW-CUSTODY-02");

    // With the document given, nothing needs to be stored.
    let (release, _) = unique_release();
    let (status, body, _) = ask(
        &app,
        "auditor",
        &auditor,
        &with_document(decision_request(GP), &release),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let gp = verdict(&body);
    assert_eq!(gp.agreement.as_deref(), Some("prison-to-registered-gp|1"));
    gp.assert_shared(HEPATITIS_C);
    gp.assert_withheld(METHADONE, 4);
}

#[tokio::test]
async fn sharing_decision_about_another_recipient_is_refused_to_a_gp_and_to_a_drug_service() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    post_sample(&app, &prison).await;
    for (who, about) in [("gp", DRUG_SERVICE), ("drug-service", GP)] {
        let token = app.token_for(who).await;
        let (status, body, _) = ask(&app, who, &token, &decision_request(about)).await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_outcome_code(&body, "GW-CUSTODY-02");
    }
    let response = app
        .send_as(
            reqwest::Method::POST,
            "prison",
            None,
            "/fhir/$sharing-decision",
            FHIR_JSON,
            decision_request(GP).to_string(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn sharing_decision_is_audited_with_its_explanation() {
    let mut app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let (id, _, _) = post_sample(&app, &prison).await;
    let (gp, _) = decide(&app, "prison", &prison, GP).await;
    assert_eq!(gp.agreement.as_deref(), Some("prison-to-registered-gp|1"));
    let (status, _, _) = ask(
        &app,
        "prison",
        &prison,
        &without(&decision_request(GP), "recipient"),
    )
    .await;
    assert_eq!(status, 422);
    app.stop().await;

    let entries = app.audit_entries().await;
    let decided: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "sharing-decided" && detail(e)["context"] == "sharing-decision")
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    let e = decided[0];
    let d = detail(e);
    assert_eq!(e.actor_client.as_deref(), Some("prison"));
    assert_eq!(e.nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
    let entities: Vec<String> = serde_json::from_str(&e.entities).unwrap();
    assert_eq!(
        entities,
        vec![format!("Bundle/{id}")],
        "the stored document"
    );
    assert_eq!(d["recipient"], GP);
    assert_eq!(d["recipientRole"], "gp");
    assert_eq!(d["emergency"], false);
    assert_eq!(
        d["decision"]["agreement"],
        json!({"id": "prison-to-registered-gp", "version": 1})
    );
    let resources = d["decision"]["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 12);
    let meth = resources
        .iter()
        .find(|r| r["reference"] == METHADONE)
        .unwrap();
    assert_eq!(meth["shared"], false);
    assert_eq!(meth["rule"], 4);
    assert!(meth["basis"].as_str().is_some_and(|b| !b.is_empty()));
    assert_no_custody_string("audit detail", &e.detail);

    let rejected: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "input-rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        detail(rejected[0])["endpoint"],
        "POST /fhir/$sharing-decision"
    );
}

// ---------------------------------------------------------------------------------------------
// (6) The agreements admin API.

async fn read_agreement(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, _, body) = status_and_json(
        app.get_as("icb", token, &format!("/admin/agreements/{id}"), &[])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// PUTs an agreement as the gateway operator (`admin`, the only role that writes them).
async fn put_agreement(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let id = body["id"].as_str().unwrap();
    let response = app
        .send_as(
            reqwest::Method::PUT,
            "admin",
            Some(token),
            &format!("/admin/agreements/{id}"),
            "application/json",
            body.to_string(),
        )
        .await;
    let (status, _, body) = status_and_json(response).await;
    (status, body)
}

#[tokio::test]
async fn agreements_are_listed_for_the_icb_and_refused_to_a_prison() {
    let app = spawn_app().await;
    let icb = app.token_for("icb").await;
    let (status, _, body) =
        status_and_json(app.get_as("icb", &icb, "/admin/agreements", &[]).await).await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<&str> = body["agreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![
            "prison-to-drug-service",
            "prison-to-icb",
            "prison-to-prison",
            "prison-to-registered-gp"
        ]
    );
    let gp = body["agreements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "prison-to-registered-gp")
        .unwrap();
    assert_eq!(gp["version"], 1);
    assert_eq!(gp["status"], "active");
    assert_eq!(gp["consent_required"], json!(["ETH", "PSY", "HIV"]));

    let prison = app.token_for("prison").await;
    for path in ["/admin/agreements", "/admin/agreements/prison-to-icb"] {
        let (status, _, outcome) =
            status_and_json(app.get_as("prison", &prison, path, &[]).await).await;
        assert_eq!(status, 403, "{path}: {outcome}");
        assert_outcome_code(&outcome, "GW-AUTH-04");
    }
    let (status, _, _) = status_and_json(
        app.get_as("icb", &icb, "/admin/agreements/no-such-agreement", &[])
            .await,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn agreement_versions_are_put_never_edited_in_place_and_audited() {
    let mut app = spawn_app_with(bristol_icb).await;
    let icb = app.token_for("icb").await;
    let admin = app.token_for("admin").await;
    let read = read_agreement(&app, &icb, "prison-to-icb").await;
    assert_eq!(read["id"], "prison-to-icb");
    let versions = read["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{read}");
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["status"], "active");
    assert_eq!(versions[0]["recordedBy"], "agreement-file");
    assert_eq!(read["current"]["version"], 2);
    let v2 = read["current"]["agreement"].clone();
    assert_eq!(v2["version"], 2, "{v2}");
    assert_eq!(
        v2["data_classes"],
        json!(["core", "medications", "allergies", "care-plan"])
    );
    assert_eq!(
        v2["recipients"],
        json!([{"relationship": "release-area-icb"}])
    );

    // Version 3 adds the problems class.
    let mut v3 = v2.clone();
    v3["version"] = json!(3);
    v3["data_classes"] = json!(["core", "medications", "problems", "allergies", "care-plan"]);
    let (status, body) = put_agreement(&app, &admin, &v3).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["versionBefore"], 2, "{body}");
    assert_eq!(body["versionAfter"], 3, "{body}");
    assert_eq!(body["stored"], true);

    // The same version again, unchanged: a no-op.
    let (status, body) = put_agreement(&app, &admin, &v3).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], false);

    // The same version with other content: versions are never edited in place.
    let mut edited = v3.clone();
    edited["title"] = json!("Edited in place");
    let (status, body) = put_agreement(&app, &admin, &edited).await;
    assert_eq!(status, 409, "{body}");

    // An older version.
    let mut older = v2.clone();
    older["title"] = json!("Older");
    let (status, body) = put_agreement(&app, &admin, &older).await;
    assert_eq!(status, 422, "{body}");
    assert!(diagnostics(&body).contains("older"), "{body}");

    // An inconsistent agreement (consent for a label it does not permit at all).
    let mut inconsistent = v3.clone();
    inconsistent["version"] = json!(4);
    inconsistent["consent_required"] = json!(["ETH"]);
    let (status, body) = put_agreement(&app, &admin, &inconsistent).await;
    assert_eq!(status, 422, "{body}");

    // A body for another agreement than the URL's.
    let response = app
        .send_as(
            reqwest::Method::PUT,
            "admin",
            Some(&admin),
            "/admin/agreements/prison-to-prison",
            "application/json",
            v3.to_string(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);

    // The history shows both versions; version 3 is in force.
    let read = read_agreement(&app, &icb, "prison-to-icb").await;
    let versions: Vec<i64> = read["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 3], "{read}");
    assert_eq!(read["current"]["agreement"], v3);
    assert_eq!(read["current"]["recordedBy"], "admin");

    // Decisions name the version they used: the release-area ICB now receives the hepatitis C
    // diagnosis.
    let prison = app.token_for("prison").await;
    let (icb_verdict, _) = release_area_icb_verdict(&app, &prison).await;
    assert_eq!(icb_verdict.agreement.as_deref(), Some("prison-to-icb|3"));
    icb_verdict.assert_shared(HEPATITIS_C);
    assert!(
        icb_verdict
            .resource(HEPATITIS_C)
            .basis
            .contains("agreement prison-to-icb v3"),
        "{icb_verdict:#?}"
    );

    // Neither a prison nor an ICB may change agreements.
    for who in ["prison", "icb"] {
        let token = app.token_for(who).await;
        let response = app
            .send_as(
                reqwest::Method::PUT,
                who,
                Some(&token),
                "/admin/agreements/prison-to-icb",
                "application/json",
                v3.to_string(),
            )
            .await;
        assert_eq!(response.status().as_u16(), 403, "{who}");
    }

    app.stop().await;
    let entries = app.audit_entries().await;
    let changes: Vec<Value> = entries
        .iter()
        .filter(|e| e.action == "agreement-changed")
        .map(detail)
        .filter(|d| d["agreement"] == "prison-to-icb")
        .collect();
    assert_eq!(
        changes,
        vec![
            json!({"agreement": "prison-to-icb", "versionBefore": null, "versionAfter": 2, "status": "active"}),
            json!({"agreement": "prison-to-icb", "versionBefore": 2, "versionAfter": 3, "status": "active"}),
        ],
        "one entry per stored version; no-ops and refusals change nothing"
    );
    let v3_entry = entries
        .iter()
        .find(|e| e.action == "agreement-changed" && detail(e)["versionAfter"] == 3)
        .unwrap();
    assert_eq!(v3_entry.actor_client.as_deref(), Some("admin"));
    let entities: Vec<String> = serde_json::from_str(&v3_entry.entities).unwrap();
    assert_eq!(
        entities,
        vec!["Agreement/prison-to-icb/_history/3".to_string()]
    );
}

#[tokio::test]
async fn a_retired_agreement_covers_nothing_and_decisions_name_the_retired_version() {
    let mut app = spawn_app_with(bristol_icb).await;
    let icb = app.token_for("icb").await;
    let admin = app.token_for("admin").await;
    let prison = app.token_for("prison").await;
    let (before, _) = release_area_icb_verdict(&app, &prison).await;
    assert_eq!(before.agreement.as_deref(), Some("prison-to-icb|2"));

    for (who, token) in [("prison", &prison), ("icb", &icb)] {
        let response = app
            .delete_as(who, token, "/admin/agreements/prison-to-icb")
            .await;
        assert_eq!(response.status().as_u16(), 403, "{who}");
    }

    let (status, _, body) = status_and_json(
        app.delete_as("admin", &admin, "/admin/agreements/prison-to-icb")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "retired");
    assert_eq!(body["versionBefore"], 2);
    assert_eq!(body["versionAfter"], 3);

    let read = read_agreement(&app, &icb, "prison-to-icb").await;
    assert_eq!(read["current"]["version"], 3, "{read}");
    assert_eq!(read["current"]["status"], "retired");
    assert_eq!(read["current"]["agreement"]["status"], "retired");
    assert_eq!(read["versions"].as_array().unwrap().len(), 2);

    let (after, text) = release_area_icb_verdict(&app, &prison).await;
    assert_eq!(after.agreement, None, "{after:#?}");
    let refusal = after.refusal.as_deref().expect("a refusal");
    assert!(
        refusal.contains("agreement prison-to-icb v3 is not active"),
        "{refusal}"
    );
    assert_eq!(after.resources.len(), 12);
    for (reference, r) in &after.resources {
        assert!(!r.shared, "{reference}: {r:?}");
        assert_eq!(r.rule, 1, "{reference}: {r:?}");
    }
    assert_no_custody_string("refused decision", &text);

    // Retiring again changes nothing.
    let (status, _, body) = status_and_json(
        app.delete_as("admin", &admin, "/admin/agreements/prison-to-icb")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 3, "{body}");
    let (status, _, _) = status_and_json(
        app.delete_as("admin", &admin, "/admin/agreements/no-such-agreement")
            .await,
    )
    .await;
    assert_eq!(status, 404);

    app.stop().await;
    let entries = app.audit_entries().await;
    let retired: Vec<Value> = entries
        .iter()
        .filter(|e| e.action == "agreement-changed")
        .map(detail)
        .filter(|d| d["status"] == "retired")
        .collect();
    assert_eq!(
        retired,
        vec![
            json!({"agreement": "prison-to-icb", "versionBefore": 2, "versionAfter": 3, "status": "retired"})
        ]
    );
}

#[tokio::test]
async fn a_retired_agreement_stays_retired_after_a_restart() {
    let app = spawn_app_with(bristol_icb).await;
    let admin = app.token_for("admin").await;
    let (status, _, body) = status_and_json(
        app.delete_as("admin", &admin, "/admin/agreements/prison-to-icb")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The agreement file still says version 2, active; the store holds version 3, retired.
    // The gateway must start and keep the newer, retired version in force.
    let app = app.restart().await;
    let icb = app.token_for("icb").await;
    let read = read_agreement(&app, &icb, "prison-to-icb").await;
    assert_eq!(read["current"]["version"], 3, "{read}");
    assert_eq!(read["current"]["status"], "retired");
    let prison = app.token_for("prison").await;
    let (after, _) = release_area_icb_verdict(&app, &prison).await;
    assert_eq!(after.agreement, None, "{after:#?}");
}

// ---------------------------------------------------------------------------------------------
// (7) prison-to-icb: the release-area ICB only.

#[tokio::test]
async fn prison_to_icb_covers_the_release_area_icb_only() {
    let app = spawn_app_with(bristol_icb).await;
    let prison = app.token_for("prison").await;

    // Released with no GP in Bristol: the sample ICB is the release-area ICB and receives its
    // copy under prison-to-icb; the intake names it as a recipient.
    let (status, _, outcome) = status_and_json(
        app.post_bundle(&prison, FHIR_JSON, release_without_gp())
            .await,
    )
    .await;
    assert_eq!(status, 201, "{outcome}");
    assert!(
        diagnostics(&outcome)
            .contains("Recipient Q99 (ReleaseAreaIcb) under agreement prison-to-icb v2"),
        "{outcome}"
    );
    let (icb, _) = decide(&app, "prison", &prison, ICB).await;
    assert_eq!(icb.agreement.as_deref(), Some("prison-to-icb|2"));
    icb.assert_shared(RAMIPRIL);

    // The same ICB (registered with the role icb) for a release that has a GP: it is not that
    // document's release-area ICB, so it gets nothing (rule 1), role or not.
    post_sample(&app, &prison).await;
    let (not_routed, _) = decide(&app, "prison", &prison, ICB).await;
    assert_eq!(not_routed.agreement, None, "{not_routed:#?}");
    assert!(
        not_routed
            .resources
            .values()
            .all(|r| !r.shared && r.rule == 1)
    );
}
