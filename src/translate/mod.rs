//! Declarative translation between the prison profile and the community ones (UK Core R4, GP
//! Connect STU3), driven by `mappings/`. Pure: no I/O after loading.
//!
//! `Translator::load` reads, once, the ConceptMaps (`mappings/conceptmaps/*.json`), the
//! element-type tables of FHIR R4 and STU3 (`mappings/fhir-types/`) and every mapping file
//! (`mappings/*.yaml`, one per source and target pair, each naming its FHIR version conversion
//! under `mappings/conversions/`), and compiles them. `Translator::translate` then works on the
//! lossless JSON tree (decimals and timestamps come out exactly as they went in), in this order:
//!
//! 1. the source document is checked for shape (a wrong shape is a `TranslateError`);
//! 2. the structural resource is set aside (the prison Composition when the target is GP
//!    Connect; the GP Connect Lists when the target is the prison profile);
//! 3. resource types the target does not carry are dropped;
//! 4. `rules` (on the source structure), then the version conversion, run on each resource,
//!    and references named in `bundle.inline` are replaced by what they point at;
//! 5. the structure is rebuilt (Lists from Composition sections, or a Composition from Lists);
//! 6. `targetRules` run on each resource, then the output is made to fit the target FHIR
//!    version's element-type table;
//! 7. references and `fullUrl`s are rewritten in the target's style and the Bundle assembled.
//!
//! Everything that could not be carried is reported in `Translation::losses`, with the FHIRPath
//! of the element in the source document. Translation is not policy: custody-only and sensitive
//! content is removed, before translation, by the policy stage.
//!
//! `translate` copies what it carries; `translate_owned` moves it out of a document the caller
//! is done with (the per-recipient copy the policy stage makes), which is the cheaper path.
//! The rule-file format is documented in `mappings/README.md`.

mod conceptmap;
mod edischarge;
mod ops;
mod path;
mod rules;
mod schema;
mod structure;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path as FsPath;
use std::str::FromStr;

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};

pub use conceptmap::{ConceptTranslateRequest, ConceptTranslateResult, TranslateMatch};

use conceptmap::ConceptMap;
use rules::{Mapping, ReferenceStyle, RuleSet, Version};
use schema::TypeTable;
use structure::Item;

/// The profile a document is translated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// UK Core R4 (STU2 package).
    UkCoreR4,
    /// GP Connect Access Record Structured (STU3): the List-based structured record.
    GpConnectStu3,
    /// The prison profiles (R4), for transfers and receptions.
    Prison,
    /// The ITK3 Transfer of Care inpatient eDischarge document (STU3): an
    /// ITK-Document-Bundle-1 built on the CareConnect-ITK profiles of
    /// ITK-eDischarge-MessageDefinition-4, for GP practices over MESH (`crate::itk` wraps it
    /// in the message envelope).
    ItkEdischargeStu3,
}

impl Target {
    /// The profiles a document in this target is validated against.
    pub fn profile_set(self) -> crate::validate::ProfileSet {
        match self {
            Target::UkCoreR4 => crate::validate::ProfileSet::UkCore,
            Target::GpConnectStu3 => crate::validate::ProfileSet::GpConnect,
            Target::Prison => crate::validate::ProfileSet::Prison,
            Target::ItkEdischargeStu3 => crate::validate::ProfileSet::Itk,
        }
    }

    /// The name used on the wire (`?target=`) and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::UkCoreR4 => "uk-core-r4",
            Target::GpConnectStu3 => "gp-connect-stu3",
            Target::Prison => "prison",
            Target::ItkEdischargeStu3 => "itk-edischarge-stu3",
        }
    }

    /// Whether copies in this target are FHIR STU3 (the others are R4).
    pub fn is_stu3(self) -> bool {
        matches!(self, Target::GpConnectStu3 | Target::ItkEdischargeStu3)
    }

    /// Every target, in a stable order.
    pub fn all() -> [Target; 4] {
        [
            Target::UkCoreR4,
            Target::GpConnectStu3,
            Target::Prison,
            Target::ItkEdischargeStu3,
        ]
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target name that is not one of `uk-core-r4`, `gp-connect-stu3`, `prison`,
/// `itk-edischarge-stu3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{0}`: use uk-core-r4, gp-connect-stu3, prison or itk-edischarge-stu3")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uk-core-r4" => Ok(Target::UkCoreR4),
            "gp-connect-stu3" => Ok(Target::GpConnectStu3),
            "prison" => Ok(Target::Prison),
            "itk-edischarge-stu3" => Ok(Target::ItkEdischargeStu3),
            other => Err(UnknownTarget(other.to_owned())),
        }
    }
}

