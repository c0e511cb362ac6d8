"""Quantized UNet folders that diffusers loads itself (TorchAO int8 weight-only, Quanto int8/fp8).

These variants are not original-format files: they are diffusers model folders (`config.json`
with a `quantization_config` + safetensors) written by diffusers' own quantizers, because a file
quantized directly with torchao or optimum-quanto is not what `from_pretrained` reads back. Both
quantizers replace `nn.Linear` weights only; convolutions, norms and biases stay floating point.

The dtype story, end to end (numbers measured on CPU, torch 2.13, torchao 0.18, quanto 0.2.7):

* Quantize in the source's half dtype (`stored_dtype`): fp16 for fp16 sources, bf16 for bf16
  sources, fp16 for fp32 sources (the SD1.5 publishing convention; a value that overflows fp16
  is caught by the non-finite check). Non-quantized layers are then stored bit-for-bit as in a
  half source and the file is smaller than the source. diffusers warns that TorchAO integer
  modes want bf16; measured here, fp16 int8 weight-only quantizes, saves and runs, and
  casting an fp16 source to bf16 throws away 3 mantissa bits of every kept layer (cosine vs
  fp32 drops from 0.99993 to 0.99982 on the tiny UNet).
* Load on CPU with `torch_dtype=float32` (`LOAD_DTYPE`) and feed float32 inputs. The fp16 ->
  fp32 upcast of kept layers is exact, so validation measures quantization error only. Not
  bf16: optimum-quanto's int8 CPU matmul segfaults on bf16 activations, and diffusers' torchao
  default (bf16 when no `torch_dtype` is given) adds bf16 rounding. Not fp16: CPU fp16
  convolutions are ~300x slower than fp32 here (25 s for one 320-channel 64x64 conv).
  GPU users would load with `torch_dtype=<stored_dtype>` (recorded for the model card; not
  verified here, this machine has no GPU).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from engine.errors import (
    MissingFile,
    NonFiniteWeights,
    PickleRefused,
    ValidationFailed,
)
from engine.formats.fsio import announce
from engine.formats.safetensors_io import read_header
from engine.source.layout import PICKLE_SUFFIXES, Precision, list_local_files, select_weights

if TYPE_CHECKING:
    import torch
    from diffusers import UNet2DConditionModel

log = logging.getLogger("unetbot.engine")

LOAD_DTYPE = "float32"

_STEM = "diffusion_pytorch_model"
_WEIGHTS = f"{_STEM}.safetensors"
_HALF_DTYPES = {"F16": "float16", "BF16": "bfloat16"}
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


@dataclass(frozen=True)
class QuantScheme:
    """One diffusers quantization: which backend, which weight type, and the folder name.

    The variant registry (engine.run.variants) carries one of these per diffusers-quantized
    variant; nothing here reads meaning out of a variant's name."""

    name: str  # the variant name; also the output folder's name
    method: str  # diffusers' `quant_method`: "torchao" | "quanto"
    weights_dtype: str  # torchao: "int8" (weight-only); quanto: "int8" | "float8"

    def quantization_config(self):
        from diffusers import QuantoConfig, TorchAoConfig

        if self.method == "torchao":
            from torchao.quantization import Int8WeightOnlyConfig

            return TorchAoConfig(Int8WeightOnlyConfig())
        with _quiet_known_warnings():
            return QuantoConfig(weights_dtype=self.weights_dtype)

    def matches(self, quantization_config: dict) -> bool:
        """Whether a saved `quantization_config` (config.json) is this scheme."""
        if quantization_config.get("quant_method") != self.method:
            return False
        return self.method != "quanto" or (
            quantization_config.get("weights_dtype") == self.weights_dtype
        )


SCHEMES: dict[str, QuantScheme] = {
    s.name: s
    for s in (
        QuantScheme("torchao-int8wo", "torchao", "int8"),
        QuantScheme("quanto-int8", "quanto", "int8"),
        QuantScheme("quanto-float8", "quanto", "float8"),
    )
}


def scheme_for(scheme: QuantScheme | str) -> QuantScheme:
    if isinstance(scheme, QuantScheme):
        return scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unknown variant {scheme!r}; diffusers quantizations: {list(SCHEMES)}")
    return SCHEMES[scheme]


@dataclass(frozen=True)
class DiffusersQuantResult:
    """What `quantize_unet` wrote; `load_dtype` is what validation and the model card load with."""

    variant: str
    folder: Path
    files: list[Path]
    load_dtype: str
    quantized_linear: int
    kept_linear: int
    bytes: int
    stored_dtype: str = "float16"


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


