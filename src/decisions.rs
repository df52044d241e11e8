//! `$sharing-decision`: what a recipient would receive of a patient's document now, and why,
//! resource by resource. The document is the one given in the Parameters, or the patient's
//! latest stored document; the copy is made by `recipient::copy_for` at the `Decision` moment,
//! exactly as it would be for a delivery, and the decision is audited.
//!
//! The answer is the patient's business: the patient's current prison (`custody`) and
//! information governance (auditor, admin) get it in full; a recipient may ask about itself
//! and learns only how many resources it would be sent and how many withheld; anyone else gets
//! 403.

use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::document::ShapeError;
use crate::domain::{Moment, NhsNumber, OdsCode, Role, systems};
use crate::error::{ApiError, Rejected, codes};
use crate::fhir::json::parameter as param;
use crate::policy::{Party, Purpose};
use crate::recipient::{CopyRequest, Subject, copy_for};

fn bad(message: impl Into<String>, expression: &str) -> ApiError {
    ApiError::unprocessable(codes::OPERATION_PARAMETERS, message, expression)
}

fn identifier_or_string(p: &Value) -> Option<String> {
    p.get("valueIdentifier")
        .and_then(|i| i.get("value"))
        .or_else(|| p.get("valueString"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The question, read from the Parameters.
struct Question {
    nhs: NhsNumber,
    recipient: OdsCode,
    purpose: Purpose,
}

fn question(params: &Value) -> Result<Question, ApiError> {
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::unprocessable(
            codes::SHAPE,
            "The body must be a Parameters resource.",
            "Parameters",
        ));
    }
    let nhs = param(params, "patient")
        .and_then(identifier_or_string)
        .ok_or_else(|| {
            bad(
                "Give the patient's NHS number (parameter 'patient').",
                "Parameters.parameter",
            )
        })?;
    let nhs = NhsNumber::parse(&nhs).map_err(|e| {
        bad(
            format!("The patient's NHS number is not valid: {e}."),
            "Parameters.parameter",
        )
    })?;
    let recipient = param(params, "recipient")
        .and_then(identifier_or_string)
        .ok_or_else(|| {
            bad(
                "Give the recipient's ODS code (parameter 'recipient').",
                "Parameters.parameter",
            )
        })?;
    let recipient = OdsCode::parse(&recipient).map_err(|e| bad(e, "Parameters.parameter"))?;
    let purpose = match param(params, "purpose")
        .and_then(|p| {
            p.get("valueCode")
                .or_else(|| p.get("valueCoding").and_then(|c| c.get("code")))
        })
        .and_then(Value::as_str)
    {
        None | Some("TREAT") => Purpose::Treat,
        Some(other) => {
            return Err(ApiError::unprocessable(
                codes::PURPOSE,
                format!(
                    "Purpose {other} is not supported here; break-glass (ETREAT) applies to pulls only."
                ),
                "Parameters.parameter",
            ));
        }
    };
    Ok(Question {
        nhs,
        recipient,
        purpose,
    })
}

/// The document asked about: the one given (its author is its sender), or the patient's
/// latest stored document.
async fn document(
    app: &App,
    principal: &Principal,
    params: &Value,
    nhs: &NhsNumber,
) -> Result<Subject, ApiError> {
    let (document, document_id, sender_ods) = match param(params, "document")
        .and_then(|p| p.get("resource"))
    {
        Some(doc) => {
            let author = match crate::document::check(doc, &principal.ods) {
                Ok(s) => s.author_ods,
                Err(ShapeError::AuthorMismatch { author }) => {
                    OdsCode::parse(&author).map_err(|e| bad(e, "Parameters.parameter"))?
                }
                Err(ShapeError::Invalid(issues)) => return Err(ApiError::Unprocessable(issues)),
            };
            (doc.clone(), None, author)
        }
        None => {
            let latest = app
                    .store
                    .documents_for(nhs.as_str())
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        ApiError::not_found(
                            "No document is stored for this patient; give one in the 'document' parameter.",
                        )
                    })?;
            let value: Value =
                serde_json::from_slice(&latest.body).map_err(|e| ApiError::Unexpected(e.into()))?;
            let sender = OdsCode::parse(&latest.sender_ods)
                .map_err(|e| ApiError::Unexpected(anyhow::anyhow!(e)))?;
            (value, Some(latest.id), sender)
        }
    };
    let given = document_id.is_none();
    let summary = match crate::document::check(&document, &sender_ods) {
        Ok(s) => s,
        Err(ShapeError::Invalid(issues)) => return Err(ApiError::Unprocessable(issues)),
        Err(ShapeError::AuthorMismatch { .. }) => {
            return Err(bad(
                "The document's author could not be established.",
                "Bundle.entry[0].resource.author",
            ));
        }
    };
    if &summary.nhs_number != nhs {
        return Err(ApiError::unprocessable(
            codes::OTHER_PATIENT,
            "The document is about another patient.",
            "Parameters.parameter",
        ));
    }
    let sender = Party {
        ods: sender_ods,
        role: Role::Prison,
    };
    let subject = Subject::incoming(app, document, summary, sender, document_id).await?;
    // A document given here is routed as intake would route it: refused the same way.
    if given && !subject.routing_errors.is_empty() {
        return Err(ApiError::Unprocessable(subject.routing_errors));
    }
    Ok(subject)
}

