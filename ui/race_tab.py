"""The Race tab: a diffusion model vs its autoregressive twin, or five diffusion strategies side by
side (``dlm_core.race``: each lane timed on its own clock), each diffusion lane explaining, live, why
it wins or loses (``dlm_core.speed``: measured cost of a forward vs an AR step, the break-even tokens
per pass); after the race, a labelled projection of the same run on a large model and GPU; then the
stored time-vs-length benchmark and the quality-parallelism frontier."""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from dlm_core import bench, speed
from dlm_core.frontier import quality_shortfalls, reference_row
from dlm_core.models import registry
from dlm_core.models.builtin import serving_dtype
from dlm_core.race import Lane, LaneState, race
from dlm_core.sampler import SamplerConfig
from dlm_core.sampler.config import CACHE_MODES, CACHE_TEXT, MAX_SEED, SUFFIX_WINDOW
from dlm_core.sampler.config import SETTINGS as TABLE
from dlm_core.viz import RunView, canvas_html, empty_canvas_html, empty_heatmap_dict, heatmap_dict
from dlm_core.viz.charts import bench_figure
from dlm_core.viz.frontier import frontier_dict
from dlm_core.viz.race_explain import break_even_html, projection_html, speedup_figure, yardstick_html

from . import ASSETS
from .errors import guarded, read_input, user_error
from .limits import INFERENCE_CONCURRENCY, MAX_PROMPT_CHARS, MAX_RUN_SECONDS
from .models import FALLBACK_MODEL, default_model_key, get_model, model_note_html
from .settings import CACHE_CHOICES, STRATEGY_LABELS, named_field
from .streaming import plot

log = logging.getLogger("diffusion_canvas")

RACE_STRATEGIES = ("left_to_right", "low_confidence", "random", "threshold", "entropy_bound")
RACE_LANES = len(RACE_STRATEGIES)  # the most lanes a race has (strategies mode); the AR race has 2
RACE_FRAME_SECONDS = 0.1  # at most ~10 canvas updates a second per race: the eye needs no more
BENCH_JSON = ASSETS / "bench.json"
FRONTIER_JSON = ASSETS / "frontier.json"  # written by python benchmarks/frontier.py
DTYPE_TEXT = {"torch.bfloat16": ", bf16"}  # by str(dtype); float32, the default, goes unsaid
# The race's starting settings, in one place (the benchmark's frontier says where diffusion can win).
# Without a measured win: a fixed 4 tokens per pass at order randomness 0.1, the most the shipped model writes
# per pass while its text still meets the quality targets (runs/frontier.md; at the app's 0.2 its perplexity
# misses them), so the race shows how close it comes and why.
RACE_DEFAULTS = {"rule": "low_confidence", "length": 128, "threshold": 0.5, "gamma": 1.0, "per_step": 4,
                 "order_temperature": 0.1, "cache": "dual", "temperature": 1.0, "seed": 0}
# How the diffusion lane of an AR race picks how many tokens to commit per pass.
RACE_RULES = (("Confidence threshold (Fast-dLLM)", "threshold"), ("Entropy budget (EB-sampler)", "entropy_bound"),
              ("Fixed tokens per pass (LLaDA, most confident first)", "low_confidence"))
LANE_HEATMAP_HEIGHT = 200  # px: lanes and their heatmaps on one 1440 x 900 screen
LANE_HEATMAP_WAITING = "This lane's heatmap appears when the race ends:<br>one row per step, one column per position."
WAITING_HTML = '<div class="dc-race-explain">Measuring what one forward pass costs here…</div>'


@dataclass(frozen=True)
class RaceSetup:
    """The contestants and what the explanation needs: the AR lane's index (mode "ar"), or the AR
    twin itself (strategies mode: its step is timed on its own, between two race steps), and the
    diffusion lane whose projection is shown after the race."""

    lanes: list[Lane]
    note: str
    ar_lane: int | None
    ar_model: Any | None
    featured: int


def race_models() -> list[tuple[str, str]]:
    """(label, key) of every registered model that has an AR twin to race against."""
    return [(spec.display_name, spec.key) for spec in registry.list_models() if spec.ar_twin]


