"""A full-size repo as the field's libraries save it, converted with `--variants all`.

The source is not written by unetbot's own generator: a StableDiffusionPipeline of SD1.5 LCM
shapes (UNet 860M parameters, AutoencoderKL, CLIPTextModel) built by diffusers and transformers
with their own random init, saved with `save_pretrained` twice, as LCM repos on the Hub are:
float32 main weights and the `fp16` variant (`variant="fp16"`), the text encoder in the layout
transformers 5 writes. Built once per work folder, in a subprocess (its memory is not measured).

Then `bot convert DIR --variants all --publish none --out OUT` runs as a user runs it, one
process under GNU time (`/usr/bin/time -v`: wall clock, peak RSS), with validation. Printed:
wall, peak RSS, exit code, the machine's load, and per variant its verdict, size, the source
files it was made from (the manifest's `source_files`) and its output cosine.

Usage: .venv/bin/python benchmarks/real_layout.py [--work DIR] [--variants all]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, table, time_v

BOT = str(Path(sys.executable).with_name("bot"))

BUILD = """
from pathlib import Path
import torch
from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel
from engine.synthetic.models import clip_text_config, clip_config, unet_config, vae_config
from engine.synthetic.zoo_parts import tiny_tokenizer, write_card

torch.manual_seed(0)
pipe = StableDiffusionPipeline(
    vae=AutoencoderKL.from_config(vae_config("full")),
    text_encoder=CLIPTextModel(clip_text_config(clip_config("full"))),
    tokenizer=tiny_tokenizer(),
    unet=UNet2DConditionModel.from_config(unet_config("sd15-lcm", "full")),
    scheduler=LCMScheduler(),
    safety_checker=None,
    feature_extractor=None,
    requires_safety_checker=False,
)
folder = Path({folder!r})
pipe.save_pretrained(folder, safe_serialization=True)
pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")
write_card(folder, "full-size LCM saved by diffusers and transformers")
"""


def build(work: Path) -> Path:
    folder = work / "lcm-fp32-fp16-full"
    if not (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file():
        code = BUILD.format(folder=str(folder))
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return folder


def rows(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    result = []
    for a in manifest["artifacts"]:
        v = a.get("validation") or {}
        metrics = v.get("metrics", {})
        cosine = metrics.get("output", {}).get("cosine")
        details = a.get("details", {})
        result.append(
            {
                "variant": a["variant"],
                "status": v.get("status", "-"),
                "MB": f"{a['bytes'] / 1e6:.0f}",
                "from": ",".join(Path(f).name for f in details.get("source_files", [])) or "-",
                "cosine": "exact bytes" if cosine is None else f"{cosine:.6f}",
                "s": f"{v.get('seconds', 0):.1f}",
            }
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--variants", default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        work = args.work or Path(tmp)
        source = build(work)
        out = work / "out"
        load = os.getloadavg()[0]
        cmd = [BOT, "convert", str(source), "--variants", args.variants, "--publish", "none"]
        # exit 4 (an artifact failed validation) still prints the table, which says which and
        # why; then the benchmark fails: a run with a failed file is not a measurement
        run = time_v([*cmd, "--out", str(out)], ok=(0, 4))
        print(f"machine: {machine()}; 1-minute load average before: {load:.2f}")
        print(f"bot convert --variants {args.variants}: exit {run['exit_code']}, ", end="")
        print(f"wall {run['wall_s']:.0f} s, peak RSS {run['peak_rss_mb'] / 1024:.2f} GiB")
        print(table(rows(out), ["variant", "status", "MB", "from", "cosine", "s"]))
        if run["exit_code"] != 0:
            sys.exit(f"bot convert exited {run['exit_code']}: an artifact failed validation")


if __name__ == "__main__":
    main()
