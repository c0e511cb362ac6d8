"""Write one SD1.5 GGUF that ComfyUI-GGUF, stable-diffusion.cpp and diffusers all load.

Layout (formats.md section 4, checked against each project's own code):

- natural shapes and the original names as given (`model.diffusion_model.*`, plus
  `first_stage_model.*` / `cond_stage_model.*` in full checkpoints); `general.architecture = sd1`
  (ComfyUI-GGUF `tools/convert.py` `ModelSD1.arch`; sd.cpp never reads it; diffusers ignores it),
  `general.file_type` (a `gguf.LlamaFileType`) and `general.quantization_version`;
- only 2-D UNet Linear weights are quantized:
  * diffusers `quantizers/gguf/utils.py` `_replace_with_gguf_linear` swaps only `nn.Linear`
    modules for GGUF ones, and `models/model_loading_utils.py` `load_gguf_checkpoint` treats every
    type but F16/F32 (BF16 included) as quantized, so convs, norms and biases must stay F16/F32;
  * stable-diffusion.cpp `model.cpp` `ModelLoader::tensor_should_be_converted` never quantizes
    rows whose length is not a multiple of the block, `.bias`, `.scale` or names containing
    `embedding`;
  * ComfyUI-GGUF `tools/lcpp.patch` (its llama.cpp quantizer) for `sd1` quantizes only 2-D
    tensors and never `time_embed.`, `time_embedding.`, `label_emb.`, `add_embedding.`,
    `class_embedding.`, `conv_in`/`conv_out` (`input_blocks.0.0`, `out.2`);
- kept tensors are F16, except F32/BF16 sources that are 1-D or have <= 1024 values, which stay
  F32 (ComfyUI-GGUF `tools/convert.py`: `QUANTIZATION_THRESHOLD = 1024`, 1-D -> F32), since
  BF16 -> F16 is lossy for them and they cost nothing;
- VAE and CLIP tensors are never quantized (none of the three quantizes them for SD1).

Streaming: the header, KV data and tensor infos are written first from names and shapes alone,
then each tensor is loaded, converted or quantized and written, the next one being prepared on a
worker thread meanwhile; at most two tensors' values are in memory. The file is written to a
hidden temp file beside the target, fsynced and renamed, and removed on any error.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from engine.errors import NonFiniteWeights
from engine.formats.fsio import atomic_output, copy_range
from engine.formats.gguf_quants import quantize
from engine.formats.output_hash import OutputHash, SourceStamps, sha256_file
from engine.source.keymap import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX
from engine.writers.gguf_rules import ARCHITECTURE

logger = logging.getLogger("unetbot.engine")

_VAE_CLIP_PREFIXES = (VAE_PREFIX, CLIP_PREFIX)
# UNet modules that ComfyUI-GGUF's lcpp.patch (sd1) and sd.cpp ("embedding") never quantize.
_TIME_EMBEDDINGS = ("time_embed.", "time_embedding.")
_OTHER_EMBEDDINGS = ("label_emb.", "add_embedding.", "class_embedding.")
# ComfyUI-GGUF tools/convert.py QUANTIZATION_THRESHOLD: F32/BF16 tensors this small stay F32.
SMALL_TENSOR_THRESHOLD = 1024
# Start disk write-back every this many bytes (see _DataWriter).
_WRITEBACK_BYTES = 256 * 1024 * 1024
# Tensors prepared (loaded, converted, quantized) ahead of the one being written.
_PREFETCH = 2

TARGETS: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "F16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "Q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "Q5_0": (GGMLQuantizationType.Q5_0, LlamaFileType.MOSTLY_Q5_0),
    "Q5_1": (GGMLQuantizationType.Q5_1, LlamaFileType.MOSTLY_Q5_1),
    "Q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "Q4_1": (GGMLQuantizationType.Q4_1, LlamaFileType.MOSTLY_Q4_1),
}
SOURCE_DTYPES = ("F16", "BF16", "F32")
_RESERVED_KEYS = {
    gguf.Keys.General.ARCHITECTURE,
    gguf.Keys.General.FILE_TYPE,
    gguf.Keys.General.QUANTIZATION_VERSION,
    gguf.Keys.General.ALIGNMENT,
}

REASON_VAE_CLIP = "VAE/CLIP"
REASON_OTHER = "not a UNet tensor"
REASON_SMALL = "1-D/bias/norm"
REASON_CONV = "conv weight"
REASON_NOT_LINEAR = "not a 2-D Linear weight"
REASON_TIME = "time embedding (sd.cpp/ComfyUI-GGUF never quantize time_embed)"
REASON_EMBEDDING = "embedding (sd.cpp/ComfyUI-GGUF never quantize embeddings)"
REASON_ROW = "row not multiple of block"


@dataclass(frozen=True)
class GGUFSource:
    """One tensor to write; `load` is called once, when the tensor's turn comes."""

    name: str  # original-format name, prefix included
    shape: tuple[int, ...]
    dtype: str  # source dtype: "F16" | "BF16" | "F32"
    load: Callable[[], np.ndarray]  # float16 or float32 values (bf16 given as float32)
    # Where bytes already encoded as `raw_type` (default: the source dtype) sit (file, absolute
    # offset), when the caller knows. If the policy stores the tensor as that type, the bytes are
    # copied in the kernel (copy_file_range), never loaded: a tensor kept in its own dtype, or a
    # UNet tensor already quantized into another GGUF of this run by this same writer.
    raw_at: tuple[Path, int] | None = None
    raw_type: str | None = None


