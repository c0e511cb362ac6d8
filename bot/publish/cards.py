"""Model cards and PR descriptions from the jinja2 templates in `model_cards/`.

Front matter is built as data and dumped with `yaml.safe_dump` (never templated), so no source
text can break or inject YAML. Every source-derived string in the body goes through a filter:
`code` (inline code span), `md` (Markdown/HTML escaped), `pystr`/`shell` (quoted for snippets),
`url` and `comment`. Cards are checked to parse with `huggingface_hub.ModelCard`.
"""

from __future__ import annotations

import html
import re
import shlex
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import jinja2
import yaml

from bot.publish.comfy_card import comfy_rows
from bot.publish.pick_card import what_to_pick
from engine import __version__
from engine.cost.table import ReferenceRun, reference_run
from engine.errors import BadInput
from engine.formats.manifest import Artifact, Manifest
from engine.run.variants import VARIANTS, Family, PublishTarget
from engine.source.classify import ModelKind
from engine.source.keymap import LCM_COND_PROJ_ORIGINAL
from engine.validation import sdcpp
from engine.writers.gguf_layout import GGUFLayout

# Characters that start Markdown syntax mid-line (`<`, `>`, `&` are HTML-escaped instead);
# values are collapsed to one line, so line-start markers (-, +, 1.) cannot take effect.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def md(value: object) -> str:
    """Escape Markdown and HTML so source text renders as plain text."""
    text = " ".join(str(value).split())
    text = html.escape(text, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def code(value: object) -> str:
    """An inline code span: its content is shown literally (HTML too); `|` is escaped so a
    value cannot split a table row, and backticks cannot close the span."""
    text = " ".join(str(value).split()).replace("`", "'").replace("|", "\\|")
    return f"`{text}`"


def pystr(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def comment(value: object) -> str:
    return str(value).replace("--", "- -").replace(">", "&gt;")


def url(value: object) -> str:
    return quote(str(value), safe=":/#?=&%@+")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("model_cards", "."),  # package data: works from a wheel
        autoescape=False,  # Markdown, not HTML: escaping is explicit per value (filters above)
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(md=md, code=code, pystr=pystr, shell=shlex.quote, comment=comment, url=url)
    return env


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def _fmt(x: object, digits: int = 6) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else "-"


def validation_rows(artifacts: list[Artifact]) -> list[dict]:
    rows = []
    for a in artifacts:
        v = a.validation
        m = v.metrics if v else {}
        out = m.get("output", {})
        rows.append(
            {
                "variant": a.variant,
                "status": v.status if v else "not validated",
                "cosine": _fmt(out.get("cosine")),
                "rel_l2": _fmt(out.get("rel_l2"), 5),
                "max_abs": _fmt(out.get("max_abs"), 4),
                "lcm": _fmt(m.get("lcm_4step", {}).get("cosine")),
                "checks": "; ".join(v.checks if v else []),
                "sdcpp": sdcpp_cell(a),
            }
        )
    return rows


def sdcpp_cell(a: Artifact) -> str:
    """What stable-diffusion.cpp itself said about a file it reads ("-" for files it does not
    read): loaded and how close its image is, or "stable-diffusion.cpp not run" and why."""
    if not sdcpp.applies(VARIANTS[a.variant].consumers):
        return "-"
    v = a.validation
    record = v.metrics.get(sdcpp.METRICS_KEY) if v else None
    if record is None:
        return sdcpp.NOT_RUN
    return sdcpp.summary(record)


@dataclass(frozen=True)
class CardContext:
    """What every card needs to know about the source."""

    source_repo: str
    source_revision: str
    kind: ModelKind
    licence: str | None
    licence_extra: dict  # license_name / license_link from the source card, when `other`
    licence_files: list[str]
    endpoint: str
    # How the source was opened when that is worth saying (pickle weights: what scanned them,
    # what the Hub reported, how they were loaded; bot/job/pickles.py), else "".
    source_note: str = ""

    @property
    def is_lcm(self) -> bool:
        return self.kind is ModelKind.SD15_LCM


_SUMMARIES = {
    PublishTarget.GGUF: "GGUF files of an SD1.5-family UNet.",
    PublishTarget.TORCHAO: "TorchAO int8 weight-only UNet for diffusers.",
    PublishTarget.QUANTO: "Quanto (int8, float8) UNets for diffusers.",
}


def _family(a: Artifact) -> Family:
    return VARIANTS[a.variant].family


def _is_full(a: Artifact) -> bool:
    return VARIANTS[a.variant].full_checkpoint


def front_matter(
    ctx: CardContext,
    target: PublishTarget,
    manifest: Manifest,
    variants: list[str],
    left_out: dict[str, str] | None = None,
    over_budget: dict[str, str] | None = None,
) -> dict:
    tags = ["unetbot", "stable-diffusion", "text-to-image", ctx.kind.value, target.key]
    if ctx.is_lcm:
        tags.append("lcm")
    meta: dict = {
        "base_model": ctx.source_repo,
        "base_model_relation": "quantized",
        "license": ctx.licence or "other",
        "library_name": target.library,
        "pipeline_tag": "text-to-image",
        "tags": tags,
        "unetbot": {
            "source_repo": ctx.source_repo,
            "source_revision": ctx.source_revision,
            "version": __version__,
            "variants": variants,
        },
    }
    if left_out:
        # Variants that failed validation for this revision and converter version; the bot
        # retries them when either changes (bot/publish/state.py).
        meta["unetbot"]["left_out"] = {k: one_line(v) for k, v in left_out.items()}
    if over_budget:
        # Variants of this source not made for the bot's namespace: the byte budget
        # (bot/choice.py). Not retried: the budget decides the same way next time.
        meta["unetbot"]["over_budget"] = sorted(over_budget)
    name = one_line(ctx.licence_extra.get("license_name", ""))
    link = safe_link(ctx.licence_extra.get("license_link", ""), ctx.licence_files)
    if name:
        meta["license_name"] = name
    if link:
        meta["license_link"] = link
    if ctx.licence_files and not link and (ctx.licence or "other") == "other":
        meta["license_name"] = name or "inherited"
        meta["license_link"] = "LICENSE" if "LICENSE" in ctx.licence_files else ctx.licence_files[0]
    return meta


MAX_META_TEXT = 200  # characters of a source-derived string carried into a card's metadata


def one_line(value: object) -> str:
    """Source text for card metadata: one line (the Hub's front-matter fence rule and YAML
    cannot be broken by it), no control characters, bounded length."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(value or "")).split())
    return text[:MAX_META_TEXT]


def safe_link(value: object, licence_files: list[str]) -> str:
    """A licence link from the source card, kept only when it is an http(s) URL or the name of
    a licence file copied into the repo; anything else (`javascript:`, `data:`...) is dropped."""
    text = one_line(value)
    if text in licence_files:
        return text
    parsed = urlsplit(text)
    if parsed.scheme in ("http", "https") and parsed.netloc and " " not in text:
        return text
    return ""


def _gguf_tables(artifacts: list[Artifact]) -> list[dict]:
    rows = []
    for a in artifacts:
        d = a.details
        reasons = d.get("kept_reasons", {})
        rows.append(
            {
                "path": a.path,
                "quantized": d.get("quantized", 0),
                "f16": d.get("kept", {}).get("F16", 0),
                "f32": d.get("kept", {}).get("F32", 0),
                "reasons": "; ".join(f"{k}: {v}" for k, v in reasons.items()),
            }
        )
    return rows


def render_repo_card(
    ctx: CardContext,
    target: PublishTarget,
    repo_id: str,
    manifest: Manifest,
    artifacts: list[Artifact],
    left_out: dict[str, str] | None = None,
    reference: ReferenceRun | None = None,
    over_budget: dict[str, str] | None = None,
) -> str:
    """README.md for a published repo (GGUF, TorchAO or Quanto); `left_out` names the
    variants that failed validation (variant -> reason), `over_budget` those the byte budget
    left out (of every repo target of the source), both said in the card. `reference`: the
    cost figures for "What to pick" (default: the shipped ones for this converter version)."""
    from engine.validation.probe import (
        TIMESTEPS,  # engine.validation.probe imports torch: only when a card is made
    )

    lcm = ctx.is_lcm
    ggufs = [a for a in artifacts if _family(a) is Family.GGUF]
    # The snippets and the every-consumer tables read only files every consumer loads.
    comfy_only = [a for a in ggufs if VARIANTS[a.variant].gguf_layout is GGUFLayout.COMFYUI_GGUF]
    unet_gguf = [a for a in ggufs if not _is_full(a) and a not in comfy_only]
    full_gguf = [a for a in ggufs if _is_full(a)]
    # The example loads the most accurate quantized UNet GGUF (Q8_0 when there).
    preferred = next((a for a in unet_gguf if VARIANTS[a.variant].gguf_type == "Q8_0"), None)
    # None when diffusers reads no GGUF here (only ComfyUI-GGUF-only files): no diffusers snippet
    example = preferred or (unet_gguf[0] if unet_gguf else None)
    body = (
        _env()
        .get_template("repo_card.md.j2")
        .render(
            title=f"{ctx.source_repo.split('/')[-1]} {target.title}",
            summary=_SUMMARIES[target],
            gguf=target is PublishTarget.GGUF,
            cond_proj_key=LCM_COND_PROJ_ORIGINAL,
            repo_id=repo_id,
            source_repo=ctx.source_repo,
            source_revision=ctx.source_revision,
            source_note=ctx.source_note,
            version=__version__,
            lcm=lcm,
            artifacts=[
                {
                    "path": a.path,
                    "variant": a.variant,
                    "size": human_size(a.bytes),
                    "consumers": ", ".join(a.consumers),
                    "folder": a.details.get("folder", ""),
                    "load_dtype": a.details.get("load_dtype", "float16"),
                }
                for a in artifacts
            ],
            load_dtype=artifacts[0].details.get("load_dtype", "float16")
            if artifacts
            else "float16",
            unet_example=example.path if example else "",
            full_example=full_gguf[0].path if full_gguf else "",
            gguf_tables=_gguf_tables(unet_gguf + full_gguf + comfy_only),
            comfy=comfy_rows(artifacts, manifest.source, human_size),
            validation=validation_rows(artifacts),
            grid=manifest.grid,
            timesteps=", ".join(str(t) for t in TIMESTEPS),
            licence=ctx.licence or "other",
            licence_link=safe_link(ctx.licence_extra.get("license_link", ""), ctx.licence_files),
            licence_files=ctx.licence_files,
            left_out=left_out or {},
            over_budget=over_budget or {},
            pick=what_to_pick(
                artifacts, manifest.source.get("unet_config"), reference or reference_run()
            ),
        )
    )
    variants = [a.variant for a in artifacts]
    meta = front_matter(ctx, target, manifest, variants, left_out, over_budget)
    card = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body
    check_card(card, meta)
    return card


def check_card(card: str, meta: dict) -> None:
    """The card must parse back, by the Hub's own front-matter rule (huggingface_hub's
    `ModelCard`, whose fence regex mirrors the Hub's), to exactly the metadata written;
    otherwise publishing would fail after `create_repo` (or publish other metadata)."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(card)
    parsed = ModelCard(card).data.to_dict() if match else None
    if parsed != meta:
        raise BadInput(
            f"the model card for {meta.get('base_model')!r} does not parse back to its "
            "metadata (source card metadata the Hub cannot carry); nothing published"
        )


def render_pr_description(
    ctx: CardContext,
    artifacts: list[Artifact],
    has_full: bool,
    left_out: dict[str, str] | None = None,
) -> str:
    return (
        _env()
        .get_template("pr_description.md.j2")
        .render(
            source_repo=ctx.source_repo,
            source_revision=ctx.source_revision,
            source_note=ctx.source_note,
            version=__version__,
            lcm=ctx.is_lcm,
            has_full=has_full,
            left_out=left_out or {},
            unet_file=min(artifacts, key=_is_full).path if artifacts else "",
            cond_proj_key=LCM_COND_PROJ_ORIGINAL,
            artifacts=[
                {
                    "path": a.path,
                    "variant": a.variant,
                    "size": human_size(a.bytes),
                    "status": a.validation.status if a.validation else "not validated",
                    "sdcpp": sdcpp_cell(a),
                }
                for a in artifacts
            ],
        )
    )


def pr_marker(source_repo: str, source_revision: str) -> str:
    """The line a PR description carries so the bot can find its own PR for a revision."""
    return f"<!-- unetbot-source: {comment(source_repo)}@{comment(source_revision)} -->"
