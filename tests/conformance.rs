//! Conformance: every UK Core example in the corpus validates with no errors against the profile
//! it claims; deliberate mutations of those examples are caught at the mutated element; the
//! sample prison document validates against the prison profiles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use throughcare::config::FhirSettings;
use throughcare::fhir::outcome::{Issue, Severity};
use throughcare::validate::{ProfileSet, Validator};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "../shared/corpus is absent: in CI the conformance tests must run"
        );
        eprintln!("SKIPPED: ../shared/corpus is absent, so the conformance tests did not run");
        None
    }
}

fn validator() -> Option<&'static Validator> {
    static V: OnceLock<Option<Validator>> = OnceLock::new();
    V.get_or_init(|| {
        let corpus = corpus()?;
        let settings = FhirSettings {
            profiles_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles")),
            // The packages the gateway ships (built from the corpus by scripts/package-fhir.py):
            // the examples below hold them to the corpus.
            packages: [
                "hl7.fhir.r4.core",
                "uk.core.r4",
                "gpconnect.stu3",
                "itk3.stu3",
            ]
            .iter()
            .map(|p| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/packages")).join(p))
            .collect(),
            mappings_dir: PathBuf::from("mappings"),
            allow_missing_packages: false,
        };
        let _ = &corpus;
        let t = std::time::Instant::now();
        let v = Validator::load(&settings).unwrap();
        eprintln!("loaded in {:?}: {:?}", t.elapsed(), {
            let r = v.report();
            (
                r.profiles,
                r.value_sets,
                r.code_systems,
                r.missing_packages.clone(),
            )
        });
        for w in &v.report().warnings {
            eprintln!("load warning: {w}");
        }
        Some(v)
    })
    .as_ref()
}

