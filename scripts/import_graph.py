"""Print the service's import graph as the layer rules see it.

    .venv/bin/python scripts/import_graph.py

Shows the arrows between top-level packages, the arrows that point up the
layer order (LAYERS below, the same order as the import-linter contract in
.importlinter), the import cycles between modules, the modules below the web
layer that import Flask, and the largest modules. The architecture page
(docs/architecture.md) quotes its output; run it before and after moving code.
"""

import collections
import pathlib
import sys

import grimp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Top to bottom; a package may import only packages below it. Packages on one
# line are peers that must not import each other.
LAYERS = [
    ["app"],
    ["ui"],
    ["api"],
    ["openai_api"],
    ["web"],
    ["services"],
    ["predictions"],
    ["training"],
    ["uploads"],
    ["tasks"],
    ["trainers"],
    ["model_registry"],
    ["sandbox"],
    ["core"],
]
WEB_LAYER = {"app", "ui", "api", "openai_api", "web"}
FLASK = ("flask", "flask_smorest", "werkzeug", "webargs")


def packages() -> list[str]:
    present = [name for layer in LAYERS for name in layer if (ROOT / name / "__init__.py").exists()]
    return present


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise KeyError(package)


def strongly_connected(nodes, edges) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other in a ring."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1
                    stack.append(child); on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop(); on_stack.discard(member); group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def main() -> None:
    names = packages()
    graph = grimp.build_graph(*names, include_external_packages=True)
    ours = [module for module in graph.modules if module.split(".")[0] in names]
    edges = {module: [m for m in graph.find_modules_directly_imported_by(module) if m.split(".")[0] in names]
             for module in ours}
    arrows = collections.Counter()
    upward = collections.Counter()
    for module, imported in edges.items():
        for other in imported:
            a, b = module.split(".")[0], other.split(".")[0]
            if a == b:
                continue
            arrows[(a, b)] += 1
            if layer_of(b) <= layer_of(a):
                upward[(a, b)] += 1
    print("Arrows between packages (imports):")
    for (a, b), count in sorted(arrows.items()):
        mark = "  UP" if (a, b) in upward else ""
        print(f"  {a:15} -> {b:15} {count:3}{mark}")
    print(f"Upward or sideways arrows: {len(upward)} ({sum(upward.values())} imports)")
    cycles = strongly_connected(sorted(ours), edges)
    print(f"Import cycles between modules: {len(cycles)}")
    for group in cycles:
        print("  " + " <-> ".join(group) if len(group) < 6 else f"  {len(group)} modules: {', '.join(group)}")
    flask_below = sorted(module for module in ours if module.split(".")[0] not in WEB_LAYER
                         and any(m.split(".")[0] in FLASK for m in graph.find_modules_directly_imported_by(module)))
    print(f"Modules below the web layer that import Flask: {len(flask_below)}")
    for module in flask_below:
        print("  " + module)
    sizes = []
    for name in names:
        for path in (ROOT / name).rglob("*.py"):
            sizes.append((sum(1 for _ in path.open()), str(path.relative_to(ROOT))))
    sizes.sort(reverse=True)
    print("Largest modules (lines):")
    for lines, path in sizes[:10]:
        print(f"  {lines:5} {path}")
    print(f"Modules over 300 lines: {sum(1 for lines, _ in sizes if lines > 300)}")


if __name__ == "__main__":
    main()
