"""The step x position heatmap as a compact plotly figure (a plain dict in plotly's JSON schema).

x = position in the canvas (from the first generation slot), y = denoising step (0 at the top, time
flows down, the y range is fixed to the step budget so rows fill in as steps arrive), colour = the
model's probability of the token at that position at that step (its proposal while masked, the
written token afterwards; blank where the step did not score the position). The colour scale is
stepped with the canvas's five bins, so a cell and a token with the same colour mean the same thing.
A marker shows where each position was written (and a cross where it was re-masked); hovering a
marker shows the token, the step and the confidence, hovering a cell the position, step and
confidence.

Compactness (the heatmap streams): the matrix goes out as a base64 float32 typed array (plotly.js
``{"dtype": "f4", "bdata": ..., "shape": "rows, cols"}``, 4 bytes per cell, NaN = blank) with
``x0/dx/y0/dy`` instead of coordinate arrays, one ``hovertemplate`` instead of per-cell hover
text, and per-marker texts only for the (at most positions + re-masks) markers. Building it is a
few milliseconds; plotly.graph_objects is never touched (``go.Figure(heatmap_dict(view))`` validates
the dict where that is wanted, e.g. the tests).

``layout.shapes[0]`` (a veil over the steps after the cursor) and ``shapes[1]`` (the cursor line)
exist in every figure so the browser can move them without a round trip (``CURSOR_JS``).
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

import numpy as np

from .canvas import PALETTE, percent, visible
from .view import RunView

COLORSCALE = []
for _i, (_colour, _) in enumerate(PALETTE):
    COLORSCALE += [[_i / len(PALETTE), _colour], [(_i + 1) / len(PALETTE), _colour]]
COMMIT_COLOUR = "#f97316"
REMASK_COLOUR = "#dc2626"
EDIT_COLOUR = "#7c3aed"  # token editing (LLaDA 2.1): a written token replaced by another
VEIL_COLOUR = "rgba(128,128,128,0.55)"
HEIGHT = 380
MAX_SIDE = 512  # rows / columns of the heatmap matrix beyond which it is thinned


def typed_array(values: np.ndarray) -> dict[str, str]:
    """A numpy array as a plotly.js typed-array spec (base64 of the raw little-endian bytes)."""
    array = np.ascontiguousarray(values)
    codes = {"float32": "f4", "float64": "f8", "int32": "i4", "int16": "i2", "uint8": "u1", "int8": "i1"}
    code = codes[str(array.dtype)]
    spec = {"dtype": code, "bdata": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()}
    if array.ndim > 1:
        spec["shape"] = ", ".join(str(n) for n in array.shape)
    return spec


def _positions(values: list[int]) -> dict[str, str]:
    return typed_array(np.asarray(values, dtype=np.int32))


def cursor_shapes(step: int, last: int, budget: int) -> list[dict[str, Any]]:
    """The veil over the recorded steps after ``step`` (none at the newest step) and the cursor line."""
    bottom = max(budget, last) + 0.5 if step < last else step + 0.5
    return [
        {
            "type": "rect",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "yref": "y",
            "y0": step + 0.5,
            "y1": bottom,
            "fillcolor": VEIL_COLOUR,
            "line": {"width": 0},
            "layer": "above",
        },
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "yref": "y",
            "y0": step,
            "y1": step,
            "line": {"color": COMMIT_COLOUR, "width": 2},
            "layer": "above",
        },
    ]


def _markers(name: str, steps, positions, token_ids, view: RunView) -> dict[str, Any]:
    """A scatter trace of markers at (position, step), each labelled with its token's text."""
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": _positions(list(positions)),
        "y": _positions(list(steps)),
        "text": [html.escape(visible(view.token_text(t))) for t in token_ids],
    }


