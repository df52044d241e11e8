//! Consent belongs to the prisons that hold the patient (issue 10, item 4): the current prison
//! records permits; a prison that has held the patient records denials and withdrawals and reads
//! the patient's Consents; nobody else does. `$sharing-decision` answers the current prison and
//! IG in full, a recipient only about itself and only with counts.

use serde_json::{Value, json};

use crate::consent::{eth_permit_for, withdraw_consent};
use crate::directory::{EASTWOOD_PARK, transfer_to};
use crate::helpers::*;

/// HMP Leyhill's healthcare unit: an active prison that never held the sample patient.
const LEYHILL: &str = "Y03194";
const GP: &str = "A99001";
const DRUG_SERVICE: &str = "X99001";
const ICB: &str = "Q99";
/// Every reference in the sample document starts with this.
const SAMPLE_ID_PREFIX: &str = "1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e";
const METHADONE: &str = "MedicationRequest/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006";

/// A gateway with two more prisons: Eastwood Park (`eastwood`) and Leyhill (`leyhill`).
async fn app_with_prisons() -> TestApp {
    spawn_app_with(|s| {
        register_prison(s, "eastwood", EASTWOOD_PARK);
        register_prison(s, "leyhill", LEYHILL);
    })
    .await
}

/// The sample prison sends `document` (asserting 201).
async fn send(app: &TestApp, document: String) {
    let token = app.token_for("prison").await;
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await;
    assert_eq!(status, 201, "{outcome}");
}

/// HMP Bristol (the sample prison) reports the sample patient's release: it holds them.
async fn admit(app: &TestApp) {
    send(app, unique_release().0).await;
}

/// A Consent denying every recipient (or `actor`) everything, or `ETH` only.
fn deny(actor: &str, eth_only: bool) -> Value {
    let mut c = eth_permit_for(actor);
    c["provision"]["type"] = json!("deny");
    if !eth_only {
        c["provision"]
            .as_object_mut()
            .unwrap()
            .shift_remove("securityLabel");
    }
    c
}

async fn write_as(
    app: &TestApp,
    who: &str,
    id: Option<&str>,
    consent: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let token = app.token_for(who).await;
    let response = match id {
        None => app.post_json(who, &token, "/fhir/Consent", consent).await,
        Some(id) => {
            app.put_json(who, &token, &format!("/fhir/Consent/{id}"), consent)
                .await
        }
    };
    status_and_json(response).await
}

async fn get_as(app: &TestApp, who: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let token = app.token_for(who).await;
    let (status, _, body) = status_and_json(app.get_as(who, &token, path, query).await).await;
    (status, body)
}

/// `$sharing-decision` about the sample patient's latest document and `recipient`, asked by
/// `who`: status, JSON and the bytes as served.
async fn decision(app: &TestApp, who: &str, recipient: &str) -> (u16, Value, String) {
    let token = app.token_for(who).await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {
            "system": "https://fhir.nhs.uk/Id/nhs-number", "value": SAMPLE_NHS_NUMBER}},
        {"name": "recipient", "valueIdentifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": recipient}}
    ]});
    let response = app
        .post_json(who, &token, "/fhir/$sharing-decision", &params)
        .await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body, text)
}

fn assert_forbidden(status: u16, outcome: &Value, code: &str) {
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(outcome, code);
}

/// The `input-rejected` audit entries of refusals with `status` made to `client`.
fn refusals<'a>(
    entries: &'a [throughcare::audit::AuditEntry],
    client: &str,
    status: u16,
) -> Vec<&'a throughcare::audit::AuditEntry> {
    entries
        .iter()
        .filter(|e| e.action == "input-rejected" && e.actor_client.as_deref() == Some(client))
        .filter(|e| serde_json::from_str::<Value>(&e.detail).unwrap()["status"] == json!(status))
        .collect()
}

