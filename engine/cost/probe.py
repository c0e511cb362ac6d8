"""The measuring process: `python -m engine.cost.probe REQUEST_JSON` loads one variant in its
consumer, runs UNet steps and prints one result line (engine/cost/run.py starts it).

One process per variant and mode, so the peak resident set (`getrusage` ru_maxrss, a property
of the process) is this variant's alone and the load pays what a user's fresh process pays.
The steps feed what an SD1.5 sampler feeds at 512x512: a 64x64 latent, one timestep, a 77-token
text embedding and, for LCM, the guidance embedding; one warm-up step is excluded (first-call
allocations, and compilation in compiled mode), the median of the timed steps is reported.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.cost.model import (
    BATCH,
    COMPUTE_DTYPE,
    LATENT,
    LCM_GUIDANCE,
    TIMESTEP,
    Measurement,
    Mode,
    Status,
    median_step,
)

RESULT_PREFIX = "UNETBOT_COST "  # marks the result line among whatever libraries print


@dataclass(frozen=True)
class ProbeRequest:
    variant: str
    path: str  # the artifact's main weights file
    config: str  # a folder with unet/config.json (single files need the model's config)
    mode: str = Mode.EAGER
    steps: int = 3
    latent: int = LATENT

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> ProbeRequest:
        return cls(**json.loads(text))


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def load_model(request: ProbeRequest) -> Any:
    """The variant loaded the way its diffusers users load it on CPU, float32 compute."""
    import torch

    from engine.run.variants import Family, variant

    v = variant(request.variant)
    dtype = getattr(torch, COMPUTE_DTYPE)
    if v.family is Family.DIFFUSERS_QUANT:
        from engine.writers.diffusers_quant import load_quantized_unet

        assert v.quant_scheme is not None
        return load_quantized_unet(Path(request.path).parent, v.quant_scheme)
    from engine.validation.loaders import load_unet

    quantization = None
    if v.family is Family.GGUF:
        from diffusers import GGUFQuantizationConfig

        quantization = GGUFQuantizationConfig(compute_dtype=dtype)
    return load_unet(request.path, request.config, "unet", dtype, quantization)


def step_inputs(config: Any, latent: int) -> dict[str, Any]:
    """One sampler step's inputs for `config` (a diffusers UNet config), seeded."""
    import torch

    gen = torch.Generator().manual_seed(0)
    channels = config.in_channels
    inputs: dict[str, Any] = {
        "sample": torch.randn(BATCH, channels, latent, latent, generator=gen),
        "timestep": torch.tensor([TIMESTEP] * BATCH),
        "encoder_hidden_states": torch.randn(BATCH, 77, config.cross_attention_dim, generator=gen),
    }
    if config.time_cond_proj_dim:
        from engine.validation.probe import guidance_embedding

        inputs["timestep_cond"] = guidance_embedding(LCM_GUIDANCE, config.time_cond_proj_dim, 1)
    return inputs


def _timed_step(model: Any, inputs: dict[str, Any]) -> float:
    import torch

    started = time.perf_counter()
    with torch.inference_mode():
        out = model(**inputs).sample
    elapsed = time.perf_counter() - started
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the step produced NaN/Inf")
    return elapsed


def measure(request: ProbeRequest) -> Measurement:
    """Import, load, warm up, then time `request.steps` steps of one variant, in this process."""
    from engine.cost.model import diffusers_consumer
    from engine.run.variants import variant

    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    consumer = diffusers_consumer(variant(request.variant)) or ""
    started = time.perf_counter()
    import diffusers  # noqa: F401  (what every consumer here imports first)
    import torch

    import_s = time.perf_counter() - started
    baseline = peak_rss_bytes()
    started = time.perf_counter()
    model = load_model(request)
    load_s = time.perf_counter() - started
    load_rss = peak_rss_bytes()
    runner = torch.compile(model) if request.mode == Mode.COMPILED else model
    inputs = step_inputs(model.config, request.latent)
    warmup = _timed_step(runner, inputs)
    steps = [_timed_step(runner, inputs) for _ in range(request.steps)]
    return Measurement(
        request.variant,
        request.mode,
        Status.MEASURED,
        consumer=consumer,
        import_s=round(import_s, 3),
        load_s=round(load_s, 3),
        warmup_s=round(warmup, 3),
        step_s=round(median_step(steps), 4),
        steps_s=[round(s, 4) for s in steps],
        baseline_rss_bytes=baseline,
        load_rss_bytes=load_rss,
        peak_rss_bytes=peak_rss_bytes(),
        torch_threads=torch.get_num_threads(),
        load_average=load_average,
    )


def main(argv: list[str]) -> int:
    """Print one `RESULT_PREFIX` line: the measurement, or the failure with its reason."""
    request = ProbeRequest.from_json(argv[0])
    try:
        result = measure(request)
    except Exception as exc:  # any failure of the consumer is this variant's result
        traceback.print_exc(file=sys.stderr)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        result = Measurement.failed(request.variant, request.mode, reason)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
