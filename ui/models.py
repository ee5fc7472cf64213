"""The Model field -> a loaded adapter (through ``dlm_core.models.registry``), and the note about it.

Environment: ``DIFFUSION_CANVAS_MODEL`` names the default model (e.g. ``tiny-random`` for tests).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

from dlm_core.models import registry

from .errors import user_error

MODEL_ENV = "DIFFUSION_CANVAS_MODEL"
FALLBACK_MODEL = "tiny-random"


def default_model_key() -> str:
    return os.environ.get(MODEL_ENV, "").strip() or registry.DEFAULT_MODEL


HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def checked_model_name(name: Any) -> str:
    """The Model field as a registry name (empty = the default). ``mlm:`` takes a Hugging Face Hub repo
    id only: a local folder (``mlm:../..``, ``mlm:/etc``) is refused, so no user-typed path is ever read
    (the default model set by the server's environment may still be a local path)."""
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise user_error("model", f"must be a model name (text), got {type(name).__name__}")
    name = name.strip() or default_model_key()
    if name == default_model_key() or name in registry.REGISTRY:
        return name
    if len(name) > 200:
        raise user_error("model", f"a model name has at most 200 characters, got {len(name)}")
    if name.lower().startswith(registry.MLM_PREFIX):
        repo = name[len(registry.MLM_PREFIX) :].strip()
        if not HUB_REPO_ID.fullmatch(repo) or ".." in repo or Path(repo).expanduser().exists():
            raise user_error(
                "model",
                "mlm: takes a Hugging Face Hub repo id (owner/name, e.g. answerdotai/ModernBERT-base); "
                "local paths are not accepted from the web",
            )
    return name


def get_model(name: str | None, dtype: Any = None) -> tuple[Any, str]:
    """(adapter, note), in ``dtype`` (None: the registry's default). A built-in model that is not trained
    yet falls back to the untrained test model, with a note saying so; every other failure raises
    (shown as a message on the Model field)."""
    name = checked_model_name(name)
    try:
        return registry.load_model(name, dtype=dtype), ""
    except registry.ModelUnavailableError:
        spec = registry.get_spec(name)
        if not spec.builtin:
            raise
        note = (
            f"{spec.display_name} is not trained yet, so this is the untrained test model: "
            "its text is random characters, but every step and colour works the same way."
        )
        return registry.load_model(FALLBACK_MODEL, dtype=dtype), note


def model_note_html(model: Any, note: str) -> str:
    parts = [f'<div class="dc-model">Model: <b>{html.escape(model.name)}</b> · {html.escape(model.kind)}</div>']
    untrained = "untrained" in model.name.lower()
    if note or untrained:
        text = (
            note
            or "This is the untrained test model: its text is random characters, but every step works the same way."
        )
        parts.append(f'<div class="dc-warn">⚠ {html.escape(text)}</div>')
    return "".join(parts)


def model_choices() -> list[tuple[str, str]]:
    choices = []
    for spec in registry.list_models():
        label = spec.display_name
        if spec.download_gb:
            label += f" · {spec.download_gb:g} GB download"
        choices.append((label, spec.key))
    return choices
