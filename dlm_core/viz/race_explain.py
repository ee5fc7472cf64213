"""The race explains itself: HTML and a plotly figure from ``dlm_core.speed``'s numbers (no torch).

Three pieces per diffusion lane, meant to sit under the lane's canvas once it has run:

* ``break_even_html``: measured on this machine, in this run: "a pass costs 2.1x an AR step here,
  so it needs >= 2.1 tokens per pass to win; this run does 4.6: 2.2x faster than the AR twin".
* ``projection_html``: clearly labelled as a projection: the same forward passes re-timed on a
  named large model and GPU, as a table of scenarios (this run; batched; other cache; one token per
  pass) with the regime of each and a sentence on why.
* ``speedup_figure``: projected speed-up vs tokens per pass, one curve per setting, this run marked.

Pure functions from numbers to text: every string that reaches HTML is escaped here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..speed import BreakEven, LaneCost, LaneExplanation, Scenario, ridge_tokens
from .charts import chart_layout


def _x(value: float) -> str:
    """A ratio for prose: 2 significant digits below 10 (2.1x), whole numbers above (14x)."""
    if not math.isfinite(value):
        return "∞"
    return f"{value:.1f}" if value < 9.95 else f"{value:.0f}"


def break_even_html(verdict: BreakEven, *, forwards: int | None = None, ar_label: str = "an AR step") -> str:
    """One short sentence (and a badge) on the measured break-even of a diffusion lane; the
    milliseconds behind it in the box's tooltip."""
    where = f"mean of this run's {forwards} forward{'s' if forwards != 1 else ''}" if forwards else "measured"
    if verdict.wins:
        outcome = f"{_x(verdict.speedup)}x faster than the AR twin"
        badge = '<span class="dc-badge dc-ahead">ahead</span>'
        more = ""
    else:
        outcome = f"{_x(verdict.speedup)}x the AR twin's speed"
        badge = '<span class="dc-badge dc-behind">behind</span>'
        more = f"; it would need {_x(1 / verdict.speedup)}x more tokens per pass"
    text = (
        f"A pass costs {_x(verdict.cost_ratio)}x {ar_label} here, so it needs ≥ {verdict.needed:.1f} tokens per pass "
        f"to win; this run does {verdict.achieved:.1f}: {outcome}."
    )
    detail = f"One pass {verdict.diffusion_ms:.1f} ms vs {verdict.ar_ms:.1f} ms ({where}){more}."
    return f'<div class="dc-race-explain" title="{html.escape(detail)}">{badge} {html.escape(text)}</div>'


def yardstick_html(ar_cost: LaneCost) -> str:
    """The AR lane's line: one token per forward by construction, and what that forward costs here
    (the yardstick the diffusion lanes' break-even is measured against)."""
    text = (f"One token per forward pass: {ar_cost.ms_per_forward:.1f} ms per step here "
            f"(mean of {ar_cost.forwards} step{'s' if ar_cost.forwards != 1 else ''}), the yardstick.")
    return f'<div class="dc-race-explain">{html.escape(text)}</div>'


def _regime(scenario: Scenario) -> str:
    diffusion = scenario.projection.diffusion
    if diffusion.compute_bound == 0:
        return "memory-bound"
    if diffusion.compute_bound == diffusion.forwards:
        return "compute-bound"
    return f"compute-bound in {diffusion.compute_bound} of {diffusion.forwards} forwards"


def _why(scenario: Scenario, ridge: float) -> str:
    p = scenario.projection
    per_ar, per_diffusion = p.ar.ms_per_forward, p.diffusion.ms_per_forward
    if scenario.tokens_per_pass <= 1.0001:
        return (f"{scenario.label}: no parallelism, so at best a tie: every forward still reads all the weights "
                f"(speed-up {_x(p.speedup)}x).")
    if p.diffusion.compute_bound == 0:
        return (f"{scenario.label}: about {scenario.tokens_per_forward:.0f} tokens computed per forward, under the "
                f"~{ridge:.0f}-token ridge, so a forward costs about what an AR step does ({per_diffusion:.1f} vs "
                f"{per_ar:.1f} ms) and {scenario.tokens_per_pass:.1f} tokens per pass give {_x(p.speedup)}x.")
    return (f"{scenario.label}: about {scenario.tokens_per_forward:.0f} tokens computed per forward, past the "
            f"~{ridge:.0f}-token ridge, so the GPU's arithmetic is the limit: a forward costs "
            f"{_x(per_diffusion / per_ar)}x an AR step ({per_diffusion:.1f} vs {per_ar:.1f} ms) and the speed-up is "
            f"{_x(p.speedup)}x.")


