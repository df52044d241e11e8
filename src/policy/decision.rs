//! The decision engine: DESIGN §7 rules 1–5, deny by default, with an explanation for every
//! resource.

use std::collections::BTreeSet;

use serde::Serialize;
use time::OffsetDateTime;

use super::Purpose;
use super::agreement::{Agreement, NotCovered, Relationship};
use super::consent::{ConsentContext, ConsentDirective, find_denial, find_permit};
use super::labels::{DataClass, Label, ResourceView};
use crate::domain::{OdsCode, Role};

/// An organisation taking part in an exchange.
#[derive(Debug, Clone)]
pub struct Party {
    pub ods: OdsCode,
    pub role: Role,
}

/// The recipient, with how it relates to this patient and document.
#[derive(Debug, Clone)]
pub struct RecipientContext {
    pub ods: OdsCode,
    pub role: Role,
    pub relationships: BTreeSet<Relationship>,
}

/// Everything a decision depends on.
pub struct DecisionRequest<'a> {
    pub sender: &'a Party,
    pub recipient: &'a RecipientContext,
    pub purpose: Purpose,
    pub at: OffsetDateTime,
    pub agreements: &'a [Agreement],
    /// The patient's consents (inactive ones are kept: they are simply not applied).
    pub consents: &'a [ConsentDirective],
    /// Whether the caller's registration allows break-glass. `ETREAT` without it is refused.
    pub break_glass_allowed: bool,
    /// Whether this is a pull (break-glass is pull only).
    pub is_pull: bool,
}

/// The verdict on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceDecision {
    pub entry: usize,
    pub reference: String,
    pub resource_type: String,
    pub shared: bool,
    /// DESIGN §7 rule that decided (1–5), or 0 for "shared under the agreement".
    pub rule: u8,
    /// The agreement clause or consent provision that decided it, in words.
    pub basis: String,
    /// Labels the resource carries (declared, derived from codes or from free-text terms).
    pub labels: Vec<String>,
    /// The agreement (`id vN`) under which it is shared, or whose rule withheld it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// Free-text elements removed from it (paths relative to the resource), for a resource the
    /// copy needs whose text names a class the recipient may not see.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

/// The verdict on a whole exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `id` and `version` of the first agreement that covers the exchange, if any did.
    pub agreement: Option<(String, u32)>,
    /// Every agreement that covers the exchange (a resource is shared when any of them, with
    /// its own consent rules, allows it).
    pub agreements: Vec<(String, u32)>,
    /// Whether custody-only content may pass (a prison recipient under a custody agreement).
    pub custody_allowed: bool,
    /// Whether break-glass overrode the patient's dissent for at least one resource.
    pub emergency: bool,
    /// Why nothing is shared, when no agreement covers the exchange.
    pub refusal: Option<String>,
    pub resources: Vec<ResourceDecision>,
}

impl Decision {
    pub fn shared(&self) -> impl Iterator<Item = &ResourceDecision> {
        self.resources.iter().filter(|r| r.shared)
    }

    pub fn withheld(&self) -> impl Iterator<Item = &ResourceDecision> {
        self.resources.iter().filter(|r| !r.shared)
    }
}

fn not_covered_reason(a: &Agreement, why: &NotCovered) -> String {
    let what = match why {
        NotCovered::NotActive => "is not active",
        NotCovered::NotYetValid => "is not yet valid",
        NotCovered::Expired => "has expired",
        NotCovered::Sender => "does not cover the sender",
        NotCovered::Recipient => "does not cover the recipient",
        NotCovered::Purpose => "does not cover the purpose",
    };
    format!("{} {what}", a.clause())
}

