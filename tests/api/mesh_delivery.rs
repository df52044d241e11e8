//! GP practices over MESH, end to end against NHS Digital's MESH sandbox (issue 13): the
//! release reaches the practice's mailbox as an ITK3 Transfer of Care message (FHIR STU3 XML,
//! valid against the ITK3 profiles), and the practice system's acknowledgements drive the Task:
//! 20013 in progress, 30001 completed (the gateway returns its infrastructure acknowledgement),
//! a duplicate changes nothing, 30002 fails and escalates, a MESH non-delivery report fails and
//! escalates, an unreadable message is answered with 10009 (never on an acknowledgement
//! workflow), and a missing infrastructure or business acknowledgement escalates.
//!
//! Also: a crash between the send and recording it resends the same message (same ids, same
//! bytes) and the practice's 20007/20008 for it never fails the Task; the message bytes carry
//! no custody data and nothing withheld (the REST matrix of `sharing_safety`), and with the
//! patient's consent the GP gets the opiate treatment; a correction goes as an ITK3
//! replacement document; a large document goes in MESH chunks (plain, and gzip then chunks)
//! and the practice reads it back whole. Each test starts its own sandbox ([`setup`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use throughcare::fhir::xml::{FhirVersion, from_xml, to_xml};
use throughcare::itk::codes::response_code;
use throughcare::itk::message::HeaderOrganisation;
use throughcare::itk::response::{ResponseParams, build_response};
use throughcare::transport::mesh::{InboxMessage, MeshClient, OutboundMessage};
use throughcare::validate::ProfileSet;

use crate::delivery::{Faults, FlakyStore, fast, wait_for};
use crate::helpers::*;

#[path = "../mesh/harness.rs"]
#[allow(dead_code)]
pub(crate) mod harness;

const GATEWAY: &str = "THRUGATE";
const PRACTICE: &str = "GPPRAC01";
const GP: &str = "A99001";

/// How a test's gateway differs from the plain one of [`setup`].
#[derive(Default)]
struct Options {
    clock: Option<Arc<ShiftedClock>>,
    /// Store failures to inject (the gateway then reads the system clock).
    faults: Option<Arc<Faults>>,
    /// A further change to the gateway's settings, made after the MESH ones.
    adjust: Option<fn(&mut throughcare::config::Settings)>,
    /// The test registers the practice's MESH endpoint itself ([`register_endpoint`]).
    no_endpoint: bool,
}

/// A sandbox with the gateway's and the practice's mailboxes, and a gateway whose MESH poller
/// runs every second; the practice's endpoint is its MESH mailbox.
async fn setup(
    clock: Option<Arc<ShiftedClock>>,
) -> Option<(harness::Sandbox, TestApp, MeshClient)> {
    setup_with(Options {
        clock,
        ..Options::default()
    })
    .await
}

async fn setup_with(options: Options) -> Option<(harness::Sandbox, TestApp, MeshClient)> {
    let source = harness::sandbox_source()?;
    let sandbox = harness::Sandbox::start(
        &source,
        &[("MESH_EXTRA_MAILBOXES", &format!("{GATEWAY} {PRACTICE}"))],
    );
    let mut mesh = sandbox.settings(GATEWAY);
    mesh.poll_interval_secs = 1;
    let adjust = |s: &mut throughcare::config::Settings| {
        fast(s);
        s.mesh = Some(mesh);
        if let Some(adjust) = options.adjust {
            adjust(s);
        }
    };
    let app = match &options.faults {
        Some(faults) => spawn_app_wrapping_store(adjust, FlakyStore::wrapper(faults)).await,
        None => {
            spawn_app_full(
                adjust,
                options.clock.map(|c| c as throughcare::clock::SharedClock),
            )
            .await
        }
    };
    if !options.no_endpoint {
        register_endpoint(&app).await;
    }
    let practice = sandbox.client(PRACTICE);
    practice.handshake().await.unwrap();
    Some((sandbox, app, practice))
}

/// The GP practice receives at its MESH mailbox, in ITK eDischarge.
async fn register_endpoint(app: &TestApp) {
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
}

/// The sample release, released two weeks from now.
fn release() -> String {
    release_with(|_| {})
}

/// Sets the release date of a prison document two weeks from now (clear of the at-risk margin
/// and the escalation lead time).
fn in_two_weeks(tree: &mut Value) {
    let date = (time::OffsetDateTime::now_utc() + time::Duration::days(14)).date();
    tree["entry"][0]["resource"]["event"][0]["period"]["start"] = json!(date.to_string());
}

