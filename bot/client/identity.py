"""Who the bot is on this Hub: the token's user and the namespace its repos go to.

Asked once per run (one `whoami`); discovery, the ledger and the job all start from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.client.hub import Hub
from bot.config import BotConfig


@dataclass(frozen=True)
class Identity:
    """Who the bot is on this Hub: its user ('' without a token) and its repos' namespace."""

    user: str
    namespace: str


def bot_identity(hub: Hub, config: BotConfig) -> Identity:
    if not hub.settings.token:
        return Identity("", config.publish.namespace)
    me = hub.call("whoami", hub.api.whoami)
    return Identity(me["name"], config.publish.namespace or me["name"])
