//! `GET /fhir/Communication`: the alerts the gateway sent to the caller's organisation (a
//! prison, about the deliveries of its documents that are held, failed, dead-lettered or still
//! undelivered near the release date). A prison sees only its own.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::store::CommunicationFilter;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PARAMETER, msg)
}

/// The filter of a search; `None` when it can match nothing (a status other than completed).
fn filter_for(pairs: &[(String, String)]) -> Result<Option<CommunicationFilter>, ApiError> {
    let mut f = CommunicationFilter {
        limit: 100,
        ..Default::default()
    };
    for (key, value) in pairs {
        match key.as_str() {
            // Every alert is sent when it is stored.
            "status" if value != "completed" => return Ok(None),
            "status" => {}
            "category" => f.state = Some(value.clone()),
            "sent" => {
                let (prefix, start, end) =
                    super::query::date(value, &["ge", "gt", "le", "lt", "eq"])
                        .map_err(|why| bad(format!("The query parameter \"sent\" {why}.")))?;
                match prefix {
                    "gt" => f.since = Some(end),
                    "ge" => f.since = Some(start),
                    "lt" => f.until = Some(start),
                    "le" => f.until = Some(end),
                    _ => {
                        f.since = Some(start);
                        f.until = Some(end);
                    }
                }
            }
            "_count" => {
                f.limit = super::query::count(value)
                    .ok_or_else(|| bad("_count must be a whole number of at least 1"))?
            }
            other => {
                return Err(bad(format!(
                    "search parameter {other:?} is not supported on Communication"
                )));
            }
        }
    }
    Ok(Some(f))
}

pub async fn search_communications(
    req: HttpRequest,
    principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let found = match filter_for(super::query::params(&req)?.pairs())? {
        Some(filter) => {
            crate::delivery::escalation::communications(&app, &principal, filter).await?
        }
        None => Vec::new(),
    };
    let entry: Vec<Value> = found
        .into_iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap_or_default().to_string();
            json!({"fullUrl": format!("{}/fhir/Communication/{id}", app.public_url),
                   "resource": c, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry});
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}
