//! Sharing safety (hazards H1 and H5): nothing leaves that the recipient may not see, in any
//! form. One hostile document carries every custody string and every sensitive term in every
//! place a prison EHR may put free text (narrative, titles, descriptions, notes, code text,
//! display strings, contained resources), and the serialised bytes of every copy handed out
//! are searched for them, case-insensitively: the pushes, `Bundle/{id}`, `$everything`,
//! Patient read and search, and the GP Connect pull. Positive controls make sure that stripping
//! everything cannot pass: the GP still gets the hepatitis C diagnosis, the drug service with the
//! patient's ETH consent gets the opiate treatment, and a receiving prison gets everything.

use serde_json::{Value, json};

use crate::consent::{eth_permit_for, record_consent};
use crate::delivery::{recipient, register_as, submit_document, wait_for};
use crate::helpers::*;

const GP: &str = "A99001";
const DRUG_SERVICE: &str = "X99001";
/// An active prison healthcare unit in the MoJ prison register (Altcourse).
const RECEIVING_PRISON: &str = "Y05527";

/// What a health recipient outside custody must never see, in any letter case.
pub(crate) const CUSTODY_STRINGS: &[&str] = &[
    "a1234bc",
    "hb2-3-014",
    "burglary",
    "category b",
    "not to share cell",
];

/// What a recipient without the patient's ETH consent must never see.
pub(crate) const ETH_TERMS: &[&str] = &[
    "methadone",
    "buprenorphine",
    "naloxone",
    "opiate substitution",
    "espranor",
    "322696004",
    "387286002",
];

/// The display string of a reference that points at the withheld methadone order.
pub(crate) const MASKED_DISPLAY: &str = "pharmacy order 1006";

fn narrative(text: &str) -> Value {
    json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{text}</p></div>")})
}

