"""What a command shows while it works: its stages (download, convert + validate, publish), on
stderr, in one of two renderings chosen by where stderr goes.

- On a terminal: rich progress lines, one per stage (a bar with steps and the time left where the
  total is known, a spinner otherwise), each step finished printed above it, and the stage left
  as one line with its time once done.
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
            self._console().print(text, highlight=False, markup=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    @contextmanager
    def stage(self, title: str, detail: str = "") -> Iterator[Hook]:
        """A stage; yields `hook(item, index, total)`: step `index` of `total` is `item`."""
        started = time.perf_counter()
        if self.live:
            with self._live_stage(title, detail) as hook:
                yield hook
            return
        self.event(f"{title}{f' ({detail})' if detail else ''} ...")
        last = ""

        def hook(item: str, index: int, total: int) -> None:
            nonlocal last
            if item != last and item != "done":
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
    def _live_stage(self, title: str, detail: str) -> Iterator[Hook]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        label = f"{title}{f' ({detail})' if detail else ''}"
        with Progress(
            SpinnerColumn(finished_text="[green]done"),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console(),
            transient=False,
        ) as progress:
            task = progress.add_task(label, total=None)
            last = ""

            def hook(item: str, index: int, total: int) -> None:
                nonlocal last
                if last and item != last:
                    progress.console.print(f"  done: {last}", highlight=False, markup=False)
                last = "" if item == "done" else item
                shown = label if item == "done" else f"{label}: {item}"
                progress.update(task, description=shown, completed=index, total=total)

            yield hook
            task_total = progress.tasks[0].total
            progress.update(
                task, description=label, completed=task_total or 1, total=task_total or 1
            )


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
def stage_bar(title: str, detail: str = "") -> Iterator[Hook]:
    """A stage of this process's display (see `Display.stage`)."""
    with display().stage(title, detail) as hook:
        yield hook