fn errors(issues: &[Issue]) -> Vec<&Issue> {
    issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .collect()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn examples(corpus: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("uk-core-r4-json/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// UK Core examples that are invalid against their own profile: (file, the only expression with
/// errors, why). Each was checked by hand against the profile text.
const KNOWN_DEFECTS: &[(&str, &str, &str)] = &[(
    "Extension-UKCore-ConditionEpisode-Example.json",
    "Condition.extension[0].valueCode",
    "the extension carries both valueCode and valueCodeableConcept, and Extension-UKCore-ConditionEpisode \
     allows value[x] of type CodeableConcept only (ext value[x] is 0..1)",
)];

#[test]
fn every_uk_core_example_validates_without_errors_against_its_profile() {
    let (Some(corpus), Some(v)) = (corpus(), validator()) else {
        return;
    };
    let mut failures = Vec::new();
    let mut count = 0;
    let mut allowed = 0;
    let mut warnings: std::collections::BTreeMap<String, usize> = Default::default();
    for file in examples(&corpus) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let res = read(&file);
        let issues = v.validate(&res, None, ProfileSet::UkCore);
        count += 1;
        for w in issues.iter().filter(|i| i.severity == Severity::Warning) {
            let key = w.diagnostics.split(':').next().unwrap_or("").to_string();
            *warnings.entry(format!("[{}] {key}", w.code)).or_default() += 1;
        }
        let errs = errors(&issues);
        if let Some((_, expected, why)) = KNOWN_DEFECTS.iter().find(|(f, _, _)| *f == name) {
            // A genuine defect of the example: it must fail exactly there, and nowhere else.
            let at: Vec<&str> = errs
                .iter()
                .filter_map(|i| i.expression.as_deref())
                .collect();
            assert!(
                !at.is_empty() && at.iter().all(|e| e == expected),
                "{name} ({why}) should fail only at {expected}; got:\n{}",
                show(&issues)
            );
            allowed += 1;
            continue;
        }
        if !errs.is_empty() {
            failures.push(format!(
                "{}:\n{}",
                file.file_name().unwrap().to_string_lossy(),
                errs.iter()
                    .map(|i| format!(
                        "    {} [{}] {}",
                        i.expression.as_deref().unwrap_or("-"),
                        i.code,
                        i.diagnostics
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    eprintln!(
        "UK Core examples validated: {count}; without errors: {}; known corpus defects: {allowed}; unexpected errors: {}",
        count - allowed - failures.len(),
        failures.len()
    );
    eprintln!("warnings by kind: {warnings:#?}");
    assert!(
        failures.is_empty(),
        "examples with errors:\n{}",
        failures.join("\n")
    );
}

fn sample() -> Value {
    read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/release-bundle.json"
    )))
}

fn show(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| {
            format!(
                "  {} {} [{}] {}",
                i.severity.as_str(),
                i.expression.as_deref().unwrap_or("-"),
                i.code,
                i.diagnostics
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_sample_release_document_validates_against_the_prison_profiles() {
    let Some(v) = validator() else {
        return;
    };
    let issues = v.validate(&sample(), None, ProfileSet::Prison);
    eprintln!("sample issues:\n{}", show(&issues));
    assert!(errors(&issues).is_empty(), "errors:\n{}", show(&issues));
}

/// One deliberate defect: an example, an optional explicit profile, the change, and the
/// expression the error must name.
struct Mutation {
    file: &'static str,
    profile: Option<&'static str>,
    change: fn(&mut Value),
    expression: &'static str,
    what: &'static str,
}

fn at<'a>(v: &'a mut Value, pointer: &str) -> &'a mut Value {
    v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is not in the example"))
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() { v } else { at(v, parent) };
    match parent {
        Value::Object(o) => {
            assert!(o.remove(key).is_some(), "{pointer} is not in the example");
        }
        Value::Array(a) => {
            a.remove(key.parse().unwrap());
        }
        _ => panic!("{pointer} has no parent container"),
    }
}

const BP: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation-VitalSigns-BloodPressure";
const DR_LAB: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-DiagnosticReport-Lab";

fn mutations() -> Vec<Mutation> {
    use serde_json::json;
    vec![
        // Required elements removed.
        Mutation {
            file: "UKCore-AllergyIntolerance-Amoxicillin-Example.json",
            profile: None,
            change: |v| remove(v, "/patient"),
            expression: "AllergyIntolerance.patient",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Condition-BleedingFromEar-Example.json",
            profile: None,
            change: |v| remove(v, "/subject"),
            expression: "Condition.subject",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-MedicationRequest-Amoxicillin-Example.json",
            profile: None,
            change: |v| remove(v, "/status"),
            expression: "MedicationRequest.status",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-MedicationRequest-Amoxicillin-Example.json",
            profile: None,
            change: |v| remove(v, "/substitution"),
            expression: "MedicationRequest.substitution",
            what: "UK Core required (min 1) removed",
        },
        Mutation {
            file: "UKCore-Observation-FastingTest-Example.json",
            profile: None,
            change: |v| remove(v, "/code"),
            expression: "Observation.code",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Immunization-InfluenzaVaccine-Example.json",
            profile: None,
            change: |v| remove(v, "/vaccineCode"),
            expression: "Immunization.vaccineCode",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Encounter-InpatientEncounter-Example.json",
            profile: None,
            change: |v| remove(v, "/class"),
            expression: "Encounter.class",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Consent-ForInformationAccess-Example.json",
            profile: None,
            change: |v| remove(v, "/scope"),
            expression: "Consent.scope",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Flag-FoodAllergy-Example.json",
            profile: None,
            change: |v| remove(v, "/code"),
            expression: "Flag.code",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| remove(v, "/identifier/0/value"),
            expression: "Patient.identifier[0].value",
            what: "nested required (NHS number slice value) removed",
        },
        Mutation {
            file: "UKCore-Composition-Discharge-Example.json",
            profile: None,
            change: |v| remove(v, "/title"),
            expression: "Composition.title",
            what: "required removed",
        },
        Mutation {
            file: "UKCore-Observation-VitalSigns-BloodPressure-Example.json",
            profile: Some(BP),
            change: |v| remove(v, "/component/0"),
            expression: "Observation.component",
            what: "required slice removed",
        },
        // Wrong codes in required bindings.
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| *at(v, "/gender") = json!("blue"),
            expression: "Patient.gender",
            what: "code not in required ValueSet",
        },
        Mutation {
            file: "UKCore-MedicationRequest-Amoxicillin-Example.json",
            profile: None,
            change: |v| *at(v, "/status") = json!("finished"),
            expression: "MedicationRequest.status",
            what: "code not in required ValueSet",
        },
        Mutation {
            file: "UKCore-AllergyIntolerance-Amoxicillin-Example.json",
            profile: None,
            change: |v| *at(v, "/clinicalStatus/coding/0/code") = json!("gone"),
            expression: "AllergyIntolerance.clinicalStatus.coding[0].code",
            what: "coding not in required ValueSet",
        },
        Mutation {
            file: "UKCore-Condition-BleedingFromEar-Example.json",
            profile: None,
            change: |v| *at(v, "/verificationStatus/coding/0/code") = json!("maybe"),
            expression: "Condition.verificationStatus.coding[0].code",
            what: "coding not in required ValueSet",
        },
        Mutation {
            file: "UKCore-Observation-FastingTest-Example.json",
            profile: None,
            change: |v| *at(v, "/status") = json!("done"),
            expression: "Observation.status",
            what: "code not in required ValueSet",
        },
        Mutation {
            file: "UKCore-Encounter-InpatientEncounter-Example.json",
            profile: None,
            change: |v| *at(v, "/status") = json!("over"),
            expression: "Encounter.status",
            what: "code not in required ValueSet",
        },
        Mutation {
            file: "UKCore-Immunization-InfluenzaVaccine-Example.json",
            profile: None,
            change: |v| *at(v, "/status") = json!("given"),
            expression: "Immunization.status",
            what: "code not in required ValueSet",
        },
        Mutation {
            file: "UKCore-Communication-FirstMMRVaccination-Example.json",
            profile: None,
            change: |v| *at(v, "/status") = json!("sent"),
            expression: "Communication.status",
            what: "code not in required ValueSet",
        },
        Mutation {
            file: "UKCore-Bundle-Batch-Example.json",
            profile: None,
            change: |v| *at(v, "/type") = json!("pile"),
            expression: "Bundle.type",
            what: "code not in required ValueSet",
        },
        // Wrong datatypes.
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| *at(v, "/birthDate") = json!(19700911),
            expression: "Patient.birthDate",
            what: "number where a date is required",
        },
        Mutation {
            file: "UKCore-HealthcareService-OrthopaedicService-Example.json",
            profile: None,
            change: |v| *at(v, "/active") = json!("yes"),
            expression: "HealthcareService.active",
            what: "string where a boolean is required",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| {
                let n = at(v, "/name/0").clone();
                *at(v, "/name") = n;
            },
            expression: "Patient.name",
            what: "object where an array is required",
        },
        Mutation {
            file: "UKCore-Observation-FastingTest-Example.json",
            profile: None,
            change: |v| *at(v, "/valueQuantity/value") = json!("3.9"),
            expression: "Observation.valueQuantity.value",
            what: "string where a decimal is required",
        },
        Mutation {
            file: "UKCore-Immunization-InfluenzaVaccine-Example.json",
            profile: None,
            change: |v| *at(v, "/occurrenceDateTime") = json!("10/01/2013"),
            expression: "Immunization.occurrenceDateTime",
            what: "malformed dateTime",
        },
        Mutation {
            file: "UKCore-Schedule-Immunization-Example.json",
            profile: None,
            change: |v| *at(v, "/active") = json!(1),
            expression: "Schedule.active",
            what: "number where a boolean is required",
        },
        Mutation {
            file: "UKCore-CarePlan-WellnessPlan-Example.json",
            profile: None,
            change: |v| *at(v, "/subject") = json!("Patient/x"),
            expression: "CarePlan.subject",
            what: "string where a Reference is required",
        },
        Mutation {
            file: "UKCore-Encounter-InpatientEncounter-Example.json",
            profile: None,
            change: |v| *at(v, "/subject/reference") = json!("Organization/abc"),
            expression: "Encounter.subject.reference",
            what: "reference to a resource type the element does not allow",
        },
        // Cardinality broken.
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| {
                let id = at(v, "/identifier/0").clone();
                at(v, "/identifier").as_array_mut().unwrap().push(id);
            },
            expression: "Patient.identifier",
            what: "second NHS number (slice max 1)",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| {
                let e = at(v, "/extension/0").clone();
                at(v, "/extension").as_array_mut().unwrap().push(e);
            },
            expression: "Patient.extension",
            what: "second ethnic category (extension slice max 1)",
        },
        Mutation {
            file: "UKCore-Encounter-InpatientEncounter-Example.json",
            profile: None,
            change: |v| {
                let s = at(v, "/subject").clone();
                *at(v, "/subject") = json!([s.clone(), s]);
            },
            expression: "Encounter.subject",
            what: "second value for a 0..1 element",
        },
        Mutation {
            file: "UKCore-Observation-FastingTest-Example.json",
            profile: None,
            change: |v| {
                at(v, "")
                    .as_object_mut()
                    .unwrap()
                    .insert("valueString".into(), json!("3.9"));
            },
            expression: "Observation.value",
            what: "two types for one choice element",
        },
        // Slices violated.
        Mutation {
            file: "UKCore-Observation-VitalSigns-BloodPressure-Example.json",
            profile: Some(BP),
            change: |v| *at(v, "/component/1/code/text") = json!("Mean blood pressure"),
            expression: "Observation.component[1]",
            what: "item outside a closed slicing",
        },
        Mutation {
            file: "UKCore-DiagnosticReport-Lab-DiagnosticStudiesReport-Example.json",
            profile: Some(DR_LAB),
            change: |v| *at(v, "/category/0/coding/0/code") = json!("RAD"),
            expression: "DiagnosticReport.category",
            what: "required slice (laboratory) not matched",
        },
        Mutation {
            file: "UKCore-Observation-VitalSigns-BloodPressure-Example.json",
            profile: Some(BP),
            change: |v| *at(v, "/component/0/valueQuantity/code") = json!("kPa"),
            expression: "Observation.component[0].valueQuantity.code",
            what: "fixed value in a slice",
        },
        // Invariants and unknown content.
        Mutation {
            file: "UKCore-Encounter-InpatientEncounter-Example.json",
            profile: None,
            change: |v| *at(v, "/period/start") = json!("2019-12-12T13:00:00+00:00"),
            expression: "Encounter.period",
            what: "per-1: start after end",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| {
                at(v, "")
                    .as_object_mut()
                    .unwrap()
                    .insert("colour".into(), json!("blue"));
            },
            expression: "Patient.colour",
            what: "unknown element",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| {
                at(v, "/extension/0")
                    .as_object_mut()
                    .unwrap()
                    .insert("valueString".into(), json!("x"));
            },
            expression: "Patient.extension[0].valueString",
            what: "value type the extension definition does not allow",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| {
                at(v, "/extension/0").as_object_mut().unwrap().insert(
                    "extension".into(),
                    json!([{"url": "x", "valueString": "y"}]),
                );
            },
            expression: "Patient.extension[0]",
            what: "ext-1: both a value and extensions",
        },
        Mutation {
            file: "UKCore-Patient-RichardSmith-Example.json",
            profile: None,
            change: |v| *at(v, "/telecom/0/system") = json!("pager-fax"),
            expression: "Patient.telecom[0].system",
            what: "code not in required ValueSet inside a datatype",
        },
    ]
}

#[test]
fn deliberate_mutations_of_uk_core_examples_are_caught_at_the_mutated_element() {
    let (Some(corpus), Some(v)) = (corpus(), validator()) else {
        return;
    };
    let dir = corpus.join("uk-core-r4-json/examples");
    let mut missed = Vec::new();
    let all = mutations();
    for m in &all {
        let mut res = read(&dir.join(m.file));
        let before = v.validate(&res, m.profile, ProfileSet::UkCore);
        assert!(
            !errors(&before)
                .iter()
                .any(|i| i.expression.as_deref() == Some(m.expression)),
            "{} already has an error at {} before the mutation:\n{}",
            m.file,
            m.expression,
            show(&before)
        );
        (m.change)(&mut res);
        let after = v.validate(&res, m.profile, ProfileSet::UkCore);
        if !errors(&after)
            .iter()
            .any(|i| i.expression.as_deref() == Some(m.expression))
        {
            missed.push(format!(
                "{} ({}): no error at {}; got:\n{}",
                m.file,
                m.what,
                m.expression,
                show(&after)
            ));
        }
    }
    eprintln!(
        "mutations caught: {} of {}",
        all.len() - missed.len(),
        all.len()
    );
    assert!(all.len() >= 30);
    assert!(
        missed.is_empty(),
        "missed mutations:\n{}",
        missed.join("\n")
    );
}

#[test]
fn a_broken_release_document_fails_at_the_nhs_number_and_the_custody_event() {
    let Some(v) = validator() else {
        return;
    };
    use serde_json::json;
    let mut doc = sample();
    // Entry 1 is the Patient: drop the NHS number identifier.
    let ids = doc
        .pointer_mut("/entry/1/resource/identifier")
        .unwrap()
        .as_array_mut()
        .unwrap();
    ids.retain(|i| i["system"] != "https://fhir.nhs.uk/Id/nhs-number");
    // Entry 0 is the Composition: an event code outside the custody-event ValueSet.
    *doc.pointer_mut("/entry/0/resource/event/0/code/0/coding/0/code")
        .unwrap() = json!("parole");
    // A malformed prison number.
    *doc.pointer_mut("/entry/1/resource/identifier/0/value")
        .unwrap() = json!("12345");
    let issues = v.validate(&doc, None, ProfileSet::Prison);
    let at = |expr: &str| {
        errors(&issues)
            .iter()
            .any(|i| i.expression.as_deref() == Some(expr))
    };
    assert!(
        at("Bundle.entry[1].resource.identifier"),
        "NHS number slice:\n{}",
        show(&issues)
    );
    assert!(
        at("Bundle.entry[0].resource.event[0].code[0].coding[0].code"),
        "custody event:\n{}",
        show(&issues)
    );
    assert!(
        at("Bundle.entry[1].resource.identifier[0]"),
        "prison number format:\n{}",
        show(&issues)
    );
}

#[test]
fn a_release_document_with_an_invalid_nhs_number_check_digit_is_rejected() {
    let Some(v) = validator() else {
        return;
    };
    let mut doc = sample();
    *doc.pointer_mut("/entry/1/resource/identifier/0/value")
        .unwrap() = serde_json::json!("9990000019");
    let issues = v.validate(&doc, None, ProfileSet::Prison);
    assert!(
        errors(&issues).iter().any(|i| i.expression.as_deref()
            == Some("Bundle.entry[1].resource.identifier[0]")
            && i.diagnostics.contains("prison-pat-2")),
        "{}",
        show(&issues)
    );
}

/// A medium document (~60 resources) built from the sample: its clinical entries repeated.
fn medium_document() -> Value {
    let mut doc = sample();
    let entries = doc["entry"].as_array().unwrap().clone();
    let clinical: Vec<Value> = entries[5..].to_vec();
    let out = doc["entry"].as_array_mut().unwrap();
    let mut n = 0;
    while out.len() < 60 {
        let mut e = clinical[n % clinical.len()].clone();
        let id = format!("1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e{:04}", 2000 + n);
        e["fullUrl"] = Value::String(format!("urn:uuid:{id}"));
        e["resource"]["id"] = Value::String(id);
        out.push(e);
        n += 1;
    }
    doc
}

/// Validation speed on a medium document. Run in release:
/// `cargo test --release --test conformance -- --ignored --nocapture validation_speed`.
#[test]
#[ignore = "a measurement, not a check; run it in release"]
fn validation_speed_on_a_medium_document() {
    let Some(v) = validator() else {
        return;
    };
    let doc = medium_document();
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    let rounds = 2000u32;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        std::hint::black_box(parsed);
    }
    let parse = t.elapsed() / rounds;
    let t = std::time::Instant::now();
    let mut issues = 0;
    for _ in 0..rounds {
        issues += v.validate(&doc, None, ProfileSet::Prison).len();
    }
    let validate = t.elapsed() / rounds;
    eprintln!(
        "medium document: {} bytes, {} resources; serde_json parse {:?}; validate {:?} ({:.2}x parse); {} issues per run",
        bytes.len(),
        doc["entry"].as_array().unwrap().len() + 1,
        parse,
        validate,
        validate.as_secs_f64() / parse.as_secs_f64(),
        issues / rounds as usize
    );
}
