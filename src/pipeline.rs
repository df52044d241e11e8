//! The intake pipeline: parse -> check (typed model, document shape) -> identify -> store
//! (durable, response after commit) -> audit. Handlers call `submit` and map its result.

use serde_json::Value;

use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::clock::rfc3339;
use crate::document::{self, ShapeError};
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::startup::AppState;
use crate::store::{Acceptance, NewDocument};

/// What the sender hears back.
#[derive(Debug)]
pub enum Receipt {
    /// 201: newly accepted.
    Created { id: String, issues: Vec<Issue> },
    /// 200: the same document again; nothing new stored.
    Repeat { id: String, issues: Vec<Issue> },
}

/// Checks that the media type is FHIR JSON (`application/fhir+json`, or `application/json`),
/// with any parameters (`charset`, `fhirVersion`).
pub fn check_media_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/fhir+json") | Some("application/json") => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(
            Issue::error(
                "not-supported",
                format!(
                    "Content-Type {} is not supported; send application/fhir+json.",
                    other.unwrap_or("(none)")
                ),
            )
            .with_code(codes::MEDIA_TYPE),
        )),
    }
}

/// Parses JSON bytes into the lossless tree, refusing excessive nesting first.
pub fn parse_json(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    let depth = state.settings.limits.max_json_depth;
    if crate::fhir::json::nesting_exceeds(body, depth) {
        return Err(ApiError::bad_request(
            codes::TOO_DEEP,
            format!("The JSON is nested more than {depth} levels deep."),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            codes::INVALID_JSON,
            format!("The body is not valid JSON: {e}."),
        )
    })
}

/// SHA-256 of the document's compact JSON (whitespace-insensitive, order-preserving).
pub fn content_hash(value: &Value) -> String {
    let compact = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &compact).as_ref())
}

