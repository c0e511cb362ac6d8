"""Progress bars for the convert and validate stages (rich), shown only on a terminal.

Downloads and uploads already show huggingface_hub's own bars; these cover the engine's stages
(one step per variant). In CI logs (no TTY) they stay silent and the log lines tell the story.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Hook = Callable[[str, int, int], None]


@contextmanager
def stage_bar(title: str) -> Iterator[Hook | None]:
    """Yield a hook `(item, index, total)` driving one bar, or None when not on a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"{title} [bold]{{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("", total=None)

        def hook(item: str, index: int, total: int) -> None:
            progress.update(task, description=item, completed=index, total=total)

        yield hook
