#!/usr/bin/env python3
"""Builds the FHIR packages the gateway ships (`packages/`) from the public corpus beside the
repository (`../shared/corpus`, see its SOURCES.md): only the conformance resources the
validator loads (StructureDefinition, ValueSet, CodeSystem; and, for ITK3, the
MessageDefinitions the messages name), with the text written for people removed (narrative,
descriptions, element definitions, comments, requirements, mappings, examples) and every
`copyright` kept, as one gzip-compressed collection Bundle per package.

The ITK3 and CareConnect-ITK definitions exist only as FHIR STU3 XML (corpus `itk3/`); they are
converted to FHIR JSON here, with `scripts/fhir_xml.py`.

    python3 scripts/package-fhir.py [CORPUS_DIR]

Run it again when a package is updated; the output is deterministic (sorted, no timestamps).
"""
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fhir_xml  # noqa: E402

CORPUS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus")
OUT = os.path.join(os.path.dirname(__file__), "..", "packages")
PACKAGES = {
    "hl7.fhir.r4.core": "fhir-r4-core",
    "uk.core.r4": "uk-core-r4-json",
    "gpconnect.stu3": "gpconnect-stu3-json",
}
# Packages converted from FHIR STU3 XML: name -> (corpus folder, its sub-folders).
XML_PACKAGES = {
    "itk3.stu3": ("itk3", ["StructureDefinitions", "CodeSystems", "ValueSets", "MessageDefinitions"]),
}
KEEP_TYPES = {"StructureDefinition", "ValueSet", "CodeSystem"}
XML_KEEP_TYPES = KEEP_TYPES | {"MessageDefinition"}
# Text for people, on the resource and on each element; the validator reads none of it.
DROP_RESOURCE = {"text", "description", "purpose", "mapping", "contact", "useContext", "jurisdiction"}
DROP_ELEMENT = {"definition", "comment", "requirements", "alias", "mapping", "example", "short", "meaningWhenMissing"}
DROP_CONCEPT = {"definition"}


def resources(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("resourceType") == "Bundle":
        for e in data.get("entry", []):
            r = e.get("resource")
            if isinstance(r, dict):
                yield r
    else:
        yield data


def strip_elements(elements):
    for el in elements:
        for k in DROP_ELEMENT:
            el.pop(k, None)
        binding = el.get("binding")
        if isinstance(binding, dict):
            binding.pop("description", None)


def strip_concepts(concepts):
    for c in concepts:
        for k in DROP_CONCEPT:
            c.pop(k, None)
        strip_concepts(c.get("concept", []))


def strip(r):
    for k in DROP_RESOURCE:
        r.pop(k, None)
    if r["resourceType"] == "StructureDefinition":
        for part in ("snapshot", "differential"):
            strip_elements(r.get(part, {}).get("element", []))
    if r["resourceType"] == "CodeSystem":
        strip_concepts(r.get("concept", []))
    return r


def json_package(folder):
    src = os.path.join(CORPUS, folder)
    found = {}
    for root, _, files in os.walk(src):
        for fn in sorted(files):
            if not fn.endswith(".json"):
                continue
            for r in resources(os.path.join(root, fn)):
                if r.get("resourceType") in KEEP_TYPES and r.get("url"):
                    key = (r["resourceType"], r["url"], r.get("version", ""))
                    found.setdefault(key, strip(r))
    return found


def xml_package(folder, subfolders):
    found = {}
    for sub in subfolders:
        src = os.path.join(CORPUS, folder, sub)
        for fn in sorted(os.listdir(src)):
            if not fn.endswith(".xml"):
                continue
            r = fhir_xml.convert_file(os.path.join(src, fn))
            if r.get("resourceType") in XML_KEEP_TYPES and r.get("url"):
                key = (r["resourceType"], r["url"], r.get("version", ""))
                if key in found:
                    sys.exit(f"{fn}: {key} twice")
                found[key] = strip(r)
    return found


def main():
    os.makedirs(OUT, exist_ok=True)
    total = 0
    sources = [(name, lambda f=folder: json_package(f)) for name, folder in PACKAGES.items()]
    sources += [(name, lambda f=f, s=s: xml_package(f, s)) for name, (f, s) in XML_PACKAGES.items()]
    for name, build in sources:
        found = build()
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": found[k]} for k in sorted(found)],
        }
        data = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        path = os.path.join(OUT, name, "definitions.json.gz")
        with open(path, "wb") as f:
            # mtime 0: the same input gives the same bytes.
            with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as gz:
                gz.write(data)
        size = os.path.getsize(path)
        total += size
        print(f"{name}: {len(found)} resources, {len(data) / 1e6:.1f} MB JSON, {size / 1e6:.2f} MB gzip")
    print(f"total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
