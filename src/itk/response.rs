//! ITK3 responses (infrastructure and business acknowledgements): reading them, classifying
//! them by their ITK-ResponseCodes-1 code, and building the gateway's own.
//!
//! A response is an ITK-Message-Bundle-1 whose MessageHeader (event `ITK008M`) has `response`
//! (`identifier` = the MessageHeader id of the message answered) and points at one
//! ITK-Response-OperationOutcome-1 with exactly one issue coded from ITK-ResponseCodes-1.
//! Classification uses that code and its severity from the CodeSystem table
//! ([`super::codes`]), never `MessageHeader.response.code`: the 20014 and 20015 examples say
//! `ok` for negative codes.

use serde_json::{Value, json};

use super::codes::{Polarity, ResponseCode, ResponseKind, response_code};
use super::message::{HeaderOrganisation, header_organization};
use super::{
    MESSAGE_BUNDLE_PROFILE, MESSAGE_EVENT_SYSTEM, MESSAGE_HANDLING_URL, MESSAGE_HEADER_PROFILE,
    RECIPIENT_TYPE_SYSTEM, RESPONSE_CODES_SYSTEM, RESPONSE_MESSAGE_DEFINITION,
    RESPONSE_OUTCOME_PROFILE, UUID_SYSTEM, stable_uuid,
};

/// What `MessageHeader.response.identifier` says when the original's id could not be read
/// (ITK 10009 example).
pub const UNREADABLE_ORIGINAL: &str = "UNREADABLE-IN-ORIGINAL-MESSAGE";

/// What a response code means for an eDischarge delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// `20013`: accepted by the practice system (infrastructure).
    Accepted,
    /// `30001` (patient known here); `30004` (known here, recently deceased) with an alert to
    /// the sending prison.
    Completed { alert_sender: bool },
    /// `20007` duplicate message, `20008` duplicate document: never a failure; they can
    /// arrive before the `20013` of the original.
    Duplicate,
    /// Every negative code (10xxx, 20xxx, 30002, 30003), a code ITK-ResponseCodes-1 does not
    /// have, and a code of another payload (30005-30025: referral outcomes, GP registration),
    /// which is no answer to a discharge document: failed with the code and its display, and
    /// escalated so that someone finds the right practice.
    Failed,
}

/// How a response moves the delivery's Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEffect {
    /// `in-progress`: accepted by the practice system, awaiting the business response. Never
    /// moves a Task back from `completed`.
    InProgress,
    /// `completed`; with `alert_sender`, the sending prison is alerted (30004).
    Completed { alert_sender: bool },
    /// Nothing changes: a duplicate that arrived before the original was seen accepted (its
    /// own acknowledgement is still to come).
    Unchanged,
    /// `failed`, with the code and its display; escalated.
    Failed { code: String, display: String },
}

/// An ITK3 response, read and classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItkResponse {
    /// The response's own MessageHeader id.
    pub message_id: String,
    pub kind: ResponseKind,
    /// The ITK-ResponseCodes-1 code of the issue.
    pub code: String,
    /// The code's display from the CodeSystem (the issue's own when the code is unknown).
    pub display: String,
    pub classification: Classification,
    /// `MessageHeader.response.identifier`: the MessageHeader id of the message answered
    /// ([`UNREADABLE_ORIGINAL`] when the responder could not read it).
    pub answers_message_id: String,
    /// The SenderReference echoed in the handling extension (`None` for the filler "None" or
    /// when there is no handling extension).
    pub sender_reference: Option<String>,
    /// `MessageHeader.source.endpoint`: the responder's MESH mailbox.
    pub source_endpoint: Option<String>,
    /// `MessageHeader.response.code` as sent (`ok` / `fatal-error`): informational only.
    pub header_response_code: Option<String>,
    /// The issue's diagnostics, if any.
    pub diagnostics: Option<String>,
    /// Whether the responder asked for an infrastructure acknowledgement of this response
    /// (the Full Acknowledgement pattern: the gateway then returns a 20013).
    pub inf_ack_requested: bool,
    /// Irregularities that did not stop the reading (e.g. `response.code` contradicting the
    /// code's severity, a missing handling extension, an unknown code).
    pub notes: Vec<String>,
}

