//! The decision engine: DESIGN §7 rules 1–5, deny by default, with an explanation for every
//! resource.

use std::collections::BTreeSet;

use serde::Serialize;
use time::OffsetDateTime;

use super::Purpose;
use super::agreement::{Agreement, NotCovered, Relationship};
use super::consent::{ConsentContext, ConsentDirective, find_denial, find_permit};
use super::labels::{Label, ResourceView};
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
    /// Labels the resource carries (declared or derived from codes).
    pub labels: Vec<String>,
}

/// The verdict on a whole exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `id` and `version` of the agreement used, if any covered the exchange.
    pub agreement: Option<(String, u32)>,
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

    // Rule 1: an active agreement must cover sender, recipient, purpose and time.
    let mut reasons = Vec::new();
    let agreement = request.agreements.iter().find(|a| {
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
    });
    let Some(agreement) = agreement else {
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
    let clause = agreement.clause();
    let custody_allowed = agreement.custody_data && recipient.role == Role::Prison;
    let cx = ConsentContext {
        recipient_ods: &recipient.ods,
        recipient_role: recipient.role,
        purpose: request.purpose,
        at: request.at,
    };

    let mut emergency = false;
    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        let labels: Vec<String> = r.labels.iter().map(|l| l.code().to_string()).collect();
        let verdict = |shared: bool, rule: u8, basis: String| ResourceDecision {
            entry: r.entry,
            reference: r.reference.clone(),
            resource_type: r.resource_type.clone(),
            shared,
            rule,
            basis,
            labels: labels.clone(),
        };
        // Rule 2: custody-only content never reaches a health recipient that is not a prison.
        if r.custody_only() && !custody_allowed {
            out.push(verdict(
                false,
                2,
                "custody-only content is never shared with a health recipient".into(),
            ));
            continue;
        }
        // Deny by default: a security code we do not understand withholds the resource.
        if !r.unknown_labels.is_empty() {
            out.push(verdict(
                false,
                3,
                format!("unknown security label {}", r.unknown_labels.join(", ")),
            ));
            continue;
        }
        // Rule 3: classes outside the agreement are withheld.
        if !agreement.data_classes.contains(&r.class) {
            out.push(verdict(
                false,
                3,
                format!("{clause} does not include the class '{}'", r.class.as_str()),
            ));
            continue;
        }
        if let Some(l) = r
            .sensitive()
            .find(|l| !agreement.sensitive_permitted.contains(l))
        {
            out.push(verdict(
                false,
                3,
                format!("{clause} does not permit {} content", l.code()),
            ));
            continue;
        }
        // Rule 4: the patient's consent. Rule 5: ETREAT overrides dissent (not rules 1–3).
        let denial = find_denial(request.consents, r, &cx);
        let missing: Vec<Label> = r
            .sensitive()
            .filter(|l| agreement.consent_required.contains(l))
            .filter(|l| find_permit(request.consents, *l, r, &cx).is_none())
            .collect();
        if denial.is_none() && missing.is_empty() {
            let permits: Vec<String> = r
                .sensitive()
                .filter(|l| agreement.consent_required.contains(l))
                .filter_map(|l| {
                    find_permit(request.consents, l, r, &cx)
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
            out.push(verdict(true, 0, basis));
            continue;
        }
        let why = match (&denial, missing.first()) {
            (Some(d), _) => format!("the patient's consent denies it ({d})"),
            (None, Some(l)) => format!(
                "{clause} shares {} content only with the patient's explicit consent, and there is none",
                l.code()
            ),
            (None, None) => String::new(),
        };
        if emergency_requested {
            emergency = true;
            out.push(verdict(
                true,
                5,
                format!("EMERGENCY ACCESS (ETREAT) overrides: {why}"),
            ));
        } else {
            out.push(verdict(false, 4, why));
        }
    }
    Decision {
        agreement: Some((agreement.id.clone(), agreement.version)),
        custody_allowed,
        emergency,
        refusal: None,
        resources: out,
    }
}
