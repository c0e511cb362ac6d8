"""Full-size SD1.5 LCM checks (slow: `make test-slow`; CI runs them when time allows)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_lcm(tmp_path_factory) -> Path:
    from engine.synthetic.models import write_pipeline_folder

    return write_pipeline_folder(
        tmp_path_factory.mktemp("full") / "lcm", "sd15-lcm", "full", with_vae_and_text_encoder=False
    )


def test_full_size_original_is_exact_and_keeps_cond_proj(full_lcm, tmp_path):
    import torch
    from safetensors import safe_open

    from engine.formats.safetensors_io import read_header
    from engine.source.folder import open_source
    from engine.validation.loaders import load_unet
    from engine.writers.original import write_original

    out = write_original(open_source(full_lcm), tmp_path / "unet.safetensors")
    assert len(read_header(out).tensors) == 687  # SD1.5's 686 + the LCM cond_proj
    model = load_unet(out, full_lcm, "unet", torch_dtype=torch.float16)
    state = model.state_dict()
    source = full_lcm / "unet" / "diffusion_pytorch_model.safetensors"
    with safe_open(str(source), "pt") as f:
        for key in f.keys():  # noqa: SIM118
            assert torch.equal(state[key], f.get_tensor(key)), key
    assert state["time_embedding.cond_proj.weight"].shape == (320, 256)


def test_full_size_gguf_q8_0_validates_with_diffusers(full_lcm, tmp_path):
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest

    convert(full_lcm, tmp_path / "out", "gguf-q8_0")
    manifest = validate_manifest(tmp_path / "out", full_lcm)
    artifact = manifest.artifacts[0]
    assert artifact.validation is not None
    assert artifact.passed, artifact.validation.reason
    assert artifact.details["quantized"] == 182
    assert artifact.validation.metrics["output"]["cosine"] > 0.9999


REAL_FAILURES = [("float32", "gguf-q5_1"), ("bfloat16", "gguf-q5_0")]


@pytest.mark.parametrize(("dtype", "variant"), REAL_FAILURES)
def test_full_size_trained_like_gguf_passes_every_gate(tmp_path, dtype, variant):
    """The cases real weights failed on (an accurate Q5_1 of an fp32 LCM, a Q5_0 of a bf16
    one, rejected by a fixed diffusers-load cosine): with trained-like values they pass, and
    diffusers' GGUF path is judged by its derived bounds."""
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest
    from engine.synthetic.models import write_pipeline_folder

    source = write_pipeline_folder(
        tmp_path / "src", "sd15-lcm", "full", dtype, 0, False, statistics="trained"
    )
    convert(source, tmp_path / "out", variant)
    artifact = validate_manifest(tmp_path / "out", source).artifacts[0]
    assert artifact.validation is not None
    assert artifact.passed, artifact.validation.reason
    metrics = artifact.validation.metrics
    assert 0 < metrics["diffusers_dequant"]["worst_bound_ratio"] <= 1.0
    assert metrics["diffusers_load"]["rel_l2"] <= 1e-5


def test_full_size_original_is_proven_without_the_fp32_reference(full_lcm, tmp_path, monkeypatch):
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest
    from engine.validation.context import Context

    def no_reference(self):
        raise AssertionError("an exact copy computed the fp32 reference")

    monkeypatch.setattr(Context, "reference", no_reference)
    convert(full_lcm, tmp_path / "out", "original")
    artifact = validate_manifest(tmp_path / "out", full_lcm).artifacts[0]
    assert artifact.passed, artifact.validation.reason
