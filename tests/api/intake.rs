//! `POST /fhir/Bundle` (intake), `GET /fhir/Bundle/{id}`, `GET /fhir/metadata` and the router's
//! answers to unknown paths and methods.

use serde_json::{Value, json};

use crate::helpers::*;

/// Posts `body` as the prison and returns status, headers and the OperationOutcome.
async fn submit(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    status_and_json(app.post_bundle(token, content_type, body).await).await
}

/// Asserts a 422 naming `expression`, and returns the outcome.
async fn assert_unprocessable_at(app: &TestApp, token: &str, body: String, expression: &str) {
    let (status, _, outcome) = submit(app, token, FHIR_JSON, body).await;
    assert_eq!(status, 422, "{outcome}");
    assert_expression(&outcome, expression);
    assert_outcome_code(&outcome, "GW-INTAKE-05");
}

#[tokio::test]
async fn document_is_accepted_with_201_and_a_location() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 201, "{outcome}");
    let location = location_of(&headers);
    let prefix = format!("{}/fhir/Bundle/", app.base_url);
    let id = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("Location {location} should start with {prefix}"));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "the id is a uuid: {id}");
    let issues = issues(&outcome);
    assert_eq!(issues[0]["severity"], "information");
    assert!(
        diagnostics(&outcome).contains(&format!("Bundle/{id}")),
        "{outcome}"
    );
    assert!(
        headers
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with(FHIR_JSON))
    );
}

#[tokio::test]
async fn accepted_document_reads_back_byte_for_byte() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, release.clone()).await;
    assert_eq!(status, 201, "{outcome}");
    let location = location_of(&headers);
    let response = app
        .client_for("prison")
        .get(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(
        bytes.as_ref(),
        release.as_bytes(),
        "the stored document differs from what was sent"
    );
}

#[tokio::test]
async fn identical_document_sent_again_gives_200_and_the_same_location() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (first, headers, outcome) = submit(&app, &token, FHIR_JSON, release.clone()).await;
    assert_eq!(first, 201, "{outcome}");
    let location = location_of(&headers);
    let (second, headers, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(second, 200, "{outcome}");
    assert_eq!(location_of(&headers), location);
    assert_eq!(issues(&outcome)[0]["severity"], "information");
}

#[tokio::test]
async fn same_identifier_with_different_content_is_a_conflict() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (first, _, outcome) = submit(&app, &token, FHIR_JSON, release.clone()).await;
    assert_eq!(first, 201, "{outcome}");
    let changed = release.replacen("\"value\": 2.50", "\"value\": 5", 1);
    assert_ne!(changed, release, "the dose was changed");
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, changed).await;
    assert_eq!(status, 409, "{outcome}");
    assert!(headers.get("Location").is_none());
    assert_expression(&outcome, "Bundle.identifier");
    assert_outcome_code(&outcome, "GW-INTAKE-08");
}

#[tokio::test]
async fn same_content_with_other_whitespace_is_an_idempotent_repeat() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (first, headers, outcome) = submit(&app, &token, FHIR_JSON, release.clone()).await;
    assert_eq!(first, 201, "{outcome}");
    let location = location_of(&headers);
    let tree: Value = serde_json::from_str(&release).unwrap();
    let compact = serde_json::to_string(&tree).unwrap();
    assert_ne!(compact, release);
    assert!(compact.contains("2.50"), "decimals are kept as written");
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, compact).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(location_of(&headers), location);
}

#[tokio::test]
async fn document_is_accepted_as_plain_json_with_parameters() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) =
        submit(&app, &token, "application/json; charset=utf-8", release).await;
    assert_eq!(status, 201, "{outcome}");
}

#[tokio::test]
async fn invalid_json_is_a_bad_request() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (status, _, outcome) = submit(
        &app,
        &token,
        FHIR_JSON,
        r#"{"resourceType": "Bundle", "type": "document", "#,
    )
    .await;
    assert_eq!(status, 400, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-01");
}

