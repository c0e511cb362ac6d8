"""A zoo of tiny repos laid out the way real Hub repos are, each made with the real libraries.

Every builder is a plain function `build(folder, seed) -> ZooRepo`: it writes one repo into
`folder` with diffusers / transformers `save_pretrained` (variants, sharding and dtypes as
their authors' tools write them) and returns what the bot is expected to decide for it. Tests
(tests/engine/synthetic/test_zoo.py) run each repo through the engine; the bot's tests can seed the
same repos into the embedded Hub (`build_zoo`). What no installed library writes any more is written
by hand in engine.synthetic.zoo_parts, each spot saying why.

| repo | layout | expected |
|---|---|---|
| `sd15-current` | pipeline, diffusers 0.42 + transformers 5, fp16 | convert (sd15, full) |
| `sd15-legacy` | SD1.5's own repo shape (see its builder) | convert; PR skipped |
| `lcm-fp32-fp16` | LCM pipeline, fp32 main + fp16 variant | convert (PR: 2 files) |
| `fp16-variant-only` | only `*.fp16.safetensors` | convert from the variant |
| `sharded` | sharded main (UNet, text encoder) + sharded fp16 variant | convert |
| `bf16` | bf16 pipeline | convert |
| `bare-unet` | LCM UNet `config.json` + weights at the root | convert (UNet only) |
| `inpainting` | 9-channel UNet pipeline | convert (sd15-inpaint) |
| `clip-projection` | text encoder is CLIPTextModelWithProjection | convert; projection kept |
| `lcm-root-checkpoint` | LCM pipeline + root original checkpoint | convert; PR skipped |
| `lcm-lora` | `pytorch_lora_weights.safetensors` (diffusers `save_lora_weights`) | refuse (3) |
| `peft-adapter` | `adapter_config.json` + `adapter_model.safetensors` | refuse (3) |
| `controlnet` | `ControlNetModel` at the root | refuse (3) |
| `vae-only` | `AutoencoderKL` at the root | refuse (3) |
| `sdxl` | SDXL-like UNet pipeline | refuse (3) |
| `pickle-only` | UNet weights only as `.bin` (`safe_serialization=False`) | convert (pickle path) |
| `pickle-pipeline` | every component as `.bin` (transformers 4 names) | convert (pickle, full) |
| `pickle-sharded` | UNet as sharded `.bin` + its `.bin.index.json` | convert (pickle path) |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ExitCode
from engine.source.classify import ModelKind
from engine.source.repo_kind import RepoKind
from engine.synthetic import zoo_parts as parts


@dataclass(frozen=True)
class Expected:
    """What the bot should decide for a repo, and what the engine should see in it."""

    decision: str  # "convert" | "refuse"
    exit_code: ExitCode  # OK when converted, else the refusal's code
    reason: str  # a fragment of the classification reason or of the refusal message
    layout: RepoKind
    kind: ModelKind | None = None
    full: bool = False  # VAE + text encoder usable: full checkpoints apply
    main_variant: str | None = None  # the UNet weight set read at Precision.MAIN
    half_variant: str | None = None  # ... at Precision.HALF
    fp16_twin: bool = False  # MAIN reads the main weights and an fp16 variant exists too
    root_checkpoint: str = ""  # an original checkpoint of this UNet already at the root
    text_encoder_layout: str = ""  # "transformers-4" | "transformers-5"
    pickle: bool = False  # weights only as pickles: converted through engine.source.pickle_source

    @property
    def pr_target(self) -> bool:
        """Whether a pull request adding the original file(s) is still useful."""
        return self.decision == "convert" and not self.root_checkpoint


@dataclass(frozen=True)
class ZooRepo:
    name: str
    folder: Path
    expected: Expected


def _convert(reason: str, layout: RepoKind = RepoKind.PIPELINE, **kw) -> Expected:
    return Expected("convert", ExitCode.OK, reason, layout, **kw)


# What the engine's classification reason says for each convertible kind.
_REASONS = {
    ModelKind.SD15: "SD1.5 UNet",
    ModelKind.SD15_LCM: "LCM UNet",
    ModelKind.SD15_INPAINT: "inpainting",
}
# A repo with fp32 main weights and an fp16 variant: MAIN reads main, HALF the variant.
_FP16_TWIN = {"half_variant": "fp16", "fp16_twin": True}


def _full_pipeline(kind: ModelKind, **kw) -> Expected:
    """A convertible pipeline with a VAE and a text encoder (full checkpoints apply), saved by
    today's transformers unless `text_encoder_layout` says otherwise: most of the zoo, so one
    place states what they all expect."""
    kw.setdefault("text_encoder_layout", "transformers-5")
    return _convert(_REASONS[kind], kind=kind, full=True, **kw)


def _refuse(reason: str, layout: RepoKind, code: ExitCode = ExitCode.UNSUPPORTED) -> Expected:
    return Expected("refuse", code, reason, layout)


def _done(folder: Path, name: str, expected: Expected) -> ZooRepo:
    """Every builder's last step: the repo's model card, then what it should be decided as."""
    parts.write_card(folder, name)
    return ZooRepo(name, folder, expected)


# ------------------------------------------------------------------ convertible repos


def sd15_current(folder: Path, seed: int = 0) -> ZooRepo:
    """A pipeline as diffusers 0.42 + transformers 5 save it today, fp16 single files."""
    parts.save_pipeline(parts.tiny_pipeline(seed), folder, "float16")
    return _done(folder, "sd15-current", _full_pipeline(ModelKind.SD15))


def sd15_legacy(folder: Path, seed: int = 0) -> ZooRepo:
    """The shape of SD1.5's own repo: 0.6-era configs, a transformers 4 text encoder, the old VAE
    attention names, fp32 main + fp16 variant + non_ema UNet weights, .bin twins of each, and an
    original checkpoint at the root."""
    pipe = parts.tiny_pipeline(seed)
    parts.save_pipeline(pipe, folder, "float32")
    parts.save_pipeline(pipe, folder, "float16", variant="fp16")
    pipe.unet.to(parts.torch_dtype("float32")).save_pretrained(
        folder / "unet", safe_serialization=True, variant="non_ema"
    )
    parts.as_old_configs(folder)
    parts.as_transformers4(folder / "text_encoder")
    parts.as_old_vae(folder / "vae")
    for component in ("unet", "vae"):
        stem = "diffusion_pytorch_model"
        twins = [f"{stem}.bin", f"{stem}.fp16.bin"] + (
            [f"{stem}.non_ema.bin"] * (component == "unet")
        )
        parts.add_pickle_twins(folder / component, twins)
    parts.add_pickle_twins(folder / "text_encoder", ["pytorch_model.bin"])
    root = parts.add_root_checkpoint(folder, "v1-5-pruned-emaonly.safetensors", extra_schedule=True)
    expected = _full_pipeline(
        ModelKind.SD15, **_FP16_TWIN, root_checkpoint=root, text_encoder_layout="transformers-4"
    )
    return _done(folder, "sd15-legacy", expected)


def lcm_fp32_fp16(folder: Path, seed: int = 0) -> ZooRepo:
    """An LCM pipeline with fp32 main weights and an fp16 variant of every component."""
    pipe = parts.tiny_pipeline(seed, "sd15-lcm")
    parts.save_pipeline(pipe, folder, "float32")
    parts.save_pipeline(pipe, folder, "float16", variant="fp16")
    return _done(folder, "lcm-fp32-fp16", _full_pipeline(ModelKind.SD15_LCM, **_FP16_TWIN))


def fp16_variant_only(folder: Path, seed: int = 0) -> ZooRepo:
    """Only the fp16 variant files: both precisions read them."""
    parts.save_pipeline(parts.tiny_pipeline(seed), folder, "float16", variant="fp16")
    expected = _full_pipeline(ModelKind.SD15, main_variant="fp16", half_variant="fp16")
    return _done(folder, "fp16-variant-only", expected)


def sharded(folder: Path, seed: int = 0) -> ZooRepo:
    """Sharded main weights (UNet ~3 shards, text encoder 2) and a sharded fp16 variant."""
    pipe = parts.tiny_pipeline(seed, "sd15-lcm")
    parts.save_pipeline(pipe, folder, "float32", max_shard_size="600KB")
    parts.save_pipeline(pipe, folder, "float16", variant="fp16", max_shard_size="300KB")
    # The text encoder is smaller than the UNet's shards: saved again on its own in smaller ones.
    for weights in (folder / "text_encoder").glob("model*.safetensors"):
        weights.unlink()
    te = pipe.text_encoder
    te.to(parts.torch_dtype("float32")).save_pretrained(
        folder / "text_encoder", max_shard_size="80KB"
    )
    te.to(parts.torch_dtype("float16")).save_pretrained(
        folder / "text_encoder", max_shard_size="40KB", variant="fp16"
    )
    return _done(folder, "sharded", _full_pipeline(ModelKind.SD15_LCM, **_FP16_TWIN))


def bf16(folder: Path, seed: int = 0) -> ZooRepo:
    parts.save_pipeline(parts.tiny_pipeline(seed), folder, "bfloat16")
    return _done(folder, "bf16", _full_pipeline(ModelKind.SD15))


def bare_unet(folder: Path, seed: int = 0) -> ZooRepo:
    """An LCM UNet saved on its own: config.json and weights at the repo root."""
    unet = parts.tiny_unet(seed, "sd15-lcm").to(parts.torch_dtype("float16"))
    unet.save_pretrained(folder, safe_serialization=True)
    expected = _convert("LCM UNet", RepoKind.BARE_UNET, kind=ModelKind.SD15_LCM)
    return _done(folder, "bare-unet", expected)


def inpainting(folder: Path, seed: int = 0) -> ZooRepo:
    parts.save_pipeline(parts.tiny_pipeline(seed, "sd15-inpaint"), folder, "float16")
    return _done(folder, "inpainting", _full_pipeline(ModelKind.SD15_INPAINT))


def clip_projection(folder: Path, seed: int = 0) -> ZooRepo:
    """A text encoder saved as CLIPTextModelWithProjection (it has `text_projection.weight`)."""
    parts.save_pipeline(parts.tiny_pipeline(seed, with_projection=True), folder, "float16")
    return _done(folder, "clip-projection", _full_pipeline(ModelKind.SD15))


def lcm_root_checkpoint(folder: Path, seed: int = 0) -> ZooRepo:
    """LCM_Dreamshaper_v7's shape: a pipeline plus a full original checkpoint at the root."""
    parts.save_pipeline(parts.tiny_pipeline(seed, "sd15-lcm"), folder, "float16")
    root = parts.add_root_checkpoint(folder, "LCM_Dreamshaper_v7_4k.safetensors")
    expected = _full_pipeline(ModelKind.SD15_LCM, root_checkpoint=root)
    return _done(folder, "lcm-root-checkpoint", expected)


