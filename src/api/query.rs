//! Query parameters, declared once per route in the route table with their schema and checked
//! in one place: the [`Principal`](crate::auth::Principal) extractor checks the query string of
//! the matched route after authentication and access ([`check`]), so that a handler only reads
//! values that fit (see [`Params`]). A parameter the route does not declare, a value outside its
//! schema (`at-risk=null`, `_profile=false`, `_count=abc`), a parameter given twice that does not
//! repeat, or a required one missing is a 400 (`GW-REQ-01`) naming the parameter.
//!
//! `openapi.yaml` describes the same parameters: a test holds each route's declaration to the
//! spec ([`Param::schema`] is the JSON schema the spec must give).

use serde_json::{Value, json};

use crate::domain::{BusinessStatus, NhsNumber, TaskStatus, systems};
use crate::error::{ApiError, codes};

/// What values a parameter takes.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Any text.
    Text,
    /// One of these values, exactly.
    OneOf(&'static [&'static str]),
    /// `true` or `false`, nothing else.
    Bool,
    /// A positive whole number (`_count`): at most [`MAX_COUNT`] are returned.
    Count,
    /// An NHS number with a valid check digit, bare or as `https://fhir.nhs.uk/Id/nhs-number|N`.
    NhsNumber,
    /// A FHIR date (`2026-11-30`) or a dateTime with seconds and an offset
    /// (`2026-11-30T10:00:00Z`), after an optional comparison prefix from this list.
    Date(&'static [&'static str]),
}

/// The most entries a search returns, whatever `_count` asks for.
pub const MAX_COUNT: u64 = 1000;

/// One query parameter a route reads.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// May be given more than once (each value applies).
    pub repeats: bool,
}

/// An optional parameter that is given at most once.
pub const fn param(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        required: false,
        repeats: false,
    }
}

impl Param {
    pub const fn required(mut self) -> Param {
        self.required = true;
        self
    }

    pub const fn repeats(mut self) -> Param {
        self.repeats = true;
        self
    }

    /// The JSON schema of the parameter, as `openapi.yaml` must give it: of its value, or of an
    /// array of values for one that repeats.
    pub fn schema(&self) -> Value {
        let value = self.value_schema();
        if self.repeats {
            json!({"type": "array", "items": value})
        } else {
            value
        }
    }

    fn value_schema(&self) -> Value {
        match self.kind {
            Kind::Text => json!({"type": "string"}),
            Kind::OneOf(values) => json!({"enum": values}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Count => json!({"type": "integer", "minimum": 1}),
            Kind::NhsNumber => json!({"type": "string", "pattern": NHS_NUMBER_PATTERN}),
            Kind::Date(prefixes) => json!({"type": "string", "pattern": date_pattern(prefixes)}),
        }
    }

    /// Checks one value against the parameter's schema; the message names the parameter.
    fn check(&self, value: &str) -> Result<(), String> {
        let name = self.name;
        let shown = shown(value);
        match self.kind {
            Kind::Text => Ok(()),
            Kind::OneOf(values) => {
                if values.contains(&value) {
                    Ok(())
                } else {
                    Err(format!(
                        "The query parameter {name:?} must be one of {}; got {shown}.",
                        values.join(", ")
                    ))
                }
            }
            Kind::Bool => match value {
                "true" | "false" => Ok(()),
                _ => Err(format!(
                    "The query parameter {name:?} must be true or false; got {shown}."
                )),
            },
            Kind::Count => match count(value) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "The query parameter {name:?} must be a whole number of at least 1; got {shown}."
                )),
            },
            Kind::NhsNumber => nhs_number(value)
                .map(|_| ())
                .map_err(|why| format!("The query parameter {name:?} {why}.")),
            Kind::Date(prefixes) => date(value, prefixes)
                .map(|_| ())
                .map_err(|why| format!("The query parameter {name:?} {why}; got {shown}.")),
        }
    }
}

/// The pattern of [`Kind::NhsNumber`] (the check digit is checked besides).
pub const NHS_NUMBER_PATTERN: &str = r"^(https://fhir\.nhs\.uk/Id/nhs-number\|)?[0-9]{10}$";

fn date_pattern(prefixes: &[&str]) -> String {
    let prefix = if prefixes.is_empty() {
        String::new()
    } else {
        format!("({})?", prefixes.join("|"))
    };
    format!(
        r"^{prefix}[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\.[0-9]+)?(Z|[+-][0-9]{{2}}:[0-9]{{2}}))?$"
    )
}

