"""Every environment setting unetbot reads, in one place.

`HF_ENDPOINT` picks the Hub (the real one by default, the embedded server in the demo and tests);
`HF_TOKEN` is the only credential. Nothing else in the code reads the environment for these.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from engine.errors import BadInput

DEFAULT_ENDPOINT = "https://huggingface.co"
# What a token may hold once surrounding whitespace is stripped: printable ASCII, no spaces.
# Anything else would end up in an Authorization header (httpx then raises with the whole
# header, token included, in the message).
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Settings:
    endpoint: str
    token: str | None = field(repr=False)
    config_path: str | None
    cache_dir: str | None

    @property
    def is_local(self) -> bool:
        return self.endpoint.startswith(("http://127.", "http://localhost", "http://[::1]"))


def read_token(raw: str | None) -> str | None:
    """The token from `HF_TOKEN`, stripped of the whitespace a pasted secret often carries.

    Registered for redaction before anything else happens, in both forms; a token with other
    characters is refused without being echoed."""
    from bot.log import register_secret

    register_secret(raw)
    token = (raw or "").strip()
    register_secret(token)
    if not token:
        return None
    if not _TOKEN_CHARS.fullmatch(token):
        raise BadInput(
            "HF_TOKEN holds spaces or control characters inside it; paste the token again "
            "(it is not shown here)"
        )
    return token


def load_settings() -> Settings:
    """Read settings from the environment; uploads to a non-Xet server need Xet off."""
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    settings = Settings(
        endpoint=endpoint,
        token=read_token(os.environ.get("HF_TOKEN")),
        config_path=os.environ.get("UNETBOT_CONFIG") or None,
        cache_dir=os.environ.get("UNETBOT_CACHE") or None,
    )
    if settings.is_local:
        # The embedded Hub speaks LFS, not Xet: the client would upload through Xet otherwise.
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_DISABLE_XET = True
    return settings
