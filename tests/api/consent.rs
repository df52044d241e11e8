//! `POST`, `PUT` and `GET /fhir/Consent`: the patient's sharing choices, validated, versioned
//! and audited.

use serde_json::{Value, json};

use crate::helpers::*;

/// A Consent for the sample patient whose root provision permits `ETH` content to the
/// organisation `ods`.
pub fn eth_permit_for(ods: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"
        }]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {
            "system": "https://fhir.nhs.uk/Id/nhs-number",
            "value": SAMPLE_NHS_NUMBER
        }},
        "dateTime": "2026-11-20T10:00:00+00:00",
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN"
        }]},
        "provision": {
            "type": "permit",
            "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP"
                }]},
                "reference": {"identifier": {
                    "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                    "value": ods
                }}
            }],
            "securityLabel": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "ETH"
            }]
        }
    })
}

/// The sample prison reports the sample patient's release, so that it holds the patient: only a
/// prison that holds the patient records their Consents.
pub async fn admit_sample_patient(app: &TestApp, prison_token: &str) {
    let (release, _) = unique_release();
    let response = app.post_bundle(prison_token, FHIR_JSON, release).await;
    assert_eq!(response.status().as_u16(), 201);
}

/// Posts a Consent as the prison; returns status, headers and body.
pub async fn post_consent(
    app: &TestApp,
    token: &str,
    consent: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    status_and_json(
        app.post_json("prison", token, "/fhir/Consent", consent)
            .await,
    )
    .await
}

/// Puts a Consent as the prison; returns status, headers and body.
pub async fn put_consent(
    app: &TestApp,
    token: &str,
    id: &str,
    consent: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    status_and_json(
        app.put_json("prison", token, &format!("/fhir/Consent/{id}"), consent)
            .await,
    )
    .await
}

/// Records the consent and returns its id (asserting 201).
pub async fn record_consent(app: &TestApp, token: &str, consent: &Value) -> String {
    let (status, _, body) = post_consent(app, token, consent).await;
    assert_eq!(status, 201, "{body}");
    body["id"]
        .as_str()
        .expect("the Consent has an id")
        .to_string()
}

/// Withdraws the consent (status inactive) and returns the new version (asserting 200).
pub async fn withdraw_consent(app: &TestApp, token: &str, id: &str, consent: &Value) -> String {
    let mut withdrawn = consent.clone();
    withdrawn["id"] = json!(id);
    withdrawn["status"] = json!("inactive");
    let (status, _, body) = put_consent(app, token, id, &withdrawn).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "inactive", "{body}");
    body["meta"]["versionId"].as_str().unwrap().to_string()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .unwrap()
}

/// Asserts that posting `consent` is refused with `status`, at an expression starting with
/// `expression`.
async fn assert_refused(app: &TestApp, token: &str, consent: Value, status: u16, expression: &str) {
    let (got, headers, outcome) = post_consent(app, token, &consent).await;
    assert_eq!(got, status, "{outcome}");
    assert!(headers.get("Location").is_none(), "nothing was recorded");
    let found = expressions(&outcome);
    assert!(
        found.iter().any(|e| e.starts_with(expression)),
        "expected an issue at {expression}… in {outcome}"
    );
}

#[tokio::test]
async fn consent_is_created_with_201_a_versioned_location_and_etag() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    admit_sample_patient(&app, &token).await;
    let (status, headers, body) = post_consent(&app, &token, &eth_permit_for("X99001")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["resourceType"], "Consent");
    let id = body["id"].as_str().expect("an id is assigned");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(
        header(&headers, "Location"),
        format!("{}/fhir/Consent/{id}/_history/1", app.base_url)
    );
    assert_eq!(header(&headers, "ETag"), "W/\"1\"");
    assert_eq!(body["meta"]["versionId"], "1", "{body}");
    assert!(body["meta"]["lastUpdated"].is_string(), "{body}");
    assert_eq!(body["patient"]["identifier"]["value"], SAMPLE_NHS_NUMBER);
    assert_eq!(body["provision"]["securityLabel"][0]["code"], "ETH");
    assert!(header(&headers, "Content-Type").starts_with(FHIR_JSON));
}