#[tokio::test]
async fn xml_is_an_unsupported_media_type() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (status, _, outcome) = submit(
        &app,
        &token,
        "application/xml",
        "<Bundle xmlns=\"http://hl7.org/fhir\"/>",
    )
    .await;
    assert_eq!(status, 415, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-02");
}

#[tokio::test]
async fn text_is_an_unsupported_media_type_even_when_it_holds_json() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) = submit(&app, &token, "text/plain", release).await;
    assert_eq!(status, 415, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-02");
}

#[tokio::test]
async fn body_over_the_size_limit_is_too_large() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 4096).await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    assert!(release.len() > 4096);
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 413, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-03");
}

#[tokio::test]
async fn json_nested_deeper_than_the_limit_is_a_bad_request() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let old = "\"valueString\": \"HB2-3-014\"";
    assert!(release.contains(old));
    let body = release.replacen(old, &format!("{old}, \"_deep\": {deep}"), 1);
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, body).await;
    assert_eq!(status, 400, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-04");
}

#[tokio::test]
async fn bundle_with_more_entries_than_the_limit_is_too_large() {
    let app = spawn_app_with(|s| s.limits.max_bundle_entries = 5).await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 413, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-03");
    assert!(diagnostics(&outcome).contains("12"), "{outcome}");
}

#[tokio::test]
async fn document_whose_first_entry_is_not_a_composition_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"].as_array_mut().unwrap().swap(0, 1);
    });
    assert_unprocessable_at(&app, &token, body, "Bundle.entry[0].resource").await;
}

#[tokio::test]
async fn document_without_an_identifier_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b.as_object_mut().unwrap().remove("identifier");
    });
    assert_unprocessable_at(&app, &token, body, "Bundle.identifier").await;
}

#[tokio::test]
async fn document_with_another_composition_type_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"][0]["resource"]["type"]["coding"][0]["code"] = json!("371531000");
    });
    assert_unprocessable_at(&app, &token, body, "Bundle.entry[0].resource.type").await;
}

#[tokio::test]
async fn document_with_an_unknown_custody_event_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"][0]["resource"]["event"][0]["code"][0]["coding"][0]["code"] = json!("escape");
    });
    assert_unprocessable_at(&app, &token, body, "Bundle.entry[0].resource.event[0].code").await;
}

#[tokio::test]
async fn document_without_a_custody_event_code_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"][0]["resource"]["event"][0]
            .as_object_mut()
            .unwrap()
            .remove("code");
    });
    assert_unprocessable_at(&app, &token, body, "Bundle.entry[0].resource.event[0].code").await;
}

#[tokio::test]
async fn document_with_an_nhs_number_failing_modulus_11_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"][1]["resource"]["identifier"][0]["value"] = json!("9990000019");
    });
    assert_unprocessable_at(
        &app,
        &token,
        body,
        "Bundle.entry[1].resource.identifier[0].value",
    )
    .await;
}

#[tokio::test]
async fn document_with_a_malformed_prison_number_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"][1]["resource"]["identifier"][1]["value"] = json!("12345");
    });
    assert_unprocessable_at(
        &app,
        &token,
        body,
        "Bundle.entry[1].resource.identifier[1].value",
    )
    .await;
}

#[tokio::test]
async fn document_with_a_gender_outside_the_value_set_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        b["entry"][1]["resource"]["gender"] = json!("sometimes");
    });
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, body).await;
    assert_eq!(status, 422, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-06");
    assert!(
        expressions(&outcome)
            .iter()
            .any(|e| e.starts_with("Bundle.entry[1].resource")),
        "the issue should point into the Patient: {outcome}"
    );
}

#[tokio::test]
async fn body_that_is_not_a_bundle_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = json!({"resourceType": "Patient", "gender": "male"}).to_string();
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, body).await;
    assert_eq!(status, 422, "{outcome}");
    assert_expression(&outcome, "Bundle.resourceType");
}

