#!/usr/bin/python3
"""check-layers: the worker's files call one way (the layers written at the top of
worker/worker.h), and each function worker.h declares under a "---- FILE.c ----" heading
is defined in that file. Reads the symbols each worker object defines and uses (nm) and checks
that every call from one file to another goes to a lower layer, or sideways inside a
group that is allowed to (the utilities; the HTTP group). A file missing from the table
below fails the check, so that a new file gets its place on purpose.

Usage: check-layers.py OBJDIR   (the build's obj/worker directory)
Exit status: 0 when the graph is one way, 1 otherwise (each wrong call is printed).
"""
import collections
import glob
import os
import re
import subprocess
import sys

# layer: (rank, group). A file may call files of lower rank, and files of its own group.
LAYERS = {
    "buf": (0, "util"), "process": (0, "util"), "shm": (0, "util"),
    "interest": (0, "util"), "metrics": (0, "util"), "tls": (0, "util"),
    "conn": (1, None),
    "reply": (2, None), "nats": (2, None), "auth": (2, None),
    "dispatch": (3, None),
    "pubsub": (4, "ps"), "history": (4, "ps"), "presence": (4, "ps"), "ws": (4, None),
    "http": (5, "http"), "admin": (5, "http"), "static": (5, "http"),
    "upstream": (5, "http"), "publish": (5, "http"),
    "api": (6, None), "handoff": (6, None),
    "worker": (7, None),
}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worker")
    names = {os.path.basename(c)[:-2] for c in glob.glob(os.path.join(src, "*.c"))}
    # Only objects of today's sources: a build directory may keep a moved file's object.
    objs = sorted(o for o in glob.glob(os.path.join(sys.argv[1], "*.o"))
                  if os.path.basename(o)[:-2] in names)
    if not objs:
        print("check-layers: no objects in %s" % sys.argv[1], file=sys.stderr)
        return 1
    defs, uses = {}, collections.defaultdict(set)
    for o in objs:
        f = os.path.basename(o)[:-2]
        out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            p = line.split()
            if len(p) >= 3 and p[1] in "TDBRC":
                defs[p[2]] = f
            elif len(p) == 2 and p[0] == "U":
                uses[f].add(p[1])
    bad = 0
    for f in sorted({os.path.basename(o)[:-2] for o in objs}):
        if f not in LAYERS:
            print("check-layers: worker/%s.c has no layer in tests/lib/check-layers.py" % f)
            bad += 1
    for f, syms in sorted(uses.items()):
        for s in sorted(syms):
            g = defs.get(s)
            if g is None or g == f or f not in LAYERS or g not in LAYERS:
                continue
            (rf, gf), (rg, gg) = LAYERS[f], LAYERS[g]
            if rf > rg or (gf is not None and gf == gg):
                continue
            print("check-layers: worker/%s.c calls %s of worker/%s.c, a layer above it"
                  % (f, s, g))
            bad += 1
    bad += check_sections(os.path.join(src, "worker.h"), defs)
    return 1 if bad else 0


def check_sections(header, defs):
    """Every lh_ function or variable declared under "/* ---- X.c ---- */" is X.c's."""
    bad, sec = 0, None
    for line in open(header):
        m = re.match(r"/\* ---- (\S+\.c) ---- \*/", line)
        if m:
            sec = m.group(1)[:-2]
            continue
        m = (re.match(r"^(?!static|typedef)[a-z].*?\b(lh_[a-z0-9_]+)\(", line) or
             re.match(r"^extern .*\b(lh_[a-z0-9_]+);", line))
        if m and sec is not None and m.group(1) in defs and defs[m.group(1)] != sec:
            print("check-layers: worker.h declares %s under %s.c; it is defined in %s.c"
                  % (m.group(1), sec, defs[m.group(1)]))
            bad += 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
