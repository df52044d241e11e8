#!/usr/bin/env python3
"""Builds the FHIR packages the gateway ships (`packages/`) from the public corpus beside the
repository (`../shared/corpus`, see its SOURCES.md): only the conformance resources the
validator loads (StructureDefinition, ValueSet, CodeSystem), with the text written for people
removed (narrative, descriptions, element definitions, comments, requirements, mappings,
examples) and every `copyright` kept, as one gzip-compressed collection Bundle per package.

    python3 scripts/package-fhir.py [CORPUS_DIR]

Run it again when a package is updated; the output is deterministic (sorted, no timestamps).
"""
import gzip
import json
import os
import sys

CORPUS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus")
OUT = os.path.join(os.path.dirname(__file__), "..", "packages")
PACKAGES = {
    "hl7.fhir.r4.core": "fhir-r4-core",
    "uk.core.r4": "uk-core-r4-json",
    "gpconnect.stu3": "gpconnect-stu3-json",
}
KEEP_TYPES = {"StructureDefinition", "ValueSet", "CodeSystem"}
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


def main():
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for name, folder in PACKAGES.items():
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
