//! `/admin/deliveries`: what operators watch (filters by state, risk, recipient, document) and
//! replay (failed and dead-lettered deliveries).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::store::DeliveryFilter;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PARAMETER, message)
}

/// `GET /admin/deliveries?status=&business-status=&at-risk=&recipient=&document=&_count=`.
pub async fn list_deliveries(
    req: HttpRequest,
    _principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let mut f = DeliveryFilter {
        limit: 200,
        ..Default::default()
    };
    // The route declaration has checked every value against its schema (`api::query`).
    let params = crate::api::query::params(&req)?;
    for (k, v) in params.pairs() {
        match k.as_str() {
            "status" => f.status = Some(v.parse().map_err(bad)?),
            "business-status" => f.business_status = Some(v.parse().map_err(bad)?),
            "at-risk" => f.at_risk = params.flag("at-risk"),
            "recipient" => f.recipient_ods = Some(v.clone()),
            "document" => f.document_id = Some(v.clone()),
            "_count" => {
                f.limit = crate::api::query::count(v)
                    .ok_or_else(|| bad("_count must be a whole number of at least 1"))?
            }
            other => return Err(bad(format!("filter {other:?} is not supported"))),
        }
    }
    let list = crate::admin::deliveries(&app, &f).await?;
    Ok(HttpResponse::Ok().json(json!({"deliveries": list})))
}

/// `POST /admin/deliveries/{id}/retry`: replay a failed or dead-lettered delivery.
pub async fn retry_delivery(
    principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    crate::admin::retry_delivery(&app, &principal, &id).await?;
    Ok(HttpResponse::Accepted()
        .json(json!({"id": id, "status": "requested", "businessStatus": "scheduled"})))
}
