"""The sampler settings as the app shows them, and UI values -> ``SamplerConfig``.

Each setting's label, help text, range, step and starting value is declared once, beside its field,
in the settings table of ``dlm_core.sampler.config`` (``SETTINGS``); this module builds the widgets
from it (``setting_widget``) and reads their values back (``build_config``). The UI writes "not set"
as a value the widget can show (0 blocks, top-k 0, top-p 1, re-masking "off"); ``build_config`` maps
those to the config's None, drops settings whose controls are hidden for the chosen strategy or model,
and clamps steps into the range the prompt allows (``steps_range``, with a note).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from dlm_core.models.builtin import BUILTIN_ORDER_TEMPERATURE
from dlm_core.sampler import STRATEGIES, PromptError, SamplerConfig, parse_prompt
from dlm_core.sampler.config import CACHE_LABELS, steps_range
from dlm_core.sampler.config import SETTINGS as TABLE

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
    "entropy_bound": "Entropy budget (EB-sampler)",
    "left_to_right": "Left to right, one per step (like GPT)",
}
DREAM_STRATEGIES = ("maskgit_plus", "topk_margin", "entropy", "origin")
CACHE_CHOICES = list(CACHE_LABELS)  # the Race tab's cache choice too

# The settings of Generate, Step and Re-write, in the order of the API's parameters: the model and the
# prompt, the strategy, then every other sampler setting the table gives a widget, in field order.
SAMPLER_WIDGETS = ("strategy", *(name for name, spec in TABLE.items() if spec.widget and name != "strategy"))
SETTINGS = ("model", "prompt", *SAMPLER_WIDGETS)

# The one starting value the table cannot know: order randomness as measured on the built-in model.
DEFAULT_ORDER_TEMPERATURE = BUILTIN_ORDER_TEMPERATURE
# Each widget's starting value. An example (assets/examples.json) sets what it needs and every other
# setting takes its starting value, so clicking an example always reproduces the same run.
START_VALUES = {name: TABLE[name].widget.value for name in SAMPLER_WIDGETS} | {
    "order_temperature": DEFAULT_ORDER_TEMPERATURE
}

FIELD_PREFIX = "dc-field-"  # elem_id of every settings widget (styles and browser tests find them by it)


def named_field(component_class: type, name: str, *args: Any, **kwargs: Any) -> Any:
    """A settings widget whose elem_id names its setting."""
    return component_class(*args, elem_id=FIELD_PREFIX + name, **kwargs)


def strategy_choices() -> list[tuple[str, str]]:
    """Every strategy (an autoregressive model is switched to left-to-right by ``build_config``)."""
    return [(f"{STRATEGY_LABELS.get(n, n)} · {n}", n) for n in STRATEGIES]


def setting_widget(name: str, **overrides: Any) -> gr.components.Component:
    """The widget of sampler setting ``name``, from the settings table: a dropdown for a choice, a
    number box for a setting without a slider step (the seed), else a slider. ``overrides``: layout
    (``visible``) or a starting value that depends on the model."""
    spec = TABLE[name]
    widget = spec.widget
    common = {"label": spec.label, "info": widget.info, "value": START_VALUES[name], **overrides}
    if spec.kind == "choice":
        choices = list(widget.choices) if widget.choices else strategy_choices()
        return named_field(gr.Dropdown, name, choices=choices, **common)
    if widget.step is None:
        return named_field(gr.Number, name, precision=0, minimum=widget.low, maximum=widget.high, **common)
    return named_field(gr.Slider, name, widget.low, widget.high, step=widget.step, **common)


# --------------------------------------------------------------------------------------------------
# Settings -> SamplerConfig
# --------------------------------------------------------------------------------------------------


def _maybe_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _config_value(name: str, value: Any) -> Any:
    """A widget's value as the config's: the widget's "off" value is None (top-p: 1 or more), an
    integer setting's whole float an int."""
    spec, off = TABLE[name], TABLE[name].widget.off
    if isinstance(off, str):
        return None if value in (None, "", "none", "None", off) else value
    if off is not None and isinstance(value, int | float) and not isinstance(value, bool):
        if value == off or (off == spec.widget.high and value > off):
            return None
    return _maybe_int(value) if spec.kind == "int" else value


def build_config(
    prompt: str, model_kind: str = "diffusion", *, own_sampler: bool = False, **values: Any
) -> tuple[SamplerConfig, str]:
    """(config, note) from UI values: ``values`` holds every setting of ``SAMPLER_WIDGETS``.

    Settings whose controls are hidden for this strategy or model do not apply (order randomness
    for a strategy that does not rank by confidence, re-masking for a strategy that cannot re-mask,
    guidance and the KV cache for an autoregressive model, steps for left-to-right, the temperature
    schedule and early stop of random-token canvases for masks, block length for random tokens, with a
    note); an autoregressive model always decodes left to right (with a note).
    ``steps`` outside ``steps_range`` (at least one per block, at most one per slot) is clamped with
    a note: the sliders are independent, so 32 steps for 16 tokens is an easy request to make.
    ``own_sampler``: the model runs its own sampler (DiffusionGemma, LLaDA 2.x), where ``steps`` counts
    the steps *per block* (canvas): not clamped here, the model's adapter checks it.
    Everything else out of range raises ``ConfigError`` / ``PromptError`` naming the field and its
    allowed range.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("prompt", "prompt must contain at least one non-whitespace character")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError("prompt", f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    unknown = sorted(set(values) - set(SAMPLER_WIDGETS))
    if unknown:
        raise TypeError(f"build_config got unknown settings {unknown}")
    config = {name: _config_value(name, values[name]) for name in SAMPLER_WIDGETS}
    strategy = config["strategy"]
    spec = STRATEGIES.get(strategy)
    note = ""
    if model_kind == "autoregressive" and spec is not None and not spec.autoregressive_ok:
        note = "An autoregressive model writes one token at a time, left to right: using that strategy."
        config["strategy"] = "left_to_right"
        spec = STRATEGIES["left_to_right"]
    steps, gen_length, block_length = config["steps"], config["gen_length"], config["block_length"]
    if spec is not None and spec.one_per_step:
        config["steps"] = None
    elif isinstance(steps, int) and isinstance(gen_length, int) and gen_length >= 0 and not own_sampler:
        slots = sum(segment.masks for segment in parse_prompt(prompt)) + gen_length
        size = block_length if isinstance(block_length, int) and block_length > 0 else slots
        if slots > 0:
            blocks, most = steps_range(slots, size)
            clamped = min(max(steps, blocks), most)
            if clamped < steps:
                note = (
                    f"Steps: {steps} steps for {slots} tokens would leave steps with nothing to write; using {clamped}."
                )
            elif clamped > steps:
                note = f"Steps: {slots} tokens in blocks of {size} make {blocks} blocks, each needs a step; using {clamped}."
            config["steps"] = clamped
    if spec is not None and not spec.ranked:
        config["order_temperature"] = 0.0
    if spec is not None and not spec.allows_remask:
        config["remask"] = None
        config["edit_threshold"] = None
        config["edit_post_steps"] = None
    if config.get("noise") != "uniform":  # the temperature schedule and early stop of random-token canvases
        config.update(final_temperature=None, stop_confidence=None)
    elif config.get("block_length") is not None:
        note = (note + " " if note else "") + "Random tokens: the whole answer is one canvas, so block length does not apply."
        config["block_length"] = None
    if model_kind == "autoregressive":
        config.update(cfg_scale=0.0, cache=None)  # an AR model always decodes with its exact KV cache
    return SamplerConfig(**config, record_topk=True), note
