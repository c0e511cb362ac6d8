"""Helping users choose: `bot bench` on a folder and on a published repo (tiny models, a real
measuring process each), the recommendation rule, the JSON schema, and the cards' "What to pick"
section with the reference figures."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from bot.bench.report import BenchRow, recommend
from bot.bench.run import choose_variants, manifest_from_json, parse_size
from bot.bench.schema import BENCH_JSON_SCHEMA
from bot.cli import app
from bot.publish.cards import CardContext, render_repo_card
from engine import __version__
from engine.cost.model import Measurement, Status, VariantCost, settings
from engine.cost.table import ReferenceRun
from engine.errors import BadInput
from engine.formats.manifest import Artifact, Manifest
from engine.run.pipeline import convert_and_validate
from engine.run.variants import PublishTarget
from engine.source.classify import ModelKind
from engine.synthetic.models import unet_config

VARIANTS = ["gguf-q8_0", "gguf-q4_0", "gguf-full-q8_0"]
TINY = ["--steps", "1", "--latent", "8"]  # tiny models: an 8x8 latent keeps each step short


@pytest.fixture(scope="module")
def validated(tiny_pipeline, tmp_path_factory):
    """A `bot convert` output folder of a tiny LCM: two UNet GGUFs and a full one, validated."""
    out = tmp_path_factory.mktemp("bench") / "out"
    convert_and_validate(tiny_pipeline("sd15-lcm"), out, VARIANTS)
    return out


@pytest.fixture(scope="module")
def folder_json(validated):
    result = CliRunner().invoke(
        app, ["bench", str(validated), "--variants", "gguf-q8_0,gguf-full-q8_0", *TINY, "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_json_follows_its_schema_with_one_row_per_variant(folder_json):
    jsonschema.validate(folder_json, BENCH_JSON_SCHEMA)
    rows = {r["variant"]: r for r in folder_json["rows"]}
    assert list(rows) == ["gguf-q8_0", "gguf-full-q8_0"]
    assert rows["gguf-q8_0"]["status"] == "measured"
    assert rows["gguf-q8_0"]["eager"]["consumer"] == "diffusers (GGUFQuantizationConfig)"
    assert rows["gguf-full-q8_0"]["status"] == "not measured"
    assert "stable-diffusion.cpp" in rows["gguf-full-q8_0"]["not_measured"]
    assert folder_json["settings"]["latent"] == 8 and folder_json["machine"]["cores"] >= 1
    broken = {**folder_json, "rows": [{**folder_json["rows"][0], "status": "fast"}]}
    with pytest.raises(jsonschema.ValidationError):  # the schema does constrain the rows
        jsonschema.validate(broken, BENCH_JSON_SCHEMA)


def test_bench_recommends_the_measured_variant_with_its_validation_metrics(folder_json, validated):
    cosine = next(
        a.validation.metrics["output"]["cosine"]
        for a in Manifest.load(validated).artifacts
        if a.variant == "gguf-q8_0"
    )
    rec = folder_json["recommendation"]
    assert rec["variant"] == "gguf-q8_0" and rec["mode"] == "eager"
    assert rec["cosine"] == cosine
    assert rec["peak_rss_bytes"] == folder_json["rows"][0]["eager"]["peak_rss_bytes"]
    assert f"cosine {cosine:.5f}" in folder_json["recommendation_line"]


# ---------------------------------------------------------------- a published repo


@pytest.fixture(scope="module")
def published(validated, tmp_path_factory):
    """An embedded Hub holding a GGUF repo laid out as bot/publish/commit.py uploads it, and a repo
    without unetbot's manifest."""
    from huggingface_hub import HfApi

    from bot.hub import start_hub
    from bot.seed import write_accounts

    base = tmp_path_factory.mktemp("bench-hub")
    accounts = write_accounts(base / "hub")
    with start_hub(base / "hub" / "data", config=accounts.config_path, durable=False) as hub:
        api = HfApi(endpoint=hub.endpoint, token=accounts.bot_token)
        manifest = Manifest.load(validated)
        api.create_repo("unetbot/tiny-GGUF")
        api.upload_folder(
            repo_id="unetbot/tiny-GGUF", folder_path=validated, allow_patterns=["*.gguf"]
        )
        api.upload_file(
            path_or_fileobj=manifest.to_json().encode(),
            path_in_repo="unetbot-manifest.json",
            repo_id="unetbot/tiny-GGUF",
        )
        api.create_repo("unetbot/not-ours")
        api.upload_file(
            path_or_fileobj=b"# hi\n", path_in_repo="README.md", repo_id="unetbot/not-ours"
        )
        yield hub.endpoint, accounts.bot_token, base


