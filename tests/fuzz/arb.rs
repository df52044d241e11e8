//! Structure-aware generators: JSON trees from a FHIR vocabulary, mutations of real documents
//! (a node replaced, removed, duplicated, wrapped or turned into a string), and byte-level edits
//! of their text (a key given twice, a number no reader can hold, a cut, stray bytes).

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

/// Keys FHIR resources and the gateway's own bodies use.
pub const KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "profile",
    "security",
    "tag",
    "type",
    "entry",
    "fullUrl",
    "resource",
    "identifier",
    "system",
    "value",
    "code",
    "display",
    "coding",
    "text",
    "status",
    "subject",
    "patient",
    "reference",
    "author",
    "section",
    "title",
    "event",
    "period",
    "start",
    "end",
    "date",
    "dateTime",
    "extension",
    "url",
    "valueString",
    "valueCode",
    "valueUri",
    "valueBoolean",
    "valueCoding",
    "valueIdentifier",
    "valueInteger",
    "valueQuantity",
    "parameter",
    "name",
    "part",
    "provision",
    "actor",
    "role",
    "securityLabel",
    "purpose",
    "class",
    "scope",
    "category",
    "policyRule",
    "dosageInstruction",
    "doseAndRate",
    "doseQuantity",
    "medicationCodeableConcept",
    "clinicalStatus",
    "verificationStatus",
    "address",
    "postalCode",
    "birthDate",
    "managingOrganization",
    "contained",
    "div",
];

/// Values that mean something somewhere in a FHIR document or to the gateway.
pub const STRINGS: &[&str] = &[
    "Bundle",
    "document",
    "collection",
    "searchset",
    "Composition",
    "Patient",
    "Organization",
    "Practitioner",
    "MedicationStatement",
    "MedicationRequest",
    "Condition",
    "AllergyIntolerance",
    "Flag",
    "CarePlan",
    "Consent",
    "Parameters",
    "OperationOutcome",
    "active",
    "inactive",
    "permit",
    "deny",
    "final",
    "https://fhir.nhs.uk/Id/nhs-number",
    "https://fhir.nhs.uk/Id/ods-organization-code",
    "http://snomed.info/sct",
    "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "https://throughcare.example.org/fhir/Id/recipient-role",
    "9990000018",
    "9990000026",
    "0000000000",
    "Y02307",
    "A99001",
    "X99001",
    "Q99",
    "373942005",
    "ETH",
    "PSY",
    "HIV",
    "TREAT",
    "ETREAT",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "Patient/1",
    "#",
    "",
    " ",
    "2026-11-30",
    "2026-11-30T10:00:00Z",
    "2026-02-30",
    "-0001-01-01",
    "9999-12-31T23:59:59.999999999+14:00",
    "\u{0}",
    "\u{202e}",
    "𝔉𝔥𝔦𝔯",
];

/// Number literals, as JSON text: edges of every width, and some no reader can hold.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "1e999",
    "-1e999",
    "1e-999",
    "123456789012345678901234567890",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4.9e-324",
    "1.7976931348623157e308",
    "1.8e308",
    "0.1e1",
    "1E+2",
];

/// A string: from the vocabulary, printable, or anything.
pub fn string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(STRINGS).prop_map(String::from),
        2 => "[ -~]{0,24}",
        1 => any::<String>(),
        1 => (select(STRINGS), 1usize..2000).prop_map(|(s, n)| s.repeat(n.min(64))),
    ]
    .boxed()
}

/// A key: from the vocabulary, or anything.
pub fn key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(KEYS).prop_map(String::from),
        1 => "[a-zA-Z_]{1,12}",
        1 => any::<String>(),
    ]
    .boxed()
}

/// A JSON number, including those of [`NUMBERS`] (the lossless tree keeps their text).
pub fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        select(NUMBERS).prop_map(|n| serde_json::from_str::<Value>(n).unwrap_or(Value::Null)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
    ]
    .boxed()
}

/// A JSON leaf.
pub fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ]
    .boxed()
}

/// A JSON tree of FHIR-like keys and values, at most `depth` deep.
pub fn json(depth: u32) -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(depth, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// What a mutation does to the node it reaches.
#[derive(Debug, Clone)]
pub enum Op {
    Replace(Value),
    Remove,
    Duplicate,
    WrapInArray,
    Stringify,
    Rename(String),
}

/// A mutation: a walk down the tree (each step picks a child by index, modulo), then an op.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub path: Vec<usize>,
    pub op: Op,
}

pub fn mutation() -> BoxedStrategy<Mutation> {
    let op = prop_oneof![
        5 => json(3).prop_map(Op::Replace),
        3 => Just(Op::Remove),
        1 => Just(Op::Duplicate),
        1 => Just(Op::WrapInArray),
        1 => Just(Op::Stringify),
        1 => key().prop_map(Op::Rename),
    ];
    (prop::collection::vec(any::<usize>(), 0..9), op)
        .prop_map(|(path, op)| Mutation { path, op })
        .boxed()
}

/// Applies `m` to `doc`.
pub fn apply(doc: &mut Value, m: &Mutation) {
    walk(doc, &m.path, &m.op);
}

