"""A wheel built from the repository works on its own: installed into a fresh venv, outside the
checkout, it renders a card (the templates are package data), lists the variants and converts
and validates a tiny model.

The fresh venv sees this venv's third-party packages through a `.pth` path line (reinstalling
torch and friends would take minutes and GBs); `.pth` files inside that folder are not
processed, so the checkout's editable install of unetbot is invisible to it: every unetbot
module must come from the wheel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.so", "build", "*.egg-info", "out", ".hub", ".*_cache"
)


def _copy_sources(dest: Path) -> None:
    """The files a wheel is built from: what git tracks (or, outside a checkout, the tree
    without build products), so nothing built in place leaks into the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        shutil.copytree(ROOT, dest, ignore=_NOT_SOURCES)
        return
    for relative in filter(None, listed.stdout.split("\0")):
        if (ROOT / relative).is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, dest / relative)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only the wheel of this repository installed (module-scoped: ~30 s)."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "src"
    _copy_sources(source)
    dist = base / "dist"
    wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    _run([*wheel, "-w", str(dist), str(source)], base)
    wheels = list(dist.glob("unetbot-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], base)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (site / "site-packages" / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheels[0])], base)
    return venv


def test_wheel_modules_come_from_the_wheel(installed, tmp_path):
    code = "import bot, engine, model_cards; print(bot.__file__, engine.__file__)"
    out = _run([str(installed / "bin" / "python"), "-I", "-c", code], tmp_path).stdout
    assert str(ROOT) not in out and str(installed) in out


def test_wheel_renders_a_card_and_lists_variants(installed, tmp_path):
    code = (
        "from bot.publish.cards import CardContext, render_repo_card\n"
        "from engine.source.classify import ModelKind\n"
        "from engine.formats.manifest import Artifact, Manifest\n"
        "from engine.run.variants import PublishTarget\n"
        "ctx = CardContext('a/b', 'f' * 40, ModelKind.SD15, 'mit', {}, [], 'http://hub')\n"
        "a = Artifact('gguf-q8_0', 'GGUF Q8_0', 'b-Q8_0.gguf', 1, '0' * 64, ['ComfyUI-GGUF'])\n"
        "print(render_repo_card(ctx, PublishTarget.GGUF, 'bot/a__b-GGUF', Manifest({}), [a]))\n"
    )
    card = _run([str(installed / "bin" / "python"), "-I", "-c", code], tmp_path).stdout
    assert card.startswith("---\n") and "base_model: a/b" in card and "## Validation" in card
    listed = _run([str(installed / "bin" / "bot"), "variants", "--json"], tmp_path).stdout
    assert {"original", "gguf-q8_0", "quanto-int8"} <= {v["variant"] for v in json.loads(listed)}


def test_wheel_converts_and_validates_a_tiny_model(installed, tiny_pipeline, tmp_path):
    folder = tiny_pipeline("sd15-lcm", full=False)
    out = tmp_path / "out"
    args = [str(installed / "bin" / "bot"), "convert", str(folder), "--out", str(out)]
    _run([*args, "--variants", "original,gguf-q8_0"], tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    statuses = {a["variant"]: a["validation"]["status"] for a in manifest["artifacts"]}
    assert statuses == {"original": "passed", "gguf-q8_0": "passed"}
