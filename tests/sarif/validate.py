#!/usr/bin/env python3
"""Validates SARIF files against the SARIF 2.1.0 JSON schema.

usage: validate.py SCHEMA.json FILE.sarif...
Exits 1 and prints every violation if any file is invalid.
"""
import json
import sys

import jsonschema


def main():
    schema = json.load(open(sys.argv[1], encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    bad = 0
    for path in sys.argv[2:]:
        doc = json.load(open(path, encoding="utf-8"))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errors:
            print(f"{path}: {'/'.join(map(str, e.path))}: {e.message}")
        bad += len(errors)
        print(f"{path}: {'valid' if not errors else f'{len(errors)} errors'} (SARIF 2.1.0, {len(doc['runs'][0]['results'])} results)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
