//! GP practices over MESH, end to end against NHS Digital's MESH sandbox (issue 13): the
//! release reaches the practice's mailbox as an ITK3 Transfer of Care message (FHIR STU3 XML,
//! valid against the ITK3 profiles, nothing custody-only or withheld in its bytes), and the
//! practice system's acknowledgements drive the Task: 20013 in progress, 30001 completed (the
//! gateway returns its infrastructure acknowledgement), a duplicate changes nothing, 30002 fails
//! and escalates, a MESH non-delivery report fails, an unreadable message is answered with
//! 10009 (never on an acknowledgement workflow), and a missing acknowledgement escalates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use throughcare::fhir::xml::{FhirVersion, from_xml, to_xml};
use throughcare::itk::codes::response_code;
use throughcare::itk::message::HeaderOrganisation;
use throughcare::itk::response::{ResponseParams, build_response};
use throughcare::transport::mesh::{MeshClient, OutboundMessage};
use throughcare::validate::ProfileSet;

use crate::delivery::{fast, wait_for};
use crate::helpers::*;

#[path = "../mesh/harness.rs"]
#[allow(dead_code)]
pub(crate) mod harness;

const GATEWAY: &str = "THRUGATE";
const PRACTICE: &str = "GPPRAC01";
const GP: &str = "A99001";

/// A sandbox with the gateway's and the practice's mailboxes, and a gateway whose MESH poller
/// runs every second; the practice's endpoint is its MESH mailbox.
async fn setup(
    clock: Option<Arc<ShiftedClock>>,
) -> Option<(harness::Sandbox, TestApp, MeshClient)> {
    let source = harness::sandbox_source()?;
    let sandbox = harness::Sandbox::start(
        &source,
        &[("MESH_EXTRA_MAILBOXES", &format!("{GATEWAY} {PRACTICE}"))],
    );
    let mut mesh = sandbox.settings(GATEWAY);
    mesh.poll_interval_secs = 1;
    let app = spawn_app_full(
        |s| {
            fast(s);
            s.mesh = Some(mesh);
        },
        clock.map(|c| c as throughcare::clock::SharedClock),
    )
    .await;
    let admin = app.token_for("admin").await;
    let response = app
        .put_json(
            "admin",
            &admin,
            &format!("/admin/endpoints/{GP}"),
            &json!({"kind": "mesh", "mailbox": PRACTICE, "profile": "itk-edischarge-stu3"}),
        )
        .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
    let practice = sandbox.client(PRACTICE);
    practice.handshake().await.unwrap();
    Some((sandbox, app, practice))
}

/// The sample release, released two weeks from now.
fn release() -> String {
    let date = (time::OffsetDateTime::now_utc() + time::Duration::days(14)).date();
    release_tree(|t| {
        t["entry"][0]["resource"]["event"][0]["period"]["start"] = json!(date.to_string());
    })
}

async fn send_release(app: &TestApp) -> String {
    let token = app.token_for("prison").await;
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, release()).await).await;
    assert_eq!(status, 201, "{outcome}");
    location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Waits for the next message in `client`'s inbox; downloads and acknowledges it.
