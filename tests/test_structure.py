"""The layout rules of the code, checked on its import graph (every import, lazy ones too):

- each side (`engine/`, `bot/`) is a stack of parts (a sub-package, or a top-level module), written
  down once below, bottom first: a part imports only itself and the parts beneath it, so every
  arrow points down and no two parts import each other;
- `engine/` never imports `bot/` (the engine is a library the bot calls); `bot/` may use any part
  of the engine;
- no import cycle among modules anywhere;
- the workflow's report step (`bot/actions/summary.py`) imports only the standard library and
  the error contract (`engine/errors.py`), itself standard-library only;
- every part is named in ARCHITECTURE.md, the map newcomers read;
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

# Bottom first: a part may import only itself and the parts listed before it on its side.
LAYERS: dict[str, list[str]] = {
    "engine": [
        "engine",  # the package itself: the version
        "engine.errors",  # the error contract and its exit codes
        "engine.memory",
        "engine.formats",  # safetensors, GGUF blocks, manifest.json, atomic I/O, hashes
        "engine.source",  # opening a source: layouts, repo kinds, configs, shapes, key map
        "engine.writers",  # original files, GGUFs, diffusers-quantized folders
        "engine.validation",  # proving one artifact with its consumer's loader
        "engine.run",  # the variant registry, a conversion run, validating a folder
        "engine.synthetic",  # seeded models and the repo zoo for tests, demo and benchmarks
        "engine.cost",  # measuring what each variant costs its consumer
    ],
    "bot": [
        "bot",  # the package itself: nothing
        "bot.log",
        "bot.settings",
        "bot.config",
        "bot.choice",
        "bot.progress",
        "bot.reasons",  # the wording of why a job or plan row does nothing
        "bot.hub",  # the embedded Hub server (tests, demo)
        "bot.client",  # the only door to the Hub: retries, pacing, who the bot is
        "bot.bench",  # `bot bench` and the cost views the cards read
        "bot.publish",  # cards, commits, the Hub's markers of what is published
        "bot.discover",  # listing and judging repos
        "bot.ledger",  # what the bot did, per repo and target
        "bot.schedule",  # the incremental pass and the run's plan
        "bot.job",  # one repo: choose, fetch, convert, publish, record
        "bot.actions",  # the scheduled workflow's steps
        "bot.seed",
        "bot.demo",
        "bot.cli",
    ],
}


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


def _part(module: str) -> str:
    """The layer a module belongs to: its sub-package, or itself for a top-level module."""
    return ".".join(module.split(".")[:2])


def test_every_module_belongs_to_a_listed_part():
    parts = {p for side in LAYERS.values() for p in side}
    unlisted = sorted({_part(m) for m in _modules() if m != "model_cards"} - parts)
    assert not unlisted, f"add these parts to LAYERS (and ARCHITECTURE.md): {unlisted}"


def test_every_import_between_parts_points_down():
    rank = {part: (side, i) for side, parts in LAYERS.items() for i, part in enumerate(parts)}
    upward = []
    for module, imported in _internal_graph().items():
        if module == "model_cards" or module.startswith("model_cards."):
            continue
        side, level = rank[_part(module)]
        for target in imported:
            if target.startswith("model_cards"):
                continue
            their_side, their_level = rank[_part(target)]
            if their_side == side and their_level > level:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a lower part up (move the code down, or pass data in):\n" + (
        "\n".join(sorted(upward))
    )


def test_architecture_map_names_every_part():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    missing = [
        part
        for parts in LAYERS.values()
        for part in parts
        if "." in part and f"`{part.replace('.', '/')}" not in text
    ]
    assert not missing, f"ARCHITECTURE.md does not show: {missing}"


def test_no_import_cycle_among_modules():
    graph = _internal_graph()
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
