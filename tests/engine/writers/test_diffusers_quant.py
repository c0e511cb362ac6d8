"""Diffusers-quantized UNet folders (torchao int8wo, quanto int8/float8) on tiny seeded UNets.

Accuracy is judged as the product judges it: the validation probe (engine.validation.probe) against
the fp32 source, and each variant's own threshold from the registry (engine.validation.thresholds).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from engine.errors import (
    BadSafetensorsHeader,
    MissingFile,
    NonFiniteWeights,
    PickleRefused,
    ValidationFailed,
)
from engine.run.variants import variant as registry_entry
from engine.synthetic.models import write_unet_folder
from engine.validation.probe import Reference, output_metrics, reference_outputs
from engine.validation.thresholds import check
from engine.writers.diffusers_quant import (
    SCHEMES,
    count_linear,
    load_quantized_unet,
    meta_tensor_names,
    quantize_unet,
)

KINDS = ("sd15", "sd15-lcm")
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dq-src")
    return {kind: write_unet_folder(root / kind, kind, "tiny", dtype="float16") for kind in KINDS}


@pytest.fixture(scope="module")
def quantized(sources, tmp_path_factory) -> dict[tuple[str, str], object]:
    root = tmp_path_factory.mktemp("dq-out")
    return {
        (kind, variant): quantize_unet(sources[kind], root / kind / variant, variant)
        for kind in KINDS
        for variant in SCHEMES
    }


@pytest.fixture(scope="module")
def reference(sources) -> dict[str, Reference]:
    """fp32 outputs of each source model on the validation probe: what validation measures
    every quantized variant against."""
    out = {}
    for kind, folder in sources.items():
        model = UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
        out[kind] = reference_outputs(model, model.config)
    return out


def _gate_failures(model, reference: Reference, variant_name: str) -> list[str]:
    """What validation would report against the variant's registry threshold ([] = passes)."""
    threshold = registry_entry(variant_name).threshold
    assert threshold is not None
    metrics, _ = output_metrics(model, reference)
    return [p for what, values in metrics.items() for p in check(threshold, values, what)]


