//! Delivering to GP practices over MESH as ITK3 Transfer of Care messages (issue 13).
//!
//! Sending (`prepare`, `sent`): the recipient's copy is the ITK eDischarge document
//! (`itk-edischarge-stu3`); it is wrapped in an ITK3 message ([`crate::itk::build_message`]:
//! both acknowledgements requested) whose ids are made once per delivery and kept in the store
//! (`mesh_messages`), so a resend after a crash or a retry is the same message and the practice
//! system's duplicate detection (20007, 20008) recognises it; it leaves as FHIR STU3 XML
//! ([`crate::fhir::xml::to_xml`]). A send MESH accepts awaits the acknowledgements, with due
//! times: the infrastructure acknowledgement within `mesh.infrastructure_ack_minutes`, the
//! business one within `mesh.business_ack_working_days` working days; past either the delivery
//! is escalated (`unacknowledged`, `delivery::escalation`).
//!
//! Receiving ([`poll_inbox`]): one instance at a time (a store lease) lists the gateway's MESH
//! inbox, downloads each message, and handles it once (the store records each MESH message id
//! with its effects in one transaction), then acknowledges it on MESH:
//!
//! | message | effect |
//! |---|---|
//! | ITK3 response `20013` | Task `in-progress`, "accepted by the practice system" |
//! | `30001` | Task `completed` |
//! | `30004` | Task `completed`; the sending prison is alerted (`recently-deceased`) |
//! | `20007`, `20008` | nothing, or `in-progress` when the original was seen accepted: never a failure |
//! | any other code (negative, unknown, of another payload) | Task `failed` with the ITK code and display (`GW-ITK-01`), escalated |
//! | MESH non-delivery REPORT | Task `failed` with MESH's reason (`GW-ITK-02`), escalated |
//! | a business response | the gateway returns an infrastructure acknowledgement (20013) on the `_ACK` workflow |
//! | a message it cannot read (not on an `_ACK` workflow) | an ITK `10009` to the sending mailbox |
//!
//! Responses and reports are never answered with a response (no loops). The gateway's own
//! responses are queued with the message they answer (one transaction) and sent by the poller
//! with retries, so a crash between handling and answering loses no answer. Everything is
//! audited.

use serde_json::Value;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::clock::{add_working_days, rfc3339};
use crate::codes;
use crate::domain::{BusinessStatus, TaskStatus};
use crate::fhir::xml::{FhirVersion, from_xml, to_xml};
use crate::itk::message::{HeaderOrganisation, MessageParams, build_message};
use crate::itk::response::{
    ItkResponse, ResponseParams, TaskEffect, build_response, parse_response,
};
use crate::store::{
    AckKind, DeliveryRecord, DeliveryUpdate, MeshAnswer, MeshInboxEffect, MeshInboxEntry,
    MeshMessageRecord, StoreError,
};
use crate::transport::DeliveryOutcome;
use crate::transport::endpoint::Endpoint;
use crate::transport::mesh::{InboxMessage, MeshClient, OutboundMessage};

/// The lease name of the inbox poller.
const INBOX_LEASE: &str = "mesh-inbox";