impl ItkResponse {
    /// The Task change this response asks for. `original_accepted`: whether a `20013` for the
    /// message answered was already seen (a duplicate then counts as that acceptance).
    pub fn task_effect(&self, original_accepted: bool) -> TaskEffect {
        match self.classification {
            Classification::Accepted => TaskEffect::InProgress,
            Classification::Completed { alert_sender } => TaskEffect::Completed { alert_sender },
            Classification::Duplicate if original_accepted => TaskEffect::InProgress,
            Classification::Duplicate => TaskEffect::Unchanged,
            Classification::Failed => TaskEffect::Failed {
                code: self.code.clone(),
                display: self.display.clone(),
            },
        }
    }

    /// Whether this is a business response, to which the gateway returns an infrastructure
    /// acknowledgement (Full Acknowledgement pattern).
    pub fn needs_infrastructure_ack(&self) -> bool {
        self.kind == ResponseKind::Business
    }
}

/// The classification of a code (by ITK-ResponseCodes-1 and its severity).
pub fn classify(code: &str) -> Classification {
    match response_code(code) {
        Some(c) if !c.transfer_of_care => Classification::Failed,
        Some(c) => match (c.code, c.polarity) {
            ("20013", _) => Classification::Accepted,
            ("30001", _) => Classification::Completed {
                alert_sender: false,
            },
            ("30004", _) => Classification::Completed { alert_sender: true },
            ("20007" | "20008", _) => Classification::Duplicate,
            (_, Polarity::Negative) => Classification::Failed,
            // No other positive Transfer of Care code exists; were one added, it is not
            // assumed to mean success.
            (_, Polarity::Positive) => Classification::Failed,
        },
        None => Classification::Failed,
    }
}

