#!/usr/bin/env python3
"""Rewrites a `palisade gen` cluster so that network-config-analyzer 2.1.0
can read it correctly: NCA mishandles key-only expressions (Exists,
DoesNotExist) in a peer's podSelector next to a namespaceSelector. In a
generated cluster every workload has a `tier` label from a known set and no
`version` label, so each such expression has an exact value-based
equivalent. The connectivity must not change; Palisade's map is checked to be
identical on both files by bench/run.sh.

usage: nca_equivalent.py IN OUT
"""
import re
import sys

TIERS = "[frontend, backend, db, cache, batch]"


def equivalent(m):
    indent, key, op = m.group(1), m.group(2), m.group(3)
    if op == "Exists":
        new_op, values = ("In", TIERS) if key == "tier" else ("In", "[no-such-version]")
    else:
        new_op, values = ("In", "[no-such-tier]") if key == "tier" else ("NotIn", "[no-such-version]")
    return f"{indent}- key: {key}\n{indent}  operator: {new_op}\n{indent}  values: {values}\n"


text = open(sys.argv[1], encoding="utf-8").read()
pattern = r"( *)- key: (tier|version)\n *  operator: (Exists|DoesNotExist)\n"
open(sys.argv[2], "w", encoding="utf-8").write(re.sub(pattern, equivalent, text))
