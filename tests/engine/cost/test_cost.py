"""Cost measurement: each variant in a fresh process in its own consumer, failures and
unmeasurable variants said with their reason, and the shipped reference table."""

from __future__ import annotations

import json
import statistics

import pytest

from engine.cost import probe as cost_probe
from engine.cost.model import Measurement, Status, VariantCost, not_measured_reason, settings
from engine.cost.probe import RESULT_PREFIX, ProbeRequest
from engine.cost.run import measure_folder
from engine.cost.table import (
    ReferenceRun,
    load_runs,
    reference_run,
    same_shapes_as_reference,
    save_run,
)
from engine.errors import BadInput
from engine.formats.manifest import Manifest
from engine.run.convert import convert
from engine.run.variants import VARIANTS, Family
from engine.synthetic.models import unet_config
from engine.writers.gguf_layout import GGUFLayout


@pytest.fixture(scope="module")
def converted(tiny_pipeline, tmp_path_factory):
    """A tiny LCM pipeline's original, Q8_0 GGUF and full Q8_0 GGUF (not validated)."""
    out = tmp_path_factory.mktemp("cost") / "out"
    convert(tiny_pipeline("sd15-lcm"), out, ["original", "gguf-q8_0", "gguf-full-q8_0"])
    return out


def test_each_variant_is_measured_in_its_consumer_or_says_why_not(converted):
    names = ["original", "gguf-full-q8_0"]
    costs = {
        c.variant: c
        for c in measure_folder(converted, Manifest.load(converted), names, 2, latent=8)
    }

    original = costs["original"].eager
    assert original is not None and original.status == Status.MEASURED, original
    assert original.consumer == "diffusers from_single_file"
    assert len(original.steps_s) == 2  # the warm-up step is not among the timed ones
    assert original.step_s == pytest.approx(statistics.median(original.steps_s), abs=1e-4)
    assert 0 < original.baseline_rss_bytes <= original.load_rss_bytes <= original.peak_rss_bytes
    assert original.load_s > 0 and original.warmup_s > 0
    assert costs["original"].compiled is None  # compile applies to TorchAO only

    full = costs["gguf-full-q8_0"]
    assert full.eager is None and full.status == Status.NOT_MEASURED
    assert "stable-diffusion.cpp" in full.not_measured  # measured there only (the extra)


