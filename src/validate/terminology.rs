//! Local terminology: CodeSystems and ValueSets from the loaded packages, and the expansion of
//! enumerable ValueSets (explicit concepts, whole small CodeSystems, imported ValueSets).
//! A ValueSet that cannot be enumerated here (filters, SNOMED CT, BCP-47, ...) has no
//! expansion; bindings to it are not checked.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::loader::{
    RawCodeSystem, RawConcept, RawContains, RawInclude, RawValueSet, strip_version,
};

/// One code of an expanded ValueSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concept {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

/// The full list of codes of an enumerable ValueSet, indexed for membership tests.
#[derive(Debug, Default)]
pub struct Expansion {
    concepts: Vec<Concept>,
    by_system: HashSet<(String, String)>,
    codes: HashSet<String>,
    systems: HashSet<String>,
}

impl Expansion {
    fn push(&mut self, system: &str, code: &str, display: Option<&str>) {
        if self
            .by_system
            .insert((system.to_string(), code.to_string()))
        {
            self.codes.insert(code.to_string());
            self.systems.insert(system.to_string());
            self.concepts.push(Concept {
                system: system.to_string(),
                code: code.to_string(),
                display: display.map(str::to_string),
            });
        }
    }

    fn remove(&mut self, system: &str, code: &str) {
        if self
            .by_system
            .remove(&(system.to_string(), code.to_string()))
        {
            self.concepts
                .retain(|c| !(c.system == system && c.code == code));
            self.codes = self.concepts.iter().map(|c| c.code.clone()).collect();
        }
    }

    /// Every code, in definition order.
    pub fn concepts(&self) -> &[Concept] {
        &self.concepts
    }

    /// Whether `code` (from `system`, or from any system when `system` is `None`) is in the set.
    pub fn contains(&self, system: Option<&str>, code: &str) -> bool {
        match system {
            Some(s) => self.by_system.contains(&(s.to_string(), code.to_string())),
            None => self.codes.contains(code),
        }
    }

    /// Whether any code of the set comes from `system`.
    pub fn has_system(&self, system: &str) -> bool {
        self.systems.contains(system)
    }

    pub fn len(&self) -> usize {
        self.concepts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.concepts.is_empty()
    }
}

/// CodeSystems and ValueSets by canonical URL, with memoised expansions.
#[derive(Default)]
pub(crate) struct Terminology {
    code_systems: HashMap<String, RawCodeSystem>,
    value_sets: HashMap<String, RawValueSet>,
    expansions: Mutex<HashMap<String, Option<Arc<Expansion>>>>,
}

/// CodeSystems larger than this are not expanded wholesale (they are not "small").
const MAX_WHOLE_SYSTEM: usize = 5000;

impl Terminology {
    /// Adds a CodeSystem; the first one loaded for a URL wins. Returns false for a duplicate.
    pub fn add_code_system(&mut self, cs: RawCodeSystem) -> bool {
        let url = strip_version(&cs.url).to_string();
        if self.code_systems.contains_key(&url) {
            return false;
        }
        self.code_systems.insert(url, cs);
        true
    }

    /// Adds a ValueSet; the first one loaded for a URL wins. Returns false for a duplicate.
    pub fn add_value_set(&mut self, vs: RawValueSet) -> bool {
        let url = strip_version(&vs.url).to_string();
        if self.value_sets.contains_key(&url) {
            return false;
        }
        self.value_sets.insert(url, vs);
        true
    }

    pub fn code_system_count(&self) -> usize {
        self.code_systems.len()
    }

    pub fn value_set_count(&self) -> usize {
        self.value_sets.len()
    }

    /// The expansion of a ValueSet, or `None` when it is unknown or cannot be enumerated.
    pub fn expand(&self, url: &str) -> Option<Arc<Expansion>> {
        let url = strip_version(url);
        if let Ok(cache) = self.expansions.lock()
            && let Some(hit) = cache.get(url)
        {
            return hit.clone();
        }
        let mut visiting = Vec::new();
        let result = self.expand_uncached(url, &mut visiting).map(Arc::new);
        if let Ok(mut cache) = self.expansions.lock() {
            cache.insert(url.to_string(), result.clone());
        }
        result
    }

    fn expand_uncached(&self, url: &str, visiting: &mut Vec<String>) -> Option<Expansion> {
        if visiting.iter().any(|v| v == url) {
            return None;
        }
        let vs = self.value_sets.get(url)?;
        visiting.push(url.to_string());
        let result = self.expand_value_set(vs, visiting);
        visiting.pop();
        result
    }

    fn expand_value_set(&self, vs: &RawValueSet, visiting: &mut Vec<String>) -> Option<Expansion> {
        let mut out = Expansion::default();
        if let Some(compose) = &vs.compose {
            for inc in &compose.include {
                self.include(inc, &mut out, visiting)?;
            }
            for exc in &compose.exclude {
                let mut removed = Expansion::default();
                self.include(exc, &mut removed, visiting)?;
                for c in removed.concepts() {
                    out.remove(&c.system, &c.code);
                }
            }
            return Some(out);
        }
        let expansion = vs.expansion.as_ref()?;
        fn walk(items: &[RawContains], out: &mut Expansion) {
            for c in items {
                if let (Some(s), Some(code)) = (&c.system, &c.code) {
                    out.push(s, code, c.display.as_deref());
                }
                walk(&c.contains, out);
            }
        }
        walk(&expansion.contains, &mut out);
        Some(out)
    }

