//! Translation tests: the golden-file runner over `tests/golden/<mapping>/<case>/`, the
//! lossless-decimal check, the GP Connect structured-record shape, reception of every GP Connect
//! structured-record example in the corpus, `$translate`, and a timing probe (ignored).
//!
//! Golden cases: `input.json`, `expected.json` (the translated document) and
//! `expected-losses.json` (the loss report). Every input validates against its own profiles
//! (prison, or GP Connect) and every output against its target's, with the corpus packages
//! loaded; a case about malformed input lists the defects it carries on purpose in
//! `expected-input-errors.json` (`"expression: message"` strings, in validator order). `UPDATE_GOLDEN=1 cargo test --test translate`
//! rewrites the expected files from the current output; review the diff before committing.
//! All patient data in the cases is synthetic (NHS numbers in the 999 test range).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use throughcare::config::FhirSettings;
use throughcare::fhir::outcome::Severity;
use throughcare::translate::{
    ConceptTranslateRequest, Loss, Source, Target, Translation, Translator,
};
use throughcare::validate::{ProfileSet, Validator};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");
const MIN_CASES: usize = 5;

/// The resource types of the prison document (DESIGN §5a) that every mapping's cases cover.
const SECTION_5A: &[&str] = &[
    "Patient",
    "Organization",
    "Practitioner",
    "Encounter",
    "CarePlan",
    "MedicationRequest",
    "MedicationStatement",
    "Medication",
    "Condition",
    "AllergyIntolerance",
    "Flag",
    "Appointment",
];

fn translator() -> Translator {
    Translator::load(&Path::new(MANIFEST).join("mappings")).expect("mappings/ loads")
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &Value) {
    let mut text = serde_json::to_string_pretty(v).unwrap();
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn losses_json(losses: &[Loss]) -> Value {
    serde_json::to_value(losses).unwrap()
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The validator over `profiles/` and the corpus packages, loaded once; `None` (and a loud
/// notice) where the corpus is absent.
fn validator() -> Option<&'static Validator> {
    static V: OnceLock<Option<Validator>> = OnceLock::new();
    V.get_or_init(|| {
        let corpus = Path::new(CORPUS);
        if !corpus.is_dir() {
            assert!(
                std::env::var("CI").is_err(),
                "{CORPUS} is absent: in CI the translated outputs must be validated"
            );
            eprintln!(
                "SKIPPED: {CORPUS} is absent; translated outputs are checked with the typed model only, not against their target profiles"
            );
            return None;
        }
        let settings = FhirSettings {
            profiles_dir: Path::new(MANIFEST).join("profiles"),
            packages: ["hl7.fhir.r4.core", "uk.core.r4", "gpconnect.stu3", "itk3.stu3"]
                .iter()
                .map(|p| Path::new(MANIFEST).join("packages").join(p))
                .collect(),
            mappings_dir: Path::new(MANIFEST).join("mappings"),
            allow_missing_packages: false,
        };
        let _ = &corpus;
        Some(Validator::load(&settings).expect("profiles and packages load"))
    })
    .as_ref()
}

/// The profile set a target's documents are checked against.
fn profile_set(target: Target) -> ProfileSet {
    match target {
        Target::UkCoreR4 => ProfileSet::UkCore,
        Target::GpConnectStu3 => ProfileSet::GpConnect,
        Target::Prison => ProfileSet::Prison,
        Target::ItkEdischargeStu3 => ProfileSet::Itk,
    }
}

/// What is wrong with a translated document for its target: it must parse with the typed FHIR
/// model of the target version (fhir-sdk, through fhir-io), and validate without errors against
/// the target's profiles (`profiles/` and the UK Core / GP Connect packages).
fn validation_errors(target: Target, output: &Value) -> Vec<String> {
    let bytes = serde_json::to_vec(output).unwrap();
    let checked = match target {
        Target::GpConnectStu3 | Target::ItkEdischargeStu3 => fhir_io::check_stu3_bundle(&bytes),
        Target::UkCoreR4 | Target::Prison => fhir_io::check_r4_bundle(&bytes),
    };
    let mut out = Vec::new();
    if let Err(e) = checked {
        out.push(format!("does not parse with the typed {target} model: {e}"));
    }
    if let Some(v) = validator() {
        for i in v.validate(output, None, profile_set(target)) {
            if i.severity == Severity::Error {
                out.push(format!(
                    "{}: {}",
                    i.expression.as_deref().unwrap_or("-"),
                    i.diagnostics
                ));
            }
        }
    }
    out
}

fn assert_validates(target: Target, output: &Value, what: &str) {
    let errors = validation_errors(target, output);
    assert!(
        errors.is_empty(),
        "{what}: the {target} output does not validate:\n  {}",
        errors.join("\n  ")
    );
}

/// GP Connect structured-record shape, as in the corpus examples: a `collection` Bundle with
/// the structured-record profile, a Patient, and Lists coded with SNOMED CT list codes whose
/// entries all refer to resources present in the Bundle.
fn assert_structured_record_shape(output: &Value, what: &str) {
    assert_eq!(output["resourceType"], "Bundle", "{what}");
    assert_eq!(output["type"], "collection", "{what}");
    assert_eq!(
        output["meta"]["profile"][0],
        "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1",
        "{what}"
    );
    let entries = output["entry"].as_array().expect("entries");
    let mut present = HashSet::new();
    for e in entries {
        let r = &e["resource"];
        present.insert(format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().expect("every resource has an id")
        ));
        assert!(
            e.get("fullUrl").is_none(),
            "{what}: GP Connect entries have no fullUrl"
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["resourceType"] == "Patient"),
        "{what}: a structured record holds its Patient"
    );
    let lists: Vec<&Value> = entries
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "List")
        .collect();
    assert!(!lists.is_empty(), "{what}: a structured record has Lists");
    for l in lists {
        assert_eq!(l["status"], "current", "{what}");
        assert_eq!(l["mode"], "snapshot", "{what}");
        assert_eq!(
            l["meta"]["profile"][0],
            "https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-List-1"
        );
        let coding = &l["code"]["coding"][0];
        assert_eq!(
            coding["system"], "http://snomed.info/sct",
            "{what}: list code system"
        );
        assert!(coding["code"].is_string(), "{what}: list code");
        assert!(
            l["subject"]["reference"]
                .as_str()
                .is_some_and(|r| present.contains(r))
        );
        for item in l["entry"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let r = item["item"]["reference"].as_str().expect("item reference");
            assert!(
                present.contains(r),
                "{what}: List entry {r} is not in the Bundle"
            );
        }
    }
}