/// The ITK3 message of delivery `d` as MESH will carry it: FHIR STU3 XML bytes and the mailbox
/// it goes to. `document` is the recipient's ITK eDischarge copy (a correction's carries its
/// `relatesTo replaces` from the mapping: it goes as an ITK3 replacement document).
pub(super) async fn prepare(
    app: &App,
    d: &DeliveryRecord,
    endpoint: &Endpoint,
    document: &Value,
) -> Result<(Vec<u8>, String), DeliveryOutcome> {
    let (Some(mesh), Some(settings)) = (&app.transports.mesh, &app.settings.mesh) else {
        return Err(DeliveryOutcome::Permanent {
            code: codes::MESH_REFUSED,
            reason: "a MESH endpoint, and this gateway has no [mesh] configuration".into(),
            status_code: None,
        });
    };
    let mailbox = mesh.mailbox_for(endpoint).await?;
    let workflow = endpoint
        .mesh
        .as_ref()
        .map(|m| m.workflow.clone())
        .unwrap_or_else(|| crate::itk::WORKFLOW_IP_DISCHARGE.to_string());
    let stamp = app.now_stamp();
    let message_id = uuid::Uuid::new_v4().to_string();
    let record = app
        .store
        .start_mesh_message(MeshMessageRecord {
            delivery_id: d.id.clone(),
            // One SenderReference per message: a response to an earlier message of the same
            // delivery (before a replay or a change of mailbox) answers that one only.
            sender_reference: format!("throughcare:{}:{}", d.id, &message_id[..8]),
            message_id,
            document_identifier: String::new(),
            to_mailbox: mailbox.clone(),
            workflow,
            mesh_message_id: None,
            sent_at: None,
            infrastructure_code: None,
            infrastructure_at: None,
            business_code: None,
            business_at: None,
            infrastructure_due: None,
            business_due: None,
            created_at: stamp.clone(),
            updated_at: stamp,
        })
        .await
        .map_err(|e| retry("recording the ITK3 message", e))?;
    let message = build_message(
        document.clone(),
        &MessageParams {
            message_id: record.message_id.clone(),
            sender: HeaderOrganisation {
                ods: d.sender_ods.clone(),
                name: d.sender_ods.clone(),
            },
            sender_mailbox: settings.mailbox.clone(),
            receiver: HeaderOrganisation {
                ods: d.recipient_ods.clone(),
                name: d.recipient_ods.clone(),
            },
            sender_reference: record.sender_reference.clone(),
            replaces: None,
            // The first send's time: a resend is the same message, byte for byte.
            timestamp: record.created_at.clone(),
        },
    )
    .map_err(|e| DeliveryOutcome::Permanent {
        code: codes::DELIVERY_TRANSLATION,
        reason: format!("the ITK3 message could not be built: {e}"),
        status_code: None,
    })?;
    // The whole message is checked against the ITK3 profiles before it leaves (the document
    // was checked with the copy's verdict; this checks the envelope the gateway built around
    // it). An envelope that does not conform is the gateway's defect: the delivery fails at
    // once, and so is escalated, rather than sending what the practice system would refuse.
    // The document's own issues were judged by the copy's verdict (held, or sent with
    // administrative warnings): only the envelope's count here.
    let document_at = message
        .get("entry")
        .and_then(Value::as_array)
        .map(|e| format!("Bundle.entry[{}].resource", e.len().saturating_sub(1)))
        .unwrap_or_default();
    let errors: Vec<String> = app
        .validator
        .validate(&message, None, crate::validate::ProfileSet::Itk)
        .into_iter()
        .filter(|i| {
            matches!(
                i.severity,
                crate::fhir::outcome::Severity::Error | crate::fhir::outcome::Severity::Fatal
            )
        })
        .filter(|i| {
            !i.expression
                .as_deref()
                .is_some_and(|e| !document_at.is_empty() && e.starts_with(&document_at))
        })
        .map(|i| {
            format!(
                "{}: {}",
                i.expression.as_deref().unwrap_or("-"),
                i.diagnostics
            )
        })
        .collect();
    if let Some(first) = errors.first() {
        return Err(DeliveryOutcome::Permanent {
            code: codes::DELIVERY_NONCONFORMANT,
            reason: format!(
                "the ITK3 message does not conform to the ITK3 profiles ({} error(s); first {first})",
                errors.len()
            ),
            status_code: None,
        });
    }
    let xml = to_xml(&message, FhirVersion::Stu3).map_err(|e| DeliveryOutcome::Permanent {
        code: codes::DELIVERY_TRANSLATION,
        reason: format!("the ITK3 message could not be written as XML: {e}"),
        status_code: None,
    })?;
    Ok((xml.into_bytes(), record.to_mailbox))
}

fn retry(what: &str, e: impl std::fmt::Display) -> DeliveryOutcome {
    DeliveryOutcome::RetryAfter {
        reason: format!("{what}: {e}"),
        status_code: None,
        after: None,
    }
}