# ------------------------------------------------------------------ refused repos


def lcm_lora(folder: Path, seed: int = 0) -> ZooRepo:
    """An LCM-LoRA-like adapter, written by diffusers' own `save_lora_weights`
    (diffusers/loaders/lora_pipeline.py StableDiffusionLoraLoaderMixin.save_lora_weights:
    peft-style `lora_A`/`lora_B` keys under the `unet.` prefix)."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(seed)
    layers = {}
    for block in ("down_blocks.0.attentions.0", "up_blocks.1.attentions.0"):
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            name = f"{block}.transformer_blocks.0.attn1.{proj}"
            layers[f"{name}.lora_A.weight"] = torch.randn(4, 32, dtype=torch.float16)
            layers[f"{name}.lora_B.weight"] = torch.zeros(32, 4, dtype=torch.float16)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers)
    return _done(folder, "lcm-lora", _refuse("LoRA/adapter", RepoKind.ADAPTER))


def peft_adapter(folder: Path, seed: int = 0) -> ZooRepo:
    """A peft adapter folder (peft's `LoraConfig.save_pretrained` layout: adapter_config.json +
    adapter_model.safetensors). peft is not installed, so both files are written by hand."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 4,
        "target_modules": ["to_q", "to_k", "to_v", "to_out.0"],
        "base_model_name_or_path": "runwayml/stable-diffusion-v1-5",
        "task_type": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    name = "base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    save_file(
        {f"{name}.lora_A.weight": torch.randn(4, 32), f"{name}.lora_B.weight": torch.zeros(32, 4)},
        str(folder / "adapter_model.safetensors"),
    )
    return _done(folder, "peft-adapter", _refuse("LoRA/adapter", RepoKind.ADAPTER))


