"""The display of uniform-state runs (drafts, not masks) and of token edits (old -> new), in the
canvas, the inspector, the heatmap and the status line."""

from __future__ import annotations

import numpy as np

from dlm_core.models.bridge import StepRecorder
from dlm_core.sampler import SamplerConfig, denoise
from dlm_core.trajectory import TrajectoryBuilder
from dlm_core.viz import RunView, canvas_html, heatmap_dict, inspector_html
from dlm_core.viz.canvas import status_line
from dlm_core.viz.heatmap import MARKS
from tests.test_sampler_editing import PrefixAdapter

EDITED = MARKS["edited"]["legend"]  # the heatmap trace of token edits


class UniformModel:
    """What RunView needs of a uniform-state model (mask id 0 = not drawn yet)."""

    name, kind, noise, mask_id, eos_ids = "uniform stand-in", "diffusion", "uniform", 0, (1,)

    def token_text(self, token_id):
        return f"w{int(token_id)}"

    def decode(self, ids):
        return " ".join(self.token_text(i) for i in ids)


def uniform_run():
    recorder = StepRecorder([5, 6], 4, mask_id=0, eos_ids=(1,), uniform=True)
    recorder.record(0, 2, np.array([7, 8, 9, 10]), np.array([True, False, False, False]),
                    prob=np.array([0.9, 0.4, 0.3, 0.2]), entropy=np.array([0.1, 1.0, 1.2, 1.5]))
    recorder.record(0, 2, np.array([7, 11, 9, 12]), np.array([True, True, False, False]),
                    prob=np.array([0.9, 0.8, 0.3, 0.2]), entropy=np.array([0.1, 0.3, 1.2, 1.5]))
    recorder.record(0, 2, np.array([13, 11, 9, 12]), np.array([True, True, True, True]))
    return recorder.states


def view_of(model, states):
    view = RunView.for_model(model, "p", SamplerConfig(gen_length=4))
    for state in states:
        view.add(state)
    return view


def test_uniform_state_positions_show_faded_drafts_not_masks():
    view = view_of(UniformModel(), uniform_run())
    html = canvas_html(view, 1)
    assert 'class="t d"' in html and "w8" in html and "w9" in html  # drafts, with their tokens
    assert 'class="t m' not in html  # no hatched mask anywhere
    assert "draft “w8” · 40% sure: not accepted yet" in html
    assert "starts as noise" in status_line(view, view.frame(0))
    assert "entropy 1.00 nats" in inspector_html(view, 1, 3)


def test_an_edit_is_drawn_old_to_new_in_canvas_inspector_and_heatmap():
    view = view_of(UniformModel(), uniform_run())
    final = view.last_step
    assert view.states[final].edited.tolist() == [2]  # w7 accepted, then replaced by w13
    html = canvas_html(view, final)
    assert "edited: “w7” → “w13”" in html
    assert "Edited this step: “w7” → “w13”" in inspector_html(view, final, 2)
    traces = {trace.get("name"): trace for trace in heatmap_dict(view)["data"]}
    assert traces[EDITED]["text"] == ["“w7” → “w13”"]
    assert "1 edited" in status_line(view, view.frame(final))


def test_our_samplers_edits_show_and_a_run_without_edits_shows_none():
    adapter = PrefixAdapter(0)
    config = SamplerConfig(gen_length=16, block_length=4, steps=16, edit_threshold=0.2)
    trajectory = TrajectoryBuilder(adapter, "the cat.", config).extend(denoise(adapter, "the cat.", config)).build()
    view = RunView.from_trajectory(trajectory)
    names = [trace.get("name") for trace in heatmap_dict(view)["data"]]
    assert EDITED in names
    plain = TrajectoryBuilder(adapter, "the cat.", config.replace(edit_threshold=None))
    plain = plain.extend(denoise(adapter, "the cat.", config.replace(edit_threshold=None))).build()
    assert EDITED not in [trace.get("name") for trace in heatmap_dict(RunView.from_trajectory(plain))["data"]]
    assert "ed\"" not in canvas_html(RunView.from_trajectory(plain), None)
