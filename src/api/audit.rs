//! `GET /fhir/AuditEvent`: the audit log as FHIR, for auditors only. Search by `patient`, `date`
//! (with ge/gt/le/lt/eq prefixes, repeatable), `agent`, `entity`, `type`, `subtype`, `outcome`
//! and `_count`. `patient=` answers a subject access request.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::query::{self, Params};
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::store::AuditFilter;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PARAMETER, msg)
}

/// The store's filter for a query the route declaration has checked (`super::query`): the
/// values are inside their schemas here.
fn parse_filter(params: &Params) -> Result<AuditFilter, ApiError> {
    let mut f = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    let mut actions: Option<Vec<String>> = None;
    let mut narrow = |list: Vec<&'static str>| {
        let list: Vec<String> = list.into_iter().map(str::to_string).collect();
        actions = Some(match actions.take() {
            None => list,
            Some(prev) => prev.into_iter().filter(|a| list.contains(a)).collect(),
        });
    };
    for (key, value) in params.pairs() {
        match key.as_str() {
            "patient" | "patient:identifier" | "entity:identifier" => {
                let nhs = super::consent::nhs_from_param(key, value)?;
                f.nhs_number = Some(nhs.as_str().to_string());
            }
            "date" => {
                let (prefix, start, end) = query::date(value, DATE_PREFIXES)
                    .map_err(|why| bad(format!("The query parameter \"date\" {why}.")))?;
                match prefix {
                    "ge" => f.since = Some(start),
                    "gt" => f.since = Some(end),
                    "le" => f.until = Some(end),
                    "lt" => f.until = Some(start),
                    _ => {
                        f.since = Some(start);
                        f.until = Some(end);
                    }
                }
            }
            "agent" | "agent:identifier" => {
                f.agent = Some(value.rsplit('|').next().unwrap_or(value).to_string());
            }
            "entity" => f.entity = Some(value.clone()),
            "type" | "subtype" | "action" => {
                let mut selected = Vec::new();
                for v in value.split(',') {
                    selected.extend(crate::audit::fhir::actions_for_code(v));
                }
                narrow(selected);
            }
            "outcome" => {
                f.outcome = Some(
                    match value.as_str() {
                        "0" | "success" => "success",
                        "4" | "8" | "12" | "failure" => "failure",
                        other => {
                            return Err(bad(format!("outcome {other:?} is not 0, 4, 8 or 12")));
                        }
                    }
                    .to_string(),
                )
            }
            "_count" => {
                f.limit = query::count(value)
                    .ok_or_else(|| bad("_count must be a whole number of at least 1"))?;
            }
            other => {
                return Err(bad(format!(
                    "search parameter {other:?} is not supported on AuditEvent"
                )));
            }
        }
    }
    f.actions = actions;
    Ok(f)
}

/// The comparison prefixes `date` takes.
const DATE_PREFIXES: &[&str] = &["ge", "gt", "le", "lt", "eq"];

#[tracing::instrument(name = "Search audit events", skip_all)]
pub async fn search_audit_events(
    req: HttpRequest,
    principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let filter = parse_filter(&query::params(&req)?)?;
    let entries = app.audit.search(principal.actor(), &filter).await?;
    let entry: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"fullUrl": format!("{}/fhir/AuditEvent/{}", app.public_url, e.seq),
                   "resource": crate::audit::fhir::render(e), "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry});
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(bundle.to_string()))
}
