"""Every component layout real repos use, the one weight-selection rule, and repo kinds."""

from __future__ import annotations

import json
import shutil

import pytest

from bot.client.repo_files import has_pickle_only, needed_files, weight_files
from engine.formats.safetensors_io import read_header
from engine.source.checkpoint_match import header_table, match_original_checkpoint
from engine.source.component_check import canonical_name
from engine.source.folder import open_source
from engine.source.layout import Precision, list_local_files, select_weights
from engine.source.repo_kind import RepoKind, classify_repo
from engine.writers.original import original_names, write_original

HALF, MAIN = Precision.HALF, Precision.MAIN
U = "unet/diffusion_pytorch_model"
# unet/ of SD1.5's own repo (runwayml/stable-diffusion-v1-5), as its file list shows it.
SD15_UNET_FILES = [
    "unet/config.json",
    f"{U}.bin",
    f"{U}.fp16.bin",
    f"{U}.fp16.safetensors",
    f"{U}.non_ema.bin",
    f"{U}.non_ema.safetensors",
    f"{U}.safetensors",
]


def _paths(files, precision, folder="unet", stem="diffusion_pytorch_model"):
    chosen = select_weights(files, folder, stem, precision)
    return None if chosen is None else list(chosen.paths)


# ------------------------------------------------------------------ the weight-selection rule


def test_half_reads_the_fp16_variant_and_main_the_main_weights():
    assert _paths(SD15_UNET_FILES, HALF) == [f"{U}.fp16.safetensors"]
    assert _paths(SD15_UNET_FILES, MAIN) == [f"{U}.safetensors"]


def test_only_one_weight_set_serves_both_precisions():
    only_fp16 = ["unet/config.json", f"{U}.fp16.safetensors"]
    only_main = ["unet/config.json", f"{U}.safetensors"]
    assert _paths(only_fp16, MAIN) == _paths(only_fp16, HALF) == [f"{U}.fp16.safetensors"]
    assert _paths(only_main, MAIN) == _paths(only_main, HALF) == [f"{U}.safetensors"]


def test_non_ema_pickles_and_strays_are_never_selected():
    files = ["unet/config.json", f"{U}.non_ema.safetensors", f"{U}.bin", f"{U}.ema.safetensors"]
    files += ["unet/diffusion_flax_model.msgpack", "unet/model.onnx", f"{U}-copy.safetensors"]
    assert _paths(files, MAIN) is None and _paths(files, HALF) is None
    assert has_pickle_only(files, "unet")
    assert not has_pickle_only(SD15_UNET_FILES, "unet")


@pytest.mark.parametrize(
    ("index", "shards"),
    [
        (
            f"{U}.safetensors.index.fp16.json",
            [f"{U}.fp16-0000{i}-of-00002.safetensors" for i in (1, 2)],
        ),
        (
            f"{U}.safetensors.fp16.index.json",
            [f"{U}-0000{i}-of-00002.fp16.safetensors" for i in (1, 2)],
        ),
    ],
    ids=["current", "diffusers-legacy"],
)
def test_sharded_fp16_variant_in_both_namings(index, shards):
    main_shards = [f"{U}-0000{i}-of-00002.safetensors" for i in (1, 2)]
    files = ["unet/config.json", f"{U}.safetensors.index.json", *main_shards, index, *shards]
    assert _paths(files, HALF) == [index, *shards]
    assert _paths(files, MAIN) == [f"{U}.safetensors.index.json", *main_shards]


def test_single_file_or_index_as_the_loading_library_prefers():
    """diffusers reads a shard index first, transformers the single file."""
    unet = [f"{U}.safetensors", f"{U}.safetensors.index.json", f"{U}-00001-of-00001.safetensors"]
    assert _paths(unet, MAIN)[0].endswith(".index.json")
    te = [
        "text_encoder/model.safetensors",
        "text_encoder/model.safetensors.index.json",
        "text_encoder/model-00001-of-00001.safetensors",
    ]
    assert _paths(te, MAIN, "text_encoder", "model") == ["text_encoder/model.safetensors"]


def test_incomplete_shard_series_is_reported_not_skipped():
    files = [
        f"{U}.safetensors.index.json",
        f"{U}-00001-of-00003.safetensors",
        f"{U}.fp16.safetensors",
    ]
    chosen = select_weights(files, "unet", "diffusion_pytorch_model", MAIN)
    assert chosen is not None and chosen.variant is None
    assert "[2, 3] of 3 missing" in chosen.problem


