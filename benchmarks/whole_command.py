"""What a user times: the whole `bot convert` process against `cp` + `sync` of the same UNet.

The in-process benchmarks (benchmarks/convert.py, benchmarks/quantize_gguf.py) time the writers;
a user times the command: interpreter start, imports, opening and checking the source, writing,
hashing every output for manifest.json, fsync. Here each command runs as its own process under
GNU time (`/usr/bin/time -v`: wall clock and peak RSS), on a full-size random-weight SD1.5 LCM
fp16 UNet (engine.synthetic.models, built once per work folder, in a subprocess):

- baseline: `cp SRC DST && sync DST` of the source UNet file (the bytes an `original` holds, and
  the durability unetbot gives: it fsyncs before the rename);
- `bot convert DIR --variants V --skip-validation --out OUT` for each variant asked for;
- `bot convert ... --dry-run`: interpreter start + imports + opening the source, writing nothing
  (what every command pays before its first byte).

Runs are paired: every round measures the baseline and then each command, outputs are deleted and
the disk synced before each measurement (no earlier write-back lands in a later time), and each
command's ratio is taken against the baseline of its own round; the table shows medians over the
rounds (walls, pairwise ratios, peak RSS). The machine is shared: check `uptime` first.

`--checkout LABEL=DIR[:EXTRA]` also runs each variant from another copy of the code (e.g. `git
archive <commit>` unpacked, with engine/_gguf_kernels*.so copied in), measured in the same rounds,
so before/after comparisons are pairwise too. `PYTHONPATH` cannot select it: the editable install
of this checkout puts a finder for `bot`/`engine` ahead of every path entry, so the copy is run
through `CHECKOUT_RUNNER`, which imports those packages from DIR first. EXTRA (optional, `:`
separated) goes on `PYTHONPATH`: that copy's own pins of other packages, installed with
`pip install --target` (e.g. its typer).

Usage: .venv/bin/python benchmarks/whole_command.py [--workdir DIR] [--rounds 5]
       [--variants original,gguf-q8_0,gguf-q4_0] [--checkout before=/tmp/old ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, full_size_source, machine, table, time_v

BOT = str(Path(sys.executable).with_name("bot"))
# `bot ARGS...` with unetbot's own packages imported from the directory given as argv[1].
CHECKOUT_RUNNER = """
import importlib.machinery, sys
code = sys.argv.pop(1)

class FromCheckout:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if path is None and name in ("bot", "engine", "model_cards"):
            return importlib.machinery.PathFinder.find_spec(name, [code])
        return None

sys.meta_path.insert(0, FromCheckout)
sys.argv[0] = "bot"
import bot, bot.cli
assert bot.__file__.startswith(code), bot.__file__
bot.cli.app()
"""
GOALS = {"original": 1.3, "gguf-q8_0": 2.0, "gguf-q4_0": 2.0}  # x (cp + sync), issue #16


def _measured(cmd: list[str], clean: list[Path], ok: tuple[int, ...] = (0,)) -> dict:
    for path in clean:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    os.sync()  # the previous command's write-back must not land in this one's time
    return time_v(cmd, ok=ok)


def run_rounds(
    src_dir: Path, work: Path, variants: list[str], rounds: int, checkouts: dict[str, str]
) -> dict[str, list]:
    """name -> [{"wall_s", "peak_rss_mb", "ratio"}] per round (ratio vs that round's baseline)."""
    weights = src_dir / "unet" / "diffusion_pytorch_model.safetensors"
    copy = work / "cp.out"
    commands = {"cp + sync": ["sh", "-c", f"cp '{weights}' '{copy}' && sync '{copy}'"]}
    outs = {"cp + sync": copy}
    accepted: dict[str, tuple[int, ...]] = {}
    dry = work / "dry"
    commands["bot convert --dry-run"] = [BOT, "convert", str(src_dir), "--variants", "original"]
    commands["bot convert --dry-run"] += ["--out", str(dry), "--dry-run"]
    outs["bot convert --dry-run"] = dry
    for name in variants:
        for label, code in {"": None, **checkouts}.items():
            key = f"{name} [{label}]" if label else name
            out = work / f"out-{name}-{label}"
            args = ["convert", str(src_dir), "--variants", name, "--skip-validation"]
            args += ["--out", str(out)]
            commands[key] = [BOT, *args] if code is None else _from_checkout(code, args)
            # `--skip-validation` exits 0 (README "Exit codes"); older checkouts exited 4
            accepted[key] = (0,) if code is None else (0, 4)
            outs[key] = out
    results: dict[str, list] = {name: [] for name in commands}
    for i in range(rounds):
        base = None
        for name, cmd in commands.items():
            got = _measured(cmd, [outs[name]], accepted.get(name, (0,)))
            base = base or got["wall_s"]
            got["ratio"] = got["wall_s"] / base
            results[name].append(got)
            shown = f"{got['wall_s']:6.2f} s  {got['ratio']:5.2f}x"
            print(f"round {i + 1}: {name:24} {shown}", flush=True)
    for out in outs.values():
        _measured(["true"], [out])
    return results


def _from_checkout(spec: str, args: list[str]) -> list[str]:
    code, _, extra = spec.partition(":")
    runner = [sys.executable, "-c", CHECKOUT_RUNNER, str(Path(code).resolve()), *args]
    return ["env", f"PYTHONPATH={extra}", *runner] if extra else runner


def summary_rows(results: dict[str, list]) -> list[dict]:
    rows = []
    for name, runs in results.items():
        ratio = statistics.median(r["ratio"] for r in runs)
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<= {goal}x: {'met' if ratio <= goal else 'missed'}"
        rows.append(
            {
                "command": name,
                "median wall s": f"{statistics.median(r['wall_s'] for r in runs):.2f}",
                "min-max s": f"{min(r['wall_s'] for r in runs):.2f}-"
                f"{max(r['wall_s'] for r in runs):.2f}",
                "median x (cp+sync)": f"{ratio:.2f}x",
                "pairwise x range": f"{min(r['ratio'] for r in runs):.2f}-"
                f"{max(r['ratio'] for r in runs):.2f}",
                "peak RSS MB": f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f}",
                "goal": verdict,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep/reuse the synthetic source here")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default="original,gguf-q8_0,gguf-q4_0")
    parser.add_argument("--checkout", action="append", default=[], metavar="LABEL=DIR[:EXTRA]")
    args = parser.parse_args()
    checkouts = dict(c.split("=", 1) for c in args.checkout)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="unetbot-whole-", dir=ROOT))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src_dir = full_size_source(work)
        load = os.getloadavg()
        print(f"whole-command benchmark on {machine()}; load average {load[0]:.2f}", flush=True)
        # warm the page cache with the source, as for every later round
        weights = src_dir / "unet" / "diffusion_pytorch_model.safetensors"
        _measured(["sh", "-c", f"cat '{weights}' > /dev/null"], [])
        results = run_rounds(src_dir, work, args.variants.split(","), args.rounds, checkouts)
        print()
        columns = ["command", "median wall s", "min-max s", "median x (cp+sync)"]
        columns += ["pairwise x range", "peak RSS MB", "goal"]
        print(table(summary_rows(results), columns))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
