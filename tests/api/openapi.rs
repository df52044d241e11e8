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

// ---- statuses and parameters ---------------------------------------------------------------

use serde_json::Value;
use throughcare::api::routes::{Access, route_table};

use crate::helpers::*;

/// `value` with a `$ref` (to this document) followed.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            resolve(
                spec,
                spec.pointer(pointer)
                    .unwrap_or_else(|| panic!("{r} resolves")),
            )
        }
        None => value,
    }
}

/// `schema` with every `$ref` inside it followed.
fn resolve_all(spec: &Value, schema: &Value) -> Value {
    match resolve(spec, schema) {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve_all(spec, v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_all(spec, v)).collect()),
        other => other.clone(),
    }
}

fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &spec["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "{method} {path} is not in openapi.yaml");
    op
}

/// The statuses an operation lists.
fn documented(spec: &Value, method: &str, path: &str) -> BTreeSet<u16> {
    operation(spec, method, path)["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|k| k.parse().expect("a numeric status"))
        .collect()
}

/// The media types of the request body an operation takes (none: it takes no body).
fn body_media_types(spec: &Value, method: &str, path: &str) -> Vec<String> {
    operation(spec, method, path)["requestBody"]["content"]
        .as_object()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every status the edge itself can answer on a route is listed for it: 401 and 429 wherever
/// a client certificate is needed, 400 (query parameters checked) wherever a token is, 403
/// where roles and scopes are, and 400 and 413 (and 415 for FHIR JSON) wherever a body is read.
#[test]
fn every_route_lists_the_statuses_its_edge_answers() {
    let spec = spec();
    let mut problems = Vec::new();
    for route in route_table() {
        let method = route.method.as_str();
        let listed = documented(&spec, method, route.path);
        // Every route: one address may have only so many requests in progress (429).
        let mut needed: Vec<u16> = match route.access {
            Access::Open => vec![429],
            Access::Public => vec![401, 429],
            Access::Authenticated => vec![400, 401, 429],
            Access::Protected { .. } => vec![400, 401, 403, 429],
        };
        let media = body_media_types(&spec, method, route.path);
        if !media.is_empty() {
            // A body that does not arrive in time is cut off with 408.
            needed.extend([400, 408, 413]);
        }
        if media.iter().any(|m| m == FHIR_JSON) {
            needed.push(415);
        }
        if matches!(route.access, Access::Open) && listed.contains(&401) {
            problems.push(format!("{method} {} is open but lists 401", route.path));
        }
        for status in needed {
            if !listed.contains(&status) {
                problems.push(format!("{method} {} does not list {status}", route.path));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every refusal is an OperationOutcome in FHIR JSON, except the token endpoint's RFC 6749
/// errors; every answer the spec lists says what it carries.
#[test]
fn every_error_response_is_an_operation_outcome() {
    let spec = spec();
    let outcome = serde_json::json!({"$ref": "#/components/schemas/OperationOutcome"});
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let response = resolve(&spec, response);
                assert!(
                    response["content"].is_object(),
                    "{method} {path} {status} does not say what it carries"
                );
                if status.starts_with('2') || path == "/oauth2/token" {
                    continue;
                }
                assert_eq!(
                    response["content"][FHIR_JSON]["schema"], outcome,
                    "{method} {path} {status} is not an OperationOutcome"
                );
            }
        }
    }
}

/// The query parameters each route declares (and checks) are those `openapi.yaml` lists for
/// it, with the same schema and the same `required`.
#[test]
fn every_route_declares_the_query_parameters_the_spec_lists_with_their_schemas() {
    let spec = spec();
    let mut problems = Vec::new();
    for (method, path, declared) in throughcare::api::routes::route_queries() {
        let op = operation(&spec, method.as_str(), path);
        let listed: Vec<Value> = op["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| resolve(&spec, p).clone())
            .filter(|p| p["in"] == "query")
            .collect();
        let names: BTreeSet<&str> = listed.iter().filter_map(|p| p["name"].as_str()).collect();
        let ours: BTreeSet<&str> = declared.iter().map(|p| p.name).collect();
        if names != ours {
            problems.push(format!(
                "{method} {path}: the spec lists {names:?}, the route declares {ours:?}"
            ));
            continue;
        }
        for param in declared {
            let listed = listed.iter().find(|p| p["name"] == param.name).unwrap();
            let schema = resolve_all(&spec, &listed["schema"]);
            if schema != param.schema() {
                problems.push(format!(
                    "{method} {path} {}: the spec's schema {schema} differs from the route's {}",
                    param.name,
                    param.schema()
                ));
            }
            if listed["required"].as_bool().unwrap_or(false) != param.required {
                problems.push(format!("{method} {path} {}: required differs", param.name));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The sample client a probe of a route uses: one the route admits, and one it refuses by role.
fn clients_for(access: Access) -> (&'static str, Option<&'static str>) {
    let order = [
        ("prison", throughcare::domain::Role::Prison),
        ("icb", throughcare::domain::Role::Icb),
        ("auditor", throughcare::domain::Role::Auditor),
        ("gp", throughcare::domain::Role::Gp),
        ("admin", throughcare::domain::Role::Admin),
    ];
    match access {
        Access::Protected { roles, .. } => {
            let admitted = order
                .iter()
                .find(|(_, r)| roles.contains(r))
                .map(|(c, _)| *c)
                .expect("a sample client the route admits");
            let refused = order
                .iter()
                .find(|(_, r)| !roles.contains(r))
                .map(|(c, _)| *c);
            (admitted, refused)
        }
        _ => ("prison", None),
    }
}

/// A value outside the schema of a query parameter.
fn outside(kind: throughcare::api::query::Kind) -> Option<&'static str> {
    use throughcare::api::query::Kind;
    match kind {
        Kind::Text => None,
        Kind::OneOf(_) => Some("false"),
        Kind::Bool => Some("null"),
        Kind::Count => Some("abc"),
        Kind::NhsNumber => Some("12345"),
        Kind::Date(_) => Some("yesterday"),
    }
}

/// Sends requests every route must refuse at its edge (no certificate, no token, another role,
/// a query parameter it does not take or a value outside a parameter's schema, a body that is
/// not JSON, of another media type, or too large) and checks that each status answered is one
/// the spec lists for the route, with the media type it lists.
#[tokio::test]
async fn the_gateway_answers_only_statuses_the_spec_lists() {
    // Below every route's own body limit (64 KiB is the smallest), so one large body fits all.
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 32 * 1024).await;
    let spec = spec();
    let mut tokens = std::collections::HashMap::new();
    for name in ["prison", "icb", "auditor", "gp", "admin"] {
        tokens.insert(name, app.token_for(name).await);
    }
    let large = vec![b' '; 1024 * 1024 + 1];
    let mut problems = Vec::new();
    let mut probes = 0;
    for route in route_table() {
        let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        let path = route.path;
        let url = app.url(&path.replace("{id}", "no-such-id").replace("{ods}", "ZZ999"));
        let listed = documented(&spec, method.as_str(), path);
        let media = body_media_types(&spec, method.as_str(), path);
        let (admitted, refused) = clients_for(route.access);
        let token = tokens[admitted].clone();

        let mut requests: Vec<(String, Option<u16>, reqwest::RequestBuilder)> = Vec::new();
        let http = app.client_for(admitted);
        if !matches!(route.access, Access::Open) {
            requests.push((
                "no client certificate".into(),
                Some(401),
                app.anonymous_client().request(method.clone(), &url),
            ));
        }
        if matches!(
            route.access,
            Access::Authenticated | Access::Protected { .. }
        ) {
            requests.push((
                "no token".into(),
                Some(401),
                http.request(method.clone(), &url),
            ));
            requests.push((
                "an unknown query parameter".into(),
                Some(400),
                http.request(method.clone(), format!("{url}?zz-unknown=1"))
                    .bearer_auth(&token),
            ));
            for param in route.query {
                if let Some(bad) = outside(param.kind) {
                    requests.push((
                        format!("{}={bad}", param.name),
                        Some(400),
                        http.request(method.clone(), &url)
                            .query(&[(param.name, bad)])
                            .bearer_auth(&token),
                    ));
                }
            }
        }
        if let Some(refused) = refused {
            requests.push((
                format!("the role of {refused}"),
                Some(403),
                app.client_for(refused)
                    .request(method.clone(), &url)
                    .bearer_auth(&tokens[refused]),
            ));
        }
        // Required query parameters, so that the body is what is refused.
        let required: Vec<(&str, &str)> = route
            .query
            .iter()
            .filter(|p| p.required)
            .map(|p| match p.name {
                "target" => ("target", "uk-core-r4"),
                "identifier" => ("identifier", SAMPLE_NHS_NUMBER),
                other => panic!("no sample value for the required parameter {other}"),
            })
            .collect();
        for content_type in &media {
            let send = |body: Vec<u8>, content_type: &str| {
                http.request(method.clone(), &url)
                    .query(&required)
                    .bearer_auth(&token)
                    .header("Content-Type", content_type)
                    .body(body)
            };
            requests.push((
                format!("a {content_type} body that is not JSON"),
                Some(400),
                send(b"{".to_vec(), content_type),
            ));
            requests.push((
                format!("a {content_type} body too large"),
                Some(413),
                send(large.clone(), content_type),
            ));
        }
        if !media.is_empty() {
            // Routes that take FHIR JSON check the media type; the others read the JSON.
            let expected = media.iter().any(|m| m == FHIR_JSON).then_some(415);
            requests.push((
                "a text/plain body".into(),
                expected,
                http.request(method.clone(), &url)
                    .query(&required)
                    .bearer_auth(&token)
                    .header("Content-Type", "text/plain")
                    .body("{}"),
            ));
        }
        for (what, expected, request) in requests {
            probes += 1;
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = response.text().await.unwrap_or_default();
            let here = format!("{method} {path} with {what}");
            if expected.is_some_and(|e| e != status) {
                problems.push(format!("{here}: {status}, expected {expected:?}: {body}"));
            }
            if !listed.contains(&status) {
                problems.push(format!("{here}: {status} is not listed ({listed:?})"));
                continue;
            }
            let response_spec = resolve(
                &spec,
                &operation(&spec, method.as_str(), path)["responses"][status.to_string()],
            );
            let media_listed: Vec<&String> = response_spec["content"]
                .as_object()
                .map(|c| c.keys().collect())
                .unwrap_or_default();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if !media_listed.iter().any(|m| m.as_str() == essence) {
                problems.push(format!(
                    "{here}: answered {content_type:?}, the spec lists {media_listed:?}"
                ));
            }
            let named = if what.contains("unknown query parameter") {
                Some("zz-unknown")
            } else {
                what.split_once('=').map(|(name, _)| name)
            };
            if let Some(name) = named
                && !body.contains(name)
            {
                problems.push(format!("{here}: the refusal does not name {name}: {body}"));
            }
        }
    }
    assert!(probes > 100, "only {probes} probes");
    assert!(problems.is_empty(), "{problems:#?}");
}
