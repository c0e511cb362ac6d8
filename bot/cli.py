"""`bot`: the command line of unetbot (typer).

Expected failures (bad input, unsupported model, validation failure, Hub errors) print one
clear, redacted line and exit with their documented code (engine/errors.py `ExitCode`); only bugs
show a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from bot.actions import cli as actions
from bot.ledger import cli as ledger_cli
from bot.log import redact, setup_logging
from engine.errors import ExitCode, UnetbotError, exit_code_for

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="unetbot: convert SD1.5/LCM UNets to original-format and quantized files.",
)
hub_app = typer.Typer(no_args_is_help=True, help="The embedded Hub-compatible server.")
app.add_typer(hub_app, name="hub")
app.add_typer(actions.app, name="actions")
app.add_typer(ledger_cli.app, name="ledger")
log = logging.getLogger("unetbot.cli")


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {redact(str(exc))}", err=True)
    raise typer.Exit(int(exit_code_for(exc)))


def _version(value: bool) -> None:
    if value:
        from engine import __version__

        typer.echo(f"unetbot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the log lines too (debug included).")
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(help="Also write every log line (debug included) to this file."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Progress goes to stderr (live on a terminal, a plain line per event in a log), results to
    stdout; the log adds warnings and errors, or every line with -v."""
    from bot.progress import quiet_hub_bars

    quiet_hub_bars()
    setup_logging(verbose, log_file)