def default_race_model(winner: str | None = None) -> str:
    """The diffusion model a race starts with: the server's model when it was chosen (the
    environment names one with a twin, e.g. tiny-random in tests), else the model of the measured
    frontier's win (``winner``), else the registry's default."""
    keys = [key for _, key in race_models()]
    configured = default_model_key()
    if configured != registry.DEFAULT_MODEL and configured in keys:
        return configured
    for key in (winner, registry.DEFAULT_MODEL):
        if key in keys:
            return key
    return keys[0]


def raceable_cache(cache: str | None, meta: Mapping[str, Any]) -> bool:
    """Whether the race can decode with a frontier row's cache: any mode, but the window cache only with
    the suffix window the race uses (the config's default)."""
    return cache != "window" or meta.get("suffix_window", SUFFIX_WINDOW) == SUFFIX_WINDOW


def frontier_win(report: Mapping[str, Any], raceable: Sequence[str]) -> tuple[dict[str, Any], str | None, str]:
    """(race settings, model, sentence): where the measured frontier found a diffusion win over the
    AR twin (``speedup_vs_ar`` > 1) with a rule the race's diffusion lane can use (``RACE_RULES``),
    a model the race can run and text that meets the quality targets (``dlm_core.frontier``; a fast
    run that loops is no win), the fastest such win becomes the race's starting point, so the
    defaults show a win wherever the benchmark found one. Otherwise ``RACE_DEFAULTS``, no model,
    and a sentence saying no setting won."""
    meta = report.get("meta") or {}
    reference = reference_row(report)
    wins = [
        row for row in report.get("rows") or []
        if row.get("strategy") in [rule for _, rule in RACE_RULES] and row.get("model") in raceable and "value" in row
        and float(row.get("speedup_vs_ar", 0)) > 1 and (reference is None or not quality_shortfalls(row, reference))
        and raceable_cache(row.get("cache", meta.get("cache")), meta)
    ]
    if not wins:
        return dict(RACE_DEFAULTS), None, (
            "No setting in this frontier beat the autoregressive twin's wall time with text that meets the quality "
            f"targets on the machine that measured it; the race starts at {RACE_DEFAULTS['per_step']} tokens per pass, "
            "the most the built-in model writes per pass at that quality.")
    best = max(wins, key=lambda row: float(row["speedup_vs_ar"]))
    length = int(meta.get("length", RACE_DEFAULTS["length"]))
    settings = {
        **RACE_DEFAULTS,
        "length": min(512, max(16, round(length / 16) * 16)),  # the Length slider's range and step
        "rule": best["strategy"],
        "cache": cache if (cache := best.get("cache", meta.get("cache"))) in CACHE_MODES else "off",
        "temperature": min(2.0, max(0.0, float(meta.get("temperature", RACE_DEFAULTS["temperature"])))),
    }
    value = float(best["value"])
    if best["strategy"] == "low_confidence":  # the frontier's value is its tokens per step
        settings["per_step"] = min(16, max(1, round(value)))
        order = best.get("order_temperature", meta.get("order_temperature", RACE_DEFAULTS["order_temperature"]))
        settings["order_temperature"] = min(1.0, max(0.0, round(float(order), 2)))  # the slider's range and grid
    elif best["strategy"] == "threshold":  # onto the sliders' grids (0.05 and 0.1) and ranges
        settings["threshold"] = min(1.0, max(0.05, round(round(value / 0.05) * 0.05, 2)))
    else:
        settings["gamma"] = min(10.0, max(0.0, round(value, 1)))
    sentence = (
        f"The race starts where this frontier measured a diffusion win: {best['model']}, "
        f"{rule_text(settings['rule'], settings['threshold'], settings['gamma'], settings['per_step'], settings['order_temperature'])}, "
        f"{settings['length']} tokens, "
        f"{CACHE_TEXT[none_if_off(settings['cache'])]} "
        f"({float(best['speedup_vs_ar']):.2f}x the AR twin's speed on {meta.get('machine', 'the machine that measured it')})."
    )
    return settings, str(best["model"]), sentence


