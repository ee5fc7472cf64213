"""``ModelSpec``: one model the app can show, and the conventions it follows. Plain data, no torch.

The registry (``models.registry``) lists specs and loads them; the hub loader (``models.hub``)
reads them. Both import this module, so neither needs the other for the type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["canvas", "llada", "dream", "mlm", "ar-diffusion", "diffusion-gemma", "llada2"]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    ``repo_id`` is a hub repository id, or a folder for built-in models. ``revision`` pins the hub
    snapshot (a commit hash for remote-code entries). ``params_b`` (billions) and ``download_gb`` are
    approximate and drive the memory refusal and the offline message. ``mask_id``/``eos_ids`` are the
    model's conventions (for masked LMs the tokenizer's own ids are used and ``mask_id`` is checked
    against them). ``shift``: the raw logits at i-1 predict token i (Dream). ``chat_template``: wrap
    prompts with the tokenizer's chat template (``fallback_chat_template`` if it has none).
    ``wrap_special_tokens``: masked LMs only, feed ``[CLS] canvas [SEP]`` (see ``MaskedLMAdapter``).
    ``ar_twin``: the registry key of the autoregressive model this diffusion model races against
    (same data, tokenizer and size; None = it has no twin, so the Race tab cannot race it).
    ``writes_code``: the model writes source code, so the display keeps whitespace exact and visible
    (a monospace canvas) and the app offers its code examples.
    ``engine``: for a model that runs its own sampler, which implementation runs it (DiffusionGemma:
    ``"transformers"``, its own ``generate()``, the default; or ``"diffusers"``, the
    ``DiffusionGemmaPipeline``); None for every other family.
    """

    key: str
    display_name: str
    repo_id: str
    family: Family
    description: str
    revision: str | None = None
    trust_remote_code: bool = False
    params_b: float | None = None
    download_gb: float | None = None
    mask_id: int | None = None
    eos_ids: tuple[int, ...] = ()
    shift: bool = False
    chat_template: bool = False
    max_length: int | None = None
    wrap_special_tokens: bool = False
    fallback_chat_template: str | None = None
    ar_twin: str | None = None
    writes_code: bool = False
    engine: str | None = None

    @property
    def builtin(self) -> bool:
        return self.family == "canvas"
