//! The declarative rule files of `mappings/` (YAML) and their compilation into operations.
//!
//! A *mapping file* (`<source>-to-<target>.v<N>.yaml`) describes one (source profile, target
//! profile) pair: the Bundle that comes out, the resource types it carries, an optional
//! structural step (Composition sections to GP Connect Lists and back), the rules applied to
//! the source resources, the FHIR version conversion to apply (a *conversion file* under
//! `mappings/conversions/`), the rules applied to the converted resources, and the FHIR version
//! whose element-type table the output must fit. `mappings/README.md` documents every operation.

use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

use super::path::Path;
use super::{Source, Target};

/// What `recode` does with a code the ConceptMap has no target for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unmapped {
    /// Leave the code as it is (and report it).
    Keep,
    /// Remove the code (and report it); a CodeableConcept keeps the display as its text.
    Drop,
}

/// Whether `recode` replaces the source coding or adds the target coding next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecodeMode {
    Replace,
    Append,
}

/// How a sub-extension value changes type in `renameExtension`.
#[derive(Debug, Clone)]
pub(crate) struct ValueRename {
    /// New `value[x]` key.
    pub to: String,
    /// Wrap the old value as this key of an object (`valueId` to `valueIdentifier.value`).
    pub wrap_key: Option<String>,
    /// Other properties of the wrapping object.
    pub with: serde_json::Map<String, Value>,
    /// Take this key out of the old object value (`valueIdentifier.value` to `valueId`).
    pub unwrap_key: Option<String>,
}

/// One `renameExtension` rule.
#[derive(Debug, Clone)]
pub(crate) struct ExtensionRename {
    pub to: String,
    pub at: Option<Path>,
    pub sub: HashMap<String, String>,
    pub values: HashMap<String, ValueRename>,
}

/// One compiled operation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `when: {path, equals}` (or `unless:`) beside an operation: it runs only if some value at
    /// `path` equals (or none equals) `equals`.
    When {
        path: Path,
        equals: Value,
        negate: bool,
        op: Box<Op>,
    },
    Remove {
        path: Path,
        reason: Option<String>,
        report: bool,
    },
    Keep {
        path: Path,
        elements: HashSet<String>,
        reason: Option<String>,
    },
    Recode {
        path: Path,
        concept_map: String,
        unmapped: Unmapped,
        mode: RecodeMode,
        /// For a primitive `code`: its code system.
        system: Option<String>,
    },
    Map {
        path: Path,
        /// Equivalent values: translated silently.
        values: HashMap<String, String>,
        /// Approximations: translated and reported.
        lossy: HashMap<String, String>,
        reason: Option<String>,
    },
    Set {
        path: Path,
        value: Value,
        /// Copy the first value found at this path of the same resource instead of `value`.
        from: Option<Path>,
        /// Copy the first value found at this path of the document's Composition.
        from_document: Option<Path>,
        if_absent: bool,
        when: Option<(Path, Value)>,
        /// The rule, reported as an assumption whenever the operation writes.
        assume: Option<String>,
    },
    /// Marks a missing element absent with `data-absent-reason` (always reported).
    Absent {
        path: Path,
        reason: String,
        shape: super::ops::AbsentShape,
        assume: String,
    },
    Profile {
        urls: Vec<String>,
    },
    Move {
        from: Path,
        to: Path,
        /// Number of leading steps shared by `from` and `to`: the context that is iterated.
        prefix: usize,
        reason: Option<String>,
    },
    ToCode {
        path: Path,
        system: Option<String>,
    },
    ToCodeableConcept {
        path: Path,
        system: String,
    },
    Wrap {
        path: Path,
        key: String,
    },
    Unwrap {
        path: Path,
        key: String,
    },
    ToExtension {
        path: Path,
        url: String,
        value_type: String,
    },
    FromExtension {
        url: String,
        sub: Option<String>,
        to: Path,
    },
    /// Consecutive `renameExtension` rules, merged at load time so that one walk of the
    /// resource applies them all. Keyed by the old URL.
    RenameExtensions {
        renames: HashMap<String, ExtensionRename>,
    },
    KeepExtensions {
        prefixes: Vec<String>,
        reason: Option<String>,
    },
    RecodeEverywhere {
        concept_map: String,
        report: bool,
    },
    AddExtension {
        url: String,
        value: serde_json::Map<String, Value>,
        if_absent: bool,
        /// Add it to each node at this path instead of the resource...
        on: Option<Path>,
        /// ...where this holds.
        where_: Option<(Path, Value)>,
        assume: Option<String>,
    },
}

