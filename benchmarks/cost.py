"""Reference costs of every variant: load time, peak RSS and seconds per UNet step (64x64
latent, batch 1, CPU) on the full-size reference model, stored in engine/cost/cost_table.json.

Speed and memory depend on the architecture and the format, not on the weights' values, so this
runs once per converter version: the cards of every published repo show these figures with the
machine they were measured on (engine/cost/table.py). Steps: build the full-size random SD1.5
LCM fp16 pipeline (VAE + CLIP, for the full checkpoints), `bot convert --variants all` (with
validation, so the folder is also what `bot bench` reads), then each variant in a fresh process
in its consumer (engine/cost/run.py), TorchAO also compiled, and with the `sdcpp` extra the files
stable-diffusion.cpp reads in stable-diffusion.cpp too. Takes tens of minutes on 2 cores.

`--sdcpp-only` measures only in stable-diffusion.cpp (`--variants` to choose which files; the
folder is converted without validation, which costs nothing here) and merges those figures into
this version's reference run, keeping its diffusers figures.

    python benchmarks/cost.py [--work DIR] [--steps 3] [--no-compile] [--no-write]
    python benchmarks/cost.py --sdcpp-only [--variants original-full,gguf-full-q8_0,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, full_size_source, table


def _converted(source: Path, out: Path) -> Path:
    """`bot convert --variants all` into `out`, unless a complete manifest is already there."""
    from engine.formats.manifest import Manifest

    if (out / "manifest.json").is_file() and Manifest.load(out).artifacts:
        return out
    cmd = [sys.executable, "-m", "bot.cli", "convert", str(source), "--variants", "all"]
    subprocess.run([*cmd, "--out", str(out), "--publish", "none"], check=True, cwd=ROOT)
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gb(n: int | None) -> str:
    return _fmt(n / 1e9 if n else None)


def _rows(costs: list) -> list[dict]:
    rows = []
    for c in costs:
        e, k = c.eager, c.compiled
        rows.append(
            {
                "variant": c.variant,
                "file_mb": f"{c.file_bytes / 1e6:.0f}",
                "status": c.status if not c.not_measured else "not measured",
                "load_s": _fmt(e.load_s if e else None, 1),
                "peak_rss_gb": _gb(e.peak_rss_bytes if e else None),
                "step_s": _fmt(e.step_s if e else None),
                "compiled_step_s": _fmt(k.step_s if k else None),
                "compile_s": _fmt(k.warmup_s if k else None, 0),
                "compiled_peak_gb": _gb(k.peak_rss_bytes if k else None),
                "load_avg": _fmt(e.load_average if e else None, 1),
                "sdcpp_load_s": _fmt(c.sdcpp.load_s if c.sdcpp else None, 1),
                "sdcpp_peak_gb": _gb(c.sdcpp.peak_rss_bytes if c.sdcpp else None),
                "sdcpp_step_s": _fmt(c.sdcpp.step_s if c.sdcpp else None),
            }
        )
    return rows


def _merged_sdcpp(new):
    """This version's reference run with `new`'s stable-diffusion.cpp figures in it (its
    diffusers figures, machine and settings kept; the library's version added)."""
    from engine.cost.model import not_measured_reason
    from engine.cost.table import reference_run
    from engine.run.variants import variant

    run = reference_run()
    if run is None:
        raise SystemExit("no reference run of this version to add stable-diffusion.cpp figures to")
    for name, cost in new.costs.items():
        if name in run.costs:
            run.costs[name].sdcpp = cost.sdcpp
    for name, cost in run.costs.items():  # today's wording of why a figure is missing
        if cost.not_measured:
            cost.not_measured = not_measured_reason(variant(name))
    run.machine["versions"] = {**run.machine.get("versions", {}), **new.machine["versions"]}
    run.machine["sdcpp_date"] = new.machine["date"]
    return run


def main() -> None:
    from engine import __version__
    from engine.cost.model import Mode, settings
    from engine.cost.run import machine_info, measure_folder
    from engine.cost.table import ReferenceRun, save_run
    from engine.formats.manifest import Manifest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the fixture and outputs here")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not update the table")
    parser.add_argument("--sdcpp-only", action="store_true", help="stable-diffusion.cpp only")
    parser.add_argument("--variants", help="comma list (default: every variant)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="unetbot-cost-", dir=Path.cwd()))
    work.mkdir(parents=True, exist_ok=True)
    source = full_size_source(work, "sd15-lcm", with_pipeline=True)
    if args.sdcpp_only:
        from engine.run.convert import convert, source_facts
        from engine.run.selection import resolve_variants
        from engine.source.weight_sets import WeightSets
        from engine.validation.sdcpp import applies

        out = work / "out-sdcpp"
        if not (out / "manifest.json").is_file():
            # what `--variants all` makes of this source (an fp16 source has no fp16 twins)
            facts = source_facts(WeightSets(source).main)
            readers = [v.name for v in resolve_variants("all", facts) if applies(v.consumers)]
            convert(source, out, args.variants.split(",") if args.variants else readers)
    else:
        out = _converted(source, work / "out")
    manifest = Manifest.load(out)
    names = [a.variant for a in manifest.artifacts]
    if args.variants:
        names = [n for n in names if n in args.variants.split(",")]
    started = time.perf_counter()

    def progress(item: str, index: int, total: int) -> None:
        print(f"[{time.perf_counter() - started:7.0f}s] {index}/{total} {item}", flush=True)

    machine = machine_info()
    modes = {Mode.SDCPP} if args.sdcpp_only else None
    costs = measure_folder(
        out, manifest, names, args.steps, not args.no_compile, progress, modes=modes
    )
    run = ReferenceRun(__version__, machine, settings(args.steps), {c.variant: c for c in costs})
    if args.sdcpp_only:
        run = _merged_sdcpp(run)
    if not args.no_write:
        print(f"wrote {save_run(run)}")
    print(f"machine: {machine}")
    print(f"settings: {run.settings}")
    print(table(_rows(costs), list(_rows(costs)[0])))
    for c in costs:
        for m in c.measurements():
            if not m.measured:
                print(f"{c.variant} {m.mode}: {m.status}: {m.reason}")


if __name__ == "__main__":
    main()
