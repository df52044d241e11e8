//! The ITK3 Transfer of Care message envelope: ITK-Message-Bundle-1 around an
//! ITK-Document-Bundle-1 (corpus `itk3/README.md` §1).

use serde_json::{Map, Value, json};

use super::{
    EDISCHARGE_MESSAGE_DEFINITION, HEADER_ORGANIZATION_PROFILE, MESSAGE_BUNDLE_PROFILE,
    MESSAGE_EVENT_SYSTEM, MESSAGE_HANDLING_URL, MESSAGE_HEADER_PROFILE, ODS_SYSTEM,
    RECIPIENT_TYPE_SYSTEM, UUID_SYSTEM, stable_uuid,
};

/// An organisation as the ITK3 header names it. CareConnect-ITK-Header-Organization-1 takes
/// only the ODS code (`name` is 0..0 there, as is `MessageHeader.source.name` in
/// ITK-MessageHeader-2): the name is not in the message; it is for the gateway's own records
/// (audit, Task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOrganisation {
    pub ods: String,
    pub name: String,
}

/// The document a correction replaces: its identifier (the replaced document's
/// `Composition.identifier`, which the eDischarge mapping takes from the prison document's
/// `Bundle.identifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub system: Option<String>,
    pub value: String,
}

/// What the envelope needs besides the document.
#[derive(Debug, Clone)]
pub struct MessageParams {
    /// `MessageHeader.id`: stable per delivery, reused on every resend, so that the receiving
    /// system recognises a resend as a duplicate (20007). A FHIR id (at most 64 of
    /// `A-Za-z0-9-.`; a UUID in practice). Every other identifier of the message is derived
    /// from it, so a resend is byte-for-byte the same message.
    pub message_id: String,
    pub sender: HeaderOrganisation,
    /// The gateway's MESH mailbox (`MessageHeader.source.endpoint`).
    pub sender_mailbox: String,
    pub receiver: HeaderOrganisation,
    /// Opaque, echoed in the responses (the handling key `SenderReference`, up to 255
    /// characters): the gateway matches responses by it and by the message id.
    pub sender_reference: String,
    /// A correcting document: the document it replaces.
    pub replaces: Option<Replaces>,
    /// `MessageHeader.timestamp` (an instant, e.g. `2026-12-07T10:00:00+00:00`); keep it with
    /// the delivery so that a resend repeats it.
    pub timestamp: String,
}

/// Why no message could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItkError {
    #[error("the payload is not an ITK document: {0}")]
    NotADocument(&'static str),
    #[error("the message id {0:?} is not a FHIR id (1-64 of A-Za-z0-9-.)")]
    BadMessageId(String),
    #[error("the sender reference is empty or longer than 255 characters")]
    BadSenderReference,
    #[error("the document already says it replaces another document than the one given ({0:?})")]
    ReplacementConflict(String),
    #[error("a document cannot replace itself (identifier {0:?})")]
    ReplacesItself(String),
}

fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A CareConnect-ITK-Header-Organization-1: the ODS code only.
pub(crate) fn header_organization(id: &str, org: &HeaderOrganisation) -> Value {
    json!({
        "resourceType": "Organization",
        "id": id,
        "meta": {"profile": [HEADER_ORGANIZATION_PROFILE]},
        "identifier": [{"system": ODS_SYSTEM, "value": org.ods}],
    })
}