#[tokio::test]
async fn document_authored_by_another_organisation_is_forbidden() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let body = release_tree(|b| {
        let org = &mut b["entry"][2]["resource"];
        assert_eq!(org["resourceType"], "Organization");
        org["identifier"][0]["value"] = json!("Y05527");
    });
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, body).await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-07");
    assert!(diagnostics(&outcome).contains("Y05527"), "{outcome}");
}

#[tokio::test]
async fn document_read_by_the_registered_gp_is_filtered_by_policy() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 201, "{outcome}");
    let location = location_of(&headers);
    let gp = app.token_for("gp").await;
    let response = app
        .client_for("gp")
        .get(&location)
        .bearer_auth(&gp)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let withheld = response
        .headers()
        .get("X-Throughcare-Withheld")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let text = response.text().await.unwrap();
    // Custody-only content never reaches the GP, and methadone (ETH) needs consent.
    for secret in ["A1234BC", "HB2-3-014", "not to share cell", "322696004"] {
        assert!(!text.contains(secret), "{secret} reached the GP");
    }
    assert!(
        text.contains("128302006"),
        "the hepatitis C diagnosis is shared"
    );
    assert!(text.contains("2.50"), "the dose survives as written");
    let lower = text.to_lowercase();
    for word in ["methadone", "opiate substitution"] {
        assert!(!lower.contains(word), "{word} reached the GP: {text}");
    }
    // Methadone, the opiate-treatment care plan (ETH by its words) and the custody flag.
    assert_eq!(withheld, "3");

    // The auditor is not a recipient of clinical documents.
    let auditor = app.token_for("auditor").await;
    let response = app
        .client_for("auditor")
        .get(&location)
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(&outcome, "GW-AUTH-04");
}

#[tokio::test]
async fn unknown_document_is_not_found() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let response = app
        .get_bundle(&token, &uuid::Uuid::new_v4().to_string())
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 404, "{outcome}");
    assert_outcome_code(&outcome, "GW-NOT-FOUND");
}

#[tokio::test]
async fn capability_statement_is_public_and_lists_bundle_create_and_read() {
    let app = spawn_app().await;
    let response = app
        .anonymous_client()
        .get(app.url("/fhir/metadata"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["fhirVersion"], "4.0.1");
    let resources = body["rest"][0]["resource"].as_array().expect("resources");
    let bundle = resources
        .iter()
        .find(|r| r["type"] == "Bundle")
        .expect("a Bundle resource");
    let interactions: Vec<&str> = bundle["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(interactions.contains(&"create"), "{interactions:?}");
    assert!(interactions.contains(&"read"), "{interactions:?}");
}

#[tokio::test]
async fn unknown_path_is_not_found_with_an_operation_outcome() {
    let app = spawn_app().await;
    let response = app
        .anonymous_client()
        .get(app.url("/fhir/Nothing/here"))
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 404, "{outcome}");
    assert_outcome_code(&outcome, "GW-NO-ROUTE");
}

#[tokio::test]
async fn unsupported_method_on_a_known_path_is_not_allowed() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let response = app
        .anonymous_client()
        .delete(app.url("/fhir/Bundle/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 405, "{outcome}");
    assert_eq!(issues(&outcome)[0]["code"], "not-supported");
}

#[tokio::test]
async fn body_without_a_content_type_is_an_unsupported_media_type() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let response = app
        .client_for("prison")
        .post(app.url("/fhir/Bundle"))
        .bearer_auth(&token)
        .body(release)
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 415, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-02");
}

#[tokio::test]
async fn body_over_the_size_limit_is_too_large_over_http_1_1() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 4096).await;
    let token = app.token_for("prison").await;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem()).unwrap()])
        .identity(reqwest::Identity::from_pem(&client_identity("prison")).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let (release, _) = unique_release();
    let response = app
        .post_bundle_over(&http, &token, FHIR_JSON, release)
        .await;
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 413, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-03");
}