@pytest.fixture
def hub_env(published, monkeypatch, tmp_path):
    endpoint, token, _ = published
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("UNETBOT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bench_of_a_published_repo_downloads_only_what_it_measures(hub_env):
    args = ["bench", "unetbot/tiny-GGUF", "--variants", "gguf-q4_0", "--max-ram", "1MB", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    header = next(line for line in out.splitlines() if "variant" in line)
    for column in ("file", "load", "peak RAM", "s/step", "cosine", "rel. L2"):
        assert column in header
    assert sum("gguf-q4_0" in line for line in out.splitlines() if "│" in line) == 1
    assert "Nothing measured fits in 1.0 MB of RAM (--max-ram)" in out
    assert "the smallest peak is `gguf-q4_0`" in out
    assert "machine:" in out
    downloaded = sorted(p.name for p in hub_env.rglob("*.gguf"))
    assert len(downloaded) == 1 and downloaded[0].endswith("-Q4_0.gguf"), downloaded


def test_bench_of_a_repo_unetbot_did_not_publish_says_so(hub_env):
    result = CliRunner().invoke(app, ["bench", "unetbot/not-ours"])
    assert result.exit_code == 2
    assert "not a repo published by unetbot" in result.output


def test_bench_of_a_folder_without_manifest_or_with_unknown_variants(validated, tmp_path):
    result = CliRunner().invoke(app, ["bench", str(tmp_path)])
    assert result.exit_code == 2 and "no manifest.json" in result.output
    result = CliRunner().invoke(app, ["bench", str(validated), "--variants", "quanto-int8"])
    assert result.exit_code == 2 and "available: gguf-q8_0" in result.output


def test_a_published_manifest_cannot_point_outside_the_repo(validated, tmp_path):
    raw = json.loads(Manifest.load(validated).to_json())
    raw["artifacts"][0]["files"][0]["path"] = "../../secrets"
    path = tmp_path / "unetbot-manifest.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BadInput, match="not a plain relative path"):
        manifest_from_json(path, "x/y")


def test_default_variants_skip_the_ones_that_failed_validation(validated):
    manifest = Manifest.load(validated)
    manifest.artifacts[0].validation.status = "failed"
    assert choose_variants(manifest, None, "here") == ["gguf-q4_0", "gguf-full-q8_0"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8GB", 8_000_000_000), ("8", 8_000_000_000), ("1.5 GiB", 1_610_612_736), ("512mb", 512e6)],
)
def test_max_ram_sizes(text, expected):
    assert parse_size(text) == expected


def test_a_bad_max_ram_is_bad_input():
    with pytest.raises(BadInput, match="8GB"):
        parse_size("lots")


# ---------------------------------------------------------------- the recommendation rule


def _m(variant: str, step: float, peak: int, mode: str = "eager") -> Measurement:
    return Measurement(
        variant,
        mode,
        Status.MEASURED,
        step_s=step,
        steps_s=[step],
        peak_rss_bytes=peak,
        warmup_s=100.0,
    )


def _row(variant, eager=None, compiled=None, status="passed", cosine=0.999) -> BenchRow:
    quality = {"status": status, "cosine": cosine, "rel_l2": 0.01}
    return BenchRow(VariantCost(variant, 1, eager, compiled), quality)


def test_the_fastest_that_fits_wins_and_a_faster_one_that_does_not_fit_is_passed_over():
    rows = [
        _row("gguf-f16", _m("gguf-f16", 1.0, 4_000_000_000)),
        _row("gguf-q8_0", _m("gguf-q8_0", 2.0, 2_000_000_000)),
        _row("gguf-q4_0", _m("gguf-q4_0", 3.0, 1_000_000_000)),
    ]
    assert recommend(rows, 10**10, "x").option.row.variant == "gguf-f16"
    pick = recommend(rows, 3_000_000_000, "--max-ram")
    assert pick.option.row.variant == "gguf-q8_0"
    assert "2.00 s per step" in pick.line and "cosine 0.99900" in pick.line


def test_a_compiled_option_can_win_and_says_what_compiling_costs():
    rows = [
        _row("gguf-q8_0", _m("gguf-q8_0", 2.0, 2_000_000_000)),
        _row(
            "torchao-int8wo",
            _m("torchao-int8wo", 3.0, 2_000_000_000),
            _m("torchao-int8wo", 1.5, 2_500_000_000, "compiled"),
        ),
    ]
    pick = recommend(rows, 10**10, "x")
    assert (pick.option.row.variant, pick.option.measurement.mode) == ("torchao-int8wo", "compiled")
    assert "compiled with torch.compile" in pick.line and "first step compiles: 100 s" in pick.line


def test_a_variant_that_failed_validation_is_never_recommended():
    rows = [
        _row("gguf-q4_0", _m("gguf-q4_0", 1.0, 1_000_000_000), status="failed"),
        _row("gguf-q8_0", _m("gguf-q8_0", 2.0, 2_000_000_000)),
    ]
    assert recommend(rows, 10**10, "x").option.row.variant == "gguf-q8_0"


def test_max_ram_that_excludes_everything_names_the_smallest_peak():
    rows = [
        _row("gguf-q8_0", _m("gguf-q8_0", 2.0, 2_000_000_000)),
        _row("gguf-q4_0", _m("gguf-q4_0", 3.0, 1_500_000_000)),
        _row("gguf-full-q8_0"),  # not measured: no option
    ]
    pick = recommend(rows, 1_000_000_000, "--max-ram")
    assert pick.option is None and pick.to_dict() is None
    assert "Nothing measured fits in 1.00 GB" in pick.line
    assert "`gguf-q4_0` at 1.50 GB" in pick.line


def test_nothing_measured_recommends_nothing():
    pick = recommend([_row("gguf-full-q8_0")], 10**10, "x")
    assert pick.option is None and "Nothing was measured" in pick.line


# ---------------------------------------------------------------- the cards' "What to pick"


def _reference(version: str = __version__) -> ReferenceRun:
    machine = {
        "cpu": "Reference CPU 9000",
        "cores": 2,
        "ram_bytes": 25_000_000_000,
        "os": "Linux-6",
        "versions": {"torch": "2.13.0"},
        "date": "2026-11-30",
    }
    q8 = Measurement(
        "gguf-q8_0",
        "eager",
        Status.MEASURED,
        load_s=4.5,
        step_s=3.21,
        steps_s=[3.21],
        peak_rss_bytes=2_100_000_000,
    )
    costs = {
        "gguf-q8_0": VariantCost("gguf-q8_0", 1, q8),
        "torchao-int8wo": VariantCost(
            "torchao-int8wo",
            1,
            _m("torchao-int8wo", 5.0, 3_000_000_000),
            _m("torchao-int8wo", 2.5, 3_500_000_000, "compiled"),
        ),
    }
    return ReferenceRun(version, machine, settings(3), costs)


def _artifact(variant: str) -> Artifact:
    validation = {
        "status": "passed",
        "reason": "all checks passed",
        "metrics": {"output": {"cosine": 0.99991, "rel_l2": 0.0123, "max_abs": 0.01}},
        "checks": [],
    }
    return Artifact(variant, "x", f"{variant}.bin", 1_000_000, "0" * 64, [], [], {}, validation)


def _card(target, variants, config=None, reference=None) -> str:
    manifest = Manifest(source={"unet_config": config} if config else {})
    ctx = CardContext("alice/tiny", "a" * 40, ModelKind.SD15_LCM, "mit", {}, [], "http://hub")
    artifacts = [_artifact(v) for v in variants]
    card = render_repo_card(ctx, target, "unetbot/x", manifest, artifacts, reference=reference)
    return card[card.index("## What to pick") : card.index("## How to load")]


def _rows(text: str) -> dict[str, str]:
    return {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}


def test_card_lists_the_reference_figures_of_its_own_files_only():
    text = _card(PublishTarget.GGUF, VARIANTS, unet_config("sd15-lcm", "full"), _reference())
    rows = _rows(text)
    assert list(rows) == VARIANTS  # the run also has torchao: not a file of this card
    assert "4.50 s" in rows["gguf-q8_0"] and "2.10 GB" in rows["gguf-q8_0"]
    assert "3.21 s" in rows["gguf-q8_0"] and "0.99991" in rows["gguf-q8_0"]
    # never a borrowed figure: diffusers' three cells and stable-diffusion.cpp's one
    assert rows["gguf-q4_0"].count("not measured") == 4
    assert "stable-diffusion.cpp: load / peak RAM / s/step" in text  # GGUFs: it reads them
    assert "no reference measurement" in text and "stable-diffusion.cpp" in text
    assert "Reference CPU 9000" in text and "2026-11-30" in text
    assert "not on this model" in text and "has SD1.5's UNet shapes" in text
    assert "fastest per step is `gguf-q8_0`" in text
    assert "torch.compile" not in text  # no TorchAO file here: no compiled column


def test_torchao_card_shows_the_compiled_figure_and_its_compile_time():
    text = _card(PublishTarget.TORCHAO, ["torchao-int8wo"], reference=_reference())
    assert "s/step with torch.compile" in text
    assert "2.50 s (compile 100 s)" in _rows(text)["torchao-int8wo"]
    assert "fastest per step is `torchao-int8wo` compiled" in text


def test_tiny_model_card_says_its_own_costs_differ():
    text = _card(PublishTarget.GGUF, ["gguf-q8_0"], unet_config("sd15-lcm", "tiny"), _reference())
    assert "does not have SD1.5's shapes" in text and "not on this model" in text


def test_card_from_another_converter_version_shows_no_figure():
    text = _card(PublishTarget.GGUF, ["gguf-q8_0"], reference=_reference("0.0.0-older"))
    assert (
        _rows(text)["gguf-q8_0"].count("not measured") == 4
    )  # diffusers 3, stable-diffusion.cpp 1
    assert "No cost figures have been measured yet" in text
    assert "Reference CPU 9000" not in text


def test_card_names_no_fastest_file_when_step_times_overlap():
    run = _reference()
    slow = Measurement(
        "gguf-q4_0",
        "eager",
        Status.MEASURED,
        step_s=3.3,
        steps_s=[2.9, 3.3, 3.6],
        peak_rss_bytes=1_900_000_000,
    )
    run.costs["gguf-q4_0"] = VariantCost("gguf-q4_0", 1, slow)
    run.costs["gguf-q8_0"].eager.steps_s = [3.0, 3.21, 3.5]
    text = _card(PublishTarget.GGUF, ["gguf-q8_0", "gguf-q4_0"], reference=run)
    assert "no file is clearly fastest" in text
    assert "`gguf-q4_0` needs the least memory (1.90 GB)" in text
    run.costs["gguf-q4_0"].eager.steps_s = [3.6, 3.7, 3.8]  # now every step is slower
    text = _card(PublishTarget.GGUF, ["gguf-q8_0", "gguf-q4_0"], reference=run)
    assert "the fastest per step is `gguf-q8_0` (3.21 s)" in text