#[test]
fn every_mapping_has_golden_cases_and_every_case_matches_its_expected_files() {
    let t = translator();
    let golden = Path::new(MANIFEST).join("tests/golden");
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for m in t.mappings() {
        let dir = golden.join(&m.id);
        let cases = sorted_dirs(&dir);
        assert!(
            cases.len() >= MIN_CASES,
            "mapping {} ({}) has {} golden cases under {}; at least {MIN_CASES} are required",
            m.id,
            m.file,
            cases.len(),
            dir.display()
        );
        let mut types: BTreeSet<String> = BTreeSet::new();
        let mut cases_with_losses = 0;
        for case in &cases {
            let name = format!("{}/{}", m.id, case.file_name().unwrap().to_string_lossy());
            let input = read_json(&case.join("input.json"));
            for e in input["entry"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(rt) = e["resource"]["resourceType"].as_str() {
                    types.insert(rt.to_owned());
                }
            }
            // The inputs are what a real sender would send: valid in their own profile.
            {
                let own = match m.source {
                    Source::Prison => Target::Prison,
                    Source::GpConnectStu3 => Target::GpConnectStu3,
                };
                let invalid = validation_errors(own, &input);
                // A case about malformed input lists the defects it carries on purpose.
                let declared = case.join("expected-input-errors.json");
                if declared.exists() {
                    let want: Vec<String> = serde_json::from_value(read_json(&declared)).unwrap();
                    // The typed model stops at the first defect: the profile errors are compared.
                    let invalid: Vec<String> = invalid
                        .into_iter()
                        .filter(|e| !e.starts_with("does not parse with the typed"))
                        .collect();
                    if validator().is_some() && invalid != want {
                        failures.push(format!(
                            "{name}: the input's validation errors differ from expected-input-errors.json:\n  {}",
                            invalid.join("\n  ")
                        ));
                    }
                } else if !invalid.is_empty() {
                    failures.push(format!(
                        "{name}: the input does not validate against its own profiles:\n  {}",
                        invalid.join("\n  ")
                    ));
                }
            }
            let Translation { output, losses } = t
                .translate(m.source, m.target, &input)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let owned = t
                .translate_owned(m.source, m.target, input.clone())
                .unwrap();
            assert_eq!(
                owned.output, output,
                "{name}: translate_owned differs from translate"
            );
            assert_eq!(
                owned.losses, losses,
                "{name}: translate_owned losses differ"
            );
            let invalid = validation_errors(m.target, &output);
            if !invalid.is_empty() {
                failures.push(format!(
                    "{name}: the output does not validate against its target profiles:\n  {}",
                    invalid.join("\n  ")
                ));
            }
            if m.target == Target::GpConnectStu3 {
                assert_structured_record_shape(&output, &name);
            }
            let got_losses = losses_json(&losses);
            if !losses.is_empty() {
                cases_with_losses += 1;
            }
            let expected_path = case.join("expected.json");
            let losses_path = case.join("expected-losses.json");
            if updating() {
                write_json(&expected_path, &output);
                write_json(&losses_path, &got_losses);
                continue;
            }
            if !expected_path.exists() || !losses_path.exists() {
                failures.push(format!(
                    "{name}: expected files missing (run with UPDATE_GOLDEN=1)"
                ));
                continue;
            }
            if read_json(&expected_path) != output {
                failures.push(format!(
                    "{name}: output differs from expected.json\n--- got ---\n{}",
                    serde_json::to_string_pretty(&output).unwrap()
                ));
            }
            if read_json(&losses_path) != got_losses {
                failures.push(format!(
                    "{name}: losses differ from expected-losses.json\n--- got ---\n{}",
                    serde_json::to_string_pretty(&got_losses).unwrap()
                ));
            }
        }
        let structural = match m.source {
            Source::Prison => "Composition",
            Source::GpConnectStu3 => "List",
        };
        for needed in SECTION_5A.iter().chain(std::iter::once(&structural)) {
            assert!(
                types.contains(*needed),
                "mapping {}: no golden input holds a {needed} (each resource type of DESIGN §5a needs one)",
                m.id
            );
        }
        assert!(
            cases_with_losses > 0,
            "mapping {}: no golden case exercises the loss report",
            m.id
        );
        counts.push(format!("{}: {} cases", m.id, cases.len()));
    }
    assert_eq!(counts.len(), 5, "expected five mappings, found {counts:?}");
    eprintln!("golden cases: {}", counts.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_directories_name_only_loaded_mappings() {
    let t = translator();
    let ids: HashSet<String> = t.mappings().into_iter().map(|m| m.id).collect();
    for dir in sorted_dirs(&Path::new(MANIFEST).join("tests/golden")) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            ids.contains(&name),
            "tests/golden/{name} matches no mapping in mappings/"
        );
    }
}

