//! Domain newtypes: parse, don't validate. An `NhsNumber` that exists has a valid check digit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// FHIR identifier systems and canonical URLs the gateway speaks.
pub mod systems {
    pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
    pub const ODS_ORGANISATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    pub const SNOMED: &str = "http://snomed.info/sct";
    pub const BASE: &str = "https://throughcare.example.org/fhir/";
    pub const PRISON_NUMBER: &str = "https://throughcare.example.org/fhir/Id/prison-number";
    pub const CUSTODY_EVENT: &str = "https://throughcare.example.org/fhir/CodeSystem/custody-event";
    pub const CUSTODY_LABEL: &str = "https://throughcare.example.org/fhir/CodeSystem/custody-label";
    pub const CUSTODY_EXTENSION_PREFIX: &str =
        "https://throughcare.example.org/fhir/StructureDefinition/custody-";
    /// SNOMED CT 373942005 |Discharge summary|.
    pub const DISCHARGE_SUMMARY: &str = "373942005";
}

/// A ten-digit NHS number whose Modulus 11 check digit is valid.
///
/// `Debug` does not print the number: it is patient-identifying and must not reach ordinary logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number is exactly ten digits with no spaces")]
    Format,
    #[error("the NHS number fails the Modulus 11 check")]
    CheckDigit,
}

impl NhsNumber {
    pub fn parse(value: &str) -> Result<NhsNumber, NhsNumberError> {
        if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NhsNumberError::Format);
        }
        let parsed = nhs_number::NHSNumber::from_str(value).map_err(|_| NhsNumberError::Format)?;
        if !parsed.validate_check_digit() {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(NhsNumber(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(***)")
    }
}

/// An ODS organisation code (e.g. `Y02307` for a prison healthcare unit, `A81001` for a GP).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

impl OdsCode {
    pub fn parse(value: &str) -> Result<OdsCode, String> {
        let ok = (3..=10).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(OdsCode(value.to_string()))
        } else {
            Err(format!(
                "{value:?} is not an ODS code (3 to 10 ASCII upper-case letters and digits, exactly as registered)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OdsCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OdsCode::parse(&value)
    }
}

impl From<OdsCode> for String {
    fn from(value: OdsCode) -> Self {
        value.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A NOMIS prison number, `A1234BC`.
#[derive(Clone, PartialEq, Eq)]
pub struct PrisonNumber(String);

impl PrisonNumber {
    pub fn parse(value: &str) -> Option<PrisonNumber> {
        let b = value.as_bytes();
        let ok = b.len() == 7
            && b[0].is_ascii_uppercase()
            && b[1..5].iter().all(u8::is_ascii_digit)
            && b[5..7].iter().all(u8::is_ascii_uppercase);
        ok.then(|| PrisonNumber(value.to_string()))
    }
}

impl fmt::Debug for PrisonNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrisonNumber(***)")
    }
}

/// What kind of party a client is; routes and policy are decided by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A prison healthcare unit.
    Prison,
    /// A community GP practice.
    Gp,
    /// An integrated care board or its shared care record.
    Icb,
    /// A community service: drug and alcohol, community mental health, liaison.
    Service,
    /// Information governance: reads and verifies the audit log.
    Auditor,
    /// Gateway operators.
    Admin,
    /// An organisation the directory does not know (a care-plan performer that is neither a
    /// registered client, nor an endpoint, nor on the prison register): the document's word is
    /// all there is, so it gets no grant by role or relationship, only what an agreement grants
    /// its ODS code. Never a client's role, an agreement party's or a consent actor's.
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Prison => "prison",
            Role::Gp => "gp",
            Role::Icb => "icb",
            Role::Service => "service",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Unknown => "unknown",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "prison" => Role::Prison,
            "gp" => Role::Gp,
            "icb" => Role::Icb,
            "service" => Role::Service,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            "unknown" => Role::Unknown,
            other => return Err(format!("unknown role {other:?}")),
        })
    }
}

/// The custody events a prison document announces (`CodeSystem/custody-event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustodyEvent {
    PreRelease,
    Release,
    CourtRelease,
    Transfer,
    Reception,
}

