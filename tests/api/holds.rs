//! A clinically sound copy is never dropped over an administrative element (issue 12 item 3):
//! a copy that fails its profiles only in administrative elements is sent with the failures as
//! warnings; one that fails in clinical content, or carries a medicine without its safety
//! elements, is held (Task on-hold), released by a correcting document or an operator, and never
//! handed out by a pull (422).

use std::path::Path;

use serde_json::{Value, json};

use crate::consent::{admit_sample_patient, eth_permit_for, record_consent};
use crate::delivery::{fast, recipient, register_as, submit_document, wait_for};
use crate::helpers::*;

const GP: &str = "A99001";
const DRUG_SERVICE: &str = "X99001";

/// A prison document whose problem code (SNOMED CT) has no display: valid for the prison
/// profiles, but GP Connect requires the display.
fn problem_without_display(edit: impl FnOnce(&mut Value)) -> String {
    release_tree(|t| {
        for e in t["entry"].as_array_mut().unwrap() {
            if e["resource"]["resourceType"] == "Condition" {
                e["resource"]["code"]["coding"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("display");
            }
        }
        edit(t);
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The shipped mappings, with a GP Connect clinical-content list that (for this test only)
/// counts a problem code's display as clinical: a copy failing there is then held. The display
/// stands for any clinical element a target may reject that the mappings cannot mend.
fn display_is_clinical_for_gp_connect(settings: &mut throughcare::config::Settings) {
    fast(settings);
    let dir = settings
        .server
        .data_dir
        .with_file_name("mappings-display-clinical");
    copy_dir(&settings.fhir.mappings_dir, &dir);
    let list = dir.join("clinical-content/gp-connect-stu3.v1.yaml");
    let mut text = std::fs::read_to_string(&list).unwrap();
    text = text.replace(
        "  Condition:\n    administrative: [context, assertedDate]",
        "  Condition:\n    clinical: [code.coding.display]\n    administrative: [context, assertedDate]",
    );
    assert!(
        text.contains("code.coding.display"),
        "the test list is changed"
    );
    std::fs::write(list, text).unwrap();
    settings.fhir.mappings_dir = dir;
}

async fn tasks(app: &TestApp, who: &str, document: &str) -> Vec<Value> {
    let token = app.token_for(who).await;
    let bundle: Value = app
        .get_as(who, &token, "/fhir/Task", &[("focus", document)])
        .await
        .json()
        .await
        .unwrap();
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn task_for<'a>(tasks: &'a [Value], owner: &str) -> &'a Value {
    tasks
        .iter()
        .find(|t| t["owner"]["identifier"]["value"] == owner)
        .unwrap_or_else(|| panic!("no Task for {owner}: {tasks:?}"))
}

fn outputs(task: &Value, code: &str) -> Vec<String> {
    task["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["type"]["coding"][0]["code"] == code)
        .filter_map(|o| o["valueString"].as_str().map(str::to_string))
        .collect()
}

async fn held_in_admin_view(app: &TestApp, id: &str) -> bool {
    let icb = app.token_for("icb").await;
    let listed: Value = app
        .get_as("icb", &icb, "/admin/deliveries", &[("status", "on-hold")])
        .await
        .json()
        .await
        .unwrap();
    listed["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d.to_string().contains(id))
}

async fn retry(app: &TestApp, id: &str) -> u16 {
    let icb = app.token_for("icb").await;
    app.send_as(
        reqwest::Method::POST,
        "icb",
        Some(&icb),
        &format!("/admin/deliveries/{id}/retry"),
        "application/json",
        "",
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn a_copy_failing_only_administrative_elements_is_sent_with_its_warnings_on_the_task() {
    let (url, gp) = recipient(vec![]).await;
    let app = spawn_app_with(fast).await;
    register_as(&app, GP, &url, "gp-connect-stu3").await;
    // GP Connect requires the display of a problem code; a display is rendering, not clinical
    // content (mappings/clinical-content/): the copy goes, and says so.
    let token = app.token_for("prison").await;
    let (status, headers, outcome) = status_and_json(
        app.post_bundle(&token, FHIR_JSON, problem_without_display(|_| {}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{outcome}");
    assert!(
        gateway_codes(&outcome).contains(&"GW-DELIVERY-14".to_string()),
        "the sender hears of the administrative failure: {outcome}"
    );
    let document = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let task = wait_for(&app, &document, GP, "completed").await;
    let warnings = outputs(&task, "administrative-warning");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("display") && w.contains("GW-DELIVERY-14")),
        "{task}"
    );
    let body: Value = serde_json::from_str(&gp.received.lock().unwrap()[0].body).unwrap();
    assert!(
        body.to_string().contains("128302006"),
        "the problem itself reached the GP"
    );
}

#[tokio::test]
async fn a_copy_failing_in_clinical_content_is_held_and_a_correcting_document_goes_instead() {
    let (url, gp) = recipient(vec![]).await;
    let app = spawn_app_with(display_is_clinical_for_gp_connect).await;
    register_as(&app, GP, &url, "gp-connect-stu3").await;
    let bad = problem_without_display(|_| {});
    let tree: Value = serde_json::from_str(&bad).unwrap();
    let (system, value) = (
        tree["identifier"]["system"].as_str().unwrap().to_string(),
        tree["identifier"]["value"].as_str().unwrap().to_string(),
    );
    let token = app.token_for("prison").await;
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, bad).await).await;
    assert_eq!(
        status, 201,
        "accepted: the prison profiles hold it sound: {outcome}"
    );
    assert!(
        gateway_codes(&outcome).contains(&"GW-DELIVERY-12".to_string()),
        "the sender hears the GP copy will be held: {outcome}"
    );
    let first = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // Held, not failed: visible to the sender and the operator, with the element named.
    let held = wait_for(&app, &first, GP, "on-hold").await;
    assert_eq!(held["businessStatus"]["coding"][0]["code"], "held");
    assert_eq!(held["statusReason"]["coding"][0]["code"], "GW-DELIVERY-12");
    let reason = held["statusReason"]["text"].as_str().unwrap();
    assert!(reason.contains("code.coding[0].display"), "{reason}");
    assert!(held_in_admin_view(&app, held["id"].as_str().unwrap()).await);
    assert!(gp.received.lock().unwrap().is_empty(), "nothing left");
    // A hold is escalated at once, whatever the release date: a Communication to the sender
    // about the Task (item 5).
    let task_ref = format!("Task/{}", held["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = app
            .get_as("prison", &token, "/fhir/Communication", &[])
            .await;
        let (status, _, bundle) = status_and_json(response).await;
        assert_eq!(status, 200, "{bundle}");
        let raised = bundle["entry"].as_array().into_iter().flatten().any(|e| {
            let c = &e["resource"];
            c["about"][0]["reference"]
                .as_str()
                .is_some_and(|r| r.ends_with(&task_ref))
                && c["category"][0]["coding"][0]["code"] == "held"
        });
        if raised {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hold was never escalated: {bundle}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The sender corrects the document: the held copy is cancelled and the correction goes.
    let correction = release_tree(|b| {
        b["entry"][0]["resource"]["relatesTo"] = json!([{"code": "replaces",
            "targetIdentifier": {"system": system, "value": value}}]);
    });
    let second = submit_document(&app, correction).await;
    let cancelled = task_for(&tasks(&app, "prison", &first).await, GP).clone();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["businessStatus"]["coding"][0]["code"], "replaced");
    wait_for(&app, &second, GP, "completed").await;
    assert_eq!(gp.received.lock().unwrap().len(), 1, "only the correction");
}

#[tokio::test]
async fn an_operator_releases_a_hold_and_the_copy_is_made_again_at_send_time() {
    let (url, gp) = recipient(vec![]).await;
    let app = spawn_app_with(display_is_clinical_for_gp_connect).await;
    register_as(&app, GP, &url, "gp-connect-stu3").await;
    let document = submit_document(&app, problem_without_display(|_| {})).await;
    let held = wait_for(&app, &document, GP, "on-hold").await;
    let id = held["id"].as_str().unwrap().to_string();

    // Released while nothing changed: the copy is made again and held again, never sent.
    assert_eq!(retry(&app, &id).await, 202);
    let again = wait_for(&app, &document, GP, "on-hold").await;
    assert!(
        again["input"][0]["valueInteger"].as_i64().unwrap() >= 1,
        "{again}"
    );
    assert!(gp.received.lock().unwrap().is_empty());

    // The operator corrects the practice's endpoint to the profile it really speaks, and
    // releases the hold: the copy is made again at send time, and goes.
    register_as(&app, GP, &url, "uk-core-r4").await;
    assert_eq!(retry(&app, &id).await, 202);
    wait_for(&app, &document, GP, "completed").await;
    assert_eq!(gp.received.lock().unwrap().len(), 1);
    let entries = app.audit_entries().await;
    assert!(
        entries
            .iter()
            .filter(|e| e.action == "delivery-released")
            .count()
            >= 2,
        "each release is audited"
    );
    assert!(entries.iter().any(|e| e.action == "delivery-held"));
    // A completed delivery is neither replayed nor released.
    assert_eq!(retry(&app, &id).await, 409);
}

/// The sample's methadone order without one of its safety elements (DESIGN §5a), `element`
/// removed: accepted with a warning; the drug service's copy (with the patient's consent, it
/// carries the methadone) is held, never sent; the GP's copy (no consent: no methadone) goes; a
/// pull of the held copy is 422, audited. `reason` is how the hold names what is missing.
async fn methadone_without_a_safety_element_is_held_for_the_drug_service_and_the_gp_copy_goes(
    element: &str,
    reason: &str,
) {
    let (gp_url, gp) = recipient(vec![]).await;
    let (drug_url, drug) = recipient(vec![]).await;
    let app = spawn_app_with(fast).await;
    let prison = app.token_for("prison").await;
    admit_sample_patient(&app, &prison).await;
    // With the patient's consent, the drug service receives the methadone (ETH).
    record_consent(&app, &prison, &eth_permit_for(DRUG_SERVICE)).await;
    register_as(&app, GP, &gp_url, "uk-core-r4").await;
    register_as(&app, DRUG_SERVICE, &drug_url, "uk-core-r4").await;

    let undosed = release_tree(|t| {
        let methadone = &mut t["entry"][5]["resource"];
        assert_eq!(methadone["id"], "1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006");
        methadone.as_object_mut().unwrap().remove(element);
    });
    let expression = format!("Bundle.entry[5].resource.{element}");
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&prison, FHIR_JSON, undosed).await).await;
    assert_eq!(status, 201, "accepted, with a warning: {outcome}");
    let held_warning = issues(&outcome)
        .iter()
        .find(|i| i["details"]["coding"][0]["code"] == "GW-DELIVERY-13")
        .unwrap_or_else(|| panic!("the sender is told: {outcome}"))
        .clone();
    assert_eq!(held_warning["severity"], "warning");
    assert!(
        held_warning.to_string().contains(DRUG_SERVICE),
        "{held_warning}"
    );
    assert!(
        held_warning.to_string().contains(&expression),
        "{held_warning}"
    );
    let document = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // The GP's copy does not carry the methadone (no ETH consent for the GP): it goes.
    wait_for(&app, &document, GP, "completed").await;
    assert!(
        !gp.received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.body.contains("322696004"))
    );
    // The drug service's copy would carry it without a dose: held, never sent.
    let all = tasks(&app, "prison", &document).await;
    let held = task_for(&all, DRUG_SERVICE);
    assert_eq!(held["status"], "on-hold", "{held}");
    assert_eq!(held["statusReason"]["coding"][0]["code"], "GW-DELIVERY-13");
    assert!(
        held["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains(reason),
        "{held}"
    );
    // Whatever reached the drug service carried the methadone with its last dose (the admission
    // document's copy): the held copy never left.
    assert!(
        drug.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body.contains("322696004"))
            .all(|r| r.body.contains("last-dose-in-custody")
                && r.body.contains("supervised consumption")),
        "a methadone order without its safety elements was sent"
    );

    // Nor does a pull hand it out: 422 naming the element, audited.
    let token = app.token_for("drug-service").await;
    let response = app.get_bundle(&token, &document).await;
    let (status, _, refusal) = status_and_json(response).await;
    assert_eq!(status, 422, "{refusal}");
    assert_outcome_code(&refusal, "GW-PULL-03");
    assert_expression(&refusal, &expression);
    let response = app
        .get_as(
            "drug-service",
            &token,
            &format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}/$everything"),
            &[],
        )
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let entries = app.audit_entries().await;
    assert!(
        entries.iter().any(|e| e.action == "copy-held"
            && e.actor_ods.as_deref() == Some(DRUG_SERVICE)
            && e.nhs_number.as_deref() == Some(SAMPLE_NHS_NUMBER)),
        "the held read is audited as a hold, not a disclosure"
    );
    assert!(entries.iter().any(|e| e.action == "input-rejected"
        && e.detail.contains("422")
        && e.detail.contains(reason)));
}

#[tokio::test]
async fn methadone_without_its_last_dose_in_custody_is_held_for_the_drug_service_and_the_gp_copy_goes()
 {
    methadone_without_a_safety_element_is_held_for_the_drug_service_and_the_gp_copy_goes(
        "extension",
        "last dose given in custody",
    )
    .await;
}

#[tokio::test]
async fn methadone_without_a_dose_instruction_is_held_for_the_drug_service_never_sent_with_a_guessed_dose()
 {
    methadone_without_a_safety_element_is_held_for_the_drug_service_and_the_gp_copy_goes(
        "dosageInstruction",
        "no dose instruction",
    )
    .await;
}