CASES = [(k, v) for k in KINDS for v in SCHEMES]


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_written_folder(kind, variant, sources, quantized):
    result = quantized[(kind, variant)]
    names = sorted(p.name for p in result.folder.iterdir())
    assert names == ["config.json", WEIGHTS]
    assert not list(result.folder.parent.glob(f".{variant}.tmp-*"))
    assert [p.name for p in result.files] == names
    assert result.bytes < (sources[kind] / WEIGHTS).stat().st_size
    assert result.load_dtype == "float32" and result.stored_dtype == "float16"
    source = UNet2DConditionModel.from_pretrained(sources[kind])
    assert result.quantized_linear == sum(count_linear(source)) > 0
    assert result.kept_linear == 0
    qc = json.loads((result.folder / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == variant.split("-")[0]


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_loaded_output_close_to_fp32_source(kind, variant, quantized, reference):
    model = load_quantized_unet(quantized[(kind, variant)].folder, variant)
    assert meta_tensor_names(model) == []
    assert model.conv_in.weight.dtype == torch.float32 and not model.training
    if kind == "sd15-lcm":
        cond_proj = model.time_embedding.cond_proj
        assert cond_proj is not None and cond_proj.weight.device.type == "cpu"
    assert _gate_failures(model, reference[kind], variant) == []


@pytest.mark.parametrize("variant", SCHEMES)
def test_plain_from_pretrained_as_a_user_would(variant, quantized, reference):
    """A user's `from_pretrained(folder, torch_dtype=<load_dtype>)` gets real data everywhere.

    quanto's weight wrappers report `meta` as their own device after such a load even though
    their int8/fp8 data and scales are on CPU, so only the stored tensors are checked here.
    """
    result = quantized[("sd15-lcm", variant)]
    model = UNet2DConditionModel.from_pretrained(
        result.folder, torch_dtype=getattr(torch, result.load_dtype)
    ).eval()
    assert meta_tensor_names(model, wrappers=False) == []
    assert model.time_embedding.cond_proj is not None
    assert _gate_failures(model, reference["sd15-lcm"], variant) == []


def test_deterministic_bytes(sources, tmp_path):
    """torchao writes one metadata entry per tensor; its order must not change the file."""
    for variant in SCHEMES:
        a = quantize_unet(sources["sd15"], tmp_path / "a" / variant, variant)
        b = quantize_unet(sources["sd15"], tmp_path / "b" / variant, variant)
        for fa, fb in zip(a.files, b.files, strict=True):
            assert fa.read_bytes() == fb.read_bytes(), (variant, fa.name)


def test_fp32_source_is_stored_in_fp16(tmp_path):
    src = write_unet_folder(tmp_path / "src", "sd15", "tiny", dtype="float32")
    result = quantize_unet(src, tmp_path / "out", "torchao-int8wo")
    assert result.stored_dtype == "float16"
    assert result.bytes < (src / WEIGHTS).stat().st_size * 0.6
    load_quantized_unet(result.folder, "torchao-int8wo")


def test_missing_and_pickle_inputs(sources, tmp_path):
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / WEIGHTS).write_bytes((sources["sd15"] / WEIGHTS).read_bytes())
    with pytest.raises(MissingFile, match=r"config\.json"):
        quantize_unet(no_config, tmp_path / "o1", "quanto-int8")

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((sources["sd15"] / "config.json").read_text())
    with pytest.raises(MissingFile, match=re.escape(WEIGHTS)):
        quantize_unet(no_weights, tmp_path / "o2", "quanto-int8")

    (no_weights / "diffusion_pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(PickleRefused, match=r"diffusion_pytorch_model\.bin"):
        quantize_unet(no_weights, tmp_path / "o3", "quanto-int8")

    with pytest.raises(MissingFile, match=r"config\.json"):
        load_quantized_unet(tmp_path / "nothing_here", "quanto-int8")
    with pytest.raises(ValueError, match="variant"):
        quantize_unet(sources["sd15"], tmp_path / "o4", "quanto-int4")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".o", "o"))]


def test_bad_header_and_fp16_overflow(tmp_path):
    """A garbage weights file is named; an fp32 value that overflows fp16 is not stored as Inf."""
    from safetensors.numpy import load_file, save_file

    src = write_unet_folder(tmp_path / "src", "sd15", "tiny", dtype="float32")
    tensors = load_file(str(src / WEIGHTS))
    tensors["conv_in.weight"][0, 0, 0, 0] = 1e6
    save_file(tensors, str(src / WEIGHTS))
    with pytest.raises(NonFiniteWeights, match="conv_in.weight"):
        quantize_unet(src, tmp_path / "out", "quanto-int8")

    (src / WEIGHTS).write_bytes(b"\xff" * 16)
    with pytest.raises(BadSafetensorsHeader, match=re.escape(WEIGHTS)):
        quantize_unet(src, tmp_path / "out", "quanto-int8")
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_wrong_variant_refused_on_load(quantized):
    with pytest.raises(ValidationFailed, match="quanto-float8"):
        load_quantized_unet(quantized[("sd15", "quanto-int8")].folder, "quanto-float8")


def test_failure_leaves_nothing_and_refuses_pickle(sources, tmp_path, monkeypatch):
    """diffusers writing a pickle (or failing midway) must leave no temp and no final folder,
    and must not touch an earlier good artifact under the final name."""

    def pickle_save(self, folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "diffusion_pytorch_model.bin").write_bytes(b"pickle")

    monkeypatch.setattr(UNet2DConditionModel, "save_pretrained", pickle_save)
    with pytest.raises(ValidationFailed, match="pickle"):
        quantize_unet(sources["sd15"], tmp_path / "out", "torchao-int8wo")
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier artifact")

    def crash(self, folder, **kwargs):
        Path(folder, "partial.safetensors").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(UNet2DConditionModel, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        quantize_unet(sources["sd15"], tmp_path / "out", "quanto-int8")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_module_imports_without_torch():
    code = "import sys, engine.writers.diffusers_quant; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