#[tokio::test]
async fn concurrent_identical_submissions_store_one_document() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let http = app.client_for("prison");
    let sends = (0..6).map(|_| app.post_bundle_over(&http, &token, FHIR_JSON, release.clone()));
    let responses = futures_util::future::join_all(sends).await;
    let mut created = 0;
    let mut locations = std::collections::BTreeSet::new();
    for response in responses {
        let (status, headers, outcome) = status_and_json(response).await;
        assert!(status == 201 || status == 200, "{status}: {outcome}");
        if status == 201 {
            created += 1;
        }
        locations.insert(location_of(&headers));
    }
    assert_eq!(created, 1, "exactly one submission creates the document");
    assert_eq!(locations.len(), 1, "every answer names the same document");
}

/// A second prison (another ODS code, Y05527) registered with the drug service's key pair.
fn with_second_prison(settings: &mut throughcare::config::Settings) {
    settings
        .clients
        .push(throughcare::config::ClientRegistration {
            id: "prison-b".into(),
            ods: throughcare::domain::OdsCode::parse("Y05527").unwrap(),
            role: "prison".parse().unwrap(),
            scopes: vec!["system/Bundle.crs".into()],
            certificate: certs_dir().join("clients/drug-service.crt"),
            name: Some("HMP Elsewhere Healthcare".into()),
            break_glass: false,
            profile: None,
        });
}

/// A connection presenting the second prison's certificate (O=Y05527, the drug service's key).
fn second_prison_client() -> reqwest::Client {
    throughcare::client::http_client(
        &ca_pem(),
        Some(&issued_identity("prison-b", "Y05527", "drug-service")),
    )
    .unwrap()
}

async fn second_prison_token(app: &TestApp, http: &reqwest::Client) -> String {
    throughcare::client::GatewayClient::new(
        &app.base_url,
        "prison-b",
        client_key("drug-service"),
        http.clone(),
    )
    .token()
    .await
    .unwrap()
}

#[tokio::test]
async fn document_of_another_prison_is_not_visible() {
    let app = spawn_app_with(with_second_prison).await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 201, "{outcome}");
    let id = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    let http = second_prison_client();
    let other = second_prison_token(&app, &http).await;
    let response = http
        .get(app.url(&format!("/fhir/Bundle/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 404, "{outcome}");
    assert_outcome_code(&outcome, "GW-NOT-FOUND");
}

#[tokio::test]
async fn idempotency_key_is_scoped_to_the_sender() {
    let app = spawn_app_with(with_second_prison).await;
    let token = app.token_for("prison").await;
    let (release, identifier) = unique_release();
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, release.clone()).await;
    assert_eq!(status, 201, "{outcome}");
    let first = location_of(&headers);

    // The other prison sends its own document under the same identifier value.
    let author = "\"value\": \"Y02307\"";
    assert!(SAMPLE_RELEASE.contains(author));
    let theirs = with_identifier(
        &SAMPLE_RELEASE.replace(author, "\"value\": \"Y05527\""),
        &identifier,
    );
    let http = second_prison_client();
    let other = second_prison_token(&app, &http).await;
    let response = app.post_bundle_over(&http, &other, FHIR_JSON, theirs).await;
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 201, "{outcome}");
    assert_ne!(location_of(&headers), first);
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    // RFC 9110 §15.5.6: a 405 response MUST carry an Allow header.
    let app = spawn_app().await;
    let response = app
        .anonymous_client()
        .delete(app.url("/fhir/Bundle/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let allow = response
        .headers()
        .get("Allow")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    assert!(
        methods.contains(&"GET"),
        "the Allow header should list GET, got {allow:?}"
    );
    assert!(!methods.contains(&"DELETE"), "{allow:?}");
}

#[tokio::test]
async fn body_exactly_at_the_size_limit_is_accepted() {
    let (release, _) = unique_release();
    let limit = release.len();
    let app = spawn_app_with(|s| s.limits.max_body_bytes = limit).await;
    let token = app.token_for("prison").await;
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, release.clone()).await;
    assert_eq!(status, 201, "{outcome}");
    let (other, _) = unique_release();
    let over = format!("{other} ");
    assert_eq!(over.len(), limit + 1);
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, over).await;
    assert_eq!(status, 413, "{outcome}");
}