/// Why a message could not be read as an ITK3 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("not an ITK3 message: {0}")]
    NotAMessage(&'static str),
    #[error("the message is not a response (its MessageHeader has no `response`)")]
    NotAResponse,
    #[error("the response has no {0}")]
    Missing(&'static str),
    #[error("the response's OperationOutcome has {0} issues; ITK3 allows exactly one")]
    IssueCount(usize),
    #[error("the response's issue has no code from {RESPONSE_CODES_SYSTEM}")]
    NoResponseCode,
}

/// Reads an ITK3 response message (FHIR JSON).
pub fn parse_response(message: &Value) -> Result<ItkResponse, ResponseError> {
    if message.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ResponseError::NotAMessage("not a Bundle"));
    }
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err(ResponseError::NotAMessage("Bundle.type is not message"));
    }
    let entries = message
        .get("entry")
        .and_then(Value::as_array)
        .ok_or(ResponseError::NotAMessage("no entries"))?;
    let header = entries
        .first()
        .and_then(|e| e.get("resource"))
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("MessageHeader"))
        .ok_or(ResponseError::NotAMessage(
            "the first entry is not a MessageHeader",
        ))?;
    let response = header.get("response").ok_or(ResponseError::NotAResponse)?;
    let answers = response
        .get("identifier")
        .and_then(Value::as_str)
        .ok_or(ResponseError::Missing("MessageHeader.response.identifier"))?;
    let mut notes = Vec::new();
    let outcome = response
        .pointer("/details/reference")
        .and_then(Value::as_str)
        .and_then(|r| resolve(entries, r))
        .or_else(|| {
            entries
                .iter()
                .filter_map(|e| e.get("resource"))
                .find(|r| r.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome"))
        })
        .ok_or(ResponseError::Missing("OperationOutcome"))?;
    let issues = outcome
        .get("issue")
        .and_then(Value::as_array)
        .ok_or(ResponseError::IssueCount(0))?;
    if issues.len() != 1 {
        return Err(ResponseError::IssueCount(issues.len()));
    }
    let issue = &issues[0];
    let coding = issue
        .pointer("/details/coding")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("system").and_then(Value::as_str) == Some(RESPONSE_CODES_SYSTEM))
        })
        .ok_or(ResponseError::NoResponseCode)?;
    let code = coding
        .get("code")
        .and_then(Value::as_str)
        .ok_or(ResponseError::NoResponseCode)?
        .to_string();
    let known = response_code(&code);
    let display = match known {
        Some(c) => c.display.to_string(),
        None => {
            notes.push(format!(
                "code {code} is not in ITK-ResponseCodes-1 v{}: treated as a failure",
                super::codes::RESPONSE_CODES_VERSION
            ));
            coding
                .get("display")
                .and_then(Value::as_str)
                .unwrap_or("unknown ITK response code")
                .to_string()
        }
    };
    let kind = match known {
        Some(c) => c.kind(),
        None if code.starts_with('3') => ResponseKind::Business,
        None => ResponseKind::Infrastructure,
    };
    let header_response_code = response
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (Some(c), Some(sent)) = (known, header_response_code.as_deref()) {
        let expected = match c.polarity {
            Polarity::Positive => "ok",
            Polarity::Negative => "fatal-error",
        };
        if sent != expected {
            notes.push(format!(
                "MessageHeader.response.code is {sent} for {} ({}); the code decides",
                c.code,
                c.severity()
            ));
        }
    }
    if let (Some(c), Some(sev)) = (known, issue.get("severity").and_then(Value::as_str))
        && sev != c.severity()
    {
        notes.push(format!(
            "issue severity {sev} differs from {}'s ({}); the code decides",
            c.code,
            c.severity()
        ));
    }
    let handling = header
        .get("extension")
        .and_then(Value::as_array)
        .and_then(|exts| {
            exts.iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(MESSAGE_HANDLING_URL))
        });
    if handling.is_none() {
        notes.push("the MessageHeader has no handling extension".into());
    }
    let key = |name: &str| -> Option<&Value> {
        handling?
            .get("extension")?
            .as_array()?
            .iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(name))
    };
    let sender_reference = key("SenderReference")
        .and_then(|e| e.get("valueString"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
        .map(str::to_string);
    let inf_ack_requested = key("InfAckRequested")
        .and_then(|e| e.get("valueBoolean"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ItkResponse {
        message_id: header
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        kind,
        classification: classify(&code),
        code,
        display,
        answers_message_id: answers.to_string(),
        sender_reference,
        source_endpoint: header
            .pointer("/source/endpoint")
            .and_then(Value::as_str)
            .map(str::to_string),
        header_response_code,
        diagnostics: issue
            .get("diagnostics")
            .and_then(Value::as_str)
            .map(str::to_string),
        inf_ack_requested,
        notes,
    })
}

fn resolve<'a>(entries: &'a [Value], reference: &str) -> Option<&'a Value> {
    entries.iter().find_map(|e| {
        let full = e.get("fullUrl").and_then(Value::as_str);
        let r = e.get("resource")?;
        let local = format!(
            "{}/{}",
            r.get("resourceType")?.as_str()?,
            r.get("id").and_then(Value::as_str).unwrap_or_default()
        );
        (full == Some(reference) || local == reference).then_some(r)
    })
}

/// The gateway's own ITK3 response.
#[derive(Debug, Clone)]
pub struct ResponseParams {
    /// This response's MessageHeader id (stable per response: reuse it when resending).
    pub message_id: String,
    /// The MessageHeader id of the message answered; `None` when it could not be read (10009).
    pub answering: Option<String>,
    /// `20013` (acknowledging a business response) or `10009` (an unreadable message).
    pub code: &'static ResponseCode,
    /// The gateway (sender of this response).
    pub sender: HeaderOrganisation,
    /// The gateway's MESH mailbox (`MessageHeader.source.endpoint`).
    pub sender_mailbox: String,
    /// Whom it answers (their header Organization), when known.
    pub receiver: Option<HeaderOrganisation>,
    /// The SenderReference of the message answered, echoed; `None` sends the filler "None".
    pub sender_reference: Option<String>,
    /// `MessageHeader.timestamp` (an instant).
    pub timestamp: String,
    pub diagnostics: Option<String>,
}

