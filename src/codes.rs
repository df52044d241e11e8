//! Stable codes carried in `OperationOutcome.issue.details` and in a delivery Task's
//! `statusReason`: one per distinct failure, listed with its meaning in [`ALL`] and in
//! `openapi.yaml` (a test holds the two together).

/// The code system of the gateway's codes.
pub const SYSTEM: &str = "https://throughcare.example.org/fhir/CodeSystem/gateway-issue";

pub const INVALID_JSON: &str = "GW-INTAKE-01";
pub const MEDIA_TYPE: &str = "GW-INTAKE-02";
pub const TOO_LARGE: &str = "GW-INTAKE-03";
pub const TOO_DEEP: &str = "GW-INTAKE-04";
pub const SHAPE: &str = "GW-INTAKE-05";
pub const TYPED_MODEL: &str = "GW-INTAKE-06";
pub const AUTHOR_MISMATCH: &str = "GW-INTAKE-07";
pub const IDEMPOTENCY_CONFLICT: &str = "GW-INTAKE-08";
pub const DUPLICATE_KEY: &str = "GW-INTAKE-09";
pub const REPLACES_UNKNOWN: &str = "GW-INTAKE-10";
pub const DELIVERY_REPLACED: &str = "GW-DELIVERY-11";
pub const ROUTING_ODS: &str = "GW-ROUTING-01";
pub const ROUTING_DIRECTORY: &str = "GW-ROUTING-02";
pub const ROUTING_UNKNOWN_PERFORMER: &str = "GW-ROUTING-03";
pub const CUSTODY_CONSENT: &str = "GW-CUSTODY-01";
pub const CUSTODY_DECISION: &str = "GW-CUSTODY-02";
pub const NO_TOKEN: &str = "GW-AUTH-01";
pub const BAD_TOKEN: &str = "GW-AUTH-02";
pub const CERT_MISMATCH: &str = "GW-AUTH-03";
pub const ROLE: &str = "GW-AUTH-04";
pub const SCOPE: &str = "GW-AUTH-05";
pub const BREAK_GLASS: &str = "GW-AUTH-06";
pub const NO_CERTIFICATE: &str = "GW-AUTH-07";
pub const TOKEN_BINDING: &str = "GW-AUTH-08";
pub const RATE_LIMITED: &str = "GW-RATE-01";
pub const PARAMETER: &str = "GW-REQ-01";
pub const BAD_ID: &str = "GW-REQ-02";
pub const OPERATION_PARAMETERS: &str = "GW-REQ-03";
pub const PURPOSE: &str = "GW-REQ-04";
pub const READ_PROFILE: &str = "GW-REQ-05";
pub const DUPLICATE_HEADER: &str = "GW-REQ-06";
pub const BODY_TIMEOUT: &str = "GW-REQ-07";
pub const TOO_MANY_CONCURRENT: &str = "GW-RATE-02";
pub const CONSENT_INVALID: &str = "GW-CONSENT-01";
pub const CONSENT_ID_MISMATCH: &str = "GW-CONSENT-02";
pub const AGREEMENT_INVALID: &str = "GW-ADMIN-01";
pub const AGREEMENT_VERSION_CONFLICT: &str = "GW-ADMIN-02";
pub const ENDPOINT_INVALID: &str = "GW-ADMIN-03";
pub const NOT_REPLAYABLE: &str = "GW-ADMIN-04";
pub const ADMIN_AREA: &str = "GW-ADMIN-05";
pub const TRANSLATE_SHAPE: &str = "GW-TRANSLATE-01";
pub const TRANSLATE_UNSUPPORTED: &str = "GW-TRANSLATE-02";
pub const OTHER_PATIENT: &str = "GW-PULL-01";
pub const CONSENT_WITHHOLDS: &str = "GW-PULL-02";
pub const DELIVERY_NO_ENDPOINT: &str = "GW-DELIVERY-01";
pub const DELIVERY_NO_AGREEMENT: &str = "GW-DELIVERY-02";
pub const DELIVERY_NOTHING_TO_SHARE: &str = "GW-DELIVERY-03";
pub const DELIVERY_RETRYING: &str = "GW-DELIVERY-04";
pub const DELIVERY_DEAD_LETTER: &str = "GW-DELIVERY-05";
pub const DELIVERY_REFUSED: &str = "GW-DELIVERY-06";
pub const DELIVERY_ENDPOINT: &str = "GW-DELIVERY-07";
pub const DELIVERY_NONCONFORMANT: &str = "GW-DELIVERY-08";
pub const DELIVERY_TRANSLATION: &str = "GW-DELIVERY-09";
pub const DELIVERY_DOCUMENT: &str = "GW-DELIVERY-10";
pub const DELIVERY_HELD_CLINICAL: &str = "GW-DELIVERY-12";
pub const DELIVERY_HELD_SAFETY: &str = "GW-DELIVERY-13";
pub const DELIVERY_ADMINISTRATIVE: &str = "GW-DELIVERY-14";
pub const PULL_HELD: &str = "GW-PULL-03";
pub const MESH_AUTH: &str = "GW-MESH-01";
pub const MESH_REFUSED: &str = "GW-MESH-02";
pub const MESH_PROTOCOL: &str = "GW-MESH-03";
/// The practice system answered the ITK3 message with a negative response (or one that is no
/// answer to a discharge document): the Task fails with the ITK code and display.
pub const ITK_NEGATIVE: &str = "GW-ITK-01";
/// MESH could not deliver the message (a non-delivery REPORT).
pub const ITK_MESH_REPORT: &str = "GW-ITK-02";
pub const NOT_FOUND: &str = "GW-NOT-FOUND";
pub const UNKNOWN_ROUTE: &str = "GW-NO-ROUTE";
pub const UNEXPECTED: &str = "GW-INTERNAL";

