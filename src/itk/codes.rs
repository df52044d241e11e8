//! ITK-ResponseCodes-1 (v1.5.0, `https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1`), as
//! shipped in `packages/itk3.stu3`: every code with its display, and the severity of each.
//!
//! The CodeSystem defines no severity property, so the severity comes from the ITK3 Messaging
//! Distribution specification (corpus `itk3/README.md` §2): `20013` "Success", `30001` and
//! `30004` are the positive codes of a Transfer of Care exchange (issue severity
//! `information`); every other 10xxx, 20xxx and 30001-30004 code is negative (fatal, no further
//! response follows). Codes 30005-30025 belong to other payloads (referral outcomes, GP
//! registration): their polarity is their meaning there, and for an eDischarge they are not an
//! answer at all ([`ResponseCode::transfer_of_care`] is false). A test holds this table to the
//! shipped CodeSystem.

/// Whether a code says the message was taken (positive) or refused (negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    Positive,
    Negative,
}

/// Infrastructure (10xxx, 20xxx: could the message be read, validated and routed) or business
/// (30xxx: what the receiving clinical system made of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Infrastructure,
    Business,
}

impl ResponseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseKind::Infrastructure => "infrastructure",
            ResponseKind::Business => "business",
        }
    }
}

/// One code of ITK-ResponseCodes-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode {
    pub code: &'static str,
    pub display: &'static str,
    pub polarity: Polarity,
    /// Defined for Transfer of Care (10xxx, 20xxx, 30001-30004).
    pub transfer_of_care: bool,
}

impl ResponseCode {
    pub fn kind(&self) -> ResponseKind {
        if self.code.starts_with('3') {
            ResponseKind::Business
        } else {
            ResponseKind::Infrastructure
        }
    }

    /// The issue severity a response with this code carries (`information` or `fatal`).
    pub fn severity(&self) -> &'static str {
        match self.polarity {
            Polarity::Positive => "information",
            Polarity::Negative => "fatal",
        }
    }

    /// The OperationOutcome issue type the ITK3 examples use with this code.
    pub fn issue_type(&self) -> &'static str {
        match self.code {
            _ if self.polarity == Polarity::Positive => "informational",
            "20001" | "20002" | "20003" | "20010" | "20011" | "30002" => "not-found",
            "20004" | "20005" | "20012" => "security",
            "20006" => "invalid",
            "20009" => "structure",
            "20007" | "20008" => "duplicate",
            "30003" => "business-rule",
            _ => "processing",
        }
    }
}

/// The code's entry in ITK-ResponseCodes-1, if it has one.
pub fn response_code(code: &str) -> Option<&'static ResponseCode> {
    RESPONSE_CODES.iter().find(|c| c.code == code)
}

/// Version of ITK-ResponseCodes-1 this table follows.
pub const RESPONSE_CODES_VERSION: &str = "1.5.0";

/// Every code of ITK-ResponseCodes-1 v1.5.0, in the CodeSystem's order.
#[rustfmt::skip]
/// `10009` Unreadable message received: the gateway's answer to a message it cannot read.
pub const UNREADABLE: ResponseCode = ResponseCode { code: "10009", display: "Unreadable message received", polarity: Polarity::Negative, transfer_of_care: true };
/// `20013` Success: the gateway's infrastructure acknowledgement of a business response.
pub const SUCCESS: ResponseCode = ResponseCode {
    code: "20013",
    display: "Success",
    polarity: Polarity::Positive,
    transfer_of_care: true,
};

pub const RESPONSE_CODES: &[ResponseCode] = &[
    ResponseCode {
        code: "10001",
        display: "Handling Specification Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "10002",
        display: "Infrastructure Level Response Value - Processing Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "10003",
        display: "Business Level Response Value - Processing Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "10004",
        display: "Message Definition Value - Processing Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "10005",
        display: "Message Definition Version Value - Processing Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "10007",
        display: "Sender Reference Value - Processing Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "10008",
        display: "Handling Specification Business Rule Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    UNREADABLE,
    ResponseCode {
        code: "10010",
        display: "Recipient Type - Processing Error",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20001",
        display: "Unrecognised Recipient Person",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20002",
        display: "Unrecognised Recipient Organisation",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20003",
        display: "Unrecognised Sender",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20004",
        display: "Non-Approved file type received as an attachment",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20005",
        display: "Unsupported file type received as an attachment",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20006",
        display: "ITK header validation failure",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20007",
        display: "Duplicate Message received",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20008",
        display: "Duplicate Document received",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20009",
        display: "Payload validation failure",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20010",
        display: "Unrecognised Payload Recipient Organisation",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20011",
        display: "Unrecognised Payload Recipient Person",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20012",
        display: "Unauthorised Sender",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    SUCCESS,
    ResponseCode {
        code: "20014",
        display: "Unable to Process Replacement Document",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "20015",
        display: "Message too large",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "30001",
        display: "Patient known here. (e.g. Patient is registered here)",
        polarity: Polarity::Positive,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "30002",
        display: "Patient not known here. (aka 'patient record not present in system')",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "30003",
        display: "Patient no longer at this clinical setting",
        polarity: Polarity::Negative,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "30004",
        display: "Patient known here and recently deceased (i.e. patient record current in GP practice system at time of patient’s death and deduction subsequently occurred for this reason)",
        polarity: Polarity::Positive,
        transfer_of_care: true,
    },
    ResponseCode {
        code: "30005",
        display: "Referral open",
        polarity: Polarity::Positive,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30006",
        display: "Referral completed",
        polarity: Polarity::Positive,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30007",
        display: "Referral escalated back to GP",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30008",
        display: "Signposting to GP (non-urgent)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30009",
        display: "Clinical escalation to UTC/111/GPOOH",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30010",
        display: "Clinical escalation to A&E or 999",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30011",
        display: "Advised to go elsewhere/self-referral",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30012",
        display: "Unable to contact the patient",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30013",
        display: "Closure (service not needed)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30014",
        display: "Closure (service not accepted)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30015",
        display: "Closure (duplicate referral)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30016",
        display: "Referral accepted",
        polarity: Polarity::Positive,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30017",
        display: "Referral rejected",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30018",
        display: "Did Not Attend",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30019",
        display: "GP Registration - Application accepted",
        polarity: Polarity::Positive,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30020",
        display: "GP Registration - Application pending (contact practice)",
        polarity: Polarity::Positive,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30021",
        display: "GP Registration - Application rejected (patient already registered)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30022",
        display: "GP Registration - Application rejected (at capacity)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30023",
        display: "GP Registration - Application rejected (out of boundary)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30024",
        display: "GP Registration - Application rejected (Previously removed from this practice)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
    ResponseCode {
        code: "30025",
        display: "GP Registration - Application rejected (Previously removed from another practice)",
        polarity: Polarity::Negative,
        transfer_of_care: false,
    },
];
