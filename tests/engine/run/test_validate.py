"""Validation passes honest artifacts and fails every corrupted one, for the reason it names
(mutation tests: each asserts the reason, not just a failure)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.formats.manifest import Manifest
from engine.run.convert import convert
from engine.run.validate import validate_folder, validate_manifest

VARIANTS = ["original", "original-full", "gguf-f16", "gguf-q8_0", "gguf-full-q4_0", "quanto-int8"]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from engine.synthetic.models import write_pipeline_folder

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
    return {a.variant: (a.validation.status, a.validation.reason) for a in manifest.artifacts}


def test_honest_artifacts_pass_with_metrics(converted):
    _, _, manifest = converted
    status = _status(manifest)
    assert all(s == "passed" for s, _ in status.values()), status
    by_variant = {a.variant: a for a in manifest.artifacts}
    q8 = by_variant["gguf-q8_0"].validation.metrics
    assert 0.9999 < q8["output"]["cosine"] <= 1.0 + 1e-9
    assert "lcm_4step" in q8  # LCM sampling compared too
    assert 0 < q8["worst_quant_bound_ratio"] <= 1.0
    assert 0 < q8["diffusers_dequant"]["worst_bound_ratio"] <= 1.0
    assert q8["diffusers_load"]["rel_l2"] <= 1e-5
    assert by_variant["original"].validation.metrics["byte_equal"] is True
    assert any("GGUFQuantizationConfig" in c for c in by_variant["gguf-q8_0"].validation.checks)


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


def _revalidated(out: Path, source: Path, variant: str):
    """The validation result of one (mutated) artifact, validated alone."""
    from engine.run.validate import validate_artifact
    from engine.source.folder import open_source
    from engine.validation.context import Context

    manifest = Manifest.load(out)
    artifact = next(a for a in manifest.artifacts if a.variant == variant)
    validate_artifact(artifact, Context(open_source(source), out, manifest.source["revision"]))
    return artifact.validation


def _revalidate(out: Path, source: Path, variant: str) -> tuple[str, str]:
    result = _revalidated(out, source, variant)
    return result.status, result.reason


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
    assert status == "failed"
    assert "model.diffusion_model.time_embedding.cond_proj.weight is missing" in reason


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


def _largest_quantized(path: Path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    quantized = [t for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q8_0]
    return max(quantized, key=lambda t: t.n_elements)


def test_slightly_altered_block_scale_fails_its_derived_bound(converted, tmp_path):
    """One block's scale x1.25 in the largest tensor: the tensor's overall rel L2 stays under
    its gate, but every element of that block leaves its quantization bound."""
    from engine.run.variants import variant

    out = _copy(converted, tmp_path)
    path = _path(out, "gguf-q8_0")
    tensor = _largest_quantized(path)
    at = int(tensor.data_offset) + 34 * 7  # the 8th block: fp16 scale, 32 int8 codes
    with open(path, "r+b") as f:
        f.seek(at)
        scale = np.frombuffer(f.read(2), np.float16)[0]
        f.seek(at)
        f.write(np.float16(scale * 1.25).tobytes())
    result = _revalidated(out, converted[0], "gguf-q8_0")
    assert result.status == "failed"
    assert f"{tensor.name}: Q8_0 values off the source by" in result.reason
    assert "block quantization bound" in result.reason
    gate = variant("gguf-q8_0").threshold
    assert result.metrics["worst_tensor_rel_l2"] < gate.max_tensor_rel_l2  # rel L2 alone: pass


def test_swapped_quantized_tensors_fail(converted, tmp_path):
    """to_q and to_k of one attention, same shape and type, swapped in the GGUF's data."""
    import gguf

    out = _copy(converted, tmp_path)
    path = _path(out, "gguf-q8_0")
    by_name = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    prefix = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1."
    q, k = by_name[prefix + "to_q.weight"], by_name[prefix + "to_k.weight"]
    data = bytearray(path.read_bytes())
    qa, ka, n = int(q.data_offset), int(k.data_offset), int(q.n_bytes)
    data[qa : qa + n], data[ka : ka + n] = data[ka : ka + n], data[qa : qa + n]
    path.write_bytes(bytes(data))
    status, reason = _revalidate(out, converted[0], "gguf-q8_0")
    assert status == "failed"
    assert f"{prefix}to_q.weight: Q8_0 values off the source by" in reason


