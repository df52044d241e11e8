//! The CapabilityStatement, derived from the route table so it lists exactly what exists.

use serde_json::{Value, json};

use super::FHIR_VERSION;

/// Builds the CapabilityStatement for the FHIR routes in `routes` (method, path).
pub fn build(public_url: &str, routes: &[(&str, &str)]) -> Value {
    let mut resources: Vec<(String, Vec<&'static str>, Vec<Value>)> = Vec::new();
    let mut system_ops = Vec::new();
    for (method, path) in routes {
        let Some(rest) = path.strip_prefix("/fhir/") else {
            continue;
        };
        if rest == "metadata" {
            continue;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let (resource, interaction, op) = match (*method, segments.as_slice()) {
            ("POST", [op]) if op.starts_with('$') => (None, None, Some(*op)),
            ("POST", [ty]) => (Some(*ty), Some("create"), None),
            ("GET", [ty]) => (Some(*ty), Some("search-type"), None),
            ("GET", [ty, "{id}"]) => (Some(*ty), Some("read"), None),
            ("PUT", [ty, "{id}"]) => (Some(*ty), Some("update"), None),
            (_, [ty, op]) if op.starts_with('$') => (Some(*ty), None, Some(*op)),
            (_, [ty, "{id}", op]) if op.starts_with('$') => (Some(*ty), None, Some(*op)),
            _ => (None, None, None),
        };
        let op_json = |name: &str| {
            let name = name.trim_start_matches('$');
            json!({"name": name, "definition": format!("{public_url}/fhir/OperationDefinition/{name}")})
        };
        match resource {
            Some(ty) => {
                let idx = match resources.iter().position(|(t, _, _)| t == ty) {
                    Some(i) => i,
                    None => {
                        resources.push((ty.to_string(), Vec::new(), Vec::new()));
                        resources.len() - 1
                    }
                };
                if let Some(i) = interaction {
                    resources[idx].1.push(i);
                }
                if let Some(o) = op {
                    resources[idx].2.push(op_json(o));
                }
            }
            None => {
                if let Some(o) = op {
                    system_ops.push(op_json(o));
                }
            }
        }
    }
    let resources: Vec<Value> = resources
        .into_iter()
        .map(|(ty, interactions, ops)| {
            let mut r = json!({
                "type": ty,
                "interaction": interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
            });
            if !ops.is_empty() {
                r["operation"] = Value::Array(ops);
            }
            r
        })
        .collect();
    let mut rest = json!({
        "mode": "server",
        "security": {
            "cors": false,
            "service": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }]}],
            "extension": [{
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": format!("{public_url}/oauth2/token")}]
            }],
            "description": "SMART Backend Services (client_credentials with a private_key_jwt assertion, RS384 or ES384); mutual TLS optional, and checked against the token's organisation when present."
        },
        "resource": resources,
    });
    if !system_ops.is_empty() {
        rest["operation"] = Value::Array(system_ops);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "Throughcare", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Throughcare prison-to-community FHIR gateway", "url": format!("{public_url}/fhir")},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json"],
        "rest": [rest],
    })
}
