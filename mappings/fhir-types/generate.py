#!/usr/bin/env python3
"""Generates the element-type tables (`r4.json`, `stu3.json`) that the translator uses to make
its output fit the FHIR model of the target version, and the element-order tables
(`r4-elements.json`, `stu3-elements.json`) that the FHIR XML serialiser and parser use
(`src/fhir/xml/`): every resource and datatype of the version, each element in definition
order, with its type and whether it repeats.

The tables are derived from the typed models that the gateway itself checks with (fhir-model,
the model crate behind fhir-sdk =0.16.0: `r4b` for R4 content, `stu3` for GP Connect), so that
what the translator emits is exactly what `fhir_io::check_*` accepts: element names, which
elements repeat, which are required, primitive types, and the closed code lists.

The order tables rely on fhir-model declaring the fields of each struct in the order of the
StructureDefinition's elements (it is generated from them, and the XML round trip over the ITK3
and GP Connect examples in tests/fhir_xml.rs checks it against real documents).

Usage: python3 mappings/fhir-types/generate.py [path/to/fhir-model-0.13.0/src]
(default: the crate in ~/.cargo/registry). Re-run after upgrading fhir-sdk; do not edit the
JSON by hand.
"""
import glob
import json
import os
import re
import sys

RESOURCES = [
    "Bundle", "Composition", "Patient", "Organization", "Practitioner", "PractitionerRole",
    "Location", "Encounter", "CarePlan", "MedicationRequest", "MedicationStatement",
    "Medication", "Condition", "AllergyIntolerance", "Flag", "Appointment", "List", "Consent",
    "OperationOutcome", "Device",
]

PRIMITIVES = {
    "String": "string", "f64": "decimal", "i32": "integer", "i64": "integer",
    "u32": "unsignedInt", "NonZeroU32": "positiveInt", "bool": "boolean", "Date": "date",
    "DateTime": "dateTime", "Instant": "instant", "Time": "time", "Base64Binary": "base64Binary",
}

FIELD_RE = re.compile(r"^\s*pub (r#)?([a-z_0-9]+): (.+),\s*$")
RENAME_RE = re.compile(r'#\[serde\(rename = "([^"]+)"\)\]')
VARIANT_RE = re.compile(r"^\s*([A-Za-z0-9_]+)\(([^)]*)\),\s*$")
STRUCT_RE = re.compile(r"^pub struct ([A-Za-z0-9_]+) \{")
ENUM_RE = re.compile(r"^pub enum ([A-Za-z0-9_]+) \{")
FROMSTR_RE = re.compile(r"^impl ::core::str::FromStr for ([A-Za-z0-9_]+) \{")
ARM_RE = re.compile(r'^\s*"([^"]*)" => Ok\(Self::')


def parse_model(files):
    structs, enums = {}, {}
    for path in files:
        cur, kind, attrs = None, None, []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if cur is None:
                    m = STRUCT_RE.match(line)
                    if m:
                        cur, kind, attrs = m.group(1), "struct", []
                        structs[cur] = []
                        continue
                    m = ENUM_RE.match(line)
                    if m:
                        cur, kind, attrs = m.group(1), "enum", []
                        enums[cur] = []
                    continue
                if line.startswith("}"):
                    cur = None
                    continue
                stripped = line.strip()
                if stripped.startswith("#["):
                    attrs.append(stripped)
                    continue
                if kind == "struct":
                    if re.match(r"^\s*pub ", line) and not line.rstrip().endswith(","):
                        # A field whose type rustfmt wrapped over several lines.
                        parts = [line.strip()]
                        for cont in fh:
                            parts.append(cont.strip())
                            joined = "".join(parts)
                            if joined.endswith(",") and joined.count("<") == joined.count(">"):
                                break
                        line = "    " + "".join(parts).replace(",>", ">") + "\n"
                    m = FIELD_RE.match(line)
                    if m:
                        structs[cur].append((m.group(2), m.group(3), attrs))
                        attrs = []
                else:
                    m = VARIANT_RE.match(line)
                    if m:
                        enums[cur].append((m.group(1), m.group(2), attrs))
                        attrs = []
    return structs, enums


def parse_codes(path):
    codes, cur, custom = {}, None, set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = FROMSTR_RE.match(line)
            if m:
                cur = m.group(1)
                codes[cur] = []
                continue
            if cur is None:
                continue
            m = ARM_RE.match(line)
            if m:
                codes[cur].append(m.group(1))
            elif "_ => Ok(Self::_Custom" in line:
                custom.add(cur)
            elif line.startswith("}"):
                cur = None
    return codes, custom


def rename_of(attrs):
    for a in attrs:
        m = RENAME_RE.search(a)
        if m:
            return m.group(1)
    return None


