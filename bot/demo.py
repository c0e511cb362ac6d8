"""`bot demo`: the main job end to end on generated models (see README)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bot.convert_cmd import run_convert
from engine.synthetic import write_pipeline_folder


def run_demo(workdir: Path | None = None, validate: bool = True) -> str:
    """Convert a generated tiny LCM pipeline to every original-format variant."""
    base = Path(workdir or tempfile.mkdtemp(prefix="unetbot-demo-"))
    source = write_pipeline_folder(base / "tiny-lcm", "sd15-lcm", "tiny")
    result = run_convert(
        str(source), "original,original-full", base / "out", validate=validate
    )
    return result.summary()
