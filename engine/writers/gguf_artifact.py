"""GGUF artifacts from a source model: names from the key map, layout rules from gguf_writer."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine import __version__
from engine.formats.safetensors_io import OutputTensor
from engine.formats.tensor_values import read_tensor_array
from engine.source.folder import Source
from engine.writers.gguf_writer import GGUFSource, write_gguf
from engine.writers.original import LCM_CONVENTION, Provenance, original_tensors


def gguf_source(t: OutputTensor) -> GGUFSource:
    """The writer's source for one original-format tensor: loaded when its turn comes, or
    copied in the kernel when stored in its own dtype."""

    def load():
        return read_tensor_array(t.source, t.spec).reshape(t.shape)

    raw_at = (t.source.path, t.source_offset)
    return GGUFSource(t.name, t.shape, t.spec.dtype, load, raw_at)


def _stored_tensors(gguf_path: Path) -> dict[str, tuple[str, int]]:
    """name -> (GGML type, absolute data offset) of every tensor of a GGUF (header only)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    return {t.name: (t.tensor_type.name, int(t.data_offset)) for t in reader.tensors}


@dataclass(frozen=True)
class GGUFArtifact:
    """What writing one GGUF artifact gave: the manifest's details and the file's sha256."""

    details: dict
    sha256: str


def write_gguf_artifact(
    source: Source,
    path: Path,
    qtype: str,
    full: bool,
    provenance: Provenance,
    reuse_unet_from: Path | None = None,
) -> GGUFArtifact:
    """Write one GGUF (UNet only, or full checkpoint): its manifest details and sha256.

    `reuse_unet_from`: a GGUF of the same type written from the same source in this run; its
    UNet tensors are copied byte for byte instead of quantized again (the writer's policy still
    decides each type, so the file is identical to a fresh write)."""
    tensors = original_tensors(source, full)
    sources = [gguf_source(t) for t in tensors]
    if reuse_unet_from is not None:
        stored = _stored_tensors(reuse_unet_from)
        sources = [
            dataclasses.replace(
                s, raw_at=(reuse_unet_from, stored[s.name][1]), raw_type=stored[s.name][0]
            )
            if s.name in stored and stored[s.name][0] not in ("F16", "F32")
            else s
            for s in sources
        ]
    lcm = source.classification.is_lcm
    metadata: dict[str, str | int] = {
        "general.name": Path(path).stem,
        "unetbot.version": __version__,
        "unetbot.kind": source.classification.kind,
        "unetbot.contents": "unet+vae+text_encoder" if full else "unet",
        "unetbot.source_repo": provenance.source_repo,
        "unetbot.source_revision": provenance.source_revision,
        "unetbot.lcm_cond_proj": LCM_CONVENTION if lcm else "none",
    }
    report = write_gguf(Path(path), sources, qtype, metadata)
    details = {
        "gguf_type": qtype,
        "tensor_count": report.tensor_count,
        "quantized": report.quantized,
        "kept": dict(report.kept),
        "kept_reasons": dict(
            Counter(c.reason for c in report.choices if c.ggml_type in ("F16", "F32"))
        ),
        "full_checkpoint": full,
    }
    return GGUFArtifact(details, report.sha256)