def controlnet(folder: Path, seed: int = 0) -> ZooRepo:
    from diffusers import ControlNetModel

    ControlNetModel.from_unet(parts.tiny_unet(seed)).save_pretrained(
        folder, safe_serialization=True
    )
    return _done(folder, "controlnet", _refuse("ControlNet", RepoKind.CONTROLNET))


def vae_only(folder: Path, seed: int = 0) -> ZooRepo:
    parts.tiny_vae(seed).save_pretrained(folder, safe_serialization=True)
    return _done(folder, "vae-only", _refuse("a VAE", RepoKind.OTHER_MODEL))


def sdxl(folder: Path, seed: int = 0) -> ZooRepo:
    """An SDXL-like UNet in a pipeline folder: the layout converts, the architecture does not."""
    unet = parts.tiny_unet(seed, "sdxl").to(parts.torch_dtype("float16"))
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionXLPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
            }
        )
    )
    return _done(folder, "sdxl", _refuse("SDXL", RepoKind.PIPELINE))


def pickle_only(folder: Path, seed: int = 0) -> ZooRepo:
    """UNet weights only as a pickle (`.bin`), as diffusers saved them before safetensors
    became its default (PR #4235, Aug 2023)."""
    unet = parts.tiny_unet(seed)
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    return _done(folder, "pickle-only", _convert("SD1.5 UNet", kind=ModelKind.SD15, pickle=True))


