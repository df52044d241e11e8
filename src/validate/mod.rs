//! Profile validation: StructureDefinitions, ValueSets and CodeSystems are read at start-up from
//! `profiles/` and the configured package folders (adding a file adds a profile, with no
//! recompiling), differential-only profiles get snapshots from their bases, and every profile is
//! compiled into an indexed tree. Resources are then checked on the lossless JSON tree in one
//! pass: cardinality, datatypes, fixed and pattern values, required bindings to enumerable
//! ValueSets, slices, extension URLs and FHIRPath invariants.
//!
//! Files: `loader` (reading packages), `snapshot` (differential to snapshot), `compile`
//! (compiled trees), `check` (the instance walker), `terminology` (ValueSet expansion),
//! `fhirpath` (invariants), `clinical` (which elements of a copy are clinical content, from
//! `mappings/clinical-content/`).

mod check;
pub mod clinical;
mod compile;
/// Public for the fuzz targets (`tests/fuzz`); only `Expr` is visible.
pub mod fhirpath;
mod loader;
mod snapshot;
mod terminology;
pub mod xhtml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;

use crate::config::FhirSettings;
use crate::fhir::outcome::{Issue, Severity};

use check::{ResourceProfiles, Walker};
use compile::{CORE_SD, Compiled, Kind, Registry, TreeId};
use loader::{Conformance, RawStructureDefinition, json_files, parse_conformance, strip_version};
use terminology::Terminology;

pub use terminology::{Concept, Expansion};

/// Canonical base of our own StructureDefinitions.
pub const PRISON_SD_BASE: &str = "https://throughcare.example.org/fhir/StructureDefinition/";
/// Canonical base of UK Core StructureDefinitions.
pub const UK_CORE_SD_BASE: &str = "https://fhir.hl7.org.uk/StructureDefinition/";
/// Canonical base of the NHS Digital STU3 StructureDefinitions (GP Connect, ITK3).
pub const NHS_STU3_SD_BASE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
/// Canonical base of the CareConnect STU3 base profiles (HL7 UK), which the ITK3 and
/// CareConnect-ITK profiles build on and which the corpus does not carry.
pub const CARECONNECT_STU3_SD_BASE: &str = "https://fhir.hl7.org.uk/STU3/StructureDefinition/";

/// Whether a canonical URL is one of the ITK3 envelope or CareConnect-ITK profiles
/// (`packages/itk3.stu3`).
pub fn is_itk_profile(url: &str) -> bool {
    url.strip_prefix(NHS_STU3_SD_BASE).is_some_and(|name| {
        name.starts_with("ITK-")
            || name.starts_with("CareConnect-ITK-")
            || name.starts_with("Extension-ITK-")
            || name == "Extension-CareSettingType-1"
    })
}

/// Which profile a resource that claims none (or none that is loaded) is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileSet {
    /// The prison profiles in `profiles/`, then UK Core for resource types they do not cover.
    Prison,
    /// UK Core R4 (`UKCore-<Type>`).
    UkCore,
    /// The GP Connect STU3 profiles loaded from the packages.
    GpConnect,
    /// The base FHIR R4 resource definitions only.
    Base,
    /// The ITK3 envelope and CareConnect-ITK (Transfer of Care) STU3 profiles
    /// (`packages/itk3.stu3`). Resources are checked against the profiles they claim; a claimed
    /// profile that is not shipped (the CareConnect base profiles, `CareConnect-Patient-1` and
    /// the like, are not in the corpus) is reported as unchecked, with severity information.
    Itk,
}

impl ProfileSet {
    fn index(self) -> usize {
        match self {
            ProfileSet::Prison => 0,
            ProfileSet::UkCore => 1,
            ProfileSet::GpConnect => 2,
            ProfileSet::Base => 3,
            ProfileSet::Itk => 4,
        }
    }
}