/// The profile a document comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A prison document Bundle (R4, DESIGN §5a).
    Prison,
    /// A GP Connect structured record (STU3 `collection` Bundle of Lists).
    GpConnectStu3,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Prison => "prison",
            Source::GpConnectStu3 => "gp-connect-stu3",
        }
    }

    /// Guesses the source profile of a Bundle (for the CLI and previews): a `document` whose
    /// first entry is a Composition is a prison document; a Bundle claiming the GP Connect
    /// structured-record profile, or a `collection` holding Lists, is a GP Connect record.
    pub fn detect(doc: &Value) -> Option<Source> {
        if doc.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return None;
        }
        let entries = doc.get("entry").and_then(Value::as_array);
        let first = entries
            .and_then(|e| e.first())
            .and_then(|e| e.get("resource"))
            .and_then(|r| r.get("resourceType"))
            .and_then(Value::as_str);
        let bundle_type = doc.get("type").and_then(Value::as_str);
        if bundle_type == Some("document") && first == Some("Composition") {
            return Some(Source::Prison);
        }
        let gpc_profile = doc
            .get("meta")
            .and_then(|m| m.get("profile"))
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.as_str()
                        .is_some_and(|s| s.ends_with("/GPConnect-StructuredRecord-Bundle-1"))
                })
            });
        let has_lists = entries.is_some_and(|es| {
            es.iter().any(|e| {
                e.get("resource")
                    .and_then(|r| r.get("resourceType"))
                    .and_then(Value::as_str)
                    == Some("List")
            })
        });
        if gpc_profile || (bundle_type == Some("collection") && has_lists) {
            return Some(Source::GpConnectStu3);
        }
        None
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the translation could not carry into the target, or an element it derived or
/// marked absent by a documented rule (an assumption, `mappings/README.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// FHIRPath of the element in the source document (`Bundle.entry[5].resource.code.coding[0]`).
    pub path: String,
    /// `system|code` when a code is concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, in words a sender can act on.
    pub reason: String,
    /// `assumption`: nothing was lost; the mapping wrote the element by the rule `reason`
    /// describes (severity `information`). Absent for a loss.
    #[serde(skip_serializing_if = "LossKind::is_loss")]
    pub kind: LossKind,
}

/// What a loss-report entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Something the target could not carry.
    #[default]
    Loss,
    /// An element the target requires, derived from what the document carries or marked absent
    /// (`data-absent-reason`), by a rule written in the mapping.
    Assumption,
}

impl LossKind {
    fn is_loss(&self) -> bool {
        *self == LossKind::Loss
    }
}

impl Loss {
    pub(crate) fn new(path: &str, code: Option<String>, reason: impl Into<String>) -> Loss {
        Loss {
            path: path.to_owned(),
            code,
            reason: reason.into(),
            kind: LossKind::Loss,
        }
    }

    pub(crate) fn assumption(path: &str, reason: impl Into<String>) -> Loss {
        Loss {
            kind: LossKind::Assumption,
            ..Loss::new(path, None, reason)
        }
    }

    pub fn is_assumption(&self) -> bool {
        self.kind == LossKind::Assumption
    }

    /// The entry as an `OperationOutcome.issue`.
    pub fn issue(&self) -> Value {
        let text = match &self.code {
            Some(c) => format!("{} ({c})", self.reason),
            None => self.reason.clone(),
        };
        match self.kind {
            LossKind::Loss => json!({
                "severity": "warning",
                "code": "incomplete",
                "diagnostics": text,
                "expression": [self.path],
            }),
            LossKind::Assumption => json!({
                "severity": "information",
                "code": "informational",
                "diagnostics": format!("Assumption: {text}"),
                "expression": [self.path],
            }),
        }
    }
}

