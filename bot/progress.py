"""What a command shows while it works: its stages (download, convert + validate, publish), on
stderr, in one of two renderings chosen by where stderr goes.

- On a terminal: rich progress lines, one per stage (a bar with steps, or bytes and speed for a
  download, and the time left where the total is known), lines the stage prints (one per
  finished artifact) above it, and the stage left as one line with its time once done.
- In a log (stderr is a file or a pipe: CI, `2> run.log`): one plain line per event, no cursor
  control, no carriage returns, so an Actions log reads top to bottom.

huggingface_hub's own tqdm bars are off in both (`quiet_hub_bars`): downloads and uploads are
stages here. The log (bot/log.py) adds only warnings and errors unless `-v`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Hook = Callable[[str, int, int], None]


def quiet_hub_bars() -> None:
    """Turn huggingface_hub's tqdm bars off (before or after it is imported)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def describe_bytes(files: int, size: int) -> str:
    return f"{files} file{'s' if files != 1 else ''}, {_size(size)}"


class Display:
    """The stage display of one command (see the module docstring)."""

    def __init__(self, live: bool, stream: TextIO | None = None):
        self.live = live
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def event(self, text: str) -> None:
        """One line (above a live bar on a terminal)."""
        if self.live:
            self._console().print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    @contextmanager
    def stage(self, title: str, detail: str = "", in_bytes: bool = False) -> Iterator[Hook]:
        """A stage; yields `hook(item, index, total)`: step `index` of `total` is `item` (with
        `in_bytes`, `index` of `total` bytes are done: shown live, not as log lines)."""
        started = time.perf_counter()
        if self.live:
            with self._live_stage(title, detail, in_bytes) as hook:
                yield hook
            return
        self.event(f"{title}{f' ({detail})' if detail else ''} ...")
        last = ""

        def hook(item: str, index: int, total: int) -> None:
            nonlocal last
            if item != last and item != "done" and not in_bytes:
                self.event(f"  [{min(index + 1, total)}/{total}] {item}")
            last = item

        try:
            yield hook
        except BaseException:
            self.event(f"{title}: stopped after {time.perf_counter() - started:.1f} s")
            raise
        self.event(f"{title}: done in {time.perf_counter() - started:.1f} s")

    def _console(self):
        from rich.console import Console

        return Console(file=self.stream, stderr=self._stream is None, highlight=False)

    @contextmanager
    def _live_stage(self, title: str, detail: str, in_bytes: bool) -> Iterator[Hook]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        # a download shows its size in DownloadColumn; the detail would crowd 80 columns
        label = title if in_bytes or not detail else f"{title} ({detail})"
        counts = [DownloadColumn(), TransferSpeedColumn()] if in_bytes else [MofNCompleteColumn()]
        with Progress(
            SpinnerColumn(finished_text="[green]done"),
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=12),
            *counts,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console(),
            transient=False,
        ) as progress:
            task = progress.add_task(label, total=None)

            def hook(item: str, index: int, total: int) -> None:
                if in_bytes:
                    progress.update(task, completed=index, total=total or None)
                    return
                shown = label if item == "done" else f"{label}: {item}"
                progress.update(task, description=shown, completed=index, total=total)

            yield hook
            task_total = progress.tasks[0].total
            progress.update(
                task, description=label, completed=task_total or 1, total=task_total or 1
            )


def byte_reporter(hook: Hook) -> type:
    """A tqdm class for huggingface_hub's `tqdm_class`: it draws nothing and reports the bytes
    of its byte bars to `hook("", done, total)` (the download stage's live bar)."""
    from tqdm import tqdm

    class Reporter(tqdm):
        def __init__(self, *args, **kwargs):
            self._in_bytes = kwargs.get("unit") == "B"
            kwargs["disable"] = True  # tqdm then keeps only n and total
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> None:
            self.n += n or 0
            if self._in_bytes:
                hook("", int(self.n), int(self.total or 0))

    return Reporter


_display: Display | None = None


def display() -> Display:
    """This process's display (a terminal on stderr: live, else plain lines)."""
    global _display
    if _display is None:
        _display = Display(live=sys.stderr.isatty())
    return _display


def set_display(new: Display | None) -> None:
    """Use `new` (None: choose again from stderr at the next `display()`)."""
    global _display
    _display = new


@contextmanager
def stage_bar(title: str, detail: str = "", in_bytes: bool = False) -> Iterator[Hook]:
    """A stage of this process's display (see `Display.stage`)."""
    with display().stage(title, detail, in_bytes) as hook:
        yield hook
