//! The FHIR XML rules, one by one; the corpus round trip and the parser's refusals are in
//! `tests/fhir_xml.rs`.

use serde_json::{Value, json};

use super::*;

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn round_trip(v: &Value) -> String {
    let xml = to_xml(v, FhirVersion::Stu3).unwrap();
    let back = from_xml(xml.as_bytes(), FhirVersion::Stu3).unwrap();
    assert_eq!(&back, v, "{xml}");
    xml
}

fn refusal(v: &Value) -> String {
    to_xml(v, FhirVersion::Stu3).unwrap_err().to_string()
}

#[test]
fn elements_follow_definition_order_whatever_the_json_key_order() {
    let v = json!({
        "birthDate": "1980-01-01",
        "name": [{"given": ["A"], "family": "B"}],
        "id": "p",
        "resourceType": "Patient",
        "extension": [{"valueString": "v", "url": "u"}],
        "meta": {"profile": ["x"]},
    });
    let xml = round_trip(&v);
    let at = |s: &str| xml.find(s).unwrap_or_else(|| panic!("{s} in {xml}"));
    assert!(xml.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Patient xmlns=\"http://hl7.org/fhir\">"
    ));
    assert!(at("<id ") < at("<meta>") && at("<meta>") < at("<extension"));
    assert!(at("<extension url=\"u\">") < at("<name>") && at("<name>") < at("<birthDate"));
    assert!(
        at("<family") < at("<given"),
        "HumanName: family before given"
    );
}

#[test]
fn primitive_ids_and_extensions_go_on_the_element() {
    let v = parse(
        r#"{"resourceType": "Patient",
            "birthDate": "1970-01-01", "_birthDate": {"id": "b", "extension": [{"url": "u", "valueBoolean": true}]},
            "gender": "male", "_gender": {"id": "g"},
            "name": [{"given": ["Jo", null, "Al"], "_given": [null, {"extension": [{"url": "absent", "valueCode": "masked"}]}, {"id": "third"}]}],
            "_active": {"extension": [{"url": "only", "valueString": "no value"}]}}"#,
    );
    let xml = round_trip(&v);
    assert!(
        xml.contains("<birthDate id=\"b\" value=\"1970-01-01\">\n    <extension url=\"u\">"),
        "{xml}"
    );
    assert!(xml.contains("<gender id=\"g\" value=\"male\"/>"), "{xml}");
    assert!(
        xml.contains("<given value=\"Jo\"/>\n    <given>\n      <extension url=\"absent\">"),
        "{xml}"
    );
    assert!(xml.contains("<given id=\"third\" value=\"Al\"/>"), "{xml}");
    assert!(
        xml.contains("<active>\n    <extension url=\"only\">"),
        "{xml}"
    );
    // Only extensions on every item: the values array comes back as nulls (the form the
    // gateway's own documents use), whether or not the JSON had it.
    let v = parse(
        r#"{"resourceType": "Patient", "name": [{"given": [null, null], "_given": [{"id": "a"}, {"id": "b"}]}]}"#,
    );
    round_trip(&v);
    let without =
        parse(r#"{"resourceType": "Patient", "name": [{"_given": [{"id": "a"}, {"id": "b"}]}]}"#);
    let xml = to_xml(&without, FhirVersion::Stu3).unwrap();
    assert_eq!(from_xml(xml.as_bytes(), FhirVersion::Stu3).unwrap(), v);
}

#[test]
fn ids_of_datatypes_and_extension_urls_are_attributes_but_a_resource_id_is_an_element() {
    let v = json!({"resourceType": "Observation", "id": "o", "status": "final",
        "code": {"id": "c1", "coding": [{"id": "c2", "system": "s", "code": "c"}]},
        "extension": [{"id": "e", "url": "http://x", "valueQuantity": {"value": 1}}]});
    let xml = round_trip(&v);
    assert!(xml.contains("<id value=\"o\"/>"));
    assert!(xml.contains("<code id=\"c1\">"));
    assert!(xml.contains("<coding id=\"c2\">"));
    assert!(xml.contains("<extension id=\"e\" url=\"http://x\">"));
}

#[test]
fn numbers_keep_their_text_and_types_come_back() {
    let v = parse(
        r#"{"resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "valueQuantity": {"value": 2.50}, "referenceRange": [{"low": {"value": 1e3}, "high": {"value": -0.000}}],
            "component": [{"code": {"text": "c"}, "valueRange": {"low": {"value": 0}}}]}"#,
    );
    let xml = round_trip(&v);
    assert!(xml.contains("<value value=\"2.50\"/>"), "{xml}");
    // The lossless JSON reader keeps `1e3` as `1e+3`; the XML carries what the tree holds.
    assert!(xml.contains("<value value=\"1e+3\"/>"), "{xml}");
    assert!(xml.contains("<value value=\"-0.000\"/>"), "{xml}");
    let v = json!({"resourceType": "Patient", "active": true, "multipleBirthInteger": 2});
    let xml = round_trip(&v);
    assert!(
        xml.contains("<active value=\"true\"/>")
            && xml.contains("<multipleBirthInteger value=\"2\"/>")
    );
}

#[test]
fn attribute_values_are_escaped_and_keep_line_ends() {
    let v = json!({"resourceType": "Patient", "id": "p",
        "name": [{"text": "a & b < c > d \" e ' f\nline\r\ttab ünïcødé 𝔉"}]});
    let xml = round_trip(&v);
    assert!(
        xml.contains(
            r#"<text value="a &amp; b &lt; c &gt; d &quot; e ' f&#10;line&#13;&#9;tab ünïcødé 𝔉"/>"#
        ),
        "{xml}"
    );
}