/// Records a send MESH accepted: its MESH message id and when each acknowledgement is due.
pub(super) async fn sent(
    app: &App,
    d: &DeliveryRecord,
    mesh_message_id: &str,
) -> Result<(), StoreError> {
    let Some(settings) = &app.settings.mesh else {
        return Ok(());
    };
    let now = app.clock.now();
    let infrastructure = now
        + time::Duration::minutes(i64::try_from(settings.infrastructure_ack_minutes).unwrap_or(60));
    let holidays: Vec<time::Date> = settings
        .holidays
        .iter()
        .filter_map(|h| {
            time::Date::parse(h, &time::format_description::well_known::Iso8601::DATE).ok()
        })
        .collect();
    let business = add_working_days(now, settings.business_ack_working_days, &holidays);
    app.store
        .mesh_message_sent(
            &d.id,
            mesh_message_id,
            &rfc3339(now),
            &rfc3339(infrastructure),
            &rfc3339(business),
        )
        .await
}

/// Runs the inbox poller until the task is aborted (only when `[mesh]` is configured).
pub async fn run_inbox(app: std::sync::Arc<App>) {
    let Some(settings) = app.settings.mesh.clone() else {
        return;
    };
    let every = std::time::Duration::from_secs(settings.poll_interval_secs.max(1));
    let holder = uuid::Uuid::new_v4().to_string();
    loop {
        match poll_inbox(&app, &holder).await {
            Ok(n) if n > 0 => tracing::info!(messages = n, "MESH inbox handled."),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "MESH inbox round failed; retried next round."),
        }
        tokio::time::sleep(every).await;
    }
}

/// Why an inbox round stopped.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("MESH: {0}")]
    Mesh(#[from] crate::transport::mesh::MeshError),
}

/// One round of the inbox: when this instance holds the lease, every message waiting is handled
/// and acknowledged on MESH. Returns how many were handled.
pub async fn poll_inbox(app: &App, holder: &str) -> Result<usize, InboxError> {
    let (Some(mesh), Some(settings)) = (&app.transports.mesh, &app.settings.mesh) else {
        return Ok(0);
    };
    let now = app.clock.now();
    let lease = now
        + time::Duration::seconds(
            i64::try_from(settings.poll_interval_secs.max(30) * 3).unwrap_or(900),
        );
    if !app
        .store
        .try_lease(INBOX_LEASE, holder, &rfc3339(now), &rfc3339(lease))
        .await?
    {
        return Ok(0);
    }
    let client = &mesh.client;
    let mut handled = 0;
    for id in client.list_inbox().await? {
        if app.store.mesh_inbox_handled(&id).await? {
            // Handled before a crash stopped its MESH acknowledgement.
            if let Err(e) = client.acknowledge(&id).await {
                tracing::warn!(message = %id, error = %e, "Could not acknowledge a MESH inbox message; next round.");
            }
            continue;
        }
        let message = match client.download(&id).await {
            Ok(m) => m,
            // A message that can never be downloaded (too large, unreadable headers, refused
            // as such) must not block the inbox behind it: it is recorded, audited and
            // acknowledged.
            Err(e) if undownloadable(&e) => {
                let audit = vec![
                    AuditEvent::MeshMessageReceived {
                        mesh_message_id: id.clone(),
                        from: String::new(),
                        workflow: String::new(),
                        what: "undownloadable".into(),
                        detail: e.to_string(),
                        delivery_id: None,
                        nhs_number: None,
                    }
                    .into_draft(),
                ];
                app.store
                    .handle_mesh_inbox(
                        MeshInboxEntry {
                            mesh_message_id: id.clone(),
                            message_type: "UNKNOWN".into(),
                            outcome: format!("undownloadable: {e}"),
                            delivery_id: None,
                            received_at: app.now_stamp(),
                        },
                        MeshInboxEffect {
                            audit,
                            ..Default::default()
                        },
                    )
                    .await?;
                tracing::warn!(message = %id, error = %e, "A MESH inbox message could not be downloaded; recorded and acknowledged.");
                if let Err(e) = client.acknowledge(&id).await {
                    tracing::warn!(message = %id, error = %e, "Could not acknowledge a MESH inbox message; next round.");
                }
                continue;
            }
            // Anything that may pass (connection, timeout, 5xx, credentials refused once):
            // this message waits for the next round; the others go on.
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "Could not download a MESH inbox message; next round.");
                continue;
            }
        };
        handle(app, &settings.mailbox, &id, &message).await?;
        if let Err(e) = client.acknowledge(&id).await {
            tracing::warn!(message = %id, error = %e, "Could not acknowledge a handled MESH inbox message; next round.");
        }
        handled += 1;
    }
    send_answers(app, client).await?;
    Ok(handled)
}