/// A translated document and what could not be carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub output: Value,
    pub losses: Vec<Loss>,
}

impl Translation {
    /// The loss report as `OperationOutcome.issue` entries (`expression` the source element):
    /// a loss is a warning (code `incomplete`), an assumption information (code
    /// `informational`, its text starting "Assumption:").
    pub fn loss_issues(&self) -> Vec<Value> {
        self.losses.iter().map(Loss::issue).collect()
    }
}

/// Input that cannot be translated at all. Anything partially translatable is translated and
/// the rest reported as losses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// No mapping file covers this source and target.
    #[error("no mapping from {from} to {to} is loaded")]
    NoMapping { from: Source, to: Target },
    /// The document is not of the shape the source profile defines.
    #[error("{expression}: {message}")]
    Shape { expression: String, message: String },
}

impl TranslateError {
    fn shape(expression: &str, message: impl Into<String>) -> TranslateError {
        TranslateError::Shape {
            expression: expression.to_owned(),
            message: message.into(),
        }
    }
}

/// A loaded mapping: what `Translator::mappings` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingInfo {
    pub id: String,
    pub version: u32,
    pub title: Option<String>,
    pub source: Source,
    pub target: Target,
    pub file: String,
}

/// The compiled mappings and ConceptMaps. Cheap to share (`Arc`), immutable after `load`.
#[derive(Debug)]
pub struct Translator {
    maps: HashMap<String, ConceptMap>,
    mappings: HashMap<(Source, Target), (Mapping, String)>,
    r4: TypeTable,
    stu3: TypeTable,
}

