"""The import graph: layers import only downwards, no package loops, the product never imports the
simulated world (docs/architecture.md draws the same layers)."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import selflearn

ROOT = Path(selflearn.__file__).parent
#: lower layers never import higher ones (the same layer may import itself)
LAYERS = [
    {"errors", "text", "taxonomy", "templating", "metrics"},
    {"logs", "models", "privacy"},
    {"store"},
    {"signals"},
    {"rephrase", "teach"},
    {"rewrites", "labels", "fpi"},
    {"online"},
    {"rewriters", "report", "governance"},
    {"service"},
    {"world"},
    {"cli", "docs"},
]


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        package = ["selflearn", *rel.parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{module}.{a.name}" if module == "selflearn" else module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                parts = t.split(".")
                if parts[0] == "selflearn" and len(parts) > 1 and parts[1] not in (src, "__version__"):
                    edges[src].add(parts[1])
    return edges


def _layer(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_every_package_has_a_layer():
    names = {p.name if p.is_dir() else p.stem for p in ROOT.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert names - {"__init__"} <= set().union(*LAYERS), sorted(names - set().union(*LAYERS))


def test_imports_go_downwards_only():
    wrong = sorted((a, b) for a, bs in _graph().items() for b in bs if _layer(b) > _layer(a))
    assert not wrong, wrong


def test_no_package_loops_and_the_product_never_imports_the_world():
    g = _graph()
    for a, bs in g.items():
        for b in bs:
            assert a not in g.get(b, set()), (a, b)
    assert [a for a, bs in g.items() if "world" in bs] == ["cli"]  # only the CLI fronts the world
    assert "online" not in g["fpi"]