/// How much of the answer the caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// Every resource with its verdict, rule, basis and labels, the removals and the losses.
    Full,
    /// A recipient asking about itself: how many resources it would be sent and how many
    /// withheld, never what (types, references, labels, consent ids).
    Counts,
}

/// Who may ask: the patient's current prison and IG (auditor, admin) in full; a recipient about
/// itself (counts only); anyone else is refused (403, audited by the edge with the patient).
async fn view(app: &App, principal: &Principal, q: &Question) -> Result<View, ApiError> {
    match principal.role {
        Role::Auditor | Role::Admin => return Ok(View::Full),
        Role::Prison
            if crate::custody::of(app, q.nhs.as_str())
                .await?
                .is_current(&principal.ods) =>
        {
            return Ok(View::Full);
        }
        _ => {}
    }
    if q.recipient == principal.ods {
        return Ok(View::Counts);
    }
    Err(ApiError::forbidden(
        codes::CUSTODY_DECISION,
        format!(
            "{} may ask what it would receive itself (counts only), not what {} would: the \
             full answer is for the patient's current prison and for information governance.",
            principal.ods, q.recipient
        ),
    ))
}

/// Answers `$sharing-decision` as an R4 Parameters resource. A refusal names the patient when
/// the question does.
pub async fn sharing_decision(
    app: &App,
    principal: &Principal,
    params: &Value,
) -> Result<Value, Rejected> {
    let q = question(params)?;
    let nhs = q.nhs.as_str().to_string();
    answer(app, principal, params, q)
        .await
        .map_err(|e| e.about(&nhs))
}

async fn answer(
    app: &App,
    principal: &Principal,
    params: &Value,
    q: Question,
) -> Result<Value, ApiError> {
    let view = view(app, principal, &q).await?;
    let subject = document(app, principal, params, &q.nhs).await?;
    let recipient = subject.recipient(app, &q.recipient, None);
    let target = crate::delivery::target_for(app, &recipient.ods, recipient.role).await?;
    let copy = copy_for(
        app,
        &subject,
        &recipient,
        &CopyRequest {
            purpose: q.purpose,
            moment: Moment::Decision,
            target,
            break_glass_allowed: false,
            actor: principal.actor(),
        },
    );
    app.store.append_audit(vec![copy.audit.clone()]).await?;
    let d = &copy.decision;
    let mut out = Vec::new();
    out.push(json!({"name": "recipient", "valueIdentifier": {"system": systems::ODS_ORGANISATION, "value": copy.recipient.ods.as_str()}}));
    out.push(json!({"name": "purpose", "valueCode": q.purpose.code()}));
    if view == View::Counts {
        let shared = if d.agreement.is_some() {
            d.shared().count()
        } else {
            0
        };
        out.push(json!({"name": "shared", "valueInteger": shared}));
        out.push(json!({"name": "withheld", "valueInteger": d.resources.len() - shared}));
        return Ok(json!({"resourceType": "Parameters", "parameter": out}));
    }
    if let Some((id, version)) = &d.agreement {
        out.push(json!({"name": "agreement", "valueString": format!("{id}|{version}")}));
    }
    if let Some(r) = &d.refusal {
        out.push(json!({"name": "refusal", "valueString": r}));
    }
    out.push(json!({"name": "emergency", "valueBoolean": d.emergency}));
    for r in &d.resources {
        let mut parts = vec![
            json!({"name": "reference", "valueString": r.reference}),
            json!({"name": "shared", "valueBoolean": r.shared}),
            json!({"name": "rule", "valueInteger": r.rule}),
            json!({"name": "basis", "valueString": r.basis}),
        ];
        for l in &r.labels {
            parts.push(json!({"name": "label", "valueCode": l}));
        }
        out.push(json!({"name": "resource", "part": parts}));
    }
    for rm in &copy.removals {
        out.push(json!({"name": "removal", "part": [
            {"name": "path", "valueString": rm.path},
            {"name": "reason", "valueString": rm.reason}
        ]}));
    }
    if copy.copy.is_some() {
        out.push(json!({"name": "profile", "valueCode": copy.target.as_str()}));
        for l in &copy.losses {
            out.push(json!({"name": "loss", "part": [
                {"name": "path", "valueString": l.path},
                {"name": "reason", "valueString": l.reason}
            ]}));
        }
    }
    Ok(json!({"resourceType": "Parameters", "parameter": out}))
}
