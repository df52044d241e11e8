//! Which elements of a copy are clinical content (`mappings/clinical-content/`, one file per
//! target profile set): an error of a copy against its target profile in an administrative
//! element lets the copy go with a warning; one in clinical content holds it (issue 12 item 3).
//!
//! The lists are data, reviewed with the hazard log (H53); the rules for reading them are in
//! the files' comments. In short: the most specific pattern covering the element wins, a tie is
//! clinical, and an element no pattern covers is clinical.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::ProfileSet;

/// The folder under the mappings folder.
pub const DIR: &str = "clinical-content";

/// How an element of a copy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementClass {
    Clinical,
    Administrative,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lists {
    #[serde(default)]
    clinical: Vec<String>,
    #[serde(default)]
    administrative: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[allow(dead_code)]
    title: String,
    profile_set: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    all_resources: Lists,
    #[serde(default)]
    resources: HashMap<String, Lists>,
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// An element name (`code`).
    Name(String),
    /// A choice element (`onset[x]`): the name followed by a type name.
    Choice(String),
    /// An extension with this URL.
    Extension(String),
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// A leading `**.`: matches at any depth.
    anywhere: bool,
    segments: Vec<Segment>,
    class: ElementClass,
}

impl Pattern {
    fn parse(text: &str, class: ElementClass) -> Result<Pattern, String> {
        let text = text.trim();
        if text == "**" {
            return Ok(Pattern {
                anywhere: false,
                segments: Vec::new(),
                class,
            });
        }
        let (anywhere, rest) = match text.strip_prefix("**.") {
            Some(r) => (true, r),
            None => (false, text),
        };
        // A URL has dots: split on the dots outside parentheses.
        let mut segments = Vec::new();
        let mut depth = 0usize;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                '.' if depth == 0 => {
                    parts.push(&rest[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&rest[start..]);
        for p in parts {
            let segment = if let Some(url) = p
                .strip_prefix("extension(")
                .and_then(|u| u.strip_suffix(')'))
            {
                Segment::Extension(url.to_string())
            } else if let Some(name) = p.strip_suffix("[x]") {
                Segment::Choice(name.to_string())
            } else {
                Segment::Name(p.to_string())
            };
            let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric());
            let ok = match &segment {
                Segment::Name(n) | Segment::Choice(n) => name_ok(n),
                Segment::Extension(u) => !u.is_empty(),
            };
            if !ok {
                return Err(format!("{text:?} is not an element pattern"));
            }
            segments.push(segment);
        }
        Ok(Pattern {
            anywhere,
            segments,
            class,
        })
    }

    /// How specific a match is: two per named segment, one more for a URL.
    fn weight(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Extension(_) => 3,
                _ => 2,
            })
            .sum()
    }

    /// Whether the pattern covers `path` (the element or an ancestor of it), and if so how deep
    /// into the path its match ends (0 for `**`).
    fn covers(&self, path: &[PathSegment]) -> Option<usize> {
        if self.segments.is_empty() {
            return Some(0);
        }
        let n = self.segments.len();
        let last_start = if self.anywhere {
            path.len().checked_sub(n)?
        } else {
            0
        };
        (0..=last_start)
            .rev()
            .find(|&s| {
                path.len() >= s + n
                    && self
                        .segments
                        .iter()
                        .zip(&path[s..s + n])
                        .all(|(p, e)| p.matches(e))
            })
            .map(|s| s + n)
    }
}

/// One segment of an element's path, with the URL when it is an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathSegment {
    name: String,
    url: Option<String>,
}

impl Segment {
    fn matches(&self, e: &PathSegment) -> bool {
        match self {
            Segment::Name(n) => *n == e.name,
            Segment::Choice(n) => e
                .name
                .strip_prefix(n.as_str())
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
            Segment::Extension(url) => {
                e.name == "extension" && e.url.as_deref() == Some(url.as_str())
            }
        }
    }
}

/// The patterns of one profile set: by resource type, and for every resource.
#[derive(Debug, Clone, Default)]
struct Classes {
    all: Vec<Pattern>,
    by_type: HashMap<String, Vec<Pattern>>,
}