/// A value as a message quotes it: at most 40 characters.
fn shown(value: &str) -> String {
    let mut cut: String = value.chars().take(40).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// A `_count` value: digits only, at least 1; more than [`MAX_COUNT`] reads as [`MAX_COUNT`].
pub fn count(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = value.parse::<u64>().unwrap_or(u64::MAX).min(MAX_COUNT);
    (n >= 1).then_some(n as i64)
}

/// An NHS number from `9990000018` or `https://fhir.nhs.uk/Id/nhs-number|9990000018`.
pub fn nhs_number(value: &str) -> Result<NhsNumber, String> {
    let digits = match value.split_once('|') {
        Some((system, v)) if system == systems::NHS_NUMBER => v,
        Some(_) => {
            return Err(
                "identifies patients by NHS number only (https://fhir.nhs.uk/Id/nhs-number)".into(),
            );
        }
        None => value,
    };
    NhsNumber::parse(digits).map_err(|e| format!("is not a valid NHS number: {e}"))
}

/// A date search value: its prefix (`eq` when none is given) and the start and end of the period
/// it denotes, as stored timestamps (RFC 3339, UTC): a day for a date, a millisecond for a
/// dateTime.
pub fn date(value: &str, prefixes: &[&str]) -> Result<(&'static str, String, String), String> {
    let (prefix, rest) = match value.get(..2) {
        Some(p) if prefixes.contains(&p) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let prefix = ["ge", "gt", "le", "lt", "eq"]
        .into_iter()
        .find(|p| *p == prefix)
        .unwrap_or("eq");
    use time::format_description::well_known::Rfc3339;
    if rest.len() > 10 {
        let t = time::OffsetDateTime::parse(rest, &Rfc3339).map_err(|_| {
            "must be a FHIR date or dateTime (with seconds and a time zone)".to_string()
        })?;
        let start = crate::clock::rfc3339(t);
        let end = crate::clock::rfc3339(t + time::Duration::milliseconds(1));
        return Ok((prefix, start, end));
    }
    let d = time::Date::parse(
        rest,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| "must be a FHIR date or dateTime (with seconds and a time zone)".to_string())?;
    let start = d.midnight().assume_utc();
    Ok((
        prefix,
        crate::clock::rfc3339(start),
        crate::clock::rfc3339(start + time::Duration::days(1)),
    ))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::PARAMETER, message)
}

/// A route's query string, checked against what the route declares.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of a parameter given once (the first, for one that repeats).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// A [`Kind::Bool`] parameter's value.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v == "true")
    }
}

/// The query parameters of a request, as the `Principal` extractor checked them (the handler of
/// a route that takes a token extracts the `Principal` first).
pub fn params(req: &actix_web::HttpRequest) -> Result<Params, ApiError> {
    use actix_web::HttpMessage;
    if let Some(params) = req.extensions().get::<Params>() {
        return Ok(params.clone());
    }
    let declared = req
        .app_data::<actix_web::web::Data<super::routes::AccessTable>>()
        .map(|t| t.query(req.method(), &req.match_pattern().unwrap_or_default()))
        .unwrap_or_default();
    check(req.query_string(), declared)
}

/// Checks `query` against `declared`: every parameter known, every value inside its schema,
/// those that do not repeat given once, the required ones given.
pub fn check(query: &str, declared: &[Param]) -> Result<Params, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| bad("The query string is unreadable."))?;
    for (i, (name, value)) in pairs.iter().enumerate() {
        let Some(param) = declared.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = declared.iter().map(|p| p.name).collect();
            let known = if known.is_empty() {
                "this route takes none".to_string()
            } else {
                format!("this route takes {}", known.join(", "))
            };
            return Err(bad(format!(
                "The query parameter {} is not supported: {known}.",
                shown(name)
            )));
        };
        if !param.repeats && pairs[..i].iter().any(|(k, _)| k == name) {
            return Err(bad(format!(
                "The query parameter {name:?} is given more than once."
            )));
        }
        param.check(value).map_err(bad)?;
    }
    if let Some(missing) = declared
        .iter()
        .find(|p| p.required && !pairs.iter().any(|(k, _)| k == p.name))
    {
        return Err(bad(format!(
            "The query parameter {:?} is required.",
            missing.name
        )));
    }
    Ok(Params(pairs))
}

/// The profiles a reader may ask its copy in (`_profile`): the short names and the canonical URLs
/// of the Bundle profiles. `prison` is for prisons only (for others: 400, `GW-REQ-05`).
pub const READ_PROFILES: &[&str] = &[
    "uk-core-r4",
    "gp-connect-stu3",
    "prison",
    "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle",
    "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1",
];

