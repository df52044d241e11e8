//! `POST /fhir/$sharing-decision`: what a recipient would receive of a patient's document now,
//! and why, resource by resource.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::fhir::json::parameter as param;

use crate::auth::{Permission, Principal};
use crate::domain::{OdsCode, Role, systems};
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::Issue;
use crate::pipeline;
use crate::policy::Party;
use crate::startup::AppState;

fn bad(message: &str, expression: &str) -> ApiError {
    ApiError::Unprocessable(vec![
        Issue::error("required", message)
            .at(expression)
            .with_code(codes::SHAPE),
    ])
}

fn identifier_or_string(p: &Value) -> Option<String> {
    p.get("valueIdentifier")
        .and_then(|i| i.get("value"))
        .or_else(|| p.get("valueString"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[tracing::instrument(name = "Sharing decision", skip_all)]
pub async fn sharing_decision(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "POST /fhir/$sharing-decision";
    principal
        .authorize(
            &state,
            endpoint,
            &[Role::Prison, Role::Icb, Role::Admin, Role::Auditor],
            "Bundle",
            Permission::Read,
        )
        .await?;
    let result = decide(&req, &principal, payload, &state).await;
    if let Err(err) = &result {
        pipeline::audit_rejection(&state, &principal, endpoint, err, None).await;
    }
    result
}

async fn decide(
    req: &HttpRequest,
    principal: &Principal,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(req, payload, state.settings.limits.max_body_bytes).await?;
    pipeline::check_media_type(super::content_type(req))?;
    let params = pipeline::parse_json(state, &body)?;
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("The body must be a Parameters resource.", "Parameters"));
    }
    let nhs = param(&params, "patient")
        .and_then(identifier_or_string)
        .ok_or_else(|| {
            bad(
                "Give the patient's NHS number (parameter 'patient').",
                "Parameters.parameter",
            )
        })?;
    let nhs = crate::domain::NhsNumber::parse(&nhs).map_err(|e| {
        bad(
            &format!("The patient's NHS number is not valid: {e}."),
            "Parameters.parameter",
        )
    })?;
    let recipient = param(&params, "recipient")
        .and_then(identifier_or_string)
        .ok_or_else(|| {
            bad(
                "Give the recipient's ODS code (parameter 'recipient').",
                "Parameters.parameter",
            )
        })?;
    let recipient = OdsCode::parse(&recipient).map_err(|e| bad(&e, "Parameters.parameter"))?;
    let purpose = match param(&params, "purpose")
        .and_then(|p| {
            p.get("valueCode")
                .or_else(|| p.get("valueCoding").and_then(|c| c.get("code")))
        })
        .and_then(Value::as_str)
    {
        None | Some("TREAT") => crate::policy::Purpose::Treat,
        Some(other) => {
            return Err(bad(
                &format!(
                    "Purpose {other} is not supported here; break-glass (ETREAT) applies to pulls only."
                ),
                "Parameters.parameter",
            ));
        }
    };

    // The document: the one given, or the patient's latest.
    let (document, document_id, sender_ods) =
        match param(&params, "document").and_then(|p| p.get("resource")) {
            Some(doc) => {
                let author = crate::document::check(doc, &principal.ods).map(|s| s.author_ods);
                let author = match author {
                    Ok(a) => a,
                    Err(crate::document::ShapeError::AuthorMismatch { author }) => {
                        OdsCode::parse(&author).map_err(|e| bad(&e, "Parameters.parameter"))?
                    }
                    Err(crate::document::ShapeError::Invalid(issues)) => {
                        return Err(ApiError::Unprocessable(issues));
                    }
                };
                (doc.clone(), None, author)
            }
            None => {
                let docs = state.store.documents_for(nhs.as_str()).await?;
                let latest = docs.into_iter().next().ok_or_else(|| {
                ApiError::not_found(
                    "No document is stored for this patient; give one in the 'document' parameter.",
                )
            })?;
                let value: Value = serde_json::from_slice(&latest.body)
                    .map_err(|e| ApiError::Unexpected(e.into()))?;
                let sender = OdsCode::parse(&latest.sender_ods)
                    .map_err(|e| ApiError::Unexpected(anyhow::anyhow!(e)))?;
                (value, Some(latest.id), sender)
            }
        };
    let summary = match crate::document::check(&document, &sender_ods) {
        Ok(s) => s,
        Err(crate::document::ShapeError::Invalid(issues)) => {
            return Err(ApiError::Unprocessable(issues));
        }
        Err(crate::document::ShapeError::AuthorMismatch { .. }) => {
            return Err(bad(
                "The document's author could not be established.",
                "Bundle.entry[0].resource.author",
            ));
        }
    };
    if summary.nhs_number != nhs {
        return Err(bad(
            "The document is about another patient.",
            "Parameters.parameter",
        ));
    }
    let sender = Party {
        ods: sender_ods,
        role: Role::Prison,
    };
    let (verdicts, decisions) = crate::sharing::decide_for_recipients(
        state,
        &principal.actor(),
        &document,
        document_id.as_deref(),
        &summary,
        &sender,
        Some(&recipient),
        "sharing-decision",
    )
    .await?;
    state.store.append_audit(decisions).await?;
    let mut out = Vec::new();
    for v in &verdicts {
        let d = &v.decision;
        out.push(json!({"name": "recipient", "valueIdentifier": {"system": systems::ODS_ORGANISATION, "value": v.route.ods.as_str()}}));
        out.push(json!({"name": "purpose", "valueCode": purpose.code()}));
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
        for rm in &v.removals {
            out.push(json!({"name": "removal", "part": [
                {"name": "path", "valueString": rm.path},
                {"name": "reason", "valueString": rm.reason}
            ]}));
        }
    }
    let response = json!({"resourceType": "Parameters", "parameter": out});
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(response.to_string()))
}
