"""The display layer: canvas HTML, heatmap figure, standalone export, hand edits, update policy."""

from __future__ import annotations

import ast
import base64
import html
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from dlm_core.sampler import SamplerConfig, StepState, parse_prompt
from dlm_core.trajectory import Trajectory, record
from dlm_core.viz import (
    MASK_GLYPH,
    EditError,
    RunView,
    UpdatePolicy,
    canvas_html,
    edit_prompt,
    heatmap_dict,
    inspector_html,
    legend_html,
    standalone_html,
    stats_html,
    to_json,
    visible,
)
from dlm_core.viz.canvas import PALETTE, percent
from dlm_core.viz.heatmap import MARKS

HOSTILE = '<img src=x onerror=alert(1)><script>alert("x")</script>&amp;'
VIZ_DIR = Path(__file__).resolve().parents[1] / "dlm_core" / "viz"


def decode_z(figure: dict) -> np.ndarray:
    """The heatmap matrix back from a figure dict: plotly.js's base64 little-endian float32 typed array."""
    spec = figure["data"][0]["z"]
    shape = tuple(int(n) for n in spec["shape"].split(","))
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype="<f4").reshape(shape)


class Spans(HTMLParser):
    """Collects the canvas spans: (classes, data-i, title, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict] = []
        self.tags: list[str] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "span" and "data-i" in attributes:
            self._open = {
                "classes": set(attributes.get("class", "").split()),
                "i": int(attributes["data-i"]),
                "title": attributes.get("title", ""),
                "text": "",
            }
            self.spans.append(self._open)

    def handle_endtag(self, tag):
        if tag == "span":
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data


def spans_of(markup: str) -> list[dict]:
    parser = Spans()
    parser.feed(markup)
    return parser.spans


def _state(step, tokens, masked, fixed, committed=(), remasked=(), prob=None, answer_end=None, prompt_length=2):
    n = len(tokens)
    return StepState(
        step=step,
        block=0,
        tokens=np.asarray(tokens, dtype=np.int64),
        masked=np.asarray(masked, dtype=bool),
        fixed=np.asarray(fixed, dtype=bool),
        prompt_length=prompt_length,
        committed=np.asarray(committed, dtype=np.int64),
        remasked=np.asarray(remasked, dtype=np.int64),
        confidence=np.full(n, np.nan) if prob is None else np.asarray(prob, dtype=np.float64),
        prob=np.full(n, np.nan) if prob is None else np.asarray(prob, dtype=np.float64),
        proposal=np.full(n, -1, dtype=np.int64),
        nfe=step,
        elapsed=0.01 * step,
        answer_end=n if answer_end is None else answer_end,
    )


def hand_made_view() -> RunView:
    """prompt "P\\n" then 4 slots; step 1 writes 2 and 3, step 2 re-masks 3 and writes 4, step 3
    writes 3 and an end-of-text at 5 (so nothing follows it)."""
    texts = {0: "P", 1: "\n", 2: HOSTILE, 3: "a\nb", 4: " ", 5: "<eos>", 9: "[M]"}
    fixed = [True, True, False, False, False, False]
    p = [np.nan, np.nan, 0.95, 0.3, 0.5, 0.7]
    states = [
        _state(0, [0, 1, 9, 9, 9, 9], [0, 0, 1, 1, 1, 1], fixed),
        _state(1, [0, 1, 2, 3, 9, 9], [0, 0, 0, 0, 1, 1], fixed, committed=[2, 3], prob=p),
        _state(2, [0, 1, 2, 9, 4, 9], [0, 0, 0, 1, 0, 1], fixed, committed=[4], remasked=[3], prob=p),
        _state(3, [0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 0], fixed, committed=[3, 5], prob=p, answer_end=5),
    ]
    from dlm_core.viz import RunMeta

    meta = RunMeta(
        model="hand",
        model_kind="diffusion",
        prompt="P\n",
        config={"strategy": "low_confidence", "steps": 3},
        mask_id=9,
        eos_ids=(5,),
        expected_steps=3,
    )
    return RunView(meta, texts.__getitem__, states)


@pytest.fixture(scope="module")
def tiny_trajectory() -> Trajectory:
    from dlm_core.models import tiny_random_model

    config = SamplerConfig(gen_length=24, steps=12, record_topk=True, temperature=0.8, remask="cap", eta=0.3, seed=5)
    return record(tiny_random_model(), f"{HOSTILE}\n[MASK:3] end", config)


# -- canvas -----------------------------------------------------------------------------------------


def test_canvas_escapes_hostile_text_everywhere():
    view = hand_made_view()
    for step in range(4):
        for detail in (False, True):
            markup = canvas_html(view, step, detail=detail)
            assert "<img" not in markup and "<script" not in markup
            assert "onerror=alert" not in markup.replace("onerror=alert(1)&gt;", "")  # only as escaped text
    markup = canvas_html(view, 1)
    span = spans_of(markup)[2]
    assert span["text"] == HOSTILE  # the parser unescapes: the exact text, shown as text
    assert html.escape(HOSTILE, quote=False) in markup
    assert "&amp;amp;" in markup  # a literal "&amp;" in a token is escaped again, not interpreted


def test_canvas_marks_prompt_masks_new_commits_and_remasks():
    view = hand_made_view()
    first = spans_of(canvas_html(view, 0))
    assert [s["i"] for s in first] == list(range(6))
    assert {"p"} <= first[0]["classes"] and {"p"} <= first[1]["classes"]
    assert all("m" in s["classes"] for s in first[2:])
    assert all(s["text"] == MASK_GLYPH for s in first[2:])

    step1 = spans_of(canvas_html(view, 1))
    assert "n" in step1[2]["classes"] and "n" in step1[3]["classes"]  # written this step
    assert "q4" in step1[2]["classes"]  # 95 % -> top bin
    assert "q1" in step1[3]["classes"]  # 30 % -> second bin
    assert "m" in step1[4]["classes"] and "n" not in step1[4]["classes"]

    step2 = spans_of(canvas_html(view, 2))
    assert {"m", "r"} <= step2[3]["classes"]  # re-masked in this step
    assert "it was" in step2[3]["title"]
    assert "n" not in step2[2]["classes"]  # step 1's commit is no longer new
    assert "n" in step2[4]["classes"]

    step3 = spans_of(canvas_html(view, 3))
    # Written again after a re-mask, but the same token it lost: no revision, so no revision mark
    # (issue 13: in the ReMDM example 42 of 48 positions were re-masked, 11 came back different).
    assert "n" in step3[3]["classes"] and "v" not in step3[3]["classes"]
    assert "written back the same" in step3[3]["title"]
    assert "e" in step3[5]["classes"]  # the end-of-text token


def test_canvas_marks_a_revision_only_where_the_token_changed():
    view = hand_made_view()
    states = list(view.states)
    last = states[3]
    tokens = np.asarray(last.tokens).copy()
    tokens[3] = 4  # written back as a different token
    states[3] = _state(3, tokens.tolist(), [0] * 6, last.fixed.tolist(), committed=[3, 5],
                       prob=last.prob.tolist(), answer_end=5)
    revised = RunView(view.meta, view._token_text, states)
    span = spans_of(canvas_html(revised, 3))[3]
    assert {"n", "v"} <= span["classes"]
    assert "revised: it was" in span["title"]
    assert revised.frame(3).revised.tolist() == [False, False, False, True, False, False]
    assert revised.frame(2).revised.tolist() == [False] * 6  # masked at step 2: nothing revised yet


def test_canvas_coalesced_frame_highlights_everything_since_last_frame():
    view = hand_made_view()
    spans = spans_of(canvas_html(view, 2, since=0))
    assert "n" in spans[2]["classes"] and "n" in spans[4]["classes"]  # steps 1 and 2
    assert "n" not in spans[3]["classes"]  # written at 1, re-masked at 2: it is a mask now
    assert "1 new" not in canvas_html(view, 2, since=0)


def test_canvas_keeps_newlines_and_whitespace():
    view = hand_made_view()
    markup = canvas_html(view, 3)
    spans = spans_of(markup)
    assert spans[1]["text"] == "\u21b5\n"  # a visible return sign, then the real line break
    assert spans[3]["text"] == "a\u21b5\nb"
    assert spans[4]["text"] == " "  # a space token stays a space (pre-wrap)
    css = (VIZ_DIR / "canvas.css").read_text()
    assert re.search(r"\.dc-text\s*\{[^}]*white-space:\s*pre-wrap", css)


def test_canvas_marks_text_after_end_of_text():
    from dlm_core.viz import RunMeta

    texts = {0: "A", 1: "b", 2: "c", 5: "<eos>", 9: "?"}
    fixed = [True, False, False, False, False]
    p = [np.nan, 0.9, 0.9, 0.9, 0.9]
    states = [
        _state(0, [0, 9, 9, 9, 9], [0, 1, 1, 1, 1], fixed, prompt_length=1),
        _state(1, [0, 1, 5, 2, 9], [0, 0, 0, 0, 1], fixed, committed=[1, 2, 3], prob=p, answer_end=2, prompt_length=1),
    ]
    meta = RunMeta("m", "diffusion", "A", {"steps": 2}, 9, (5,), 2)
    spans = spans_of(canvas_html(RunView(meta, texts.__getitem__, states), 1))
    assert "e" in spans[2]["classes"] and "end of text" in spans[2]["title"]
    assert "x" in spans[3]["classes"] and "not part of the answer" in spans[3]["title"]
    assert "x" in spans[4]["classes"] and "m" in spans[4]["classes"]  # a mask after the end, also marked
    assert "x" not in spans[1]["classes"]


def test_detail_tooltips_show_top_candidates(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    live = canvas_html(view, 3)
    detailed = canvas_html(view, 3, detail=True)
    assert "top guesses" not in live
    assert "top guesses" in detailed
    assert len(detailed) > len(live)


def test_inspector_and_stats(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    slot = int(np.flatnonzero(~tiny_trajectory.states[0].fixed)[0])
    markup = inspector_html(view, 2, slot)
    assert "Top guesses" in markup and markup.count("dc-cand") == 5
    assert "<img" not in inspector_html(view, 2, 0)  # the hostile prompt token, escaped
    assert "Click any token" in inspector_html(view, 2, None)
    table = stats_html(view)
    for label in ("Steps", "Forward passes (NFE)", "Tokens per forward pass", "Model time", "Tokens per second"):
        assert label in table
    assert "Paused" not in table  # a recorded run: its time is all model time
    legend = legend_html()
    for word in ("masked", "written this step", "re-masked", "your prompt", "end of text", "80–100%"):
        assert word in legend


def test_view_matches_trajectory_derived_views(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    last = view.frame()
    last_commit = np.full(tiny_trajectory.length, -1)
    for state in tiny_trajectory.states[1:]:
        last_commit[state.committed] = state.step
    assert np.array_equal(last.commit_step, last_commit)
    for step, streamed in enumerate(view.iter_frames()):  # scrubbing replays the history exactly
        scrubbed = view.frame(step)
        assert scrubbed.step == streamed.step == step
        assert np.array_equal(scrubbed.commit_step, streamed.commit_step)
        assert np.array_equal(scrubbed.commit_prob, streamed.commit_prob, equal_nan=True)
        assert np.array_equal(scrubbed.remask_count, streamed.remask_count)
    final = view.final
    assert "".join(view.token_text(t) for t in final.tokens[: final.answer_end]) == tiny_trajectory.final_text


# -- heatmap ------------------------------------------------------------------------------------------


def expected_cells(trajectory, upto=None) -> np.ndarray:
    """What the heatmap should show, cell by cell: grey-masked, the written token's latest reading, blank prompt."""
    from dlm_core.viz.view import MASKED_CELL

    states = trajectory.states[: (upto + 1) if upto is not None else None]
    slots = np.flatnonzero(~states[0].fixed)
    columns = range(int(slots[0]), int(slots[-1]) + 1)
    rows = []
    for step, state in enumerate(states):
        row = []
        for column, position in enumerate(columns):
            if state.fixed[position]:
                row.append(np.nan)
            elif state.masked[position]:
                row.append(MASKED_CELL)
            elif not np.isnan(state.prob[position]):
                row.append(state.prob[position])
            else:  # not read in this step: the last reading since it was written
                before = rows[step - 1][column] if step else np.nan
                row.append(np.nan if before == MASKED_CELL else before)
        rows.append(row)
    return np.asarray(rows)


