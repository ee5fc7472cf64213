"""The step x position heatmap as a compact plotly figure (a plain dict in plotly's JSON schema).

x = position in the canvas (from the first generation slot), y = denoising step (0 at the top, time
flows down, the y range is fixed to the step budget so rows fill in as steps arrive). Each cell is
what that position *was* after that step (``RunView.cells``):

- masked: one neutral grey (``MASK_COLOUR``), darker than the palest confidence colour in light and
  dark themes, so "not written yet" never looks like "written, unsure";
- written: coloured by the model's probability of the token there (the five stepped bins of the
  canvas's ``PALETTE``, so a cell and a token with the same colour mean the same thing), carried
  forward over the steps that did not look at it;
- blank: your prompt (an infill's given text between blanks) and steps not run yet.

Marks (``MARKS``, one scatter trace per kind, also in the legend): a cross where a position was
re-masked. Other kinds (e.g. "edited" for a token changed by hand) add an entry to ``MARKS`` and
pass their (step, position, token) triples to ``heatmap_dict(marks=...)``; the legend lists every
kind drawn. The colour bar names every colour, the masked grey included; steps and positions get
integer ticks only. Hovering a cell shows the token there (the model's guess while masked), its
state and its probability (``detail=True``, the settled figure; the live stream leaves that text
out to stay small).

Compactness (the heatmap streams): the matrix goes out as a base64 float32 typed array (plotly.js
``{"dtype": "f4", "bdata": ..., "shape": "rows, cols"}``, 4 bytes per cell, NaN = blank) with
``x0/dx/y0/dy`` instead of coordinate arrays; per-cell hover text only in settled figures of at
most ``HOVER_CELLS`` cells. Building it is a few milliseconds; plotly.graph_objects is never
touched (``go.Figure(heatmap_dict(view))`` validates the dict where that is wanted, e.g. the tests).

``layout.shapes[0]`` (a veil over the steps after the cursor) and ``shapes[1]`` (the cursor line)
exist in every figure so the browser can move them without a round trip (``CURSOR_JS``).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .canvas import BIN_LABELS, PALETTE, percent, visible
from .view import MASKED_CELL, RunView

MASK_COLOUR = "#9e9e9e"  # neutral grey: no hue, unlike every confidence colour (YlGnBu)
ZMIN = -0.2  # the masked band of the colour scale: [ZMIN, 0), MASKED_CELL in its middle
_SPAN = 1 - ZMIN
COLORSCALE: list[list[Any]] = [[0, MASK_COLOUR], [-ZMIN / _SPAN, MASK_COLOUR]]
for _i, (_colour, _) in enumerate(PALETTE):
    COLORSCALE += [[(-ZMIN + _i / len(PALETTE)) / _SPAN, _colour], [(-ZMIN + (_i + 1) / len(PALETTE)) / _SPAN, _colour]]
COLORSCALE[-1][0] = 1
COMMIT_COLOUR = "#f97316"
REMASK_COLOUR = "#dc2626"
EDIT_COLOUR = "#7c3aed"  # token editing (LLaDA 2.1): a written token replaced by another
# The veil over the steps after the one shown: light here; the app's dark theme darkens it (style.css).
VEIL_COLOUR = "rgba(255,255,255,0.72)"
HEIGHT = 380
FONT_SIZE = 12
MAX_SIDE = 512  # rows / columns of the heatmap matrix beyond which it is thinned
HOVER_CELLS = 40_000  # settled figures up to this many cells name the token in every cell's tooltip

# Every mark the heatmap can draw over a cell: legend name, marker style, tooltip verb. A new kind
# (e.g. "edited") is one entry here plus its (step, position, token) triples in ``heatmap_dict(marks=)``.
MARKS: dict[str, dict[str, Any]] = {
    "re-masked": {
        "legend": "re-masked (taken back)",
        "verb": "re-masked at step",
        "marker": {"symbol": "x", "size": 9, "color": REMASK_COLOUR, "line": {"width": 1, "color": "#ffffff"}},
    },
    "renoised": {
        "legend": "renoised (drawn again at random)",
        "verb": "renoised at step",
        "marker": {"symbol": "x", "size": 9, "color": REMASK_COLOUR, "line": {"width": 1, "color": "#ffffff"}},
    },
    "edited": {
        "legend": "edited (replaced by another token)",
        "verb": "at step",
        "marker": {"symbol": "diamond", "size": 9, "color": EDIT_COLOUR, "line": {"width": 1, "color": "#ffffff"}},
    },
}


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


def nice_dtick(span: float, target: int = 8) -> int:
    """An integer tick spacing (1, 2, 5, 10, 20, 25, 50, ...) giving at most about ``target`` ticks."""
    for base in (1, 2, 5, 10, 20, 25, 50):
        for scale in (1, 10, 100, 1000):
            dtick = base * scale
            if span / dtick <= target:
                return dtick
    return max(1, math.ceil(span / target))


def mark_trace(kind: str, marks: Iterable[tuple[int, int, int | str]], view: RunView) -> dict[str, Any]:
    """The scatter trace of mark ``kind`` (``MARKS``) at (step, position), each labelled with its token
    (an id) or with a ready label (a string, e.g. an edit's "old → new")."""
    style = MARKS[kind]
    steps, positions, tokens = zip(*marks, strict=True)
    return {
        "type": "scatter",
        "mode": "markers",
        "name": style["legend"],
        "x": _positions(list(positions)),
        "y": _positions(list(steps)),
        "text": [html.escape(t if isinstance(t, str) else visible(view.token_text(t))) for t in tokens],
        "hovertemplate": f"%{{text}} {style['verb']} %{{y}} · position %{{x}}<extra></extra>",
        "marker": dict(style["marker"]),
        "showlegend": True,
    }


def edit_marks(view: RunView, last: int) -> list[tuple[int, int, str]]:
    """(step, position, "old → new") of every token edit up to step ``last``."""
    return [
        (state.step, int(position),
         f"{visible(view.token_text(int(old)))} → {visible(view.token_text(int(state.tokens[position])))}")
        for state in view.states[1 : last + 1]
        for position, old in zip(getattr(state, "edited", ()), getattr(state, "edited_from", ()), strict=True)
    ]


def _legend_swatch(name: str, colour: str) -> dict[str, Any]:
    """A legend-only entry (no points): a square of ``colour``."""
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": [None],
        "y": [None],
        "marker": {"symbol": "square", "size": 12, "color": colour},
        "hoverinfo": "skip",
        "showlegend": True,
    }


