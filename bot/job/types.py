"""What a job is asked (`JobRequest`) and what it reports (`JobResult`): plain data shared by the
local path (bot/job/run.py), the Hub path (bot/job/hub_source.py) and their callers, kept apart so
neither path imports the other's dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.config import PublishMode
from engine.errors import ExitCode
from engine.formats.manifest import Manifest


@dataclass(frozen=True)
class JobRequest:
    """What to do with one source (a local folder or a Hub repo id)."""

    source: str
    out: Path
    # None: `original` when nothing is published, else the config's lists per target;
    # "auto": the config's lists; "all": every variant that applies; else a comma list.
    variants: str | None = None
    publish: PublishMode = PublishMode.NONE
    revision: str | None = None
    dry_run: bool = False
    validate: bool = True
    grid: bool = False  # the validation grid PNG (LCM sources with a VAE)


@dataclass
class JobResult:
    source: str
    out: Path
    manifest: Manifest | None = None
    planned: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # pending publish targets
    published: list[str] = field(default_factory=list)
    published_to: dict[str, str] = field(default_factory=dict)  # target key -> URL
    skipped: str = ""
    notes: list[str] = field(default_factory=list)  # things the user should know (empty targets)
    # target key -> {variant: reason} for variants that failed validation and were left out
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)
    exit_code: ExitCode = ExitCode.OK

    def failed(self) -> list[str]:
        """Variants that failed validation (a `--skip-validation` artifact did not: it was not
        validated, and is never published)."""
        if self.manifest is None:
            return []
        return [a.variant for a in self.manifest.artifacts if a.validation and not a.passed]

    def to_dict(self) -> dict:
        artifacts = self.manifest.artifacts if self.manifest else []
        return {
            "src": self.source,
            "out": str(self.out),
            "planned": self.planned,
            "targets": self.targets,
            "artifacts": [
                {
                    "variant": a.variant,
                    "path": a.path,
                    "bytes": a.bytes,
                    "validation": a.validation.status if a.validation else None,
                }
                for a in artifacts
            ],
            "failed": self.failed(),
            "published": self.published,
            "skipped": self.skipped,
            "notes": self.notes,
            "left_out": self.left_out,
            "exit_code": int(self.exit_code),
        }

    def summary(self) -> str:
        """The closing summary: what was written or published, where, how to load it, what was
        skipped and why."""
        lines = [f"source: {self.source}"]
        if self.skipped:
            lines.append(f"skipped: {self.skipped}")
        lines += [f"note: {n}" for n in self.notes]
        if self.manifest is None:
            if self.planned:
                lines.append("planned: " + ", ".join(self.planned))
            lines += [f"would publish to {t}" for t in self.targets]
        else:
            artifacts = self.manifest.artifacts
            lines.append(f"wrote {len(artifacts)} artifact(s) to {self.out}:")
            for a in artifacts:
                status = a.validation.status if a.validation else "not validated"
                where = self.out / a.path
                lines.append(f"  {a.variant:18} {a.bytes / 1e6:8.1f} MB  {status:14} {where}")
                lines.append(f"  {'':18} loads with: {', '.join(a.consumers)}")
            lines.append(f"manifest: {self.out / 'manifest.json'}")
            unchecked = [a.variant for a in artifacts if a.validation is None]
            if unchecked:
                lines.append(
                    f"not validated (--skip-validation): {', '.join(unchecked)}; never published;"
                    f" `bot validate {self.out}` checks them"
                )
            if self.failed():
                lines.append(f"failed validation (never published): {', '.join(self.failed())}")
        lines += [f"published: {p}" for p in self.published]
        return "\n".join(lines)
