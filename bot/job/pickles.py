"""A job's pickle stage: a source folder whose components hold only `.bin` weights becomes a
safetensors folder (engine.source.pickle_source: static scan, then the weights_only loader in a
child process without the token), in a temporary folder beside the output that is removed when
the job ends. A source with safetensors weights passes through untouched."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bot.job.types import JobResult
from engine.source.layout import Precision, list_local_files
from engine.source.pickle_source import PickleRecord, materialize, pickle_sets

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
    out = Path(out).resolve()
    beside = out.parent if out.parent.is_dir() else None  # same disk as the outputs
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.pickle-", dir=beside) as tmp:
        record = materialize(source_dir, Path(tmp) / "source", precisions, hub_verdicts)
        assert record is not None
        yield record.root, record


def record_pickles(result: JobResult, record: PickleRecord | None, source: str) -> None:
    """The manifest (`source.pickle`, `source.path`) and the notes say how pickles were opened."""
    if record is None:
        return
    result.notes.append(record.summary())
    if result.manifest is not None:
        result.manifest.source["path"] = source
        result.manifest.source["pickle"] = record.to_dict()
        result.manifest.save(result.out)
