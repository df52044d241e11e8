use super::*;
use serde_json::json;

fn check(expr: &str, focus: &Value) -> Option<bool> {
    Expr::compile(expr)
        .unwrap()
        .check(focus, focus, focus, None)
        .unwrap()
}

#[test]
fn period_start_must_not_follow_end() {
    let per1 = "start.hasValue().not() or end.hasValue().not() or (start <= end)";
    assert_eq!(
        check(per1, &json!({"start": "2020-01-02", "end": "2020-01-01"})),
        Some(false)
    );
    assert_eq!(
        check(per1, &json!({"start": "2020-01-01", "end": "2020-01-02"})),
        Some(true)
    );
    assert_eq!(
        check(
            per1,
            &json!({"start": "2020-01-01T10:00:00+01:00", "end": "2020-01-01T09:30:00Z"})
        ),
        Some(true)
    );
    assert_eq!(check(per1, &json!({"start": "2020-01-01"})), Some(true));
}

#[test]
fn bundle_document_invariants_evaluate_on_json() {
    let bundle = json!({"resourceType": "Bundle", "type": "document",
        "identifier": {"system": "s"},
        "entry": [{"resource": {"resourceType": "Composition"}}]});
    assert_eq!(
        check(
            "type = 'document' implies (identifier.system.exists() and identifier.value.exists())",
            &bundle
        ),
        Some(false)
    );
    assert_eq!(
        check(
            "type = 'document' implies entry.first().resource.is(Composition)",
            &bundle
        ),
        Some(true)
    );
    assert_eq!(check("Bundle.entry.count() = 1", &bundle), Some(true));
}

#[test]
fn choice_elements_are_found_by_their_short_name() {
    let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 1}, "dataAbsentReason": {"text": "x"}});
    assert_eq!(
        check("dataAbsentReason.empty() or value.empty()", &obs),
        Some(false)
    );
    assert_eq!(check("value.value > 0", &obs), Some(true));
}

#[test]
fn regular_expressions_and_string_functions_work() {
    let id = json!({"value": "A1234BC"});
    assert_eq!(
        check("value.matches('^[A-Z][0-9]{4}[A-Z]{2}$')", &id),
        Some(true)
    );
    assert_eq!(check("value.matches('^[0-9]+$')", &id), Some(false));
    assert_eq!(check("value.substring(1, 4) = '1234'", &id), Some(true));
    assert_eq!(
        check("value.replaceMatches('[0-9]', '') = 'ABC'", &id),
        Some(true)
    );
}

#[test]
fn three_valued_logic_follows_the_specification() {
    let v = json!({});
    assert_eq!(check("{} or true", &v), Some(true));
    assert_eq!(check("{} and true", &v), None);
    assert_eq!(check("false implies {}", &v), Some(true));
    assert_eq!(check("(1 + 2) = 3 and 'a' & 'b' = 'ab'", &v), Some(true));
    assert_eq!(check("'x' in ('x' | 'y')", &v), Some(true));
}

#[test]
fn contained_resources_must_be_referenced() {
    let dom3 = "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri) | %resource.descendants().ofType(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(uri) = '#').exists()).not()).trace('unmatched', id).empty()";
    let ok = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}],
        "managingOrganization": {"reference": "#o"}});
    let bad = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}]});
    assert_eq!(check(dom3, &ok), Some(true));
    assert_eq!(check(dom3, &bad), Some(false));
}

#[test]
fn unsupported_functions_fail_to_compile() {
    assert!(Expr::compile("code.memberOf('http://x')").is_err());
    assert!(Expr::compile("name.where(").is_err());
}

#[test]
fn resolve_finds_references_in_the_bundle_and_contained_resources() {
    let bundle = json!({"resourceType": "Bundle", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "https://x/fhir/Practitioner/d1", "resource": {"resourceType": "Practitioner", "id": "d1"}}
    ]});
    let obs = json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:p1"},
        "performer": [{"reference": "Practitioner/d1"}, {"reference": "#dev"}],
        "contained": [{"resourceType": "Device", "id": "dev"}]});
    let e = |src: &str| {
        Expr::compile(src)
            .unwrap()
            .check(&obs, &obs, &obs, Some(&bundle))
            .unwrap()
    };
    assert_eq!(e("subject.resolve() is Patient"), Some(true));
    assert_eq!(e("performer[0].resolve() is Practitioner"), Some(true));
    assert_eq!(e("performer[1].resolve() is Device"), Some(true));
    assert_eq!(e("performer.resolve().count() = 2"), Some(true));
    // A reference that leads nowhere resolves to nothing.
    let lost = json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:zz"}});
    assert_eq!(
        Expr::compile("subject.resolve().exists()")
            .unwrap()
            .check(&lost, &lost, &lost, Some(&bundle))
            .unwrap(),
        Some(false)
    );
}

#[test]
fn html_checks_apply_the_narrative_rules() {
    let ok = json!({"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a</p></div>"});
    let bad =
        json!({"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x()</script></div>"});
    assert_eq!(check("div.htmlChecks()", &ok), Some(true));
    assert_eq!(check("div.htmlChecks()", &bad), Some(false));
}