def race_start() -> tuple[dict[str, Any], str, str]:
    """(settings, model, note) the Race tab starts with, from the stored frontier when it has a win."""
    raceable = [key for _, key in race_models()]
    report = None
    if FRONTIER_JSON.is_file():
        try:
            report = json.loads(FRONTIER_JSON.read_text(encoding="utf-8"))
        except ValueError:
            report = None  # stored_frontier says what is wrong with the file
    if not isinstance(report, dict):
        return dict(RACE_DEFAULTS), default_race_model(), ""
    settings, winner, sentence = frontier_win(report, raceable)
    return settings, default_race_model(winner), sentence


def rule_text(rule: str, threshold: float, gamma: float, per_step: int = RACE_DEFAULTS["per_step"],
              order_temperature: float = RACE_DEFAULTS["order_temperature"]) -> str:
    """The diffusion lane's rule in words: "confidence threshold 0.5", "entropy budget γ 1" or
    "4 tokens per pass, most confident first (order randomness 0.1)"."""
    if rule == "low_confidence":
        order = f" (order randomness {order_temperature:g})" if order_temperature else ""
        return f"{per_step} tokens per pass, most confident first{order}"
    return f"confidence threshold {threshold:g}" if rule == "threshold" else f"entropy budget γ {gamma:g}"


def load_twin(key: str, fell_back: bool) -> Any:
    """The AR twin of model ``key`` (of the untrained test model if ``key`` fell back to it)."""
    spec = registry.get_spec(FALLBACK_MODEL if fell_back else key)
    if spec.ar_twin is None:
        names = ", ".join(name for _, name in race_models())
        raise user_error("model", f"{spec.display_name} has no autoregressive twin to race; choose one of {names}")
    twin, _ = get_model(spec.ar_twin)
    if twin.kind != "autoregressive":  # get_model fell back: the twin is a built-in not trained yet
        raise user_error("model", f"the autoregressive twin {spec.ar_twin} of {spec.display_name} is not trained yet")
    return twin


def none_if_off(cache: str) -> str | None:
    """The cache dropdown's value as the config's ("off" is None)."""
    return None if cache == "off" else cache


def race_dtype(key: str) -> Any:
    """The dtype the diffusion lane runs in: a built-in model in the one it decodes fastest in here
    (``serving_dtype``: bf16 for its passes where the CPU multiplies bf16 natively; the AR twin's
    one-token steps stay float32 on CPU); a hub model in the registry's default, so the race reuses
    the copy the Canvas tab loaded instead of loading a second one."""
    spec = registry.REGISTRY.get(key)
    return serving_dtype("diffusion") if spec is not None and spec.builtin else None


