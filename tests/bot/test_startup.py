"""What a local `bot convert` pays before its first byte: the libraries it imports.

A byte-exact `original` of a local folder, or any dry run, needs no tensors, no Hub client and
no card templates; each of those libraries costs 0.1-0.5 s of start-up, which is most of the gap
between `bot convert --variants original` and `cp` (benchmarks/whole_command.py). Checked in a
fresh interpreter, through the command line, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.synthetic.models import write_pipeline_folder

# Heavy for start-up, and not needed to copy bytes: numeric, Hub client, HTTP, templates, CLI
# value validation (typer 0.29's pydantic adapters), and the models' own libraries.
HEAVY = (
    "numpy",
    "torch",
    "diffusers",
    "transformers",
    "gguf",
    "huggingface_hub",
    "httpx2",
    "pydantic",
    "jinja2",
    "rich",
)

# Runs `bot ARGS...` in this interpreter, then reports its exit code and which HEAVY modules it
# loaded (argv[1]: the command's arguments, argv[2]: HEAVY; both JSON).
PROBE = """
import json, sys
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["bot", *args]
from bot.cli import app
try:
    app()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "imported": sorted(m for m in heavy if m in sys.modules)}))
"""


def _imported_by(args: list[str]) -> dict:
    cmd = [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lcm_source(tmp_path_factory) -> Path:
    return write_pipeline_folder(tmp_path_factory.mktemp("src") / "lcm", "sd15-lcm")


@pytest.mark.parametrize(
    "extra", [["--skip-validation"], ["--dry-run"]], ids=["original", "dry-run"]
)
def test_local_original_imports_nothing_heavy(lcm_source, tmp_path, extra):
    out = tmp_path / "out"
    got = _imported_by(
        ["convert", str(lcm_source), "--variants", "original", "--out", str(out), *extra]
    )
    assert got["imported"] == []
    if extra == ["--skip-validation"]:
        assert got["code"] == 0  # written, described as not validated (README "Exit codes")
        assert (out / "lcm.unet.safetensors").is_file()
    else:
        assert got["code"] == 0
        assert not out.exists()


def test_the_probe_sees_a_heavy_import(lcm_source, tmp_path):
    # A GGUF is quantized with NumPy: the same probe must report it, or it proves nothing.
    out = tmp_path / "out"
    args = ["convert", str(lcm_source), "--variants", "gguf-q8_0", "--skip-validation"]
    got = _imported_by([*args, "--out", str(out)])
    assert "numpy" in got["imported"]