/// Accepts a document from a prison EHR.
pub async fn submit(
    state: &AppState,
    principal: &Principal,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Receipt, ApiError> {
    let mut nhs_number = None;
    let result = submit_inner(state, principal, content_type, body, &mut nhs_number).await;
    if let Err(err) = &result {
        audit_rejection(state, principal, "POST /fhir/Bundle", err, nhs_number).await;
    }
    result
}

/// Records refused input in the audit log (unexpected failures are logged, not blamed on input).
pub async fn audit_rejection(
    state: &AppState,
    principal: &Principal,
    endpoint: &str,
    err: &ApiError,
    nhs_number: Option<String>,
) {
    use actix_web::ResponseError;
    if matches!(err, ApiError::Unexpected(_)) {
        return;
    }
    state
        .audit
        .record_or_log(AuditEvent::InputRejected {
            actor: principal.actor(),
            endpoint: endpoint.to_string(),
            status: err.status_code().as_u16(),
            reason: err.audit_reason(),
            nhs_number,
        })
        .await;
}

async fn submit_inner(
    state: &AppState,
    principal: &Principal,
    content_type: Option<&str>,
    body: &[u8],
    nhs_out: &mut Option<String>,
) -> Result<Receipt, ApiError> {
    check_media_type(content_type)?;
    let tree = parse_json(state, body)?;
    let entries = tree
        .get("entry")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let max_entries = state.settings.limits.max_bundle_entries;
    if entries > max_entries {
        return Err(ApiError::PayloadTooLarge(
            Issue::error(
                "too-costly",
                format!("The Bundle has {entries} entries; at most {max_entries} are accepted."),
            )
            .with_code(codes::TOO_LARGE),
        ));
    }
    if tree.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::Unprocessable(vec![
            Issue::error("structure", "The body must be a FHIR Bundle.")
                .at("Bundle.resourceType")
                .with_code(codes::SHAPE),
        ]));
    }
    // The typed model catches wrong datatypes and codes outside required value sets.
    if let Err(e) = fhir_io::check_r4_bundle_value(&tree) {
        return Err(ApiError::Unprocessable(vec![
            Issue::error(
                "structure",
                format!("The Bundle does not fit FHIR R4: {}.", e.message),
            )
            .at(e.expression)
            .with_code(codes::TYPED_MODEL),
        ]));
    }
    let summary = match document::check(&tree, &principal.ods) {
        Ok(s) => s,
        Err(ShapeError::Invalid(issues)) => return Err(ApiError::Unprocessable(issues)),
        Err(ShapeError::AuthorMismatch { author }) => {
            return Err(ApiError::forbidden(
                codes::AUTHOR_MISMATCH,
                format!(
                    "The document's author organisation ({author}) is not the caller's ({}).",
                    principal.ods
                ),
            ));
        }
    };
    *nhs_out = Some(summary.nhs_number.as_str().to_string());
    // The prison profiles (DESIGN §5a): errors refuse the document, warnings travel in the 201.
    let validation = state
        .validator
        .validate(&tree, None, crate::validate::ProfileSet::Prison);
    let (errors, warnings): (Vec<Issue>, Vec<Issue>) = validation.into_iter().partition(|i| {
        matches!(
            i.severity,
            crate::fhir::outcome::Severity::Error | crate::fhir::outcome::Severity::Fatal
        )
    });
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors));
    }

    let id = uuid::Uuid::new_v4().to_string();
    let hash = content_hash(&tree);
    let bundle_identifier = format!("{}|{}", summary.identifier_system, summary.identifier_value);
    let doc = NewDocument {
        id: id.clone(),
        sender_client: principal.client_id.clone(),
        sender_ods: principal.ods.to_string(),
        identifier_system: summary.identifier_system.clone(),
        identifier_value: summary.identifier_value.clone(),
        content_hash: hash.clone(),
        nhs_number: summary.nhs_number.as_str().to_string(),
        event_code: summary.event.code().to_string(),
        event_date: Some(summary.event_date.clone()),
        received_at: rfc3339(state.clock.now()),
        body: body.to_vec(),
    };
    let received = AuditEvent::DocumentReceived {
        actor: principal.actor(),
        document_id: id.clone(),
        nhs_number: summary.nhs_number.as_str().to_string(),
        bundle_identifier: bundle_identifier.clone(),
        event: summary.event.code().to_string(),
        content_hash: hash,
    };
    // Route and decide now, so the sender hears at once what each recipient will and will not
    // receive (DESIGN §4); the deliveries are written in the same transaction as the document.
    let sender = crate::policy::Party {
        ods: principal.ods.clone(),
        role: principal.role,
    };
    let (verdicts, decisions) = crate::sharing::decide_for_recipients(
        state,
        &principal.actor(),
        &tree,
        Some(&id),
        &summary,
        &sender,
        None,
        "intake-preview",
    )
    .await?;
    // Translate for the profiles the recipients speak, so the sender hears now what will not map.
    let mut targets: Vec<crate::translate::Target> = Vec::new();
    for v in &verdicts {
        let target = crate::delivery::target_for(state, &v.route.ods, v.route.role).await?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    let mut loss_issues = Vec::new();
    for target in targets {
        match state
            .translator
            .translate(crate::translate::Source::Prison, target, &tree)
        {
            Ok(t) => {
                for l in &t.losses {
                    let code = l
                        .code
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default();
                    loss_issues.push(
                        Issue::new(
                            crate::fhir::outcome::Severity::Warning,
                            "incomplete",
                            format!("Not mapped to {}: {}{code}.", target.as_str(), l.reason),
                        )
                        .at(l.path.clone()),
                    );
                }
            }
            Err(e) => loss_issues.push(Issue::new(
                crate::fhir::outcome::Severity::Warning,
                "incomplete",
                format!("Cannot be translated to {}: {e}.", target.as_str()),
            )),
        }
    }
    let (deliveries, delivery_events) =
        crate::delivery::plan(state, &id, &summary, &verdicts).await?;
    let mut audit = vec![received.into_draft()];
    audit.extend(decisions);
    audit.extend(delivery_events);
    match state.store.accept_document(doc, deliveries.clone(), audit).await? {
        Acceptance::Created { id } => {
            tracing::info!(document_id = %id, event = summary.event.code(), "Document accepted.");
            state.delivery_wakeup.notify_one();
            let mut issues = vec![Issue::information(format!(
                "Accepted {} document as Bundle/{id}.",
                summary.event.code()
            ))];
            issues.extend(warnings);
            issues.extend(loss_issues);
            issues.extend(crate::sharing::verdict_issues(&verdicts));
            for d in &deliveries {
                issues.push(Issue::information(format!(
                    "Delivery to {} is Task/{} ({}, {}).",
                    d.recipient_ods, d.id, d.status, d.business_status
                )));
            }
            Ok(Receipt::Created { id, issues })
        }
        Acceptance::Repeat { id } => {
            state
                .audit
                .record(AuditEvent::DocumentRepeated {
                    actor: principal.actor(),
                    document_id: id.clone(),
                    nhs_number: summary.nhs_number.as_str().to_string(),
                    bundle_identifier,
                })
                .await?;
            let issues = vec![Issue::information(format!(
                "This document was already accepted as Bundle/{id}; nothing new was stored."
            ))];
            Ok(Receipt::Repeat { id, issues })
        }
        Acceptance::Conflict { id } => Err(ApiError::Conflict(
            Issue::error(
                "duplicate",
                format!(
                    "Bundle.identifier {bundle_identifier} was already used by this sender for different \
                     content (Bundle/{id}); give a changed document a new identifier."
                ),
            )
            .at("Bundle.identifier")
            .with_code(codes::IDEMPOTENCY_CONFLICT),
        )),
    }
}