impl CustodyEvent {
    pub const ALL: [CustodyEvent; 5] = [
        CustodyEvent::PreRelease,
        CustodyEvent::Release,
        CustodyEvent::CourtRelease,
        CustodyEvent::Transfer,
        CustodyEvent::Reception,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CustodyEvent::PreRelease => "pre-release",
            CustodyEvent::Release => "release",
            CustodyEvent::CourtRelease => "court-release",
            CustodyEvent::Transfer => "transfer",
            CustodyEvent::Reception => "reception",
        }
    }

    pub fn from_code(code: &str) -> Option<CustodyEvent> {
        CustodyEvent::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// When a recipient's copy is made. It decides what the copy is for and how the decision is
/// audited: a copy made for a read or a delivery is a disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Moment {
    /// At intake, so the sender hears at once what each recipient will receive.
    IntakePreview,
    /// `$sharing-decision`: what a recipient would receive now, and why.
    Decision,
    /// A recipient reads (pull, `Bundle/{id}`, `$everything`, Patient, GP Connect).
    Read,
    /// A delivery worker pushes the copy.
    Delivery,
}

impl Moment {
    /// The name recorded in the audit log (`detail.context`).
    pub fn as_str(self) -> &'static str {
        match self {
            Moment::IntakePreview => "intake-preview",
            Moment::Decision => "sharing-decision",
            Moment::Read => "read",
            Moment::Delivery => "delivery",
        }
    }

    /// A copy made at this moment leaves the gateway.
    pub fn is_disclosure(self) -> bool {
        matches!(self, Moment::Read | Moment::Delivery)
    }

    /// The recipient asked for it (break-glass applies to pulls only).
    pub fn is_pull(self) -> bool {
        matches!(self, Moment::Read)
    }
}

/// A delivery's FHIR Task status (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Requested,
    InProgress,
    Completed,
    Failed,
    Rejected,
    /// A correction replaced the document before this copy went out.
    Cancelled,
    /// The copy must not go as it stands (clinical content or a safety element): held until a
    /// correcting document replaces it or an operator releases it.
    OnHold,
}

/// Why a delivery is where it is: the Task's business status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusinessStatus {
    /// Due to be pushed.
    Scheduled,
    /// The recipient has no push endpoint: the copy waits for its pull.
    AwaitingPull,
    /// An attempt failed in a way worth retrying; the next is scheduled.
    Retrying,
    /// Sent; the transport waits for the recipient's acknowledgement.
    AwaitingAcknowledgement,
    Delivered,
    /// Retries exhausted: visible to operators and replayable.
    DeadLetter,
    /// No agreement covers the recipient.
    NoAgreement,
    /// Policy withholds everything from the recipient.
    NothingToShare,
    /// A failure no retry will mend.
    PermanentError,
    /// A correcting document replaced the document before this copy went out.
    Replaced,
    /// Held: the copy fails its profiles in clinical content, or a medicine lacks a safety
    /// element.
    Held,
}

macro_rules! string_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!(concat!("{:?} is not a ", $what), other)),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(TaskStatus, "Task status", {
    Requested => "requested",
    InProgress => "in-progress",
    Completed => "completed",
    Failed => "failed",
    Rejected => "rejected",
    Cancelled => "cancelled",
    OnHold => "on-hold",
});

string_enum!(BusinessStatus, "delivery business status", {
    Scheduled => "scheduled",
    AwaitingPull => "awaiting-pull",
    Retrying => "retrying",
    AwaitingAcknowledgement => "awaiting-acknowledgement",
    Delivered => "delivered",
    DeadLetter => "dead-letter",
    NoAgreement => "no-agreement",
    NothingToShare => "nothing-to-share",
    PermanentError => "permanent-error",
    Replaced => "replaced",
    Held => "held",
});

/// Who did it, as established by authentication (never by the request body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub client_id: String,
    pub ods: String,
}

