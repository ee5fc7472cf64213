"""The frontier benchmark (benchmarks/frontier.py), its chart (dlm_core.viz.frontier) and the known-word share."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import plotly.graph_objects as go
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import frontier  # noqa: E402

from dlm_core.quality import known_word_share, training_vocabulary, words  # noqa: E402
from dlm_core.viz.frontier import frontier_dict, frontier_figure  # noqa: E402

# -- known words -----------------------------------------------------------------------------------


def test_words_lower_case_and_keep_inner_apostrophes():
    assert words("O'er the HILL, 'tis Romeo's; 3 blind-mice") == ["o'er", "the", "hill", "tis", "romeo's", "blind", "mice"]


def test_known_word_share_counts_occurrences():
    vocabulary = frozenset({"to", "be", "or"})
    assert known_word_share("To be, or not to be", vocabulary) == pytest.approx(5 / 6)
    assert math.isnan(known_word_share("1 2 3 !", vocabulary))


@pytest.mark.slow  # reads the whole training corpus
def test_training_vocabulary_knows_shakespeare_and_not_inventions():
    vocabulary = training_vocabulary()
    assert {"romeo", "thou", "o'er"} <= vocabulary
    assert known_word_share("Thouse preciout lord", vocabulary) == pytest.approx(1 / 3)


# -- the chart ---------------------------------------------------------------------------------------


def report():
    rows = [
        {"model": "canvas-diffusion", "setting": "threshold 0.5", "tokens_per_forward": 1.2, "gen_ppl_under_ar": 30.0,
         "token_entropy": 3.4, "repeated_4gram_share": 0.05, "known_word_share": 0.9, "wall_s": 2.0, "speedup_vs_ar": 0.5},
        {"model": "canvas-diffusion", "setting": "low_confidence 1/step", "tokens_per_forward": 1.0, "gen_ppl_under_ar": 25.0},
        {"model": "canvas-parallel", "setting": "entropy_bound gamma <2>", "tokens_per_forward": 4.5, "gen_ppl_under_ar": 28.0},
    ]
    return {"ar": {"model": "canvas-ar", "tokens_per_forward": 1.0, "gen_ppl_under_ar": 20.0}, "rows": rows}


def test_frontier_chart_one_trace_per_model_sorted_by_tokens_per_pass():
    figure = frontier_dict(report())
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert list(traces) == ["canvas-diffusion", "canvas-parallel", "AR twin + KV cache"]
    assert traces["canvas-diffusion"]["x"] == [1.0, 1.2] and traces["canvas-diffusion"]["y"] == [25.0, 30.0]
    assert "threshold 0.5" in traces["canvas-diffusion"]["text"][1] and "0.50x" in traces["canvas-diffusion"]["text"][1]
    assert "&lt;2&gt;" in traces["canvas-parallel"]["text"][0]  # settings are escaped
    assert traces["AR twin + KV cache"]["y"] == [20.0]
    assert figure["layout"]["xaxis"]["title"]["text"] == "tokens per forward pass"
    assert isinstance(frontier_figure(report()), go.Figure)  # plotly validates every property


def test_frontier_chart_names_what_is_missing():
    with pytest.raises(ValueError, match="rows"):
        frontier_dict({})
    broken = report()
    del broken["rows"][1]["gen_ppl_under_ar"]
    with pytest.raises(ValueError, match=r"rows\[1\].*gen_ppl_under_ar"):
        frontier_dict(broken)


# -- the benchmark -----------------------------------------------------------------------------------


def args(**changes):
    base = dict(length=32, block=16, caches=["dual"], suffix_window=32, fixed=[1, 2], thresholds=[0.9, 0.3], gammas=[0.0, 1000.0],
                order_temperature=[0.2], seeds=1, repeats=1)
    return SimpleNamespace(**{**base, **changes})


def test_settings_sweep_every_strategy_at_the_apps_sampling():
    rows = frontier.settings(args(), "dual")
    assert [label for label, *_ in rows] == [
        "low_confidence 1/step", "low_confidence 2/step", "threshold 0.9", "threshold 0.3",
        "entropy_bound gamma 0", "entropy_bound gamma 1000",
    ]
    for _, strategy, _, _, config in rows:
        assert config.strategy == strategy and config.cache == "dual" and config.block_length == 16
        assert config.temperature == 1.0 and config.top_p == 0.95 and config.gen_length == 32
    assert [config.steps for *_, config in rows[:2]] == [32, 16]
    assert rows[1][4].order_temperature == 0.2 and rows[5][4].gamma == 1000.0
    assert frontier.settings(args(), "none")[0][4].cache is None
    window = frontier.settings(args(suffix_window=8), "window")[0][4]
    assert window.cache == "window" and window.suffix_window == 8
    # Rows under the reference's cache (the first of --caches) carry no cache label; the others name theirs.
    sweep = args(caches=["dual", "window", "none"], suffix_window=64)
    assert [frontier.cache_label(c, sweep) for c in sweep.caches] == ["", " · window cache 64", " · no cache"]
    # Several order temperatures: one row each per tokens-per-step; the first is the unlabelled reference.
    swept = frontier.settings(args(order_temperature=[0.2, 0.0, 0.05], thresholds=[], gammas=[]), "dual")
    assert [label for label, *_ in swept] == [
        "low_confidence 1/step", "low_confidence 1/step, order T 0", "low_confidence 1/step, order T 0.05",
        "low_confidence 2/step", "low_confidence 2/step, order T 0", "low_confidence 2/step, order T 0.05",
    ]
    assert [config.order_temperature for *_, config in swept] == [0.2, 0.0, 0.05] * 2


@pytest.fixture(scope="module")
def measured():
    from dlm_core.models import tiny_random_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        diffusion, ar = tiny_random_model(seed=0), tiny_random_model(seed=0, causal=True)
        prompts = ["To be", "Romeo"]
        figures = {label: frontier.measure_setting(diffusion, ar, prompts, config, args())
                   for label, _, _, _, config in frontier.settings(args(), "dual")}
        ar_config = frontier.SamplerConfig(gen_length=32, strategy="left_to_right", temperature=1.0, top_p=0.95)
        figures["ar"] = frontier.measure_setting(ar, ar, prompts, ar_config, args())
    finally:
        torch.set_num_threads(threads)
    return figures


@pytest.mark.slow  # the benchmark end to end: 7 settings x 2 prompts, scored against the training corpus
def test_measured_tokens_per_forward_follow_the_settings(measured):
    assert measured["low_confidence 1/step"]["tokens_per_forward"] == 1.0
    assert measured["low_confidence 2/step"]["tokens_per_forward"] == 2.0
    assert measured["ar"]["tokens_per_forward"] == 1.0 and measured["ar"]["nfe"] == 32
    # gamma 0 still commits several slots at once where top-p leaves one token (entropy exactly 0)
    assert 1.0 <= measured["entropy_bound gamma 0"]["tokens_per_forward"] < 16.0
    assert measured["entropy_bound gamma 1000"]["tokens_per_forward"] == 16.0  # a whole block per forward
    assert measured["threshold 0.3"]["tokens_per_forward"] >= measured["threshold 0.9"]["tokens_per_forward"]
    for figures in measured.values():
        assert set(figures) >= {"gen_ppl_under_ar", "token_entropy", "repeated_4gram_share", "known_word_share",
                                "wall_s", "ms_per_forward"}
        assert figures["wall_s"] > 0 and figures["gen_ppl_under_ar"] > 1
        assert figures["ms_per_forward"] == pytest.approx(1000 * figures["wall_s"] / figures["nfe"], rel=0.5)


@pytest.mark.slow  # reads the measured sweep above
def test_markdown_has_the_ar_row_then_one_row_per_setting(measured):
    rows = [{"model": "tiny", "setting": label, **figures, "speedup_vs_ar": measured["ar"]["wall_s"] / figures["wall_s"]}
            for label, figures in measured.items() if label != "ar"]
    meta = {"length": 32, "prompts": ["a", "b"], "seeds": 1, "temperature": 1.0, "top_p": 0.95, "block": 16,
            "cache": "dual", "repeats": 1, "machine": "test", "threads": 1}
    table = frontier.markdown({"meta": meta, "ar": {"model": "tiny-ar", "setting": "AR twin + KV cache", **measured["ar"]},
                               "rows": rows})
    lines = [line for line in table.splitlines() if line.startswith("| tiny")]
    assert len(lines) == 1 + len(rows) and "AR twin + KV cache" in lines[0] and "| 1.00x |" in lines[0]
    assert "entropy_bound gamma 1000 | 16.00 |" in table
    assert frontier_dict({"rows": rows})["data"][0]["name"] == "tiny"  # the chart reads the same rows


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--length", "4"], "--length"), (["--gammas", "-1"], "--gammas"), (["--fixed", "3"], "--fixed"),
     (["--thresholds", "0"], "--thresholds"), (["--models", "/nonexistent"], "not found"),
     (["--dtypes", "float16"], "--dtypes"), (["--order-temperature", "11"], "--order-temperature")],
)
def test_bad_flags_are_named(flags, message, capsys):
    with pytest.raises(SystemExit):
        frontier.main(flags)
    assert message in capsys.readouterr().err


def test_reference_flag_reads_another_reports_reference(tmp_path):
    report = {"meta": {"cache": "dual"}, "rows": [{"model": "m", "strategy": "low_confidence", "value": 1.0,
                                                    "cache": "dual", "gen_ppl_under_ar": 40.0}]}
    (tmp_path / "f.json").write_text(json.dumps(report))
    assert frontier.reference_of(str(tmp_path / "f.json"))["gen_ppl_under_ar"] == 40.0
    (tmp_path / "none.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "bad.json").write_text("[not json")
    for name in ("none.json", "bad.json", "missing.json"):
        assert frontier.reference_of(str(tmp_path / name)) is None
    with pytest.raises(SystemExit):
        frontier.main(["--reference", str(tmp_path / "none.json"), "--length", "16"])
