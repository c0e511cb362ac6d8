"""Prove every artifact with its consumer's own loader before it can ship.

- original / original-full: diffusers `from_single_file` (through `engine.loaders.load_unet`,
  which restores the LCM cond_proj) must give tensors byte-equal to the source, none on `meta`;
  the full checkpoint's VAE through diffusers' AutoencoderKL loader and its CLIP tensors too.
- GGUF: an independent read (`gguf.GGUFReader` + `gguf.quants.dequantize`), the consumer rules
  of ComfyUI-GGUF / stable-diffusion.cpp / diffusers (`engine.gguf_rules`), per-tensor error vs
  the source, output metrics of the dequantized weights (fp32, so the forward costs what an fp32
  forward costs), and a load through diffusers' `GGUFQuantizationConfig` with one small forward
  that must match the dequantized model.
- TorchAO / Quanto: `from_pretrained` reload and the probe forward.

Fail closed: a validator that raises marks its artifact failed with the reason; nothing here can
turn an error into a pass. The bot publishes only artifacts whose status is "passed".
"""

from __future__ import annotations

import gc
import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BadInput, MissingFile
from engine.manifest import Artifact, Manifest, sha256_file
from engine.original import FORMAT_ORIGINAL, original_tensors
from engine.safetensors_io import read_header, read_tensor_array
from engine.source import Source, open_source
from engine.thresholds import THRESHOLDS, check

log = logging.getLogger("unetbot.validate")


@dataclass
class Context:
    """What every validator shares: the source, its fp32 model and reference outputs."""

    source: Source
    out_dir: Path
    revision: str
    _reference: Any = None
    _model: Any = None
    _tensors: dict = field(default_factory=dict)

    @property
    def config_args(self) -> tuple[Path, str | None]:
        unet = self.source.unet.folder
        return (self.source.root, "unet") if unet != self.source.root else (unet, None)

    @property
    def torch_dtype(self):
        import torch

        return {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}[
            self.source.unet.dtype
        ]

    def source_model(self):
        if self._model is None:
            import torch
            from diffusers import UNet2DConditionModel

            self._model = UNet2DConditionModel.from_pretrained(
                str(self.source.unet.folder), torch_dtype=torch.float32
            ).eval()
        return self._model

    def reference(self):
        if self._reference is None:
            from engine.probe import reference_outputs

            self._reference = reference_outputs(self.source_model(), self.source.unet.config)
        return self._reference

    def component_tensors(self, name: str) -> dict:
        """Source tensors of one component as torch tensors (for byte-equality checks)."""
        if name not in self._tensors:
            from safetensors.torch import load_file

            component = getattr(self.source, name)
            tensors: dict = {}
            for header in component.headers:
                tensors.update(load_file(str(header.path)))
            self._tensors[name] = tensors
        return self._tensors[name]


def _first_difference(model_state: dict, reference: dict) -> str:
    import torch

    if set(model_state) != set(reference):
        diff = sorted(set(model_state) ^ set(reference))
        return f"tensor sets differ: {diff[:5]}"
    for key, value in reference.items():
        loaded = model_state[key]
        if loaded.dtype != value.dtype or not torch.equal(loaded, value):
            return f"{key} differs from the source"
    return ""


# ------------------------------------------------------------------ original


def validate_original(artifact: Artifact, ctx: Context) -> dict:
    from engine.loaders import load_unet

    path = ctx.out_dir / artifact.path
    header = read_header(path)
    problems = []
    if header.metadata.get("unetbot.format") != FORMAT_ORIGINAL:
        problems.append("metadata lacks unetbot.format")
    if header.metadata.get("unetbot.source_revision", "") != ctx.revision:
        problems.append("metadata source revision does not match the manifest")
    config, subfolder = ctx.config_args
    model = load_unet(path, config, subfolder, torch_dtype=ctx.torch_dtype)
    diff = _first_difference(model.state_dict(), ctx.component_tensors("unet"))
    if diff:
        problems.append(f"UNet via diffusers from_single_file: {diff}")
    del model
    checks = ["diffusers from_single_file (+ cond_proj restore): UNet tensors byte-equal"]
    if artifact.variant == "original-full":
        from diffusers import AutoencoderKL
        from safetensors import safe_open

        vae = AutoencoderKL.from_single_file(
            str(path), config=str(ctx.source.root), subfolder="vae", torch_dtype=ctx.torch_dtype
        )
        diff = _first_difference(vae.state_dict(), ctx.component_tensors("vae"))
        if diff:
            problems.append(f"VAE via diffusers from_single_file: {diff}")
        clip = ctx.component_tensors("text_encoder")
        with safe_open(str(path), "pt") as f:
            in_file = {
                k[len("cond_stage_model.transformer.") :]: f.get_tensor(k)
                for k in f.keys()  # noqa: SIM118 (safe_open is not iterable)
                if k.startswith("cond_stage_model.transformer.")
            }
        diff = _first_difference(in_file, clip)
        if diff:
            problems.append(f"CLIP text encoder: {diff}")
        checks += ["VAE byte-equal via AutoencoderKL.from_single_file", "CLIP tensors byte-equal"]
    exact = {"cosine": 1.0, "rel_l2": 0.0, "max_abs": 0.0}
    return _result(problems, {"output": exact, "byte_equal": not problems}, checks)


