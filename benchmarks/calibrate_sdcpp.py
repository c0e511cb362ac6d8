"""Measure stable-diffusion.cpp's image metrics per GGUF type, to set
engine/validation/sdcpp.py IMAGE_GATES.

stable-diffusion.cpp builds only SD1.x's real sizes, so the models are full-size SD1.5 pipelines
(UNet + VAE + CLIP) with trained-like values (engine.synthetic.models: heavy tails, per-row scales
over orders of magnitude, outlier channels: where gates calibrated on init-like values failed real
repos), sd15 and sd15-lcm, seeds 0..N-1. For each, the UNet-only GGUF of every type (a full GGUF
holds the same UNet bytes, hence the same image) is run in the library beside the source's CLIP
and VAE exactly as validation runs it (engine.validation.sdcpp.check_sdcpp: 64x64, one Euler step,
seed 42, CPU) and compared with the image of the source's exact original full checkpoint. Prints
the worst cosine and PSNR per type, and the gates these give with the margin stated in
engine/validation/sdcpp.py (2x the worst pixel error: 1 - cosine doubled, PSNR minus 6.02 dB).
About 5 min per model on 2 cores; needs the `sdcpp` extra.

    python benchmarks/calibrate_sdcpp.py [--seeds 1] [--kinds sd15,sd15-lcm] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.run.variants import GGUF_TYPES

MARGIN_DB = 20 * math.log10(2)  # 2x the RMS pixel error


def measure(kind: str, seed: int, work: Path) -> dict[str, dict]:
    from engine.run.convert import convert
    from engine.run.variants import variant
    from engine.source.folder import open_source
    from engine.source.layout import Precision
    from engine.synthetic.models import write_pipeline_folder
    from engine.validation import sdcpp
    from engine.validation.context import Context

    source = write_pipeline_folder(work / "src", kind, "full", seed=seed, statistics="trained")
    names = [f"gguf-{t.lower()}" for t in GGUF_TYPES]
    manifest = convert(source, work / "out", names)
    ctx = Context(open_source(source, Precision.HALF), work / "out", "")
    found = {}
    try:
        for a in manifest.artifacts:
            t = variant(a.variant).gguf_type
            started = time.perf_counter()
            no_gate = sdcpp.ImageGate(-1.0, -1.0)  # metrics only: the verdict is not wanted here
            problems, record, _ = sdcpp.check_sdcpp(
                work / "out" / a.path, a.variant, False, no_gate, ctx
            )
            assert not problems, f"{kind} seed {seed} {a.variant}: {problems}"
            m = record["image_vs_exact"]
            found[t] = {
                "cosine": m["cosine"],
                "psnr_db": math.inf if m["psnr_db"] is None else m["psnr_db"],
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"{kind} seed {seed} {t}: {found[t]}", flush=True)
    finally:
        sdcpp.state_of(ctx).close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--kinds", default="sd15,sd15-lcm")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    worst: dict[str, dict] = {}
    for kind in args.kinds.split(","):
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory(prefix="unetbot-calibrate-sdcpp-") as tmp:
                for t, m in measure(kind, seed, Path(tmp)).items():
                    w = worst.setdefault(t, {"cosine": 1.0, "psnr_db": math.inf})
                    w["cosine"] = min(w["cosine"], m["cosine"])
                    w["psnr_db"] = min(w["psnr_db"], m["psnr_db"])
    print(f"{'type':6} {'worst cosine':>13} {'worst PSNR':>11}   gate: cosine   PSNR")
    for t in GGUF_TYPES:
        if t not in worst:
            continue
        cos, psnr = worst[t]["cosine"], worst[t]["psnr_db"]
        gate_cos = math.floor((1 - 2 * (1 - cos)) * 1e4) / 1e4
        gate_psnr = math.floor(psnr - MARGIN_DB) if math.isfinite(psnr) else None
        print(f"{t:6} {cos:13.6f} {psnr:11.2f}   {gate_cos:12.4f}   {gate_psnr}")
    if args.json:
        args.json.write_text(json.dumps(worst, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
