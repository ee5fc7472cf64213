"""The Race tab: the AR twin vs the diffusion model, or four diffusion strategies side by side
(``dlm_core.race``: each lane timed on its own clock), and the stored time-vs-length benchmark."""

from __future__ import annotations

import html
import json
import time
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from dlm_core.models import registry
from dlm_core.race import Lane, LaneState, race
from dlm_core.sampler import SamplerConfig
from dlm_core.sampler.config import MAX_SEED
from dlm_core.viz import RunView, canvas_html, empty_canvas_html, heatmap_dict

from . import ASSETS
from .errors import guarded, read_input, user_error
from .limits import INFERENCE_CONCURRENCY, MAX_PROMPT_CHARS, MAX_RUN_SECONDS
from .models import FALLBACK_MODEL, default_model_key, get_model, model_note_html
from .settings import CACHE_CHOICES, STRATEGY_LABELS, named_field
from .streaming import plot

RACE_LANES = 4
RACE_STRATEGIES = ("left_to_right", "low_confidence", "random", "threshold")
RACE_FRAME_SECONDS = 0.1  # at most ~10 canvas updates a second per race: the eye needs no more
BENCH_JSON = ASSETS / "bench.json"


def race_lanes(mode: str, prompt: str, length: int, cache: str, threshold: float, temperature: float, seed: int):
    """The contestants: (lane, note) for the chosen mode; models through the registry like the Canvas tab."""
    block = min(32, length)
    diffusion, note = get_model(default_model_key())
    common = {"gen_length": length, "temperature": temperature, "top_p": 0.95 if temperature > 0 else None, "seed": seed}
    threshold_config = SamplerConfig(
        **common, steps=length, block_length=block, strategy="threshold", threshold=threshold,
        cache=None if cache == "off" else cache,
    )
    if mode == "ar":
        if diffusion.name == registry.load_model(FALLBACK_MODEL).name:
            from dlm_core.models import tiny_random_model

            ar, ar_note = tiny_random_model(causal=True), ""  # the untrained pair, for tests and toys
        else:
            ar, ar_note = get_model("canvas-ar")
        cache_text = {"off": "no cache", "prefix": "prefix cache", "dual": "dual cache"}[cache]
        lanes = [
            Lane("Autoregressive twin · one token per forward pass (KV cache)", ar, prompt,
                 SamplerConfig(**common, strategy="left_to_right")),
            Lane(f"Diffusion · confidence threshold {threshold:g}, blocks of {block}, {cache_text}", diffusion, prompt,
                 threshold_config),
        ]
        return lanes, note or ar_note
    lanes = []
    for name in RACE_STRATEGIES:
        if name == "threshold":
            config = threshold_config
        else:
            config = SamplerConfig(**common, steps=length, block_length=None, strategy=name)
        lanes.append(Lane(f"{STRATEGY_LABELS.get(name, name)} · {name}", diffusion, prompt, config))
    return lanes, note


def race_lane_html(lane: Lane, view: RunView, lane_state: LaneState, finish_rank: int | None) -> str:
    """A lane's header (label, own compute time, NFE, tokens/s, finishing place) and its live canvas."""
    state = lane_state.state
    written = int((~state.fixed).sum() - state.masked.sum())
    seconds = lane_state.seconds
    rate = written / seconds if seconds > 0 else 0.0
    place = ""
    if finish_rank is not None:
        place = f'<span class="dc-badge done">{"finished first" if finish_rank == 0 else f"finished #{finish_rank + 1}"}</span> '
    stats = (
        f"{seconds:.2f} s · {state.nfe} forward passes · {written} tokens · "
        f"{written / state.nfe if state.nfe else 0:.2f} tokens per pass · {rate:.0f} tokens/s"
    )
    canvas = canvas_html(view, titles=False)
    return (
        f'<div class="dc-race-lane"><div class="dc-race-head">{place}<b>{html.escape(lane.label)}</b></div>'
        f'<div class="dc-race-stats">{html.escape(stats)}</div>{canvas}</div>'
    )