# ------------------------------------------------------------------ GGUF


def _gguf_fields(reader) -> dict[str, object]:
    fields = {}
    for name, fld in reader.fields.items():
        try:
            fields[name] = fld.contents()
        except Exception:  # an unreadable field counts as absent for the rules
            continue
    return fields


def _dequantized(reader) -> dict[str, tuple[str, tuple[int, ...], np.ndarray]]:
    import gguf

    out = {}
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = (t.tensor_type.name, shape, np.asarray(values, dtype=np.float32))
    return out


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(b.astype(np.float64)))
    return float(np.linalg.norm((a - b).astype(np.float64))) / max(denom, 1e-30)


def validate_gguf(artifact: Artifact, ctx: Context) -> dict:
    import gguf

    from engine.gguf_rules import check_gguf

    path = ctx.out_dir / artifact.path
    full = bool(artifact.details.get("full_checkpoint"))
    qtype = artifact.details.get("gguf_type", "")
    threshold = THRESHOLDS[qtype]
    reader = gguf.GGUFReader(str(path))
    fields = _gguf_fields(reader)
    expected_tensors = original_tensors(ctx.source, full)
    expected = {t.name: t.shape for t in expected_tensors}
    tensors = _dequantized(reader)
    problems = check_gguf(fields, {n: (ty, s) for n, (ty, s, _) in tensors.items()}, expected, full)
    if fields.get("unetbot.source_revision", "") != ctx.revision:
        problems.append("metadata source revision does not match the manifest")
    worst = 0.0
    worst_name = ""
    natural: dict[str, np.ndarray] = {}
    for t in expected_tensors:
        if t.name not in tensors:
            continue
        ggml_type, _shape, values = tensors[t.name]
        if values.size != math.prod(t.shape):
            problems.append(f"{t.name}: {values.size} values, expected {math.prod(t.shape)}")
            continue
        source = read_tensor_array(t.source, t.spec).astype(np.float32).reshape(t.shape)
        values = natural[t.name] = values.reshape(t.shape)
        if ggml_type in ("F16", "F32"):
            expected_values = (
                source.astype(np.float16).astype(np.float32) if ggml_type == "F16" else source
            )
            if t.spec.dtype in ("F16", "F32") and not np.array_equal(values, expected_values):
                problems.append(f"{t.name}: {ggml_type} values differ from the source")
        else:
            err = _rel_l2(values, source)
            if err > worst:
                worst, worst_name = err, t.name
    if worst > threshold.max_tensor_rel_l2:
        problems.append(f"{worst_name}: tensor rel L2 {worst:.5f} > {threshold.max_tensor_rel_l2}")
    checks = [
        "GGUFReader + gguf.quants.dequantize: every tensor vs source",
        "consumer rules: ComfyUI-GGUF, stable-diffusion.cpp, diffusers",
    ]
    metrics: dict = {"worst_tensor_rel_l2": worst, "worst_tensor": worst_name}
    if problems:
        return _result(problems, metrics, checks)
    model = _model_from_gguf_values(ctx, natural)
    metrics.update(_output_checks(model, ctx, threshold, problems))
    checks.append("probe forward of dequantized weights vs fp32 source")
    if not full:
        problems += _diffusers_gguf_load_check(path, ctx, model)
        checks.append("diffusers from_single_file + GGUFQuantizationConfig load and forward")
    del model
    return _result(problems, metrics, checks)