def projection_html(scenarios: Sequence[Scenario]) -> str:
    """The labelled projection: a table of scenarios, why each lands where it does, and the model."""
    if not scenarios:
        return ""
    first = scenarios[0].projection
    model, ar_model, hardware = first.model, first.ar_model, first.hardware
    ridge = ridge_tokens(model, hardware)
    weights_ms = 1000 * model.weight_bytes / hardware.memory_bandwidth
    head = (
        f"Projection, not a measurement: this run's forward passes (same count, same tokens per forward) "
        f"re-timed for {model.name} vs {ar_model.name}, on {hardware.name}."
    )
    rows = []
    for scenario in scenarios:
        p = scenario.projection
        cells = (
            scenario.label, f"{scenario.tokens_per_pass:.1f}", f"{scenario.tokens_per_forward:.0f}",
            f"{p.ar.seconds * 1000:.0f} ms", f"{p.diffusion.seconds * 1000:.0f} ms", f"{_x(p.speedup)}x",
            _regime(scenario),
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    header = ("scenario", "tokens per pass", "tokens computed per forward", "AR", "diffusion", "speed-up",
              "diffusion forwards")
    table = (
        '<table class="dc-race-projection"><thead><tr>'
        + "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    why = "".join(f"<li>{html.escape(_why(scenario, ridge))}</li>" for scenario in scenarios)
    model_text = (
        f"Cost model (roofline): time per forward = max((weight bytes + cached KV bytes) / memory bandwidth, "
        f"(2 x parameters x tokens + attention FLOPs) / peak FLOP/s). Reading the weights alone takes "
        f"{weights_ms:.1f} ms, so below ~{ridge:.0f} tokens per forward the cost barely depends on how many "
        f"tokens a forward computes: that is where k tokens per pass is ~k times faster (the seed's 5-10x). "
        f"Ignored: launch and framework overheads, sampling, activation traffic, KV writes, efficiency below "
        f"peak. Hardware: {hardware.source}."
    )
    return (
        f'<div class="dc-race-projection-box"><p><b>{html.escape(head)}</b></p>{table}'
        f"<ul>{why}</ul><p><small>{html.escape(model_text)}</small></p></div>"
    )


def speedup_figure(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    run_point: tuple[float, float] | None = None,
    title: str = "Projected speed-up over the AR model",
) -> dict[str, Any]:
    """Plotly figure dict: projected speed-up vs tokens per pass (log-log), one line per setting,
    the ideal k x line (every forward costs one AR step), break-even at 1x, and this run's point."""
    tops = [k for points in curves.values() for k, _ in points] or [1.0]
    top = max(tops)
    data: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines", "name": "ideal: k x (memory-bound)", "x": [1, top], "y": [1, top],
         "line": {"dash": "dot", "color": "#999"}, "hoverinfo": "skip"},
        {"type": "scatter", "mode": "lines", "name": "break-even", "x": [1, top], "y": [1, 1],
         "line": {"dash": "dash", "color": "#c44"}, "hoverinfo": "skip"},
    ]
    for name, points in curves.items():
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": name,
            "x": [k for k, _ in points], "y": [s for _, s in points],
            "hovertemplate": "%{x:.1f} tokens/pass: %{y:.2f}x<extra>" + html.escape(name) + "</extra>",
        })
    if run_point is not None:
        data.append({
            "type": "scatter", "mode": "markers", "name": "this run", "x": [run_point[0]], "y": [run_point[1]],
            "marker": {"size": 12, "symbol": "star"},
            "hovertemplate": "this run: %{x:.1f} tokens/pass, %{y:.2f}x<extra></extra>",
        })
    layout = chart_layout(title, "tokens per forward pass (diffusion)", "speed-up over AR (projected)")
    return {"data": data, "layout": layout}


def lane_explanation_html(explanation: LaneExplanation) -> str:
    """A diffusion lane's whole explanation: measured break-even, then the labelled projection."""
    parts = []
    if explanation.break_even is not None:
        parts.append(break_even_html(explanation.break_even, forwards=explanation.cost.forwards))
    parts.append(projection_html(explanation.scenarios))
    return "".join(parts)
