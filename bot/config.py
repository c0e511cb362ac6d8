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
from engine.run.selection import parse_variant_names
from engine.run.variants import REPO_TARGETS, PublishTarget


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
    "pr": ["original", "original-full", "original-fp16", "original-full-fp16"],
    "gguf": [
        "gguf-f16",
        "gguf-q8_0",
        "gguf-q5_0",
        "gguf-q5_1",
        "gguf-q4_0",
        "gguf-q4_1",
        "gguf-full-q8_0",
        "gguf-full-q4_0",
        "comfy-gguf-q8_0",
        "comfy-gguf-q5_0",
        "comfy-gguf-q4_0",
    ],
    "torchao": ["torchao-int8wo"],
    "quanto": ["quanto-int8", "quanto-float8"],
}


@dataclass
class ScanConfig:
    """Discovery (bot/discover/listing.py): listings by what the Hub indexes, not by name.

    Each entry of `filters` is one `list_models` listing of the repos carrying that tag (the
    `diffusers` library tag holds pipelines of every class and bare UNet repos; a
    `diffusers:<PipelineClass>` tag narrows to one class). `searches` and `authors` are optional
    extra listings; a search already covered by a plain filter listing is not sent."""

    filters: list[str] = field(default_factory=lambda: ["diffusers"])
    # One more listing, without `library`: repos carrying all these tags, where single-file
    # SD1.5 checkpoints are (tagged by their cards, not by a library); [] turns it off.
    single_file_tags: list[str] = field(
        default_factory=lambda: ["stable-diffusion", "text-to-image"]
    )
    searches: list[str] = field(default_factory=list)  # optional extra name searches
    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # added to every listing
    library: str | None = "diffusers"  # a library tag, added to every listing
    limit_per_query: int = 0  # 0: the whole listing; N: the N most downloaded
    max_calls: int = 500  # Hub requests (API + resolver) per run, the ledger's own included
    # The plan's time budget: below the plan job's timeout (bot.yml), so that a run that meets
    # it still saves the ledger and the next run continues from its cursor.
    max_minutes: float = 20.0

    def check(self, where: str) -> None:
        if self.limit_per_query < 0 or self.max_calls < 1 or self.max_minutes <= 0:
            raise BadInput(f"{where}: limit_per_query >= 0, max_calls >= 1, max_minutes > 0")
        if not (self.filters or self.searches or self.authors or self.single_file_tags):
            raise BadInput(f"{where}: nothing to list (filters, searches and authors are empty)")


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
    # Validation grid PNG in the repo cards (LCM sources with a VAE; engine.validation.grid): one
    # VAE decode per variant, seconds each on a CPU, so off unless asked for.
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
    from engine.run.variants import VARIANTS

    return VARIANTS[name].target


# The byte budget's drop order (README "Byte budget"): first the files another published file
# dominates (same consumers, about the same size and RAM, worse quality), last the files nothing
# else replaces. Sizes and quality: benchmarks/RESULTS.md, the cards' "What to pick" table.
DEFAULT_DROP_ORDER = [
    "quanto-float8",  # the size of quanto-int8 with 7x its error
    "gguf-q5_1",  # Q5/Q4 universal GGUFs: 5-9% smaller than Q8_0, 8-16x its error, same RAM
    "gguf-q4_1",
    "gguf-q5_0",
    "gguf-full-q5_1",
    "gguf-full-q4_1",
    "gguf-full-q5_0",
    "gguf-f16",  # the bytes of the PR's original-fp16, in a GGUF
    "gguf-full-f16",
    "quanto-int8",  # diffusers-only: gguf-q8_0 loads in diffusers too, with less RAM
    "gguf-full-q4_0",
    "torchao-int8wo",
    "gguf-q4_0",
    "comfy-gguf-q5_0",
    "gguf-full-q8_0",
    "comfy-gguf-q4_0",
    "comfy-gguf-q8_0",
    "gguf-q8_0",  # every consumer, near-lossless: the last to go
]