def heatmap_dict(view: RunView, *, cursor: int | None = None, upto: int | None = None, revision: str = "") -> dict:
    """The figure for ``view`` (rows 0..``upto``, default all) with the cursor at ``cursor``
    (default: the last row). ``revision`` keeps the user's zoom across updates of one run."""
    if not view.states:
        return empty_heatmap_dict()
    last = view.last_step if upto is None else min(upto, view.last_step)
    cursor = last if cursor is None else max(0, min(int(cursor), last))
    z = view.heat(last)
    # Huge uploaded runs (up to 2048 steps x 4096 positions) are thinned to at most MAX_SIDE rows
    # and columns (every k-th step / position) so the figure stays a few MB; markers stay exact.
    dy = -(-z.shape[0] // MAX_SIDE)
    dx = -(-z.shape[1] // MAX_SIDE)
    if dy > 1 or dx > 1:
        z = z[::dy, ::dx]
    budget = max(view.meta.expected_steps, last)
    commits = view.commits(last)
    remasks = view.remasks(last)
    data: list[dict[str, Any]] = [
        {
            "type": "heatmap",
            "name": "confidence",
            "z": typed_array(z),
            "x0": view.x0,
            "dx": dx,
            "y0": 0,
            "dy": dy,
            "zmin": 0,
            "zmax": 1,
            "colorscale": COLORSCALE,
            "hoverongaps": False,
            "hovertemplate": "position %{x} · step %{y}<br>confidence %{z:.0%}<extra></extra>",
            "colorbar": {
                "title": {"text": "confidence", "side": "right"},
                "thickness": 12,
                "tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1],
                "ticktext": ["0%", "20%", "40%", "60%", "80%", "100%"],
                "len": 0.9,
            },
            "showlegend": False,
        }
    ]
    if commits:
        steps, positions, probs = zip(*commits, strict=True)
        written = _markers("written", steps, positions, [view.states[s].tokens[p] for s, p, _ in commits], view)
        written["customdata"] = typed_array(np.asarray(probs, dtype=np.float32))
        written["hovertemplate"] = (
            "%{text}<br>written at step %{y} · position %{x}<br>%{customdata:.0%} sure<extra></extra>"
        )
        written["marker"] = {"symbol": "circle", "size": 6, "color": COMMIT_COLOUR, "line": {"width": 1, "color": "#ffffff"}}
        data.append(written)
    if remasks:
        steps, positions, lost = zip(*remasks, strict=True)
        remasked = _markers("re-masked", steps, positions, lost, view)
        remasked["hovertemplate"] = "%{text} re-masked at step %{y} · position %{x}<extra></extra>"
        remasked["marker"] = {"symbol": "x", "size": 8, "color": REMASK_COLOUR}
        if getattr(view.meta, "noise", "mask") == "uniform":
            remasked["name"] = "renoised"
            remasked["hovertemplate"] = "%{text} renoised at step %{y} · position %{x}<extra></extra>"
        data.append(remasked)
    edits = [
        (state.step, int(position), f"{visible(view.token_text(int(old)))} → {visible(view.token_text(int(state.tokens[position])))}")
        for state in view.states[1 : last + 1]
        for position, old in zip(getattr(state, "edited", ()), getattr(state, "edited_from", ()), strict=True)
    ]
    if edits:
        steps, positions, labels = zip(*edits, strict=True)
        edited = {"type": "scatter", "mode": "markers", "name": "edited", "x": _positions(list(positions)),
                  "y": _positions(list(steps)), "text": [html.escape(label) for label in labels]}
        edited["hovertemplate"] = "edited at step %{y} · position %{x}<br>%{text}<extra></extra>"
        edited["marker"] = {"symbol": "diamond", "size": 8, "color": EDIT_COLOUR, "line": {"width": 1, "color": "#ffffff"}}
        data.append(edited)
    layout = {
        "height": HEIGHT,
        "margin": {"l": 56, "r": 8, "t": 28, "b": 44},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(128,128,128,0.10)",
        "font": {"size": 12, "color": "#7f7f7f"},
        "xaxis": {
            "title": {"text": "position in the text →"},
            "range": [view.x0 - 0.5, view.x1 + 0.5],
            "zeroline": False,
            "showgrid": False,
        },
        "yaxis": {
            "title": {"text": "↓ denoising step"},
            "range": [budget + 0.5, -0.5],
            "zeroline": False,
            "showgrid": False,
        },
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "bgcolor": "rgba(0,0,0,0)"},
        "shapes": cursor_shapes(cursor, last, budget),
        "meta": {"last": last},  # read by CURSOR_JS
        "uirevision": revision or "dc",
        "hovermode": "closest",
        "hoverlabel": {"bgcolor": "#1f2937", "bordercolor": "#f97316", "font": {"color": "#ffffff", "size": 13}},
    }
    return {"data": data, "layout": layout, "config": {"displaylogo": False, "responsive": True}}


def empty_heatmap_dict() -> dict:
    return {
        "data": [],
        "layout": {
            "height": HEIGHT,
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(128,128,128,0.10)",
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "annotations": [
                {
                    "text": "The heatmap of steps × positions appears here while the model writes.",
                    "showarrow": False,
                    "font": {"color": "#7f7f7f"},
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                }
            ],
            "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        },
        "config": {"displaylogo": False, "responsive": True},
    }


def to_json(figure: dict) -> str:
    """Compact JSON (NaN is not allowed outside typed arrays)."""
    return json.dumps(figure, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


# Moves the veil and the cursor line of the heatmap in ``#dc-heatmap`` to ``step`` in the browser (no
# server round trip; gradio's plot component exposes plotly.js as ``window.Plotly``).
CURSOR_JS = """
(step) => {
  const s = Math.max(0, Number(step) || 0);
  setTimeout(() => {  // after gradio has applied the message's new figure, if any
    const div = document.querySelector('#dc-heatmap .js-plotly-plot');
    const P = window.Plotly;
    if (!div || !P || !div.layout || !div.layout.shapes || div.layout.shapes.length < 2) return;
    if (div.layout.shapes[1].y0 === s) return;  // already there (e.g. a streamed figure)
    const last = div.layout.meta && div.layout.meta.last !== undefined ? Number(div.layout.meta.last) : Infinity;
    const r = div.layout.yaxis.range || [s + 0.5, 0];
    const bottom = s < last ? Math.max(r[0], r[1], s + 0.5) : s + 0.5;
    try {
      P.relayout(div, {'shapes[0].y0': s + 0.5, 'shapes[0].y1': bottom, 'shapes[1].y0': s, 'shapes[1].y1': s});
    } catch (error) { console.warn('heatmap cursor', error); }
  }, 0);
  return [];
}
"""

__all__ = [
    "COLORSCALE",
    "CURSOR_JS",
    "cursor_shapes",
    "empty_heatmap_dict",
    "heatmap_dict",
    "percent",
    "to_json",
    "typed_array",
]