def cell_texts(view: RunView, last: int) -> list[list[str]]:
    """Per cell (rows 0..last, the heatmap's columns): the token there, its state and probability."""
    columns = range(view.x0, view.x1 + 1)
    texts: list[list[str]] = []
    commit_step = {}
    for step in range(last + 1):
        state = view.states[step]
        for position in np.asarray(state.remasked).tolist():
            commit_step.pop(position, None)
        for position in np.asarray(state.committed).tolist():
            commit_step[position] = step
        row = []
        for position in columns:
            where = f"position {position} · step {step}"
            if state.fixed[position]:
                row.append("")
                continue
            p = float(state.prob[position])
            if state.masked[position]:
                guess = int(state.proposal[position])
                if guess >= 0 and not math.isnan(p):
                    row.append(
                        f"masked · the model's guess {html.escape(visible(view.token_text(guess)))} {percent(p)}<br>{where}"
                    )
                else:
                    row.append(f"masked · not looked at in this step<br>{where}")
                continue
            token = html.escape(visible(view.token_text(int(state.tokens[position]))))
            written = commit_step.get(position)
            when = f"written at step {written}" if written is not None else "written"
            sure = f"{percent(p)} sure now" if not math.isnan(p) else "not re-read in this step"
            row.append(f"{token} · {when} · {sure}<br>{where}")
        texts.append(row)
    return texts


