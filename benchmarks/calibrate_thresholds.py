"""Measure validation metrics per variant over seeded models, to set engine/thresholds.py.

Runs conversion + validation (the gates' verdicts are ignored: metrics are recorded either way)
over tiny SD1.5-family UNets (sd15, sd15-lcm, sd15-inpaint; seeds 0..N-1) with both value
statistics of engine.synthetic ("init", and "trained": heavy tails, per-row scales spread over
orders of magnitude, outlier channels) in float16, plus bfloat16 and float32 LCM sources; with
--full, also full-size SD1.5 LCM UNets with trained-like values (float32 and bfloat16 sources,
where accurate real GGUFs failed the old fixed diffusers-load gate). Prints, per variant, the
worst value of every gated metric:

- output gates (calibrated): min cosine (forward and LCM 4-step), max relative L2, max single
  tensor relative L2; the thresholds are these worst values with the margin stated in
  engine/thresholds.py;
- derived bounds (not calibrated; must stay <= 1): the worst element of a quantized tensor
  against its block quantization bound, and of diffusers' float16 dequantization against
  gguf-py's; and the worst relative L2 of diffusers' GGUF load against the same weights in
  float32 (bound engine.thresholds.SAME_WEIGHTS).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.diffusers_quant import SCHEMES
from engine.variants import GGUF_TYPES

VARIANTS = [f"gguf-{t.lower()}" for t in GGUF_TYPES] + list(SCHEMES)
KINDS = ("sd15", "sd15-lcm", "sd15-inpaint")
COLUMNS = (
    ("min_cosine", min, "min cosine"),
    ("max_rel_l2", max, "max rel L2"),
    ("max_tensor_rel_l2", max, "tensor rel L2"),
    ("quant_bound_ratio", max, "quant bound"),
    ("dequant_bound_ratio", max, "fp16 bound"),
    ("same_weights_rel_l2", max, "load rel L2"),
)


def open_gates() -> None:
    """Calibration must see every metric, so the calibrated gates are opened (in this process
    only): a variant failing one would otherwise stop before its output metrics. The derived
    bounds stay: they hold for every correct file by construction."""
    import dataclasses

    from engine.thresholds import Threshold
    from engine.variants import VARIANTS as REGISTRY

    wide_open = Threshold(-1.0, float("inf"), float("inf"))
    for name in VARIANTS:
        REGISTRY[name] = dataclasses.replace(REGISTRY[name], threshold=wide_open)


def measure(root: Path, out: Path) -> dict[str, dict]:
    from engine.convert import convert
    from engine.validation import validate_manifest

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


def merge(total: dict, new: dict) -> None:
    for variant, m in new.items():
        t = total.setdefault(variant, dict(m))
        for key, pick, _ in COLUMNS:
            t[key] = pick(t[key], m[key])


def cases(seeds: int) -> list[tuple[str, str, str, int]]:
    """(kind, dtype, statistics, seed): every kind in float16, the LCM in every dtype."""
    out = [(k, "float16", st, s) for k in KINDS for st in ("init", "trained") for s in range(seeds)]
    out += [("sd15-lcm", dt, st, 0) for dt in ("bfloat16", "float32") for st in ("init", "trained")]
    return out


def print_table(title: str, total: dict) -> None:
    print(f"\n== {title}")
    print(f"{'variant':16}" + "".join(f"{label:>15}" for _, _, label in COLUMNS))
    for variant, m in total.items():
        print(f"{variant:16}" + "".join(f"{m[key]:15.6g}" for key, _, _ in COLUMNS))


def main() -> None:
    from engine.synthetic import write_pipeline_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also full-size trained-like LCMs")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    open_gates()
    total: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for kind, dtype, statistics, seed in cases(args.seeds):
            name = f"{kind}-{dtype}-{statistics}-{seed}"
            root = write_pipeline_folder(
                base / name, kind, "tiny", dtype, seed, False, statistics=statistics
            )
            one = measure(root, base / f"out-{name}")
            print(name, json.dumps(one), flush=True)
            merge(total, one)
        print_table("tiny (every case above)", total)
        if args.full:
            full: dict = {}
            for dtype in ("float32", "bfloat16"):
                root = write_pipeline_folder(
                    base / f"full-{dtype}", "sd15-lcm", "full", dtype, 0, False, 2, "trained"
                )
                one = measure(root, base / f"out-full-{dtype}")
                print(f"full-size trained {dtype}", json.dumps(one), flush=True)
                merge(full, one)
            print_table("full size, trained-like LCM (float32 and bfloat16 sources)", full)


if __name__ == "__main__":
    main()
