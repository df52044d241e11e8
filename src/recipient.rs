//! The recipient-copy stage (DESIGN §4, "for each recipient"): the one place where a recipient's
//! copy of a document is made.
//!
//! [`copy_for`] takes a [`Subject`] (the document, parsed once, with its routes and the patient's
//! consents, loaded once for every recipient), a recipient (ODS code, typed role and
//! relationships, a [`Route`]) and a [`CopyRequest`] (purpose, [`Moment`], the profile the
//! recipient speaks) and returns a [`RecipientCopy`]: the policy decision, the element removals,
//! the copy translated to the recipient's profile, its loss report, its issues against the target
//! profile, the [`Verdict`] on it and the audit draft recording the decision. Intake (preview),
//! `$sharing-decision`, every read and every delivery call it; nothing else applies policy or
//! translates a document for a recipient.
//!
//! The verdict is the one rule for what may be handed out (issue 12 item 3, DESIGN §9): a copy
//! that conforms goes; one that fails its target profile only in administrative elements goes
//! with the failures as warnings; one that fails in clinical content (`mappings/clinical-content/`),
//! or that carries a medicine without its safety elements (DESIGN §5a: a dose instruction, and
//! for opiate substitution the date of the last dose in custody), is held: a delivery waits
//! on-hold, a pull is refused (422), never sent with a guessed dose.
//!
//! The function is pure over its inputs (no store access), so a cache of copies keyed by
//! document, recipient, profile and the versions of consent and agreements has one place to
//! live.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::{Actor, AuditEvent};
use crate::chain::AuditDraft;
use crate::codes;
use crate::document::DocumentSummary;
use crate::domain::{Moment, OdsCode, Role};
use crate::fhir::outcome::{Issue, Severity};
use crate::medicines::MissingSafetyElement;
use crate::policy::{
    ConsentDirective, Decision, DecisionRequest, Party, Purpose, RecipientContext, Removal, decide,
    labels,
};
use crate::routing::{Directory, Route, Routing};
use crate::store::{StoreError, StoredDocument};
use crate::translate::{Loss, Source, Target, TranslateError};
use crate::validate::clinical::ElementClass;

/// A document being shared, with what every recipient's copy needs: parsed once, routed once,
/// the patient's consents read once.
pub struct Subject {
    pub document: Value,
    pub summary: DocumentSummary,
    /// The stored document's id (`None` for a document not stored: a preview of one given).
    pub document_id: Option<String>,
    pub sender: Party,
    /// The recipients the document routes to.
    pub routes: Vec<Route>,
    /// Why the document cannot be routed as it stands (an organisation with no exact ODS code,
    /// or in a role the directory does not hold it in): intake refuses it with these (422).
    pub routing_errors: Vec<Issue>,
    /// What routing tells the sender (a care-plan performer unknown to the directory).
    pub routing_warnings: Vec<Issue>,
    pub consents: Vec<ConsentDirective>,
    /// Each resource as policy sees it (class, labels, free-text terms): read once for every
    /// recipient.
    pub views: Vec<labels::ResourceView>,
}

/// The directory as one document sees it: the App's (registered clients, the prison register,
/// ICBs by postcode) and the endpoints registered for the organisations the document names.
struct DocumentDirectory<'a> {
    app: &'a App,
    endpoints: BTreeSet<OdsCode>,
}

impl Directory for DocumentDirectory<'_> {
    fn role_of(&self, ods: &OdsCode) -> Option<Role> {
        self.app.role_of(ods)
    }

    fn is_known(&self, ods: &OdsCode) -> bool {
        self.app.is_known(ods) || self.endpoints.contains(ods)
    }

    fn is_prison_healthcare(&self, ods: &OdsCode) -> bool {
        self.app.is_prison_healthcare(ods)
    }

    fn icb_for_postcode(&self, postcode: Option<&str>) -> Option<OdsCode> {
        self.app.icb_for_postcode(postcode)
    }
}

