"""Measure the ComfyUI-GGUF-only GGUFs beside the GGUF of the same type, to set their gates.

The same fixtures and method as benchmarks/calibrate_thresholds.py (which sets
engine/validation/thresholds.py): tiny SD1.5-family UNets (sd15, sd15-lcm, sd15-inpaint; seeds
0..N-1) with init-like and trained-like values (engine.synthetic.models `statistics`) in float16,
plus bfloat16 and float32 LCM sources; with --full, full-size SD1.5 LCM UNets: trained-like in
float16, float32 and bfloat16, and init-like in float16. Every case is converted and validated with
the gates opened (metrics are recorded whatever they are; the derived bounds stay and must hold),
and the script prints per variant the worst of each metric, then, for the full-size float16 sources,
each file's size against the fp16 UNet and its verdict under the registry's real gates.

Usage: .venv/bin/python benchmarks/calibrate_comfy_gguf.py [--seeds 2] [--full] [--tiny-off]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import WORST_COLUMNS, calibration_cases, merge_worst, open_gates, print_worst
from engine.writers.gguf_layout import COMFY_GGUF_TYPES

COMFY = [f"comfy-gguf-{t.lower()}" for t in COMFY_GGUF_TYPES]
SAME_TYPE = [f"gguf-{t.lower()}" for t in COMFY_GGUF_TYPES]
VARIANTS = SAME_TYPE + COMFY
COLUMNS = WORST_COLUMNS


def measure(root: Path, out: Path, gates: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    """(worst metrics per variant with the gates opened, size and real verdict per variant)."""
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest
    from engine.validation.thresholds import check

    manifest = convert(root, out, VARIANTS)
    unet_bytes = manifest.source["unet_bytes"]
    manifest = validate_manifest(out, root)
    worst: dict[str, dict] = {}
    facts: dict[str, dict] = {}
    for a in manifest.artifacts:
        assert a.validation is not None
        assert a.passed, f"{root.name} {a.variant}: {a.validation.reason}"  # derived bounds
        m = a.validation.metrics
        outs = {k: m[k] for k in ("output", "lcm_4step") if k in m}
        dequant = m.get("comfy_dequant") or m.get("diffusers_dequant") or {}
        worst[a.variant] = {
            "min_cosine": min(v["cosine"] for v in outs.values()),
            "max_rel_l2": max(v["rel_l2"] for v in outs.values()),
            "max_tensor_rel_l2": m.get("worst_tensor_rel_l2", 0.0),
            "quant_bound_ratio": m.get("worst_quant_bound_ratio", 0.0),
            "dequant_bound_ratio": dequant.get("worst_bound_ratio", 0.0),
        }
        gate = gates[a.variant]
        problems = [p for what, v in outs.items() for p in check(gate, v, what)]
        if m.get("worst_tensor_rel_l2", 0.0) > gate.max_tensor_rel_l2:
            problems.append("worst tensor rel L2 above the gate")
        facts[a.variant] = {
            "bytes": a.bytes,
            "vs_fp16_unet": a.bytes / unet_bytes,
            "verdict": "passed" if not problems else "failed: " + "; ".join(problems),
            **{k: v for k, v in outs.items()},
        }
    return worst, facts


def main() -> None:
    from engine.synthetic.models import write_pipeline_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the full-size LCMs")
    parser.add_argument("--tiny-off", action="store_true", help="skip the tiny models")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    gates = open_gates(VARIANTS)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        base = Path(tmp)
        if not args.tiny_off:
            total: dict = {}
            for kind, dtype, statistics, seed in calibration_cases(args.seeds):
                name = f"{kind}-{dtype}-{statistics}-{seed}"
                root = write_pipeline_folder(
                    base / name, kind, "tiny", dtype, seed, False, statistics=statistics
                )
                one, _ = measure(root, base / f"out-{name}", gates)
                print(name, json.dumps(one), flush=True)
                merge_worst(total, one, COLUMNS)
            print_worst("tiny (every case above)", total, COLUMNS, 18)
        if args.full:
            trained: dict = {}
            full_cases = [("float16", "trained"), ("float32", "trained")]
            full_cases += [("bfloat16", "trained"), ("float16", "init")]
            for dtype, statistics in full_cases:
                name = f"full-{dtype}-{statistics}"
                root = write_pipeline_folder(
                    base / name, "sd15-lcm", "full", dtype, 0, False, 2, statistics
                )
                one, facts = measure(root, base / f"out-{name}", gates)
                print(name, json.dumps(one), flush=True)
                print(name, "facts", json.dumps(facts), flush=True)
                if statistics == "trained":
                    merge_worst(trained, one, COLUMNS)
                else:
                    print_worst(f"full size, {name}", one, COLUMNS, 18)
                for variant, f in facts.items():
                    print(
                        f"{name} {variant:18} {f['bytes'] / 1e6:8.1f} MB {f['vs_fp16_unet']:.3f}x"
                    )
                    print(f"    {f['verdict']}")
                shutil.rmtree(base / name)
                shutil.rmtree(base / f"out-{name}")
            title = "full size, trained-like LCM (float16, float32, bfloat16)"
            print_worst(title, trained, COLUMNS, 18)


if __name__ == "__main__":
    main()
