"""Validation passes honest artifacts and fails every corrupted one (mutation tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.convert import convert
from engine.manifest import Manifest
from engine.validate import validate_folder, validate_manifest

VARIANTS = ["original", "original-full", "gguf-q8_0", "gguf-full-q4_0", "quanto-int8"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from engine.synthetic import write_pipeline_folder

    base = tmp_path_factory.mktemp("validate")
    source = write_pipeline_folder(base / "src", "sd15-lcm", "tiny")
    out = base / "out"
    convert(source, out, VARIANTS)
    manifest = validate_manifest(out, source)
    return source, out, manifest


def _copy(converted, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(converted[1], out)
    return out


def _status(manifest: Manifest) -> dict[str, tuple[str, str]]:
    return {a.variant: (a.validation["status"], a.validation["reason"]) for a in manifest.artifacts}


def test_honest_artifacts_pass_with_metrics(converted):
    _, _, manifest = converted
    status = _status(manifest)
    assert all(s == "passed" for s, _ in status.values()), status
    by_variant = {a.variant: a for a in manifest.artifacts}
    q8 = by_variant["gguf-q8_0"].validation["metrics"]
    assert 0.9999 < q8["output"]["cosine"] <= 1.0 + 1e-9
    assert "lcm_4step" in q8  # LCM sampling compared too
    assert by_variant["original"].validation["metrics"]["byte_equal"] is True
    assert any("GGUFQuantizationConfig" in c for c in by_variant["gguf-q8_0"].validation["checks"])


def _path(out: Path, variant: str) -> Path:
    manifest = Manifest.load(out)
    return out / next(a.path for a in manifest.artifacts if a.variant == variant)


def _rewrite_safetensors(path: Path, mutate) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    mutate(tensors)
    save_file(tensors, str(path), metadata=metadata)


def _revalidate(out: Path, source: Path, variant: str) -> tuple[str, str]:
    return _status(validate_manifest(out, source))[variant]


def test_swapped_tensor_fails(converted, tmp_path):
    out = _copy(converted, tmp_path)

    def swap(t):
        a = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
        b = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight"
        t[a], t[b] = t[b], t[a]

    _rewrite_safetensors(_path(out, "original"), swap)
    status, reason = _revalidate(out, converted[0], "original")
    assert status == "failed" and "differs from the source" in reason


def test_removed_cond_proj_fails(converted, tmp_path):
    out = _copy(converted, tmp_path)
    _rewrite_safetensors(
        _path(out, "original"),
        lambda t: t.pop("model.diffusion_model.time_embedding.cond_proj.weight"),
    )
    status, reason = _revalidate(out, converted[0], "original")
    assert status == "failed" and "cond_proj" in reason


def _gguf_tensor(path: Path, quantized: bool):
    import gguf

    reader = gguf.GGUFReader(str(path))
    for t in reader.tensors:
        is_quant = t.tensor_type not in (
            gguf.GGMLQuantizationType.F16,
            gguf.GGMLQuantizationType.F32,
        )
        if is_quant == quantized and t.name.startswith("model.diffusion_model.input_blocks"):
            return t
    raise AssertionError("no such tensor")


def test_altered_gguf_block_scale_fails(converted, tmp_path):
    out = _copy(converted, tmp_path)
    path = _path(out, "gguf-q8_0")
    tensor = _gguf_tensor(path, quantized=True)
    with open(path, "r+b") as f:  # Q8_0 block: fp16 scale, then 32 int8 values
        f.seek(tensor.data_offset)
        f.write(np.float16(300.0).tobytes())
    status, reason = _revalidate(out, converted[0], "gguf-q8_0")
    assert status == "failed" and "rel L2" in reason
    folder_status = _status(validate_folder(out, converted[0]))["gguf-q8_0"]
    assert folder_status[0] == "failed" and "sha256" in folder_status[1]


def test_wrong_architecture_key_fails(converted, tmp_path):
    out = _copy(converted, tmp_path)
    path = _path(out, "gguf-q8_0")
    data = bytearray(path.read_bytes())
    key = b"general.architecture"
    at = data.index(key) + len(key) + 4 + 8  # value type (u32), string length (u64)
    assert data[at : at + 3] == b"sd1"
    data[at : at + 3] = b"sdx"
    path.write_bytes(bytes(data))
    status, reason = _revalidate(out, converted[0], "gguf-q8_0")
    assert status == "failed" and "general.architecture" in reason


@pytest.mark.parametrize("variant", ["original", "gguf-q8_0", "quanto-int8"])
def test_truncated_file_fails(converted, tmp_path, variant):
    out = _copy(converted, tmp_path)
    path = _path(out, variant)
    path.write_bytes(path.read_bytes()[:-1000])
    status, _ = _revalidate(out, converted[0], variant)
    assert status == "failed"


def test_bot_validate_exit_codes(converted, tmp_path):
    out = _copy(converted, tmp_path)
    cmd = [sys.executable, "-m", "bot.cli", "validate", str(out), "--source", str(converted[0])]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode == 0
    path = _path(out, "gguf-q8_0")
    path.write_bytes(path.read_bytes()[:-10])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 4
    assert "sha256" in proc.stdout
