//! The patient's consent, read from FHIR R4 Consent resources: permit and deny provisions by
//! actor (an organisation's ODS code, or a recipient role), class (security label or resource
//! type), purpose and period. A withdrawn consent (`inactive`) has no effect at all.
//!
//! Actors are given in `provision.actor.reference.identifier`: system
//! `https://fhir.nhs.uk/Id/ods-organization-code` for an organisation, or
//! `https://throughcare.example.org/fhir/Id/recipient-role` (gp, icb, service, prison) for every
//! organisation of a role.
//!
//! Fail closed (DESIGN §7): a provision element the engine does not evaluate (`data`, `code`,
//! `action`, `dataPeriod`, `modifierExtension`, anything else), a security label, class or
//! purpose it cannot read, a period that is not a full date or a date-time with a time zone,
//! and provisions nested more than one level deep refuse the whole Consent, naming the element;
//! nothing is ignored. A stored Consent that no longer reads withholds everything
//! (`sharing::consents`).

use std::collections::BTreeSet;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Purpose;
use super::labels::{Label, ResourceView};
use crate::domain::{OdsCode, Role, systems};

pub const RECIPIENT_ROLE_SYSTEM: &str = "https://throughcare.example.org/fhir/Id/recipient-role";
pub const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionKind {
    Permit,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorSelector {
    Ods(String),
    Role(Role),
}

/// One provision, flattened (nested provisions inherit nothing: each states its own scope).
#[derive(Debug, Clone, PartialEq)]
pub struct Provision {
    /// FHIRPath of the provision in its Consent, for explanations.
    pub path: String,
    pub kind: ProvisionKind,
    pub actors: Vec<ActorSelector>,
    pub labels: BTreeSet<Label>,
    pub resource_types: Vec<String>,
    pub purposes: Vec<Purpose>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
    /// Whether this is the root provision (the default answer).
    pub root: bool,
}

/// An active Consent, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentDirective {
    /// `Consent/<id>` with its version.
    pub reference: String,
    pub active: bool,
    pub provisions: Vec<Provision>,
}

/// A FHIR `dateTime` the engine can compare: a full date (midnight UTC) or a date-time with a
/// time zone. Partial dates (`2026`, `2026-11`) and date-times without a zone are not.
fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    // A FHIR date: midnight UTC.
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc())
}

fn codings(v: Option<&Value>) -> Vec<(Option<&str>, Option<&str>)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c.get("system").and_then(Value::as_str),
                        c.get("code").and_then(Value::as_str),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The provision elements the engine evaluates. `id` and `extension` carry no meaning for the
/// decision (an extension that changes meaning is a `modifierExtension`, which is refused).
const UNDERSTOOD: &[&str] = &[
    "id",
    "extension",
    "type",
    "period",
    "actor",
    "securityLabel",
    "purpose",
    "class",
    "provision",
];

/// How deep provisions nest: the root (0) and one level of exceptions (1).
const MAX_DEPTH: usize = 1;