/// Routes `document` by the organisation directory: first by the App's, then, when an
/// organisation it names is unknown there, with the endpoints registered for it.
async fn route_by_directory(
    app: &App,
    document: &Value,
    summary: &DocumentSummary,
    sender: &OdsCode,
) -> Result<Routing, StoreError> {
    let route = |directory: &dyn Directory| {
        crate::routing::route(
            document,
            summary.patient_entry,
            summary.event,
            sender,
            directory,
        )
    };
    let routing = route(app);
    let mut endpoints = BTreeSet::new();
    for r in routing.routes.iter().filter(|r| r.role == Role::Unknown) {
        if app.store.endpoint(r.ods.as_str()).await?.is_some() {
            endpoints.insert(r.ods.clone());
        }
    }
    if endpoints.is_empty() {
        return Ok(routing);
    }
    Ok(route(&DocumentDirectory { app, endpoints }))
}

/// Why a stored document could not be prepared for sharing. Never the caller's fault: the
/// document was checked at intake.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored document {id} is unreadable: {why}")]
    Unreadable { id: String, why: String },
}

impl SubjectError {
    /// A store error may pass; an unreadable stored document will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, SubjectError::Store(_))
    }
}

impl Subject {
    /// A document about to be accepted (or given for a decision), already checked.
    pub async fn incoming(
        app: &App,
        document: Value,
        summary: DocumentSummary,
        sender: Party,
        document_id: Option<String>,
    ) -> Result<Subject, StoreError> {
        let routing = route_by_directory(app, &document, &summary, &sender.ods).await?;
        let consents = app
            .sharing
            .consents(app.store.as_ref(), summary.nhs_number.as_str())
            .await?;
        let views = labels::views(&document, &app.sharing.classifier);
        Ok(Subject {
            document,
            summary,
            document_id,
            sender,
            routes: routing.routes,
            routing_errors: routing.errors,
            routing_warnings: routing.warnings,
            consents,
            views,
        })
    }

    /// A stored document, read back for a read, a decision or a delivery.
    pub async fn stored(app: &App, stored: &StoredDocument) -> Result<Subject, SubjectError> {
        let unreadable = |why: String| SubjectError::Unreadable {
            id: stored.id.clone(),
            why,
        };
        let document: Value =
            serde_json::from_slice(&stored.body).map_err(|e| unreadable(e.to_string()))?;
        let sender_ods = OdsCode::parse(&stored.sender_ods).map_err(unreadable)?;
        let summary = crate::document::check(&document, &sender_ods)
            .map_err(|_| unreadable("it no longer has the document shape".into()))?;
        let sender = Party {
            ods: sender_ods,
            role: Role::Prison,
        };
        Ok(Subject::incoming(app, document, summary, sender, Some(stored.id.clone())).await?)
    }

    /// The recipient `ods` as this document sees it: its route (role and relationships) when
    /// the document routes to it, else `role` (or its directory role, else [`Role::Unknown`])
    /// with no relationship to the patient.
    pub fn recipient(&self, app: &App, ods: &OdsCode, role: Option<Role>) -> Route {
        if let Some(route) = self.routes.iter().find(|r| &r.ods == ods) {
            let mut route = route.clone();
            if let Some(role) = role {
                route.role = role;
            }
            return route;
        }
        // An organisation the directory does not know has no role to be granted anything by.
        Route {
            ods: ods.clone(),
            role: role.or_else(|| app.role_of(ods)).unwrap_or(Role::Unknown),
            relationships: Default::default(),
            needs_gp_registration: false,
        }
    }
}

/// What a copy is for.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub purpose: Purpose,
    pub moment: Moment,
    /// The profile the recipient speaks.
    pub target: Target,
    /// The recipient's registration allows break-glass (pulls only).
    pub break_glass_allowed: bool,
    /// Who caused the copy to be made (the caller, or the gateway for a delivery).
    pub actor: Actor,
}

