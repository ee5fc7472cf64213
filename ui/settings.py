"""The sampler settings as the app shows them, and UI values -> ``SamplerConfig``.

The UI writes "not set" as a value the widget can show (0 blocks, top-k 0, top-p 1, re-masking
"off"); ``build_config`` maps those to the config's None, drops settings whose controls are hidden
for the chosen strategy or model, and clamps steps into the range the prompt allows (with a note).
"""

from __future__ import annotations

from typing import Any

from dlm_core.models.builtin import BUILTIN_ORDER_TEMPERATURE
from dlm_core.sampler import STRATEGIES, PromptError, SamplerConfig, parse_prompt

from .limits import MAX_PROMPT_CHARS

STRATEGY_LABELS = {
    "low_confidence": "Most confident first (LLaDA)",
    "random": "Random order (LLaDA)",
    "maskgit_plus": "MaskGIT+ confidence (Dream)",
    "topk_margin": "Top-2 margin (Dream)",
    "entropy": "Lowest entropy first (Dream)",
    "origin": "Random by schedule (MDLM / Dream origin)",
    "threshold": "All above a threshold (Fast-dLLM)",
    "factor": "Factor rule (Fast-dLLM)",
    "left_to_right": "Left to right, one per step (like GPT)",
}
DREAM_STRATEGIES = ("maskgit_plus", "topk_margin", "entropy", "origin")
CACHE_CHOICES = [("Off (exact)", "off"), ("Prefix cache", "prefix"), ("Dual cache (prefix + suffix)", "dual")]
FIELD_PREFIX = "dc-field-"  # elem_id of every settings widget (styles and browser tests find them by it)


def named_field(component_class: type, name: str, *args: Any, **kwargs: Any) -> Any:
    """A settings widget whose elem_id names its setting."""
    return component_class(*args, elem_id=FIELD_PREFIX + name, **kwargs)


REMASK_CHOICES = [
    ("Off", "off"),
    ("Cap (ReMDM-cap)", "cap"),
    ("Rescale (ReMDM-rescale)", "rescale"),
    ("Least sure first (ReMDM-conf)", "confidence"),
]




def strategy_choices() -> list[tuple[str, str]]:
    """Every strategy (an autoregressive model is switched to left-to-right by ``build_config``)."""
    return [(f"{STRATEGY_LABELS.get(n, n)} · {n}", n) for n in STRATEGIES]


# --------------------------------------------------------------------------------------------------
# Settings -> SamplerConfig
# --------------------------------------------------------------------------------------------------


def _maybe_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build_config(
    prompt: str,
    strategy: str,
    gen_length: Any,
    steps: Any,
    block_length: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    seed: Any,
    threshold: Any,
    factor: Any,
    eps: Any,
    order_temperature: Any,
    remask: Any,
    eta: Any,
    remask_t_on: Any,
    remask_t_off: Any,
    cfg_scale: Any,
    cache: Any = "off",
    model_kind: str = "diffusion",
) -> tuple[SamplerConfig, str]:
    """(config, note) from UI values; 0 / 1.0 / "off" mean "not set" for the optional settings.

    Settings whose controls are hidden for this strategy or model do not apply (order randomness
    for a strategy that does not rank by confidence, re-masking for a strategy that cannot re-mask,
    guidance and the KV cache for an autoregressive model, steps for left-to-right); an
    autoregressive model always decodes left to right (with a note).
    ``steps`` outside [blocks, generation slots] is clamped with a note: the sliders are
    independent, so 32 steps for 16 tokens is an easy request to make. Everything else out of
    range raises ``ConfigError`` / ``PromptError`` naming the field and its allowed range.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("prompt", "prompt must contain at least one non-whitespace character")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError("prompt", f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    spec = STRATEGIES.get(strategy)
    gen_length = _maybe_int(gen_length)
    block_length = _maybe_int(block_length) or None
    steps = _maybe_int(steps)
    note = ""
    if model_kind == "autoregressive" and strategy in STRATEGIES and not STRATEGIES[strategy].autoregressive_ok:
        note = "An autoregressive model writes one token at a time, left to right: using that strategy."
        strategy = "left_to_right"
        spec = STRATEGIES[strategy]
    if spec is not None and spec.one_per_step:
        steps = None
    elif isinstance(steps, int) and isinstance(gen_length, int) and gen_length >= 0:
        slots = sum(segment.masks for segment in parse_prompt(prompt)) + gen_length
        size = block_length if isinstance(block_length, int) and block_length > 0 else slots
        if slots > 0:
            blocks = -(-slots // size)
            clamped = min(max(steps, blocks), slots)
            if clamped < steps:
                note = (
                    f"Steps: {steps} steps for {slots} tokens would leave steps with nothing to write; using {clamped}."
                )
            elif clamped > steps:
                note = f"Steps: {slots} tokens in blocks of {size} make {blocks} blocks, each needs a step; using {clamped}."
            steps = clamped
    if spec is not None and not spec.ranked:
        order_temperature = 0.0
    remask = None if remask in (None, "", "off", "none", "None") else remask
    if spec is not None and not spec.allows_remask:
        remask = None
    cache = None if cache in (None, "", "off", "none", "None") else cache
    if model_kind == "autoregressive":
        cfg_scale, cache = 0.0, None  # an AR model always decodes with its exact KV cache
    config = SamplerConfig(
        gen_length=gen_length,
        steps=steps,
        block_length=block_length,
        strategy=strategy,
        temperature=temperature,
        top_k=_maybe_int(top_k) or None,
        top_p=None if isinstance(top_p, int | float) and not isinstance(top_p, bool) and top_p >= 1 else top_p,
        seed=_maybe_int(seed),
        threshold=threshold,
        factor=factor,
        eps=eps,
        order_temperature=order_temperature,
        remask=remask,
        eta=eta,
        remask_t_on=remask_t_on,
        remask_t_off=remask_t_off,
        cfg_scale=cfg_scale,
        cache=cache,
        record_topk=True,
    )
    return config, note




SETTINGS = (
    "model",
    "prompt",
    "strategy",
    "gen_length",
    "steps",
    "block_length",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "threshold",
    "factor",
    "eps",
    "order_temperature",
    "remask",
    "eta",
    "remask_t_on",
    "remask_t_off",
    "cfg_scale",
    "cache",
)


DEFAULT_ORDER_TEMPERATURE = BUILTIN_ORDER_TEMPERATURE  # measured on the default (built-in) model

EXAMPLE_DEFAULTS = {
    "strategy": "low_confidence",
    "gen_length": 64,
    "steps": 32,
    "block_length": 0,
    "temperature": 0.0,
    "top_k": 0,
    "top_p": 0.95,
    "seed": 0,
    "threshold": 0.9,
    "factor": 1.0,
    "eps": 0.001,
    "order_temperature": DEFAULT_ORDER_TEMPERATURE,
    "remask": "off",
    "eta": 0.05,
    "remask_t_on": 1.0,
    "remask_t_off": 0.0,
    "cfg_scale": 0.0,
    "cache": "off",
}

