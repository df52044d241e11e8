//! `GET /fhir/Task` and `GET /fhir/Task/{id}`: delivery status, for the sender and the recipient.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::startup::AppState;
use crate::store::DeliveryFilter;

const ROLES: &[Role] = &[Role::Prison, Role::Gp, Role::Icb, Role::Service];

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::SHAPE, msg)
}

/// The last path segment of a reference, or the value itself.
fn last_segment(v: &str) -> String {
    v.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(v)
        .to_string()
}

fn filter_for(query: &str, principal: &Principal) -> Result<DeliveryFilter, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| bad("the query string is unreadable"))?;
    let mut f = DeliveryFilter {
        limit: 100,
        party_ods: Some(principal.ods.to_string()),
        ..Default::default()
    };
    for (key, value) in pairs {
        match key.as_str() {
            "focus" => f.document_id = Some(last_segment(&value)),
            "owner" | "owner:identifier" => {
                f.recipient_ods = Some(value.rsplit('|').next().unwrap_or(&value).to_string())
            }
            "status" => f.status = Some(value),
            "business-status" => f.business_status = Some(value),
            "_lastUpdated" => {
                let v = value
                    .strip_prefix("ge")
                    .or_else(|| value.strip_prefix("gt"))
                    .unwrap_or(&value);
                f.updated_since = Some(v.to_string());
            }
            "_count" => {
                f.limit = value
                    .parse::<i64>()
                    .map_err(|_| bad("_count must be a number"))?
            }
            other => {
                return Err(bad(format!(
                    "search parameter {other:?} is not supported on Task"
                )));
            }
        }
    }
    Ok(f)
}

pub async fn search_tasks(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(&state, "GET /fhir/Task", ROLES, "Task", Permission::Search)
        .await?;
    let filter = filter_for(req.query_string(), &principal)?;
    let rows = state.store.deliveries(&filter).await?;
    let entry: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({"fullUrl": format!("{}/fhir/Task/{}", state.public_url, d.id),
                   "resource": crate::delivery::task::render(d, &state.public_url),
                   "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry});
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}

pub async fn read_task(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /fhir/Task/{id}",
            ROLES,
            "Task",
            Permission::Read,
        )
        .await?;
    let id = path.into_inner();
    let not_found = || {
        ApiError::not_found(format!(
            "Task/{id} is not known, or not visible to this client."
        ))
    };
    let d = state.store.delivery(&id).await?.ok_or_else(not_found)?;
    let ods = principal.ods.as_str();
    if d.sender_ods != ods && d.recipient_ods != ods {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(crate::delivery::task::render(&d, &state.public_url).to_string()))
}
