//! Validator tests. Most need the FHIR packages from the shared corpus and are skipped, loudly,
//! when it is absent; the prison profiles and their terminology are always available.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;

fn profiles_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"))
}

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "../shared/corpus is absent: in CI the validator tests must run"
        );
        eprintln!("SKIPPED: ../shared/corpus is absent, so this validator test did not run");
        None
    }
}

fn settings(packages: Vec<PathBuf>) -> FhirSettings {
    FhirSettings {
        profiles_dir: profiles_dir(),
        packages,
        mappings_dir: PathBuf::from("mappings"),
        allow_missing_packages: false,
    }
}

/// One validator over the prison profiles and the three corpus packages, shared by the tests.
fn full() -> Option<&'static Validator> {
    static V: OnceLock<Option<Validator>> = OnceLock::new();
    V.get_or_init(|| {
        let c = corpus()?;
        let packages = ["fhir-r4-core", "uk-core-r4-json", "gpconnect-stu3-json"]
            .iter()
            .map(|p| c.join(p))
            .collect();
        Some(Validator::load(&settings(packages)).unwrap())
    })
    .as_ref()
}

fn errors_at(issues: &[Issue], expr: &str) -> usize {
    issues
        .iter()
        .filter(|i| i.severity == Severity::Error && i.expression.as_deref() == Some(expr))
        .count()
}

fn no_errors(issues: &[Issue]) -> bool {
    issues.iter().all(|i| i.severity != Severity::Error)
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{
            "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01",
                    "display": "Number present and verified"
                }]}
            }],
            "system": "https://fhir.nhs.uk/Id/nhs-number",
            "value": "9990000018"
        }],
        "name": [{"family": "TESTPATIENT", "given": ["Alex"]}],
        "birthDate": "1988-03-14"
    })
}

#[test]
fn a_prison_patient_nhs_number_carries_its_verification_status() {
    let Some(v) = full() else {
        return;
    };
    assert!(no_errors(&v.validate(&patient(), None, ProfileSet::Prison)));
    let mut p = patient();
    p["identifier"][0]
        .as_object_mut()
        .unwrap()
        .remove("extension");
    let issues = v.validate(&p, None, ProfileSet::Prison);
    assert!(
        issues
            .iter()
            .any(|i| i.diagnostics.starts_with("prison-pat-3")
                && i.expression.as_deref() == Some("Patient.identifier[0]")),
        "{issues:?}"
    );
    // UK Core itself does not require it.
    assert!(no_errors(&v.validate(&p, None, ProfileSet::UkCore)));
}

#[test]
fn the_validator_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Validator>();
}

#[test]
fn missing_package_folders_are_reported_and_the_gateway_still_starts() {
    let missing = PathBuf::from("/nonexistent/fhir-r4-core");
    let v = Validator::load(&settings(vec![missing.clone()])).unwrap();
    assert_eq!(v.report().missing_packages, vec![missing]);
    // Our terminology is still there, and resources are accepted with a warning, not rejected.
    assert_eq!(v.report().code_systems, 2);
    let issues = v.validate(&patient(), None, ProfileSet::Prison);
    assert!(no_errors(&issues), "{issues:?}");
    assert!(
        issues.iter().any(|i| i.code == "not-supported"),
        "{issues:?}"
    );
}

#[test]
fn the_custody_event_value_set_expands_to_its_five_codes() {
    let v = Validator::load(&settings(Vec::new())).unwrap();
    let e = v
        .expand_codes("https://throughcare.example.org/fhir/ValueSet/custody-event|0.1.0")
        .unwrap();
    let codes: Vec<&str> = e.concepts().iter().map(|c| c.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "pre-release",
            "release",
            "court-release",
            "transfer",
            "reception"
        ]
    );
    assert!(e.contains(
        Some("https://throughcare.example.org/fhir/CodeSystem/custody-event"),
        "release"
    ));
}

#[test]
fn every_prison_profile_compiles_onto_uk_core() {
    let Some(v) = full() else {
        return;
    };
    for name in [
        "prison-document-bundle",
        "prison-composition",
        "prison-patient",
        "prison-encounter",
        "prison-careplan",
        "prison-medicationrequest",
        "prison-medicationstatement",
        "prison-condition",
        "prison-allergyintolerance",
        "prison-flag",
        "prison-consent",
        "custody-cell-location",
        "custody-security-category",
        "custody-offence-note",
        "custody-establishment",
    ] {
        assert!(
            v.has_profile(&format!("{PRISON_SD_BASE}{name}")),
            "{name} did not compile"
        );
    }
    let compile_warnings: Vec<&String> = v
        .report()
        .warnings
        .iter()
        .filter(|w| w.contains("throughcare") || w.contains("UKCore"))
        .collect();
    assert!(compile_warnings.is_empty(), "{compile_warnings:?}");
}

#[test]
fn default_profiles_are_prison_first_then_uk_core() {
    let Some(v) = full() else {
        return;
    };
    let prison = |t| v.default_profile(ProfileSet::Prison, t);
    assert_eq!(
        prison("Patient"),
        Some(format!("{PRISON_SD_BASE}prison-patient").as_str())
    );
    assert_eq!(
        prison("Bundle"),
        Some(format!("{PRISON_SD_BASE}prison-document-bundle").as_str())
    );
    assert_eq!(
        prison("Organization"),
        Some(format!("{UK_CORE_SD_BASE}UKCore-Organization").as_str())
    );
    assert_eq!(
        v.default_profile(ProfileSet::UkCore, "Patient"),
        Some(format!("{UK_CORE_SD_BASE}UKCore-Patient").as_str())
    );
    assert!(
        v.default_profile(ProfileSet::GpConnect, "Patient")
            .is_some_and(|u| u.contains("GPC"))
    );
    assert_eq!(v.default_profile(ProfileSet::Base, "Patient"), None);
}