#[test]
fn a_dose_of_2_50_survives_every_translation_as_2_50() {
    let t = translator();
    let bytes = std::fs::read(Path::new(MANIFEST).join("samples/release-bundle.json")).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("\"value\": 2.50"));
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    for target in Target::all() {
        let out = t.translate(Source::Prison, target, &doc).unwrap();
        let text = serde_json::to_string(&out.output).unwrap();
        assert!(
            text.contains("\"value\":2.50"),
            "{target}: the 2.50 dose was not kept as written"
        );
        assert!(!text.contains("\"value\":2.5,"), "{target}");
        // The ITK eDischarge carries a prescription as a MedicationStatement, asserted then.
        let authored = if target == Target::ItkEdischargeStu3 {
            "\"dateAsserted\":\"2026-11-18\""
        } else {
            "\"authoredOn\":\"2026-11-18\""
        };
        assert!(text.contains(authored), "{target}: dates as written");
        assert_validates(target, &out.output, &format!("sample to {target}"));
    }
}

#[test]
fn the_sample_release_becomes_a_gp_connect_structured_record() {
    let t = translator();
    let doc = read_json(&Path::new(MANIFEST).join("samples/release-bundle.json"));
    let out = t
        .translate(Source::Prison, Target::GpConnectStu3, &doc)
        .unwrap();
    assert_structured_record_shape(&out.output, "sample");
    let bytes = serde_json::to_vec(&out.output).unwrap();
    fhir_io::check_stu3_bundle(&bytes).unwrap();
    let codes: Vec<String> = out.output["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "List")
        .map(|e| {
            e["resource"]["code"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        codes.contains(&"933361000000108".to_owned()),
        "medications list: {codes:?}"
    );
    assert!(
        codes.contains(&"886921000000105".to_owned()),
        "allergies list: {codes:?}"
    );
    assert!(
        codes.contains(&"717711000000103".to_owned()),
        "problems list: {codes:?}"
    );
    // The custody event has no place in a structured record: it is reported, not dropped silently.
    assert!(
        out.losses
            .iter()
            .any(|l| l.path == "Bundle.entry[0].resource.event[0]"
                && l.code.as_deref()
                    == Some(
                        "https://throughcare.example.org/fhir/CodeSystem/custody-event|release"
                    ))
    );
}

#[test]
fn translation_does_not_strip_custody_content_because_that_is_policy() {
    let t = translator();
    let doc = read_json(&Path::new(MANIFEST).join("samples/release-bundle.json"));
    for target in Target::all() {
        let text =
            serde_json::to_string(&t.translate(Source::Prison, target, &doc).unwrap().output)
                .unwrap();
        assert!(
            text.contains("A1234BC"),
            "{target}: the prison number is policy's to remove"
        );
        assert!(text.contains("custody-cell-location"), "{target}");
    }
}

fn corpus_structured_records() -> Option<Vec<PathBuf>> {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        return None;
    }
    let mut out = Vec::new();
    for dir in [
        "gpconnect/accessrecord_structured",
        "gp2gp-adaptor/uat-gpconnect-input",
    ] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let v = read_json(&p);
            let is_record = v["resourceType"] == "Bundle"
                && v["meta"]["profile"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p.as_str()
                            .is_some_and(|s| s.ends_with("/GPConnect-StructuredRecord-Bundle-1"))
                    })
                });
            if is_record {
                out.push(p);
            }
        }
    }
    out.sort();
    Some(out)
}