fn walk(node: &mut Value, path: &[usize], op: &Op) {
    let Some((step, rest)) = path.split_first() else {
        on_self(node, op);
        return;
    };
    match node {
        Value::Array(items) if !items.is_empty() => {
            let k = step % items.len();
            if rest.is_empty() {
                match op {
                    Op::Remove => {
                        items.remove(k);
                    }
                    Op::Duplicate => {
                        let copy = items[k].clone();
                        items.insert(k, copy);
                    }
                    _ => on_self(&mut items[k], op),
                }
            } else {
                walk(&mut items[k], rest, op);
            }
        }
        Value::Object(map) if !map.is_empty() => {
            let k = step % map.len();
            let Some(name) = map.keys().nth(k).cloned() else {
                return;
            };
            if rest.is_empty() {
                match op {
                    Op::Remove => {
                        map.shift_remove(&name);
                    }
                    Op::Rename(new) => {
                        if let Some(v) = map.shift_remove(&name) {
                            map.insert(new.clone(), v);
                        }
                    }
                    Op::Duplicate => {
                        let copy = map[&name].clone();
                        map.insert(format!("{name}_"), copy);
                    }
                    _ => {
                        if let Some(child) = map.get_mut(&name) {
                            on_self(child, op);
                        }
                    }
                }
            } else if let Some(child) = map.get_mut(&name) {
                walk(child, rest, op);
            }
        }
        _ => on_self(node, op),
    }
}

fn on_self(node: &mut Value, op: &Op) {
    match op {
        Op::Replace(v) => *node = v.clone(),
        Op::WrapInArray => *node = Value::Array(vec![node.take()]),
        Op::Stringify => *node = Value::String(node.to_string()),
        Op::Remove | Op::Duplicate | Op::Rename(_) => {}
    }
}

/// An edit of a document's text, after serialisation.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    /// The text is cut at this position (modulo its length).
    Truncate(usize),
    /// These bytes go in at this position.
    Insert(usize, Vec<u8>),
    /// The object opening at the n-th `{` gets a key it already has (or `resourceType`).
    DuplicateKey(usize),
    /// The n-th number (or value) becomes this literal.
    Number(usize, &'static str),
    /// The text is nested inside this many arrays.
    Nest(usize),
}

pub fn byte_edit() -> BoxedStrategy<ByteEdit> {
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                select(
                    &[
                        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\u{0}"
                    ][..]
                )
                .prop_map(|s| s.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| ByteEdit::Insert(at, bytes)),
        any::<usize>().prop_map(ByteEdit::DuplicateKey),
        (any::<usize>(), select(NUMBERS)).prop_map(|(n, lit)| ByteEdit::Number(n, lit)),
        (1usize..200).prop_map(ByteEdit::Nest),
    ]
    .boxed()
}

/// Applies `edit` to `text`.
pub fn edit_bytes(text: &mut Vec<u8>, edit: &ByteEdit) {
    match edit {
        ByteEdit::Truncate(at) => {
            if !text.is_empty() {
                text.truncate(at % text.len());
            }
        }
        ByteEdit::Insert(at, bytes) => {
            let at = at % (text.len() + 1);
            text.splice(at..at, bytes.iter().copied());
        }
        ByteEdit::DuplicateKey(n) => {
            let opens: Vec<usize> = text
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'{')
                .map(|(i, _)| i)
                .collect();
            if let Some(at) = opens.get(n % opens.len().max(1)) {
                let insert = b"\"resourceType\":\"Bundle\",".to_vec();
                text.splice(at + 1..at + 1, insert);
            }
        }
        ByteEdit::Number(n, literal) => {
            // The n-th `: ` value start (after a colon) becomes the literal.
            let colons: Vec<usize> = text
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b':')
                .map(|(i, _)| i)
                .collect();
            if let Some(at) = colons.get(n % colons.len().max(1)) {
                let start = at + 1;
                let end = text[start..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']'))
                    .map_or(text.len(), |p| start + p);
                text.splice(start..end, literal.bytes());
            }
        }
        ByteEdit::Nest(depth) => {
            let mut nested = vec![b'['; *depth];
            nested.append(text);
            nested.extend(std::iter::repeat_n(b']', *depth));
            *text = nested;
        }
    }
}

/// A document to fuzz: one of `seeds`, mutated, then serialised and edited as bytes.
#[derive(Debug, Clone)]
pub struct Mutated {
    pub seed: usize,
    pub mutations: Vec<Mutation>,
    pub edits: Vec<ByteEdit>,
}

pub fn mutated(seeds: usize) -> BoxedStrategy<Mutated> {
    (
        0..seeds,
        prop::collection::vec(mutation(), 0..6),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(byte_edit(), 1..3),
        ],
    )
        .prop_map(|(seed, mutations, edits)| Mutated {
            seed,
            mutations,
            edits,
        })
        .boxed()
}

impl Mutated {
    /// The mutated tree (before byte edits).
    pub fn tree(&self, seeds: &[Value]) -> Value {
        let mut doc = seeds[self.seed].clone();
        for m in &self.mutations {
            apply(&mut doc, m);
        }
        doc
    }

    /// The bytes a client would send.
    pub fn bytes(&self, seeds: &[Value]) -> Vec<u8> {
        let mut text = serde_json::to_vec(&self.tree(seeds)).unwrap_or_default();
        for e in &self.edits {
            edit_bytes(&mut text, e);
        }
        text
    }
}
