"""The model registry: every model the app can show, how to fetch it, and the conventions it follows.

``load_model(name)`` accepts a registry key (``canvas-diffusion``, ``llada-8b-instruct``, ...), the hub
repository id of a registry entry (``GSAI-ML/LLaDA-8B-Instruct``), or ``mlm:<repo id or local path>``
for any BERT / RoBERTa / ModernBERT masked LM, sampled as a (weak) diffusion model. Loaded models are
kept in a small thread-safe LRU cache so the app does not reload them per request.

Pinned revisions (remote-code entries run the repository's own Python, so they are pinned to a commit;
see ``hub.TRUSTED_REMOTE_CODE``). No network is available where this was written, so the hashes come
from public code that pins or caches these exact snapshots:

* GSAI-ML/LLaDA-8B-Instruct @ 08b83a6feb34df1a6011b80c3c00c7563e963b07: the snapshot in many public
  projects' HF caches and pins (incl. a ``.../resolve/08b83a6f.../tokenizer.json`` URL).
* GSAI-ML/LLaDA-1.5 @ 43716255dd5ce01192bcfc073a2557e969a2f271: one public HF-cache snapshot path.
* Dream-org/Dream-v0-Instruct-7B @ 05334cb9faaf763692dcf9d8737c642be2b2a6ae: pinned in several public
  projects' code and HF-cache snapshot paths.
* dllm-hub/ModernBERT-large-chat-v0.1 loads with the stock ModernBertForMaskedLM class (no remote code),
  so it tracks the named revision ``main``; no commit hash could be looked up offline.

* google/diffusiongemma-26B-A4B-it loads with the stock ``DiffusionGemmaForBlockDiffusion`` class of
  transformers 5.24 (no remote code), so like ModernBERT-chat it tracks ``main``; its commit could not
  be looked up offline. It runs its own sampler (``models.external``), recorded by ``models.bridge``.
* inclusionAI/LLaDA2.1-mini needs remote code (its MoE modeling file). It is listed, but loading is
  refused until its commit hash is verified and added to ``hub.TRUSTED_REMOTE_CODE``
  (``hub.REMOTE_CODE_PIN_PENDING`` says so in the error).

Why dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1 (and its BD3LM sibling) is not listed: its config.json has
``model_type: "a2d-qwen3"`` with an ``auto_map`` to the repository's ``modeling_qwen3.py`` (Qwen3 with
the causal mask replaced by a bidirectional one). Stock transformers has no class for it, and loading
it as a plain Qwen3 would silently run causal attention, so it needs remote code (or the ``dllm``
package) and stays out under the allow-list policy.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import torch

from . import hub
from .base import ModelAdapter
from .builtin import ASSETS_DIR, load_canvas, tiny_random_model
from .hub import (
    ModelRefusedError,
    ModelTooLargeError,
    ModelUnavailableError,
    ProgressFn,
    resolve_device,
    resolve_dtype,
)
from .spec import ModelSpec

DEFAULT_MODEL = "canvas-diffusion"
MLM_PREFIX = "mlm:"
CACHE_SIZE = 2

# dLLM's BERT-Chat template (dllm/utils/models.py get_tokenizer): used only if the checkpoint's
# tokenizer does not carry a chat template itself. Written out here, not copied.
BERT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}[SYS]\n{{ message['content'] | trim }}\n[/SYS]\n\n"
    "{% elif message['role'] == 'user' %}[Question]\n{{ message['content'] | trim }}\n[/Question]\n\n"
    "{% elif message['role'] == 'assistant' %}[Answer]\n{{ message['content'] | trim }}\n[/Answer]\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}[Answer]\n{% endif %}"
)


class ModelNotFoundError(ValueError):
    """An unknown model name; the message lists the valid names."""


LLADA_8B_INSTRUCT = ModelSpec(
    key="llada-8b-instruct",
    display_name="LLaDA 8B Instruct",
    repo_id="GSAI-ML/LLaDA-8B-Instruct",
    family="llada",
    revision=hub.TRUSTED_REMOTE_CODE["GSAI-ML/LLaDA-8B-Instruct"],
    trust_remote_code=True,
    params_b=8.02,
    download_gb=16.0,
    mask_id=126336,
    eos_ids=(126081, 126348),
    chat_template=True,
    max_length=4096,
    description="The 8B masked diffusion LLM trained from scratch (Nie et al., 2025), instruction-tuned.",
)
# The same architecture, tokenizer and special tokens; only the weights (and their pinned snapshot) differ.
LLADA_1_5 = replace(
    LLADA_8B_INSTRUCT,
    key="llada-1.5",
    display_name="LLaDA 1.5",
    repo_id="GSAI-ML/LLaDA-1.5",
    revision=hub.TRUSTED_REMOTE_CODE["GSAI-ML/LLaDA-1.5"],
    description="LLaDA 8B Instruct further aligned with variance-reduced preference optimisation (VRPO).",
)

CANVAS_DIFFUSION = ModelSpec(
    key="canvas-diffusion",
    display_name="Canvas diffusion (built-in)",
    repo_id="assets/canvas-diffusion",
    family="canvas",
    description="Our small masked-diffusion model trained on Shakespeare; runs anywhere, no download.",
    params_b=0.006,
    download_gb=0.0,
    ar_twin="canvas-ar",
)
# The same model further trained to commit many tokens per pass (``dlm_core.distill``): listed only
# once its folder holds a trained model, so a checkout without it shows no dead entry.
CANVAS_PARALLEL = replace(
    CANVAS_DIFFUSION,
    key="canvas-parallel",
    display_name="Shakespeare, parallel-trained (5.9M)",
    repo_id="assets/canvas-parallel",
    description="canvas-diffusion trained further to write many tokens per pass (certainty-forcing "
    "self-distillation, see its model card); same size, tokenizer and AR twin.",
)
# The same model further trained to also correct wrong tokens (``train --objective edit``: random-token
# corruption next to masking): token editing in mask-based decoding, and canvases of random tokens that
# settle (``SamplerConfig.noise = "uniform"``). Listed once its folder holds a trained model.
CANVAS_EDIT = replace(
    CANVAS_DIFFUSION,
    key="canvas-edit",
    display_name="Shakespeare, edit-trained (5.9M)",
    repo_id="assets/canvas-edit",
    description="canvas-diffusion trained further to also correct wrong tokens (random tokens mixed in with the "
    "masks): it rewrites tokens while writing (token editing) and settles a canvas of random tokens (Noise: random "
    "tokens); same size, tokenizer and AR twin. See its model card.",
)
# The code pair (``scripts/train_code.sh``): the same architecture and size, trained on the Python
# standard library; listed once their folders hold trained models.
CODE_DIFFUSION = replace(
    CANVAS_DIFFUSION,
    key="code-diffusion",
    display_name="Python code diffusion (built-in)",
    repo_id="assets/code-diffusion",
    description="Our small masked-diffusion model trained on the Python standard library (PSF licence): "
    "completes functions and fills in their middle; runs anywhere, no download.",
    ar_twin="code-ar",
    writes_code=True,
)
CODE_AR = replace(
    CODE_DIFFUSION,
    key="code-ar",
    display_name="Python code autoregressive twin (built-in)",
    repo_id="assets/code-ar",
    description="The autoregressive twin of code-diffusion: same data, tokenizer and size, left-to-right.",
    ar_twin=None,
)
TINY_RANDOM = ModelSpec(
    key="tiny-random",
    display_name="tiny-random (untrained, for tests)",
    repo_id="",
    family="canvas",
    description="A 2-layer random model over characters: noise, but it exercises every code path in milliseconds.",
    params_b=0.0001,
    download_gb=0.0,
    ar_twin="tiny-random-ar",
)


# The built-ins listed only once their folder under assets/ holds a trained model.
OPTIONAL_BUILTINS = (CANVAS_PARALLEL, CANVAS_EDIT, CODE_DIFFUSION, CODE_AR)


def trained_builtins(specs: tuple[ModelSpec, ...], assets: Path = ASSETS_DIR) -> tuple[ModelSpec, ...]:
    """The built-in ``specs`` whose folder under ``assets`` holds a trained model (a config.json)."""
    return tuple(spec for spec in specs if (assets / Path(spec.repo_id).name / "config.json").is_file())


_SPECS = (
    CANVAS_DIFFUSION,
    *trained_builtins((CANVAS_PARALLEL, CANVAS_EDIT)),
    ModelSpec(
        key="canvas-ar",
        display_name="Canvas autoregressive twin (built-in)",
        repo_id="assets/canvas-ar",
        family="canvas",
        description="The autoregressive twin of canvas-diffusion: same data, tokenizer and size, left-to-right.",
        params_b=0.006,
        download_gb=0.0,
    ),
    *trained_builtins((CODE_DIFFUSION, CODE_AR)),
    TINY_RANDOM,
    replace(TINY_RANDOM, key="tiny-random-ar", display_name="tiny-random-ar (untrained, for tests)", ar_twin=None,
            description="The causal twin of tiny-random (same alphabet and size): the AR lane of test races."),
    LLADA_8B_INSTRUCT,
    LLADA_1_5,
    ModelSpec(
        key="dream-7b-instruct",
        display_name="Dream 7B Instruct",
        repo_id="Dream-org/Dream-v0-Instruct-7B",
        family="dream",
        revision=hub.TRUSTED_REMOTE_CODE["Dream-org/Dream-v0-Instruct-7B"],
        trust_remote_code=True,
        params_b=7.62,
        download_gb=15.2,
        mask_id=151666,
        eos_ids=(151643, 151645),
        shift=True,
        chat_template=True,
        max_length=2048,
        description="A 7B diffusion LLM initialised from Qwen2.5 7B; keeps the next-token logit shift.",
    ),
    ModelSpec(
        key="modernbert-chat",
        display_name="ModernBERT-large chat (dLLM)",
        repo_id="dllm-hub/ModernBERT-large-chat-v0.1",
        family="mlm",
        revision="main",
        params_b=0.4,
        download_gb=1.6,
        mask_id=50284,
        eos_ids=(50282, 50283),  # [SEP]; [PAD], which dLLM uses as end-of-sequence padding for BERTs
        chat_template=True,
        fallback_chat_template=BERT_CHAT_TEMPLATE,
        max_length=1024,  # its fine-tuning length
        description="ModernBERT-large fine-tuned as a chatbot with the masked-diffusion objective (dLLM BERT-Chat).",
    ),
)

DIFFUSION_GEMMA = ModelSpec(
    key="diffusiongemma-26b-a4b-it",
    display_name="DiffusionGemma 26B-A4B (uniform-state, GPU)",
    repo_id="google/diffusiongemma-26B-A4B-it",
    family="diffusion-gemma",
    revision="main",
    params_b=25.8,  # every expert is loaded (about 4B are active per token)
    download_gb=52.0,
    chat_template=True,
    max_length=8192,
    description="Google's uniform-state block diffusion LLM (Gemma 4 MoE): refines canvases of random tokens, "
    "accepting the surest positions each step; stops early once stable. Needs a large GPU.",
)
LLADA_2_1_MINI = ModelSpec(
    key="llada2.1-mini",
    display_name="LLaDA 2.1 mini (token editing, GPU)",
    repo_id="inclusionAI/LLaDA2.1-mini",
    family="llada2",
    revision=None,  # pin pending: see hub.REMOTE_CODE_PIN_PENDING
    trust_remote_code=True,
    params_b=16.3,
    download_gb=32.6,
    chat_template=True,
    max_length=8192,
    description="A 16B MoE masked diffusion LLM that also edits tokens it already wrote (LLaDA 2.1), run by "
    "diffusers' LLaDA2Pipeline. Needs a large GPU.",
)
_SPECS = (*_SPECS, DIFFUSION_GEMMA, LLADA_2_1_MINI)

REGISTRY: dict[str, ModelSpec] = {spec.key: spec for spec in _SPECS}


def list_models() -> list[ModelSpec]:
    """Every registry entry, built-ins first (user-typed ``mlm:`` ids are accepted on top of these)."""
    return list(REGISTRY.values())


def mlm_spec(repo_or_path: str) -> ModelSpec:
    """The spec for a user-typed masked LM: no remote code, wrapped in [CLS]/[SEP], no chat template."""
    for spec in REGISTRY.values():
        if spec.family == "mlm" and spec.repo_id == repo_or_path:
            return spec
    return ModelSpec(
        key=MLM_PREFIX + repo_or_path,
        display_name=repo_or_path,
        repo_id=repo_or_path,
        family="mlm",
        revision=None if hub.is_local_path(repo_or_path) else "main",
        description="A masked language model sampled as a diffusion model (it was not trained for it).",
        wrap_special_tokens=True,
    )


def get_spec(name_or_id: str) -> ModelSpec:
    """Resolve a registry key, a registry entry's repo id, or ``mlm:<repo id or path>`` to a spec."""
    name = name_or_id.strip()
    if name in REGISTRY:
        return REGISTRY[name]
    lowered = name.lower()
    for spec in REGISTRY.values():
        if lowered in (spec.key.lower(), spec.repo_id.lower()) and spec.repo_id:
            return spec
    if lowered.startswith(MLM_PREFIX) and name[len(MLM_PREFIX) :].strip():
        return mlm_spec(name[len(MLM_PREFIX) :].strip())
    valid = ", ".join(REGISTRY)
    raise ModelNotFoundError(
        f"unknown model {name_or_id!r}. Valid names: {valid}; or mlm:<repo id or local path> for any "
        "BERT/RoBERTa/ModernBERT masked LM."
    )


