//! `GET /fhir/AuditEvent`: the audit log as FHIR, for auditors only. Search by `patient`, `date`
//! (with ge/gt/le/lt/eq prefixes, repeatable), `agent`, `entity`, `type`, `subtype`, `outcome`
//! and `_count`. `patient=` answers a subject access request.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::store::AuditFilter;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PARAMETER, msg)
}

/// Normalises a FHIR date or dateTime to the stored RFC 3339 UTC form, with the end of the
/// period it denotes (a day for a date).
fn bounds(value: &str) -> Result<(String, String), ApiError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(value, &Rfc3339) {
        let s = crate::clock::rfc3339(t);
        let e = crate::clock::rfc3339(t + time::Duration::milliseconds(1));
        return Ok((s, e));
    }
    let d = time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| bad(format!("date {value:?} is not a FHIR date or dateTime")))?;
    let start = d.midnight().assume_utc();
    Ok((
        crate::clock::rfc3339(start),
        crate::clock::rfc3339(start + time::Duration::days(1)),
    ))
}

fn parse_filter(query: &str) -> Result<AuditFilter, ApiError> {
    let mut f = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| bad("the query string is unreadable"))?;
    let mut actions: Option<Vec<String>> = None;
    let mut narrow = |list: Vec<&'static str>| {
        let list: Vec<String> = list.into_iter().map(str::to_string).collect();
        actions = Some(match actions.take() {
            None => list,
            Some(prev) => prev.into_iter().filter(|a| list.contains(a)).collect(),
        });
    };
    for (key, value) in pairs {
        match key.as_str() {
            "patient" | "patient:identifier" | "entity:identifier" => {
                let nhs = super::consent::nhs_from_param(&value)?;
                f.nhs_number = Some(nhs.as_str().to_string());
            }
            "date" => {
                let (prefix, rest) = match value.get(..2) {
                    Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let (start, end) = bounds(rest)?;
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
                f.agent = Some(value.rsplit('|').next().unwrap_or(&value).to_string());
            }
            "entity" => f.entity = Some(value),
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
                f.limit = value
                    .parse::<i64>()
                    .map_err(|_| bad("_count must be a number"))?
                    .clamp(1, 1000);
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

#[tracing::instrument(name = "Search audit events", skip_all)]
pub async fn search_audit_events(
    req: HttpRequest,
    principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let filter = parse_filter(req.query_string())?;
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
