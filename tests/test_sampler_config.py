"""SamplerConfig validation: every field, wrong types, cross-field and model-dependent rules."""

import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from dlm_core.models import ModelAdapter, tiny_random_model
from dlm_core.sampler import STRATEGIES, ConfigError, PromptError, SamplerConfig, denoise, denoise_batch
from dlm_core.sampler.config import SETTINGS, steps_range

pytestmark = pytest.mark.usefixtures("one_thread")


def test_defaults_are_valid_and_round_trip_through_dict():
    config = SamplerConfig()
    assert config.strategy == "low_confidence" and config.steps is None and config.remask is None
    assert SamplerConfig.from_dict(config.to_dict()) == config
    changed = config.replace(steps=8, temperature=1)
    assert changed.steps == 8 and isinstance(changed.temperature, float)


def test_numpy_numbers_are_normalised_to_python_types():
    config = SamplerConfig(gen_length=np.int64(12), temperature=np.float32(0.5), seed=np.uint8(3))
    assert type(config.gen_length) is int and type(config.temperature) is float and type(config.seed) is int
    assert config.to_dict()["gen_length"] == 12


BAD_VALUES = [
    ("gen_length", -1, "[0, 2048]"),
    ("gen_length", 2049, "[0, 2048]"),
    ("gen_length", 3.0, "integer"),
    ("gen_length", True, "integer"),
    ("gen_length", "8", "integer"),
    ("gen_length", None, "integer"),
    ("steps", 0, "[1, 2048]"),
    ("steps", 4096, "[1, 2048]"),
    ("steps", "8", "[1, 2048]"),
    ("steps", False, "[1, 2048]"),
    ("steps", 2.5, "[1, 2048]"),
    ("block_length", 0, "[1, 2048]"),
    ("block_length", "4", "[1, 2048]"),
    ("strategy", "greedy", "low_confidence"),
    ("strategy", None, "one of"),
    ("strategy", 3, "one of"),
    ("temperature", -0.1, "[0, 10]"),
    ("temperature", math.nan, "[0, 10]"),
    ("temperature", math.inf, "[0, 10]"),
    ("temperature", "hot", "[0, 10]"),
    ("temperature", True, "[0, 10]"),
    ("top_k", 0, "[1, 1000000]"),
    ("top_k", 2.0, "integer"),
    ("top_p", 0.0, "(0, 1]"),
    ("top_p", 1.5, "(0, 1]"),
    ("top_p", math.nan, "(0, 1]"),
    ("seed", -1, "[0, 9223372036854775807]"),
    ("seed", 2**63, "[0, 9223372036854775807]"),
    ("seed", 1.0, "integer"),
    ("threshold", 0.0, "(0, 1]"),
    ("threshold", 1.01, "(0, 1]"),
    ("factor", 0.0, "(0, 100]"),
    ("factor", -1.0, "(0, 100]"),
    ("eps", 0.0, "(0, 1)"),
    ("eps", 1.0, "(0, 1)"),
    ("order_temperature", -0.1, "[0, 10]"),
    ("order_temperature", 10.5, "[0, 10]"),
    ("remask", "always", "cap, rescale, confidence"),
    ("remask", True, "cap, rescale, confidence"),
    ("eta", -0.01, "[0, 1]"),
    ("eta", 1.5, "[0, 1]"),
    ("remask_t_on", 1.1, "[0, 1]"),
    ("remask_t_off", -0.1, "[0, 1]"),
    ("cfg_scale", -1.0, "[0, 100]"),
    ("cfg_scale", math.inf, "[0, 100]"),
    ("record_topk", 1, "True or False"),
    ("record_topk", "yes", "True or False"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_VALUES)
def test_bad_field_raises_config_error_naming_field_and_range(field, value, allowed):
    with pytest.raises(ConfigError) as excinfo:
        SamplerConfig(**{field: value})
    error = excinfo.value
    assert isinstance(error, ValueError)
    assert error.field == field
    assert str(error).startswith(field) and allowed in str(error)
    assert "got" in str(error)


def test_from_dict_rejects_unknown_keys_and_non_dicts():
    with pytest.raises(ConfigError) as excinfo:
        SamplerConfig.from_dict({"steps": 4, "temprature": 1.0})
    assert excinfo.value.field == "temprature" and "unknown setting" in str(excinfo.value)
    with pytest.raises(ConfigError):
        SamplerConfig.from_dict([("steps", 4)])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"strategy": "left_to_right", "remask": "cap"}, "remask"),
        ({"strategy": "left_to_right", "gen_length": 16, "steps": 8}, "steps"),
        ({"remask_t_on": 0.3, "remask_t_off": 0.3}, "remask_t_off"),
    ],
)
def test_cross_field_rules(changes, field):
    with pytest.raises(ConfigError) as excinfo:
        SamplerConfig(**changes)
    assert excinfo.value.field == field


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        SamplerConfig().steps = 3


