"""The layout rules of the code, checked on its import graph (every import, lazy ones too):

- `engine/` never imports `bot/` (the engine is a library the bot calls);
- no import cycle among `bot/` modules;
- the workflow's report step (`bot/actions/summary.py`) imports only the standard library and
  the error contract (`engine/errors.py`), itself standard-library only;
- no module is longer than ~400 lines (data tables excepted, by name).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "bot", "model_cards")
MAX_LINES = 420
DATA_TABLES: set[str] = set()  # modules allowed past MAX_LINES because they are data


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports, anywhere in the file (absolute names)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _internal_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {m for m in _imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_engine_never_imports_bot():
    offenders = {
        name: sorted(m for m in _imports(path, name) if m == "bot" or m.startswith("bot."))
        for name, path in _modules().items()
        if name.startswith("engine")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycle_among_bot_modules():
    graph = {k: {m for m in v if m.startswith("bot")} for k, v in _internal_graph().items()}
    graph = {k: v for k, v in graph.items() if k.startswith("bot")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.rpartition(".")[0] == node or node.rpartition(".")[0] == nxt:
                continue  # a package and its own submodules (bot.hub <-> bot.hub.app)
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", ["bot.actions.summary", "engine.errors"])
def test_workflow_glue_imports_only_the_standard_library_and_the_error_contract(module):
    path = _modules()[module]
    allowed = {"engine", "engine.errors", "engine.errors.ExitCode"}
    for name in _imports(path, module):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top == "__future__" or name in allowed, name


def test_engine_package_init_is_standard_library_only():
    assert _imports(ROOT / "engine" / "__init__.py", "engine") <= {"__future__.annotations"} | {
        "__future__"
    }


def test_no_module_is_too_long():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES and name not in DATA_TABLES
    }
    assert not long, f"split these modules (one job each): {long}"
