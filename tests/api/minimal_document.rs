//! The intake contract is DESIGN §5a (issue 12, items 1–2): a document with exactly the §5a
//! elements and nothing more is accepted (the sender warned about what it could add), and
//! delivered to each recipient type, each copy valid against its target profile, each rule that
//! derived or marked absent an element the target requires reported as an assumption, at intake
//! and on the delivery's Task.

use serde_json::Value;
use throughcare::translate::Target;

use crate::delivery::{fast, recipient, register_as, wait_for};
use crate::helpers::*;

const GP: &str = "A99001";
const ICB: &str = "Q99";
const MINIMAL: &str = include_str!("../../samples/minimal-5a-bundle.json");

/// The minimal document under a new identifier; `without_gp`: the person has no GP, so the
/// release area's ICB receives it (DESIGN §8).
fn minimal_document(without_gp: bool) -> String {
    let mut doc: Value = serde_json::from_str(MINIMAL).unwrap();
    doc["identifier"]["value"] = format!("Y02307-MIN-{}", uuid::Uuid::new_v4()).into();
    if without_gp {
        for e in doc["entry"].as_array_mut().unwrap() {
            if e["resource"]["resourceType"] == "Patient" {
                e["resource"]
                    .as_object_mut()
                    .unwrap()
                    .shift_remove("generalPractitioner");
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap()
}

/// The prison sends `document`: its id and the receipt.
async fn send(app: &TestApp, document: String) -> (String, Value) {
    let token = app.token_for("prison").await;
    let (status, headers, receipt) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await;
    assert_eq!(status, 201, "{receipt}");
    assert!(
        issues(&receipt)
            .iter()
            .all(|i| i["severity"] != "error" && i["severity"] != "fatal"),
        "{receipt}"
    );
    let id = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    (id, receipt)
}

/// The assumptions on a Task's output, as `path: reason` strings.
fn task_assumptions(task: &Value) -> Vec<String> {
    task["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["type"]["coding"][0]["code"] == "assumption")
        .map(|o| o["valueString"].as_str().unwrap().to_string())
        .collect()
}

/// The receipt's assumptions for `whom` (`A99001 (gp-connect-stu3)`), as `path: reason`.
fn receipt_assumptions(receipt: &Value, whom: &str) -> Vec<String> {
    let prefix = format!("Assumed in the copy for {whom}: ");
    issues(receipt)
        .iter()
        .filter(|i| i["severity"] == "information")
        .filter_map(|i| {
            let text = i["diagnostics"].as_str()?;
            let rest = text.strip_prefix(&prefix)?;
            Some(format!(
                "{}: {}",
                i["expression"][0].as_str()?,
                rest.strip_suffix('.').unwrap_or(rest)
            ))
        })
        .collect()
}

#[tokio::test]
async fn a_document_with_exactly_the_5a_elements_reaches_the_gp_and_the_icb_each_copy_valid_with_its_assumptions()
 {
    let (gp_url, gp) = recipient(vec![]).await;
    let (icb_url, icb) = recipient(vec![]).await;
    let app = spawn_app_with(|s| {
        fast(s);
        // Releases in Bristol (postcode area BS) with no GP go to the sample ICB.
        s.policy.icb_by_postcode.insert(
            "BS".into(),
            throughcare::domain::OdsCode::parse(ICB).unwrap(),
        );
    })
    .await;
    register_as(&app, GP, &gp_url, "gp-connect-stu3").await;
    register_as(&app, ICB, &icb_url, "uk-core-r4").await;

    let (with_gp, gp_receipt) = send(&app, minimal_document(false)).await;
    let (without_gp, icb_receipt) = send(&app, minimal_document(true)).await;
    // The sender is told what it could add (mustSupport elements), never refused for it.
    let told = diagnostics(&gp_receipt);
    for invariant in [
        "prison-pat-3",
        "prison-mr-w1",
        "prison-mr-w2",
        "prison-con-w1",
        "prison-con-w2",
        "prison-ai-w1",
        "prison-ai-w2",
        "prison-ai-w3",
        "prison-enc-w1",
        "prison-enc-w2",
    ] {
        assert!(told.contains(invariant), "{invariant} not in {gp_receipt}");
    }

    let gp_task = wait_for(&app, &with_gp, GP, "completed").await;
    let icb_task = wait_for(&app, &without_gp, ICB, "completed").await;
    let validator = shared_validator(&app.settings);
    for (who, target, received, task, receipt) in [
        (GP, Target::GpConnectStu3, &gp, &gp_task, &gp_receipt),
        (ICB, Target::UkCoreR4, &icb, &icb_task, &icb_receipt),
    ] {
        let bodies = received.received.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1, "{who}");
        let copy: Value = serde_json::from_str(&bodies[0].body).unwrap();
        let errors: Vec<String> = validator
            .validate(&copy, None, target.profile_set())
            .into_iter()
            .filter(|i| {
                matches!(
                    i.severity,
                    throughcare::fhir::outcome::Severity::Error
                        | throughcare::fhir::outcome::Severity::Fatal
                )
            })
            .map(|i| format!("{:?}: {}", i.expression, i.diagnostics))
            .collect();
        assert!(errors.is_empty(), "{who}'s {target} copy: {errors:#?}");

        // Every assumption is on the Task and was reported to the sender at intake.
        let on_task = task_assumptions(task);
        assert!(!on_task.is_empty(), "{who}: {task}");
        let whom = format!("{who} ({})", target.as_str());
        let at_intake = receipt_assumptions(receipt, &whom);
        let mut a = on_task.clone();
        let mut b = at_intake.clone();
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "{who}: the Task's assumptions are those told at intake"
        );
        // Both targets say the NHS number was not traced, never that it was verified.
        assert!(
            on_task.iter().any(|a| a.contains("not traced")),
            "{who}: {on_task:?}"
        );
        assert!(
            bodies[0].body.contains("\"code\":\"02\""),
            "{who}: {}",
            bodies[0].body
        );
    }
    let gp_body = gp.received.lock().unwrap()[0].body.clone();
    assert!(gp_body.contains("\"use\":\"official\""), "{gp_body}");
    assert!(gp_body.contains("data-absent-reason"), "{gp_body}");
    let icb_body = icb.received.lock().unwrap()[0].body.clone();
    assert!(icb_body.contains("\"allowedBoolean\":true"), "{icb_body}");
    // The dose instruction travels as the sender wrote it; the methadone order (substance
    // misuse, shared only with the patient's consent) does not travel at all.
    for body in [&gp_body, &icb_body] {
        assert!(body.contains("2.5mg once daily"), "{body}");
        assert!(!body.to_lowercase().contains("methadone"), "{body}");
        assert!(!body.contains("last-dose-in-custody"), "{body}");
    }
}

#[tokio::test]
async fn opiate_substitution_without_its_last_dose_date_or_a_medicine_without_a_dose_is_accepted_with_a_safety_warning()
 {
    let app = spawn_app().await;
    let mut doc: Value = serde_json::from_str(&minimal_document(false)).unwrap();
    let entries = doc["entry"].as_array_mut().unwrap();
    let methadone = entries
        .iter()
        .position(|e| e["resource"]["id"] == "1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006")
        .unwrap();
    let ramipril = entries
        .iter()
        .position(|e| e["resource"]["id"] == "1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1007")
        .unwrap();
    entries[methadone]["resource"]
        .as_object_mut()
        .unwrap()
        .shift_remove("extension");
    entries[ramipril]["resource"]
        .as_object_mut()
        .unwrap()
        .shift_remove("dosageInstruction");
    let (_, receipt) = send(&app, doc.to_string()).await;
    let warnings: Vec<&Value> = issues(&receipt)
        .iter()
        .filter(|i| i["severity"] == "warning")
        .collect();
    let at = |entry: usize, needle: &str| {
        warnings.iter().any(|i| {
            i["expression"][0]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("Bundle.entry[{entry}].resource")))
                && i["diagnostics"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(needle)
        })
    };
    assert!(
        at(methadone, "last dose given in custody"),
        "the methadone order's missing last dose: {receipt}"
    );
    assert!(
        at(ramipril, "dose instruction"),
        "the ramipril order's missing dose: {receipt}"
    );
    assert!(
        !at(ramipril, "last dose given in custody"),
        "ramipril is not opiate substitution: {receipt}"
    );
}
