"""Model cards (escaping, front matter, parse) and policy decisions, without a Hub."""

from __future__ import annotations

import pytest
import yaml
from huggingface_hub import ModelCard

from bot.config import PolicyConfig, load_config
from bot.discover.policy import RepoFacts, licence_of, policy_skip
from bot.publish.cards import CardContext, md, render_pr_description, render_repo_card
from engine.errors import BadInput
from engine.formats.manifest import Artifact, Manifest
from engine.run.variants import PublishTarget
from engine.source.classify import ModelKind

EVIL = "evil/<script>alert(1)</script>`| [x](http://e) ---\nlicense: mit"


def _artifact(variant: str, path: str, **details) -> Artifact:
    return Artifact(
        variant=variant,
        format="GGUF",
        path=path,
        bytes=123_456_789,
        sha256="0" * 64,
        consumers=["ComfyUI-GGUF", "stable-diffusion.cpp"],
        details=details,
        validation={
            "status": "passed",
            "reason": "all checks passed",
            "metrics": {
                "output": {"cosine": 0.99995, "rel_l2": 0.009, "max_abs": 0.01},
                "lcm_4step": {"cosine": 0.99998, "rel_l2": 0.004, "max_abs": 0.02},
            },
            "checks": ["GGUFReader"],
        },
    )


def _ctx(repo: str = "alice/model", licence: str | None = "creativeml-openrail-m") -> CardContext:
    return CardContext(repo, "a" * 40, ModelKind.SD15_LCM, licence, {}, ["LICENSE"], "http://hub")


def test_repo_card_parses_and_carries_provenance():
    artifacts = [
        _artifact(
            "gguf-q8_0",
            "m-Q8_0.gguf",
            gguf_type="Q8_0",
            quantized=182,
            kept={"F16": 505},
            kept_reasons={"conv weight": 100},
        ),
        _artifact("gguf-full-q8_0", "m-full-Q8_0.gguf", gguf_type="Q8_0", full_checkpoint=True),
    ]
    text = render_repo_card(
        _ctx(), PublishTarget.GGUF, "bot/m-GGUF", Manifest(source={}), artifacts
    )
    card = ModelCard(text)
    assert card.data.base_model == "alice/model"
    assert card.data.base_model_relation == "quantized"
    assert card.data.license == "creativeml-openrail-m"
    assert card.data.library_name == "gguf"
    assert card.data.to_dict()["unetbot"]["source_revision"] == "a" * 40
    assert "m-full-Q8_0.gguf" in text  # the sd.cpp snippet needs the full checkpoint
    assert "convert_ldm_unet_checkpoint" in text and "engine" not in text  # diffusers alone
    assert "| 182 | 505 |" in text


def test_validation_grid_is_shown_and_uploaded_only_when_made(tmp_path):
    from bot.publish.commit import plan_repo
    from bot.publish.state import Target

    artifacts = [_artifact("gguf-q8_0", "m-Q8_0.gguf", gguf_type="Q8_0")]
    for name in ("m-Q8_0.gguf", "validation-grid.png", "LICENSE"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    target = Target(PublishTarget.GGUF, "bot/m-GGUF")
    for grid in ("", "validation-grid.png"):
        manifest = Manifest(source={}, artifacts=artifacts, grid=grid)
        text = render_repo_card(_ctx(), PublishTarget.GGUF, "bot/m-GGUF", manifest, artifacts)
        plan = plan_repo(None, _ctx(), target, tmp_path, manifest, artifacts, tmp_path)
        uploads = {u.path_in_repo for u in plan.uploads}
        assert ("![validation grid" in text) == bool(grid)
        assert ("validation-grid.png" in uploads) == bool(grid)
        if grid:
            assert "](validation-grid.png)" in text


def test_source_text_is_escaped_everywhere():
    ctx = _ctx(EVIL, licence=EVIL)
    artifacts = [_artifact("gguf-q8_0", "m-Q8_0.gguf", gguf_type="Q8_0")]
    text = render_repo_card(ctx, PublishTarget.GGUF, "bot/m-GGUF", Manifest(source={}), artifacts)
    card = ModelCard(text)
    assert card.data.base_model == EVIL  # front matter is data, dumped safely
    assert card.data.license == EVIL
    import re

    outside_code = re.sub(r"`[^`]*`", "", card.text)
    assert "<script>" not in outside_code  # inside a code span it is shown, not run
    assert "\nlicense: mit" not in card.text
    pr = render_pr_description(ctx, artifacts, has_full=False)
    assert "<script>" not in re.sub(r"`[^`]*`", "", pr)
    assert pr.count("<!--") == 1 and pr.count("-->") == 1  # the marker cannot be closed early


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "//evil", "x y"]
)
def test_licence_links_other_than_http_are_dropped(link):
    ctx = CardContext(
        "alice/m", "a" * 40, ModelKind.SD15, "other", {"license_link": link}, [], "http://hub"
    )
    artifacts = [_artifact("gguf-q8_0", "m-Q8_0.gguf", gguf_type="Q8_0")]
    text = render_repo_card(ctx, PublishTarget.GGUF, "bot/m-GGUF", Manifest({}), artifacts)
    assert link.split(":")[0] + ":" not in text.replace("https:", "").replace("http:", "")
    assert "license_link" not in ModelCard(text).data.to_dict()