@contextmanager
def _quiet_known_warnings() -> Iterator[None]:
    """Silence the two warnings this module answers by design, and nothing else: Quanto's
    deprecation notice, and diffusers' "only bfloat16 is supported" for TorchAO integer modes
    (we store the source's fp16 and load in fp32 on purpose; see the module docstring)."""
    torchao_log = logging.getLogger("diffusers.quantizers.torchao.torchao_quantizer")
    drop = _DropMessage("only bfloat16 is supported")
    torchao_log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Quanto.*", category=FutureWarning)
            yield
    finally:
        torchao_log.removeFilter(drop)


def _refuse_or_missing(folder: Path) -> NoReturn:
    """No safetensors weights: name the pickle files if that is all there is, else the file."""
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise PickleRefused(
            f"{folder}: only pickle weights ({', '.join(pickles)}); "
            f"unetbot loads safetensors only, convert to {_WEIGHTS} first"
        )
    raise MissingFile(f"{folder / _WEIGHTS}: weights file not found")


def _source_files(unet_dir: Path) -> tuple[list[Path], str | None]:
    """Weights files of a diffusers UNet folder and the diffusers `variant` they use.

    The same rule as every other reader (engine.source.layout, `Precision.HALF`: the fp16 variant
    when present, else the main weights): quantized outputs are stored in half precision, so
    the fp32 file is never needed for them."""
    config = unet_dir / "config.json"
    if not config.is_file():
        raise MissingFile(f"{config}: config file not found")
    files = list_local_files(unet_dir)
    chosen = select_weights(files, "", _STEM, Precision.HALF)
    if chosen is None:
        _refuse_or_missing(unet_dir)
    if chosen.problem:
        raise MissingFile(f"{unet_dir}: {chosen.problem}")
    return [unet_dir / p for p in chosen.weights], chosen.variant


def _header_dtypes(path: Path) -> set[str]:
    """Safetensors dtypes of one file, from its validated header (engine.formats.safetensors_io: the
    one header parser, with its limits)."""
    return {t.dtype for t in read_header(path).tensors}


def _stored_dtype(files: list[Path]) -> str:
    """The half dtype to quantize in and store: the source's own, else float16."""
    floats = set().union(*(_header_dtypes(f) for f in files)) & _FLOAT_DTYPES
    if len(floats) == 1 and next(iter(floats)) in _HALF_DTYPES:
        return _HALF_DTYPES[next(iter(floats))]
    return "float16"


def _leaves(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Plain tensors behind a tensor subclass (torchao/quanto weights flatten to data + scale)."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return [leaf for n in names for leaf in _leaves(getattr(tensor, n))]
    return [tensor]


def meta_tensor_names(model: torch.nn.Module, wrappers: bool = True) -> list[str]:
    """Parameters/buffers with storage on `meta` (never loaded); `wrappers` also flags subclass
    tensors whose own `.device` says meta even though their data is real (quanto after load)."""
    bad = []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if any(leaf.device.type == "meta" for leaf in _leaves(tensor)) or (
            wrappers and tensor.device.type == "meta"
        ):
            bad.append(name)
    return bad


def _non_finite(model: torch.nn.Module) -> list[str]:
    import torch

    return [
        name
        for name, tensor in model.state_dict().items()
        for leaf in _leaves(tensor)
        if leaf.is_floating_point() and not bool(torch.isfinite(leaf.float()).all())
    ]


def count_linear(model: torch.nn.Module) -> tuple[int, int]:
    """(quantized, kept) Linear layers: quanto swaps in QLinear, torchao swaps the weight."""
    import torch

    quantized = kept = 0
    for module in model.modules():
        qmodule = type(module).__name__ == "QLinear"
        if not (qmodule or isinstance(module, torch.nn.Linear)):
            continue
        subclass = type(module.weight) not in (torch.Tensor, torch.nn.Parameter)
        if qmodule or subclass:
            quantized += 1
        else:
            kept += 1
    return quantized, kept


def _canonical_header(path: Path) -> None:
    """Sort a safetensors file's `__metadata__` in place so equal inputs give equal bytes.

    safetensors writes metadata from a Rust HashMap, so its order (and the file hash) changes
    from run to run; torchao puts one metadata entry per tensor. Tensor data is untouched and
    the header keeps its length (padded with spaces, as safetensors itself pads).
    """
    read_header(path)  # the one validating parser; the raw JSON below is then known good
    with path.open("r+b") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > length:
            log.warning("%s: canonical header longer than written one; left as is", path)
            return
        f.seek(8)
        f.write(text + b" " * (length - len(text)))


def _fail_on_pickles(folder: Path) -> None:
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ValidationFailed(f"{folder}: diffusers wrote pickle weights {pickles}; refusing")


def quantize_unet(
    unet_dir: Path, out_folder: Path, scheme: QuantScheme | str
) -> DiffusersQuantResult:
    """Quantize a diffusers `unet/` folder with diffusers' quantizer into `out_folder`.

    Written into a temp folder beside `out_folder` and renamed at the end, so a failure leaves
    nothing under the final name (an existing `out_folder` is replaced only on success).
    """
    scheme = scheme_for(scheme)
    variant = scheme.name
    unet_dir, out_folder = Path(unet_dir), Path(out_folder)
    files, file_variant = _source_files(unet_dir)
    source_bytes = sum(f.stat().st_size for f in files)
    stored = _stored_dtype(files)

    import torch
    from diffusers import UNet2DConditionModel

    out_folder.parent.mkdir(parents=True, exist_ok=True)
    announce(out_folder)  # the run journal lists it before its temp folder exists
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_folder.name}.tmp-", dir=out_folder.parent))
    try:
        log.info("quantizing %s as %s in %s", unet_dir, variant, stored)
        with _quiet_known_warnings():
            model = UNet2DConditionModel.from_pretrained(
                unet_dir,
                quantization_config=scheme.quantization_config(),
                torch_dtype=getattr(torch, stored),
                use_safetensors=True,
                variant=file_variant,
            )
        unloaded = meta_tensor_names(model, wrappers=False)
        if unloaded:
            raise ValidationFailed(f"{unet_dir}: {variant} left tensors on meta: {unloaded[:5]}")
        non_finite = _non_finite(model)
        if non_finite:
            raise NonFiniteWeights(f"{unet_dir}: NaN/Inf in {stored}: {non_finite[:5]}")
        quantized, kept = count_linear(model)
        if quantized == 0:
            raise ValidationFailed(f"{unet_dir}: {variant} quantized no Linear layer")
        model.save_pretrained(tmp, safe_serialization=True)
        del model
        _fail_on_pickles(tmp)
        written = sorted(p for p in tmp.iterdir() if p.is_file())
        for path in written:
            if path.suffix == ".safetensors":
                _canonical_header(path)
        size = sum(p.stat().st_size for p in written if p.suffix == ".safetensors")
        if size >= source_bytes:
            raise ValidationFailed(
                f"{variant}: {size} bytes, not smaller than source {source_bytes}"
            )
        if out_folder.exists():
            shutil.rmtree(out_folder)
        os.replace(tmp, out_folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "%s: %d Linear quantized, %d kept, %d bytes (source %d)",
        variant,
        quantized,
        kept,
        size,
        source_bytes,
    )
    return DiffusersQuantResult(
        variant=variant,
        folder=out_folder,
        files=[out_folder / p.name for p in written],
        load_dtype=LOAD_DTYPE,
        quantized_linear=quantized,
        kept_linear=kept,
        bytes=size,
        stored_dtype=stored,
    )


