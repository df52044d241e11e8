//! `GET /fhir/Task` and `GET /fhir/Task/{id}`: delivery status, for the sender and the recipient.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::store::DeliveryFilter;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PARAMETER, msg)
}

/// The last path segment of a reference, or the value itself.
fn last_segment(v: &str) -> String {
    v.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(v)
        .to_string()
}

fn filter_for(pairs: &[(String, String)]) -> Result<DeliveryFilter, ApiError> {
    let mut f = DeliveryFilter {
        limit: 100,
        ..Default::default()
    };
    for (key, value) in pairs {
        let value = value.clone();
        match key.as_str() {
            "focus" => f.document_id = Some(last_segment(&value)),
            "owner" | "owner:identifier" => {
                f.recipient_ods = Some(value.rsplit('|').next().unwrap_or(&value).to_string())
            }
            "status" => f.status = Some(value.parse().map_err(bad)?),
            "business-status" => f.business_status = Some(value.parse().map_err(bad)?),
            "_lastUpdated" => {
                // `ge` (or no prefix): from that moment; `gt`: after it.
                let (prefix, start, end) = super::query::date(&value, &["ge", "gt"])
                    .map_err(|why| bad(format!("The query parameter \"_lastUpdated\" {why}.")))?;
                f.updated_since = Some(if prefix == "gt" { end } else { start });
            }
            "_count" => {
                f.limit = super::query::count(&value)
                    .ok_or_else(|| bad("_count must be a whole number of at least 1"))?
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
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter_for(super::query::params(&req)?.pairs())?;
    let entry: Vec<Value> = crate::delivery::task::search(&app, &principal, filter)
        .await?
        .into_iter()
        .map(|task| {
            let id = task["id"].as_str().unwrap_or_default().to_string();
            json!({"fullUrl": format!("{}/fhir/Task/{id}", app.public_url),
                   "resource": task, "search": {"mode": "match"}})
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
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let task = crate::delivery::task::read(&app, &principal, &id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Task/{id} is not known, or not visible to this client."
            ))
        })?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(task.to_string()))
}