@app.command()
def variants(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every variant: format, what loads it, expected size vs the fp16 UNet."""
    from engine.run.variants import VARIANTS

    rows = [
        {
            "variant": v.name,
            "format": v.format,
            "loads_with": list(v.consumers),
            "expected_size_vs_fp16_unet": v.size_vs_fp16_unet,
            "needs_vae_and_text_encoder": v.full_checkpoint,
            "published_to": v.target.key,
            "description": v.description,
        }
        for v in VARIANTS.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    Console().print(_variants_table(rows), highlight=False)


def _variants_table(rows: list[dict]):
    """One line per variant at 80 columns: what loads each file is a letter keyed below."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    keys: dict[str, str] = {}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name in ("variant", "format", "by", "size", "to"):
        table.add_column(name, no_wrap=name != "format")
    for r in rows:
        loaders = ", ".join(r["loads_with"])
        key = keys.setdefault(loaders, "abcdefghijklmnopqrstuvwxyz"[len(keys)])
        fmt = r["format"]
        if fmt.startswith("diffusers folder (") and fmt.endswith(")"):
            fmt = "diffusers: " + fmt[len("diffusers folder (") : -1]
        size = f"{r['expected_size_vs_fp16_unet']:.2f}x"
        table.add_row(r["variant"], fmt, key, size, r["published_to"])
    legend = [Text(f"  {k}: {loaders}") for loaders, k in keys.items()]
    notes = [
        "by: what loads the file (below); size: expected, vs the fp16 UNet;",
        "to: where --publish puts it (pr: a PR on the source repo; else a new repo)",
    ]
    return Group(table, *(Text(n) for n in notes), *legend)


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Local pipeline/unet folder, or a Hub repo id.")],
    variants: Annotated[
        str | None,
        typer.Option(
            help="Comma list, 'all' or 'auto' (the config's lists); see `bot variants`. "
            "Default: 'original' without --publish, else 'auto'."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder (manifest.json + artifacts).")] = Path(
        "out"
    ),
    revision: Annotated[str | None, typer.Option(help="Hub revision (branch, tag or sha).")] = None,
    publish: Annotated[str, typer.Option(help="pr | repo | all | none")] = "none",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; write nothing.")] = False,
    config: Annotated[Path | None, typer.Option(help="Bot config (YAML).")] = None,
    skip_validation: Annotated[
        bool, typer.Option("--skip-validation", help="Write artifacts only (never published).")
    ] = False,
    grid: Annotated[
        bool,
        typer.Option(
            "--grid",
            help="Also decode each variant's LCM sample with the source VAE into "
            "validation-grid.png (LCM sources with a VAE; shown in the repo cards).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Convert one model, validate every artifact, and optionally publish it."""
    from bot.config import PublishMode, load_config
    from bot.job.run import JobRequest, run_job
    from bot.settings import load_settings

    try:
        settings = load_settings()
        cfg = load_config(config or settings.config_path)
        request = JobRequest(
            src,
            out,
            variants=variants,
            publish=PublishMode.parse(publish),
            revision=revision,
            dry_run=dry_run,
            validate=not skip_validation,
            grid=grid,
        )
        hub = None
        if not Path(src).is_dir():  # a local folder never needs the Hub client (~0.5 s import)
            from bot.client.hub import hub_for
            from bot.client.pacing import RateLimits

            hub = hub_for(settings, cfg.scan.max_calls, None, RateLimits.of(cfg.budget))
        result = run_job(request, cfg, hub)
    except UnetbotError as exc:
        _fail(exc)
    if as_json:
        typer.echo(redact(json.dumps(result.to_dict(), indent=2)))
    else:
        typer.echo(redact(result.summary()))
    raise typer.Exit(int(result.exit_code))


@app.command()
def scan(
    config: Annotated[Path | None, typer.Option(help="Bot config (YAML).")] = None,
    ledger: Annotated[
        bool,
        typer.Option(
            "--ledger/--no-ledger",
            help="Judge only what changed since the ledger's record (read, never written); "
            "--no-ledger judges every listed repo.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List candidate repos on the Hub: supported, or skipped with the reason."""
    from bot.client.hub import hub_for
    from bot.client.identity import bot_identity
    from bot.client.pacing import RateLimits
    from bot.config import load_config
    from bot.discover.scan import scan as run_scan
    from bot.schedule.incremental import scan_with_ledger
    from bot.settings import load_settings

    try:
        settings = load_settings()
        cfg = load_config(config or settings.config_path)
        limits = RateLimits.of(cfg.budget)
        hub = hub_for(settings, cfg.scan.max_calls, cfg.scan.max_minutes, limits)
        me = bot_identity(hub, cfg)
        if ledger:
            found, _ = scan_with_ledger(hub, cfg, me.user, me.namespace)
        else:
            found = run_scan(hub, cfg, me.namespace)
        rows = [c.to_dict() for c in found]
    except UnetbotError as exc:
        _fail(exc)
    if as_json:
        typer.echo(redact(json.dumps(rows, indent=2)))
        return
    for r in rows:
        typer.echo(redact(f"{r['status']:9} {r['repo_id']:40} {r['reason']}"))


@app.command()
def plan(
    config: Annotated[Path | None, typer.Option(help="Bot config (YAML).")] = None,
    publish: Annotated[str | None, typer.Option(help="pr | repo | all (default: config)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    github_output: Annotated[
        Path | None, typer.Option(help="Also write matrix outputs to this $GITHUB_OUTPUT file.")
    ] = None,
    ledger: Annotated[
        bool,
        typer.Option(
            "--ledger/--no-ledger",
            help="Use and update the ledger (config `ledger`); --no-ledger judges everything.",
        ),
    ] = True,
) -> None:
    """The work list (repos with something left to publish) as GitHub Actions matrices."""
    from bot.client.hub import hub_for
    from bot.client.pacing import RateLimits
    from bot.config import PublishMode, load_config
    from bot.schedule.plan import make_plan, write_github_output
    from bot.settings import load_settings

    try:
        settings = load_settings()
        cfg = load_config(config or settings.config_path)
        mode = PublishMode.parse(publish) if publish else None
        limits = RateLimits.of(cfg.budget)
        hub = hub_for(settings, cfg.scan.max_calls, cfg.scan.max_minutes, limits)
        result = make_plan(hub, cfg, mode, use_ledger=ledger)
    except UnetbotError as exc:
        _fail(exc)
    if github_output:
        write_github_output(result, github_output)
    if as_json:
        typer.echo(redact(json.dumps(result.to_dict(), indent=2)))
        return
    for e in result.entries:
        typer.echo(redact(f"todo      {e['repo_id']:40} {e['targets']}"))
    for key in ("done", "skipped", "deferred"):
        for e in getattr(result, key):
            typer.echo(redact(f"{key:9} {e['repo_id']:40} {e['reason']}"))


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="A folder with manifest.json.")],
    source: Annotated[
        Path | None, typer.Option(help="Source folder (default: from manifest).")
    ] = None,
    grid: Annotated[
        bool, typer.Option("--grid", help="Also write validation-grid.png (see `convert --grid`).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-check a manifest folder: sha256 of every file, then every artifact with its loader."""
    from engine.run.validate import validate_folder

    try:
        manifest = validate_folder(folder, source, grid)
    except UnetbotError as exc:
        _fail(exc)
    failed = [a for a in manifest.artifacts if not a.passed]
    if as_json:
        typer.echo(manifest.to_json())
    else:
        for a in manifest.artifacts:
            v = a.validation
            typer.echo(f"{a.variant:18} {v.status if v else '?':7} {v.reason if v else ''}")
    raise typer.Exit(int(ExitCode.VALIDATION_FAILED if failed else ExitCode.OK))


@app.command()
def bench(
    target: Annotated[
        str, typer.Argument(help="A `bot convert` output folder, or a repo unetbot published.")
    ],
    variants: Annotated[
        str | None, typer.Option(help="Comma list (default: every variant that passed).")
    ] = None,
    max_ram: Annotated[
        str | None, typer.Option(help="RAM to fit in, e.g. 8GB (default: this machine's).")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed UNet steps per variant.")] = 3,
    compile_: Annotated[
        bool, typer.Option("--compile", help="Also measure torch.compile (TorchAO; minutes).")
    ] = False,
    latent: Annotated[int, typer.Option(min=8, help="Latent side (64 = 512 px).")] = 64,
    revision: Annotated[str | None, typer.Option(help="Hub revision of a repo.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Measure load time, peak RAM and seconds per UNet step of each variant on this machine,
    and recommend the fastest that fits."""
    from bot.bench.report import render_table
    from bot.bench.run import BenchRequest, parse_size, run_bench
    from bot.client.hub import hub_for
    from bot.settings import load_settings

    try:
        request = BenchRequest(
            target,
            variants,
            steps,
            compile_,
            parse_size(max_ram) if max_ram else None,
            revision,
            latent,
        )
        report = run_bench(request, lambda: hub_for(load_settings(), 100, None))
    except UnetbotError as exc:
        _fail(exc)
    if as_json:
        typer.echo(redact(json.dumps(report.to_dict(), indent=2)))
    else:
        typer.echo(redact(render_table(report)))


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep the Hub and files here (default: a temp folder, removed after)."),
    ] = None,
) -> None:
    """Run the main job end to end on generated models."""
    from bot.demo import NEXT_STEPS, run_demo

    try:
        reports = run_demo(workdir)
    except UnetbotError as exc:
        _fail(exc)
    for report in reports:
        typer.echo(report.render())
    typer.echo(NEXT_STEPS)


@hub_app.command("serve")
def hub_serve(
    root: Annotated[Path, typer.Option(help="Storage folder.")] = Path(".hub"),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    config: Annotated[Path | None, typer.Option(help="Accounts/limits/faults YAML.")] = None,
) -> None:
    """Run the embedded Hub-compatible server (blocking)."""
    from bot.hub import serve

    serve(root, host, port, config)


@hub_app.command("token")
def hub_token(root: Annotated[Path, typer.Option(help="Storage folder.")] = Path(".hub")) -> None:
    """Print the local server's write token (for scripts; never logged)."""
    from bot.hub import read_token

    sys.stdout.write(read_token(root) + "\n")


if __name__ == "__main__":
    app()
