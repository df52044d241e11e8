//! Data-sharing agreements (DESIGN §7). Defined in files (one per agreement), versioned and
//! never edited in place: a change is a new version, and every decision names the version used.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::Date;

use super::labels::{DataClass, Label};

time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");
use super::Purpose;
use crate::domain::{OdsCode, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgreementStatus {
    Draft,
    Active,
    Retired,
}

/// How a recipient relates to the patient or the document, as routing establishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relationship {
    /// The patient's registered GP practice (`Patient.generalPractitioner`).
    RegisteredGp,
    /// Named as a performer in the care plan.
    CarePlanPerformer,
    /// The receiving prison of a transfer.
    ReceivingPrison,
    /// The ICB for the release address of a person with no GP.
    ReleaseAreaIcb,
}

/// Who a party to an agreement is: a named organisation, any organisation of a role, or an
/// organisation in a given relationship to the patient. Exactly one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods: Option<OdsCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Relationship>,
}

impl PartySelector {
    pub fn matches(
        &self,
        ods: &OdsCode,
        role: Role,
        relationships: &BTreeSet<Relationship>,
    ) -> bool {
        let set = [
            self.ods.is_some(),
            self.role.is_some(),
            self.relationship.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            return false;
        }
        self.ods.as_ref().is_some_and(|o| o == ods)
            || self.role.is_some_and(|r| r == role)
            || self
                .relationship
                .is_some_and(|r| relationships.contains(&r))
    }

    pub fn describe(&self) -> String {
        match (&self.ods, self.role, self.relationship) {
            (Some(o), _, _) => format!("organisation {o}"),
            (_, Some(r), _) => format!("any {} organisation", r.as_str()),
            (_, _, Some(r)) => format!("{r:?}"),
            _ => "nobody".into(),
        }
    }
}

/// A data-sharing agreement. Field names are those of the agreement files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    pub id: String,
    /// Increases with every change; a decision records the version it used.
    pub version: u32,
    pub title: String,
    pub status: AgreementStatus,
    /// Who may send under it.
    pub senders: Vec<PartySelector>,
    /// Who may receive under it.
    pub recipients: Vec<PartySelector>,
    /// e.g. `prison-to-community`, `prison-to-prison`.
    pub direction: String,
    pub purposes: Vec<Purpose>,
    /// Clinical classes that may be shared.
    pub data_classes: BTreeSet<DataClass>,
    /// Sensitive labels that may be shared at all (subject to `consent_required`).
    #[serde(default)]
    pub sensitive_permitted: BTreeSet<Label>,
    /// Labels shared only under an explicit permit in the patient's consent.
    #[serde(default)]
    pub consent_required: BTreeSet<Label>,
    /// Whether custody-only content may pass (prison-to-prison only).
    #[serde(default)]
    pub custody_data: bool,
    /// Security labels beyond the sensitivity classes that this agreement lets through:
    /// confidentiality `R` or `V`, or any other `system|code`. Without a name here, a resource
    /// carrying such a label is withheld (deny by default).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub permitted_security_labels: BTreeSet<String>,
    pub legal_basis: String,
    #[serde(with = "iso_date")]
    pub valid_from: Date,
    #[serde(default, with = "iso_date::option")]
    pub valid_to: Option<Date>,
    #[serde(default, with = "iso_date::option")]
    pub review_date: Option<Date>,
    pub ig_contact: String,
}

/// Why an agreement does not cover a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCovered {
    NotActive,
    NotYetValid,
    Expired,
    Sender,
    Recipient,
    Purpose,
}

impl Agreement {
    /// Checks the agreement's own consistency (used when files are loaded or replaced).
    pub fn check(&self) -> Result<(), String> {
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("id must be letters, digits and hyphens".into());
        }
        if self.senders.is_empty() || self.recipients.is_empty() || self.purposes.is_empty() {
            return Err("senders, recipients and purposes must not be empty".into());
        }
        for p in self.senders.iter().chain(&self.recipients) {
            let n = [p.ods.is_some(), p.role.is_some(), p.relationship.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if n != 1 {
                return Err("each party names exactly one of ods, role or relationship".into());
            }
            if p.role == Some(Role::Unknown) {
                return Err(
                    "a party cannot be 'any unknown organisation': name its ODS code instead"
                        .into(),
                );
            }
        }
        if let Some(to) = self.valid_to
            && to < self.valid_from
        {
            return Err("valid_to is before valid_from".into());
        }
        if let Some(l) = self
            .consent_required
            .iter()
            .find(|l| !self.sensitive_permitted.contains(l))
        {
            return Err(format!(
                "{} needs consent but is not in sensitive_permitted",
                l.code()
            ));
        }
        if self.sensitive_permitted.contains(&Label::CustodyOnly) {
            return Err("custody-only is governed by custody_data, not sensitive_permitted".into());
        }
        Ok(())
    }

