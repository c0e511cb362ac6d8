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

import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BadInput, MissingFile
from engine.manifest import Artifact, Manifest, sha256_file
from engine.memory import release_memory
from engine.original import FORMAT_ORIGINAL, original_tensors
from engine.safetensors_io import read_header, read_tensor_array, read_tensor_bytes
from engine.source import Source, open_source
from engine.thresholds import THRESHOLDS, check

log = logging.getLogger("unetbot.validate")


@dataclass(frozen=True)
class PassedGGUF:
    """A UNet-only GGUF that passed: a full GGUF with the same UNet bytes shares its results."""

    variant: str
    path: Path
    outputs: dict
    worst: tuple[float, str]


@dataclass
class Context:
    """What every validator shares: the source and the fp32 reference outputs.

    Nothing big is kept: the fp32 source model lives only while the reference outputs are
    computed, and source tensors are read one at a time (memory-mapped), so the peak is one
    model at a time."""

    source: Source
    out_dir: Path
    revision: str
    grid: bool = False  # keep each variant's LCM sample for the validation grid
    _reference: Any = None
    # GGUF type -> the UNet-only GGUF of that type that passed in this run
    gguf_passed: dict[str, PassedGGUF] = field(default_factory=dict)
    # variant -> final LCM latents (only with `grid`)
    samples: dict[str, Any] = field(default_factory=dict)

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

    def reference(self):
        if self._reference is None:
            import torch
            from diffusers import UNet2DConditionModel

            from engine.probe import reference_outputs

            model = UNet2DConditionModel.from_pretrained(
                str(self.source.unet.folder), torch_dtype=torch.float32
            ).eval()
            self._reference = reference_outputs(model, self.source.unet.config)
            del model
            release_memory()
        return self._reference

    def component_tensors(self, name: str) -> Iterator[tuple[str, Any]]:
        """Source tensors of one component, one at a time (for byte-equality checks)."""
        from safetensors import safe_open

        for header in getattr(self.source, name).headers:
            with safe_open(str(header.path), "pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                    yield key, f.get_tensor(key)


def _first_difference(loaded: dict, reference: Iterable[tuple[str, Any]]) -> str:
    """'' when `loaded` holds exactly the reference tensors, byte for byte; else the first
    difference."""
    import torch

    seen = set()
    for key, value in reference:
        seen.add(key)
        got = loaded.get(key)
        if got is None:
            return f"{key} is missing"
        if got.dtype != value.dtype or not torch.equal(got, value):
            return f"{key} differs from the source"
    extra = sorted(set(loaded) - seen)
    return f"unexpected tensors: {extra[:5]}" if extra else ""


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


def _rel_l2(a, b) -> float:
    """Relative L2 error of torch tensor `a` against `b`.

    float32 norms: ~7x faster than widening 268M values to float64 per GGUF, and the metric
    moves by ~1e-4 of itself, far inside the thresholds' 2x margin."""
    import torch

    diff = torch.linalg.vector_norm(a - b).item()
    return diff / max(torch.linalg.vector_norm(b).item(), 1e-30)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bytes (no copies: compares 8-byte words in place).

    A byte compare, not `==` on floats: NaN payloads and signed zeros count too."""
    if a.nbytes != b.nbytes:
        return False
    word = np.uint64 if a.nbytes % 8 == 0 else np.uint8
    a = np.ascontiguousarray(a).reshape(-1).view(np.uint8).view(word)
    b = np.ascontiguousarray(b).reshape(-1).view(np.uint8).view(word)
    return bool(np.array_equal(a, b))


def _float32(array: np.ndarray, shape: tuple[int, ...]):
    """A new float32 torch tensor of `array` (file data: memory-mapped and read-only).

    torch converts float16 with F16C in one pass; NumPy's own float16 cast is ~4x slower, and
    copying the read-only map first would add a pass. The map is only read here."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": never written
        view = torch.from_numpy(np.asarray(array).reshape(shape))
    return view.to(torch.float32, copy=True)


def _unet_tensors(reader) -> dict:
    from engine.keymap import UNET_PREFIX

    return {t.name: t for t in reader.tensors if t.name.startswith(UNET_PREFIX)}


def _same_unet(reader, other_path: Path) -> bool:
    """Whether this GGUF's UNet tensors equal, name by name and byte for byte, those of
    `other_path` (a GGUF that passed validation in this run)."""
    import gguf

    mine = _unet_tensors(reader)
    theirs = _unet_tensors(gguf.GGUFReader(str(other_path)))
    if mine.keys() != theirs.keys():
        return False
    return all(
        t.tensor_type == theirs[name].tensor_type
        and list(t.shape) == list(theirs[name].shape)
        and _same_bytes(t.data, theirs[name].data)
        for name, t in mine.items()
    )


def _compare_tensors(reader, expected_tensors, problems: list[str]):
    """Check one tensor at a time against the source.

    F16/F32 tensors stored in the source's own dtype must be bit-identical (a byte compare, no
    conversion); quantized ones are dequantized with gguf-py and measured. Returns the worst
    quantized-tensor rel L2 (and its name) and the UNet values (torch, natural shapes) for the
    forward pass; VAE/CLIP values are dropped after their check."""
    import gguf
    import torch

    from engine.keymap import UNET_PREFIX

    by_name = {t.name: t for t in reader.tensors}
    worst, worst_name = 0.0, ""
    unet: dict[str, torch.Tensor] = {}
    for t in expected_tensors:
        tensor = by_name.get(t.name)
        if tensor is None:
            continue
        ggml_type = tensor.tensor_type.name
        data = tensor.data
        if ggml_type in ("F16", "F32"):
            if data.size != math.prod(t.shape):
                problems.append(f"{t.name}: {data.size} values, expected {math.prod(t.shape)}")
                continue
            values = _float32(data, t.shape)
            if ggml_type == t.spec.dtype:
                raw = np.frombuffer(read_tensor_bytes(t.source, t.spec), np.uint8)
                if not _same_bytes(data, raw):
                    problems.append(f"{t.name}: {ggml_type} values differ from the source")
            else:
                source = _float32(read_tensor_array(t.source, t.spec), t.shape)
                exact = source.to(torch.float16).float() if ggml_type == "F16" else source
                if not torch.equal(values, exact):
                    problems.append(f"{t.name}: {ggml_type} values differ from the source")
        else:
            deq = np.asarray(gguf.quants.dequantize(data, tensor.tensor_type), np.float32)
            if deq.size != math.prod(t.shape):
                problems.append(f"{t.name}: {deq.size} values, expected {math.prod(t.shape)}")
                continue
            values = torch.from_numpy(deq.reshape(t.shape))
            err = _rel_l2(values, _float32(read_tensor_array(t.source, t.spec), t.shape))
            if err > worst:
                worst, worst_name = err, t.name
        if t.name.startswith(UNET_PREFIX):
            unet[t.name] = values
    return worst, worst_name, unet


def validate_gguf(artifact: Artifact, ctx: Context) -> dict:
    import gguf

    from engine.gguf_rules import check_gguf
    from engine.probe import forward

    path = ctx.out_dir / artifact.path
    full = bool(artifact.details.get("full_checkpoint"))
    qtype = artifact.details.get("gguf_type", "")
    threshold = THRESHOLDS[qtype]
    reader = gguf.GGUFReader(str(path))
    fields = _gguf_fields(reader)
    expected_tensors = original_tensors(ctx.source, full)
    expected = {t.name: t.shape for t in expected_tensors}
    found = {
        t.name: (t.tensor_type.name, tuple(int(d) for d in reversed(t.shape.tolist())))
        for t in reader.tensors
    }
    problems = check_gguf(fields, found, expected, full)
    if fields.get("unetbot.source_revision", "") != ctx.revision:
        problems.append("metadata source revision does not match the manifest")
    checks = [
        "GGUFReader + gguf.quants.dequantize: every tensor vs source",
        "consumer rules: ComfyUI-GGUF, stable-diffusion.cpp, diffusers",
    ]
    earlier = ctx.gguf_passed.get(qtype) if full else None
    shared = earlier if earlier is not None and _same_unet(reader, earlier.path) else None
    if shared is not None:
        # The UNet bytes equal those of the UNet-only GGUF of the same type, validated in this
        # run: only the other tensors (VAE, CLIP) still need comparing.
        from engine.keymap import UNET_PREFIX

        expected_tensors = [t for t in expected_tensors if not t.name.startswith(UNET_PREFIX)]
    worst, worst_name, unet = _compare_tensors(reader, expected_tensors, problems)
    # Drop the memory map: pages of the file touched so far count as this process's RSS.
    del reader
    release_memory()
    if shared is not None:
        worst, worst_name = max((worst, worst_name), shared.worst)
    if worst > threshold.max_tensor_rel_l2:
        problems.append(f"{worst_name}: tensor rel L2 {worst:.5f} > {threshold.max_tensor_rel_l2}")
    metrics: dict = {"worst_tensor_rel_l2": worst, "worst_tensor": worst_name}
    if problems:
        return _result(problems, metrics, checks)
    if shared is not None:
        # Same UNet bytes as a GGUF already run (the full checkpoint of the same type):
        # identical weights give identical outputs, so its output metrics are this file's.
        metrics.update(shared.outputs)
        checks.append(f"UNet tensors byte-identical to {shared.variant}: output metrics shared")
        return _result(problems, metrics, checks)
    model = _model_from_gguf_values(ctx, unet)
    del unet
    outputs = _output_checks(model, ctx, artifact.variant, threshold, problems)
    metrics.update(outputs)
    checks.append("probe forward of dequantized weights vs fp32 source")
    small_probe = _small_probe(ctx)
    small_out = forward(model, small_probe)  # fp32, for the diffusers load check below
    del model
    release_memory()
    if not full:
        problems += _diffusers_gguf_load_check(path, ctx, small_probe, small_out)
        checks.append("diffusers from_single_file + GGUFQuantizationConfig load and forward")
    if not problems and not full:
        ctx.gguf_passed[qtype] = PassedGGUF(artifact.variant, path, outputs, (worst, worst_name))
    return _result(problems, metrics, checks)


def _model_from_gguf_values(ctx: Context, values: dict):
    """An fp32 diffusers UNet holding the GGUF's weights (dequantized; F16 ones widened)."""
    import torch
    from diffusers import UNet2DConditionModel

    from engine.loaders import to_diffusers_state_dict

    state = to_diffusers_state_dict(values, ctx.source.unet.config)
    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(ctx.source.unet.config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()


def _small_probe(ctx: Context):
    """One batch row at an 8x8 latent: enough to compare two loads of the same weights."""
    from engine.probe import make_probe

    probe = make_probe(dict(ctx.source.unet.config, sample_size=8), seed=7)
    probe.sample, probe.timesteps = probe.sample[:1], probe.timesteps[:1]
    probe.encoder_hidden_states = probe.encoder_hidden_states[:1]
    if probe.timestep_cond is not None:
        probe.timestep_cond = probe.timestep_cond[:1]
    return probe


def _diffusers_gguf_load_check(path: Path, ctx: Context, probe, expected) -> list[str]:
    """diffusers' own GGUF path must compute what the dequantized weights compute."""
    import torch
    from diffusers import GGUFQuantizationConfig

    from engine.loaders import load_unet
    from engine.probe import compare, forward

    config, subfolder = ctx.config_args
    model = load_unet(
        path,
        config,
        subfolder,
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
    )
    metrics = compare(expected, forward(model, probe, torch.float32))
    del model
    if not metrics["cosine"] >= 0.99999:
        return [f"diffusers GGUF load gives different outputs (cosine {metrics['cosine']:.6f})"]
    return []


# ------------------------------------------------------------------ TorchAO / Quanto


def validate_diffusers_quant(artifact: Artifact, ctx: Context) -> dict:
    from engine.diffusers_quant import load_quantized_unet

    folder = ctx.out_dir / artifact.details.get("folder", artifact.variant)
    from engine.variants import variant

    scheme = variant(artifact.variant).quant_scheme
    assert scheme is not None
    model = load_quantized_unet(folder, scheme)
    problems: list[str] = []
    metrics = _output_checks(model, ctx, artifact.variant, THRESHOLDS[artifact.variant], problems)
    del model
    checks = ["diffusers from_pretrained reload", "probe forward vs fp32 source"]
    return _result(problems, metrics, checks)


# ------------------------------------------------------------------ shared


def _output_checks(model, ctx: Context, variant: str, threshold, problems: list[str]) -> dict:
    from engine.probe import output_metrics

    metrics, sampled = output_metrics(model, ctx.reference())
    for what, values in metrics.items():
        problems += check(threshold, values, what)
    if ctx.grid and sampled is not None:
        ctx.samples[variant] = sampled
    return metrics


def _result(problems: list[str], metrics: dict, checks: list[str]) -> dict:
    return {
        "status": "failed" if problems else "passed",
        "reason": "; ".join(problems) if problems else "all checks passed",
        "metrics": metrics,
        "checks": checks,
    }


def _validator(artifact: Artifact):
    from engine.variants import variant

    return variant(artifact.variant).validate


def _hash_problems(artifact: Artifact, out_dir: Path) -> list[str]:
    problems = []
    for f in artifact.files:
        path = out_dir / f.path
        if not path.is_file():
            problems.append(f"{f.path}: missing")
        elif path.stat().st_size != f.bytes or sha256_file(path) != f.sha256:
            problems.append(f"{f.path}: sha256 does not match the manifest")
    return problems


def validate_artifact(artifact: Artifact, ctx: Context, check_hashes: bool = False) -> None:
    """Validate one artifact and record the result in `artifact.validation` (never raises for
    a bad artifact: any validator crash is recorded as a failure)."""
    problems = _hash_problems(artifact, ctx.out_dir) if check_hashes else []
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
    release_memory()
    log.info(
        "validated %s: %s (%s)",
        artifact.variant,
        artifact.validation["status"],
        artifact.validation["reason"][:200],
    )


def write_validation_grid(ctx: Context, manifest: Manifest) -> None:
    """With `ctx.grid`: the source's and every passed variant's LCM sample, decoded by the
    source's VAE, in one PNG recorded as `manifest.grid` (engine.grid says why and when)."""
    from engine.grid import GRID_NAME, SOURCE_LABEL, GridColumn, write_grid

    if not ctx.grid or ctx.source.vae is None or not ctx.samples:
        return
    # samples only exist after output checks, which computed (and cached) the reference
    columns = [GridColumn(SOURCE_LABEL, ctx.reference().sampled)]
    columns += [
        GridColumn(a.variant, ctx.samples[a.variant])
        for a in manifest.artifacts
        if a.passed and a.variant in ctx.samples
    ]
    write_grid(ctx.source.vae.folder, columns, ctx.out_dir / GRID_NAME)
    manifest.grid = GRID_NAME
    release_memory()


def needs_reference(variants: Iterable[str]) -> bool:
    """Whether any of these variants is checked against the fp32 reference outputs."""
    from engine.variants import VARIANTS

    return any(VARIANTS[name].threshold is not None for name in variants)


def validate_manifest(
    out_dir: Path,
    source_dir: Path | None = None,
    check_hashes: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    grid: bool = False,
) -> Manifest:
    """Validate every artifact of `out_dir/manifest.json`, record results, save, return it."""
    out_dir = Path(out_dir)
    manifest = Manifest.load(out_dir)
    source_path = Path(source_dir or manifest.source.get("path", ""))
    if not source_path.is_dir():
        raise MissingFile(f"{source_path}: source folder for validation not found (--source)")
    ctx = Context(open_source(source_path), out_dir, manifest.source.get("revision", ""), grid)
    release_memory()
    if needs_reference(a.variant for a in manifest.artifacts):
        ctx.reference()  # now, while no artifact model is in memory
    for i, artifact in enumerate(manifest.artifacts):
        if progress:
            progress(artifact.variant, i, len(manifest.artifacts))
        validate_artifact(artifact, ctx, check_hashes)
        manifest.save(out_dir)
    write_validation_grid(ctx, manifest)
    manifest.save(out_dir)
    return manifest


def validate_folder(folder: Path, source_dir: Path | None = None, grid: bool = False) -> Manifest:
    """`bot validate DIR`: sha256 of every file first, then every artifact."""
    if not (Path(folder) / "manifest.json").is_file():
        raise BadInput(f"{folder}: no manifest.json")
    return validate_manifest(Path(folder), source_dir, check_hashes=True, grid=grid)