    fn include(
        &self,
        inc: &RawInclude,
        out: &mut Expansion,
        visiting: &mut Vec<String>,
    ) -> Option<()> {
        if !inc.filter.is_empty() {
            return None;
        }
        // Codes of this include: from the system (explicit or whole), intersected with every
        // imported ValueSet.
        let mut part: Option<Expansion> = None;
        if let Some(system) = inc.system.as_deref() {
            let mut e = Expansion::default();
            if inc.concept.is_empty() {
                let cs = self.code_systems.get(strip_version(system))?;
                if matches!(
                    cs.content.as_deref(),
                    Some("not-present" | "example" | "fragment")
                ) {
                    return None;
                }
                let mut count = 0usize;
                fn count_all(cs: &[RawConcept], n: &mut usize) {
                    for c in cs {
                        *n += 1;
                        count_all(&c.concept, n);
                    }
                }
                count_all(&cs.concept, &mut count);
                if count == 0 || count > MAX_WHOLE_SYSTEM {
                    return None;
                }
                fn add_all(system: &str, cs: &[RawConcept], out: &mut Expansion) {
                    for c in cs {
                        out.push(system, &c.code, c.display.as_deref());
                        add_all(system, &c.concept, out);
                    }
                }
                add_all(system, &cs.concept, &mut e);
            } else {
                for c in &inc.concept {
                    e.push(system, &c.code, c.display.as_deref());
                }
            }
            part = Some(e);
        }
        if let Some(imports) = &inc.value_set {
            for vs_url in imports.as_slice() {
                let imported = self.expand_uncached(strip_version(vs_url), visiting)?;
                part = Some(match part {
                    None => imported,
                    Some(mut cur) => {
                        let keep: Vec<Concept> = cur
                            .concepts()
                            .iter()
                            .filter(|c| imported.contains(Some(&c.system), &c.code))
                            .cloned()
                            .collect();
                        cur = Expansion::default();
                        for c in keep {
                            cur.push(&c.system, &c.code, c.display.as_deref());
                        }
                        cur
                    }
                });
            }
        }
        if let Some(p) = part {
            for c in p.concepts {
                out.push(&c.system, &c.code, c.display.as_deref());
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::loader::{Conformance, parse_conformance};

    fn terminology(json: &str) -> Terminology {
        let mut t = Terminology::default();
        for c in parse_conformance(json.as_bytes()).unwrap() {
            match c {
                Conformance::ValueSet(vs) => {
                    t.add_value_set(*vs);
                }
                Conformance::CodeSystem(cs) => {
                    t.add_code_system(*cs);
                }
                Conformance::StructureDefinition(_) => {}
            }
        }
        t
    }

    const DEFS: &str = r#"{"resourceType":"Bundle","entry":[
      {"resource":{"resourceType":"CodeSystem","url":"http://x/cs","content":"complete",
        "concept":[{"code":"a","display":"A"},{"code":"b","concept":[{"code":"b1"}]}]}},
      {"resource":{"resourceType":"ValueSet","url":"http://x/all","compose":{"include":[{"system":"http://x/cs"}]}}},
      {"resource":{"resourceType":"ValueSet","url":"http://x/some","compose":{"include":[{"system":"http://x/cs","concept":[{"code":"a"}]}]}}},
      {"resource":{"resourceType":"ValueSet","url":"http://x/minus","compose":{"include":[{"valueSet":["http://x/all"]}],"exclude":[{"system":"http://x/cs","concept":[{"code":"b"}]}]}}},
      {"resource":{"resourceType":"ValueSet","url":"http://x/filtered","compose":{"include":[{"system":"http://snomed.info/sct","filter":[{"property":"concept","op":"is-a","value":"1"}]}]}}},
      {"resource":{"resourceType":"ValueSet","url":"http://x/unknown-system","compose":{"include":[{"system":"urn:ietf:bcp:47"}]}}}
    ]}"#;

    #[test]
    fn a_whole_code_system_include_expands_to_every_nested_code() {
        let t = terminology(DEFS);
        let e = t.expand("http://x/all|1.0").unwrap();
        assert_eq!(e.len(), 3);
        assert!(e.contains(Some("http://x/cs"), "b1"));
        assert!(e.contains(None, "a"));
        assert!(!e.contains(Some("http://other"), "a"));
    }

    #[test]
    fn explicit_concepts_imports_and_excludes_are_honoured() {
        let t = terminology(DEFS);
        assert_eq!(t.expand("http://x/some").unwrap().len(), 1);
        let minus = t.expand("http://x/minus").unwrap();
        assert!(!minus.contains(None, "b"));
        assert!(minus.contains(None, "b1"));
    }

    #[test]
    fn value_sets_that_cannot_be_enumerated_have_no_expansion() {
        let t = terminology(DEFS);
        assert!(t.expand("http://x/filtered").is_none());
        assert!(t.expand("http://x/unknown-system").is_none());
        assert!(t.expand("http://x/not-loaded").is_none());
    }
}