/// One recipient's copy of a document, and everything said about it.
#[derive(Debug)]
pub struct RecipientCopy {
    pub recipient: Route,
    pub target: Target,
    pub moment: Moment,
    pub decision: Decision,
    pub removals: Vec<Removal>,
    /// The copy in the recipient's profile; `None` when nothing may be shared, or when it could
    /// not be translated (`translation_error` says why).
    pub copy: Option<Value>,
    /// What the translation could not carry.
    pub losses: Vec<Loss>,
    /// The translation failed: a mapping defect, not the recipient's or the sender's doing.
    pub translation_error: Option<TranslateError>,
    /// Issues of the copy against the target profile (made at every moment: intake,
    /// decisions, reads and deliveries).
    pub target_issues: Vec<Issue>,
    /// What may be done with the copy: sent as it is, sent with administrative warnings, or
    /// held.
    pub verdict: Verdict,
    /// The decision, for the audit log (committed by the caller with what it does next).
    pub audit: AuditDraft,
}

impl RecipientCopy {
    /// The recipient may receive something.
    pub fn shares_anything(&self) -> bool {
        self.decision.agreement.is_some() && self.decision.shared().next().is_some()
    }

    /// An agreement covers the recipient, and the patient's consent (rule 4) is what withholds
    /// the whole record from it: the recipient is told that the patient's choices do not permit
    /// sharing, and nothing more.
    pub fn consent_withholds_all(&self) -> bool {
        self.decision.agreement.is_some()
            && !self.shares_anything()
            && self.decision.withheld().any(|r| r.rule == 4)
    }

    /// Target-profile errors (the copy does not conform).
    pub fn target_errors(&self) -> impl Iterator<Item = &Issue> {
        self.target_issues
            .iter()
            .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
    }

    /// The loss report as JSON (kept with a delivery and shown on its Task).
    pub fn loss_report(&self) -> Value {
        json!(self.losses)
    }
}

/// Why a copy is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// The copy fails its target profile in clinical content.
    ClinicalContent,
    /// A medicine the copy carries lacks a safety element (DESIGN §5a).
    SafetyElement,
}

/// One reason a copy is held: the element concerned and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldReason {
    pub kind: HoldKind,
    /// Where: a path in the copy (clinical content) or in the sender's document (a safety
    /// element, `Bundle.entry[i].resource...`).
    pub expression: Option<String>,
    pub description: String,
}

impl HoldKind {
    /// The stable code of a hold of this kind.
    pub fn code(self) -> &'static str {
        match self {
            HoldKind::ClinicalContent => codes::DELIVERY_HELD_CLINICAL,
            HoldKind::SafetyElement => codes::DELIVERY_HELD_SAFETY,
        }
    }
}

impl HoldReason {
    /// `expression: description`.
    pub fn text(&self) -> String {
        match &self.expression {
            Some(e) => format!("{e}: {}", self.description),
            None => self.description.clone(),
        }
    }
}

/// What may be done with a recipient's copy (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Conforms to its target profile and carries every safety element (or there is nothing
    /// to send).
    Conforms,
    /// Fails its target profile only in administrative elements: it goes, with these errors
    /// as warnings (severity warning, code [`codes::DELIVERY_ADMINISTRATIVE`]).
    AdministrativeOnly { warnings: Vec<Issue> },
    /// Must not go: the reasons name the elements.
    Held { reasons: Vec<HoldReason> },
}

impl Verdict {
    pub fn is_held(&self) -> bool {
        matches!(self, Verdict::Held { .. })
    }

    /// The administrative warnings that travel with a copy that goes.
    pub fn warnings(&self) -> &[Issue] {
        match self {
            Verdict::AdministrativeOnly { warnings } => warnings,
            _ => &[],
        }
    }

    /// The reasons a held copy is held (empty otherwise).
    pub fn reasons(&self) -> &[HoldReason] {
        match self {
            Verdict::Held { reasons } => reasons,
            _ => &[],
        }
    }