/// Every code with its meaning.
pub const ALL: &[(&str, &str)] = &[
    (
        INVALID_JSON,
        "The body is not valid JSON, or could not be read.",
    ),
    (MEDIA_TYPE, "The Content-Type is not FHIR JSON."),
    (
        TOO_LARGE,
        "The body or the Bundle is larger than the configured limit.",
    ),
    (
        TOO_DEEP,
        "The JSON is nested deeper than the configured limit.",
    ),
    (
        SHAPE,
        "The body is not the resource or document shape the route takes (DESIGN §5a).",
    ),
    (
        TYPED_MODEL,
        "The resource does not fit the FHIR R4 model (datatype, required code).",
    ),
    (
        AUTHOR_MISMATCH,
        "The document's author organisation is not the caller's.",
    ),
    (
        IDEMPOTENCY_CONFLICT,
        "Bundle.identifier was already used by this sender for different content.",
    ),
    (
        REPLACES_UNKNOWN,
        "A correction replaces a document this sender did not send about this patient.",
    ),
    (
        DELIVERY_REPLACED,
        "A correcting document replaced the document before this copy went out.",
    ),
    (
        DUPLICATE_KEY,
        "A JSON object or form has the same key twice: the body would read two ways.",
    ),
    (
        ROUTING_ODS,
        "An organisation the document names for routing (registered GP, care-plan performer, transfer destination) has no ODS code, an ODS identifier that is not exactly an ODS code as registered (look-alike characters, case, spaces), or two that disagree.",
    ),
    (
        ROUTING_DIRECTORY,
        "The document names an organisation in a role the organisation directory does not hold it in: a transfer destination that is not an active prison healthcare unit on the prison register, or a registered GP that the directory holds as another kind of organisation.",
    ),
    (
        ROUTING_UNKNOWN_PERFORMER,
        "A care-plan performer is not in the organisation directory: it is granted nothing by role or relationship, only what an agreement grants its ODS code (a warning).",
    ),
    (
        CUSTODY_CONSENT,
        "The caller's prison does not hold the patient: only the current prison records a Consent that permits; a prison that has sent or received the patient's documents records a denial or withdrawal and reads the patient's Consents.",
    ),
    (
        CUSTODY_DECISION,
        "$sharing-decision answers the patient's current prison and IG in full, and a recipient only about itself (counts only).",
    ),
    (NO_TOKEN, "No bearer access token."),
    (
        BAD_TOKEN,
        "The access token is not valid, or the client's registration changed.",
    ),
    (
        CERT_MISMATCH,
        "The client certificate's organisation does not match the access token.",
    ),
    (ROLE, "The caller's role may not use this route."),
    (SCOPE, "The access token has no scope for this route."),
    (
        BREAK_GLASS,
        "Emergency access (ETREAT) is not allowed for this client's registration.",
    ),
    (
        NO_CERTIFICATE,
        "No client certificate: this route needs mutual TLS with a certificate from the configured CA.",
    ),
    (
        TOKEN_BINDING,
        "The access token is bound to another client certificate than this connection's (RFC 8705).",
    ),
    (
        RATE_LIMITED,
        "Too many requests from this client (or, before authentication, this address): see Retry-After.",
    ),
    (
        PARAMETER,
        "A query parameter or header is unknown or has a value outside its schema.",
    ),
    (BAD_ID, "The id in the path is not a valid FHIR id."),
    (
        OPERATION_PARAMETERS,
        "An operation's Parameters are missing or invalid.",
    ),
    (
        PURPOSE,
        "X-Purpose-Of-Use is not TREAT or ETREAT, or not allowed here.",
    ),
    (
        READ_PROFILE,
        "The profile asked for (_profile) is not one this client can read.",
    ),
    (
        DUPLICATE_HEADER,
        "A header that must appear once (Authorization) appears more than once.",
    ),
    (
        BODY_TIMEOUT,
        "The request body did not arrive within the configured time.",
    ),
    (
        TOO_MANY_CONCURRENT,
        "Too many requests from this address are in progress at once.",
    ),
    (
        CONSENT_INVALID,
        "The Consent is not one the gateway can record or evaluate.",
    ),
    (
        CONSENT_ID_MISMATCH,
        "The Consent's id or patient differs from the one it replaces.",
    ),
    (
        AGREEMENT_INVALID,
        "The data-sharing agreement does not fit its schema or rules.",
    ),
    (
        AGREEMENT_VERSION_CONFLICT,
        "That agreement version exists with different content.",
    ),
    (
        ENDPOINT_INVALID,
        "The endpoint does not fit its schema (kind, url, profile, auth).",
    ),
    (
        NOT_REPLAYABLE,
        "Only failed deliveries can be replayed, and held ones released.",
    ),
    (
        ADMIN_AREA,
        "The organisation is outside the administrative area of the calling ICB.",
    ),
    (
        TRANSLATE_SHAPE,
        "The document does not have the shape its source profile needs for translation.",
    ),
    (
        TRANSLATE_UNSUPPORTED,
        "No mapping exists for that source and target.",
    ),
    (
        OTHER_PATIENT,
        "The document is about another patient than the one named.",
    ),
    (
        CONSENT_WITHHOLDS,
        "The patient's choices do not permit sharing their record with this organisation.",
    ),
    (
        DELIVERY_NO_ENDPOINT,
        "The recipient has no push endpoint: the copy waits for its pull.",
    ),
    (
        DELIVERY_NO_AGREEMENT,
        "No data-sharing agreement covers the recipient.",
    ),
    (
        DELIVERY_NOTHING_TO_SHARE,
        "Policy withholds everything from the recipient now.",
    ),
    (
        DELIVERY_RETRYING,
        "An attempt failed in a way worth retrying; the next is scheduled.",
    ),
    (
        DELIVERY_DEAD_LETTER,
        "Retries are exhausted: an operator can replay the delivery.",
    ),
    (
        DELIVERY_REFUSED,
        "The recipient refused the copy (a 4xx other than 408 and 429).",
    ),
    (
        DELIVERY_ENDPOINT,
        "The endpoint cannot be used (URL, scheme, auth, stored row).",
    ),
    (
        DELIVERY_NONCONFORMANT,
        "The ITK3 message the gateway built around a copy does not conform to the ITK3 profiles (a gateway defect; the delivery fails and is escalated). Before issue 12 also a copy that failed its profiles, which is now held, GW-DELIVERY-12, or sent with warnings, GW-DELIVERY-14.",
    ),
    (
        DELIVERY_HELD_CLINICAL,
        "The delivery is held (Task on-hold): the recipient's copy fails its profiles in clinical content (mappings/clinical-content/); the reason names the elements. Released by a correcting document or an operator's retry.",
    ),
    (
        DELIVERY_HELD_SAFETY,
        "The delivery is held (Task on-hold): a medicine the copy would carry lacks a safety element (a dose instruction; for opiate substitution, the date of the last dose in custody). Never sent with a guessed dose; released by a correcting document or an operator's retry.",
    ),
    (
        DELIVERY_ADMINISTRATIVE,
        "A warning: the recipient's copy fails its profiles only in administrative elements (display text, record keeping, practitioner and organisation details); it is sent, and the failures travel with it.",
    ),
    (
        PULL_HELD,
        "The caller's copy fails its profiles in clinical content, or carries a medicine without its safety elements: it is not handed out (the issues name the elements).",
    ),
    (
        DELIVERY_TRANSLATION,
        "The recipient's copy could not be translated.",
    ),
    (
        DELIVERY_DOCUMENT,
        "The stored document or delivery row can no longer be read.",
    ),
    (
        MESH_AUTH,
        "MESH refused the gateway's mailbox credentials (403: mailbox, password, shared key or client certificate).",
    ),
    (
        MESH_REFUSED,
        "MESH refused the message; the reason carries the MESH error code and text (e.g. 12, unregistered recipient mailbox).",
    ),
    (
        MESH_PROTOCOL,
        "MESH answered in a way the gateway cannot read, or the message cannot be sent as given (a header value, the size).",
    ),
    (
        ITK_NEGATIVE,
        "The practice system answered the ITK3 message with a negative response (or one that is no answer to a discharge); the Task fails with the ITK code and display, and is escalated.",
    ),
    (
        ITK_MESH_REPORT,
        "MESH could not deliver the ITK3 message (a non-delivery report); the Task fails with MESH's reason, and is escalated.",
    ),
    (NOT_FOUND, "Not known, or not visible to this client."),
    (UNKNOWN_ROUTE, "No route for this method and path."),
    (UNEXPECTED, "The gateway could not complete the request."),
];
