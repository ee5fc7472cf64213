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
