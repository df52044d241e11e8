//! Roles come from the organisation directory, never from the document (issue 10, items 2 and
//! 3): ODS codes are compared exactly as registered, a transfer is routed only to an active
//! prison healthcare unit on the MoJ prison register, and a care-plan performer the directory
//! does not know gets no grant by role.

use serde_json::{Value, json};

use crate::helpers::*;

const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// HMP & YOI Eastwood Park's healthcare unit: an active row of the prison register.
pub const EASTWOOD_PARK: &str = "Y03193";
/// HMP Kennet's healthcare unit: a register row that is not active.
const KENNET: &str = "Y03175";

/// Entry indexes in the sample document.
const PATIENT_ENTRY: usize = 1;
const ENCOUNTER_ENTRY: usize = 3;
const DRUG_SERVICE_ORG_ENTRY: usize = 4;
const CARE_PLAN_ENTRY: usize = 9;

/// The sample document turned into a transfer to `destination` (an ODS code, given on
/// `Encounter.hospitalization.destination`), uniquely identified.
pub fn transfer_to(destination: &str) -> String {
    release_tree(|b| {
        b["entry"][0]["resource"]["event"][0]["code"][0]["coding"][0] = json!({
            "system": "https://throughcare.example.org/fhir/CodeSystem/custody-event",
            "code": "transfer",
            "display": "Transfer between establishments"
        });
        b["entry"][ENCOUNTER_ENTRY]["resource"]["hospitalization"] = json!({
            "destination": {"identifier": {"system": ODS, "value": destination}}
        });
    })
}

/// Posts `document` as the sample prison: status, headers and the OperationOutcome.
async fn post(app: &TestApp, document: String) -> (u16, reqwest::header::HeaderMap, Value) {
    let token = app.token_for("prison").await;
    status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await
}

/// The Tasks `who` can see.
async fn tasks(app: &TestApp, who: &str) -> Vec<Value> {
    let token = app.token_for(who).await;
    let (status, _, bundle) =
        status_and_json(app.get_as(who, &token, "/fhir/Task", &[]).await).await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn assert_refused_at(status: u16, outcome: &Value, code: &str, expression: &str) {
    assert_eq!(status, 422, "{outcome}");
    assert_outcome_code(outcome, code);
    assert_expression(outcome, expression);
}

#[tokio::test]
async fn a_look_alike_ods_code_in_general_practitioner_is_refused_naming_the_element() {
    let app = spawn_app().await;
    // Cyrillic А (U+0410) for the Latin A of the sample GP, A99001.
    let document = release_tree(|b| {
        b["entry"][PATIENT_ENTRY]["resource"]["generalPractitioner"][0]["identifier"]["value"] =
            json!("\u{0410}99001");
    });
    let (status, headers, outcome) = post(&app, document).await;
    assert_refused_at(
        status,
        &outcome,
        "GW-ROUTING-01",
        "Bundle.entry[1].resource.generalPractitioner[0].identifier.value",
    );
    assert!(headers.get("Location").is_none(), "nothing was accepted");

    // A look-alike identifier system leaves a GP with no ODS code: refused too, never read as
    // "no GP" (which would send the copy to the ICB).
    let document = release_tree(|b| {
        b["entry"][PATIENT_ENTRY]["resource"]["generalPractitioner"][0]["identifier"]["system"] =
            json!("https://fhir.nhs.uk/Id/ods-organisation-code");
    });
    let (status, _, outcome) = post(&app, document).await;
    assert_refused_at(
        status,
        &outcome,
        "GW-ROUTING-01",
        "Bundle.entry[1].resource.generalPractitioner",
    );
    assert!(tasks(&app, "prison").await.is_empty(), "nothing was routed");
}

#[tokio::test]
async fn a_look_alike_ods_code_in_a_care_plan_performer_is_refused_naming_the_element() {
    let app = spawn_app().await;
    // Cyrillic Х (U+0425) for the Latin X of the sample drug service, X99001, on the performer.
    let document = release_tree(|b| {
        b["entry"][CARE_PLAN_ENTRY]["resource"]["activity"][0]["detail"]["performer"][0]["identifier"]
            ["value"] = json!("\u{0425}99001");
    });
    let (status, _, outcome) = post(&app, document).await;
    assert_refused_at(
        status,
        &outcome,
        "GW-ROUTING-01",
        "Bundle.entry[9].resource.activity[0].detail.performer[0].identifier.value",
    );

    // On the Organization the performer refers to.
    let document = release_tree(|b| {
        b["entry"][DRUG_SERVICE_ORG_ENTRY]["resource"]["identifier"][0]["value"] =
            json!("\u{0425}99001");
    });
    let (status, _, outcome) = post(&app, document).await;
    assert_refused_at(
        status,
        &outcome,
        "GW-ROUTING-01",
        "Bundle.entry[4].resource.identifier[0].value",
    );
    assert!(
        diagnostics(&outcome).contains("performer[0]"),
        "the performer is named: {outcome}"
    );
    assert!(tasks(&app, "prison").await.is_empty(), "nothing was routed");
}

#[tokio::test]
async fn a_registered_gp_the_directory_holds_as_another_kind_of_organisation_is_refused() {
    let app = spawn_app().await;
    // The drug service (a registered service) named as the patient's GP.
    let document = release_tree(|b| {
        b["entry"][PATIENT_ENTRY]["resource"]["generalPractitioner"][0]["identifier"]["value"] =
            json!("X99001");
    });
    let (status, _, outcome) = post(&app, document).await;
    assert_refused_at(
        status,
        &outcome,
        "GW-ROUTING-02",
        "Bundle.entry[1].resource.generalPractitioner[0]",
    );
    assert!(diagnostics(&outcome).contains("service"), "{outcome}");
}

#[tokio::test]
async fn a_transfer_to_an_organisation_that_is_not_a_prison_healthcare_unit_is_refused_and_nothing_is_routed()
 {
    let mut app = spawn_app().await;
    // A registered drug service, an inactive register row (HMP Kennet), an unknown code.
    for destination in ["X99001", KENNET, "Y99999"] {
        let (status, headers, outcome) = post(&app, transfer_to(destination)).await;
        assert_refused_at(
            status,
            &outcome,
            "GW-ROUTING-02",
            "Bundle.entry[3].resource.hospitalization.destination",
        );
        assert!(
            diagnostics(&outcome).contains(destination),
            "{destination}: {outcome}"
        );
        assert!(headers.get("Location").is_none(), "{destination}");
    }
    // A transfer that names no destination is refused as well.
    let document = release_tree(|b| {
        b["entry"][0]["resource"]["event"][0]["code"][0]["coding"][0]["code"] = json!("transfer");
        b["entry"][0]["resource"]["event"][0]["code"][0]["coding"][0]["display"] =
            json!("Transfer between establishments");
    });
    let (status, _, outcome) = post(&app, document).await;
    assert_refused_at(
        status,
        &outcome,
        "GW-ROUTING-01",
        "Bundle.entry[3].resource.hospitalization.destination",
    );

    // Nothing was routed or stored; each refusal is audited with the patient.
    assert!(tasks(&app, "prison").await.is_empty());
    app.stop().await;
    let entries = app.audit_entries().await;
    assert!(
        !entries.iter().any(|e| e.action == "document-received"),
        "no document was accepted"
    );
    let rejected: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "input-rejected")
        .collect();
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .all(|e| e.nhs_number.as_deref() == Some(SAMPLE_NHS_NUMBER))
    );
}

