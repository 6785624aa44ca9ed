"""The package's layering: imports form no circle and never run upward (models never import
training, the commands or the checkpoint tools; training never parses checkpoints)."""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "videomae_keras")

# package or module -> what it must not import, at module level or inside a function
FORBIDDEN = {
    "videomae_keras.layers": ("videomae_keras.models", "videomae_keras.training",
                              "videomae_keras.convert", "videomae_keras.cli",
                              "videomae_keras.commands"),
    "videomae_keras.models": ("videomae_keras.training", "videomae_keras.cli",
                              "videomae_keras.commands",
                              "videomae_keras.checkpoints"),
    "videomae_keras.presets": ("videomae_keras.models", "videomae_keras.convert"),
    "videomae_keras.checkpoints.cache": ("videomae_keras.convert", "videomae_keras.models"),
    "videomae_keras.training": ("videomae_keras.cli", "videomae_keras.commands",
                                "videomae_keras.checkpoints", "videomae_keras.convert"),
}


def _modules():
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                yield ".".join(parts), path


def _imports(path, top_level_only):
    """The videomae_keras modules a file imports (all, or those run at import time)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("videomae_keras"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("videomae_keras"))
    return found


def test_no_import_circles_at_import_time():
    modules = dict(_modules())
    graph = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path, True) if t in modules and t != name}
        # `import a.b.c` runs a and a.b first; the package __init__ files re-export only
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    graph["videomae_keras"] = set()  # the lazy top-level package imports on attribute access
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        if state.get(node) == "open":
            circle = trail[trail.index(node):] + [node]
            raise AssertionError("import circle: " + " -> ".join(circle))
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        state[node] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_imports_run_downward():
    modules = dict(_modules())
    problems = []
    for name, path in modules.items():
        for owner, banned in FORBIDDEN.items():
            if name == owner or name.startswith(owner + "."):
                bad = sorted(t for t in _imports(path, False) if t in modules
                             and any(t == b or t.startswith(b + ".") for b in banned))
                problems += [f"{name} imports {t}" for t in bad]
    assert not problems, "; ".join(problems)
