//! `GET /fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|N`, `GET /fhir/Patient/{id}`
//! and `GET /fhir/Patient/{id}/$everything`: what the caller may see, with policy applied now.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::translate::Target;

/// A response in the caller's profile: STU3 media type for GP Connect, and the profile named.
fn respond(target: Target, body: String) -> HttpResponse {
    respond_builder(target).body(body)
}

fn respond_builder(target: Target) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response.content_type(super::bundle::media_type(target));
    response.insert_header(("X-Throughcare-Profile", target.as_str()));
    response
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
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let params = super::query::params(&req)?;
    let identifier = params.get("identifier").ok_or_else(|| {
        ApiError::bad_request(
            codes::PARAMETER,
            "Search patients by identifier (https://fhir.nhs.uk/Id/nhs-number|N).",
        )
    })?;
    let nhs = super::consent::nhs_from_param("identifier", identifier)?;
    let target = super::bundle::reader_target(&req, &principal, &app)?;
    let found = crate::pull::patient(&app, &principal, &nhs, target).await?;
    let entries = found
        .map(|p| vec![json!({"fullUrl": format!("{}/fhir/Patient/{}", app.public_url, nhs.as_str()), "resource": p})])
        .unwrap_or_default();
    Ok(respond(target, searchset(entries).to_string()))
}

pub async fn read_patient(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let not_found = || {
        ApiError::not_found(format!(
            "Patient/{id} is not known, or not visible to this client."
        ))
    };
    let nhs = crate::domain::NhsNumber::parse(&id).map_err(|_| not_found())?;
    let target = super::bundle::reader_target(&req, &principal, &app)?;
    let patient = crate::pull::patient(&app, &principal, &nhs, target)
        .await?
        .ok_or_else(not_found)?;
    Ok(respond(target, patient.to_string()))
}

pub async fn everything(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let purpose = super::bundle::purpose(&req)?;
    let id = path.into_inner();
    let not_found = || {
        ApiError::not_found(format!(
            "Patient/{id} is not known, or not visible to this client."
        ))
    };
    let nhs = crate::domain::NhsNumber::parse(&id).map_err(|_| not_found())?;
    let target = super::bundle::reader_target(&req, &principal, &app)?;
    let found = crate::pull::everything(&app, &principal, &nhs, purpose, target).await?;
    if found.entries.is_empty() {
        return Err(not_found());
    }
    let mut bundle = searchset(found.entries);
    // Administrative elements of the copies that do not conform: an OperationOutcome entry
    // (search mode `outcome`, which FHIR R4 and STU3 searchsets allow), not counted in `total`.
    if !found.warnings.is_empty()
        && let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut)
    {
        entries.push(json!({
            "resource": crate::fhir::outcome::operation_outcome(&found.warnings),
            "search": {"mode": "outcome"},
        }));
    }
    let mut response = respond_builder(target);
    if !found.warnings.is_empty() {
        response.insert_header(("X-Throughcare-Warnings", found.warnings.len().to_string()));
    }
    Ok(response.body(bundle.to_string()))
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
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let params = super::read_json(&req, payload, &app, 1024 * 1024).await?;
    let record = crate::pull::gpc_structured_record(&app, &principal, &params).await?;
    Ok(HttpResponse::Ok()
        .content_type(super::bundle::media_type(Target::GpConnectStu3))
        .body(record.to_string()))
}