def _model_from_gguf_values(ctx: Context, values: dict[str, np.ndarray]):
    """An fp32 diffusers UNet holding the GGUF's dequantized weights."""
    import torch
    from diffusers import UNet2DConditionModel

    from engine.keymap import UNET_PREFIX
    from engine.loaders import to_diffusers_state_dict

    checkpoint = {n: torch.from_numpy(v) for n, v in values.items() if n.startswith(UNET_PREFIX)}
    state = to_diffusers_state_dict(checkpoint, ctx.source.unet.config)
    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(ctx.source.unet.config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()


def _diffusers_gguf_load_check(path: Path, ctx: Context, dequantized_model) -> list[str]:
    import torch
    from diffusers import GGUFQuantizationConfig

    from engine.loaders import load_unet
    from engine.probe import compare, forward, make_probe

    config, subfolder = ctx.config_args
    model = load_unet(
        path,
        config,
        subfolder,
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
    )
    small = dict(ctx.source.unet.config, sample_size=8)
    probe = make_probe(small, seed=7)
    probe.sample, probe.timesteps = probe.sample[:1], probe.timesteps[:1]
    probe.encoder_hidden_states = probe.encoder_hidden_states[:1]
    if probe.timestep_cond is not None:
        probe.timestep_cond = probe.timestep_cond[:1]
    metrics = compare(forward(dequantized_model, probe), forward(model, probe, torch.float32))
    del model
    if not metrics["cosine"] >= 0.99999:
        return [f"diffusers GGUF load gives different outputs (cosine {metrics['cosine']:.6f})"]
    return []


# ------------------------------------------------------------------ TorchAO / Quanto


def validate_diffusers_quant(artifact: Artifact, ctx: Context) -> dict:
    from engine.diffusers_quant import load_quantized_unet

    folder = ctx.out_dir / artifact.details.get("folder", artifact.variant)
    model = load_quantized_unet(folder, artifact.variant)
    problems: list[str] = []
    metrics = _output_checks(model, ctx, THRESHOLDS[artifact.variant], problems)
    del model
    checks = ["diffusers from_pretrained reload", "probe forward vs fp32 source"]
    return _result(problems, metrics, checks)


# ------------------------------------------------------------------ shared


def _output_checks(model, ctx: Context, threshold, problems: list[str]) -> dict:
    from engine.probe import output_metrics

    metrics = output_metrics(model, ctx.reference())
    for what, values in metrics.items():
        problems += check(threshold, values, what)
    return metrics


def _result(problems: list[str], metrics: dict, checks: list[str]) -> dict:
    return {
        "status": "failed" if problems else "passed",
        "reason": "; ".join(problems) if problems else "all checks passed",
        "metrics": metrics,
        "checks": checks,
    }


def _validator(artifact: Artifact):
    if artifact.variant in ("original", "original-full"):
        return validate_original
    if artifact.variant.startswith("gguf-"):
        return validate_gguf
    return validate_diffusers_quant


def _hash_problems(artifact: Artifact, out_dir: Path) -> list[str]:
    problems = []
    for f in artifact.files:
        path = out_dir / f.path
        if not path.is_file():
            problems.append(f"{f.path}: missing")
        elif path.stat().st_size != f.bytes or sha256_file(path) != f.sha256:
            problems.append(f"{f.path}: sha256 does not match the manifest")
    return problems


def validate_manifest(
    out_dir: Path,
    source_dir: Path | None = None,
    check_hashes: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> Manifest:
    """Validate every artifact of `out_dir/manifest.json`, record results, save, return it."""
    out_dir = Path(out_dir)
    manifest = Manifest.load(out_dir)
    source_path = Path(source_dir or manifest.source.get("path", ""))
    if not source_path.is_dir():
        raise MissingFile(f"{source_path}: source folder for validation not found (--source)")
    ctx = Context(open_source(source_path), out_dir, manifest.source.get("revision", ""))
    for i, artifact in enumerate(manifest.artifacts):
        if progress:
            progress(artifact.variant, i, len(manifest.artifacts))
        problems = _hash_problems(artifact, out_dir) if check_hashes else []
        if problems:
            artifact.validation = _result(problems, {}, ["sha256 of every file"])
        else:
            started = time.perf_counter()
            try:
                artifact.validation = _validator(artifact)(artifact, ctx)
            except Exception as exc:  # fail closed: any crash is a failed artifact
                log.debug("validator crashed:\n%s", traceback.format_exc())
                artifact.validation = _result([f"{type(exc).__name__}: {exc}"], {}, [])
            artifact.validation["seconds"] = round(time.perf_counter() - started, 3)
        gc.collect()
        log.info(
            "validated %s: %s (%s)",
            artifact.variant,
            artifact.validation["status"],
            artifact.validation["reason"][:200],
        )
        manifest.save(out_dir)
    return manifest


def validate_folder(folder: Path, source_dir: Path | None = None) -> Manifest:
    """`bot validate DIR`: sha256 of every file first, then every artifact."""
    if not (Path(folder) / "manifest.json").is_file():
        raise BadInput(f"{folder}: no manifest.json")
    return validate_manifest(Path(folder), source_dir, check_hashes=True)
