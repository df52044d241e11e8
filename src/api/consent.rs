//! `POST /fhir/Consent`, `PUT /fhir/Consent/{id}`, `GET /fhir/Consent?patient=`,
//! `GET /fhir/Consent/{id}`: the patient's sharing choices.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Permission, Principal};
use crate::domain::{NhsNumber, Role, systems};
use crate::error::ApiError;
use crate::fhir::FHIR_JSON;
use crate::pipeline;
use crate::startup::AppState;

async fn write(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let (endpoint, permission) = match id {
        Some(_) => ("PUT /fhir/Consent/{id}", Permission::Update),
        None => ("POST /fhir/Consent", Permission::Create),
    };
    principal
        .authorize(&state, endpoint, &[Role::Prison], "Consent", permission)
        .await?;
    let result = async {
        let body = super::read_body(&req, payload, state.settings.limits.max_body_bytes).await?;
        pipeline::check_media_type(super::content_type(&req))?;
        let consent = pipeline::parse_json(&state, &body)?;
        crate::consents::record(&state, &principal, consent, id).await
    }
    .await;
    let recorded = match result {
        Ok(r) => r,
        Err(err) => {
            pipeline::audit_rejection(&state, &principal, endpoint, &err, None).await;
            return Err(err);
        }
    };
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!(
        "{}/fhir/Consent/{}/_history/{}",
        state.public_url, recorded.id, recorded.version
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
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    write(req, principal, payload, state, None).await
}

#[tracing::instrument(name = "Update consent", skip_all)]
pub async fn update_consent(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
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
            crate::error::codes::SHAPE,
            "The id is not a valid FHIR id.",
        ));
    }
    write(req, principal, payload, state, Some(id)).await
}

#[derive(Debug, Deserialize)]
pub struct ConsentSearch {
    patient: Option<String>,
    #[serde(rename = "patient:identifier")]
    patient_identifier: Option<String>,
}

/// Reads an NHS number from `9990000018` or `https://fhir.nhs.uk/Id/nhs-number|9990000018`.
pub fn nhs_from_param(value: &str) -> Result<NhsNumber, ApiError> {
    let digits = match value.split_once('|') {
        Some((system, v)) if system == systems::NHS_NUMBER => v,
        Some(_) => {
            return Err(ApiError::bad_request(
                crate::error::codes::SHAPE,
                "Only NHS numbers (https://fhir.nhs.uk/Id/nhs-number) identify patients here.",
            ));
        }
        None => value,
    };
    NhsNumber::parse(digits).map_err(|e| {
        ApiError::bad_request(
            crate::error::codes::SHAPE,
            format!("The patient parameter is not a valid NHS number: {e}."),
        )
    })
}

#[tracing::instrument(name = "Search consents", skip_all)]
pub async fn search_consents(
    principal: Principal,
    query: web::Query<ConsentSearch>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Consent",
            &[Role::Prison],
            "Consent",
            Permission::Search,
        )
        .await?;
    let param = query
        .patient
        .as_deref()
        .or(query.patient_identifier.as_deref())
        .ok_or_else(|| {
            ApiError::bad_request(
                crate::error::codes::SHAPE,
                "Search consents by patient (an NHS number).",
            )
        })?;
    let nhs = nhs_from_param(param)?;
    let records = state.store.consents_for(nhs.as_str()).await?;
    state
        .audit
        .record(crate::audit::AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: "GET /fhir/Consent".into(),
            nhs_number: Some(nhs.as_str().to_string()),
            results: records.len(),
        })
        .await?;
    let entries: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .map(|c| {
            let id = c.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            json!({"fullUrl": format!("{}/fhir/Consent/{id}", state.public_url), "resource": c, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}

#[tracing::instrument(name = "Read consent", skip_all)]
pub async fn read_consent(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Consent/{id}",
            &[Role::Prison],
            "Consent",
            Permission::Read,
        )
        .await?;
    let id = path.into_inner();
    let record = state
        .store
        .consent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Consent/{id} is not known.")))?;
    state
        .audit
        .record(crate::audit::AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: "GET /fhir/Consent/{id}".into(),
            nhs_number: Some(record.nhs_number.clone()),
            results: 1,
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .insert_header((header::ETAG, format!("W/\"{}\"", record.version)))
        .body(record.body))
}
