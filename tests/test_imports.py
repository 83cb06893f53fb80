"""Architecture rules (DESIGN section 1): no import cycles among rayeval's modules; the pure
core (``core``, ``metrics``, ``drift``, ``stats``) imports neither Ray nor an I/O library nor
an upper layer."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "rayeval"
PURE = ("rayeval.core", "rayeval.metrics", "rayeval.drift", "rayeval.stats")
FORBIDDEN = ("ray", "pyarrow", "pandas", "s3fs", "fsspec", "mlflow", "rayeval.engine",
             "rayeval.io", "rayeval.cli", "rayeval.summary")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: pathlib.Path) -> set[str]:
    """Every absolute import target in a file (module level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_no_import_cycles():
    mods = _modules()
    edges = {m: {t for t in _imports(p) if t in mods and t != m and not m.startswith(t + ".")}
             for m, p in mods.items()}
    # a module is on a cycle when it can reach itself
    cycles = []
    for start in mods:
        seen, todo = set(), list(edges[start])
        while todo:
            v = todo.pop()
            if v == start:
                cycles.append(start)
                break
            if v not in seen:
                seen.add(v)
                todo.extend(edges[v])
    assert not cycles, f"modules on an import cycle: {sorted(cycles)}"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.startswith(PURE)))
def test_pure_core_imports(module):
    bad = {t for t in _imports(_modules()[module])
           if any(t == f or t.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{module} imports {sorted(bad)}"
