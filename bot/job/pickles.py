"""A job's opening stage, for sources the engine does not open as they are:

* a folder whose components hold only `.bin` weights becomes a safetensors folder
  (engine.source.pickle_source: static scan, then the weights_only loader in a child process
  without the token);
* a single-file checkpoint (`*.safetensors`, or `*.ckpt` through the same pickle path) becomes a
  diffusers folder (engine.writers.single_file), read with SD1.5's configs.

Either is made in a temporary folder beside the output, removed when the job ends. A source with
safetensors weights passes through untouched."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bot.job.types import JobResult
from engine.source.layout import Precision, list_local_files
from engine.source.pickle_source import PickleRecord, materialize, pickle_sets
from engine.writers.single_file import SingleFileRecord, materialize_single_file

log = logging.getLogger("unetbot.job")


@contextmanager
def opened_pickles(
    source_dir: Path,
    out: Path,
    precisions: Iterable[Precision] = tuple(Precision),
    hub_verdicts: Mapping[str, dict] | None = None,
) -> Iterator[tuple[Path, PickleRecord | None]]:
    """(the folder to convert, the pickle record or None) for the duration of the block."""
    source_dir, precisions = Path(source_dir), tuple(precisions)
    if not pickle_sets(list_local_files(source_dir), precisions):
        yield source_dir, None
        return
    with _scratch(out, "pickle") as tmp:
        record = materialize(source_dir, tmp / "source", precisions, hub_verdicts)
        assert record is not None
        yield record.root, record


@contextmanager
def _scratch(out: Path, what: str) -> Iterator[Path]:
    out = Path(out).resolve()
    beside = out.parent if out.parent.is_dir() else None  # same disk as the outputs
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.{what}-", dir=beside) as tmp:
        yield Path(tmp)


@contextmanager
def opened_single_file(
    path: Path, out: Path, hub_verdict: dict | None = None
) -> Iterator[tuple[Path, SingleFileRecord]]:
    """(the diffusers folder made from checkpoint `path`, its record) for the block;
    `hub_verdict`: the Hub's record of a `.ckpt` (bot/client/security.py)."""
    with _scratch(out, "single-file") as tmp:
        record = materialize_single_file(Path(path), tmp / "source", hub_verdict=hub_verdict)
        yield record.root, record


def record_opening(
    result: JobResult, record: PickleRecord | SingleFileRecord | None, source: str
) -> None:
    """The manifest (`source.pickle` or `source.single_file`, and `source.path`) and the notes
    say how the source was opened."""
    if record is None:
        return
    if isinstance(record, SingleFileRecord):
        key, notes = "single_file", record.info.notes()
    else:
        key, notes = "pickle", [record.summary()]
    result.notes += notes
    if result.manifest is not None:
        result.manifest.source["path"] = source
        result.manifest.source[key] = record.to_dict()
        result.manifest.save(result.out)
