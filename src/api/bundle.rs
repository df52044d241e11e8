//! `POST /fhir/Bundle` (intake) and `GET /fhir/Bundle/{id}`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::audit::AuditEvent;
use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::ApiError;
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::operation_outcome;
use crate::pipeline::{self, Receipt};
use crate::startup::AppState;

#[tracing::instrument(name = "Submit document", skip_all)]
pub async fn submit_document(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "POST /fhir/Bundle",
            &[Role::Prison],
            "Bundle",
            Permission::Create,
        )
        .await?;
    let body = match super::read_body(&req, payload, state.settings.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(err) => {
            pipeline::audit_rejection(&state, &principal, "POST /fhir/Bundle", &err, None).await;
            return Err(err);
        }
    };
    let started = std::time::Instant::now();
    let result = pipeline::submit(&state, &principal, super::content_type(&req), &body).await;
    let outcome = match &result {
        Ok(Receipt::Created { .. }) => "created".to_string(),
        Ok(Receipt::Repeat { .. }) => "repeat".to_string(),
        Err(e) => {
            use actix_web::ResponseError;
            e.status_code().as_u16().to_string()
        }
    };
    state
        .metrics
        .count_intake(&outcome, started.elapsed().as_secs_f64());
    let receipt = result?;
    let (status, id, issues) = match receipt {
        Receipt::Created { id, issues } => (StatusCode::CREATED, id, issues),
        Receipt::Repeat { id, issues } => (StatusCode::OK, id, issues),
    };
    let location = format!("{}/fhir/Bundle/{id}", state.public_url);
    Ok(HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .insert_header((header::LOCATION, location))
        .body(operation_outcome(&issues).to_string()))
}

/// The purpose of use a reader asks for: `X-Purpose-Of-Use: ETREAT` requests break-glass.
pub fn purpose(req: &HttpRequest) -> Result<crate::policy::Purpose, ApiError> {
    match req
        .headers()
        .get("X-Purpose-Of-Use")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("TREAT") => Ok(crate::policy::Purpose::Treat),
        Some("ETREAT") => Ok(crate::policy::Purpose::EmergencyTreat),
        Some(other) => Err(ApiError::bad_request(
            crate::error::codes::SHAPE,
            format!("X-Purpose-Of-Use {other:?} is not TREAT or ETREAT."),
        )),
    }
}

#[tracing::instrument(name = "Read document", skip_all)]
pub async fn read_document(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Bundle/{id}",
            &[Role::Prison, Role::Gp, Role::Icb, Role::Service],
            "Bundle",
            Permission::Read,
        )
        .await?;
    let purpose = purpose(&req)?;
    let id = path.into_inner();
    let not_found = || {
        ApiError::not_found(format!(
            "Bundle/{id} is not known, or not visible to this client."
        ))
    };
    let doc = state.store.document(&id).await?.ok_or_else(not_found)?;
    // The sending organisation reads the document exactly as sent.
    if doc.sender_ods == principal.ods.as_str() {
        state
            .audit
            .record(AuditEvent::DocumentRead {
                actor: principal.actor(),
                document_id: doc.id.clone(),
                nhs_number: doc.nhs_number.clone(),
            })
            .await?;
        return Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(doc.body));
    }
    // Anyone else reads what policy allows now (consent may have changed since intake).
    let copy = crate::sharing::read_for(&state, &principal, &doc, purpose)
        .await?
        .ok_or_else(not_found)?;
    let mut response = HttpResponse::Ok();
    response.content_type(FHIR_JSON);
    response.insert_header((
        "X-Throughcare-Withheld",
        copy.decision.withheld().count().to_string(),
    ));
    if copy.decision.emergency {
        response.insert_header(("X-Throughcare-Emergency-Access", "true"));
    }
    // The copy in the caller's profile: `_profile`, else Accept's fhirVersion, else its
    // registration, else UK Core R4 (a prison reads the prison profile).
    let target = reader_target(&req, &principal, &state)?;
    let translation = state
        .translator
        .translate_owned(crate::translate::Source::Prison, target, copy.document)
        .map_err(super::translate::translate_error)?;
    if target == crate::translate::Target::GpConnectStu3 {
        response.content_type("application/fhir+json;fhirVersion=3.0");
    }
    response.insert_header(("X-Throughcare-Profile", target.as_str()));
    Ok(response.body(translation.output.to_string()))
}

/// The profile a reader wants its copy in.
pub fn reader_target(
    req: &HttpRequest,
    principal: &Principal,
    state: &AppState,
) -> Result<crate::translate::Target, ApiError> {
    use crate::translate::Target;
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    if let Some((_, p)) = query.iter().find(|(k, _)| k == "_profile") {
        return match p.as_str() {
            "uk-core-r4" | "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle" => {
                Ok(Target::UkCoreR4)
            }
            "gp-connect-stu3"
            | "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1" => {
                Ok(Target::GpConnectStu3)
            }
            "prison" if principal.role == Role::Prison => Ok(Target::Prison),
            other => Err(ApiError::bad_request(
                crate::error::codes::SHAPE,
                format!(
                    "_profile {other:?} is not a profile this client can read (uk-core-r4, gp-connect-stu3)"
                ),
            )),
        };
    }
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("fhirVersion=3.0") {
        return Ok(Target::GpConnectStu3);
    }
    let registered = state
        .tokens
        .clients
        .get(&principal.client_id)
        .and_then(|c| c.registration.profile.as_deref())
        .and_then(|p| p.parse::<Target>().ok());
    Ok(registered.unwrap_or(if principal.role == Role::Prison {
        Target::Prison
    } else {
        Target::UkCoreR4
    }))
}
