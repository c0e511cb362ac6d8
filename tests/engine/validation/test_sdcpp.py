"""stable-diffusion.cpp in the loop, the parts that need neither the library nor a full-size model:
what a run records without the extra, which sources it cannot build, how its log and its images
are judged. The library itself runs in tests/engine/validation/test_sdcpp_full.py (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.validation import sdcpp
from engine.validation.sdcpp_run import SdcppOutcome


def test_without_the_extra_the_manifest_and_cards_say_not_run(tiny_pipeline, tmp_path, monkeypatch):
    from bot.publish.cards import CardContext, render_pr_description, render_repo_card
    from engine.formats.manifest import Manifest
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest
    from engine.run.variants import PublishTarget
    from engine.source.classify import ModelKind

    monkeypatch.setattr(sdcpp, "installed_version", lambda: None)
    source = tiny_pipeline("sd15")
    convert(source, tmp_path / "out", "original,original-full,gguf-q8_0,comfy-gguf-q8_0")
    manifest = validate_manifest(tmp_path / "out", source)
    by_name = {a.variant: a for a in manifest.artifacts}
    for name in ("original-full", "gguf-q8_0"):  # stable-diffusion.cpp reads these
        v = by_name[name].validation
        assert v is not None and v.passed, v
        record = v.metrics[sdcpp.METRICS_KEY]
        assert record["status"] == "not run"
        assert record["reason"].startswith("stable-diffusion.cpp not run: ")
        assert "extra" in record["reason"] and "not installed" in record["reason"]
        assert not any("stable-diffusion.cpp 0" in c for c in v.checks)  # nothing claimed
    for name in ("original", "comfy-gguf-q8_0"):  # it does not read these
        v = by_name[name].validation
        assert v is not None and sdcpp.METRICS_KEY not in v.metrics
    saved = Manifest.load(tmp_path / "out")  # the record survives the manifest round trip
    assert saved.artifacts == manifest.artifacts

    ctx = CardContext("alice/m", "a" * 40, ModelKind.SD15, "mit", {}, [], "http://hub")
    ggufs = [by_name["gguf-q8_0"], by_name["comfy-gguf-q8_0"]]
    card = render_repo_card(ctx, PublishTarget.GGUF, "bot/m-GGUF", manifest, ggufs)
    rows = [line for line in card.splitlines() if "| passed |" in line]  # the validation table
    row = next(line for line in rows if line.startswith("| `gguf-q8_0`"))
    assert "stable-diffusion.cpp not run: the unetbot\\[sdcpp\\] extra" in row
    comfy_row = next(line for line in rows if line.startswith("| `comfy-gguf-q8_0`"))
    assert comfy_row.rstrip().endswith("| - |")
    pr = render_pr_description(ctx, [by_name["original"], by_name["original-full"]], True)
    full_row = next(line for line in pr.splitlines() if "`original-full`" in line)
    assert "stable-diffusion.cpp not run" in full_row


def test_sizes_other_than_sd1_are_not_run_and_say_why(tiny_pipeline):
    from engine.source.folder import open_source

    why = sdcpp.sizes_problem(open_source(tiny_pipeline("sd15")))
    assert "not SD1.x's" in why and "stable-diffusion.cpp builds" in why
    unet_only = sdcpp.sizes_problem(open_source(tiny_pipeline("sd15", full=False)))
    assert unet_only  # tiny sizes first; a UNet alone is never run either


def test_extra_present_on_a_tiny_model_records_not_run_never_a_pass(tiny_pipeline, tmp_path):
    """With or without the library installed, a model it cannot build is "not run"."""
    from engine.run.convert import convert
    from engine.run.validate import validate_manifest

    source = tiny_pipeline("sd15")
    convert(source, tmp_path / "out", "gguf-full-q8_0")
    artifact = validate_manifest(tmp_path / "out", source).artifacts[0]
    assert artifact.validation is not None and artifact.passed
    record = artifact.validation.metrics[sdcpp.METRICS_KEY]
    assert record["status"] == "not run" and record["reason"].startswith(sdcpp.NOT_RUN)


def test_the_library_s_own_words_fail_a_file():
    failed = SdcppOutcome(
        loaded=False,
        errors=["stable-diffusion.cpp:299 - get sd version from file failed: '/x.safetensors'"],
    )
    assert sdcpp.outcome_problems(failed) == [
        "stable-diffusion.cpp could not load it: stable-diffusion.cpp:299 - get sd version "
        "from file failed: '/x.safetensors'"
    ]
    dropped = SdcppOutcome(
        loaded=True,
        generated=True,
        unknown_tensors=[f"model.cpp:1026 - unknown tensor 'x{i}' in model file" for i in range(7)],
    )
    (problem,) = sdcpp.outcome_problems(dropped)
    assert "does not know 7 tensor(s)" in problem and "'x4'" in problem and "(+2 more)" in problem
    assert sdcpp.outcome_problems(SdcppOutcome(loaded=True, generated=False)) == [
        "stable-diffusion.cpp generated no image: no reason"
    ]
    assert sdcpp.outcome_problems(SdcppOutcome(loaded=True, generated=True)) == []


def _png(path, pixels: np.ndarray):
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_image_metrics(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3))
    same = sdcpp.image_metrics(_png(tmp_path / "a.png", base), _png(tmp_path / "b.png", base))
    assert same == {"cosine": 1.0, "psnr_db": None, "max_abs": 0.0, "identical": True}
    shifted = np.clip(base + rng.integers(-4, 5, base.shape), 0, 255)
    near = sdcpp.image_metrics(_png(tmp_path / "c.png", shifted), tmp_path / "a.png")
    mse = np.mean((shifted - base).astype(np.float64) ** 2)
    assert near["psnr_db"] == pytest.approx(10 * np.log10(255**2 / mse), abs=0.01)
    assert 0.99 < near["cosine"] < 1.0 and near["max_abs"] <= 4 and not near["identical"]
    inverted = sdcpp.image_metrics(_png(tmp_path / "d.png", 255 - base), tmp_path / "a.png")
    assert inverted["cosine"] == pytest.approx(-1.0, abs=1e-6) and inverted["psnr_db"] < 10


def test_gates_exact_files_need_identical_images():
    assert sdcpp.gate_for("Q4_0", exact=True) is None
    assert sdcpp.gate_for(None, exact=False) == sdcpp.IMAGE_GATES["F16"]
    gates = [sdcpp.IMAGE_GATES[t] for t in ("F16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")]
    assert [g.min_psnr_db for g in gates] == sorted((g.min_psnr_db for g in gates), reverse=True)


def test_summary_cells():
    assert sdcpp.summary(None) == "-"
    assert sdcpp.summary(sdcpp.not_run("why")) == "stable-diffusion.cpp not run: why"
    ran = {"status": sdcpp.RAN, "image_vs_exact": {"cosine": 0.99, "psnr_db": 41.5}}
    assert sdcpp.summary(ran) == "loads; image vs exact: cosine 0.99, PSNR 41.5 dB"
    exact = {"status": sdcpp.RAN, "image_vs_exact": {"identical": True}}
    assert sdcpp.summary(exact) == "loads; image identical to the exact file's"
    assert sdcpp.summary({"status": sdcpp.FAILED}) == "failed (see the reason)"


def test_one_pinned_version_everywhere():
    """pyproject's extra, constraints.txt, the Makefile's build and the workflow's cache key."""
    import tomllib
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]
    pin = f"stable-diffusion-cpp-python=={sdcpp.PINNED}"
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert extras["optional-dependencies"]["sdcpp"] == [pin]
    assert pin in (root / "constraints.txt").read_text().splitlines()
    assert f"SDCPP_VERSION := {sdcpp.PINNED}\n" in (root / "Makefile").read_text()
    workflow = yaml.safe_load((root / ".github" / "workflows" / "bot.yml").read_text())
    assert workflow["env"]["SDCPP_VERSION"] == sdcpp.PINNED
    installed = sdcpp.installed_version()
    assert installed in (None, sdcpp.PINNED)  # never another build of the library


def test_temporary_files_go_with_the_context():
    """The CLIP/VAE companions (~0.4 GB at full size) and images never outlive the run."""
    import gc

    state = sdcpp.SdcppState()
    folder = state.tmp()
    (folder / "clip.safetensors").write_bytes(b"x")
    state.close()
    assert not folder.exists() and state.folder is None
    dropped = sdcpp.SdcppState()
    folder = dropped.tmp()
    del dropped
    gc.collect()
    assert not folder.exists()
