//! `openapi.yaml` and the router must describe the same routes.

use std::collections::BTreeSet;

fn spec() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml is readable");
    serde_yaml_ng::from_str(&text).expect("openapi.yaml parses")
}

fn spec_routes(spec: &serde_json::Value) -> BTreeSet<(String, String)> {
    let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths is a map") {
        for (key, _) in item.as_object().expect("path item is a map") {
            if methods.contains(&key.as_str()) {
                out.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn router_routes() -> BTreeSet<(String, String)> {
    throughcare::startup::routes()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_string(), p.to_string()))
        .collect()
}

#[test]
fn openapi_spec_is_version_3_1() {
    let spec = spec();
    assert!(
        spec["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
}

#[test]
fn every_router_route_is_in_the_openapi_spec_and_every_spec_route_is_routed() {
    let spec = spec_routes(&spec());
    let router = router_routes();
    let missing_from_spec: Vec<_> = router.difference(&spec).collect();
    let missing_from_router: Vec<_> = spec.difference(&router).collect();
    assert!(
        missing_from_spec.is_empty() && missing_from_router.is_empty(),
        "routes not in openapi.yaml: {missing_from_spec:?}; spec routes with no handler: {missing_from_router:?}"
    );
}

#[test]
fn every_spec_operation_has_an_id_and_responses() {
    let spec = spec();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
            assert!(
                op["responses"].is_object(),
                "{method} {path} has no responses"
            );
        }
    }
}

/// Every failure code the gateway can return is documented in `openapi.yaml` with the same
/// meaning, and the document lists no code the gateway does not have.
#[test]
fn openapi_lists_every_gateway_code_with_its_meaning() {
    let spec = spec();
    let documented = spec["x-gateway-codes"]
        .as_object()
        .expect("x-gateway-codes is a map");
    let codes = throughcare::codes::ALL;
    for (code, meaning) in codes {
        assert_eq!(
            documented.get(*code).and_then(|v| v.as_str()),
            Some(*meaning),
            "{code} is missing from openapi.yaml or documented with another meaning"
        );
    }
    for code in documented.keys() {
        assert!(
            codes.iter().any(|(c, _)| c == code),
            "openapi.yaml documents {code}, which the gateway does not have"
        );
    }
    let distinct: BTreeSet<&str> = codes.iter().map(|(c, _)| *c).collect();
    assert_eq!(distinct.len(), codes.len(), "every code is distinct");
}
