"""Fuzzing the validation layers with hypothesis.

* ``SamplerConfig.from_dict`` / ``SamplerConfig(...)`` with random dicts and random values of random
  types for every field: the only exception is ``ConfigError`` (a ValueError naming the field);
* ``denoise`` on the tiny random model with random prompts (unicode, control characters, NUL, very
  long tokens, random ``[MASK`` fragments) and random small configs: the only exceptions are
  ``ConfigError`` / ``PromptError``; a run that starts ends with no mask left and every fixed
  (prompt) token exactly as it was;
* ``Trajectory.from_json`` with random JSON, randomly mutated real trajectories and mutated bytes:
  the only exception is ``TrajectoryError``; whatever it accepts, the display layer can render.

Each test stays well under 20 s on a busy 2-core machine (modest ``max_examples``, no deadline).
"""

from __future__ import annotations

import json
from dataclasses import fields
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from dlm_core.models import tiny_random_model
from dlm_core.sampler import STRATEGIES, ConfigError, PromptError, SamplerConfig, denoise
from dlm_core.trajectory import Trajectory, TrajectoryError, record
from dlm_core.viz import RunView, canvas_html, heatmap_dict, inspector_html, stats_html

FIELDS = [f.name for f in fields(SamplerConfig)]
MODEL = tiny_random_model(seed=0)


def fuzz(full: int) -> settings:
    return settings(
        max_examples=examples(full),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Any value a caller (JSON, CLI, Python) might pass, of any type.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),  # repr of ints over 4300 digits raises in Python itself
    st.integers(min_value=-5, max_value=3000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.fractions(),
    st.decimals(allow_nan=True),
    st.complex_numbers(max_magnitude=10),
    st.sampled_from(sorted(STRATEGIES) + ["cap", "rescale", "confidence", "prefix", "dual", "none", ""]),
    st.builds(np.int64, st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    st.builds(np.float32, st.floats(width=32, allow_nan=True)),
    st.builds(np.bool_, st.booleans()),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))


def assert_names_a_field(error: Exception) -> None:
    assert isinstance(error, ValueError)
    field = error.field
    message = str(error)
    assert message.strip(), error
    # An empty field name only where the document itself used "" as a key.
    empty_key = message.startswith("unknown setting ''") or message.startswith(": is not a known key")
    assert isinstance(field, str) and (field or empty_key), error
    assert field in message or repr(field) in message or repr(field)[1:-1] in message, (field, message)


# -- configs ---------------------------------------------------------------------------------------------


@fuzz(400)
@given(st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=12), st.integers()), VALUES, max_size=8))
def test_random_config_dicts_raise_only_config_error(data):
    try:
        config = SamplerConfig.from_dict(data)
    except ConfigError as error:
        assert_names_a_field(error)
        return
    assert SamplerConfig.from_dict(config.to_dict()) == config  # what it accepts is stable and typed
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


@fuzz(400)
@given(st.sampled_from(FIELDS), VALUES)
def test_every_field_with_random_values_raises_only_config_error(name, value):
    try:
        config = SamplerConfig(**{name: value})
    except ConfigError as error:
        assert_names_a_field(error)
        return
    stored = getattr(config, name)
    assert stored is None or type(stored) in (int, float, str, bool), (name, value, stored)


@fuzz(60)
@given(st.one_of(VALUES, st.lists(st.tuples(st.text(max_size=4), SCALARS), max_size=3)))
def test_non_dict_configs_raise_config_error(data):
    with pytest.raises(ConfigError) as info:
        SamplerConfig.from_dict(data if not isinstance(data, dict) else [data])
    assert_names_a_field(info.value)


# -- prompts and the sampler -----------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "[MASK]",
        "[MASK",
        "[MASK:",
        "[MASK:3]",
        "[MASK:0]",
        "[MASK:2048]",
        "[MASK:x]",
        "[MASK:-1]",
        "[MASK:99999999999999999999]",
        "[MASK:\u0663]",  # an Arabic-Indic digit: not ASCII
        "\\[MASK",
        "\\[MASK]",
        "[mask]",
        "]",
        ":2]",
        "\\",
        "\x00",
        "\u202e",
        "\u200b",
        "\ufeff",
        "\r\n",
        "\u2591",  # the tiny model's mask glyph as literal text
        "\u2403",  # and its end-of-text glyph
        "ROMEO:\n",
    ]
)
PROMPTS = st.one_of(
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=8).map("".join),
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=8),
    st.integers(min_value=400, max_value=700).map(lambda n: "a" * n),  # very long "tokens", past max_length
    st.one_of(st.none(), st.integers(), st.binary(max_size=4)),  # not a string at all
)
SMALL_CONFIGS = st.fixed_dictionaries(
    {
        "gen_length": st.integers(min_value=0, max_value=8),
        "steps": st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
        "block_length": st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
        "strategy": st.sampled_from(sorted(STRATEGIES)),
        "temperature": st.sampled_from([0.0, 0.7]),
        "remask": st.sampled_from([None, "cap", "rescale", "confidence"]),
        "eta": st.sampled_from([0.05, 0.5]),
        "cache": st.sampled_from([None, None, "prefix", "dual"]),
        "seed": st.integers(min_value=0, max_value=2**63 - 1),
        "record_topk": st.booleans(),
    }
)


