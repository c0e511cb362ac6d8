"""Typed errors of the engine.

Each cause has its own exception so the CLI can map it to a documented exit code in one place
and users get a message that names the file and the problem.
"""

from __future__ import annotations


class UnetbotError(Exception):
    """Base of every expected failure; `exit_code` is what `bot` exits with."""

    exit_code = 1


class BadInput(UnetbotError):
    """The input is malformed or unsafe: nothing is written."""

    exit_code = 2


class BadSafetensorsHeader(BadInput):
    """A safetensors file's header is not valid (length, JSON, dtype, shape or byte span)."""


class TruncatedFile(BadInput):
    """A file is shorter than its header says."""


class UnknownKey(BadInput):
    """A tensor name has no place in the key map (never dropped silently)."""


class MissingKey(BadInput):
    """A tensor the architecture needs is absent."""


class MissingFile(BadInput):
    """A required file (config or weights) is not in the source."""


class PickleRefused(BadInput):
    """Only pickle weights (.bin/.ckpt/.pt) exist; unetbot never unpickles Hub files."""


class NonFiniteWeights(BadInput):
    """A tensor holds NaN or Inf, which no quantizer can represent faithfully."""


class UnsupportedArchitecture(UnetbotError):
    """The model is valid but not an SD1.5-family UNet (SD2, SDXL, other)."""

    exit_code = 3


class ValidationFailed(UnetbotError):
    """An artifact did not load or did not match its source; it is never published."""

    exit_code = 4
