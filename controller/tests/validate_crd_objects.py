#!/usr/bin/env python3
"""Validates custom objects against CRD openAPIV3Schemas.

usage: validate_crd_objects.py OBJECTS.yaml CRD.yaml...

Every document of OBJECTS.yaml whose apiVersion/kind one of the CRDs defines is validated
against that version's schema. Object schemas with properties but no additionalProperties
reject unknown fields here, because the API server would silently prune them (a misspelt
field would vanish). Documents of kinds no CRD defines are an error: nothing goes unchecked.
Exits 1 and prints every failure.
"""
import sys

import jsonschema
import yaml


def strict(schema):
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = strict(out["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [strict(s) for s in out[key]]
    # CRD schemas say nullable: true for Option fields; JSON schema needs null in the type.
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def main():
    objects_file, crd_files = sys.argv[1], sys.argv[2:]
    schemas = {}
    for path in crd_files:
        with open(path) as f:
            crd = yaml.safe_load(f)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = dict(version["schema"]["openAPIV3Schema"])
            # The API server always accepts these three, whether the schema lists them or not.
            schema["properties"] = {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                **schema.get("properties", {}),
            }
            schema = strict(schema)
            schemas[(f"{group}/{version['name']}", kind)] = schema
    failures = 0
    checked = 0
    with open(objects_file) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        schema = schemas.get(key)
        name = doc.get("metadata", {}).get("name")
        if schema is None:
            print(f"{key[0]} {key[1]} {name}: no CRD defines this kind")
            failures += 1
            continue
        validator = jsonschema.Draft7Validator(schema)
        for error in validator.iter_errors(doc):
            path = ".".join(str(p) for p in error.absolute_path)
            print(f"{key[1]} {name}: {path}: {error.message}")
            failures += 1
        checked += 1
    if checked == 0 and failures == 0:
        print("no custom objects found")
        failures += 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
