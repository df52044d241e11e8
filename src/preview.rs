//! Integrator tools that store nothing: `$validate` (a resource against a profile) and
//! `Bundle/$translate` (a document in another profile, with its loss report). Both are audited.

use serde_json::Value;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::translate::{Source, Target, Translation};

/// Validates `resource` against `profile` (or the profile set its shape implies).
pub async fn validate(
    app: &App,
    principal: &Principal,
    resource: &Value,
    profile: Option<&str>,
) -> Result<Vec<Issue>, ApiError> {
    let set = crate::validate::choose_set(resource);
    let issues = app.validator.validate(resource, profile, set);
    app.audit
        .record(AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: "POST /fhir/$validate".into(),
            nhs_number: None,
            results: issues.len(),
        })
        .await?;
    Ok(issues)
}

/// Translates `document` (a prison document or a GP Connect structured record) to `target`.
pub async fn translate(
    app: &App,
    principal: &Principal,
    document: Value,
    target: Target,
) -> Result<Translation, ApiError> {
    let source = Source::detect(&document).ok_or_else(|| {
        ApiError::unprocessable(
            codes::TRANSLATE_SHAPE,
            "The body is neither a prison document nor a GP Connect structured record.",
            "Bundle",
        )
    })?;
    let translation = app.translator.translate_owned(source, target, document)?;
    app.audit
        .record(AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: format!(
                "POST /fhir/Bundle/$translate {}->{}",
                source.as_str(),
                target.as_str()
            ),
            nhs_number: None,
            results: translation.losses.len(),
        })
        .await?;
    Ok(translation)
}