class ExplodingModel(ModelAdapter):
    """Any forward pass fails: proves validation happens before the first one."""

    def __init__(self, kind="diffusion"):
        base = tiny_random_model()
        self.name, self.kind, self.codec = "exploding", kind, base.codec
        self.mask_id, self.eos_ids, self.max_length = base.mask_id, base.eos_ids, 64
        self.vocab_size, self.device = base.vocab_size, torch.device("cpu")

    def logits(self, input_ids, attention_mask=None):
        raise AssertionError("validation must happen before any forward pass")


@pytest.mark.parametrize(
    ("prompt", "config", "error", "field"),
    [
        ("abc", SamplerConfig(gen_length=8, steps=9), ConfigError, "steps"),
        ("abc [MASK:2]", SamplerConfig(gen_length=0, steps=3), ConfigError, "steps"),
        ("abc", SamplerConfig(gen_length=8, block_length=2, steps=4, strategy="threshold"), None, None),
        ("abc", SamplerConfig(gen_length=16, block_length=4, steps=3), ConfigError, "steps"),  # 4 blocks
        ("abc", SamplerConfig(gen_length=62), PromptError, "gen_length"),
        ("abc", SamplerConfig(gen_length=0), PromptError, "gen_length"),
        ("x" * 70, SamplerConfig(gen_length=1), PromptError, "prompt"),
        ("   \n", SamplerConfig(gen_length=4), PromptError, "prompt"),
        ("ab [MASK:2]", SamplerConfig(gen_length=3, strategy="left_to_right", steps=3), ConfigError, "steps"),
    ],
)
def test_model_dependent_validation_happens_at_the_call(prompt, config, error, field):
    model = ExplodingModel()
    if error is None:
        denoise(model, prompt, config)  # valid: returns a generator without running the model
        return
    with pytest.raises(error) as excinfo:
        denoise(model, prompt, config)
    assert excinfo.value.field == field
    assert field in str(excinfo.value)


def test_autoregressive_models_accept_only_left_to_right_without_guidance():
    model = ExplodingModel(kind="autoregressive")
    with pytest.raises(ConfigError) as excinfo:
        denoise(model, "abc", SamplerConfig(gen_length=4, steps=4))
    assert excinfo.value.field == "strategy" and "left_to_right" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        denoise(model, "abc", SamplerConfig(gen_length=4, strategy="left_to_right", cfg_scale=1.0))
    assert excinfo.value.field == "cfg_scale"
    denoise(model, "abc", SamplerConfig(gen_length=4, strategy="left_to_right"))


def test_batch_validation_names_the_prompt_and_rejects_non_lists():
    model = ExplodingModel()
    with pytest.raises(ConfigError) as excinfo:
        denoise_batch(model, ["abc", "abc [MASK:9]"], SamplerConfig(gen_length=4, steps=6, strategy="left_to_right"))
    assert "prompt #0" in str(excinfo.value)
    with pytest.raises(PromptError):
        denoise_batch(model, "abc", SamplerConfig())
    with pytest.raises(PromptError):
        denoise_batch(model, [], SamplerConfig())
    with pytest.raises(ConfigError):
        denoise_batch(model, ["abc"], {"steps": 3})


def test_every_strategy_is_documented_with_its_paper():
    for name, spec in STRATEGIES.items():
        assert len(spec.doc) > 80, name
    assert "LLaDA" in STRATEGIES["low_confidence"].doc and "Fast-dLLM" in STRATEGIES["factor"].doc
    assert "Dream" in STRATEGIES["entropy"].doc