/// Decides what `request.recipient` may receive of `resources`.
pub fn decide(request: &DecisionRequest<'_>, resources: &[ResourceView]) -> Decision {
    let on = request.at.date();
    let recipient = request.recipient;
    let emergency_requested = request.purpose == Purpose::EmergencyTreat;
    let withhold_all = |rule: u8, reason: String| Decision {
        agreement: None,
        agreements: Vec::new(),
        custody_allowed: false,
        emergency: false,
        refusal: Some(reason.clone()),
        resources: resources
            .iter()
            .map(|r| ResourceDecision {
                entry: r.entry,
                reference: r.reference.clone(),
                resource_type: r.resource_type.clone(),
                shared: false,
                rule,
                basis: reason.clone(),
                labels: r.labels.iter().map(|l| l.code().to_string()).collect(),
                agreement: None,
                redacted: Vec::new(),
            })
            .collect(),
    };

    if emergency_requested && !(request.break_glass_allowed && request.is_pull) {
        let why = if request.is_pull {
            "emergency access (ETREAT) is not allowed for this client"
        } else {
            "emergency access (ETREAT) is for pulls only"
        };
        return withhold_all(5, why.to_string());
    }

    // Rule 1: an active agreement must cover sender, recipient, purpose and time. Every
    // agreement that covers the exchange is used: an organisation can be both the registered GP
    // and a care-plan performer.
    let mut reasons = Vec::new();
    let covering: Vec<&Agreement> = request
        .agreements
        .iter()
        .filter(|a| {
            match a.covers(
                (&request.sender.ods, request.sender.role),
                (&recipient.ods, recipient.role, &recipient.relationships),
                request.purpose,
                on,
            ) {
                Ok(()) => true,
                Err(why) => {
                    reasons.push(not_covered_reason(a, &why));
                    false
                }
            }
        })
        .collect();
    let Some(first) = covering.first() else {
        let detail = if reasons.is_empty() {
            "no agreements are defined".to_string()
        } else {
            reasons.join("; ")
        };
        return withhold_all(
            1,
            format!("no active agreement covers this exchange ({detail})"),
        );
    };
    let custody_allowed = recipient.role == Role::Prison && covering.iter().any(|a| a.custody_data);
    let cx = ConsentContext {
        recipient_ods: &recipient.ods,
        recipient_role: recipient.role,
        purpose: request.purpose,
        at: request.at,
    };
    let mut out: Vec<ResourceDecision> = resources
        .iter()
        .map(|r| {
            // Shared normally under any agreement beats shared by break-glass, which beats
            // withheld; a withheld resource is explained by the first covering agreement.
            let verdicts: Vec<ResourceDecision> = covering
                .iter()
                .map(|a| judge(a, r, request, &cx, custody_allowed))
                .collect();
            verdicts
                .iter()
                .find(|v| v.shared && v.rule == 0)
                .or_else(|| verdicts.iter().find(|v| v.shared))
                .unwrap_or(&verdicts[0])
                .clone()
        })
        .collect();
    imply_core(&mut out, resources);
    Decision {
        agreement: Some((first.id.clone(), first.version)),
        agreements: covering.iter().map(|a| (a.id.clone(), a.version)).collect(),
        custody_allowed,
        emergency: out.iter().any(|r| r.shared && r.rule == 5),
        refusal: None,
        resources: out,
    }
}

/// A record shared is shared with whose it is: when anything outside the core class reaches
/// the recipient, the core resources (the Composition, the Patient, the organisations and
/// practitioners) withheld only by the patient's consent (rule 4) go too. A consent that denies
/// everything but permits one class thus gives that class with its frame, never a fragment.
fn imply_core(out: &mut [ResourceDecision], resources: &[ResourceView]) {
    let anything_else = out
        .iter()
        .zip(resources)
        .any(|(d, r)| d.shared && r.class != DataClass::Core);
    if !anything_else {
        return;
    }
    for (d, r) in out.iter_mut().zip(resources) {
        if !d.shared && d.rule == 4 && r.class == DataClass::Core {
            d.shared = true;
            d.rule = 0;
            d.basis = format!(
                "shared as the frame of the content the patient's consent permits (the consent alone withheld it: {})",
                d.basis
            );
        }
    }
}

/// Whether a sensitive label may reach this recipient under `agreement`: permitted by the
/// agreement and, where it asks for consent, explicitly permitted by the patient (or, for a
/// pull with break-glass, overridden). Used for the free text of the core class.
fn label_allowed(
    agreement: &Agreement,
    label: Label,
    r: &ResourceView,
    request: &DecisionRequest<'_>,
    cx: &ConsentContext<'_>,
    custody_allowed: bool,
) -> bool {
    if label == Label::CustodyOnly {
        return custody_allowed;
    }
    agreement.sensitive_permitted.contains(&label)
        && (!agreement.consent_required.contains(&label)
            || find_permit(request.consents, label, r, cx).is_some()
            || request.purpose == Purpose::EmergencyTreat)
}