/// The FHIR R4 resource types, the codes `provision.class` may name (a misspelt type would
/// otherwise match nothing and a deny would silently not apply).
const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// `period.start` or `period.end`, which must be a full date or a date-time with a zone.
fn period_bound(
    period: &serde_json::Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<OffsetDateTime>, String> {
    match period.get(key) {
        None => Ok(None),
        Some(v) => v.as_str().and_then(parse_time).map(Some).ok_or_else(|| {
            format!(
                "{path}.period.{key}: {v} is not a full date (YYYY-MM-DD) or a date-time with a time zone; a partial date cannot be evaluated"
            )
        }),
    }
}

fn read_provision(
    p: &Value,
    path: String,
    kind_default: ProvisionKind,
    depth: usize,
    out: &mut Vec<Provision>,
) -> Result<(), String> {
    let Some(obj) = p.as_object() else {
        return Err(format!("{path}: a provision must be an object"));
    };
    if let Some(key) = obj.keys().find(|k| !UNDERSTOOD.contains(&k.as_str())) {
        return Err(format!(
            "{path}.{key}: the gateway cannot evaluate provision.{key}; the Consent is refused rather than applied without it"
        ));
    }
    for key in ["actor", "securityLabel", "purpose", "class", "provision"] {
        if obj.get(key).is_some_and(|v| !v.is_array()) {
            return Err(format!("{path}.{key}: must be an array"));
        }
    }
    let kind = match obj.get("type") {
        Some(Value::String(t)) if t == "permit" => ProvisionKind::Permit,
        Some(Value::String(t)) if t == "deny" => ProvisionKind::Deny,
        None => kind_default,
        Some(other) => return Err(format!("{path}.type: unknown provision type {other}")),
    };
    let mut actors = Vec::new();
    for (i, a) in p
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = a.get("reference").and_then(|r| r.get("identifier"));
        let system = id.and_then(|i| i.get("system")).and_then(Value::as_str);
        let value = id.and_then(|i| i.get("value")).and_then(Value::as_str);
        match (system, value) {
            (Some(s), Some(v)) if s == systems::ODS_ORGANISATION => {
                actors.push(ActorSelector::Ods(v.to_string()))
            }
            (Some(s), Some(v)) if s == RECIPIENT_ROLE_SYSTEM => {
                let role: Role = v.parse().map_err(|e| format!("{path}.actor[{i}]: {e}"))?;
                if role == Role::Unknown {
                    return Err(format!(
                        "{path}.actor[{i}]: organisations unknown to the directory are named by ODS code, not by role"
                    ));
                }
                actors.push(ActorSelector::Role(role))
            }
            _ => {
                return Err(format!(
                    "{path}.actor[{i}].reference.identifier must be an ODS code or a recipient role"
                ));
            }
        }
    }
    let mut labels = BTreeSet::new();
    for (i, (s, c)) in codings(p.get("securityLabel")).into_iter().enumerate() {
        match Label::from_coding(s, c) {
            Ok(Some(l)) => {
                labels.insert(l);
            }
            _ => return Err(format!("{path}.securityLabel[{i}]: unsupported label")),
        }
    }
    let mut resource_types = Vec::new();
    for (i, (s, c)) in codings(p.get("class")).into_iter().enumerate() {
        match (s, c) {
            (Some(RESOURCE_TYPES), Some(c)) if R4_RESOURCE_TYPES.contains(&c) => {
                resource_types.push(c.to_string())
            }
            _ => {
                return Err(format!(
                    "{path}.class[{i}]: only FHIR R4 resource types ({RESOURCE_TYPES}) are understood"
                ));
            }
        }
    }
    let mut purposes = Vec::new();
    for (i, (s, c)) in codings(p.get("purpose")).into_iter().enumerate() {
        match (s, c.and_then(Purpose::from_code)) {
            (Some(super::ACT_REASON), Some(pu)) => purposes.push(pu),
            _ => {
                return Err(format!(
                    "{path}.purpose[{i}]: only v3-ActReason TREAT and ETREAT are understood"
                ));
            }
        }
    }
    let (start, end) = match obj.get("period") {
        None => (None, None),
        Some(Value::Object(period)) => (
            period_bound(period, "start", &path)?,
            period_bound(period, "end", &path)?,
        ),
        Some(_) => return Err(format!("{path}.period: must be a Period")),
    };
    out.push(Provision {
        path: path.clone(),
        kind,
        actors,
        labels,
        resource_types,
        purposes,
        start,
        end,
        root: depth == 0,
    });
    let nested = p
        .get("provision")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !nested.is_empty() && depth >= MAX_DEPTH {
        return Err(format!(
            "{path}.provision: provisions nested more than one level deep cannot be evaluated"
        ));
    }
    for (i, nested) in nested.iter().enumerate() {
        let opposite = match kind {
            ProvisionKind::Permit => ProvisionKind::Deny,
            ProvisionKind::Deny => ProvisionKind::Permit,
        };
        read_provision(
            nested,
            format!("{path}.provision[{i}]"),
            opposite,
            depth + 1,
            out,
        )?;
    }
    Ok(())
}

impl ConsentDirective {
    /// Reads a Consent resource. Errors name the element that cannot be understood, so that a
    /// consent the gateway cannot evaluate is refused rather than half-applied.
    pub fn from_resource(consent: &Value, version: u32) -> Result<ConsentDirective, String> {
        if consent.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            return Err("Consent.resourceType must be Consent".into());
        }
        let id = consent
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("unsaved");
        let active = match consent.get("status").and_then(Value::as_str) {
            Some("active") => true,
            Some("inactive") | Some("rejected") | Some("entered-in-error") => false,
            Some("draft") | Some("proposed") => false,
            _ => return Err("Consent.status must be active, inactive, draft, proposed, rejected or entered-in-error".into()),
        };
        if consent.get("modifierExtension").is_some() {
            return Err(
                "Consent.modifierExtension: the gateway cannot evaluate a modifier extension; the Consent is refused rather than applied without it"
                    .into(),
            );
        }
        let mut provisions = Vec::new();
        match consent.get("provision") {
            Some(p) => read_provision(
                p,
                "Consent.provision".into(),
                ProvisionKind::Permit,
                0,
                &mut provisions,
            )?,
            None => {
                return Err(
                    "Consent.provision is required: it says what is permitted or denied".into(),
                );
            }
        }
        Ok(ConsentDirective {
            reference: format!("Consent/{id}/_history/{version}"),
            active,
            provisions,
        })
    }
}

