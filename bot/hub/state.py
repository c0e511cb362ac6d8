"""Server state and the hub config file.

Config (YAML; every key optional; unknown keys are errors, so a typo cannot silently change the
server). Accounts: `users`, `orgs`, `tokens`, `admins`, `gated_access` (auth.py). Faults:
`faults` (faults.py). Rate limits: `rate_limits` (ratelimit.py; off without it). Others:

    max_file_size: 53687091200        # bytes per file (preupload and LFS batch refuse more)
    list_page_size: 1000              # list_models page size (the Link header pages on)
    lfs_url_ttl: 3600                 # seconds an LFS upload URL stays valid
    max_json_body: 8388608            # bytes of a JSON body (413 past it)
    max_commit_body: 33554432         # bytes of an NDJSON commit (inline files are base64)
    security_pending: [alice/m/*.bin] # files listed without a security record (bot/hub/security)
    repo_counts:                      # downloads / likes shown and sorted on (no real users)
      alice/model: {downloads: 1200, likes: 3}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.hub.auth import Accounts, UrlSigner
from bot.hub.discussions import Discussions
from bot.hub.faults import FaultInjector
from bot.hub.http import JSON_BODY_MAX
from bot.hub.objects import ObjectStore
from bot.hub.ratelimit import RateLimiter
from bot.hub.repos import RepoStore
from bot.hub.stats import RequestStats

DEFAULT_MAX_FILE_SIZE = 50 * 1024**3
COMMIT_BODY_MAX = 32 * 1024 * 1024  # two inline files at the 10 MiB maximum, base64-encoded
CONFIG_KEYS = frozenset(
    {
        "users",
        "orgs",
        "tokens",
        "admins",
        "gated_access",
        "faults",
        "rate_limits",
        "max_file_size",
        "list_page_size",
        "lfs_url_ttl",
        "max_json_body",
        "max_commit_body",
        "repo_counts",
        "security_pending",
    }
)


@dataclass
class HubState:
    root: Path
    repos: RepoStore
    discussions: Discussions
    accounts: Accounts
    signer: UrlSigner
    faults: FaultInjector
    token: str = field(repr=False)  # a write token, for in-process callers only; never logged
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    page_size: int = 1000
    body_caps: dict[str, int] = field(
        default_factory=lambda: {"json": JSON_BODY_MAX, "commit": COMMIT_BODY_MAX}
    )
    rate_limiter: RateLimiter | None = None
    stats: RequestStats = field(default_factory=RequestStats)
    # repo/path patterns reported without a security record (not scanned yet; bot/hub/security)
    security_pending: set[str] = field(default_factory=set)


def load_config(config: Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    data = yaml.safe_load(Path(config).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config}: hub config must be a YAML mapping")
    unknown = set(data) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"{config}: unknown hub config keys {sorted(unknown)}")
    return data


def _repo_counts(raw: Any) -> dict[str, dict[str, int]]:
    if not isinstance(raw, dict):
        raise ValueError("repo_counts must map repo ids to {downloads, likes}")
    out = {}
    for repo_id, counts in raw.items():
        if not isinstance(counts, dict) or set(counts) - {"downloads", "likes"}:
            raise ValueError(f"repo_counts.{repo_id} must be {{downloads: N, likes: N}}")
        out[str(repo_id)] = {k: int(v) for k, v in counts.items()}
    return out


def build_state(root: Path, config: Path | None = None, *, durable: bool = True) -> HubState:
    """Open (or initialise) a root: storage, accounts from config or the local token.

    `durable=False` skips fsyncs: for tests and benchmarks only, never for a real server."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    if cfg.get("tokens"):
        accounts, token = Accounts.from_config(cfg)
    else:
        accounts, token = Accounts.local(root)
    max_size = int(cfg.get("max_file_size", DEFAULT_MAX_FILE_SIZE))
    objects = ObjectStore(root, durable=durable)
    repos = RepoStore(root, objects, max_size, _repo_counts(cfg.get("repo_counts") or {}))
    return HubState(
        root=root,
        repos=repos,
        discussions=Discussions(repos),
        accounts=accounts,
        signer=UrlSigner(root, float(cfg.get("lfs_url_ttl", 3600))),
        faults=FaultInjector(cfg.get("faults") or []),
        token=token,
        max_file_size=max_size,
        page_size=max(1, int(cfg.get("list_page_size", 1000))),
        body_caps={
            "json": int(cfg.get("max_json_body", JSON_BODY_MAX)),
            "commit": int(cfg.get("max_commit_body", COMMIT_BODY_MAX)),
        },
        rate_limiter=RateLimiter.from_config(cfg.get("rate_limits")),
        security_pending={str(p) for p in cfg.get("security_pending") or []},
    )
