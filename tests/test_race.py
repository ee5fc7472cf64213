"""The race: lanes advance on a virtual clock, each ends exactly like its solo run."""

import numpy as np
import pytest

from dlm_core.race import Lane, race
from dlm_core.sampler import ConfigError, SamplerConfig, run_to_end


def test_each_lane_ends_as_its_solo_run_and_the_clock_stays_fair(tiny_model, tiny_ar_model):
    lanes = [
        Lane("AR twin", tiny_ar_model, "Hello", SamplerConfig(gen_length=24, strategy="left_to_right")),
        Lane("diffusion", tiny_model, "Hello", SamplerConfig(gen_length=24, steps=6, strategy="low_confidence")),
    ]
    snapshots = list(race(lanes))
    first, last = snapshots[0], snapshots[-1]
    assert [lane.state.step for lane in first] == [0, 0]
    assert all(lane.done for lane in last)
    for lane, final in zip(lanes, last, strict=True):
        assert np.array_equal(final.state.tokens, run_to_end(lane.model, lane.prompt, lane.config).tokens)
    # Whenever a lane steps, it was the one with the least compute so far among unfinished lanes.
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        moved = [i for i in range(2) if after[i].state is not before[i].state or after[i].done != before[i].done]
        assert len(moved) == 1
        waiting = [b.seconds for b in before if not b.done]
        assert before[moved[0]].seconds == min(waiting)
    assert last[1].state.nfe == 6 and last[0].state.nfe == 24


def test_bad_lane_settings_fail_before_anything_runs(tiny_model, tiny_ar_model):
    with pytest.raises(ConfigError) as error:
        race([Lane("AR", tiny_ar_model, "Hi", SamplerConfig(gen_length=4, strategy="low_confidence"))])
    assert error.value.field == "strategy"


def _written(state) -> int:
    return int((~state.fixed).sum() - state.masked.sum())


@pytest.mark.parametrize("cache", [None, "dual", "prefix"])
def test_traces_record_every_forward_and_explain_the_result(tiny_model, tiny_ar_model, cache):
    from dlm_core.speed import lane_cost, race_break_even

    lanes = [
        Lane("AR twin", tiny_ar_model, "Hello", SamplerConfig(gen_length=40, strategy="left_to_right")),
        Lane("diffusion", tiny_model, "Hello", SamplerConfig(gen_length=40, steps=10, block_length=20,
                                                             strategy="low_confidence", cache=cache)),
    ]
    snapshots = list(race(lanes))
    ar, diffusion = snapshots[-1]
    for lane, solo in zip((ar, diffusion), lanes, strict=True):
        assert len(lane.trace) == lane.state.step
        assert sum(step.forwards for step in lane.trace) == lane.state.nfe
        assert sum(step.committed for step in lane.trace) == _written(lane.state) == 40
        assert lane.seconds == pytest.approx(sum(step.seconds for step in lane.trace))
        assert all(call.seconds > 0 for step in lane.trace for call in step.calls)
        assert np.array_equal(lane.state.tokens, run_to_end(solo.model, solo.prompt, solo.config).tokens)
    # AR: one prefill of the 5-token prompt, then one token per forward attending to all before it.
    ar_calls = [(c.rows, c.query_tokens, c.context_tokens) for step in ar.trace for c in step.calls]
    assert ar_calls == [(1, 5, 0)] + [(1, 1, 5 + i) for i in range(39)]
    # Diffusion: 5 steps per block of 20; the whole 45-token canvas, or after a refresh the cached shapes.
    d_calls = [(c.query_tokens, c.context_tokens) for step in diffusion.trace for c in step.calls]
    assert len(d_calls) == 10
    if cache is None:
        assert d_calls == [(45, 0)] * 10
    elif cache == "dual":
        assert d_calls == [(45, 0)] + [(20, 25)] * 4 + [(45, 0)] + [(20, 25)] * 4
    else:
        assert d_calls == [(45, 0)] + [(40, 5)] * 4 + [(45, 0)] + [(20, 25)] * 4
    # The break-even reads the race's own clock, so its predicted speed-up is the race's time ratio.
    verdict = race_break_even(lane_cost(diffusion.trace), lane_cost(ar.trace))
    assert verdict.achieved == pytest.approx(4.0)
    assert verdict.speedup == pytest.approx(ar.seconds / diffusion.seconds)
    assert verdict.wins == (diffusion.seconds < ar.seconds)
