//! Routing (DESIGN §9): who should receive a document — the registered GP, the care-plan
//! performers, the receiving prison on transfer, and, when the person has no GP, the ICB for the
//! release area (flagged for GP registration).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::codes;
use crate::document::resolve;
use crate::domain::{CustodyEvent, OdsCode, Role, systems};
use crate::fhir::json::{array, get_str};
use crate::fhir::outcome::{Issue, Severity};
use crate::policy::{RecipientContext, Relationship};

/// One recipient of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub ods: OdsCode,
    pub role: Role,
    pub relationships: BTreeSet<Relationship>,
    /// The person has no GP: the ICB should arrange registration.
    pub needs_gp_registration: bool,
}

impl Route {
    pub fn context(&self) -> RecipientContext {
        RecipientContext {
            ods: self.ods.clone(),
            role: self.role,
            relationships: self.relationships.clone(),
        }
    }
}

/// The organisation directory, as routing asks it: the registered clients and endpoints, the
/// MoJ prison register for prison healthcare units, and the ICB for a release area. A
/// recipient's role and relationship come from here, never from what the document asserts.
pub trait Directory {
    /// The role of a known organisation: a registered client's, or `Prison` for an active prison
    /// healthcare unit on the register.
    fn role_of(&self, ods: &OdsCode) -> Option<Role>;
    /// Whether the directory knows the organisation at all (a registered client, an endpoint,
    /// or an active prison healthcare unit).
    fn is_known(&self, ods: &OdsCode) -> bool {
        self.role_of(ods).is_some()
    }
    /// Whether `ods` is an active prison healthcare unit on the prison register.
    fn is_prison_healthcare(&self, ods: &OdsCode) -> bool;
    /// The ICB responsible for a postcode.
    fn icb_for_postcode(&self, postcode: Option<&str>) -> Option<OdsCode>;
}

/// What routing makes of a document: its recipients, why it cannot be routed as it stands
/// (errors that refuse it at intake, each naming the element) and what the sender should hear.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub routes: Vec<Route>,
    /// An organisation named for routing with no exact ODS code, or in a role the directory does
    /// not hold it in: intake refuses the document (422).
    pub errors: Vec<Issue>,
    /// A care-plan performer unknown to the directory (routed with no role-based grant).
    pub warnings: Vec<Issue>,
}

/// The ICB responsible for a postcode: the longest matching prefix in `by_prefix` (spaces and
/// case ignored), else `default`.
pub fn icb_for_postcode(
    by_prefix: &std::collections::BTreeMap<String, OdsCode>,
    default: Option<&OdsCode>,
    postcode: Option<&str>,
) -> Option<OdsCode> {
    let normalised = postcode
        .map(|p| p.replace(' ', "").to_ascii_uppercase())
        .unwrap_or_default();
    by_prefix
        .iter()
        .filter(|(prefix, _)| {
            !prefix.is_empty() && normalised.starts_with(&prefix.to_ascii_uppercase())
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, icb)| icb.clone())
        .or_else(|| default.cloned())
}

fn ods_error(message: String, expression: String) -> Issue {
    Issue::error("value", message)
        .at(expression)
        .with_code(codes::ROUTING_ODS)
}

/// Every ODS identifier of a resource, with its index, compared exactly as written: each must be
/// an ODS code, and they must agree.
fn ods_identifiers(resource: &Value, path: &str) -> Result<Option<OdsCode>, Issue> {
    let mut found: Option<OdsCode> = None;
    for (j, id) in array(resource, "identifier").iter().enumerate() {
        if get_str(id, &["system"]) != Some(systems::ODS_ORGANISATION) {
            continue;
        }
        let expression = format!("{path}.identifier[{j}].value");
        let value = get_str(id, &["value"]).unwrap_or_default();
        let ods = OdsCode::parse(value).map_err(|e| ods_error(e, expression.clone()))?;
        if let Some(first) = &found
            && first != &ods
        {
            return Err(ods_error(
                format!("the organisation has two different ODS codes ({first} and {ods})"),
                expression,
            ));
        }
        found = Some(ods);
    }
    Ok(found)
}