@dataclass(frozen=True)
class _RawCopy:
    """A tensor whose stored bytes are the source's bytes: copied, not loaded."""

    path: Path
    offset: int
    nbytes: int


@dataclass(frozen=True)
class TensorChoice:
    """The GGML type a tensor is stored as, and why; `shape`: the stored shape when it is not
    the natural one (ComfyUI-GGUF's 256-wide rows, engine.writers.comfy_gguf), same values in
    order."""

    name: str
    ggml_type: str
    reason: str
    shape: tuple[int, ...] | None = None


# (name, natural shape, source dtype, target) -> how the tensor is stored
Policy = Callable[[str, tuple[int, ...], str, str], TensorChoice]


@dataclass(frozen=True)
class GGUFReport:
    """What `write_gguf` wrote: counts per stored type and per reason, and every choice."""

    path: Path
    file_type: str  # gguf.LlamaFileType name, e.g. "MOSTLY_Q8_0"
    tensor_count: int
    quantized: int
    kept: dict[str, int]  # {"F16": n, "F32": m} for tensors not quantized
    reasons: dict[str, int]
    choices: list[TensorChoice]
    sha256: str  # of the whole file, computed while writing it (engine.formats.output_hash)


def kept_type(shape: tuple[int, ...], source_dtype: str) -> str:
    """F16, or F32 for small F32/BF16 tensors (lossless and as ComfyUI-GGUF's tools do)."""
    if source_dtype != "F16" and (len(shape) <= 1 or math.prod(shape) <= SMALL_TENSOR_THRESHOLD):
        return "F32"
    return "F16"


def _keep_reason(name: str, shape: tuple[int, ...], block_size: int) -> str | None:
    """Why a tensor must not be quantized, or None for a quantizable UNet Linear weight."""
    if not name.startswith(UNET_PREFIX):
        return REASON_VAE_CLIP if name.startswith(_VAE_CLIP_PREFIXES) else REASON_OTHER
    inner = name[len(UNET_PREFIX) :]
    if len(shape) <= 1 or name.endswith(".bias") or "norm" in inner:
        return REASON_SMALL
    if len(shape) == 4:
        return REASON_CONV
    if len(shape) != 2 or not name.endswith(".weight"):
        return REASON_NOT_LINEAR
    if inner.startswith(_TIME_EMBEDDINGS):
        return REASON_TIME
    if inner.startswith(_OTHER_EMBEDDINGS) or "embedding" in inner:
        return REASON_EMBEDDING
    if shape[-1] % block_size:
        return REASON_ROW
    return None


def choose_type(name: str, shape: tuple[int, ...], source_dtype: str, target: str) -> TensorChoice:
    """The stored type of one tensor in a `target` GGUF (see the module docstring for rules)."""
    if target not in TARGETS:
        raise ValueError(f"unknown GGUF target {target!r}; expected one of {sorted(TARGETS)}")
    if source_dtype not in SOURCE_DTYPES:
        raise ValueError(f"{name}: unknown source dtype {source_dtype!r}")
    qtype = TARGETS[target][0]
    block_size = GGML_QUANT_SIZES[qtype][0]
    kept = kept_type(tuple(shape), source_dtype)
    reason = _keep_reason(name, tuple(shape), block_size)
    if reason is not None:
        return TensorChoice(name, kept, reason)
    if target == "F16":
        return TensorChoice(name, kept, "linear weight -> F16")
    return TensorChoice(name, target, f"linear weight -> {target}")


