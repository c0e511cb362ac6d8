"""Measure validation metrics per variant over seeded models, to set engine/thresholds.py.

Runs conversion + validation (thresholds ignored: metrics are recorded either way) on tiny
SD1.5-family UNets of each kind and several seeds, plus, with --full, a full-size SD1.5 LCM UNet,
and prints the worst value per variant: min cosine (forward and LCM 4-step), max relative L2,
and max single-tensor relative L2 for GGUF. Thresholds are these worst values with the margin
stated in engine/thresholds.py.
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


def measure(root: Path, out: Path) -> dict[str, dict]:
    from engine.convert import convert
    from engine.validate import validate_manifest

    convert(root, out, VARIANTS)
    manifest = validate_manifest(out, root)
    worst: dict[str, dict] = {}
    for a in manifest.artifacts:
        m = (a.validation or {}).get("metrics", {})
        outs = [v for k, v in m.items() if isinstance(v, dict) and "cosine" in v]
        worst[a.variant] = {
            "min_cosine": min(v["cosine"] for v in outs),
            "max_rel_l2": max(v["rel_l2"] for v in outs),
            "max_tensor_rel_l2": m.get("worst_tensor_rel_l2", 0.0),
        }
    return worst


def merge(total: dict, new: dict) -> None:
    for variant, m in new.items():
        t = total.setdefault(variant, dict(m))
        t["min_cosine"] = min(t["min_cosine"], m["min_cosine"])
        t["max_rel_l2"] = max(t["max_rel_l2"], m["max_rel_l2"])
        t["max_tensor_rel_l2"] = max(t["max_tensor_rel_l2"], m["max_tensor_rel_l2"])


def main() -> None:
    from engine.synthetic import write_pipeline_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also a full-size SD1.5 LCM UNet")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    total: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cases = [(k, s) for k in ("sd15", "sd15-lcm", "sd15-inpaint") for s in range(args.seeds)]
        for kind, seed in cases:
            root = write_pipeline_folder(
                base / f"{kind}-{seed}", kind, "tiny", seed=seed, with_vae_and_text_encoder=False
            )
            merge(total, measure(root, base / f"out-{kind}-{seed}"))
        if args.full:
            from benchmarks.common import full_size_source

            root = full_size_source(base)
            full = measure(root, base / "out-full")
            print("full-size:", json.dumps(full, indent=1))
            merge(total, full)
    print(f"{'variant':16} {'min cosine':>12} {'max rel L2':>11} {'max tensor rel L2':>18}")
    for variant, m in total.items():
        print(
            f"{variant:16} {m['min_cosine']:12.6f} {m['max_rel_l2']:11.5f} "
            f"{m['max_tensor_rel_l2']:18.5f}"
        )


if __name__ == "__main__":
    main()
