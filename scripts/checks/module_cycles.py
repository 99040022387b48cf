#!/usr/bin/env python3
"""Module graph of src/ and its cycles (issue 16: "no module cycle").

Each file is a module (`src/estimate/fit.rs` = estimate::fit, `src/linalg/mod.rs` = linalg).
An edge A -> B is any path A names: `crate::x::y`, `super::y`, `self::y` (in `use` lines,
braces expanded one level, and in code). Edges between a module and its own parent or child are
ignored (a parent declaring and re-exporting its children is not a dependency cycle), and so
are unit-test modules. Prints
every strongly connected component with more than one module; exits 1 if there is one.
Usage: python3 scripts/checks/module_cycles.py [SRC_DIR]
"""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "src")
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
        if rel[-1] in ("mod", "lib", "main"):
            rel = rel[:-1]
        mods["::".join(rel)] = open(os.path.join(root, f)).read()

def strip(text):
    text = text.split("#[cfg(test)]\nmod tests")[0]  # unit tests (at the end of a file) may use anything
    text = re.sub(r"//[^\n]*", "", text)  # comments (incl. docs)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)  # strings

def resolve(mod, path):
    parts = path.split("::")
    cur = mod.split("::") if mod else []
    if parts[0] == "crate":
        target = parts[1:]
    else:
        i = 0
        while i < len(parts) and parts[i] in ("super", "self"):
            if parts[i] == "super":
                cur = cur[:-1]
            i += 1
        target = cur + parts[i:]
    # longest prefix that is a module
    for k in range(len(target), 0, -1):
        m = "::".join(target[:k])
        if m in mods:
            return m
    return None

edges = {m: set() for m in mods}
for m, text in mods.items():
    t = strip(text)
    paths = re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", t)
    for prefix, group in re.findall(r"\b((?:crate|super|self)(?:::\w+)*)::\{([^}]*)\}", t):
        paths += [prefix + "::" + g.strip().split(" ")[0].split("::")[0] for g in group.split(",") if g.strip()]
    for p in paths:
        d = resolve(m, p)
        if d and d != m and not d.startswith(m + "::") and not m.startswith(d + "::") and m != "" and d != "":
            edges[m].add(d)

# Tarjan's strongly connected components
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in edges:
    if v not in index:
        visit(v)
cycles = [sorted(c) for c in sccs if len(c) > 1]
print(f"{len(mods)} modules, {sum(len(e) for e in edges.values())} edges")
for c in cycles:
    print("cycle:", ", ".join(c))
    for a in c:
        print("   ", a, "->", ", ".join(sorted(d for d in edges[a] if d in c)))
sys.exit(1 if cycles else 0)
