//! Sharing policy (DESIGN §7): data-sharing agreements, the patient's consent, custody
//! stripping and sensitivity labels, decided per resource with an explanation for each.
//!
//! The engine is pure: callers load agreements and consents, label the document's resources,
//! and get back a [`Decision`] that says, for every resource, whether it is shared and which
//! agreement clause or consent provision decided it. [`apply`] then produces the recipient's
//! copy from the lossless JSON tree.

pub mod agreement;
pub mod apply;
pub mod consent;
pub mod decision;
pub mod labels;

pub use agreement::{Agreement, AgreementStatus, PartySelector, Relationship};
pub use apply::{Removal, apply};
pub use consent::{ConsentDirective, ProvisionKind};
pub use decision::{Decision, DecisionRequest, Party, RecipientContext, ResourceDecision, decide};
pub use labels::{Classifier, DataClass, Label, ResourceView};

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

/// Purpose of use (v3-ActReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Purpose {
    /// Treatment.
    #[serde(rename = "TREAT")]
    Treat,
    /// Emergency treatment: break-glass, pull only.
    #[serde(rename = "ETREAT")]
    EmergencyTreat,
}

impl Purpose {
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::EmergencyTreat => "ETREAT",
        }
    }

    pub fn from_code(code: &str) -> Option<Purpose> {
        match code {
            "TREAT" => Some(Purpose::Treat),
            "ETREAT" => Some(Purpose::EmergencyTreat),
            _ => None,
        }
    }
}

/// v3-ActReason, the system of purpose-of-use codes.
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// v3-ActCode, the system of sensitivity labels.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
