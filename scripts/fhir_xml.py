"""FHIR STU3 XML to FHIR JSON, for build-time use only (scripts/package-fhir.py, and the test
fixtures in tests/fixtures/itk3-responses/). The gateway's own FHIR XML parser is src/fhir/xml.

Which elements repeat (JSON arrays) and which primitives are numbers or booleans comes from:

- for resource instances: the STU3 element-type table the translator already uses
  (mappings/fhir-types/stu3.json, generated from the typed STU3 model), plus MessageHeader,
  which that table does not cover, written out below from the STU3 specification;
- for the conformance resources (StructureDefinition, ValueSet, CodeSystem, MessageDefinition):
  the few repeating elements of those resources, by element name (CONFORMANCE_REPEAT), with
  the numeric and boolean primitives by name.

An element the tables do not know stops the conversion with its path, so nothing is guessed.
"""
import json
import os
import xml.etree.ElementTree as ET

FHIR_NS = "{http://hl7.org/fhir}"
XHTML_NS = "http://www.w3.org/1999/xhtml"
ET.register_namespace("", XHTML_NS)

TYPES_PATH = os.path.join(os.path.dirname(__file__), "..", "mappings", "fhir-types", "stu3.json")

# MessageHeader (STU3 3.0.1), absent from stu3.json.
MESSAGE_HEADER = {
    "MessageHeader": {"resource": True, "elements": {
        "id": {"type": "string"}, "meta": {"type": "Meta"}, "implicitRules": {"type": "string"},
        "language": {"type": "string"}, "text": {"type": "Narrative"},
        "contained": {"type": "Resource", "max": "*"}, "extension": {"type": "Extension", "max": "*"},
        "modifierExtension": {"type": "Extension", "max": "*"}, "event": {"type": "Coding"},
        "destination": {"type": "MessageHeaderDestination", "max": "*"},
        "receiver": {"type": "Reference"}, "sender": {"type": "Reference"},
        "timestamp": {"type": "instant"}, "enterer": {"type": "Reference"},
        "author": {"type": "Reference"}, "source": {"type": "MessageHeaderSource"},
        "responsible": {"type": "Reference"}, "reason": {"type": "CodeableConcept"},
        "response": {"type": "MessageHeaderResponse"}, "focus": {"type": "Reference", "max": "*"},
    }},
    "MessageHeaderDestination": {"elements": {
        "id": {"type": "string"}, "extension": {"type": "Extension", "max": "*"},
        "modifierExtension": {"type": "Extension", "max": "*"}, "name": {"type": "string"},
        "target": {"type": "Reference"}, "endpoint": {"type": "string"},
    }},
    "MessageHeaderSource": {"elements": {
        "id": {"type": "string"}, "extension": {"type": "Extension", "max": "*"},
        "modifierExtension": {"type": "Extension", "max": "*"}, "name": {"type": "string"},
        "software": {"type": "string"}, "version": {"type": "string"},
        "contact": {"type": "ContactPoint"}, "endpoint": {"type": "string"},
    }},
    "MessageHeaderResponse": {"elements": {
        "id": {"type": "string"}, "extension": {"type": "Extension", "max": "*"},
        "modifierExtension": {"type": "Extension", "max": "*"}, "identifier": {"type": "string"},
        "code": {"type": "code"}, "details": {"type": "Reference"},
    }},
}

CONFORMANCE = {"StructureDefinition", "ValueSet", "CodeSystem", "MessageDefinition"}
# Repeating elements of the STU3 conformance resources (and the datatypes inside them), by
# name; `code` repeats in ElementDefinition (a list of Codings) but not in ElementDefinition.type,
# ValueSet include.concept, CodeSystem concept or MessageDefinition focus.
CONFORMANCE_REPEAT = {
    "extension", "modifierExtension", "contact", "telecom", "useContext", "jurisdiction",
    "keyword", "mapping", "context", "contextInvariant", "element", "alias", "type",
    "condition", "constraint", "representation", "example", "discriminator", "aggregation",
    "include", "exclude", "concept", "filter", "designation", "property", "parameter",
    "contains", "operator", "replaces", "parent", "allowedResponse", "profile", "tag",
    "security", "line", "given", "prefix", "suffix", "coding", "valueSet",
}
CONFORMANCE_REPEAT_NOT_UNDER = {
    # element name: parents under which it is single
    "type": {"base", "identifier", "slicing", "discriminator", "StructureDefinition"},
    "profile": {"type", "focus"},
    "valueSet": {"expansion", "binding"},
    "code": set(),
    "context": {"event", "MessageDefinition"},
}
CODE_REPEATS_UNDER = {"element"}
NUMBERS = {"min", "maxLength", "valueInteger", "valueUnsignedInt", "valuePositiveInt",
           "defaultValueInteger", "defaultValueUnsignedInt", "defaultValuePositiveInt",
           "fixedInteger", "fixedUnsignedInt", "fixedPositiveInt", "minValueInteger",
           "maxValueInteger", "total", "offset", "count", "rank"}
BOOLEANS = {"isSummary", "isModifier", "mustSupport", "abstract", "caseSensitive",
            "experimental", "ordered", "compositional", "versionNeeded", "immutable",
            "lockedDate", "inactive", "valueBoolean", "fixedBoolean", "defaultValueBoolean",
            "patternBoolean", "reliableCache"}
NUMBER_TYPES = {"integer", "unsignedInt", "positiveInt", "decimal"}


class ConversionError(Exception):
    pass