#[tokio::test]
async fn bundle_with_exactly_the_entry_limit_is_accepted() {
    let app = spawn_app_with(|s| s.limits.max_bundle_entries = 12).await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 201, "{outcome}");
}

#[tokio::test]
async fn emergency_access_overrides_missing_consent_for_an_allowed_client_and_is_flagged() {
    let mut app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 201, "{outcome}");
    let location = location_of(&headers);

    let gp = app.token_for("gp").await;
    let response = app
        .client_for("gp")
        .get(&location)
        .bearer_auth(&gp)
        .header("X-Purpose-Of-Use", "ETREAT")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("X-Throughcare-Emergency-Access")
            .unwrap(),
        "true"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("322696004"),
        "ETREAT overrides the missing ETH consent"
    );
    assert!(
        text.contains("\"ETREAT\""),
        "the copy is flagged as emergency access"
    );
    for secret in ["A1234BC", "HB2-3-014", "not to share cell"] {
        assert!(
            !text.contains(secret),
            "ETREAT never overrides custody stripping: {secret}"
        );
    }

    // A client whose registration does not allow break-glass is refused.
    let drug = app.token_for("drug-service").await;
    let response = app
        .client_for("drug-service")
        .get(&location)
        .bearer_auth(&drug)
        .header("X-Purpose-Of-Use", "ETREAT")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);

    app.stop().await;
    let entries = app.audit_entries().await;
    let emergency: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "emergency-access")
        .collect();
    assert_eq!(
        emergency.len(),
        1,
        "{:?}",
        entries.iter().map(|e| &e.action).collect::<Vec<_>>()
    );
    assert_eq!(emergency[0].actor_client.as_deref(), Some("gp"));
}

/// The receipt tells the sender, per routed recipient and in the profile that recipient
/// receives, what its copy loses in translation: a GP registered for GP Connect STU3 is named
/// with that profile, and no warning names an organisation the document does not go to.
#[tokio::test]
async fn the_receipt_reports_translation_losses_per_recipient() {
    let app = spawn_app_with(|s| s.delivery.enabled = false).await;
    let icb = app.token_for("icb").await;
    let response = app
        .put_json(
            "icb",
            &icb,
            "/admin/endpoints/A99001",
            &json!({"url": "https://gp.example.invalid/fhir", "profile": "gp-connect-stu3"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) = submit(&app, &token, FHIR_JSON, release).await;
    assert_eq!(status, 201, "{outcome}");

    let issues = issues(&outcome);
    let text = |i: &Value| i["diagnostics"].as_str().unwrap_or_default().to_string();
    // The recipients the document routes to, as the receipt lists their Tasks.
    let routed: Vec<String> = issues
        .iter()
        .filter_map(|i| {
            let d = text(i);
            let rest = d.strip_prefix("Delivery to ")?;
            Some(rest.split(' ').next()?.to_string())
        })
        .collect();
    assert!(routed.contains(&"A99001".to_string()), "{outcome}");
    let losses: Vec<&Value> = issues
        .iter()
        .filter(|i| i["code"] == "incomplete")
        .collect();
    let gp: Vec<&&Value> = losses
        .iter()
        .filter(|i| text(i).contains("A99001 (gp-connect-stu3)"))
        .collect();
    assert!(
        !gp.is_empty(),
        "the GP Connect copy's losses are reported: {outcome}"
    );
    for i in &gp {
        assert_eq!(i["severity"], "warning", "{i}");
        assert!(
            i["expression"][0].as_str().is_some_and(|e| !e.is_empty()),
            "each loss names the element it is about: {i}"
        );
    }
    for i in &losses {
        let d = text(i);
        let named = d
            .split_once("copy for ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or_else(|| panic!("a loss warning names its recipient: {d}"));
        assert!(
            routed.iter().any(|r| r == named),
            "{named} is not routed ({routed:?}) but is named in: {d}"
        );
    }
    assert!(
        !diagnostics(&outcome).contains("A99001 (uk-core-r4)"),
        "the GP is reported in the profile it receives: {outcome}"
    );
}