/// Wraps an ITK-Document-Bundle-1 (STU3 JSON) in an ITK3 eDischarge message: an
/// ITK-Message-Bundle-1 (type `message`, a UUID identifier) whose first entry is an
/// ITK-MessageHeader-2 with all six handling keys (both acknowledgements requested, recipient
/// type `FA`, the eDischarge MessageDefinition, the SenderReference, LocalExtension "None"),
/// event `ITK003D`, the sender and receiver header Organizations, `source.endpoint` the
/// sender's mailbox and `focus` the document. With `replaces`, the document goes as an ITK3
/// replacement document: its Composition `relatesTo` `replaces` the earlier document's
/// identifier (the only way CareConnect-ITK-EDIS-Composition-1 expresses a replacement;
/// `relatesTo.code` is fixed to `replaces`).
pub fn build_message(mut document: Value, params: &MessageParams) -> Result<Value, ItkError> {
    if !is_fhir_id(&params.message_id) {
        return Err(ItkError::BadMessageId(params.message_id.clone()));
    }
    if params.sender_reference.is_empty() || params.sender_reference.chars().count() > 255 {
        return Err(ItkError::BadSenderReference);
    }
    if document.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        || document.get("type").and_then(Value::as_str) != Some("document")
    {
        return Err(ItkError::NotADocument("not a Bundle of type document"));
    }
    if document
        .pointer("/entry/0/resource/resourceType")
        .and_then(Value::as_str)
        != Some("Composition")
    {
        return Err(ItkError::NotADocument(
            "the first entry is not a Composition",
        ));
    }
    if let Some(replaces) = &params.replaces {
        mark_replacement(&mut document, replaces)?;
    }
    let id = |what: &str| stable_uuid(&format!("itk-message:{}:{what}", params.message_id));
    let sender_id = id("sender");
    let receiver_id = id("receiver");
    let document_id = match document.get("id").and_then(Value::as_str) {
        Some(d) if uuid::Uuid::parse_str(d).is_ok() => d.to_string(),
        _ => id("document"),
    };
    let header = json!({
        "resourceType": "MessageHeader",
        "id": params.message_id,
        "meta": {"profile": [MESSAGE_HEADER_PROFILE]},
        "extension": [{
            "url": MESSAGE_HANDLING_URL,
            "extension": [
                {"url": "BusAckRequested", "valueBoolean": true},
                {"url": "InfAckRequested", "valueBoolean": true},
                {"url": "RecipientType", "valueCoding": {
                    "system": RECIPIENT_TYPE_SYSTEM, "code": "FA", "display": "For Action"}},
                {"url": "MessageDefinition", "valueReference": {"reference": EDISCHARGE_MESSAGE_DEFINITION}},
                {"url": "SenderReference", "valueString": params.sender_reference},
                {"url": "LocalExtension", "valueString": "None"},
            ],
        }],
        "event": {"system": MESSAGE_EVENT_SYSTEM, "code": "ITK003D", "display": "ITK eDischarge"},
        "receiver": {"reference": format!("urn:uuid:{receiver_id}")},
        "sender": {"reference": format!("urn:uuid:{sender_id}")},
        "timestamp": params.timestamp,
        "source": {"endpoint": params.sender_mailbox},
        "focus": [{"reference": format!("urn:uuid:{document_id}")}],
    });
    Ok(json!({
        "resourceType": "Bundle",
        "id": id("bundle"),
        "meta": {"profile": [MESSAGE_BUNDLE_PROFILE]},
        "identifier": {"system": UUID_SYSTEM, "value": id("bundle-identifier")},
        "type": "message",
        "entry": [
            {"fullUrl": format!("urn:uuid:{}", params.message_id), "resource": header},
            {"fullUrl": format!("urn:uuid:{sender_id}"),
             "resource": header_organization(&sender_id, &params.sender)},
            {"fullUrl": format!("urn:uuid:{receiver_id}"),
             "resource": header_organization(&receiver_id, &params.receiver)},
            {"fullUrl": format!("urn:uuid:{document_id}"), "resource": document},
        ],
    }))
}

