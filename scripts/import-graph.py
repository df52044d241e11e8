#!/usr/bin/env python3
"""The `use crate::` graph of src/: import circles (strongly connected components of files) and
imports that run from a lower layer back up to a higher one. Used for the house-keeping figures
in notes and the ADRs; `tests/architecture.rs` holds the rules that must never break."""
import os, re, sys
from collections import defaultdict

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
# Layers, from the edge (high) down to the pure stages and values (low).
LAYERS = [
    (4, ["main", "cli", "demo", "startup", "api"]),
    (3, ["app", "intake", "pipeline", "sharing", "pull", "consents", "custody", "delivery", "recipient",
         "admin", "decisions", "preview", "error", "custody"]),
    (2, ["audit", "store", "auth", "certs", "client", "tls", "metrics", "transport"]),
    (1, ["policy", "translate", "validate", "routing", "document", "directory", "medicines", "itk"]),
    (0, ["domain", "fhir", "config", "clock", "codes", "chain", "lib", "hazard_log_tests"]),
]
def layer(mod):
    top = mod.split("::")[0]
    for n, names in LAYERS:
        if top in names:
            return n
    return None

def modules():
    out = {}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), SRC)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            out["::".join(rel)] = os.path.join(root, f)
    return out

def resolve(path, mods):
    parts = path.split("::")
    for i in range(len(parts), 0, -1):
        cand = "::".join(parts[:i])
        if cand in mods:
            return cand
    return None

def graph(include_inline):
    mods = modules()
    edges = defaultdict(set)
    pat = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use crate::([A-Za-z0-9_:]+)(::\{([^}]*)\})?", re.M)
    inline = re.compile(r"(?<![A-Za-z0-9_:])crate::([a-z_][A-Za-z0-9_]*(?:::[a-z_][A-Za-z0-9_]*)*)")
    for m, f in mods.items():
        if m in ("lib", "main"):
            continue
        text = open(f).read()
        text = text.split("#[cfg(test)]")[0]
        if m.endswith("::tests") or m == "hazard_log_tests":
            continue
        targets = []
        for mm in pat.finditer(text):
            base = mm.group(1).rstrip(":")
            if mm.group(3):
                for item in mm.group(3).split(","):
                    item = item.strip().split(" as ")[0]
                    targets.append(base + ("::" + item if item and item != "self" else ""))
            else:
                targets.append(base)
        if include_inline:
            targets += inline.findall(text)
        for t in targets:
            r = resolve(t, mods)
            if r and r != m and not m.startswith(r + "::"):
                edges[m].add(r)
    return mods, edges

def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in nodes:
        if v not in index:
            visit(v)
    return out

for include_inline in (False, True):
    mods, edges = graph(include_inline)
    circles = sccs(list(mods), edges)
    # top-level module graph too
    top = defaultdict(set)
    for a, bs in edges.items():
        for b in bs:
            ta, tb = a.split("::")[0], b.split("::")[0]
            if ta != tb:
                top[ta].add(tb)
    top_circles = sccs(sorted({m.split("::")[0] for m in mods}), top)
    up = [(a, b) for a, bs in edges.items() for b in bs
          if layer(a) is not None and layer(b) is not None and layer(a) < layer(b)]
    label = "use lines + inline crate:: paths" if include_inline else "use crate:: lines"
    print(f"== {label}")
    print(f"file circles: {len(circles)} {[len(c) for c in circles]}")
    for c in circles:
        print("   ", " ".join(c))
    print(f"module circles: {len(top_circles)}")
    for c in top_circles:
        print("   ", " ".join(c))
    print(f"imports back up: {len(up)}")
    if "-v" in sys.argv:
        for a, b in sorted(up):
            print(f"    {a} -> {b}")
