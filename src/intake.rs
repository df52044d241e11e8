//! Intake (DESIGN §4): a prison EHR's document, from bytes to a durable acceptance.
//!
//! parse → identify → validate → route (by the organisation directory: refused with 422 when an
//! organisation is named with no exact ODS code or in a role the directory does not hold it in)
//! → `copy_for` per recipient → plan deliveries → commit
//! (the document, its deliveries and their audit entries in one transaction; the response only
//! after it) → receipt. The receipt tells the sender at once, per recipient, what will be shared,
//! withheld and lost in translation.

use serde_json::Value;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::clock::rfc3339;
use crate::document::{self, DocumentSummary, ShapeError};
use crate::domain::Moment;
use crate::error::{ApiError, codes};
use crate::fhir::outcome::{Issue, Severity};
use crate::policy::{Party, Purpose};
use crate::recipient::{CopyRequest, RecipientCopy, Subject, copy_for};
use crate::store::{Acceptance, NewDocument};

/// What the sender hears back.
#[derive(Debug)]
pub enum Receipt {
    /// 201: newly accepted.
    Created { id: String, issues: Vec<Issue> },
    /// 200: the same document again; nothing new stored.
    Repeat { id: String, issues: Vec<Issue> },
}

/// A refused document, with the patient when the document got far enough to name one.
pub use crate::error::Rejected;

/// SHA-256 of the document's compact JSON (whitespace-insensitive, order-preserving).
pub fn content_hash(value: &Value) -> String {
    let compact = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &compact).as_ref())
}

