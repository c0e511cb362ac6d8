"""An embedded Hub seeded like the demo, and the bot's environment pointed at it."""

from __future__ import annotations

import os
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
    from bot.hub import start_hub
    from bot.seed import accounts_env, seed_repos, write_accounts
    from bot.settings import load_settings

    accounts = write_accounts(workdir / "hub")
    saved = dict(os.environ)
    with start_hub(workdir / "hub" / "data", config=accounts.config_path) as running:
        os.environ.update(accounts_env(running.endpoint, accounts, workdir / "cache"))
        load_settings()
        from huggingface_hub import HfApi

        repos = seed_repos(
            HfApi(endpoint=running.endpoint, token=accounts.owner_token), workdir / "seed"
        )
        config_path = workdir / "bot.yaml"
        config_path.write_text(yaml.safe_dump(FAST_CONFIG))
        try:
            yield SeededHub(
                running.endpoint,
                running,
                accounts.owner_token,
                accounts.bot_token,
                config_path,
                repos,
                workdir,
            )
        finally:
            running.state.faults.clear()
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def seeded_hub(tmp_path) -> Iterator[SeededHub]:
    yield from start_seeded_hub(tmp_path)
