"""The plotly layout every line chart of the app shares, and the time-vs-length benchmark chart.

``chart_layout`` is one place for the look of the Race tab's charts (``bench_figure`` here,
``race_explain.speedup_figure``, ``frontier.frontier_dict``): title, axis titles, log axes, margins,
a horizontal legend under the plot, and a transparent background so light and dark themes both work.
Figures are plain dicts (JSON-ready, what ``gr.Plot`` and plotly.js take). No torch, no gradio.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any


def chart_layout(title: str, x_title: str, y_title: str, *, log_x: bool = True, log_y: bool = True,
                 height: int = 340) -> dict[str, Any]:
    """A plotly layout: escaped title, axis titles (log scale unless told otherwise), legend below."""
    def axis(text: str, log: bool) -> dict[str, Any]:
        grid = "rgba(128, 128, 128, 0.3)"  # mid-grey, faint: visible on light and dark backgrounds alike
        return {"title": {"text": html.escape(text)}, "gridcolor": grid, "zerolinecolor": grid,
                **({"type": "log"} if log else {})}

    return {
        "title": {"text": html.escape(title), "font": {"size": 14}},
        "xaxis": axis(x_title, log_x),
        "yaxis": axis(y_title, log_y),
        "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
        "height": height,
        "legend": {"orientation": "h", "y": -0.25},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }


def bench_figure(rows: Iterable[Mapping[str, Any]], title: str) -> dict[str, Any]:
    """Median wall time vs generation length, one line per method (log-log), from rows of
    ``{"method", "length", "median_s"}`` (``python -m dlm_core.bench``'s JSON). Raises ``ValueError``
    naming a missing key."""
    methods: dict[str, list[tuple[int, float]]] = {}
    for index, row in enumerate(rows):
        for key in ("method", "length", "median_s"):
            if key not in row:
                raise ValueError(f"rows[{index}] has no {key!r}")
        methods.setdefault(str(row["method"]), []).append((row["length"], row["median_s"]))
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": html.escape(method),
         "x": [length for length, _ in sorted(points)], "y": [seconds for _, seconds in sorted(points)],
         "hovertemplate": "%{x} tokens: %{y:.2f} s<extra>" + html.escape(method) + "</extra>"}
        for method, points in methods.items()
    ]
    return {"data": data, "layout": chart_layout(title, "generated tokens", "seconds (median)")}
