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
    for (k, v) in crate::api::query_pairs(&req)? {
        match k.as_str() {
            "status" => f.status = Some(v.parse().map_err(bad)?),
            "business-status" => f.business_status = Some(v.parse().map_err(bad)?),
            "at-risk" => f.at_risk = Some(v == "true"),
            "recipient" => f.recipient_ods = Some(v),
            "document" => f.document_id = Some(v),
            "_count" => f.limit = v.parse().unwrap_or(200),
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