/// Evaluation context for consent.
pub struct ConsentContext<'a> {
    pub recipient_ods: &'a OdsCode,
    pub recipient_role: Role,
    pub purpose: Purpose,
    pub at: OffsetDateTime,
}

fn provision_applies(p: &Provision, r: &ResourceView, cx: &ConsentContext<'_>) -> bool {
    let actor_ok = p.actors.is_empty()
        || p.actors.iter().any(|a| match a {
            ActorSelector::Ods(o) => o == cx.recipient_ods.as_str(),
            ActorSelector::Role(role) => *role == cx.recipient_role,
        });
    let label_ok = p.labels.is_empty() || r.labels.iter().any(|l| p.labels.contains(l));
    let type_ok = p.resource_types.is_empty() || p.resource_types.contains(&r.resource_type);
    let purpose_ok = p.purposes.is_empty()
        || p.purposes.contains(&cx.purpose)
        || (cx.purpose == Purpose::EmergencyTreat && p.purposes.contains(&Purpose::Treat));
    let period_ok = p.start.is_none_or(|s| cx.at >= s) && p.end.is_none_or(|e| cx.at <= e);
    actor_ok && label_ok && type_ok && purpose_ok && period_ok
}

/// The answer of one consent for one resource: the root provision when it applies, overridden
/// by the nested provisions that apply (a nested deny wins over a nested permit).
fn evaluate<'c>(
    c: &'c ConsentDirective,
    r: &ResourceView,
    cx: &ConsentContext<'_>,
) -> Option<&'c Provision> {
    let applying: Vec<&Provision> = c
        .provisions
        .iter()
        .filter(|p| provision_applies(p, r, cx))
        .collect();
    let nested_deny = applying
        .iter()
        .find(|p| !p.root && p.kind == ProvisionKind::Deny);
    let nested_permit = applying
        .iter()
        .find(|p| !p.root && p.kind == ProvisionKind::Permit);
    let root = applying.iter().find(|p| p.root);
    nested_deny.or(nested_permit).or(root).copied()
}

/// The first active consent provision that denies this resource to this recipient.
pub fn find_denial(
    consents: &[ConsentDirective],
    r: &ResourceView,
    cx: &ConsentContext<'_>,
) -> Option<String> {
    consents.iter().filter(|c| c.active).find_map(|c| {
        evaluate(c, r, cx)
            .filter(|p| p.kind == ProvisionKind::Deny)
            .map(|p| format!("{} {}", c.reference, p.path))
    })
}

/// The first active consent provision that explicitly permits `label` for this recipient: the
/// deciding provision is a permit that names the label.
pub fn find_permit(
    consents: &[ConsentDirective],
    label: Label,
    r: &ResourceView,
    cx: &ConsentContext<'_>,
) -> Option<String> {
    consents.iter().filter(|c| c.active).find_map(|c| {
        evaluate(c, r, cx)
            .filter(|p| p.kind == ProvisionKind::Permit && p.labels.contains(&label))
            .map(|p| format!("{} {}", c.reference, p.path))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_consent_cannot_grant_organisations_unknown_to_the_directory_by_role() {
        let consent = |role: &str| {
            json!({"resourceType": "Consent", "id": "c", "status": "active", "provision": {
                "type": "permit",
                "actor": [{"reference": {"identifier": {"system": RECIPIENT_ROLE_SYSTEM, "value": role}}}]
            }})
        };
        assert!(ConsentDirective::from_resource(&consent("service"), 1).is_ok());
        let refused = ConsentDirective::from_resource(&consent("unknown"), 1).unwrap_err();
        assert!(
            refused.starts_with("Consent.provision.actor[0]"),
            "{refused}"
        );
    }
}