@fuzz(80)
@given(PROMPTS, SMALL_CONFIGS)
def test_random_prompts_and_configs_raise_only_named_errors_and_runs_finish(prompt, values):
    try:
        config = SamplerConfig(**values)
        states = denoise(MODEL, prompt, config)
    except (ConfigError, PromptError) as error:
        assert_names_a_field(error)
        return
    initial = next(states)
    budget = max(int((~initial.fixed).sum()), config.steps or 0)
    final, count = initial, 0
    for state in states:
        final, count = state, count + 1
        assert count <= budget, "the run must end within its step budget"
    assert not final.masked.any(), "a finished run leaves no mask"
    assert np.array_equal(final.tokens[initial.fixed], initial.tokens[initial.fixed]), "fixed tokens changed"
    assert np.array_equal(final.fixed, initial.fixed)
    assert MODEL.mask_id not in final.tokens.tolist()


# -- trajectories ----------------------------------------------------------------------------------------

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
REAL = record(
    MODEL,
    "AB [MASK:2] C\n",
    SamplerConfig(gen_length=6, steps=4, record_topk=True, temperature=0.7, remask="cap", eta=0.5, seed=3),
).to_json()


def check_trajectory(text: str | bytes) -> None:
    """``from_json`` raises only TrajectoryError; what it accepts renders like an uploaded file."""
    try:
        trajectory = Trajectory.from_json(text)
    except TrajectoryError as error:
        assert_names_a_field(error)
        return
    view = RunView.from_trajectory(trajectory, label="fuzz")
    view.status = "replay"
    last = view.last_step
    for step in {0, last // 2, last}:
        canvas_html(view, step, detail=True)
        inspector_html(view, step, 0)
        stats_html(view, step)
    heatmap_dict(view, cursor=last)


@fuzz(150)
@given(JSON)
def test_random_json_raises_only_trajectory_error(value):
    check_trajectory(json.dumps(value))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node[:6]):
            yield from _paths(child, (*prefix, index))


REAL_DATA = json.loads(REAL)
REAL_PATHS = [p for p in _paths(REAL_DATA) if p]


@st.composite
def mutated_trajectories(draw):
    data = json.loads(REAL)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(REAL_PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            key = path[-1]
            old = parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "delete", "grow", "shrink", "swap-type", "nudge"]))
        if action == "replace":
            parent[key] = draw(JSON)
        elif action == "delete":
            del parent[key]
        elif action == "grow" and isinstance(old, list):
            parent[key] = old + old[: draw(st.integers(min_value=1, max_value=3))] if old else [draw(JSON)]
        elif action == "shrink" and isinstance(old, list | str):
            parent[key] = old[: draw(st.integers(min_value=0, max_value=max(0, len(old) - 1)))]
        elif action == "swap-type":
            parent[key] = str(old) if not isinstance(old, str) else [old]
        elif action == "nudge" and isinstance(old, int) and not isinstance(old, bool):
            parent[key] = old + draw(st.sampled_from([-1, 1, -(10**6), 10**6, 10**400]))
        elif action == "nudge" and isinstance(old, float):
            parent[key] = old + draw(st.sampled_from([-1.0, 0.5, 1e300, -1e-9]))
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.text(max_size=6))] = draw(JSON)  # sometimes an unknown key
    return json.dumps(data)


@fuzz(200)
@given(mutated_trajectories())
def test_mutated_trajectories_raise_only_trajectory_error(text):
    check_trajectory(text)


@fuzz(150)
@given(st.data())
def test_mutated_bytes_raise_only_trajectory_error(data):
    raw = bytearray(REAL.encode("utf-8"))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        if not raw:
            break
        index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip":
            raw[index] = data.draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            raw[index:index] = data.draw(st.sampled_from([b"[", b"{", b"}", b",", b'"', b"\\", b"NaN", b"1e999", b"-"]))
        elif action == "delete":
            del raw[index]
        else:
            del raw[index:]
    check_trajectory(bytes(raw))


def test_the_real_trajectory_passes_the_checker():
    """The fuzzers start from a document that parses (so their mutations probe real structure)."""
    trajectory = Trajectory.from_json(REAL)
    assert trajectory.num_steps == 4 and trajectory.complete
    check_trajectory(REAL)
    with pytest.raises(TrajectoryError):
        Trajectory.from_json(REAL.replace("trajectory/1", "trajectory/2"))


def test_odd_numbers_are_config_errors_not_crashes():
    """Regression: a float field given an int too large for a float (e.g. 10**400 from a JSON
    trajectory's config) raised OverflowError instead of ConfigError."""
    for value in (10**400, -(10**400), Fraction(10**400, 3), Decimal("0.5"), complex(0.5, 0)):
        with pytest.raises(ConfigError) as info:
            SamplerConfig(temperature=value)
        assert_names_a_field(info.value)
    data = json.loads(REAL)
    data["config"]["temperature"] = 10**400
    with pytest.raises(TrajectoryError) as trajectory_error:
        Trajectory.from_json(json.dumps(data))
    assert trajectory_error.value.field == "config.temperature"
