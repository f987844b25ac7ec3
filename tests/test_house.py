"""The house plan (docs/design.md) stays as built: imports point down, no import circle (counting the
imports inside functions too, which only hide a circle from Python), and no module takes a
`_private` name from another. Read from the source with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "linebench"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, str | None, int]]:
    """(importing module, imported module, imported name or None, line) for every linebench import."""
    found = []
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(mod, a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "linebench"]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "linebench":
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    found.append((mod, sub, None, node.lineno) if sub in modules else (mod, target, a.name, node.lineno))
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_circles_and_private_names():
    # the checks below are only as good as this reader: feed it a circle and a private import
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    names = [(m, t, n) for m, t, n, _ in _imports(_modules()) if m == "linebench.dataset"]
    assert ("linebench.dataset", "linebench.writer", "write_folder") in names  # a module-level import
    assert any(t == "linebench.card" for _, t, _ in names)  # one inside a function counts too


def test_no_import_circle():
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for mod, target, _, _ in _imports(modules):
        if target in modules and target != mod:
            edges[mod].add(target)
    assert _cycles(edges) == []


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{mod} (line {line}) imports {name} from {target}"
        for mod, target, name, line in _imports(_modules())
        if name and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    ]
    assert private == []


@pytest.mark.parametrize("low, high", [
    ("linebench.evaluate", "linebench.train.run"),  # evaluation does not run the train command
    ("linebench.profiles", "linebench.grids"),  # profiles describe layouts; grids resolves strings to them
    ("linebench.folder", "linebench.dataset"),  # bookkeeping files are read below the commands that write them
    ("linebench.samples", "linebench.dataset"),
])
def test_imports_point_down(low, high):
    up = [f"{mod}:{line}" for mod, target, _, line in _imports(_modules()) if (mod == low or mod.startswith(low + ".")) and target == high]
    assert up == []


@pytest.mark.parametrize("module, name", [
    ("linebench", "attention_map"), ("linebench", "map_transform"), ("linebench", "__version__"),
    ("linebench.klal", "klal_loss"), ("linebench.train", "KLALTrainer"), ("linebench.train", "KLALCollator"),
    ("linebench.train", "KLALCapture"), ("linebench.train", "examples_transform"),
    ("linebench.dataset", "generate"), ("linebench.dataset", "merge"), ("linebench.dataset", "read_row"),
    ("linebench.samples", "RowMaker"), ("linebench.samples", "RunSpec"), ("linebench.release", "load_release"),
    ("linebench.score", "score"), ("linebench.evaluate", "evaluate"), ("linebench.annotate", "add_maps"),
    ("linebench.verify", "verify"), ("linebench.train.run", "TrainOptions"), ("linebench.train.run", "train"),
    ("linebench.evaluate.run", "EvalOptions"), ("linebench.evaluate.run", "evaluate_folder"), ("linebench.cli", "app"),
    ("linebench.harnesses.export", "export"), ("linebench.harnesses.lmms_eval", "process_results"),
    ("linebench.harnesses.vlmevalkit", "read_predictions"),
])
def test_the_names_the_docs_use_still_import(module, name):
    import importlib

    assert callable(getattr(importlib.import_module(module), name)) or name == "__version__"
