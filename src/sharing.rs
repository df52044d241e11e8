//! The sharing stage: keeps the agreements in force (seeded from files, versioned in the store),
//! reads the patient's consents, and runs the policy engine for a document and a recipient.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use serde_json::{Value, json};

use crate::audit::{Actor, AuditEvent};
use crate::config::PolicySettings;
use crate::domain::OdsCode;
use crate::policy::{
    Agreement, AgreementStatus, Classifier, ConsentDirective, Decision, Purpose, agreement,
};
use crate::store::{AgreementRecord, Store, StoreError, VersionOutcome};

/// Agreements in force and the sensitivity classifier.
pub struct Sharing {
    agreements: RwLock<Arc<Vec<Agreement>>>,
    pub classifier: Classifier,
}

/// Why an agreement change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "agreement {id} version {version} already exists with different content; versions are never edited in place"
    )]
    VersionConflict { id: String, version: u32 },
    #[error("agreement {0} is not known")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn record(a: &Agreement, at: &str, by: &str) -> Result<AgreementRecord, AgreementError> {
    let body = serde_json::to_string(a).map_err(|e| AgreementError::Invalid(e.to_string()))?;
    let status = match a.status {
        AgreementStatus::Draft => "draft",
        AgreementStatus::Active => "active",
        AgreementStatus::Retired => "retired",
    };
    Ok(AgreementRecord {
        id: a.id.clone(),
        version: i64::from(a.version),
        status: status.into(),
        body,
        recorded_at: at.into(),
        recorded_by: by.into(),
    })
}

impl Sharing {
    /// Loads the classification files and seeds the agreement files into the store. A file whose
    /// version is already stored with different content stops start-up: it was edited in place.
    /// `code_pairs` are the ConceptMaps' mappings (`Translator::code_pairs`): a local code they
    /// turn into a labelled code is labelled too.
    pub async fn load(
        settings: &PolicySettings,
        store: &dyn Store,
        now: &str,
        code_pairs: &[(String, String, String, String)],
    ) -> anyhow::Result<Sharing> {
        let mut classifier = Classifier::load_dir(&settings.labels_dir)
            .with_context(|| format!("loading labels from {}", settings.labels_dir.display()))?;
        classifier.extend_with_code_pairs(code_pairs);
        let files = agreement::load_dir(&settings.agreements_dir).with_context(|| {
            format!(
                "loading agreements from {}",
                settings.agreements_dir.display()
            )
        })?;
        let sharing = Sharing {
            agreements: RwLock::new(Arc::new(Vec::new())),
            classifier,
        };
        for a in files {
            let actor = Actor {
                client_id: "agreement-file".into(),
                ods: String::new(),
            };
            // A file older than the stored history (the agreement changed through the admin
            // API since) is fine as long as that version is stored exactly as the file says.
            let stored = store.agreement_versions(Some(&a.id)).await?;
            if let Some(same) = stored.iter().find(|r| r.version == i64::from(a.version)) {
                if same.body != record(&a, now, "")?.body {
                    anyhow::bail!(
                        "agreement file {}: {}",
                        a.id,
                        AgreementError::VersionConflict {
                            id: a.id.clone(),
                            version: a.version
                        }
                    );
                }
                continue;
            }
            if let Err(e) = sharing.store_version(store, &a, &actor, now).await {
                anyhow::bail!("agreement file {}: {e}", a.id);
            }
        }
        sharing.reload(store).await?;
        Ok(sharing)
    }

    /// Re-reads the latest version of every agreement from the store.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let versions = store.agreement_versions(None).await?;
        let mut latest: Vec<Agreement> = Vec::new();
        for rec in versions {
            let Ok(a) = serde_json::from_str::<Agreement>(&rec.body) else {
                tracing::error!(agreement = %rec.id, version = rec.version, "Stored agreement is unreadable; ignored (deny by default).");
                continue;
            };
            match latest.iter_mut().find(|x| x.id == a.id) {
                Some(x) if x.version < a.version => *x = a,
                Some(_) => {}
                None => latest.push(a),
            }
        }
        if let Ok(mut guard) = self.agreements.write() {
            *guard = Arc::new(latest);
        }
        Ok(())
    }

    /// The latest version of every agreement (retired ones included; they cover nothing).
    pub fn agreements(&self) -> Arc<Vec<Agreement>> {
        self.agreements
            .read()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// Stores a new agreement version, audited with the version before and after.
    pub async fn store_version(
        &self,
        store: &dyn Store,
        a: &Agreement,
        actor: &Actor,
        now: &str,
    ) -> Result<(Option<u32>, u32, bool), AgreementError> {
        a.check().map_err(AgreementError::Invalid)?;
        let before = store
            .agreement_versions(Some(&a.id))
            .await?
            .last()
            .map(|r| u32::try_from(r.version).unwrap_or(0));
        if let Some(b) = before
            && a.version < b
        {
            return Err(AgreementError::Invalid(format!(
                "version {} is older than the stored version {b}",
                a.version
            )));
        }
        let event = AuditEvent::AgreementChanged {
            actor: actor.clone(),
            agreement: a.id.clone(),
            before,
            after: a.version,
            status: format!("{:?}", a.status).to_lowercase(),
        };
        let outcome = store
            .put_agreement(record(a, now, &actor.client_id)?, vec![event.into_draft()])
            .await?;
        match outcome {
            VersionOutcome::Stored => {
                self.reload(store).await?;
                Ok((before, a.version, true))
            }
            VersionOutcome::Unchanged => Ok((before, a.version, false)),
            VersionOutcome::Conflict => Err(AgreementError::VersionConflict {
                id: a.id.clone(),
                version: a.version,
            }),
        }
    }

    /// The patient's consents, ready to evaluate. A stored consent that can no longer be read
    /// withholds everything for that patient (fail closed) rather than being ignored.
    pub async fn consents(
        &self,
        store: &dyn Store,
        nhs_number: &str,
    ) -> Result<Vec<ConsentDirective>, StoreError> {
        let records = store.consents_for(nhs_number).await?;
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let parsed = serde_json::from_str::<Value>(&rec.body)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    ConsentDirective::from_resource(&v, u32::try_from(rec.version).unwrap_or(0))
                });
            match parsed {
                Ok(c) => out.push(c),
                Err(e) => {
                    tracing::error!(consent = %rec.id, error = %e, "Stored consent is unreadable; withholding everything.");
                    let deny_all = json!({"resourceType": "Consent", "id": rec.id, "status": "active", "provision": {"type": "deny"}});
                    if let Ok(c) = ConsentDirective::from_resource(&deny_all, 0) {
                        out.push(c);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Renders a decision as the explanation stored in the audit log and returned by the API.
pub fn explanation(decision: &Decision, recipient: &OdsCode, purpose: Purpose) -> Value {
    json!({
        "recipient": recipient.as_str(),
        "purpose": purpose.code(),
        "agreement": decision.agreement.as_ref().map(|(id, v)| json!({"id": id, "version": v})),
        "emergency": decision.emergency,
        "refusal": decision.refusal,
        "resources": decision.resources,
    })
}