def test_order_temperature_only_with_strategies_that_rank_by_confidence():
    for name in ("low_confidence", "maskgit_plus", "topk_margin", "entropy"):
        assert SamplerConfig(strategy=name, order_temperature=0.2).order_temperature == 0.2
    for name in ("random", "origin", "threshold", "factor", "left_to_right"):
        with pytest.raises(ConfigError) as excinfo:
            SamplerConfig(strategy=name, order_temperature=0.2)
        assert excinfo.value.field == "order_temperature" and "low_confidence, maskgit_plus" in str(excinfo.value)


# -- the settings table ----------------------------------------------------------------------------------


# Settings that apply only to uniform-state runs, and the context they are valid in.
UNIFORM_ONLY = {"final_temperature": {"noise": "uniform", "temperature": 10.0},
                "stop_confidence": {"noise": "uniform", "temperature": 1.0}}


def test_every_field_is_in_the_settings_table_with_its_range_in_the_messages():
    assert list(SETTINGS) == [f.name for f in fields(SamplerConfig)]
    for name, spec in SETTINGS.items():
        assert spec.label and spec.help and spec.kind in ("int", "float", "choice", "bool"), name
        context = UNIFORM_ONLY.get(name, {})
        if spec.kind in ("int", "float"):
            with pytest.raises(ConfigError) as info:  # just past the top of the table's range
                SamplerConfig(**context, **{name: spec.high * 2 + 1 if spec.kind == "float" else int(spec.high) + 1})
            assert info.value.field == name and spec.interval() in info.value.message, info.value.message
            needs = {"edit_threshold": 0.5} if name == "edit_post_steps" else {}  # edit-only steps edit with it
            if name != "remask_t_off":  # whose top is ruled out by t_off < t_on <= 1
                SamplerConfig(**context, **needs, **{name: spec.high if not spec.open_high else spec.high / 2})  # the top is fine


def test_every_widget_value_is_a_valid_config_value():
    """The app's ranges lie inside the sampler's: any value a widget can send (other than its "off"
    value, which stands for None) passes validation."""
    for name, spec in SETTINGS.items():
        widget = spec.widget
        if widget is None or spec.kind == "choice":
            if widget is not None:  # the strategy's choices are every strategy (spec.choices None)
                allowed = set(STRATEGIES if spec.choices is None else spec.choices)
                assert {value for _, value in widget.choices} - {widget.off} <= allowed, name
            continue
        for value in (widget.low, widget.high, widget.value):
            if value is None or value == widget.off or (name, value) in (("remask_t_on", 0), ("remask_t_off", 1)):
                continue  # these ends leave no t with t_off < t <= t_on: a cross-field error, reported as such
            partner = {"edit_threshold": 0.9} if name == "edit_post_steps" else {}  # edit-only steps edit with it
            SamplerConfig(**UNIFORM_ONLY.get(name, {}), **partner, **{name: int(value) if spec.kind == "int" else float(value)})


@pytest.mark.parametrize(
    ("slots", "block_length", "one_per_step", "expected"),
    [(64, None, False, (1, 64)), (64, 32, False, (2, 64)), (65, 32, False, (3, 65)), (10, 4, True, (10, 10)),
     (0, None, False, (0, 0)), (5, 100, False, (1, 5))],
)
def test_steps_range_is_one_per_block_to_one_per_slot(slots, block_length, one_per_step, expected):
    assert steps_range(slots, block_length, one_per_step) == expected


def test_the_steps_rule_is_the_one_denoise_uses():
    """Our sampler's steps are in total, at least one per block: checked when ``denoise`` starts. The
    config alone accepts fewer (a model with its own sampler counts steps per block)."""
    low, high = steps_range(40, 10)
    assert (low, high) == (4, 40)
    config = SamplerConfig(gen_length=40, block_length=10, steps=low - 1)
    with pytest.raises(ConfigError, match=r"steps must be an integer in \[4, 40\] for this prompt") as excinfo:
        denoise(ExplodingModel(), "abc", config)
    assert excinfo.value.field == "steps"
    denoise(ExplodingModel(), "abc", config.replace(steps=low))
