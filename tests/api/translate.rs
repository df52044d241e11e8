//! `POST /fhir/Bundle/$translate`, `POST /fhir/ConceptMap/$translate`, and the loss report at
//! intake.

use serde_json::{Value, json};

use crate::helpers::*;

fn sample() -> Value {
    serde_json::from_str(throughcare::demo::SAMPLE_RELEASE).unwrap()
}

#[tokio::test]
async fn a_translation_preview_returns_the_target_copy_and_stores_nothing() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    for target in ["uk-core-r4", "gp-connect-stu3", "prison"] {
        let response = app
            .post_json(
                "prison",
                &token,
                &format!("/fhir/Bundle/$translate?target={target}"),
                &sample(),
            )
            .await;
        assert_eq!(response.status().as_u16(), 200, "{target}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("2.50"),
            "{target}: the dose survives as written"
        );
        let params: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(params["parameter"][0]["name"], "return");
        assert_eq!(
            params["parameter"][1]["resource"]["resourceType"],
            "OperationOutcome"
        );
        if target == "gp-connect-stu3" {
            let out = &params["parameter"][0]["resource"];
            assert_eq!(out["type"], "collection");
            fhir_io::check_stu3_bundle(out.to_string().as_bytes()).unwrap();
        }
    }
    // Nothing was stored.
    let response = app.get_as("prison", &token, "/fhir/Task", &[]).await;
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(bundle["total"], 0);
    let bad = app
        .post_json(
            "prison",
            &token,
            "/fhir/Bundle/$translate?target=hl7v2",
            &sample(),
        )
        .await;
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn codes_that_cannot_be_mapped_are_reported_as_losses() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let mut doc = sample();
    doc["entry"][7]["resource"]["code"] = json!({"coding": [{"system": "https://throughcare.example.org/fhir/CodeSystem/prison-local-condition", "code": "NO-SUCH-CODE"}]});
    let response = app
        .post_json(
            "prison",
            &token,
            "/fhir/Bundle/$translate?target=gp-connect-stu3",
            &doc,
        )
        .await;
    let params: Value = response.json().await.unwrap();
    let issues = params["parameter"][1]["resource"]["issue"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        issues.iter().any(|i| i["severity"] == "warning"
            && i["expression"][0]
                .as_str()
                .unwrap_or_default()
                .starts_with("Bundle.entry[7].resource")),
        "{issues:?}"
    );
}

#[tokio::test]
async fn concept_map_translate_answers_with_the_standard_parameters() {
    let app = spawn_app().await;
    let token = app.token_for("gp").await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": "https://throughcare.example.org/fhir/ConceptMap/prison-local-to-snomed"},
        {"name": "system", "valueUri": "https://throughcare.example.org/fhir/CodeSystem/prison-local-condition"},
        {"name": "code", "valueCode": "HEPC-CHRONIC"}
    ]});
    let response = app
        .post_json("gp", &token, "/fhir/ConceptMap/$translate", &params)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let out: Value = response.json().await.unwrap();
    let result = out["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "result")
        .unwrap();
    assert_eq!(result["valueBoolean"], true, "{out}");
    assert!(out.to_string().contains("128302006"), "{out}");
    let unknown = json!({"resourceType": "Parameters", "parameter": [
        {"name": "system", "valueUri": "https://throughcare.example.org/fhir/CodeSystem/prison-local-condition"},
        {"name": "code", "valueCode": "NOPE"}
    ]});
    let out: Value = app
        .post_json("gp", &token, "/fhir/ConceptMap/$translate", &unknown)
        .await
        .json()
        .await
        .unwrap();
    let result = out["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "result")
        .unwrap();
    assert_eq!(result["valueBoolean"], false, "{out}");
}

#[tokio::test]
async fn the_gp_connect_pull_has_the_structured_record_shape_and_policy_applied() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&prison, FHIR_JSON, release).await).await;
    assert_eq!(status, 201, "{outcome}");
    let gp = app.token_for("gp").await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}},
        {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": false}]},
        {"name": "includeMedication"}
    ]});
    let response = app
        .post_json("gp", &gp, "/fhir/Patient/$gpc.getstructuredrecord", &params)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    fhir_io::check_stu3_bundle(text.as_bytes()).unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bundle["type"], "collection");
    let lists: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "List")
        .collect();
    assert!(!lists.is_empty(), "structured records carry Lists");
    // Only the areas asked for: allergies and medications, no problems.
    let codes: Vec<&str> = lists
        .iter()
        .map(|l| l["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"886921000000105"), "{codes:?}");
    assert!(codes.contains(&"933361000000108"), "{codes:?}");
    assert!(!codes.contains(&"717711000000103"), "{codes:?}");
    assert!(!text.contains("128302006"), "the problem was not asked for");
    // An unknown parameter is refused.
    let odd = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}},
        {"name": "includeEverything"}]});
    let response = app
        .post_json("gp", &gp, "/fhir/Patient/$gpc.getstructuredrecord", &odd)
        .await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(
        lists
            .iter()
            .all(|l| l["code"]["coding"][0]["system"] == "http://snomed.info/sct")
    );
    for secret in ["A1234BC", "HB2-3-014", "not to share cell", "322696004"] {
        assert!(!text.contains(secret), "{secret} reached the GP");
    }
    // Unknown patient: 404; missing NHS number: 422.
    let other = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000026"}}]});
    let response = app
        .post_json("gp", &gp, "/fhir/Patient/$gpc.getstructuredrecord", &other)
        .await;
    assert_eq!(response.status().as_u16(), 404);
    let empty = json!({"resourceType": "Parameters", "parameter": []});
    let response = app
        .post_json("gp", &gp, "/fhir/Patient/$gpc.getstructuredrecord", &empty)
        .await;
    assert_eq!(response.status().as_u16(), 422);
}