/// What was loaded at start-up.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// StructureDefinitions compiled (profiles, resource and type definitions, extensions).
    pub profiles: usize,
    pub value_sets: usize,
    pub code_systems: usize,
    /// Package folders (and the profiles folder) that do not exist.
    pub missing_packages: Vec<PathBuf>,
    /// Package folders that were read.
    pub loaded_packages: Vec<PathBuf>,
    /// Package files that could not be read or parsed (skipped).
    pub unreadable_files: Vec<PathBuf>,
    /// Invariants (by key) whose expression this evaluator cannot compile: they are not
    /// evaluated, and `/readyz` says how many.
    pub invariants_not_evaluated: Vec<String>,
    /// Files that could not be read, definitions that could not be compiled, invariants that
    /// are not evaluated, and similar.
    pub warnings: Vec<String>,
}

/// A loaded, compiled set of profiles; cheap to share (`Send + Sync`, immutable).
pub struct Validator {
    compiled: Compiled,
    terminology: Terminology,
    /// Per profile set: resource type to default tree.
    defaults: [HashMap<String, TreeId>; 5],
    report: LoadReport,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// A file's parse result, kept in folder order.
struct LoadedFile {
    path: PathBuf,
    own: bool,
    result: Result<Vec<Conformance>, String>,
}

impl Validator {
    /// Loads every StructureDefinition, ValueSet and CodeSystem from the profiles folder and the
    /// package folders. Missing folders and unreadable package files are reported in
    /// [`LoadReport`], not fatal; a malformed file in the profiles folder (ours) is an error.
    pub fn load(settings: &FhirSettings) -> anyhow::Result<Validator> {
        let mut report = LoadReport::default();
        let mut folders: Vec<(PathBuf, bool)> = vec![(settings.profiles_dir.clone(), true)];
        folders.extend(settings.packages.iter().map(|p| (p.clone(), false)));
        let mut files: Vec<(PathBuf, bool)> = Vec::new();
        for (dir, own) in folders {
            if !dir.is_dir() {
                report.missing_packages.push(dir);
                continue;
            }
            let found = json_files(&dir)
                .with_context(|| format!("reading the folder {}", dir.display()))?;
            if !own {
                report.loaded_packages.push(dir.clone());
            }
            files.extend(found.into_iter().map(|f| (f, own)));
        }
        let loaded = parse_files(files);
        let mut raw: HashMap<String, RawStructureDefinition> = HashMap::new();
        let mut own_urls: Vec<String> = Vec::new();
        let mut terminology = Terminology::default();
        let mut duplicates = 0usize;
        for file in loaded {
            let items = match file.result {
                Ok(items) => items,
                Err(e) if file.own => {
                    anyhow::bail!(
                        "profile file {} is not valid JSON: {e}",
                        file.path.display()
                    )
                }
                Err(e) => {
                    report
                        .warnings
                        .push(format!("{} was skipped: {e}", file.path.display()));
                    report.unreadable_files.push(file.path.clone());
                    continue;
                }
            };
            for item in items {
                match item {
                    Conformance::StructureDefinition(sd) => {
                        let url = strip_version(&sd.url).to_string();
                        if raw.contains_key(&url) {
                            duplicates += 1;
                            continue;
                        }
                        if file.own {
                            own_urls.push(url.clone());
                        }
                        raw.insert(url, *sd);
                    }
                    Conformance::ValueSet(vs) => {
                        if !terminology.add_value_set(*vs) {
                            duplicates += 1;
                        }
                    }
                    Conformance::CodeSystem(cs) => {
                        if !terminology.add_code_system(*cs) {
                            duplicates += 1;
                        }
                    }
                }
            }
        }
        if duplicates > 0 {
            report.warnings.push(format!(
                "{duplicates} conformance resources repeat a canonical URL already loaded; the first one loaded was kept"
            ));
        }
        let mut urls: Vec<String> = raw.keys().cloned().collect();
        urls.sort();
        let mut registry = Registry::new(raw);
        for url in &urls {
            registry.tree(url);
        }
        report.warnings.append(&mut registry.warnings);
        report.invariants_not_evaluated = registry.unsupported.keys().cloned().collect();
        report.invariants_not_evaluated.sort();
        if !registry.unsupported.is_empty() {
            let list: Vec<String> = registry
                .unsupported
                .iter()
                .map(|(k, why)| format!("{k} ({why})"))
                .collect();
            report.warnings.push(format!(
                "{} invariants are not evaluated: {}",
                list.len(),
                list.join("; ")
            ));
        }
        let compiled = compile::finalize(std::mem::take(&mut registry.compiled), &terminology);
        report.profiles = compiled.trees.len();
        report.value_sets = terminology.value_set_count();
        report.code_systems = terminology.code_system_count();
        let defaults = default_tables(&compiled, &own_urls);
        Ok(Validator {
            compiled,
            terminology,
            defaults,
            report,
        })
    }

