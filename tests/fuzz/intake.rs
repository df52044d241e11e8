//! Document intake: the one reading of every body (`fhir::json::parse_body`), then what intake
//! and the integrator tools do with the tree: the document shape (`document::check`), the
//! typed R4 model (`fhir_io::check_r4_bundle_value`), the profile validator, the labels policy
//! reads from each resource, and the translations `Bundle/$translate` previews.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::Value;
use throughcare::document::ShapeError;
use throughcare::domain::OdsCode;
use throughcare::error::ApiError;
use throughcare::translate::{Source, Target, TranslateError};

use crate::arb::{self, Mutated};
use crate::{fuzz, reached, repo, settings};

/// The sample release document and the golden translation inputs: prison documents and GP
/// Connect structured records.
pub static SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut seeds =
        vec![serde_json::from_str(include_str!("../../samples/release-bundle.json")).unwrap()];
    let golden = repo("tests/golden");
    let mut dirs: Vec<_> = std::fs::read_dir(&golden)
        .unwrap()
        .filter_map(Result::ok)
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().filter_map(Result::ok))
        .map(|d| d.path().join("input.json"))
        .filter(|p| p.is_file())
        .collect();
    dirs.sort();
    dirs.dedup_by(|a, b| std::fs::read(&*a).ok() == std::fs::read(&*b).ok());
    for path in dirs {
        seeds.push(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap());
    }
    seeds
});

pub static VALIDATOR: LazyLock<throughcare::validate::Validator> =
    LazyLock::new(|| throughcare::validate::Validator::load(&settings().fhir).unwrap());

pub static TRANSLATOR: LazyLock<throughcare::translate::Translator> = LazyLock::new(|| {
    throughcare::translate::Translator::load(&settings().fhir.mappings_dir).unwrap()
});

static CLASSIFIER: LazyLock<throughcare::policy::Classifier> = LazyLock::new(|| {
    throughcare::policy::Classifier::load_dir(&settings().policy.labels_dir).unwrap()
});

/// What a client may send to a route that takes a document.
#[derive(Debug, Clone)]
pub enum Body {
    /// A real document, mutated.
    Mutated(Mutated),
    /// Any JSON tree.
    Tree(Value),
    /// Any bytes.
    Bytes(Vec<u8>),
}

pub fn body() -> BoxedStrategy<Body> {
    prop_oneof![
        8 => arb::mutated(SEEDS.len()).prop_map(Body::Mutated),
        1 => arb::json(6).prop_map(Body::Tree),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
    ]
    .boxed()
}

impl Body {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Mutated(m) => m.bytes(&SEEDS),
            Body::Tree(v) => serde_json::to_vec(v).unwrap(),
            Body::Bytes(b) => b.clone(),
        }
    }
}

/// The body as every route reads it: a tree, or a refusal that is a 400 or a 413.
pub fn read(bytes: &[u8]) -> Result<Option<Value>, TestCaseError> {
    match throughcare::fhir::json::parse_body(bytes, &settings().limits) {
        Ok(tree) => Ok(Some(tree)),
        Err(e) => {
            let status = ApiError::from(e).status();
            prop_assert!(
                status == 400 || status == 413,
                "a body refusal is 400 or 413, not {}",
                status
            );
            Ok(None)
        }
    }
}

/// Everything intake and the tools do with a document tree.
pub fn document_stages(tree: &Value) -> Result<(), TestCaseError> {
    const T: &str = "document-intake";
    reached(T, "parsed");
    if fhir_io::check_r4_bundle_value(tree).is_ok() {
        reached(T, "typed-r4");
    }
    for caller in ["Y02307", "A99001"] {
        let caller = OdsCode::parse(caller).unwrap();
        match throughcare::document::check(tree, &caller) {
            Ok(summary) => {
                reached(T, "document-shape");
                prop_assert_eq!(summary.nhs_number.as_str().len(), 10)
            }
            Err(ShapeError::Invalid(issues)) => prop_assert!(!issues.is_empty()),
            Err(ShapeError::AuthorMismatch { .. }) => {}
        }
    }
    let set = throughcare::validate::choose_set(tree);
    let _ = VALIDATOR.validate(tree, None, set);
    if VALIDATOR
        .validate(tree, None, throughcare::validate::ProfileSet::Prison)
        .iter()
        .all(|i| !matches!(i.severity, throughcare::fhir::outcome::Severity::Error))
    {
        reached(T, "valid");
    }
    for (i, entry) in tree
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(resource) = entry.get("resource") {
            let full_url = entry.get("fullUrl").and_then(Value::as_str);
            let _ = throughcare::policy::ResourceView::of(i, full_url, resource, &CLASSIFIER);
        }
    }
    if let Some(source) = Source::detect(tree) {
        for target in Target::all() {
            match TRANSLATOR.translate(source, target, tree) {
                Ok(_) => reached(T, "translated"),
                Err(TranslateError::Shape { .. }) => {}
                Err(other) => {
                    // Every translation error is a refusal the edge maps to 422.
                    prop_assert_eq!(ApiError::from(other).status(), 422);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_document_intake() {
    LazyLock::force(&VALIDATOR);
    fuzz("document-intake", body(), |body| {
        if let Some(tree) = read(&body.bytes())? {
            document_stages(&tree)?;
        }
        Ok(())
    });
}
