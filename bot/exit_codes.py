"""Exit codes of `bot`: re-exported from engine.errors (the one place they are defined)."""

from __future__ import annotations

from engine.errors import ExitCode, exit_code_for

OK = ExitCode.OK
INTERNAL_ERROR = ExitCode.INTERNAL_ERROR
BAD_INPUT = ExitCode.BAD_INPUT
UNSUPPORTED = ExitCode.UNSUPPORTED
VALIDATION_FAILED = ExitCode.VALIDATION_FAILED
HUB_ERROR = ExitCode.HUB_ERROR
POLICY_SKIPPED = ExitCode.POLICY_SKIPPED

__all__ = ["ExitCode", "exit_code_for"]