def test_multi_line_licence_name_stays_one_line_and_the_card_parses():
    name = "My licence\n---\nlicense: mit\n\n---\n" + "x" * 500
    extra = {"license_name": name, "license_link": "https://example.com/l"}
    ctx = CardContext("alice/m", "a" * 40, ModelKind.SD15, "other", extra, [], "http://hub")
    artifacts = [_artifact("gguf-q8_0", "m-Q8_0.gguf", gguf_type="Q8_0")]
    card = ModelCard(
        render_repo_card(ctx, PublishTarget.GGUF, "bot/m-GGUF", Manifest({}), artifacts)
    )
    assert card.data.license == "other"
    assert card.data.license_name.startswith("My licence --- license: mit")
    assert len(card.data.license_name) <= 200
    assert card.data.license_link == "https://example.com/l"


def test_md_escapes_markdown_and_html():
    assert md("a|b <i>*x*</i>") == "a\\|b &lt;i&gt;\\*x\\*&lt;/i&gt;"


def _facts(**over) -> RepoFacts:
    base = dict(
        repo_id="alice/m",
        sha="s",
        private=False,
        gated=False,
        tags=("diffusers",),
        licence="mit",
        files={"unet/config.json": 1},
    )
    return RepoFacts(**{**base, **over})


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"private": True}, "private"),
        ({"gated": True}, "gated"),
        ({"tags": ("unetbot-opt-out",)}, "opted out (tag"),
        ({"files": {".unetbot-opt-out": 0}}, "opted out (file"),
        ({"licence": None}, "no licence"),
        ({"licence": "cc-by-nc-nd-4.0"}, "deny list"),
        ({"licence": "proprietary"}, "not on the allow list"),
        ({"tags": ("unetbot",)}, "unetbot itself"),
    ],
)
def test_policy_skips_with_reason(over, reason):
    assert reason in policy_skip(_facts(**over), PolicyConfig(), "bot")


def test_policy_allows_permissive_public_repo():
    assert policy_skip(_facts(), PolicyConfig(), "bot") is None


def test_licence_from_card_or_tag():
    assert licence_of({"license": "MIT"}, []) == "mit"
    assert licence_of({}, ["license:apache-2.0"]) == "apache-2.0"


@pytest.mark.parametrize(
    "bad",
    [{"scan": {"max_calls": "500"}}, {"publish": {"grid": 1}}, {"policy": {"skip_gated": "no"}}],
)
def test_config_rejects_wrong_types(tmp_path, bad):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(bad))
    key = next(iter(next(iter(bad.values()))))
    with pytest.raises(BadInput, match=f"{key}: expected"):
        load_config(path)


def test_config_rejects_typos(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"policy": {"licence_alow": ["mit"]}}))
    with pytest.raises(BadInput, match="licence_alow"):
        load_config(path)
    path.write_text(yaml.safe_dump({"publish": {"namespace": "org", "mode": "pr"}}))
    assert load_config(path).publish.namespace == "org"
