//! Recording the patient's consent: validated, versioned (every version kept) and audited.
//! Consent belongs to the prisons that hold the patient (`custody`): only the current prison
//! records a Consent that permits; any prison that has sent or received the patient's documents
//! records a denial or a withdrawal and reads the patient's Consents; any other caller gets 403
//! (audited, naming the patient).

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::clock::rfc3339;
use crate::domain::{NhsNumber, systems};
use crate::error::{ApiError, Rejected, codes};
use crate::fhir::outcome::Issue;
use crate::policy::{ConsentDirective, ProvisionKind};

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

/// Why `principal` may not touch the Consents of a patient it has never held.
fn not_a_holder(principal: &Principal) -> ApiError {
    ApiError::forbidden(
        codes::CUSTODY_CONSENT,
        format!(
            "{} has not sent or received this patient's documents: only a prison that holds or \
             has held the patient records, reads or searches their Consents.",
            principal.ods
        ),
    )
}

/// Consent belongs to the prisons that hold the patient: only the current prison records a
/// Consent that permits; any prison that has held the patient records a denial or a withdrawal
/// (never blocked); nobody else writes.
async fn authorise_write(
    app: &App,
    principal: &Principal,
    nhs: &NhsNumber,
    permits: bool,
) -> Result<(), ApiError> {
    let custody = crate::custody::of(app, nhs.as_str()).await?;
    if !custody.has_held(&principal.ods) {
        return Err(not_a_holder(principal));
    }
    if permits && !custody.is_current(&principal.ods) {
        return Err(ApiError::forbidden(
            codes::CUSTODY_CONSENT,
            format!(
                "{} does not hold the patient now: only the patient's current prison (the author \
                 of their latest custody document, or the receiving prison of their latest \
                 transfer) records a Consent that permits sharing. A denial or a withdrawal may \
                 be recorded.",
                principal.ods
            ),
        ));
    }
    Ok(())
}

/// Whether a Consent, once recorded, would permit anything: active, with a permit provision
/// (the root's default, or a nested exception).
fn permits(directive: &ConsentDirective) -> bool {
    directive.active
        && directive
            .provisions
            .iter()
            .any(|p| p.kind == ProvisionKind::Permit)
}

/// Checks a Consent and records it as a new version of `id` (a new id when `None`), if the
/// caller's prison may (see `authorise_write`). A refusal names the patient when the Consent
/// does.
pub async fn record(
    app: &App,
    principal: &Principal,
    consent: Value,
    id: Option<String>,
) -> Result<Recorded, Rejected> {
    let nhs = patient_nhs_number(&consent).ok();
    record_checked(app, principal, consent, id)
        .await
        .map_err(|error| Rejected {
            error,
            nhs_number: nhs.map(|n| n.as_str().to_string()),
        })
}

async fn record_checked(
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
        // Say nothing about another patient's Consent to a prison that never held them.
        if !crate::custody::of(app, &prev.nhs_number)
            .await?
            .has_held(&principal.ods)
        {
            return Err(not_a_holder(principal));
        }
        return Err(ApiError::unprocessable(
            codes::CONSENT_ID_MISMATCH,
            "A Consent cannot be moved to another patient.",
            "Consent.patient.identifier.value",
        ));
    }
    authorise_write(app, principal, &nhs, permits(&directive)).await?;
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
    Ok(Recorded {
        id: id.clone(),
        version,
        created: existing.is_none(),
        body: render(version),
    })
}

/// The patient's Consents (every version's latest), audited as a search; only for a prison that
/// holds or has held the patient.
pub async fn search(
    app: &App,
    principal: &Principal,
    nhs: &NhsNumber,
) -> Result<Vec<Value>, Rejected> {
    search_checked(app, principal, nhs)
        .await
        .map_err(|e| e.about(nhs.as_str()))
}

async fn search_checked(
    app: &App,
    principal: &Principal,
    nhs: &NhsNumber,
) -> Result<Vec<Value>, ApiError> {
    if !crate::custody::of(app, nhs.as_str())
        .await?
        .has_held(&principal.ods)
    {
        return Err(not_a_holder(principal));
    }
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

/// One Consent (its latest version, as stored) and that version, audited as a read; only for a
/// prison that holds or has held the patient.
pub async fn read(app: &App, principal: &Principal, id: &str) -> Result<(String, i64), Rejected> {
    let record = app
        .store
        .consent(id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found(format!("Consent/{id} is not known.")))?;
    let about = |e: ApiError| e.about(&record.nhs_number);
    if !crate::custody::of(app, &record.nhs_number)
        .await
        .map_err(|e| about(e.into()))?
        .has_held(&principal.ods)
    {
        return Err(about(not_a_holder(principal)));
    }
    app.audit
        .record(AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: "GET /fhir/Consent/{id}".into(),
            nhs_number: Some(record.nhs_number.clone()),
            results: 1,
        })
        .await
        .map_err(|e| about(e.into()))?;
    Ok((record.body, record.version))
}
