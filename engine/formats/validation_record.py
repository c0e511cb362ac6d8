"""What validating one artifact found: a `ValidationResult`, stored in manifest.json as a dict.

Torch-free and import-light: `engine.formats.manifest` reads and writes it, and the bot reads
`passed`, `reason` and `metrics` from it. The manifest schema (schema_version 1, README
"manifest.json") is exactly the dict `to_dict` gives: status, reason, metrics, checks, and seconds
when the validators ran (a file whose sha256 did not match is failed before any validator runs, and
its result has no seconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
ALL_PASSED = "all checks passed"


@dataclass
class ValidationResult:
    status: str  # PASSED or FAILED
    reason: str  # ALL_PASSED, or every problem found, "; "-separated
    metrics: dict = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)  # what was proven, in words
    seconds: float | None = None  # wall time of the validator (None: it did not run)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @classmethod
    def from_problems(
        cls, problems: Iterable[str], metrics: dict | None = None, checks: Iterable[str] = ()
    ) -> ValidationResult:
        """Passed when `problems` is empty; else failed, with every problem as the reason."""
        problems = list(problems)
        return cls(
            FAILED if problems else PASSED,
            "; ".join(problems) if problems else ALL_PASSED,
            dict(metrics or {}),
            list(checks),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest.json form (key order as written since schema 1)."""
        out: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "metrics": self.metrics,
            "checks": self.checks,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ValidationResult:
        return cls(
            raw["status"],
            raw.get("reason", ""),
            dict(raw.get("metrics", {})),
            list(raw.get("checks", [])),
            raw.get("seconds"),
        )
