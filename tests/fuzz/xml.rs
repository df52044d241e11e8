//! FHIR XML (`fhir::xml`): the parser on what a GP system (or anyone on MESH) may send, and the
//! serialiser on what the gateway may build.
//!
//! - `fuzz_xml_parse`: bytes to `from_xml`: real FHIR XML (the serialised seeds) with XML-aware
//!   edits (a tag, an entity, a DOCTYPE, a cut, stray bytes spliced in; an element renamed or
//!   repeated), and any bytes. Never a panic; and whatever is read serialises and reads back the
//!   same.
//! - `fuzz_xml_round_trip`: FHIR JSON (the STU3 and R4 seeds, mutated) to `to_xml`, then
//!   `from_xml`: what the serialiser accepts comes back equal as FHIR JSON.

use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use throughcare::fhir::xml::{FhirVersion, XmlError, from_xml, to_xml};

use crate::arb::{self, Mutated};
use crate::{fuzz, reached, repo};

/// STU3 seeds (the GP Connect golden outputs and the XML-rules golden input), then R4 seeds
/// (the UK Core golden outputs).
static SEEDS: LazyLock<Vec<(Value, FhirVersion)>> = LazyLock::new(|| {
    let mut seeds = Vec::new();
    let read = |p: std::path::PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    for (dir, version) in [
        ("tests/golden/prison-to-gp-connect-stu3", FhirVersion::Stu3),
        ("tests/golden/prison-to-uk-core-r4", FhirVersion::R4),
    ] {
        let mut cases: Vec<_> = std::fs::read_dir(repo(dir))
            .unwrap()
            .filter_map(Result::ok)
            .map(|d| d.path().join("expected.json"))
            .collect();
        cases.sort();
        seeds.extend(cases.into_iter().map(|p| (read(p), version)));
    }
    seeds.push((
        read(repo("tests/golden-xml/xml-rules/input.json")),
        FhirVersion::Stu3,
    ));
    seeds
});

fn trees() -> Vec<Value> {
    SEEDS.iter().map(|(v, _)| v.clone()).collect()
}

static TREES: LazyLock<Vec<Value>> = LazyLock::new(trees);

/// Pieces of XML that mean something to a parser.
const XML_BITS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "&",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x1;",
    "&#xD800;",
    "&#1114112;",
    "&nbsp;",
    "&xxe;",
    "\"",
    "'",
    "=",
    "<!DOCTYPE x>",
    "<!DOCTYPE x [<!ENTITY e \"ee\">]>",
    "<!ENTITY e SYSTEM \"file:///etc/passwd\">",
    "<![CDATA[x]]>",
    "]]>",
    "<!--",
    "-->",
    "<?xml version=\"1.0\"?>",
    "<?pi x?>",
    "xmlns=\"http://hl7.org/fhir\"",
    "xmlns=\"http://www.w3.org/1999/xhtml\"",
    "xmlns:f=\"http://hl7.org/fhir\"",
    "f:",
    "<div xmlns=\"http://www.w3.org/1999/xhtml\">",
    "</div>",
    "<extension url=\"u\">",
    "</extension>",
    "<resource>",
    "</resource>",
    "<Patient>",
    "</Patient>",
    "<id value=\"x\"/>",
    " value=\"1.0\"",
    " id=\"i\"",
    "\u{feff}",
    "\u{0}",
    "\r\n",
];

/// An edit of an XML text.
#[derive(Debug, Clone)]
pub enum XmlEdit {
    /// Cut at this position (modulo the length).
    Truncate(usize),
    /// These bytes go in at this position.
    Insert(usize, Vec<u8>),
    /// The n-th element name becomes this name.
    Rename(usize, &'static str),
    /// The n-th start tag is copied in front of itself.
    Repeat(usize),
}

const NAMES: &[&str] = &[
    "id",
    "extension",
    "value",
    "div",
    "resource",
    "entry",
    "Patient",
    "Bundle",
    "given",
    "status",
    "text",
    "coding",
    "valueString",
    "x",
];

fn xml_edit() -> BoxedStrategy<XmlEdit> {
    prop_oneof![
        1 => any::<usize>().prop_map(XmlEdit::Truncate),
        4 => (
            any::<usize>(),
            prop_oneof![
                3 => select(XML_BITS).prop_map(|s| s.as_bytes().to_vec()),
                1 => prop::collection::vec(any::<u8>(), 1..8),
            ]
        )
            .prop_map(|(at, bytes)| XmlEdit::Insert(at, bytes)),
        2 => (any::<usize>(), select(NAMES)).prop_map(|(n, name)| XmlEdit::Rename(n, name)),
        1 => any::<usize>().prop_map(XmlEdit::Repeat),
    ]
    .boxed()
}

/// Where start tags begin (`<` followed by a name character).
fn tag_starts(text: &[u8]) -> Vec<usize> {
    text.windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == b'<' && w[1].is_ascii_alphabetic())
        .map(|(i, _)| i)
        .collect()
}

