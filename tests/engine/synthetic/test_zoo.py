"""Every zoo repo (engine.synthetic.zoo: real-library layouts) through the engine, with its expected
outcome: layout, classification, weight selection, conversion or refusal."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bot.client.repo_files import needed_files
from engine.errors import ExitCode, UnetbotError
from engine.formats.safetensors_io import read_header, read_tensor_bytes
from engine.run.convert import convert
from engine.source.checkpoint_match import header_table, match_original_checkpoint
from engine.source.folder import open_source
from engine.source.layout import Precision, list_local_files
from engine.source.repo_kind import classify_repo
from engine.synthetic.zoo import ZOO, ZooRepo, build_zoo
from engine.writers.original import original_names, write_original

HALF, MAIN = Precision.HALF, Precision.MAIN
# Pickle-only repos convert through engine.source.pickle_source (tests/engine/source/
# test_pickle_path.py); the engine's plain opening refuses them, as test_refused_repo checks.
PICKLED = {"pickle-only", "pickle-pipeline", "pickle-sharded"}
REFUSED = {"lcm-lora", "peft-adapter", "controlnet", "vae-only", "sdxl"}
CONVERTIBLE = [n for n in ZOO if n not in REFUSED | PICKLED]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, ZooRepo]:
    return build_zoo(tmp_path_factory.mktemp("zoo"), seed=3)


def _small_json(folder: Path, name: str):
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_every_builder_is_listed_with_a_decision(zoo):
    assert set(zoo) == set(ZOO)
    assert {r.expected.decision for r in zoo.values()} == {"convert", "refuse"}
    assert set(CONVERTIBLE) | PICKLED == {
        n for n, r in zoo.items() if r.expected.decision == "convert"
    }
    assert {n for n, r in zoo.items() if r.expected.pickle} == PICKLED


@pytest.mark.parametrize("name", list(ZOO))
def test_layout(zoo, name):
    repo = zoo[name]
    files = list_local_files(repo.folder)
    layout = classify_repo(
        files, _small_json(repo.folder, "model_index.json"), _small_json(repo.folder, "config.json")
    )
    assert layout.kind is repo.expected.layout
    expected_roots = (repo.expected.root_checkpoint,) if repo.expected.root_checkpoint else ()
    assert layout.root_checkpoints == expected_roots


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_convertible_repo(zoo, name, tmp_path):
    repo, exp = zoo[name], zoo[name].expected
    main, half = open_source(repo.folder, MAIN), open_source(repo.folder, HALF)
    assert main.classification.kind == exp.kind
    assert exp.reason in main.classification.reason
    assert (main.unet.variant, half.unet.variant) == (exp.main_variant, exp.half_variant)
    assert main.fp16_twin_available == exp.fp16_twin
    assert main.has_full_pipeline == exp.full
    variants = "original,original-full" if exp.full else "original"
    manifest = convert(repo.folder, tmp_path / "out", variants, precision=HALF)
    assert [a.variant for a in manifest.artifacts] == variants.split(",")
    assert manifest.source["precision"] == "half"
    assert manifest.source["files"]["unet"] == [
        p.relative_to(repo.folder).as_posix() for p in half.unet.files
    ]
    for artifact in manifest.artifacts:
        assert (tmp_path / "out" / artifact.path).is_file()


@pytest.mark.parametrize("name", [n for n in ZOO if n not in CONVERTIBLE])
def test_refused_repo(zoo, name, tmp_path):
    repo, exp = zoo[name], zoo[name].expected
    before = _snapshot(repo.folder)
    out = tmp_path / "out"
    with pytest.raises(UnetbotError) as info:
        convert(repo.folder, out, "original")
    if exp.pickle:  # the plain opening never unpickles
        exp = replace(exp, exit_code=ExitCode.BAD_INPUT, reason="only pickle weights")
    assert info.value.exit_code == exp.exit_code != ExitCode.OK
    assert exp.reason in str(info.value)
    assert str(repo.folder) in str(info.value)
    assert not out.exists()
    assert _snapshot(repo.folder) == before


def _unet_config(repo: ZooRepo) -> dict:
    return json.loads((open_source(repo.folder).unet.folder / "config.json").read_text())


@pytest.mark.parametrize("name", ["sd15-legacy", "lcm-root-checkpoint"])
def test_root_checkpoint_of_the_repos_own_unet(zoo, name):
    """Recognised from its header alone: the PR target is skipped with that reason."""
    repo, exp = zoo[name], zoo[name].expected
    table = header_table(read_header(repo.folder / exp.root_checkpoint))
    match = match_original_checkpoint(table, _unet_config(repo), exp.root_checkpoint)
    assert match.contents == "full", match.reason
    assert exp.root_checkpoint in match.reason and not exp.pr_target


def test_root_checkpoint_of_another_unet_is_not_a_match(zoo):
    lcm = zoo["lcm-root-checkpoint"]
    table = header_table(read_header(lcm.folder / lcm.expected.root_checkpoint))
    match = match_original_checkpoint(table, _unet_config(zoo["sd15-current"]))
    assert not match.matches and "cond_proj" in match.reason
    assert zoo["sd15-current"].expected.pr_target


@pytest.mark.parametrize("name", CONVERTIBLE)
@pytest.mark.parametrize("precisions", [(HALF,), (MAIN, HALF)], ids=["half", "main+half"])
def test_bot_downloads_exactly_what_the_engine_reads(zoo, name, precisions, tmp_path):
    """Copy only `needed_files` (what the bot downloads) and open that copy: the engine reads
    the same files as from the whole repo, for every precision the download covered."""
    repo = zoo[name]
    files = list_local_files(repo.folder)
    unet_folder = "" if repo.expected.layout == "bare-unet" else "unet"
    wanted = needed_files(files, full=True, precisions=precisions, unet_folder=unet_folder)
    assert not any(p.endswith(".bin") or "non_ema" in p for p in wanted)
    for path in wanted:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo.folder / path, tmp_path / path)
    for precision in precisions:
        whole, copy = open_source(repo.folder, precision), open_source(tmp_path, precision)
        for component in ("unet", "vae", "text_encoder"):
            a, b = getattr(whole, component), getattr(copy, component)
            assert (a is None) == (b is None)
            if a is not None:
                rel_a = [p.relative_to(repo.folder) for p in a.files]
                assert rel_a == [p.relative_to(tmp_path) for p in b.files]
    assert set(wanted) <= set(files)


def _clip_section(path: Path) -> dict[str, bytes]:
    header = read_header(path)
    return {
        t.name: read_tensor_bytes(header, t)
        for t in header.tensors
        if t.name.startswith("cond_stage_model.")
    }


@pytest.mark.parametrize("name", [n for n in CONVERTIBLE if n != "bare-unet"])
def test_full_checkpoint_clip_equals_the_text_encoder(zoo, name, tmp_path):
    source = open_source(zoo[name].folder)
    full = write_original(source, tmp_path / "full.safetensors", full=True)
    in_file = _clip_section(full)
    names = original_names(source.text_encoder)
    expected = {
        names[spec.name]: read_tensor_bytes(h, spec) for h, spec in source.text_encoder.tensors()
    }
    assert in_file == expected
    assert all(
        n.startswith("cond_stage_model.transformer.text_model.")
        or n.endswith("text_projection.weight")
        for n in in_file
    )
    if name == "clip-projection":
        assert "cond_stage_model.transformer.text_projection.weight" in in_file


def test_transformers_4_and_5_text_encoders_give_identical_full_checkpoints(zoo, tmp_path):
    """The same weights saved by transformers 5 and rewritten in the transformers 4 layout
    (text_model. prefix, position_ids buffer) give byte-identical CLIP sections."""
    from engine.synthetic.zoo_parts import as_transformers4

    current = zoo["sd15-current"].folder
    old = tmp_path / "tf4"
    shutil.copytree(current, old)
    as_transformers4(old / "text_encoder")
    a = write_original(open_source(current), tmp_path / "a.safetensors", full=True)
    b = write_original(open_source(old), tmp_path / "b.safetensors", full=True)
    assert _clip_section(a) == _clip_section(b)
    assert len(_clip_section(a)) == 2 + 2 * 16 + 2
    assert a.read_bytes() == b.read_bytes()
