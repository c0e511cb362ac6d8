"""What the Hub derives from a commit: tags, `library_name` and `pipeline_tag`.

`list_models(filter=...)`, `pipeline_tag=` and the info documents of `model_info` read these, so
discovery by the bot works here as on the real Hub. The rule, and where each part comes from:

1. Library (hub-docs `docs/hub/model-cards.md`, "Specifying a library", in priority order):
   the card's `library_name`; else a card tag naming a known library; else detection from
   files: `*.nemo` -> nemo, `saved_model.pb` -> keras, and "if nothing is detected and there is
   a `config.json` file, it's assumed the library is `transformers`". Diffusers repos are
   detected before that last step: a root `model_index.json` (a pipeline saved by diffusers'
   `save_pretrained`), or a root `config.json` carrying `_diffusers_version` (a bare model such
   as a UNet, saved by diffusers' `ConfigMixin.save_config`), is a `diffusers` repo.
2. `diffusers:<PipelineClass>`: the `_class_name` of a root `model_index.json`, the class
   diffusers' `DiffusionPipeline.from_pretrained` instantiates (huggingface.js
   `packages/tasks/src/model-data.ts` exposes it as `config.diffusers._class_name`; the diffusers
   docs filter with `tags="diffusers:StableDiffusionPipeline"`), e.g.
   `diffusers:LatentConsistencyModelPipeline` for an LCM pipeline.
3. Pipeline tag: the card's `pipeline_tag`; else, for a diffusers pipeline, the task of its class
   in diffusers' own AutoPipeline mappings (`diffusers_tasks.py`; `text-to-image` for
   StableDiffusionPipeline and LatentConsistencyModelPipeline). huggingface.js
   `library-to-tasks.ts` lists diffusers' tasks as image-to-image and text-to-image. A bare
   model (no pipeline) has no pipeline tag.
4. Tags, in the order the Hub lists them: the library, weight formats present anywhere in the
   repo (`safetensors`, `gguf`, `onnx`), the card's `tags`, the pipeline tag, `language`,
   `dataset:<id>`, `base_model:<id>`, `license:<id>` from the card, `diffusers:<Class>`, and
   `region:us` (where the Hub stores the repo).

JSON files are read only at the repo root, only up to `MAX_CONFIG_BYTES`, and a missing, large,
LFS-stored or malformed file just contributes nothing: a bad `model_index.json` never fails a
commit, as on the Hub (which serves such repos, untagged).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from bot.hub.diffusers_tasks import TASK_OF_PIPELINE

RULE_VERSION = 2  # stored with each repo summary; a change re-derives summaries at startup
MAX_CONFIG_BYTES = 64 * 1024
REGION = "region:us"
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Libraries a card tag can name (a subset of huggingface.js MODEL_LIBRARIES_UI_ELEMENTS keys,
# packages/tasks/src/model-libraries.ts, those with `filter: true`).
KNOWN_LIBRARIES = frozenset(
    {
        "adapter-transformers",
        "allennlp",
        "asteroid",
        "bertopic",
        "diffusers",
        "espnet",
        "fairseq",
        "fastai",
        "fasttext",
        "flair",
        "keras",
        "ml-agents",
        "nemo",
        "open_clip",
        "paddlenlp",
        "peft",
        "sentence-transformers",
        "setfit",
        "sklearn",
        "spacy",
        "speechbrain",
        "stable-baselines3",
        "timm",
        "transformers",
    }
)
_FORMATS = ((".safetensors", "safetensors"), (".gguf", "gguf"), (".onnx", "onnx"))

ReadJson = Callable[[str], Any]  # root file name -> parsed JSON, or None when unusable


@dataclass(frozen=True)
class RepoFacts:
    """What the Hub derives from one commit (see the module docstring)."""

    tags: list[str] = field(default_factory=list)
    library_name: str | None = None
    pipeline_tag: str | None = None
    diffusers_class: str | None = None


def parse_small_json(data: bytes) -> Any:
    """Parsed JSON of a small config file, or None when it is not valid UTF-8 JSON."""
    if len(data) > MAX_CONFIG_BYTES:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and not isinstance(v, (dict, list))]
    if isinstance(value, dict):
        return []
    return [str(value)]


def _card_str(card: dict[str, Any], key: str) -> str | None:
    value = card.get(key)
    return value.strip() or None if isinstance(value, str) else None


def pipeline_class(files: Collection[str], read_json: ReadJson) -> str | None:
    """`_class_name` of the root model_index.json, when it is a plausible class name."""
    if "model_index.json" not in files:
        return None
    index = read_json("model_index.json")
    name = index.get("_class_name") if isinstance(index, dict) else None
    return name if isinstance(name, str) and _CLASS_NAME.match(name) else None


def _library_from_files(files: Collection[str], read_json: ReadJson) -> str | None:
    if "model_index.json" in files:
        return "diffusers"
    if any(name.endswith(".nemo") for name in files):
        return "nemo"
    if any(name.rsplit("/", 1)[-1] == "saved_model.pb" for name in files):
        return "keras"
    if "config.json" in files:
        config = read_json("config.json")
        if isinstance(config, dict) and "_diffusers_version" in config:
            return "diffusers"
        return "transformers"
    return None


def library_of(card: dict[str, Any], files: Collection[str], read_json: ReadJson) -> str | None:
    named = _card_str(card, "library_name")
    if named:
        return named
    for tag in _as_list(card.get("tags")):
        if tag in KNOWN_LIBRARIES:
            return tag
    return _library_from_files(files, read_json)


def derive(card: dict[str, Any] | None, files: Collection[str], read_json: ReadJson) -> RepoFacts:
    """Apply the rule of the module docstring to one commit's card and file list."""
    card = card or {}
    library = library_of(card, files, read_json)
    klass = pipeline_class(files, read_json)
    pipeline = _card_str(card, "pipeline_tag")
    if pipeline is None and library == "diffusers" and klass is not None:
        pipeline = TASK_OF_PIPELINE.get(klass)
    tags: list[str] = []

    def add(tag: str) -> None:
        if tag and tag not in tags:
            tags.append(tag)

    if library:
        add(library)
    for suffix, tag in _FORMATS:
        if any(name.endswith(suffix) for name in files):
            add(tag)
    for tag in _as_list(card.get("tags")):
        add(tag)
    if pipeline:
        add(pipeline)
    for lang in _as_list(card.get("language")):
        add(lang)
    for ds in _as_list(card.get("datasets")):
        add(f"dataset:{ds}")
    for base in _as_list(card.get("base_model")):
        add(f"base_model:{base}")
    for lic in _as_list(card.get("license")):
        add(f"license:{lic}")
    if klass:
        add(f"diffusers:{klass}")
    add(REGION)
    return RepoFacts(tags, library, pipeline, klass)