/// A download failure that no retry will mend: an answer MESH gives for this message alone
/// (too large, unreadable, refused as such). Connection failures, timeouts, 5xx and refused
/// credentials may pass.
fn undownloadable(e: &crate::transport::mesh::MeshError) -> bool {
    use crate::transport::mesh::MeshError;
    matches!(
        e,
        MeshError::Protocol(_) | MeshError::Config(_) | MeshError::Refused { .. }
    )
}

/// Handles one downloaded inbox message.
async fn handle(
    app: &App,
    own_mailbox: &str,
    mesh_id: &str,
    message: &InboxMessage,
) -> Result<(), InboxError> {
    let stamp = app.now_stamp();
    let entry = |outcome: String, delivery: Option<String>| MeshInboxEntry {
        mesh_message_id: mesh_id.to_string(),
        message_type: if message.is_report() {
            "REPORT"
        } else {
            "DATA"
        }
        .to_string(),
        outcome,
        delivery_id: delivery,
        received_at: stamp.clone(),
    };
    if let Some(report) = message.report() {
        return handle_report(app, message, report, entry).await;
    }
    let parsed = from_xml(&message.body, FhirVersion::Stu3)
        .map_err(|e| e.to_string())
        .and_then(|v| parse_response(&v).map_err(|e| e.to_string()));
    let response = match parsed {
        Ok(r) => r,
        Err(why) => {
            // Never answer what may be a response (no loops): only a message on a document
            // workflow gets a 10009.
            let on_ack_workflow = message
                .workflow_id
                .as_deref()
                .is_some_and(|w| w.ends_with("_ACK"));
            let answered = !on_ack_workflow && message.from.is_some();
            let audit = vec![
                AuditEvent::MeshMessageReceived {
                    mesh_message_id: mesh_id.to_string(),
                    from: message.from.clone().unwrap_or_default(),
                    workflow: message.workflow_id.clone().unwrap_or_default(),
                    what: "unreadable".into(),
                    detail: why.clone(),
                    delivery_id: None,
                    nhs_number: None,
                }
                .into_draft(),
            ];
            let reply = if answered {
                answer(
                    app,
                    own_mailbox,
                    mesh_id,
                    message,
                    None,
                    unreadable_code(),
                    None,
                    Some(why.clone()),
                )
            } else {
                None
            };
            app.store
                .handle_mesh_inbox(
                    entry(format!("unreadable: {why}"), None),
                    MeshInboxEffect {
                        audit,
                        answer: reply,
                        ..Default::default()
                    },
                )
                .await?;
            return Ok(());
        }
    };
    let matched = app
        .store
        .mesh_message_answered(
            Some(&response.answers_message_id),
            response.sender_reference.as_deref(),
        )
        .await?;
    let Some(original) = matched else {
        let audit = vec![
            AuditEvent::MeshMessageReceived {
                mesh_message_id: mesh_id.to_string(),
                from: message.from.clone().unwrap_or_default(),
                workflow: message.workflow_id.clone().unwrap_or_default(),
                what: "unmatched-response".into(),
                detail: format!(
                    "ITK {} answers {} which this gateway did not send",
                    response.code, response.answers_message_id
                ),
                delivery_id: None,
                nhs_number: None,
            }
            .into_draft(),
        ];
        app.store
            .handle_mesh_inbox(
                entry(format!("unmatched {}", response.code), None),
                MeshInboxEffect {
                    audit,
                    ..Default::default()
                },
            )
            .await?;
        return Ok(());
    };
    // A response must come from the mailbox the message went to: one from elsewhere (a
    // misrouted or forwarded response) is audited and moves nothing.
    if let Some(from) = message.from.as_deref()
        && from != original.to_mailbox
    {
        let audit = vec![
            AuditEvent::MeshMessageReceived {
                mesh_message_id: mesh_id.to_string(),
                from: from.to_string(),
                workflow: message.workflow_id.clone().unwrap_or_default(),
                what: "response-from-another-mailbox".into(),
                detail: format!(
                    "ITK {} answers a message sent to {}, from {from}: not acted on",
                    response.code, original.to_mailbox
                ),
                delivery_id: Some(original.delivery_id.clone()),
                nhs_number: None,
            }
            .into_draft(),
        ];
        app.store
            .handle_mesh_inbox(
                entry(
                    format!("from another mailbox {}", response.code),
                    Some(original.delivery_id.clone()),
                ),
                MeshInboxEffect {
                    audit,
                    ..Default::default()
                },
            )
            .await?;
        return Ok(());
    }
    let delivery = app.store.delivery(&original.delivery_id).await?;
    let accepted_before = original.infrastructure_code.as_deref() == Some("20013");
    let effect = response.task_effect(accepted_before);
    let update = delivery
        .as_ref()
        .and_then(|d| task_update(d, &response, &effect, &stamp));
    let kind = match response.kind {
        crate::itk::codes::ResponseKind::Business => AckKind::Business,
        crate::itk::codes::ResponseKind::Infrastructure => AckKind::Infrastructure,
    };
    // A duplicate never overwrites the acknowledgement it duplicates.
    let acknowledgement = (!matches!(effect, TaskEffect::Unchanged)
        && !matches!(
            response.classification,
            crate::itk::response::Classification::Duplicate
        ))
    .then(|| (original.delivery_id.clone(), kind, response.code.clone()));
    let audit = vec![
        AuditEvent::MeshMessageReceived {
            mesh_message_id: mesh_id.to_string(),
            from: message.from.clone().unwrap_or_default(),
            workflow: message.workflow_id.clone().unwrap_or_default(),
            what: format!("itk-{}", response.kind.as_str()),
            detail: format!("ITK {} {}", response.code, response.display),
            delivery_id: Some(original.delivery_id.clone()),
            nhs_number: delivery.as_ref().map(|d| d.nhs_number.clone()),
        }
        .into_draft(),
    ];
    // Full Acknowledgement: a business response is answered with an infrastructure
    // acknowledgement (queued with the rest, sent after); an infrastructure response never is.
    let reply = if response.needs_infrastructure_ack() {
        answer(
            app,
            own_mailbox,
            mesh_id,
            message,
            Some(&response),
            success_code(),
            delivery.as_ref().map(|d| d.sender_ods.as_str()),
            None,
        )
    } else {
        None
    };
    app.store
        .handle_mesh_inbox(
            entry(
                format!("itk {} {}", response.kind.as_str(), response.code),
                Some(original.delivery_id.clone()),
            ),
            MeshInboxEffect {
                acknowledgement,
                delivery: update.map(|u| (original.delivery_id.clone(), u)),
                answer: reply,
                audit,
            },
        )
        .await?;
    Ok(())
}

