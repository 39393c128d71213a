#!/usr/bin/env python3
"""Refuses a negated command ("! cmd") that is not the last of its test or function.

bats runs each test under `set -e`, which ignores the status of a command negated with
`!`: such a line in the middle of a test can never fail it. Allowed: `run ! cmd`, a
negation followed by `||` (an explicit failure branch), `[ ... ]`, and a negation that
is the last command before the closing `}` (its status is the function's).
Usage: check-negations.py FILE...; prints each offending line, exits 1 if any.
"""
import re
import sys

bad = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not re.match(r"^\s*!\s", line):
            i += 1
            continue
        start = i
        stmt = line
        # A statement continues over lines ending with |, \, && or ||.
        while re.search(r"(\||\\|&&)\s*$", lines[i]) and i + 1 < len(lines):
            i += 1
            stmt += "\n" + lines[i]
        i += 1
        if "||" in stmt:
            continue
        j = i
        while j < len(lines) and (not lines[j].strip() or lines[j].strip().startswith("#")):
            j += 1
        if j < len(lines) and lines[j].strip() == "}":
            continue
        print(f"{path}:{start + 1}: '!' mid-test never fails it (use run !, [ ], or ||): "
              f"{line.strip()}")
        bad += 1
sys.exit(1 if bad else 0)