/// Digit runs that may be an NHS number: ten or more digits, or three, three and four digits
/// separated by a space, a hyphen, `+` or `%20` (a form- or percent-encoded space).
static NHS_NUMBER_LIKE: std::sync::LazyLock<regex_lite::Regex> = std::sync::LazyLock::new(|| {
    regex_lite::Regex::new(r"[0-9]{10,}|[0-9]{3}(?: |-|\+|%20)[0-9]{3}(?: |-|\+|%20)[0-9]{4}")
        .unwrap_or_else(|e| unreachable!("the NHS number pattern compiles: {e}"))
});

/// `text` (a request path or query, a log line) with every digit of anything that may be an NHS
/// number replaced by `*`: `/fhir/Patient/9990000018` becomes `/fhir/Patient/**********`.
/// Log lines go through this; masking a longer number too is the safe failure.
pub fn mask_nhs_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    NHS_NUMBER_LIKE.replace_all(text, |caps: &regex_lite::Captures<'_>| {
        // Digits become `*`; separators, `%20` included, stay.
        let mut out = String::with_capacity(caps[0].len());
        let mut rest = &caps[0];
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("%20") {
                out.push_str("%20");
                rest = after;
            } else {
                out.push(if c.is_ascii_digit() { '*' } else { c });
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_masked_in_paths_and_queries() {
        for (text, masked) in [
            ("/fhir/Patient/9990000018", "/fhir/Patient/**********"),
            (
                "/fhir/Patient/9990000018/$everything",
                "/fhir/Patient/**********/$everything",
            ),
            (
                "identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018",
                "identifier=https://fhir.nhs.uk/Id/nhs-number|**********",
            ),
            ("patient=999%20000%200018", "patient=***%20***%20****"),
            ("patient=999+000+0018", "patient=***+***+****"),
            (
                "999-000-0018 and 999 000 0018",
                "***-***-**** and *** *** ****",
            ),
            ("a99900000180b", "a***********b"),
        ] {
            assert_eq!(mask_nhs_numbers(text), masked, "{text}");
        }
        // What is not an NHS number is kept.
        for kept in [
            "/fhir/Bundle/6f1c2a9e-0b7d-4c1e-9a55-2f4e8c3d1b70",
            "/admin/deliveries/42/retry",
            "/fhir/Task?status=requested&_count=100",
            "2026-12-04",
        ] {
            assert_eq!(mask_nhs_numbers(kept), kept);
        }
    }

    #[test]
    fn nhs_numbers_in_the_test_range_with_valid_check_digits_parse() {
        for n in ["9990000018", "9991000003", "9990000026"] {
            assert!(NhsNumber::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn nhs_numbers_failing_modulus_11_are_refused() {
        // Negative cases named in the corpus notes.
        for n in ["9432003812", "1234567890", "9000000015"] {
            assert_eq!(NhsNumber::parse(n), Err(NhsNumberError::CheckDigit), "{n}");
        }
        assert_eq!(
            NhsNumber::parse("999 000 0018"),
            Err(NhsNumberError::Format)
        );
        assert_eq!(NhsNumber::parse("99900000"), Err(NhsNumberError::Format));
        assert_eq!(NhsNumber::parse("99900000１8"), Err(NhsNumberError::Format));
    }

    #[test]
    fn nhs_number_debug_hides_the_digits() {
        let n = NhsNumber::parse("9990000018").unwrap();
        assert!(!format!("{n:?}").contains("999"));
    }

    #[test]
    fn prison_numbers_follow_the_nomis_format() {
        assert!(PrisonNumber::parse("A1234BC").is_some());
        for bad in ["a1234BC", "A123BC", "A1234B1", "AA234BC", "A1234BCD", ""] {
            assert!(PrisonNumber::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ods_codes_are_upper_case_alphanumerics() {
        assert!(OdsCode::parse("Y02307").is_ok());
        assert!(OdsCode::parse("y02307").is_err());
        assert!(OdsCode::parse("Y0").is_err());
    }

    #[test]
    fn ods_codes_with_look_alike_characters_or_spaces_are_refused() {
        // Cyrillic А (U+0410) for Latin A, full-width digits, a trailing space.
        for bad in [
            "\u{0410}99001",
            "A99\u{FF10}01",
            "A99001 ",
            " A99001",
            "a99001",
        ] {
            assert!(OdsCode::parse(bad).is_err(), "{bad:?}");
        }
    }
}
