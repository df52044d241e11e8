//! Typed audit events, emitted as values (past tense, like vector's `internal_events`).

use serde_json::{Value, json};

use super::{AuditDraft, Outcome};

pub use crate::domain::Actor;

/// Everything the gateway audits.
#[derive(Debug, Clone)]
pub enum AuditEvent {
    /// A client exchanged an assertion for an access token.
    TokenIssued { actor: Actor, scopes: String },
    /// A token request or a bearer token was refused. Sampled: one entry stands for `failures`
    /// failures (itself and those folded into it since the previous entry for the same client
    /// or source address).
    AuthenticationFailed {
        client_id: Option<String>,
        endpoint: String,
        reason: String,
        source: Option<String>,
        failures: u64,
    },
    /// An authenticated caller was refused for role, scope or organisation.
    AccessDenied {
        actor: Actor,
        endpoint: String,
        reason: String,
    },
    /// A document was accepted and committed.
    DocumentReceived {
        actor: Actor,
        document_id: String,
        nhs_number: String,
        bundle_identifier: String,
        event: String,
        content_hash: String,
    },
    /// A document already accepted was sent again, and nothing new was stored.
    DocumentRepeated {
        actor: Actor,
        document_id: String,
        nhs_number: String,
        bundle_identifier: String,
    },
    /// Input was refused at intake.
    InputRejected {
        actor: Actor,
        endpoint: String,
        status: u16,
        reason: String,
        nhs_number: Option<String>,
    },
    /// A stored document was read.
    DocumentRead {
        actor: Actor,
        document_id: String,
        nhs_number: String,
    },
    /// A data-sharing agreement version was stored (loaded from a file, put or retired).
    AgreementChanged {
        actor: Actor,
        agreement: String,
        before: Option<u32>,
        after: u32,
        status: String,
    },
    /// A Consent version was recorded.
    ConsentRecorded {
        actor: Actor,
        consent_id: String,
        version: i64,
        nhs_number: String,
        status: String,
    },
    /// The policy engine decided what a recipient may see; the explanation lists every resource.
    SharingDecided {
        actor: Actor,
        nhs_number: String,
        recipient: String,
        recipient_role: String,
        /// When the copy was made; a read or a delivery is a disclosure.
        moment: crate::domain::Moment,
        document_id: Option<String>,
        emergency: bool,
        explanation: Value,
        /// The copy was held, not handed out (issue 12 item 3): why. Not a disclosure.
        held: Option<String>,
    },
    /// A delivery changed state: scheduled, rejected, attempted, completed, failed, dead-lettered,
    /// requeued or flagged at risk. `what` names the change.
    DeliveryChanged {
        actor: Option<Actor>,
        what: &'static str,
        delivery_id: String,
        document_id: String,
        nhs_number: String,
        recipient: String,
        attempt: i64,
        status_code: Option<i64>,
        reason: Option<String>,
        success: bool,
    },
    /// An alert: a delivery is held, failed, dead-lettered, or still undelivered within the
    /// lead time before release (raised once per change of state). The sending prison was sent
    /// `communication`; `webhook` says whether a webhook event was queued.
    DeliveryEscalated {
        delivery_id: String,
        document_id: String,
        nhs_number: String,
        sender: String,
        recipient: String,
        state: String,
        due: Option<String>,
        lead_time_days: i64,
        continuity_critical: bool,
        communication_id: String,
        webhook: bool,
    },
    /// A message was read from the gateway's MESH inbox (an ITK3 response, a MESH report, or
    /// a message it could not read) and handled.
    MeshMessageReceived {
        mesh_message_id: String,
        from: String,
        workflow: String,
        /// `itk-infrastructure`, `itk-business`, `mesh-report`, `unreadable`,
        /// `unmatched-response`.
        what: String,
        detail: String,
        delivery_id: Option<String>,
        nhs_number: Option<String>,
    },
    /// A recipient's push endpoint was registered or changed.
    EndpointChanged {
        actor: Actor,
        ods: String,
        /// The URL before the change (none when the endpoint is new).
        url_before: Option<String>,
        url: String,
        profile: String,
    },
    /// An alert: an existing endpoint now sends copies (or its token requests) somewhere else.
    EndpointRedirected {
        actor: Actor,
        ods: String,
        url_before: String,
        url: String,
        token_url_before: Option<String>,
        token_url: Option<String>,
    },
    /// A read or search of patient data.
    Searched {
        actor: Actor,
        endpoint: String,
        nhs_number: Option<String>,
        results: usize,
    },
    /// The gateway started or stopped serving.
    GatewayLifecycle { what: &'static str },
}

impl AuditEvent {
    pub fn action(&self) -> &'static str {
        match self {
            AuditEvent::TokenIssued { .. } => "token-issued",
            AuditEvent::AuthenticationFailed { .. } => "authentication-failed",
            AuditEvent::AccessDenied { .. } => "access-denied",
            AuditEvent::DocumentReceived { .. } => "document-received",
            AuditEvent::DocumentRepeated { .. } => "document-repeated",
            AuditEvent::InputRejected { .. } => "input-rejected",
            AuditEvent::DocumentRead { .. } => "document-read",
            AuditEvent::AgreementChanged { .. } => "agreement-changed",
            AuditEvent::ConsentRecorded { .. } => "consent-recorded",
            AuditEvent::SharingDecided {
                emergency: true, ..
            } => "emergency-access",
            // A copy held at a read or a delivery is not handed out.
            AuditEvent::SharingDecided {
                moment,
                held: Some(_),
                ..
            } if moment.is_disclosure() => "copy-held",
            // A decision acted on by a read or a delivery is a disclosure.
            AuditEvent::SharingDecided { moment, .. } if moment.is_disclosure() => "disclosure",
            AuditEvent::SharingDecided { .. } => "sharing-decided",
            AuditEvent::DeliveryChanged { what, .. } => what,
            AuditEvent::DeliveryEscalated { .. } => "delivery-escalated",
            AuditEvent::MeshMessageReceived { .. } => "mesh-message-received",
            AuditEvent::EndpointChanged { .. } => "endpoint-changed",
            AuditEvent::EndpointRedirected { .. } => "endpoint-redirected",
            AuditEvent::Searched { .. } => "searched",
            AuditEvent::GatewayLifecycle { what } => what,
        }
    }