/// Rules of one phase: those for every resource (`resource: "*"`) run first, then those for
/// the resource's type, each list in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleSet {
    pub all: Vec<Op>,
    pub by_type: HashMap<String, Vec<Op>>,
}

impl RuleSet {
    /// The rules for one resource type (those for every type are in `all`).
    pub fn for_type(&self, resource_type: &str) -> &[Op] {
        self.by_type
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by_type.is_empty()
    }
}

/// A Coding given in a rule file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodingSpec {
    pub system: String,
    pub code: String,
    #[serde(default)]
    pub display: Option<String>,
}

impl CodingSpec {
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("system".into(), Value::String(self.system.clone()));
        m.insert("code".into(), Value::String(self.code.clone()));
        if let Some(d) = &self.display {
            m.insert("display".into(), Value::String(d.clone()));
        }
        Value::Object(m)
    }
}

/// `bundle.structure.compositionToLists`: the prison Composition becomes GP Connect Lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ListsSpec {
    /// ConceptMap from section codes to List codes.
    pub concept_map: String,
    #[serde(default = "keep_str")]
    pub unmapped: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default = "current")]
    pub status: String,
    #[serde(default = "snapshot")]
    pub mode: String,
}

/// `bundle.structure.listsToComposition`: GP Connect Lists become a prison Composition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CompositionSpec {
    /// ConceptMap from List codes to section codes.
    pub concept_map: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default = "final_str")]
    pub status: String,
    #[serde(rename = "type")]
    pub doc_type: CodingSpec,
    pub title: String,
    #[serde(default)]
    pub event: Option<CodingSpec>,
    /// System of the Bundle identifier made for the translated document.
    pub identifier_system: String,
}

fn keep_str() -> String {
    "keep".into()
}
fn current() -> String {
    "current".into()
}
fn snapshot() -> String {
    "snapshot".into()
}
fn final_str() -> String {
    "final".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct StructureSpec {
    #[serde(default)]
    pub composition_to_lists: Option<ListsSpec>,
    #[serde(default)]
    pub lists_to_composition: Option<CompositionSpec>,
    /// The prison Composition as an ITK3 eDischarge Composition (`edischarge.rs`).
    #[serde(default)]
    pub edischarge: Option<super::edischarge::EdischargeSpec>,
}

/// How references and `fullUrl`s are written in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReferenceStyle {
    /// As they came.
    Keep,
    /// `Type/id`, no `fullUrl` (GP Connect structured record).
    Relative,
    /// `urn:uuid:` fullUrls, references rewritten to them (FHIR documents).
    UrnUuid,
}

/// `bundle.inline`: a reference is replaced by an element of the resource it points at (the
/// prison profiles take a medication as a CodeableConcept, GP Connect refers to a Medication).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InlineSpec {
    /// Type of the resources that hold the reference.
    pub resource: String,
    /// Top-level Reference element (`medicationReference`).
    pub reference: String,
    /// Type of the resource referred to.
    pub target: String,
    /// Its element to copy (`code`).
    pub element: String,
    /// Where the copy goes (`medicationCodeableConcept`).
    pub to: String,
    /// The target profile allows only the inlined form: a reference that leads nowhere is
    /// removed too (and a resource then missing a required element is not carried).
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBundle {
    #[serde(default, rename = "type")]
    bundle_type: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    references: Option<String>,
    #[serde(default)]
    resource_types: Option<Vec<String>>,
    #[serde(default)]
    dropped_reason: Option<String>,
    #[serde(default)]
    structure: Option<StructureSpec>,
    #[serde(default)]
    inline: Vec<InlineSpec>,
}