impl Translator {
    /// Reads and compiles everything under `mappings_dir`. Any file that does not compile fails
    /// the load with its name, so a broken mapping is found at start-up, not at the first
    /// document.
    pub fn load(mappings_dir: &FsPath) -> anyhow::Result<Translator> {
        let read = |rel: &str| -> anyhow::Result<Vec<u8>> {
            let p = mappings_dir.join(rel);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        let r4 = TypeTable::from_json("R4", &read("fhir-types/r4.json")?)
            .context("fhir-types/r4.json")?;
        let stu3 = TypeTable::from_json("STU3", &read("fhir-types/stu3.json")?)
            .context("fhir-types/stu3.json")?;

        let mut maps = HashMap::new();
        let cm_dir = mappings_dir.join("conceptmaps");
        for file in sorted_files(&cm_dir, "json")? {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let cm = ConceptMap::from_json(&v).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            if maps.contains_key(&cm.url) {
                bail!("{}: ConceptMap {} is defined twice", file.display(), cm.url);
            }
            maps.insert(cm.url.clone(), cm);
        }

        let mut mappings = HashMap::new();
        for file in sorted_files(mappings_dir, "yaml")? {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut load_conversion = |rel: &str| -> anyhow::Result<String> {
                let p = mappings_dir.join(rel);
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
            };
            let known = |url: &str| maps.contains_key(url);
            let mapping = rules::compile_mapping(&text, &mut load_conversion, &known)
                .with_context(|| format!("mappings/{name}"))?;
            let key = (mapping.source, mapping.target);
            if let Some((_, other)) = mappings.get(&key) {
                bail!(
                    "mappings/{name}: {} to {} is already mapped by {other}",
                    key.0,
                    key.1
                );
            }
            mappings.insert(key, (mapping, name));
        }
        Ok(Translator {
            maps,
            mappings,
            r4,
            stu3,
        })
    }

    /// The loaded mappings, sorted by file name.
    pub fn mappings(&self) -> Vec<MappingInfo> {
        let mut out: Vec<MappingInfo> = self
            .mappings
            .values()
            .map(|(m, file)| MappingInfo {
                id: m.id.clone(),
                version: m.version,
                title: m.title.clone(),
                source: m.source,
                target: m.target,
                file: file.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.file.cmp(&b.file));
        out
    }

    /// Every code mapping of the loaded ConceptMaps: `(source system, source code, target
    /// system, target code)`. Sensitivity classification uses it so that a local code the maps
    /// turn into a labelled code is labelled too.
    pub fn code_pairs(&self) -> Vec<(String, String, String, String)> {
        let mut out: Vec<_> = self.maps.values().flat_map(ConceptMap::pairs).collect();
        out.sort();
        out
    }

    /// FHIR `$translate` over the loaded ConceptMaps.
    pub fn concept_translate(&self, req: &ConceptTranslateRequest) -> ConceptTranslateResult {
        conceptmap::translate(&self.maps, req)
    }

    /// Translates `document` from `source` to `target`. The document is not changed; the
    /// resources carried into the output are copied (see `translate_owned` to avoid that).
    pub fn translate(
        &self,
        source: Source,
        target: Target,
        document: &Value,
    ) -> Result<Translation, TranslateError> {
        let mapping = self.mapping(source, target)?;
        let entries = check_shape(source, document)?;
        let seed = mapping
            .bundle
            .composition
            .as_ref()
            .map(|_| seed_of(document));
        self.run(mapping, document, Entries::Borrowed(entries), seed)
    }

    /// As `translate`, for a document the caller no longer needs (such as the per-recipient
    /// copy the policy stage made): its resources are moved into the output, not copied.
    pub fn translate_owned(
        &self,
        source: Source,
        target: Target,
        mut document: Value,
    ) -> Result<Translation, TranslateError> {
        let mapping = self.mapping(source, target)?;
        check_shape(source, &document)?;
        let seed = mapping
            .bundle
            .composition
            .as_ref()
            .map(|_| seed_of(&document));
        let entries = match document
            .as_object_mut()
            .and_then(|m| m.shift_remove("entry"))
        {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        };
        self.run(mapping, &document, Entries::Owned(entries), seed)
    }

    fn mapping(&self, source: Source, target: Target) -> Result<&Mapping, TranslateError> {
        self.mappings
            .get(&(source, target))
            .map(|(m, _)| m)
            .ok_or(TranslateError::NoMapping {
                from: source,
                to: target,
            })
    }

    fn run(
        &self,
        mapping: &Mapping,
        document: &Value,
        entries: Entries<'_>,
        seed: Option<String>,
    ) -> Result<Translation, TranslateError> {
        let mut losses: Vec<Loss> = Vec::new();

        // 1. Collect the resources: the structural ones (the Composition that becomes Lists,
        // the Lists that become a Composition) are only read, and the types the target does not
        // carry are only reported, so neither is copied.
        let mut c = Collector {
            mapping,
            items: Vec::with_capacity(entries.len() + 8),
            composition: None,
            lists: Vec::new(),
            dropped: HashSet::new(),
            seen: HashSet::new(),
            losses: &mut losses,
        };
        match entries {
            Entries::Borrowed(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
                    match (e.get("resource"), e.get("resourceType")) {
                        (Some(r @ Value::Object(_)), _) => c.add(
                            format!("Bundle.entry[{i}].resource"),
                            full_url,
                            Cow::Borrowed(r),
                        ),
                        // Some GP Connect examples put the resource straight in the entry.
                        (None, Some(Value::String(_))) => {
                            c.add(format!("Bundle.entry[{i}]"), None, Cow::Borrowed(e))
                        }
                        _ => c.no_resource(i),
                    }
                }
            }
            Entries::Owned(entries) => {
                for (i, mut e) in entries.into_iter().enumerate() {
                    let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
                    let resource = e.as_object_mut().and_then(|m| m.shift_remove("resource"));
                    match (resource, e.get("resourceType")) {
                        (Some(r @ Value::Object(_)), _) => c.add(
                            format!("Bundle.entry[{i}].resource"),
                            full_url,
                            Cow::Owned(r),
                        ),
                        (None, Some(Value::String(_))) => {
                            c.add(format!("Bundle.entry[{i}]"), None, Cow::Owned(e))
                        }
                        _ => c.no_resource(i),
                    }
                }
            }
        }
        let Collector {
            mut items,
            composition,
            lists,
            mut dropped,
            ..
        } = c;
        if mapping.bundle.lists.is_some() && composition.is_none() {
            return Err(TranslateError::shape(
                "Bundle.entry",
                "the document has no Composition",
            ));
        }

        // The Composition as the rules see it (`set`'s `fromDocument`): as the sender wrote it.
        let document_composition: Option<Value> = match &composition {
            Some((_, c)) => Some(c.as_ref().clone()),
            None => items
                .iter()
                .find(|it| it.resource_type() == "Composition")
                .map(|it| it.resource.clone()),
        };
        let doc = document_composition.as_ref();

        // 4. Source rules, then the version conversion.
        run_phase(&mapping.rules, &mut items, &self.maps, doc, &mut losses);
        if let Some((_, conversion)) = &mapping.conversion {
            run_phase(conversion, &mut items, &self.maps, doc, &mut losses);
        }

        structure::inline_references(&mut items, &mapping.bundle.inline, &mut losses);

        // 5. Rebuild the structure.
        if let (Some(spec), Some((origin, comp))) = (&mapping.bundle.lists, &composition) {
            let built =
                structure::composition_to_lists(origin, comp, spec, &self.maps, &mut losses);
            items.extend(built);
        }
        if let Some(spec) = &mapping.bundle.edischarge {
            dropped.extend(edischarge::build(spec, document, &mut items, &mut losses));
        }
        if let Some(spec) = &mapping.bundle.composition {
            let lists: Vec<(String, &Value)> =
                lists.iter().map(|(o, v)| (o.clone(), v.as_ref())).collect();
            let comp = structure::lists_to_composition(
                &lists,
                &items,
                spec,
                &self.maps,
                seed.as_deref().unwrap_or_default(),
                &mut losses,
            );
            items.insert(0, comp);
        }

        // 6. Target rules, then fit the target FHIR version.
        run_phase(
            &mapping.target_rules,
            &mut items,
            &self.maps,
            doc,
            &mut losses,
        );
        let table = match mapping.conform {
            Some(Version::R4) => Some(&self.r4),
            Some(Version::Stu3) => Some(&self.stu3),
            None => None,
        };
        if let Some(table) = table {
            let mut path = String::with_capacity(64);
            items.retain_mut(|it| {
                path.clear();
                path.push_str(&it.origin);
                if table.conform_resource(&mut it.resource, &mut path, &mut losses) {
                    true
                } else {
                    remember(&mut dropped, it);
                    false
                }
            });
        }

        // 7. References, then the Bundle.
        structure::rewrite_references(&mut items, mapping.bundle.references, &dropped, &mut losses);
        let output = assemble(document, mapping, items, table, &mut losses);
        Ok(Translation { output, losses })
    }
}

/// The entries of the source document, borrowed or owned.
enum Entries<'a> {
    Borrowed(&'a [Value]),
    Owned(Vec<Value>),
}

impl Entries<'_> {
    fn len(&self) -> usize {
        match self {
            Entries::Borrowed(e) => e.len(),
            Entries::Owned(e) => e.len(),
        }
    }
}