async fn next_message(client: &MeshClient) -> throughcare::transport::mesh::InboxMessage {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = client.list_inbox().await.unwrap();
        if let Some(id) = ids.first() {
            let m = client.download(id).await.unwrap();
            client.acknowledge(id).await.unwrap();
            return m;
        }
        assert!(Instant::now() < deadline, "no message arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The MessageHeader of an ITK3 message (FHIR JSON).
fn header(message: &Value) -> &Value {
    &message["entry"][0]["resource"]
}

fn sender_reference(message: &Value) -> String {
    header(message)["extension"][0]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "SenderReference")
        .unwrap()["valueString"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The practice system answers `message` with ITK `code`; `inf_ack`: it asks for an
/// infrastructure acknowledgement of its answer (the Full Acknowledgement pattern).
async fn respond(practice: &MeshClient, message: &Value, code: &str, inf_ack: bool, id: &str) {
    let mut response = build_response(&ResponseParams {
        message_id: id.to_string(),
        answering: Some(header(message)["id"].as_str().unwrap().to_string()),
        code: response_code(code).unwrap(),
        sender: HeaderOrganisation {
            ods: GP.into(),
            name: GP.into(),
        },
        sender_mailbox: PRACTICE.into(),
        receiver: None,
        sender_reference: Some(sender_reference(message)),
        timestamp: "2026-12-07T10:00:00+00:00".into(),
        diagnostics: None,
    });
    if inf_ack {
        for key in response["entry"][0]["resource"]["extension"][0]["extension"]
            .as_array_mut()
            .unwrap()
        {
            if key["url"] == "InfAckRequested" {
                key["valueBoolean"] = json!(true);
            }
        }
    }
    let xml = to_xml(&response, FhirVersion::Stu3).unwrap();
    practice
        .send(&OutboundMessage {
            content_type: Some("application/fhir+xml"),
            ..OutboundMessage::new(GATEWAY, "TOC_FHIR_IP_DISCH_ACK", xml.as_bytes())
        })
        .await
        .unwrap();
}

/// Reads the ITK3 message the practice received and checks it as a GP system would.
async fn received_discharge(practice: &MeshClient) -> (Value, String) {
    let m = next_message(practice).await;
    assert_eq!(m.workflow_id.as_deref(), Some("TOC_FHIR_IP_DISCH"));
    assert_eq!(m.from.as_deref(), Some(GATEWAY));
    let text = String::from_utf8(m.body.clone()).unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    let message = from_xml(&m.body, FhirVersion::Stu3).unwrap();
    (message, text)
}

#[tokio::test]
async fn a_release_reaches_the_practice_mailbox_as_an_itk3_message_and_completes_on_its_business_acknowledgement()
 {
    let Some((_sandbox, app, practice)) = setup(None).await else {
        return;
    };
    let document = send_release(&app).await;
    let (message, text) = received_discharge(&practice).await;
    // The message as MESH carried it is a valid ITK3 eDischarge message.
    let errors: Vec<String> = shared_validator(&app.settings)
        .validate(&message, None, ProfileSet::Itk)
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
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(header(&message)["event"]["code"], "ITK003D");
    assert_eq!(header(&message)["source"]["endpoint"], GATEWAY);
    // Custody data and content withheld without consent are not in the bytes.
    for secret in [
        "A1234BC",
        "HB2-3-014",
        "custody-cell-location",
        "not to share cell",
        "322696004",
    ] {
        assert!(!text.contains(secret), "{secret} in the MESH message");
    }
    assert!(!text.to_lowercase().contains("methadone"));
    let sent = wait_for(&app, &document, GP, "in-progress").await;
    assert_eq!(
        sent["businessStatus"]["coding"][0]["code"],
        "awaiting-acknowledgement"
    );

    // 20013: accepted by the practice system.
    respond(
        &practice,
        &message,
        "20013",
        false,
        "5b1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let task = wait_for(&app, &document, GP, "in-progress").await;
        if task["statusReason"]["text"]
            .as_str()
            .is_some_and(|r| r.contains("accepted by the practice system"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 30001 (asking for an infrastructure acknowledgement): completed, and the gateway answers.
    respond(
        &practice,
        &message,
        "30001",
        true,
        "5b1f6c1e-0000-4000-8000-000000000002",
    )
    .await;
    let done = wait_for(&app, &document, GP, "completed").await;
    assert!(
        done["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("30001")
    );
    let ack = next_message(&practice).await;
    assert_eq!(ack.workflow_id.as_deref(), Some("TOC_FHIR_IP_DISCH_ACK"));
    let ack = from_xml(&ack.body, FhirVersion::Stu3).unwrap();
    let parsed = throughcare::itk::response::parse_response(&ack).unwrap();
    assert_eq!(parsed.code, "20013");
    assert_eq!(
        parsed.answers_message_id,
        "5b1f6c1e-0000-4000-8000-000000000002"
    );

    // A duplicate of the 20013 changes nothing; the gateway does not answer an infrastructure
    // response.
    respond(
        &practice,
        &message,
        "20013",
        false,
        "5b1f6c1e-0000-4000-8000-000000000003",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for(&app, &document, GP, "completed").await;
    assert!(
        practice.list_inbox().await.unwrap().is_empty(),
        "no answer to an answer"
    );
}

#[tokio::test]
async fn a_negative_business_acknowledgement_fails_the_task_and_escalates() {
    let Some((_sandbox, app, practice)) = setup(None).await else {
        return;
    };
    let document = send_release(&app).await;
    let (message, _) = received_discharge(&practice).await;
    respond(
        &practice,
        &message,
        "30002",
        true,
        "6b1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    let failed = wait_for(&app, &document, GP, "failed").await;
    assert_eq!(failed["statusReason"]["coding"][0]["code"], "GW-ITK-01");
    assert!(
        failed["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("30002"),
        "{failed}"
    );
    // Escalated to the sending prison at once.
    let token = app.token_for("prison").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, bundle) = status_and_json(
            app.get_as(
                "prison",
                &token,
                "/fhir/Communication",
                &[("category", "failed")],
            )
            .await,
        )
        .await;
        if bundle["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "not escalated: {bundle}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_mesh_non_delivery_report_fails_the_task() {
    let Some((sandbox, app, practice)) = setup(None).await else {
        return;
    };
    let document = send_release(&app).await;
    let _ = received_discharge(&practice).await;
    let task = wait_for(&app, &document, GP, "in-progress").await;
    sandbox
        .inject_report(json!({
            "mailbox_id": GATEWAY,
            "code": "14",
            "description": "Undelivered message",
            "workflow_id": "TOC_FHIR_IP_DISCH",
            "local_id": task["id"],
            "status": "error",
        }))
        .await;
    let failed = wait_for(&app, &document, GP, "failed").await;
    assert_eq!(failed["statusReason"]["coding"][0]["code"], "GW-ITK-02");
    assert!(
        failed["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("Undelivered message")
    );
}

#[tokio::test]
async fn an_unreadable_message_is_answered_with_10009_but_never_on_an_acknowledgement_workflow() {
    let Some((_sandbox, app, practice)) = setup(None).await else {
        return;
    };
    for workflow in ["TOC_FHIR_IP_DISCH", "TOC_FHIR_IP_DISCH_ACK"] {
        practice
            .send(&OutboundMessage::new(GATEWAY, workflow, b"<not-fhir/>"))
            .await
            .unwrap();
    }
    let answer = next_message(&practice).await;
    assert_eq!(answer.workflow_id.as_deref(), Some("TOC_FHIR_IP_DISCH_ACK"));
    let parsed = throughcare::itk::response::parse_response(
        &from_xml(&answer.body, FhirVersion::Stu3).unwrap(),
    )
    .unwrap();
    assert_eq!(parsed.code, "10009");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        practice.list_inbox().await.unwrap().is_empty(),
        "one answer only: the message on the acknowledgement workflow is not answered"
    );
    drop(app);
}

#[tokio::test]
async fn no_infrastructure_acknowledgement_within_the_hour_escalates() {
    let clock = Arc::new(ShiftedClock::default());
    let Some((_sandbox, app, practice)) = setup(Some(clock.clone())).await else {
        return;
    };
    let document = send_release(&app).await;
    let _ = received_discharge(&practice).await;
    wait_for(&app, &document, GP, "in-progress").await;
    clock.set_offset(2 * 3600);
    let token = crate::escalation::token_at(&app, &clock, "prison").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, bundle) = status_and_json(
            app.get_as(
                "prison",
                &token,
                "/fhir/Communication",
                &[("category", "unacknowledged")],
            )
            .await,
        )
        .await;
        if bundle["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "not escalated: {bundle}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