#[tokio::test]
async fn consent_put_records_version_2_and_reads_return_the_latest_version() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    admit_sample_patient(&app, &token).await;
    let consent = eth_permit_for("X99001");
    let id = record_consent(&app, &token, &consent).await;

    let mut withdrawn = consent.clone();
    withdrawn["id"] = json!(id);
    withdrawn["status"] = json!("inactive");
    let (status, headers, body) = put_consent(&app, &token, &id, &withdrawn).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["versionId"], "2", "{body}");
    assert_eq!(body["status"], "inactive");
    assert_eq!(
        header(&headers, "Location"),
        format!("{}/fhir/Consent/{id}/_history/2", app.base_url)
    );
    assert_eq!(header(&headers, "ETag"), "W/\"2\"");

    let (status, headers, body) = status_and_json(
        app.get_as("prison", &token, &format!("/fhir/Consent/{id}"), &[])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["meta"]["versionId"], "2", "{body}");
    assert_eq!(body["status"], "inactive");
    assert_eq!(header(&headers, "ETag"), "W/\"2\"");
}

#[tokio::test]
async fn consent_search_by_nhs_number_returns_the_latest_version_of_each_consent() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    admit_sample_patient(&app, &token).await;
    let consent = eth_permit_for("X99001");
    let id = record_consent(&app, &token, &consent).await;
    withdraw_consent(&app, &token, &id, &consent).await;

    for patient in [
        SAMPLE_NHS_NUMBER.to_string(),
        format!("https://fhir.nhs.uk/Id/nhs-number|{SAMPLE_NHS_NUMBER}"),
    ] {
        let (status, _, bundle) = status_and_json(
            app.get_as("prison", &token, "/fhir/Consent", &[("patient", &patient)])
                .await,
        )
        .await;
        assert_eq!(status, 200, "{patient}: {bundle}");
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "searchset");
        assert_eq!(
            bundle["total"], 1,
            "one consent, latest version only: {bundle}"
        );
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{bundle}");
        let found = &entries[0]["resource"];
        assert_eq!(found["id"], id.as_str());
        assert_eq!(found["meta"]["versionId"], "2", "{bundle}");
        assert_eq!(found["status"], "inactive");
        assert_eq!(
            entries[0]["fullUrl"],
            format!("{}/fhir/Consent/{id}", app.base_url)
        );
    }

    // Another patient, whom this prison has never held: not its business.
    let (status, _, outcome) = status_and_json(
        app.get_as(
            "prison",
            &token,
            "/fhir/Consent",
            &[("patient", "9990000026")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(&outcome, "GW-CUSTODY-01");
}

#[tokio::test]
async fn consent_without_a_patient_nhs_number_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent["patient"] = json!({"reference": "Patient/123"});
    assert_refused(&app, &token, consent, 422, "Consent.patient.identifier").await;
    let mut consent = eth_permit_for("X99001");
    consent["patient"]["identifier"]["system"] = json!("https://example.org/mrn");
    assert_refused(&app, &token, consent, 422, "Consent.patient.identifier").await;
}

#[tokio::test]
async fn consent_with_an_nhs_number_failing_modulus_11_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent["patient"]["identifier"]["value"] = json!("9990000019");
    assert_refused(&app, &token, consent, 422, "Consent.patient.identifier").await;
}

#[tokio::test]
async fn consent_without_a_scope_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent.as_object_mut().unwrap().shift_remove("scope");
    assert_refused(&app, &token, consent, 422, "Consent.scope").await;
}

#[tokio::test]
async fn consent_without_a_category_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent.as_object_mut().unwrap().shift_remove("category");
    assert_refused(&app, &token, consent.clone(), 422, "Consent.category").await;
    consent["category"] = json!([]);
    assert_refused(&app, &token, consent, 422, "Consent.category").await;
}

#[tokio::test]
async fn consent_actor_that_is_neither_an_ods_code_nor_a_role_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent["provision"]["actor"][0]["reference"] = json!({"reference": "Practitioner/123"});
    assert_refused(&app, &token, consent, 422, "Consent.provision.actor[0]").await;
    // A role the gateway does not know is refused too, not ignored.
    let mut consent = eth_permit_for("X99001");
    consent["provision"]["actor"][0]["reference"]["identifier"] = json!({
        "system": "https://throughcare.example.org/fhir/Id/recipient-role",
        "value": "pharmacy"
    });
    assert_refused(&app, &token, consent, 422, "Consent.provision.actor[0]").await;
}

#[tokio::test]
async fn consent_with_a_security_label_the_gateway_does_not_know_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent["provision"]["securityLabel"][0]["code"] = json!("XYZ");
    assert_refused(
        &app,
        &token,
        consent,
        422,
        "Consent.provision.securityLabel[0]",
    )
    .await;
}

