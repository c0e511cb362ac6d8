"""`manifest.json`: what a conversion produced, with hashes, and what validation found.

The manifest is the contract between the engine, validation and the bot: the bot publishes only
artifacts whose `validation.status` is "passed", and `bot validate DIR` re-checks a folder from it.
Schema (versioned by `schema_version`) is documented in README.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine import __version__
from engine.errors import BadInput
from engine.formats.fsio import atomic_write_bytes
from engine.formats.output_hash import sha256_file

if TYPE_CHECKING:  # engine.validation imports this module
    from engine.formats.validation_record import ValidationResult

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class FileEntry:
    path: str  # relative to the manifest folder
    bytes: int
    sha256: str


@dataclass
class Artifact:
    """One published unit: a single file, or a diffusers folder (then `files` lists them all)."""

    variant: str
    format: str
    path: str  # the main weights file, relative to the manifest folder
    bytes: int
    sha256: str
    consumers: list[str]
    files: list[FileEntry] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    validation: ValidationResult | None = None  # None until validated

    def __post_init__(self) -> None:
        # The manifest.json form is accepted too (callers written when results were dicts)
        if isinstance(self.validation, dict):
            from engine.formats.validation_record import ValidationResult

            self.validation = ValidationResult.from_dict(self.validation)

    @property
    def passed(self) -> bool:
        return self.validation is not None and self.validation.passed

    def to_dict(self) -> dict:
        """The manifest.json form: `validation` as the dict schema 1 documents."""
        out = asdict(self)
        out["validation"] = None if self.validation is None else self.validation.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Artifact:
        files = [FileEntry(**f) for f in raw.get("files", [])]
        return cls(**{**raw, "files": files})  # __post_init__ reads the validation dict


@dataclass
class Manifest:
    source: dict
    artifacts: list[Artifact] = field(default_factory=list)
    grid: str = ""  # validation grid PNG (relative path), when one was made
    schema_version: int = SCHEMA_VERSION
    unetbot_version: str = __version__

    def to_json(self) -> str:
        raw = {**asdict(self), "artifacts": [a.to_dict() for a in self.artifacts]}
        return json.dumps(raw, indent=2, sort_keys=False) + "\n"

    def save(self, folder: Path) -> Path:
        return atomic_write_bytes(Path(folder) / MANIFEST_NAME, self.to_json().encode())

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: cannot read manifest ({exc})") from None
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise BadInput(
                f"{path}: schema_version {raw.get('schema_version')} is not {SCHEMA_VERSION}"
            )
        artifacts = [Artifact.from_dict(a) for a in raw.get("artifacts", [])]
        return cls(
            source=raw["source"],
            artifacts=artifacts,
            grid=raw.get("grid", ""),
            schema_version=raw["schema_version"],
            unetbot_version=raw.get("unetbot_version", ""),
        )


def describe_files(
    folder: Path, paths: list[Path], known: Mapping[Path, str] | None = None
) -> list[FileEntry]:
    """Size and sha256 of each file, with paths relative to `folder`.

    `known`: digests the writer computed from the bytes it wrote (engine.formats.output_hash), used
    instead of reading the file again; any other file is hashed from disk."""
    known = known or {}
    return [
        FileEntry(
            str(p.relative_to(folder)),
            p.stat().st_size,
            known[p] if p in known else sha256_file(p),
        )
        for p in paths
    ]
