"""Fixtures: an embedded Hub per test (tmp root, free port) and real huggingface_hub clients.

The environment is set before huggingface_hub is imported anywhere: no Xet (uploads must go
through LFS), no telemetry, and an HF_HOME of our own so no stored token leaks in.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
if "HF_HOME" not in os.environ:
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="unetbot-hf-home-")
    atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ.pop("HF_TOKEN", None)

import pytest
import yaml
from huggingface_hub import HfApi, constants

from bot.hub import RunningHub, start_hub

constants.HF_HUB_DISABLE_XET = True

TOKENS = {
    "alice": "hf_alice_write_token_0001",
    "alice_read": "hf_alice_read_token_00001",
    "bob": "hf_bob_write_token_000001",
}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A config-less hub: one user `unetbot-local` with a generated write token."""
    with start_hub(tmp_path / "root") as running:
        yield running


@pytest.fixture
def api(hub: RunningHub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=hub.token)


def write_config(path: Path, **extra: object) -> Path:
    cfg = {
        "users": [{"name": "alice"}, {"name": "bob"}],
        "orgs": [{"name": "acme", "members": ["alice"]}],
        "tokens": [
            {"id": "alice-w", "user": "alice", "role": "write", "token": TOKENS["alice"]},
            {"id": "alice-r", "user": "alice", "role": "read", "token": TOKENS["alice_read"]},
            {"id": "bob-w", "user": "bob", "role": "write", "token": TOKENS["bob"]},
        ],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def team_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A hub with users alice (write + read tokens, member of org acme) and bob."""
    cfg = write_config(
        tmp_path / "hub.yaml", list_page_size=3, gated_access={"alice/granted": ["bob"]}
    )
    with start_hub(tmp_path / "root", config=cfg) as running:
        yield running


def client(hub: RunningHub, who: str | None) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=TOKENS[who] if who else False)