    /// What was loaded, and what was not.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Whether a StructureDefinition with this canonical URL (any `|version`) is loaded.
    pub fn has_profile(&self, url: &str) -> bool {
        self.compiled.by_url.contains_key(strip_version(url))
    }

    /// The codes of an enumerable ValueSet; `None` when it is not loaded or cannot be
    /// enumerated locally (filters, SNOMED CT and other large or external code systems).
    pub fn expand_codes(&self, valueset_url: &str) -> Option<Arc<Expansion>> {
        self.terminology.expand(valueset_url)
    }

    /// The profile a resource type defaults to in a profile set, if any.
    pub fn default_profile(&self, set: ProfileSet, resource_type: &str) -> Option<&str> {
        let t = *self.defaults[set.index()].get(resource_type)?;
        Some(&self.compiled.trees[t as usize].url)
    }

    /// Validates a resource. With `profile`, against that profile (an unknown URL gives a
    /// warning and the base definition is used); otherwise against the loaded profiles it
    /// claims in `meta.profile`, else the default of `defaults` for its type, else the base
    /// definition. A Bundle's entries are each validated the same way, with expressions rooted
    /// at `Bundle.entry[i].resource`.
    pub fn validate(
        &self,
        resource: &Value,
        profile: Option<&str>,
        defaults: ProfileSet,
    ) -> Vec<Issue> {
        let mut issues = Vec::new();
        let root = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Resource")
            .to_string();
        self.validate_into(resource, profile, defaults, &root, &mut issues, None);
        dedupe(&mut issues);
        issues
    }

    fn validate_into(
        &self,
        resource: &Value,
        profile: Option<&str>,
        defaults: ProfileSet,
        path: &str,
        issues: &mut Vec<Issue>,
        bundle: Option<&Value>,
    ) {
        let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
            issues.push(
                Issue::error("structure", "a resource needs a resourceType").at(path.to_string()),
            );
            return;
        };
        let trees = self.trees_for(resource, rt, profile, defaults, path, issues);
        let scope = NestedScope {
            validator: self,
            defaults,
        };
        for t in trees {
            let mut walker =
                Walker::new(&self.compiled, &scope, issues, path, resource).in_bundle(bundle);
            walker.resource(t, resource);
        }
        if rt == "Bundle"
            && let Some(entries) = resource.get("entry").and_then(Value::as_array)
        {
            for (i, entry) in entries.iter().enumerate() {
                if let Some(r) = entry.get("resource") {
                    let p = format!("{path}.entry[{i}].resource");
                    self.validate_into(r, None, defaults, &p, issues, Some(resource));
                }
            }
        }
    }