impl Classes {
    fn add(&mut self, file: &File) -> Result<(), String> {
        let compile = |lists: &Lists| -> Result<Vec<Pattern>, String> {
            let mut out = Vec::new();
            for p in &lists.clinical {
                out.push(Pattern::parse(p, ElementClass::Clinical)?);
            }
            for p in &lists.administrative {
                out.push(Pattern::parse(p, ElementClass::Administrative)?);
            }
            Ok(out)
        };
        self.all.extend(compile(&file.all_resources)?);
        for (rt, lists) in &file.resources {
            self.by_type
                .entry(rt.clone())
                .or_default()
                .extend(compile(lists)?);
        }
        Ok(())
    }

    fn classify(&self, resource_type: &str, path: &[PathSegment]) -> ElementClass {
        // At a resource's root: the resource as a whole, clinical unless the whole type is
        // administrative (`**`).
        let mut best: Option<((usize, usize), ElementClass)> = None;
        let own = self.by_type.get(resource_type).into_iter().flatten();
        for p in own.chain(self.all.iter()) {
            if path.is_empty() && !p.segments.is_empty() {
                continue;
            }
            let Some(depth) = p.covers(path) else {
                continue;
            };
            // The match that reaches deepest into the element's path wins, then the one with
            // more named segments (a URL counting extra).
            let w = (depth, p.weight());
            best = match best {
                Some((bw, _)) if bw > w => best,
                Some((bw, ElementClass::Clinical)) if bw == w => best,
                _ => Some((w, p.class)),
            };
        }
        best.map_or(ElementClass::Clinical, |(_, c)| c)
    }
}

/// The clinical-content lists of every target profile set.
#[derive(Debug, Clone, Default)]
pub struct ClinicalContent {
    sets: HashMap<ProfileSet, Classes>,
}

fn profile_set(name: &str) -> Result<ProfileSet, String> {
    match name {
        "prison" => Ok(ProfileSet::Prison),
        "uk-core" => Ok(ProfileSet::UkCore),
        "gp-connect" => Ok(ProfileSet::GpConnect),
        "base" => Ok(ProfileSet::Base),
        "itk" => Ok(ProfileSet::Itk),
        other => Err(format!(
            "profile_set {other:?} is not prison, uk-core, gp-connect, itk or base"
        )),
    }
}

impl ClinicalContent {
    /// Reads every `*.yaml` in `dir` (`mappings/clinical-content/`). Each target profile set
    /// the gateway delivers in (prison, UK Core, GP Connect) must have a file.
    pub fn load_dir(dir: &Path) -> anyhow::Result<ClinicalContent> {
        let mut files: Vec<(String, File)> = Vec::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let file: File = serde_yaml_ng::from_str(&text)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            files.push((path.display().to_string(), file));
        }
        ClinicalContent::from_files(files)
    }

    fn from_files(files: Vec<(String, File)>) -> anyhow::Result<ClinicalContent> {
        let by_set: HashMap<String, &File> = files
            .iter()
            .map(|(_, f)| (f.profile_set.clone(), f))
            .collect();
        let mut sets = HashMap::new();
        for (name, file) in &files {
            let set = profile_set(&file.profile_set).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let mut classes = Classes::default();
            let mut chain = vec![file];
            let mut parent = file.extends.as_deref();
            while let Some(p) = parent {
                let f = by_set.get(p).ok_or_else(|| {
                    anyhow::anyhow!("{name}: extends {p:?}, which no file defines")
                })?;
                if chain.len() > 4 {
                    anyhow::bail!("{name}: extends runs in a circle");
                }
                chain.push(f);
                parent = f.extends.as_deref();
            }
            for f in chain.iter().rev() {
                classes.add(f).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
            if sets.insert(set, classes).is_some() {
                anyhow::bail!("{name}: a second file for profile set {}", file.profile_set);
            }
        }
        for needed in [
            ProfileSet::Prison,
            ProfileSet::UkCore,
            ProfileSet::GpConnect,
            ProfileSet::Itk,
        ] {
            if !sets.contains_key(&needed) {
                anyhow::bail!("no clinical-content list for the {needed:?} profiles");
            }
        }
        Ok(ClinicalContent { sets })
    }

    /// How the element an issue points at (`expression`, a path into `copy`) counts for a copy
    /// in `set`. No expression, an expression outside the copy's shape, or a set with no list:
    /// clinical.
    pub fn classify(
        &self,
        set: ProfileSet,
        copy: &Value,
        expression: Option<&str>,
    ) -> ElementClass {
        let (Some(classes), Some(expression)) = (self.sets.get(&set), expression) else {
            return ElementClass::Clinical;
        };
        match element_of(copy, expression) {
            Some((resource_type, path)) => classes.classify(&resource_type, &path),
            None => ElementClass::Clinical,
        }
    }
}

