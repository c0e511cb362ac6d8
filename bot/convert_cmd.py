"""`bot convert`: fetch (if a repo id), convert, validate, then publish or stop.

The steps are plain functions; this module only sequences them and decides the exit code, so the
scheduled workflow, `bot demo` and a maintainer's `bot convert` all run the same path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot import exit_codes
from bot.progress import stage_bar
from engine.convert import convert as engine_convert
from engine.convert import plan_variants
from engine.errors import BadInput
from engine.manifest import Manifest
from engine.original import Provenance
from engine.pipeline import convert_and_validate
from engine.source import open_source

log = logging.getLogger("unetbot.convert")
PUBLISH_MODES = ("pr", "repo", "all", "none")


@dataclass
class ConvertResult:
    src: str
    out: Path
    manifest: Manifest | None = None
    planned: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # where publishing goes (pending only)
    published: list[str] = field(default_factory=list)
    skipped: str = ""
    exit_code: int = exit_codes.OK

    def failed(self) -> list[str]:
        if self.manifest is None:
            return []
        return [a.variant for a in self.manifest.artifacts if not a.passed]

    def to_dict(self) -> dict:
        return {
            "src": self.src,
            "out": str(self.out),
            "planned": self.planned,
            "targets": self.targets,
            "artifacts": [
                {
                    "variant": a.variant,
                    "path": a.path,
                    "bytes": a.bytes,
                    "validation": (a.validation or {}).get("status"),
                }
                for a in (self.manifest.artifacts if self.manifest else [])
            ],
            "failed": self.failed(),
            "published": self.published,
            "skipped": self.skipped,
            "exit_code": self.exit_code,
        }

    def summary(self) -> str:
        lines = [f"source: {self.src}"]
        if self.skipped:
            lines.append(f"skipped: {self.skipped}")
        if self.manifest is None:
            lines.append("planned: " + ", ".join(self.planned))
            lines += [f"would publish to {t}" for t in self.targets]
        else:
            for a in self.manifest.artifacts:
                status = (a.validation or {}).get("status", "not validated")
                lines.append(f"  {a.variant:18} {a.bytes / 1e6:10.1f} MB  {status:13} {a.path}")
            lines.append(f"manifest: {self.out / 'manifest.json'}")
        lines += [f"published: {p}" for p in self.published]
        return "\n".join(lines)


def run_convert(
    src: str,
    variants: str,
    out: Path,
    revision: str | None = None,
    publish: str = "none",
    dry_run: bool = False,
    config_path: Path | None = None,
    validate: bool = True,
    grid: bool = False,
) -> ConvertResult:
    if publish not in PUBLISH_MODES:
        raise BadInput(f"--publish must be one of {', '.join(PUBLISH_MODES)}, not {publish!r}")
    if publish != "none" or not Path(src).is_dir():
        from bot.workflow import run_hub_convert

        return run_hub_convert(
            src, variants, out, revision, publish, dry_run, config_path, validate, grid
        )
    result = ConvertResult(src, Path(out))
    source = open_source(Path(src))
    if variants == "auto":
        from bot.config import load_config

        publish_config = load_config(config_path).publish
        variants = ",".join(
            dict.fromkeys(
                v
                for kind in ("pr", "gguf", "torchao", "quanto")
                for v in getattr(publish_config, f"{kind}_variants")
                if source.has_full_pipeline or "full" not in v
            )
        )
    result.planned = [v.name for v in plan_variants(source, variants)]
    if dry_run:
        return result
    if not validate:
        with stage_bar("convert") as hook:
            result.manifest = engine_convert(
                Path(src), Path(out), variants, Provenance(), None, hook
            )
        return result
    with stage_bar("convert + validate") as hook:
        result.manifest = convert_and_validate(
            Path(src), Path(out), variants, progress=hook, grid=grid
        )
    if result.failed():
        result.exit_code = exit_codes.VALIDATION_FAILED
    return result