def unwrap(ty):
    """Returns (inner type, max '*' or '1', required)."""
    ty = ty.strip()
    if ty.startswith("Vec<Option<") and ty.endswith(">>"):
        return ty[len("Vec<Option<"):-2], "*", False
    if ty.startswith("Vec<") and ty.endswith(">"):
        return ty[4:-1], "*", False
    if ty.startswith("Option<") and ty.endswith(">"):
        return ty[7:-1], "1", False
    return ty, "1", True


def element_type(rust, code_lists, custom_codes):
    rust = rust.strip()
    if rust.startswith("Box<") and rust.endswith(">"):
        rust = rust[4:-1]
    if rust.startswith("codes::"):
        name = rust[len("codes::"):]
        if name in custom_codes or name not in code_lists:
            return {"type": "code"}
        return {"type": "code", "codes": name}
    if rust in PRIMITIVES:
        return {"type": PRIMITIVES[rust]}
    return {"type": rust}


def build(src, version_dir, fhir_version):
    files = [os.path.join(src, version_dir, "types", "generated.rs"),
             os.path.join(src, version_dir, "resources", "generated.rs")]
    structs, enums = parse_model(files)
    code_lists, custom_codes = parse_codes(os.path.join(src, version_dir, "codes", "generated.rs"))

    def struct_fields(name):
        if name + "Inner" in structs:
            return structs[name + "Inner"]
        return structs.get(name)

    types, used_codes, todo, seen = {}, set(), list(RESOURCES), set()
    while todo:
        name = todo.pop()
        if name in seen or name in ("Resource",):
            continue
        seen.add(name)
        fields = struct_fields(name)
        if fields is None:
            raise SystemExit(f"{version_dir}: no struct for {name}")
        elements = {}
        for field, rust, attrs in fields:
            if field.endswith("_ext") or field == "resource_type":
                continue
            inner, max_, required = unwrap(rust)
            if any("flatten" in a for a in attrs):
                choice = enums.get(inner)
                if choice is None:
                    raise SystemExit(f"{version_dir}: no enum {inner} for {name}.{field}")
                for variant, payload, vattrs in choice:
                    json_name = rename_of(vattrs)
                    if not json_name.endswith(variant):
                        raise SystemExit(f"{version_dir}: cannot split {json_name} ({variant})")
                    group = json_name[: -len(variant)]
                    spec = element_type(payload, code_lists, custom_codes)
                    spec["choice"] = group
                    if required:
                        spec["min"] = 1
                    elements[json_name] = spec
                    if spec.get("codes"):
                        used_codes.add(spec["codes"])
                    if spec["type"] not in PRIMITIVES.values() and spec["type"] not in ("code", "Resource"):
                        todo.append(spec["type"])
                continue
            json_name = rename_of(attrs)
            if json_name is None:
                raise SystemExit(f"{version_dir}: {name}.{field} has no serde rename")
            spec = element_type(inner, code_lists, custom_codes)
            if max_ == "*":
                spec["max"] = "*"
            if required:
                spec["min"] = 1
            elements[json_name] = spec
            if spec.get("codes"):
                used_codes.add(spec["codes"])
            if spec["type"] not in PRIMITIVES.values() and spec["type"] not in ("code", "Resource"):
                todo.append(spec["type"])
        entry = {"elements": elements}
        if name in RESOURCES:
            entry["resource"] = True
        types[name] = entry
    return {
        "fhirVersion": fhir_version,
        "generatedFrom": f"fhir-model 0.13.0 ({version_dir}) via mappings/fhir-types/generate.py",
        "types": {k: types[k] for k in sorted(types)},
        "codes": {k: code_lists[k] for k in sorted(used_codes)},
    }


RESOURCE_ENUM_RE = re.compile(r"^pub enum Resource \{")
RESOURCE_VARIANT_RE = re.compile(r"^\s*([A-Za-z0-9]+)\(([A-Za-z0-9]+)\),\s*$")


def all_resources(path):
    """The variants of `pub enum Resource` (every resource type of the version)."""
    names, inside = [], False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not inside:
                inside = bool(RESOURCE_ENUM_RE.match(line))
                continue
            if line.startswith("}"):
                break
            m = RESOURCE_VARIANT_RE.match(line)
            if m:
                names.append(m.group(1))
    if not names:
        raise SystemExit(f"{path}: no `pub enum Resource`")
    return names


def xml_type(rust):
    """The FHIR type of an element for the XML tables: a primitive, `Resource`, or a struct."""
    rust = rust.strip()
    if rust.startswith("Box<") and rust.endswith(">"):
        rust = rust[4:-1]
    if rust.startswith("codes::"):
        return "code"
    return PRIMITIVES.get(rust, rust)