fn apply(text: &mut Vec<u8>, edit: &XmlEdit) {
    match edit {
        XmlEdit::Truncate(at) => {
            if !text.is_empty() {
                text.truncate(at % text.len());
            }
        }
        XmlEdit::Insert(at, bytes) => {
            let at = at % (text.len() + 1);
            text.splice(at..at, bytes.iter().copied());
        }
        XmlEdit::Rename(n, name) => {
            let starts = tag_starts(text);
            if let Some(&at) = starts.get(n % starts.len().max(1)) {
                let end = text[at + 1..]
                    .iter()
                    .position(|b| matches!(b, b' ' | b'>' | b'/'))
                    .map_or(text.len(), |p| at + 1 + p);
                text.splice(at + 1..end, name.bytes());
            }
        }
        XmlEdit::Repeat(n) => {
            let starts = tag_starts(text);
            if let Some(&at) = starts.get(n % starts.len().max(1))
                && let Some(p) = text[at..].iter().position(|b| *b == b'>')
            {
                let tag = text[at..=at + p].to_vec();
                text.splice(at..at, tag);
            }
        }
    }
}

/// What the parser is given.
#[derive(Debug, Clone)]
pub enum XmlInput {
    /// A seed serialised to XML, then edited.
    Edited { seed: usize, edits: Vec<XmlEdit> },
    /// Any bytes.
    Bytes(Vec<u8>),
}

fn xml_input() -> BoxedStrategy<XmlInput> {
    prop_oneof![
        6 => (0..SEEDS.len(), prop::collection::vec(xml_edit(), 0..5))
            .prop_map(|(seed, edits)| XmlInput::Edited { seed, edits }),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(XmlInput::Bytes),
    ]
    .boxed()
}

static SERIALISED: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    SEEDS
        .iter()
        .map(|(v, version)| to_xml(v, *version).unwrap().into_bytes())
        .collect()
});

impl XmlInput {
    fn bytes_and_version(&self) -> (Vec<u8>, FhirVersion) {
        match self {
            XmlInput::Edited { seed, edits } => {
                let mut text = SERIALISED[*seed].clone();
                for e in edits {
                    apply(&mut text, e);
                }
                (text, SEEDS[*seed].1)
            }
            XmlInput::Bytes(b) => (b.clone(), FhirVersion::Stu3),
        }
    }
}

#[test]
fn fuzz_xml_parse() {
    fuzz("xml_parse", xml_input(), |input| {
        let (bytes, version) = input.bytes_and_version();
        let Ok(value) = from_xml(&bytes, version) else {
            reached("xml_parse", "refused");
            return Ok(());
        };
        reached("xml_parse", "read");
        // What the parser reads, the serialiser writes, and it reads back the same.
        let xml = to_xml(&value, version)
            .map_err(|e| TestCaseError::fail(format!("read {value} but cannot write it: {e}")))?;
        let again = from_xml(xml.as_bytes(), version)
            .map_err(|e| TestCaseError::fail(format!("cannot read back {xml}: {e}")))?;
        prop_assert_eq!(again, value);
        Ok(())
    });
}

/// The tree in the form the parser gives: `xmlns` declared on every narrative `div` that lacks
/// it, and a values array of nulls beside a repeating primitive's `_name` array that has none.
fn normal_form(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let lone: Vec<(String, usize)> = map
                .iter()
                .filter_map(|(k, v)| {
                    let base = k.strip_prefix('_')?;
                    let len = v.as_array()?.len();
                    (!map.contains_key(base)).then(|| (base.to_string(), len))
                })
                .collect();
            for (base, len) in lone {
                map.insert(base, Value::Array(vec![Value::Null; len]));
            }
            for (k, child) in map.iter_mut() {
                if let (true, Value::String(div)) = (k == "div", &*child) {
                    let trimmed = div.trim().replace("\r\n", "\n").replace('\r', "\n");
                    let head = trimmed.split('>').next().unwrap_or("");
                    *child = Value::String(if head.contains("xmlns=") {
                        trimmed
                    } else {
                        trimmed.replacen("<div", "<div xmlns=\"http://www.w3.org/1999/xhtml\"", 1)
                    });
                } else {
                    normal_form(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normal_form),
        _ => {}
    }
}

/// A tree to serialise: a seed mutated, or any tree as a resource.
#[derive(Debug, Clone)]
pub enum Tree {
    Mutated(Mutated),
    Any(Value),
}

fn tree() -> BoxedStrategy<Tree> {
    prop_oneof![
        8 => arb::mutated(SEEDS.len()).prop_map(Tree::Mutated),
        1 => arb::json(5).prop_map(|mut v| {
            if let Value::Object(map) = &mut v {
                map.insert("resourceType".into(), Value::String("Patient".into()));
            }
            Tree::Any(v)
        }),
    ]
    .boxed()
}

#[test]
fn fuzz_xml_round_trip() {
    fuzz("xml_round_trip", tree(), |t| {
        let (value, version) = match &t {
            Tree::Mutated(m) => (m.tree(&TREES), SEEDS[m.seed].1),
            Tree::Any(v) => (v.clone(), FhirVersion::Stu3),
        };
        let xml = match to_xml(&value, version) {
            Ok(xml) => xml,
            Err(XmlError::Table(e)) => {
                return Err(TestCaseError::fail(format!("table: {e}")));
            }
            Err(_) => {
                reached("xml_round_trip", "refused");
                return Ok(());
            }
        };
        reached("xml_round_trip", "written");
        let back = from_xml(xml.as_bytes(), version)
            .map_err(|e| TestCaseError::fail(format!("cannot read back {xml}: {e}")))?;
        let mut want = value;
        normal_form(&mut want);
        prop_assert_eq!(back, want);
        Ok(())
    });
}
