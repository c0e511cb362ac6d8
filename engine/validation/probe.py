"""Seeded probe inputs, forward passes and output metrics for validation.

A probe is what a user's sampler feeds the UNet: a seeded latent, timesteps across the schedule
(one batch row each), a seeded text embedding, and for LCM the guidance-scale embedding
(`timestep_cond`). Every artifact is run on the same probe as the fp32 source model; outputs are
compared with cosine similarity, relative L2 and max abs error. LCM models also run a short
LCMScheduler sampling loop (4 steps) whose final latents are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

TIMESTEPS = (999, 500, 50)
LCM_GUIDANCE = 8.0
LCM_STEPS = 4


@dataclass
class Probe:
    sample: torch.Tensor
    timesteps: torch.Tensor
    encoder_hidden_states: torch.Tensor
    timestep_cond: torch.Tensor | None
    seed: int


def latent_size(config: dict) -> int:
    """32x32 for full-size models (the cost fact in the issue), the native size for tiny ones."""
    return min(32, int(config.get("sample_size", 64)))


def guidance_embedding(w: float, dim: int, batch: int) -> torch.Tensor:
    """The LCM pipeline's own guidance-scale embedding of w (LCM uses w - 1)."""
    from diffusers import LatentConsistencyModelPipeline

    weights = torch.full((batch,), w - 1.0)
    return LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, weights, dim)


def make_probe(config: dict, seed: int = 0) -> Probe:
    gen = torch.Generator().manual_seed(seed)
    size = latent_size(config)
    batch = len(TIMESTEPS)
    sample = torch.randn(batch, config.get("in_channels", 4), size, size, generator=gen)
    text = torch.randn(batch, 77, config["cross_attention_dim"], generator=gen)
    cond = None
    if config.get("time_cond_proj_dim"):
        cond = guidance_embedding(LCM_GUIDANCE, config["time_cond_proj_dim"], batch)
    return Probe(sample, torch.tensor(TIMESTEPS), text, cond, seed)


def _dtype(model: Any) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


@torch.no_grad()
def forward(model: Any, probe: Probe, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Run the probe through `model` in its own dtype (or `dtype`); float32 output."""
    dtype = dtype or _dtype(model)
    cond = None if probe.timestep_cond is None else probe.timestep_cond.to(dtype)
    out = model(
        probe.sample.to(dtype),
        probe.timesteps,
        encoder_hidden_states=probe.encoder_hidden_states.to(dtype),
        timestep_cond=cond,
    ).sample
    return out.float()


@torch.no_grad()
def lcm_sample(
    model: Any,
    probe: Probe,
    dtype: torch.dtype | None = None,
    probe_output: torch.Tensor | None = None,
) -> torch.Tensor:
    """4-step LCMScheduler sampling from the probe's first latent; final denoised latents.

    The first step feeds the model exactly the probe's first batch row (its latent, timestep
    999, text and guidance embedding), so when `probe_output` (this model's `forward` on the
    probe) is given, its first row is that step's prediction and one full forward is saved."""
    from diffusers import LCMScheduler

    dtype = dtype or _dtype(model)
    scheduler = LCMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    scheduler.set_timesteps(LCM_STEPS)
    gen = torch.Generator().manual_seed(probe.seed + 1)
    latents = probe.sample[:1].clone()[:, :4]
    extra = probe.sample[:1, 4:]  # inpainting channels stay fixed
    text = probe.encoder_hidden_states[:1].to(dtype)
    cond = None if probe.timestep_cond is None else probe.timestep_cond[:1].to(dtype)
    denoised = latents
    for step, t in enumerate(scheduler.timesteps):
        if step == 0 and probe_output is not None and int(t) == int(probe.timesteps[0]):
            noise = probe_output[:1]
        else:
            model_in = torch.cat([latents, extra], dim=1) if extra.numel() else latents
            noise = model(
                model_in.to(dtype), t, encoder_hidden_states=text, timestep_cond=cond
            ).sample.float()
        latents, denoised = scheduler.step(noise, t, latents, generator=gen, return_dict=False)
    return denoised.float()


def compare(reference: torch.Tensor, output: torch.Tensor) -> dict[str, float]:
    """Cosine similarity, relative L2 and max abs error of `output` against `reference`."""
    ref, out = reference.double().flatten(), output.double().flatten()
    if not torch.isfinite(out).all():
        return {"cosine": float("nan"), "rel_l2": float("inf"), "max_abs": float("inf")}
    cosine = torch.nn.functional.cosine_similarity(ref, out, dim=0).item()
    rel_l2 = (
        torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-30)
    ).item()
    return {"cosine": cosine, "rel_l2": rel_l2, "max_abs": (out - ref).abs().max().item()}


@dataclass
class Reference:
    """The fp32 source model's outputs on the probe (computed once per validation run)."""

    probe: Probe
    output: torch.Tensor
    sampled: torch.Tensor | None


def reference_outputs(model: Any, config: dict, seed: int = 0) -> Reference:
    probe = make_probe(config, seed)
    output = forward(model, probe)
    sampled = lcm_sample(model, probe, None, output) if config.get("time_cond_proj_dim") else None
    return Reference(probe, output, sampled)


def output_metrics(
    model: Any, reference: Reference, dtype: torch.dtype | None = None
) -> tuple[dict, torch.Tensor | None]:
    """Metrics of `model` against the reference (forward pass and, for LCM, sampling), and the
    final LCM latents (None for models without the sampling run)."""
    output = forward(model, reference.probe, dtype)
    metrics = {"output": compare(reference.output, output)}
    sampled = None
    if reference.sampled is not None:
        sampled = lcm_sample(model, reference.probe, dtype, output)
        metrics["lcm_4step"] = compare(reference.sampled, sampled)
    return metrics, sampled