#[tokio::test]
async fn a_permit_written_by_a_prison_that_does_not_hold_the_patient_is_forbidden_and_audited() {
    let mut app = app_with_prisons().await;
    admit(&app).await;

    let (status, headers, outcome) =
        write_as(&app, "leyhill", None, &eth_permit_for(DRUG_SERVICE)).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");
    assert!(headers.get("Location").is_none());
    // Nor a denial: Leyhill has never held the patient.
    let (status, _, outcome) = write_as(&app, "leyhill", None, &deny(GP, false)).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");
    // The patient who has no documents here at all: the same answer, nothing more.
    let mut stranger = eth_permit_for(DRUG_SERVICE);
    stranger["patient"]["identifier"]["value"] = json!("9990000026");
    let (status, _, outcome) = write_as(&app, "prison", None, &stranger).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");

    // Nothing was recorded.
    let (status, bundle) = get_as(
        &app,
        "prison",
        "/fhir/Consent",
        &[("patient", SAMPLE_NHS_NUMBER)],
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 0, "{bundle}");

    app.stop().await;
    let entries = app.audit_entries().await;
    assert!(
        !entries.iter().any(|e| e.action == "consent-recorded"),
        "no consent was recorded"
    );
    let refused = refusals(&entries, "leyhill", 403);
    assert_eq!(refused.len(), 2, "{refused:?}");
    for e in refused {
        assert_eq!(e.nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
        assert_eq!(e.actor_ods.as_deref(), Some(LEYHILL));
        let detail: Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(detail["endpoint"], "POST /fhir/Consent");
    }
}

#[tokio::test]
async fn a_withdrawal_written_by_a_prison_that_sent_the_patient_on_is_accepted() {
    let app = app_with_prisons().await;
    admit(&app).await;
    let permit = eth_permit_for(DRUG_SERVICE);
    let (status, _, body) = write_as(&app, "prison", None, &permit).await;
    assert_eq!(status, 201, "the current prison records a permit: {body}");
    let id = body["id"].as_str().unwrap().to_string();

    // Bristol transfers the patient to Eastwood Park, which now holds them.
    send(&app, transfer_to(EASTWOOD_PARK)).await;

    // Bristol may still withdraw (never blocked) and deny...
    let prison = app.token_for("prison").await;
    assert_eq!(withdraw_consent(&app, &prison, &id, &permit).await, "2");
    let (status, _, body) = write_as(&app, "prison", None, &deny(GP, true)).await;
    assert_eq!(
        status, 201,
        "a denial by a prison that held the patient: {body}"
    );
    // ...but no longer permit.
    let (status, _, outcome) = write_as(&app, "prison", None, &permit).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");
    let mut again = permit.clone();
    again["id"] = json!(id);
    let (status, _, outcome) = write_as(&app, "prison", Some(&id), &again).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");

    // Eastwood Park, the current prison, may.
    let (status, _, body) = write_as(&app, "eastwood", None, &permit).await;
    assert_eq!(status, 201, "{body}");
    let eastwood_id = body["id"].as_str().unwrap().to_string();
    // Leyhill never held the patient: not even a withdrawal.
    let mut withdrawn = permit.clone();
    withdrawn["id"] = json!(eastwood_id);
    withdrawn["status"] = json!("inactive");
    let (status, _, outcome) = write_as(&app, "leyhill", Some(&eastwood_id), &withdrawn).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");
    let (status, _, body) = write_as(&app, "prison", Some(&eastwood_id), &withdrawn).await;
    assert_eq!(
        status, 200,
        "Bristol withdraws Eastwood Park's permit: {body}"
    );
}

#[tokio::test]
async fn consents_are_read_and_searched_only_by_prisons_that_have_held_the_patient() {
    let mut app = app_with_prisons().await;
    admit(&app).await;
    let (status, _, body) = write_as(&app, "prison", None, &eth_permit_for(DRUG_SERVICE)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let read_path = format!("/fhir/Consent/{id}");
    let search = [("patient", SAMPLE_NHS_NUMBER)];

    let (status, outcome) = get_as(&app, "leyhill", "/fhir/Consent", &search).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");
    let (status, outcome) = get_as(&app, "leyhill", &read_path, &[]).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");
    assert!(
        !outcome.to_string().contains("ETH"),
        "the refusal says nothing of the Consent: {outcome}"
    );
    // Eastwood Park before the transfer: it has not held the patient yet.
    let (status, outcome) = get_as(&app, "eastwood", &read_path, &[]).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-01");

    send(&app, transfer_to(EASTWOOD_PARK)).await;
    for who in ["eastwood", "prison"] {
        let (status, bundle) = get_as(&app, who, "/fhir/Consent", &search).await;
        assert_eq!(status, 200, "{who}: {bundle}");
        assert_eq!(bundle["total"], 1, "{who}: {bundle}");
        let (status, consent) = get_as(&app, who, &read_path, &[]).await;
        assert_eq!(status, 200, "{who}: {consent}");
        assert_eq!(consent["id"], id.as_str());
    }

    app.stop().await;
    let entries = app.audit_entries().await;
    let refused = refusals(&entries, "leyhill", 403);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|e| e.nhs_number.as_deref() == Some(SAMPLE_NHS_NUMBER)),
        "each refusal names the patient: {refused:?}"
    );
}