    /// The stable code of a hold: a missing safety element first, since no correction of the
    /// mappings can mend it; `None` when the copy is not held.
    pub fn hold_code(&self) -> Option<&'static str> {
        let reasons = self.reasons();
        if reasons.iter().any(|r| r.kind == HoldKind::SafetyElement) {
            Some(codes::DELIVERY_HELD_SAFETY)
        } else if !reasons.is_empty() {
            Some(codes::DELIVERY_HELD_CLINICAL)
        } else {
            None
        }
    }

    /// A held copy's reasons in one line (at most five named, then a count).
    pub fn hold_summary(&self) -> String {
        let reasons = self.reasons();
        let mut parts: Vec<String> = reasons.iter().take(5).map(HoldReason::text).collect();
        if reasons.len() > 5 {
            parts.push(format!("and {} more", reasons.len() - 5));
        }
        parts.join("; ")
    }
}

/// The verdict on a copy in `target`: its target errors classified by the clinical-content
/// lists, and the safety elements of the medicines it carries (read on `filtered`, the sender's
/// document as policy filtered it, so that only the medicines actually shared count;
/// `kept[k]` is the sender's entry index of filtered entry `k`).
fn verdict(
    app: &App,
    target: Target,
    copy: Option<&Value>,
    target_issues: &[Issue],
    filtered: &Value,
    kept: &[usize],
) -> Verdict {
    let mut reasons = Vec::new();
    for (k, entry) in filtered
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let rt = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let dosage = if rt == "MedicationStatement" {
            "dosage"
        } else {
            "dosageInstruction"
        };
        let at = format!(
            "Bundle.entry[{}].resource",
            kept.get(k).copied().unwrap_or(k)
        );
        let id = resource.get("id").and_then(Value::as_str).unwrap_or("-");
        for missing in app
            .medicines
            .missing_safety_elements(resource, Some(filtered))
        {
            let element = match missing {
                MissingSafetyElement::DoseInstruction => dosage,
                MissingSafetyElement::LastDoseDate { .. } => "extension",
            };
            reasons.push(HoldReason {
                kind: HoldKind::SafetyElement,
                expression: Some(format!("{at}.{element}")),
                description: format!(
                    "{rt}/{id} has {}: a medicine is never sent with a guessed dose",
                    missing.describe()
                ),
            });
        }
    }
    let mut warnings = Vec::new();
    if let Some(copy) = copy {
        let set = target.profile_set();
        for issue in target_issues
            .iter()
            .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
        {
            match app
                .clinical
                .classify(set, copy, issue.expression.as_deref())
            {
                ElementClass::Clinical => reasons.push(HoldReason {
                    kind: HoldKind::ClinicalContent,
                    expression: issue.expression.clone(),
                    description: format!(
                        "clinical content does not conform to the {target} profiles: {}",
                        issue.diagnostics
                    ),
                }),
                ElementClass::Administrative => {
                    let mut w = issue.clone();
                    w.severity = Severity::Warning;
                    w.gateway_code = Some(codes::DELIVERY_ADMINISTRATIVE);
                    warnings.push(w);
                }
            }
        }
    }
    if !reasons.is_empty() {
        Verdict::Held { reasons }
    } else if !warnings.is_empty() {
        Verdict::AdministrativeOnly { warnings }
    } else {
        Verdict::Conforms
    }
}

/// The profile a recipient receives when it has not asked for one: its endpoint's, else the
/// prison profile for a prison, else UK Core R4.
pub fn default_target(endpoint_profile: Option<Target>, role: Role) -> Target {
    endpoint_profile.unwrap_or(if role == Role::Prison {
        Target::Prison
    } else {
        Target::UkCoreR4
    })
}

