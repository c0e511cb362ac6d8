"""The bot's policy and scan configuration (YAML), documented in README "Configuration".

Every field has a safe default, so a missing file means: scan for diffusers SD1.5 UNets, allow
permissive licences, skip gated/private/opted-out repos, publish nothing bigger than the limits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path

import yaml

from engine.errors import BadInput
from engine.variants import REPO_TARGETS, PublishTarget, parse_variant_names


class PublishMode(Enum):
    """What `--publish` / `publish.mode` asks for: which targets a run publishes to."""

    NONE = ("none", ())
    PR = ("pr", (PublishTarget.PR,))
    REPO = ("repo", REPO_TARGETS)
    ALL = ("all", (PublishTarget.PR, *REPO_TARGETS))

    def __init__(self, key: str, targets: tuple[PublishTarget, ...]) -> None:
        self.key = key
        self.targets = targets

    @classmethod
    def parse(cls, key: str) -> PublishMode:
        for mode in cls:
            if mode.key == key:
                return mode
        raise BadInput(f"--publish must be one of {', '.join(m.key for m in cls)}, not {key!r}")


DEFAULT_VARIANTS = {
    "pr": ["original", "original-full"],
    "gguf": [
        "gguf-f16",
        "gguf-q8_0",
        "gguf-q5_0",
        "gguf-q5_1",
        "gguf-q4_0",
        "gguf-q4_1",
        "gguf-full-q8_0",
        "gguf-full-q4_0",
    ],
    "torchao": ["torchao-int8wo"],
    "quanto": ["quanto-int8", "quanto-float8"],
}


@dataclass
class ScanConfig:
    searches: list[str] = field(default_factory=lambda: ["lcm", "stable-diffusion"])
    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    library: str | None = "diffusers"  # a library tag, added to the filters
    limit_per_query: int = 200
    max_calls: int = 500  # Hub API calls per run (listing + small-file reads)


@dataclass
class PolicyConfig:
    licence_allow: list[str] = field(
        default_factory=lambda: [
            "creativeml-openrail-m",
            "openrail",
            "openrail++",
            "apache-2.0",
            "mit",
            "bsd-3-clause",
            "cc-by-4.0",
            "cc0-1.0",
            "other",
        ]
    )
    licence_deny: list[str] = field(default_factory=lambda: ["cc-by-nc-nd-4.0"])
    skip_gated: bool = True
    skip_private: bool = True
    opt_out_tags: list[str] = field(default_factory=lambda: ["unetbot-opt-out", "no-conversion"])
    opt_out_files: list[str] = field(default_factory=lambda: [".unetbot-opt-out"])
    max_unet_bytes: int = 4 * 1024**3
    max_total_bytes: int = 12 * 1024**3


@dataclass
class PublishConfig:
    namespace: str = ""  # empty: the token's own user
    mode: str = "repo"  # pr | repo | all | none: what the scheduled run publishes
    pr_variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS["pr"]))
    gguf_variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS["gguf"]))
    torchao_variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS["torchao"]))
    quanto_variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS["quanto"]))
    # Validation grid PNG in the repo cards (LCM sources with a VAE; engine.grid): one VAE
    # decode per variant, seconds each on a CPU, so off unless asked for.
    grid: bool = False

    def variants_for(self, target: PublishTarget) -> list[str]:
        """The configured variant names of one publish target (`<target>_variants`)."""
        return list(getattr(self, f"{target.key}_variants"))

    def check(self, where: str) -> None:
        PublishMode.parse(self.mode)
        for target in PublishTarget:
            names = self.variants_for(target)
            if names:
                parse_variant_names(names)  # unknown names are errors here, not at publish time
            wrong = [n for n in names if n != "all" and _target_of(n) is not target]
            if wrong:
                raise BadInput(f"{where}: {target.key}_variants lists {wrong}, which go elsewhere")


def _target_of(name: str) -> PublishTarget:
    from engine.variants import VARIANTS

    return VARIANTS[name].target


@dataclass
class BudgetConfig:
    max_repos: int = 20  # source repos converted per run
    max_download_bytes: int = 40 * 1024**3
    max_minutes: float = 300.0


@dataclass
class BotConfig:
    scan: ScanConfig = field(default_factory=ScanConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _section(cls, raw: object, where: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise BadInput(f"{where}: must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BadInput(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**raw)


def load_config(path: Path | str | None) -> BotConfig:
    """Load a YAML config; unknown keys are errors (a typo must not silently change policy)."""
    if path is None:
        return BotConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, RecursionError) as exc:
        raise BadInput(f"{path}: cannot read config ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: config must be a mapping")
    unknown = sorted(set(raw) - {"scan", "policy", "publish", "budget"})
    if unknown:
        raise BadInput(f"{path}: unknown section(s) {unknown}")
    config = BotConfig(
        scan=_section(ScanConfig, raw.get("scan"), f"{path}: scan"),
        policy=_section(PolicyConfig, raw.get("policy"), f"{path}: policy"),
        publish=_section(PublishConfig, raw.get("publish"), f"{path}: publish"),
        budget=_section(BudgetConfig, raw.get("budget"), f"{path}: budget"),
    )
    config.publish.check(f"{path}: publish")
    return config
