//! `GET /fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|N`, `GET /fhir/Patient/{id}`
//! and `GET /fhir/Patient/{id}/$everything`: what the caller may see, with policy applied now.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::startup::AppState;
use crate::translate::Target;

const ROLES: &[Role] = &[Role::Prison, Role::Gp, Role::Icb, Role::Service];

/// A response in the caller's profile: STU3 media type for GP Connect, and the profile named.
fn respond(target: Target, body: String) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.content_type(if target == Target::GpConnectStu3 {
        "application/fhir+json;fhirVersion=3.0"
    } else {
        FHIR_JSON
    });
    response.insert_header(("X-Throughcare-Profile", target.as_str()));
    response.body(body)
}

fn searchset(entries: Vec<Value>) -> Value {
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|mut e| {
            e["search"] = json!({"mode": "match"});
            e
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry})
}

pub async fn search_patients(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Patient",
            ROLES,
            "Patient",
            Permission::Search,
        )
        .await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ApiError::bad_request(codes::SHAPE, "the query string is unreadable"))?;
    let identifier = pairs
        .iter()
        .find(|(k, _)| k == "identifier")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            ApiError::bad_request(
                codes::SHAPE,
                "Search patients by identifier (https://fhir.nhs.uk/Id/nhs-number|N).",
            )
        })?;
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| k != "identifier" && k != "_profile")
    {
        return Err(ApiError::bad_request(
            codes::SHAPE,
            format!("search parameter {k:?} is not supported on Patient"),
        ));
    }
    let nhs = super::consent::nhs_from_param(&identifier)?;
    let target = super::bundle::reader_target(&req, &principal, &state)?;
    let found = crate::pull::patient(&state, &principal, &nhs, target).await?;
    let entries = found
        .map(|p| vec![json!({"fullUrl": format!("{}/fhir/Patient/{}", state.public_url, nhs.as_str()), "resource": p})])
        .unwrap_or_default();
    Ok(respond(target, searchset(entries).to_string()))
}

pub async fn read_patient(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Patient/{id}",
            ROLES,
            "Patient",
            Permission::Read,
        )
        .await?;
    let id = path.into_inner();
    let not_found = || {
        ApiError::not_found(format!(
            "Patient/{id} is not known, or not visible to this client."
        ))
    };
    let nhs = crate::domain::NhsNumber::parse(&id).map_err(|_| not_found())?;
    let target = super::bundle::reader_target(&req, &principal, &state)?;
    let patient = crate::pull::patient(&state, &principal, &nhs, target)
        .await?
        .ok_or_else(not_found)?;
    Ok(respond(target, patient.to_string()))
}

pub async fn everything(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Patient/{id}/$everything",
            ROLES,
            "Patient",
            Permission::Read,
        )
        .await?;
    let purpose = super::bundle::purpose(&req)?;
    let id = path.into_inner();
    let not_found = || {
        ApiError::not_found(format!(
            "Patient/{id} is not known, or not visible to this client."
        ))
    };
    let nhs = crate::domain::NhsNumber::parse(&id).map_err(|_| not_found())?;
    let target = super::bundle::reader_target(&req, &principal, &state)?;
    let entries = crate::pull::everything(&state, &principal, &nhs, purpose, target).await?;
    if entries.is_empty() {
        return Err(not_found());
    }
    Ok(respond(target, searchset(entries).to_string()))
}

/// `POST /fhir/Patient/$gpc.getstructuredrecord`: the GP Connect Access Record Structured pull.
/// STU3 Parameters in (`patientNHSNumber` and the `include*` clinical areas), an STU3
/// `collection` Bundle out: the newest document the caller may see, with policy applied now,
/// translated to GP Connect, holding the patient, organisations, practitioners and the Lists
/// asked for with what they list.
pub async fn gpc_structured_record(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "POST /fhir/Patient/$gpc.getstructuredrecord";
    principal
        .authorize(&state, endpoint, ROLES, "Patient", Permission::Read)
        .await?;
    let body = super::read_body(&req, payload, 1024 * 1024).await?;
    crate::pipeline::check_media_type(super::content_type(&req))?;
    let params = crate::pipeline::parse_json(&state, &body)?;
    let nhs = crate::fhir::json::parameter(&params, "patientNHSNumber")
        .and_then(|p| p.pointer("/valueIdentifier/value"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::Unprocessable(vec![
                crate::fhir::outcome::Issue::error(
                    "required",
                    "Give patientNHSNumber as a valueIdentifier.",
                )
                .at("Parameters.parameter")
                .with_code(codes::SHAPE),
            ])
        })?;
    let nhs = crate::domain::NhsNumber::parse(nhs).map_err(|e| {
        ApiError::Unprocessable(vec![
            crate::fhir::outcome::Issue::error("value", format!("patientNHSNumber: {e}"))
                .at("Parameters.parameter")
                .with_code(codes::SHAPE),
        ])
    })?;
    let lists = crate::pull::gpc_requested_lists(&params).map_err(|e| {
        ApiError::Unprocessable(vec![
            crate::fhir::outcome::Issue::error("not-supported", e)
                .at("Parameters.parameter")
                .with_code(codes::SHAPE),
        ])
    })?;
    let not_found = || ApiError::not_found("No record of this patient is visible to this client.");
    let documents = state.store.documents_for(nhs.as_str()).await?;
    for stored in &documents {
        if let Some(copy) =
            crate::sharing::read_for(&state, &principal, stored, crate::policy::Purpose::Treat)
                .await?
        {
            let mut translation = state
                .translator
                .translate_owned(
                    crate::translate::Source::Prison,
                    crate::translate::Target::GpConnectStu3,
                    copy.document,
                )
                .map_err(super::translate::translate_error)?;
            // Only the clinical areas asked for (include* parameters), as a GP Connect
            // provider answers.
            crate::pull::gpc_select(&mut translation.output, &lists);
            return Ok(HttpResponse::Ok()
                .content_type("application/fhir+json;fhirVersion=3.0")
                .body(translation.output.to_string()));
        }
    }
    Err(not_found())
}
