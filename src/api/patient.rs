//! `GET /fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|N`, `GET /fhir/Patient/{id}`
//! and `GET /fhir/Patient/{id}/$everything`: what the caller may see, with policy applied now.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::startup::AppState;

const ROLES: &[Role] = &[Role::Prison, Role::Gp, Role::Icb, Role::Service];

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
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "identifier") {
        return Err(ApiError::bad_request(
            codes::SHAPE,
            format!("search parameter {k:?} is not supported on Patient"),
        ));
    }
    let nhs = super::consent::nhs_from_param(&identifier)?;
    let found = crate::pull::patient(&state, &principal, &nhs).await?;
    let entries = found
        .map(|p| vec![json!({"fullUrl": format!("{}/fhir/Patient/{}", state.public_url, nhs.as_str()), "resource": p})])
        .unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(searchset(entries).to_string()))
}

pub async fn read_patient(
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
    let patient = crate::pull::patient(&state, &principal, &nhs)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(patient.to_string()))
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
    let entries = crate::pull::everything(&state, &principal, &nhs, purpose).await?;
    if entries.is_empty() {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(searchset(entries).to_string()))
}
