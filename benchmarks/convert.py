"""Original-format conversion of a full-size SD1.5 LCM fp16 UNet: unetbot vs cp vs in-memory.

Baselines measured in the same run: `cp` of the same file (the floor), `cp` + `sync FILE`
(the same durability unetbot gives: it fsyncs before the rename), and the in-memory
load-rename-save that diffusers' conversion script does (safetensors.torch load_file, rename
with the same key map, save_file). Goal: unetbot wall <= 1.3x cp, peak RSS <= 150 MB.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import full_size_source, machine, measure, python_cmd, table

UNETBOT = """
from pathlib import Path
from engine.writers.original import write_original
from engine.source.folder import open_source
write_original(open_source(Path({src!r})), Path({out!r}))
"""

IN_MEMORY = """
import json
from pathlib import Path
from safetensors.torch import load_file, save_file
from engine.source.keymap import unet_keymap
config = json.loads((Path({src!r}) / 'unet' / 'config.json').read_text())
keymap = unet_keymap(config)
state = load_file(str(Path({src!r}) / 'unet' / 'diffusion_pytorch_model.safetensors'))
renamed = {{keymap.to_original(k, tuple(v.shape))[0]: v for k, v in state.items()}}
save_file(renamed, {out!r})
"""


def main() -> None:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        base = Path(tmp)
        src = full_size_source(base)
        weights = src / "unet" / "diffusion_pytorch_model.safetensors"
        size = weights.stat().st_size
        measure(["cp", str(weights), str(base / "warm")])  # warm the page cache for everyone
        rows = []
        cp = measure(["cp", str(weights), str(base / "cp.out")], repeat=3)
        rows.append({"method": "cp", **cp})
        # unetbot fsyncs before renaming (durability); `sync FILE` is cp's equivalent.
        cp_sync = measure(
            ["sh", "-c", f"cp {weights} {base / 'cps.out'} && sync {base / 'cps.out'}"], repeat=3
        )
        rows.append({"method": "cp + sync", **cp_sync})
        ours = measure(python_cmd(UNETBOT.format(src=str(src), out=str(base / "u.safetensors"))), 3)
        rows.append({"method": "unetbot original", **ours})
        mem = measure(
            python_cmd(IN_MEMORY.format(src=str(src), out=str(base / "m.safetensors"))), 2
        )
        rows.append({"method": "in-memory load-rename-save", **mem})
        for r in rows:
            r["vs_cp"] = f"{r['wall_s'] / cp['wall_s']:.2f}x"
            r["vs_cp_sync"] = f"{r['wall_s'] / cp_sync['wall_s']:.2f}x"
            r["wall_s"] = f"{r['wall_s']:.2f}"
            r["peak_rss_mb"] = f"{r['peak_rss_mb']:.0f}"
        print(f"convert benchmark on {machine()}; source {size / 1e9:.2f} GB fp16 LCM UNet")
        print(table(rows, ["method", "wall_s", "vs_cp", "vs_cp_sync", "peak_rss_mb"]))
        print(f"unetbot vs in-memory: {float(mem['wall_s']) / float(ours['wall_s']):.2f}x faster")


if __name__ == "__main__":
    main()