# --------------------------------------------------------------------------------------------------
# Loading and the LRU cache
# --------------------------------------------------------------------------------------------------

_cache: OrderedDict[tuple[str, str, str], ModelAdapter] = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}


def _load_builtin(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
    if spec.key in ("tiny-random", "tiny-random-ar"):
        adapter = tiny_random_model(causal=spec.key == "tiny-random-ar")
        adapter.model.to(dtype)
        return adapter
    folder = ASSETS_DIR / Path(spec.repo_id).name
    if not (folder / "config.json").is_file():
        raise ModelUnavailableError(
            f"the built-in model {spec.key} is not trained yet ({folder} has no config.json); "
            "train it with `python -m dlm_core.train`"
        )
    return load_canvas(folder, name=spec.display_name, device=device, dtype=dtype)


def _load_uncached(spec: ModelSpec, device, dtype, progress) -> ModelAdapter:
    if spec.builtin:
        return _load_builtin(spec, device, dtype)
    if spec.family == "ar-diffusion":
        raise ModelRefusedError(f"{spec.display_name}: AR-to-diffusion models need remote code (see registry docs)")
    return hub.load_hub_model(
        spec,
        device=device,
        dtype=dtype,
        progress=progress,
        reclaimable_bytes=_bytes_to_evict(device),
        before_load=_make_room,
    )


def load_model(
    name_or_id: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    progress: ProgressFn | None = None,
) -> ModelAdapter:
    """Return a ready ``ModelAdapter`` for ``name_or_id``, loading it at most once per (model, device, dtype).

    Raises ``ModelNotFoundError`` (unknown name), ``ModelUnavailableError`` (not downloaded and the
    Hub is unreachable, or a built-in not trained yet), ``ModelRefusedError`` (untrusted remote code,
    not a masked LM) or ``ModelTooLargeError`` (does not fit in memory). Thread-safe: concurrent
    requests for the same model wait for one load; different models load in parallel.
    """
    spec = get_spec(name_or_id)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    key = (spec.key, str(device), str(dtype))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _cache_lock:
            if key in _cache:  # another thread finished loading it while we waited
                _cache.move_to_end(key)
                return _cache[key]
        adapter = _load_uncached(spec, device, dtype, progress)
        with _cache_lock:
            _cache[key] = adapter
            _cache.move_to_end(key)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return adapter


def _model_bytes(adapter: ModelAdapter) -> int:
    model = getattr(adapter, "model", None)
    if model is None:
        return 0
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _bytes_to_evict(device: torch.device) -> int:
    """Bytes on ``device``'s kind of memory that ``_make_room`` will free (the least recently used)."""
    with _cache_lock:
        victims = list(_cache.values())[: max(0, len(_cache) - CACHE_SIZE + 1)]
    return sum(_model_bytes(a) for a in victims if torch.device(a.device).type == device.type)


def _make_room() -> None:
    # Evict just before a hub model's weights load, so the load sees the freed RAM/VRAM; called by
    # the hub loader only after every check passed, so a refused model never evicts anything.
    evicted = []
    with _cache_lock:
        while len(_cache) >= CACHE_SIZE:
            evicted.append(_cache.popitem(last=False))
    if evicted:
        _release(evicted)


def _release(evicted: list) -> None:
    # Model tensors are freed when the last reference goes; collect cycles now, not at some later GC.
    evicted.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def clear_cache() -> None:
    """Drop every loaded model (tests; or to free memory)."""
    with _cache_lock:
        evicted = list(_cache.items())
        _cache.clear()
    if evicted:
        _release(evicted)


def cached_models() -> list[str]:
    """Keys of the models currently held, least recently used first."""
    with _cache_lock:
        return [key[0] for key in _cache]


__all__ = [
    "CACHE_SIZE",
    "DEFAULT_MODEL",
    "REGISTRY",
    "ModelNotFoundError",
    "ModelRefusedError",
    "ModelSpec",
    "ModelTooLargeError",
    "ModelUnavailableError",
    "cached_models",
    "clear_cache",
    "get_spec",
    "list_models",
    "load_model",
    "mlm_spec",
]
