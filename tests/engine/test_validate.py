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


def test_pipelined_run_equals_convert_then_validate(converted, tmp_path):
    """convert_and_validate (writes overlapping validation) gives the same files, results and
    artifact order as converting everything and then validating the manifest."""
    from engine.pipeline import convert_and_validate

    source, _, sequential = converted
    manifest = convert_and_validate(source, tmp_path / "out", VARIANTS)
    assert [a.variant for a in manifest.artifacts] == VARIANTS
    assert Manifest.load(tmp_path / "out").artifacts == manifest.artifacts
    for piped, alone in zip(manifest.artifacts, sequential.artifacts, strict=True):
        assert piped.sha256 == alone.sha256, piped.variant
        for key in ("status", "reason", "metrics", "checks"):
            assert piped.validation[key] == alone.validation[key], (piped.variant, key)


def test_pipelined_writer_error_stops_the_run(tmp_path):
    """A writer failing in the background thread raises its own error here, stops the later
    writes, and leaves no partial file."""
    import threading

    from safetensors.torch import load_file, save_file

    from engine.errors import NonFiniteWeights
    from engine.pipeline import convert_and_validate
    from engine.synthetic import write_pipeline_folder

    source = write_pipeline_folder(tmp_path / "src", "sd15-lcm", "tiny")
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(weights))
    out = tmp_path / "out"
    with pytest.raises(NonFiniteWeights, match="to_q"):
        convert_and_validate(source, out, ["original", "gguf-q8_0", "gguf-q4_0"])
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "src.unet.safetensors"]
    assert not [t for t in threading.enumerate() if t.name == "unetbot-writer"]


def test_validation_grid_has_source_and_each_validated_variant(tmp_path):
    """--grid: one labelled column for the fp32 source and each variant with its own outputs
    (a full GGUF shares its UNet-only GGUF's, an original is byte-equal); none without --grid."""
    from PIL import Image

    from engine.grid import GRID_NAME
    from engine.pipeline import convert_and_validate
    from engine.synthetic import write_pipeline_folder

    source = write_pipeline_folder(tmp_path / "src", "sd15-lcm", "tiny")
    chosen = ["original", "gguf-q8_0", "gguf-full-q8_0", "quanto-int8"]
    manifest = convert_and_validate(source, tmp_path / "grid", chosen, grid=True)
    assert manifest.grid == GRID_NAME
    assert Manifest.load(tmp_path / "grid").grid == GRID_NAME
    with Image.open(tmp_path / "grid" / GRID_NAME) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    tile = height - 18  # one row of square tiles under an 18-pixel label band
    assert width == 3 * tile  # source, gguf-q8_0, quanto-int8
    assert pixels[18:].std() > 0  # decoded pictures, not an empty canvas
    plain = convert_and_validate(source, tmp_path / "plain", ["gguf-q8_0"])
    assert plain.grid == "" and not (tmp_path / "plain" / GRID_NAME).exists()