def race_lanes(mode: str, prompt: str, length: int, cache: str, threshold: float, temperature: float, seed: int,
               gamma: float = RACE_DEFAULTS["gamma"], model: str | None = None,
               rule: str = RACE_DEFAULTS["rule"], per_step: int = RACE_DEFAULTS["per_step"],
               order_temperature: float = RACE_DEFAULTS["order_temperature"]) -> RaceSetup:
    """The contestants for the chosen mode: the diffusion ``model`` (default: the app's) through the
    registry like the Canvas tab, and its AR twin as the registry names it (``ModelSpec.ar_twin``).
    In an AR race the diffusion lane commits by ``rule`` (``RACE_RULES``), in blocks, with ``cache``:
    adaptively (threshold, entropy_bound: ``steps`` is only a budget) or ``per_step`` tokens at every
    pass (low_confidence with ceil(length / per_step) steps at ``order_temperature``)."""
    block = min(32, length)
    key = model or default_model_key()
    dtype = race_dtype(key)
    diffusion, note = get_model(key, dtype=dtype)
    if diffusion.kind != "diffusion":
        raise user_error("model", f"{diffusion.name} is autoregressive: choose a diffusion model to race its twin")
    common = {"gen_length": length, "temperature": temperature, "top_p": 0.95 if temperature > 0 else None, "seed": seed}

    def blocked(strategy: str) -> SamplerConfig:  # a parallel rule, semi-autoregressive, with the cache
        if strategy == "low_confidence":
            fixed = {"steps": -(-length // per_step), "order_temperature": order_temperature}
        else:
            fixed = {"steps": length, "threshold": threshold, "gamma": gamma}
        return SamplerConfig(**common, **fixed, block_length=block, strategy=strategy,
                             cache=none_if_off(cache))

    if mode == "ar":
        ar = load_twin(key, bool(note))
        lanes = [
            Lane("Autoregressive twin · one token per forward pass (KV cache)", ar, prompt,
                 SamplerConfig(**common, strategy="left_to_right")),
            Lane(f"Diffusion · {rule_text(rule, threshold, gamma, per_step, order_temperature)}, blocks of {block}, "
                 f"{CACHE_TEXT[none_if_off(cache)]}{DTYPE_TEXT.get(str(dtype), '')}", diffusion,
                 prompt, blocked(rule)),
        ]
        return RaceSetup(lanes, note, ar_lane=0, ar_model=ar, featured=1)
    lanes = []
    for name in RACE_STRATEGIES:
        if name == "threshold":
            config = blocked("threshold")
        else:
            config = SamplerConfig(**common, steps=length, block_length=None, strategy=name, gamma=gamma)
        lanes.append(Lane(f"{STRATEGY_LABELS.get(name, name)} · {name}", diffusion, prompt, config))
    try:
        twin = load_twin(key, bool(note))
    except gr.Error:
        twin = None  # no AR twin: the lanes race each other without the break-even line
    return RaceSetup(lanes, note, ar_lane=None, ar_model=twin, featured=RACE_STRATEGIES.index("threshold"))


def written_tokens(state) -> int:
    """Generation slots a lane has written so far."""
    return int((~state.fixed).sum() - state.masked.sum())


def measured_ar_step_ms(setup: RaceSetup, snapshot: list[LaneState]) -> float | None:
    """Strategies mode: one step of the AR twin, timed on this machine between two steps of the race
    (no lane's clock runs meanwhile, so this does not tilt the race). None with an AR lane or no twin."""
    if setup.ar_lane is not None or setup.ar_model is None:
        return None
    state, lane = snapshot[0].state, setup.lanes[0]
    try:
        costs = speed.measure_forward_costs(lane.model, setup.ar_model, int((~state.fixed).sum()),
                                            prompt_tokens=max(1, int(state.prompt_length)))
    except ValueError as error:  # e.g. a canvas longer than the twin can read: race without the line
        log.info("race: no AR step cost (%s)", error)
        return None
    return costs.ar_step_ms


def lane_verdict(setup: RaceSetup, snapshot: list[LaneState], index: int, ar_step_ms: float | None) -> str:
    """The live line under lane ``index``: for a diffusion lane, what a forward costs here vs an AR
    step, the tokens per pass that break even and what this run does; for the AR lane, its cost per
    step (the yardstick)."""
    if index == setup.ar_lane:
        ar_cost = speed.lane_cost(snapshot[index].trace)
        return yardstick_html(ar_cost) if ar_cost.forwards else ""
    lane_state = snapshot[index]
    cost = speed.lane_cost(lane_state.trace, tokens=written_tokens(lane_state.state))
    if setup.ar_lane is not None:
        ar_state = snapshot[setup.ar_lane]
        ar_cost = speed.lane_cost(ar_state.trace, tokens=written_tokens(ar_state.state))
        if not (cost.forwards and cost.tokens and ar_cost.forwards and ar_cost.tokens):
            return WAITING_HTML
        return break_even_html(speed.race_break_even(cost, ar_cost), forwards=cost.forwards)
    if ar_step_ms is None:
        return ""
    if not (cost.forwards and cost.tokens):
        return WAITING_HTML
    verdict = speed.break_even(cost.model_ms_per_forward, ar_step_ms, cost.tokens_per_forward)
    return break_even_html(verdict, forwards=cost.forwards, ar_label="an AR twin step (timed on its own)")


def lane_projection(setup: RaceSetup, snapshot: list[LaneState], ar_step_ms: float | None) -> tuple[str, dict | None]:
    """After the race: the featured diffusion lane's trace re-timed on a large model and GPU (HTML,
    clearly labelled as a projection) and the projected speed-up figure; ("", None) if it did not finish."""
    index, lane = setup.featured, setup.lanes[setup.featured]
    lane_state = snapshot[index]
    state = lane_state.state
    length = int((~state.fixed).sum())
    against: dict[str, Any] = {}
    if setup.ar_lane is not None:
        ar_state = snapshot[setup.ar_lane]
        against = {"ar_trace": ar_state.trace, "ar_tokens": written_tokens(ar_state.state)}
    elif ar_step_ms is not None:
        against = {"ar_ms_per_forward": ar_step_ms}
    explanation = speed.explain_lane(
        lane_state.trace, tokens=written_tokens(state), prompt_tokens=max(1, int(state.prompt_length)), length=length,
        cache=lane.config.cache, block=lane.config.block_length or length, suffix_window=lane.config.suffix_window,
        **against,
    )
    if not explanation.scenarios:
        return "", None
    head = f'<p class="dc-race-projection-lane">For the lane “{html.escape(lane.label)}”:</p>'
    return head + projection_html(explanation.scenarios), speedup_figure(explanation.curves, explanation.run_point)


RULE_CONTROLS = ("rule", "threshold", "gamma", "per_step", "order_temperature")  # shown by mode and rule


def controls_shown(mode: str, rule: str) -> dict[str, bool]:
    """Which of the rule's controls apply: an AR race uses its one rule's setting; the strategies
    race has a threshold lane and an entropy_bound lane, so both settings and no rule choice."""
    if mode == "strategies":
        return {"rule": False, "threshold": True, "gamma": True, "per_step": False, "order_temperature": False}
    return {"rule": True, "threshold": rule == "threshold", "gamma": rule == "entropy_bound",
            "per_step": rule == "low_confidence", "order_temperature": rule == "low_confidence"}


def race_lane_html(lane: Lane, view: RunView, lane_state: LaneState, finish_rank: int | None, verdict: str = "") -> str:
    """A lane's header (label, own compute time, NFE, tokens/s, finishing place), its live
    break-even line (``verdict``) and its live canvas."""
    state = lane_state.state
    written = written_tokens(state)
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
        f'<div class="dc-race-stats">{html.escape(stats)}</div>{verdict}{canvas}</div>'
    )


def lane_heatmap(view: RunView, key: bool = True) -> dict:
    """A lane's heatmap, small enough for one screen; ``key``: with its colour key (five narrow lanes
    share the last lane's key, so each heatmap keeps its width for the cells)."""
    figure = heatmap_dict(view, height=LANE_HEATMAP_HEIGHT)
    if not key and figure["data"]:
        figure["data"][0]["showscale"] = False
        figure["layout"]["showlegend"] = False
    return figure


def stored_bench_plot() -> PlotData | None:
    if not BENCH_JSON.is_file():
        return None
    report = json.loads(BENCH_JSON.read_text(encoding="utf-8"))
    return plot(bench_figure(report["rows"], f"Measured by python -m dlm_core.bench on {report['machine']}"))


MEASURE_LENGTHS = (32, 64, 128)
MEASURE_PROMPT = "ROMEO:\n"


def measure_here(model: str) -> tuple[dict, str]:
    """Time ``model`` (threshold 0.5 + dual cache, the benchmark's ``thr+dual``) and its AR twin
    (``ar+kv``) on this machine now, at ``MEASURE_LENGTHS``: one warm-up run each, then one timed run
    per point (``dlm_core.bench``'s own settings and timer). (figure, note)."""
    diffusion, note = get_model(model)
    if note:
        raise user_error("model", "the built-in models are not trained yet, so there is nothing meaningful to time")
    ar = load_twin(model, fell_back=False)
    settings = SimpleNamespace(block=32, threshold=0.5, temperature=0.0, seed=0)
    rows = []
    for length in MEASURE_LENGTHS:
        for method in ("ar+kv", "thr+dual"):
            decoder, config = (ar if method == "ar+kv" else diffusion), bench.method_config(method, length, settings)
            bench.warm_up(decoder, MEASURE_PROMPT, config)  # the first run pays one-time costs
            _, seconds = bench.timed_median(decoder, MEASURE_PROMPT, config, repeats=1)
            rows.append({"length": length, "method": method, "median_s": seconds})
    title = f"{diffusion.name} vs its AR twin, measured here just now (one run per point, after a warm-up)"
    return bench_figure(rows, title), "Measured on this machine just now."


FRONTIER_HOW_TO_READ = (
    "Each dot is one way of decoding: further **right** means more tokens written per pass through the "
    "network (faster), further **down** means text the autoregressive twin finds more natural (better). "
    "A model trained for parallel decoding moves right without moving up."
)


def stored_frontier() -> tuple[PlotData | None, str]:
    """(the measured frontier chart, the sentence under it); (None, a one-line note) if there is none."""
    if not FRONTIER_JSON.is_file():
        return None, "No measured frontier yet: `python benchmarks/frontier.py` writes it (README)."
    try:
        figure = frontier_dict(json.loads(FRONTIER_JSON.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as error:  # a broken file must not stop the app
        log.warning("assets/frontier.json: %s", error)
        return None, f"The stored frontier could not be read ({html.escape(str(error))}); rerun `python benchmarks/frontier.py`."
    return plot(figure), FRONTIER_HOW_TO_READ + " Measured by `python benchmarks/frontier.py`."


def create_ui() -> dict[str, Any]:
    """The Race tab's layout; its components by name."""
    c: dict[str, Any] = {}
    # One screen for a class (issue 13): a one-line question, then Start, Stop and the two folded boxes
    # in one row, then the lanes (canvas over heatmap) filling the rest of a 1440 x 900 screen.
    gr.Markdown(
        "**Which writes faster: one token at a time, or many at once?** The autoregressive twin against the "
        "diffusion model, each timed on its own clock.",
        elem_id="dc-race-intro",
    )
    defaults, start_model, start_note = race_start()
    with gr.Row(equal_height=False, elem_id="dc-race-bar"):
        c["go"] = gr.Button("Start the race", variant="primary", elem_id="dc-race-go", scale=0, min_width=150)
        c["stop"] = gr.Button("Stop", elem_id="dc-race-stop", scale=0, min_width=80)
        with gr.Column(scale=1, min_width=200, elem_id="dc-race-help"), gr.Accordion("What am I looking at?", open=False):
            gr.Markdown(
            "The **autoregressive twin** (same size, same data) writes one token per pass through the network. "
            "The **diffusion model** may commit several tokens per pass when it is confident enough, and a "
            "**cache** lets it skip recomputing text that has not changed. Both run on this machine in turns, "
            "each timed on its own clock, so the lane that finishes first is the one that would finish first alone. "
            "Under each diffusion lane: what one of its passes costs here compared with one step of the twin, "
            "so how many tokens per pass it needs to win, and how many it writes."
            )
        with gr.Column(scale=2, min_width=200, elem_id="dc-race-settings"), gr.Accordion(
                "Race settings: prompt, length, rule, cache, temperature", open=False):
            with gr.Row():
                c["prompt"] = gr.Textbox("ROMEO:\n", label="Prompt", lines=2, max_lines=6, scale=3,
                                         info="Both contestants continue this text.")
                c["mode"] = gr.Radio(
                    [("Autoregressive twin vs diffusion", "ar"), ("Five diffusion strategies", "strategies")],
                    value="ar", label="What races", scale=2,
                    info="Strategies mode shows the different unmasking orders side by side.",
                )
                c["model"] = gr.Dropdown(
                    race_models(), value=start_model, label="Diffusion model",
                    scale=2, info="Each races its autoregressive twin (same data, tokenizer and size).",
                )
            gamma = TABLE["gamma"]
            with gr.Row():
                c["length"] = named_field(gr.Slider, "race-length", 16, 512, value=defaults["length"], step=16, label="Length",
                                     info="Tokens each contestant writes.")
                c["rule"] = gr.Radio(RACE_RULES, value=defaults["rule"], label="Diffusion rule",
                                     info="How the diffusion model decides how many tokens to write per pass.")
                shown = controls_shown("ar", defaults["rule"])
                c["threshold"] = named_field(gr.Slider, "race-threshold", 0.05, 1.0, value=defaults["threshold"], step=0.05, label="Threshold",
                                           visible=shown["threshold"],
                                           info="Diffusion commits every token it is at least this sure of (at least one per pass).")
                c["gamma"] = named_field(gr.Slider, "race-gamma", gamma.widget.low, gamma.widget.high, value=defaults["gamma"],
                                         step=gamma.widget.step, label=gamma.label, visible=shown["gamma"],
                                         info="Summed doubt allowed per pass: larger = more tokens per pass.")
                c["per_step"] = named_field(gr.Slider, "race-per-step", 1, 16, value=defaults["per_step"], step=1,
                                            label="Tokens per pass", visible=shown["per_step"],
                                            info="Diffusion writes exactly this many tokens per pass, the ones it is surest of.")
                order = TABLE["order_temperature"]
                c["order_temperature"] = named_field(
                    gr.Slider, "race-order-temperature", order.widget.low, order.widget.high,
                    value=defaults["order_temperature"], step=order.widget.step, label=order.label,
                    visible=shown["order_temperature"], info=order.widget.info)
                c["cache"] = gr.Radio(CACHE_CHOICES, value=defaults["cache"], label="Diffusion cache",
                                      info="Reuse the network's work on unchanged text (approximate; refreshed every block).")
                c["temperature"] = named_field(gr.Slider, "race-temperature", 0.0, 2.0, value=defaults["temperature"], step=0.1, label="Temperature",
                                             info="0 = always the likeliest token; higher = more varied text.")
                c["seed"] = named_field(gr.Number, "race-seed", defaults["seed"], precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                   info="Same seed, same race.")
    c["note"] = gr.HTML("", visible=False, elem_id="dc-race-note")  # shown only with a note about the model
    c["lanes"] = []
    c["heats"] = []
    with gr.Row(equal_height=False, elem_id="dc-race-lanes"):
        for index in range(RACE_LANES):
            with gr.Column(visible=index < 2, min_width=220, elem_classes=["dc-race-column"]) as column:  # five lanes fit side by side at 1280 px
                lane = gr.HTML(empty_canvas_html("Press “Start the race”."), elem_id=f"dc-race-lane-{index}")
                heat = gr.Plot(visible=False, show_label=False, elem_id=f"dc-race-heat-{index}",
                               elem_classes=["dc-race-chart"])
            c["lanes"].append((column, lane))
            c["heats"].append(heat)
    with gr.Accordion("What if this were an 8B model on a data-centre GPU? (a projection, not a measurement)",
                      open=False, visible=False) as explain_box:
        c["projection"] = gr.HTML("")
        c["speedup_plot"] = gr.Plot(show_label=False, elem_classes=["dc-race-chart"])
    c["explain_box"] = explain_box
    with gr.Accordion("Time vs generation length", open=True):
        c["bench_plot"] = gr.Plot(stored_bench_plot(), show_label=False, elem_classes=["dc-race-chart"])
        with gr.Row():
            c["measure"] = gr.Button("Measure here (the chosen diffusion model vs its AR twin, 32-128 tokens)")
        c["bench_note"] = gr.Markdown(
            "The stored figure comes from `python -m dlm_core.bench` (README); "
            "“Measure here” times both on this machine now (about half a minute)."
            if BENCH_JSON.is_file()
            else "No stored benchmark yet: press “Measure here” to time both on this machine now."
        )
    with gr.Accordion("How many tokens per pass, at what quality?", open=True):
        frontier_plot, frontier_note = stored_frontier()
        c["frontier_plot"] = gr.Plot(frontier_plot, show_label=False, visible=frontier_plot is not None,
                                     elem_classes=["dc-race-chart"])
        c["frontier_note"] = gr.Markdown(frontier_note + (" " + start_note if frontier_plot is not None and start_note else ""))
    return c


def create_events(c: dict[str, Any]) -> None:
    """Start (streams every lane), Stop, Measure here, and the mode showing its own settings."""
    inputs = [c["prompt"], c["mode"], c["length"], c["threshold"], c["cache"], c["temperature"], c["seed"],
              c["gamma"], c["model"], c["rule"], c["per_step"], c["order_temperature"]]
    columns = [column for column, _ in c["lanes"]]
    lane_html = [lane for _, lane in c["lanes"]]

    @guarded
    def start(prompt, mode, length, threshold, cache, temperature, seed, gamma, model, rule,
              per_step=RACE_DEFAULTS["per_step"], order_temperature=RACE_DEFAULTS["order_temperature"]):
        # The inputs arrive unprocessed (``preprocess=False``): each is checked by its widget here.
        raw = (prompt, mode, length, threshold, cache, temperature, seed, gamma, model, rule, per_step, order_temperature)
        prompt, mode, length, threshold, cache, temperature, seed, gamma, model, rule, per_step, order_temperature = (
            read_input(component, value) for component, value in zip(inputs, raw, strict=True)
        )
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
            raise user_error("prompt", f"must be text of at most {MAX_PROMPT_CHARS} characters")
        setup = race_lanes(mode, prompt, int(length), cache, float(threshold), float(temperature), int(seed or 0),
                           float(gamma), model, rule, int(per_step), float(order_temperature))
        lanes = setup.lanes
        views = [RunView.for_model(lane.model, lane.prompt, lane.config, label=lane.label) for lane in lanes]
        snapshots = race(lanes)
        finish: list[int] = []
        last_sent = 0.0
        ar_step_ms: float | None = None
        visible_updates = [gr.update(visible=i < len(lanes)) for i in range(RACE_LANES)]
        # The heatmaps' places are held from the first frame, so the lanes do not jump when they arrive.
        waiting = plot(empty_heatmap_dict(height=LANE_HEATMAP_HEIGHT, message=LANE_HEATMAP_WAITING))
        placeholders = [gr.update(value=waiting, visible=True) if i < len(lanes) else gr.update(visible=False)
                        for i in range(RACE_LANES)]
        note_html = model_note_html(lanes[-1].model, setup.note) if setup.note else ""
        note = gr.update(value=note_html, visible=bool(note_html))
        started = time.monotonic()
        snapshot: list[LaneState] = []
        for count, snapshot in enumerate(snapshots):
            if count == 1:  # the empty canvases are on screen; between two steps no lane's clock runs
                ar_step_ms = measured_ar_step_ms(setup, snapshot)
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
                    race_lane_html(lane, view, lane_state, finish.index(i) if i in finish else None,
                                   lane_verdict(setup, snapshot, i, ar_step_ms))
                    for i, (lane, view, lane_state) in enumerate(zip(lanes, views, snapshot, strict=True))
                ]
                htmls += [gr.update() for _ in range(RACE_LANES - len(lanes))]
                first = count == 0
                hide_projection = [gr.update(visible=False, open=False), gr.update(), gr.update()] if first else [
                    gr.update()] * 3
                heat_updates = placeholders if first else [gr.update() for _ in range(RACE_LANES)]
                yield [note, *visible_updates, *htmls, *heat_updates, *hide_projection]
        heats = [gr.update(value=plot(lane_heatmap(view, key=i == len(views) - 1 or len(views) <= 2)), visible=True)
                 for i, view in enumerate(views)]
        heats += [gr.update(visible=False) for _ in range(RACE_LANES - len(views))]
        projection, figure = lane_projection(setup, snapshot, ar_step_ms)
        explained = [gr.update(visible=bool(projection)), projection,
                     plot(figure) if figure is not None else gr.update()]
        yield [gr.update(), *[gr.update() for _ in columns], *[gr.update() for _ in lane_html], *heats, *explained]

    def controls_changed(mode: str, rule: str):
        shown = controls_shown(mode, rule)
        return [gr.update(visible=shown[name]) for name in RULE_CONTROLS]

    @guarded
    def measure(model):
        figure, note = measure_here(read_input(c["model"], model))
        return plot(figure), note

    outputs = [c["note"], *columns, *lane_html, *c["heats"], c["explain_box"], c["projection"], c["speedup_plot"]]
    event = c["go"].click(
        start, inputs, outputs, api_name="race", preprocess=False,
        concurrency_limit=INFERENCE_CONCURRENCY, concurrency_id="inference",
    )
    c["stop"].click(None, None, None, cancels=[event])
    for control in (c["mode"], c["rule"]):
        control.change(controls_changed, [c["mode"], c["rule"]], [c[name] for name in RULE_CONTROLS],
                       queue=False,
                       show_progress="hidden", api_visibility="private")
    c["measure"].click(measure, [c["model"]], [c["bench_plot"], c["bench_note"]], api_name="measure",
                       concurrency_limit=INFERENCE_CONCURRENCY, concurrency_id="inference")