def _nbytes(shape: tuple[int, ...], ggml_type: str) -> int:
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type]]
    return math.prod(shape) // block_size * type_size


def _prepare(source: GGUFSource, choice: TensorChoice) -> np.ndarray | _RawCopy:
    """Load one tensor and turn it into the exact bytes the file stores for it."""
    if source.raw_at is not None and choice.ggml_type == (source.raw_type or source.dtype):
        return _RawCopy(*source.raw_at, _nbytes(tuple(source.shape), choice.ggml_type))
    values = np.asarray(source.load())
    if tuple(values.shape) != tuple(source.shape):
        raise ValueError(
            f"{source.name}: load() returned shape {tuple(values.shape)}, "
            f"expected {tuple(source.shape)}"
        )
    if choice.shape is not None:
        values = values.reshape(choice.shape)
    if choice.ggml_type == "F16":
        if values.dtype == np.float16:
            return np.ascontiguousarray(values)
        with np.errstate(over="ignore"):
            half = np.ascontiguousarray(values, dtype=np.float16)
        if not np.isfinite(half).all():  # only F32/BF16 sources pay for this check
            raise NonFiniteWeights(
                f"{source.name} has NaN/Inf or values beyond the float16 range (65504); "
                "it cannot be stored as F16"
            )
        return half
    if choice.ggml_type == "F32":
        return np.ascontiguousarray(values, dtype=np.float32)
    return quantize(values, GGMLQuantizationType[choice.ggml_type], name=source.name)


Metadata = Mapping[str, str | int | tuple[int, ...]]


def _add_metadata(writer: gguf.GGUFWriter, metadata: Metadata) -> None:
    for key, value in metadata.items():
        if key in _RESERVED_KEYS:
            raise ValueError(f"metadata key {key!r} is set by the writer itself")
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            if 0 <= value < 2**32:
                writer.add_uint32(key, value)
            else:
                writer.add_int64(key, value)
        elif isinstance(value, str):
            # add_string would silently drop an empty value
            writer.add_key_value(key, value, gguf.GGUFValueType.STRING)
        elif isinstance(value, tuple) and value and all(type(v) is int for v in value):
            # INT32 arrays: what ComfyUI-GGUF's loader.py get_orig_shape requires
            int32 = gguf.GGUFValueType.INT32
            writer.add_key_value(key, list(value), gguf.GGUFValueType.ARRAY, sub_type=int32)
        else:
            raise TypeError(f"metadata {key!r}: str, int or int tuple values, got {type(value)}")


def write_gguf(
    path: Path,
    sources: Sequence[GGUFSource],
    target: str,
    metadata: Metadata,
    policy: Policy = choose_type,
) -> GGUFReport:
    """Write `sources` to `path` as a `target` GGUF; nothing is left at `path` on failure.

    `policy` stores each tensor: `choose_type` (the layout every consumer loads) by default."""
    path = Path(path)
    sources = list(sources)
    if target not in TARGETS:
        raise ValueError(f"unknown GGUF target {target!r}; expected one of {sorted(TARGETS)}")
    file_type = TARGETS[target][1]
    choices = [policy(s.name, tuple(s.shape), s.dtype, target) for s in sources]

    stamps = SourceStamps.of(s.raw_at[0] for s in sources if s.raw_at is not None)
    with OutputHash() as digest:
        with atomic_output(path) as tmp:
            writer = gguf.GGUFWriter(path=None, arch=ARCHITECTURE)
            try:
                writer.add_file_type(int(file_type))
                writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
                _add_metadata(writer, metadata)
                for source, choice in zip(sources, choices, strict=True):
                    _add_tensor_info(writer, source, choice)
                writer.write_header_to_file(path=tmp)
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                assert writer.fout is not None
                out = writer.fout[0]
                out.flush()
                # gguf-py encoded the header, KV data and tensor infos: hash them as written
                with open(tmp, "rb") as written:
                    digest.add(written.read(out.tell()))
                out_fd = out.fileno()
                _write_data(out_fd, out.tell(), writer.data_alignment, sources, choices, digest)
            finally:
                writer.close()
        streamed = digest.hexdigest()
    sha256 = streamed if streamed and stamps.unchanged() else sha256_file(path)

    kept = Counter({"F16": 0, "F32": 0})
    kept.update(c.ggml_type for c in choices if c.ggml_type in ("F16", "F32"))
    report = GGUFReport(
        path=path,
        file_type=file_type.name,
        tensor_count=len(choices),
        quantized=sum(c.ggml_type not in ("F16", "F32") for c in choices),
        kept=dict(kept),
        reasons=dict(Counter(c.reason for c in choices)),
        choices=choices,
        sha256=sha256,
    )
    logger.info(
        "wrote %s (%s): %d tensors, %d quantized, kept %s",
        path,
        report.file_type,
        report.tensor_count,
        report.quantized,
        report.kept,
    )
    return report


