"""Shared fixtures: seeded tiny SD1.5-family models, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "0")


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """Factory: `tiny_pipeline(kind, layers_per_block=2, full=True)` -> a pipeline folder."""
    from engine.synthetic.models import write_pipeline_folder

    cache: dict[tuple, Path] = {}

    def make(kind: str = "sd15", layers_per_block: int = 2, full: bool = True, dtype="float16"):
        key = (kind, layers_per_block, full, dtype)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{kind}-{layers_per_block}-{int(full)}-{dtype}")
            cache[key] = write_pipeline_folder(
                folder,
                kind,  # type: ignore[arg-type]
                "tiny",
                dtype=dtype,
                with_vae_and_text_encoder=full,
                layers_per_block=layers_per_block,
            )
        return cache[key]

    return make