#[tokio::test]
async fn consent_with_an_unknown_status_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut consent = eth_permit_for("X99001");
    consent["status"] = json!("withdrawn");
    assert_refused(&app, &token, consent, 422, "Consent.status").await;
}

#[tokio::test]
async fn consent_cannot_be_moved_to_another_patient() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    admit_sample_patient(&app, &token).await;
    let consent = eth_permit_for("X99001");
    let id = record_consent(&app, &token, &consent).await;
    let mut moved = consent.clone();
    moved["id"] = json!(id);
    moved["patient"]["identifier"]["value"] = json!("9990000026");
    let (status, _, outcome) = put_consent(&app, &token, &id, &moved).await;
    assert_eq!(status, 422, "{outcome}");
    assert_expression(&outcome, "Consent.patient.identifier.value");
    // Still version 1, still the sample patient.
    let (_, _, body) = status_and_json(
        app.get_as("prison", &token, &format!("/fhir/Consent/{id}"), &[])
            .await,
    )
    .await;
    assert_eq!(body["meta"]["versionId"], "1", "{body}");
    assert_eq!(body["patient"]["identifier"]["value"], SAMPLE_NHS_NUMBER);
}

#[tokio::test]
async fn consent_that_is_not_json_is_a_bad_request() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let response = app
        .send_as(
            reqwest::Method::POST,
            "prison",
            Some(&token),
            "/fhir/Consent",
            FHIR_JSON,
            "{\"resourceType\": \"Consent\",",
        )
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 400, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-01");
}

#[tokio::test]
async fn consent_put_whose_body_id_differs_from_the_url_is_a_bad_request() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    admit_sample_patient(&app, &token).await;
    let consent = eth_permit_for("X99001");
    let id = record_consent(&app, &token, &consent).await;
    let mut other = consent.clone();
    other["id"] = json!("some-other-id");
    let (status, _, outcome) = put_consent(&app, &token, &id, &other).await;
    assert_eq!(status, 400, "{outcome}");
    assert_expression(&outcome, "Consent.id");
    let (_, _, body) = status_and_json(
        app.get_as("prison", &token, &format!("/fhir/Consent/{id}"), &[])
            .await,
    )
    .await;
    assert_eq!(body["meta"]["versionId"], "1", "nothing new was recorded");
}

#[tokio::test]
async fn consent_in_another_media_type_is_unsupported() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let response = app
        .send_as(
            reqwest::Method::POST,
            "prison",
            Some(&token),
            "/fhir/Consent",
            "text/plain",
            eth_permit_for("X99001").to_string(),
        )
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 415, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-02");
}

#[tokio::test]
async fn consent_cannot_be_written_by_a_gp_or_an_icb() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    admit_sample_patient(&app, &prison).await;
    let consent = eth_permit_for("X99001");
    let id = record_consent(&app, &prison, &consent).await;
    for who in ["gp", "icb"] {
        let token = app.token_for(who).await;
        let (status, _, outcome) =
            status_and_json(app.post_json(who, &token, "/fhir/Consent", &consent).await).await;
        assert_eq!(status, 403, "{who}: {outcome}");
        assert_outcome_code(&outcome, "GW-AUTH-04");
        let mut withdrawn = consent.clone();
        withdrawn["id"] = json!(id);
        withdrawn["status"] = json!("inactive");
        let (status, _, outcome) = status_and_json(
            app.put_json(who, &token, &format!("/fhir/Consent/{id}"), &withdrawn)
                .await,
        )
        .await;
        assert_eq!(status, 403, "{who}: {outcome}");
    }
    // Nothing changed.
    let (_, _, body) = status_and_json(
        app.get_as("prison", &prison, &format!("/fhir/Consent/{id}"), &[])
            .await,
    )
    .await;
    assert_eq!(body["meta"]["versionId"], "1", "{body}");
    assert_eq!(body["status"], "active");
}