/// The verdict on one resource under one covering agreement (rules 2–5).
fn judge(
    agreement: &Agreement,
    r: &ResourceView,
    request: &DecisionRequest<'_>,
    cx: &ConsentContext<'_>,
    custody_allowed: bool,
) -> ResourceDecision {
    let clause = agreement.clause();
    let emergency_requested = request.purpose == Purpose::EmergencyTreat;
    let verdict = |shared: bool, rule: u8, basis: String| ResourceDecision {
        entry: r.entry,
        reference: r.reference.clone(),
        resource_type: r.resource_type.clone(),
        shared,
        rule,
        basis,
        labels: r.labels.iter().map(|l| l.code().to_string()).collect(),
        agreement: Some(clause.clone()),
        redacted: Vec::new(),
    };
    // Where a label came from free text, the explanation says which term.
    let because = |l: Label| match r.term_for(l) {
        Some(m) if !r.declared.contains(&l) => {
            format!(" (the term '{}' in {})", m.term, m.path)
        }
        _ => String::new(),
    };
    // Rule 2: custody-only content never reaches a health recipient that is not a prison.
    if r.custody_only() && !custody_allowed {
        return verdict(
            false,
            2,
            "custody-only content is never shared with a health recipient".into(),
        );
    }
    // Deny by default: a security code the agreement does not name withholds the resource.
    let unnamed: Vec<&String> = r
        .unknown_labels
        .iter()
        .filter(|u| !agreement.names_security_label(u))
        .collect();
    if !unnamed.is_empty() {
        let list: Vec<&str> = unnamed.iter().map(|u| u.as_str()).collect();
        return verdict(
            false,
            3,
            format!(
                "unknown security label {}, which {clause} does not name",
                list.join(", ")
            ),
        );
    }
    // Restricted confidentiality reaches only prisons, unless the agreement names the code.
    if request.recipient.role != Role::Prison
        && let Some(c) = r
            .restricted
            .iter()
            .find(|c| !agreement.names_security_label(c))
    {
        return verdict(
            false,
            3,
            format!("confidentiality {c} (restricted) is withheld; {clause} does not name it"),
        );
    }
    // Rule 3: classes outside the agreement are withheld.
    if !agreement.data_classes.contains(&r.class) {
        return verdict(
            false,
            3,
            format!("{clause} does not include the class '{}'", r.class.as_str()),
        );
    }
    if let Some(l) = r
        .sensitive()
        .find(|l| !agreement.sensitive_permitted.contains(l))
    {
        return verdict(
            false,
            3,
            format!(
                "{clause} does not permit {} content{}",
                l.code(),
                because(l)
            ),
        );
    }
    // The frame every copy needs keeps its place; free text naming a class the recipient may
    // not see is removed from it instead.
    let redacted: Vec<String> = r
        .term_matches
        .iter()
        .filter(|m| {
            r.class == DataClass::Core
                && !label_allowed(agreement, m.label, r, request, cx, custody_allowed)
        })
        .map(|m| m.path.clone())
        .collect();
    let redaction_note = if redacted.is_empty() {
        String::new()
    } else {
        let terms: Vec<String> = r
            .term_matches
            .iter()
            .filter(|m| redacted.contains(&m.path))
            .map(|m| format!("{} ('{}' in {})", m.label.code(), m.term, m.path))
            .collect();
        format!("; free text removed: {}", terms.join(", "))
    };
    // Rule 4: the patient's consent. Rule 5: ETREAT overrides dissent (not rules 1–3).
    let denial = find_denial(request.consents, r, cx);
    let missing: Vec<Label> = r
        .sensitive()
        .filter(|l| agreement.consent_required.contains(l))
        .filter(|l| find_permit(request.consents, *l, r, cx).is_none())
        .collect();
    if denial.is_none() && missing.is_empty() {
        let permits: Vec<String> = r
            .sensitive()
            .filter(|l| agreement.consent_required.contains(l))
            .filter_map(|l| {
                find_permit(request.consents, l, r, cx)
                    .map(|p| format!("{} permitted by {p}", l.code()))
            })
            .collect();
        let basis = if permits.is_empty() {
            format!("{clause} permits the class '{}'", r.class.as_str())
        } else {
            format!(
                "{clause} permits the class '{}'; {}",
                r.class.as_str(),
                permits.join("; ")
            )
        };
        let mut v = verdict(true, 0, format!("{basis}{redaction_note}"));
        v.redacted = redacted;
        return v;
    }
    let why = match (&denial, missing.first()) {
        (Some(d), _) => format!("the patient's consent denies it ({d})"),
        (None, Some(l)) => format!(
            "{clause} shares {} content only with the patient's explicit consent, and there is none{}",
            l.code(),
            because(*l)
        ),
        (None, None) => String::new(),
    };
    if emergency_requested {
        let mut v = verdict(
            true,
            5,
            format!("EMERGENCY ACCESS (ETREAT) overrides: {why}{redaction_note}"),
        );
        v.redacted = redacted;
        v
    } else {
        verdict(false, 4, why)
    }
}
