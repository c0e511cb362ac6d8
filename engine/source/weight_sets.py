"""A source folder opened once per weight set it is read in, handed on as one object.

A repo can hold main weights and an fp16 variant side by side; the exact originals read the
first, everything stored in half precision the second (engine.source.layout). Judging the source,
planning the variants, writing, describing and validating them all take this object, so each
weight set's headers are read and checked once per run, however many steps need them.
"""

from __future__ import annotations

from pathlib import Path

from engine.source.folder import Source, open_source
from engine.source.layout import Precision


class WeightSets:
    """The folder at `root`, opened lazily: each weight set at most once.

    `precision` forces one weight set for every read (`--precision`); otherwise `main` is the
    main weights (which judges and plans the run), and `read_as(HALF)` is the fp16 variant when
    the folder has one beside main weights, else that same main Source."""

    def __init__(self, root: Path, precision: Precision | None = None) -> None:
        self.root = Path(root)
        self._forced = Precision(precision) if precision is not None else None
        self._opened: dict[Precision, Source] = {}

    @property
    def main(self) -> Source:
        """The weight set opened first: it judges the source and plans the variants."""
        return self._open(self._forced or Precision.MAIN)

    def read_as(self, precision: Precision) -> Source:
        """The Source a variant of `precision` is made from (and validated against)."""
        if self._forced is not None or precision is Precision.MAIN:
            return self.main
        if not self.main.fp16_twin_available:
            return self.main
        return self._open(Precision.HALF)

    def _open(self, precision: Precision) -> Source:
        if precision not in self._opened:
            self._opened[precision] = open_source(self.root, precision)
        return self._opened[precision]


def weight_sets(source: WeightSets | Path | str, precision: Precision | None = None) -> WeightSets:
    """`source` itself when already opened; a path is opened here (the engine's entry points
    accept either, so a caller that judged the folder hands on what it opened)."""
    return source if isinstance(source, WeightSets) else WeightSets(Path(source), precision)
