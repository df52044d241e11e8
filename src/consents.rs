//! Recording the patient's consent: validated, versioned (every version kept) and audited.

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::clock::rfc3339;
use crate::domain::{NhsNumber, systems};
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::policy::ConsentDirective;

/// A recorded Consent version.
pub struct Recorded {
    pub id: String,
    pub version: i64,
    pub created: bool,
    pub body: String,
}

fn invalid(message: impl Into<String>, expression: &str) -> ApiError {
    ApiError::unprocessable(codes::CONSENT_INVALID, message, expression)
}

/// The patient's NHS number from `Consent.patient.identifier`.
pub fn patient_nhs_number(consent: &Value) -> Result<NhsNumber, ApiError> {
    let id = consent.get("patient").and_then(|p| p.get("identifier"));
    match (
        id.and_then(|i| i.get("system")).and_then(Value::as_str),
        id.and_then(|i| i.get("value")).and_then(Value::as_str),
    ) {
        (Some(s), Some(v)) if s == systems::NHS_NUMBER => NhsNumber::parse(v).map_err(|e| {
            invalid(
                format!("The NHS number is not valid: {e}."),
                "Consent.patient.identifier.value",
            )
        }),
        _ => Err(invalid(
            "Consent.patient must identify the patient by NHS number (identifier system https://fhir.nhs.uk/Id/nhs-number).",
            "Consent.patient.identifier",
        )),
    }
}

/// Checks a Consent and records it as a new version of `id` (a new id when `None`).
pub async fn record(
    app: &App,
    principal: &Principal,
    mut consent: Value,
    id: Option<String>,
) -> Result<Recorded, ApiError> {
    if consent.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        return Err(invalid(
            "The body must be a FHIR Consent.",
            "Consent.resourceType",
        ));
    }
    if let (Some(path_id), Some(body_id)) = (&id, consent.get("id").and_then(Value::as_str))
        && path_id != body_id
    {
        return Err(ApiError::BadRequest(vec![
            Issue::error(
                "invalid",
                format!("The body's id ({body_id}) differs from the URL's ({path_id})."),
            )
            .at("Consent.id")
            .with_code(codes::CONSENT_ID_MISMATCH),
        ]));
    }
    let nhs = patient_nhs_number(&consent)?;
    if consent.get("scope").is_none() {
        return Err(invalid(
            "Consent.scope is required (patient-privacy).",
            "Consent.scope",
        ));
    }
    if consent
        .get("category")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(invalid("Consent.category is required.", "Consent.category"));
    }
    // The policy engine must be able to evaluate every provision; refuse what it cannot.
    let directive = ConsentDirective::from_resource(&consent, 1).map_err(|e| {
        let expression = e
            .split(':')
            .next()
            .unwrap_or("Consent")
            .split_whitespace()
            .next()
            .unwrap_or("Consent");
        let expression = if expression.starts_with("Consent") {
            expression
        } else {
            "Consent"
        };
        invalid(e.clone(), expression)
    })?;
    // The prison Consent profile (UK Core Consent where it fits).
    let profile = format!("{}prison-consent", crate::validate::PRISON_SD_BASE);
    let errors: Vec<Issue> = app
        .validator
        .validate(
            &consent,
            Some(&profile),
            crate::validate::ProfileSet::Prison,
        )
        .into_iter()
        .filter(|i| {
            matches!(
                i.severity,
                crate::fhir::outcome::Severity::Error | crate::fhir::outcome::Severity::Fatal
            )
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors));
    }
    let status = consent
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("active")
        .to_string();

    let existing = match &id {
        Some(i) => app.store.consent(i).await?,
        None => None,
    };
    if let Some(prev) = &existing
        && prev.nhs_number != nhs.as_str()
    {
        return Err(ApiError::unprocessable(
            codes::CONSENT_ID_MISMATCH,
            "A Consent cannot be moved to another patient.",
            "Consent.patient.identifier.value",
        ));
    }
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let now = rfc3339(app.clock.now());
    if let Some(obj) = consent.as_object_mut() {
        obj.insert("id".into(), json!(id));
        obj.shift_remove("meta");
    }
    let template = consent;
    let stamp = now.clone();
    let render = move |version: i64| {
        let mut c = template.clone();
        if let Some(obj) = c.as_object_mut() {
            obj.insert(
                "meta".into(),
                json!({"versionId": version.to_string(), "lastUpdated": stamp}),
            );
        }
        c.to_string()
    };
    let event = |version: i64| AuditEvent::ConsentRecorded {
        actor: principal.actor(),
        consent_id: id.clone(),
        version,
        nhs_number: nhs.as_str().to_string(),
        status: status.clone(),
    };
    let audit = move |version: i64| vec![event(version).into_draft()];
    let version = app
        .store
        .put_consent(
            crate::store::ConsentWrite {
                id: &id,
                nhs_number: nhs.as_str(),
                status: &status,
                recorded_at: &now,
                recorded_by: &principal.client_id,
            },
            &render,
            &audit,
        )
        .await?;
    drop(directive);
    Ok(Recorded {
        id: id.clone(),
        version,
        created: existing.is_none(),
        body: render(version),
    })
}

/// The patient's Consents (every version's latest), audited as a search.
pub async fn search(
    app: &App,
    principal: &Principal,
    nhs: &NhsNumber,
) -> Result<Vec<Value>, ApiError> {
    let records = app.store.consents_for(nhs.as_str()).await?;
    app.audit
        .record(AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: "GET /fhir/Consent".into(),
            nhs_number: Some(nhs.as_str().to_string()),
            results: records.len(),
        })
        .await?;
    Ok(records
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .collect())
}

/// One Consent (its latest version, as stored) and that version, audited as a read.
pub async fn read(app: &App, principal: &Principal, id: &str) -> Result<(String, i64), ApiError> {
    let record = app
        .store
        .consent(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Consent/{id} is not known.")))?;
    app.audit
        .record(AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: "GET /fhir/Consent/{id}".into(),
            nhs_number: Some(record.nhs_number.clone()),
            results: 1,
        })
        .await?;
    Ok((record.body, record.version))
}
