//! FHIR R4 `ConceptMap`s from `mappings/conceptmaps/`, indexed at load time, and the standard
//! `$translate` operation over them (also used by the `recode` rule).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// `ConceptMap.group.unmapped.mode`: what to do with a source code that has no element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unmapped {
    /// Use the source code itself, in the group's target system.
    Provided,
    /// Use a fixed code.
    Fixed {
        code: String,
        display: Option<String>,
    },
    /// Try another ConceptMap.
    OtherMap(String),
}

#[derive(Debug, Clone)]
pub(crate) struct TargetConcept {
    pub code: Option<String>,
    pub display: Option<String>,
    pub equivalence: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub source: Option<String>,
    pub target: Option<String>,
    pub elements: HashMap<String, Vec<TargetConcept>>,
    /// Reverse index: target code to (source code, concept) for `reverse=true`.
    pub reverse: HashMap<String, Vec<(String, TargetConcept)>>,
    pub source_displays: HashMap<String, String>,
    pub unmapped: Option<Unmapped>,
}

/// One loaded ConceptMap.
#[derive(Debug, Clone)]
pub(crate) struct ConceptMap {
    pub url: String,
    pub version: Option<String>,
    pub source_scope: Option<String>,
    pub target_scope: Option<String>,
    pub groups: Vec<Group>,
    /// Groups by source system (the recode hot path asks this for every coding).
    by_source: HashMap<String, Vec<usize>>,
}

/// A translation found without allocating: `code` None means the source code itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapped<'m> {
    pub system: Option<&'m str>,
    pub code: Option<&'m str>,
    pub display: Option<&'m str>,
}

/// A code found by `$translate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateMatch {
    /// R4 `ConceptMapEquivalence` (`equivalent`, `wider`, `narrower`, `inexact`, ...).
    pub equivalence: String,
    /// Target system.
    pub system: Option<String>,
    /// Target code.
    pub code: Option<String>,
    pub display: Option<String>,
    /// Canonical URL of the ConceptMap that produced the match.
    pub source: String,
    pub comment: Option<String>,
}

impl TranslateMatch {
    /// True when the match gives a usable target code.
    pub fn is_mapping(&self) -> bool {
        self.code.is_some() && !matches!(self.equivalence.as_str(), "unmatched" | "disjoint")
    }
}

/// Input of `$translate` (FHIR R4 `ConceptMap/$translate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConceptTranslateRequest {
    /// `url` (or the R5 name `conceptMapUrl`): the ConceptMap to use.
    pub url: Option<String>,
    pub concept_map_version: Option<String>,
    /// `code` + `system` (+ `version`), or taken from `coding`/`codeableConcept`.
    pub code: Option<String>,
    pub system: Option<String>,
    pub version: Option<String>,
    /// Further codings to translate (`coding`, `codeableConcept.coding`).
    pub codings: Vec<(Option<String>, String)>,
    /// `source`: ValueSet of the source code (selects maps by their source scope).
    pub source: Option<String>,
    /// `target`: ValueSet to translate into (selects maps by their target scope).
    pub target: Option<String>,
    /// `targetsystem`: only matches in this code system.
    pub target_system: Option<String>,
    /// `reverse`: translate from the maps' targets back to their sources.
    pub reverse: bool,
}