#[test]
fn an_unknown_explicit_profile_is_a_warning_and_the_base_still_applies() {
    let Some(v) = full() else {
        return;
    };
    let mut p = patient();
    p["gender"] = json!("blue");
    let issues = v.validate(
        &p,
        Some("http://example.org/StructureDefinition/nope"),
        ProfileSet::Base,
    );
    assert!(
        issues
            .iter()
            .any(|i| i.severity == Severity::Warning && i.code == "not-found")
    );
    assert_eq!(errors_at(&issues, "Patient.gender"), 1, "{issues:?}");
}

#[test]
fn a_versioned_profile_url_means_the_unversioned_profile() {
    let Some(v) = full() else {
        return;
    };
    let url = format!("{UK_CORE_SD_BASE}UKCore-Patient|2.6.1");
    assert!(v.has_profile(&url));
    let issues = v.validate(&patient(), Some(&url), ProfileSet::Base);
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn the_prison_number_must_have_the_nomis_format() {
    let Some(v) = full() else {
        return;
    };
    let mut p = patient();
    p["identifier"].as_array_mut().unwrap().push(json!({
        "system": "https://throughcare.example.org/fhir/Id/prison-number", "value": "A1234BC"
    }));
    assert!(no_errors(&v.validate(&p, None, ProfileSet::Prison)));
    p["identifier"][1]["value"] = json!("A1234B");
    let issues = v.validate(&p, None, ProfileSet::Prison);
    assert_eq!(errors_at(&issues, "Patient.identifier[1]"), 1, "{issues:?}");
}

#[test]
fn custody_extensions_resolve_and_their_value_types_are_checked() {
    let Some(v) = full() else {
        return;
    };
    let url = format!("{PRISON_SD_BASE}custody-cell-location");
    let mut p = patient();
    p["extension"] = json!([{"url": url, "valueString": "HB2-3-014"}]);
    let issues = v.validate(&p, None, ProfileSet::Prison);
    assert!(issues.is_empty(), "{issues:?}");
    p["extension"] = json!([{"url": url, "valueBoolean": true}]);
    let issues = v.validate(&p, None, ProfileSet::Prison);
    assert_eq!(
        errors_at(&issues, "Patient.extension[0].valueBoolean"),
        1,
        "{issues:?}"
    );
    // Extension.extension is 0..0 in the custody extensions.
    p["extension"] = json!([{"url": url, "extension": [{"url": "a", "valueString": "b"}]}]);
    let issues = v.validate(&p, None, ProfileSet::Prison);
    assert!(
        errors_at(&issues, "Patient.extension[0].extension") >= 1,
        "{issues:?}"
    );
}

#[test]
fn an_unknown_extension_is_a_warning_when_extensions_are_open() {
    let Some(v) = full() else {
        return;
    };
    let mut p = patient();
    p["extension"] = json!([{"url": "http://example.org/ext/unknown", "valueString": "x"}]);
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert!(no_errors(&issues), "{issues:?}");
    assert!(
        issues
            .iter()
            .any(|i| i.code == "extension"
                && i.expression.as_deref() == Some("Patient.extension[0]"))
    );
    p["modifierExtension"] = p["extension"].clone();
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert_eq!(
        errors_at(&issues, "Patient.modifierExtension[0]"),
        1,
        "{issues:?}"
    );
}

#[test]
fn extensions_on_primitives_are_validated_through_the_underscore_property() {
    let Some(v) = full() else {
        return;
    };
    let mut p = patient();
    p["_birthDate"] = json!({"extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
        "valueDateTime": "1988-03-14T07:30:00+00:00"
    }]});
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert!(no_errors(&issues), "{issues:?}");
    p["_birthDate"] = json!({"id": "only-an-id"});
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert_eq!(errors_at(&issues, "Patient.birthDate"), 1, "{issues:?}");
}

#[test]
fn contained_resources_are_validated_and_must_be_referenced() {
    let Some(v) = full() else {
        return;
    };
    let mut p = patient();
    p["contained"] =
        json!([{"resourceType": "Organization", "id": "gp", "name": "GP", "active": "yes"}]);
    p["managingOrganization"] = json!({"reference": "#gp"});
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert_eq!(
        errors_at(&issues, "Patient.contained[0].active"),
        1,
        "{issues:?}"
    );
    p["contained"][0]["active"] = json!(true);
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert!(no_errors(&issues), "{issues:?}");
    p.as_object_mut().unwrap().remove("managingOrganization");
    let issues = v.validate(&p, None, ProfileSet::UkCore);
    assert!(
        issues
            .iter()
            .any(|i| i.diagnostics.starts_with("dom-3")
                && i.expression.as_deref() == Some("Patient")),
        "{issues:?}"
    );
}

#[test]
fn gp_connect_stu3_profiles_are_applied_as_far_as_their_snapshots_go() {
    let Some(v) = full() else {
        return;
    };
    let p = json!({"resourceType": "Patient", "colour": "blue"});
    let issues = v.validate(&p, None, ProfileSet::GpConnect);
    assert_eq!(errors_at(&issues, "Patient.colour"), 1, "{issues:?}");
}

#[test]
fn a_resource_that_is_not_an_object_or_has_no_type_is_a_structure_error() {
    let Some(v) = full() else {
        return;
    };
    let issues = v.validate(&json!({"id": "x"}), None, ProfileSet::Base);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].code, "structure");
    let issues = v.validate(
        &json!({"resourceType": "Spaceship"}),
        None,
        ProfileSet::Base,
    );
    assert_eq!(errors_at(&issues, "Spaceship"), 1, "{issues:?}");
}