/// The Task change a response makes, if any. A completed or cancelled Task does not move back.
fn task_update(
    d: &DeliveryRecord,
    response: &ItkResponse,
    effect: &TaskEffect,
    stamp: &str,
) -> Option<DeliveryUpdate> {
    if matches!(
        d.status,
        TaskStatus::Completed | TaskStatus::Cancelled | TaskStatus::Failed
    ) && !matches!(effect, TaskEffect::Completed { .. })
    {
        return None;
    }
    if d.status == TaskStatus::Completed {
        return None;
    }
    let update = |status, business, code: Option<&str>, reason: String| DeliveryUpdate {
        status,
        business_status: business,
        reason_code: code.map(str::to_string),
        reason: Some(reason),
        next_attempt_at: None,
        last_status_code: None,
        loss_report: None,
        warnings: None,
        updated_at: stamp.to_string(),
    };
    match effect {
        TaskEffect::Unchanged => None,
        TaskEffect::InProgress => Some(update(
            TaskStatus::InProgress,
            BusinessStatus::AwaitingAcknowledgement,
            None,
            format!(
                "accepted by the practice system (ITK {}); waiting for its business acknowledgement",
                response.code
            ),
        )),
        TaskEffect::Completed { alert_sender } => Some(update(
            TaskStatus::Completed,
            BusinessStatus::Delivered,
            None,
            if *alert_sender {
                format!(
                    "ITK {} {}: the sending prison is alerted",
                    response.code, response.display
                )
            } else {
                format!("ITK {} {}", response.code, response.display)
            },
        )),
        TaskEffect::Failed { code, display } => Some(update(
            TaskStatus::Failed,
            BusinessStatus::PermanentError,
            Some(codes::ITK_NEGATIVE),
            format!("ITK {code} {display}"),
        )),
    }
}

