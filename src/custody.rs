//! Who holds the patient (DESIGN §7, "consent belongs to the prisons that hold the patient"):
//! the prisons that have sent or received the patient's documents, and the one that holds them
//! now. The patient's current prison is the author of their latest accepted custody document,
//! or, when that document is a transfer, its receiving prison (as routing established it from
//! the prison register at intake).
//!
//! Only the current prison records a Consent that permits and asks `$sharing-decision` in full;
//! any prison that has held the patient records a denial or a withdrawal and reads the patient's
//! Consents; nobody else does.

use std::collections::BTreeSet;

use crate::app::App;
use crate::domain::{CustodyEvent, OdsCode};
use crate::store::{CustodyRecord, StoreError};

/// The prisons that hold or have held a patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Custody {
    /// The prison that holds the patient now (none when no document about them was accepted).
    pub current: Option<OdsCode>,
    /// Every prison that has sent or received the patient's documents (the current one too).
    pub holders: BTreeSet<OdsCode>,
}

impl Custody {
    /// Custody from the patient's accepted documents, newest first.
    pub fn from_records(records: &[CustodyRecord]) -> Custody {
        let parse = |s: &str| OdsCode::parse(s).ok();
        let mut holders = BTreeSet::new();
        for r in records {
            holders.extend(parse(&r.sender_ods));
            holders.extend(r.receiving_prison_ods.as_deref().and_then(parse));
        }
        let current = records.first().and_then(|latest| {
            let transfer =
                CustodyEvent::from_code(&latest.event_code) == Some(CustodyEvent::Transfer);
            match (transfer, latest.receiving_prison_ods.as_deref()) {
                (true, Some(receiving)) => parse(receiving),
                _ => parse(&latest.sender_ods),
            }
        });
        Custody { current, holders }
    }

    /// `ods` holds the patient now.
    pub fn is_current(&self, ods: &OdsCode) -> bool {
        self.current.as_ref() == Some(ods)
    }

    /// `ods` has sent or received the patient's documents.
    pub fn has_held(&self, ods: &OdsCode) -> bool {
        self.holders.contains(ods)
    }
}

/// The custody of the patient with NHS number `nhs_number`, read from the store.
pub async fn of(app: &App, nhs_number: &str) -> Result<Custody, StoreError> {
    let records = app.store.custody_records(nhs_number).await?;
    Ok(Custody::from_records(&records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sender: &str, event: &str, receiving: Option<&str>) -> CustodyRecord {
        CustodyRecord {
            sender_ods: sender.into(),
            event_code: event.into(),
            receiving_prison_ods: receiving.map(str::to_string),
            received_at: String::new(),
        }
    }

    fn ods(s: &str) -> OdsCode {
        OdsCode::parse(s).unwrap()
    }

    #[test]
    fn the_current_prison_is_the_latest_author_or_the_latest_transfers_receiving_prison() {
        assert_eq!(Custody::from_records(&[]), Custody::default());

        let released = Custody::from_records(&[record("Y02307", "release", None)]);
        assert!(released.is_current(&ods("Y02307")));

        // Newest first: Bristol transferred the patient to Eastwood Park.
        let transferred = Custody::from_records(&[
            record("Y02307", "transfer", Some("Y03193")),
            record("Y02307", "reception", None),
        ]);
        assert!(transferred.is_current(&ods("Y03193")));
        assert!(!transferred.is_current(&ods("Y02307")));
        assert!(transferred.has_held(&ods("Y02307")));
        assert!(transferred.has_held(&ods("Y03193")));
        assert!(!transferred.has_held(&ods("Y03194")));

        // Eastwood Park then reports a release: it is the latest author.
        let then = Custody::from_records(&[
            record("Y03193", "pre-release", None),
            record("Y02307", "transfer", Some("Y03193")),
        ]);
        assert!(then.is_current(&ods("Y03193")));

        // A transfer with no receiving prison recorded (accepted before it was kept) leaves the
        // patient with its sender.
        let legacy = Custody::from_records(&[record("Y02307", "transfer", None)]);
        assert!(legacy.is_current(&ods("Y02307")));
    }
}
