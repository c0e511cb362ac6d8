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
from pathlib import Path

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
# warnings are kept with --verbose; errors always show. A filter on the logger itself, since torch
# resets its loggers' levels when it is imported.
_NOISY = ("torchao", "torch.utils._pytree", "diffusers", "transformers")
_LONG = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_verbose = False


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class _Short(logging.Formatter):
    """`warning: message` (the terminal and CI rendering without -v)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


class _StderrHandler(logging.StreamHandler):
    """Writes to the current `sys.stderr` (a live progress display redirects it meanwhile)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False, log_file: Path | None = None) -> logging.Logger:
    """Configure the `unetbot` logger, redacted; idempotent.

    stderr gets warnings and errors (`warning: ...`), or with `verbose` every line with its
    time and logger name; `log_file`, when given, always gets every line (debug included). A
    later call without `verbose` (a command's own setup) keeps an earlier -v."""
    global _verbose
    verbose = _verbose = verbose or _verbose
    logger = logging.getLogger("unetbot")
    logger.setLevel(logging.DEBUG if verbose or log_file else logging.INFO)
    if not verbose:
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for name in _NOISY:
            noisy = logging.getLogger(name)
            noisy.setLevel(logging.ERROR)
            if not any(isinstance(f, _ErrorsOnly) for f in noisy.filters):
                noisy.addFilter(_ErrorsOnly())
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        handler = _StderrHandler()
        handler.addFilter(RedactingFilter())
        logger.addHandler(handler)
        logger.addFilter(RedactingFilter())
        logger.propagate = False
    for handler in logger.handlers:
        if isinstance(handler, _StderrHandler):
            handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
            handler.setFormatter(logging.Formatter(_LONG) if verbose else _Short())
    if log_file is not None:
        log_file = Path(log_file)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(_LONG))
        file_handler.addFilter(RedactingFilter())
        file_handler.setLevel(logging.DEBUG)
        logger.addHandler(file_handler)
    return logger