async fn handle_report(
    app: &App,
    message: &InboxMessage,
    report: &crate::transport::mesh::MeshStatus,
    entry: impl Fn(String, Option<String>) -> MeshInboxEntry,
) -> Result<(), InboxError> {
    // A report names the message it is about (Mex-LinkedMsgID) and carries our Mex-LocalID,
    // the delivery id.
    let delivery = match message.local_id.as_deref() {
        Some(id) => app.store.delivery(id).await?,
        None => None,
    };
    // A report about an earlier send of the delivery (before a resend or a replay) says
    // nothing about the message now awaiting its acknowledgements: audited, no Task change.
    let mut superseded = false;
    if let Some(d) = &delivery
        && let Some(record) = app.store.mesh_message(&d.id).await?
        && let (Some(latest), Some(linked)) = (
            record.mesh_message_id.as_deref(),
            report.linked_message_id.as_deref(),
        )
        && latest != linked
    {
        superseded = true;
    }
    let reason = format!(
        "MESH could not deliver the message ({}{}{})",
        report
            .code
            .as_deref()
            .map(|c| format!("code {c}"))
            .unwrap_or_default(),
        report
            .description
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default(),
        report
            .linked_message_id
            .as_deref()
            .map(|l| format!("; MESH message {l}"))
            .unwrap_or_default(),
    );
    let stamp = app.now_stamp();
    let update = delivery
        .as_ref()
        .filter(|_| !superseded)
        .filter(|d| !matches!(d.status, TaskStatus::Completed | TaskStatus::Cancelled))
        .map(|d| {
            (
                d.id.clone(),
                DeliveryUpdate {
                    status: TaskStatus::Failed,
                    business_status: BusinessStatus::PermanentError,
                    reason_code: Some(codes::ITK_MESH_REPORT.to_string()),
                    reason: Some(reason.clone()),
                    next_attempt_at: None,
                    last_status_code: None,
                    loss_report: None,
                    warnings: None,
                    updated_at: stamp.clone(),
                },
            )
        });
    let audit = vec![
        AuditEvent::MeshMessageReceived {
            mesh_message_id: entry(String::new(), None).mesh_message_id,
            from: message.from.clone().unwrap_or_default(),
            workflow: message.workflow_id.clone().unwrap_or_default(),
            what: if superseded {
                "mesh-report-superseded".into()
            } else {
                "mesh-report".into()
            },
            detail: reason.clone(),
            delivery_id: delivery.as_ref().map(|d| d.id.clone()),
            nhs_number: delivery.as_ref().map(|d| d.nhs_number.clone()),
        }
        .into_draft(),
    ];
    app.store
        .handle_mesh_inbox(
            entry(
                format!("report {}", report.code.clone().unwrap_or_default()),
                delivery.as_ref().map(|d| d.id.clone()),
            ),
            MeshInboxEffect {
                acknowledgement: None,
                delivery: update,
                answer: None,
                audit,
            },
        )
        .await?;
    Ok(())
}