def heatmap_dict(
    view: RunView,
    *,
    cursor: int | None = None,
    upto: int | None = None,
    revision: str = "",
    detail: bool = True,
    height: int = HEIGHT,
    font_size: int = FONT_SIZE,
    marks: dict[str, list[tuple[int, int, int]]] | None = None,
) -> dict:
    """The figure for ``view`` (rows 0..``upto``, default all) with the cursor at ``cursor``
    (default: the last row). ``revision`` keeps the user's zoom across updates of one run;
    ``detail``: per-cell tooltips naming the token (settled figures); ``height`` / ``font_size``:
    e.g. larger for a projector; ``marks``: further marks by ``MARKS`` kind (re-masks are added here)."""
    if not view.states:
        return empty_heatmap_dict(height=height, font_size=font_size)
    last = view.last_step if upto is None else min(upto, view.last_step)
    cursor = last if cursor is None else max(0, min(int(cursor), last))
    z = view.cells(last)
    # Huge uploaded runs (up to 2048 steps x 4096 positions) are thinned to at most MAX_SIDE rows
    # and columns (every k-th step / position) so the figure stays a few MB; marks stay exact.
    dy = -(-z.shape[0] // MAX_SIDE)
    dx = -(-z.shape[1] // MAX_SIDE)
    if dy > 1 or dx > 1:
        z = z[::dy, ::dx]
    budget = max(view.meta.expected_steps, last)
    cells: dict[str, Any] = {
        "type": "heatmap",
        "name": "how sure",
        "z": typed_array(z),
        "x0": view.x0,
        "dx": dx,
        "y0": 0,
        "dy": dy,
        "zmin": ZMIN,
        "zmax": 1,
        "colorscale": COLORSCALE,
        "hoverongaps": False,
        "hovertemplate": "position %{x} · step %{y}<extra></extra>",
        "colorbar": {
            "title": {"text": "how sure", "side": "right"},
            "thickness": 14,
            "tickvals": [MASKED_CELL, *[(i + 0.5) / len(PALETTE) for i in range(len(PALETTE))]],
            "ticktext": ["masked", *BIN_LABELS],
            "ticks": "",
            "len": 1.0,
            "y": 0.5,
        },
        "showlegend": False,
    }
    if detail and dx == dy == 1 and z.size <= HOVER_CELLS:
        cells["text"] = cell_texts(view, last)
        cells["hovertemplate"] = "%{text}<extra></extra>"
    data: list[dict[str, Any]] = [cells, _legend_swatch("masked (not written yet)", MASK_COLOUR)]
    taken_back = "renoised" if getattr(view.meta, "noise", "mask") == "uniform" else "re-masked"
    all_marks = {taken_back: view.remasks(last), "edited": edit_marks(view, last), **(marks or {})}
    for kind, triples in all_marks.items():
        shown = [m for m in triples if m[0] <= last]
        if shown:
            data.append(mark_trace(kind, shown, view))
    width = view.x1 - view.x0 + 1
    small = font_size
    layout = {
        "height": height,
        "margin": {"l": 8 + 4 * small, "r": 8, "t": 8 + 3 * small, "b": 8 + 3 * small},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"size": small, "color": "#6b7280"},
        "xaxis": {
            "title": {"text": "position in the text →", "standoff": 4},
            "range": [view.x0 - 0.5, view.x1 + 0.5],
            "tickmode": "linear",
            "tick0": 0,
            "dtick": nice_dtick(width),
            "tickformat": "d",
            "zeroline": False,
            "showgrid": False,
            "automargin": True,
        },
        "yaxis": {
            "title": {"text": "↓ step", "standoff": 4},
            "range": [budget + 0.5, -0.5],
            "tickmode": "linear",
            "tick0": 0,
            "dtick": nice_dtick(budget + 1),
            "tickformat": "d",
            "zeroline": False,
            "showgrid": False,
            "automargin": True,
        },
        "legend": {
            "orientation": "h",
            "x": 0,
            "y": 1.0,
            "yanchor": "bottom",
            "bgcolor": "rgba(0,0,0,0)",
            "itemclick": False,
            "itemdoubleclick": False,
        },
        "shapes": cursor_shapes(cursor, last, budget),
        "meta": {"last": last},  # read by CURSOR_JS
        "uirevision": revision or "dc",
        "hovermode": "closest",
        "hoverlabel": {"bgcolor": "#1f2937", "bordercolor": "#f97316", "font": {"color": "#ffffff", "size": small + 1}},
    }
    return {"data": data, "layout": layout, "config": {"displaylogo": False, "responsive": True}}


EMPTY_MESSAGE = "The heatmap appears here while the model writes:<br>one row per step, one column per position."


def empty_heatmap_dict(height: int = HEIGHT, font_size: int = FONT_SIZE, message: str = EMPTY_MESSAGE) -> dict:
    """The figure before a run: ``message`` (plotly text: ``<br>`` breaks lines) on a grey field."""
    return {
        "data": [],
        "layout": {
            "height": height,
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(128,128,128,0.10)",
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "annotations": [
                {
                    "text": message,
                    "showarrow": False,
                    "font": {"color": "#6b7280", "size": font_size + 1},
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
    "MARKS",
    "MASK_COLOUR",
    "CURSOR_JS",
    "cursor_shapes",
    "empty_heatmap_dict",
    "heatmap_dict",
    "mark_trace",
    "nice_dtick",
    "percent",
    "to_json",
    "typed_array",
]