def test_bot_downloads_the_rule_not_a_glob():
    sizes = dict.fromkeys([*SD15_UNET_FILES, "model_index.json", "LICENSE", "README.md"], 1)
    half = needed_files(sizes, precisions=HALF)
    assert half == ["model_index.json", "LICENSE", "unet/config.json", f"{U}.fp16.safetensors"]
    both = needed_files(sizes, precisions=(MAIN, HALF))
    assert both[-2:] == [f"{U}.safetensors", f"{U}.fp16.safetensors"]
    assert not any(p.endswith(".bin") or "non_ema" in p for p in both)
    assert weight_files(sizes, "unet", HALF) == [f"{U}.fp16.safetensors"]


def test_bare_unet_weights_at_the_root():
    files = ["config.json", "diffusion_pytorch_model.safetensors", "README.md"]
    assert needed_files(files, unet_folder="") == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]


# ------------------------------------------------------------------ repo kinds


@pytest.mark.parametrize(
    ("files", "model_index", "config", "kind", "fragment"),
    [
        (["model_index.json", "unet/config.json"], {}, None, RepoKind.PIPELINE, "unet/"),
        (
            ["config.json"],
            None,
            {"_class_name": "UNet2DConditionModel"},
            RepoKind.BARE_UNET,
            "bare",
        ),
        (["pytorch_lora_weights.safetensors"], None, None, RepoKind.ADAPTER, "LoRA"),
        (
            ["adapter_config.json", "adapter_model.safetensors"],
            None,
            None,
            RepoKind.ADAPTER,
            "adapter",
        ),
        (
            ["config.json"],
            None,
            {"_class_name": "ControlNetModel"},
            RepoKind.CONTROLNET,
            "ControlNet",
        ),
        (["config.json"], None, {"_class_name": "T2IAdapter"}, RepoKind.CONTROLNET, "T2I"),
        (["config.json"], None, {"_class_name": "AutoencoderKL"}, RepoKind.OTHER_MODEL, "VAE"),
        (
            ["config.json"],
            None,
            {"architectures": ["LlamaForCausalLM"]},
            RepoKind.OTHER_MODEL,
            "Llama",
        ),
        (
            ["model_index.json", "transformer/config.json"],
            {
                "_class_name": "StableDiffusion3Pipeline",
                "transformer": ["diffusers", "SD3Transformer2DModel"],
            },
            None,
            RepoKind.OTHER_MODEL,
            "StableDiffusion3Pipeline has no unet/ (components: transformer)",
        ),
        (
            ["model.safetensors.gguf", "sd15.safetensors"],
            None,
            None,
            RepoKind.SINGLE_FILES,
            "single",
        ),
        (["README.md"], None, None, RepoKind.NO_MODEL, "neither"),
    ],
)
def test_repo_kinds(files, model_index, config, kind, fragment):
    layout = classify_repo(files, model_index, config)
    assert layout.kind is kind
    assert fragment in layout.reason
    assert layout.convertible == (kind in (RepoKind.PIPELINE, RepoKind.BARE_UNET))


def test_refusal_exit_codes():
    assert classify_repo(["adapter_config.json"]).refusal("r").exit_code == 3
    assert classify_repo(["README.md"]).refusal("r").exit_code == 2


def test_root_checkpoint_candidates_skip_component_weights():
    files = [
        "unet/config.json",
        "v1-5-pruned-emaonly.safetensors",
        "v1-5-pruned.ckpt",
        "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
    ]
    assert classify_repo(files).root_checkpoints == ("v1-5-pruned-emaonly.safetensors",)


# ------------------------------------------------------------------ layouts the engine opens


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from engine.synthetic.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"), names=["sd15-current", "sd15-legacy", "bf16"])


def test_old_configs_legacy_vae_and_transformers4_give_current_names(zoo, tmp_path):
    """The legacy repo (0.6-era configs, query/key/value VAE attention, transformers 4 text
    encoder with position_ids) maps to exactly the names the current repo maps to."""
    legacy, current = (
        open_source(zoo["sd15-legacy"].folder),
        open_source(zoo["sd15-current"].folder),
    )
    assert len(legacy.unet.config) == 19 and "time_cond_proj_dim" not in legacy.unet.config
    for name in ("unet", "vae", "text_encoder"):
        assert sorted(original_names(getattr(legacy, name)).values()) == sorted(
            original_names(getattr(current, name)).values()
        ), name
    assert any(".query." in n for n in original_names(legacy.vae))
    legacy_vae = {canonical_name("vae", n) for n in legacy.vae.shapes()}
    assert legacy_vae == set(current.vae.shapes())
    legacy_te = {canonical_name("text_encoder", n) for n in legacy.text_encoder.shapes()}
    assert legacy_te == {canonical_name("text_encoder", n) for n in current.text_encoder.shapes()}
    assert [n for n, _ in legacy.text_encoder.ignored] == ["text_model.embeddings.position_ids"]