#[test]
fn nested_resources_are_wrapped_in_their_element() {
    let v = json!({"resourceType": "Parameters", "parameter": [
        {"name": "p", "resource": {"resourceType": "Patient", "id": "x",
            "contained": [{"resourceType": "Organization", "id": "o", "name": "Org"}]}},
        {"name": "n", "part": [{"name": "m", "valueString": "s"}]}]});
    let xml = round_trip(&v);
    assert!(xml.contains("<resource>\n      <Patient>\n        <id value=\"x\"/>\n        <contained>\n          <Organization>"), "{xml}");
}

#[test]
fn the_narrative_is_written_as_xhtml_and_read_back_as_its_markup() {
    let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"a\">x &amp; y&#160;<br/>z</p></div>";
    let v = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
    let xml = round_trip(&v);
    assert!(xml.contains(&format!("    {div}\n")), "{xml}");
    // Without the namespace on the div, the serialiser declares it.
    let v =
        json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div>hi</div>"}});
    let xml = to_xml(&v, FhirVersion::Stu3).unwrap();
    let back = from_xml(xml.as_bytes(), FhirVersion::Stu3).unwrap();
    assert_eq!(
        back["text"]["div"],
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">hi</div>"
    );
    for (bad, why) in [
        ("<p>hi</p>", "one <div> element, not <p>"),
        ("<div>&nbsp;</div>", "undefined entity reference &nbsp;"),
        ("<div><p></div>", "not well-formed"),
        ("<div/><div/>", "exactly one <div>"),
        ("text", "text outside"),
        ("<!DOCTYPE div><div/>", "DOCTYPE"),
        ("<div xmlns=\"http://example.org\"/>", "XHTML namespace"),
        ("<div>\u{1}</div>", "U+0001"),
    ] {
        let v = json!({"resourceType": "Patient", "text": {"status": "generated", "div": bad}});
        let e = refusal(&v);
        assert!(
            e.starts_with("Patient.text.div: ") && e.contains(why),
            "{bad}: {e}"
        );
    }
}

#[test]
fn what_would_not_come_back_the_same_is_refused_with_its_path() {
    let cases = [
        (
            json!({"resourceType": "Patient", "colour": "red"}),
            "Patient: colour is not a FHIR Stu3 element here",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": "B", "_family": "x"}]}),
            "Patient.name[0].family: _family must be an object",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"_text": {"colour": 1}}]}),
            "Patient.name[0].text: _text.colour is not a FHIR Stu3 element here",
        ),
        (
            json!({"resourceType": "Patient", "_name": {"id": "x"}}),
            "Patient: _name is not a FHIR Stu3 element here",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"_id": "x"}]}),
            "Patient.name[0]: _id is not a FHIR Stu3 element here",
        ),
        (
            json!({"resourceType": "Patient", "gender": null}),
            "Patient.gender: neither a value nor an extension",
        ),
        (
            json!({"resourceType": "Patient", "name": []}),
            "Patient.name: an empty array",
        ),
        (
            json!({"resourceType": "Patient", "name": {"family": "B"}}),
            "Patient.name: repeats: it must be an array",
        ),
        (
            json!({"resourceType": "Patient", "gender": ["male"]}),
            "Patient.gender: does not repeat: it must not be an array",
        ),
        (
            json!({"resourceType": "Patient", "active": "true"}),
            "Patient.active: a boolean must be true or false",
        ),
        (
            json!({"resourceType": "Patient", "gender": 1}),
            "Patient.gender: must be a JSON string",
        ),
        (
            json!({"resourceType": "Patient", "multipleBirthInteger": 1.5}),
            "Patient.multipleBirthInteger: \"1.5\" is not a valid integer",
        ),
        (
            json!({"resourceType": "Patient", "multipleBirthInteger": 3_000_000_000_u64}),
            "Patient.multipleBirthInteger: \"3000000000\" is not a valid integer",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"given": ["a", null]}]}),
            "Patient.name[0].given[1]: neither a value nor an extension",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": [null, null]}]}),
            "Patient.name[0].given: given and _given differ in length",
        ),
        (
            json!({"resourceType": "Patient", "id": "a\u{0}b"}),
            "Patient.id: the character U+0000 cannot be written in XML",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"id": 1}]}),
            "Patient.name[0].id: must be a string",
        ),
        (
            json!({"resourceType": "Patient", "contained": [{"id": "x"}]}),
            "Patient.contained[0]: a resource needs a string resourceType",
        ),
        (
            json!({"resourceType": "Coding"}),
            "Coding: Coding is not a Stu3 resource type",
        ),
        (
            json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Nope"}}]}),
            "Bundle.entry[0].resource.Nope: Nope is not a Stu3 resource type",
        ),
        (json!(["x"]), "$: a resource must be a JSON object"),
    ];
    for (v, message) in cases {
        assert_eq!(refusal(&v), message, "{v}");
    }
}

#[test]
fn lexical_forms_of_numbers() {
    use order::Primitive::*;
    for ok in [
        "0",
        "-0",
        "1.50",
        "1e3",
        "1E+3",
        "-2.5e-10",
        "123456789012345678901234567890.5",
    ] {
        assert!(number(Decimal, ok).is_ok(), "{ok}");
    }
    for bad in [
        "", "01", "1.", ".5", "+1", "1e", "NaN", "Infinity", "1,5", " 1",
    ] {
        assert!(number(Decimal, bad).is_err(), "{bad}");
    }
    assert!(number(Integer, "-2147483648").is_ok());
    assert!(number(Integer, "2147483648").is_err());
    assert!(number(UnsignedInt, "0").is_ok() && number(UnsignedInt, "-1").is_err());
    assert!(number(PositiveInt, "1").is_ok() && number(PositiveInt, "0").is_err());
    assert_eq!(number(Decimal, "2.50").unwrap().to_string(), "2.50");
}