#[test]
fn every_gp_connect_structured_record_example_in_the_corpus_translates_to_the_prison_profile() {
    let Some(files) = corpus_structured_records() else {
        assert!(
            std::env::var("CI").is_err(),
            "{CORPUS} is absent: in CI the corpus reception test must run"
        );
        eprintln!("SKIPPED: {CORPUS} is absent; the corpus reception test did not run");
        return;
    };
    assert!(
        !files.is_empty(),
        "no GP Connect structured-record example found in {CORPUS}"
    );
    let t = translator();
    let mut total_losses = 0;
    let mut clean = 0;
    let mut defective = Vec::new();
    let mut failures = Vec::new();
    for f in &files {
        let doc = read_json(f);
        let out = t
            .translate(Source::GpConnectStu3, Target::Prison, &doc)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // The prison copy must validate. Where the example itself is not a valid GP Connect
        // record (the corpus holds fragments and hand-made samples: a missing asserter, an NHS
        // number that fails its Modulus 11 check, entries without a resource), the prison
        // copy's errors are the consequence of those defects, and the validator must say so:
        // they are counted, not forgiven silently.
        let errors = validation_errors(Target::Prison, &out.output);
        let mut source_errors = validation_errors(Target::GpConnectStu3, &doc);
        // What the GP Connect profiles do not check: the record has a Patient, and its NHS
        // number passes the Modulus 11 check (several UAT examples carry 1234567890).
        let patients: Vec<&Value> = doc["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == "Patient")
            .collect();
        if patients.is_empty() {
            source_errors.push("the record holds no Patient".into());
        }
        for nhs in patients
            .iter()
            .flat_map(|r| r["identifier"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
            .filter_map(|i| i["value"].as_str().map(str::to_owned))
        {
            if let Err(e) = throughcare::domain::NhsNumber::parse(&nhs) {
                source_errors.push(format!("NHS number {nhs}: {e}"));
            }
        }
        if validator().is_some() && !errors.is_empty() {
            if source_errors.is_empty() {
                failures.push(format!(
                    "{}: a valid GP Connect record gave a prison copy that does not validate:\n  {}",
                    f.display(),
                    errors.join("\n  ")
                ));
            } else {
                defective.push(format!(
                    "{} ({} source errors, first: {}; {} prison-copy errors, first: {})",
                    f.file_name().unwrap().to_string_lossy(),
                    source_errors.len(),
                    source_errors[0],
                    errors.len(),
                    errors[0]
                ));
            }
        } else {
            clean += 1;
        }
        assert_eq!(out.output["type"], "document");
        assert_eq!(
            out.output["entry"][0]["resource"]["resourceType"],
            "Composition"
        );
        for l in &out.losses {
            assert!(
                l.path.starts_with("Bundle"),
                "{}: loss path {}",
                f.display(),
                l.path
            );
            assert!(!l.reason.is_empty());
        }
        total_losses += out.losses.len();
    }
    eprintln!(
        "reception: {} GP Connect structured-record examples from the corpus translated; {clean} prison copies validate; {total_losses} losses reported; {} examples are not valid GP Connect records themselves, and their copies carry the defects:\n  {}",
        files.len(),
        defective.len(),
        defective.join("\n  ")
    );
    // Most of the corpus is valid GP Connect: the check above must mostly be a real one.
    assert!(
        validator().is_none() || clean * 2 > files.len(),
        "only {clean} of {} examples validate",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_source_profile_of_a_document_can_be_detected() {
    let prison = read_json(&Path::new(MANIFEST).join("samples/release-bundle.json"));
    assert_eq!(Source::detect(&prison), Some(Source::Prison));
    let golden = Path::new(MANIFEST).join("tests/golden/gp-connect-stu3-to-prison");
    for case in sorted_dirs(&golden) {
        let doc = read_json(&case.join("input.json"));
        assert_eq!(
            Source::detect(&doc),
            Some(Source::GpConnectStu3),
            "{}",
            case.display()
        );
    }
    assert_eq!(
        Source::detect(&serde_json::json!({"resourceType": "Patient"})),
        None
    );
}

#[test]
fn the_concept_map_translate_operation_answers_with_parameters() {
    let t = translator();
    let req = ConceptTranslateRequest {
        url: Some("https://throughcare.example.org/fhir/ConceptMap/prison-local-to-snomed".into()),
        system: Some(
            "https://throughcare.example.org/fhir/CodeSystem/prison-local-condition".into(),
        ),
        code: Some("HEPC-CHRONIC".into()),
        ..Default::default()
    };
    let r = t.concept_translate(&req);
    assert!(r.result);
    assert_eq!(r.matches[0].code.as_deref(), Some("128302006"));
    let p = r.to_parameters();
    assert_eq!(p["resourceType"], "Parameters");
    assert_eq!(p["parameter"][0]["name"], "result");
    assert_eq!(p["parameter"][0]["valueBoolean"], true);
    let m = &p["parameter"][1];
    assert_eq!(m["name"], "match");
    assert_eq!(m["part"][0]["valueCode"], "equivalent");
    assert_eq!(
        m["part"][1]["valueCoding"]["system"],
        "http://snomed.info/sct"
    );

    // An explicitly unmatched code: known to the map, no equivalent.
    let req = ConceptTranslateRequest {
        code: Some("CUSTODY-ADJ".into()),
        ..req
    };
    let r = t.concept_translate(&req);
    assert!(!r.result);
    assert_eq!(r.matches[0].equivalence, "unmatched");
    assert_eq!(r.to_parameters()["parameter"][0]["valueBoolean"], false);

    // Without a url, maps are chosen by source and target value sets.
    let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
        {"name": "system", "valueUri": "http://snomed.info/sct"},
        {"name": "code", "valueCode": "886921000000105"},
        {"name": "targetsystem", "valueUri": "https://fhir.hl7.org.uk/CodeSystem/UKCore-RecordStandardHeadings"}
    ]});
    let r = t.concept_translate(&ConceptTranslateRequest::from_parameters(&body).unwrap());
    assert!(r.result);
    assert_eq!(
        r.matches[0].code.as_deref(),
        Some("allergies-and-adverse-reaction")
    );
}

#[test]
fn a_broken_mapping_file_fails_the_load_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST).join("mappings"), tmp.path());
    let file = tmp.path().join("prison-to-prison.v1.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("recode:", "recodify:")).unwrap();
    let err = Translator::load(tmp.path()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("prison-to-prison.v1.yaml") && msg.contains("recodify"),
        "{msg}"
    );
}

#[test]
fn a_new_mapping_is_picked_up_from_the_directory_without_recompiling() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST).join("mappings"), tmp.path());
    // Change a ConceptMap: the local hepatitis C code now maps to a different SNOMED CT concept.
    let cm = tmp.path().join("conceptmaps/prison-local-to-snomed.json");
    let text = std::fs::read_to_string(&cm).unwrap();
    std::fs::write(&cm, text.replace("128302006", "50711007")).unwrap();
    let t = Translator::load(tmp.path()).unwrap();
    let req = ConceptTranslateRequest {
        url: Some("https://throughcare.example.org/fhir/ConceptMap/prison-local-to-snomed".into()),
        system: Some(
            "https://throughcare.example.org/fhir/CodeSystem/prison-local-condition".into(),
        ),
        code: Some("HEPC-CHRONIC".into()),
        ..Default::default()
    };
    assert_eq!(
        t.concept_translate(&req).matches[0].code.as_deref(),
        Some("50711007")
    );
}

#[test]
fn input_of_the_wrong_shape_is_an_error_not_a_loss() {
    let t = translator();
    let not_a_document =
        serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": []});
    let err = t
        .translate(Source::Prison, Target::UkCoreR4, &not_a_document)
        .unwrap_err();
    assert!(err.to_string().starts_with("Bundle.type"), "{err}");
    let err = t
        .translate(Source::GpConnectStu3, Target::UkCoreR4, &not_a_document)
        .unwrap_err();
    assert!(err.to_string().contains("no mapping"), "{err}");
}

