#!/usr/bin/env python3
"""Fails when the top-level modules of src/ import each other in a circle.

A module's imports are the `crate::<module>` paths in its code (comments left out). The modules
must form layers: data flows one way through the pipeline, and what is fed by it (KPIs,
self-monitoring, metrics) imports none of the stages above it. Prints each circle with the files
that close it, and exits 1; prints the layers and exits 0 when there is none.
"""
import collections
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
modules = set()
for entry in os.listdir(root):
    path = os.path.join(root, entry)
    if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
        modules.add(entry[:-3])
    elif os.path.isdir(path):
        modules.add(entry)

imports = collections.defaultdict(lambda: collections.defaultdict(set))
for directory, _, files in os.walk(root):
    for name in files:
        if not name.endswith(".rs"):
            continue
        path = os.path.join(directory, name)
        relative = os.path.relpath(path, root)
        top = relative.split(os.sep)[0].removesuffix(".rs")
        if top not in modules:
            continue
        with open(path, encoding="utf-8") as f:
            code = "\n".join(line.split("//", 1)[0] for line in f)
        for used in re.findall(r"\bcrate::(\w+)", code):
            if used in modules and used != top:
                imports[top][used].add(relative)

# Tarjan's strongly connected components: a component of more than one module is a circle.
index, low, stack, on_stack, circles = {}, {}, [], set(), []


def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for used in imports[module]:
        if used not in index:
            visit(used)
            low[module] = min(low[module], low[used])
        elif used in on_stack:
            low[module] = min(low[module], index[used])
    if low[module] == index[module]:
        component = []
        while True:
            member = stack.pop()
            on_stack.discard(member)
            component.append(member)
            if member == module:
                break
        if len(component) > 1:
            circles.append(sorted(component))


for module in sorted(modules):
    if module not in index:
        visit(module)

if circles:
    for circle in circles:
        print("import circle between top-level modules: " + ", ".join(circle))
        for module in circle:
            for used, files in sorted(imports[module].items()):
                if used in circle:
                    print(f"  {module} -> {used}: {', '.join(sorted(files))}")
    sys.exit(1)

# Layers: a module sits one above the highest module it imports.
layer = {}


def depth(module):
    if module not in layer:
        layer[module] = 1 + max((depth(u) for u in imports[module]), default=-1)
    return layer[module]


by_layer = collections.defaultdict(list)
for module in modules:
    by_layer[depth(module)].append(module)
for level in sorted(by_layer):
    print(f"  layer {level}: {' '.join(sorted(by_layer[level]))}")
