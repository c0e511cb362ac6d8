"""The hostile pickle corpus (tests/engine/source/hostile_pickles.py): each payload is first
proven live (loaded the unsafe way in a throwaway process it does what it was built for), then
`bot convert` on a folder holding it exits 2 naming the file, the payload never runs and
nothing is written. Each layer is also tested on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import PickleRefused
from engine.source.pickle_load import Limits, child_env, load_in_child
from engine.source.pickle_scan import scan_pickle_file
from tests.engine.source.hostile_pickles import CODE_PAYLOADS, REFUSALS, build, prove_live

ROOT = Path(__file__).resolve().parents[3]
BIN = "unet/diffusion_pytorch_model.bin"


def _folder(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A pipeline-shaped folder whose UNet weights are the hostile file; and its marker."""
    from engine.synthetic.zoo_parts import tiny_unet

    folder, marker = tmp_path / "repo", tmp_path / f"marker-{name}"
    tiny_unet(0).save_config(folder / "unet")
    build(name, folder / BIN, marker)
    return folder, marker


@pytest.mark.parametrize("name", list(REFUSALS))
def test_hostile_pickle_is_live_then_refused_by_bot_convert(tmp_path, name):
    folder, marker = _folder(tmp_path, name)
    what = prove_live(name, folder / BIN, marker, tmp_path / "scratch")
    assert what
    assert not marker.exists()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "convert", str(folder), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_TOKEN": ""},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert BIN in proc.stderr and REFUSALS[name] in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "the payload ran"
    assert not out.exists()
    assert not list(tmp_path.glob(".out.pickle-*"))


@pytest.mark.parametrize("name", list(REFUSALS))
def test_static_scan_alone_refuses_each_payload(tmp_path, name):
    path, marker = build(name, tmp_path / "x.bin", tmp_path / "m"), tmp_path / "m"
    with pytest.raises(PickleRefused, match="refused before unpickling") as info:
        scan_pickle_file(path)
    assert REFUSALS[name] in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(CODE_PAYLOADS - {"protocol0-raw"}))
def test_child_loader_alone_refuses_code_payloads(tmp_path, name):
    """Layer 3 without layer 2: torch's weights_only unpickler in the child refuses them too."""
    path, marker = build(name, tmp_path / "x.bin", tmp_path / "m"), tmp_path / "m"
    with pytest.raises(PickleRefused, match="weights_only loader refused"):
        load_in_child(path, tmp_path / "x.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "x.safetensors").exists()


def test_child_runs_under_its_limits(tmp_path):
    import torch

    path = tmp_path / "w.bin"
    torch.save({"w": torch.ones(64, 1024, 1024, dtype=torch.uint8)}, path)  # 64 MiB
    tight = Limits(memory_bytes=256 * 2**20, seconds=60, output_bytes=2**30)
    with pytest.raises(PickleRefused, match="weights_only loader refused"):
        load_in_child(path, tmp_path / "a.safetensors", tight)
    quick = Limits(memory_bytes=8 * 2**30, seconds=0.2, output_bytes=2**30)
    with pytest.raises(PickleRefused, match="longer than"):
        load_in_child(path, tmp_path / "b.safetensors", quick)
    small_out = Limits(memory_bytes=8 * 2**30, seconds=120, output_bytes=2**20)
    with pytest.raises(PickleRefused):
        load_in_child(path, tmp_path / "c.safetensors", small_out)
    report = load_in_child(path, tmp_path / "d.safetensors")
    assert report["tensors"] == 1 and report["data_bytes"] == 64 * 2**20


def test_child_environment_holds_no_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_secret_value")
    env = child_env()
    assert "hf_secret_value" not in json.dumps(env)
    assert set(env) <= {"PATH", "LANG", "OMP_NUM_THREADS", "TMPDIR"}