def test_current_config_with_nulls_equals_old_config(zoo, tmp_path):
    """A config written by current diffusers (every key, many null) and the same model's
    0.6-era config give the same original file."""
    src = zoo["sd15-current"].folder
    old = tmp_path / "old"
    shutil.copytree(src / "unet", old)
    config = json.loads((src / "unet" / "config.json").read_text())
    assert config["time_cond_proj_dim"] is None and config["addition_embed_type"] is None
    keep = ["block_out_channels", "cross_attention_dim", "down_block_types", "up_block_types"]
    keep += ["layers_per_block", "in_channels", "out_channels", "attention_head_dim"]
    (old / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DConditionModel", **{k: config[k] for k in keep}})
    )
    a = write_original(open_source(src), tmp_path / "a.safetensors")
    b = write_original(open_source(old), tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()


def test_bf16_weights_stay_bf16(zoo, tmp_path):
    source = open_source(zoo["bf16"].folder)
    assert source.unet.dtype == source.vae.dtype == source.text_encoder.dtype == "BF16"
    out = write_original(source, tmp_path / "full.safetensors", full=True)
    assert {t.dtype for t in read_header(out).tensors} == {"BF16"}


def test_component_records_the_files_it_read(zoo):
    folder = zoo["sd15-legacy"].folder
    for precision, name in (
        (MAIN, "diffusion_pytorch_model.safetensors"),
        (HALF, "diffusion_pytorch_model.fp16.safetensors"),
    ):
        source = open_source(folder, precision)
        rel = [p.relative_to(folder).as_posix() for p in source.unet.files]
        assert rel == ["unet/config.json", f"unet/{name}"]
        te = [p.relative_to(folder).as_posix() for p in source.text_encoder.files]
        assert te[-1] == (
            "text_encoder/model.safetensors"
            if precision is MAIN
            else "text_encoder/model.fp16.safetensors"
        )
    assert open_source(folder, MAIN).fp16_twin_available
    assert not open_source(folder, HALF).fp16_twin_available


def test_full_gguf_from_a_transformers4_text_encoder(zoo, tmp_path):
    """The I64 position_ids buffer is left out (recorded), so the GGUF writer never sees it."""
    from engine.run.convert import convert

    manifest = convert(zoo["sd15-legacy"].folder, tmp_path / "out", "gguf-full-f16")
    assert manifest.artifacts[0].path.endswith(".gguf")
    ignored = manifest.source["ignored"]["text_encoder"]
    assert list(ignored) == ["text_model.embeddings.position_ids"]
    assert "0..n-1" in ignored["text_model.embeddings.position_ids"]


def test_root_checkpoint_of_another_unet_does_not_match(zoo):
    legacy = zoo["sd15-legacy"].folder
    table = header_table(read_header(legacy / "v1-5-pruned-emaonly.safetensors"))
    config = json.loads((legacy / "unet" / "config.json").read_text())
    assert match_original_checkpoint(table, config).contents == "full"
    lcm = match_original_checkpoint(table, {**config, "time_cond_proj_dim": 16})
    assert lcm.contents == "full" and "without the LCM guidance embedding" in lcm.reason
    wider = {**config, "block_out_channels": [64, 64]}
    assert not match_original_checkpoint(table, wider).matches
    deeper = {**config, "layers_per_block": 2}
    result = match_original_checkpoint(table, deeper)
    assert not result.matches and "lacks" in result.reason
    bare = {
        k[len("model.diffusion_model.") :]: v for k, v in table.items() if k.startswith("model.")
    }
    assert match_original_checkpoint(bare, config).contents == "unet"


def test_local_listing_matches_a_hub_file_list(zoo):
    files = list_local_files(zoo["sd15-legacy"].folder)
    assert "unet/diffusion_pytorch_model.non_ema.safetensors" in files
    assert all(not p.startswith(".") and p.count("/") <= 1 for p in files)


def test_quantized_output_is_made_from_the_fp16_variant(tmp_path):
    """torchao reads what Precision.HALF selects: with bf16 main weights and an fp16 variant, the
    stored dtype is the variant's float16 (the main file would give bfloat16)."""
    import torch

    from engine.synthetic.zoo_parts import tiny_unet
    from engine.writers.diffusers_quant import quantize_unet

    unet = tiny_unet(0)
    unet.to(torch.bfloat16).save_pretrained(tmp_path / "unet")
    unet.to(torch.float16).save_pretrained(tmp_path / "unet", variant="fp16")
    result = quantize_unet(tmp_path / "unet", tmp_path / "q", "torchao-int8wo")
    assert result.stored_dtype == "float16"
