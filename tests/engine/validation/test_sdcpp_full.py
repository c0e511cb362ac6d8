"""stable-diffusion.cpp itself loads and runs what unetbot makes for it (slow: full-size SD1.5,
the only sizes the library builds; skipped without the `unetbot[sdcpp]` extra: `make sdcpp`).

One full-size SD1.5 pipeline with trained-like values (VAE and CLIP included), converted once:
a full checkpoint, a full GGUF and a UNet GGUF (run beside the source's CLIP and VAE) load and
generate; a file whose CLIP prefix is changed, or that carries a tensor the library does not know,
fails with the library's own words; a quantized file's image is judged against the exact file's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.validation import sdcpp

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sdcpp.installed_version() is None,
        reason="stable-diffusion-cpp-python (the unetbot[sdcpp] extra) is not installed: "
        "make sdcpp",
    ),
]

VARIANTS = "original-full,gguf-q8_0,gguf-full-q4_0"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    from engine.run.convert import convert
    from engine.synthetic.models import write_pipeline_folder

    root = tmp_path_factory.mktemp("sdcpp-full")
    source = write_pipeline_folder(root / "src", "sd15", "full", statistics="trained")
    convert(source, root / "out", VARIANTS)
    return source, root / "out"


@pytest.fixture
def ctx(converted):
    from engine.formats.manifest import Manifest
    from engine.source.folder import open_source
    from engine.source.layout import Precision
    from engine.validation.context import Context

    source, out = converted
    revision = Manifest.load(out).source["revision"]
    context = Context(open_source(source, Precision.HALF), out, revision)
    yield context
    sdcpp.state_of(context).close()


def _path(out: Path, name: str) -> Path:
    from engine.formats.manifest import Manifest

    return out / next(a.path for a in Manifest.load(out).artifacts if a.variant == name)


def test_full_checkpoint_is_proven_by_the_library_through_validate(converted, tmp_path):
    """The validation pipeline itself: the full checkpoint passes its own checks, then loads in
    stable-diffusion.cpp, generates, and is the exact reference image."""
    import shutil

    from engine.formats.manifest import Manifest
    from engine.run.validate import validate_manifest

    source, out = converted
    only = tmp_path / "out"
    only.mkdir()
    manifest = Manifest.load(out)
    full = next(a for a in manifest.artifacts if a.variant == "original-full")
    shutil.copy(out / full.path, only / full.path)
    Manifest(manifest.source, [full]).save(only)
    (artifact,) = validate_manifest(only, source).artifacts
    assert artifact.validation is not None and artifact.passed, artifact.validation
    record = artifact.validation.metrics[sdcpp.METRICS_KEY]
    assert record["status"] == sdcpp.RAN and record["version"] == sdcpp.PINNED
    assert record["image_vs_exact"]["identical"]
    assert record["load_s"] > 0 and record["peak_rss_bytes"] > 1_500_000_000
    checks = artifact.validation.checks
    assert any(c.startswith("stable-diffusion.cpp 0.4.7: loads") for c in checks)


@pytest.mark.parametrize(
    ("name", "full", "gguf_type"), [("gguf-q8_0", False, "Q8_0"), ("gguf-full-q4_0", True, "Q4_0")]
)
def test_ggufs_load_generate_and_stay_within_their_gate(ctx, converted, name, full, gguf_type):
    _, out = converted
    gate = sdcpp.gate_for(gguf_type, exact=False)
    problems, record, wording = sdcpp.check_sdcpp(_path(out, name), name, full, gate, ctx)
    assert problems == [], problems
    assert record["status"] == sdcpp.RAN
    assert record["setup"].startswith("full checkpoint" if full else "UNet (--diffusion-model)")
    metrics = record["image_vs_exact"]
    assert not metrics["identical"]  # quantized: close, not equal
    assert gate is not None and metrics["cosine"] >= gate.min_cosine
    assert metrics["psnr_db"] >= gate.min_psnr_db
    assert wording.startswith("stable-diffusion.cpp 0.4.7: loads, no unknown tensor")
    # the comparison can fail: a gate no quantized image meets rejects the same image
    strict = sdcpp.ImageGate(min_cosine=1.0, min_psnr_db=99.0)
    problems, _, _ = sdcpp.check_sdcpp(_path(out, name), name, full, strict, ctx)
    assert any("image cosine" in p for p in problems) and any("PSNR" in p for p in problems)


def _rewritten(src: Path, dst: Path, rename=None, extra: str | None = None) -> Path:
    """`src` with tensor names rewritten (and optionally one tensor written twice, under a name
    nothing reads), through the project's own safetensors writer."""
    from engine.formats.safetensors_io import output_tensor, read_header, write_safetensors

    header = read_header(src)
    tensors = [
        output_tensor(header, t, rename(t.name) if rename else t.name) for t in header.tensors
    ]
    if extra:
        tensors.append(replace(tensors[0], name=extra))
    write_safetensors(dst, tensors, header.metadata)
    return dst


def test_a_changed_clip_prefix_fails_with_the_library_s_reason(ctx, converted, tmp_path):
    _, out = converted
    moved = _rewritten(
        _path(out, "original-full"),
        tmp_path / "moved-clip.safetensors",
        rename=lambda n: n.replace("cond_stage_model.transformer.text_model.", "clip.text_model."),
    )
    problems, _, wording = sdcpp.check_sdcpp(moved, "moved-clip", True, None, ctx)
    assert len(problems) == 1 and wording == ""
    assert problems[0].startswith("stable-diffusion.cpp could not load it: ")
    assert "get sd version from file failed" in problems[0]


def test_a_tensor_the_library_does_not_know_fails_the_file(ctx, converted, tmp_path):
    _, out = converted
    extra = _rewritten(
        _path(out, "original-full"),
        tmp_path / "extra.safetensors",
        extra="model.diffusion_model.not_a_block.weight",
    )
    problems, _, _ = sdcpp.check_sdcpp(extra, "extra", True, None, ctx)
    assert len(problems) == 1, problems
    assert "does not know 1 tensor(s)" in problems[0]
    assert "not_a_block" in problems[0]