#[tokio::test]
async fn sharing_decision_is_refused_to_a_prison_that_does_not_hold_the_patient() {
    let mut app = app_with_prisons().await;
    admit(&app).await;
    let (status, outcome, _) = decision(&app, "leyhill", GP).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-02");
    let (status, body, _) = decision(&app, "prison", GP).await;
    assert_eq!(status, 200, "the current prison: {body}");

    // After the transfer, Eastwood Park answers for the patient; Bristol no longer does.
    send(&app, transfer_to(EASTWOOD_PARK)).await;
    let (status, outcome, _) = decision(&app, "prison", GP).await;
    assert_forbidden(status, &outcome, "GW-CUSTODY-02");
    let (status, body, text) = decision(&app, "eastwood", GP).await;
    assert_eq!(status, 200, "{body}");
    assert!(text.contains(METHADONE), "the full answer: {body}");

    app.stop().await;
    let entries = app.audit_entries().await;
    let refused = refusals(&entries, "leyhill", 403);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
}

#[tokio::test]
async fn a_recipient_asking_about_itself_learns_only_counts() {
    let app = spawn_app().await;
    admit(&app).await;
    // The patient denies the GP their substance misuse information.
    let (status, _, body) = write_as(&app, "prison", None, &deny(GP, true)).await;
    assert_eq!(status, 201, "{body}");
    let consent_id = body["id"].as_str().unwrap().to_string();

    // Control: the current prison's answer names what is withheld from the GP and why.
    let (status, _, full) = decision(&app, "prison", GP).await;
    assert_eq!(status, 200, "{full}");
    for needle in [METHADONE, "ETH", consent_id.as_str(), "custody-only"] {
        assert!(full.contains(needle), "{needle} in the full answer: {full}");
    }

    for (who, recipient) in [("gp", GP), ("drug-service", DRUG_SERVICE), ("icb", ICB)] {
        // The counts are those of the full answer the current prison gets about the recipient.
        let (_, full, _) = decision(&app, "prison", recipient).await;
        let verdicts: Vec<bool> = full["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "resource")
            .map(|p| p["part"][1]["valueBoolean"].as_bool().unwrap())
            .collect();
        let shared = verdicts.iter().filter(|s| **s).count();
        let withheld = verdicts.len() - shared;
        assert!(
            withheld > 0,
            "something is withheld from {recipient}: {full}"
        );

        let (status, body, text) = decision(&app, who, recipient).await;
        assert_eq!(status, 200, "{who}: {body}");
        let names: Vec<&str> = body["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["recipient", "purpose", "shared", "withheld"],
            "{who}: {body}"
        );
        assert_eq!(body["parameter"][0]["valueIdentifier"]["value"], recipient);
        assert_eq!(
            body["parameter"][2]["valueInteger"], shared,
            "{who}: {body}"
        );
        assert_eq!(
            body["parameter"][3]["valueInteger"], withheld,
            "{who}: {body}"
        );
        // Not one reference, type, label or consent id, in any form.
        for secret in [
            SAMPLE_ID_PREFIX,
            "MedicationRequest",
            "Condition",
            "Flag",
            "ETH",
            "custody",
            "Consent",
            consent_id.as_str(),
            "A1234BC",
        ] {
            assert!(
                !text.contains(secret),
                "{who} learns {secret:?} about what is withheld from it: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_recipient_asking_about_another_recipient_is_forbidden() {
    let mut app = spawn_app().await;
    admit(&app).await;
    for (who, about) in [("gp", DRUG_SERVICE), ("drug-service", GP), ("icb", GP)] {
        let (status, outcome, text) = decision(&app, who, about).await;
        assert_forbidden(status, &outcome, "GW-CUSTODY-02");
        assert!(!text.contains(SAMPLE_ID_PREFIX), "{who}: {text}");
    }
    app.stop().await;
    let entries = app.audit_entries().await;
    for who in ["gp", "drug-service", "icb"] {
        let refused = refusals(&entries, who, 403);
        assert_eq!(refused.len(), 1, "{who}: {refused:?}");
        assert_eq!(refused[0].nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
    }
}

#[tokio::test]
async fn information_governance_gets_the_full_sharing_decision() {
    let app = spawn_app().await;
    admit(&app).await;
    let (status, body, text) = decision(&app, "auditor", GP).await;
    assert_eq!(status, 200, "{body}");
    assert!(text.contains(METHADONE), "{body}");
    assert!(
        body["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "agreement"),
        "{body}"
    );
}
