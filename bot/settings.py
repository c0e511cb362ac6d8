"""Every environment setting unetbot reads, in one place.

`HF_ENDPOINT` picks the Hub (the real one by default, the embedded server in the demo and tests);
`HF_TOKEN` is the only credential. Nothing else in the code reads the environment for these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Settings:
    endpoint: str
    token: str | None = field(repr=False)
    config_path: str | None
    cache_dir: str | None

    @property
    def is_local(self) -> bool:
        return self.endpoint.startswith(("http://127.", "http://localhost", "http://[::1]"))


def load_settings() -> Settings:
    """Read settings from the environment; uploads to a non-Xet server need Xet off."""
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    settings = Settings(
        endpoint=endpoint,
        token=os.environ.get("HF_TOKEN") or None,
        config_path=os.environ.get("UNETBOT_CONFIG") or None,
        cache_dir=os.environ.get("UNETBOT_CACHE") or None,
    )
    if settings.is_local:
        # The embedded Hub speaks LFS, not Xet (see shared/reference/hub-protocol.md).
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_DISABLE_XET = True
    from bot.log import register_secret

    register_secret(settings.token)
    return settings