/// Sets `Composition.relatesTo` to `replaces` the given identifier (a document already saying
/// so is left as it is; one that names another document is refused).
fn mark_replacement(document: &mut Value, replaces: &Replaces) -> Result<(), ItkError> {
    let own = document
        .pointer("/entry/0/resource/identifier/value")
        .or_else(|| document.pointer("/identifier/value"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if own.as_deref() == Some(replaces.value.as_str()) {
        return Err(ItkError::ReplacesItself(replaces.value.clone()));
    }
    let mut target = Map::new();
    if let Some(system) = &replaces.system {
        target.insert("system".into(), json!(system));
    }
    target.insert("value".into(), json!(replaces.value));
    let wanted = json!([{"code": "replaces", "targetIdentifier": Value::Object(target)}]);
    let composition = document
        .pointer_mut("/entry/0/resource")
        .and_then(Value::as_object_mut)
        .ok_or(ItkError::NotADocument(
            "the first entry is not a Composition",
        ))?;
    match composition.get("relatesTo") {
        Some(existing) if *existing == wanted => Ok(()),
        Some(existing) => Err(ItkError::ReplacementConflict(
            existing
                .pointer("/0/targetIdentifier/value")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
        )),
        None => {
            // STU3 order: relatesTo comes after custodian, before event and section.
            let mut ordered = Map::new();
            let mut placed = false;
            for (k, v) in std::mem::take(composition) {
                if !placed && matches!(k.as_str(), "event" | "section") {
                    ordered.insert("relatesTo".into(), wanted.clone());
                    placed = true;
                }
                ordered.insert(k, v);
            }
            if !placed {
                ordered.insert("relatesTo".into(), wanted);
            }
            *composition = ordered;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        json!({"resourceType": "Bundle", "id": "7b0c5a36-3c0e-4d55-8f0a-5a1b2c3d4e5f",
            "identifier": {"system": "https://example.org/doc", "value": "doc-2"},
            "type": "document",
            "entry": [{"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Composition",
                "identifier": {"system": "https://example.org/doc", "value": "doc-2"},
                "status": "final", "section": []}}]})
    }

    fn params() -> MessageParams {
        MessageParams {
            message_id: "3f2a1b9c-4d5e-4f60-8a7b-1c2d3e4f5a6b".into(),
            sender: HeaderOrganisation {
                ods: "YGM24".into(),
                name: "HMP Example healthcare".into(),
            },
            sender_mailbox: "YGM24OT001".into(),
            receiver: HeaderOrganisation {
                ods: "A99001".into(),
                name: "Example practice".into(),
            },
            sender_reference: "delivery-42".into(),
            replaces: None,
            timestamp: "2026-12-07T10:00:00+00:00".into(),
        }
    }

    #[test]
    fn a_resend_is_the_same_message() {
        let a = build_message(document(), &params()).unwrap();
        assert_eq!(a, build_message(document(), &params()).unwrap());
        let mut other = params();
        other.message_id = "another-delivery".into();
        let b = build_message(document(), &other).unwrap();
        assert_ne!(a["identifier"], b["identifier"]);
        assert_eq!(a["entry"][0]["resource"]["id"], params().message_id);
    }

    #[test]
    fn the_header_carries_every_handling_key_and_points_at_the_document() {
        let m = build_message(document(), &params()).unwrap();
        let h = &m["entry"][0]["resource"];
        let keys: Vec<&str> = h["extension"][0]["extension"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "BusAckRequested",
                "InfAckRequested",
                "RecipientType",
                "MessageDefinition",
                "SenderReference",
                "LocalExtension"
            ]
        );
        assert_eq!(h["event"]["code"], "ITK003D");
        assert_eq!(h["source"]["endpoint"], "YGM24OT001");
        assert_eq!(h["focus"][0]["reference"], m["entry"][3]["fullUrl"]);
        assert_eq!(h["sender"]["reference"], m["entry"][1]["fullUrl"]);
        assert_eq!(h["receiver"]["reference"], m["entry"][2]["fullUrl"]);
        assert_eq!(
            m["entry"][2]["resource"]["identifier"][0]["value"],
            "A99001"
        );
        assert!(m["entry"][2]["resource"].get("name").is_none());
    }

    #[test]
    fn a_correction_goes_as_a_replacement_document() {
        let mut p = params();
        p.replaces = Some(Replaces {
            system: Some("https://example.org/doc".into()),
            value: "doc-1".into(),
        });
        let m = build_message(document(), &p).unwrap();
        let c = &m["entry"][3]["resource"]["entry"][0]["resource"];
        assert_eq!(c["relatesTo"][0]["code"], "replaces");
        assert_eq!(c["relatesTo"][0]["targetIdentifier"]["value"], "doc-1");
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys.last().map(|k| k.as_str()), Some("section"));
        // Already marked by the mapping: left as it is.
        let again = build_message(m["entry"][3]["resource"].clone(), &p).unwrap();
        assert_eq!(again["entry"][3], m["entry"][3]);
        // Marked for another document, or replacing itself: refused.
        p.replaces.as_mut().unwrap().value = "doc-0".into();
        assert!(matches!(
            build_message(m["entry"][3]["resource"].clone(), &p),
            Err(ItkError::ReplacementConflict(v)) if v == "doc-1"
        ));
        p.replaces.as_mut().unwrap().value = "doc-2".into();
        assert!(matches!(
            build_message(document(), &p),
            Err(ItkError::ReplacesItself(_))
        ));
    }

    #[test]
    fn only_documents_and_fhir_ids_are_taken() {
        let mut p = params();
        p.message_id = "not an id".into();
        assert!(matches!(
            build_message(document(), &p),
            Err(ItkError::BadMessageId(_))
        ));
        let mut d = document();
        d["type"] = json!("collection");
        assert!(matches!(
            build_message(d, &params()),
            Err(ItkError::NotADocument(_))
        ));
    }
}