impl ConceptTranslateRequest {
    /// Reads a `Parameters` resource (the POST body of `$translate`).
    pub fn from_parameters(params: &Value) -> Result<ConceptTranslateRequest, String> {
        if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err("expected a Parameters resource".into());
        }
        let mut req = ConceptTranslateRequest::default();
        for p in params
            .get("parameter")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(name) = p.get("name").and_then(Value::as_str) else {
                return Err("a parameter has no name".into());
            };
            let text = [
                "valueUri",
                "valueCanonical",
                "valueCode",
                "valueString",
                "valueUrl",
            ]
            .iter()
            .find_map(|k| p.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
            match name {
                "url" | "conceptMapUrl" => req.url = text,
                "conceptMapVersion" => req.concept_map_version = text,
                "code" | "sourceCode" => req.code = text,
                "system" => req.system = text,
                "version" => req.version = text,
                "source" | "sourceScope" => req.source = text,
                "target" | "targetScope" => req.target = text,
                "targetsystem" | "targetSystem" => req.target_system = text,
                "reverse" => {
                    req.reverse = p
                        .get("valueBoolean")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                }
                "coding" | "sourceCoding" => {
                    if let Some(c) = p.get("valueCoding") {
                        push_coding(&mut req, c);
                    }
                }
                "codeableConcept" | "sourceCodeableConcept" => {
                    if let Some(cs) = p
                        .get("valueCodeableConcept")
                        .and_then(|cc| cc.get("coding"))
                        .and_then(Value::as_array)
                    {
                        for c in cs {
                            push_coding(&mut req, c);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(req)
    }

    fn inputs(&self) -> Vec<(Option<&str>, &str)> {
        let mut out: Vec<(Option<&str>, &str)> = Vec::new();
        if let Some(code) = &self.code {
            out.push((self.system.as_deref(), code.as_str()));
        }
        for (system, code) in &self.codings {
            out.push((system.as_deref(), code.as_str()));
        }
        out
    }
}

fn push_coding(req: &mut ConceptTranslateRequest, c: &Value) {
    if let Some(code) = c.get("code").and_then(Value::as_str) {
        let system = c.get("system").and_then(Value::as_str).map(str::to_owned);
        req.codings.push((system, code.to_owned()));
    }
}

/// Output of `$translate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConceptTranslateResult {
    /// True when at least one match gives a target code.
    pub result: bool,
    pub message: Option<String>,
    pub matches: Vec<TranslateMatch>,
}

impl ConceptTranslateResult {
    /// The FHIR R4 `Parameters` resource that `$translate` returns.
    pub fn to_parameters(&self) -> Value {
        let mut parameter = vec![json!({"name": "result", "valueBoolean": self.result})];
        if let Some(m) = &self.message {
            parameter.push(json!({"name": "message", "valueString": m}));
        }
        for m in &self.matches {
            let mut part = vec![json!({"name": "equivalence", "valueCode": m.equivalence})];
            let mut coding = Map::new();
            if let Some(s) = &m.system {
                coding.insert("system".into(), Value::String(s.clone()));
            }
            if let Some(c) = &m.code {
                coding.insert("code".into(), Value::String(c.clone()));
            }
            if let Some(d) = &m.display {
                coding.insert("display".into(), Value::String(d.clone()));
            }
            if !coding.is_empty() {
                part.push(json!({"name": "concept", "valueCoding": Value::Object(coding)}));
            }
            part.push(json!({"name": "source", "valueUri": m.source}));
            if let Some(c) = &m.comment {
                part.push(json!({"name": "comment", "valueString": c}));
            }
            parameter.push(json!({"name": "match", "part": part}));
        }
        json!({"resourceType": "Parameters", "parameter": parameter})
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl ConceptMap {
    /// Compiles a ConceptMap resource; errors say what is wrong with it.
    pub fn from_json(v: &Value) -> Result<ConceptMap, String> {
        if v.get("resourceType").and_then(Value::as_str) != Some("ConceptMap") {
            return Err("not a ConceptMap".into());
        }
        let url = s(v, "url").ok_or("ConceptMap has no url")?;
        let source_scope = s(v, "sourceUri").or_else(|| s(v, "sourceCanonical"));
        let target_scope = s(v, "targetUri").or_else(|| s(v, "targetCanonical"));
        let mut groups = Vec::new();
        for g in v
            .get("group")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let mut elements: HashMap<String, Vec<TargetConcept>> = HashMap::new();
            let mut reverse: HashMap<String, Vec<(String, TargetConcept)>> = HashMap::new();
            let mut source_displays = HashMap::new();
            for e in g
                .get("element")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let code = s(e, "code").ok_or_else(|| format!("{url}: an element has no code"))?;
                if let Some(d) = s(e, "display") {
                    source_displays.insert(code.clone(), d);
                }
                let mut targets = Vec::new();
                for t in e
                    .get("target")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let equivalence = s(t, "equivalence")
                        .or_else(|| s(t, "relationship"))
                        .ok_or_else(|| format!("{url}: {code}: a target has no equivalence"))?;
                    let tc = TargetConcept {
                        code: s(t, "code"),
                        display: s(t, "display"),
                        equivalence,
                        comment: s(t, "comment"),
                    };
                    if let Some(tcode) = &tc.code {
                        reverse
                            .entry(tcode.clone())
                            .or_default()
                            .push((code.clone(), tc.clone()));
                    }
                    targets.push(tc);
                }
                elements.entry(code).or_default().extend(targets);
            }
            let unmapped = match g.get("unmapped") {
                None => None,
                Some(u) => match u.get("mode").and_then(Value::as_str) {
                    Some("provided") => Some(Unmapped::Provided),
                    Some("fixed") => Some(Unmapped::Fixed {
                        code: s(u, "code").ok_or_else(|| format!("{url}: fixed needs a code"))?,
                        display: s(u, "display"),
                    }),
                    Some("other-map") => Some(Unmapped::OtherMap(
                        s(u, "url").ok_or_else(|| format!("{url}: other-map needs a url"))?,
                    )),
                    other => return Err(format!("{url}: unknown unmapped mode {other:?}")),
                },
            };
            groups.push(Group {
                source: s(g, "source"),
                target: s(g, "target"),
                elements,
                reverse,
                source_displays,
                unmapped,
            });
        }
        let mut by_source: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            if let Some(src) = &g.source {
                by_source.entry(src.clone()).or_default().push(i);
            }
        }
        Ok(ConceptMap {
            url,
            version: s(v, "version"),
            source_scope,
            target_scope,
            groups,
            by_source,
        })
    }

    /// Every mapping this ConceptMap makes, as `(source system, source code, target system,
    /// target code)` (groups without both systems are left out).
    pub fn pairs(&self) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        for g in &self.groups {
            let (Some(src), Some(tgt)) = (&g.source, &g.target) else {
                continue;
            };
            for (code, targets) in &g.elements {
                for t in targets {
                    if let Some(tc) = &t.code {
                        out.push((src.clone(), code.clone(), tgt.clone(), tc.clone()));
                    }
                }
            }
        }
        out
    }