def bench_figure(rows: list[dict], title: str) -> dict:
    """Median wall time vs generation length, one line per method (log-log)."""
    methods: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        methods.setdefault(row["method"], []).append((row["length"], row["median_s"]))
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": method, "x": [p[0] for p in points],
         "y": [p[1] for p in points], "hovertemplate": "%{x} tokens: %{y:.2f} s<extra>" + html.escape(method) + "</extra>"}
        for method, points in methods.items()
    ]
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": "generated tokens"}, "type": "log"},
        "yaxis": {"title": {"text": "seconds (median)"}, "type": "log"},
        "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
        "height": 340,
        "legend": {"orientation": "h", "y": -0.25},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    return {"data": data, "layout": layout}


def stored_bench_plot() -> PlotData | None:
    if not BENCH_JSON.is_file():
        return None
    report = json.loads(BENCH_JSON.read_text(encoding="utf-8"))
    return plot(bench_figure(report["rows"], f"Measured by python -m dlm_core.bench on {report['machine']}"))


def create_ui() -> dict[str, Any]:
    """The Race tab's layout; its components by name."""
    c: dict[str, Any] = {}
    gr.Markdown(
        "### Which writes faster: one token at a time, or many at once?\n"
        "The **autoregressive twin** (same size, same data) writes one token per pass through the network. "
        "The **diffusion model** may commit several tokens per pass when it is confident enough, and a "
        "**cache** lets it skip recomputing text that has not changed. Both run on this machine in turns, "
        "each timed on its own clock, so the lane that finishes first is the one that would finish first alone."
    )
    with gr.Row():
        c["prompt"] = gr.Textbox("ROMEO:\n", label="Prompt", lines=2, max_lines=6, scale=3,
                                 info="Both contestants continue this text.")
        c["mode"] = gr.Radio(
            [("Autoregressive twin vs diffusion", "ar"), ("Four diffusion strategies", "strategies")],
            value="ar", label="What races", scale=2,
            info="Strategies mode shows the different unmasking orders side by side.",
        )
    with gr.Row():
        c["length"] = named_field(gr.Slider, "race-length", 16, 512, value=128, step=16, label="Length",
                             info="Tokens each contestant writes.")
        c["threshold"] = named_field(gr.Slider, "race-threshold", 0.05, 1.0, value=0.5, step=0.05, label="Threshold",
                                   info="Diffusion commits every token it is at least this sure of (at least one per pass).")
        c["cache"] = gr.Radio(CACHE_CHOICES, value="dual", label="Diffusion cache",
                              info="Reuse the network's work on unchanged text (approximate; refreshed every block).")
        c["temperature"] = named_field(gr.Slider, "race-temperature", 0.0, 2.0, value=1.0, step=0.1, label="Temperature",
                                     info="0 = always the likeliest token; higher = more varied text.")
        c["seed"] = named_field(gr.Number, "race-seed", 0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                           info="Same seed, same race.")
    with gr.Row():
        c["go"] = gr.Button("Start the race", variant="primary")
        c["stop"] = gr.Button("Stop")
    c["note"] = gr.HTML("")
    c["lanes"] = []
    c["heats"] = []
    with gr.Row(equal_height=False):
        for index in range(RACE_LANES):
            with gr.Column(visible=index < 2, min_width=280) as column:
                lane = gr.HTML(empty_canvas_html("Press “Start the race”."))
                heat = gr.Plot(visible=False, show_label=False)
            c["lanes"].append((column, lane))
            c["heats"].append(heat)
    with gr.Accordion("Time vs generation length", open=True):
        c["bench_plot"] = gr.Plot(stored_bench_plot(), show_label=False)
        with gr.Row():
            c["measure"] = gr.Button("Measure here (AR twin vs diffusion, 32-128 tokens)")
        c["bench_note"] = gr.Markdown(
            "The stored figure comes from `python -m dlm_core.bench` (README); "
            "“Measure here” times both on this machine now (about half a minute)."
            if BENCH_JSON.is_file()
            else "No stored benchmark yet: press “Measure here” to time both on this machine now."
        )
    return c


