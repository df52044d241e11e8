//! Corrections, the FHIR document way: a new document whose Composition `relatesTo` `replaces`
//! the `Bundle.identifier` of the one it corrects. Copies of the replaced document that have not
//! gone out are cancelled; those that went out are followed by the correction.

use serde_json::{Value, json};

use crate::delivery::{fast, recipient, register_as, submit_document, wait_for};
use crate::helpers::*;

const GP: &str = "A99001";
const DRUG_SERVICE: &str = "X99001";

fn identifier_of(document: &str) -> (String, String) {
    let tree: Value = serde_json::from_str(document).unwrap();
    (
        tree["identifier"]["system"].as_str().unwrap().to_string(),
        tree["identifier"]["value"].as_str().unwrap().to_string(),
    )
}

fn correction_of(system: &str, value: &str) -> String {
    release_tree(|b| {
        b["entry"][0]["resource"]["relatesTo"] = json!([{"code": "replaces",
            "targetIdentifier": {"system": system, "value": value}}]);
        b["entry"][7]["resource"]["note"] =
            json!([{"text": "Corrected: 6 weeks of treatment remaining on release."}]);
    })
}

async fn task(app: &TestApp, document: &str, owner: &str) -> Value {
    let token = app.token_for("prison").await;
    let response = app
        .get_as("prison", &token, "/fhir/Task", &[("focus", document)])
        .await;
    let bundle: Value = response.json().await.unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|t| t["owner"]["identifier"]["value"] == owner)
        .unwrap_or_else(|| panic!("no Task for {owner}: {bundle}"))
}

#[tokio::test]
async fn a_correction_cancels_copies_not_yet_sent_and_follows_those_that_went() {
    let app = spawn_app_with(fast).await;
    let (url, gp) = recipient(vec![]).await;
    register_as(&app, GP, &url, "uk-core-r4").await;
    let (first, _) = unique_release();
    let (system, value) = identifier_of(&first);
    let first_id = submit_document(&app, first).await;
    wait_for(&app, &first_id, GP, "completed").await;
    // The drug service has no endpoint: its copy waits for a pull.
    assert_eq!(
        task(&app, &first_id, DRUG_SERVICE).await["status"],
        "requested"
    );

    let token = app.token_for("prison").await;
    let (status, headers, outcome) = status_and_json(
        app.post_bundle(&token, FHIR_JSON, correction_of(&system, &value))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{outcome}");
    assert!(
        diagnostics(&outcome).contains("1 copies not yet sent were cancelled"),
        "{outcome}"
    );
    let second_id = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    let cancelled = task(&app, &first_id, DRUG_SERVICE).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["businessStatus"]["coding"][0]["code"], "replaced");
    assert!(
        cancelled["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains(&second_id),
        "{cancelled}"
    );
    // What went out stays delivered, and the correction follows it.
    assert_eq!(task(&app, &first_id, GP).await["status"], "completed");
    wait_for(&app, &second_id, GP, "completed").await;
    let bodies: Vec<String> = gp
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies[1].contains("replaces") && bodies[1].contains(&value),
        "{}",
        bodies[1]
    );
    // The correction's own copy for the drug service waits for its pull as usual.
    assert_eq!(
        task(&app, &second_id, DRUG_SERVICE).await["status"],
        "requested"
    );
}

#[tokio::test]
async fn a_correction_of_a_document_the_sender_did_not_send_is_unprocessable() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (status, _, outcome) = status_and_json(
        app.post_bundle(
            &token,
            FHIR_JSON,
            correction_of(
                "https://throughcare.example.org/fhir/Id/prison-document",
                "Y05527-REL-not-ours",
            ),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{outcome}");
    assert_outcome_code(&outcome, "GW-INTAKE-10");
    assert_expression(&outcome, "Bundle.entry[0].resource.relatesTo");
}