def _add_tensor_info(writer: gguf.GGUFWriter, source: GGUFSource, choice: TensorChoice) -> None:
    """Declare one tensor (name, natural shape, stored type, byte size) in the header."""
    qtype = GGMLQuantizationType[choice.ggml_type]
    shape = tuple(int(d) for d in (choice.shape or source.shape))
    nbytes = _nbytes(shape, choice.ggml_type)
    if qtype in (GGMLQuantizationType.F16, GGMLQuantizationType.F32):
        dtype = np.dtype(np.float16 if qtype == GGMLQuantizationType.F16 else np.float32)
        writer.add_tensor_info(source.name, shape, dtype, nbytes)
    else:
        byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
        writer.add_tensor_info(source.name, byte_shape, np.dtype(np.uint8), nbytes, qtype)


class _DataWriter:
    """Appends aligned tensor data to the GGUF's file descriptor.

    Writes go straight to the fd (`os.write` releases the GIL, so quantizer threads keep running)
    and every `_WRITEBACK_BYTES` a background `fdatasync` starts the disk write-back early, so the
    final fsync only waits for the tail instead of the whole file.
    """

    def __init__(
        self, fd: int, offset: int, alignment: int, pool: ThreadPoolExecutor, digest: OutputHash
    ) -> None:
        self.fd, self.offset, self.alignment, self.pool = fd, offset, alignment, pool
        self.digest = digest
        self.unsynced = 0
        self.sync: Future[None] | None = None

    def _write(self, data: memoryview | bytes) -> None:
        self.digest.add(data)
        while data:
            n = os.write(self.fd, data)
            data = data[n:]
            self.offset += n
            self.unsynced += n

    def pad(self) -> None:
        self._write(bytes(-self.offset % self.alignment))

    def tensor(self, data: np.ndarray) -> None:
        self.pad()
        self._write(memoryview(data).cast("B"))
        self._writeback()

    def _writeback(self) -> None:
        if self.unsynced >= _WRITEBACK_BYTES and (self.sync is None or self.sync.done()):
            if self.sync is not None:
                self.sync.result()
            self.sync = self.pool.submit(os.fdatasync, self.fd)
            self.unsynced = 0

    def copy(self, raw: _RawCopy) -> None:
        """Append bytes of another file without passing them through user space."""
        self.pad()
        self.digest.add_range(raw.path, raw.offset, raw.nbytes)
        copy_range(raw.path, raw.offset, raw.nbytes, self.fd)
        self.offset += raw.nbytes
        self.unsynced += raw.nbytes
        self._writeback()

    def finish(self) -> None:
        self.pad()
        if self.sync is not None:
            self.sync.result()


def _write_data(
    fd: int,
    offset: int,
    alignment: int,
    sources: Sequence[GGUFSource],
    choices: Sequence[TensorChoice],
    digest: OutputHash,
) -> None:
    """Write tensor data in order while a worker prepares the next `_PREFETCH` tensors.

    Running a few tensors ahead lets quantization overlap the long writes of big F16 convs;
    memory stays bounded by `_PREFETCH + 1` tensors.
    """
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="unetbot-gguf-prep") as prep,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="unetbot-gguf-sync") as sync,
    ):
        out = _DataWriter(fd, offset, alignment, sync, digest)
        pending: deque[Future[np.ndarray | _RawCopy]] = deque()
        ahead = iter(zip(sources, choices, strict=True))
        try:
            for source, choice in zip(sources, choices, strict=True):
                while len(pending) <= _PREFETCH and (nxt := next(ahead, None)) is not None:
                    pending.append(prep.submit(_prepare, *nxt))
                data = pending.popleft().result()
                expected = _nbytes(tuple(source.shape), choice.ggml_type)
                if data.nbytes != expected:  # guards the offsets already written in the header
                    raise AssertionError(f"{source.name}: {data.nbytes} bytes, expected {expected}")
                logger.debug("%s -> %s (%s)", source.name, choice.ggml_type, choice.reason)
                if isinstance(data, _RawCopy):
                    out.copy(data)
                else:
                    out.tensor(data)
                del data
            out.finish()
        finally:
            for future in pending:
                future.cancel()