def _load_types():
    with open(TYPES_PATH, encoding="utf-8") as f:
        types = json.load(f)["types"]
    types.update(MESSAGE_HEADER)
    return types


TYPES = _load_types()


def local(tag):
    if tag == "{%s}div" % XHTML_NS:
        return "div"
    return tag[len(FHIR_NS):] if tag.startswith(FHIR_NS) else tag


def _primitive(value, type_name, path):
    if type_name == "boolean":
        if value not in ("true", "false"):
            raise ConversionError(f"{path}: '{value}' is not a boolean")
        return value == "true"
    if type_name in NUMBER_TYPES:
        if type_name == "decimal":
            raise ConversionError(f"{path}: decimals are not supported by this converter")
        return int(value)
    return value


def resource_to_json(el, path=None):
    """One resource element (e.g. `<Bundle xmlns="http://hl7.org/fhir">`) to a JSON dict."""
    rt = local(el.tag)
    path = path or rt
    out = {"resourceType": rt}
    if rt in CONFORMANCE:
        _conformance_children(el, out, path, rt)
    else:
        if rt not in TYPES:
            raise ConversionError(f"{path}: no type table for the resource type {rt}")
        _typed_children(el, out, rt, path)
    return out


def _attr_only(el):
    return el.get("id"), [c for c in el if local(c.tag) == "extension"]


def _set(out, name, value, repeat, path):
    if repeat:
        out.setdefault(name, []).append(value)
    elif name in out:
        raise ConversionError(f"{path}: {name} repeats but the table says it is single")
    else:
        out[name] = value


def _set_primitive(out, name, el, value, repeat, path, convert):
    """A primitive with its value and, when it has an id or extensions, its `_name` twin."""
    ident, exts = _attr_only(el)
    extra = None
    if ident is not None or exts:
        extra = {}
        if ident is not None:
            extra["id"] = ident
        if exts:
            extra["extension"] = [convert(e, f"{path}.extension") for e in exts]
    if repeat:
        values = out.setdefault(name, [])
        values.append(value)
        twins = out.get("_" + name)
        if extra is not None or twins is not None:
            twins = out.setdefault("_" + name, [None] * (len(values) - 1))
            twins.append(extra)
    else:
        if name in out or "_" + name in out:
            raise ConversionError(f"{path}: {name} repeats but the table says it is single")
        if value is not None:
            out[name] = value
        if extra is not None:
            out["_" + name] = extra


def _typed_children(el, out, type_name, path):
    table = TYPES.get(type_name)
    if table is None:
        raise ConversionError(f"{path}: no type table for {type_name}")
    elements = table["elements"]
    if el.get("id") is not None:
        out["id"] = el.get("id")
    if el.get("url") is not None:
        out["url"] = el.get("url")
    for child in el:
        if not isinstance(child.tag, str):
            continue  # comments
        name = local(child.tag)
        cpath = f"{path}.{name}"
        if name == "div" and type_name == "Narrative":
            out["div"] = ET.tostring(child, encoding="unicode", short_empty_elements=False).strip()
            continue
        spec = elements.get(name)
        if spec is None:
            raise ConversionError(f"{cpath}: not an element of {type_name}")
        repeat = spec.get("max") == "*"
        ctype = spec["type"]
        if ctype == "Resource":
            inner = [c for c in child if isinstance(c.tag, str)]
            if len(inner) != 1:
                raise ConversionError(f"{cpath}: expected one resource")
            _set(out, name, resource_to_json(inner[0], cpath), repeat, cpath)
        elif ctype in TYPES and ctype not in ("string",):
            value = {}
            _typed_children(child, value, ctype, cpath)
            _set(out, name, value, repeat, cpath)
        else:
            raw = child.get("value")
            value = None if raw is None else _primitive(raw, ctype, cpath)

            def convert(e, p):
                v = {}
                _typed_children(e, v, "Extension", p)
                return v

            _set_primitive(out, name, child, value, repeat, cpath, convert)


def _conformance_repeats(name, parent):
    if name == "code":
        return parent in CODE_REPEATS_UNDER
    if name not in CONFORMANCE_REPEAT:
        return False
    return parent not in CONFORMANCE_REPEAT_NOT_UNDER.get(name, set())


def _conformance_children(el, out, path, parent):
    if el.get("id") is not None and parent not in CONFORMANCE:
        out["id"] = el.get("id")
    if el.get("url") is not None:
        out["url"] = el.get("url")
    for child in el:
        if not isinstance(child.tag, str):
            continue
        name = local(child.tag)
        cpath = f"{path}.{name}"
        repeat = _conformance_repeats(name, parent)
        if name == "div":
            out["div"] = ET.tostring(child, encoding="unicode", short_empty_elements=False).strip()
            continue
        structured = [c for c in child if isinstance(c.tag, str) and local(c.tag) != "extension"]
        raw = child.get("value")
        if raw is not None or (not structured and child.get("url") is None and name not in ("extension",)
                                and not list(child)):
            value = raw
            if raw is not None and name in BOOLEANS:
                value = _primitive(raw, "boolean", cpath)
            elif raw is not None and name in NUMBERS:
                value = int(raw)

            def convert(e, p):
                v = {}
                _conformance_children(e, v, p, "extension")
                return v

            _set_primitive(out, name, child, value, repeat, cpath, convert)
        else:
            value = {}
            _conformance_children(child, value, cpath, name)
            _set(out, name, value, repeat, cpath)


def convert_file(path):
    root = ET.parse(path).getroot()
    if not root.tag.startswith(FHIR_NS):
        raise ConversionError(f"{path}: not FHIR XML")
    return resource_to_json(root)
