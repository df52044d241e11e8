//! `POST /fhir/$validate` and profile validation at intake.

use serde_json::{Value, json};

use crate::helpers::*;

async fn validate(app: &TestApp, token: &str, query: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client_for("prison")
        .post(app.url(&format!("/fhir/$validate{query}")))
        .bearer_auth(token)
        .header("Content-Type", FHIR_JSON)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn errors_at(outcome: &Value) -> Vec<String> {
    issues(outcome)
        .iter()
        .filter(|i| i["severity"] == "error")
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

fn sample() -> Value {
    serde_json::from_str(throughcare::demo::SAMPLE_RELEASE).unwrap()
}

#[tokio::test]
async fn the_sample_document_validates_against_the_prison_profiles() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (status, outcome) = validate(&app, &token, "", &sample()).await;
    assert_eq!(status, 200, "{outcome}");
    assert!(errors_at(&outcome).is_empty(), "{outcome}");
    assert_eq!(issues(&outcome)[0]["diagnostics"], "All OK", "{outcome}");
}

#[tokio::test]
async fn a_document_missing_its_nhs_number_fails_at_the_patient_identifier() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut doc = sample();
    doc["entry"][1]["resource"]["identifier"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let params =
        json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": doc}]});
    let (status, outcome) = validate(&app, &token, "", &params).await;
    assert_eq!(status, 200, "{outcome}");
    let at = errors_at(&outcome);
    assert!(
        at.iter()
            .any(|e| e.starts_with("Bundle.entry[1].resource.identifier")),
        "{outcome}"
    );
}

#[tokio::test]
async fn a_bare_resource_is_checked_against_the_profile_given_in_the_query() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let patient = json!({"resourceType": "Patient", "gender": "male",
    "identifier": [{
        "extension": [{
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
            "valueCodeableConcept": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                "code": "01"
            }]}
        }],
        "system": "https://fhir.nhs.uk/Id/nhs-number",
        "value": "9990000018"
    }]});
    let profile = "https://throughcare.example.org/fhir/StructureDefinition/prison-patient";
    let (status, outcome) = validate(&app, &token, &format!("?profile={profile}"), &patient).await;
    assert_eq!(status, 200, "{outcome}");
    assert!(errors_at(&outcome).is_empty(), "{outcome}");
    let mut bad = patient.clone();
    bad["gender"] = json!(true);
    let (_, outcome) = validate(&app, &token, &format!("?profile={profile}"), &bad).await;
    assert!(
        errors_at(&outcome).contains(&"Patient.gender".to_string()),
        "{outcome}"
    );
}

#[tokio::test]
async fn intake_refuses_a_document_that_fails_its_profile_and_names_the_element() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let release = release_tree(|b| {
        b["identifier"]["value"] = json!(uuid::Uuid::new_v4().to_string());
        // The prison profile requires the medicine's dm+d code (DESIGN §5a).
        b["entry"][5]["resource"]["medicationCodeableConcept"] =
            json!({"text": "Methadone 1mg/ml oral solution"});
    });
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, release).await).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(
        errors_at(&outcome)
            .iter()
            .any(|e| e.starts_with("Bundle.entry[5].resource.medication")),
        "{outcome}"
    );
}

#[tokio::test]
async fn validate_needs_a_token_and_readable_json() {
    let app = spawn_app().await;
    let response = app
        .anonymous_client()
        .post(app.url("/fhir/$validate"))
        .header("Content-Type", FHIR_JSON)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let token = app.token_for("prison").await;
    let response = app
        .client_for("prison")
        .post(app.url("/fhir/$validate"))
        .bearer_auth(&token)
        .header("Content-Type", FHIR_JSON)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

/// `$validate` reads a body exactly as intake does: the Bundle entry limit (413) and numbers
/// no reader can hold (400), so that the two entry points never disagree.
#[tokio::test]
async fn validate_reads_bodies_with_the_intake_limits_and_number_rules() {
    let app = spawn_app_with(|s| s.limits.max_bundle_entries = 50).await;
    let token = app.token_for("prison").await;
    let many = json!({"resourceType": "Bundle", "type": "collection",
        "entry": vec![json!({}); 51]});
    let (status, outcome) = validate(&app, &token, "", &many).await;
    assert_eq!(status, 413, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-03");

    let body = throughcare::demo::SAMPLE_RELEASE.replacen("\"value\": 60,", "\"value\": 1e999,", 1);
    assert_ne!(body, throughcare::demo::SAMPLE_RELEASE);
    for path in ["/fhir/$validate", "/fhir/Bundle"] {
        let response = app
            .client_for("prison")
            .post(app.url(path))
            .bearer_auth(&token)
            .header("Content-Type", FHIR_JSON)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let outcome: Value = response.json().await.unwrap();
        assert!(
            diagnostics(&outcome).contains("cannot be read as a number"),
            "{path}: {outcome}"
        );
        assert_expression(
            &outcome,
            "Bundle.entry[5].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value",
        );
    }
}

/// An OperationOutcome lists at most a bounded number of issues and counts the rest.
#[tokio::test]
async fn a_long_issue_list_is_capped_and_the_rest_counted() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let entries: Vec<Value> = (0..300)
        .map(|i| json!({"resource": {"resourceType": "Basic", "id": format!("b{i}"), "unknownElement": true}}))
        .collect();
    let many = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    let (status, outcome) = validate(&app, &token, "", &many).await;
    assert_eq!(status, 200, "{outcome}");
    let list = issues(&outcome);
    assert_eq!(list.len(), 201, "{}", list.len());
    assert!(
        list[200]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("more issues are not listed"),
        "{}",
        list[200]
    );
}

/// Narrative is checked by the XHTML rules of FHIR R4 (txt-1, `htmlChecks()`): a script in a
/// Patient's narrative refuses the document, where it used to pass unchecked.
#[tokio::test]
async fn a_narrative_with_a_script_is_refused_at_intake() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let document = release_tree(|b| {
        b["entry"][1]["resource"]["text"] = json!({"status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Patient</p><script>alert(1)</script></div>"});
    });
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(diagnostics(&outcome).contains("txt-1"), "{outcome}");
}