    /// Does any group translate codes of `system`?
    pub fn has_source_system(&self, system: &str) -> bool {
        self.by_source.contains_key(system)
    }

    /// The first usable translation of `system|code`, as `translate` would give it first.
    pub fn lookup<'m>(
        &'m self,
        maps: &'m HashMap<String, ConceptMap>,
        system: &str,
        code: &str,
        depth: usize,
    ) -> Option<Mapped<'m>> {
        for &gi in self.by_source.get(system)? {
            let g = &self.groups[gi];
            if let Some(targets) = g.elements.get(code) {
                let usable = targets.iter().find(|t| {
                    t.code.is_some() && !matches!(t.equivalence.as_str(), "unmatched" | "disjoint")
                });
                if let Some(t) = usable {
                    return Some(Mapped {
                        system: g.target.as_deref(),
                        code: t.code.as_deref(),
                        display: t.display.as_deref(),
                    });
                }
                continue;
            }
            match &g.unmapped {
                Some(Unmapped::Provided) => {
                    return Some(Mapped {
                        system: g.target.as_deref(),
                        code: None,
                        display: None,
                    });
                }
                Some(Unmapped::Fixed { code, display }) => {
                    return Some(Mapped {
                        system: g.target.as_deref(),
                        code: Some(code),
                        display: display.as_deref(),
                    });
                }
                Some(Unmapped::OtherMap(url)) if depth < 4 => {
                    if let Some(m) = maps
                        .get(url)
                        .and_then(|o| o.lookup(maps, system, code, depth + 1))
                    {
                        return Some(m);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Translates one code. `depth` guards `other-map` chains.
    pub fn translate(
        &self,
        maps: &HashMap<String, ConceptMap>,
        system: Option<&str>,
        code: &str,
        target_system: Option<&str>,
        depth: usize,
    ) -> Vec<TranslateMatch> {
        let mut out = Vec::new();
        for g in &self.groups {
            if system.is_some() && g.source.is_some() && g.source.as_deref() != system {
                continue;
            }
            if target_system.is_some() && g.target.as_deref() != target_system {
                continue;
            }
            if let Some(targets) = g.elements.get(code) {
                for t in targets {
                    out.push(TranslateMatch {
                        equivalence: t.equivalence.clone(),
                        system: if t.code.is_some() {
                            g.target.clone()
                        } else {
                            None
                        },
                        code: t.code.clone(),
                        display: t.display.clone(),
                        source: self.url.clone(),
                        comment: t.comment.clone(),
                    });
                }
                continue;
            }
            match &g.unmapped {
                Some(Unmapped::Provided) => out.push(TranslateMatch {
                    equivalence: "equivalent".into(),
                    system: g.target.clone(),
                    code: Some(code.to_owned()),
                    display: None,
                    source: self.url.clone(),
                    comment: Some("unmapped: provided".into()),
                }),
                Some(Unmapped::Fixed { code: c, display }) => out.push(TranslateMatch {
                    equivalence: "inexact".into(),
                    system: g.target.clone(),
                    code: Some(c.clone()),
                    display: display.clone(),
                    source: self.url.clone(),
                    comment: Some("unmapped: fixed".into()),
                }),
                Some(Unmapped::OtherMap(url)) if depth < 4 => {
                    if let Some(other) = maps.get(url) {
                        out.extend(other.translate(maps, system, code, target_system, depth + 1));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// `reverse=true`: from a target code back to source codes.
    pub fn translate_reverse(
        &self,
        system: Option<&str>,
        code: &str,
        target_system: Option<&str>,
    ) -> Vec<TranslateMatch> {
        let mut out = Vec::new();
        for g in &self.groups {
            if system.is_some() && g.target.as_deref() != system {
                continue;
            }
            if target_system.is_some() && g.source.as_deref() != target_system {
                continue;
            }
            if let Some(sources) = g.reverse.get(code) {
                for (src, t) in sources {
                    // Reversing `wider` gives `narrower` and so on.
                    let equivalence = match t.equivalence.as_str() {
                        "wider" => "narrower",
                        "narrower" => "wider",
                        "subsumes" => "specializes",
                        "specializes" => "subsumes",
                        other => other,
                    };
                    out.push(TranslateMatch {
                        equivalence: equivalence.to_owned(),
                        system: g.source.clone(),
                        code: Some(src.clone()),
                        display: g.source_displays.get(src).cloned(),
                        source: self.url.clone(),
                        comment: t.comment.clone(),
                    });
                }
            }
        }
        out
    }
}

/// `$translate` over a set of maps.
pub(crate) fn translate(
    maps: &HashMap<String, ConceptMap>,
    req: &ConceptTranslateRequest,
) -> ConceptTranslateResult {
    let inputs = req.inputs();
    if inputs.is_empty() {
        return ConceptTranslateResult {
            result: false,
            message: Some("give a code (with system), a coding or a codeableConcept".into()),
            matches: Vec::new(),
        };
    }
    let mut selected: Vec<&ConceptMap> = Vec::new();
    if let Some(url) = &req.url {
        match maps.get(url) {
            Some(m)
                if req.concept_map_version.is_none() || m.version == req.concept_map_version =>
            {
                selected.push(m)
            }
            _ => {
                return ConceptTranslateResult {
                    result: false,
                    message: Some(format!("no ConceptMap {url} is loaded")),
                    matches: Vec::new(),
                };
            }
        }
    } else {
        let mut all: Vec<&ConceptMap> = maps.values().collect();
        all.sort_by(|a, b| a.url.cmp(&b.url));
        for m in all {
            let (src_scope, tgt_scope) = if req.reverse {
                (&m.target_scope, &m.source_scope)
            } else {
                (&m.source_scope, &m.target_scope)
            };
            if req.source.is_some() && src_scope != &req.source {
                continue;
            }
            if req.target.is_some() && tgt_scope != &req.target {
                continue;
            }
            selected.push(m);
        }
    }
    let mut matches = Vec::new();
    for m in selected {
        for (system, code) in &inputs {
            if req.reverse {
                matches.extend(m.translate_reverse(*system, code, req.target_system.as_deref()));
            } else {
                matches.extend(m.translate(maps, *system, code, req.target_system.as_deref(), 0));
            }
        }
    }
    let result = matches.iter().any(TranslateMatch::is_mapping);
    let message = if result {
        None
    } else if matches.is_empty() {
        Some("no mapping found".into())
    } else {
        Some("the code is known but has no equivalent in the target".into())
    };
    ConceptTranslateResult {
        result,
        message,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps() -> HashMap<String, ConceptMap> {
        let a = json!({
            "resourceType": "ConceptMap", "url": "urn:a", "sourceUri": "urn:vs:a", "targetUri": "urn:vs:b",
            "group": [{
                "source": "urn:sys:a", "target": "urn:sys:b",
                "element": [
                    {"code": "x", "display": "Ex", "target": [{"code": "y", "equivalence": "wider"}]},
                    {"code": "z", "target": [{"equivalence": "unmatched"}]}
                ],
                "unmapped": {"mode": "other-map", "url": "urn:c"}
            }]
        });
        let c = json!({
            "resourceType": "ConceptMap", "url": "urn:c",
            "group": [{"source": "urn:sys:a", "target": "urn:sys:c", "unmapped": {"mode": "provided"}}]
        });
        let mut out = HashMap::new();
        for v in [a, c] {
            let m = ConceptMap::from_json(&v).unwrap();
            out.insert(m.url.clone(), m);
        }
        out
    }

    #[test]
    fn a_mapped_code_translates_with_its_equivalence() {
        let req = ConceptTranslateRequest {
            url: Some("urn:a".into()),
            system: Some("urn:sys:a".into()),
            code: Some("x".into()),
            ..Default::default()
        };
        let r = translate(&maps(), &req);
        assert!(r.result);
        assert_eq!(r.matches[0].code.as_deref(), Some("y"));
        assert_eq!(r.matches[0].equivalence, "wider");
        let p = r.to_parameters();
        assert_eq!(p["parameter"][0]["valueBoolean"], json!(true));
        assert_eq!(p["parameter"][1]["name"], json!("match"));
    }

    #[test]
    fn an_unmatched_code_is_reported_as_no_result() {
        let req = ConceptTranslateRequest {
            url: Some("urn:a".into()),
            system: Some("urn:sys:a".into()),
            code: Some("z".into()),
            ..Default::default()
        };
        let r = translate(&maps(), &req);
        assert!(!r.result);
        assert_eq!(r.matches[0].equivalence, "unmatched");
    }

    #[test]
    fn an_unlisted_code_follows_the_other_map() {
        let req = ConceptTranslateRequest {
            url: Some("urn:a".into()),
            system: Some("urn:sys:a".into()),
            code: Some("q".into()),
            ..Default::default()
        };
        let r = translate(&maps(), &req);
        assert!(r.result);
        assert_eq!(r.matches[0].system.as_deref(), Some("urn:sys:c"));
        assert_eq!(r.matches[0].code.as_deref(), Some("q"));
    }

    #[test]
    fn reverse_translation_inverts_the_equivalence() {
        let req = ConceptTranslateRequest {
            system: Some("urn:sys:b".into()),
            code: Some("y".into()),
            reverse: true,
            ..Default::default()
        };
        let r = translate(&maps(), &req);
        assert!(r.result);
        assert_eq!(r.matches[0].code.as_deref(), Some("x"));
        assert_eq!(r.matches[0].equivalence, "narrower");
    }

    #[test]
    fn parameters_are_read_from_a_post_body() {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "url", "valueUri": "urn:a"},
            {"name": "coding", "valueCoding": {"system": "urn:sys:a", "code": "x"}},
            {"name": "targetsystem", "valueUri": "urn:sys:b"}
        ]});
        let req = ConceptTranslateRequest::from_parameters(&body).unwrap();
        assert_eq!(req.codings, vec![(Some("urn:sys:a".into()), "x".into())]);
        assert!(translate(&maps(), &req).result);
    }
}
