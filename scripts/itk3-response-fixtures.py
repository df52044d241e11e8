#!/usr/bin/env python3
"""Converts the 29 ITK3 response examples of the corpus (`../shared/corpus/itk3/Examples/
ITK-Response-*.xml`, synthetic examples from NHS Digital's nhsconnect/STU3-FHIR-Assets, Open
Government Licence v3.0) to FHIR JSON in `tests/fixtures/itk3-responses/`, once, for the
response classification test (`tests/itk.rs`). The gateway's own FHIR XML parser (src/fhir/xml)
will read the XML directly; until then these JSON copies stand in for it.

    python3 scripts/itk3-response-fixtures.py [CORPUS_DIR]
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fhir_xml  # noqa: E402

CORPUS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus")
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "itk3-responses")


def main():
    os.makedirs(OUT, exist_ok=True)
    files = sorted(glob.glob(os.path.join(CORPUS, "itk3", "Examples", "ITK-Response-*.xml")))
    for path in files:
        resource = fhir_xml.convert_file(path)
        name = os.path.basename(path)[:-4] + ".json"
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(resource, f, ensure_ascii=False, indent=2)
            f.write("\n")
    print(f"{len(files)} responses converted into {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