#[test]
fn the_loss_report_reads_as_operation_outcome_warnings() {
    let t = translator();
    let doc = read_json(&Path::new(MANIFEST).join("samples/release-bundle.json"));
    let out = t
        .translate(Source::Prison, Target::GpConnectStu3, &doc)
        .unwrap();
    let issues = out.loss_issues();
    assert_eq!(issues.len(), out.losses.len());
    assert!(!issues.is_empty());
    for i in &issues {
        assert_eq!(i["severity"], "warning");
        assert_eq!(i["code"], "incomplete");
        assert!(i["expression"][0].as_str().unwrap().starts_with("Bundle"));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Timing probe for DESIGN §15 (validate + policy + translate ≤ 3x a serde_json parse of the
/// same bytes). Run: `cargo test --release --test translate -- --ignored --nocapture`.
#[test]
#[ignore = "timing probe; run explicitly in release mode"]
fn translation_speed_compared_with_a_serde_json_parse() {
    let t = translator();
    let bytes = std::fs::read(Path::new(MANIFEST).join("samples/release-bundle.json")).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let rounds = 2000;
    // The best of ten batches: the machine is shared, and noise only ever adds time.
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..rounds / 10 {
            f();
        }
        let mut best = f64::MAX;
        for _ in 0..10 {
            let start = std::time::Instant::now();
            for _ in 0..rounds / 10 {
                f();
            }
            best = best.min(start.elapsed().as_secs_f64() / (rounds / 10) as f64 * 1e6);
        }
        best
    };
    let parse = time(&mut || {
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        std::hint::black_box(v);
    });
    let clone = time(&mut || {
        std::hint::black_box(doc.clone());
    });
    let serialise = time(&mut || {
        std::hint::black_box(serde_json::to_vec(&doc).unwrap());
    });
    let mut per_target: HashMap<&str, f64> = HashMap::new();
    let mut owned_target: HashMap<&str, f64> = HashMap::new();
    for target in Target::all() {
        let us = time(&mut || {
            let out = t.translate(Source::Prison, target, &doc).unwrap();
            std::hint::black_box(out);
        });
        per_target.insert(target.as_str(), us);
        let owned = time(&mut || {
            let out = t
                .translate_owned(Source::Prison, target, doc.clone())
                .unwrap();
            std::hint::black_box(out);
        });
        owned_target.insert(target.as_str(), owned - clone);
    }
    eprintln!(
        "{} bytes; serde_json parse: {parse:.1} µs (clone of the tree {clone:.1} µs, serialise {serialise:.1} µs)",
        bytes.len()
    );
    for target in Target::all() {
        let us = per_target[target.as_str()];
        let owned = owned_target[target.as_str()];
        eprintln!(
            "  translate_owned to {:<10} {owned:>8.1} µs  ({:.2}x parse; the caller's copy not counted)",
            target.as_str(),
            owned / parse
        );
        eprintln!(
            "  translate to {:<16} {us:>8.1} µs  ({:.2}x parse)",
            target.as_str(),
            us / parse
        );
    }
}

/// Regression: with serde_json's `arbitrary_precision` (on in this workspace, for lossless
/// decimals), a fractional decimal in a non-choice element used to fail the typed model, because
/// the internally tagged `Resource` enum buffers it as serde_json's private number map. fhir-io
/// now checks through an adapter that hands numbers over plainly.
#[test]
fn fhir_io_accepts_a_fractional_decimal_outside_a_choice_element() {
    let r4 = br#"{"resourceType":"Medication","ingredient":[{"itemCodeableConcept":{"text":"Ramipril"},
        "strength":{"numerator":{"value":2.5,"unit":"mg"},"denominator":{"value":1,"unit":"capsule"}}}]}"#;
    assert_eq!(fhir_io::check_r4_resource(r4), Ok(()));
    let stu3 = br#"{"resourceType":"Medication","ingredient":[{"itemCodeableConcept":{"text":"Ramipril"},
        "amount":{"numerator":{"value":2.5,"unit":"mg"},"denominator":{"value":1,"unit":"capsule"}}}]}"#;
    assert_eq!(fhir_io::check_stu3_resource(stu3), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Derivation rules (issue 12, item 2): what a target requires and DESIGN §5a does not is derived
// soundly or marked absent by the mapping, and each rule is reported as an assumption. One test
// per rule: on the minimal §5a document the rule writes the element and reports it; where the
// sender gave the element, the sender's value stands and nothing is assumed.

const DAR: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

fn minimal_document() -> Value {
    read_json(&Path::new(MANIFEST).join("samples/minimal-5a-bundle.json"))
}

/// The first resource of `resource_type` in `document` (mutable).
fn resource_mut<'a>(document: &'a mut Value, resource_type: &str) -> &'a mut Value {
    document["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|e| &mut e["resource"])
        .find(|r| r["resourceType"] == resource_type)
        .unwrap_or_else(|| panic!("no {resource_type}"))
}

fn resource_of<'a>(document: &'a Value, resource_type: &str) -> &'a Value {
    document["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == resource_type)
        .unwrap_or_else(|| panic!("no {resource_type}"))
}

/// Translates `document` to `target`; the output must validate against the target's profiles.
fn derived(target: Target, document: &Value) -> (Value, Vec<Loss>) {
    let Translation { output, losses } = translator()
        .translate(Source::Prison, target, document)
        .unwrap();
    let errors = validation_errors(target, &output);
    assert!(errors.is_empty(), "{target} copy: {errors:#?}");
    (output, losses)
}

/// The assumptions reported for `element` of the first `resource_type` of the minimal
/// document (`Bundle.entry[i].resource.element`).
fn assumed<'a>(losses: &'a [Loss], resource_type: &str, element: &str) -> Vec<&'a Loss> {
    let doc = minimal_document();
    let i = doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["resource"]["resourceType"] == resource_type)
        .unwrap_or_else(|| panic!("no {resource_type}"));
    let path = format!("Bundle.entry[{i}].resource.{element}");
    losses
        .iter()
        .filter(|l| l.is_assumption() && l.path == path)
        .collect()
}

fn composition_date() -> Value {
    resource_of(&minimal_document(), "Composition")["date"].clone()
}

fn has_dar(v: &Value) -> bool {
    v["extension"].as_array().is_some_and(|x| {
        x.iter()
            .any(|e| e["url"] == DAR && e["valueCode"] == "unknown")
    })
}

