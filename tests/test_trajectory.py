"""Trajectory recording, derived views, JSON round trip and strict validation."""

import copy
import json

import numpy as np
import pytest

from dlm_core import trajectory as trajectory_module
from dlm_core.models import tiny_random_model
from dlm_core.sampler import SamplerConfig, denoise, denoise_batch
from dlm_core.trajectory import SCHEMA_VERSION, Trajectory, TrajectoryBuilder, TrajectoryError, record

MODEL = tiny_random_model(seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def recorded():
    config = SamplerConfig(
        gen_length=12, steps=8, block_length=6, temperature=0.8, remask="confidence", eta=0.6, record_topk=True, seed=4
    )
    return record(MODEL, "Tell [MASK:2] me", config)


def test_record_summary(recorded):
    assert recorded.schema_version == SCHEMA_VERSION
    assert recorded.num_steps == 8 and recorded.nfe == 8 and recorded.complete
    assert recorded.length == len("Tell ") + 2 + len(" me") + 12
    assert recorded.num_generated == 14 and recorded.tokens_per_forward == 14 / 8
    assert recorded.sampler_config.remask == "confidence"
    assert recorded.final_text == MODEL.decode(recorded.final.text_ids())
    assert recorded.final_text.startswith("Tell ") and "me" in recorded.final_text
    assert recorded.stats()["steps"] == 8
    assert set(recorded.vocab) >= set(recorded.final.tokens.tolist()) | {MODEL.mask_id}


def test_json_round_trip_is_exact(recorded):
    text = recorded.to_json()
    again = Trajectory.from_json(text)
    assert again == recorded
    assert again.to_json() == text
    for mine, theirs in zip(recorded.states, again.states, strict=True):
        assert mine == theirs  # tokens, masks, commits, confidences, top-k: every field
    assert json.loads(text)["schema_version"] == "diffusion-canvas/trajectory/1"


def test_round_trip_without_topk_and_without_remask():
    trajectory = record(MODEL, "Plain", SamplerConfig(gen_length=6, steps=3))
    again = Trajectory.from_json(trajectory.to_json())
    assert again == trajectory and again.final.topk_ids is None
    assert "topk_ids" not in json.loads(trajectory.to_json())["steps"][0]


def test_floats_are_rounded_to_four_decimals(recorded):
    data = json.loads(recorded.to_json())
    values = [v for step in data["steps"] for v in step["prob"] if v is not None]
    assert values and all(round(v, 4) == v for v in values)


def test_save_and_load(tmp_path, recorded):
    path = tmp_path / "run.json"
    recorded.save(path)
    assert Trajectory.load(path) == recorded
    with pytest.raises(TrajectoryError) as excinfo:
        Trajectory.load(tmp_path / "missing.json")
    assert excinfo.value.field == "file"


def test_every_slot_ends_committed_once_with_a_finite_confidence(recorded):
    last_commit = np.full(recorded.length, -1)
    for state in recorded.states[1:]:
        last_commit[state.committed] = state.step
    fixed = recorded.final.fixed
    assert (last_commit[fixed] == -1).all() and (last_commit[~fixed] >= 1).all()
    for position in np.flatnonzero(~fixed):
        step = last_commit[position]
        assert np.isfinite(recorded.states[step].confidence[position])
        assert not any(position in s.committed or position in s.remasked for s in recorded.states[step + 1 :])
    assert len(recorded.states) == 9 and np.isnan(recorded.states[0].confidence).all()
    assert np.isnan(recorded.states[0].prob).all()
    assert int(recorded.states[0].masked.sum()) == 14 and not recorded.final.masked.any()


def test_streaming_builder_matches_record():
    config = SamplerConfig(gen_length=6, steps=3)
    builder = TrajectoryBuilder(MODEL, "Stream", config)
    for state in denoise(MODEL, "Stream", config):
        stored = builder.add(state)
        assert stored.step == state.step
        partial = builder.build()  # usable mid-run
        assert partial.num_steps == state.step
    assert (
        not TrajectoryBuilder(MODEL, "Stream", config)
        .extend(list(denoise(MODEL, "Stream", config))[:2])
        .build()
        .complete
    )
    built = builder.build()
    recorded = record(MODEL, "Stream", config)
    assert [s.tokens.tolist() for s in built.states] == [s.tokens.tolist() for s in recorded.states]


def test_builder_records_one_row_of_a_batch():
    config = SamplerConfig(gen_length=4)
    builder = TrajectoryBuilder(MODEL, "cd", config)
    for batch in denoise_batch(MODEL, ["ab [MASK:6]", "cd"], config):
        builder.add(batch[1])  # the 4-slot row finishes after 4 steps, then repeats its final state
    built = builder.build()
    assert built.num_steps == 4 and built.complete


def test_builder_rejects_out_of_order_states():
    config = SamplerConfig(gen_length=4, steps=2)
    states = list(denoise(MODEL, "Order", config))
    builder = TrajectoryBuilder(MODEL, "Order", config)
    with pytest.raises(TrajectoryError):
        builder.add(states[1])
    with pytest.raises(TrajectoryError):
        TrajectoryBuilder(MODEL, "Order", config).build()


# -- strict validation -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document(recorded):
    return json.loads(recorded.to_json())


def _set(path, value):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


CORRUPTIONS = [
    (_set(["schema_version"], "diffusion-canvas/trajectory/2"), "schema_version"),
    (_delete(["prompt"]), "prompt"),
    (_set(["surprise"], 1), "surprise"),
    (_set(["prompt"], 42), "prompt"),
    (_set(["model", "kind"], "magic"), "model.kind"),
    (_set(["model", "mask_id"], -3), "model.mask_id"),
    (_set(["config", "steps"], 0), "config.steps"),
    (_set(["config", "bogus"], 1), "config.bogus"),
    (_set(["prompt_length"], 10**6), "prompt_length"),
    (_set(["initial_tokens"], "abc"), "initial_tokens"),
    (_set(["initial_tokens", 0], 1.5), "initial_tokens[0]"),
    (_set(["initial_tokens", 0], True), "initial_tokens[0]"),
    (_set(["slots"], [7, 5]), "slots"),
    (_set(["slots"], [0]), "slots"),
    (_set(["vocab", "texts"], []), "vocab.texts"),
    (_set(["vocab", "ids"], [5, 3]), "vocab.ids"),
    (_set(["steps"], {"0": {}}), "steps"),
    (_set(["steps", 0, "nfe"], True), "steps[0].nfe"),
    (_set(["steps", 1, "nfe"], 0), "steps[1].nfe"),
    (_set(["steps", 0, "elapsed"], -1.0), "steps[0].elapsed"),
    (
        lambda d: d["steps"][0].update(committed=[0], committed_ids=d["vocab"]["ids"][:1]),
        "steps[0].committed",
    ),  # a prompt token
    (lambda d: d["steps"][0].update(committed=[9999], committed_ids=d["vocab"]["ids"][:1]), "steps[0].committed"),
    (_set(["steps", 0, "committed_ids"], []), "steps[0].committed_ids"),
    (_set(["steps", 0, "committed_ids", 0], 10**6), "steps[0].committed_ids"),  # not in vocab
    (_set(["steps", 0, "remasked"], [5]), "steps[0].remasked"),  # a masked slot cannot be re-masked
    (_set(["steps", 0, "window"], [3, 2]), "steps[0].window"),
    (_set(["steps", 0, "prob"], [2.0]), "steps[0].prob"),
    (_set(["steps", 0, "confidence"], "high"), "steps[0].confidence"),
    (_set(["steps", 0, "proposal"], [-7]), "steps[0].proposal"),
    (_delete(["steps", 0, "topk_ids"]), "steps[0].topk_ids"),
    (_set(["steps", 0, "topk_ids"], [[1, 2]]), "steps[0].topk_ids"),
    (_set(["final_text"], None), "final_text"),
    (_set(["initial_tokens"], list(range(5000))), "initial_tokens"),
]


@pytest.mark.parametrize(("mutate", "field"), CORRUPTIONS)
def test_strict_validation_names_the_field(document, mutate, field):
    data = copy.deepcopy(document)
    mutate(data)
    with pytest.raises(TrajectoryError) as excinfo:
        Trajectory.from_json(json.dumps(data))
    found = excinfo.value.field
    assert found == field or found.startswith((field + "[", field + ".")), str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"schema_version": NaN}',
        '{"a": 1, "a": 2}',
        '{"schema_version": 1e999}',
        b"\xff\xfe",
        12,
    ],
)
def test_malformed_documents(text):
    with pytest.raises(TrajectoryError):
        Trajectory.from_json(text)


def test_size_limits(document, monkeypatch):
    loaded = Trajectory.from_json(json.dumps(document))
    text = loaded.to_json()
    monkeypatch.setattr(trajectory_module, "MAX_JSON_CHARS", len(text) - 1)
    with pytest.raises(TrajectoryError) as excinfo:
        Trajectory.from_json(text)
    assert excinfo.value.field == "json"
    with pytest.raises(TrajectoryError):  # never write what could not be read back
        loaded.to_json()
    monkeypatch.undo()
    data = copy.deepcopy(document)
    data["steps"] = data["steps"] * 300  # > 2048 steps
    with pytest.raises(TrajectoryError) as excinfo:
        Trajectory.from_json(json.dumps(data))
    assert excinfo.value.field == "steps"


def test_validation_never_evaluates_content(document):
    data = copy.deepcopy(document)
    data["prompt"] = "__import__('os').system('echo pwned')"
    data["vocab"]["texts"][0] = "{{ 7*7 }} ${jndi:x}"
    loaded = Trajectory.from_json(json.dumps(data))
    assert loaded.prompt == data["prompt"] and loaded.vocab[data["vocab"]["ids"][0]] == "{{ 7*7 }} ${jndi:x}"
