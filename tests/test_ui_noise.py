"""The app's Noise settings (masks or random tokens) and examples that pick their model."""

from __future__ import annotations

import json

import pytest

from dlm_core.models import registry, tiny_random_model
from dlm_core.sampler import ConfigError, run_to_end
from ui import canvas_tab, settings


def values(**changes):
    return {**settings.START_VALUES, "gen_length": 8, "steps": 8, **changes}


def test_a_mask_run_drops_the_uniform_only_settings_the_widgets_still_hold():
    config, _ = settings.build_config("ROMEO:", **values())
    assert config.noise == "mask" and config.final_temperature is None and config.stop_confidence is None
    assert settings.START_VALUES["final_temperature"] == 0.5  # what the widget holds, unused for masks


def test_a_uniform_run_from_the_widgets_decodes_random_tokens():
    config, _ = settings.build_config("ROMEO:", **values(noise="uniform", temperature=0.8, stop_confidence=0.3))
    assert (config.noise, config.temperature, config.final_temperature, config.stop_confidence) == ("uniform", 0.8, 0.5, 0.3)
    final = run_to_end(tiny_random_model(), "ROMEO:", config)
    assert final.done and final.nfe <= 8


def test_a_uniform_run_takes_one_canvas_with_a_note_and_refuses_what_it_does_not_have():
    config, note = settings.build_config("ROMEO:", **values(noise="uniform", block_length=4))
    assert config.block_length is None and "block length does not apply" in note
    assert settings.build_config("ROMEO:", **values(noise="uniform", block_length=0))[1] == ""
    with pytest.raises(ConfigError) as error:
        settings.build_config("ROMEO:", **values(noise="uniform", remask="cap"))
    assert error.value.field == "remask" and "noise 'uniform'" in error.value.message


def test_every_shipped_example_builds_a_valid_config_for_its_model():
    examples = json.loads((canvas_tab.ASSETS / "examples.json").read_text())
    for example in examples:
        model = example.get("model", registry.DEFAULT_MODEL)
        assert model in {spec.key for spec in (*registry._SPECS, *registry.OPTIONAL_BUILTINS)}, model
        chosen = {k: v for k, v in example.items() if k not in ("label", "prompt", "model")}
        config, _ = settings.build_config(example["prompt"], **{**settings.START_VALUES, **chosen})
        assert config.noise == example.get("noise", "mask")


def test_examples_of_an_untrained_model_are_left_out(tmp_path, monkeypatch):
    (tmp_path / "examples.json").write_text(json.dumps([
        {"label": "a", "prompt": "x"}, {"label": "b", "prompt": "y", "model": "no-such-model"},
        {"label": "c", "prompt": "z", "model": "tiny-random"},
    ]))
    monkeypatch.setattr(canvas_tab, "ASSETS", tmp_path)
    assert [e["label"] for e in canvas_tab.load_examples()] == ["a", "c"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_edit_models_examples_show_what_their_labels_say():
    """The two canvas-edit examples, run as the app runs them (one thread): one edits a written token,
    the other starts from random tokens, renoises and settles."""
    import numpy as np

    from dlm_core.sampler import denoise

    model = registry.load_model("canvas-edit")
    examples = [e for e in canvas_tab.load_examples() if e.get("model") == "canvas-edit"]
    assert len(examples) == 2
    for example in examples:
        chosen = {k: v for k, v in example.items() if k not in ("label", "prompt", "model")}
        config, _ = settings.build_config(example["prompt"], model.kind, **{**settings.START_VALUES, **chosen})
        states = list(denoise(model, example["prompt"], config))
        assert states[-1].done
        if config.noise == "uniform":
            slots = ~states[0].fixed
            assert not np.isin(states[0].tokens[slots], [model.mask_id]).any()  # random tokens, not masks
            assert sum(s.remasked.size for s in states) > 0  # it renoised slots it had accepted
        else:
            assert sum(s.edited.size for s in states) >= 1, example["label"]