    pub fn into_draft(self) -> AuditDraft {
        let action = self.action();
        let (outcome, actor, nhs_number, entities, detail): (
            Outcome,
            Option<Actor>,
            Option<String>,
            Vec<String>,
            Value,
        ) = match self {
            AuditEvent::TokenIssued { actor, scopes } => (
                Outcome::Success,
                Some(actor),
                None,
                vec![],
                json!({"scope": scopes}),
            ),
            AuditEvent::AuthenticationFailed {
                client_id,
                endpoint,
                reason,
                source,
                failures,
            } => {
                let actor = client_id.map(|c| Actor {
                    client_id: c,
                    ods: String::new(),
                });
                (
                    Outcome::Failure,
                    actor,
                    None,
                    vec![],
                    json!({"endpoint": endpoint, "reason": reason, "source": source, "failures": failures}),
                )
            }
            AuditEvent::AccessDenied {
                actor,
                endpoint,
                reason,
            } => (
                Outcome::Failure,
                Some(actor),
                None,
                vec![],
                json!({"endpoint": endpoint, "reason": reason}),
            ),
            AuditEvent::DocumentReceived {
                actor,
                document_id,
                nhs_number,
                bundle_identifier,
                event,
                content_hash,
            } => (
                Outcome::Success,
                Some(actor),
                Some(nhs_number),
                vec![format!("Bundle/{document_id}")],
                json!({"bundleIdentifier": bundle_identifier, "event": event, "sha256": content_hash}),
            ),
            AuditEvent::DocumentRepeated {
                actor,
                document_id,
                nhs_number,
                bundle_identifier,
            } => (
                Outcome::Success,
                Some(actor),
                Some(nhs_number),
                vec![format!("Bundle/{document_id}")],
                json!({"bundleIdentifier": bundle_identifier, "stored": false}),
            ),
            AuditEvent::InputRejected {
                actor,
                endpoint,
                status,
                reason,
                nhs_number,
            } => (
                Outcome::Failure,
                Some(actor),
                nhs_number,
                vec![],
                json!({"endpoint": endpoint, "status": status, "reason": reason}),
            ),
            AuditEvent::DocumentRead {
                actor,
                document_id,
                nhs_number,
            } => (
                Outcome::Success,
                Some(actor),
                Some(nhs_number),
                vec![format!("Bundle/{document_id}")],
                json!({}),
            ),
            AuditEvent::AgreementChanged {
                actor,
                agreement,
                before,
                after,
                status,
            } => (
                Outcome::Success,
                Some(actor),
                None,
                vec![format!("Agreement/{agreement}/_history/{after}")],
                json!({"agreement": agreement, "versionBefore": before, "versionAfter": after, "status": status}),
            ),
            AuditEvent::ConsentRecorded {
                actor,
                consent_id,
                version,
                nhs_number,
                status,
            } => (
                Outcome::Success,
                Some(actor),
                Some(nhs_number),
                vec![format!("Consent/{consent_id}/_history/{version}")],
                json!({"status": status}),
            ),
            AuditEvent::SharingDecided {
                actor,
                nhs_number,
                recipient,
                recipient_role,
                moment,
                document_id,
                emergency,
                explanation,
                held,
            } => {
                let mut detail = json!({"context": moment.as_str(), "recipient": recipient, "recipientRole": recipient_role,
                       "emergency": emergency, "decision": explanation});
                if let Some(why) = held {
                    detail["held"] = json!(why);
                }
                (
                    Outcome::Success,
                    Some(actor),
                    Some(nhs_number),
                    document_id
                        .map(|d| vec![format!("Bundle/{d}")])
                        .unwrap_or_default(),
                    detail,
                )
            }
            AuditEvent::EndpointChanged {
                actor,
                ods,
                url_before,
                url,
                profile,
            } => (
                Outcome::Success,
                Some(actor),
                None,
                vec![format!("Endpoint/{ods}")],
                json!({"urlBefore": url_before, "url": url, "profile": profile}),
            ),
            AuditEvent::EndpointRedirected {
                actor,
                ods,
                url_before,
                url,
                token_url_before,
                token_url,
            } => (
                Outcome::Success,
                Some(actor),
                None,
                vec![format!("Endpoint/{ods}")],
                json!({"alert": true, "urlBefore": url_before, "url": url,
                       "tokenUrlBefore": token_url_before, "tokenUrl": token_url}),
            ),
            AuditEvent::DeliveryChanged {
                actor,
                what: _,
                delivery_id,
                document_id,
                nhs_number,
                recipient,
                attempt,
                status_code,
                reason,
                success,
            } => (
                if success {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                actor,
                Some(nhs_number),
                vec![
                    format!("Task/{delivery_id}"),
                    format!("Bundle/{document_id}"),
                ],
                json!({"recipient": recipient, "attempt": attempt, "statusCode": status_code, "reason": reason}),
            ),
            AuditEvent::DeliveryEscalated {
                delivery_id,
                document_id,
                nhs_number,
                sender,
                recipient,
                state,
                due,
                lead_time_days,
                continuity_critical,
                communication_id,
                webhook,
            } => (
                Outcome::Success,
                None,
                Some(nhs_number),
                vec![
                    format!("Task/{delivery_id}"),
                    format!("Bundle/{document_id}"),
                    format!("Communication/{communication_id}"),
                ],
                json!({"alert": true, "state": state, "due": due, "sender": sender,
                       "recipient": recipient, "leadTimeDays": lead_time_days,
                       "continuityCritical": continuity_critical, "webhook": webhook}),
            ),
            AuditEvent::MeshMessageReceived {
                mesh_message_id,
                from,
                workflow,
                what,
                detail,
                delivery_id,
                nhs_number,
            } => (
                Outcome::Success,
                None,
                nhs_number,
                delivery_id
                    .map(|d| vec![format!("Task/{d}")])
                    .unwrap_or_default(),
                json!({"meshMessageId": mesh_message_id, "from": from, "workflow": workflow,
                       "what": what, "detail": detail}),
            ),
            AuditEvent::Searched {
                actor,
                endpoint,
                nhs_number,
                results,
            } => (
                Outcome::Success,
                Some(actor),
                nhs_number,
                vec![],
                json!({"endpoint": endpoint, "results": results}),
            ),
            AuditEvent::GatewayLifecycle { .. } => {
                (Outcome::Success, None, None, vec![], json!({}))
            }
        };
        let (actor_client, actor_ods) = match actor {
            Some(a) => (Some(a.client_id), (!a.ods.is_empty()).then_some(a.ods)),
            None => (None, None),
        };
        AuditDraft {
            action,
            outcome,
            actor_client,
            actor_ods,
            nhs_number,
            entities,
            detail,
        }
    }
}