/// Checks one rule both ways: `check` on the copy of the minimal document (where the rule
/// applies and is reported at `element`), and `given` (an edit supplying the element) leaves
/// the sender's value (`kept`) and assumes nothing there.
fn rule(
    target: Target,
    resource_type: &str,
    element: &str,
    check: impl Fn(&Value),
    given: impl Fn(&mut Value),
    kept: impl Fn(&Value),
) {
    let (copy, losses) = derived(target, &minimal_document());
    check(&copy);
    let reported = assumed(&losses, resource_type, element);
    assert_eq!(
        reported.len(),
        1,
        "one assumption at {element}: {losses:#?}"
    );
    assert_eq!(
        serde_json::to_value(reported[0]).unwrap()["kind"],
        "assumption"
    );
    let mut full = minimal_document();
    given(&mut full);
    let (copy, losses) = derived(target, &full);
    kept(&copy);
    assert!(
        assumed(&losses, resource_type, element).is_empty(),
        "nothing is assumed at {element} when the sender gave it: {losses:#?}"
    );
}

fn nhs_status(copy: &Value) -> String {
    let patient = resource_of(copy, "Patient");
    patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn with_verified_nhs_number(doc: &mut Value) {
    resource_mut(doc, "Patient")["identifier"][0]["extension"] = serde_json::json!([{
        "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
        "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "code": "01", "display": "Number present and verified"}]}
    }]);
}

#[test]
fn rule_gp_connect_nhs_number_untraced_unless_the_sender_gave_a_status() {
    rule(
        Target::GpConnectStu3,
        "Patient",
        "identifier",
        |c| assert_eq!(nhs_status(c), "02"),
        with_verified_nhs_number,
        |c| assert_eq!(nhs_status(c), "01"),
    );
}

#[test]
fn rule_uk_core_nhs_number_untraced_unless_the_sender_gave_a_status() {
    rule(
        Target::UkCoreR4,
        "Patient",
        "identifier",
        |c| assert_eq!(nhs_status(c), "02"),
        with_verified_nhs_number,
        |c| assert_eq!(nhs_status(c), "01"),
    );
}

#[test]
fn rule_gp_connect_a_single_unqualified_name_is_the_official_name() {
    rule(
        Target::GpConnectStu3,
        "Patient",
        "name.use",
        |c| assert_eq!(resource_of(c, "Patient")["name"][0]["use"], "official"),
        |d| {
            resource_mut(d, "Patient")["name"] = serde_json::json!([
                {"use": "usual", "given": ["Al"], "family": "TESTPATIENT"},
                {"use": "official", "given": ["Alex"], "family": "TESTPATIENT"}
            ])
        },
        |c| {
            let names = &resource_of(c, "Patient")["name"];
            assert_eq!(names[0]["use"], "usual");
            assert_eq!(names[1]["use"], "official");
        },
    );
}

#[test]
fn rule_gp_connect_prescription_date_from_the_document_date() {
    rule(
        Target::GpConnectStu3,
        "MedicationRequest",
        "authoredOn",
        |c| {
            let mr = resource_of(c, "MedicationRequest");
            assert_eq!(mr["authoredOn"], composition_date());
            // The authorisation began when the prescription was authored.
            assert_eq!(
                mr["dispenseRequest"]["validityPeriod"]["start"],
                composition_date()
            );
        },
        |d| {
            for e in d["entry"].as_array_mut().unwrap() {
                if e["resource"]["resourceType"] == "MedicationRequest" {
                    e["resource"]["authoredOn"] = "2026-06-10".into();
                }
            }
        },
        |c| {
            assert_eq!(
                resource_of(c, "MedicationRequest")["authoredOn"],
                "2026-06-10"
            )
        },
    );
}

#[test]
fn rule_gp_connect_prescription_recorder_is_the_prescriber_else_marked_absent() {
    rule(
        Target::GpConnectStu3,
        "MedicationRequest",
        "recorder",
        |c| assert!(has_dar(&resource_of(c, "MedicationRequest")["recorder"])),
        |d| {
            let practitioner = serde_json::json!({"fullUrl": "urn:uuid:5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1099", "resource": {
                "resourceType": "Practitioner", "id": "5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1099",
                "name": [{"use": "official", "family": "PRESCRIBER", "given": ["Sam"]}]}});
            d["entry"].as_array_mut().unwrap().push(practitioner);
            for e in d["entry"].as_array_mut().unwrap() {
                if e["resource"]["resourceType"] == "MedicationRequest" {
                    e["resource"]["requester"] = serde_json::json!({"reference": "urn:uuid:5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1099"});
                }
            }
        },
        |c| {
            let recorder = &resource_of(c, "MedicationRequest")["recorder"];
            assert_eq!(
                recorder["reference"],
                "Practitioner/5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1099"
            );
            assert!(!has_dar(recorder));
        },
    );
}

fn with_statement(d: &mut Value, date: Option<&str>) {
    let mut statement = serde_json::json!({
        "resourceType": "MedicationStatement", "id": "5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1098",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "39113611000001102", "display": "Ramipril 2.5mg capsules"}]},
        "subject": {"reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"},
        "dosage": [{"text": "2.5mg once daily"}]
    });
    if let Some(date) = date {
        statement["dateAsserted"] = date.into();
    }
    d["entry"].as_array_mut().unwrap().push(
        serde_json::json!({"fullUrl": "urn:uuid:5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1098", "resource": statement}),
    );
    let comp = resource_mut(d, "Composition");
    comp["section"][0]["entry"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"reference": "urn:uuid:5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1098"}));
}

