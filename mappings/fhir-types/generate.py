#!/usr/bin/env python3
"""Generates the element-type tables (`r4.json`, `stu3.json`) that the translator uses to make
its output fit the FHIR model of the target version.

The tables are derived from the typed models that the gateway itself checks with (fhir-model,
the model crate behind fhir-sdk =0.16.0: `r4b` for R4 content, `stu3` for GP Connect), so that
what the translator emits is exactly what `fhir_io::check_*` accepts: element names, which
elements repeat, which are required, primitive types, and the closed code lists.

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


if __name__ == "__main__":
    main()