/// Compiled `bundle:` section.
#[derive(Debug, Clone)]
pub(crate) struct BundleSpec {
    pub bundle_type: Option<String>,
    pub profile: Option<String>,
    pub references: ReferenceStyle,
    pub resource_types: Option<HashSet<String>>,
    pub dropped_reason: String,
    pub lists: Option<ListsSpec>,
    pub composition: Option<CompositionSpec>,
    pub edischarge: Option<super::edischarge::EdischargeSpec>,
    pub inline: Vec<InlineSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResourceRules {
    resource: String,
    #[serde(default)]
    ops: Vec<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMapping {
    id: String,
    version: u32,
    #[serde(default)]
    title: Option<String>,
    /// Free text for readers of the file.
    #[serde(default, rename = "description")]
    _description: Option<String>,
    source: String,
    target: String,
    #[serde(default)]
    convert: Option<String>,
    #[serde(default)]
    conform: Option<String>,
    bundle: RawBundle,
    #[serde(default)]
    rules: Vec<RawResourceRules>,
    #[serde(default)]
    target_rules: Vec<RawResourceRules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConversion {
    id: String,
    #[serde(rename = "version")]
    _version: u32,
    #[serde(default, rename = "description")]
    _description: Option<String>,
    from: String,
    to: String,
    #[serde(default)]
    resources: Vec<RawResourceRules>,
}

/// FHIR version of a type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    R4,
    Stu3,
}

impl Version {
    fn parse(s: &str) -> anyhow::Result<Version> {
        match s {
            "r4" | "R4" => Ok(Version::R4),
            "stu3" | "STU3" => Ok(Version::Stu3),
            other => bail!("unknown FHIR version `{other}` (use R4 or STU3)"),
        }
    }
}

/// A compiled mapping file.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub id: String,
    pub version: u32,
    pub title: Option<String>,
    pub source: Source,
    pub target: Target,
    pub bundle: BundleSpec,
    pub rules: RuleSet,
    pub conversion: Option<(String, RuleSet)>,
    pub target_rules: RuleSet,
    pub conform: Option<Version>,
}

/// Reads and compiles a mapping file. `load_conversion` reads a conversion file by its path
/// relative to the mappings directory; `known_map` says whether a ConceptMap URL is loaded.
pub(crate) fn compile_mapping(
    text: &str,
    load_conversion: &mut dyn FnMut(&str) -> anyhow::Result<String>,
    known_map: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Mapping> {
    let raw: RawMapping = serde_yaml_ng::from_str(text)?;
    let source = match raw.source.as_str() {
        "prison" => Source::Prison,
        "gp-connect-stu3" => Source::GpConnectStu3,
        other => bail!("unknown source `{other}` (prison or gp-connect-stu3)"),
    };
    let target: Target = raw
        .target
        .parse()
        .map_err(|e: super::UnknownTarget| anyhow!("{e}"))?;
    let references = match raw.bundle.references.as_deref().unwrap_or("keep") {
        "keep" => ReferenceStyle::Keep,
        "relative" => ReferenceStyle::Relative,
        "urn-uuid" => ReferenceStyle::UrnUuid,
        other => bail!("bundle.references: `{other}` is not keep, relative or urn-uuid"),
    };
    let (lists, composition, edischarge) = match raw.bundle.structure {
        None => (None, None, None),
        Some(s) => {
            let given = [
                s.composition_to_lists.is_some(),
                s.lists_to_composition.is_some(),
                s.edischarge.is_some(),
            ];
            if given.iter().filter(|g| **g).count() > 1 {
                bail!(
                    "bundle.structure: give one of compositionToLists, listsToComposition or edischarge"
                );
            }
            (s.composition_to_lists, s.lists_to_composition, s.edischarge)
        }
    };
    if let Some(l) = &lists {
        if !known_map(&l.concept_map) {
            bail!(
                "compositionToLists: ConceptMap {} is not loaded",
                l.concept_map
            );
        }
        if l.unmapped != "keep" && l.unmapped != "drop" {
            bail!("compositionToLists.unmapped must be keep or drop");
        }
    }
    if let Some(c) = &composition
        && !known_map(&c.concept_map)
    {
        bail!(
            "listsToComposition: ConceptMap {} is not loaded",
            c.concept_map
        );
    }
    let bundle = BundleSpec {
        bundle_type: raw.bundle.bundle_type,
        profile: raw.bundle.profile,
        references,
        resource_types: raw
            .bundle
            .resource_types
            .map(|v| v.into_iter().collect::<HashSet<_>>()),
        dropped_reason: raw
            .bundle
            .dropped_reason
            .unwrap_or_else(|| "this resource type is not carried by the target profile".into()),
        lists,
        composition,
        edischarge,
        inline: raw.bundle.inline,
    };
    let rules = compile_rule_set(&raw.rules, known_map).context("rules")?;
    let target_rules = compile_rule_set(&raw.target_rules, known_map).context("targetRules")?;
    let conversion = match &raw.convert {
        None => None,
        Some(rel) => {
            let text = load_conversion(rel)?;
            let conv: RawConversion =
                serde_yaml_ng::from_str(&text).with_context(|| format!("conversion {rel}"))?;
            Version::parse(&conv.from).with_context(|| format!("conversion {rel}"))?;
            Version::parse(&conv.to).with_context(|| format!("conversion {rel}"))?;
            let set = compile_rule_set(&conv.resources, known_map)
                .with_context(|| format!("conversion {rel}"))?;
            Some((conv.id, set))
        }
    };
    let conform = raw.conform.as_deref().map(Version::parse).transpose()?;
    Ok(Mapping {
        id: raw.id,
        version: raw.version,
        title: raw.title,
        source,
        target,
        bundle,
        rules,
        conversion,
        target_rules,
        conform,
    })
}

fn compile_rule_set(
    raw: &[RawResourceRules],
    known_map: &dyn Fn(&str) -> bool,
) -> anyhow::Result<RuleSet> {
    let mut set = RuleSet::default();
    for block in raw {
        let mut ops: Vec<Op> = Vec::with_capacity(block.ops.len());
        for (i, op) in block.ops.iter().enumerate() {
            let op = compile_op(op, known_map)
                .with_context(|| format!("resource {}: op #{}", block.resource, i + 1))?;
            // Adjacent extension renames become one operation (one walk of the resource).
            if let (
                Op::RenameExtensions { renames },
                Some(Op::RenameExtensions { renames: merged }),
            ) = (&op, ops.last_mut())
            {
                for (from, r) in renames {
                    if merged.insert(from.clone(), r.clone()).is_some() {
                        bail!(
                            "resource {}: op #{}: extension {from} is renamed twice",
                            block.resource,
                            i + 1
                        );
                    }
                }
                continue;
            }
            ops.push(op);
        }
        if block.resource == "*" {
            set.all.extend(ops);
        } else {
            set.by_type
                .entry(block.resource.clone())
                .or_default()
                .extend(ops);
        }
    }
    Ok(set)
}

fn path(s: &str) -> anyhow::Result<Path> {
    Path::parse(s).map_err(|e| anyhow!(e))
}

fn unmapped(s: Option<&str>) -> anyhow::Result<Unmapped> {
    match s.unwrap_or("keep") {
        "keep" => Ok(Unmapped::Keep),
        "drop" => Ok(Unmapped::Drop),
        other => bail!("unmapped: `{other}` is not keep or drop"),
    }
}

/// A rule value that is either a plain string (the path) or a map of options.
#[derive(Deserialize)]
#[serde(untagged)]
enum PathOr<T> {
    Path(String),
    Full(T),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveSpec {
    path: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default = "yes")]
    report: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepSpec {
    #[serde(default)]
    path: String,
    elements: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecodeSpec {
    path: String,
    concept_map: String,
    #[serde(default)]
    unmapped: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    system: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapSpec {
    path: String,
    #[serde(default)]
    values: HashMap<String, String>,
    #[serde(default)]
    lossy: HashMap<String, String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetSpec {
    path: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_document: Option<String>,
    #[serde(default)]
    if_absent: bool,
    #[serde(default)]
    when: Option<WhenSpec>,
    #[serde(default)]
    assume: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AbsentSpec {
    path: String,
    #[serde(default = "unknown_reason")]
    reason: String,
    #[serde(default)]
    shape: Option<String>,
    assume: String,
}

fn unknown_reason() -> String {
    "unknown".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenSpec {
    path: String,
    equals: Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ProfileSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveSpec {
    from: String,
    to: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToCodeSpec {
    path: String,
    #[serde(default)]
    system: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToCcSpec {
    path: String,
    system: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrapSpec {
    path: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToExtensionSpec {
    path: String,
    url: String,
    #[serde(rename = "type")]
    value_type: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromExtensionSpec {
    url: String,
    #[serde(default)]
    sub: Option<String>,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameExtensionSpec {
    from: String,
    to: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    sub: HashMap<String, String>,
    #[serde(default)]
    values: HashMap<String, ValueRenameSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueRenameSpec {
    to: String,
    #[serde(default)]
    wrap: Option<String>,
    #[serde(default)]
    with: serde_json::Map<String, Value>,
    #[serde(default)]
    unwrap: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AddExtensionSpec {
    url: String,
    value: serde_json::Map<String, Value>,
    #[serde(default)]
    if_absent: bool,
    #[serde(default)]
    on: Option<String>,
    #[serde(default, rename = "where")]
    where_: Option<WhenSpec>,
    #[serde(default)]
    assume: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecodeEverywhereSpec {
    concept_map: String,
    #[serde(default = "yes")]
    report: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepExtensionsSpec {
    prefixes: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn spec<T: serde::de::DeserializeOwned>(v: &serde_yaml_ng::Value) -> anyhow::Result<T> {
    Ok(serde_yaml_ng::from_value(v.clone())?)
}

fn compile_op(raw: &serde_yaml_ng::Value, known_map: &dyn Fn(&str) -> bool) -> anyhow::Result<Op> {
    let map = raw
        .as_mapping()
        .ok_or_else(|| anyhow!("an operation is a map with one key, such as `remove: path`"))?;
    for (key, negate) in [("when", false), ("unless", true)] {
        if let Some(cond) = map.get(key) {
            let w: WhenSpec = spec(cond).with_context(|| format!("{key}:"))?;
            let mut rest = map.clone();
            rest.remove(key);
            if rest.contains_key("when") || rest.contains_key("unless") {
                bail!("an operation has at most one of when and unless");
            }
            let op = compile_op(&serde_yaml_ng::Value::Mapping(rest), known_map)?;
            return Ok(Op::When {
                path: path(&w.path)?,
                equals: w.equals,
                negate,
                op: Box::new(op),
            });
        }
    }
    if map.len() != 1 {
        bail!("an operation has exactly one key (the operation name)");
    }
    let Some((name, body)) = map.iter().next() else {
        bail!("empty operation");
    };
    let name = name
        .as_str()
        .ok_or_else(|| anyhow!("operation names are strings"))?;
    Ok(match name {
        "remove" => match spec::<PathOr<RemoveSpec>>(body)? {
            PathOr::Path(p) => Op::Remove {
                path: path(&p)?,
                reason: None,
                report: true,
            },
            PathOr::Full(s) => Op::Remove {
                path: path(&s.path)?,
                reason: s.reason,
                report: s.report,
            },
        },
        "keep" => {
            let s: KeepSpec = spec(body)?;
            Op::Keep {
                path: path(&s.path)?,
                elements: s.elements.into_iter().collect(),
                reason: s.reason,
            }
        }
        "recode" => {
            let s: RecodeSpec = spec(body)?;
            if !known_map(&s.concept_map) {
                bail!("recode: ConceptMap {} is not loaded", s.concept_map);
            }
            Op::Recode {
                path: path(&s.path)?,
                concept_map: s.concept_map,
                unmapped: unmapped(s.unmapped.as_deref())?,
                mode: match s.mode.as_deref().unwrap_or("replace") {
                    "replace" => RecodeMode::Replace,
                    "append" => RecodeMode::Append,
                    other => bail!("recode.mode: `{other}` is not replace or append"),
                },
                system: s.system,
            }
        }
        "map" => {
            let s: MapSpec = spec(body)?;
            let p = path(&s.path)?;
            if p.is_root() || p.segs.last().is_some_and(|x| x.choice || x.url.is_some()) {
                bail!("map: the path must end in a plain element name");
            }
            Op::Map {
                path: p,
                values: s.values,
                lossy: s.lossy,
                reason: s.reason,
            }
        }
        "set" => {
            let s: SetSpec = spec(body)?;
            let (value, from, from_document) = match (s.value, s.from, s.from_document) {
                (Some(v), None, None) => (v, None, None),
                (None, Some(f), None) => (Value::Null, Some(path(&f)?), None),
                (None, None, Some(f)) => (Value::Null, None, Some(path(&f)?)),
                _ => bail!("set: give exactly one of value, from and fromDocument"),
            };
            Op::Set {
                path: path(&s.path)?,
                value,
                from,
                from_document,
                if_absent: s.if_absent,
                when: match s.when {
                    Some(w) => Some((path(&w.path)?, w.equals)),
                    None => None,
                },
                assume: s.assume,
            }
        }
        "absent" => {
            let s: AbsentSpec = spec(body)?;
            let p = path(&s.path)?;
            if p.is_root() {
                bail!("absent: the path must name an element");
            }
            if !matches!(
                s.reason.as_str(),
                "unknown"
                    | "asked-unknown"
                    | "temp-unknown"
                    | "not-asked"
                    | "asked-declined"
                    | "masked"
                    | "not-applicable"
                    | "unsupported"
                    | "as-text"
                    | "error"
                    | "not-a-number"
                    | "negative-infinity"
                    | "positive-infinity"
                    | "not-performed"
                    | "not-permitted"
            ) {
                bail!(
                    "absent.reason: `{}` is not a data-absent-reason code",
                    s.reason
                );
            }
            use super::ops::AbsentShape;
            Op::Absent {
                path: p,
                reason: s.reason,
                shape: match s.shape.as_deref() {
                    None | Some("element") => AbsentShape::Element,
                    Some("primitive") => AbsentShape::Primitive,
                    Some("primitive-list") => AbsentShape::PrimitiveList,
                    Some(other) => {
                        bail!("absent.shape: `{other}` is not element, primitive or primitive-list")
                    }
                },
                assume: s.assume,
            }
        }
        "profile" => Op::Profile {
            urls: match spec::<ProfileSpec>(body)? {
                ProfileSpec::One(u) => vec![u],
                ProfileSpec::Many(v) => v,
            },
        },
        "move" => {
            let s: MoveSpec = spec(body)?;
            let from = path(&s.from)?;
            let to = path(&s.to)?;
            if from.is_root() || to.is_root() {
                bail!("move: from and to must name elements");
            }
            let common = from
                .segs
                .iter()
                .zip(to.segs.iter())
                .take_while(|(a, b)| a == b)
                .count();
            let prefix = common.min(from.segs.len() - 1).min(to.segs.len() - 1);
            if from.segs[prefix..].last().is_some_and(|s| s.choice)
                != to.segs[prefix..].last().is_some_and(|s| s.choice)
            {
                bail!("move: a choice element ([x]) can only move to a choice element");
            }
            Op::Move {
                from,
                to,
                prefix,
                reason: s.reason,
            }
        }
        "toCode" => {
            let s: ToCodeSpec = spec(body)?;
            Op::ToCode {
                path: path(&s.path)?,
                system: s.system,
            }
        }
        "toCodeableConcept" => {
            let s: ToCcSpec = spec(body)?;
            Op::ToCodeableConcept {
                path: path(&s.path)?,
                system: s.system,
            }
        }
        "wrap" => {
            let s: WrapSpec = spec(body)?;
            Op::Wrap {
                path: path(&s.path)?,
                key: s.key,
            }
        }
        "unwrap" => {
            let s: WrapSpec = spec(body)?;
            Op::Unwrap {
                path: path(&s.path)?,
                key: s.key,
            }
        }
        "toExtension" => {
            let s: ToExtensionSpec = spec(body)?;
            let p = path(&s.path)?;
            if p.segs.len() != 1 {
                bail!("toExtension: the path must be a top-level element");
            }
            Op::ToExtension {
                path: p,
                url: s.url,
                value_type: s.value_type,
            }
        }
        "fromExtension" => {
            let s: FromExtensionSpec = spec(body)?;
            Op::FromExtension {
                url: s.url,
                sub: s.sub,
                to: path(&s.to)?,
            }
        }
        "renameExtension" => {
            let s: RenameExtensionSpec = spec(body)?;
            let rename = ExtensionRename {
                to: s.to,
                at: s.at.as_deref().map(path).transpose()?,
                sub: s.sub,
                values: s
                    .values
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            ValueRename {
                                to: v.to,
                                wrap_key: v.wrap,
                                with: v.with,
                                unwrap_key: v.unwrap,
                            },
                        )
                    })
                    .collect(),
            };
            Op::RenameExtensions {
                renames: HashMap::from([(s.from, rename)]),
            }
        }
        "keepExtensions" => {
            let s: KeepExtensionsSpec = spec(body)?;
            Op::KeepExtensions {
                prefixes: s.prefixes,
                reason: s.reason,
            }
        }
        "recodeEverywhere" => {
            let s: RecodeEverywhereSpec = spec(body)?;
            if !known_map(&s.concept_map) {
                bail!(
                    "recodeEverywhere: ConceptMap {} is not loaded",
                    s.concept_map
                );
            }
            Op::RecodeEverywhere {
                concept_map: s.concept_map,
                report: s.report,
            }
        }
        "addExtension" => {
            let s: AddExtensionSpec = spec(body)?;
            if s.value.len() != 1 || !s.value.keys().all(|k| k.starts_with("value")) {
                bail!("addExtension.value is a map with one value[x] key, such as valueString");
            }
            Op::AddExtension {
                url: s.url,
                value: s.value,
                if_absent: s.if_absent,
                on: s.on.as_deref().map(path).transpose()?,
                where_: match s.where_ {
                    Some(w) => Some((path(&w.path)?, w.equals)),
                    None => None,
                },
                assume: s.assume,
            }
        }
        other => bail!("unknown operation `{other}`"),
    })
}

/// Compiles one operation, every ConceptMap URL taken as known (unit tests of the operations).
#[cfg(test)]
pub(crate) fn compile_op_for_tests(raw: &serde_yaml_ng::Value) -> anyhow::Result<Op> {
    compile_op(raw, &|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_compiles_from_yaml() {
        let text = r#"
id: t
version: 1
source: prison
target: uk-core-r4
bundle: {type: document}
rules:
  - resource: "*"
    ops:
      - remove: text
      - keepExtensions: {prefixes: ["https://a/"]}
  - resource: MedicationRequest
    ops:
      - keep: {elements: [id, meta]}
      - recode: {path: medicationCodeableConcept, conceptMap: "urn:m", unmapped: drop, mode: append}
      - map: {path: status, values: {on-hold: suspended}, lossy: {entered-in-error: cancelled}}
      - set: {path: taken, value: unk, ifAbsent: true, when: {path: status, equals: active}}
      - profile: https://p
      - move: {from: "dosageInstruction.doseAndRate.dose[x]", to: "dosageInstruction.dose[x]"}
      - toCode: {path: clinicalStatus}
      - toCodeableConcept: {path: clinicalStatus, system: "urn:s"}
      - wrap: {path: a, key: text}
      - unwrap: {path: a, key: text}
      - toExtension: {path: encounter, url: "urn:e", type: Reference}
      - fromExtension: {url: "urn:e", to: encounter}
      - renameExtension: {from: "urn:a", to: "urn:b", values: {valueId: {to: valueIdentifier, wrap: value, with: {system: "urn:sct"}}}}
"#;
        let m = compile_mapping(text, &mut |_| bail!("none"), &|u| u == "urn:m").unwrap();
        assert_eq!(m.rules.all.len(), 2);
        assert_eq!(m.rules.by_type["MedicationRequest"].len(), 13);
        match &m.rules.by_type["MedicationRequest"][5] {
            Op::Move { prefix, .. } => assert_eq!(*prefix, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adjacent_extension_renames_are_merged_into_one_walk() {
        let text = "id: t\nversion: 1\nsource: prison\ntarget: prison\nbundle: {}\nrules:\n  - resource: Patient\n    ops:\n      - renameExtension: {from: 'urn:a', to: 'urn:b'}\n      - renameExtension: {from: 'urn:c', to: 'urn:d'}\n      - remove: text\n      - renameExtension: {from: 'urn:e', to: 'urn:f'}\n";
        let m = compile_mapping(text, &mut |_| bail!("none"), &|_| true).unwrap();
        let ops = &m.rules.by_type["Patient"];
        assert_eq!(ops.len(), 3);
        match &ops[0] {
            Op::RenameExtensions { renames } => assert_eq!(renames.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_concept_map_fails_the_load() {
        let text = "id: t\nversion: 1\nsource: prison\ntarget: prison\nbundle: {}\nrules:\n  - resource: Condition\n    ops:\n      - recode: {path: code, conceptMap: 'urn:nope'}\n";
        let err = compile_mapping(text, &mut |_| bail!("none"), &|_| false).unwrap_err();
        assert!(format!("{err:#}").contains("urn:nope"), "{err:#}");
    }

    #[test]
    fn an_unknown_operation_fails_the_load() {
        let text = "id: t\nversion: 1\nsource: prison\ntarget: prison\nbundle: {}\nrules:\n  - resource: Condition\n    ops:\n      - frobnicate: code\n";
        let err = compile_mapping(text, &mut |_| bail!("none"), &|_| true).unwrap_err();
        assert!(format!("{err:#}").contains("frobnicate"), "{err:#}");
    }
}
