//! ConceptMap `$translate`: the body reading, the operation's Parameters
//! (`translate::ConceptTranslateRequest::from_parameters`) and the translation over the
//! ConceptMaps in `mappings/` (`Translator::concept_translate`), with the answer rendered as the
//! route renders it. Seeds are requests for codes the maps hold, forwards and in reverse.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use throughcare::translate::ConceptTranslateRequest;

use crate::arb::{self, Mutated};
use crate::intake::TRANSLATOR;
use crate::{fuzz, reached, repo};

/// One request per ConceptMap (its first code, by `code` + `system`, by `coding`, and by
/// `codeableConcept` in reverse).
static SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut seeds = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(repo("mappings/conceptmaps"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        let map: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let url = map["url"].clone();
        let group = &map["group"][0];
        let source = group["source"].clone();
        let target = group["target"].clone();
        let element = &group["element"][0];
        let code = element["code"].clone();
        let target_code = element["target"][0]["code"].clone();
        seeds.push(json!({"resourceType": "Parameters", "parameter": [
            {"name": "url", "valueUri": url},
            {"name": "code", "valueCode": code},
            {"name": "system", "valueUri": source},
            {"name": "targetsystem", "valueUri": target},
        ]}));
        seeds.push(json!({"resourceType": "Parameters", "parameter": [
            {"name": "coding", "valueCoding": {"system": source, "code": code}},
            {"name": "target", "valueUri": map["targetUri"]},
        ]}));
        seeds.push(json!({"resourceType": "Parameters", "parameter": [
            {"name": "conceptMapUrl", "valueCanonical": url},
            {"name": "reverse", "valueBoolean": true},
            {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
                {"system": target, "code": target_code}, {"code": "x"}]}},
        ]}));
    }
    seeds
});

#[derive(Debug, Clone)]
enum Input {
    Mutated(Mutated),
    Tree(Value),
}

fn input() -> BoxedStrategy<Input> {
    prop_oneof![
        9 => arb::mutated(SEEDS.len()).prop_map(Input::Mutated),
        1 => arb::json(4).prop_map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.insert("resourceType".into(), json!("Parameters"));
            }
            Input::Tree(v)
        }),
    ]
    .boxed()
}

#[test]
fn fuzz_conceptmap_translate() {
    LazyLock::force(&TRANSLATOR);
    fuzz("conceptmap-translate", input(), |input| {
        let bytes = match &input {
            Input::Mutated(m) => m.bytes(&SEEDS),
            Input::Tree(v) => serde_json::to_vec(v).unwrap(),
        };
        let Some(params) = crate::intake::read(&bytes)? else {
            return Ok(());
        };
        match ConceptTranslateRequest::from_parameters(&params) {
            Ok(request) => {
                reached("conceptmap-translate", "request");
                let result = TRANSLATOR.concept_translate(&request);
                if result.result {
                    reached("conceptmap-translate", "match");
                }
                let out = result.to_parameters();
                prop_assert_eq!(&out["resourceType"], "Parameters");
                prop_assert!(!result.result || !result.matches.is_empty());
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
        Ok(())
    });
}