/// Translation targets (`$translate?target=`).
pub const TARGETS: &[&str] = &[
    "uk-core-r4",
    "gp-connect-stu3",
    "prison",
    "itk-edischarge-stu3",
];

/// `_profile`, on every read of a copy.
pub const PROFILE: Param = param("_profile", Kind::OneOf(READ_PROFILES));

/// Communication statuses (`GET /fhir/Communication`): every alert is `completed` when stored.
pub const COMMUNICATION_STATUSES: &[&str] = &[
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
];
/// The escalation states, the categories of the alert Communications.
pub const ALERT_STATES: &[&str] = crate::metrics::ALERT_STATES;

/// Task statuses, for `status` filters.
pub const TASK_STATUSES: &[&str] = &task_statuses();
/// Delivery business statuses, for `business-status` filters.
pub const BUSINESS_STATUSES: &[&str] = &business_statuses();

const fn task_statuses() -> [&'static str; TaskStatus::ALL.len()] {
    let mut out = [""; TaskStatus::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = TaskStatus::ALL[i].as_str();
        i += 1;
    }
    out
}

const fn business_statuses() -> [&'static str; BusinessStatus::ALL.len()] {
    let mut out = [""; BusinessStatus::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = BusinessStatus::ALL[i].as_str();
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(query: &str, declared: &[Param]) -> String {
        match check(query, declared) {
            Ok(_) => panic!("{query} should be refused"),
            Err(e) => {
                assert_eq!(e.status(), 400);
                e.audit_reason()
            }
        }
    }

    #[test]
    fn booleans_are_true_or_false_only() {
        let declared = [param("at-risk", Kind::Bool)];
        for ok in ["at-risk=true", "at-risk=false", ""] {
            assert!(check(ok, &declared).is_ok(), "{ok}");
        }
        for no in [
            "at-risk=null",
            "at-risk=1",
            "at-risk=",
            "at-risk=TRUE",
            "at-risk=yes",
        ] {
            assert!(refused(no, &declared).contains("\"at-risk\""), "{no}");
        }
    }

    #[test]
    fn counts_are_positive_whole_numbers() {
        let declared = [param("_count", Kind::Count)];
        assert_eq!(count("5"), Some(5));
        assert_eq!(count("99999999999999999999999"), Some(1000));
        for no in [
            "_count=abc",
            "_count=0",
            "_count=-1",
            "_count=1.5",
            "_count=",
        ] {
            assert!(refused(no, &declared).contains("\"_count\""), "{no}");
        }
    }

    #[test]
    fn unknown_repeated_and_missing_parameters_are_named() {
        let declared = [param("target", Kind::OneOf(TARGETS)).required()];
        assert!(refused("", &declared).contains("\"target\" is required"));
        assert!(refused("target=prison&target=prison", &declared).contains("more than once"));
        assert!(refused("target=prison&x=1", &declared).contains("\"x\""));
        assert!(refused("target=fhir", &declared).contains("\"target\""));
        assert!(refused("x=1", &[]).contains("takes none"));
        let ok = check("target=prison", &declared).unwrap();
        assert_eq!(ok.get("target"), Some("prison"));
    }

    #[test]
    fn dates_take_the_declared_prefixes() {
        let declared = [param("date", Kind::Date(&["ge", "le"])).repeats()];
        assert!(check("date=ge2026-01-01&date=le2026-02-01T00:00:00Z", &declared).is_ok());
        for no in ["date=gt2026-01-01", "date=2026-13-01", "date=yesterday"] {
            assert!(refused(no, &declared).contains("\"date\""), "{no}");
        }
        let (prefix, start, end) = date("2026-01-01", &[]).unwrap();
        assert_eq!(prefix, "eq");
        assert!(start < end);
    }

    #[test]
    fn patterns_accept_what_the_checks_accept() {
        let nhs = regex_lite::Regex::new(NHS_NUMBER_PATTERN).unwrap();
        for v in ["9990000018", "https://fhir.nhs.uk/Id/nhs-number|9990000018"] {
            assert!(nhs.is_match(v) && nhs_number(v).is_ok(), "{v}");
        }
        let dates = regex_lite::Regex::new(&date_pattern(&["ge", "gt"])).unwrap();
        for v in [
            "2026-01-01",
            "ge2026-01-01",
            "gt2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00.123+01:00",
        ] {
            assert!(dates.is_match(v), "{v}");
            assert!(date(v, &["ge", "gt"]).is_ok(), "{v}");
        }
        assert!(!dates.is_match("le2026-01-01"));
    }
}