/// Makes `recipient`'s copy of `subject` (see the module docs).
pub fn copy_for(
    app: &App,
    subject: &Subject,
    recipient: &Route,
    request: &CopyRequest,
) -> RecipientCopy {
    let context = RecipientContext {
        ods: recipient.ods.clone(),
        role: recipient.role,
        relationships: recipient.relationships.clone(),
    };
    let agreements = app.sharing.agreements();
    let decision = decide(
        &DecisionRequest {
            sender: &subject.sender,
            recipient: &context,
            purpose: request.purpose,
            at: app.clock.now(),
            agreements: &agreements,
            consents: &subject.consents,
            break_glass_allowed: request.break_glass_allowed,
            is_pull: request.moment.is_pull(),
        },
        &subject.views,
    );
    let mut decision = decision;
    // A copy without its Composition is no document: where the Composition itself is withheld,
    // nothing is shared (never a shape error downstream).
    let composition_withheld = decision
        .resources
        .iter()
        .any(|r| r.entry == 0 && r.resource_type == "Composition" && !r.shared);
    if composition_withheld {
        for r in decision.resources.iter_mut().filter(|r| r.shared) {
            r.shared = false;
            r.basis = format!("withheld with the Composition it belongs to ({})", r.basis);
        }
    }
    let audit = |decision: &Decision, held: Option<String>| {
        AuditEvent::SharingDecided {
            actor: request.actor.clone(),
            nhs_number: subject.summary.nhs_number.as_str().to_string(),
            recipient: recipient.ods.to_string(),
            recipient_role: recipient.role.as_str().to_string(),
            moment: request.moment,
            document_id: subject.document_id.clone(),
            emergency: decision.emergency,
            explanation: crate::sharing::explanation(decision, &recipient.ods, request.purpose),
            held,
        }
        .into_draft()
    };
    let first_audit = audit(&decision, None);
    let (filtered, removals) = crate::policy::apply(&subject.document, &decision);
    let mut out = RecipientCopy {
        recipient: recipient.clone(),
        target: request.target,
        moment: request.moment,
        decision,
        removals,
        copy: None,
        losses: Vec::new(),
        translation_error: None,
        target_issues: Vec::new(),
        verdict: Verdict::Conforms,
        audit: first_audit,
    };
    if !out.shares_anything() {
        return out;
    }
    let mut filtered = filtered;
    if out.decision.emergency {
        mark_emergency(&mut filtered);
    }
    // The sender's entry index of each entry policy kept (for naming a safety element).
    let withheld: BTreeSet<usize> = out.decision.withheld().map(|r| r.entry).collect();
    let entries = subject
        .document
        .get("entry")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let kept: Vec<usize> = (0..entries).filter(|i| !withheld.contains(i)).collect();
    // The safety elements are read before translation: the translator must not be what
    // supplies or hides them.
    let safety = verdict(app, request.target, None, &[], &filtered, &kept);
    match app
        .translator
        .translate_owned(Source::Prison, request.target, filtered)
    {
        Ok(t) => {
            // Every moment, reads included: whatever hands out a copy runs the same check.
            out.target_issues =
                app.validator
                    .validate(&t.output, None, request.target.profile_set());
            out.losses = t.losses;
            out.verdict = merge(
                safety,
                verdict(
                    app,
                    request.target,
                    Some(&t.output),
                    &out.target_issues,
                    &json!({}),
                    &[],
                ),
            );
            out.copy = Some(t.output);
        }
        Err(e) => {
            out.translation_error = Some(e);
            out.verdict = safety;
        }
    }
    // A held copy is not handed out: its decision is recorded as a hold, not a disclosure.
    if out.verdict.is_held() {
        out.audit = audit(&out.decision, Some(out.verdict.hold_summary()));
    }
    out
}

/// The verdict of the safety elements and that of the target check, as one: held for the
/// reasons of both, else the target check's.
fn merge(safety: Verdict, target: Verdict) -> Verdict {
    match (safety, target) {
        (Verdict::Held { mut reasons }, Verdict::Held { reasons: more }) => {
            reasons.extend(more);
            Verdict::Held { reasons }
        }
        (held @ Verdict::Held { .. }, _) => held,
        (_, other) => other,
    }
}

/// Marks a break-glass copy with the ETREAT purpose in `meta.security`.
fn mark_emergency(copy: &mut Value) {
    let Some(obj) = copy.as_object_mut() else {
        return;
    };
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        let security = m.entry("security").or_insert_with(|| json!([]));
        if let Some(list) = security.as_array_mut() {
            list.push(json!({"system": crate::policy::ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"}));
        }
    }
}

/// The gateway itself, as the actor of deliveries.
pub fn gateway_actor() -> Actor {
    Actor {
        client_id: "throughcare".into(),
        ods: String::new(),
    }
}