    /// The trees a resource is checked against, reporting unknown profiles.
    fn trees_for(
        &self,
        resource: &Value,
        rt: &str,
        profile: Option<&str>,
        defaults: ProfileSet,
        path: &str,
        issues: &mut Vec<Issue>,
    ) -> Vec<TreeId> {
        let base = self.compiled.by_url.get(&format!("{CORE_SD}{rt}")).copied();
        let core_loaded = self
            .compiled
            .by_url
            .contains_key(&format!("{CORE_SD}DomainResource"));
        let unknown_type = || {
            if core_loaded {
                Issue::error("structure", format!("unknown resource type '{rt}'"))
                    .at(path.to_string())
            } else {
                // Without the FHIR core package nothing can be checked: say so, do not reject.
                Issue::new(
                    Severity::Warning,
                    "not-supported",
                    format!("no definition of {rt} is loaded (is the FHIR R4 core package missing?); it was not validated"),
                )
                .at(path.to_string())
            }
        };
        if let Some(url) = profile {
            return match self.compiled.by_url.get(strip_version(url)) {
                Some(&t) => vec![t],
                None => {
                    issues.push(
                        Issue::new(
                            Severity::Warning,
                            "not-found",
                            format!(
                                "profile {url} is not loaded; validated against the base definition of {rt} only"
                            ),
                        )
                        .at(path.to_string()),
                    );
                    match base {
                        Some(b) => vec![b],
                        None => {
                            issues.push(unknown_type());
                            Vec::new()
                        }
                    }
                }
            };
        }
        let mut trees = Vec::new();
        let claimed = resource
            .get("meta")
            .and_then(|m| m.get("profile"))
            .and_then(Value::as_array);
        let mut claimed_unloaded = false;
        for p in claimed.into_iter().flatten().filter_map(Value::as_str) {
            match self.compiled.by_url.get(strip_version(p)) {
                Some(&t) => trees.push(t),
                // The CareConnect base profiles the ITK3 ones build on are not shipped: known
                // and expected, so said once per resource as information.
                None if defaults == ProfileSet::Itk => {
                    claimed_unloaded = true;
                    issues.push(
                        Issue::information(format!(
                            "claimed profile {p} is not among the shipped profiles, so it was not checked"
                        ))
                        .at(format!("{path}.meta.profile")),
                    );
                }
                None => issues.push(
                    Issue::new(
                        Severity::Warning,
                        "not-found",
                        format!("claimed profile {p} is not loaded, so it was not checked"),
                    )
                    .at(format!("{path}.meta.profile")),
                ),
            }
        }
        // At intake the prison profile for the type always applies: a claimed profile adds
        // checks, it never replaces the contract (DESIGN §5a).
        if defaults == ProfileSet::Prison
            && let Some(&t) = self.defaults[defaults.index()].get(rt)
            && !trees.is_empty()
            && !trees.contains(&t)
        {
            trees.push(t);
        }
        if trees.is_empty() && claimed_unloaded {
            // Judged against none: the ITK default for the type is a different profile.
            return trees;
        }
        if trees.is_empty() {
            let default = self.defaults[defaults.index()].get(rt).copied();
            match (default, defaults) {
                (Some(t), _) => trees.push(t),
                // The base definitions loaded are R4's: an STU3 resource with no loaded GP
                // Connect profile is left to the typed STU3 model rather than judged as R4.
                (None, ProfileSet::GpConnect | ProfileSet::Itk) => issues.push(
                    Issue::information(format!(
                        "no STU3 definition of {rt} is loaded; its profile constraints were not checked"
                    ))
                    .at(path.to_string()),
                ),
                (None, _) => match base {
                    Some(t) => trees.push(t),
                    None => issues.push(unknown_type()),
                },
            }
        }
        trees
    }
}

/// Chooses trees for resources nested inside another (contained, Parameters).
struct NestedScope<'a> {
    validator: &'a Validator,
    defaults: ProfileSet,
}

impl ResourceProfiles for NestedScope<'_> {
    fn nested_trees(&self, resource: &Value) -> Vec<TreeId> {
        let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
            return Vec::new();
        };
        let mut ignored = Vec::new();
        self.validator
            .trees_for(resource, rt, None, self.defaults, "", &mut ignored)
    }
}