    /// Whether this agreement covers the exchange, or why not.
    pub fn covers(
        &self,
        sender: (&OdsCode, Role),
        recipient: (&OdsCode, Role, &BTreeSet<Relationship>),
        purpose: Purpose,
        on: Date,
    ) -> Result<(), NotCovered> {
        if self.status != AgreementStatus::Active {
            return Err(NotCovered::NotActive);
        }
        if on < self.valid_from {
            return Err(NotCovered::NotYetValid);
        }
        if self.valid_to.is_some_and(|to| on > to) {
            return Err(NotCovered::Expired);
        }
        let none = BTreeSet::new();
        if !self
            .senders
            .iter()
            .any(|p| p.matches(sender.0, sender.1, &none))
        {
            return Err(NotCovered::Sender);
        }
        if !self
            .recipients
            .iter()
            .any(|p| p.matches(recipient.0, recipient.1, recipient.2))
        {
            return Err(NotCovered::Recipient);
        }
        // Emergency access rides on an agreement for treatment.
        let purpose_ok = self.purposes.contains(&purpose)
            || (purpose == Purpose::EmergencyTreat && self.purposes.contains(&Purpose::Treat));
        if !purpose_ok {
            return Err(NotCovered::Purpose);
        }
        Ok(())
    }

    pub fn clause(&self) -> String {
        format!("agreement {} v{}", self.id, self.version)
    }

    /// Whether the agreement names this security code: `R` or `V` for confidentiality,
    /// `system|code` for any other.
    pub fn names_security_label(&self, label: &str) -> bool {
        self.permitted_security_labels.contains(label)
    }
}

/// Loads every `*.toml` agreement file in `dir`, checking each.
pub fn load_dir(dir: &std::path::Path) -> anyhow::Result<Vec<Agreement>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        use figment::providers::Format as _;
        let agreement: Agreement = figment::Figment::from(figment::providers::Toml::string(&text))
            .extract()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        agreement
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        out.push(agreement);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreement(recipients: Vec<PartySelector>) -> Agreement {
        Agreement {
            id: "test".into(),
            version: 1,
            title: "test".into(),
            status: AgreementStatus::Active,
            senders: vec![PartySelector {
                ods: None,
                role: Some(Role::Prison),
                relationship: None,
            }],
            recipients,
            direction: "prison-to-community".into(),
            purposes: vec![Purpose::Treat],
            data_classes: BTreeSet::new(),
            sensitive_permitted: BTreeSet::new(),
            consent_required: BTreeSet::new(),
            custody_data: false,
            permitted_security_labels: BTreeSet::new(),
            legal_basis: "test".into(),
            valid_from: time::macros::date!(2026 - 01 - 01),
            valid_to: None,
            review_date: None,
            ig_contact: "ig@example.org".into(),
        }
    }

    fn by_role(role: Role) -> PartySelector {
        PartySelector {
            ods: None,
            role: Some(role),
            relationship: None,
        }
    }

    #[test]
    fn an_organisation_unknown_to_the_directory_is_covered_only_by_its_ods_code() {
        let prison = OdsCode::parse("Y02307").unwrap();
        let unknown = OdsCode::parse("X99077").unwrap();
        let none = BTreeSet::new();
        let on = time::macros::date!(2026 - 11 - 30);
        let covers = |a: &Agreement| {
            a.covers(
                (&prison, Role::Prison),
                (&unknown, Role::Unknown, &none),
                Purpose::Treat,
                on,
            )
        };
        // No role-based grant: "any service" does not cover it.
        assert_eq!(
            covers(&agreement(vec![by_role(Role::Service)])),
            Err(NotCovered::Recipient)
        );
        // An agreement naming its ODS code does.
        let named = agreement(vec![PartySelector {
            ods: Some(unknown.clone()),
            role: None,
            relationship: None,
        }]);
        assert_eq!(covers(&named), Ok(()));
        // And no agreement may name "any unknown organisation".
        assert!(agreement(vec![by_role(Role::Unknown)]).check().is_err());
    }
}
