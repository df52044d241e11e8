//! Pull: what a recipient may see of a patient, across every stored document, with policy
//! applied at the moment of reading (DESIGN §3 "Pull"). The gateway's Patient has the NHS number
//! as its logical id.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::auth::Principal;
use crate::domain::{NhsNumber, systems};
use crate::error::ApiError;
use crate::policy::Purpose;
use crate::startup::AppState;

/// The resources of every document about `nhs` that `principal` may see now, newest document
/// first, each resource once (by `Type/id`, the newest copy winning).
pub async fn everything(
    state: &AppState,
    principal: &Principal,
    nhs: &NhsNumber,
    purpose: Purpose,
) -> Result<Vec<Value>, ApiError> {
    let documents = state.store.documents_for(nhs.as_str()).await?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for stored in &documents {
        let Some(copy) = crate::sharing::read_for(state, principal, stored, purpose).await? else {
            continue;
        };
        for entry in copy
            .document
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(resource) = entry.get("resource") else {
                continue;
            };
            let key = match (
                resource.get("resourceType").and_then(Value::as_str),
                resource.get("id").and_then(Value::as_str),
            ) {
                (Some(t), Some(id)) => format!("{t}/{id}"),
                _ => entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
            if seen.insert(key) {
                out.push(entry.clone());
            }
        }
    }
    Ok(out)
}

/// The Patient as `principal` may see it (from the newest document that shares it), with the
/// NHS number as its id.
pub async fn patient(
    state: &AppState,
    principal: &Principal,
    nhs: &NhsNumber,
) -> Result<Option<Value>, ApiError> {
    let entries = everything(state, principal, nhs, Purpose::Treat).await?;
    Ok(entries
        .into_iter()
        .filter_map(|e| e.get("resource").cloned())
        .find(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some("Patient")
                && crate::fhir::json::identifier_value(r, systems::NHS_NUMBER).map(|(_, v)| v)
                    == Some(nhs.as_str())
        })
        .map(|mut p| {
            p["id"] = json!(nhs.as_str());
            p
        }))
}
