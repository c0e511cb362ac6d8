"""An embedded Hub seeded like the demo, and the bot's environment pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

FAST_CONFIG = {
    "scan": {"searches": ["tiny"], "library": "diffusers"},
    "publish": {
        "mode": "all",
        "pr_variants": ["original", "original-full"],
        "gguf_variants": ["gguf-q8_0", "gguf-full-q8_0"],
        "torchao_variants": ["torchao-int8wo"],
        "quanto_variants": ["quanto-int8"],
    },
}


@dataclass
class SeededHub:
    endpoint: str
    running: object
    owner_token: str
    bot_token: str
    config_path: Path
    repos: dict[str, str]
    workdir: Path

    def owner_api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.owner_token)

    def set_faults(self, rules: list[dict]) -> None:
        self.running.state.faults.set(rules)


def start_seeded_hub(workdir: Path) -> Iterator[SeededHub]:
    from bot.seed import seeded_hub

    with seeded_hub(workdir) as seeded:
        config_path = workdir / "bot.yaml"
        config_path.write_text(yaml.safe_dump(FAST_CONFIG))
        running = seeded.running
        try:
            yield SeededHub(
                running.endpoint,
                running,
                seeded.accounts.owner_token,
                seeded.accounts.bot_token,
                config_path,
                seeded.repos,
                workdir,
            )
        finally:
            running.state.faults.clear()


@pytest.fixture
def seeded_hub(tmp_path) -> Iterator[SeededHub]:
    yield from start_seeded_hub(tmp_path)