def create_events(c: dict[str, Any]) -> None:
    """Start (streams every lane), Stop, and Measure here."""
    inputs = [c["prompt"], c["mode"], c["length"], c["threshold"], c["cache"], c["temperature"], c["seed"]]
    columns = [column for column, _ in c["lanes"]]
    lane_html = [lane for _, lane in c["lanes"]]

    @guarded
    def start(prompt, mode, length, threshold, cache, temperature, seed):
        # The inputs arrive unprocessed (``preprocess=False``): each is checked by its widget here.
        raw = (prompt, mode, length, threshold, cache, temperature, seed)
        prompt, mode, length, threshold, cache, temperature, seed = (
            read_input(component, value) for component, value in zip(inputs, raw, strict=True)
        )
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
            raise user_error("prompt", f"must be text of at most {MAX_PROMPT_CHARS} characters")
        lanes, note = race_lanes(mode, prompt, int(length), cache, float(threshold), float(temperature), int(seed or 0))
        views = [RunView.for_model(lane.model, lane.prompt, lane.config, label=lane.label) for lane in lanes]
        snapshots = race(lanes)
        finish: list[int] = []
        last_sent = 0.0
        visible_updates = [gr.update(visible=i < len(lanes)) for i in range(RACE_LANES)]
        hidden_heats = [gr.update(visible=False) for _ in range(RACE_LANES)]
        started = time.monotonic()
        for snapshot in snapshots:
            for index, (view, lane_state) in enumerate(zip(views, snapshot, strict=True)):
                if lane_state.state.step == len(view.states):
                    view.add(lane_state.state)
                if lane_state.done and index not in finish:
                    finish.append(index)
                    view.status = "done"
            if time.monotonic() - started > MAX_RUN_SECONDS:
                raise user_error("length", f"the race took longer than the {MAX_RUN_SECONDS:g} s limit per run; try fewer tokens")
            now = time.monotonic()
            if now - last_sent >= RACE_FRAME_SECONDS or len(finish) == len(lanes):
                last_sent = now
                htmls = [
                    race_lane_html(lane, view, lane_state, finish.index(i) if i in finish else None)
                    for i, (lane, view, lane_state) in enumerate(zip(lanes, views, snapshot, strict=True))
                ]
                htmls += [gr.update() for _ in range(RACE_LANES - len(lanes))]
                yield [model_note_html(lanes[-1].model, note) if note else "", *visible_updates, *htmls, *hidden_heats]
        heats = [gr.update(value=plot(heatmap_dict(view)), visible=True) for view in views]
        heats += [gr.update(visible=False) for _ in range(RACE_LANES - len(views))]
        yield [gr.update(), *[gr.update() for _ in columns], *[gr.update() for _ in lane_html], *heats]

    @guarded
    def measure():
        from dlm_core.bench import run_method

        ar, _ = get_model("canvas-ar")
        diffusion, note = get_model(default_model_key())
        if note:
            raise user_error("model", "the built-in models are not trained yet, so there is nothing meaningful to time")

        class Settings:  # the benchmark's own defaults, one run per length
            block, threshold, temperature, seed = 32, 0.5, 0.0, 0

        rows = []
        for length in (32, 64, 128):
            for method in ("ar+kv", "thr+dual"):
                _, seconds = run_method(method, ar, diffusion, "ROMEO:\n", length, Settings)
                rows.append({"length": length, "method": method, "median_s": seconds})
        return plot(bench_figure(rows, "Measured here just now (one run per point)")), "Measured on this machine just now."

    outputs = [c["note"], *columns, *lane_html, *c["heats"]]
    event = c["go"].click(
        start, inputs, outputs, api_name="race", preprocess=False,
        concurrency_limit=INFERENCE_CONCURRENCY, concurrency_id="inference",
    )
    c["stop"].click(None, None, None, cancels=[event])
    c["measure"].click(measure, None, [c["bench_plot"], c["bench_note"]], api_name="measure",
                       concurrency_limit=INFERENCE_CONCURRENCY, concurrency_id="inference")

