"""Accounts, tokens and access rules of the embedded Hub, plus signed LFS upload URLs.

Config (YAML, all keys optional except that a config needs at least one token; the other
keys are described in state.py):

    users: [{name: alice, plan: pro}, {name: bob}]  # plan: free (default) or pro (rate limits)
    orgs: [{name: acme, members: [alice]}]
    tokens: [{id: alice-w, user: alice, role: write, token: hf_...}]  # role: read|write|admin
    admins: [alice]                        # users whose write tokens may use /admin/*
    gated_access: {acme/model: [bob]}      # who besides namespace members may download

Roles: `read` reads, `write` also writes, `admin` also drives the server's own /admin/ routes
(fault injection), as does a write token of a user listed under `admins`. Without a config
the server has one user, `unetbot-local`, whose token (admin: it is the operator's) is
generated once and kept in ROOT/token (mode 0600). Tokens are never logged; only their ids
and roles are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.hub.errors import Forbidden, Unauthorized
from bot.hub.model import RepoMeta
from engine.formats.fsio import atomic_output

LOCAL_USER = "unetbot-local"
TOKEN_FILE = "token"
SECRET_FILE = ".hmac-secret"
BAD_CREDENTIALS = "Invalid credentials in Authorization header"
ROLES = ("read", "write", "admin")
PLANS = ("free", "pro")


@dataclass(frozen=True)
class Token:
    id: str
    user: str
    role: str  # one of ROLES


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, their token's id and role, their orgs and plan."""

    user: str
    token_id: str
    role: str
    orgs: tuple[str, ...] = ()
    admin: bool = False
    plan: str = "free"

    @property
    def can_write(self) -> bool:
        return self.role in ("write", "admin")

    def owns(self, namespace: str) -> bool:
        return namespace == self.user or namespace in self.orgs


def read_token(root: Path) -> str:
    """The local write token of a config-less server (for `bot hub token --root DIR`)."""
    return (Path(root) / TOKEN_FILE).read_text().strip()