#[tokio::test]
async fn a_transfer_to_an_active_prison_on_the_register_is_routed_to_it_as_the_receiving_prison() {
    let app = spawn_app_with(|s| register_prison(s, "eastwood", EASTWOOD_PARK)).await;
    let (status, headers, outcome) = post(&app, transfer_to(EASTWOOD_PARK)).await;
    assert_eq!(status, 201, "{outcome}");
    let id = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        diagnostics(&outcome).contains(&format!(
            "Recipient {EASTWOOD_PARK} (ReceivingPrison) under agreement prison-to-prison v1"
        )),
        "{outcome}"
    );
    // The receiving prison sees its Task, and reads the whole record, custody data included.
    let mine = tasks(&app, "eastwood").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["owner"]["identifier"]["value"], EASTWOOD_PARK);
    let token = app.token_for("eastwood").await;
    let response = app
        .get_as("eastwood", &token, &format!("/fhir/Bundle/{id}"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("A1234BC"),
        "the prison number travels between prisons"
    );
}

/// The sample agreements, plus two: one granting any `service` organisation medications (a
/// role-based grant), one naming the ODS code `X99077` for the core class only.
fn agreements_with_role_and_ods_grants(settings: &mut throughcare::config::Settings) {
    let dir = settings
        .server
        .data_dir
        .parent()
        .unwrap()
        .join("agreements");
    std::fs::create_dir_all(&dir).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agreements");
    for f in std::fs::read_dir(&repo).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let common = r#"
version = 1
status = "active"
direction = "prison-to-community"
purposes = ["TREAT"]
senders = [{ role = "prison" }]
sensitive_permitted = []
consent_required = []
custody_data = false
legal_basis = "Test."
valid_from = "2026-01-01"
ig_contact = "ig@example.org"
"#;
    std::fs::write(
        dir.join("prison-to-any-service.toml"),
        format!(
            "id = \"prison-to-any-service\"\ntitle = \"Any service\"\nrecipients = [{{ role = \"service\" }}]\ndata_classes = [\"core\", \"medications\"]\n{common}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prison-to-x99077.toml"),
        format!(
            "id = \"prison-to-x99077\"\ntitle = \"X99077 by name\"\nrecipients = [{{ ods = \"X99077\" }}]\ndata_classes = [\"core\"]\n{common}"
        ),
    )
    .unwrap();
    settings.policy.agreements_dir = dir;
}