#[test]
fn rule_gp_connect_statement_date_from_the_document_date() {
    // The minimal document has no statement: the rule is checked on one without its date.
    let mut doc = minimal_document();
    with_statement(&mut doc, None);
    let (copy, losses) = derived(Target::GpConnectStu3, &doc);
    assert_eq!(
        resource_of(&copy, "MedicationStatement")["dateAsserted"],
        composition_date()
    );
    let statement_path = format!(
        "Bundle.entry[{}].resource.dateAsserted",
        doc["entry"].as_array().unwrap().len() - 1
    );
    let at = |losses: &[Loss]| {
        losses
            .iter()
            .filter(|l| l.is_assumption() && l.path == statement_path)
            .count()
    };
    assert_eq!(at(&losses), 1, "{losses:#?}");
    let mut doc = minimal_document();
    with_statement(&mut doc, Some("2026-07-01"));
    let (copy, losses) = derived(Target::GpConnectStu3, &doc);
    assert_eq!(
        resource_of(&copy, "MedicationStatement")["dateAsserted"],
        "2026-07-01"
    );
    assert_eq!(at(&losses), 0, "{losses:#?}");
}

#[test]
fn rule_gp_connect_problem_date_from_the_document_date() {
    rule(
        Target::GpConnectStu3,
        "Condition",
        "recordedDate",
        |c| {
            assert_eq!(
                resource_of(c, "Condition")["assertedDate"],
                composition_date()
            )
        },
        |d| resource_mut(d, "Condition")["recordedDate"] = "2026-06-03".into(),
        |c| assert_eq!(resource_of(c, "Condition")["assertedDate"], "2026-06-03"),
    );
}

#[test]
fn rule_gp_connect_problem_asserter_is_the_recorder_else_marked_absent() {
    rule(
        Target::GpConnectStu3,
        "Condition",
        "asserter",
        |c| assert!(has_dar(&resource_of(c, "Condition")["asserter"])),
        |d| {
            resource_mut(d, "Condition")["asserter"] =
                serde_json::json!({"reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"})
        },
        |c| {
            assert_eq!(
                resource_of(c, "Condition")["asserter"]["reference"],
                "Patient/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"
            )
        },
    );
}

#[test]
fn rule_gp_connect_allergy_category_is_marked_absent_never_guessed() {
    rule(
        Target::GpConnectStu3,
        "AllergyIntolerance",
        "category",
        |c| {
            let allergy = resource_of(c, "AllergyIntolerance");
            assert_eq!(allergy["category"], serde_json::json!([null]));
            assert!(has_dar(&allergy["_category"][0]), "{allergy}");
        },
        |d| resource_mut(d, "AllergyIntolerance")["category"] = serde_json::json!(["medication"]),
        |c| {
            let allergy = resource_of(c, "AllergyIntolerance");
            assert_eq!(allergy["category"], serde_json::json!(["medication"]));
            assert!(allergy.get("_category").is_none());
        },
    );
}

#[test]
fn rule_gp_connect_allergy_date_from_the_document_date() {
    rule(
        Target::GpConnectStu3,
        "AllergyIntolerance",
        "recordedDate",
        |c| {
            assert_eq!(
                resource_of(c, "AllergyIntolerance")["assertedDate"],
                composition_date()
            )
        },
        |d| resource_mut(d, "AllergyIntolerance")["recordedDate"] = "2026-06-02".into(),
        |c| {
            assert_eq!(
                resource_of(c, "AllergyIntolerance")["assertedDate"],
                "2026-06-02"
            )
        },
    );
}

#[test]
fn rule_gp_connect_allergy_recorder_is_marked_absent_where_none_is_named() {
    rule(
        Target::GpConnectStu3,
        "AllergyIntolerance",
        "recorder",
        |c| assert!(has_dar(&resource_of(c, "AllergyIntolerance")["recorder"])),
        |d| {
            resource_mut(d, "AllergyIntolerance")["recorder"] =
                serde_json::json!({"reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"})
        },
        |c| {
            assert_eq!(
                resource_of(c, "AllergyIntolerance")["recorder"]["reference"],
                "Patient/1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"
            )
        },
    );
}

#[test]
fn rule_gp_connect_encounter_type_is_the_custody_episode() {
    rule(
        Target::GpConnectStu3,
        "Encounter",
        "type",
        |c| {
            assert_eq!(
                resource_of(c, "Encounter")["type"][0]["text"],
                "Custody episode (prison healthcare)"
            )
        },
        |d| resource_mut(d, "Encounter")["type"] = serde_json::json!([{"coding": [{"system": "http://snomed.info/sct", "code": "58000006", "display": "Patient discharge"}]}]),
        |c| {
            assert_eq!(
                resource_of(c, "Encounter")["type"][0]["coding"][0]["code"],
                "58000006"
            )
        },
    );
}

#[test]
fn rule_gp_connect_encounter_participant_is_marked_absent_where_none_is_named() {
    rule(
        Target::GpConnectStu3,
        "Encounter",
        "participant.individual",
        |c| {
            assert!(has_dar(
                &resource_of(c, "Encounter")["participant"][0]["individual"]
            ))
        },
        |d| {
            resource_mut(d, "Encounter")["participant"] = serde_json::json!([{"individual": {"reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1003", "display": "ignored"}}]);
            // A participant must be a person: point it at a Practitioner the document carries.
            d["entry"].as_array_mut().unwrap().push(serde_json::json!({"fullUrl": "urn:uuid:5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1097", "resource": {
                "resourceType": "Practitioner", "id": "5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1097",
                "name": [{"use": "official", "family": "CLINICIAN", "given": ["Jo"]}]}}));
            resource_mut(d, "Encounter")["participant"][0]["individual"] =
                serde_json::json!({"reference": "urn:uuid:5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1097"});
        },
        |c| {
            let individual = &resource_of(c, "Encounter")["participant"][0]["individual"];
            assert_eq!(
                individual["reference"],
                "Practitioner/5f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1097"
            );
            assert!(!has_dar(individual));
        },
    );
}

