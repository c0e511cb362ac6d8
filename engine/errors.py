"""The error contract of unetbot: one exception per cause, each carrying its exit code.

Every expected failure, in the engine and in the bot, is one of these classes, so `bot` maps an
exception to its documented exit code in one place (`exit_code_for`) and users get a message that
names the file or repo and the problem. This module imports only the standard library: the
scheduled workflow's report step (`bot/actions/summary.py`) reads the codes without installing
the project.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of `bot` (README "Exit codes")."""

    OK = 0
    INTERNAL_ERROR = 1  # a bug: the only case with a traceback
    BAD_INPUT = 2
    UNSUPPORTED = 3
    VALIDATION_FAILED = 4
    HUB_ERROR = 5
    POLICY_SKIPPED = 6
    LOCAL_IO = 7

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_skip(self) -> bool:
        """A decision (unsupported model, policy), not a failure of the job."""
        return self in (ExitCode.UNSUPPORTED, ExitCode.POLICY_SKIPPED)


_LABELS = {
    ExitCode.OK: "ok",
    ExitCode.INTERNAL_ERROR: "internal error",
    ExitCode.BAD_INPUT: "bad input",
    ExitCode.UNSUPPORTED: "unsupported",
    ExitCode.VALIDATION_FAILED: "validation failed",
    ExitCode.HUB_ERROR: "Hub error",
    ExitCode.POLICY_SKIPPED: "skipped by policy",
    ExitCode.LOCAL_IO: "local I/O error",
}


class UnetbotError(Exception):
    """Base of every expected failure; `exit_code` is what `bot` exits with."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR


# ---------------------------------------------------------------- bad input (2)


class BadInput(UnetbotError):
    """The input is malformed or unsafe: nothing is written."""

    exit_code = ExitCode.BAD_INPUT


class BadSafetensorsHeader(BadInput):
    """A safetensors file's header is not valid (length, JSON, dtype, shape or byte span)."""


class TruncatedFile(BadInput):
    """A file is shorter than its header says."""


class BadConfig(BadInput):
    """A config.json (or other small JSON file) is malformed, too big or of the wrong shape."""


class UnknownKey(BadInput):
    """A tensor name has no place in the key map (never dropped silently)."""


class MissingKey(BadInput):
    """A tensor the architecture needs is absent."""


class MissingFile(BadInput):
    """A required file (config or weights) is not in the source."""


class PickleRefused(BadInput):
    """A pickle (.bin/.ckpt) refused: opened outside the one pickle path, or refused by its
    static scan or its weights_only child-process load (engine.source.pickle_source)."""


class NonFiniteWeights(BadInput):
    """A tensor holds NaN or Inf, which no quantizer can represent faithfully."""


class OutputFolderNotOurs(BadInput):
    """`--out` holds files unetbot did not write (no manifest lists them): never deleted."""


# ---------------------------------------------------------------- unsupported (3)


class UnsupportedArchitecture(UnetbotError):
    """The model is valid but not an SD1.5-family UNet (SD2, SDXL, LoRA, ControlNet, other)."""

    exit_code = ExitCode.UNSUPPORTED


# ---------------------------------------------------------------- validation (4)


class ValidationFailed(UnetbotError):
    """An artifact did not load or did not match its source; it is never published."""

    exit_code = ExitCode.VALIDATION_FAILED


# ---------------------------------------------------------------- Hub (5)


class HubError(UnetbotError):
    """The Hub refused or failed after retries (auth, access, rate limit, outage)."""

    exit_code = ExitCode.HUB_ERROR


class BudgetExhausted(HubError):
    """The run's Hub call, time or download budget is spent; the rest waits for the next run."""


class HubNotFound(HubError):
    """The repo, revision or file does not exist (or is private and invisible to this token)."""


class HubAccessDenied(HubError):
    """The token is missing, invalid or lacks the rights (401/403, gated repo)."""


class HubConflict(HubError):
    """The Hub refused a write that raced another one (409, 412 stale parent commit)."""


class HubRateLimited(HubError):
    """The Hub kept answering 429 beyond the retries this run allows."""


# ---------------------------------------------------------------- policy (6)


class PolicySkipped(UnetbotError):
    """Policy forbids converting this repo (licence, gated, private, opt-out, size)."""

    exit_code = ExitCode.POLICY_SKIPPED


# ---------------------------------------------------------------- local I/O (7)


class LocalIOError(UnetbotError):
    """Writing an output failed on this machine (disk full, permission denied) or a library
    wrote something unusable; nothing was published and no partial file is left."""

    exit_code = ExitCode.LOCAL_IO


class ConversionFailed(LocalIOError):
    """A writer (e.g. diffusers' quantizer) produced an output that cannot be used."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The documented exit code of an exception: its own for ours, 1 (a bug) otherwise."""
    if isinstance(exc, UnetbotError):
        return exc.exit_code
    return ExitCode.INTERNAL_ERROR