def pickle_pipeline(folder: Path, seed: int = 0) -> ZooRepo:
    """A whole pipeline of pickles: diffusers `safe_serialization=False` for the UNet and VAE,
    and the text encoder as transformers 4 saved it (`pytorch_model.bin`, a `torch.save` of its
    state dict: transformers 5 writes safetensors only)."""
    pipe = parts.tiny_pipeline(seed)
    pipe.save_pretrained(folder, safe_serialization=False)
    parts.as_pickle_text_encoder(folder / "text_encoder", pipe.text_encoder)
    expected = _full_pipeline(ModelKind.SD15, pickle=True)
    return _done(folder, "pickle-pipeline", expected)


def pickle_sharded(folder: Path, seed: int = 0) -> ZooRepo:
    """UNet pickles in shards with their `diffusion_pytorch_model.bin.index.json`."""
    unet = parts.tiny_unet(seed)
    unet.save_pretrained(folder / "unet", safe_serialization=False, max_shard_size="1MB")
    return _done(folder, "pickle-sharded", _convert("SD1.5 UNet", kind=ModelKind.SD15, pickle=True))


Builder = Callable[[Path, int], ZooRepo]
ZOO: dict[str, Builder] = {
    "sd15-current": sd15_current,
    "sd15-legacy": sd15_legacy,
    "lcm-fp32-fp16": lcm_fp32_fp16,
    "fp16-variant-only": fp16_variant_only,
    "sharded": sharded,
    "bf16": bf16,
    "bare-unet": bare_unet,
    "inpainting": inpainting,
    "clip-projection": clip_projection,
    "lcm-root-checkpoint": lcm_root_checkpoint,
    "lcm-lora": lcm_lora,
    "peft-adapter": peft_adapter,
    "controlnet": controlnet,
    "vae-only": vae_only,
    "sdxl": sdxl,
    "pickle-only": pickle_only,
    "pickle-pipeline": pickle_pipeline,
    "pickle-sharded": pickle_sharded,
}


def build_zoo(root: Path, seed: int = 0, names: list[str] | None = None) -> dict[str, ZooRepo]:
    """Build every zoo repo (or `names`) under `root/<name>`."""
    root = Path(root)
    return {name: ZOO[name](root / name, seed) for name in names or list(ZOO)}