/// The ODS code an organisation reference names: its `identifier` (ODS system) and the
/// Organization entry its `reference` resolves to, each read exactly as written and required to
/// agree. `Ok(None)`: the reference names nothing by ODS code (a Practitioner, for instance).
/// `path` is the reference's element, for the issue.
fn ods_of(entries: &[Value], reference: &Value, path: &str) -> Result<Option<OdsCode>, Issue> {
    let mut inline = None;
    if let Some(id) = reference.get("identifier")
        && get_str(id, &["system"]) == Some(systems::ODS_ORGANISATION)
    {
        let value = get_str(id, &["value"]).unwrap_or_default();
        inline =
            Some(OdsCode::parse(value).map_err(|e| {
                ods_error(format!("{path}: {e}"), format!("{path}.identifier.value"))
            })?);
    }
    let mut resolved = None;
    if let Some(r) = get_str(reference, &["reference"])
        && let Some((i, org)) = resolve(entries, r)
        && get_str(org, &["resourceType"]) == Some("Organization")
    {
        resolved =
            ods_identifiers(org, &format!("Bundle.entry[{i}].resource")).map_err(|mut issue| {
                issue.diagnostics = format!(
                    "{path} refers to an Organization whose ODS identifier does not hold: {}",
                    issue.diagnostics
                );
                issue
            })?;
    }
    match (inline, resolved) {
        (Some(a), Some(b)) if a != b => Err(ods_error(
            format!(
                "{path} names ODS code {a} in its identifier but refers to the Organization with ODS code {b}"
            ),
            format!("{path}.identifier.value"),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

fn add(routes: &mut Vec<Route>, ods: OdsCode, role: Role, rel: Option<Relationship>, flag: bool) {
    if let Some(r) = routes.iter_mut().find(|r| r.ods == ods) {
        r.relationships.extend(rel);
        r.needs_gp_registration |= flag;
    } else {
        routes.push(Route {
            ods,
            role,
            relationships: rel.into_iter().collect(),
            needs_gp_registration: flag,
        });
    }
}

/// The recipients of a document. `patient_entry` is the Patient's entry index; `sender` is never
/// a recipient. Roles come from the `directory`: the registered GP is a GP practice unless the
/// directory holds it as something else (refused); a care-plan performer has its directory role,
/// and one the directory does not know gets [`Role::Unknown`] and no relationship (a warning);
/// a transfer is routed only to an active prison healthcare unit on the register (anything else
/// is refused).
pub fn route(
    bundle: &Value,
    patient_entry: usize,
    event: CustodyEvent,
    sender: &OdsCode,
    directory: &dyn Directory,
) -> Routing {
    let entries = array(bundle, "entry");
    let mut out = Routing::default();
    let patient = entries.get(patient_entry).and_then(|e| e.get("resource"));
    let mut has_gp = false;
    if let Some(p) = patient {
        let gps = array(p, "generalPractitioner");
        let mut named = Vec::new();
        for (k, gp) in gps.iter().enumerate() {
            let path = format!("Bundle.entry[{patient_entry}].resource.generalPractitioner[{k}]");
            match ods_of(entries, gp, &path) {
                Err(issue) => out.errors.push(issue),
                Ok(None) => {}
                Ok(Some(ods)) => named.push((path, ods)),
            }
        }
        if !gps.is_empty() && named.is_empty() && out.errors.is_empty() {
            out.errors.push(
                Issue::error(
                    "required",
                    "Patient.generalPractitioner must name the registered practice by ODS code \
                     (identifier system https://fhir.nhs.uk/Id/ods-organization-code); leave it \
                     out when the person has no GP.",
                )
                .at(format!(
                    "Bundle.entry[{patient_entry}].resource.generalPractitioner"
                ))
                .with_code(codes::ROUTING_ODS),
            );
        }
        for (path, ods) in named {
            match directory.role_of(&ods) {
                Some(role) if role != Role::Gp => out.errors.push(
                    Issue::error(
                        "business-rule",
                        format!(
                            "{path} names {ods} as the registered GP practice, but the organisation \
                             directory holds {ods} as a {} organisation.",
                            role.as_str()
                        ),
                    )
                    .at(path)
                    .with_code(codes::ROUTING_DIRECTORY),
                ),
                _ => {
                    has_gp = true;
                    add(
                        &mut out.routes,
                        ods,
                        Role::Gp,
                        Some(Relationship::RegisteredGp),
                        false,
                    );
                }
            }
        }
    }
    let mut destinations: Vec<(String, OdsCode)> = Vec::new();
    let mut transfer_encounters: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(r) = e.get("resource") else { continue };
        match get_str(r, &["resourceType"]) {
            Some("CarePlan") => {
                for (a, activity) in array(r, "activity").iter().enumerate() {
                    let Some(detail) = activity.get("detail") else {
                        continue;
                    };
                    for (k, performer) in array(detail, "performer").iter().enumerate() {
                        let path = format!(
                            "Bundle.entry[{i}].resource.activity[{a}].detail.performer[{k}]"
                        );
                        match ods_of(entries, performer, &path) {
                            Err(issue) => out.errors.push(issue),
                            Ok(None) => {}
                            Ok(Some(ods)) if directory.is_known(&ods) => {
                                let role = directory.role_of(&ods).unwrap_or(Role::Service);
                                add(
                                    &mut out.routes,
                                    ods,
                                    role,
                                    Some(Relationship::CarePlanPerformer),
                                    false,
                                );
                            }
                            Ok(Some(ods)) => {
                                if &ods != sender {
                                    out.warnings.push(
                                        Issue::new(
                                            Severity::Warning,
                                            "business-rule",
                                            format!(
                                                "Care-plan performer {ods} is not in the organisation \
                                                 directory (registered clients, endpoints, prison \
                                                 register): it is granted nothing by role or as a \
                                                 care-plan performer, only what an agreement grants \
                                                 ODS code {ods}."
                                            ),
                                        )
                                        .at(path)
                                        .with_code(codes::ROUTING_UNKNOWN_PERFORMER),
                                    );
                                }
                                add(&mut out.routes, ods, Role::Unknown, None, false);
                            }
                        }
                    }
                }
            }
            Some("Encounter") if event == CustodyEvent::Transfer => {
                transfer_encounters.push(i);
                let Some(dest) = r.get("hospitalization").and_then(|h| h.get("destination")) else {
                    continue;
                };
                let path = format!("Bundle.entry[{i}].resource.hospitalization.destination");
                match ods_of(entries, dest, &path) {
                    Err(issue) => out.errors.push(issue),
                    Ok(None) => {}
                    Ok(Some(ods)) => destinations.push((path, ods)),
                }
            }
            _ => {}
        }
    }
    if event == CustodyEvent::Transfer {
        route_transfer(&mut out, destinations, &transfer_encounters, directory);
    }
    let releasing = matches!(
        event,
        CustodyEvent::PreRelease | CustodyEvent::Release | CustodyEvent::CourtRelease
    );
    if releasing && !has_gp && out.errors.is_empty() {
        let postcode = patient
            .and_then(|p| array(p, "address").first())
            .and_then(|a| get_str(a, &["postalCode"]));
        if let Some(icb) = directory.icb_for_postcode(postcode) {
            add(
                &mut out.routes,
                icb,
                Role::Icb,
                Some(Relationship::ReleaseAreaIcb),
                true,
            );
        }
    }
    out.routes.retain(|r| &r.ods != sender);
    out
}

/// The receiving prison of a transfer: exactly one destination, an active prison healthcare
/// unit on the register. Anything else refuses the document; nothing is routed as a prison on
/// the document's word.
fn route_transfer(
    out: &mut Routing,
    destinations: Vec<(String, OdsCode)>,
    encounters: &[usize],
    directory: &dyn Directory,
) {
    if destinations.is_empty() {
        if out.errors.is_empty() {
            let at = match encounters.first() {
                Some(i) => format!("Bundle.entry[{i}].resource.hospitalization.destination"),
                None => "Bundle.entry".to_string(),
            };
            out.errors.push(
                Issue::error(
                    "required",
                    "A transfer names the receiving prison's healthcare Organization by ODS code \
                     in Encounter.hospitalization.destination.",
                )
                .at(at)
                .with_code(codes::ROUTING_ODS),
            );
        }
        return;
    }
    let first = destinations[0].1.clone();
    for (path, ods) in &destinations {
        if ods != &first {
            out.errors.push(
                Issue::error(
                    "business-rule",
                    format!(
                        "A transfer has one receiving prison; the document names {first} and {ods}."
                    ),
                )
                .at(path.clone())
                .with_code(codes::ROUTING_DIRECTORY),
            );
            return;
        }
    }
    let (path, ods) = &destinations[0];
    if directory.is_prison_healthcare(ods) {
        add(
            &mut out.routes,
            ods.clone(),
            Role::Prison,
            Some(Relationship::ReceivingPrison),
            false,
        );
    } else {
        out.errors.push(
            Issue::error(
                "business-rule",
                format!(
                    "The transfer destination {ods} is not an active prison healthcare unit on \
                     the prison register: a transfer is routed only to one, never to an \
                     organisation the document says is a prison."
                ),
            )
            .at(path.clone())
            .with_code(codes::ROUTING_DIRECTORY),
        );
    }
}

/// The receiving prison a routing established (a transfer's destination, when routed).
pub fn receiving_prison(routes: &[Route]) -> Option<&OdsCode> {
    routes
        .iter()
        .find(|r| r.relationships.contains(&Relationship::ReceivingPrison))
        .map(|r| &r.ods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Registered clients: A99001 (GP), X99001 (service); on the register: Y02307 and Y03193
    /// active, Y03175 not active.
    struct Fake;

    impl Directory for Fake {
        fn role_of(&self, ods: &OdsCode) -> Option<Role> {
            match ods.as_str() {
                "A99001" => Some(Role::Gp),
                "X99001" => Some(Role::Service),
                "Y02307" | "Y03193" => Some(Role::Prison),
                _ => None,
            }
        }

        fn is_prison_healthcare(&self, ods: &OdsCode) -> bool {
            matches!(ods.as_str(), "Y02307" | "Y03193")
        }

        fn icb_for_postcode(&self, _: Option<&str>) -> Option<OdsCode> {
            OdsCode::parse("Q99").ok()
        }
    }

    fn ods_ref(value: &str) -> Value {
        json!({"identifier": {"system": systems::ODS_ORGANISATION, "value": value}})
    }

    /// A document: Composition, Patient (GPs), CarePlan (performers), Encounter (a transfer
    /// destination when given), Organization X99001.
    fn document(gps: Vec<Value>, performers: Vec<Value>, destination: Option<Value>) -> Value {
        let mut encounter = json!({"resourceType": "Encounter"});
        if let Some(d) = destination {
            encounter["hospitalization"] = json!({"destination": d});
        }
        json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Composition"}},
            {"resource": {"resourceType": "Patient", "generalPractitioner": gps}},
            {"resource": {"resourceType": "CarePlan", "activity": [{"detail": {"performer": performers}}]}},
            {"resource": encounter},
            {"fullUrl": "urn:uuid:org-x", "resource": {"resourceType": "Organization",
                "identifier": [{"system": systems::ODS_ORGANISATION, "value": "X99001"}]}}
        ]})
    }

    fn route_of(doc: &Value, event: CustodyEvent) -> Routing {
        route(doc, 1, event, &OdsCode::parse("Y02307").unwrap(), &Fake)
    }

    fn expressions(issues: &[Issue]) -> Vec<String> {
        issues.iter().filter_map(|i| i.expression.clone()).collect()
    }

    #[test]
    fn look_alike_ods_codes_refuse_the_document_naming_the_element() {
        // Cyrillic А (U+0410) in the GP's code: refused, never dropped (the ICB would get it).
        let doc = document(vec![ods_ref("\u{0410}99001")], vec![], None);
        let r = route_of(&doc, CustodyEvent::Release);
        assert_eq!(
            expressions(&r.errors),
            vec!["Bundle.entry[1].resource.generalPractitioner[0].identifier.value"]
        );
        assert_eq!(r.errors[0].gateway_code, Some(codes::ROUTING_ODS));
        assert!(r.routes.iter().all(|x| x.role != Role::Icb), "{r:?}");

        // Cyrillic Х (U+0425) in a performer's code.
        let doc = document(
            vec![ods_ref("A99001")],
            vec![ods_ref("\u{0425}99001")],
            None,
        );
        let r = route_of(&doc, CustodyEvent::Release);
        assert_eq!(
            expressions(&r.errors),
            vec!["Bundle.entry[2].resource.activity[0].detail.performer[0].identifier.value"]
        );

        // In the Organization a performer refers to.
        let mut doc = document(
            vec![ods_ref("A99001")],
            vec![json!({"reference": "urn:uuid:org-x"})],
            None,
        );
        doc["entry"][4]["resource"]["identifier"][0]["value"] = json!("X99001 ");
        let r = route_of(&doc, CustodyEvent::Release);
        assert_eq!(
            expressions(&r.errors),
            vec!["Bundle.entry[4].resource.identifier[0].value"]
        );
        assert!(r.errors[0].diagnostics.contains("performer[0]"), "{r:?}");

        // An identifier and the Organization it refers to that disagree.
        let mut performer = ods_ref("X99002");
        performer["reference"] = json!("urn:uuid:org-x");
        let doc = document(vec![ods_ref("A99001")], vec![performer], None);
        let r = route_of(&doc, CustodyEvent::Release);
        assert_eq!(r.errors.len(), 1, "{r:?}");
    }

    #[test]
    fn a_general_practitioner_without_an_ods_code_is_refused_not_routed_to_the_icb() {
        // A look-alike identifier system: no ODS code at all.
        let gp = json!({"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organisation-code", "value": "A99001"}});
        let r = route_of(&document(vec![gp], vec![], None), CustodyEvent::Release);
        assert_eq!(
            expressions(&r.errors),
            vec!["Bundle.entry[1].resource.generalPractitioner"]
        );
        assert!(r.routes.is_empty(), "{r:?}");
        // No GP at all: the release-area ICB, flagged.
        let r = route_of(&document(vec![], vec![], None), CustodyEvent::Release);
        assert!(r.errors.is_empty());
        assert_eq!(r.routes[0].role, Role::Icb);
        assert!(r.routes[0].needs_gp_registration);
    }

    #[test]
    fn a_registered_gp_the_directory_holds_as_something_else_is_refused() {
        let r = route_of(
            &document(vec![ods_ref("X99001")], vec![], None),
            CustodyEvent::Release,
        );
        assert_eq!(
            expressions(&r.errors),
            vec!["Bundle.entry[1].resource.generalPractitioner[0]"]
        );
        assert_eq!(r.errors[0].gateway_code, Some(codes::ROUTING_DIRECTORY));
    }

    #[test]
    fn a_performer_unknown_to_the_directory_has_no_role_and_no_relationship_and_is_named() {
        let doc = document(
            vec![ods_ref("A99001")],
            vec![ods_ref("X99001"), ods_ref("X99077")],
            None,
        );
        let r = route_of(&doc, CustodyEvent::Release);
        assert!(r.errors.is_empty(), "{r:?}");
        let known = r
            .routes
            .iter()
            .find(|x| x.ods.as_str() == "X99001")
            .unwrap();
        assert_eq!(known.role, Role::Service);
        assert!(
            known
                .relationships
                .contains(&Relationship::CarePlanPerformer)
        );
        let unknown = r
            .routes
            .iter()
            .find(|x| x.ods.as_str() == "X99077")
            .unwrap();
        assert_eq!(unknown.role, Role::Unknown);
        assert!(unknown.relationships.is_empty(), "{unknown:?}");
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].diagnostics.contains("X99077"));
        assert_eq!(
            r.warnings[0].expression.as_deref(),
            Some("Bundle.entry[2].resource.activity[0].detail.performer[1]")
        );
    }

    #[test]
    fn a_transfer_is_routed_only_to_an_active_prison_healthcare_unit() {
        let transfer = |d: Option<Value>| {
            route_of(
                &document(vec![ods_ref("A99001")], vec![], d),
                CustodyEvent::Transfer,
            )
        };
        let r = transfer(Some(ods_ref("Y03193")));
        assert!(r.errors.is_empty(), "{r:?}");
        let prison = r.routes.iter().find(|x| x.role == Role::Prison).unwrap();
        assert_eq!(prison.ods.as_str(), "Y03193");
        assert_eq!(
            receiving_prison(&r.routes).map(OdsCode::as_str),
            Some("Y03193")
        );

        for not_a_prison in ["X99001", "Y03175", "Z99999"] {
            let r = transfer(Some(ods_ref(not_a_prison)));
            assert_eq!(
                expressions(&r.errors),
                vec!["Bundle.entry[3].resource.hospitalization.destination"],
                "{not_a_prison}"
            );
            assert_eq!(r.errors[0].gateway_code, Some(codes::ROUTING_DIRECTORY));
            assert!(
                receiving_prison(&r.routes).is_none(),
                "{not_a_prison}: {r:?}"
            );
        }
        let r = transfer(Some(ods_ref("Y0319\u{0417}")));
        assert_eq!(r.errors[0].gateway_code, Some(codes::ROUTING_ODS));
        let r = transfer(None);
        assert_eq!(r.errors.len(), 1, "a transfer names its destination: {r:?}");
        assert!(receiving_prison(&r.routes).is_none());
    }
}
