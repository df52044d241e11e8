//! Reads conformance resources (StructureDefinition, ValueSet, CodeSystem) from folders of JSON
//! files, as single resources or Bundles of them, into typed raw records. Only the fields the
//! validator needs are kept; everything else is skipped while parsing, so the 60 MB of R4 core
//! definitions load without building a JSON tree.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A StructureDefinition as loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawStructureDefinition {
    pub url: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default)]
    pub base_definition: Option<String>,
    #[serde(default)]
    pub fhir_version: Option<String>,
    #[serde(default)]
    pub snapshot: Option<ElementList>,
    #[serde(default)]
    pub differential: Option<ElementList>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ElementList {
    #[serde(default)]
    pub element: Vec<ElementDef>,
}

/// The parts of an ElementDefinition the validator uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct ElementDef {
    pub id: Option<String>,
    pub path: String,
    pub slice_name: Option<String>,
    pub min: Option<u32>,
    pub max: Option<String>,
    pub base_max: Option<String>,
    pub types: Option<Vec<TypeRef>>,
    pub content_reference: Option<String>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<RawBinding>,
    pub constraints: Vec<RawConstraint>,
    pub slicing: Option<RawSlicing>,
    pub max_length: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TypeRef {
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawBinding {
    #[serde(default)]
    pub strength: Option<String>,
    #[serde(default)]
    pub value_set: Option<String>,
    /// STU3 spelling.
    #[serde(default)]
    pub value_set_reference: Option<RefOnly>,
    #[serde(default)]
    pub value_set_uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RefOnly {
    #[serde(default)]
    pub reference: Option<String>,
}

impl RawBinding {
    /// The bound ValueSet's canonical URL, whichever FHIR version spelled it.
    pub fn value_set_url(&self) -> Option<&str> {
        self.value_set
            .as_deref()
            .or(self.value_set_uri.as_deref())
            .or_else(|| self.value_set_reference.as_ref()?.reference.as_deref())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawConstraint {
    pub key: String,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub human: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSlicing {
    #[serde(default)]
    pub discriminator: Vec<RawDiscriminator>,
    #[serde(default)]
    pub rules: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawDiscriminator {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBase {
    #[serde(default)]
    max: Option<String>,
}

/// A `type` entry: STU3 carries one `profile` string, R4 a list.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTypeRef {
    code: Option<String>,
    #[serde(default)]
    profile: Option<OneOrMany>,
    #[serde(default)]
    target_profile: Option<OneOrMany>,
    #[serde(default)]
    extension: Vec<RawTypeExtension>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTypeExtension {
    url: String,
    #[serde(default)]
    value_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

impl From<RawTypeRef> for TypeRef {
    fn from(raw: RawTypeRef) -> TypeRef {
        // Primitive `value` elements carry System.String & co with the FHIR type in an
        // extension; element ids and Extension.url use it too.
        let fhir_type = raw
            .extension
            .iter()
            .find(|e| e.url == FHIR_TYPE_EXT)
            .and_then(|e| e.value_url.clone());
        let code = match (raw.code, fhir_type) {
            (Some(code), _) if !code.starts_with("http://hl7.org/fhirpath/") => code,
            (_, Some(t)) => t,
            (Some(code), None) => system_type_to_fhir(&code).to_string(),
            (None, None) => String::new(),
        };
        TypeRef {
            code,
            profiles: raw.profile.map(OneOrMany::into_vec).unwrap_or_default(),
            target_profiles: raw
                .target_profile
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
        }
    }
}

fn system_type_to_fhir(code: &str) -> &str {
    match code.rsplit('.').next() {
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        _ => "string",
    }
}

impl<'de> Deserialize<'de> for ElementDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementVisitor;
        impl<'de> Visitor<'de> for ElementVisitor {
            type Value = ElementDef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ElementDefinition")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ElementDef, A::Error> {
                let mut el = ElementDef::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "id" => el.id = Some(map.next_value()?),
                        "path" => el.path = map.next_value()?,
                        "sliceName" => el.slice_name = Some(map.next_value()?),
                        "min" => el.min = Some(map.next_value()?),
                        "max" => el.max = Some(map.next_value()?),
                        "base" => el.base_max = map.next_value::<RawBase>()?.max,
                        "type" => {
                            let raw: Vec<RawTypeRef> = map.next_value()?;
                            el.types = Some(raw.into_iter().map(TypeRef::from).collect());
                        }
                        "contentReference" => el.content_reference = Some(map.next_value()?),
                        "binding" => el.binding = Some(map.next_value()?),
                        "constraint" => el.constraints = map.next_value()?,
                        "slicing" => el.slicing = Some(map.next_value()?),
                        "maxLength" => el.max_length = Some(map.next_value()?),
                        k if k.starts_with("fixed") && k.len() > 5 => {
                            el.fixed = Some(map.next_value()?);
                        }
                        k if k.starts_with("pattern") && k.len() > 7 => {
                            el.pattern = Some(map.next_value()?);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if el.path.is_empty() {
                    return Err(de::Error::missing_field("path"));
                }
                Ok(el)
            }
        }
        deserializer.deserialize_map(ElementVisitor)
    }
}

/// A ValueSet as loaded.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawValueSet {
    pub url: String,
    #[serde(default)]
    pub compose: Option<RawCompose>,
    #[serde(default)]
    pub expansion: Option<RawExpansion>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawCompose {
    #[serde(default)]
    pub include: Vec<RawInclude>,
    #[serde(default)]
    pub exclude: Vec<RawInclude>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawInclude {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub concept: Vec<RawConcept>,
    #[serde(default)]
    pub filter: Vec<IgnoredValue>,
    #[serde(default)]
    pub value_set: Option<OneOrManyStrings>,
}

/// STU3 allows one `valueSet` string; R4 a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrManyStrings {
    One(String),
    Many(Vec<String>),
}

impl OneOrManyStrings {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrManyStrings::One(s) => std::slice::from_ref(s),
            OneOrManyStrings::Many(v) => v,
        }
    }
}

/// A present but unused value.
#[derive(Debug, Clone)]
pub(crate) struct IgnoredValue;

impl<'de> Deserialize<'de> for IgnoredValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| IgnoredValue)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawConcept {
    pub code: String,
    #[serde(default)]
    pub display: Option<String>,
    /// Nested concepts (CodeSystem hierarchies).
    #[serde(default)]
    pub concept: Vec<RawConcept>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawExpansion {
    #[serde(default)]
    pub contains: Vec<RawContains>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawContains {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub display: Option<String>,
    #[serde(default)]
    pub contains: Vec<RawContains>,
}

/// A CodeSystem as loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawCodeSystem {
    pub url: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub concept: Vec<RawConcept>,
}

/// One conformance resource found in a file.
#[derive(Debug)]
pub(crate) enum Conformance {
    StructureDefinition(Box<RawStructureDefinition>),
    ValueSet(Box<RawValueSet>),
    CodeSystem(Box<RawCodeSystem>),
}

/// What a JSON file held: conformance resources (directly or in a Bundle), or nothing useful.
struct FileContent(Vec<Conformance>);

impl<'de> Deserialize<'de> for FileContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        ResourceSeed { out: &mut out }.deserialize(d)?;
        Ok(FileContent(out))
    }
}

/// Deserializes one resource, pushing any conformance resource it is or holds into `out`.
struct ResourceSeed<'o> {
    out: &'o mut Vec<Conformance>,
}

impl<'de> DeserializeSeed<'de> for ResourceSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(first) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
            return Ok(());
        };
        if first != "resourceType" {
            // Unusual key order: buffer the object, then read it again with resourceType first.
            let mut obj = serde_json::Map::new();
            let v: Value = map.next_value()?;
            obj.insert(first.into_owned(), v);
            while let Some(k) = map.next_key::<String>()? {
                let v: Value = map.next_value()?;
                obj.insert(k, v);
            }
            let Some(rt) = obj.remove("resourceType") else {
                return Ok(());
            };
            let mut ordered = serde_json::Map::new();
            ordered.insert("resourceType".into(), rt);
            ordered.extend(obj);
            return ResourceSeed { out: self.out }
                .deserialize(Value::Object(ordered))
                .map_err(de::Error::custom);
        }
        let rt: std::borrow::Cow<'de, str> = map.next_value()?;
        let rest = de::value::MapAccessDeserializer::new(map);
        match rt.as_ref() {
            "StructureDefinition" => {
                let sd = RawStructureDefinition::deserialize(rest)?;
                self.out
                    .push(Conformance::StructureDefinition(Box::new(sd)));
            }
            "ValueSet" => {
                let vs = RawValueSet::deserialize(rest)?;
                self.out.push(Conformance::ValueSet(Box::new(vs)));
            }
            "CodeSystem" => {
                let cs = RawCodeSystem::deserialize(rest)?;
                self.out.push(Conformance::CodeSystem(Box::new(cs)));
            }
            "Bundle" => {
                rest.deserialize_map(BundleVisitor { out: self.out })?;
            }
            _ => {
                IgnoredAny::deserialize(rest)?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

struct BundleVisitor<'o> {
    out: &'o mut Vec<Conformance>,
}

impl<'de> Visitor<'de> for BundleVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Bundle")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "entry" {
                map.next_value_seed(EntriesSeed {
                    out: &mut *self.out,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct EntriesSeed<'o> {
    out: &'o mut Vec<Conformance>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Bundle entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(EntrySeed {
                out: &mut *self.out,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct EntrySeed<'o> {
    out: &'o mut Vec<Conformance>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Bundle entry")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "resource" {
                map.next_value_seed(ResourceSeed {
                    out: &mut *self.out,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Parses one file's bytes into the conformance resources it holds.
pub(crate) fn parse_conformance(bytes: &[u8]) -> Result<Vec<Conformance>, serde_json::Error> {
    serde_json::from_slice::<FileContent>(bytes).map(|c| c.0)
}

/// Every `.json` (or gzip-compressed `.json.gz`) file under `dir`, recursively, in a stable
/// order.
pub(crate) fn json_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
                || p.to_string_lossy()
                    .to_ascii_lowercase()
                    .ends_with(".json.gz")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Strips a `|version` suffix from a canonical URL.
pub(crate) fn strip_version(url: &str) -> &str {
    url.split('|').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_of_definitions_yields_each_conformance_resource() {
        let json = br#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"ValueSet","url":"http://x/vs","compose":{"include":[{"system":"http://x/cs","concept":[{"code":"a"}]}]}}},
            {"resource":{"resourceType":"Patient","id":"p"}},
            {"resource":{"resourceType":"CodeSystem","url":"http://x/cs","content":"complete","concept":[{"code":"a","concept":[{"code":"b"}]}]}}
        ]}"#;
        let got = parse_conformance(json).unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Conformance::ValueSet(vs) if vs.url == "http://x/vs"));
        assert!(
            matches!(&got[1], Conformance::CodeSystem(cs) if cs.concept[0].concept[0].code == "b")
        );
    }

    #[test]
    fn element_definitions_keep_fixed_and_pattern_values_whatever_their_type() {
        let json = br#"{"url":"http://x/sd","resourceType":"StructureDefinition","type":"Patient",
            "differential":{"element":[
              {"id":"Patient.gender","path":"Patient.gender","fixedCode":"male","min":1},
              {"id":"Patient.maritalStatus","path":"Patient.maritalStatus","patternCodeableConcept":{"text":"x"},
               "type":[{"code":"CodeableConcept","profile":"http://stu3/profile"}]}
            ]}}"#;
        let got = parse_conformance(json).unwrap();
        let Conformance::StructureDefinition(sd) = &got[0] else {
            panic!("not an SD")
        };
        let els = &sd.differential.as_ref().unwrap().element;
        assert_eq!(els[0].fixed, Some(serde_json::json!("male")));
        assert_eq!(els[0].min, Some(1));
        assert_eq!(els[1].pattern, Some(serde_json::json!({"text": "x"})));
        assert_eq!(
            els[1].types.as_ref().unwrap()[0].profiles,
            vec!["http://stu3/profile"]
        );
    }

    #[test]
    fn versioned_canonicals_lose_their_version() {
        assert_eq!(strip_version("http://x/sd|1.2"), "http://x/sd");
        assert_eq!(strip_version("http://x/sd"), "http://x/sd");
    }
}
