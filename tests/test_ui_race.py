"""The Race tab's pieces without a server: which models race (the registry's AR twins), the live
break-even line under each diffusion lane, the projection after the race, the frontier chart (or its
note), and the gamma control of the entropy_bound strategy."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dlm_core.models import registry
from dlm_core.models.builtin import serving_dtype
from dlm_core.race import race
from dlm_core.sampler import SamplerConfig
from dlm_core.sampler.config import SETTINGS
from ui import canvas_tab, race_tab

pytestmark = pytest.mark.usefixtures("one_thread")


def finished(setup: race_tab.RaceSetup):
    """Every snapshot of a race, run to the end."""
    return list(race(setup.lanes))


# -- the AR twin comes from the registry ---------------------------------------------------------


def test_every_raceable_model_names_a_registered_autoregressive_twin():
    assert registry.get_spec("canvas-diffusion").ar_twin == "canvas-ar"
    assert registry.get_spec("tiny-random").ar_twin == "tiny-random-ar"
    assert registry.load_model("tiny-random-ar").kind == "autoregressive"
    for _, key in race_tab.race_models():
        twin = registry.get_spec(registry.get_spec(key).ar_twin)
        assert twin.key in registry.REGISTRY and twin.ar_twin is None
    assert "llada-8b-instruct" not in [key for _, key in race_tab.race_models()]  # no twin, not raceable


def test_parallel_model_is_listed_only_once_its_folder_holds_a_model(tmp_path):
    spec = registry.CANVAS_PARALLEL
    assert spec.ar_twin == "canvas-ar" and spec.display_name == "Shakespeare, parallel-trained (5.9M)"
    assert registry.trained_builtins((spec,), tmp_path) == ()
    (tmp_path / "canvas-parallel").mkdir()
    assert registry.trained_builtins((spec,), tmp_path) == ()  # an empty folder is not a model
    (tmp_path / "canvas-parallel" / "config.json").write_text("{}")
    assert registry.trained_builtins((spec,), tmp_path) == (spec,)


def test_ar_race_uses_the_twin_from_the_registry():
    setup = race_tab.race_lanes("ar", "Hi", 16, "dual", 0.5, 0.0, 1, model="tiny-random")
    ar, diffusion = (lane.model for lane in setup.lanes)
    assert ar.kind == "autoregressive" and ar.name.startswith("tiny-random-ar")
    assert diffusion.kind == "diffusion" and setup.ar_lane == 0 and setup.featured == 1


def test_race_starts_with_the_configured_model_else_the_frontiers_winner(monkeypatch):
    assert race_tab.default_race_model() == "tiny-random"  # conftest's DIFFUSION_CANVAS_MODEL
    monkeypatch.setenv("DIFFUSION_CANVAS_MODEL", "")
    assert race_tab.default_race_model() == registry.DEFAULT_MODEL
    assert race_tab.default_race_model(winner="tiny-random") == "tiny-random"
    monkeypatch.setattr(race_tab, "race_models", lambda: [("x", "tiny-random")])
    assert race_tab.default_race_model() == "tiny-random"  # neither installed: the first raceable


def test_ar_race_with_the_entropy_budget_rule():
    setup = race_tab.race_lanes("ar", "Hi", 16, "dual", 0.5, 0.0, 1, gamma=2.0, model="tiny-random", rule="entropy_bound")
    diffusion = setup.lanes[1]
    assert (diffusion.config.strategy, diffusion.config.gamma, diffusion.config.cache) == ("entropy_bound", 2.0, "dual")
    assert "entropy budget γ 2" in diffusion.label


def test_only_the_chosen_rules_setting_is_shown():
    off = {"threshold": False, "gamma": False, "per_step": False, "order_temperature": False}
    assert race_tab.controls_shown("ar", "threshold") == {**off, "rule": True, "threshold": True}
    assert race_tab.controls_shown("ar", "entropy_bound") == {**off, "rule": True, "gamma": True}
    assert race_tab.controls_shown("ar", "low_confidence") == {**off, "rule": True, "per_step": True,
                                                              "order_temperature": True}
    assert set(race_tab.controls_shown("ar", "threshold")) == set(race_tab.RULE_CONTROLS)
    assert race_tab.controls_shown("strategies", "threshold") == {**off, "rule": False, "threshold": True, "gamma": True}


def test_ar_race_with_a_fixed_number_of_tokens_per_pass():
    setup = race_tab.race_lanes("ar", "Hi", 30, "dual", 0.5, 1.0, 1, model="tiny-random", rule="low_confidence", per_step=4)
    config = setup.lanes[1].config
    assert (config.strategy, config.steps, config.block_length, config.cache) == ("low_confidence", 8, 30, "dual")
    assert "4 tokens per pass" in setup.lanes[1].label
    assert config.order_temperature == race_tab.RACE_DEFAULTS["order_temperature"]
    assert f"order randomness {config.order_temperature:g}" in setup.lanes[1].label
    greedy = race_tab.race_lanes("ar", "Hi", 30, "dual", 0.5, 1.0, 1, model="tiny-random", rule="low_confidence",
                                 per_step=4, order_temperature=0.0)
    assert greedy.lanes[1].config.order_temperature == 0.0 and "randomness" not in greedy.lanes[1].label
    # Each contestant in the dtype it decodes fastest in here: the diffusion lane per serving_dtype, the
    # AR twin in float32 (its one-token steps are overhead-bound on CPU).
    dtypes = [next(lane.model.model.parameters()).dtype for lane in setup.lanes]
    assert dtypes == [torch.float32, serving_dtype("diffusion")]
    assert ("bf16" in setup.lanes[1].label) == (dtypes[1] == torch.bfloat16)
    # A hub model keeps the registry's dtype (one copy shared with the Canvas tab), whatever the CPU.
    assert race_tab.race_dtype("llada-8b-instruct") is None
    assert race_tab.race_dtype("tiny-random") == serving_dtype("diffusion")
    states = list(race_tab.race(setup.lanes))
    final = states[-1][1].state
    assert final.done and final.nfe == 8  # ceil(30 / 4) passes, at most 4 tokens each


def test_a_model_without_twin_cannot_race_its_twin():
    with pytest.raises(Exception, match="no autoregressive twin"):
        race_tab.load_twin("llada-8b-instruct", fell_back=False)


def test_strategies_race_includes_entropy_bound_with_the_chosen_gamma():
    setup = race_tab.race_lanes("strategies", "Hi", 16, "off", 0.5, 0.0, 1, gamma=2.5, model="tiny-random")
    strategies = [lane.config.strategy for lane in setup.lanes]
    assert strategies == list(race_tab.RACE_STRATEGIES) and "entropy_bound" in strategies
    assert len(setup.lanes) <= race_tab.RACE_LANES
    assert setup.lanes[strategies.index("entropy_bound")].config.gamma == 2.5
    assert setup.ar_lane is None and setup.ar_model.kind == "autoregressive"


# -- the race explains itself --------------------------------------------------------------------


def numbers(line: str) -> tuple[float, float]:
    """(tokens per pass needed, tokens per pass achieved) from a break-even line."""
    needed = float(re.search(r"needs ≥ ([\d.]+) tokens per pass", line).group(1))
    achieved = float(re.search(r"this run does ([\d.]+)", line).group(1))
    return needed, achieved


def test_live_line_under_the_diffusion_lane_matches_the_race_clock():
    setup = race_tab.race_lanes("ar", "Hi", 32, "dual", 0.5, 0.0, 3, model="tiny-random")
    snapshots = finished(setup)
    assert race_tab.lane_verdict(setup, snapshots[0], 1, None) == race_tab.WAITING_HTML  # no forward yet
    last = snapshots[-1]
    yardstick = race_tab.lane_verdict(setup, last, 0, None)  # the AR lane: its own cost per step
    assert "One token per forward pass" in yardstick and "tokens per pass to win" not in yardstick
    assert race_tab.lane_verdict(setup, snapshots[0], 0, None) == ""  # before its first step
    line = race_tab.lane_verdict(setup, last, 1, None)
    assert "dc-race-explain" in line and ("ahead" in line) != ("behind" in line)
    ar, diffusion = last
    achieved = race_tab.written_tokens(diffusion.state) / diffusion.state.nfe
    ar_ms = ar.seconds / race_tab.written_tokens(ar.state)  # an AR lane writes one token per forward
    needed = (diffusion.seconds / diffusion.state.nfe) / ar_ms
    assert numbers(line) == (pytest.approx(needed, abs=0.051), pytest.approx(achieved, abs=0.051))
    # ahead exactly when the diffusion lane's own clock beat the AR lane's
    assert ("ahead" in line) == (diffusion.seconds < ar.seconds)


def test_strategies_lines_compare_with_the_twin_timed_on_its_own():
    setup = race_tab.race_lanes("strategies", "Hi", 16, "off", 0.5, 0.0, 1, model="tiny-random")
    snapshots = finished(setup)
    ar_ms = race_tab.measured_ar_step_ms(setup, snapshots[0])
    assert ar_ms is not None and ar_ms > 0
    for index in range(len(setup.lanes)):
        line = race_tab.lane_verdict(setup, snapshots[-1], index, ar_ms)
        assert "timed on its own" in line and "tokens per pass" in line
    assert race_tab.lane_verdict(setup, snapshots[-1], 0, None) == ""  # no twin measured: no line


def test_projection_after_the_race_is_labelled_and_has_its_figure():
    setup = race_tab.race_lanes("ar", "Hi", 32, "dual", 0.5, 0.0, 3, model="tiny-random")
    snapshots = finished(setup)
    text, figure = race_tab.lane_projection(setup, snapshots[-1], None)
    assert "Projection, not a measurement" in text and "H100" in text and "dc-race-projection" in text
    assert setup.lanes[1].label in text
    assert any(trace["name"] == "this run" for trace in figure["data"])
    assert race_tab.lane_projection(setup, snapshots[0], None) == ("", None)  # nothing written: no projection


def test_lane_html_carries_the_live_line():
    setup = race_tab.race_lanes("ar", "Hi", 16, "off", 0.5, 0.0, 1, model="tiny-random")
    snapshots = finished(setup)
    lane, state = setup.lanes[1], snapshots[-1][1]
    view = race_tab.RunView.for_model(lane.model, lane.prompt, lane.config, label=lane.label)
    line = race_tab.lane_verdict(setup, snapshots[-1], 1, None)
    markup = race_tab.race_lane_html(lane, view, state, 0, line)
    assert line in markup and "finished first" in markup


def test_measure_here_times_the_chosen_model_and_its_twin():
    figure, note = race_tab.measure_here("tiny-random")
    lines = {trace["name"]: trace for trace in figure["data"]}
    assert set(lines) == {"ar+kv", "thr+dual"} and "tiny-random" in figure["layout"]["title"]["text"]
    for trace in lines.values():
        assert trace["x"] == list(race_tab.MEASURE_LENGTHS) and all(seconds > 0 for seconds in trace["y"])
    assert "just now" in note


# -- the frontier chart --------------------------------------------------------------------------


def test_frontier_chart_or_a_one_line_note(tmp_path, monkeypatch):
    monkeypatch.setattr(race_tab, "FRONTIER_JSON", tmp_path / "frontier.json")
    figure, note = race_tab.stored_frontier()
    assert figure is None and "python benchmarks/frontier.py" in note and "\n" not in note
    (tmp_path / "frontier.json").write_text("{not json")
    figure, note = race_tab.stored_frontier()
    assert figure is None and "could not be read" in note
    rows = [{"model": "m", "setting": "s", "tokens_per_forward": k, "gen_ppl_under_ar": 10.0 + k} for k in (1, 2)]
    (tmp_path / "frontier.json").write_text(json.dumps({"rows": rows}))
    figure, note = race_tab.stored_frontier()
    assert figure is not None and "right" in note and "down" in note
    assert json.loads(figure.plot)["data"][0]["x"] == [1, 2]


def frontier_report(*rows, **meta):
    return {"meta": {"length": 256, "cache": "dual", "temperature": 1.0, "machine": "test box", **meta},
            "rows": [{"setting": "s", "tokens_per_forward": 2.0, **row} for row in rows]}


def row(model, strategy, value, speedup, ppl=50.0, entropy=4.2, repeats=0.05, known=0.88):
    return {"model": model, "strategy": strategy, "value": value, "speedup_vs_ar": speedup, "gen_ppl_under_ar": ppl,
            "token_entropy": entropy, "repeated_4gram_share": repeats, "known_word_share": known}


def test_race_starts_at_the_fastest_win_that_meets_the_quality_targets():
    report = frontier_report(
        row("m", "low_confidence", 1.0, 0.2),  # the reference: the first model, one token per step
        {**row("m", "low_confidence", 4.0, 1.3, ppl=60.0), "order_temperature": 0.05},  # a win, within 1.25x gen PPL
        row("m", "low_confidence", 8.0, 2.5, ppl=180.0),  # faster, but its text misses the targets
        row("m", "threshold", 0.3, 1.6, repeats=0.4),  # faster, but loops
        row("m", "threshold", 0.52, 1.2),
        row("m", "entropy_bound", 2.0, 0.9),  # no win
        row("other", "threshold", 0.1, 5.0),  # not raceable
    )
    settings, model, sentence = race_tab.frontier_win(report, ["m"])
    assert model == "m" and settings["rule"] == "low_confidence" and settings["per_step"] == 4
    assert settings["order_temperature"] == 0.05  # the winning row's order randomness comes with it
    assert "4 tokens per pass" in sentence and "order randomness 0.05" in sentence and "1.30x" in sentence and "test box" in sentence
    report["rows"] = [r for r in report["rows"] if r["strategy"] != "low_confidence" or r["value"] == 1.0]
    settings, model, sentence = race_tab.frontier_win(report, ["m"])
    # the threshold win, on the threshold slider's 0.05 grid
    assert model == "m" and settings["rule"] == "threshold" and settings["threshold"] == 0.5
    assert (settings["length"], settings["cache"], settings["temperature"]) == (256, "dual", 1.0)
    settings, model, sentence = race_tab.frontier_win(report, ["nothing-raceable"])
    assert model is None and settings == race_tab.RACE_DEFAULTS and "No setting" in sentence


def test_race_starts_with_the_winning_rows_cache():
    """A win measured with the window cache starts the race with it, unless the frontier swept another window."""
    report = frontier_report(
        row("m", "low_confidence", 1.0, 0.2),
        {**row("m", "low_confidence", 4.0, 1.1), "cache": "dual"},
        {**row("m", "low_confidence", 4.0, 1.4), "cache": "window"},
        suffix_window=race_tab.SUFFIX_WINDOW,
    )
    settings, model, sentence = race_tab.frontier_win(report, ["m"])
    assert settings["cache"] == "window" and "window cache (1.40x" in sentence
    report["meta"]["suffix_window"] = race_tab.SUFFIX_WINDOW + 1  # a window the race cannot set
    settings, model, sentence = race_tab.frontier_win(report, ["m"])
    assert settings["cache"] == "dual" and "1.10x" in sentence


def test_race_start_reads_the_stored_frontier(tmp_path, monkeypatch):
    monkeypatch.setattr(race_tab, "FRONTIER_JSON", tmp_path / "frontier.json")
    assert race_tab.race_start() == (race_tab.RACE_DEFAULTS, "tiny-random", "")  # no file
    (tmp_path / "frontier.json").write_text("[broken")
    assert race_tab.race_start()[0] == race_tab.RACE_DEFAULTS
    win = {"model": "tiny-random", "strategy": "threshold", "value": 0.2, "speedup_vs_ar": 2.0, "gen_ppl_under_ar": 9.0}
    (tmp_path / "frontier.json").write_text(json.dumps(frontier_report(win, length=1000, cache=None)))
    settings, model, sentence = race_tab.race_start()
    assert model == "tiny-random" and settings["threshold"] == 0.2
    assert settings["length"] == 512 and settings["cache"] == "off"  # clamped to the slider; no cache


# -- the gamma control ---------------------------------------------------------------------------


def test_gamma_widget_lies_inside_the_samplers_range():
    spec = SETTINGS["gamma"]
    assert spec.widget is not None and spec.label == "Entropy budget γ"
    assert spec.low <= spec.widget.low < spec.widget.high <= spec.high
    assert SamplerConfig(strategy="entropy_bound", gamma=spec.widget.high).gamma == spec.widget.high
    assert spec.widget.value == SamplerConfig().gamma  # the widget starts where the sampler does


def test_gamma_control_is_shown_for_entropy_bound_only():
    handlers = canvas_tab.make_handlers(canvas_tab.CanvasUI())
    gamma_index = 3  # steps, threshold, factor, gamma, ... (the outputs of ui.strategy.change)
    shown = {name: handlers["strategy_changed"](name)[gamma_index]["visible"]
             for name in ("entropy_bound", "threshold", "low_confidence", "factor")}
    assert shown == {"entropy_bound": True, "threshold": False, "low_confidence": False, "factor": False}
    updates = handlers["strategy_changed"]("entropy_bound")
    assert updates[6]["visible"] is False  # "no extra settings" hidden: gamma is one