/// The sample document with its care plan's performer (and the Organization it refers to)
/// changed to `ods`.
fn with_performer(ods: &str) -> String {
    release_tree(|b| {
        b["entry"][CARE_PLAN_ENTRY]["resource"]["activity"][0]["detail"]["performer"][0]["identifier"]
            ["value"] = json!(ods);
        b["entry"][DRUG_SERVICE_ORG_ENTRY]["resource"]["identifier"][0]["value"] = json!(ods);
    })
}

/// `$sharing-decision` for the sample patient's latest document and `recipient`, as the
/// sample prison (the patient's current prison); the answer's resources as (reference,
/// shared, rule).
async fn decision_for(app: &TestApp, recipient: &str) -> (Value, Vec<(String, bool, i64)>) {
    let token = app.token_for("prison").await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueString": SAMPLE_NHS_NUMBER},
        {"name": "recipient", "valueString": recipient}
    ]});
    let (status, _, body) = status_and_json(
        app.post_json("prison", &token, "/fhir/$sharing-decision", &params)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resources = body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "resource")
        .map(|p| {
            let part = |n: &str| {
                p["part"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["name"] == n)
                    .unwrap()
                    .clone()
            };
            (
                part("reference")["valueString"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                part("shared")["valueBoolean"].as_bool().unwrap(),
                part("rule")["valueInteger"].as_i64().unwrap(),
            )
        })
        .collect();
    (body, resources)
}

#[tokio::test]
async fn an_unknown_care_plan_performer_gets_no_role_grant_and_the_sender_is_warned() {
    let app = spawn_app_with(agreements_with_role_and_ods_grants).await;
    let (status, _, outcome) = post(&app, with_performer("X99077")).await;
    assert_eq!(status, 201, "{outcome}");
    let warning = issues(&outcome)
        .iter()
        .find(|i| i["details"]["coding"][0]["code"] == "GW-ROUTING-03")
        .unwrap_or_else(|| panic!("a warning about the unknown performer: {outcome}"));
    assert_eq!(warning["severity"], "warning");
    assert!(
        warning["diagnostics"].as_str().unwrap().contains("X99077"),
        "{warning}"
    );
    assert_eq!(
        warning["expression"][0],
        "Bundle.entry[9].resource.activity[0].detail.performer[0]"
    );

    // Not covered by "any service" (a role the document cannot give it), nor as a care-plan
    // performer: only by the agreement that names its ODS code, for the core class only.
    let (body, resources) = decision_for(&app, "X99077").await;
    let agreement = body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "agreement")
        .map(|p| p["valueString"].clone());
    assert_eq!(agreement, Some(json!("prison-to-x99077|1")), "{body}");
    let ramipril = resources
        .iter()
        .find(|(r, _, _)| r == "MedicationRequest/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1007")
        .unwrap();
    assert_eq!(
        (ramipril.1, ramipril.2),
        (false, 3),
        "no medications for an unknown performer: {body}"
    );
    let patient = resources
        .iter()
        .find(|(r, _, _)| r == "Patient/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002")
        .unwrap();
    assert!(patient.1, "the core class, by ODS code: {body}");

    // A registered service named as the performer keeps its role and relationship.
    let (status, _, outcome) = post(&app, with_performer("X99001")).await;
    assert_eq!(status, 201, "{outcome}");
    assert!(
        !gateway_codes(&outcome).contains(&"GW-ROUTING-03".to_string()),
        "{outcome}"
    );
    assert!(
        diagnostics(&outcome).contains("Recipient X99001 (CarePlanPerformer)"),
        "{outcome}"
    );
}

#[tokio::test]
async fn a_care_plan_performer_known_only_by_its_endpoint_is_routed_as_a_care_plan_performer() {
    let app = spawn_app_with(|s| {
        s.delivery.enabled = false;
        register_client(
            s,
            "operator",
            "X99003",
            throughcare::domain::Role::Admin,
            &["system/Endpoint.u"],
        )
    })
    .await;
    let token = app.token_for("operator").await;
    let endpoint = json!({"url": "https://drug-service.example.org/fhir", "profile": "uk-core-r4"});
    let (status, _, body) = status_and_json(
        app.put_json("operator", &token, "/admin/endpoints/X99066", &endpoint)
            .await,
    )
    .await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    let (status, _, outcome) = post(&app, with_performer("X99066")).await;
    assert_eq!(status, 201, "{outcome}");
    assert!(
        !gateway_codes(&outcome).contains(&"GW-ROUTING-03".to_string()),
        "the directory knows it: {outcome}"
    );
    assert!(
        diagnostics(&outcome).contains(
            "Recipient X99066 (CarePlanPerformer) under agreement prison-to-drug-service v1"
        ),
        "{outcome}"
    );
}