#[tokio::test]
async fn consent_routes_need_a_token() {
    let app = spawn_app().await;
    let response = app
        .send_as(
            reqwest::Method::POST,
            "prison",
            None,
            "/fhir/Consent",
            FHIR_JSON,
            eth_permit_for("X99001").to_string(),
        )
        .await;
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("WWW-Authenticate").is_some());
    let response = app
        .anonymous_client()
        .get(app.url("/fhir/Consent"))
        .query(&[("patient", SAMPLE_NHS_NUMBER)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn unknown_consent_is_not_found() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (status, _, outcome) = status_and_json(
        app.get_as("prison", &token, "/fhir/Consent/no-such-consent", &[])
            .await,
    )
    .await;
    assert_eq!(status, 404, "{outcome}");
    assert_outcome_code(&outcome, "GW-NOT-FOUND");
}

#[tokio::test]
async fn every_consent_version_is_audited_with_its_entity_and_nhs_number() {
    let mut app = spawn_app().await;
    let token = app.token_for("prison").await;
    admit_sample_patient(&app, &token).await;
    let consent = eth_permit_for("X99001");
    let id = record_consent(&app, &token, &consent).await;
    withdraw_consent(&app, &token, &id, &consent).await;
    let mut bad = consent.clone();
    bad.as_object_mut().unwrap().shift_remove("scope");
    let (status, _, _) = post_consent(&app, &token, &bad).await;
    assert_eq!(status, 422);
    app.stop().await;

    let entries = app.audit_entries().await;
    let recorded: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "consent-recorded")
        .collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    for (entry, (version, status)) in recorded.iter().zip([(1, "active"), (2, "inactive")]) {
        let entities: Vec<String> = serde_json::from_str(&entry.entities).unwrap();
        assert_eq!(entities, vec![format!("Consent/{id}/_history/{version}")]);
        assert_eq!(entry.nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
        assert_eq!(entry.actor_client.as_deref(), Some("prison"));
        assert_eq!(entry.actor_ods.as_deref(), Some("Y02307"));
        assert_eq!(entry.outcome, "success");
        let detail: Value = serde_json::from_str(&entry.detail).unwrap();
        assert_eq!(detail["status"], status, "{detail}");
    }
    let rejected: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "input-rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let detail: Value = serde_json::from_str(&rejected[0].detail).unwrap();
    assert_eq!(detail["endpoint"], "POST /fhir/Consent");
    assert_eq!(detail["status"], 422);
}

#[tokio::test]
async fn consent_provisions_the_gateway_cannot_evaluate_are_refused_not_ignored() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    // The prison holds the patient: it has sent their release document.
    let (release, _) = unique_release();
    assert_eq!(
        app.post_bundle(&token, FHIR_JSON, release)
            .await
            .status()
            .as_u16(),
        201
    );
    let gp = json!({"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A99001"});
    // Each element the engine does not evaluate, set on the root provision of a deny-all
    // consent, and the element the refusal must name. Ignoring any of them would apply a
    // different choice than the patient made.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "data",
            json!([{"meaning": "related", "reference": {"reference": "MedicationRequest/x"}}]),
            "Consent.provision.data",
        ),
        (
            "code",
            json!([{"coding": [{"system": "http://snomed.info/sct", "code": "322696004"}]}]),
            "Consent.provision.code",
        ),
        (
            "action",
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose"}]}]),
            "Consent.provision.action",
        ),
        (
            "dataPeriod",
            json!({"start": "2026-01-01"}),
            "Consent.provision.dataPeriod",
        ),
        (
            "securityLabel",
            json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "XYZ"}]),
            "Consent.provision.securityLabel[0]",
        ),
        (
            "class",
            json!([{"system": "http://snomed.info/sct", "code": "363787002"}]),
            "Consent.provision.class[0]",
        ),
        (
            "period",
            json!({"start": "2026-11"}),
            "Consent.provision.period.start",
        ),
        (
            "period",
            json!({"end": "2026-12-31T23:59:59"}),
            "Consent.provision.period.end",
        ),
        (
            "provision",
            json!([{"type": "permit", "actor": [{"reference": {"identifier": gp}}],
                    "provision": [{"type": "deny"}]}]),
            "Consent.provision.provision[0].provision",
        ),
    ];
    let mut failures = Vec::new();
    for (element, value, expression) in cases {
        let mut consent = eth_permit_for("X99001");
        consent["provision"][element] = value.clone();
        let (status, headers, outcome) = post_consent(&app, &token, &consent).await;
        if status != 422 {
            failures.push(format!("{expression}: {status} {outcome}"));
            continue;
        }
        assert!(headers.get("Location").is_none(), "nothing was recorded");
        assert_outcome_code(&outcome, "GW-CONSENT-01");
        if !expressions(&outcome).iter().any(|e| e == expression) {
            failures.push(format!("{expression} not named: {outcome}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A full date and a date-time with a zone are evaluated, and accepted.
    let mut consent = eth_permit_for("X99001");
    consent["provision"]["period"] =
        json!({"start": "2026-11-01", "end": "2027-11-01T00:00:00+00:00"});
    record_consent(&app, &token, &consent).await;
}