def write_secret_file(path: Path, value: str) -> None:
    """Write a secret all-or-nothing, readable by its owner only (mode 0600 from creation)."""
    with atomic_output(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")


def _load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """Read a hex secret, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(nbytes)
    write_secret_file(path, value)
    return value


@dataclass
class Accounts:
    users: set[str]
    orgs: dict[str, set[str]]
    tokens: dict[str, Token]  # secret -> token; the secret never leaves this mapping
    gated_access: dict[str, set[str]] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    plans: dict[str, str] = field(default_factory=dict)  # user -> plan (default free)

    @classmethod
    def local(cls, root: Path) -> tuple[Accounts, str]:
        """One user with one admin token stored in ROOT/token; returns (accounts, token)."""
        path = root / TOKEN_FILE
        if path.exists():
            secret = path.read_text().strip()
            os.chmod(path, 0o600)
        else:
            secret = "hf_" + secrets.token_urlsafe(30)
            write_secret_file(path, secret)
        token = Token("local-write", LOCAL_USER, "admin")
        return cls({LOCAL_USER}, {}, {secret: token}), secret

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> tuple[Accounts, str]:
        """Build accounts from a parsed config; returns (accounts, first write token)."""
        users: set[str] = set()
        plans: dict[str, str] = {}
        for u in cfg.get("users") or []:
            name = str(u["name"] if isinstance(u, dict) else u)
            users.add(name)
            plan = str(u.get("plan", "free")) if isinstance(u, dict) else "free"
            if plan not in PLANS:
                raise ValueError(f"user {name}: plan must be one of {PLANS}, not {plan!r}")
            plans[name] = plan
        orgs = {
            str(o["name"]): {str(m) for m in o.get("members") or []} for o in cfg.get("orgs") or []
        }
        tokens: dict[str, Token] = {}
        first_write = ""
        for i, t in enumerate(cfg.get("tokens") or []):
            role = str(t.get("role", "read"))
            if role not in ROLES:
                raise ValueError(f"token {t.get('id', i)}: role must be one of {ROLES}")
            user = str(t["user"])
            if user not in users:
                users.add(user)
            secret = str(t["token"])
            tokens[secret] = Token(str(t.get("id", f"token-{i}")), user, role)
            if role in ("write", "admin") and not first_write:
                first_write = secret
        if not tokens:
            raise ValueError("hub config defines no tokens")
        gated = {
            str(k): {str(u) for u in v or []} for k, v in (cfg.get("gated_access") or {}).items()
        }
        admins = {str(a) for a in cfg.get("admins") or []}
        return cls(users, orgs, tokens, gated, admins, plans), first_write

    def principal(self, authorization: str | None) -> Principal | None:
        """Anonymous (None) without a header; 401 for a header with an unknown token."""
        if not authorization:
            return None
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized(BAD_CREDENTIALS)
        for known, token in self.tokens.items():
            if hmac.compare_digest(known.encode(), secret.strip().encode()):
                orgs = tuple(sorted(o for o, members in self.orgs.items() if token.user in members))
                admin = token.role == "admin" or (
                    token.role == "write" and token.user in self.admins
                )
                plan = self.plans.get(token.user, "free")
                return Principal(token.user, token.id, token.role, orgs, admin, plan)
        raise Unauthorized(BAD_CREDENTIALS)

    def whoami(self, who: Principal) -> dict[str, Any]:
        return {
            "type": "user",
            "id": hashlib.sha1(who.user.encode()).hexdigest()[:24],
            "name": who.user,
            "fullname": who.user,
            "email": None,
            "emailVerified": False,
            "isPro": who.plan == "pro",
            "canPay": False,
            "periodEnd": None,
            "orgs": [
                {"type": "org", "name": o, "fullname": o, "roleInOrg": "write"} for o in who.orgs
            ],
            "auth": {
                "type": "access_token",
                # the Hub knows read and write tokens; admin is this server's own notion
                "accessToken": {
                    "displayName": who.token_id,
                    "role": "write" if who.can_write else "read",
                },
            },
        }

    # -- access rules -----------------------------------------------------------------
    @staticmethod
    def can_see(who: Principal | None, meta: RepoMeta) -> bool:
        """Private repos exist only for members of their namespace (others get 404)."""
        return not meta.private or (who is not None and who.owns(meta.author))

    def can_download(self, who: Principal | None, meta: RepoMeta) -> bool:
        if not meta.gated:
            return True
        if who is None:
            return False
        return who.owns(meta.author) or who.user in self.gated_access.get(meta.repo_id, set())

    @staticmethod
    def require_write(who: Principal | None, namespace: str | None) -> Principal:
        """401 without a token, 403 for a read token or somebody else's namespace.

        `namespace=None` asks only for a write token (pull requests from non-members)."""
        if who is None:
            raise Unauthorized("You must be authenticated to write")
        if not who.can_write:
            raise Forbidden(
                "You have read access but not the required permissions"
                " for this operation (read token)"
            )
        if namespace is not None and not who.owns(namespace):
            raise Forbidden(f"You don't have the rights to write to {namespace}")
        return who


class UrlSigner:
    """HMAC-signed, expiring LFS upload URLs: the client sends no Authorization on the PUT."""

    def __init__(self, root: Path, ttl: float = 3600.0):
        self._key = bytes.fromhex(_load_or_create_secret(root / SECRET_FILE))
        self.ttl = ttl

    def _mac(self, oid: str, size: int, expires: int) -> str:
        msg = f"{oid}:{size}:{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(self, oid: str, size: int) -> dict[str, str]:
        expires = int(time.time() + self.ttl)
        return {"size": str(size), "expires": str(expires), "sig": self._mac(oid, size, expires)}

    def verify(self, oid: str, size: str | None, expires: str | None, sig: str | None) -> int:
        """Return the signed size; 403 when the signature is wrong or expired."""
        try:
            size_i, exp_i = int(size or ""), int(expires or "")
        except ValueError as exc:
            raise Forbidden("malformed upload URL") from exc
        # bytes, not str: compare_digest refuses non-ASCII str, and the URL is the caller's
        given = (sig or "").encode("utf-8", "surrogateescape")
        if not given or not hmac.compare_digest(given, self._mac(oid, size_i, exp_i).encode()):
            raise Forbidden("bad upload signature")
        if exp_i < time.time():
            raise Forbidden("upload URL expired")
        return size_i