def _check_quant_config(folder: Path, scheme: QuantScheme) -> None:
    """The folder must hold the quantization asked for, not another one or none."""
    config = folder / "config.json"
    if not config.is_file():
        raise MissingFile(f"{config}: config file not found")
    qc = json.loads(config.read_text()).get("quantization_config") or {}
    if not scheme.matches(qc):
        raise ValidationFailed(f"{config}: quantization_config {qc} is not {scheme.name}")
    if not any(folder.glob("diffusion_pytorch_model*.safetensors")):
        _refuse_or_missing(folder)


def _rewrap_quanto(model: torch.nn.Module) -> None:
    """Rebuild quanto weight wrappers whose `.device` still says meta after diffusers loaded
    their `_data`/`_scale` into them in place (the data is on CPU, the wrapper never learns)."""
    import torch

    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is None or weight.device.type != "meta" or not hasattr(weight, "_scale"):
            continue
        names, ctx = weight.__tensor_flatten__()
        inner = {n: getattr(weight, n) for n in names}
        if any(t.device.type == "meta" for t in inner.values()):
            continue
        rebuilt = type(weight).__tensor_unflatten__(inner, ctx, weight.size(), weight.stride())
        module.weight = torch.nn.Parameter(rebuilt, requires_grad=False)


def load_quantized_unet(folder: Path, scheme: QuantScheme | str) -> UNet2DConditionModel:
    """Load a folder written by `quantize_unet` on CPU in `LOAD_DTYPE`, in eval mode.

    Raises `ValidationFailed` if any tensor is left on `meta` (e.g. an LCM `cond_proj` the
    quantizer skipped), which would otherwise only fail at the first forward pass.
    """
    scheme = scheme_for(scheme)
    folder = Path(folder)
    _check_quant_config(folder, scheme)

    import torch
    from diffusers import UNet2DConditionModel

    with _quiet_known_warnings():
        model = UNet2DConditionModel.from_pretrained(
            folder, torch_dtype=getattr(torch, LOAD_DTYPE), use_safetensors=True
        )
    if scheme.method == "quanto":
        _rewrap_quanto(model)
    bad = meta_tensor_names(model)
    if bad:
        raise ValidationFailed(f"{folder}: {len(bad)} tensors on meta after loading: {bad[:5]}")
    return model.eval()