@dataclass
class BudgetConfig:
    max_repos: int = 20  # source repos converted per run
    max_download_bytes: int = 40 * 1024**3
    max_minutes: float = 300.0
    # Bytes one source may publish into the bot's namespace (every target but the PR); 0: no
    # cap. Over it, variants are dropped in `drop_order` (bot/choice.py).
    max_published_bytes_per_source: int = 6_000_000_000
    drop_order: list[str] = field(default_factory=lambda: list(DEFAULT_DROP_ORDER))
    # Sources with at least this many downloads get the configured lists whole; 0: none does.
    full_set_min_downloads: int = 0
    # The Hub's rate limits the bot paces itself under (bot/client/pacing.py): requests per fixed
    # window, per account. Defaults: a free account (hub-docs "Hub Rate limits"); a PRO
    # account has api 2500, resolvers 12000. The server's RateLimit headers win when sent.
    api_per_window: int = 1000
    resolvers_per_window: int = 5000
    window_seconds: float = 300.0

    def check(self, where: str) -> None:
        if min(self.api_per_window, self.resolvers_per_window) < 1 or self.window_seconds <= 0:
            raise BadInput(f"{where}: rate limits must be positive")
        if self.max_published_bytes_per_source < 0 or self.full_set_min_downloads < 0:
            raise BadInput(f"{where}: max_published_bytes_per_source, full_set_min_downloads >= 0")
        if self.drop_order:
            parse_variant_names(self.drop_order)
        if "all" in self.drop_order:
            raise BadInput(f"{where}: drop_order names variants, not `all`")
        wrong = [n for n in self.drop_order if _target_of(n).is_pr]
        if wrong:
            raise BadInput(f"{where}: drop_order lists {wrong}: the PR is not in the byte budget")


@dataclass
class LedgerConfig:
    """The bot's memory of what it judged and published (bot/ledger/model.py), kept on the Hub in a
    dataset repo of the bot's namespace. A cache: lost or corrupt, it is rebuilt from the
    markers on the Hub."""

    enabled: bool = True
    repo: str = "unetbot-ledger"  # a dataset repo name in the bot's namespace, or owner/name
    private: bool = False
    history: int = 4  # outcomes kept per (source repo, publish target)

    def check(self, where: str) -> None:
        if not self.repo or self.repo.count("/") > 1 or self.history < 1:
            raise BadInput(f"{where}: repo must be a name or owner/name, history >= 1")


@dataclass
class BotConfig:
    scan: ScanConfig = field(default_factory=ScanConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)

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
    defaults = cls()
    for key, value in raw.items():
        _check_type(f"{where}.{key}", value, getattr(defaults, key))
    return cls(**raw)


def _check_type(where: str, value: object, default: object) -> None:
    """A setting must have its default's type (ints are accepted for floats, null for text
    settings): a typo like `max_calls: "500"` is an error, not a crash later."""
    if default is None or (isinstance(default, float) and type(value) is int):
        return
    if value is None and isinstance(default, str):  # `library: null`: no library filter
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = type(value) is type(default)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise BadInput(f"{where}: expected {type(default).__name__}, got {value!r}")


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
    unknown = sorted(set(raw) - {"scan", "policy", "publish", "budget", "ledger"})
    if unknown:
        raise BadInput(f"{path}: unknown section(s) {unknown}")
    config = BotConfig(
        scan=_section(ScanConfig, raw.get("scan"), f"{path}: scan"),
        policy=_section(PolicyConfig, raw.get("policy"), f"{path}: policy"),
        publish=_section(PublishConfig, raw.get("publish"), f"{path}: publish"),
        budget=_section(BudgetConfig, raw.get("budget"), f"{path}: budget"),
        ledger=_section(LedgerConfig, raw.get("ledger"), f"{path}: ledger"),
    )
    config.publish.check(f"{path}: publish")
    config.scan.check(f"{path}: scan")
    config.budget.check(f"{path}: budget")
    config.ledger.check(f"{path}: ledger")
    return config