/// The sample release (uniquely identified), released two weeks from now, changed by `edit`.
fn release_with(edit: impl FnOnce(&mut Value)) -> String {
    release_tree(|t| {
        in_two_weeks(t);
        edit(t);
    })
}

async fn send_release(app: &TestApp) -> String {
    send_document(app, release()).await
}

/// The prison sends `document`; its stored id.
async fn send_document(app: &TestApp, document: String) -> String {
    let token = app.token_for("prison").await;
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await;
    assert_eq!(status, 201, "{outcome}");
    location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Waits for the next message in `client`'s inbox; downloads and acknowledges it.
async fn next_message(client: &MeshClient) -> InboxMessage {
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
/// infrastructure acknowledgement of its answer (the Full Acknowledgement pattern). Returns the
/// MESH message id of the answer.
async fn respond(
    practice: &MeshClient,
    message: &Value,
    code: &str,
    inf_ack: bool,
    id: &str,
) -> String {
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
        .unwrap()
        .message_id
}

/// Asserts that `message` validates against the ITK3 profiles the gateway ships.
fn assert_valid_itk(app: &TestApp, message: &Value) {
    let errors: Vec<String> = shared_validator(&app.settings)
        .validate(message, None, ProfileSet::Itk)
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
}

/// Reads the ITK3 message the practice received and checks it as a GP system would.
async fn received_discharge(practice: &MeshClient) -> (Value, String) {
    read_discharge(&next_message(practice).await)
}

/// The ITK3 message in a downloaded MESH message (FHIR JSON) and its bytes as text.
fn read_discharge(m: &InboxMessage) -> (Value, String) {
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
    assert_valid_itk(&app, &message);
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
    wait_escalated(&app, &token, "failed").await;
}

/// Waits until the sending prison has an escalation (a Communication) of `category`.
async fn wait_escalated(app: &TestApp, token: &str, category: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, bundle) = status_and_json(
            app.get_as(
                "prison",
                token,
                "/fhir/Communication",
                &[("category", category)],
            )
            .await,
        )
        .await;
        if bundle["entry"].as_array().is_some_and(|e| !e.is_empty()) {
            return bundle;
        }
        assert!(
            Instant::now() < deadline,
            "not escalated ({category}): {bundle}"
        );
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
    // Escalated to the sending prison at once, so that someone finds the practice.
    let token = app.token_for("prison").await;
    wait_escalated(&app, &token, "failed").await;
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
    // The send is recorded (with its due times) before the clock moves.
    wait_for_reason(
        &app,
        &document,
        "in-progress",
        "waiting for the acknowledgement",
    )
    .await;
    clock.set_offset(2 * 3600);
    let token = crate::escalation::token_at(&app, &clock, "prison").await;
    wait_escalated(&app, &token, "unacknowledged").await;
}

/// The practice system accepted the message (20013) but no business acknowledgement follows
/// within two working days: escalated, so that someone checks the practice has acted on it.
#[tokio::test]
async fn no_business_acknowledgement_within_two_working_days_escalates() {
    let clock = Arc::new(ShiftedClock::default());
    let Some((_sandbox, app, practice)) = setup(Some(clock.clone())).await else {
        return;
    };
    let document = send_release(&app).await;
    let (message, _) = received_discharge(&practice).await;
    respond(
        &practice,
        &message,
        "20013",
        false,
        "ab1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    wait_for_reason(
        &app,
        &document,
        "in-progress",
        "accepted by the practice system",
    )
    .await;
    // A day later nothing is due yet (the worker's escalation rounds, every 50 ms, have run
    // on the moved clock).
    clock.set_offset(24 * 3600);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let token = crate::escalation::token_at(&app, &clock, "prison").await;
    let (_, _, none) = status_and_json(
        app.get_as(
            "prison",
            &token,
            "/fhir/Communication",
            &[("category", "unacknowledged")],
        )
        .await,
    )
    .await;
    assert!(
        none["entry"].as_array().is_none_or(|e| e.is_empty()),
        "{none}"
    );
    // Five days on, two working days have passed whatever the weekday (no holidays
    // configured), and the release is still more than the lead time away.
    clock.set_offset(5 * 24 * 3600);
    let token = crate::escalation::token_at(&app, &clock, "prison").await;
    let bundle = wait_escalated(&app, &token, "unacknowledged").await;
    assert!(
        bundle
            .to_string()
            .contains("has not acknowledged it in time"),
        "{bundle}"
    );
}

/// The GP's Task for `document`, as the sending prison reads it.
async fn gp_task(app: &TestApp, document: &str) -> Value {
    let token = app.token_for("prison").await;
    let (status, _, bundle) = status_and_json(
        app.get_as("prison", &token, "/fhir/Task", &[("focus", document)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .find(|t| t["owner"]["identifier"]["value"] == GP)
        .unwrap_or_else(|| panic!("no Task for {GP}: {bundle}"))
}

/// Waits until the GP's Task for `document` is `status` with `reason` in its status reason.
async fn wait_for_reason(app: &TestApp, document: &str, status: &str, reason: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let task = gp_task(app, document).await;
        if task["status"] == status
            && task["statusReason"]["text"]
                .as_str()
                .is_some_and(|r| r.contains(reason))
        {
            return task;
        }
        assert_ne!(task["status"], "failed", "{task}");
        assert!(
            Instant::now() < deadline,
            "never {status} with {reason:?}: {task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the gateway has handled the MESH message `mesh_id` from its inbox (recorded
/// with its effects, in one transaction).
async fn wait_handled(app: &TestApp, mesh_id: &str) {
    use throughcare::store::Store as _;
    let store = app.open_store().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.mesh_inbox_handled(mesh_id).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the gateway never handled MESH message {mesh_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.close().await;
}

/// The ITK document in an ITK3 message: its Bundle.identifier and Composition.identifier.
fn document_identifiers(message: &Value) -> (Value, Value) {
    let document = &message["entry"][3]["resource"];
    assert_eq!(document["type"], "document", "{message}");
    (
        document["identifier"].clone(),
        document["entry"][0]["resource"]["identifier"].clone(),
    )
}

/// A release whose send MESH accepts and the gateway then fails to record (as if it had died
/// between the two): the delivery's two-second lease runs out, and the worker sends it again.
/// Returns the document and the two ITK3 messages the practice received, in order.
async fn sent_twice() -> Option<(harness::Sandbox, TestApp, MeshClient, String, [Value; 2])> {
    use std::sync::atomic::Ordering::SeqCst;
    let faults = Arc::new(Faults::default());
    faults.crash_after_next_mesh_send.store(true, SeqCst);
    let (sandbox, app, practice) = setup_with(Options {
        faults: Some(faults.clone()),
        adjust: Some(|s| s.delivery.lease_secs = 2),
        ..Options::default()
    })
    .await?;
    let document = send_release(&app).await;
    let first = next_message(&practice).await;
    let second = next_message(&practice).await;
    assert_eq!(
        faults.crashed_mesh_sends.load(SeqCst),
        1,
        "one send unrecorded"
    );
    // MESH carried two messages ...
    assert_ne!(first.message_id, second.message_id);
    // ... of the same delivery, and the same ITK3 message: the same MessageHeader id,
    // SenderReference, document identifiers, byte for byte.
    assert_eq!(first.local_id, second.local_id);
    assert!(first.local_id.is_some());
    let (a, _) = read_discharge(&first);
    let (b, _) = read_discharge(&second);
    assert_eq!(header(&a)["id"], header(&b)["id"]);
    assert!(header(&a)["id"].is_string(), "{a}");
    assert_eq!(sender_reference(&a), sender_reference(&b));
    assert_eq!(document_identifiers(&a), document_identifiers(&b));
    assert!(document_identifiers(&a).0["value"].is_string(), "{a}");
    assert_eq!(
        String::from_utf8_lossy(&first.body),
        String::from_utf8_lossy(&second.body),
        "a resend is the same message, byte for byte"
    );
    // The resend was recorded: the Task waits for the acknowledgements.
    wait_for_reason(
        &app,
        &document,
        "in-progress",
        "waiting for the acknowledgement",
    )
    .await;
    Some((sandbox, app, practice, document, [a, b]))
}

/// Issue 13, exactly-once effect over MESH: a gateway that dies after MESH accepted the
/// discharge and before recording it sends it again with the same ids, so the practice system
/// recognises the duplicate; its 20007 for the resend, after the 20013 for the first, is
/// success: the Task stays in progress and completes on the 30001, never failed.
#[tokio::test]
async fn a_crash_between_send_and_acknowledgement_resends_the_same_message_and_its_duplicate_answer_is_success()
 {
    let Some((_sandbox, app, practice, document, [first, second])) = sent_twice().await else {
        return;
    };
    respond(
        &practice,
        &first,
        "20013",
        false,
        "7b1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    wait_for_reason(
        &app,
        &document,
        "in-progress",
        "accepted by the practice system",
    )
    .await;
    // The practice system's duplicate detection answers the resend with 20007.
    let duplicate = respond(
        &practice,
        &second,
        "20007",
        false,
        "7b1f6c1e-0000-4000-8000-000000000002",
    )
    .await;
    wait_handled(&app, &duplicate).await;
    let task = gp_task(&app, &document).await;
    assert_eq!(task["status"], "in-progress", "{task}");
    assert_eq!(
        task["businessStatus"]["coding"][0]["code"], "awaiting-acknowledgement",
        "{task}"
    );
    assert!(
        task["statusReason"]["text"]
            .as_str()
            .is_some_and(|r| r.contains("accepted by the practice system")),
        "{task}"
    );
    assert!(task["statusReason"].get("coding").is_none(), "{task}");
    // The business acknowledgement completes the delivery ...
    respond(
        &practice,
        &first,
        "30001",
        false,
        "7b1f6c1e-0000-4000-8000-000000000003",
    )
    .await;
    wait_for(&app, &document, GP, "completed").await;
    // ... and a duplicate-document answer arriving after it changes nothing.
    let late = respond(
        &practice,
        &second,
        "20008",
        false,
        "7b1f6c1e-0000-4000-8000-000000000004",
    )
    .await;
    wait_handled(&app, &late).await;
    let task = gp_task(&app, &document).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(
        task["statusReason"]["text"]
            .as_str()
            .is_some_and(|r| r.contains("30001")),
        "{task}"
    );
}

/// A 20007 can arrive before the 20013 of the original (the practice system read the resend
/// first): it leaves the Task as it was (sent, awaiting acknowledgement), never failed; the
/// acknowledgements that follow move it as usual.
#[tokio::test]
async fn a_duplicate_answer_before_any_acceptance_leaves_the_task_unchanged() {
    let Some((_sandbox, app, practice, document, [first, second])) = sent_twice().await else {
        return;
    };
    let before = gp_task(&app, &document).await;
    let duplicate = respond(
        &practice,
        &second,
        "20007",
        false,
        "8b1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    wait_handled(&app, &duplicate).await;
    let after = gp_task(&app, &document).await;
    for key in ["status", "businessStatus", "statusReason"] {
        assert_eq!(after[key], before[key], "{key}: {after}");
    }
    assert_eq!(after["status"], "in-progress");
    respond(
        &practice,
        &first,
        "20013",
        false,
        "8b1f6c1e-0000-4000-8000-000000000002",
    )
    .await;
    wait_for_reason(
        &app,
        &document,
        "in-progress",
        "accepted by the practice system",
    )
    .await;
    respond(
        &practice,
        &first,
        "30001",
        false,
        "8b1f6c1e-0000-4000-8000-000000000003",
    )
    .await;
    wait_for(&app, &document, GP, "completed").await;
}

/// What marks custody data in the bytes besides the strings of the REST matrix: the custody
/// extensions and the prison-number identifier system, by URL.
const CUSTODY_URLS: &[&str] = &[
    "structuredefinition/custody-",
    "custody-cell-location",
    "custody-security-category",
    "custody-offence-note",
    "fhir/id/prison-number",
];

/// The hostile document of the REST matrix (`sharing_safety`), released two weeks from now,
/// whose Patient also carries a security category and an offence note as custody extensions.
fn custody_laden() -> String {
    crate::sharing_safety::hostile(|b| {
        in_two_weeks(b);
        let patient = &mut b["entry"][1]["resource"];
        assert_eq!(patient["resourceType"], "Patient");
        let extensions = patient["extension"].as_array_mut().unwrap();
        extensions.push(json!({
            "url": "https://throughcare.example.org/fhir/StructureDefinition/custody-security-category",
            "valueCodeableConcept": {"coding": [{
                "system": "https://throughcare.example.org/fhir/CodeSystem/custody-security-category",
                "code": "B", "display": "Category B"}]}
        }));
        extensions.push(json!({
            "url": "https://throughcare.example.org/fhir/StructureDefinition/custody-offence-note",
            "valueString": "Index offence: burglary"
        }));
    })
}

/// Custody data and content withheld without consent never appear in the MESH message bytes
/// (the REST matrix of `sharing_safety`, on the bytes the practice downloads): no prison
/// number, cell, security category, offence, custody-only Flag text or custody extension; no
/// methadone or other opiate substitution term, nor the display of a reference to the withheld
/// order; and what the GP may have still arrives.
#[tokio::test]
async fn the_mesh_message_carries_no_custody_data_and_nothing_withheld_without_consent() {
    use crate::sharing_safety::{
        CUSTODY_STRINGS, ETH_TERMS, MASKED_DISPLAY, assert_carries, assert_free_of,
    };
    let Some((_sandbox, app, practice)) = setup(None).await else {
        return;
    };
    let document = send_document(&app, custody_laden()).await;
    let (message, text) = received_discharge(&practice).await;
    assert_valid_itk(&app, &message);
    let what = "the MESH message to the GP";
    assert_free_of(what, &text, CUSTODY_STRINGS);
    assert_free_of(what, &text, CUSTODY_URLS);
    assert_free_of(what, &text, ETH_TERMS);
    assert_free_of(what, &text, &[MASKED_DISPLAY]);
    // Positive control: the hepatitis C diagnosis and the ramipril go.
    assert_carries(what, &text, &["128302006", "ramipril"]);
    wait_for(&app, &document, GP, "in-progress").await;
}

/// With the patient's consent for the GP (the GP agreement permits ETH with consent), the
/// opiate substitution treatment goes to the practice over MESH; custody data still never does.
#[tokio::test]
async fn with_the_patients_eth_consent_the_mesh_message_carries_the_opiate_treatment_but_no_custody_data()
 {
    use crate::consent::{eth_permit_for, record_consent};
    use crate::sharing_safety::{CUSTODY_STRINGS, assert_carries, assert_free_of};
    let Some((_sandbox, app, practice)) = setup_with(Options {
        no_endpoint: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // The practice has no endpoint yet: its copy waits. The prison that sent the document
    // (now holding the patient) records the patient's consent; then the practice's mailbox
    // is registered, and the copy is made and sent under the consent.
    let document = send_document(&app, custody_laden()).await;
    wait_for_reason(&app, &document, "requested", "waits for its pull").await;
    let prison = app.token_for("prison").await;
    record_consent(&app, &prison, &eth_permit_for(GP)).await;
    register_endpoint(&app).await;
    let (message, text) = received_discharge(&practice).await;
    assert_valid_itk(&app, &message);
    let what = "the MESH message to the GP, with consent";
    assert_free_of(what, &text, CUSTODY_STRINGS);
    assert_free_of(what, &text, CUSTODY_URLS);
    assert_carries(what, &text, &["methadone", "128302006"]);
    // The care plan (told in the plan section's narrative: EDIS lists no CarePlan) reaches the
    // practice in full, not as a bare resource type.
    assert_carries(
        what,
        &text,
        &[
            "continuity of opiate substitution treatment after release",
            "first community dispensing appointment on the day of release",
        ],
    );
    wait_for(&app, &document, GP, "in-progress").await;
}

/// A correction (Composition.relatesTo `replaces`) of a discharge that went over MESH follows
/// it to the practice as an ITK3 replacement document: a new message whose document's
/// Composition `relatesTo` `replaces` the first document's identifier.
#[tokio::test]
async fn a_correction_goes_to_the_practice_over_mesh_as_an_itk3_replacement_document() {
    let Some((_sandbox, app, practice)) = setup(None).await else {
        return;
    };
    let first_text = release();
    let first_tree: Value = serde_json::from_str(&first_text).unwrap();
    let replaced = first_tree["identifier"].clone();
    let first = send_document(&app, first_text).await;
    let (original, _) = received_discharge(&practice).await;
    wait_for(&app, &first, GP, "in-progress").await;

    let correction = release_with(|b| {
        b["entry"][0]["resource"]["relatesTo"] =
            json!([{"code": "replaces", "targetIdentifier": replaced.clone()}]);
        b["entry"][7]["resource"]["note"] =
            json!([{"text": "Corrected: 6 weeks of treatment remaining on release."}]);
    });
    let second = send_document(&app, correction).await;
    let (replacement, text) = received_discharge(&practice).await;
    assert_valid_itk(&app, &replacement);
    // A message of its own, about a document of its own ...
    assert_ne!(header(&replacement)["id"], header(&original)["id"]);
    assert_ne!(
        document_identifiers(&replacement),
        document_identifiers(&original)
    );
    // ... that replaces the first.
    let composition = &replacement["entry"][3]["resource"]["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert_eq!(
        composition["relatesTo"][0]["code"], "replaces",
        "{composition}"
    );
    assert_eq!(
        composition["relatesTo"][0]["targetIdentifier"], replaced,
        "{composition}"
    );
    assert_eq!(
        document_identifiers(&original).1,
        replaced,
        "the identifier replaced is the first ITK document's"
    );
    assert!(text.contains("<relatesTo>"), "{text}");
    // The first copy went, so it stands; the correction waits for its acknowledgements.
    assert_eq!(gp_task(&app, &first).await["status"], "in-progress");
    wait_for(&app, &second, GP, "in-progress").await;
}

/// A discharge larger than the MESH chunk size goes through the gateway's delivery in several
/// chunks (`compress` below: gzip first, the one gzip stream cut into chunks), and the practice
/// reads it back whole: a valid ITK3 message it can acknowledge.
async fn chunked_end_to_end(adjust: fn(&mut throughcare::config::Settings), compressed: bool) {
    let Some((sandbox, app, practice)) = setup_with(Options {
        adjust: Some(adjust),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let chunk_size = app.settings.mesh.as_ref().unwrap().chunk_size_bytes;
    // A large document: a long free-text note on every problem and medicine.
    let long = "Reviewed with the patient before release. ".repeat(200);
    let document = send_document(
        &app,
        release_with(|b| {
            for i in [5, 6, 7] {
                b["entry"][i]["resource"]["note"] = json!([{"text": long}]);
            }
        }),
    )
    .await;
    let m = next_message(&practice).await;
    let stored = sandbox.stored(&m.message_id).await;
    assert_eq!(stored["is_compressed"], compressed, "{stored}");
    let (message, text) = read_discharge(&m);
    assert!(
        m.chunks > 1,
        "{} bytes in {} chunk(s) of {chunk_size}",
        text.len(),
        m.chunks
    );
    if !compressed {
        assert_eq!(m.chunks, text.len().div_ceil(chunk_size));
    }
    assert!(text.trim_end().ends_with("</Bundle>"));
    assert_valid_itk(&app, &message);
    assert_eq!(header(&message)["event"]["code"], "ITK003D");
    assert!(text.contains("Reviewed with the patient before release."));
    respond(
        &practice,
        &message,
        "30001",
        false,
        "9b1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    wait_for(&app, &document, GP, "completed").await;
}

#[tokio::test]
async fn a_large_discharge_is_sent_in_chunks_and_the_practice_reads_it_whole() {
    chunked_end_to_end(
        |s| {
            let mesh = s.mesh.as_mut().unwrap();
            mesh.chunk_size_bytes = 16 * 1024;
            mesh.compress_above_bytes = usize::MAX;
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn a_large_discharge_is_compressed_then_chunked_and_the_practice_reads_it_whole() {
    chunked_end_to_end(
        |s| {
            let mesh = s.mesh.as_mut().unwrap();
            mesh.chunk_size_bytes = 2 * 1024;
            mesh.compress_above_bytes = 1024;
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn a_response_from_another_mailbox_moves_nothing_and_is_audited() {
    let Some((sandbox, app, practice)) = setup(None).await else {
        return;
    };
    let document = send_release(&app).await;
    let (message, _) = received_discharge(&practice).await;
    // Another organisation's mailbox answers the practice's message with a failure.
    let stranger = sandbox.client("X26ABC1");
    respond(
        &stranger,
        &message,
        "30002",
        false,
        "7b1f6c1e-0000-4000-8000-000000000001",
    )
    .await;
    // The practice's own acceptance then arrives and is acted on: the stranger's was not.
    respond(
        &practice,
        &message,
        "20013",
        false,
        "7b1f6c1e-0000-4000-8000-000000000002",
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
    let mut app = app;
    app.stop().await;
    let entries = app.audit_entries().await;
    assert!(
        entries.iter().any(|e| e.action == "mesh-message-received"
            && e.detail.contains("response-from-another-mailbox")),
        "the stranger's response is audited"
    );
}
