"""Benchmark hygiene in dlm_core.bench: caches via the config, warm-up before timing, medians, ms per forward."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dlm_core import bench


def args(**changes):
    base = dict(block=16, threshold=0.9, temperature=0.0, seed=0, lengths=[16], repeats=3)
    return SimpleNamespace(**{**base, **changes})


def test_methods_choose_their_cache_through_the_config():
    configs = {method: bench.method_config(method, 16, args()) for method in bench.METHODS}
    assert [configs[m].cache for m in bench.METHODS] == [None, None, None, "prefix", "dual"]
    assert configs["ar+kv"].strategy == "left_to_right" and configs["diff 1/step"].strategy == "low_confidence"
    assert all(configs[m].strategy == "threshold" and configs[m].block_length == 16 for m in bench.METHODS[2:])


class FakeClock:
    """Stands in for ``timed_run``: records every call and returns scripted seconds."""

    def __init__(self, seconds):
        self.seconds, self.calls = list(seconds), []

    def __call__(self, model, prompt, config):
        self.calls.append((model.kind, config.strategy, config.cache))
        state = SimpleNamespace(nfe=8, tokens=np.zeros(16 + 4, dtype=int), prompt_length=4)
        return state, self.seconds.pop(0) if self.seconds else 1.0


def test_timed_median_takes_the_median_of_the_repeats(monkeypatch):
    clock = FakeClock([5.0, 1.0, 2.0])
    monkeypatch.setattr(bench, "timed_run", clock)
    _, seconds = bench.timed_median(SimpleNamespace(kind="diffusion"), "p", bench.method_config("diff 1/step", 16, args()), 3)
    assert seconds == 2.0 and len(clock.calls) == 3


def test_measure_warms_up_every_method_before_timing_any(monkeypatch):
    # The first call of each method is a warm-up that takes 100 s; it must not reach the report.
    clock = FakeClock([100.0] * len(bench.METHODS))
    monkeypatch.setattr(bench, "timed_run", clock)
    monkeypatch.setattr(bench, "generative_perplexity", lambda scorer, samples: 10.0)
    rows = bench.measure(SimpleNamespace(kind="autoregressive"), SimpleNamespace(kind="diffusion"), ["p"], args(repeats=1))
    warm = clock.calls[: len(bench.METHODS)]
    assert [cache for *_, cache in warm] == [None, None, None, "prefix", "dual"]  # every method, first
    assert [row["method"] for row in rows] == list(bench.METHODS)
    for row in rows:
        assert row["median_s"] == 1.0 and row["ms_per_forward"] == pytest.approx(1000 / 8)
        assert row["speedup_vs_ar"] == 1.0
    assert len(clock.calls) == len(bench.METHODS) * 2  # warm-up + 1 timed run of the one prompt