/// Sorts the source resources into carried items, the structural resource(s) and the dropped.
struct Collector<'m, 'a, 'l> {
    mapping: &'m Mapping,
    items: Vec<Item>,
    composition: Option<(String, Cow<'a, Value>)>,
    lists: Vec<(String, Cow<'a, Value>)>,
    dropped: HashSet<String>,
    /// `Type/id` of the carried resources: a second entry with the same key is not carried.
    seen: HashSet<String>,
    losses: &'l mut Vec<Loss>,
}

impl<'a> Collector<'_, 'a, '_> {
    fn no_resource(&mut self, i: usize) {
        self.losses.push(Loss::new(
            &format!("Bundle.entry[{i}]"),
            None,
            "the entry holds no resource",
        ));
    }

    fn add(&mut self, origin: String, full_url: Option<String>, resource: Cow<'a, Value>) {
        let bundle = &self.mapping.bundle;
        let rt = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if bundle.lists.is_some() && rt == "Composition" && self.composition.is_none() {
            self.composition = Some((origin, resource));
            return;
        }
        if bundle.composition.is_some() && rt == "List" {
            self.lists.push((origin, resource));
            return;
        }
        if let Some(types) = &bundle.resource_types
            && !types.contains(rt)
        {
            self.losses.push(Loss::new(
                &origin,
                None,
                format!("{rt}: {}", bundle.dropped_reason),
            ));
            if let Some(u) = full_url {
                self.dropped.insert(u);
            }
            if let Some(id) = resource.get("id").and_then(Value::as_str) {
                self.dropped.insert(format!("{rt}/{id}"));
            }
            return;
        }
        let rt = rt.to_owned();
        let mut resource = resource;
        if let Some(id) = resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            && !self.seen.insert(format!("{rt}/{id}"))
        {
            let key = format!("{rt}/{id}");
            let same = self.items.iter().any(|it| {
                it.relative().as_deref() == Some(key.as_str()) && it.resource == *resource
            });
            if same {
                self.losses.push(Loss::new(
                    &origin,
                    None,
                    format!("a second, identical entry for {key}: it is carried once"),
                ));
                return;
            }
            // Different content under a reused id: both are carried, the later one under a new
            // id (references to the old id still mean the first).
            let new_id = structure::uuid_from(&format!("{origin}|{key}"));
            self.losses.push(Loss::new(
                &format!("{origin}.id"),
                None,
                format!("a second resource with the id {key}: it is carried as {rt}/{new_id}"),
            ));
            if let Value::Object(m) = resource.to_mut() {
                m.insert("id".into(), Value::String(new_id.clone()));
            }
            self.seen.insert(format!("{rt}/{new_id}"));
        }
        self.items.push(Item {
            origin,
            full_url,
            resource: resource.into_owned(),
        });
    }
}

fn remember(dropped: &mut HashSet<String>, it: &Item) {
    if let Some(u) = &it.full_url {
        dropped.insert(u.clone());
    }
    if let Some(r) = it.relative() {
        dropped.insert(r);
    }
}

fn run_phase(
    set: &RuleSet,
    items: &mut [Item],
    maps: &HashMap<String, ConceptMap>,
    composition: Option<&Value>,
    losses: &mut Vec<Loss>,
) {
    if set.is_empty() {
        return;
    }
    let mut cx = ops::Cx {
        maps,
        composition,
        losses,
    };
    let mut path = String::with_capacity(96);
    for it in items.iter_mut() {
        let specific = set.for_type(it.resource_type());
        for op in set.all.iter().chain(specific) {
            ops::apply(op, &mut it.resource, &it.origin, &mut path, &mut cx);
        }
    }
}

fn sorted_files(dir: &FsPath, ext: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in rd {
        let p = e?.path();
        if p.is_file() && p.extension().and_then(|x| x.to_str()) == Some(ext) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The entries of a document of the right shape.
fn check_shape(source: Source, doc: &Value) -> Result<&[Value], TranslateError> {
    let Value::Object(obj) = doc else {
        return Err(TranslateError::shape("Bundle", "expected a JSON object"));
    };
    if obj.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(TranslateError::shape("Bundle", "expected a Bundle"));
    }
    let entries: &[Value] = match obj.get("entry") {
        None => &[],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(TranslateError::shape("Bundle.entry", "expected an array")),
    };
    match source {
        Source::Prison => {
            if obj.get("type").and_then(Value::as_str) != Some("document") {
                return Err(TranslateError::shape(
                    "Bundle.type",
                    "a prison document Bundle has type `document`",
                ));
            }
            let first = entries
                .first()
                .and_then(|e| e.get("resource"))
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str);
            if first != Some("Composition") {
                return Err(TranslateError::shape(
                    "Bundle.entry[0].resource",
                    "the first entry of a prison document is its Composition",
                ));
            }
        }
        Source::GpConnectStu3 => {
            if let Some(t) = obj.get("type")
                && !t.is_string()
            {
                return Err(TranslateError::shape("Bundle.type", "expected a code"));
            }
        }
    }
    Ok(entries)
}

/// A repeatable seed for identifiers made during translation: the source Bundle's identity if
/// it has one, else a digest of its content.
fn seed_of(doc: &Value) -> String {
    if let Some(v) = doc
        .get("identifier")
        .and_then(|i| i.get("value"))
        .and_then(Value::as_str)
    {
        return format!("identifier|{v}");
    }
    if let Some(id) = doc.get("id").and_then(Value::as_str) {
        return format!("id|{id}");
    }
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    format!("content|{}", hex::encode(digest.as_ref()))
}

fn assemble(
    source: &Value,
    mapping: &Mapping,
    items: Vec<Item>,
    table: Option<&TypeTable>,
    losses: &mut Vec<Loss>,
) -> Value {
    let mut shell = Map::new();
    shell.insert("resourceType".into(), json!("Bundle"));
    let building_document = mapping.bundle.composition.is_some();
    if let Value::Object(src) = source {
        for (k, v) in src {
            if k == "entry" || k == "resourceType" {
                continue;
            }
            if building_document && matches!(k.as_str(), "type" | "link" | "total") {
                continue;
            }
            shell.insert(k.clone(), v.clone());
        }
    }
    if let Some(t) = &mapping.bundle.bundle_type {
        shell.insert("type".into(), Value::String(t.clone()));
    }
    if let Some(p) = &mapping.bundle.profile {
        let meta = shell
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = meta {
            m.insert("profile".into(), json!([p]));
        }
    }
    if let (Some(spec), Some(comp)) = (&mapping.bundle.composition, items.first()) {
        // A document made from a GP Connect record gets its own identity and timestamp.
        let id = comp.id().unwrap_or_default().to_owned();
        shell.insert(
            "identifier".into(),
            json!({"system": spec.identifier_system, "value": id}),
        );
        if let Some(d) = comp.resource.get("date") {
            let ts = d
                .as_str()
                .filter(|s| schema::valid_instant(s))
                .map(str::to_owned);
            match ts {
                Some(t) => {
                    shell.insert("timestamp".into(), Value::String(t));
                }
                None => {
                    shell.insert("timestamp".into(), Value::String(structure::now()));
                }
            }
        }
    }
    if let Some(table) = table {
        // Only the Bundle's own elements: the entries were made to fit already.
        let mut probe = Value::Object(shell);
        let mut path = String::from("Bundle");
        let mut scratch = Vec::new();
        if !table.conform_resource(&mut probe, &mut path, &mut scratch) {
            scratch.retain(|l| l.path != "Bundle");
        }
        losses.extend(scratch);
        shell = match probe {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        shell.insert("resourceType".into(), json!("Bundle"));
    }
    let entries: Vec<Value> = items
        .into_iter()
        .map(|it| {
            let mut e = Map::new();
            if mapping.bundle.references != ReferenceStyle::Relative
                && let Some(u) = it.full_url
            {
                e.insert("fullUrl".into(), Value::String(u));
            }
            e.insert("resource".into(), it.resource);
            Value::Object(e)
        })
        .collect();
    shell.insert("entry".into(), Value::Array(entries));
    Value::Object(shell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_their_wire_names_and_back() {
        for t in Target::all() {
            assert_eq!(t.as_str().parse::<Target>(), Ok(t));
        }
        assert!("fhir-r5".parse::<Target>().is_err());
    }

    #[test]
    fn a_non_bundle_is_a_shape_error() {
        let err = check_shape(Source::Prison, &json!({"resourceType": "Patient"})).unwrap_err();
        assert!(matches!(err, TranslateError::Shape { .. }));
    }

    #[test]
    fn a_prison_document_must_start_with_its_composition() {
        let doc = json!({"resourceType": "Bundle", "type": "document", "entry": [{"resource": {"resourceType": "Patient"}}]});
        let err = check_shape(Source::Prison, &doc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bundle.entry[0].resource: the first entry of a prison document is its Composition"
        );
    }

    #[test]
    fn the_translator_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Translator>();
    }
}