def test_changed_value_in_exact_gguf_fails(converted, tmp_path):
    """An F16 GGUF of an F16 source is proven by its bytes: one changed value fails it."""
    out = _copy(converted, tmp_path)
    path = _path(out, "gguf-f16")
    tensor = _gguf_tensor(path, quantized=False)
    with open(path, "r+b") as f:
        f.seek(int(tensor.data_offset))
        f.write(np.float16(0.125).tobytes())
    status, reason = _revalidate(out, converted[0], "gguf-f16")
    assert status == "failed" and f"{tensor.name}: F16 values differ from the source" in reason


def test_changed_vae_tensor_in_full_original_fails(converted, tmp_path):
    out = _copy(converted, tmp_path)
    name = "first_stage_model.decoder.conv_out.weight"

    def bump(t):
        t[name] = t[name] + 1

    _rewrite_safetensors(_path(out, "original-full"), bump)
    status, reason = _revalidate(out, converted[0], "original-full")
    assert status == "failed" and f"{name} differs from the source" in reason


def test_exact_copies_skip_the_reference_lossy_casts_do_not(tmp_path, monkeypatch):
    """original and an F16 GGUF of an F16 source are proven by bytes and the consumer's load:
    no fp32 reference, no forward pass. An F16 GGUF of a BF16 source is a cast, so it is
    checked through its outputs."""
    from engine.synthetic.models import write_pipeline_folder
    from engine.validation.context import Context

    exact = write_pipeline_folder(tmp_path / "f16", "sd15-lcm", "tiny", "float16")
    convert(exact, tmp_path / "out-f16", ["original", "gguf-f16"])

    def no_reference(self):
        raise AssertionError("an exact copy computed the fp32 reference")

    with monkeypatch.context() as patch:
        patch.setattr(Context, "reference", no_reference)
        manifest = validate_manifest(tmp_path / "out-f16", exact)
    assert [a.validation.status for a in manifest.artifacts] == ["passed", "passed"]
    gguf_checks = manifest.artifacts[1].validation.checks
    assert any("byte-equal to the source: outputs equal, no forward pass" in c for c in gguf_checks)

    cast = write_pipeline_folder(tmp_path / "bf16", "sd15-lcm", "tiny", "bfloat16")
    convert(cast, tmp_path / "out-bf16", ["gguf-f16"])
    result = validate_manifest(tmp_path / "out-bf16", cast).artifacts[0].validation
    assert result.passed, result.reason
    assert "probe forward of dequantized weights vs fp32 source" in result.checks
    assert 0 < result.metrics["output"]["rel_l2"] < variant_threshold("gguf-f16").max_rel_l2


def variant_threshold(name: str):
    from engine.run.variants import variant

    return variant(name).threshold


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


TRUNCATED_REASONS = {
    "original": "TruncatedFile: ",  # the safetensors header promises more bytes
    "gguf-q8_0": "gguf.GGUFReader cannot read it (truncated or malformed",
    "quanto-int8": "Unable to load weights from checkpoint file",  # diffusers' own message
}


@pytest.mark.parametrize("variant", sorted(TRUNCATED_REASONS))
def test_truncated_file_fails(converted, tmp_path, variant):
    out = _copy(converted, tmp_path)
    path = _path(out, variant)
    path.write_bytes(path.read_bytes()[:-1000])
    status, reason = _revalidate(out, converted[0], variant)
    assert status == "failed" and TRUNCATED_REASONS[variant] in reason, reason


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
    from engine.run.pipeline import convert_and_validate

    source, _, sequential = converted
    manifest = convert_and_validate(source, tmp_path / "out", VARIANTS)
    assert [a.variant for a in manifest.artifacts] == VARIANTS
    assert Manifest.load(tmp_path / "out").artifacts == manifest.artifacts
    for piped, alone in zip(manifest.artifacts, sequential.artifacts, strict=True):
        assert piped.sha256 == alone.sha256, piped.variant
        for key in ("status", "reason", "metrics", "checks"):
            assert getattr(piped.validation, key) == getattr(alone.validation, key), (
                piped.variant,
                key,
            )


def test_pipelined_writer_error_stops_the_run(tmp_path):
    """A writer failing in the background thread raises its own error here, stops the later
    writes, and leaves no partial file."""
    import threading

    from safetensors.torch import load_file, save_file

    from engine.errors import NonFiniteWeights
    from engine.run.pipeline import convert_and_validate
    from engine.synthetic.models import write_pipeline_folder

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

    from engine.run.pipeline import convert_and_validate
    from engine.synthetic.models import write_pipeline_folder
    from engine.validation.grid import GRID_NAME

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