def test_heatmap_cells_show_masked_grey_and_written_probability(tiny_trajectory):
    from dlm_core.viz.heatmap import COLORSCALE, MASK_COLOUR, ZMIN
    from dlm_core.viz.view import MASKED_CELL

    view = RunView.from_trajectory(tiny_trajectory)
    figure = heatmap_dict(view)
    z = decode_z(figure)
    slots = np.flatnonzero(~tiny_trajectory.states[0].fixed)
    assert z.shape == (tiny_trajectory.num_steps + 1, int(slots[-1] - slots[0] + 1))
    assert np.allclose(z, expected_cells(tiny_trajectory), equal_nan=True, atol=1e-6)
    prompt = np.isnan(z[0])  # an infill's given text between the blanks: blank columns
    assert np.array_equal(prompt, tiny_trajectory.states[0].fixed[slots[0] : slots[-1] + 1])
    assert (z[0][~prompt] == MASKED_CELL).all()  # every slot starts masked
    assert not (z[-1] == MASKED_CELL).any()  # a finished run has none left
    assert figure["data"][0]["x0"] == int(slots[0])
    partial = decode_z(heatmap_dict(view, upto=4))
    assert partial.shape[0] == 5 and np.allclose(partial, expected_cells(tiny_trajectory, 4), equal_nan=True)
    y_range = figure["layout"]["yaxis"]["range"]
    assert y_range[0] > y_range[1]  # time flows down; fixed to the step budget
    # The colour scale: the masked value lands in a grey band of its own; no probability reaches it.
    trace = figure["data"][0]
    assert trace["zmin"] == ZMIN < MASKED_CELL < 0 and trace["zmax"] == 1
    masked_at = (MASKED_CELL - ZMIN) / (1 - ZMIN)
    band = [stop for stop in COLORSCALE if stop[0] <= (0 - ZMIN) / (1 - ZMIN)]
    assert all(colour == MASK_COLOUR for position, colour in band if position <= masked_at)
    confidence_colours = {colour for position, colour in COLORSCALE if position > (0 - ZMIN) / (1 - ZMIN)}
    assert MASK_COLOUR not in confidence_colours and confidence_colours == {bg for bg, _ in PALETTE}
    # The colour bar names every colour, the masked grey first.
    assert trace["colorbar"]["ticktext"][0] == "masked" and len(trace["colorbar"]["ticktext"]) == 1 + len(PALETTE)
    names = [t.get("name") for t in figure["data"] if t.get("showlegend")]
    assert "masked (not written yet)" in names
    if any(len(s.remasked) for s in tiny_trajectory.states):
        assert MARKS["re-masked"]["legend"] in names
    assert all("<img" not in text for trace in figure["data"][1:] for text in trace.get("text", []))