/// The gateway's own ITK3 response (20013 for a business response, 10009 for an unreadable
/// message) to the mailbox the message came from, on the acknowledgement workflow, queued with
/// the inbox message it answers and sent by [`send_answers`]. Its id is made from the MESH id
/// of the message answered, so it is one answer however often that message is read. `sender`:
/// the organisation the original message was sent for (else the gateway's mailbox).
#[allow(clippy::too_many_arguments)]
fn answer(
    app: &App,
    own_mailbox: &str,
    mesh_id: &str,
    message: &InboxMessage,
    response: Option<&ItkResponse>,
    code: &'static crate::itk::codes::ResponseCode,
    sender: Option<&str>,
    diagnostics: Option<String>,
) -> Option<MeshAnswer> {
    let to = message.from.clone()?;
    let workflow = match message.workflow_id.as_deref() {
        Some(w) if w.ends_with("_ACK") => w.to_string(),
        Some(w) => format!("{w}_ACK"),
        None => crate::itk::WORKFLOW_IP_DISCHARGE_ACK.to_string(),
    };
    let sender = sender.unwrap_or(own_mailbox).to_string();
    let id = crate::itk::stable_uuid(&format!("throughcare-answer:{mesh_id}"));
    let built = build_response(&ResponseParams {
        message_id: id.clone(),
        answering: response.map(|r| r.message_id.clone()),
        code,
        sender: HeaderOrganisation {
            ods: sender.clone(),
            name: sender,
        },
        sender_mailbox: own_mailbox.to_string(),
        receiver: None,
        sender_reference: response.and_then(|r| r.sender_reference.clone()),
        timestamp: app.now_stamp(),
        diagnostics,
    });
    match to_xml(&built, FhirVersion::Stu3) {
        Ok(xml) => Some(MeshAnswer {
            id,
            to_mailbox: to,
            workflow,
            body: xml.into_bytes(),
            attempts: 0,
        }),
        Err(e) => {
            tracing::error!(error = %e, "Could not write the gateway's ITK3 response.");
            None
        }
    }
}

/// Sends the queued ITK3 responses that are due, each retried with the delivery backoff up to
/// `delivery.max_attempts` (then failed, logged at ERROR: the practice's system may ask again).
async fn send_answers(app: &App, client: &MeshClient) -> Result<usize, InboxError> {
    let now = app.clock.now();
    let due = app.store.due_mesh_answers(&rfc3339(now), 50).await?;
    let mut sent = 0;
    for a in due {
        let outbound = OutboundMessage {
            content_type: Some("application/fhir+xml"),
            subject: Some("ITK3 response"),
            local_id: Some(&a.id),
            ..OutboundMessage::new(&a.to_mailbox, &a.workflow, &a.body)
        };
        match client.send(&outbound).await {
            Ok(_) => {
                app.store
                    .finish_mesh_answer(&a.id, true, None, None, &rfc3339(now))
                    .await?;
                sent += 1;
            }
            Err(e) => {
                let settings = &app.settings.delivery;
                let retryable = !matches!(e.outcome(), DeliveryOutcome::Permanent { .. });
                let attempts = a.attempts + 1;
                let next = (retryable && attempts < settings.max_attempts).then(|| {
                    let backoff = crate::transport::retry::Backoff {
                        base: std::time::Duration::from_millis(settings.backoff_base_ms),
                        cap: std::time::Duration::from_secs(settings.backoff_cap_secs),
                    };
                    let wait =
                        backoff.delay(attempts, None, crate::transport::retry::unit_random());
                    rfc3339(now + time::Duration::try_from(wait).unwrap_or(time::Duration::ZERO))
                });
                if next.is_none() {
                    tracing::error!(answer = %a.id, to = %a.to_mailbox, error = %e, "The gateway's ITK3 response could not be sent; given up.");
                }
                app.store
                    .finish_mesh_answer(
                        &a.id,
                        false,
                        next.as_deref(),
                        Some(&e.to_string()),
                        &rfc3339(now),
                    )
                    .await?;
            }
        }
    }
    Ok(sent)
}

fn success_code() -> &'static crate::itk::codes::ResponseCode {
    &crate::itk::codes::SUCCESS
}

fn unreadable_code() -> &'static crate::itk::codes::ResponseCode {
    &crate::itk::codes::UNREADABLE
}