def test_a_file_its_consumer_refuses_is_a_failed_measurement_with_the_reason(
    converted, tmp_path, capsys
):
    """The measuring process's contract, run here in-process: whatever the consumer raises
    becomes one failed result line carrying the reason (the parent never sees a traceback)."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"NOPE" + next(converted.glob("*-Q8_0.gguf")).read_bytes()[4:])
    config = tmp_path / "config"
    (config / "unet").mkdir(parents=True)
    manifest = Manifest.load(converted)
    (config / "unet" / "config.json").write_text(json.dumps(manifest.source["unet_config"]))
    request = ProbeRequest("gguf-q8_0", str(broken), str(config), "eager", 1, 8)
    assert cost_probe.main([request.to_json()]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(RESULT_PREFIX)]
    result = Measurement.from_dict(json.loads(line[-1][len(RESULT_PREFIX) :]))
    assert result.status == Status.FAILED and result.step_s is None
    assert "magic" in result.reason.lower(), result.reason


def test_only_variants_without_a_diffusers_consumer_are_unmeasurable():
    unmeasurable = {name for name, v in VARIANTS.items() if not_measured_reason(v)}
    # full GGUFs (stable-diffusion.cpp, ComfyUI-GGUF) and ComfyUI-GGUF-only files
    not_diffusers = {
        n
        for n, v in VARIANTS.items()
        if v.family is Family.GGUF
        and (v.full_checkpoint or v.gguf_layout is GGUFLayout.COMFYUI_GGUF)
    }
    assert unmeasurable == not_diffusers


def test_a_manifest_pointing_outside_its_folder_is_refused(converted, tmp_path):
    manifest = Manifest.load(converted)
    manifest.artifacts[0].path = "../../etc/passwd"
    with pytest.raises(BadInput, match="leaves the folder"):
        measure_folder(converted, manifest, [manifest.artifacts[0].variant], 1, latent=8)


def _run(version: str, step: float) -> ReferenceRun:
    m = Measurement("original", "eager", Status.MEASURED, step_s=step, steps_s=[step])
    return ReferenceRun(
        version, {"cpu": "x"}, settings(3), {"original": VariantCost("original", 1, m)}
    )


def test_save_run_replaces_its_own_version_and_keeps_the_others(tmp_path):
    table = tmp_path / "cost_table.json"
    save_run(_run("0.1.0", 1.0), table)
    save_run(_run("0.2.0", 2.0), table)
    save_run(_run("0.1.0", 3.0), table)
    runs = {r.unetbot_version: r for r in load_runs(table)}
    assert set(runs) == {"0.1.0", "0.2.0"}
    assert runs["0.1.0"].costs["original"].eager.step_s == 3.0
    assert reference_run("0.2.0", table).costs["original"].eager.step_s == 2.0
    assert reference_run("9.9.9", table) is None  # another version's files: not measured


def test_a_malformed_table_is_an_error_not_an_empty_one(tmp_path):
    table = tmp_path / "cost_table.json"
    table.write_text(json.dumps({"schema_version": 99, "runs": []}))
    with pytest.raises(BadInput, match="schema_version"):
        load_runs(table)


def test_the_shipped_table_is_consistent():
    for run in load_runs():
        assert run.machine and run.settings["latent"] == 64 and run.settings["batch"] == 1
        for name, cost in run.costs.items():
            assert name in VARIANTS
            assert bool(cost.not_measured) == (cost.eager is None), name
            for m in cost.measurements():
                if m.measured:
                    assert m.step_s == pytest.approx(statistics.median(m.steps_s), abs=1e-4)
                    assert m.baseline_rss_bytes <= m.load_rss_bytes <= m.peak_rss_bytes
                else:
                    assert m.reason, name


def test_reference_shapes_are_recognised_in_both_config_spellings():
    full = unet_config("sd15", "full")
    assert same_shapes_as_reference(full) is True
    newer = {**full, "attention_head_dim": [8, 8, 8, 8], "use_linear_projection": False}
    assert same_shapes_as_reference(newer) is True
    assert same_shapes_as_reference(unet_config("sd15-lcm", "tiny")) is False
    assert same_shapes_as_reference(unet_config("sd2", "full")) is False
    assert same_shapes_as_reference({}) is None


def test_stable_diffusion_cpp_is_planned_for_the_files_it_reads(converted, monkeypatch):
    from engine.cost import run as cost_run
    from engine.cost.run import companion_files, measure_sdcpp, plan_measurements

    manifest = Manifest.load(converted)
    by_name = {a.variant: a for a in manifest.artifacts}
    monkeypatch.setattr(cost_run, "sdcpp_installed", lambda: False)  # without the extra
    assert plan_measurements(by_name["gguf-full-q8_0"], False) == []
    assert plan_measurements(by_name["gguf-q8_0"], False) == ["eager"]
    monkeypatch.setattr(cost_run, "sdcpp_installed", lambda: True)
    assert plan_measurements(by_name["gguf-full-q8_0"], False) == ["stable-diffusion.cpp"]
    assert plan_measurements(by_name["gguf-q8_0"], False) == ["eager", "stable-diffusion.cpp"]
    assert plan_measurements(by_name["original"], False) == ["eager"]  # a UNet-only safetensors

    # a UNet-only file with no full checkpoint in its folder to take CLIP and VAE from
    path = converted / by_name["gguf-q8_0"].path
    with companion_files(converted, manifest) as companions:
        m = measure_sdcpp("gguf-q8_0", path, False, companions, 1, 8)
    assert m.status == Status.NOT_MEASURED and m.consumer == "stable-diffusion.cpp"
    assert "beside a CLIP and a VAE file" in m.reason and "original-full" in m.reason


def test_a_stable_diffusion_cpp_figure_round_trips_and_is_shown():
    from bot.bench.cost_view import sdcpp_cell

    m = Measurement(
        "gguf-full-q8_0",
        "stable-diffusion.cpp",
        Status.MEASURED,
        consumer="stable-diffusion.cpp",
        load_s=4.8,
        step_s=6.25,
        steps_s=[6.25],
        peak_rss_bytes=2_240_000_000,
    )
    cost = VariantCost("gguf-full-q8_0", 1, not_measured="no diffusers figure", sdcpp=m)
    again = VariantCost.from_dict(json.loads(json.dumps(cost.to_dict())))
    assert again == cost and again.measurements() == [m]
    assert sdcpp_cell(again, True) == "4.80 s / 2.24 GB / 6.25 s"
    assert sdcpp_cell(VariantCost("gguf-full-q8_0"), True) == "not measured"
    assert sdcpp_cell(again, False) == "-"
