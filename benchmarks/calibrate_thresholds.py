"""Measure validation metrics per variant over seeded models, to set
engine/validation/thresholds.py.

Runs conversion + validation (the gates' verdicts are ignored: metrics are recorded either way)
over tiny SD1.5-family UNets (sd15, sd15-lcm, sd15-inpaint; seeds 0..N-1) with both value
statistics of engine.synthetic.models ("init", and "trained": heavy tails, per-row scales spread
over orders of magnitude, outlier channels) in float16, plus bfloat16 and float32 LCM sources; with
--full, also full-size SD1.5 LCM UNets with trained-like values (float32 and bfloat16 sources,
where accurate real GGUFs failed the old fixed diffusers-load gate). Prints, per variant, the
worst value of every gated metric:

- output gates (calibrated): min cosine (forward and LCM 4-step), max relative L2, max single
  tensor relative L2; the thresholds are these worst values with the margin stated in
  engine/validation/thresholds.py;
- derived bounds (not calibrated; must stay <= 1): the worst element of a quantized tensor
  against its block quantization bound, and of diffusers' float16 dequantization against
  gguf-py's; and the worst relative L2 of diffusers' GGUF load against the same weights in
  float32 (bound engine.validation.thresholds.SAME_WEIGHTS).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import WORST_COLUMNS, calibration_cases, merge_worst, open_gates, print_worst
from engine.run.variants import GGUF_TYPES
from engine.writers.diffusers_quant import SCHEMES

VARIANTS = [f"gguf-{t.lower()}" for t in GGUF_TYPES] + list(SCHEMES)
COLUMNS = (*WORST_COLUMNS, ("same_weights_rel_l2", max, "load rel L2"))


def measure(root: Path, out: Path) -> dict[str, dict]:
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest

    convert(root, out, VARIANTS)
    manifest = validate_manifest(out, root)
    worst: dict[str, dict] = {}
    for a in manifest.artifacts:
        assert a.validation is not None
        assert a.passed, f"{root.name} {a.variant}: {a.validation.reason}"  # derived bounds
        m = a.validation.metrics
        outs = [m[k] for k in ("output", "lcm_4step") if k in m]
        worst[a.variant] = {
            "min_cosine": min(v["cosine"] for v in outs),
            "max_rel_l2": max(v["rel_l2"] for v in outs),
            "max_tensor_rel_l2": m.get("worst_tensor_rel_l2", 0.0),
            "quant_bound_ratio": m.get("worst_quant_bound_ratio", 0.0),
            "dequant_bound_ratio": m.get("diffusers_dequant", {}).get("worst_bound_ratio", 0.0),
            "same_weights_rel_l2": m.get("diffusers_load", {}).get("rel_l2", 0.0),
        }
    return worst


def main() -> None:
    from engine.synthetic.models import write_pipeline_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also full-size trained-like LCMs")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    open_gates(VARIANTS)
    total: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for kind, dtype, statistics, seed in calibration_cases(args.seeds):
            name = f"{kind}-{dtype}-{statistics}-{seed}"
            root = write_pipeline_folder(
                base / name, kind, "tiny", dtype, seed, False, statistics=statistics
            )
            one = measure(root, base / f"out-{name}")
            print(name, json.dumps(one), flush=True)
            merge_worst(total, one, COLUMNS)
        print_worst("tiny (every case above)", total, COLUMNS, 16)
        if args.full:
            full: dict = {}
            for dtype in ("float32", "bfloat16"):
                root = write_pipeline_folder(
                    base / f"full-{dtype}", "sd15-lcm", "full", dtype, 0, False, 2, "trained"
                )
                one = measure(root, base / f"out-full-{dtype}")
                print(f"full-size trained {dtype}", json.dumps(one), flush=True)
                merge_worst(full, one, COLUMNS)
            title = "full size, trained-like LCM (float32 and bfloat16 sources)"
            print_worst(title, full, COLUMNS, 16)


if __name__ == "__main__":
    main()
