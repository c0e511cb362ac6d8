"""The one logger of unetbot, with token redaction.

Every log line goes through `RedactingFilter`, which masks Hugging Face tokens (`hf_...`) and any
secret registered with `register_secret` (e.g. the embedded Hub's generated token), so a token
never reaches a terminal, a CI log or an uploaded artifact.
"""

from __future__ import annotations

import logging
import os
import re
import sys

_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):  # a longer form first
        text = text.replace(secret, "***")
    return _TOKEN_PATTERN.sub("hf_***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Libraries that log import-time noise on a CPU-only machine (torchao's missing CUDA kernels,
# torch's pytree notices, diffusers' dtype hints, transformers' torchvision fallbacks). Their
# warnings are kept with --verbose; errors always show.
_NOISY = ("torchao", "torch.utils._pytree", "diffusers", "transformers")


def setup_logging(verbose: bool = False) -> logging.Logger:
    """Configure the `unetbot` logger (stderr, redacted); idempotent."""
    if not verbose:
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for name in _NOISY:
            logging.getLogger(name).setLevel(logging.ERROR)
    logger = logging.getLogger("unetbot")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        logger.addHandler(handler)
        logger.addFilter(RedactingFilter())
        logger.propagate = False
    return logger
