"""Exit codes of `bot`, in one place (documented in README.md)."""

from __future__ import annotations

from engine.errors import UnetbotError

OK = 0
INTERNAL_ERROR = 1
BAD_INPUT = 2
UNSUPPORTED = 3
VALIDATION_FAILED = 4
HUB_ERROR = 5
POLICY_SKIPPED = 6


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, UnetbotError):
        return exc.exit_code
    return INTERNAL_ERROR
