//! `POST /fhir/Consent`, `PUT /fhir/Consent/{id}`, `GET /fhir/Consent?patient=`,
//! `GET /fhir/Consent/{id}`: the patient's sharing choices.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::domain::NhsNumber;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;

async fn write(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let consent = super::read_json(&req, payload, &app, app.settings.limits.max_body_bytes).await?;
    let recorded = crate::consents::record(&app, &principal, consent, id)
        .await
        .map_err(|r| super::refused(&req, r))?;
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!(
        "{}/fhir/Consent/{}/_history/{}",
        app.public_url, recorded.id, recorded.version
    );
    Ok(HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .insert_header((header::LOCATION, location))
        .insert_header((header::ETAG, format!("W/\"{}\"", recorded.version)))
        .body(recorded.body))
}

#[tracing::instrument(name = "Record consent", skip_all)]
pub async fn create_consent(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    write(req, principal, payload, app, None).await
}

#[tracing::instrument(name = "Update consent", skip_all)]
pub async fn update_consent(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ApiError::bad_request(
            codes::BAD_ID,
            "The id is not a valid FHIR id.",
        ));
    }
    write(req, principal, payload, app, Some(id)).await
}

/// Reads an NHS number from the query parameter `name`: `9990000018` or
/// `https://fhir.nhs.uk/Id/nhs-number|9990000018`.
pub fn nhs_from_param(name: &str, value: &str) -> Result<NhsNumber, ApiError> {
    super::query::nhs_number(value).map_err(|why| {
        ApiError::bad_request(
            codes::PARAMETER,
            format!("The query parameter {name:?} {why}."),
        )
    })
}

#[tracing::instrument(name = "Search consents", skip_all)]
pub async fn search_consents(
    req: HttpRequest,
    principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let params = super::query::params(&req)?;
    let param = ["patient", "patient:identifier"]
        .into_iter()
        .find_map(|name| params.get(name).map(|v| (name, v)))
        .ok_or_else(|| {
            ApiError::bad_request(
                codes::PARAMETER,
                "Search consents by patient (an NHS number).",
            )
        })?;
    let nhs = nhs_from_param(param.0, param.1)?;
    let entries: Vec<Value> = crate::consents::search(&app, &principal, &nhs)
        .await
        .map_err(|r| super::refused(&req, r))?
        .into_iter()
        .map(|c| {
            let id = c.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            json!({"fullUrl": format!("{}/fhir/Consent/{id}", app.public_url), "resource": c, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}

#[tracing::instrument(name = "Read consent", skip_all)]
pub async fn read_consent(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let (body, version) = crate::consents::read(&app, &principal, &path.into_inner())
        .await
        .map_err(|r| super::refused(&req, r))?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .insert_header((header::ETAG, format!("W/\"{version}\"")))
        .body(body))
}