fn parse_files(files: Vec<(PathBuf, bool)>) -> Vec<LoadedFile> {
    fn load_one(path: &Path, own: bool) -> LoadedFile {
        let result = std::fs::read(path)
            .and_then(|bytes| {
                if path.extension().is_some_and(|e| e == "gz") {
                    let mut out = Vec::with_capacity(bytes.len() * 12);
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
                        &mut out,
                    )?;
                    Ok(out)
                } else {
                    Ok(bytes)
                }
            })
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse_conformance(&bytes).map_err(|e| e.to_string()));
        LoadedFile {
            path: path.to_path_buf(),
            own,
            result,
        }
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    if workers == 1 || files.len() < 2 {
        return files.iter().map(|(p, own)| load_one(p, *own)).collect();
    }
    // Largest files first, spread over the workers; results go back into folder order.
    let mut order: Vec<(usize, u64)> = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (i, std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)))
        .collect();
    order.sort_by_key(|o| std::cmp::Reverse(o.1));
    let mut buckets: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); workers];
    for (i, size) in order {
        if let Some(b) = buckets.iter_mut().min_by_key(|b| b.0) {
            b.0 += size;
            b.1.push(i);
        }
    }
    let files = &files;
    let mut results: Vec<(usize, LoadedFile)> = std::thread::scope(|scope| {
        let handles: Vec<_> = buckets
            .into_iter()
            .map(|(_, idxs)| {
                scope.spawn(move || {
                    idxs.into_iter()
                        .map(|i| (i, load_one(&files[i].0, files[i].1)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, f)| f).collect()
}

/// Builds the default-profile tables of each [`ProfileSet`].
fn default_tables(compiled: &Compiled, own_urls: &[String]) -> [HashMap<String, TreeId>; 5] {
    let mut uk: HashMap<String, TreeId> = HashMap::new();
    let mut gpc: HashMap<String, TreeId> = HashMap::new();
    let mut itk: HashMap<String, TreeId> = HashMap::new();
    // ITK types with more than one profile (Bundle: message, document, payload; List: four
    // kinds) get no default: their resources say which one they follow.
    let mut itk_ambiguous: HashSet<String> = HashSet::new();
    let mut prison: HashMap<String, TreeId> = HashMap::new();
    let sorted: BTreeMap<&String, &TreeId> = compiled.by_url.iter().collect();
    let own: HashSet<&str> = own_urls.iter().map(String::as_str).collect();
    for (url, &t) in sorted {
        let tree = &compiled.trees[t as usize];
        if tree.kind != Kind::Resource {
            continue;
        }
        if url.starts_with(UK_CORE_SD_BASE)
            && *url == format!("{UK_CORE_SD_BASE}UKCore-{}", tree.type_name)
        {
            uk.insert(tree.type_name.clone(), t);
        } else if !tree.r4 && is_itk_profile(url) {
            if itk.insert(tree.type_name.clone(), t).is_some() {
                itk_ambiguous.insert(tree.type_name.clone());
            }
        } else if !tree.r4 {
            gpc.entry(tree.type_name.clone()).or_insert(t);
        } else if own.contains(url.as_str()) {
            // Prefer `prison-<type>`; otherwise the first of our profiles for the type.
            let conventional = format!("{PRISON_SD_BASE}prison-{}", tree.type_name.to_lowercase());
            if *url == conventional {
                prison.insert(tree.type_name.clone(), t);
            } else {
                prison.entry(tree.type_name.clone()).or_insert(t);
            }
        }
    }
    for (ty, t) in &uk {
        prison.entry(ty.clone()).or_insert(*t);
    }
    for ty in itk_ambiguous {
        itk.remove(&ty);
    }
    [prison, uk, gpc, HashMap::new(), itk]
}

/// Removes repeated issues (the same finding from two profiles of one resource).
fn dedupe(issues: &mut Vec<Issue>) {
    let mut seen = HashSet::new();
    issues.retain(|i| {
        seen.insert((
            i.severity.as_str(),
            i.code,
            i.expression.clone(),
            i.diagnostics.clone(),
        ))
    });
}

/// Prison documents (and resources claiming a prison profile) default to the prison profiles;
/// everything else to UK Core.
pub fn choose_set(resource: &Value) -> ProfileSet {
    let claims_prison = |r: &Value| {
        r.pointer("/meta/profile")
            .and_then(Value::as_array)
            .is_some_and(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .any(|u| u.starts_with(PRISON_SD_BASE))
            })
    };
    let is_document = resource.get("type").and_then(Value::as_str) == Some("document")
        && resource
            .pointer("/entry/0/resource/resourceType")
            .and_then(Value::as_str)
            == Some("Composition");
    if claims_prison(resource) || is_document {
        ProfileSet::Prison
    } else {
        ProfileSet::UkCore
    }
}

#[cfg(test)]
mod tests;