def test_heatmap_ticks_are_whole_steps_and_positions():
    from dlm_core.viz.heatmap import nice_dtick

    for span in (1, 2, 3, 5, 7, 9, 13, 33, 64, 100, 257, 2049):
        dtick = nice_dtick(span)
        assert isinstance(dtick, int) and dtick >= 1 and span / dtick <= 8
    view = hand_made_view()
    layout = heatmap_dict(view)["layout"]
    for axis in ("xaxis", "yaxis"):
        assert layout[axis]["tickmode"] == "linear" and isinstance(layout[axis]["dtick"], int)
        assert layout[axis]["tickformat"] == "d" and layout[axis]["tick0"] == 0
    assert layout["margin"]["t"] >= 24  # room above step 0 for the legend: nothing sits on the "0"


def test_heatmap_tooltips_name_the_token_its_state_and_probability(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    figure = heatmap_dict(view)
    texts = figure["data"][0]["text"]
    assert figure["data"][0]["hovertemplate"] == "%{text}<extra></extra>"
    final = tiny_trajectory.final
    column = int(np.flatnonzero(~final.fixed)[0])
    last = texts[-1][column - view.x0]
    token = html.escape(visible(view.token_text(int(final.tokens[column]))))
    assert last.startswith(token) and "written at step" in last and "%" in last
    first = texts[0][column - view.x0]
    assert first.startswith("masked")
    # Streaming leaves the per-cell text out (the figure is sent several times a second).
    assert "text" not in heatmap_dict(view, detail=False)["data"][0]


def test_heatmap_is_valid_plotly_and_compact(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    figure = heatmap_dict(view, cursor=2)
    figure.pop("config", None)  # gradio's plot options, not part of plotly's figure schema
    go.Figure(figure)  # plotly validates every property name and value
    text = to_json(heatmap_dict(view))
    json.loads(text)
    assert '"bdata"' in text and "hovertemplate" in text
    assert len(text) < 40_000


def test_heatmap_of_a_huge_run_is_thinned():
    from dlm_core.viz import RunMeta
    from dlm_core.viz.heatmap import MAX_SIDE

    n, steps = 4, 2 * MAX_SIDE + 10
    fixed = [True, False, False, False]
    states = [_state(0, [0, 9, 9, 9], [0, 1, 1, 1], fixed, prompt_length=1)]
    for step in range(1, steps + 1):  # a long run that commits its 3 slots at the very end
        done = step == steps
        tokens = [0, 1, 1, 1] if done else [0, 9, 9, 9]
        masked = [0, 0, 0, 0] if done else [0, 1, 1, 1]
        prob = [np.nan, 0.5, 0.6, 0.7]
        states.append(
            _state(step, tokens, masked, fixed, committed=[1, 2, 3] if done else [], prob=prob, prompt_length=1)
        )
    view = RunView(
        RunMeta("m", "diffusion", "", {"steps": steps}, 9, (), steps), {0: "a", 1: "b", 9: "?"}.__getitem__, states
    )
    figure = heatmap_dict(view)
    z = decode_z(figure)
    assert z.shape[0] <= MAX_SIDE and z.shape[1] == n - 1
    assert figure["data"][0]["dy"] == 3
    assert "text" not in figure["data"][0]  # no per-cell tooltips for a thinned matrix


def test_heatmap_cursor_shapes():
    view = hand_made_view()
    shapes = heatmap_dict(view, cursor=1)["layout"]["shapes"]
    assert shapes[0]["y0"] == 1.5 and shapes[0]["y1"] > 3 and shapes[1]["y0"] == 1  # steps 2-3 veiled
    shapes = heatmap_dict(view)["layout"]["shapes"]
    assert shapes[0]["y0"] == shapes[0]["y1"] == 3.5  # at the newest step nothing is veiled


# -- export -------------------------------------------------------------------------------------------


def test_standalone_html_is_offline_and_complete(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    page = standalone_html(view)
    assert page.startswith("<!DOCTYPE html>")
    assert "plotly.js v" in page[:6_000_000]  # the bundle, inline
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?:", page, re.IGNORECASE)
    assert "<img src=x" not in page  # the hostile prompt is escaped in markup and in the JSON data
    data = re.search(r'<script type="application/json" id="dc-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data
    payload = json.loads(data)
    assert payload["last"] == tiny_trajectory.num_steps
    assert len(payload["deltas"]) == tiny_trajectory.num_steps  # every frame
    assert len(payload["status"]) == tiny_trajectory.num_steps + 1
    # replaying the deltas gives exactly the canvas of each step
    spans = list(payload["spans0"])
    for step, delta in enumerate(payload["deltas"], start=1):
        for position, span in delta:
            spans[position] = span
        if step in (1, tiny_trajectory.num_steps // 2, tiny_trajectory.num_steps):
            direct = canvas_html(view, step)
            assert "".join(spans) in direct
    assert payload["topk"] is not None and len(payload["topk"]) == tiny_trajectory.num_steps + 1
    figure = json.loads(re.search(r'id="dc-figure">(.*?)</script>', page, re.S).group(1))
    assert decode_z(figure).shape[0] == tiny_trajectory.num_steps + 1


# -- hand edits -----------------------------------------------------------------------------------------


def test_edit_prompt_masks_picked_tokens_and_escapes_literals():
    from dlm_core.viz import RunMeta

    texts = {0: "Say ", 1: "[MASK", 2: "] ", 3: "now", 4: "!", 9: "?"}
    fixed = [True, True, True, False, False]
    states = [
        _state(0, [0, 1, 2, 9, 9], [0, 0, 0, 1, 1], fixed, prompt_length=3),
        _state(
            1,
            [0, 1, 2, 3, 4],
            [0, 0, 0, 0, 0],
            fixed,
            committed=[3, 4],
            prob=[np.nan] * 3 + [0.5, 0.5],
            prompt_length=3,
        ),
    ]
    view = RunView(RunMeta("m", "diffusion", "", {"steps": 1}, 9, (), 1), texts.__getitem__, states)
    prompt, slots = edit_prompt(view, [3])
    assert prompt == "Say \\[MASK] [MASK]!" and slots == 1
    segments = parse_prompt(prompt)
    assert [s.masks for s in segments] == [0, 1, 0]
    assert segments[0].text == "Say [MASK] "
    prompt, slots = edit_prompt(view, [3, 4])
    assert prompt.endswith("[MASK:2]") and slots == 2
    with pytest.raises(EditError):
        edit_prompt(view, [0])  # a prompt token cannot be picked


def test_edit_prompt_round_trip_with_the_sampler(tiny_trajectory):
    from dlm_core.models import tiny_random_model

    view = RunView.from_trajectory(tiny_trajectory)
    final = tiny_trajectory.final
    picked = [int(i) for i in np.flatnonzero(~final.fixed)[:2]]
    prompt, slots = edit_prompt(view, picked)
    rerun = record(tiny_random_model(), prompt, SamplerConfig(gen_length=0, steps=slots))
    kept = [i for i in range(final.answer_end) if i not in picked]
    assert rerun.final.length == final.answer_end  # char model: one token per character, same canvas
    assert all(rerun.final.tokens[i] == final.tokens[i] for i in kept)


# -- the update rule -------------------------------------------------------------------------------------


def test_update_policy_throttles_and_always_sends_first_and_last():
    now = [0.0]
    policy = UpdatePolicy(clock=lambda: now[0])
    sent = []
    for step in range(200):
        now[0] = step * 0.002  # a step every 2 ms
        canvas, heatmap = policy.decide(step, 256 * (step + 1), final=step == 199)
        sent.append((canvas, heatmap))
        if canvas:
            policy.mark_shown(step)
    assert sent[0] == (True, True) and sent[-1] == (True, True)
    canvases = sum(c for c, _ in sent)
    heatmaps = sum(h for _, h in sent)
    assert 10 <= canvases <= 16  # 0.4 s at <= 30 frames/s (+ first and last)
    assert heatmaps <= 4  # >= 0.25 s apart
    slow = UpdatePolicy(clock=lambda: now[0])
    frames = 0
    for step in range(50):
        now[0] = step * 0.05  # a step every 50 ms: every step is shown
        frames += slow.decide(step, 100)[0]
    assert frames == 50


def test_viz_imports_neither_torch_nor_gradio():
    for path in VIZ_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root not in ("torch", "gradio"), f"{path.name} imports {name}"
                assert not name.startswith("dlm_core.sampler"), f"{path.name} imports {name}"


def test_race_charts_share_one_layout():
    from dlm_core.speed import speedup_curve
    from dlm_core.viz import bench_figure, chart_layout, frontier_dict
    from dlm_core.viz.race_explain import speedup_figure

    rows = [{"model": "m", "setting": "s", "tokens_per_forward": 2.0, "gen_ppl_under_ar": 9.0}]
    figures = [
        bench_figure([{"method": "ar+kv", "length": 32, "median_s": 0.5}], "t"),
        speedup_figure({"dual": speedup_curve(8, 64, "dual")}),
        frontier_dict({"rows": rows}),
    ]
    shared = ("margin", "legend", "paper_bgcolor", "plot_bgcolor")
    for figure in figures:
        assert {key: figure["layout"][key] for key in shared} == {key: chart_layout("", "", "")[key] for key in shared}
        go.Figure(figure)  # plotly validates every property
    assert figures[0]["layout"]["xaxis"]["type"] == figures[0]["layout"]["yaxis"]["type"] == "log"
    assert "type" not in figures[2]["layout"]["yaxis"]  # perplexity on a linear axis
    assert chart_layout(HOSTILE, HOSTILE, "y")["title"]["text"] == html.escape(HOSTILE)


def test_bench_figure_one_sorted_line_per_method_and_names_missing_keys():
    rows = [{"method": "thr+dual", "length": 128, "median_s": 2.0}, {"method": "ar+kv", "length": 64, "median_s": 0.4},
            {"method": "thr+dual", "length": 32, "median_s": 0.6}, {"method": "ar+kv", "length": 32, "median_s": 0.2}]
    from dlm_core.viz import bench_figure

    figure = bench_figure(rows, "t")
    lines = {trace["name"]: (trace["x"], trace["y"]) for trace in figure["data"]}
    assert lines == {"thr+dual": ([32, 128], [0.6, 2.0]), "ar+kv": ([32, 64], [0.2, 0.4])}
    with pytest.raises(ValueError, match="rows\\[1\\] has no 'median_s'"):
        bench_figure([rows[0], {"method": "x", "length": 1}], "t")


def test_yardstick_says_the_ar_lanes_cost_per_step():
    from dlm_core.speed import LaneCost
    from dlm_core.viz.race_explain import yardstick_html

    assert "10.0 ms per step here (mean of 4 steps)" in yardstick_html(LaneCost(4, 4, 0.04, 0.03))
    assert "(mean of 1 step)" in yardstick_html(LaneCost(1, 1, 0.002, 0.001))


def _percents(markup: str) -> tuple[str, list[tuple[str, str]]]:
    """(the inspector's headline, [(class, percent) of each bar])."""
    head = re.search(r'<div class="dc-head">(.*?)</div>', markup).group(1)
    bars = re.findall(r'<li class="dc-cand( chosen)?">.*?<span class="dc-p">([^<]*)</span>', markup)
    return html.unescape(head), bars


def test_inspector_says_one_number_per_written_token(tiny_trajectory):
    """Issue 13: "written ... with 100% confidence" beside a 98 % bar. The headline's probability and
    the chosen token's bar are the same reading (the step that wrote it), to the digit."""
    view = RunView.from_trajectory(tiny_trajectory)
    final = view.frame()
    checked = 0
    for position in np.flatnonzero(~final.fixed & ~final.masked).tolist():
        for step in (view.last_step, int(final.commit_step[position])):
            head, bars = _percents(inspector_html(view, step, position))
            sure = re.search(r"when the model was (\S+%) sure", head).group(1)
            chosen = [p for mark, p in bars if mark]
            assert chosen == [sure], (position, step, head, bars)
            checked += 1
    assert checked >= 10


def test_inspector_shows_a_masked_slots_guess_and_explains_the_score(tiny_trajectory):
    view = RunView.from_trajectory(tiny_trajectory)
    frame = view.frame(1)
    masked = [p for p in np.flatnonzero(frame.masked).tolist() if frame.proposal[p] >= 0]
    assert masked
    position = masked[0]
    markup = inspector_html(view, 1, position)
    head, bars = _percents(markup)
    guess = visible(view.token_text(int(frame.proposal[position])))
    assert f"guess for it now: {guess}" in head
    assert f"{percent(float(frame.prob[position]))} sure" in head
    assert "Strategy score:" in markup and "probability of its guess" in markup  # low_confidence, in words
    assert "0.000" not in markup


def test_stats_report_model_time_apart_from_pauses(tiny_trajectory):
    """Step mode: the teacher's pauses are not model time (a short run read 7.36 s and 9 tokens/s)."""
    view = RunView(
        RunView.from_trajectory(tiny_trajectory).meta, lambda i: str(i), ()
    )
    for state in tiny_trajectory.states:
        view.add(state, model_seconds=0.01 * state.step)  # the model's own time: 10 ms a step
    paused = replace(tiny_trajectory.states[-1], elapsed=5.0 + tiny_trajectory.states[-1].elapsed)
    assert paused.elapsed > 5
    stats = view.stats()
    assert stats["model_seconds"] == pytest.approx(0.01 * view.last_step)
    written = int((~view.final.fixed & ~view.final.masked).sum())
    assert stats["tokens_per_second"] == pytest.approx(written / stats["model_seconds"])
    long = RunView(view.meta, lambda i: str(i), ())
    for state in tiny_trajectory.states[:-1]:
        long.add(state, model_seconds=0.01 * state.step)
    long.add(paused, model_seconds=0.01 * paused.step)
    table = stats_html(long)
    assert "Paused (waiting for Step)" in table and f"{0.01 * paused.step:.2f} s" in table


def test_a_stopped_runs_text_shows_masks_as_the_glyph():
    from dlm_core.models import tiny_random_model
    from dlm_core.sampler import denoise
    from dlm_core.trajectory import TrajectoryBuilder

    tiny = tiny_random_model()

    class RawMaskTokenizer:  # the tiny model, decoding its mask as real tokenizers do
        def __getattr__(self, name):
            return getattr(tiny, name)

        def decode(self, ids):
            return "".join("<|mask|>" if i == tiny.mask_id else tiny.decode([i]) for i in ids)

    model = RawMaskTokenizer()
    config = SamplerConfig(gen_length=12, steps=6, record_topk=True)
    builder = TrajectoryBuilder(model, "ROMEO:\n", config)
    states = denoise(tiny, "ROMEO:\n", config)
    for _ in range(3):  # stopped after two of six steps
        builder.add(next(states))
    trajectory = builder.build()
    masked = int(trajectory.final.masked.sum())
    assert masked > 0
    assert "<|mask|>" not in trajectory.final_text and trajectory.final_text.count(MASK_GLYPH) == masked
    assert trajectory.final_text.startswith("ROMEO:\n")
    written = [tiny.decode([i]) for i in trajectory.final.text_ids() if i != tiny.mask_id]
    assert trajectory.final_text.replace(MASK_GLYPH, "") == "".join(written)