/// Accepts a document from a prison EHR (the body's media type was checked at the edge).
pub async fn submit(app: &App, principal: &Principal, body: &[u8]) -> Result<Receipt, Rejected> {
    let tree = parse(app, body)?;
    let summary = identify(&tree, principal)?;
    let nhs_number = summary.nhs_number.as_str().to_string();
    let named = |error: ApiError| Rejected {
        error,
        nhs_number: Some(nhs_number.clone()),
    };
    let warnings = validate(app, &tree).map_err(named)?;
    let replaced = replaced_document(app, principal, &summary)
        .await
        .map_err(named)?;
    let sender = Party {
        ods: principal.ods.clone(),
        role: principal.role,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let subject = Subject::incoming(app, tree, summary, sender, Some(id.clone()))
        .await
        .map_err(|e| named(e.into()))?;
    // Routing by the organisation directory: an organisation named with no exact ODS code, or
    // in a role the directory does not hold it in, refuses the document; nothing is routed.
    if !subject.routing_errors.is_empty() {
        return Err(named(ApiError::Unprocessable(
            subject.routing_errors.clone(),
        )));
    }
    let mut warnings = warnings;
    warnings.extend(subject.routing_warnings.iter().cloned());
    let preview = preview(app, principal, &subject)
        .await
        .map_err(|e| named(e.into()))?;
    commit(app, principal, body, &subject, preview, warnings, replaced)
        .await
        .map_err(named)
}

/// Parse: JSON within the limits, a Bundle.
fn parse(app: &App, body: &[u8]) -> Result<Value, ApiError> {
    // Size, depth, entries, numbers and duplicate keys: the one reading of every body.
    let tree = crate::fhir::json::parse_body(body, &app.settings.limits)?;
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
    Ok(tree)
}

/// Identify: the document shape of §5a, the patient, and the author being the caller.
fn identify(tree: &Value, principal: &Principal) -> Result<DocumentSummary, ApiError> {
    match document::check(tree, &principal.ods) {
        Ok(s) => Ok(s),
        Err(ShapeError::Invalid(issues)) => Err(ApiError::Unprocessable(issues)),
        Err(ShapeError::AuthorMismatch { author }) => Err(ApiError::forbidden(
            codes::AUTHOR_MISMATCH,
            format!(
                "The document's author organisation ({author}) is not the caller's ({}).",
                principal.ods
            ),
        )),
    }
}

/// Validate against the prison profiles (DESIGN §5a): errors refuse the document, warnings
/// travel in the 201.
fn validate(app: &App, tree: &Value) -> Result<Vec<Issue>, ApiError> {
    let (errors, warnings): (Vec<Issue>, Vec<Issue>) = app
        .validator
        .validate(tree, None, crate::validate::ProfileSet::Prison)
        .into_iter()
        .partition(|i| matches!(i.severity, Severity::Error | Severity::Fatal));
    if errors.is_empty() {
        let mut warnings = warnings;
        warnings.extend(safety_warnings(app, tree));
        Ok(warnings)
    } else {
        Err(ApiError::Unprocessable(errors))
    }
}

/// Safety elements (DESIGN §5a) the profiles cannot see: opiate substitution treatment without
/// the date of its last dose in custody (the medicines are data, `mappings/medicines/`). The
/// dose instruction itself is the profiles' warning (prison-mr-w3, prison-ms-w2).
fn safety_warnings(app: &App, tree: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let entries = tree.get("entry").and_then(Value::as_array);
    for (i, entry) in entries.into_iter().flatten().enumerate() {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        for missing in app.medicines.missing_safety_elements(resource, Some(tree)) {
            if let crate::medicines::MissingSafetyElement::LastDoseDate { .. } = missing {
                out.push(
                    Issue::new(
                        Severity::Warning,
                        "required",
                        format!(
                            "Safety element missing (DESIGN §5a): {}. Accepted; every copy that would carry this medicine is held, never sent without it.",
                            missing.describe()
                        ),
                    )
                    .at(format!("Bundle.entry[{i}].resource")),
                );
            }
        }
    }
    out
}

/// Each routed recipient's copy as it would be made now, and which recipients have a push
/// endpoint: the directory is read once per recipient, for the profile and for the plan.
struct Preview {
    copies: Vec<RecipientCopy>,
    with_endpoint: std::collections::HashSet<crate::domain::OdsCode>,
}

/// Each routed recipient's copy, as it would be made now, in the profile it receives.
async fn preview(
    app: &App,
    principal: &Principal,
    subject: &Subject,
) -> Result<Preview, crate::store::StoreError> {
    let mut copies = Vec::with_capacity(subject.routes.len());
    let mut with_endpoint = std::collections::HashSet::new();
    for route in &subject.routes {
        let record = app.store.endpoint(route.ods.as_str()).await?;
        if record.is_some() {
            with_endpoint.insert(route.ods.clone());
        }
        let profile = record
            .and_then(|r| crate::transport::endpoint::Endpoint::from_record(&r).ok())
            .map(|e| e.profile);
        let target = crate::recipient::default_target(profile, route.role);
        copies.push(copy_for(
            app,
            subject,
            route,
            &CopyRequest {
                purpose: Purpose::Treat,
                moment: Moment::IntakePreview,
                target,
                break_glass_allowed: false,
                actor: principal.actor(),
            },
        ));
    }
    Ok(Preview {
        copies,
        with_endpoint,
    })
}

/// Commit the document, its deliveries and the audit entries in one transaction, then answer.
async fn commit(
    app: &App,
    principal: &Principal,
    body: &[u8],
    subject: &Subject,
    preview: Preview,
    warnings: Vec<Issue>,
    replaced: Option<crate::store::StoredDocument>,
) -> Result<Receipt, ApiError> {
    let Preview {
        copies,
        with_endpoint,
    } = preview;
    let summary = &subject.summary;
    let id = subject.document_id.clone().unwrap_or_default();
    let hash = content_hash(&subject.document);
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
        received_at: rfc3339(app.clock.now()),
        receiving_prison_ods: crate::routing::receiving_prison(&subject.routes)
            .map(|o| o.to_string()),
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
    let (deliveries, delivery_events) = crate::delivery::plan(
        app,
        &id,
        summary,
        &subject.document,
        &copies,
        &with_endpoint,
    );
    let mut audit = vec![received.into_draft()];
    audit.extend(copies.iter().map(|c| c.audit.clone()));
    audit.extend(delivery_events);
    match app.store.accept_document(doc, deliveries.clone(), audit).await? {
        Acceptance::Created { id } => {
            tracing::info!(document_id = %id, event = summary.event.code(), "Document accepted.");
            app.delivery_wakeup.notify_one();
            let mut issues = vec![Issue::information(format!(
                "Accepted {} document as Bundle/{id}.",
                summary.event.code()
            ))];
            issues.extend(warnings);
            if let Some(old) = &replaced {
                issues.push(cancel_replaced(app, principal, old, &id).await?);
            }
            issues.extend(translation_issues(&copies));
            issues.extend(verdict_issues(&copies));
            for d in &deliveries {
                issues.push(Issue::information(format!(
                    "Delivery to {} is Task/{} ({}, {}).",
                    d.recipient_ods, d.id, d.status, d.business_status
                )));
            }
            Ok(Receipt::Created { id, issues })
        }
        Acceptance::Repeat { id } => {
            app.audit
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

/// The document a correction replaces (`Composition.relatesTo` `replaces`): one this sender sent
/// about this patient, else 422.
async fn replaced_document(
    app: &App,
    principal: &Principal,
    summary: &DocumentSummary,
) -> Result<Option<crate::store::StoredDocument>, ApiError> {
    let Some((system, value)) = &summary.replaces else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        ApiError::unprocessable(
            codes::REPLACES_UNKNOWN,
            format!("The document this one replaces ({system}|{value}) {why}."),
            "Bundle.entry[0].resource.relatesTo",
        )
    };
    let old = app
        .store
        .document_by_identifier(principal.ods.as_str(), system, value)
        .await?
        .ok_or_else(|| refuse("was not sent by this organisation"))?;
    if old.nhs_number != summary.nhs_number.as_str() {
        return Err(refuse("is about another patient"));
    }
    Ok(Some(old))
}

/// Cancels the copies of the replaced document that have not gone out (the correction goes
/// instead); those that went out are followed by the correction, which their recipients see as
/// a replacement. Audited per delivery; said in the receipt.
async fn cancel_replaced(
    app: &App,
    principal: &Principal,
    old: &crate::store::StoredDocument,
    new_id: &str,
) -> Result<Issue, ApiError> {
    let reason = format!("replaced by Bundle/{new_id}");
    let cancelled = app
        .store
        .cancel_deliveries(&old.id, &reason, codes::DELIVERY_REPLACED, &app.now_stamp())
        .await?;
    let events = cancelled
        .iter()
        .map(|d| {
            AuditEvent::DeliveryChanged {
                actor: Some(principal.actor()),
                what: "delivery-cancelled",
                delivery_id: d.id.clone(),
                document_id: d.document_id.clone(),
                nhs_number: d.nhs_number.clone(),
                recipient: d.recipient_ods.clone(),
                attempt: d.attempts,
                status_code: None,
                reason: Some(reason.clone()),
                success: true,
            }
            .into_draft()
        })
        .collect::<Vec<_>>();
    if !events.is_empty() {
        app.store.append_audit(events).await?;
    }
    Ok(Issue::information(format!(
        "Replaces Bundle/{}: {} copies not yet sent were cancelled; copies already sent are followed by this correction.",
        old.id,
        cancelled.len()
    )))
}

/// What each recipient's copy loses in translation, and its verdict, as warnings for the
/// sender: a copy that will be held (clinical content, a medicine's safety element) and why,
/// and the administrative failures a copy will go with.
fn translation_issues(copies: &[RecipientCopy]) -> Vec<Issue> {
    let mut issues = Vec::new();
    for c in copies {
        let whom = format!("{} ({})", c.recipient.ods, c.target.as_str());
        for l in &c.losses {
            let code = l
                .code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let issue = if l.is_assumption() {
                Issue::new(
                    Severity::Information,
                    "informational",
                    format!("Assumed in the copy for {whom}: {}{code}.", l.reason),
                )
            } else {
                Issue::new(
                    Severity::Warning,
                    "incomplete",
                    format!("Not carried in the copy for {whom}: {}{code}.", l.reason),
                )
            };
            issues.push(issue.at(l.path.clone()));
        }
        if let Some(e) = &c.translation_error {
            issues.push(Issue::new(
                Severity::Warning,
                "incomplete",
                format!("The copy for {whom} cannot be translated: {e}."),
            ));
        }
        if !c.shares_anything() {
            continue;
        }
        for r in c.verdict.reasons() {
            let mut issue = Issue::new(
                Severity::Warning,
                "business-rule",
                format!(
                    "The copy for {whom} will be held, not sent, until a correction replaces this document: {}.",
                    r.description
                ),
            )
            .with_code(r.kind.code());
            if let Some(e) = &r.expression {
                issue = issue.at(e.clone());
            }
            issues.push(issue);
        }
        for w in c.verdict.warnings() {
            let mut issue = Issue::new(
                Severity::Warning,
                "invariant",
                format!(
                    "The copy for {whom} goes with an administrative element that does not conform to its profiles: {}.",
                    w.diagnostics
                ),
            )
            .with_code(codes::DELIVERY_ADMINISTRATIVE);
            if let Some(e) = &w.expression {
                issue = issue.at(e.clone());
            }
            issues.push(issue);
        }
    }
    issues
}

/// Summarises verdicts as OperationOutcome issues for the sender.
fn verdict_issues(
    verdicts: &[crate::recipient::RecipientCopy],
) -> Vec<crate::fhir::outcome::Issue> {
    let mut issues = Vec::new();
    if verdicts.is_empty() {
        issues.push(Issue::new(
            Severity::Warning,
            "informational",
            "No recipient was found for this document.",
        ));
    }
    for v in verdicts {
        let rels: Vec<String> = v
            .recipient
            .relationships
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        match &v.decision.agreement {
            None => issues.push(Issue::new(
                Severity::Warning,
                "forbidden",
                format!(
                    "Recipient {} ({}): nothing will be shared: {}.",
                    v.recipient.ods,
                    rels.join(", "),
                    v.decision.refusal.as_deref().unwrap_or("no agreement")
                ),
            )),
            Some((id, version)) => {
                let shared = v.decision.shared().count();
                let withheld = v.decision.withheld().count();
                let gp = if v.recipient.needs_gp_registration {
                    "; flagged for GP registration"
                } else {
                    ""
                };
                issues.push(Issue::information(format!(
                    "Recipient {} ({}) under agreement {id} v{version}: {shared} resources shared, {withheld} withheld, {} elements removed{gp}.",
                    v.recipient.ods,
                    rels.join(", "),
                    v.removals.len()
                )));
                for w in v.decision.withheld() {
                    issues.push(
                        Issue::new(
                            Severity::Warning,
                            "suppressed",
                            format!(
                                "Withheld from {}: {} (rule {}): {}.",
                                v.recipient.ods, w.reference, w.rule, w.basis
                            ),
                        )
                        .at(format!("Bundle.entry[{}].resource", w.entry)),
                    );
                }
            }
        }
    }
    issues
}