/// Builds an ITK3 response message (ITK-Message-Bundle-1, event ITK008M): a MessageHeader with
/// `response` and the handling extension (no acknowledgement requested: responses are never
/// answered, so there are no loops), the sender's header Organization (and the receiver's),
/// and one ITK-Response-OperationOutcome-1 issue with the code.
pub fn build_response(params: &ResponseParams) -> Value {
    let id = |what: &str| stable_uuid(&format!("itk-response:{}:{what}", params.message_id));
    let sender_id = id("sender");
    let receiver_id = id("receiver");
    let outcome_id = id("outcome");
    let code = params.code;
    let mut header = json!({
        "resourceType": "MessageHeader",
        "id": params.message_id,
        "meta": {"profile": [MESSAGE_HEADER_PROFILE]},
        "extension": [{
            "url": MESSAGE_HANDLING_URL,
            "extension": [
                {"url": "BusAckRequested", "valueBoolean": false},
                {"url": "InfAckRequested", "valueBoolean": false},
                {"url": "RecipientType", "valueCoding": {
                    "system": RECIPIENT_TYPE_SYSTEM, "code": "FI", "display": "For Information"}},
                {"url": "MessageDefinition", "valueReference": {"reference": RESPONSE_MESSAGE_DEFINITION}},
                {"url": "SenderReference", "valueString":
                    params.sender_reference.clone().unwrap_or_else(|| "None".into())},
                {"url": "LocalExtension", "valueString": "None"},
            ],
        }],
        "event": {"system": MESSAGE_EVENT_SYSTEM, "code": "ITK008M", "display": "ITK Response"},
        "sender": {"reference": format!("urn:uuid:{sender_id}")},
        "timestamp": params.timestamp,
        "source": {"endpoint": params.sender_mailbox},
        "response": {
            "identifier": params.answering.clone().unwrap_or_else(|| UNREADABLE_ORIGINAL.into()),
            "code": if code.polarity == Polarity::Positive { "ok" } else { "fatal-error" },
            "details": {"reference": format!("urn:uuid:{outcome_id}")},
        },
    });
    if params.receiver.is_some()
        && let Some(h) = header.as_object_mut()
    {
        // `receiver` sits before `sender` in STU3 element order.
        let mut ordered = serde_json::Map::new();
        for (k, v) in std::mem::take(h) {
            if k == "sender" {
                ordered.insert(
                    "receiver".into(),
                    json!({"reference": format!("urn:uuid:{receiver_id}")}),
                );
            }
            ordered.insert(k, v);
        }
        *h = ordered;
    }
    let mut issue = json!({
        "severity": code.severity(),
        "code": code.issue_type(),
        "details": {"coding": [{"system": RESPONSE_CODES_SYSTEM, "code": code.code, "display": code.display}]},
    });
    if let Some(d) = &params.diagnostics {
        issue["diagnostics"] = json!(d);
    }
    let mut entries = vec![
        json!({"fullUrl": format!("urn:uuid:{}", params.message_id), "resource": header}),
        json!({"fullUrl": format!("urn:uuid:{sender_id}"),
               "resource": header_organization(&sender_id, &params.sender)}),
    ];
    if let Some(r) = &params.receiver {
        entries.push(json!({"fullUrl": format!("urn:uuid:{receiver_id}"),
                            "resource": header_organization(&receiver_id, r)}));
    }
    entries.push(json!({
        "fullUrl": format!("urn:uuid:{outcome_id}"),
        "resource": {
            "resourceType": "OperationOutcome",
            "id": outcome_id,
            "meta": {"profile": [RESPONSE_OUTCOME_PROFILE]},
            "issue": [issue],
        },
    }));
    json!({
        "resourceType": "Bundle",
        "id": id("bundle"),
        "meta": {"profile": [MESSAGE_BUNDLE_PROFILE]},
        "identifier": {"system": UUID_SYSTEM, "value": id("bundle-identifier")},
        "type": "message",
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> HeaderOrganisation {
        HeaderOrganisation {
            ods: "YGM24".into(),
            name: "HMP Example healthcare".into(),
        }
    }

    fn ack(code: &str) -> Value {
        build_response(&ResponseParams {
            message_id: "0b8b4f8e-8f7c-4a1e-9d0a-3c1f2e4d5a6b".into(),
            answering: Some("a1b2c3d4-0000-4000-8000-000000000001".into()),
            code: response_code(code).unwrap(),
            sender: gateway(),
            sender_mailbox: "YGM24OT001".into(),
            receiver: Some(HeaderOrganisation {
                ods: "A99001".into(),
                name: "Example practice".into(),
            }),
            sender_reference: Some("delivery-42".into()),
            timestamp: "2026-12-07T10:00:00+00:00".into(),
            diagnostics: None,
        })
    }

    #[test]
    fn what_the_gateway_sends_it_reads_back_the_same() {
        let r = parse_response(&ack("20013")).unwrap();
        assert_eq!(r.code, "20013");
        assert_eq!(r.classification, Classification::Accepted);
        assert_eq!(r.answers_message_id, "a1b2c3d4-0000-4000-8000-000000000001");
        assert_eq!(r.sender_reference.as_deref(), Some("delivery-42"));
        assert_eq!(r.source_endpoint.as_deref(), Some("YGM24OT001"));
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        assert!(!r.inf_ack_requested, "a response is never to be answered");
    }

    #[test]
    fn the_code_decides_not_the_header_response_code() {
        let mut m = ack("20014");
        m["entry"][0]["resource"]["response"]["code"] = json!("ok");
        let r = parse_response(&m).unwrap();
        assert_eq!(
            r.task_effect(true),
            TaskEffect::Failed {
                code: "20014".into(),
                display: "Unable to Process Replacement Document".into()
            }
        );
        assert!(r.notes.iter().any(|n| n.contains("response.code is ok")));
    }

    #[test]
    fn a_duplicate_never_fails_and_counts_as_accepted_once_the_original_was() {
        let r = parse_response(&ack("20008")).unwrap();
        assert_eq!(r.task_effect(true), TaskEffect::InProgress);
        assert_eq!(r.task_effect(false), TaskEffect::Unchanged);
    }

    #[test]
    fn an_unknown_code_fails_with_its_own_display() {
        let mut m = ack("20013");
        m["entry"][3]["resource"]["issue"][0]["details"]["coding"][0]["code"] = json!("29999");
        m["entry"][3]["resource"]["issue"][0]["details"]["coding"][0]["display"] = json!("New");
        let r = parse_response(&m).unwrap();
        assert_eq!(r.classification, Classification::Failed);
        assert_eq!(r.display, "New");
    }

    #[test]
    fn messages_that_are_not_responses_are_refused() {
        let mut m = ack("20013");
        m["entry"][0]["resource"]
            .as_object_mut()
            .unwrap()
            .remove("response");
        assert_eq!(parse_response(&m), Err(ResponseError::NotAResponse));
        let mut m = ack("20013");
        m["entry"][3]["resource"]["issue"] = json!([]);
        assert_eq!(parse_response(&m), Err(ResponseError::IssueCount(0)));
        assert!(matches!(
            parse_response(&json!({"resourceType": "Bundle", "type": "document"})),
            Err(ResponseError::NotAMessage(_))
        ));
    }

    #[test]
    fn an_unreadable_message_is_answered_with_10009_and_no_identifier() {
        let mut p = ResponseParams {
            message_id: "m".into(),
            answering: None,
            code: response_code("10009").unwrap(),
            sender: gateway(),
            sender_mailbox: "YGM24OT001".into(),
            receiver: None,
            sender_reference: None,
            timestamp: "2026-12-07T10:00:00+00:00".into(),
            diagnostics: Some("not XML".into()),
        };
        let m = build_response(&p);
        assert_eq!(
            m["entry"][0]["resource"]["response"]["identifier"],
            UNREADABLE_ORIGINAL
        );
        assert_eq!(m["entry"][0]["resource"]["response"]["code"], "fatal-error");
        assert_eq!(m["entry"][2]["resource"]["issue"][0]["severity"], "fatal");
        // Stable: the same response id gives the same message.
        assert_eq!(m, build_response(&p));
        p.message_id = "n".into();
        assert_ne!(m["identifier"], build_response(&p)["identifier"]);
    }
}