#[test]
fn rule_uk_core_substitution_absent_means_substitution_may_be_done() {
    rule(
        Target::UkCoreR4,
        "MedicationRequest",
        "substitution",
        |c| {
            assert_eq!(
                resource_of(c, "MedicationRequest")["substitution"]["allowedBoolean"],
                true
            )
        },
        |d| {
            for e in d["entry"].as_array_mut().unwrap() {
                if e["resource"]["resourceType"] == "MedicationRequest" {
                    e["resource"]["substitution"] = serde_json::json!({"allowedBoolean": false});
                }
            }
        },
        |c| {
            assert_eq!(
                resource_of(c, "MedicationRequest")["substitution"]["allowedBoolean"],
                false
            )
        },
    );
}

#[test]
fn safety_elements_are_never_derived_a_medicine_without_a_dose_stays_without_one() {
    let mut doc = minimal_document();
    for e in doc["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "MedicationRequest" {
            e["resource"]
                .as_object_mut()
                .unwrap()
                .remove("dosageInstruction");
            e["resource"].as_object_mut().unwrap().remove("extension");
        }
    }
    for target in [Target::GpConnectStu3, Target::UkCoreR4] {
        let Translation { output, losses } = translator()
            .translate(Source::Prison, target, &doc)
            .unwrap();
        let mr = resource_of(&output, "MedicationRequest");
        assert!(mr.get("dosageInstruction").is_none(), "{target}: {mr}");
        assert!(
            !losses.iter().any(|l| l.is_assumption()
                && (l.path.contains("dosage") || l.path.contains("extension"))),
            "{target}: {losses:#?}"
        );
    }
}

#[test]
fn rule_itk_nhs_number_untraced_unless_the_sender_gave_a_status() {
    rule(
        Target::ItkEdischargeStu3,
        "Patient",
        "identifier",
        |c| assert_eq!(nhs_status(c), "02"),
        with_verified_nhs_number,
        |c| assert_eq!(nhs_status(c), "01"),
    );
}

#[test]
fn rule_itk_the_author_is_the_prisons_record_system_and_the_prison_the_custodian() {
    let (copy, losses) = derived(Target::ItkEdischargeStu3, &minimal_document());
    let c = resource_of(&copy, "Composition");
    let device = resource_of(&copy, "Device");
    let device_url = copy["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Device")
        .map(|e| e["fullUrl"].clone())
        .unwrap();
    assert_eq!(c["author"], serde_json::json!([{"reference": device_url}]));
    // The prison organisation is the custodian and owns the record system.
    assert_eq!(device["owner"], c["custodian"]);
    assert!(c["custodian"]["reference"].is_string());
    assert_eq!(assumed(&losses, "Composition", "author").len(), 1);
}

#[test]
fn rule_itk_a_missing_allergies_section_says_nothing_is_known_never_no_known_allergies() {
    let mut doc = minimal_document();
    let sections = resource_mut(&mut doc, "Composition")["section"]
        .as_array_mut()
        .unwrap();
    sections.retain(|s| s["code"]["coding"][0]["code"] != "886921000000105");
    let (copy, losses) = derived(Target::ItkEdischargeStu3, &doc);
    let c = resource_of(&copy, "Composition");
    let allergies = c["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"]["coding"][0]["code"] == "886921000000105")
        .expect("the required allergies section is added");
    let div = allergies["text"]["div"].as_str().unwrap();
    assert!(div.contains("no allergy information is known"), "{div}");
    assert!(div.contains("does not mean no known allergies"), "{div}");
    assert!(
        losses
            .iter()
            .any(|l| l.is_assumption()
                && l.reason.contains("Allergies and adverse reactions section"))
    );
}

#[test]
fn rule_itk_a_prescription_goes_as_a_statement_taken_unknown_with_its_dose_and_last_dose() {
    let (copy, losses) = derived(Target::ItkEdischargeStu3, &minimal_document());
    let statements: Vec<&Value> = copy["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "MedicationStatement")
        .collect();
    assert!(!statements.is_empty());
    for ms in &statements {
        assert_eq!(ms["taken"], "unk");
        assert!(ms["dosage"][0]["text"].is_string(), "the dose is carried");
        let med = ms["medicationReference"]["reference"].as_str().unwrap();
        assert!(
            copy["entry"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["fullUrl"] == med && e["resource"]["resourceType"] == "Medication")
        );
    }
    assert!(
        statements
            .iter()
            .any(|ms| ms["extension"].to_string().contains("last-dose-in-custody"))
    );
    assert_eq!(assumed(&losses, "MedicationRequest", "taken").len(), 1);
}

/// CareConnect-ITK-Condition-1 forbids `evidence` (0..0): a diagnosis that cites its evidence
/// goes without it, reported as a loss, instead of failing the ITK profiles and holding the
/// GP's copy (found end to end over MESH: the GP copy of a diagnosis whose evidence the
/// patient's consent shares was held).
#[test]
fn rule_itk_a_diagnosis_goes_without_its_evidence_reported_as_a_loss() {
    let mut doc = read_json(&Path::new(MANIFEST).join("samples/release-bundle.json"));
    let i = doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["resource"]["resourceType"] == "Condition")
        .unwrap();
    doc["entry"][i]["resource"]["evidence"] = serde_json::json!([{"detail": [{
        "reference": "urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1006",
        "display": "Pharmacy order 1006"
    }]}]);
    let (copy, losses) = derived(Target::ItkEdischargeStu3, &doc);
    let condition = resource_of(&copy, "Condition");
    assert!(condition.get("evidence").is_none(), "{condition}");
    assert!(
        condition["code"]["coding"].is_array(),
        "the diagnosis stays"
    );
    let path = format!("Bundle.entry[{i}].resource.evidence");
    assert!(
        losses
            .iter()
            .any(|l| !l.is_assumption() && l.path == path && l.reason.contains("no evidence")),
        "{losses:#?}"
    );
}
