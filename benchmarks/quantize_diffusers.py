"""Diffusers-quantized variants of a full-size random SD1.5 LCM fp16 UNet: time, RSS, size, error.

Per variant, each step in its own measured process: quantize (diffusers loads the whole model,
quantizes, saves) and load + one fp32 forward pass (what validation does on CPU). The forward
output is compared with the fp32 source model's on the same seeded input (64x64 latent, batch 1).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import full_size_source, machine, measure, python_cmd, table

QUANTIZE = """
from pathlib import Path
from engine.writers.diffusers_quant import quantize_unet
quantize_unet(Path({src!r}), Path({out!r}), {variant!r})
"""

FORWARD = """
import json, time
from pathlib import Path
import torch
from safetensors.torch import save_file
start = time.perf_counter()
if {variant!r} == "source":
    from diffusers import UNet2DConditionModel
    model = UNet2DConditionModel.from_pretrained({folder!r}, torch_dtype=torch.float32).eval()
else:
    from engine.writers.diffusers_quant import load_quantized_unet
    model = load_quantized_unet(Path({folder!r}), {variant!r})
loaded = time.perf_counter()
g = torch.Generator().manual_seed(0)
args = (torch.randn(1, 4, 64, 64, generator=g), torch.tensor([500]),
        torch.randn(1, 77, 768, generator=g))
cond = torch.randn(1, 256, generator=g)
with torch.no_grad():
    y = model(*args, timestep_cond=cond).sample
done = time.perf_counter()
save_file({{"y": y.contiguous()}}, {out!r})
Path({out!r} + ".json").write_text(json.dumps({{"load_s": loaded - start, "fwd_s": done - loaded}}))
"""


def _forward(folder: Path, variant: str, out: Path) -> dict:
    cmd = python_cmd(FORWARD.format(folder=str(folder), variant=variant, out=str(out)))
    result = measure(cmd)
    return {**result, **json.loads(Path(f"{out}.json").read_text())}


def _metrics(out: Path, ref: Path) -> tuple[float, float]:
    import torch
    from safetensors.torch import load_file

    y, r = load_file(str(out))["y"].double(), load_file(str(ref))["y"].double()
    cos = torch.nn.functional.cosine_similarity(y.flatten(), r.flatten(), dim=0).item()
    return cos, ((y - r).norm() / r.norm()).item()


def main() -> None:
    from engine.writers.diffusers_quant import SCHEMES

    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        base = Path(tmp)
        unet = full_size_source(base) / "unet"
        size = (unet / "diffusion_pytorch_model.safetensors").stat().st_size
        ref = base / "source.out.safetensors"
        source = _forward(unet, "source", ref)
        rows = [
            {
                "variant": "source fp16 (fp32 load)",
                "size_mb": f"{size / 1e6:.0f}",
                "load_s": f"{source['load_s']:.1f}",
                "fwd_s": f"{source['fwd_s']:.1f}",
                "load_rss_mb": f"{source['peak_rss_mb']:.0f}",
            }
        ]
        for variant in SCHEMES:
            folder = base / variant
            code = QUANTIZE.format(src=str(unet), out=str(folder), variant=variant)
            quant = measure(python_cmd(code))
            out_size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            out = base / f"{variant}.out.safetensors"
            fwd = _forward(folder, variant, out)
            cos, rel = _metrics(out, ref)
            rows.append(
                {
                    "variant": variant,
                    "quant_s": f"{quant['wall_s']:.1f}",
                    "quant_rss_mb": f"{quant['peak_rss_mb']:.0f}",
                    "size_mb": f"{out_size / 1e6:.0f}",
                    "vs_source": f"{out_size / size:.2f}x",
                    "load_s": f"{fwd['load_s']:.1f}",
                    "fwd_s": f"{fwd['fwd_s']:.1f}",
                    "load_rss_mb": f"{fwd['peak_rss_mb']:.0f}",
                    "cosine": f"{cos:.6f}",
                    "rel_l2": f"{rel:.4f}",
                }
            )
        print(f"diffusers-quantized benchmark on {machine()}; source {size / 1e9:.2f} GB fp16 LCM")
        columns = ["variant", "quant_s", "quant_rss_mb", "size_mb", "vs_source", "load_s"]
        print(table(rows, [*columns, "fwd_s", "load_rss_mb", "cosine", "rel_l2"]))


if __name__ == "__main__":
    main()
