//! Routing (DESIGN §9): who should receive a document — the registered GP, the care-plan
//! performers, the receiving prison on transfer, and, when the person has no GP, the ICB for the
//! release area (flagged for GP registration).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::document::resolve;
use crate::domain::{CustodyEvent, OdsCode, Role, systems};
use crate::fhir::json::{array, get_str, identifier_value};
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

/// How to find the ICB for a release area, and the roles of known organisations.
pub trait Directory {
    /// The role of a known organisation (registered client or endpoint).
    fn role_of(&self, ods: &OdsCode) -> Option<Role>;
    /// The ICB responsible for a postcode.
    fn icb_for_postcode(&self, postcode: Option<&str>) -> Option<OdsCode>;
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

fn ods_of(entries: &[Value], reference: &Value) -> Option<OdsCode> {
    if let Some(id) = reference.get("identifier")
        && get_str(id, &["system"]) == Some(systems::ODS_ORGANISATION)
        && let Some(v) = get_str(id, &["value"])
    {
        return OdsCode::parse(v).ok();
    }
    let r = get_str(reference, &["reference"])?;
    let (_, org) = resolve(entries, r)?;
    let (_, v) = identifier_value(org, systems::ODS_ORGANISATION)?;
    OdsCode::parse(v).ok()
}

fn add(routes: &mut Vec<Route>, ods: OdsCode, role: Role, rel: Relationship, flag: bool) {
    if let Some(r) = routes.iter_mut().find(|r| r.ods == ods) {
        r.relationships.insert(rel);
        r.needs_gp_registration |= flag;
    } else {
        routes.push(Route {
            ods,
            role,
            relationships: BTreeSet::from([rel]),
            needs_gp_registration: flag,
        });
    }
}

/// The recipients of a document. `patient_entry` is the Patient's entry index; `sender` is never
/// a recipient.
pub fn route(
    bundle: &Value,
    patient_entry: usize,
    event: CustodyEvent,
    sender: &OdsCode,
    directory: &dyn Directory,
) -> Vec<Route> {
    let entries = array(bundle, "entry");
    let mut routes = Vec::new();
    let patient = entries.get(patient_entry).and_then(|e| e.get("resource"));
    let mut has_gp = false;
    if let Some(p) = patient {
        for gp in array(p, "generalPractitioner") {
            if let Some(ods) = ods_of(entries, gp) {
                has_gp = true;
                add(
                    &mut routes,
                    ods,
                    Role::Gp,
                    Relationship::RegisteredGp,
                    false,
                );
            }
        }
    }
    for e in entries {
        let Some(r) = e.get("resource") else { continue };
        match get_str(r, &["resourceType"]) {
            Some("CarePlan") => {
                for activity in array(r, "activity") {
                    let Some(detail) = activity.get("detail") else {
                        continue;
                    };
                    for performer in array(detail, "performer") {
                        if let Some(ods) = ods_of(entries, performer) {
                            let role = directory.role_of(&ods).unwrap_or(Role::Service);
                            add(
                                &mut routes,
                                ods,
                                role,
                                Relationship::CarePlanPerformer,
                                false,
                            );
                        }
                    }
                }
            }
            Some("Encounter") if event == CustodyEvent::Transfer => {
                if let Some(dest) = r.get("hospitalization").and_then(|h| h.get("destination"))
                    && let Some(ods) = ods_of(entries, dest)
                {
                    add(
                        &mut routes,
                        ods,
                        Role::Prison,
                        Relationship::ReceivingPrison,
                        false,
                    );
                }
            }
            _ => {}
        }
    }
    let releasing = matches!(
        event,
        CustodyEvent::PreRelease | CustodyEvent::Release | CustodyEvent::CourtRelease
    );
    if releasing && !has_gp {
        let postcode = patient
            .and_then(|p| array(p, "address").first())
            .and_then(|a| get_str(a, &["postalCode"]));
        if let Some(icb) = directory.icb_for_postcode(postcode) {
            add(
                &mut routes,
                icb,
                Role::Icb,
                Relationship::ReleaseAreaIcb,
                true,
            );
        }
    }
    routes.retain(|r| &r.ods != sender);
    routes
}
