"""`bot ledger ...`: look at the ledger, or rebuild it from the markers on the Hub.

    bot ledger show [--repo OWNER/NAME] [--json]   where it is, its state, counts, one entry
    bot ledger rebuild [--source OWNER/NAME ...]   re-read the Hub's markers into it

A rebuild adds what the Hub proves to the ledger (records are facts: merging them in never
loses anything) and writes it; over a corrupt ledger it starts from nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from bot.log import redact
from engine.errors import UnetbotError, exit_code_for

app = typer.Typer(no_args_is_help=True, help="The bot's ledger (what it judged and published).")


def _fail(exc: UnetbotError) -> None:
    typer.echo(f"error: {redact(str(exc))}", err=True)
    raise typer.Exit(int(exit_code_for(exc)))


def _context(config: Path | None):
    from bot.client.hub import hub_for
    from bot.client.identity import bot_identity
    from bot.client.pacing import RateLimits
    from bot.config import load_config
    from bot.settings import load_settings

    settings = load_settings()
    cfg = load_config(config or settings.config_path)
    limits = RateLimits.of(cfg.budget)
    hub = hub_for(settings, cfg.scan.max_calls, cfg.scan.max_minutes, limits)
    return cfg, hub, bot_identity(hub, cfg)


@app.command("show")
def show(
    repo: Annotated[str | None, typer.Option(help="Print this source repo's entry.")] = None,
    config: Annotated[Path | None, typer.Option(help="Bot config (YAML).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Where the ledger is, whether it reads, and what it holds."""
    from bot.ledger.store import LedgerBook, location

    try:
        cfg, hub, me = _context(config)
        where = location(cfg.ledger, me.namespace)
        if where is None:
            typer.echo("no ledger (ledger.enabled is false, or no namespace without a token)")
            return
        book = LedgerBook.load(hub, where)
    except UnetbotError as exc:
        _fail(exc)
    entries = book.ledger.entries
    if repo is not None:
        entry = entries.get(repo)
        typer.echo(json.dumps(entry.to_dict() if entry else None, indent=2))
        return
    verdicts = Counter(e.verdict.status if e.verdict else "none" for e in entries.values())
    outcomes = Counter(
        f"{key}:{records[-1].status}"
        for e in entries.values()
        for key, records in e.targets.items()
    )
    cursor = book.ledger.cursor
    summary = {
        "repo": where.repo_id,
        "state": str(book.state),
        "commit": book.parent,
        "updated": book.ledger.updated,
        "entries": len(entries),
        "verdicts": dict(verdicts),
        "latest_target_outcomes": dict(sorted(outcomes.items())),
        "cursor": {"downloads": cursor.downloads, "repo": cursor.repo_id} if cursor else None,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key:24} {value}")


@app.command("rebuild")
def rebuild_cmd(
    source: Annotated[
        list[str] | None, typer.Option(help="Also read the bot's PRs on this source repo.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Bot config (YAML).")] = None,
) -> None:
    """Re-read the Hub's markers (PRs, published cards) into the ledger and write it."""
    from bot.ledger.model import merge_entries
    from bot.ledger.rebuild import rebuild
    from bot.ledger.store import LedgerBook, LoadState, location

    try:
        cfg, hub, me = _context(config)
        where = location(cfg.ledger, me.namespace)
        if where is None or not me.user:
            typer.echo("error: a rebuild needs HF_TOKEN and an enabled ledger", err=True)
            raise typer.Exit(2)
        book = LedgerBook.load(hub, where)
        if book.state is LoadState.NEWER:
            typer.echo(f"error: {where.repo_id} was written by a newer unetbot", err=True)
            raise typer.Exit(2)
        found = rebuild(hub, me.user, me.namespace, where.history, source or ())
        for repo_id, entry in found.entries.items():
            merged = merge_entries(book.entry(repo_id), entry, where.history)
            if merged is not None:
                book.put(merged)
        written = book.save(hub)
    except UnetbotError as exc:
        _fail(exc)
    typer.echo(
        f"{where.repo_id}: {len(found.entries)} source repo(s) with published targets found; "
        f"{'written' if written else 'nothing to write'} (was {book.state})"
    )