/// The sample release, with free text everywhere an EHR puts it.
pub(crate) fn hostile(edit: impl FnOnce(&mut Value)) -> String {
    release_tree(|b| {
        let entries = b["entry"].as_array_mut().unwrap();
        // Composition: narrative, a section narrative and an entry display naming methadone.
        let comp = &mut entries[0]["resource"];
        comp["text"] = narrative(
            "Release summary for A1234BC, cell HB2-3-014 (category B prisoner, index offence burglary): methadone 30 ml daily continues.",
        );
        comp["section"][0]["text"] = narrative(
            "Methadone 1mg/ml oral solution 30 ml daily; Ramipril 2.5 mg; naloxone kit issued.",
        );
        comp["section"][0]["entry"][0]["display"] = json!("Methadone 1mg/ml oral solution");
        comp["section"][3]["text"] =
            narrative("Opiate substitution treatment continues with the community drug service.");
        // Patient: narrative with the prison number, the cell, the offence and the medicine.
        entries[1]["resource"]["text"] = narrative(
            "Prisoner A1234BC. Cell HB2-3-014. Index offence: burglary. Category B prisoner. On methadone.",
        );
        // Encounter: narrative and reason text.
        let enc = &mut entries[3]["resource"];
        enc["text"] = narrative("Seen in cell HB2-3-014 for buprenorphine review.");
        enc["reasonCode"] =
            json!([{"text": "Espranor review before release; category B prisoner"}]);
        // The methadone order: a note.
        entries[5]["resource"]["note"] = json!([{"text": "Naloxone kit issued on release."}]);
        // Hepatitis C: a reference to the methadone order whose display has no term in it.
        entries[7]["resource"]["evidence"] = json!([{"detail": [{
            "reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006",
            "display": "Pharmacy order 1006"
        }]}]);
        // Ramipril: a single reference to the methadone order (masked where it cannot be
        // dropped from a list).
        entries[6]["resource"]["priorPrescription"] = json!({
            "reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006",
            "display": "Pharmacy order 1006"
        });
        // The care plan: a description and an activity description.
        let plan = &mut entries[9]["resource"];
        plan["description"] =
            json!("Continuity of methadone treatment; buprenorphine if preferred.");
        // A diagnosis whose contained evidence is coded as methadone (a code inside a
        // contained resource labels the resource that contains it).
        let mut contained = entries[7]["resource"].clone();
        contained["id"] = json!("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1014");
        contained["contained"] = json!([{"resourceType": "Observation", "id": "obs",
            "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "387286002"}]}}]);
        contained["evidence"] = json!([{"detail": [{"reference": "#obs"}]}]);
        contained.as_object_mut().unwrap().shift_remove("note");
        entries.push(json!({"fullUrl": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1014", "resource": contained}));
        let comp = &mut entries[0]["resource"];
        comp["section"][2]["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({"reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1014"}));
        edit(b);
    })
}

/// Every copy handed out to `who`: `Bundle/{id}`, `$everything`, Patient read and search and,
/// for a GP, the GP Connect pull, as (path, bytes).
async fn every_read(app: &TestApp, who: &str, document: &str) -> Vec<(String, String)> {
    let token = app.token_for(who).await;
    let mut out = Vec::new();
    let get = |path: String| {
        let token = token.clone();
        async move {
            let response = app
                .client_for(who)
                .get(app.url(&path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(status, 200, "{who} {path}: {text}");
            (path, text)
        }
    };
    out.push(get(format!("/fhir/Bundle/{document}")).await);
    out.push(get(format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}/$everything")).await);
    out.push(get(format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}")).await);
    out.push(
        get(format!(
            "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{SAMPLE_NHS_NUMBER}"
        ))
        .await,
    );
    // `$sharing-decision` about itself: a recipient learns only counts.
    let ods = if who == "gp" { GP } else { DRUG_SERVICE };
    let ask = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": SAMPLE_NHS_NUMBER}},
        {"name": "recipient", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}}]});
    let response = app
        .post_json(who, &token, "/fhir/$sharing-decision", &ask)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    out.push(("$sharing-decision".into(), response.text().await.unwrap()));
    if who == "gp" {
        let params = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": SAMPLE_NHS_NUMBER}},
            {"name": "includeMedication"}, {"name": "includeProblems"},
            {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
            {"name": "includeConsultations"}, {"name": "includeReferrals"}]});
        let response = app
            .post_json(
                who,
                &token,
                "/fhir/Patient/$gpc.getstructuredrecord",
                &params,
            )
            .await;
        assert_eq!(response.status().as_u16(), 200);
        out.push((
            "$gpc.getstructuredrecord".into(),
            response.text().await.unwrap(),
        ));
    }
    out
}

pub(crate) fn assert_free_of(what: &str, bytes: &str, forbidden: &[&str]) {
    let lower = bytes.to_lowercase();
    for f in forbidden {
        assert!(!lower.contains(f), "{what}: {f:?} leaked: {bytes}");
    }
}

pub(crate) fn assert_carries(what: &str, bytes: &str, wanted: &[&str]) {
    let lower = bytes.to_lowercase();
    for w in wanted {
        assert!(lower.contains(w), "{what}: {w:?} is missing: {bytes}");
    }
}

/// Registers an endpoint for `ods` (as an operator) at a scripted recipient; its received
/// bodies.
async fn push_target(app: &TestApp, ods: &str, profile: &str) -> crate::delivery::Recipient {
    let (url, r) = recipient(vec![]).await;
    register_as(app, ods, &url, profile).await;
    r
}

fn pushed(r: &crate::delivery::Recipient) -> Vec<String> {
    r.received
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.body.clone())
        .collect()
}

#[tokio::test]
async fn no_copy_carries_custody_or_unconsented_sensitive_text_in_any_form() {
    let app = spawn_app_with(crate::delivery::fast).await;
    let gp_endpoint = push_target(&app, GP, "gp-connect-stu3").await;
    let drug_endpoint = push_target(&app, DRUG_SERVICE, "uk-core-r4").await;
    let document = submit_document(&app, hostile(|_| {})).await;
    // Both copies conform to their profiles and go: masking and narrative replacement keep the
    // copies valid.
    wait_for(&app, &document, GP, "completed").await;
    wait_for(&app, &document, DRUG_SERVICE, "completed").await;

    let mut copies: Vec<(String, String)> = Vec::new();
    for body in pushed(&gp_endpoint) {
        copies.push(("push to the GP (GP Connect)".into(), body));
    }
    for body in pushed(&drug_endpoint) {
        copies.push(("push to the drug service (UK Core)".into(), body));
    }
    for (who, label) in [("gp", "GP"), ("drug-service", "drug service")] {
        for (path, body) in every_read(&app, who, &document).await {
            copies.push((format!("{label} {path}"), body));
        }
    }
    assert!(copies.len() >= 13, "{}", copies.len());
    for (what, bytes) in &copies {
        assert_free_of(what, bytes, CUSTODY_STRINGS);
        assert_free_of(what, bytes, ETH_TERMS);
        assert_free_of(what, bytes, &[MASKED_DISPLAY]);
    }
    // Positive control: what the GP may have still reaches it, in every form it reads.
    for (what, bytes) in copies.iter().filter(|(w, _)| w.contains("GP")) {
        if !what.contains("Patient/") && !what.contains("Patient?") && !what.contains("decision") {
            assert_carries(what, bytes, &["128302006"]);
        }
    }
    // The reference to the withheld order says only that something is masked.
    let gp_read = &copies
        .iter()
        .find(|(w, _)| w.starts_with("GP /fhir/Bundle/"))
        .unwrap()
        .1;
    let copy: Value = serde_json::from_str(gp_read).unwrap();
    let ramipril = copy["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["id"] == "1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1007")
        .expect("the GP gets the ramipril");
    assert_eq!(
        ramipril["resource"]["priorPrescription"]["extension"][0]["valueCode"], "masked",
        "{ramipril}"
    );
    // The prison author's name is not custody information.
    assert_carries("GP Bundle read", gp_read, &["hmp bristol healthcare"]);
}

#[tokio::test]
async fn with_the_patients_eth_consent_the_drug_service_gets_the_opiate_treatment_but_no_custody_data()
 {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let document = submit_document(&app, hostile(|_| {})).await;
    record_consent(&app, &prison, &eth_permit_for(DRUG_SERVICE)).await;
    for (what, bytes) in every_read(&app, "drug-service", &document).await {
        assert_free_of(&what, &bytes, CUSTODY_STRINGS);
        if what.starts_with("/fhir/Bundle/") || what.contains("$everything") {
            assert_carries(&what, &bytes, &["methadone", "opiate substitution"]);
        }
    }
    // The GP, with no consent, still gets neither.
    for (what, bytes) in every_read(&app, "gp", &document).await {
        assert_free_of(&what, &bytes, ETH_TERMS);
    }
}

#[tokio::test]
async fn a_transfer_to_a_prison_keeps_the_narrative_and_the_custody_data() {
    let app = spawn_app_with(crate::delivery::fast).await;
    let prison_endpoint = push_target(&app, RECEIVING_PRISON, "prison").await;
    let transfer = hostile(|b| {
        let comp = &mut b["entry"][0]["resource"];
        comp["event"][0]["code"][0]["coding"][0]["code"] = json!("transfer");
        comp["event"][0]["code"][0]["coding"][0]["display"] = json!("Transfer between prisons");
        b["entry"][3]["resource"]["hospitalization"] = json!({"destination": {"identifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": RECEIVING_PRISON}}});
    });
    let document = submit_document(&app, transfer).await;
    wait_for(&app, &document, RECEIVING_PRISON, "completed").await;
    let bodies = pushed(&prison_endpoint);
    assert_eq!(bodies.len(), 1);
    assert_carries(
        "push to the receiving prison",
        &bodies[0],
        &[
            "a1234bc",
            "hb2-3-014",
            "burglary",
            "not to share cell",
            "methadone",
            "release summary for a1234bc",
        ],
    );
}

#[tokio::test]
async fn a_gp_that_is_also_a_care_plan_performer_gets_what_the_gp_agreement_grants() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let document = release_tree(|b| {
        // The GP practice also delivers the care plan.
        let performer = &mut b["entry"][9]["resource"]["activity"][0]["detail"]["performer"][0];
        *performer = json!({"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": GP}});
    });
    submit_document(&app, document).await;
    let request = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": SAMPLE_NHS_NUMBER}},
        {"name": "recipient", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": GP}}]});
    let response = app
        .post_json("prison", &prison, "/fhir/$sharing-decision", &request)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let hep_c = body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "resource")
        .find(|p| p["part"][0]["valueString"] == "Condition/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1008")
        .expect("the diagnosis is decided");
    let part = |name: &str| {
        hep_c["part"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    // The drug-service agreement (the first by id) has no problems class; the GP agreement
    // does, and decides.
    assert_eq!(part("shared")["valueBoolean"], true, "{body}");
    assert!(
        part("basis")["valueString"]
            .as_str()
            .unwrap()
            .contains("agreement prison-to-registered-gp v1"),
        "{body}"
    );
}

#[tokio::test]
async fn a_deny_all_consent_with_one_permit_answers_403_to_the_others_and_the_frame_to_the_permitted()
 {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let document = submit_document(&app, hostile(|_| {})).await;
    // Deny everything to everyone; permit ETH to the drug service.
    let mut consent = eth_permit_for(DRUG_SERVICE);
    let permit = consent["provision"].clone();
    consent["provision"] = json!({"type": "deny", "provision": [permit]});
    record_consent(&app, &prison, &consent).await;

    let gp = app.token_for("gp").await;
    let response = app.get_bundle(&gp, &document).await;
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.headers().get("X-Throughcare-Withheld").is_none());
    let outcome: Value = response.json().await.unwrap();
    assert_outcome_code(&outcome, "GW-PULL-02");
    assert!(
        diagnostics(&outcome).contains("patient's choices"),
        "{outcome}"
    );
    for path in [
        format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}/$everything"),
        format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}"),
    ] {
        let response = app
            .client_for("gp")
            .get(app.url(&path))
            .bearer_auth(&gp)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{path}");
    }

    // The drug service gets the ETH content with its frame: the Composition and the Patient.
    let drug = app.token_for("drug-service").await;
    let response = app.get_bundle(&drug, &document).await;
    assert_eq!(response.status().as_u16(), 200);
    let copy: Value = response.json().await.unwrap();
    let types: Vec<&str> = copy["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    assert_eq!(types[0], "Composition", "{types:?}");
    assert!(types.contains(&"Patient"), "{types:?}");
    assert_carries("drug service copy", &copy.to_string(), &["methadone"]);
    assert!(
        !copy.to_string().contains("128302006"),
        "nothing outside the permit"
    );
}

#[tokio::test]
async fn a_consent_that_withholds_one_class_leaves_the_composition_with_that_section_withheld() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let document = submit_document(&app, hostile(|_| {})).await;
    let mut deny = eth_permit_for(GP);
    deny["provision"]["type"] = json!("deny");
    deny["provision"]
        .as_object_mut()
        .unwrap()
        .shift_remove("securityLabel");
    deny["provision"]["class"] =
        json!([{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]);
    record_consent(&app, &prison, &deny).await;
    let gp = app.token_for("gp").await;
    let response = app.get_bundle(&gp, &document).await;
    assert_eq!(response.status().as_u16(), 200);
    let copy: Value = response.json().await.unwrap();
    let diagnoses = copy["entry"][0]["resource"]["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "Diagnoses")
        .expect("the section stays")
        .clone();
    assert_eq!(diagnoses["emptyReason"]["coding"][0]["code"], "withheld");
    assert!(diagnoses.get("entry").is_none());
    assert!(!copy.to_string().contains("128302006"));
    assert_carries("GP copy", &copy.to_string(), &["ramipril"]);
}

#[tokio::test]
async fn confidentiality_r_and_unknown_labels_are_withheld_from_a_gp_under_every_uri() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let document = release_tree(|b| {
        let entries = b["entry"].as_array_mut().unwrap();
        let mut restricted = entries[7]["resource"].clone();
        restricted["id"] = json!("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1015");
        restricted["meta"] = json!({"security": [{"system": "http://hl7.org/fhir/v3/Confidentiality", "code": "R"}]});
        let mut unknown = entries[7]["resource"].clone();
        unknown["id"] = json!("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1016");
        unknown["meta"] =
            json!({"security": [{"system": "https://example.org/local-labels", "code": "secret"}]});
        let mut psy = entries[7]["resource"].clone();
        psy["id"] = json!("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1017");
        psy["meta"] =
            json!({"security": [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "PSY"}]});
        for (id, r) in [("1015", restricted), ("1016", unknown), ("1017", psy)] {
            entries.push(json!({"fullUrl": format!("urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e{id}"), "resource": r}));
        }
    });
    submit_document(&app, document).await;
    let request = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": SAMPLE_NHS_NUMBER}},
        {"name": "recipient", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": GP}}]});
    let response = app
        .post_json("prison", &prison, "/fhir/$sharing-decision", &request)
        .await;
    let body: Value = response.json().await.unwrap();
    let verdict = |id: &str| {
        let r = body["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "resource")
            .find(|p| p["part"][0]["valueString"] == format!("Condition/{id}"))
            .unwrap_or_else(|| panic!("Condition/{id} in {body}"))
            .clone();
        (
            r["part"][1]["valueBoolean"].as_bool().unwrap(),
            r["part"][3]["valueString"].as_str().unwrap().to_string(),
        )
    };
    let (shared, basis) = verdict("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1015");
    assert!(!shared && basis.contains("confidentiality R"), "{basis}");
    let (shared, basis) = verdict("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1016");
    assert!(
        !shared && basis.contains("https://example.org/local-labels|secret"),
        "{basis}"
    );
    let (shared, basis) = verdict("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1017");
    assert!(!shared && basis.contains("PSY"), "{basis}");
    // The unlabelled original is shared: the labels, not the diagnosis, decide.
    let (shared, _) = verdict("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1008");
    assert!(shared);
}

#[tokio::test]
async fn a_key_given_twice_is_refused_in_a_document_a_consent_and_a_token_request() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    // The methadone order labelled ETH, then a second `meta` that would drop the label.
    let (release, _) = unique_release();
    let doubled = release.replacen(
        "\"id\": \"1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006\",",
        "\"id\": \"1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006\", \"meta\": {\"versionId\": \"1\"},",
        1,
    );
    assert_ne!(doubled, release);
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&prison, FHIR_JSON, doubled).await).await;
    assert_eq!(status, 400, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-09");

    let consent = eth_permit_for(DRUG_SERVICE).to_string();
    let doubled = consent.replacen(
        "\"status\":\"active\"",
        "\"status\":\"active\",\"status\":\"inactive\"",
        1,
    );
    assert_ne!(doubled, consent);
    let response = app
        .client_for("prison")
        .post(app.url("/fhir/Consent"))
        .bearer_auth(&prison)
        .header("Content-Type", FHIR_JSON)
        .body(doubled)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    let claims = app.assertion_claims("prison");
    let assertion = app.sign(&claims, "prison");
    let response = app
        .client_for("prison")
        .post(app.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&grant_type=password&client_assertion_type={}&client_assertion={assertion}",
            urlencoding::encode(ASSERTION_TYPE)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn a_claimed_profile_never_lets_a_resource_skip_the_prison_profile() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    // The methadone order without its dm+d code (the prison profile requires it; UK Core
    // does not), claiming the UK Core profile.
    let document = release_tree(|b| {
        let order = &mut b["entry"][5]["resource"];
        order["meta"]["profile"] =
            json!(["https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest"]);
        order["medicationCodeableConcept"] = json!({"text": "Methadone 1mg/ml oral solution"});
    });
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&prison, FHIR_JSON, document).await).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        expressions(&outcome)
            .iter()
            .any(|e| e.contains("entry[5]") && e.contains("medication")),
        "{outcome}"
    );
}