def build_order(src, version_dir, fhir_version):
    """Every type reachable from every resource: [name, type] or [name, type, "*"] per element,
    in definition order (choice elements expanded in place, one entry per type)."""
    files = [os.path.join(src, version_dir, "types", "generated.rs"),
             os.path.join(src, version_dir, "resources", "generated.rs")]
    structs, enums = parse_model(files)
    resources = all_resources(files[1])

    def struct_fields(name):
        if name + "Inner" in structs:
            return structs[name + "Inner"]
        return structs.get(name)

    types, todo, seen = {}, list(resources), set()
    while todo:
        name = todo.pop()
        if name in seen or name == "Resource":
            continue
        seen.add(name)
        fields = struct_fields(name)
        if fields is None:
            raise SystemExit(f"{version_dir}: no struct for {name}")
        elements = []

        def add(json_name, ty, many):
            if name == "Narrative" and json_name == "div":
                ty = "xhtml"
            elements.append([json_name, ty, "*"] if many else [json_name, ty])
            if ty not in PRIMITIVES.values() and ty not in ("code", "xhtml", "Resource"):
                todo.append(ty)

        for field, rust, attrs in fields:
            if field.endswith("_ext") or field == "resource_type":
                continue
            inner, max_, _ = unwrap(rust)
            if any("flatten" in a for a in attrs):
                choice = enums.get(inner)
                if choice is None:
                    raise SystemExit(f"{version_dir}: no enum {inner} for {name}.{field}")
                for _variant, payload, vattrs in choice:
                    add(rename_of(vattrs), xml_type(payload), False)
                continue
            json_name = rename_of(attrs)
            if json_name is None:
                raise SystemExit(f"{version_dir}: {name}.{field} has no serde rename")
            add(json_name, xml_type(inner), max_ == "*")
        types[name] = {"resource": name in resources, "elements": elements}
    return {
        "fhirVersion": fhir_version,
        "generatedFrom": f"fhir-model 0.13.0 ({version_dir}) via mappings/fhir-types/generate.py",
        "types": {k: types[k] for k in sorted(types)},
    }


def write_order(path, table):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{\n")
        fh.write(f'  "fhirVersion": {json.dumps(table["fhirVersion"])},\n')
        fh.write(f'  "generatedFrom": {json.dumps(table["generatedFrom"])},\n')
        fh.write('  "types": {\n')
        items = list(table["types"].items())
        for i, (name, entry) in enumerate(items):
            sep = "," if i + 1 < len(items) else ""
            body = json.dumps(entry, separators=(",", ":"))
            fh.write(f"    {json.dumps(name)}: {body}{sep}\n")
        fh.write("  }\n}\n")


def main():
    if len(sys.argv) > 1:
        src = sys.argv[1]
    else:
        found = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/fhir-model-0.13.0/src"))
        if not found:
            raise SystemExit("fhir-model-0.13.0 not found; pass its src directory")
        src = found[0]
    here = os.path.dirname(os.path.abspath(__file__))
    for version_dir, out, fhir_version in (("r4b", "r4.json", "4.0.1"), ("stu3", "stu3.json", "3.0.2")):
        table = build(src, version_dir, fhir_version)
        with open(os.path.join(here, out), "w", encoding="utf-8") as fh:
            fh.write("{\n")
            fh.write(f'  "fhirVersion": {json.dumps(table["fhirVersion"])},\n')
            fh.write(f'  "generatedFrom": {json.dumps(table["generatedFrom"])},\n')
            fh.write('  "types": {\n')
            items = list(table["types"].items())
            for i, (name, entry) in enumerate(items):
                fh.write(f"    {json.dumps(name)}: {{")
                if entry.get("resource"):
                    fh.write('"resource": true, ')
                fh.write('"elements": {\n')
                els = list(entry["elements"].items())
                for j, (el, spec) in enumerate(els):
                    sep = "," if j + 1 < len(els) else ""
                    fh.write(f"      {json.dumps(el)}: {json.dumps(spec)}{sep}\n")
                fh.write("    }}" + ("," if i + 1 < len(items) else "") + "\n")
            fh.write("  },\n")
            fh.write('  "codes": {\n')
            codes = list(table["codes"].items())
            for i, (name, values) in enumerate(codes):
                sep = "," if i + 1 < len(codes) else ""
                fh.write(f"    {json.dumps(name)}: {json.dumps(values)}{sep}\n")
            fh.write("  }\n}\n")
        print(f"{out}: {len(table['types'])} types, {len(table['codes'])} code lists")
        order = build_order(src, version_dir, fhir_version)
        order_out = out.replace(".json", "-elements.json")
        write_order(os.path.join(here, order_out), order)
        resources = sum(1 for t in order["types"].values() if t["resource"])
        print(f"{order_out}: {len(order['types'])} types ({resources} resources)")


if __name__ == "__main__":
    main()