/// Splits `Name[3]` into (`Name`, Some(3)).
fn index_of(step: &str) -> (&str, Option<usize>) {
    match step.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
        None => (step, None),
    }
}

/// The resource type and the element path (indices dropped, extension URLs read from the copy)
/// of an expression such as `Bundle.entry[2].resource.code.coding[0].display`.
fn element_of(copy: &Value, expression: &str) -> Option<(String, Vec<PathSegment>)> {
    let mut steps = expression.split('.');
    let root = steps.next()?;
    let mut resource_type = root.to_string();
    let mut node = Some(copy);
    if copy.get("resourceType").and_then(Value::as_str) != Some(root) {
        return None;
    }
    let steps: Vec<&str> = steps.collect();
    let mut path = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let (name, index) = index_of(steps[i]);
        let child = node.and_then(|n| n.get(name));
        let item = match (child, index) {
            (Some(Value::Array(a)), Some(k)) => a.get(k),
            // No index on a list (a slice's cardinality): the list itself.
            (Some(v), None) => Some(v),
            _ => None,
        };
        // A resource in an entry (or contained) starts a new element path.
        if name == "resource" || name == "contained" {
            if let Some(rt) = item
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str)
            {
                resource_type = rt.to_string();
                path.clear();
                node = item;
                i += 1;
                continue;
            }
            return None;
        }
        let url = (name == "extension")
            .then(|| item.and_then(|e| e.get("url")).and_then(Value::as_str))
            .flatten()
            .map(str::to_string);
        path.push(PathSegment {
            name: name.to_string(),
            url,
        });
        node = item;
        i += 1;
    }
    // `Bundle.entry[2]` and `Bundle.entry[2].fullUrl` stay the Bundle's.
    Some((resource_type, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lists() -> ClinicalContent {
        ClinicalContent::load_dir(Path::new("mappings/clinical-content")).unwrap()
    }

    fn copy() -> Value {
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "name": [{"family": "X"}],
              "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018",
                 "extension": [{"url": "https://example.org/verification"}]}]}},
            {"resource": {"resourceType": "MedicationRequest",
              "extension": [
                {"url": "https://throughcare.example.org/fhir/StructureDefinition/last-dose-in-custody"},
                {"url": "https://example.org/anything-else"}],
              "medicationCodeableConcept": {"coding": [{"code": "1"}]},
              "dosageInstruction": [{"text": "60mg"}], "requester": {"reference": "Practitioner/x"}}},
            {"resource": {"resourceType": "Condition", "code": {"coding": [{"code": "2"}]}, "onsetDateTime": "2020"}},
            {"resource": {"resourceType": "Organization", "name": "X"}},
            {"resource": {"resourceType": "CarePlan", "activity": [{"detail": {"description": "x"}}]}}
        ]})
    }

    fn class(set: ProfileSet, expression: &str) -> ElementClass {
        lists().classify(set, &copy(), Some(expression))
    }

    use ElementClass::{Administrative as A, Clinical as C};

    #[test]
    fn the_shipped_lists_load_for_every_target_and_the_prison_and_gp_connect_lists_extend_uk_core()
    {
        let l = lists();
        for set in [
            ProfileSet::Prison,
            ProfileSet::UkCore,
            ProfileSet::GpConnect,
        ] {
            assert!(l.sets.contains_key(&set), "{set:?}");
        }
        assert!(
            l.sets[&ProfileSet::GpConnect].by_type.contains_key("List"),
            "GP Connect adds its Lists"
        );
        assert!(
            l.sets[&ProfileSet::Prison].by_type.contains_key("CarePlan"),
            "the prison list is UK Core's"
        );
    }

    #[test]
    fn clinical_content_is_clinical_and_record_keeping_is_administrative() {
        for set in [
            ProfileSet::UkCore,
            ProfileSet::GpConnect,
            ProfileSet::Prison,
        ] {
            // Medicines: the drug, its dose and the last dose in custody are clinical.
            assert_eq!(
                class(set, "Bundle.entry[1].resource.medicationCodeableConcept"),
                C
            );
            assert_eq!(
                class(set, "Bundle.entry[1].resource.dosageInstruction[0].text"),
                C
            );
            assert_eq!(class(set, "Bundle.entry[1].resource.extension[0]"), C);
            // ... who requested it, an unknown extension and a display string are not.
            assert_eq!(class(set, "Bundle.entry[1].resource.requester"), A);
            assert_eq!(class(set, "Bundle.entry[1].resource.extension[1].url"), A);
            assert_eq!(
                class(
                    set,
                    "Bundle.entry[1].resource.medicationCodeableConcept.coding[0].display"
                ),
                A
            );
            // A problem's code and onset (a choice element) are clinical.
            assert_eq!(
                class(set, "Bundle.entry[2].resource.code.coding[0].code"),
                C
            );
            assert_eq!(class(set, "Bundle.entry[2].resource.onsetDateTime"), C);
            assert_eq!(
                class(set, "Bundle.entry[2].resource.code.coding[0].display"),
                A
            );
            // Organizations are administrative as a whole, even at their root.
            assert_eq!(class(set, "Bundle.entry[3].resource"), A);
            assert_eq!(class(set, "Bundle.entry[3].resource.name"), A);
            // Care-plan activities are clinical.
            assert_eq!(class(set, "Bundle.entry[4].resource.activity[0].detail"), C);
            // Identity: the NHS number and the name; how the number was traced is not.
            assert_eq!(
                class(set, "Bundle.entry[0].resource.identifier[0].value"),
                C
            );
            assert_eq!(class(set, "Bundle.entry[0].resource.name"), C);
            assert_eq!(
                class(set, "Bundle.entry[0].resource.identifier[0].extension[0]"),
                A
            );
            assert_eq!(class(set, "Bundle.entry[0].fullUrl"), A);
        }
    }

    #[test]
    fn whatever_the_lists_do_not_cover_is_clinical() {
        let set = ProfileSet::UkCore;
        // An element of a listed type that no pattern covers, a resource's root, an expression
        // that does not read in the copy, and no expression at all: held on the safe side.
        assert_eq!(class(set, "Bundle.entry[2].resource.madeUpElement"), C);
        assert_eq!(class(set, "Bundle.entry[1].resource"), C);
        assert_eq!(class(set, "Bundle.entry[9].resource.code"), C);
        assert_eq!(class(set, "Bundle.entry"), C);
        assert_eq!(class(set, "Patient.name"), C);
        assert_eq!(lists().classify(set, &copy(), None), C);
        // A modifier extension changes the meaning of what it sits on.
        assert_eq!(
            class(set, "Bundle.entry[1].resource.modifierExtension[0]"),
            C
        );
    }

    #[test]
    fn patterns_read_choice_types_extension_urls_and_depth_and_a_tie_is_clinical() {
        let p = |t: &str| Pattern::parse(t, A).unwrap();
        let seg = |n: &str| PathSegment {
            name: n.into(),
            url: None,
        };
        assert_eq!(
            p("onset[x]").covers(&[seg("onsetPeriod"), seg("start")]),
            Some(1)
        );
        assert_eq!(p("onset[x]").covers(&[seg("onsetish")]), None);
        assert_eq!(
            p("**.display").covers(&[seg("code"), seg("coding"), seg("display")]),
            Some(3)
        );
        assert_eq!(p("**.display").covers(&[seg("display2")]), None);
        let ext = p("extension(https://a.example/x.y)");
        assert_eq!(
            ext.segments,
            vec![Segment::Extension("https://a.example/x.y".into())]
        );
        assert!(Pattern::parse("code..x", A).is_err());
        let mut c = Classes::default();
        c.all.push(Pattern::parse("code", A).unwrap());
        c.all.push(Pattern::parse("code", C).unwrap());
        assert_eq!(c.classify("Condition", &[seg("code")]), C);
    }
}
